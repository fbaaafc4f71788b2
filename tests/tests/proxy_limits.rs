//! Limits and lifecycle through the real proxy program, for every driver (the mio event loop
//! had these as its own tests; since the decisions moved into the core, every driver runs them):
//! clients over `max-connections` are refused with ERR 1040 and counted while the others keep
//! working, an idle session is closed at `idle-timeout` (activity moves the deadline), and
//! SIGTERM without `shutdown-delay` (the default) closes idle sessions at once and exits 0.
//! `proxy_ops.rs` has the rest: the refusal's bytes against MariaDB's, failed logins, the
//! shutdown delay and transactions finishing.

mod proxy_common;

use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{backend, mysql_code, mysql_opts, PASSWORD, USER};

driver_tests!(
    clients_over_max_connections_are_refused,
    an_idle_session_is_closed_at_the_idle_timeout,
    sigterm_closes_idle_sessions_at_once,
);

fn connect(ferry: &FerryProcess) -> mysql::Result<mysql::Conn> {
    mysql::Conn::new(mysql_opts(ferry, USER, PASSWORD))
}

fn clients_over_max_connections_are_refused(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_toml("max-connections = 1")
        .start();
    let mut first = connect(&ferry).expect("the first client");
    assert_eq!(first.query_first::<u32, _>("select 1").unwrap(), Some(1));
    let refused = connect(&ferry).expect_err("a second client got in");
    assert_eq!(mysql_code(&refused), Some(1040), "{refused}");
    // The first keeps working, and the refusal is counted.
    assert_eq!(first.query_first::<u32, _>("select 2").unwrap(), Some(2));
    let (_, metrics) = ferry.http_get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"ferry_errors_total{kind="max_connections"} 1"#),
        "{metrics}"
    );
    // Once it has left, there is room again.
    drop(first);
    assert!(
        wait_until(Duration::from_secs(10), || connect(&ferry).is_ok()),
        "{}",
        ferry.log_tail(20)
    );
}

fn an_idle_session_is_closed_at_the_idle_timeout(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_toml("idle-timeout = \"1s\"")
        .start();
    let mut conn = connect(&ferry).unwrap();
    // Activity moves the deadline: the session outlives its timeout while it works.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1800) {
        std::thread::sleep(Duration::from_millis(300));
        conn.query_drop("select 1").unwrap();
    }
    assert_eq!(ferry.api("/api/sessions").as_array().map(Vec::len), Some(1));
    // Then idle: closed, and gone from the listing.
    assert!(
        wait_until(Duration::from_secs(10), || ferry
            .api("/api/sessions")
            .as_array()
            .is_some_and(|a| a.is_empty())),
        "{}",
        ferry.api("/api/sessions")
    );
    assert!(conn.query_drop("select 1").is_err(), "still open");
}

fn sigterm_closes_idle_sessions_at_once(driver: Driver) {
    let db = backend(1);
    let mut ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    let mut clients: Vec<mysql::Conn> = (0..3).map(|_| connect(&ferry).unwrap()).collect();
    for c in &mut clients {
        c.query_drop("select 1").unwrap();
    }
    // The builder's shutdown-timeout is 5 s, and there is no shutdown-delay: idle sessions
    // must not wait for either.
    let start = Instant::now();
    let status = ferry.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    for c in &mut clients {
        assert!(c.query_drop("select 1").is_err(), "a session survived");
    }
}
