//! Limits and lifecycle through the real proxy program, for every driver (the mio event loop
//! had these as its own tests; since the decisions moved into the core, every driver runs them):
//! an idle session is closed at `idle-timeout` (activity moves the deadline), and SIGTERM
//! without `shutdown-delay` (the default) closes idle sessions at once and exits 0.
//! `proxy_ops.rs` has the rest: clients over `max-connections` refused with MariaDB's ERR 1040
//! and counted while the others keep working, failed logins, the shutdown delay and
//! transactions finishing.

mod proxy_common;

use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{backend, connect};

driver_tests!(
    an_idle_session_is_closed_at_the_idle_timeout,
    sigterm_closes_idle_sessions_at_once,
);

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
