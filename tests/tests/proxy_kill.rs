//! `KILL` from another connection on a session running `SELECT SLEEP(5)`: through ferry a client
//! must see what it sees directly (issue 13). Each client runs the statement on the backend
//! directly, then through ferry in `passthrough` auth and through ferry in `proxy` auth with
//! `replay` migration (failover on), while a direct root connection finds the statement's thread
//! in the backend's processlist and KILLs it:
//!
//! | | directly (libmariadb, PyMySQL) | Connector/J |
//! |---|---|---|
//! | `KILL CONNECTION` | 2013 "Lost connection to server during query" | 0, SQLSTATE 08000 |
//! | `KILL QUERY` | 1317 "Query execution was interrupted" | 1317, SQLSTATE 70100 |
//!
//! Through ferry the backend closes without an ERR, so ferry closes the client connection the
//! same way (no ERR 1158 of its own) and the client library reports its own error; an in-flight
//! statement is never sent again (`[migration] read-retry` is off by default). After `KILL QUERY`
//! the connection goes on, as directly.
//!
//! Clients: the `mariadb` CLI (libmariadb), PyMySQL, and JDBC (MariaDB Connector/J,
//! `tests/clients/SleepUntilKilled.java`).

mod proxy_common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, mariadb_cli, require_executable, Driver, FerryProcess, MariaDb};
use proxy_common::{
    backend, client_json, metric, proxy_over_pair, python_json, PASSWORD, REPLAY_NO_REBALANCE, USER,
};
use serde_json::{json, Value as Json};

driver_tests!(
    mariadb_cli_sees_the_direct_codes,
    pymysql_sees_the_direct_codes,
    jdbc_sees_the_direct_codes,
);

/// Where Debian's `libmariadb-java` puts Connector/J.
const CONNECTOR_J: &str = "/usr/share/java/mariadb-java-client.jar";
/// The statement every client runs and the killer looks for.
const SLEEP: &str = "SELECT SLEEP(5)";
/// How long the killer waits for the next statement to show up in a processlist.
const SHOW_UP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    Connection,
    Query,
}

impl Kill {
    fn sql(self, id: &str) -> String {
        match self {
            Kill::Connection => format!("KILL CONNECTION {id}"),
            Kill::Query => format!("KILL QUERY {id}"),
        }
    }
}

/// One backend (db1, where direct clients go) and two ferries in front of it: `passthrough`
/// alone, and `proxy` auth with `replay` over db1 and db2 (so a failover target exists, and
/// must not be used for a statement in flight).
struct Setup {
    db1: MariaDb,
    db2: MariaDb,
    passthrough: FerryProcess,
    replay: FerryProcess,
}

impl Setup {
    fn start(driver: Driver) -> Setup {
        let (db1, db2) = (backend(1), backend(2));
        let passthrough = FerryProcess::builder(driver)
            .backend("db1", db1.addr())
            .start();
        let replay = proxy_over_pair(driver, &db1, &db2)
            .extra_toml(REPLAY_NO_REBALANCE)
            .start();
        Setup {
            db1,
            db2,
            passthrough,
            replay,
        }
    }

    /// The ports a client tries, in order: db1 directly, then each ferry; the names for messages.
    fn targets(&self) -> [(&'static str, u16); 3] {
        [
            ("direct", self.db1.port()),
            ("ferry passthrough", self.passthrough.port()),
            ("ferry replay", self.replay.port()),
        ]
    }

    /// The kills in the order [`targets`](Self::targets) runs the statements: every target
    /// with `KILL CONNECTION`, then every target with `KILL QUERY`.
    fn kills(&self) -> Vec<Kill> {
        let n = self.targets().len();
        let each = |kill| std::iter::repeat_n(kill, n);
        each(Kill::Connection).chain(each(Kill::Query)).collect()
    }

    /// The client's ports for [`kills`](Self::kills): the targets twice.
    fn ports(&self) -> Vec<String> {
        let ports = self.targets().map(|(_, p)| p.to_string());
        ports.iter().chain(ports.iter()).cloned().collect()
    }

    /// Runs `client` while [`kill_each_sleep`] KILLs its statements as [`kills`](Self::kills)
    /// says; returns the client's outcomes, one per statement, after checking that every
    /// statement was killed.
    fn run(&self, client: impl FnOnce() -> Vec<Json>) -> Vec<Json> {
        let kills = self.kills();
        let finished = AtomicBool::new(false);
        let servers = [&self.db1, &self.db2];
        let (outcomes, killed) = thread::scope(|s| {
            let killer = s.spawn(|| kill_each_sleep(&servers, &kills, &finished));
            let outcomes = client();
            finished.store(true, Ordering::Relaxed);
            (outcomes, killer.join().expect("the killer thread"))
        });
        assert_eq!(
            killed.len(),
            kills.len(),
            "not every statement was seen and killed: {killed:?}; the client saw {outcomes:?}"
        );
        assert_eq!(outcomes.len(), kills.len(), "{outcomes:?}");
        outcomes
    }

    /// Checks that each ferry gives the direct outcome (`keys` name the fields compared), and
    /// that direct ones are `connection` and `query`; then that both ferries still serve, and
    /// that the replay ferry counted the lost in-flight statement.
    fn check(&self, outcomes: &[Json], keys: &[&str], connection: &Json, query: &Json) {
        let pick =
            |o: &Json| -> Json { keys.iter().map(|k| (k.to_string(), o[k].clone())).collect() };
        let n = self.targets().len();
        for (kind, expected, runs) in [
            (Kill::Connection, connection, &outcomes[..n]),
            (Kill::Query, query, &outcomes[n..]),
        ] {
            assert_eq!(&pick(&runs[0]), expected, "{kind:?} directly: {outcomes:?}");
            for ((name, _), run) in self.targets().iter().zip(runs).skip(1) {
                assert_eq!(
                    pick(run),
                    pick(&runs[0]),
                    "{kind:?} {name} differs from direct; all: {outcomes:?}"
                );
            }
        }
        for ferry in [&self.passthrough, &self.replay] {
            let out = ferry.mariadb(USER, PASSWORD, &[], "select 40 + 2");
            assert_eq!(out.stdout, "42\n", "{out:?}");
        }
        assert_eq!(
            metric(
                &self.replay,
                "ferry_failover_lost_total{reason=\"in_flight\"}"
            ),
            1.0,
            "{}",
            self.replay.http_get("/metrics").1
        );
    }
}

/// KILLs, in order, one `SELECT SLEEP(5)` per entry of `kills`, each the next one to show up in
/// the processlist of one of `servers` (polled from a direct root connection); returns the
/// killed thread ids. Stops early once `finished` is set (the client is done).
fn kill_each_sleep(servers: &[&MariaDb], kills: &[Kill], finished: &AtomicBool) -> Vec<String> {
    let mut killed = Vec::new();
    let mut seen = HashSet::new();
    'kills: for kill in kills {
        let deadline = Instant::now() + SHOW_UP_TIMEOUT;
        while Instant::now() < deadline && !finished.load(Ordering::Relaxed) {
            for db in servers {
                let ids = db.sql(&format!(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE '{SLEEP}%' AND ID <> CONNECTION_ID() ORDER BY ID"
                ));
                // A killed query may show a moment longer: never kill a thread twice.
                if let Some(id) = ids
                    .lines()
                    .find(|id| !seen.contains(&(db.port(), id.to_string())))
                {
                    seen.insert((db.port(), id.to_owned()));
                    // It may have ended meanwhile: the client's outcome then tells.
                    let _ = db.try_sql(&kill.sql(id));
                    killed.push(format!("{kill:?} {id} on {}", db.port()));
                    // Let the killed thread finish before the processlist is read again: the
                    // MariaDB 10.11 of this machine crashed once (a NULL dereference near
                    // ha_maria::drop_table) with a read racing a connection going away.
                    thread::sleep(Duration::from_millis(200));
                    continue 'kills;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        break;
    }
    killed
}

// ---------------------------------------------------------------- the mariadb CLI

/// The error code in the CLI's `ERROR 2013 (HY000) at line 1: ...`, as the outcome object.
fn cli_outcome(stderr: &str, stdout: &str) -> Json {
    let code = stderr
        .split("ERROR ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|code| code.parse::<u64>().ok());
    match code {
        Some(code) => json!({"error": code, "message": stderr.trim()}),
        None => json!({"result": stdout.trim(), "stderr": stderr.trim()}),
    }
}

fn mariadb_cli_sees_the_direct_codes(driver: Driver) {
    let setup = Setup::start(driver);
    let ports = setup.ports();
    let outcomes = setup.run(|| {
        ports
            .iter()
            .map(|port| {
                let out = mariadb_cli(port.parse().expect("a port"), USER, PASSWORD, SLEEP);
                cli_outcome(&out.stderr, &out.stdout)
            })
            .collect()
    });
    setup.check(
        &outcomes,
        &["error"],
        &json!({"error": 2013}),
        &json!({"error": 1317}),
    );
    // Word for word too: libmariadb's own message, not one of ferry's.
    let message = |o: &Json| o["message"].as_str().unwrap_or("").to_owned();
    let n = setup.targets().len();
    for run in &outcomes[1..n] {
        assert_eq!(message(run), message(&outcomes[0]), "{outcomes:?}");
    }
}

// ---------------------------------------------------------------- PyMySQL

/// Runs the statement on each port of `sys.argv[1:]`, then `SELECT 42` on the same connection;
/// prints one JSON array of outcomes.
const PYMYSQL_SLEEP_SCRIPT: &str = r#"
import json, sys
import pymysql
out = []
for port in sys.argv[1:]:
    r = {}
    c = pymysql.connect(host="127.0.0.1", port=int(port), user="app", password="s3cret",
                        connect_timeout=10, read_timeout=30, write_timeout=30, ssl_disabled=True)
    try:
        cur = c.cursor()
        cur.execute("SELECT SLEEP(5)")
        r["result"] = cur.fetchone()[0]
    except pymysql.err.MySQLError as e:
        r.update(error=e.args[0], type=type(e).__name__, message=str(e.args[-1]))
    try:
        cur = c.cursor()
        cur.execute("SELECT 42")
        r["after"] = cur.fetchone()[0]
    except pymysql.err.MySQLError as e:
        r["after"] = type(e).__name__
    out.append(r)
print(json.dumps(out))
"#;

fn pymysql_sees_the_direct_codes(driver: Driver) {
    let setup = Setup::start(driver);
    let ports = setup.ports();
    let outcomes = setup.run(|| {
        let r = python_json("pymysql", "PyMySQL", PYMYSQL_SLEEP_SCRIPT, &ports);
        r.as_array().cloned().unwrap_or_else(|| panic!("{r}"))
    });
    setup.check(
        &outcomes,
        &["error", "type", "message", "after"],
        &json!({"error": 2013, "type": "OperationalError",
                "message": "Lost connection to MySQL server during query",
                "after": "InterfaceError"}),
        &json!({"error": 1317, "type": "OperationalError",
                "message": "Query execution was interrupted", "after": 42}),
    );
}

// ---------------------------------------------------------------- JDBC

fn jdbc_sees_the_direct_codes(driver: Driver) {
    let jar = Path::new(CONNECTOR_J);
    assert!(
        jar.is_file(),
        "{CONNECTOR_J} is missing; this test needs MariaDB Connector/J: \
         apt-get install libmariadb-java (or `bash .ci/run`)"
    );
    // The source launcher needs the JDK's compiler: a JRE alone cannot run a .java file.
    let java = require_executable("java", "default-jdk-headless");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/SleepUntilKilled.java");
    let setup = Setup::start(driver);
    let ports = setup.ports();
    let outcomes = setup.run(|| {
        let r = client_json(
            "the JDBC client",
            Command::new(java)
                .arg("-cp")
                .arg(jar)
                .arg(source)
                .args([USER, PASSWORD])
                .args(&ports),
        );
        r.as_array().cloned().unwrap_or_else(|| panic!("{r}"))
    });
    // Connector/J's messages carry the connection id ("(conn=12) ..."): ferry's through ferry.
    setup.check(
        &outcomes,
        &["error", "state"],
        &json!({"error": 0, "state": "08000"}),
        &json!({"error": 1317, "state": "70100"}),
    );
}
