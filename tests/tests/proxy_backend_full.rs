//! A backend that is full: MariaDB answers new connections with ERR 1040 "Too many connections"
//! in place of its greeting, while the connections it already has keep working. Through the real
//! proxy program, for every driver, against two real MariaDB servers:
//!
//! - with rebalancing off (as the other migration tests run), ferry's health check reports the
//!   full backend unhealthy (`/api/backends`, `ferry_backend_up`, the log names ERR 1040), new
//!   sessions go to the other backend, the session already on the full one keeps answering, and
//!   a drain moves it to the healthy backend with its user variables, database and session
//!   variables intact; once connections are free again the backend is healthy again;
//! - with rebalancing on, the balancer evacuates the full backend by itself: the session moves
//!   without a drain and without a client error;
//! - with health checks too rare to notice (60 s), a new session that ferry sends to the full
//!   backend is refused there before the greeting and logs in on the other backend instead, and
//!   the full backend is marked unhealthy by that refusal; with only the full backend, every
//!   client gets its ERR 1040 (not ferry's generic 1429 "no healthy backend"), and the first
//!   client after a slot frees gets in without waiting for a health check.
//!
//! How the backend is filled: `SET GLOBAL max_connections = 10` (MariaDB's minimum), then
//! connections as the test user are held until a fresh connection reads ERR 1040 instead of a
//! greeting. MariaDB refuses before the greeting only when `max_connections + 1` connections are
//! open (the extra one is kept for a SUPER user, which the test user is); the test counts them.
//! Every wait is bounded.

mod proxy_common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess, MariaDb};
use mysql::prelude::Queryable;
use proxy_common::{
    backend, client_opts, drain, metric, mysql_code, mysql_opts, proxy_over_pair, session_backend,
    wait_on, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    a_full_backend_is_avoided_and_drained,
    a_full_backend_is_evacuated_when_rebalancing_is_on,
    a_new_session_goes_elsewhere_when_its_backend_refuses_it,
    a_lone_full_backend_gives_the_client_its_1040,
);

/// How long ferry may take to see a health change (checks run every 500 ms, 1 s timeout).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// The `max_connections` the full backend is set to (MariaDB's minimum).
const MAX_CONNECTIONS: usize = 10;
/// MySQL's ER_CON_COUNT_ERROR.
const TOO_MANY_CONNECTIONS: u16 = 1040;
/// The counter of backend connections that could not be made (refusals included).
const BACKEND_CONNECT_ERRORS: &str = "ferry_errors_total{kind=\"backend_connect\"}";
/// A health check interval no test here waits for: only sessions can find a full backend.
const RARE_CHECKS: Duration = Duration::from_secs(60);

/// Replay migration on, rebalancing every 500 ms.
const REPLAY_REBALANCE: &str = "[migration]\nmode = \"replay\"\nrebalance-interval = \"500ms\"\n";

// ---------------------------------------------------------------- helpers

/// Backend `name`'s entry in `/api/backends`.
fn backend_info(ferry: &FerryProcess, name: &str) -> Json {
    let all = ferry.api("/api/backends");
    all.as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == json!(name)).cloned())
        .unwrap_or_else(|| panic!("no backend {name} in {all}"))
}

/// Waits until `/api/backends` says backend `name` is `healthy` (or not); panics otherwise.
fn wait_health(ferry: &FerryProcess, name: &str, healthy: bool) -> Duration {
    let start = Instant::now();
    let reached = wait_until(HEALTH_TIMEOUT, || {
        backend_info(ferry, name)["healthy"] == json!(healthy)
    });
    assert!(
        reached,
        "{name} not healthy={healthy} after {HEALTH_TIMEOUT:?}: {}",
        ferry.api("/api/backends")
    );
    start.elapsed()
}

/// `ferry_backend_up` for backend `name`, or `None` if `/metrics` has no sample for it.
fn backend_up(ferry: &FerryProcess, name: &str) -> Option<u64> {
    let (status, text) = ferry.http_get("/metrics");
    assert_eq!(status, 200, "{text}");
    let prefix = format!("ferry_backend_up{{backend=\"{name}\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().expect("a number"))
}

/// A backend with the `migr` database, so that a session can `USE` it on either server.
fn migration_backend(server_id: u32) -> MariaDb {
    let db = backend(server_id);
    db.create_database("migr");
    db
}

/// What a fresh TCP connection to `addr` reads first: the payload of the first packet.
fn first_packet(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut header = [0u8; 4];
    s.read_exact(&mut header)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(payload)
}

/// Does a fresh connection to `addr` read ERR 1040 in place of the greeting?
fn refuses_with_1040(addr: SocketAddr) -> bool {
    match first_packet(addr) {
        Ok(p) => {
            p.first() == Some(&0xFF) && p.get(1..3) == Some(&TOO_MANY_CONNECTIONS.to_le_bytes())
        }
        Err(_) => false,
    }
}

/// Three fresh connections in a row read ERR 1040 (a health probe of ferry holding the last slot
/// for a moment cannot fake that three times).
fn is_full(addr: SocketAddr) -> bool {
    (0..3).all(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        refuses_with_1040(addr)
    })
}

/// Connection options straight to `db` as the test user (who has SUPER).
fn direct_opts(db: &MariaDb) -> mysql::OptsBuilder {
    client_opts(db.port(), USER, PASSWORD)
}

/// Connections held open on a backend until it refuses new ones; [`Full::release`] undoes it.
struct Full {
    /// The first one set `max_connections`; it sets it back.
    held: Vec<mysql::Conn>,
    addr: SocketAddr,
}

impl Full {
    /// Lowers `max_connections` to [`MAX_CONNECTIONS`] and opens connections until fresh ones
    /// read ERR 1040 instead of the greeting. `others` is how many connections the server had
    /// already (ferry's sessions): the held ones plus these fill `max_connections + 1` slots.
    fn fill(db: &MariaDb, others: usize) -> Full {
        let mut first = mysql::Conn::new(direct_opts(db)).expect("connect to the backend");
        first
            .query_drop(format!("SET GLOBAL max_connections = {MAX_CONNECTIONS}"))
            .unwrap();
        let max: usize = first
            .query_first("select @@global.max_connections")
            .unwrap()
            .unwrap();
        assert_eq!(max, MAX_CONNECTIONS);
        let mut full = Full {
            held: vec![first],
            addr: db.addr(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_full(full.addr) {
            assert!(
                Instant::now() < deadline && full.held.len() <= 2 * MAX_CONNECTIONS,
                "{} held connections and the backend still greets",
                full.held.len()
            );
            match mysql::Conn::new(direct_opts(db)) {
                Ok(conn) => full.held.push(conn),
                // A health probe of ferry held the last slot at that moment: try again.
                Err(e) if mysql_code(&e) == Some(TOO_MANY_CONNECTIONS) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("holding a connection: {e}"),
            }
        }
        // MariaDB refuses before the greeting at max_connections + 1 open connections.
        assert_eq!(
            full.held.len() + others,
            MAX_CONNECTIONS + 1,
            "connections open when the backend refused"
        );
        full
    }

    /// Sets `max_connections` back to MariaDB's default and closes the held connections.
    fn release(mut self) {
        self.held[0]
            .query_drop("SET GLOBAL max_connections = 151")
            .unwrap();
        self.held.clear();
        let free = wait_until(HEALTH_TIMEOUT, || !refuses_with_1040(self.addr));
        assert!(free, "the backend still refuses after the release");
    }
}

/// The session state the tests set and read back.
const STATE_SQL: &str = "select @kept, @n, database(), @@session.sql_mode, @@session.time_zone";

fn state(conn: &mut mysql::Conn) -> Vec<String> {
    let row: mysql::Row = conn.query_first(STATE_SQL).unwrap().unwrap();
    row.unwrap().iter().map(|v| v.as_sql(false)).collect()
}

/// A session on `db1` (db2 drained meanwhile) with user variables, a database and session
/// variables set: its id and state.
fn session_on_db1(ferry: &FerryProcess, db1: &MariaDb) -> (mysql::Conn, u32, Vec<String>) {
    drain(ferry, "db2", true);
    let mut conn = mysql::Conn::new(mysql_opts(ferry, USER, PASSWORD)).expect("connect");
    drain(ferry, "db2", false);
    let id = conn.connection_id();
    assert_eq!(session_backend(ferry, id), "db1");
    conn.query_drop("USE migr").unwrap();
    conn.query_drop(
        "SET @kept = 'still here ½', @n = 42, SESSION sql_mode = 'ANSI_QUOTES', \
         SESSION time_zone = '+03:00'",
    )
    .unwrap();
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db1.port());
    let before = state(&mut conn);
    assert_eq!(
        before,
        [
            "'still here ½'",
            "'42'",
            "'migr'",
            "'ANSI_QUOTES'",
            "'+03:00'"
        ]
    );
    (conn, id, before)
}

// ---------------------------------------------------------------- rebalancing off

fn a_full_backend_is_avoided_and_drained(driver: Driver) {
    let (db1, db2) = (migration_backend(1), migration_backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start();
    wait_health(&ferry, "db1", true);
    wait_health(&ferry, "db2", true);
    let (mut old, old_id, before) = session_on_db1(&ferry, &db1);

    // db1 fills up: ferry's one backend connection plus the held ones.
    let full = Full::fill(&db1, 1);

    // (1) Unhealthy within a bounded time, in the API, the metrics and the log.
    let took = wait_health(&ferry, "db1", false);
    eprintln!("{driver}: db1 unhealthy {took:?} after it filled up");
    assert_eq!(
        backend_up(&ferry, "db1"),
        Some(0),
        "ferry_backend_up for db1"
    );
    assert_eq!(
        backend_up(&ferry, "db2"),
        Some(1),
        "ferry_backend_up for db2"
    );
    assert!(
        ferry.log().contains("too many connections (ERR 1040)"),
        "the log does not name the reason:\n{}",
        ferry.log_tail(20)
    );
    let info = backend_info(&ferry, "db1");
    assert_eq!(info["draining"], false, "{info}");
    assert_eq!(info["sessions"], 1, "the old session still counts: {info}");

    // (2) New sessions go to db2 and work. Without the health verdict the second one would go to
    // db1 (one session each, ties to the lowest index) and get ERR 1040.
    let mut fresh = Vec::new();
    for i in 0..3u32 {
        let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD))
            .unwrap_or_else(|e| panic!("new session {i} while db1 is full: {e}"));
        assert_eq!(session_backend(&ferry, conn.connection_id()), "db2");
        let (port, sum): (u16, u32) = conn
            .query_first(format!("select @@port, {i} + 40"))
            .unwrap()
            .unwrap();
        assert_eq!((port, sum), (db2.port(), i + 40), "new session {i}");
        fresh.push(conn);
    }

    // (3) The session already on db1 keeps its connection and answers.
    assert_eq!(state(&mut old), before, "state on the full backend");
    let port: u16 = old.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db1.port());
    assert_eq!(session_backend(&ferry, old_id), "db1");
    // Not moved by itself: rebalancing is off, so only a drain moves it.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(session_backend(&ferry, old_id), "db1");
    assert!(refuses_with_1040(db1.addr()), "db1 is still full");
    assert_eq!(backend_info(&ferry, "db1")["healthy"], false);

    // (4) A drain moves it to db2 with its state; the client sees no error.
    drain(&ferry, "db1", true);
    wait_on(&ferry, old_id, "db2");
    let port: u16 = old.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db2.port(), "@@port after the drain");
    assert_eq!(state(&mut old), before, "state after the drain");
    for (i, conn) in fresh.iter_mut().enumerate() {
        let one: u32 = conn.query_first("select 1").unwrap().unwrap();
        assert_eq!(one, 1, "new session {i} after the drain");
    }

    // Connections free again: db1 is healthy again, and undrained it takes new sessions.
    full.release();
    wait_health(&ferry, "db1", true);
    assert_eq!(backend_up(&ferry, "db1"), Some(1));
    drain(&ferry, "db1", false);
    let mut back = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    assert_eq!(session_backend(&ferry, back.connection_id()), "db1");
    let port: u16 = back.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db1.port());
    assert!(!ferry.log().contains("panicked"), "{}", ferry.log_tail(40));
}

// ---------------------------------------------------------------- rebalancing on

fn a_full_backend_is_evacuated_when_rebalancing_is_on(driver: Driver) {
    let (db1, db2) = (migration_backend(1), migration_backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .extra_toml(REPLAY_REBALANCE)
        .start();
    wait_health(&ferry, "db1", true);
    wait_health(&ferry, "db2", true);
    // One session on db1, none on db2: within the balancer's tolerance, so it stays.
    let (mut old, old_id, before) = session_on_db1(&ferry, &db1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(session_backend(&ferry, old_id), "db1");

    let full = Full::fill(&db1, 1);
    wait_health(&ferry, "db1", false);
    // The balancer evacuates the failing backend without a drain.
    wait_on(&ferry, old_id, "db2");
    assert_eq!(backend_info(&ferry, "db1")["draining"], false);
    let port: u16 = old.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db2.port(), "@@port after the evacuation");
    assert_eq!(state(&mut old), before, "state after the evacuation");
    full.release();
}

// ---------------------------------------------------------------- refused before the greeting

fn a_new_session_goes_elsewhere_when_its_backend_refuses_it(driver: Driver) {
    let (db1, db2) = (backend(1), backend(2));
    let ferry = proxy_over_pair(driver, &db1, &db2)
        .health_interval(RARE_CHECKS)
        .start();
    let started = Instant::now();
    // The first round of checks runs at startup; the next one only after RARE_CHECKS.
    wait_health(&ferry, "db1", true);
    wait_health(&ferry, "db2", true);
    let errors_before = metric(&ferry, BACKEND_CONNECT_ERRORS);

    // db1 fills up with no session of ferry on it. ferry still believes it healthy, and with no
    // sessions anywhere its policy picks db1 (ties go to the first backend).
    let full = Full::fill(&db1, 0);
    assert_eq!(backend_info(&ferry, "db1")["healthy"], true);

    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD))
        .unwrap_or_else(|e| panic!("a new session while db1 is full: {e}"));
    let port: u16 = conn.query_first("select @@port").unwrap().unwrap();
    assert_eq!(port, db2.port(), "served by db2");
    assert_eq!(session_backend(&ferry, conn.connection_id()), "db2");

    // The refusal marked db1 down (no health check ran since startup), and it was counted.
    let info = backend_info(&ferry, "db1");
    assert_eq!(info["healthy"], false, "{info}");
    assert_eq!(
        info["sessions"], 0,
        "the refused connection is released: {info}"
    );
    assert_eq!(backend_info(&ferry, "db2")["sessions"], 1);
    assert_eq!(backend_up(&ferry, "db1"), Some(0));
    assert!(metric(&ferry, BACKEND_CONNECT_ERRORS) > errors_before);
    let log = ferry.log();
    assert!(
        log.contains("backend refused a connection before its greeting") && log.contains("1040"),
        "the log does not name the refusal:\n{}",
        ferry.log_tail(20)
    );
    assert!(
        started.elapsed() < RARE_CHECKS,
        "a second round of health checks may have run; the test took too long"
    );

    // The next session goes straight to db2; the first one keeps working.
    let mut next = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("connect");
    assert_eq!(session_backend(&ferry, next.connection_id()), "db2");
    let one: u32 = next.query_first("select 1").unwrap().unwrap();
    assert_eq!(one, 1);
    let sum: u32 = conn.query_first("select 40 + 2").unwrap().unwrap();
    assert_eq!(sum, 42);
    assert!(!ferry.log().contains("panicked"), "{}", ferry.log_tail(40));
    full.release();
}

fn a_lone_full_backend_gives_the_client_its_1040(driver: Driver) {
    let db1 = backend(1);
    // Passthrough auth (the default): the refusal reaches the client through a relayed login.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .health_interval(RARE_CHECKS)
        .start();
    wait_health(&ferry, "db1", true);
    let full = Full::fill(&db1, 0);

    let err = match mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)) {
        Ok(_) => panic!("logged in although the only backend is full"),
        Err(e) => e,
    };
    assert_eq!(
        mysql_code(&err),
        Some(TOO_MANY_CONNECTIONS),
        "the backend's own ERR, not ferry's 1429: {err}"
    );
    assert!(err.to_string().contains("Too many connections"), "{err}");
    assert_eq!(backend_info(&ferry, "db1")["healthy"], false);
    assert_eq!(backend_info(&ferry, "db1")["sessions"], 0);

    // db1 is marked down now, and no health check will run: the next clients still try it (it
    // is there, only full) and hear its own 1040, not "no healthy backend".
    for _ in 0..2 {
        let Err(err) = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)) else {
            panic!("logged in although the only backend is full");
        };
        assert_eq!(mysql_code(&err), Some(TOO_MANY_CONNECTIONS), "{err}");
    }
    // ... and as soon as a slot frees, a client gets in, long before the next health check.
    let mut full = full;
    full.held.pop();
    let freed = Instant::now();
    let mut login = None;
    let logged_in = wait_until(Duration::from_secs(10), || {
        login = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).ok();
        login.is_some()
    });
    assert!(logged_in, "no login within 10 s of a free slot");
    assert!(freed.elapsed() < RARE_CHECKS);
    let mut conn = login.unwrap();
    let one: u32 = conn.query_first("select 1").unwrap().unwrap();
    assert_eq!(one, 1);
    drop(conn);
    let log = ferry.log();
    assert_eq!(
        log.matches("backend refused a connection before its greeting")
            .count(),
        1,
        "one warning when db1 went down, not one per client:\n{}",
        ferry.log_tail(40)
    );
    assert!(!log.contains("panicked"), "{}", ferry.log_tail(40));
    full.release();
}
