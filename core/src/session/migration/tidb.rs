//! `tidb` mode: the statements and parsing of TiProxy's migration flow
//! (`reference/tidb-migration-protocol.md` §3–4). The session states are opaque JSON except
//! `current-db`; the token is sent back byte for byte as the auth data of a
//! `tidb_session_token` login.

use bytes::Bytes;

use crate::wire::Command;

/// The plugin name of the token login.
pub(crate) const TOKEN_PLUGIN: &str = "tidb_session_token";

/// COM_QUERY `SHOW SESSION_STATES`.
pub(crate) fn show_session_states() -> Bytes {
    let mut out = vec![Command::COM_QUERY];
    out.extend_from_slice(b"SHOW SESSION_STATES");
    Bytes::from(out)
}

/// What `SHOW SESSION_STATES` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionStates {
    /// The `Session_states` JSON text.
    pub(crate) states: Vec<u8>,
    /// The `Session_token` JSON text, never empty.
    pub(crate) token: Vec<u8>,
    /// `current-db` from the states, when present and not empty.
    pub(crate) current_db: Option<String>,
}

/// Reads the one row of `SHOW SESSION_STATES` (`Session_states`, `Session_token`).
pub(crate) fn parse_session_states(rows: &[Vec<Option<Vec<u8>>>]) -> Result<SessionStates, String> {
    let row = match rows {
        [row] => row,
        _ => return Err(format!("SHOW SESSION_STATES returned {} rows", rows.len())),
    };
    let (states, token) = match row.as_slice() {
        [states, token, ..] => (states.clone().unwrap_or_default(), token.clone()),
        _ => return Err("SHOW SESSION_STATES returned fewer than two columns".into()),
    };
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Err("the server returned no session token (it cannot sign)".into()),
    };
    let current_db = if states.is_empty() {
        None
    } else {
        let json: serde_json::Value = serde_json::from_slice(&states)
            .map_err(|e| format!("the session states are not JSON: {e}"))?;
        match json.get("current-db") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(db)) => (!db.is_empty()).then(|| db.clone()),
            Some(_) => return Err("current-db is not a string".into()),
        }
    };
    Ok(SessionStates {
        states,
        token,
        current_db,
    })
}

/// COM_QUERY `SET SESSION_STATES '<s>'`, `\` escaped as `\\` first, then `'` as `\'`.
pub(crate) fn set_session_states(states: &[u8]) -> Bytes {
    let mut out = vec![Command::COM_QUERY];
    out.extend_from_slice(b"SET SESSION_STATES '");
    for &b in states {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            _ => out.push(b),
        }
    }
    out.push(b'\'');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(states: Option<&str>, token: Option<&str>) -> Vec<Vec<Option<Vec<u8>>>> {
        vec![vec![
            states.map(|s| s.as_bytes().to_vec()),
            token.map(|s| s.as_bytes().to_vec()),
        ]]
    }

    #[test]
    fn states_token_and_current_db() {
        let s = parse_session_states(&row(
            Some(r#"{"current-db":"shop","sys-vars":{"a":"b"}}"#),
            Some("{}"),
        ))
        .unwrap();
        assert_eq!(s.current_db.as_deref(), Some("shop"));
        assert_eq!(s.token, b"{}");
        let s = parse_session_states(&row(Some("{}"), Some("t"))).unwrap();
        assert_eq!(s.current_db, None);
        assert!(
            parse_session_states(&row(Some("{}"), None)).is_err(),
            "NULL token"
        );
        assert!(
            parse_session_states(&row(Some("{}"), Some(""))).is_err(),
            "empty token"
        );
        assert!(parse_session_states(&row(Some("{not json"), Some("t"))).is_err());
        assert!(parse_session_states(&[]).is_err());
    }

    #[test]
    fn set_statement_escapes_backslash_then_quote() {
        let p = set_session_states(br#"{"a":"it's \"x\" \\"}"#);
        assert_eq!(
            &p[1..],
            &br#"SET SESSION_STATES '{"a":"it\'s \\"x\\" \\\\"}'"#[..]
        );
    }
}
