//! Unplanned failover in `replay` mode (issue 13), through the real proxy program of every
//! driver: two MariaDB servers, proxy auth, every session placed on db1, then db1 dies.
//!
//! - SIGKILL of db1 under 50 idle sessions, each with its own user variables (integer, a string
//!   with 2-, 3- and 4-byte characters, NULL), session variables (`sql_mode`, `time_zone`),
//!   current database, two protocol prepared statements whose client ids differ from those a
//!   fresh backend connection gives (one was prepared and closed before), and for every other
//!   session a SQL `PREPARE`d statement: every session's next statements answer from db2
//!   (`@@port`) with its own state, under its ferry id, and can write; `/metrics` counts 50
//!   recovered and none lost;
//! - the same with SIGSTOP: db1 frozen, its sockets open, found by the health check;
//! - sessions inside a transaction on the killed backend (the Rust `mysql` crate, PyMySQL, the
//!   `mariadb` CLI) get their client library's own lost-connection error at their next
//!   statement (2013 or 2006; no ERR from ferry, never a silent success) and count as lost
//!   (`pinned`); an idle session beside them recovers;
//! - detection with the default `[health]` settings: a killed or frozen backend is unhealthy in
//!   `/api/backends` within 1 s (asserted with slack: 1.5 s; the times are printed), new sessions
//!   avoid it, and it is healthy again once it is back.
//!
//! Every wait is bounded; a frozen server is thawed on the way out, also when a test fails.

mod proxy_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::{
    driver_tests, free_port, mariadb_cli, quote_string, require_executable, require_python_module,
    try_http_get, wait_until, ChildGuard, Driver, FerryProcess, MariaDb,
};
use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use proxy_common::{
    backend, drain, metric, mysql_opts, proxy_over_pair, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    fifty_idle_sessions_survive_a_killed_backend,
    fifty_idle_sessions_survive_a_frozen_backend,
    a_transaction_on_a_killed_backend_fails_loudly,
    dead_backends_are_seen_within_a_second,
);

/// Idle sessions on the backend that dies.
const SESSIONS: usize = 50;
/// Databases `fo0`.. on both backends; session `i` uses `fo{i % DATABASES}`.
const DATABASES: usize = 5;
/// How long the failover of every session may take once its backend died, detection included.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Read timeout of the test's Rust clients: a statement sent to a frozen server must not hold a
/// test for long.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer of a [`LineClient`] may take.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// Issue 13: a dead backend is marked down within 1 s by default...
const DETECTION_REQUIRED: Duration = Duration::from_secs(1);
/// ...which the assertion allows with slack, on a loaded 2-core machine.
const DETECTION_ALLOWED: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------- helpers

/// A backend with databases `fo0`.. each holding `t` (identical on every server: replay
/// rebuilds sessions, not data).
fn failover_backend(server_id: u32) -> MariaDb {
    let db = backend(server_id);
    let ddl: String = (0..DATABASES)
        .map(|d| {
            format!(
                "CREATE DATABASE fo{d}; CREATE TABLE fo{d}.t (id INT AUTO_INCREMENT PRIMARY KEY, \
                 v VARCHAR(100)) CHARACTER SET utf8mb4 ENGINE=InnoDB; "
            )
        })
        .collect();
    db.sql(&ddl);
    db
}

/// ferry in `replay` mode over db1 and db2, rebalancing off: sessions move only by failover.
fn replay_ferry(driver: Driver, db1: &MariaDb, db2: &MariaDb) -> FerryProcess {
    proxy_over_pair(driver, db1, db2)
        .extra_toml(REPLAY_NO_REBALANCE)
        .start()
}

fn client_opts(ferry: &FerryProcess) -> mysql::OptsBuilder {
    mysql_opts(ferry, USER, PASSWORD).read_timeout(Some(READ_TIMEOUT))
}

/// The sum of every `ferry_failover_lost_total{reason=...}` sample.
fn lost_total(ferry: &FerryProcess) -> f64 {
    let (_, text) = ferry.http_get("/metrics");
    text.lines()
        .filter(|l| l.starts_with("ferry_failover_lost_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn recovered(ferry: &FerryProcess) -> f64 {
    metric(ferry, "ferry_failover_recovered_total")
}

/// What to look at when a failover did not happen as it should.
fn diagnostics(ferry: &FerryProcess) -> String {
    let metrics: Vec<String> = ferry
        .http_get("/metrics")
        .1
        .lines()
        .filter(|l| l.starts_with("ferry_failover") || l.starts_with("ferry_backend_up"))
        .map(str::to_owned)
        .collect();
    format!(
        "metrics: {metrics:?}\nbackends: {}\nsessions: {}",
        ferry.api("/api/backends"),
        ferry.api("/api/sessions")
    )
}

/// Sessions per backend name in `/api/sessions`.
fn sessions_on(ferry: &FerryProcess, backend: &str) -> usize {
    ferry
        .api("/api/sessions")
        .as_array()
        .map(|all| all.iter().filter(|s| s["backend"] == backend).count())
        .unwrap_or(0)
}

/// Thaws a frozen server when dropped, also when the test fails.
struct Thaw<'a>(&'a MariaDb);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.thaw();
    }
}

// ---------------------------------------------------------------- 50 idle sessions

/// One idle session through ferry with its own state, and that state as read before the
/// failure.
struct Session {
    index: usize,
    conn: mysql::Conn,
    /// ferry's connection id, from the handshake.
    id: u32,
    echo: mysql::Statement,
    typed: mysql::Statement,
    sql_prepared: bool,
    state: Vec<String>,
    typed_row: TypedRow,
}

type TypedRow = (Vec<ColumnType>, Vec<mysql::Value>);

/// Everything a session set, with the text protocol; `@@port` first.
const STATE_SQL: &str = "SELECT @@port, @n, @s, @nil, HEX(@s), COLLATION(@s), @@sql_mode, \
    @@time_zone, DATABASE(), @@character_set_client, @@collation_connection, @@autocommit";

impl Session {
    fn database(index: usize) -> String {
        format!("fo{}", index % DATABASES)
    }

    fn text(index: usize) -> String {
        format!("session {index}: ñ 日本語 😀 'q'")
    }

    fn time_zone(index: usize) -> String {
        format!("+{:02}:{:02}", index % 13, [0, 15, 30, 45][index % 4])
    }

    /// Connects and sets session `index`'s state.
    fn open(ferry: &FerryProcess, index: usize) -> Session {
        let fail = |what: &str, e: mysql::Error| -> ! { panic!("session {index}: {what}: {e}") };
        let mut conn = mysql::Conn::new(client_opts(ferry)).unwrap_or_else(|e| fail("connect", e));
        let id = conn.connection_id();
        let sql_mode = if index.is_multiple_of(2) {
            "ANSI_QUOTES"
        } else {
            "PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION"
        };
        let setup = [
            format!("USE {}", Self::database(index)),
            format!(
                "SET SESSION sql_mode = '{sql_mode}', time_zone = '{}'",
                Self::time_zone(index)
            ),
            format!(
                "SET @n = {}, @s = {}, @nil = NULL",
                1000 + index,
                quote_string(&Self::text(index))
            ),
        ];
        for sql in &setup {
            conn.query_drop(sql).unwrap_or_else(|e| fail(sql, e));
        }
        // Prepared and closed first: the client's ids are then not those a fresh backend
        // connection hands out, so a rebuild must map them.
        let scratch = conn
            .prep(format!("SELECT 'scratch {index}'"))
            .unwrap_or_else(|e| fail("prepare", e));
        conn.close(scratch).unwrap_or_else(|e| fail("close", e));
        let echo = conn
            .prep("SELECT ?, @s, @@time_zone, DATABASE(), @@port")
            .unwrap_or_else(|e| fail("prepare", e));
        let typed = conn
            .prep("SELECT @n, @s, @nil")
            .unwrap_or_else(|e| fail("prepare", e));
        let sql_prepared = index.is_multiple_of(2);
        if sql_prepared {
            conn.query_drop("PREPARE sq FROM 'SELECT ? + @n'")
                .unwrap_or_else(|e| fail("PREPARE", e));
        }
        let mut s = Session {
            index,
            conn,
            id,
            echo,
            typed,
            sql_prepared,
            state: Vec::new(),
            typed_row: (Vec::new(), Vec::new()),
        };
        s.state = s.read_state().unwrap_or_else(|e| panic!("{e}"));
        s.typed_row = s.read_typed().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.state[1],
            format!("'{}'", 1000 + index),
            "session {index}: {:?}",
            s.state
        );
        assert_eq!(
            s.state[7],
            format!("'{}'", Self::time_zone(index)),
            "{:?}",
            s.state
        );
        if sql_prepared {
            let sum = s.execute_sq().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sum, 1005 + index as i64);
        }
        s
    }

    fn read_state(&mut self) -> Result<Vec<String>, String> {
        let row: mysql::Row = self
            .conn
            .query_first(STATE_SQL)
            .map_err(|e| format!("session {}: state: {e}", self.index))?
            .ok_or("no row")?;
        Ok(row.unwrap().iter().map(|v| v.as_sql(false)).collect())
    }

    /// The user variables with the binary protocol: the column types say they kept their types.
    fn read_typed(&mut self) -> Result<TypedRow, String> {
        let row: mysql::Row = self
            .conn
            .exec_first(&self.typed, ())
            .map_err(|e| format!("session {}: typed: {e}", self.index))?
            .ok_or("no row")?;
        let types = row.columns_ref().iter().map(|c| c.column_type()).collect();
        Ok((types, row.unwrap()))
    }

    fn execute_sq(&mut self) -> Result<i64, String> {
        self.conn
            .query_first("EXECUTE sq USING 5")
            .map_err(|e| format!("session {}: EXECUTE sq: {e}", self.index))?
            .ok_or_else(|| "no row".to_owned())
    }

    /// After the failure: everything answers from `port` with the state read before.
    fn check_after(&mut self, port: u16) -> Result<(), String> {
        let i = self.index;
        let state = self.read_state()?;
        if state[0] != format!("'{port}'") {
            return Err(format!(
                "session {i}: @@port {} (expected {port})",
                state[0]
            ));
        }
        if state[1..] != self.state[1..] {
            return Err(format!(
                "session {i}: state {:?}, was {:?}",
                &state[1..],
                &self.state[1..]
            ));
        }
        let typed = self.read_typed()?;
        if typed != self.typed_row {
            return Err(format!(
                "session {i}: typed {typed:?}, was {:?}",
                self.typed_row
            ));
        }
        let echo: Option<(i64, String, String, String, u16)> = self
            .conn
            .exec_first(&self.echo, (i as i64 * 7,))
            .map_err(|e| format!("session {i}: echo statement: {e}"))?;
        let expected = (
            i as i64 * 7,
            Self::text(i),
            Self::time_zone(i),
            Self::database(i),
            port,
        );
        if echo.as_ref() != Some(&expected) {
            return Err(format!("session {i}: echo {echo:?}, expected {expected:?}"));
        }
        if self.sql_prepared {
            let sum = self.execute_sq()?;
            if sum != 1005 + i as i64 {
                return Err(format!("session {i}: EXECUTE sq gave {sum}"));
            }
        }
        // It can write, in its own database.
        self.conn
            .query_drop("INSERT INTO t (v) VALUES (@s)")
            .map_err(|e| format!("session {i}: INSERT: {e}"))?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Death {
    /// SIGKILL: the server's connections close.
    Kill,
    /// SIGSTOP: the server keeps its connections and answers nothing.
    Freeze,
}

fn fifty_idle_sessions_survive_a_killed_backend(driver: Driver) {
    fifty_idle_sessions_survive(driver, Death::Kill);
}

fn fifty_idle_sessions_survive_a_frozen_backend(driver: Driver) {
    fifty_idle_sessions_survive(driver, Death::Freeze);
}

fn fifty_idle_sessions_survive(driver: Driver, death: Death) {
    let (mut db1, db2) = (failover_backend(1), failover_backend(2));
    let ferry = replay_ferry(driver, &db1, &db2);
    // Every session on db1: db2 takes no new session while draining.
    drain(&ferry, "db2", true);
    let started = Instant::now();
    let mut sessions: Vec<Session> = (0..SESSIONS).map(|i| Session::open(&ferry, i)).collect();
    eprintln!("{SESSIONS} sessions set up in {:?}", started.elapsed());
    drain(&ferry, "db2", false);
    assert_eq!(
        sessions_on(&ferry, "db1"),
        SESSIONS,
        "{}",
        ferry.api("/api/sessions")
    );
    for s in &sessions {
        assert_eq!(s.state[0], format!("'{}'", db1.port()));
    }

    let died = Instant::now();
    let _thaw = match death {
        Death::Kill => {
            db1.kill();
            None
        }
        Death::Freeze => {
            db1.freeze();
            Some(Thaw(&db1))
        }
    };
    // Rebuilt before their next statement: statements sent before ferry knows would be in
    // flight on a dead server (lost by design).
    let all_moved = wait_until(FAILOVER_TIMEOUT, || recovered(&ferry) >= SESSIONS as f64);
    eprintln!(
        "{death:?}: {} sessions recovered after {:?}",
        recovered(&ferry),
        died.elapsed()
    );
    assert!(
        all_moved,
        "{death:?}: not every idle session was rebuilt within {FAILOVER_TIMEOUT:?}\n{}",
        diagnostics(&ferry)
    );

    let failures: Vec<String> = sessions
        .iter_mut()
        .filter_map(|s| s.check_after(db2.port()).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{death:?}: {} of {SESSIONS} sessions wrong after the failover; the first: {:#?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        diagnostics(&ferry)
    );
    // Each is still the same ferry session, now on db2.
    let listed = ferry.api("/api/sessions");
    for s in &sessions {
        let entry = listed
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == json!(s.id)))
            .unwrap_or_else(|| panic!("session {} ({}) not listed: {listed}", s.index, s.id));
        assert_eq!(entry["backend"], "db2", "{entry}");
    }
    let inserted: usize = (0..DATABASES)
        .map(|d| {
            db2.query_scalar(&format!("SELECT COUNT(*) FROM fo{d}.t"))
                .parse::<usize>()
                .expect("a count")
        })
        .sum();
    assert_eq!(inserted, SESSIONS, "rows written after the failover on db2");
    assert_eq!(
        recovered(&ferry),
        SESSIONS as f64,
        "{}",
        diagnostics(&ferry)
    );
    assert_eq!(lost_total(&ferry), 0.0, "{}", diagnostics(&ferry));
}

// ---------------------------------------------------------------- a transaction is lost

/// A client program fed one statement per line on its standard input, answering line by line;
/// killed on drop.
struct LineClient {
    what: &'static str,
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl LineClient {
    fn spawn(what: &'static str, command: &mut Command) -> LineClient {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        LineClient {
            what,
            child: ChildGuard::new(child),
            stdin,
            lines,
            stderr: Some(stderr),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot send {line:?}: {e}", self.what));
    }

    /// The next line of output; panics after [`LINE_TIMEOUT`] or at the end of the output.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: no line of output ({e})", self.what))
    }

    /// Closes standard input and waits for the exit: its status, the rest of its output and
    /// its standard error.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + LINE_TIMEOUT;
        let status = loop {
            let child = self.child.child_mut().expect("running");
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {LINE_TIMEOUT:?} after its input ended",
                self.what
            );
            thread::sleep(Duration::from_millis(20));
        };
        let rest = self.lines.try_iter().collect();
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
        (status, rest, stderr.unwrap_or_default())
    }
}

/// One PyMySQL connection (autocommit on, as a server's default) running each line of its input
/// as a statement; prints `{"ready": true}` once connected, then one JSON object per statement.
const PYMYSQL_LINES_SCRIPT: &str = r#"
import json, sys
import pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret",
                    connect_timeout=10, read_timeout=10, write_timeout=10, ssl_disabled=True,
                    autocommit=True)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        cur = c.cursor()
        cur.execute(line)
        out = {"rows": [list(r) for r in cur.fetchall()]}
    except pymysql.err.MySQLError as e:
        out = {"error": e.args[0] if e.args else None, "type": type(e).__name__,
               "message": str(e)}
    print(json.dumps(out, default=str), flush=True)
"#;

fn a_transaction_on_a_killed_backend_fails_loudly(driver: Driver) {
    let (mut db1, db2) = (failover_backend(1), failover_backend(2));
    let ferry = replay_ferry(driver, &db1, &db2);
    drain(&ferry, "db2", true);
    let mut tx = mysql::Conn::new(client_opts(&ferry)).expect("connect");
    let mut idle = mysql::Conn::new(client_opts(&ferry)).expect("connect");
    let python = require_python_module("pymysql", "PyMySQL");
    let mut py = LineClient::spawn(
        "PyMySQL",
        Command::new(python)
            .arg("-c")
            .arg(PYMYSQL_LINES_SCRIPT)
            .arg(ferry.port().to_string()),
    );
    assert_eq!(py.next_line(), r#"{"ready": true}"#);
    // The CLI reads its statements from a pipe as they come; --unbuffered flushes each answer.
    let mut cli = LineClient::spawn(
        "the mariadb CLI",
        Command::new(require_executable("mariadb", "mariadb-client")).args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", ferry.port()),
            &format!("-u{USER}"),
            &format!("-p{PASSWORD}"),
            "--connect-timeout=10",
            "--batch",
            "--skip-column-names",
            "--unbuffered",
        ]),
    );
    // Connected (to db1) before db2 takes sessions again.
    cli.send("SELECT 'connected';");
    assert_eq!(cli.next_line(), "connected");
    drain(&ferry, "db2", false);

    // The idle session's state is set well before the kill: a session whose state changed an
    // instant before its backend died may not have been read yet by ferry (lost, by design).
    idle.query_drop("SET @kept = 'still here', time_zone = '+04:00'")
        .unwrap();
    let kept: Option<String> = idle.query_first("SELECT @kept").unwrap();
    assert_eq!(kept.as_deref(), Some("still here"));
    let idle_id = idle.connection_id();

    tx.query_drop("BEGIN").unwrap();
    tx.query_drop("INSERT INTO fo0.t (v) VALUES ('rust')")
        .unwrap();
    py.send("BEGIN");
    assert_eq!(py.next_line(), r#"{"rows": []}"#);
    py.send("INSERT INTO fo0.t (v) VALUES ('pymysql')");
    assert_eq!(py.next_line(), r#"{"rows": []}"#);
    cli.send("BEGIN; INSERT INTO fo0.t (v) VALUES ('cli'); SELECT 'ready';");
    assert_eq!(cli.next_line(), "ready");
    // Pins are published after the reply is written: wait for /api/sessions to catch up.
    let pinned = || {
        ferry
            .api("/api/sessions")
            .as_array()
            .map(|a| a.iter().filter(|s| s["pinned"] == "transaction").count())
    };
    assert!(
        wait_until(Duration::from_secs(10), || pinned() == Some(3)),
        "{}",
        ferry.api("/api/sessions")
    );
    assert_eq!(
        sessions_on(&ferry, "db1"),
        4,
        "{}",
        ferry.api("/api/sessions")
    );

    db1.kill();
    let settled = wait_until(FAILOVER_TIMEOUT, || {
        recovered(&ferry) >= 1.0 && lost_total(&ferry) >= 3.0
    });
    eprintln!("failover settled: {settled}\n{}", diagnostics(&ferry));

    // The idle session answers from db2 with its state.
    let row: Option<(String, String, u16)> = idle
        .query_first("SELECT @kept, @@time_zone, @@port")
        .unwrap_or_else(|e| panic!("the idle session: {e}\n{}", diagnostics(&ferry)));
    assert_eq!(
        row,
        Some(("still here".into(), "+04:00".into(), db2.port()))
    );

    // Each transaction's next statement fails as its client library reports a lost
    // connection: ferry sends no ERR of its own.
    match tx.query_first::<u32, _>("SELECT 1") {
        Ok(v) => {
            panic!("the transaction's session answered {v:?}: its transaction was lost silently")
        }
        Err(mysql::Error::MySqlError(e)) => panic!(
            "the transaction's session got an ERR ({e}): ferry must close it as the server did"
        ),
        Err(_) => {}
    }
    py.send("SELECT 1");
    let answer: Json = serde_json::from_str(&py.next_line()).expect("JSON");
    assert!(
        answer["type"] == "OperationalError"
            && matches!(answer["error"].as_u64(), Some(2013 | 2006)),
        "PyMySQL: {answer}"
    );
    cli.send("SELECT 'after';");
    let (status, rest, stderr) = cli.finish();
    assert!(!status.success(), "the CLI: {status}, {rest:?}, {stderr}");
    assert!(
        stderr.contains("ERROR 2013 (HY000)") || stderr.contains("ERROR 2006 (HY000)"),
        "the CLI: {stderr}"
    );
    assert!(!rest.iter().any(|l| l == "after"), "{rest:?}");

    assert_eq!(recovered(&ferry), 1.0, "{}", diagnostics(&ferry));
    assert_eq!(
        metric(&ferry, "ferry_failover_lost_total{reason=\"pinned\"}"),
        3.0,
        "{}",
        diagnostics(&ferry)
    );
    assert_eq!(lost_total(&ferry), 3.0, "{}", diagnostics(&ferry));
    assert_eq!(db2.query_scalar("SELECT COUNT(*) FROM fo0.t"), "0");
    // ferry goes on: the idle session is ferry's same session, new ones go to db2.
    let listed = || {
        ferry.api("/api/sessions").as_array().map(|a| {
            a.iter()
                .map(|s| (s["id"].clone(), s["backend"].clone()))
                .collect::<Vec<_>>()
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || listed()
            == Some(vec![(json!(idle_id), json!("db2"))])),
        "{}",
        ferry.api("/api/sessions")
    );
    let out = ferry.mariadb(USER, PASSWORD, &[], "SELECT @@port");
    assert_eq!(out.stdout, format!("{}\n", db2.port()), "{out:?}");
}

// ---------------------------------------------------------------- detection

/// ferry started from a configuration without `[health]`, so that it runs with the defaults an
/// operator gets ([`FerryProcess`] always writes an interval and a timeout). Passthrough auth.
struct DefaultHealthFerry {
    /// Kills the process when dropped.
    _child: ChildGuard,
    port: u16,
    admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DefaultHealthFerry {
    fn start(driver: Driver, backends: &[(&str, SocketAddr)]) -> DefaultHealthFerry {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let mut toml = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nshutdown-timeout = \"5s\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n[auth]\nmode = \"passthrough\"\n\n"
        );
        for (name, addr) in backends {
            toml.push_str(&format!(
                "[[backends]]\nname = \"{name}\"\naddr = \"{addr}\"\n\n"
            ));
        }
        let config = dir.path().join("ferry.toml");
        std::fs::write(&config, toml).expect("write the config");
        let log = dir.path().join("ferry.log");
        let out = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(driver.program())
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
        let ferry = DefaultHealthFerry {
            _child: ChildGuard::new(child),
            port,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            log,
            _dir: dir,
        };
        assert!(
            wait_until(Duration::from_secs(30), || matches!(
                try_http_get(ferry.admin, "/health", Duration::from_secs(2)),
                Ok((200, _))
            )),
            "{driver} did not become ready"
        );
        ferry
    }

    /// Whether `/api/backends` says `name` is healthy (`None` when it cannot be read).
    fn healthy(&self, name: &str) -> Option<bool> {
        let (_, body) = try_http_get(self.admin, "/api/backends", Duration::from_secs(2)).ok()?;
        let all: Json = serde_json::from_str(&body).ok()?;
        all.as_array()?.iter().find(|b| b["name"] == name)?["healthy"].as_bool()
    }
}

impl Drop for DefaultHealthFerry {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- ferry log, last lines:\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        // `child` kills the process as it drops, after this.
    }
}

/// How long until `condition` holds, polled every 10 ms, or `None` after `limit`.
fn time_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn dead_backends_are_seen_within_a_second(driver: Driver) {
    let (mut db1, db2) = (backend(1), backend(2));
    let ferry = DefaultHealthFerry::start(driver, &[("db1", db1.addr()), ("db2", db2.addr())]);
    assert!(
        wait_until(Duration::from_secs(10), || ferry.healthy("db1")
            == Some(true)
            && ferry.healthy("db2") == Some(true)),
        "the backends never became healthy"
    );
    let mut measured: Vec<(&str, Option<Duration>)> = Vec::new();
    // Measured from the signal: the kill itself reaps the process, within milliseconds.
    for _ in 0..2 {
        let died = Instant::now();
        db1.kill();
        let down = time_until(Duration::from_secs(10), || {
            ferry.healthy("db1") == Some(false)
        })
        .map(|_| died.elapsed());
        measured.push(("SIGKILL", down));
        db1.restart();
        let up = time_until(Duration::from_secs(5), || {
            ferry.healthy("db1") == Some(true)
        });
        assert!(up.is_some(), "db1 not healthy 5 s after its restart");
    }
    for _ in 0..3 {
        let froze = Instant::now();
        db1.freeze();
        let thaw = Thaw(&db1);
        let down = time_until(Duration::from_secs(10), || {
            ferry.healthy("db1") == Some(false)
        })
        .map(|_| froze.elapsed());
        measured.push(("SIGSTOP", down));
        // The premise, directly: the frozen server accepts a connection and sends no greeting.
        let mut s = TcpStream::connect_timeout(&db1.addr(), Duration::from_secs(2))
            .expect("the kernel still accepts for a frozen server");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let greeting = s.read(&mut [0; 64]);
        assert!(greeting.is_err(), "a frozen server answered: {greeting:?}");
        if down.is_some() {
            // New sessions avoid it.
            let out = mariadb_cli(ferry.port, USER, PASSWORD, "SELECT @@port");
            assert_eq!(out.stdout, format!("{}\n", db2.port()), "{out:?}");
        }
        drop(thaw);
        let up = time_until(Duration::from_secs(5), || {
            ferry.healthy("db1") == Some(true)
        });
        assert!(up.is_some(), "db1 not healthy 5 s after SIGCONT");
    }
    eprintln!("detection times (required {DETECTION_REQUIRED:?}): {measured:?}");
    assert!(
        measured
            .iter()
            .all(|(_, t)| t.is_some_and(|t| t <= DETECTION_ALLOWED)),
        "a dead backend must be unhealthy in /api/backends within {DETECTION_REQUIRED:?} \
         (allowed {DETECTION_ALLOWED:?}): {measured:?}"
    );
}
