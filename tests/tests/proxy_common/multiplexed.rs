//! Multiplexing (issue 15) for the proxy tests: ferry with `[multiplexing]` on (proxy auth and
//! replay migration, which it needs), the backend connections a test counts in MariaDB's process
//! list, and [`Neighbours`]: sessions that share the pool with a client program under test, so
//! that its session really gives its connection back and takes one that others used.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ferry_tests::{Driver, FerryProcess, MariaDb};
use mysql::prelude::Queryable;

use super::{client_opts, metric_sum, PASSWORD, READER, REPLAY_NO_REBALANCE, USER};

/// `max-backend-connections` of the client suites run multiplexed: fewer than the sessions they
/// open with [`Neighbours`].
pub(crate) const CLIENT_POOL: usize = 2;
/// How many sessions [`Neighbours::start`] opens beside the client program.
pub(crate) const NEIGHBOURS: usize = 3;
/// The account [`backend_connections`] reads the process list as (it is not counted).
const WATCHER: &str = "watcher";
const WATCHER_PASSWORD: &str = "w4tch";

/// The `[migration]` and `[multiplexing]` sections: replay, no rebalancing, multiplexing on with
/// `keys` (TOML lines, e.g. `max-backend-connections = 1`) added.
pub(crate) fn multiplexing_toml(keys: &str) -> String {
    format!("{REPLAY_NO_REBALANCE}\n[multiplexing]\nenabled = true\n{keys}\n")
}

/// ferry (started) in front of `db` alone, as `db1`, multiplexed as `keys` say: proxy auth
/// knowing [`USER`] (and [`READER`] when `db` has it) with `db`'s hashes.
pub(crate) fn multiplexed_over(driver: Driver, db: &MariaDb, keys: &str) -> FerryProcess {
    let mut builder = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_user(USER, &db.user_password_hash(USER))
        .extra_toml(&multiplexing_toml(keys));
    let has_reader = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM mysql.user WHERE user = '{READER}'"
    ));
    if has_reader != "0" {
        builder = builder.proxy_user(READER, &db.user_password_hash(READER));
    }
    builder.start()
}

/// ferry multiplexed for the client suites: [`CLIENT_POOL`] connections, a generous `max-wait`
/// (a client's transaction or 17 MB blob may hold one connection a while).
pub(crate) fn multiplexed_for_clients(driver: Driver, db: &MariaDb) -> FerryProcess {
    multiplexed_over(
        driver,
        db,
        &format!("max-backend-connections = {CLIENT_POOL}\nmax-wait = \"20s\""),
    )
}

/// A direct connection to `db` as an account that may read the whole process list (created on
/// first use).
pub(crate) fn watcher(db: &MariaDb) -> mysql::Conn {
    db.sql(&format!(
        "CREATE USER IF NOT EXISTS {WATCHER}@'%' IDENTIFIED BY '{WATCHER_PASSWORD}'; \
         GRANT PROCESS ON *.* TO {WATCHER}@'%'"
    ));
    mysql::Conn::new(client_opts(db.port(), WATCHER, WATCHER_PASSWORD))
        .expect("connect to MariaDB directly as the watcher")
}

/// How many connections of the client accounts ([`USER`], [`READER`]) MariaDB has now.
pub(crate) fn backend_connections(watcher: &mut mysql::Conn) -> usize {
    try_backend_connections(watcher).expect("read the process list")
}

fn try_backend_connections(watcher: &mut mysql::Conn) -> mysql::Result<usize> {
    let count = watcher.query_first::<usize, _>(format!(
        "SELECT COUNT(*) FROM information_schema.processlist \
         WHERE user IN ('{USER}', '{READER}')"
    ))?;
    Ok(count.unwrap_or(0))
}

/// Watches MariaDB's process list from a thread until [`Watch::stop`]: the most connections of
/// the client accounts seen at once, in two samples in a row (50 ms apart). A connection ferry
/// closed (COM_QUIT sent, its socket shut, no longer counted by the pool) stays listed until
/// MariaDB's thread has read the quit and ended, which a single sample can catch beside the
/// connection that replaced it; a connection the pool holds beyond its limit stays listed (in use,
/// or idle until `idle-timeout`).
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

impl Watch {
    pub(crate) fn start(db: &MariaDb) -> Watch {
        let mut conn = watcher(db);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            // MariaDB gone (a test failing and dropping it): the watch ends with what it saw.
            let (mut most, mut last) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                match try_backend_connections(&mut conn) {
                    Ok(n) => {
                        most = most.max(n.min(last));
                        last = n;
                    }
                    Err(_) => return most,
                }
                thread::sleep(Duration::from_millis(50));
            }
            let n = try_backend_connections(&mut conn).unwrap_or(0);
            most.max(n.min(last))
        });
        Watch { stop, thread }
    }

    /// Stops watching: the most connections seen at once.
    pub(crate) fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the process-list watcher panicked")
    }
}

/// [`NEIGHBOURS`] sessions through ferry, each with its own user variable and schema, running
/// statements and checking every answer until [`finish`](Self::finish); and a [`Watch`].
pub(crate) struct Neighbours {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<u64, String>>>,
    watch: Watch,
}

impl Neighbours {
    /// Starts `count` neighbour sessions (0: only the watch) through `ferry` in front of `db`.
    pub(crate) fn start(ferry: &FerryProcess, db: &MariaDb, count: usize) -> Neighbours {
        let watch = Watch::start(db);
        let stop = Arc::new(AtomicBool::new(false));
        let schemas = ["mysql", "information_schema", "test_neighbour"];
        db.sql("CREATE DATABASE IF NOT EXISTS test_neighbour");
        let threads = (0..count)
            .map(|k| {
                let opts = client_opts(ferry.port(), USER, PASSWORD);
                let flag = Arc::clone(&stop);
                let schema = schemas[k % schemas.len()];
                thread::spawn(move || neighbour(k, schema, opts, &flag))
            })
            .collect();
        Neighbours {
            stop,
            threads,
            watch,
        }
    }

    /// Stops the neighbours; panics if any saw a wrong answer or an error, did not run, or
    /// MariaDB had more than [`CLIENT_POOL`] client connections (and one being replaced) at
    /// any time.
    pub(crate) fn finish(self, ferry: &FerryProcess) {
        self.stop.store(true, Ordering::Relaxed);
        for (k, t) in self.threads.into_iter().enumerate() {
            let rounds = t.join().expect("a neighbour panicked").unwrap_or_else(|e| {
                panic!("neighbour {k}: {e}\nferry's log:\n{}", ferry.log_tail(60))
            });
            assert!(rounds >= 2, "neighbour {k} ran only {rounds} rounds");
        }
        let most = self.watch.stop();
        // One more for a moment: the client and its neighbours ask for different capabilities
        // (Connector/J's FOUND_ROWS, say), so the pool closes an idle connection that does not
        // fit and opens one that does; MariaDB lists the closing one until it has read its
        // COM_QUIT. Without multiplexing there would be one per session (4 and more).
        assert!(
            most <= CLIENT_POOL + 1,
            "MariaDB had {most} client connections at once, over max-backend-connections = \
             {CLIENT_POOL} (+1 being replaced): not multiplexed"
        );
        assert!(
            metric_sum(ferry, "ferry_pool_acquires_total").is_some_and(|n| n > 0.0),
            "no ferry_pool_acquires_total in /metrics, or 0"
        );
    }
}

/// One neighbour: `SET @n`, then reads it and its schema back, until `stop`; the rounds run.
fn neighbour(
    k: usize,
    schema: &str,
    opts: mysql::OptsBuilder,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut conn =
        mysql::Conn::new(opts.db_name(Some(schema))).map_err(|e| format!("connect: {e}"))?;
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = (k as u64) * 1_000_000 + rounds;
        conn.query_drop(format!("SET @n = {n}"))
            .map_err(|e| format!("SET @n: {e}"))?;
        let got: Option<(u64, String)> = conn
            .query_first("SELECT @n, DATABASE()")
            .map_err(|e| format!("SELECT @n: {e}"))?;
        if got != Some((n, schema.to_owned())) {
            return Err(format!("round {rounds}: {got:?}, not ({n}, {schema})"));
        }
        rounds += 1;
        thread::sleep(Duration::from_millis(20));
    }
    Ok(rounds)
}
