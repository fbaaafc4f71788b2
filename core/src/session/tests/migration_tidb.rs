//! `tidb` mode against a small in-test TiDB-style server built on the frontend role: it accepts
//! token logins checked by [`CertStore`] and answers SHOW/SET SESSION_STATES. (The full TiDB
//! test server for integration tests lives in `tests/`.)

use std::time::SystemTime;

use super::migration::{migration_config, ok_with, Mig, Server};
use super::*;
use crate::token::CertStore;

const CERT_A: &[u8] = include_bytes!("../../token/testdata/a_cert.pem");
const KEY_A: &[u8] = include_bytes!("../../token/testdata/a_key.pem");
const CERT_B: &[u8] = include_bytes!("../../token/testdata/b_cert.pem");
const KEY_B: &[u8] = include_bytes!("../../token/testdata/b_key.pem");

/// The states the in-test server reports: a quote and a backslash to escape.
const STATES: &str = r#"{"current-db":"shop","sys-vars":{"sql_mode":"it's \\ ok"}}"#;

/// What a tidb in-test server does.
#[derive(Clone)]
pub(super) struct TidbScript {
    store: CertStore,
    /// The wall clock of the servers (signing and validating).
    time: SystemTime,
    /// `SHOW SESSION_STATES` returns a NULL token.
    null_token: bool,
}

fn store(cert: &[u8], key: &[u8], time: SystemTime) -> CertStore {
    let mut s = CertStore::new();
    s.load(time, cert, key).unwrap();
    s
}

/// A `tidb` session on db1 whose servers sign with certificate A; db2 verifies with `db2_cert`.
fn tidb_mig(db2_cert: (&[u8], &[u8]), null_token: bool) -> Mig {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut mig = Mig::new(migration_config(MigrationMode::Tidb));
    let mut config = FrontendConfig::new(AuthMode::Passthrough);
    config.capabilities =
        default_capabilities() | Capabilities::SESSION_TRACK | Capabilities::LOCAL_FILES;
    config.server_version = "8.0.11-TiDB-v7.5.0".into();
    let config = Arc::new(config);
    for name in ["db1", "db2"] {
        mig.server_configs.insert(name.into(), config.clone());
        let (cert, key) = if name == "db2" {
            db2_cert
        } else {
            (CERT_A, KEY_A)
        };
        let script = mig.scripts.get_mut(name).unwrap();
        script.tidb = Some(TidbScript {
            store: store(cert, key, time),
            time,
            null_token,
        });
    }
    mig.login();
    mig
}

/// The login of a tidb in-test server: a token is checked; anything else is let in (the test
/// server does not check passwords).
pub(super) fn tidb_login(server: &mut Server, now: Instant, login: frontend::ClientLogin) {
    let Some(tidb) = server.script.tidb.clone() else {
        return;
    };
    if login.plugin != Some(AuthPlugin::TidbSessionToken) {
        server.fe.finish_auth(now, Ok(())).unwrap();
        return;
    }
    let result = tidb
        .store
        .validate(tidb.time, &login.auth_response, login.user.as_bytes())
        .map(|_| server.token_login = true)
        .map_err(|e| e.access_denied(login.user.as_bytes(), "10.9.9.9"));
    server.fe.finish_auth(now, result).unwrap();
}

/// SHOW/SET SESSION_STATES; false for other statements.
pub(super) fn tidb_query(server: &mut Server, now: Instant, sql: &str) -> bool {
    let Some(tidb) = server.script.tidb.clone() else {
        return false;
    };
    if sql == "SHOW SESSION_STATES" {
        let user = server.fe.user().unwrap_or_default().to_owned();
        let token = tidb
            .store
            .sign(tidb.time, 0, user.as_bytes(), &mut SeededRandom::new(5))
            .unwrap()
            .to_json();
        let cols = [
            column(b"Session_states", ColumnType::Json),
            column(b"Session_token", ColumnType::Json),
        ];
        let token = (!tidb.null_token).then_some(&token[..]);
        server
            .fe
            .send_text_result(now, &cols, [[Some(STATES.as_bytes()), token]])
            .unwrap();
        true
    } else if sql.starts_with("SET SESSION_STATES ") {
        ok_with(server, now, "restored", vec![], 0);
        true
    } else {
        false
    }
}

#[test]
fn tidb_flow_moves_the_session_with_a_token() {
    let mut mig = tidb_mig((CERT_A, KEY_A), false);
    let id = mig.prepare("SELECT 1");
    assert_eq!(mig.session.pinned(), None);
    assert_eq!(
        mig.session.start_migration(mig.now, "db2".into()),
        Ok(MigrationStart::Started)
    );
    mig.pump();
    assert_eq!(mig.done().map(|d| (d.0, d.1)), Some(("db1", "db2")));
    assert_eq!(
        mig.server("db1").statements().last().unwrap(),
        "SHOW SESSION_STATES"
    );
    let new = mig.server("db2");
    assert!(
        new.token_login,
        "logged in with the token, checked by CertStore"
    );
    assert_eq!(new.fe.user(), Some(USER));
    assert_eq!(
        new.fe.database(),
        Some("shop"),
        "current-db from the states"
    );
    assert_eq!(
        new.statements(),
        vec![
            r#"SET SESSION_STATES '{"current-db":"shop","sys-vars":{"sql_mode":"it\'s \\\\ ok"}}'"#
        ]
    );
    assert!(mig.client_events.is_empty());
    assert_eq!(
        mig.execute(id),
        format!("db2:exec:{id}"),
        "ids kept by the server"
    );
    assert_eq!(mig.query("SELECT 1"), "db2:SELECT 1");
}

#[test]
fn tidb_failures_leave_the_session_on_its_old_backend() {
    type Setup = fn(&mut Mig);
    type Pem = (&'static [u8], &'static [u8]);
    let cases: Vec<(&str, Pem, bool, Setup, &str)> = vec![
        (
            "token signed by an unknown key",
            (CERT_B, KEY_B),
            false,
            |_| {},
            "login_refused",
        ),
        ("NULL token", (CERT_A, KEY_A), true, |_| {}, "old_backend"),
        (
            "SHOW SESSION_STATES ERR",
            (CERT_A, KEY_A),
            false,
            |m| {
                for s in m.servers.values_mut() {
                    s.script.fail.push("SHOW SESSION_STATES");
                }
            },
            "old_backend",
        ),
        (
            "SET SESSION_STATES ERR",
            (CERT_A, KEY_A),
            false,
            |m| {
                m.scripts
                    .get_mut("db2")
                    .unwrap()
                    .fail
                    .push("SET SESSION_STATES");
            },
            "replay",
        ),
    ];
    for (what, db2_cert, null_token, setup, label) in cases {
        let mut mig = tidb_mig(db2_cert, null_token);
        setup(&mut mig);
        mig.session.start_migration(mig.now, "db2".into()).unwrap();
        mig.pump();
        let reason = mig
            .failure()
            .unwrap_or_else(|| panic!("{what}: {:?}", mig.events));
        assert_eq!(reason.label(), label, "{what}: {reason}");
        if let MigrationFailure::LoginRefused(e) = reason {
            assert_eq!(e.code, 1045);
        }
        assert_eq!(mig.session.backend_name(), Some("db1"), "{what}");
        assert_eq!(mig.query("SELECT 2"), "db1:SELECT 2", "{what}");
    }
}

#[test]
fn tidb_mode_waits_for_the_end_of_a_transaction() {
    let mut mig = tidb_mig((CERT_A, KEY_A), false);
    mig.query("BEGIN");
    assert_eq!(
        mig.session.start_migration(mig.now, "db2".into()),
        Ok(MigrationStart::Waiting(Some(PinReason::Transaction)))
    );
    mig.pump();
    assert!(mig.done().is_none());
    mig.query("COMMIT");
    assert_eq!(mig.done().map(|d| d.1), Some("db2"));
}
