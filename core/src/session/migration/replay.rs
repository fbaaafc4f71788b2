//! `replay` mode: what ferry sends a new MySQL/MariaDB backend to rebuild a session it tracked.
//!
//! The login itself carries the user (with the secret recovered at the client's login), the
//! client's capabilities, collation and attributes, and the current database
//! (`CLIENT_CONNECT_WITH_DB`). Then, in order, one statement per [`Item`] (after ferry's
//! tracking, the [`fixup`] from a fresh connection's state, which decides the statements):
//!
//! 1. ferry's session tracking (`SET session_track_system_variables='*', …`);
//! 2. the character set, when the client changed any of it: `SET NAMES 'cs' COLLATE 'coll'` when
//!    client, connection and results character sets agree, otherwise each of the four variables
//!    in the order that keeps `collation_connection` last. The values are read live on the old
//!    backend at migration time ([`Charsets`]): MariaDB does not report `collation_connection`
//!    after `SET NAMES … COLLATE …`, so the tracked values would restore the default collation;
//! 3. every other tracked system variable, `SET SESSION name = value` (numbers bare, everything
//!    else a string literal); a variable the new server refuses is skipped and reported;
//! 4. user variables read from the old backend at migration time, in one `SET @a = …, @b = …`
//!    with their types: integers and decimals as exact literals, unsigned integers as
//!    `CAST(n AS UNSIGNED)`, doubles as `…e0`, strings as `_charset X'…' COLLATE collation`
//!    (the exact bytes), a NULL of a numeric type as `CAST(NULL AS …)`, other NULLs as NULL;
//! 5. each prepared statement, COM_STMT_PREPARE of the text the client prepared (the new ids are
//!    mapped to the client's);
//! 6. each SQL prepared statement, `PREPARE \`name\` FROM X'…'`, after the user variables
//!    (`EXECUTE … USING` may name them): a hex literal carries the exact bytes whatever
//!    `NO_BACKSLASH_ESCAPES` or the character set (MariaDB prepares them as they are, as it does
//!    a string literal's when `character_set_client` and `character_set_connection` agree);
//! 7. `SELECT LAST_INSERT_ID(n)` (its result set is not relayed).
//!
//! The old session is read with [`old_session_query`] (character sets and user variables in one
//! query). User variables come from MariaDB's
//! `information_schema.USER_VARIABLES` (the `user_variables` plugin, built in since 10.2.6), or
//! MySQL's `performance_schema.user_variables_by_thread`, which has no types (values come back
//! as binary strings there, exact). MariaDB's table is utf8mb3 (4-byte characters read back as
//! `?`, binary bytes mangled) and converted to `character_set_results`, and it has no
//! collation: the names and types come from it, then each string variable's exact bytes and
//! collation from a second query, [`string_values_query`] (`CAST(@v AS BINARY)`, never
//! converted, and `COLLATION(@v)`).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::wire::Command;

use super::fixup::{self, ConnState};
use super::pin::{PreparedText, Tracker};
use super::sql::{is_integer, is_number, push_hex_literal, push_identifier, push_string_literal};
use crate::session::SessionState;

/// ferry's session tracking, run on every backend connection of a `replay` session.
pub(crate) const TRACKING_SETUP: &[u8] =
    b"SET session_track_system_variables='*', session_track_schema=1, session_track_state_change=1";

/// Variables replay leaves alone: ferry's own tracking, and what the current database implies.
pub(super) const NOT_REPLAYED: &[&str] = &[
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
    "session_track_transaction_info",
    "session_track_gtids",
    "character_set_database",
    "collation_database",
];

pub(super) const CHARSET_VARIABLES: [&str; 4] = [
    "character_set_client",
    "character_set_results",
    "character_set_connection",
    "collation_connection",
];

/// The type of a user variable, as `VARIABLE_TYPE` names it (MariaDB 10.11: `INT`,
/// `INT UNSIGNED`, `DECIMAL`, `DOUBLE`, `VARCHAR`; a NULL keeps the type it was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserVarType {
    /// `INT`.
    Int,
    /// `INT UNSIGNED`: a literal above `i64::MAX` is unsigned by itself, a smaller one is not.
    UnsignedInt,
    /// `DECIMAL`.
    Decimal,
    /// `DOUBLE`.
    Double,
    /// `VARCHAR` (any string, binary included).
    String,
}

/// The connection's character set variables, read live on the old backend, in
/// [`CHARSET_VARIABLES`] order (client, results, connection, collation); `None` is SQL NULL
/// (`character_set_results` may be).
pub type Charsets = [Option<Vec<u8>>; 4];

/// What the old backend reported at migration time (`replay` mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OldSession {
    /// The live character set variables (`None` when they were not read).
    pub(crate) charsets: Option<Charsets>,
    /// The user variables.
    pub(crate) user_vars: Vec<UserVar>,
}

/// A user variable read from a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserVar {
    /// The name, without `@`.
    pub name: Vec<u8>,
    /// The value as text (a string's exact bytes); `None`: NULL.
    pub value: Option<Vec<u8>>,
    /// The type.
    pub kind: UserVarType,
    /// `CHARACTER_SET_NAME` of a MariaDB variable (`None` on MySQL: a string is written binary).
    pub charset: Option<Vec<u8>>,
    /// `COLLATION(@v)` of a string (read by [`string_values_query`]).
    pub collation: Option<Vec<u8>>,
}

/// One replay statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// [`TRACKING_SETUP`].
    Tracking,
    /// `SET NAMES`.
    Names {
        charset: Vec<u8>,
        collation: Option<Vec<u8>>,
    },
    /// COM_INIT_DB: the schema.
    InitDb(Vec<u8>),
    /// `SET SESSION name = value` (`None`: NULL); `required` ones fail the migration if refused.
    Variable {
        name: Vec<u8>,
        value: Option<Vec<u8>>,
        required: bool,
    },
    /// `SET SESSION name = DEFAULT` (skippable).
    ResetVariable { name: Vec<u8> },
    /// `SET @a = …, …`.
    UserVariables(Vec<UserVar>),
    /// `SET @a = CAST(NULL AS BINARY), …`: reads as a variable never set (a plain `NULL` would
    /// keep the variable's type and collation).
    ClearUserVariables(Vec<Vec<u8>>),
    /// COM_STMT_PREPARE of the client's statement.
    Prepare { client_id: u32, sql: Box<[u8]> },
    /// `PREPARE name FROM X'…'`: a SQL prepared statement.
    SqlPrepare { name: Box<[u8]>, sql: Box<[u8]> },
    /// `DEALLOCATE PREPARE name`.
    SqlDeallocate { name: Box<[u8]> },
    /// `SELECT LAST_INSERT_ID(n)`.
    LastInsertId(u64),
    /// COM_PING: a pooled connection idle for a while is alive.
    Ping,
}

impl Item {
    /// The command payload (command byte first). `no_backslash_escapes`: the new backend's
    /// current `SERVER_STATUS_NO_BACKSLASH_ESCAPES`. `Err` names what cannot be written safely.
    pub(crate) fn payload(&self, no_backslash_escapes: bool) -> Result<Bytes, String> {
        let mut out = vec![Command::COM_QUERY];
        match self {
            Item::Tracking => out.extend_from_slice(TRACKING_SETUP),
            Item::Names { charset, collation } => {
                out.extend_from_slice(b"SET NAMES ");
                push_string_literal(&mut out, charset, no_backslash_escapes);
                if let Some(c) = collation {
                    out.extend_from_slice(b" COLLATE ");
                    push_string_literal(&mut out, c, no_backslash_escapes);
                }
            }
            Item::InitDb(schema) => {
                out[0] = Command::COM_INIT_DB;
                out.extend_from_slice(schema);
            }
            Item::Variable { name, value, .. } => {
                push_set_session(&mut out, name)?;
                match value {
                    None => out.extend_from_slice(b"NULL"),
                    Some(v) if is_number(v) => out.extend_from_slice(v),
                    Some(v) => push_string_literal(&mut out, v, no_backslash_escapes),
                }
            }
            Item::ResetVariable { name } => {
                push_set_session(&mut out, name)?;
                out.extend_from_slice(b"DEFAULT");
            }
            Item::UserVariables(vars) => {
                out.extend_from_slice(b"SET ");
                for (i, var) in vars.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.push(b'@');
                    push_identifier(&mut out, &var.name);
                    out.extend_from_slice(b" = ");
                    push_user_value(&mut out, var)?;
                }
            }
            Item::ClearUserVariables(names) => {
                out.extend_from_slice(b"SET ");
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.push(b'@');
                    push_identifier(&mut out, name);
                    out.extend_from_slice(b" = CAST(NULL AS BINARY)");
                }
            }
            Item::Prepare { sql, .. } => {
                out[0] = Command::COM_STMT_PREPARE;
                out.extend_from_slice(sql);
            }
            Item::SqlPrepare { name, sql } => {
                out.extend_from_slice(b"PREPARE ");
                push_identifier(&mut out, name);
                out.extend_from_slice(b" FROM ");
                push_hex_literal(&mut out, sql);
            }
            Item::SqlDeallocate { name } => {
                out.extend_from_slice(b"DEALLOCATE PREPARE ");
                push_identifier(&mut out, name);
            }
            Item::LastInsertId(id) => {
                out.extend_from_slice(format!("SELECT LAST_INSERT_ID({id})").as_bytes())
            }
            Item::Ping => out[0] = Command::COM_PING,
        }
        Ok(Bytes::from(out))
    }

    /// A refused optional variable is skipped rather than failing the migration.
    pub(crate) fn skippable(&self) -> bool {
        matches!(
            self,
            Item::Variable {
                required: false,
                ..
            } | Item::ResetVariable { .. }
        )
    }

    /// What the statement restores, for failure reports and the skipped list.
    pub(crate) fn label(&self) -> String {
        match self {
            Item::Tracking => "session tracking".into(),
            Item::InitDb(_) => "schema".into(),
            Item::Names { .. } => "SET NAMES".into(),
            Item::Variable { name, .. } | Item::ResetVariable { name } => {
                String::from_utf8_lossy(name).into_owned()
            }
            Item::UserVariables(_) | Item::ClearUserVariables(_) => "user variables".into(),
            Item::Prepare { client_id, .. } => format!("prepared statement {client_id}"),
            Item::SqlPrepare { name, .. } => {
                format!("SQL prepared statement {}", String::from_utf8_lossy(name))
            }
            Item::SqlDeallocate { name } => format!(
                "deallocating SQL prepared statement {}",
                String::from_utf8_lossy(name)
            ),
            Item::LastInsertId(_) => "LAST_INSERT_ID".into(),
            Item::Ping => "ping".into(),
        }
    }
}

/// True for one of the four character set variables (as the server reports its name).
pub(crate) fn is_charset_variable(name: &[u8]) -> bool {
    CHARSET_VARIABLES
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
}

/// True when the client changed the character set (a tracked report of any of the four
/// variables): the old session must then be read, and the character set replayed.
pub(crate) fn charsets_changed(state: &SessionState) -> bool {
    CHARSET_VARIABLES
        .iter()
        .any(|n| state.variables.contains_key(n.as_bytes()))
}

/// `SET SESSION name = ` (the name checked: it is spliced raw).
fn push_set_session(out: &mut Vec<u8>, name: &[u8]) -> Result<(), String> {
    if !is_variable_name(name) {
        return Err(format!(
            "variable name {:?} is not a plain identifier",
            String::from_utf8_lossy(name)
        ));
    }
    out.extend_from_slice(b"SET SESSION ");
    out.extend_from_slice(name);
    out.extend_from_slice(b" = ");
    Ok(())
}

fn is_variable_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn push_user_value(out: &mut Vec<u8>, var: &UserVar) -> Result<(), String> {
    let Some(value) = &var.value else {
        out.extend_from_slice(match var.kind {
            UserVarType::Int => b"CAST(NULL AS SIGNED)",
            UserVarType::UnsignedInt => b"CAST(NULL AS UNSIGNED)",
            UserVarType::Decimal => b"CAST(NULL AS DECIMAL)",
            UserVarType::Double => b"CAST(NULL AS DOUBLE)",
            // A plain NULL is what a string NULL reads back as (VARCHAR, binary).
            UserVarType::String => b"NULL",
        });
        return Ok(());
    };
    let bad = |what: &str| {
        format!(
            "user variable @{} holds a {what} ferry cannot write exactly: {:?}",
            String::from_utf8_lossy(&var.name),
            String::from_utf8_lossy(value)
        )
    };
    match var.kind {
        UserVarType::Int if is_integer(value) => out.extend_from_slice(value),
        UserVarType::UnsignedInt if is_integer(value) && !value.starts_with(b"-") => {
            out.extend_from_slice(b"CAST(");
            out.extend_from_slice(value);
            out.extend_from_slice(b" AS UNSIGNED)");
        }
        UserVarType::Decimal if is_number(value) && !value.contains(&b'e') => {
            out.extend_from_slice(value)
        }
        UserVarType::Double if is_number(value) => {
            out.extend_from_slice(value);
            if !value.iter().any(|&b| b == b'e' || b == b'E') {
                // An approximate-value literal keeps the DOUBLE type.
                out.extend_from_slice(b"e0");
            }
        }
        UserVarType::Int => return Err(bad("integer")),
        UserVarType::UnsignedInt => return Err(bad("unsigned integer")),
        UserVarType::Decimal => return Err(bad("decimal")),
        UserVarType::Double => return Err(bad("double")),
        UserVarType::String => {
            let charset = var.charset.as_deref().filter(|cs| is_charset_name(cs));
            match charset {
                Some(cs) => {
                    out.push(b'_');
                    out.extend_from_slice(&cs.to_ascii_lowercase());
                    out.push(b' ');
                }
                None => out.extend_from_slice(b"_binary "),
            }
            push_hex_literal(out, value);
            // `binary` is a keyword there, and the only collation of `_binary`.
            let collation = var.collation.as_deref().filter(|c| {
                charset.is_some() && is_charset_name(c) && !c.eq_ignore_ascii_case(b"binary")
            });
            if let Some(c) = collation {
                out.extend_from_slice(b" COLLATE ");
                out.extend_from_slice(&c.to_ascii_lowercase());
            }
        }
    }
    Ok(())
}

/// A character set or collation name ferry writes bare: letters, digits, `_`.
fn is_charset_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// True for a variable [`string_values_query`] reads: a MariaDB string (its character set is
/// known; MySQL's values are exact already) that is not NULL.
fn needs_exact_value(var: &UserVar) -> bool {
    var.kind == UserVarType::String && var.value.is_some() && var.charset.is_some()
}

/// The query that reads the exact bytes and collation of each string variable that
/// [`parse_old_session`] returned (MariaDB): one row per variable, `index, CAST(@v AS BINARY),
/// COLLATION(@v)`, the index into `vars` first. `None` when there is none to read.
pub(crate) fn string_values_query(vars: &[UserVar]) -> Option<Bytes> {
    let mut out = vec![Command::COM_QUERY];
    for (i, var) in vars
        .iter()
        .enumerate()
        .filter(|(_, v)| needs_exact_value(v))
    {
        if out.len() > 1 {
            out.extend_from_slice(b" UNION ALL ");
        }
        out.extend_from_slice(format!("SELECT {i}, CAST(@").as_bytes());
        push_identifier(&mut out, &var.name);
        out.extend_from_slice(b" AS BINARY), COLLATION(@");
        push_identifier(&mut out, &var.name);
        out.push(b')');
    }
    (out.len() > 1).then(|| Bytes::from(out))
}

/// Puts the rows of [`string_values_query`] into `vars`. Every variable it asked for must come
/// back with a value (a name USER_VARIABLES showed with `?` for a 4-byte character does not
/// name the variable, for one).
pub(crate) fn apply_string_values(
    vars: &mut [UserVar],
    rows: &[Vec<Option<Vec<u8>>>],
) -> Result<(), String> {
    let mut read = vec![false; vars.len()];
    for row in rows {
        let [Some(index), value, collation] = row.as_slice() else {
            return Err("unexpected row shape reading user variable values".into());
        };
        let i = std::str::from_utf8(index)
            .ok()
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| vars.get(i).is_some_and(needs_exact_value))
            .ok_or("unexpected row reading user variable values")?;
        let var = &mut vars[i];
        let Some(value) = value else {
            return Err(format!(
                "user variable @{} could not be read exactly",
                String::from_utf8_lossy(&var.name)
            ));
        };
        var.value = Some(value.clone());
        var.collation = collation.clone();
        read[i] = true;
    }
    let missing = vars
        .iter()
        .zip(read)
        .any(|(v, read)| needs_exact_value(v) && !read);
    if missing {
        return Err("user variable values missing".into());
    }
    Ok(())
}

/// The query that reads the old session: the four [`CHARSET_VARIABLES`], then a user
/// variable's name, value, type and character set. The LEFT JOIN returns one row (user-variable
/// columns NULL) when there are none, so the character sets always come back.
pub(crate) fn old_session_query(server_version: &str) -> Bytes {
    let sql: &[u8] = if server_version.contains("MariaDB") {
        b"SELECT @@character_set_client, @@character_set_results, @@character_set_connection, \
          @@collation_connection, u.VARIABLE_NAME, u.VARIABLE_VALUE, u.VARIABLE_TYPE, \
          u.CHARACTER_SET_NAME FROM (SELECT 1) AS one \
          LEFT JOIN information_schema.USER_VARIABLES AS u ON 1"
    } else {
        b"SELECT @@character_set_client, @@character_set_results, @@character_set_connection, \
          @@collation_connection, u.VARIABLE_NAME, u.VARIABLE_VALUE, NULL, NULL \
          FROM (SELECT 1) AS one \
          LEFT JOIN performance_schema.user_variables_by_thread AS u \
          ON u.THREAD_ID = PS_CURRENT_THREAD_ID()"
    };
    let mut out = vec![Command::COM_QUERY];
    out.extend_from_slice(sql);
    Bytes::from(out)
}

/// The character sets and user variables in the rows [`old_session_query`] returned.
pub(crate) fn parse_old_session(rows: &[Vec<Option<Vec<u8>>>]) -> Result<OldSession, String> {
    let mut vars = Vec::with_capacity(rows.len());
    let mut charsets = None;
    for row in rows {
        let [client, results, connection, collation, name, value, kind, charset] = row.as_slice()
        else {
            return Err("unexpected row shape reading the session".into());
        };
        charsets = Some([client, results, connection, collation].map(Clone::clone));
        let Some(name) = name else {
            // The LEFT JOIN's row when there are no user variables.
            continue;
        };
        let kind = match kind.as_deref().map(|k| k.to_ascii_uppercase()) {
            Some(k) if k == b"INT" || k == b"INTEGER" => UserVarType::Int,
            Some(k) if k == b"INT UNSIGNED" => UserVarType::UnsignedInt,
            Some(k) if k == b"DECIMAL" => UserVarType::Decimal,
            Some(k) if k == b"DOUBLE" || k == b"REAL" => UserVarType::Double,
            _ => UserVarType::String,
        };
        vars.push(UserVar {
            name: name.clone(),
            value: value.clone(),
            kind,
            charset: charset.clone(),
            collation: None,
        });
    }
    if charsets.is_none() {
        return Err("no row reading the session".into());
    }
    Ok(OldSession {
        charsets,
        user_vars: vars,
    })
}

/// The statements that rebuild `state` on a new backend, in order: ferry's tracking, then the
/// fix-up from a fresh connection's state (the login carried the schema), with the protocol
/// prepared statements in their place.
pub(crate) fn plan(state: &SessionState, tracker: &Tracker, old: OldSession) -> VecDeque<Item> {
    let to = ConnState::of_session(state, tracker, old);
    let fresh = ConnState {
        schema: to.schema.clone(),
        ..ConnState::default()
    };
    let statements = tracker.statement_sql.iter().map(|(id, t)| (*id, t));
    let prepare = prepare_items(statements, to.schema.as_deref());
    // Reachable from a fresh connection: same schema, and its character sets are the login's.
    let mut items = match fixup::plan_items(&fresh, &to, prepare) {
        Ok(items) => items,
        Err(_) => unreachable!("a fresh connection reaches every session state"),
    };
    items.push_front(Item::Tracking);
    items
}

/// COM_STMT_PREPARE of each statement, each in the schema it was first prepared in (MariaDB
/// binds the schema at prepare: `SELECT * FROM t` prepared in `a` reads `a.t` after `USE b`),
/// the connection going back to `schema` (the session's) after them. Without a schema to go back
/// to (no statement switches to `None`), they are prepared in the current one.
pub(crate) fn prepare_items<'a>(
    statements: impl IntoIterator<Item = (u32, &'a PreparedText)>,
    schema: Option<&[u8]>,
) -> Vec<Item> {
    let mut statements: Vec<_> = statements.into_iter().collect();
    let own = |t: &PreparedText| -> Option<Box<[u8]>> {
        schema
            .and(t.schema.clone())
            .filter(|s| Some(&**s) != schema)
    };
    // Those of the session's schema first, then grouped by schema: one switch per schema.
    statements.sort_by(|(a, ta), (b, tb)| own(ta).cmp(&own(tb)).then(a.cmp(b)));
    let mut items = Vec::new();
    let mut current: Option<Box<[u8]>> = None;
    for (client_id, text) in statements {
        let wanted = own(text);
        if wanted.is_some() && wanted != current {
            items.push(Item::InitDb(wanted.as_deref().unwrap_or_default().to_vec()));
        }
        current = wanted;
        items.push(Item::Prepare {
            client_id,
            sql: text.sql.clone(),
        });
    }
    if let (Some(_), Some(back)) = (current, schema) {
        items.push(Item::InitDb(back.to_vec()));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::super::pin::PreparedText;
    use super::*;

    fn sql(item: &Item) -> String {
        let p = item.payload(false).unwrap();
        String::from_utf8(p[1..].to_vec()).unwrap()
    }

    #[test]
    fn variables_are_quoted_by_kind() {
        let v = |name: &str, value: &str| Item::Variable {
            name: name.into(),
            value: Some(value.into()),
            required: false,
        };
        assert_eq!(
            sql(&v("time_zone", "+02:00")),
            "SET SESSION time_zone = '+02:00'"
        );
        assert_eq!(
            sql(&v("max_execution_time", "1000")),
            "SET SESSION max_execution_time = 1000"
        );
        assert_eq!(sql(&v("sql_mode", "")), "SET SESSION sql_mode = ''");
        assert_eq!(sql(&v("x", "it's")), "SET SESSION x = 'it''s'");
        assert!(
            v("x; DROP", "1").payload(false).is_err(),
            "names are never spliced raw"
        );
        let backslash = v("lc", "a\\b");
        assert_eq!(sql(&backslash), "SET SESSION lc = 'a\\\\b'");
        let p = backslash.payload(true).unwrap();
        assert_eq!(&p[1..], b"SET SESSION lc = 'a\\b'", "NO_BACKSLASH_ESCAPES");
        let null = Item::Variable {
            name: b"character_set_results".to_vec(),
            value: None,
            required: true,
        };
        assert_eq!(sql(&null), "SET SESSION character_set_results = NULL");
    }

    /// Rows as [`old_session_query`] returns them: the character sets, then each variable.
    fn session_rows(vars: Vec<Vec<Option<Vec<u8>>>>) -> Vec<Vec<Option<Vec<u8>>>> {
        let charsets = ["utf8mb4", "utf8mb4", "utf8mb4", "utf8mb4_unicode_ci"]
            .map(|c| Some(c.as_bytes().to_vec()));
        if vars.is_empty() {
            return vec![charsets
                .into_iter()
                .chain([None, None, None, None])
                .collect()];
        }
        vars.into_iter()
            .map(|v| charsets.iter().cloned().chain(v).collect())
            .collect()
    }

    #[test]
    fn user_variables_keep_their_types() {
        let rows = vec![
            vec![
                Some(b"i".to_vec()),
                Some(b"-42".to_vec()),
                Some(b"INT".to_vec()),
                Some(b"latin1".to_vec()),
            ],
            vec![
                Some(b"d".to_vec()),
                Some(b"3.14".to_vec()),
                Some(b"DECIMAL".to_vec()),
                None,
            ],
            vec![
                Some(b"f".to_vec()),
                Some(b"2.5".to_vec()),
                Some(b"DOUBLE".to_vec()),
                None,
            ],
            vec![
                Some(b"s".to_vec()),
                Some("é'x".as_bytes().to_vec()),
                Some(b"VARCHAR".to_vec()),
                Some(b"utf8mb4".to_vec()),
            ],
            vec![
                Some(b"n".to_vec()),
                None,
                Some(b"VARCHAR".to_vec()),
                Some(b"binary".to_vec()),
            ],
        ];
        let old = parse_old_session(&session_rows(rows)).unwrap();
        assert_eq!(
            sql(&Item::UserVariables(old.user_vars)),
            "SET @`i` = -42, @`d` = 3.14, @`f` = 2.5e0, @`s` = _utf8mb4 X'C3A92778', @`n` = NULL"
        );
        let bad = UserVar {
            name: b"x".to_vec(),
            value: Some(b"1; DROP TABLE t".to_vec()),
            kind: UserVarType::Int,
            charset: None,
            collation: None,
        };
        assert!(Item::UserVariables(vec![bad]).payload(false).is_err());
        let nameless = session_rows(vec![vec![None, Some(b"1".to_vec()), None, None]]);
        assert_eq!(parse_old_session(&nameless).unwrap().user_vars, vec![]);
        assert!(parse_old_session(&[vec![None, None, None, None]]).is_err());
        assert!(
            parse_old_session(&[]).is_err(),
            "the LEFT JOIN always gives a row"
        );
    }

    #[test]
    fn unsigned_integers_and_typed_nulls_keep_their_types() {
        // What MariaDB 10.11 reports for `SET @u = 18446744073709551615, @five =
        // CAST(5 AS UNSIGNED), @ni = CAST(NULL AS SIGNED), …`.
        let rows: Vec<Vec<Option<Vec<u8>>>> = [
            ["u", "18446744073709551615", "INT UNSIGNED", "latin1"],
            ["five", "5", "INT UNSIGNED", "latin1"],
            ["ni", "NULL", "INT", "latin1"],
            ["nu", "NULL", "INT UNSIGNED", "latin1"],
            ["nd", "NULL", "DECIMAL", "latin1"],
            ["nf", "NULL", "DOUBLE", "latin1"],
            ["ns", "NULL", "VARCHAR", "binary"],
        ]
        .into_iter()
        .map(|r| {
            let mut row: Vec<_> = r.iter().map(|c| Some(c.as_bytes().to_vec())).collect();
            if r[1] == "NULL" {
                row[1] = None;
            }
            row
        })
        .collect();
        let vars = parse_old_session(&session_rows(rows)).unwrap().user_vars;
        assert_eq!(string_values_query(&vars), None, "no string to read");
        assert_eq!(
            sql(&Item::UserVariables(vars)),
            "SET @`u` = CAST(18446744073709551615 AS UNSIGNED), @`five` = CAST(5 AS UNSIGNED), \
             @`ni` = CAST(NULL AS SIGNED), @`nu` = CAST(NULL AS UNSIGNED), \
             @`nd` = CAST(NULL AS DECIMAL), @`nf` = CAST(NULL AS DOUBLE), @`ns` = NULL"
        );
        let negative = UserVar {
            name: b"x".to_vec(),
            value: Some(b"-1".to_vec()),
            kind: UserVarType::UnsignedInt,
            charset: None,
            collation: None,
        };
        assert!(Item::UserVariables(vec![negative]).payload(false).is_err());
    }

    #[test]
    fn string_values_are_read_exactly_with_their_collation() {
        // As USER_VARIABLES shows them: 4-byte characters as '?', binary bytes mangled.
        let rows = session_rows(
            [
                ["i", "1", "INT", "latin1"],
                ["emoji", "zo\u{eb} ?", "VARCHAR", "utf8mb4"],
                ["bin", "\0?", "VARCHAR", "binary"],
                ["n", "", "VARCHAR", "binary"],
                ["we`ird", "x", "VARCHAR", "latin1"],
            ]
            .into_iter()
            .map(|r| {
                let mut row: Vec<_> = r.iter().map(|c| Some(c.as_bytes().to_vec())).collect();
                if r[0] == "n" {
                    row[1] = None;
                }
                row
            })
            .collect(),
        );
        let mut vars = parse_old_session(&rows).unwrap().user_vars;
        let query = string_values_query(&vars).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&query[1..]),
            "SELECT 1, CAST(@`emoji` AS BINARY), COLLATION(@`emoji`) UNION ALL \
             SELECT 2, CAST(@`bin` AS BINARY), COLLATION(@`bin`) UNION ALL \
             SELECT 4, CAST(@`we``ird` AS BINARY), COLLATION(@`we``ird`)"
        );
        let answer = |i: &str, v: &[u8], c: &str| {
            vec![
                Some(i.as_bytes().to_vec()),
                Some(v.to_vec()),
                Some(c.as_bytes().to_vec()),
            ]
        };
        let values = vec![
            answer("1", "zoë 😀".as_bytes(), "utf8mb4_unicode_ci"),
            answer("2", &[0, 0xFF], "binary"),
            answer("4", b"x", "latin1_bin"),
        ];
        let mut missing = vars.clone();
        assert!(apply_string_values(&mut missing, &values[..2]).is_err());
        let mut null = values.clone();
        null[0][1] = None;
        assert!(apply_string_values(&mut vars.clone(), &null).is_err());
        let mut wrong = values.clone();
        wrong[0][0] = Some(b"0".to_vec());
        assert!(
            apply_string_values(&mut vars.clone(), &wrong).is_err(),
            "an INT is not read"
        );
        apply_string_values(&mut vars, &values).unwrap();
        assert_eq!(
            sql(&Item::UserVariables(vars)),
            "SET @`i` = 1, @`emoji` = _utf8mb4 X'7A6FC3AB20F09F9880' COLLATE utf8mb4_unicode_ci, \
             @`bin` = _binary X'00FF', @`n` = NULL, @`we``ird` = _latin1 X'78' COLLATE latin1_bin"
        );
        // MySQL: values are exact already (no character set column), nothing more to read.
        let mysql = UserVar {
            name: b"s".to_vec(),
            value: Some(b"x".to_vec()),
            kind: UserVarType::String,
            charset: None,
            collation: None,
        };
        assert_eq!(string_values_query(&[mysql]), None);
    }

    #[test]
    fn the_old_session_query_reads_charsets_and_user_variables_in_one_row_set() {
        let old = parse_old_session(&session_rows(vec![])).unwrap();
        assert_eq!(old.user_vars, vec![]);
        assert_eq!(
            old.charsets.unwrap()[3].as_deref(),
            Some(&b"utf8mb4_unicode_ci"[..]),
            "collation_connection read live"
        );
        let mariadb = old_session_query("10.11.19-MariaDB-0+deb12u1");
        let text = String::from_utf8_lossy(&mariadb[1..]);
        assert!(text.starts_with(
            "SELECT @@character_set_client, @@character_set_results, \
             @@character_set_connection, @@collation_connection, u.VARIABLE_NAME"
        ));
        assert!(text.contains("LEFT JOIN information_schema.USER_VARIABLES"));
        let mysql = old_session_query("8.0.36");
        assert!(String::from_utf8_lossy(&mysql).contains("user_variables_by_thread"));
    }

    fn charset_state(vars: &[(&str, &str)]) -> SessionState {
        let mut state = SessionState::default();
        for (k, v) in vars {
            state
                .variables
                .insert(k.as_bytes().into(), v.as_bytes().into());
        }
        state
    }

    fn plan_sql(state: &SessionState, old: OldSession) -> Vec<String> {
        plan(state, &Tracker::default(), old)
            .iter()
            .skip(1)
            .map(sql)
            .collect()
    }

    #[test]
    fn set_names_replays_the_live_collation() {
        // What MariaDB reports after `SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci`: no
        // collation_connection.
        let state = charset_state(&[
            ("character_set_client", "utf8mb4"),
            ("character_set_connection", "utf8mb4"),
            ("character_set_results", "utf8mb4"),
        ]);
        assert!(charsets_changed(&state));
        assert!(!charsets_changed(&charset_state(&[("sql_mode", "")])));
        let old = parse_old_session(&session_rows(vec![])).unwrap();
        assert_eq!(
            plan_sql(&state, old),
            vec!["SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"]
        );
        // Without a live read, only what was tracked (the default collation).
        assert_eq!(
            plan_sql(&state, OldSession::default()),
            vec!["SET NAMES 'utf8mb4'"]
        );
        // Nothing changed: nothing replayed, whatever was read.
        let old = parse_old_session(&session_rows(vec![])).unwrap();
        assert_eq!(
            plan_sql(&SessionState::default(), old),
            Vec::<String>::new()
        );
    }

    #[test]
    fn differing_charsets_replay_four_live_variables_collation_last() {
        // `SET collation_connection = utf8mb4_bin` (reported) then `SET NAMES latin1` (reports
        // the three charsets, not the collation): the tracked collation is stale.
        let state = charset_state(&[
            ("collation_connection", "utf8mb4_bin"),
            ("character_set_client", "latin1"),
            ("character_set_connection", "latin1"),
            ("character_set_results", "latin1"),
        ]);
        let live = |v: [Option<&str>; 4]| OldSession {
            charsets: Some(v.map(|c| c.map(|c| c.as_bytes().to_vec()))),
            user_vars: vec![],
        };
        let names = [Some("latin1"); 3];
        assert_eq!(
            plan_sql(
                &state,
                live([names[0], names[1], names[2], Some("latin1_swedish_ci")])
            ),
            vec!["SET NAMES 'latin1' COLLATE 'latin1_swedish_ci'"]
        );
        assert_eq!(
            plan_sql(
                &state,
                live([Some("utf8mb4"), None, Some("latin1"), Some("latin1_bin")])
            ),
            vec![
                "SET SESSION character_set_client = 'utf8mb4'",
                "SET SESSION character_set_results = NULL",
                "SET SESSION character_set_connection = 'latin1'",
                "SET SESSION collation_connection = 'latin1_bin'",
            ]
        );
    }

    #[test]
    fn plan_orders_names_variables_user_vars_statements_last_insert_id() {
        let mut state = SessionState::default();
        for (k, v) in [
            ("character_set_client", "latin1"),
            ("character_set_connection", "latin1"),
            ("character_set_results", "latin1"),
            ("collation_connection", "latin1_swedish_ci"),
            ("sql_mode", "ANSI_QUOTES"),
            ("session_track_schema", "ON"),
            ("character_set_database", "utf8mb4"),
        ] {
            state.variables.insert(k.into(), v.into());
        }
        let mut tracker = Tracker::default();
        tracker
            .statement_sql
            .insert(9, PreparedText::new(b"SELECT ?"));
        tracker
            .statement_sql
            .insert(2, PreparedText::new(b"SELECT 2"));
        for sql in [
            "PREPARE `Zed` FROM 'SELECT ''é'', ?'",
            "PREPARE a FROM 'SELECT 1'",
            "PREPARE unknown FROM @q",
        ] {
            let mut payload = vec![Command::COM_QUERY];
            payload.extend_from_slice(sql.as_bytes());
            tracker.on_command(&Bytes::from(payload));
            let ok = crate::backend::ResponseSummary::blank(Command::COM_QUERY, Default::default());
            tracker.on_response(&ok, None, true);
        }
        tracker.last_insert_id = 77;
        let items: Vec<String> = plan(&state, &tracker, OldSession::default())
            .iter()
            .map(|i| {
                let p = i.payload(false).unwrap();
                format!("{:02X}:{}", p[0], String::from_utf8_lossy(&p[1..]))
            })
            .collect();
        assert_eq!(
            items,
            vec![
                format!("03:{}", String::from_utf8_lossy(TRACKING_SETUP)),
                "03:SET NAMES 'latin1' COLLATE 'latin1_swedish_ci'".into(),
                "03:SET SESSION sql_mode = 'ANSI_QUOTES'".into(),
                "16:SELECT 2".into(),
                "16:SELECT ?".into(),
                "03:PREPARE `zed` FROM X'53454C4543542027C3A9272C203F'".into(),
                "03:PREPARE `a` FROM X'53454C4543542031'".into(),
                "03:SELECT LAST_INSERT_ID(77)".into(),
            ]
        );
    }

    #[test]
    fn sql_statements_are_prepared_from_their_exact_bytes() {
        let item = Item::SqlPrepare {
            name: b"we`ird"[..].into(),
            sql: b"SELECT '\\\0\xff'"[..].into(),
        };
        for no_backslash_escapes in [false, true] {
            assert_eq!(
                &item.payload(no_backslash_escapes).unwrap()[..],
                b"\x03PREPARE `we``ird` FROM X'53454C45435420275C00FF27'"
            );
        }
        assert_eq!(item.label(), "SQL prepared statement we`ird");
        assert!(!item.skippable());
    }

    #[test]
    fn statements_are_prepared_in_their_own_schema_and_the_connection_goes_back() {
        let text = |sql: &[u8], schema: Option<&[u8]>| {
            let mut t = PreparedText::new(sql);
            t.schema = schema.map(Into::into);
            t
        };
        let (a, b, c) = (
            text(b"SELECT * FROM t", Some(b"a")),
            text(b"SELECT 2", Some(b"b")),
            text(b"SELECT 3", None),
        );
        let items = prepare_items([(1, &a), (2, &b), (3, &c)], Some(b"b"));
        let shown: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::InitDb(s) => format!("USE {}", String::from_utf8_lossy(s)),
                Item::Prepare { client_id, .. } => format!("PREPARE {client_id}"),
                other => other.label(),
            })
            .collect();
        assert_eq!(
            shown,
            ["PREPARE 2", "PREPARE 3", "USE a", "PREPARE 1", "USE b"]
        );
        // No schema to go back to: all in the current one.
        let items = prepare_items([(1, &a)], None);
        assert!(matches!(items[..], [Item::Prepare { client_id: 1, .. }]));
    }
}
