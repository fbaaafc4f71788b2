//! Health checks as the backend sees them, through the real proxy program, for every driver,
//! against a real MariaDB:
//!
//! - without a monitor account, each check reads the greeting and closes: MariaDB counts every
//!   check in `Aborted_connects` (the documented cost);
//! - with `[health] user` (a `mysql_native_password` account without privileges), each check
//!   logs in, pings and quits: over 20 checks `Aborted_connects` and `Aborted_clients` stay flat
//!   and the error log gains no "Aborted connection" line;
//! - with a wrong monitor password the backend stays in rotation (clients keep working), with
//!   the server's ERR 1045 in `/api/backends`, one warning in ferry's log (not one per check),
//!   counted in `ferry_errors_total{kind="health_login"}`, and the password nowhere.
//!
//! Checks run every 100 ms; how many ran is read from the server's `Connections` counter.
//! Every wait is bounded.

mod proxy_common;

use std::time::Duration;

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess, MariaDb};
use mysql::prelude::Queryable;
use proxy_common::{backend, metric, mysql_opts, PASSWORD, USER};
use serde_json::Value as Json;

driver_tests!(
    checks_with_a_monitor_account_are_not_aborted_connections,
    a_wrong_monitor_password_warns_and_keeps_the_backend,
);

/// The monitor account's name and password.
const MONITOR: &str = "monitor";
const MONITOR_PASSWORD: &str = "m0n-itor";
/// The check interval of these tests.
const INTERVAL: Duration = Duration::from_millis(100);
/// Checks each measurement waits for.
const CHECKS: u64 = 20;
/// Bound on waiting for them (20 checks take 2 s).
const CHECKS_TIMEOUT: Duration = Duration::from_secs(30);

/// A global status counter of `db`.
fn status(db: &MariaDb, name: &str) -> u64 {
    db.query_scalar(&format!(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{}'",
        name.to_uppercase()
    ))
    .parse()
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `[health]` keys for the monitor account with `password`.
fn monitor_keys(password: &str) -> String {
    format!("user = \"{MONITOR}\"\npassword = \"{password}\"")
}

/// ferry in front of `db` alone, checking every 100 ms, with these `[health]` keys.
fn ferry(driver: Driver, db: &MariaDb, health_keys: &str) -> FerryProcess {
    FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .health_interval(INTERVAL)
        .health_toml(health_keys)
        .start()
}

/// `Aborted_connects`, `Aborted_clients` and "Aborted connection" lines in the error log, over
/// at least [`CHECKS`] health checks of a ferry running now.
fn over_checks(db: &MariaDb) -> (u64, u64, usize) {
    let aborted_lines = || {
        db.error_log_tail(100_000)
            .matches("Aborted connection")
            .count()
    };
    let (connects, clients, lines) = (
        status(db, "Aborted_connects"),
        status(db, "Aborted_clients"),
        aborted_lines(),
    );
    let start = status(db, "Connections");
    // Each poll is one connection of ours as well: counted against the checks, so at least
    // CHECKS checks ran when this returns.
    let mut polls = 0;
    let ran = wait_until(CHECKS_TIMEOUT, || {
        polls += 1;
        status(db, "Connections") - start >= CHECKS + polls
    });
    assert!(ran, "fewer than {CHECKS} checks in {CHECKS_TIMEOUT:?}");
    (
        status(db, "Aborted_connects") - connects,
        status(db, "Aborted_clients") - clients,
        aborted_lines() - lines,
    )
}

/// Backend `db1`'s entry in `/api/backends`.
fn db1_info(ferry: &FerryProcess) -> Json {
    ferry.api("/api/backends")[0].clone()
}

fn checks_with_a_monitor_account_are_not_aborted_connections(driver: Driver) {
    let db = backend(1);
    db.sql(&format!(
        "CREATE USER {MONITOR}@'%' IDENTIFIED VIA mysql_native_password \
         USING PASSWORD('{MONITOR_PASSWORD}')"
    ));

    // Without the account: every check is an aborted handshake.
    let mut plain = ferry(driver, &db, "");
    let (connects, _, lines) = over_checks(&db);
    assert!(
        connects >= CHECKS && lines >= CHECKS as usize,
        "greeting-only checks should each count in Aborted_connects and log a line: \
         {connects} and {lines} over {CHECKS}+ checks"
    );
    plain.terminate(Duration::from_secs(10));

    // With it: clean sessions.
    let ferry = ferry(driver, &db, &monitor_keys(MONITOR_PASSWORD));
    assert_eq!(db1_info(&ferry)["healthy"], true);
    let (connects, clients, lines) = over_checks(&db);
    assert_eq!(
        (connects, clients, lines),
        (0, 0, 0),
        "Aborted_connects, Aborted_clients, error-log lines over {CHECKS}+ monitor checks\n{}",
        db.error_log_tail(20)
    );
    let info = db1_info(&ferry);
    assert_eq!(info["healthy"], true, "{info}");
    assert!(info.get("health_warning").is_none(), "{info}");
    assert!(!ferry.log().contains("monitor account cannot log in"));
}

fn a_wrong_monitor_password_warns_and_keeps_the_backend(driver: Driver) {
    let db = backend(1);
    db.sql(&format!(
        "CREATE USER {MONITOR}@'%' IDENTIFIED VIA mysql_native_password \
         USING PASSWORD('{MONITOR_PASSWORD}')"
    ));
    let wrong = "not-the-password";
    let ferry = ferry(driver, &db, &monitor_keys(wrong));
    // Up, with the server's refusal as the warning.
    let warned = wait_until(Duration::from_secs(10), || {
        db1_info(&ferry).get("health_warning").is_some()
    });
    assert!(warned, "no warning in {}", ferry.api("/api/backends"));
    let info = db1_info(&ferry);
    assert_eq!(info["healthy"], true, "{info}");
    let warning = info["health_warning"].as_str().unwrap();
    assert!(
        warning.contains("1045") && warning.contains("Access denied for user 'monitor'"),
        "{warning}"
    );
    // Clients are served.
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).unwrap();
    let one: u32 = conn.query_first("SELECT 1").unwrap().unwrap();
    assert_eq!(one, 1);
    // Counted at every check, logged once.
    let counted = wait_until(Duration::from_secs(10), || {
        metric(&ferry, "ferry_errors_total{kind=\"health_login\"}") >= 5.0
    });
    assert!(counted, "health_login errors not counted");
    let log = ferry.log();
    assert_eq!(
        log.matches("monitor account cannot log in").count(),
        1,
        "one warning, not one per check:\n{log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert!(!log.contains(wrong), "the password in the log:\n{log}");
    assert!(!ferry.api("/api/backends").to_string().contains(wrong));
}
