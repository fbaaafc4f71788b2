//! The TiDB-style test server on its own (no ferry proxy), with real clients: PyMySQL and the Rust
//! `mysql` crate set up sessions with passwords, and [`RawClient`] (ferry-core's backend role)
//! carries them to another instance with a `tidb_session_token` login and `SET SESSION_STATES`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_core::token::CertStore;
use ferry_core::wire::{ServerStatus, Value};
use ferry_tests::{
    require_python_module, run_with_deadline, tidb_token_text, OsRandom, RawClient,
    ShowStatesFault, TidbTestServer, TidbTestServerConfig, TidbUsers, TokenCertificate,
};
use serde_json::Value as Json;

/// Two instances (server ids 1 and 2) sharing one openssl-made certificate and the users
/// `app`/`pw` and `other`/`pw2`.
fn two_instances() -> (TidbTestServer, TidbTestServer, Arc<CertStore>) {
    let certs = Arc::new(TokenCertificate::generate().cert_store());
    let users: TidbUsers = [("app", "pw"), ("other", "pw2")]
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect();
    let users = Arc::new(users);
    let a = TidbTestServer::start(TidbTestServerConfig::new(1, users.clone(), certs.clone()));
    let b = TidbTestServer::start(TidbTestServerConfig::new(2, users, certs.clone()));
    (a, b, certs)
}

/// `SET SESSION_STATES '<s>'` with `\` then `'` escaped, as the reference says a proxy sends it.
fn set_session_states(states: &str) -> String {
    let escaped = states.replace('\\', "\\\\").replace('\'', "\\'");
    format!("SET SESSION_STATES '{escaped}'")
}

fn access_denied<T: std::fmt::Debug>(result: Result<T, ferry_core::ProtocolError>) -> bool {
    matches!(result, Err(e) if e.code == 1045)
}

fn token_for(certs: &CertStore, user: &str, at: SystemTime) -> Vec<u8> {
    certs
        .sign(at, 0, user.as_bytes(), &mut OsRandom)
        .expect("sign")
        .to_json()
}

#[test]
fn pymysql_session_moves_to_another_instance_with_its_token() {
    let (a, b, certs) = two_instances();
    let python = require_python_module("pymysql", "PyMySQL");
    let script = format!(
        r#"
import json, pymysql
c = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="pw", connect_timeout=10)
cur = c.cursor()
cur.execute("USE db1")
cur.execute("SET @a = 1, @b = 'x'")
cur.execute("SET @c = 2.5, @q = 'it''s \\\\ \"quoted\"', @n = NULL")
cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
cur.execute("SELECT @a, @b, @c, @q, @n, @@sql_mode, DATABASE(), @@server_id, @@port")
before = list(cur.fetchone())
cur.execute("BEGIN")
in_trans = c.server_status & 1
cur.execute("COMMIT")
after_commit = c.server_status & 1
cur.execute("SHOW SESSION_STATES")
states, token = cur.fetchone()
print(json.dumps(dict(before=before, in_trans=in_trans, after_commit=after_commit,
                      states=states, token=token,
                      columns=[d[0] for d in cur.description])))
"#,
        port = a.port()
    );
    let out = run_with_deadline(
        Command::new(python).args(["-c", &script]),
        Duration::from_secs(60),
    )
    .expect("python ran");
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let got: Json = serde_json::from_str(out.stdout.trim()).expect("script output is JSON");
    let before = got["before"].as_array().expect("row");
    assert_eq!(
        before,
        &vec![
            Json::from(1),
            Json::from("x"),
            Json::from(2.5),
            Json::from("it's \\ \"quoted\""),
            Json::Null,
            Json::from("ANSI_QUOTES"),
            Json::from("db1"),
            Json::from(1),
            Json::from(a.port()),
        ]
    );
    assert_eq!(got["in_trans"], 1, "BEGIN sets SERVER_STATUS_IN_TRANS");
    assert_eq!(got["after_commit"], 0, "COMMIT clears it");
    assert_eq!(
        got["columns"],
        serde_json::json!(["Session_states", "Session_token"])
    );

    let states_text = got["states"].as_str().expect("states are text");
    let states: Json = serde_json::from_str(states_text).expect("states are JSON");
    assert_eq!(states["current-db"], "db1");
    assert_eq!(states["sys-vars"]["sql_mode"], "ANSI_QUOTES");
    assert_eq!(states["user-var-values"]["b"], "x");

    // The token column is TiDB's re-serialisation: sorted keys, ", " and ": " separators.
    let token = got["token"].as_str().expect("token is text");
    assert!(
        token.starts_with(r#"{"expire-time": ""#) && token.contains(r#"", "sign-time": ""#),
        "{token}"
    );
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Json>>(token)
        .expect("token is JSON")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["expire-time", "sign-time", "signature", "username"]);
    let parsed = certs
        .validate(SystemTime::now(), token.as_bytes(), b"app")
        .expect("the token verifies");
    assert_eq!(tidb_token_text(&parsed), token);

    // Carry the session to instance 2, as a migrating proxy does.
    let mut moved = RawClient::token_login(b.addr(), "app", token.as_bytes(), Some("db1"))
        .expect("token login");
    moved
        .query(&set_session_states(states_text))
        .expect("SET SESSION_STATES");
    let after = moved
        .query("SELECT @a, @b, @c, @q, @n, @@sql_mode, DATABASE(), @@server_id, @@port")
        .expect("select");
    let expect: Vec<Option<String>> = before[..7]
        .iter()
        .map(|v| match v {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .chain([Some("2".to_owned()), Some(b.port().to_string())])
        .collect();
    assert_eq!(
        after.rows,
        vec![expect],
        "the state reads back identical on instance 2"
    );
    let again = moved.query("SHOW SESSION_STATES").expect("show on b");
    let states_b: Json =
        serde_json::from_str(again.get("Session_states").expect("states")).expect("JSON");
    assert_eq!(states_b, states, "instance 2 exports the same session");

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.password_logins, sa.states_shown), (1, 1));
    assert_eq!(
        (sb.token_logins, sb.states_restored, sb.password_logins),
        (1, 1, 0)
    );
}

#[test]
fn prepared_statements_keep_their_ids_on_the_other_instance() {
    use mysql::prelude::Queryable;
    let (a, b, _certs) = two_instances();
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(a.port())
        .user(Some("app"))
        .pass(Some("pw"))
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        // Otherwise the crate asks for @@socket on loopback and reconnects there.
        .prefer_socket(false);
    let mut conn = mysql::Conn::new(opts).expect("mysql crate logs in with a password");
    let echo = conn.prep("SELECT ?").expect("prepare");
    let pair = conn.prep("SELECT ?, @a AS a").expect("prepare");
    assert_ne!(echo.id(), pair.id());
    conn.query_drop("SET @a = 'hello'").expect("set");
    let got: Option<i64> = conn.exec_first(&echo, (42,)).expect("execute");
    assert_eq!(got, Some(42));
    let got: Option<(String, String)> = conn.exec_first(&pair, ("p",)).expect("execute");
    assert_eq!(got, Some(("p".into(), "hello".into())));
    let row: Option<(String, String)> = conn.query_first("SHOW SESSION_STATES").expect("show");
    let (states, token) = row.expect("one row");
    let parsed: Json = serde_json::from_str(&states).expect("JSON");
    assert_eq!(
        parsed["prepared-stmts"][echo.id().to_string()]["text"],
        "SELECT ?"
    );

    let mut moved = RawClient::token_login(b.addr(), "app", token.as_bytes(), None).expect("login");
    moved.query(&set_session_states(&states)).expect("restore");
    let r = moved
        .execute(echo.id(), &[Value::I64(7)])
        .expect("old id runs");
    assert_eq!(r.rows, vec![vec![Some("7".to_owned())]]);
    let r = moved
        .execute(pair.id(), &[Value::Bytes(b"q")])
        .expect("old id runs");
    assert_eq!(r.columns, ["?", "a"]);
    assert_eq!(
        r.rows,
        vec![vec![Some("q".to_owned()), Some("hello".to_owned())]]
    );
    let fresh = moved.prepare("SELECT ?").expect("prepare on b");
    assert!(
        fresh > echo.id().max(pair.id()),
        "new ids continue after the restored ones"
    );
    moved.close_statement(echo.id());
    let gone = moved.execute(echo.id(), &[Value::I64(1)]);
    assert!(
        matches!(gone, Err(e) if e.code == 1243),
        "a closed statement is gone"
    );
    let r = moved.execute(fresh, &[Value::Null]).expect("fresh id runs");
    assert_eq!(r.rows, vec![vec![None]]);
    let id: Option<i64> = conn
        .query_first("SELECT @@server_id")
        .expect("a still serves");
    assert_eq!(id, Some(1));
}

#[test]
fn bad_tokens_are_refused_with_1045() {
    let (_a, b, certs) = two_instances();
    let now = SystemTime::now();
    let addr = b.addr();
    let login = |user: &str, token: &[u8]| RawClient::token_login(addr, user, token, None);

    // The baseline: a fresh token for the right user logs in.
    let mut ok = login("app", &token_for(&certs, "app", now)).expect("valid token");
    assert_eq!(
        ok.query("SELECT @@server_id").unwrap().rows[0][0].as_deref(),
        Some("2")
    );

    let expired = token_for(&certs, "app", now - Duration::from_secs(120));
    assert!(access_denied(login("app", &expired)), "expired");
    let foreign = TokenCertificate::generate().cert_store();
    assert!(
        access_denied(login("app", &token_for(&foreign, "app", now))),
        "signed by another certificate"
    );
    let for_other = token_for(&certs, "other", now);
    assert!(
        access_denied(login("app", &for_other)),
        "another user's token"
    );
    let tampered = String::from_utf8(for_other.clone())
        .unwrap()
        .replace("\"other\"", "\"app\"");
    assert!(access_denied(login("app", tampered.as_bytes())), "tampered");
    assert!(access_denied(login("app", b"not json")), "garbage");
    assert!(access_denied(login("app", b"")), "empty");
    let ghost = token_for(&certs, "ghost", now);
    assert!(access_denied(login("ghost", &ghost)), "no such account");

    b.faults().set_refuse_token_login(true);
    assert!(
        access_denied(login("other", &for_other)),
        "refused by the fault flag"
    );
    b.faults().set_refuse_token_login(false);
    login("other", &for_other).expect("the same token once the flag is off");

    let stats = b.stats();
    assert_eq!((stats.token_logins, stats.refused_logins), (2, 8));
}

#[test]
fn password_logins_auth_switch_and_session_basics() {
    let (a, _b, _certs) = two_instances();
    let addr = a.addr();
    assert!(access_denied(RawClient::password_login(
        addr, "app", "bad", None
    )));
    assert!(access_denied(RawClient::password_login(
        addr, "nobody", "pw", None
    )));
    let unknown_db = RawClient::password_login(addr, "app", "pw", Some("nope"));
    assert!(matches!(unknown_db, Err(e) if e.code == 1049));
    // A relaying proxy names an unknown plugin and answers the switch to native.
    let mut relayed = RawClient::relayed_password_login(addr, "other", "pw2").expect("switch");
    assert!(access_denied(RawClient::relayed_password_login(
        addr, "other", "pw"
    )));

    let r = relayed
        .query("SELECT @@port, @@server_id, USER(), 1")
        .unwrap();
    let port = a.port().to_string();
    assert_eq!(
        r.rows[0],
        [
            Some(port.as_str()),
            Some("1"),
            Some("other@127.0.0.1"),
            Some("1")
        ]
        .map(|c| c.map(str::to_owned))
    );
    let r = relayed.query("BEGIN").unwrap();
    assert!(r.status.contains(ServerStatus::IN_TRANS));
    let r = relayed.query("COMMIT").unwrap();
    assert!(!r.status.contains(ServerStatus::IN_TRANS));
    assert!(r.status.contains(ServerStatus::AUTOCOMMIT));
    let e = relayed.query("SELECT * FROM t").unwrap_err();
    assert_eq!(e.code, 1064);
    let e = relayed.query("USE nope").unwrap_err();
    assert_eq!(e.code, 1049);
    let e = relayed.query("SET @@port = 1").unwrap_err();
    assert_eq!(e.code, 1238);

    let mut c = RawClient::password_login(addr, "app", "pw", Some("db2")).expect("login");
    assert_eq!(
        c.query("SELECT DATABASE()").unwrap().rows[0][0].as_deref(),
        Some("db2")
    );
    c.query("SET autocommit = 0").unwrap();
    let r = c.query("SELECT @@autocommit").unwrap();
    assert_eq!(r.rows[0][0].as_deref(), Some("0"));
    assert!(!r.status.contains(ServerStatus::AUTOCOMMIT));
    let stats = a.stats();
    assert_eq!((stats.password_logins, stats.open_sessions), (2, 2));
}

#[test]
fn show_and_set_session_states_fail_on_demand() {
    let (a, b, _certs) = two_instances();
    let mut c = RawClient::password_login(a.addr(), "app", "pw", None).expect("login");
    c.query("SET @x = 5").unwrap();

    a.faults().set_show_states(ShowStatesFault::Error);
    let e = c.query("SHOW SESSION_STATES").unwrap_err();
    assert_eq!(e.code, 8146);
    a.faults().set_show_states(ShowStatesFault::EmptyToken);
    let r = c.query("SHOW SESSION_STATES").unwrap();
    assert_eq!(r.get("Session_token"), Some(""));
    a.faults().set_show_states(ShowStatesFault::NullToken);
    let r = c.query("SHOW SESSION_STATES").unwrap();
    assert_eq!(r.rows[0][1], None);
    a.faults().set_show_states(ShowStatesFault::None);
    let r = c.query("SHOW SESSION_STATES").unwrap();
    let states = r.get("Session_states").unwrap().to_owned();
    let token = r.get("Session_token").unwrap().to_owned();

    let mut d = RawClient::token_login(b.addr(), "app", token.as_bytes(), None).expect("login");
    b.faults().set_fail_set_states(true);
    let e = d.query(&set_session_states(&states)).unwrap_err();
    assert_eq!(e.code, 1105);
    assert_eq!(
        d.query("SELECT @x").unwrap().rows[0][0],
        None,
        "nothing restored"
    );
    b.faults().set_fail_set_states(false);
    let e = d.query("SET SESSION_STATES '{not json'").unwrap_err();
    assert_eq!(e.code, 1105);
    let e = d
        .query(&set_session_states(
            r#"{"current-db": "nope", "sys-vars": {"sql_mode": ""}}"#,
        ))
        .unwrap_err();
    assert_eq!(e.code, 1105);
    assert_eq!(
        d.query("SELECT @@sql_mode").unwrap().rows[0][0].as_deref(),
        Some("ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"),
        "a refused restore changes nothing"
    );
    d.query(&set_session_states(&states)).expect("restore");
    assert_eq!(
        d.query("SELECT @x").unwrap().rows[0][0].as_deref(),
        Some("5")
    );
    assert_eq!((a.stats().states_shown, b.stats().states_restored), (3, 1));
}
