//! What operators rely on, through the real proxy program on every driver:
//!
//! - a client over `max-connections` gets ERR 1040 in place of the greeting, byte for byte what
//!   MariaDB sends (the `mariadb` CLI prints the same as against a full MariaDB, with and
//!   without TLS), and a flood of refusals leaves a few log lines, not one per client;
//! - failed logins are counted by reason and logged with the user and the client's address, and
//!   with `max-auth-failures` an address that fails too often is refused (ERR 1129) until its
//!   block expires, in both auth modes;
//! - SIGTERM with `shutdown-delay`: `/health/ready` answers 503 while new clients still log in;
//!   then the port refuses, idle sessions close, and a session inside a transaction may COMMIT
//!   before it closes; the process then exits.

mod proxy_common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_tests::{
    driver_tests, mariadb_cli_command, run_with_deadline, wait_until, CommandOutput, Driver,
    FerryProcess, MariaDb,
};
use mysql::prelude::Queryable;
use proxy_common::{backend, connect, mysql_code, PASSWORD, USER};

driver_tests!(
    a_client_over_max_connections_gets_1040_as_from_mariadb,
    failed_logins_are_counted_and_a_guessing_address_is_blocked_until_its_block_expires,
    shutdown_waits_for_the_balancer_then_lets_a_transaction_commit,
);

/// MariaDB 10.11's ERR in place of the greeting at `max_connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"\x17\x00\x00\x00\xff\x10\x04Too many connections";

/// The `mariadb` CLI running `select 1` on 127.0.0.1:`port` with `extra` options.
fn cli(port: u16, password: &str, extra: &[&str]) -> CommandOutput {
    let mut command = mariadb_cli_command(port, USER, password, "select 1");
    command.args(extra);
    run_with_deadline(&mut command, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("mariadb on port {port}: {e}"))
}

/// Everything a fresh connection to `addr` reads before the server closes it or 2 s pass.
fn first_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() >= TOO_MANY_CONNECTIONS.len() && out[4] == 0xff {
            break;
        }
    }
    out
}

/// A MariaDB that refuses new connections before its greeting: `max_connections` = 10 and
/// connections held open (unauthenticated ones count too) until a fresh one reads ERR 1040.
/// The held connections are returned: the server stays full while they live.
fn full_mariadb() -> (MariaDb, Vec<TcpStream>) {
    let db = MariaDb::builder()
        .args(["--max-connections=10", "--connect-timeout=60"])
        .start();
    db.create_user(USER, PASSWORD);
    let mut held = Vec::new();
    loop {
        assert!(
            held.len() <= 20,
            "20 connections held and MariaDB still greets"
        );
        let mut s = TcpStream::connect(db.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut header = [0u8; 5];
        s.read_exact(&mut header).unwrap();
        if header[4] == 0xff {
            return (db, held);
        }
        held.push(s);
    }
}

fn a_client_over_max_connections_gets_1040_as_from_mariadb(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_toml("max-connections = 1")
        .start();
    let mut first = connect(&ferry).expect("the first client");
    // The bytes MariaDB sends.
    assert_eq!(first_bytes(ferry.addr()), TOO_MANY_CONNECTIONS);
    // A client library reads it as the server's 1040.
    let refused = connect(&ferry).expect_err("a second client got in");
    assert_eq!(mysql_code(&refused), Some(1040), "{refused}");
    // The mariadb CLI says exactly what it says of a full MariaDB: with TLS asked for (its
    // default) and without.
    let (full, _held) = full_mariadb();
    for extra in [&[][..], &["--skip-ssl"]] {
        let direct = cli(full.port(), PASSWORD, extra);
        let through = cli(ferry.port(), PASSWORD, extra);
        assert!(!through.status.success(), "{extra:?}: {through:?}");
        assert!(
            through.stderr.contains("1040") && through.stderr.contains("Too many connections"),
            "{extra:?}: {}",
            through.stderr
        );
        assert_eq!(through.stderr, direct.stderr, "{extra:?}");
    }
    assert_eq!(
        cli(ferry.port(), PASSWORD, &["--skip-ssl"]).stderr,
        "ERROR 1040 (HY000): Too many connections\n"
    );
    // A flood of refusals: each counted, a few logged.
    let flood = 30;
    for _ in 0..flood {
        assert_eq!(first_bytes(ferry.addr()), TOO_MANY_CONNECTIONS);
    }
    let (_, metrics) = ferry.http_get("/metrics");
    let refusals = flood + 5;
    let line = format!("ferry_errors_total{{kind=\"max_connections\"}} {refusals}");
    assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    let logged = ferry
        .log()
        .lines()
        .filter(|l| l.contains("max-connections reached"))
        .count();
    assert!(
        (1..=10).contains(&logged),
        "{logged} log lines for {refusals} refusals"
    );
    // The first client keeps working; once it has left there is room again.
    assert_eq!(first.query_first::<u32, _>("select 2").unwrap(), Some(2));
    drop(first);
    assert!(
        wait_until(Duration::from_secs(10), || connect(&ferry).is_ok()),
        "{}",
        ferry.log_tail(20)
    );
}

/// `ferry_login_failures_total{reason}` in `/metrics`.
fn login_failures(ferry: &FerryProcess, reason: &str) -> u64 {
    let (_, metrics) = ferry.http_get("/metrics");
    let prefix = format!("ferry_login_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .parse()
        .unwrap()
}

fn failed_logins_are_counted_and_a_guessing_address_is_blocked_until_its_block_expires(
    driver: Driver,
) {
    let db = backend(1);
    for proxy_auth in [false, true] {
        let mut builder = FerryProcess::builder(driver)
            .backend("db1", db.addr())
            .proxy_toml("max-auth-failures = 3")
            .proxy_toml("auth-failure-window = \"60s\"")
            .proxy_toml("auth-block-duration = \"3s\"");
        if proxy_auth {
            builder = builder.proxy_user(USER, &db.user_password_hash(USER));
        }
        let ferry = builder.start();
        let denied = |ferry: &FerryProcess| {
            let out = cli(ferry.port(), "wrong", &["--skip-ssl"]);
            assert!(
                out.stderr.starts_with("ERROR 1045 (28000): Access denied"),
                "proxy auth {proxy_auth}: {}",
                out.stderr
            );
        };
        denied(&ferry);
        denied(&ferry);
        // A good login in between does not reset the count.
        assert!(cli(ferry.port(), PASSWORD, &[]).status.success());
        denied(&ferry);
        assert_eq!(login_failures(&ferry, "access_denied"), 3);
        assert_eq!(login_failures(&ferry, "handshake_timeout"), 0);
        // Each logged at info with the user, the client's address and the reason.
        let log = ferry.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
        assert_eq!(lines.len(), 3, "{log}");
        for l in lines {
            assert!(
                l.contains("INFO")
                    && l.contains("user=app")
                    && l.contains("client=127.0.0.1:")
                    && l.contains("access_denied")
                    && l.contains("code=1045"),
                "{l}"
            );
        }
        // Blocked: the right password too is refused, before any handshake, with 1129.
        let blocked_at = Instant::now();
        let out = cli(ferry.port(), PASSWORD, &["--skip-ssl"]);
        assert_eq!(
            out.stderr,
            "ERROR 1129 (HY000): Host '127.0.0.1' is temporarily blocked due to too many \
             authentication failures.\n"
        );
        let (_, metrics) = ferry.http_get("/metrics");
        assert!(
            metrics
                .lines()
                .any(|l| l == "ferry_errors_total{kind=\"blocked_host\"} 1"),
            "{metrics}"
        );
        assert!(ferry.log().contains("address blocked after failed logins"));
        // Until the block expires.
        assert!(
            wait_until(Duration::from_secs(15), || cli(ferry.port(), PASSWORD, &[])
                .status
                .success()),
            "{}",
            ferry.log_tail(20)
        );
        assert!(
            blocked_at.elapsed() >= Duration::from_secs(2),
            "unblocked after {:?}",
            blocked_at.elapsed()
        );
    }
}

fn shutdown_waits_for_the_balancer_then_lets_a_transaction_commit(driver: Driver) {
    let db = backend(1);
    db.create_database("shop");
    db.sql("CREATE TABLE shop.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    let delay = Duration::from_secs(3);
    let mut ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_toml("shutdown-delay = \"3s\"")
        .start();
    let mut idle = connect(&ferry).unwrap();
    idle.query_drop("select 1").unwrap();
    let mut tx = connect(&ferry).unwrap();
    tx.query_drop("BEGIN").unwrap();
    tx.query_drop("INSERT INTO shop.t VALUES (1)").unwrap();

    ferry.signal("TERM");
    let signalled = Instant::now();
    // The delay: not ready, alive, and new clients still log in.
    assert!(
        wait_until(Duration::from_secs(2), || ferry.http_get("/health/ready").0
            == 503),
        "{}",
        ferry.log_tail(20)
    );
    assert_eq!(ferry.http_get("/health").0, 503);
    assert_eq!(ferry.http_get("/health/live").0, 200);
    let mut late = connect(&ferry).expect("a new client during the delay");
    assert_eq!(late.query_first::<u32, _>("select 1").unwrap(), Some(1));
    idle.query_drop("select 1").unwrap();
    let out = cli(ferry.port(), PASSWORD, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        signalled.elapsed() < delay,
        "the checks took {:?}",
        signalled.elapsed()
    );
    // Then the listener closes.
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(ferry.addr())
            .is_err()),
        "{}",
        ferry.log_tail(20)
    );
    assert!(
        signalled.elapsed() >= delay - Duration::from_millis(200),
        "closed after {:?}",
        signalled.elapsed()
    );
    // Idle sessions outside a transaction are closed; the one inside stays.
    assert!(
        wait_until(Duration::from_secs(5), || ferry
            .api("/api/sessions")
            .as_array()
            .is_some_and(|a| a.len() == 1)),
        "{}",
        ferry.api("/api/sessions")
    );
    assert!(
        idle.query_drop("select 1").is_err(),
        "an idle session stayed"
    );
    assert!(
        late.query_drop("select 1").is_err(),
        "an idle session stayed"
    );
    // The transaction may finish; its COMMIT is answered, then its session closes.
    tx.query_drop("INSERT INTO shop.t VALUES (2)").unwrap();
    tx.query_drop("COMMIT").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || tx
            .query_drop("select 1")
            .is_err()),
        "the session stayed after its COMMIT"
    );
    assert_eq!(db.query_scalar("SELECT COUNT(*) FROM shop.t"), "2");
    // No session left: ferry exits, well before its shutdown timeout (5 s) ran out.
    let status = ferry.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}
