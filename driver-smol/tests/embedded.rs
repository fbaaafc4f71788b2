//! The smol driver as a library, in front of real MariaDB servers: the `mariadb` CLI and PyMySQL
//! through an embedded proxy, a chooser routing by user name, the handle's views and controls,
//! and graceful shutdown (a statement in flight finishes, idle sessions close, the deadline
//! drops what is left).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_smol::{
    ApiError, Choice, ChooseRequest, Config, ConfigFile, Proxy, ProxyHandle, ShutdownOutcome,
};
use ferry_tests::{
    mariadb_cli, mariadb_cli_command, require_python_module, run_with_deadline, CommandOutput,
    MariaDb,
};

/// A checked configuration with these backends (named db1, db2, ...).
fn config(backends: &[SocketAddr], extra: &str) -> Config {
    let mut text = String::from(extra);
    for (i, b) in backends.iter().enumerate() {
        text.push_str(&format!(
            "\n[[backends]]\nname = \"db{}\"\naddr = \"{b}\"\n",
            i + 1
        ));
    }
    Config::from_file(&ConfigFile::parse(&text, None).unwrap()).unwrap()
}

/// A proxy running on a thread of its own; sessions run on smol's global executor.
struct Running {
    handle: ProxyHandle,
    addr: SocketAddr,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(proxy: Proxy) -> Self {
        let handle = proxy.handle();
        let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || smol::block_on(proxy.run(listener)));
        // The first health round runs before serving; wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.local_addr().is_none() || !handle.backends().iter().any(|b| b.healthy) {
            assert!(Instant::now() < deadline, "no backend became healthy");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            handle,
            addr,
            thread: Some(thread),
        }
    }

    fn mariadb(&self, user: &str, password: &str, sql: &str) -> CommandOutput {
        mariadb_cli(self.addr.port(), user, password, sql)
    }

    fn mariadb_command(&self, user: &str, password: &str, sql: &str) -> Command {
        mariadb_cli_command(self.addr.port(), user, password, sql)
    }

    /// Shuts down and checks that `run` returned.
    fn stop(&mut self, timeout: Duration) -> ShutdownOutcome {
        let outcome = smol::block_on(self.handle.shutdown(timeout));
        let thread = self.thread.take().unwrap();
        thread.join().unwrap().unwrap();
        outcome
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = smol::block_on(self.handle.shutdown(Duration::from_secs(1)));
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects with PyMySQL and runs `select @@server_id`; `Ok(server id)` or `Err((code, message))`.
/// (PyMySQL reports the code and message as sent, so the refusal's text can be checked.)
fn pymysql_server_id(port: u16, user: &str, password: &str) -> Result<String, (u32, String)> {
    let python = require_python_module("pymysql", "PyMySQL");
    let script = format!(
        r#"
import pymysql
try:
    c = pymysql.connect(host="127.0.0.1", port={port}, user="{user}", password="{password}")
    cur = c.cursor()
    cur.execute("select @@server_id")
    print("ok", cur.fetchone()[0])
except pymysql.err.MySQLError as e:
    print("err", e.args[0], e.args[1])
"#
    );
    let out = run_with_deadline(
        Command::new(python).arg("-c").arg(&script),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = out.stdout.trim().to_owned();
    match line.split_once(' ') {
        Some(("ok", id)) => Ok(id.to_owned()),
        Some(("err", rest)) => {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            Err((code.parse().unwrap(), msg.to_owned()))
        }
        _ => panic!("{out:?}"),
    }
}

#[test]
fn mariadb_cli_and_pymysql_through_the_embedded_proxy() {
    let db = MariaDb::builder().server_id(31).start();
    db.create_user("app", "s3cret");
    db.create_database("shop");
    let mut proxy = Running::start(Proxy::new(&config(&[db.addr()], "")).unwrap());

    let out = proxy.mariadb(
        "app",
        "s3cret",
        "create table shop.t (id int primary key, name varchar(20)); \
         insert into shop.t values (1, 'one'), (2, 'two'); update shop.t set name = 'TWO' where id = 2; \
         select id, name from shop.t order by id; select @@port, @@server_id",
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["1\tone", "2\tTWO", &format!("{}\t31", db.port())],
        "{out:?}"
    );

    // A wrong password is the backend's ERR 1045, relayed.
    let out = proxy.mariadb("app", "wrong", "select 1");
    assert!(!out.status.success());
    assert!(out.stderr.contains("1045"), "{out:?}");

    // PyMySQL: parameters, an error, then the same connection again, a change of database.
    let python = require_python_module("pymysql", "PyMySQL");
    let script = format!(
        r#"
import pymysql
c = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="s3cret", database="shop")
cur = c.cursor()
cur.execute("insert into t values (%s, %s)", (3, "three"))
c.commit()
try:
    cur.execute("select * from no_such_table")
except pymysql.err.ProgrammingError as e:
    print("error", e.args[0])
cur.execute("select group_concat(name order by id) from t")
print(cur.fetchone()[0])
c.select_db("mysql")
cur.execute("select database()")
print(cur.fetchone()[0])
c.close()
"#,
        port = proxy.addr.port()
    );
    let out = run_with_deadline(
        Command::new(python).arg("-c").arg(&script),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["error 1146", "one,TWO,three", "mysql"]
    );

    // The handle's views: the session is listed while it is open, backends and counters.
    let mut idle = proxy
        .mariadb_command("app", "s3cret", "select sleep(3)")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the session to be listed", Duration::from_secs(60), || {
        proxy.handle.sessions().len() == 1
    });
    let sessions = proxy.handle.sessions();
    assert_eq!(sessions[0].user, "app");
    assert_eq!(sessions[0].backend.as_deref(), Some("db1"));
    assert_eq!(proxy.handle.backends()[0].sessions, 1);
    // Passthrough auth: migration is off unless configured, and the core says so.
    let refused = smol::block_on(proxy.handle.migrate(sessions[0].id, "db1"));
    assert!(
        matches!(refused, Err(ApiError::Conflict(ref m)) if m.contains("disabled")),
        "{refused:?}"
    );
    assert_eq!(
        smol::block_on(proxy.handle.migrate(sessions[0].id, "db9")),
        Err(ApiError::UnknownBackend("db9".into()))
    );
    assert_eq!(
        smol::block_on(proxy.handle.migrate(999_999, "db1")),
        Err(ApiError::UnknownSession(999_999))
    );
    assert!(idle.wait().unwrap().success());
    wait_until("the session to end", Duration::from_secs(60), || {
        proxy.handle.session_count() == 0
    });
    assert!(proxy.handle.sessions().is_empty());
    assert_eq!(
        proxy.handle.backends()[0].sessions,
        0,
        "backend load not released"
    );
    let m = proxy.handle.metrics();
    assert_eq!(m.sessions_accepted, 4);
    assert_eq!(m.errors["command"], 1, "the one failed select: {m:?}");
    assert!(m.commands >= 10, "{m:?}");
    assert!(m.client_bytes_sent > 0 && m.backend_bytes_received >= m.client_bytes_sent / 2);

    // Drain: new sessions avoid the backend; with no other backend they are refused.
    proxy.handle.drain("db1").unwrap();
    assert!(proxy.handle.backends()[0].draining);
    let refused = pymysql_server_id(proxy.addr.port(), "app", "s3cret");
    assert!(
        matches!(&refused, Err((1429, m)) if m.contains("no healthy backend")),
        "{refused:?}"
    );
    let out = proxy.mariadb("app", "s3cret", "select 1");
    assert!(!out.status.success(), "{out:?}");
    proxy.handle.undrain("db1").unwrap();
    let out = proxy.mariadb("app", "s3cret", "select 1");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        proxy.handle.drain("nope"),
        Err(ApiError::UnknownBackend("nope".into()))
    );

    assert_eq!(
        proxy.stop(Duration::from_secs(10)),
        ShutdownOutcome::Graceful
    );
}

#[test]
fn the_chooser_routes_by_user_name_and_can_refuse() {
    let db1 = MariaDb::builder().server_id(41).start();
    let db2 = MariaDb::builder().server_id(42).start();
    for db in [&db1, &db2] {
        db.create_user("alice", "a");
        db.create_user("bob", "b");
        db.create_user("mallory", "m");
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let proxy = Proxy::builder(&config(&[db1.addr(), db2.addr()], ""))
        .chooser(move |req: &ChooseRequest<'_>| {
            log.lock().unwrap().push((
                req.user.map(str::to_owned),
                req.database.map(str::to_owned),
                req.backends.len(),
            ));
            match req.user {
                Some("alice") => Choice::Backend("db2".into()),
                Some("bob") => Choice::Backend("db1".into()),
                Some("mallory") => Choice::Refuse("mallory is not served here".into()),
                _ => Choice::Default,
            }
        })
        .build()
        .unwrap();
    let mut proxy = Running::start(proxy);
    wait_until("both backends healthy", Duration::from_secs(60), || {
        proxy.handle.backends().iter().all(|b| b.healthy)
    });
    for _ in 0..2 {
        let out = proxy.mariadb("alice", "a", "select @@server_id");
        assert_eq!(out.stdout.trim(), "42", "{out:?}");
        let out = proxy.mariadb("bob", "b", "select @@server_id");
        assert_eq!(out.stdout.trim(), "41", "{out:?}");
    }
    let refused = pymysql_server_id(proxy.addr.port(), "mallory", "m");
    assert!(
        matches!(&refused, Err((1429, m)) if m.contains("mallory is not served here")),
        "{refused:?}"
    );
    assert_eq!(
        pymysql_server_id(proxy.addr.port(), "bob", "b"),
        Ok("41".into())
    );
    // The database of the login reaches the chooser too.
    let mut cmd = proxy.mariadb_command("alice", "a", "select database(), @@server_id");
    cmd.arg("-Dmysql");
    let out = run_with_deadline(&mut cmd, Duration::from_secs(30)).unwrap();
    assert_eq!(out.stdout.trim(), "mysql\t42", "{out:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen[0], (Some("alice".into()), None, 2));
    assert_eq!(seen[6], (Some("alice".into()), Some("mysql".into()), 2));
    assert_eq!(
        proxy.stop(Duration::from_secs(10)),
        ShutdownOutcome::Graceful
    );
}

/// A `mariadb` CLI process running `sql` through the proxy.
fn spawn_client(proxy: &Running, user: &str, password: &str, sql: &str) -> Child {
    proxy
        .mariadb_command(user, password, sql)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn graceful_stop_finishes_the_statement_in_flight_and_closes_idle_sessions() {
    let db = MariaDb::builder().server_id(51).start();
    db.create_user("app", "s3cret");
    let mut proxy = Running::start(Proxy::new(&config(&[db.addr()], "")).unwrap());

    // One idle client (PyMySQL holding a connection open), one mid-statement.
    let python = require_python_module("pymysql", "PyMySQL");
    let script = format!(
        r#"
import pymysql, sys
c = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="s3cret")
print("connected", flush=True)
sys.stdin.readline()  # the test writes a line once the proxy has stopped
try:
    c.ping(reconnect=False)
    print("still open")
except Exception as e:
    print("closed", type(e).__name__)
"#,
        port = proxy.addr.port()
    );
    let mut idle = Command::new(python)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut idle_out = BufReader::new(idle.stdout.take().unwrap());
    let mut line = String::new();
    idle_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    let mut busy = spawn_client(&proxy, "app", "s3cret", "select sleep(4), 'done'");
    wait_until(
        "both sessions to be listed",
        Duration::from_secs(60),
        || proxy.handle.sessions().len() == 2,
    );
    // Let the sleep start on the server.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        busy.try_wait().unwrap().is_none(),
        "the statement ended too early"
    );
    let started = Instant::now();
    let outcome = proxy.stop(Duration::from_secs(20));
    assert_eq!(outcome, ShutdownOutcome::Graceful);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!proxy.handle.is_serving());
    // The statement in flight got its result.
    let out = busy.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0\tdone");
    // The idle session was closed, and nobody is accepted any more.
    idle.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    idle_out.read_to_string(&mut rest).unwrap();
    let status = idle.wait().unwrap();
    assert!(status.success() && rest.starts_with("closed"), "{rest:?}");
    assert!(std::net::TcpStream::connect(proxy.addr).is_err());
    assert_eq!(proxy.handle.session_count(), 0);
}

#[test]
fn the_shutdown_deadline_drops_a_statement_that_runs_too_long() {
    let db = MariaDb::builder().server_id(61).start();
    db.create_user("app", "s3cret");
    let mut proxy = Running::start(Proxy::new(&config(&[db.addr()], "")).unwrap());
    let slow = spawn_client(&proxy, "app", "s3cret", "select sleep(30)");
    wait_until("the session to be listed", Duration::from_secs(60), || {
        proxy.handle.sessions().len() == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = proxy.stop(Duration::from_millis(800));
    assert_eq!(outcome, ShutdownOutcome::DeadlinePassed { aborted: 1 });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let out = slow.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(proxy.handle.backends()[0].sessions, 0);
}

#[test]
fn the_idle_timeout_counts_from_the_last_command() {
    let db = MariaDb::builder().server_id(62).start();
    db.create_user("app", "s3cret");
    let proxy = Running::start(
        Proxy::new(&config(&[db.addr()], "[proxy]\nidle-timeout = \"1s\"\n")).unwrap(),
    );
    let python = require_python_module("pymysql", "PyMySQL");
    // A command at 0.6 s moves the deadline to 1.6 s: at 1.2 s the session is still open (a
    // timer armed for the first deadline must not close it), at 3 s it is gone.
    let script = format!(
        r#"
import pymysql, time
c = pymysql.connect(host="127.0.0.1", port={port}, user="app", password="s3cret")
time.sleep(0.6)
c.ping(reconnect=False)
time.sleep(0.6)
c.ping(reconnect=False)
print("open at 1.2 s")
time.sleep(1.8)
try:
    c.ping(reconnect=False)
    print("still open")
except pymysql.err.MySQLError as e:
    print("closed", e.args[0])
"#,
        port = proxy.addr.port()
    );
    let out = run_with_deadline(
        Command::new(python).arg("-c").arg(&script),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "open at 1.2 s", "{out:?}");
    assert!(lines[1].starts_with("closed"), "{out:?}");
    wait_until("the session to end", Duration::from_secs(10), || {
        proxy.handle.session_count() == 0
    });
}
