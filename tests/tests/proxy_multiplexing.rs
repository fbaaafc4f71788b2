//! Multiplexing (issue 15) through the real proxy program in front of a real MariaDB, for every
//! driver: client sessions share a few backend connections, each session answered as if it had
//! its own.
//!
//! - 500 sessions connected at once, each with its own user variables, session variables, schema
//!   and prepared statement, run statements round-robin over 10 backend connections: every
//!   answer is its own, MariaDB never shows more than 10 connections of the user, and `/metrics`
//!   shows the pool. The same workload runs directly against MariaDB first (20 sessions), so the
//!   expected answers are MariaDB's own.
//! - A full pool: a session waiting longer than `max-wait` gets ERR 1040 (08004) and goes on; a
//!   waiting session is served once the connection is free.
//! - `idle-timeout`: idle pooled connections close while the clients stay connected; their next
//!   statements find their state rebuilt.
//! - What a session reads about its own past (LAST_INSERT_ID(), the OK packet, ROW_COUNT(),
//!   FOUND_ROWS(), warnings) with another session running between its statements on a
//!   1-connection pool, compared with a direct connection; CONNECTION_ID() pins the session, and
//!   `KILL QUERY` of that id interrupts it with 1317 as directly; COM_RESET_CONNECTION and
//!   COM_CHANGE_USER clear user variables as directly.
//!
//! The client programs' own suites run multiplexed too (their `*_multiplexed` tests, with
//! `proxy_common::multiplexed`).

mod proxy_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, wait_until, Driver, MariaDb};
use mysql::prelude::Queryable;
use proxy_common::multiplexed::{backend_connections, multiplexed_over, watcher, Watch};
use proxy_common::{
    backend_with_reader, client_opts, metric_sum, mysql_code, python_json, PASSWORD, READER,
    READER_PASSWORD, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    five_hundred_sessions_on_ten_connections,
    a_full_pool_answers_1040_after_max_wait,
    idle_connections_close_and_sessions_rebuild,
    observable_values_as_on_a_direct_connection,
    connection_id_pins_and_kill_query_reaches_it,
    reset_and_change_user_clear_user_variables,
);

fn connect_to(port: u16) -> mysql::Conn {
    mysql::Conn::new(client_opts(port, USER, PASSWORD)).expect("connect")
}

/// A connection whose current schema is `schema` from the handshake on.
fn connect_in(port: u16, schema: &str) -> mysql::Conn {
    mysql::Conn::new(client_opts(port, USER, PASSWORD).db_name(Some(schema))).expect("connect")
}

/// The process-list count, waited for: MariaDB removes a closed connection a moment later.
fn wait_for_connections(db: &MariaDb, want: impl Fn(usize) -> bool, timeout: Duration) -> usize {
    let mut w = watcher(db);
    let mut last = 0;
    wait_until(timeout, || {
        last = backend_connections(&mut w);
        want(last)
    });
    last
}

// ---------------------------------------------------------------- 500 sessions, 10 connections

const SESSIONS: usize = 500;
const POOL: usize = 10;
/// Client threads; each drives its share of the sessions round-robin.
const THREADS: usize = 20;
/// Databases `mx0`.. whose table `which` holds the database's own name.
const DATABASES: usize = 5;
const ROUNDS: i64 = 3;
/// How long the whole workload may take (it takes seconds): a stuck pool fails the test, not CI.
const WORKLOAD_DEADLINE: Duration = Duration::from_secs(120);
/// Read timeout of the workload's clients.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What session `i` sets, and so what it must read back.
struct Expect {
    i: usize,
    a: i64,
    /// The current schema's number.
    schema: usize,
    /// The schema its statement was prepared in (MariaDB resolves names at PREPARE).
    prepared_in: usize,
    stmt: Option<mysql::Statement>,
}

impl Expect {
    fn new(i: usize) -> Expect {
        Expect {
            i,
            a: i as i64,
            schema: i % DATABASES,
            prepared_in: i % DATABASES,
            stmt: None,
        }
    }

    /// Some sessions concatenate with `||`.
    fn pipes(&self) -> bool {
        self.i.is_multiple_of(4)
    }

    /// Some sessions change schema after preparing.
    fn moves(&self) -> bool {
        self.i.is_multiple_of(3)
    }
}

/// The steps every session takes, one step of every session before the next step of any.
#[derive(Debug, Clone, Copy)]
enum Step {
    UserVariables,
    SessionVariables,
    Schema,
    Prepare,
    Check(i64),
    Execute(i64),
    Change,
}

fn steps() -> Vec<Step> {
    let mut steps = vec![
        Step::UserVariables,
        Step::SessionVariables,
        Step::Schema,
        Step::Prepare,
    ];
    for round in 0..ROUNDS {
        steps.extend([Step::Check(round), Step::Execute(round)]);
        if round == 0 {
            steps.push(Step::Change);
        }
    }
    steps
}

fn take_step(conn: &mut mysql::Conn, e: &mut Expect, step: Step) -> Result<(), String> {
    let i = e.i;
    let err = |what: &str, x: mysql::Error| format!("session {i}, {step:?} ({what}): {x}");
    match step {
        Step::UserVariables => conn
            .query_drop(format!("SET @a = {i}, @s = 'text-{i}'"))
            .map_err(|x| err("SET @a", x)),
        Step::SessionVariables => {
            let mode = if e.pipes() {
                ", sql_mode = CONCAT(@@sql_mode, ',PIPES_AS_CONCAT')"
            } else {
                ""
            };
            conn.query_drop(format!(
                "SET SESSION group_concat_max_len = {}{mode}",
                1000 + i
            ))
            .map_err(|x| err("SET SESSION", x))
        }
        Step::Schema => {
            let name = format!("mx{}", e.schema);
            // COM_INIT_DB for half the sessions, USE for the others.
            if i.is_multiple_of(2) {
                conn.select_db(&name).map_err(|x| err("COM_INIT_DB", x))
            } else {
                conn.query_drop(format!("USE {name}"))
                    .map_err(|x| err("USE", x))
            }
        }
        Step::Prepare => {
            let stmt = conn
                .prep(format!(
                    "SELECT CAST(? AS SIGNED) * 1000 + {i}, name FROM which"
                ))
                .map_err(|x| err("PREPARE", x))?;
            e.stmt = Some(stmt);
            Ok(())
        }
        Step::Check(round) => {
            type Row = (i64, String, u64, String, String, String);
            let got: Option<Row> = conn
                .query_first(
                    "SELECT @a, @s, @@group_concat_max_len, DATABASE(), \
                     (SELECT name FROM which), '1' || '0'",
                )
                .map_err(|x| err("SELECT", x))?;
            let schema = format!("mx{}", e.schema);
            let want: Row = (
                e.a,
                format!("text-{i}"),
                1000 + i as u64,
                schema.clone(),
                schema,
                if e.pipes() { "10" } else { "1" }.to_owned(),
            );
            if got.as_ref() != Some(&want) {
                return Err(format!(
                    "session {i}, round {round}: got {got:?}, want {want:?}"
                ));
            }
            Ok(())
        }
        Step::Execute(round) => {
            let stmt = e.stmt.as_ref().expect("prepared");
            let got: Option<(i64, String)> = conn
                .exec_first(stmt, (round,))
                .map_err(|x| err("EXECUTE", x))?;
            let want = (round * 1000 + i as i64, format!("mx{}", e.prepared_in));
            if got.as_ref() != Some(&want) {
                return Err(format!(
                    "session {i}, EXECUTE round {round}: got {got:?}, want {want:?}"
                ));
            }
            Ok(())
        }
        Step::Change => {
            conn.query_drop("SET @a = @a + 100000")
                .map_err(|x| err("SET @a", x))?;
            e.a += 100_000;
            if e.moves() {
                e.schema = (e.schema + 1) % DATABASES;
                conn.query_drop(format!("USE mx{}", e.schema))
                    .map_err(|x| err("USE", x))?;
            }
            Ok(())
        }
    }
}

/// Connects `sessions` clients to `port` (all at once), then runs [`steps`] round-robin from
/// [`THREADS`] threads; `during` runs on this thread until they finish. Every wrong answer or
/// error, as text.
fn run_sessions(
    port: u16,
    sessions: usize,
    threads: usize,
    mut during: impl FnMut(),
) -> Vec<String> {
    let connected = Arc::new(Barrier::new(threads + 1));
    let deadline = Instant::now() + WORKLOAD_DEADLINE;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let connected = Arc::clone(&connected);
            thread::spawn(move || {
                let mut errors = Vec::new();
                let mut mine: Vec<(mysql::Conn, Expect)> = Vec::new();
                for i in (t..sessions).step_by(threads) {
                    let opts = client_opts(port, USER, PASSWORD)
                        .read_timeout(Some(WORKLOAD_TIMEOUT))
                        .write_timeout(Some(WORKLOAD_TIMEOUT));
                    if Instant::now() > deadline {
                        errors.push(format!("session {i}: not connected by the deadline"));
                        continue;
                    }
                    match mysql::Conn::new(opts) {
                        Ok(c) => mine.push((c, Expect::new(i))),
                        Err(e) => errors.push(format!("session {i}: connect: {e}")),
                    }
                }
                connected.wait();
                for step in steps() {
                    // A session that went wrong takes no more steps.
                    let mut failed = Vec::new();
                    for (n, (conn, e)) in mine.iter_mut().enumerate() {
                        if Instant::now() > deadline {
                            errors
                                .push(format!("session {}: {step:?} not run by the deadline", e.i));
                            failed.push(n);
                        } else if let Err(x) = take_step(conn, e, step) {
                            errors.push(x);
                            failed.push(n);
                        }
                    }
                    for n in failed.into_iter().rev() {
                        mine.remove(n);
                    }
                }
                errors
            })
        })
        .collect();
    connected.wait();
    while !handles.iter().all(|h| h.is_finished()) {
        during();
        thread::sleep(Duration::from_millis(100));
    }
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("a client thread panicked"))
        .collect()
}

fn five_hundred_sessions_on_ten_connections(driver: Driver) {
    // Room for 500 direct connections: without multiplexing the test fails on its count, not on
    // MariaDB's limit.
    let db = MariaDb::builder().args(["--max-connections=1000"]).start();
    db.create_user(USER, PASSWORD);
    for k in 0..DATABASES {
        db.sql(&format!(
            "CREATE DATABASE mx{k}; CREATE TABLE mx{k}.which (name VARCHAR(10)); \
             INSERT INTO mx{k}.which VALUES ('mx{k}')"
        ));
    }
    // The expectations are MariaDB's own: the workload, smaller, directly.
    let errors = run_sessions(db.port(), 20, 4, || {});
    assert!(errors.is_empty(), "directly against MariaDB: {errors:#?}");
    assert_eq!(
        wait_for_connections(&db, |n| n == 0, Duration::from_secs(10)),
        0
    );

    let ferry = multiplexed_over(
        driver,
        &db,
        &format!("max-backend-connections = {POOL}\nmax-wait = \"30s\""),
    );
    let watch = Watch::start(&db);
    let mut pool_gauge: Vec<Option<f64>> = Vec::new();
    let started = Instant::now();
    let errors = run_sessions(ferry.port(), SESSIONS, THREADS, || {
        pool_gauge.push(metric_sum(&ferry, "ferry_pool_connections"));
    });
    let most = watch.stop();
    eprintln!(
        "{SESSIONS} sessions through ferry ({driver}): {:?}, at most {most} backend connections",
        started.elapsed()
    );
    assert!(
        errors.is_empty(),
        "{} wrong answers or errors, the first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(
        most <= POOL,
        "MariaDB had {most} connections of {USER} at once; max-backend-connections = {POOL}"
    );
    assert!(most >= 1, "the watcher saw no connection at all");
    assert!(
        !pool_gauge.is_empty() && pool_gauge.iter().all(Option::is_some),
        "ferry_pool_connections missing from /metrics during the run: {pool_gauge:?}"
    );
    assert!(
        pool_gauge.iter().flatten().all(|n| *n <= POOL as f64),
        "ferry_pool_connections over {POOL}: {pool_gauge:?}"
    );
    assert_eq!(
        ferry.api("/api/sessions").as_array().map(Vec::len),
        Some(0),
        "every session closed"
    );
}

// ---------------------------------------------------------------- a full pool

fn a_full_pool_answers_1040_after_max_wait(driver: Driver) {
    let db = proxy_common::backend(1);
    db.sql("CREATE DATABASE lim; CREATE TABLE lim.t (id INT PRIMARY KEY)");
    let ferry = multiplexed_over(
        driver,
        &db,
        "max-backend-connections = 1\nmax-wait = \"500ms\"",
    );
    let mut a = connect_to(ferry.port());
    let mut b = connect_to(ferry.port());
    // Both use the one connection in turn.
    for turn in 0..3 {
        let conn = if turn == 1 { &mut b } else { &mut a };
        assert_eq!(conn.query_first::<i32, _>("SELECT 1").unwrap(), Some(1));
    }
    // A's transaction holds it.
    a.query_drop("BEGIN").unwrap();
    a.query_drop("INSERT INTO lim.t VALUES (1)").unwrap();
    for attempt in 0..2 {
        let start = Instant::now();
        let outcome = b.query_first::<i32, _>("SELECT 1");
        let waited = start.elapsed();
        match outcome {
            Err(mysql::Error::MySqlError(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1040, "08004"), "{e:?}");
            }
            other => panic!(
                "attempt {attempt}: B got {other:?} after {waited:?} while A's transaction \
                 held the only backend connection; want ERR 1040"
            ),
        }
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
            "ERR 1040 after {waited:?}, not after max-wait (500 ms)"
        );
    }
    assert!(
        metric_sum(&ferry, "ferry_pool_timeouts_total").is_some_and(|n| n >= 2.0),
        "ferry_pool_timeouts_total should count B's two timeouts"
    );
    assert_eq!(
        backend_connections(&mut watcher(&db)),
        1,
        "B's wait must not open a second connection"
    );
    // A commits: B goes on, and sees A's row.
    a.query_drop("COMMIT").unwrap();
    assert_eq!(
        b.query_first::<i64, _>("SELECT COUNT(*) FROM lim.t")
            .unwrap(),
        Some(1)
    );
    // A session waiting when the connection comes free is served then: one still waiting at
    // max-wait would get ERR 1040 instead of the count.
    a.query_drop("BEGIN").unwrap();
    a.query_drop("INSERT INTO lim.t VALUES (2)").unwrap();
    let waiter = thread::spawn(move || {
        let start = Instant::now();
        let got = b.query_first::<i64, _>("SELECT COUNT(*) FROM lim.t");
        (got.map_err(|e| e.to_string()), start.elapsed())
    });
    thread::sleep(Duration::from_millis(100));
    a.query_drop("COMMIT").unwrap();
    let (got, waited) = waiter.join().expect("B's thread");
    assert_eq!(
        got,
        Ok(Some(2)),
        "B, waiting while A committed ({waited:?})"
    );
}

// ---------------------------------------------------------------- idle connections close

fn idle_connections_close_and_sessions_rebuild(driver: Driver) {
    let db = proxy_common::backend(1);
    for k in 0..DATABASES {
        db.sql(&format!(
            "CREATE DATABASE mx{k}; CREATE TABLE mx{k}.which (name VARCHAR(10)); \
             INSERT INTO mx{k}.which VALUES ('mx{k}')"
        ));
    }
    let ferry = multiplexed_over(
        driver,
        &db,
        "max-backend-connections = 4\nidle-timeout = \"1s\"",
    );
    let mut clients: Vec<(mysql::Conn, Expect)> = (0..6)
        .map(|i| {
            let mut e = Expect::new(i);
            e.schema = i % 2;
            e.prepared_in = i % 2;
            (connect_to(ferry.port()), e)
        })
        .collect();
    let setup = [
        Step::UserVariables,
        Step::SessionVariables,
        Step::Schema,
        Step::Prepare,
        Step::Check(0),
        Step::Execute(0),
    ];
    for step in setup {
        for (conn, e) in &mut clients {
            take_step(conn, e, step).unwrap_or_else(|x| panic!("{x}"));
        }
    }
    let open = backend_connections(&mut watcher(&db));
    assert!(
        (1..=4).contains(&open),
        "{open} backend connections for 6 sessions over a pool of 4"
    );
    // Quiet: the pool closes its idle connections; the clients stay connected.
    thread::sleep(Duration::from_millis(2500));
    let left = wait_for_connections(&db, |n| n == 0, Duration::from_millis(1500));
    assert_eq!(left, 0, "idle pooled connections still open 2.5 s + 1.5 s after the last statement (idle-timeout 1 s)");
    assert_eq!(
        ferry.api("/api/sessions").as_array().map(Vec::len),
        Some(6),
        "the client sessions must stay"
    );
    // Their next statements find their state rebuilt on new connections.
    for step in [
        Step::Check(1),
        Step::Execute(1),
        Step::Change,
        Step::Check(2),
        Step::Execute(2),
    ] {
        for (conn, e) in &mut clients {
            take_step(conn, e, step).unwrap_or_else(|x| panic!("after the idle close: {x}"));
        }
    }
}

// ---------------------------------------------------------------- observable values

/// Statements whose answers depend on the session's own earlier statements, in parts: each part
/// runs on a session of its own (a statement naming ROW_COUNT(), FOUND_ROWS(), SHOW WARNINGS or
/// @@warning_count pins the session to its connection for good, and on a pool of 1 the other
/// session could not run again until it leaves). `SET sql_mode = ''` first: too long values
/// are truncated with a warning.
const OBSERVED: &[&[&str]] = &[
    &[
        "INSERT INTO t (v) VALUES ('a'), ('b')",
        "SELECT LAST_INSERT_ID()",
        "SELECT LAST_INSERT_ID()",
        "SELECT 1",
        "SELECT LAST_INSERT_ID()",
        "INSERT INTO t (v) VALUES ('c')",
        "SELECT 2",
        "SELECT 3",
        "SELECT LAST_INSERT_ID()",
    ],
    &[
        "SELECT LAST_INSERT_ID()",
        "UPDATE t SET v = 'u' WHERE id <= 2",
        "SELECT ROW_COUNT()",
        "SELECT ROW_COUNT()",
    ],
    &[
        "SELECT SQL_CALC_FOUND_ROWS id FROM t ORDER BY id LIMIT 1",
        "SELECT FOUND_ROWS()",
        "SELECT FOUND_ROWS()",
    ],
    &[
        "SELECT CAST('x' AS SIGNED)",
        "SELECT @@warning_count",
        "SHOW WARNINGS",
    ],
    &[
        "INSERT INTO t (v) VALUES ('far too long')",
        "SHOW WARNINGS",
        "SELECT @@warning_count",
        "SELECT LAST_INSERT_ID(), ROW_COUNT()",
    ],
    &["SELECT id, v FROM t ORDER BY id"],
];

/// Runs [`OBSERVED`], each part on a new connection from `connect`; `between` runs after each
/// statement. Each statement with what it returned and what its OK packet said.
fn observe(mut connect: impl FnMut() -> mysql::Conn, mut between: impl FnMut()) -> Vec<String> {
    let mut seen = Vec::new();
    for (n, part) in OBSERVED.iter().enumerate() {
        let mut conn = connect();
        conn.query_drop("SET SESSION sql_mode = ''").unwrap();
        between();
        for sql in *part {
            let line = match conn.query::<mysql::Row, _>(sql) {
                Ok(rows) => {
                    let rows: Vec<Vec<String>> = rows
                        .into_iter()
                        .map(|r| r.unwrap().iter().map(|v| v.as_sql(false)).collect())
                        .collect();
                    format!(
                        "{rows:?} (affected {}, insert id {}, warnings {})",
                        conn.affected_rows(),
                        conn.last_insert_id(),
                        conn.warnings()
                    )
                }
                Err(e) => format!("error {e}"),
            };
            seen.push(format!("part {n}: {sql} -> {line}"));
            between();
        }
    }
    seen
}

fn observable_values_as_on_a_direct_connection(driver: Driver) {
    let db = proxy_common::backend(1);
    for name in ["obs_direct", "obs_ferry", "obs_other"] {
        db.sql(&format!(
            "CREATE DATABASE {name}; \
             CREATE TABLE {name}.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(5)) \
             AUTO_INCREMENT = {}",
            if name == "obs_other" { 1000 } else { 1 }
        ));
    }
    db.sql("INSERT INTO obs_other.t (v) VALUES ('o'), ('o'), ('o')");
    let direct = observe(|| connect_in(db.port(), "obs_direct"), || {});

    let ferry = multiplexed_over(
        driver,
        &db,
        "max-backend-connections = 1\nmax-wait = \"2s\"",
    );
    let watch = Watch::start(&db);
    // The other session runs statements that change the same values, as fast as the pool lets
    // it; while a subject is pinned it waits, and may time out (ERR 1040), as designed.
    let done = Arc::new(AtomicBool::new(false));
    let other_ran = Arc::new(AtomicU64::new(0));
    let other = {
        let (done, ran) = (Arc::clone(&done), Arc::clone(&other_ran));
        let mut conn = connect_to(ferry.port());
        thread::spawn(move || -> Result<u64, String> {
            conn.query_drop("SET SESSION sql_mode = ''")
                .map_err(|e| e.to_string())?;
            let statements = [
                "INSERT INTO obs_other.t (v) VALUES ('o')",
                "UPDATE obs_other.t SET v = 'p'",
                "SELECT SQL_CALC_FOUND_ROWS id FROM obs_other.t LIMIT 1",
                "SELECT CAST('y' AS SIGNED), CAST('z' AS SIGNED)",
                "SELECT LAST_INSERT_ID(7)",
            ];
            let mut timeouts = 0;
            for sql in statements.iter().cycle() {
                if done.load(Ordering::Relaxed) {
                    return Ok(timeouts);
                }
                match conn.query_drop(sql) {
                    Ok(()) => {
                        ran.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if mysql_code(&e) == Some(1040) => timeouts += 1,
                    Err(e) => return Err(format!("{sql}: {e}")),
                }
            }
            Ok(timeouts)
        })
    };
    // After each statement of a subject, the other runs one if the pool lets it now.
    let through_ferry = observe(
        || connect_in(ferry.port(), "obs_ferry"),
        || {
            let before = other_ran.load(Ordering::Relaxed);
            wait_until(Duration::from_millis(300), || {
                other_ran.load(Ordering::Relaxed) > before
            });
        },
    );
    done.store(true, Ordering::Relaxed);
    let timeouts = other
        .join()
        .expect("the other session panicked")
        .unwrap_or_else(|e| panic!("the other session: {e}"));
    let ran = other_ran.load(Ordering::Relaxed);
    let most = watch.stop();
    eprintln!("the other session ran {ran} statements, {timeouts} timed out");
    assert_eq!(
        through_ferry, direct,
        "through ferry (left) vs directly (right), another session interleaving"
    );
    assert!(
        ran >= 10,
        "the other session ran only {ran} statements: no interleaving"
    );
    assert!(most <= 1, "MariaDB had {most} connections over a pool of 1");
}

// ---------------------------------------------------------------- CONNECTION_ID() and KILL

/// A long statement `KILL QUERY` interrupts (`SELECT SLEEP(10)` alone would just return 1).
const SLEEP: &str = "SELECT SLEEP(10) FROM (SELECT 1 UNION SELECT 2) AS two";

/// Runs [`SLEEP`] on `conn` while `kill` (given the statement's connection id) kills it; what
/// it answered (`error <code>` or its rows) and how long it ran.
fn killed_sleep(
    db: &MariaDb,
    conn: mysql::Conn,
    id: u64,
    kill: impl FnOnce(u64),
) -> (mysql::Conn, String, Duration) {
    let sleeper = thread::spawn(move || {
        let mut conn = conn;
        let start = Instant::now();
        let outcome = conn.query::<i64, _>(SLEEP);
        (conn, outcome, start.elapsed())
    });
    let mut w = watcher(db);
    let running = wait_until(Duration::from_secs(5), || {
        w.query_first::<u64, _>(format!(
            "SELECT COUNT(*) FROM information_schema.processlist \
             WHERE id = {id} AND info LIKE 'SELECT SLEEP%'"
        ))
        .unwrap()
            == Some(1)
    });
    assert!(running, "{SLEEP} never ran on connection {id}");
    kill(id);
    let (conn, outcome, ran) = sleeper.join().expect("the sleeper panicked");
    let outcome = match outcome {
        Ok(rows) => format!("rows {rows:?}"),
        Err(e) => match mysql_code(&e) {
            Some(code) => format!("error {code}"),
            None => panic!("not a server error: {e}"),
        },
    };
    (conn, outcome, ran)
}

fn connection_id_pins_and_kill_query_reaches_it(driver: Driver) {
    let db = proxy_common::backend(1);
    db.sql("CREATE DATABASE pin; CREATE TABLE pin.t (n INT)");
    // Directly: KILL QUERY from another connection answers 1317, the connection goes on.
    let mut direct = connect_to(db.port());
    let id: u64 = direct
        .query_first("SELECT CONNECTION_ID()")
        .unwrap()
        .unwrap();
    let mut killer = connect_to(db.port());
    let (mut direct, direct_outcome, ran) = killed_sleep(&db, direct, id, |id| {
        killer.query_drop(format!("KILL QUERY {id}")).unwrap()
    });
    assert_eq!(direct_outcome, "error 1317", "directly, after {ran:?}");
    assert_eq!(
        direct
            .query_first::<u64, _>("SELECT CONNECTION_ID()")
            .unwrap(),
        Some(id)
    );
    drop((direct, killer));

    let ferry = multiplexed_over(
        driver,
        &db,
        "max-backend-connections = 2\nmax-wait = \"20s\"",
    );
    let mut subject = connect_to(ferry.port());
    subject.query_drop("SET @z = 'mine'").unwrap();
    let id: u64 = subject
        .query_first("SELECT CONNECTION_ID()")
        .unwrap()
        .unwrap();
    assert_eq!(
        backend_connections(&mut watcher(&db)),
        1,
        "one session, one backend connection"
    );
    // The subject is pinned to that connection: others never get it, even when it is the only
    // one open and the subject is idle. (They do not name CONNECTION_ID(), which would pin them
    // too: the watcher finds their transaction's thread.)
    let mut w = watcher(&db);
    let mut others: Vec<mysql::Conn> = (0..3).map(|_| connect_to(ferry.port())).collect();
    for (n, other) in others.iter_mut().enumerate() {
        other.query_drop("BEGIN").unwrap();
        other
            .query_drop(format!("INSERT INTO pin.t VALUES ({n})"))
            .unwrap();
        let theirs: Vec<u64> = w
            .query("SELECT trx_mysql_thread_id FROM information_schema.innodb_trx")
            .unwrap();
        other.query_drop("COMMIT").unwrap();
        assert_eq!(theirs.len(), 1, "session {n}'s transaction: {theirs:?}");
        assert_ne!(
            theirs[0], id,
            "session {n} got the connection whose id the subject read"
        );
        let ids: Vec<Option<(u64, String)>> = (0..2)
            .map(|_| subject.query_first("SELECT CONNECTION_ID(), @z").unwrap())
            .collect();
        assert_eq!(
            ids,
            [Some((id, "mine".to_owned())), Some((id, "mine".to_owned()))]
        );
    }
    let open = backend_connections(&mut watcher(&db));
    assert!(
        open <= 2,
        "{open} backend connections for 4 sessions over a pool of 2"
    );

    // KILL QUERY of that id, from another session through ferry, interrupts it as directly.
    let killer = &mut others[0];
    let (mut subject, outcome, ran) = killed_sleep(&db, subject, id, |id| {
        killer.query_drop(format!("KILL QUERY {id}")).unwrap()
    });
    assert_eq!(
        outcome, direct_outcome,
        "through ferry vs directly, after {ran:?}"
    );
    assert!(
        ran < Duration::from_secs(8),
        "SLEEP(10) ran {ran:?}: not killed"
    );
    assert_eq!(
        subject
            .query_first::<(u64, String), _>("SELECT CONNECTION_ID(), @z")
            .unwrap(),
        Some((id, "mine".to_owned())),
        "the subject goes on, on its connection, with its state"
    );
}

// ---------------------------------------------------------------- COM_RESET_CONNECTION, COM_CHANGE_USER

/// On one port: a subject session and another one, statements interleaved, the subject resetting
/// and changing user; what the subject and the other read.
const RESET_SCRIPT: &str = r#"
import json, sys
import mysql.connector
port, user, password, reader, reader_password = int(sys.argv[1]), *sys.argv[2:6]
def connect():
    return mysql.connector.connect(host="127.0.0.1", port=port, user=user, password=password,
                                   use_pure=True, connection_timeout=10, autocommit=True,
                                   ssl_disabled=True)
s, o = connect(), connect()
def q(c, sql):
    cur = c.cursor()
    cur.execute(sql)
    rows = [list(r) for r in cur.fetchall()] if cur.description else []
    cur.close()
    return rows
r = {}
q(s, "SET @a = 1, @b = 'x'")
q(o, "SET @a = 'other'")
r["connections"] = q(s, "SELECT COUNT(*) FROM information_schema.processlist WHERE user = '%s'" % user)[0][0]
r["before"] = q(s, "SELECT @a, @b")
s.cmd_reset_connection()
r["other_after_reset"] = q(o, "SELECT @a")
r["after_reset"] = q(s, "SELECT @a, @b")
q(s, "SET @a = 2")
q(o, "SELECT 1")
s.cmd_change_user(username=reader, password=reader_password)
q(o, "SELECT 1")
r["after_change"] = q(s, "SELECT @a, CURRENT_USER()")
q(s, "SET @a = 3")
q(o, "SELECT 1")
r["reader_var"] = q(s, "SELECT @a, CURRENT_USER()")
s.cmd_change_user(username=user, password=password)
q(o, "SELECT 1")
r["back"] = q(s, "SELECT @a, CURRENT_USER()")
r["other_end"] = q(o, "SELECT @a, CURRENT_USER()")
print(json.dumps(r))
"#;

fn reset_and_change_user_clear_user_variables(driver: Driver) {
    let db = backend_with_reader(1);
    let run = |port: u16| {
        python_json(
            "mysql.connector",
            "mysql-connector-python",
            RESET_SCRIPT,
            &[
                port.to_string(),
                USER.into(),
                PASSWORD.into(),
                READER.into(),
                READER_PASSWORD.into(),
            ],
        )
    };
    let mut direct = run(db.port());
    assert_eq!(direct["connections"], 2, "directly: {direct}");
    direct["connections"] = json!(1);
    assert_eq!(
        direct,
        json!({
            "before": [[1, "x"]],
            "other_after_reset": [["other"]],
            "after_reset": [[null, null]],
            "after_change": [[null, "reader@%"]],
            "reader_var": [[3, "reader@%"]],
            "back": [[null, "app@%"]],
            "other_end": [["other", "app@%"]],
            "connections": 1,
        }),
        "directly"
    );
    let ferry = multiplexed_over(
        driver,
        &db,
        "max-backend-connections = 1\nmax-wait = \"20s\"",
    );
    let watch = Watch::start(&db);
    let through: Json = run(ferry.port());
    let most = watch.stop();
    assert_eq!(
        through, direct,
        "through ferry vs directly (connections: of the user in MariaDB's process list, 1 \
         through ferry's pool of 1)"
    );
    assert!(most <= 1, "MariaDB had {most} connections over a pool of 1");
}
