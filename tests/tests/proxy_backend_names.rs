//! Backends given by host name, through the real proxy program, for every driver (proxy auth,
//! real MariaDB servers):
//!
//! - a server addressed as `localhost:PORT` (resolved by the system resolver at each connect)
//!   serves clients; a backend at `no-such-host.invalid:3306` is down in `/api/backends` with
//!   the lookup's failure as its reason, logged once (not at every check), and no session lands
//!   on it;
//! - a session migrates to a backend given by name and back to one given by IP, keeping its
//!   user variable.

mod proxy_common;

use std::time::Duration;

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{
    backend, mysql_opts, session_backend, wait_on, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    a_backend_by_name_serves_and_an_unresolvable_one_is_down,
    a_session_migrates_to_and_from_a_backend_given_by_name,
);

/// Does not resolve (RFC 6761's `.invalid`): the lookup fails in milliseconds here.
const GHOST: &str = "no-such-host.invalid:3306";

/// Backend `name` in `/api/backends`.
fn listed(ferry: &FerryProcess, name: &str) -> Json {
    let all = ferry.api("/api/backends");
    all.as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == json!(name)).cloned())
        .unwrap_or_else(|| panic!("no backend {name} in /api/backends: {all}"))
}

fn a_backend_by_name_serves_and_an_unresolvable_one_is_down(driver: Driver) {
    let db = backend(1);
    let by_name = format!("localhost:{}", db.port());
    let ferry = FerryProcess::builder(driver)
        .backend_at("ghost", GHOST)
        .backend_at("db1", &by_name)
        .proxy_user(USER, &db.user_password_hash(USER))
        .health_interval(Duration::from_millis(200))
        .start();
    let judged = wait_until(Duration::from_secs(15), || {
        listed(&ferry, "db1")["healthy"] == json!(true)
            && listed(&ferry, "ghost")["down_reason"].is_string()
    });
    assert!(judged, "{}", ferry.api("/api/backends"));

    let db1 = listed(&ferry, "db1");
    assert_eq!(db1["addr"], json!(by_name), "{db1}");
    assert!(
        db1.get("down_reason").is_none(),
        "healthy: no reason: {db1}"
    );
    let ghost = listed(&ferry, "ghost");
    assert_eq!(ghost["addr"], json!(GHOST), "{ghost}");
    assert_eq!(ghost["healthy"], json!(false), "{ghost}");
    let reason = ghost["down_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("cannot resolve \"no-such-host.invalid\": "),
        "{ghost}"
    );

    // Every client lands on the server behind `localhost`, none on the ghost (listed first,
    // and with no session: the balancer's favourite if it were eligible).
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD))
            .unwrap_or_else(|e| panic!("login: {e}\n{}", ferry.log_tail(30)));
        let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
        assert_eq!(port, db.port());
        assert_eq!(session_backend(&ferry, conn.connection_id()), "db1");
        conns.push(conn);
    }
    assert_eq!(listed(&ferry, "ghost")["sessions"], json!(0));
    assert_eq!(listed(&ferry, "db1")["sessions"], json!(6));

    // Checked every 200 ms, still down: said once at warn, not at every check.
    std::thread::sleep(Duration::from_millis(1500));
    let log = ferry.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("ghost") && l.contains("cannot resolve"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", ferry.log_tail(40));
    assert!(warned[0].contains("backend unhealthy"), "{}", warned[0]);
}

fn a_session_migrates_to_and_from_a_backend_given_by_name(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ports = [("db1", db1.port()), ("db2", db2.port())];
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend_at("db2", &format!("localhost:{}", db2.port()))
        .proxy_user(USER, &db1.user_password_hash(USER))
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    let up = wait_until(Duration::from_secs(15), || {
        ["db1", "db2"]
            .iter()
            .all(|n| listed(&ferry, n)["healthy"] == json!(true))
    });
    assert!(up, "{}", ferry.api("/api/backends"));

    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    let id = conn.connection_id();
    conn.query_drop("SET @kept = 'by name 42'").unwrap();
    let mut on = session_backend(&ferry, id);
    // Both ways: onto the named backend and off it (whichever it started on).
    for _ in 0..2 {
        let to = if on == "db1" { "db2" } else { "db1" };
        let path = format!("/api/sessions/{id}/migrate");
        let (status, body) = ferry.http_post(&path, &format!(r#"{{"to": "{to}"}}"#));
        assert_eq!(status, 202, "accepted: {body}");
        wait_on(&ferry, id, to);
        let (kept, port): (String, u16) =
            conn.query_first("select @kept, @@port").unwrap().unwrap();
        assert_eq!(kept, "by name 42");
        let expected = ports.iter().find(|(n, _)| *n == to).unwrap().1;
        assert_eq!(port, expected, "the session runs on {to}");
        on = to.to_owned();
    }
}
