//! Live migration through the embedded smol proxy between two real MariaDB servers (`replay`
//! mode with proxy auth): a request through the handle, a pinned session that waits for its
//! transaction to end, and a drain that moves every session away, with the clients (the Rust
//! `mysql` crate) noticing nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_smol::{ApiError, Config, ConfigFile, Proxy, ProxyHandle, ShutdownOutcome};
use ferry_tests::MariaDb;
use mysql::prelude::Queryable;

const USER: &str = "app";
const PASSWORD: &str = "s3cret";

fn servers() -> (MariaDb, MariaDb) {
    let db1 = MariaDb::builder().server_id(81).start();
    let db2 = MariaDb::builder().server_id(82).start();
    for db in [&db1, &db2] {
        db.create_user(USER, PASSWORD);
        db.create_database("shop");
    }
    (db1, db2)
}

/// Proxy auth (ferry checks the password, then logs in to any backend) and replay migration;
/// automatic rebalancing off, so that only the test's requests and drains move sessions.
fn config(db1: &MariaDb, db2: &MariaDb) -> Config {
    let text = format!(
        r#"
[auth]
mode = "proxy"
[[auth.users]]
name = "{USER}"
password-hash = "{hash}"
[migration]
mode = "replay"
rebalance-interval = "200ms"
rebalance-max-moves = 0
[[backends]]
name = "db1"
addr = "{a1}"
[[backends]]
name = "db2"
addr = "{a2}"
"#,
        hash = db1.user_password_hash(USER),
        a1 = db1.addr(),
        a2 = db2.addr(),
    );
    Config::from_file(&ConfigFile::parse(&text, None).unwrap()).unwrap()
}

struct Running {
    handle: ProxyHandle,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(config: &Config) -> Self {
        let proxy = Proxy::new(config).unwrap();
        let handle = proxy.handle();
        let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || smol::block_on(proxy.run(listener)));
        wait_until("both backends healthy", || {
            let b = handle.backends();
            b.len() == 2 && b.iter().all(|b| b.healthy)
        });
        Self {
            handle,
            addr,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> mysql::Conn {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.addr.port())
            .user(Some(USER))
            .pass(Some(PASSWORD))
            .db_name(Some("shop"))
            .prefer_socket(false)
            .read_timeout(Some(Duration::from_secs(30)));
        mysql::Conn::new(opts).expect("connect through ferry-smol")
    }

    /// The backend session `id` is listed on.
    fn backend_of(&self, id: u64) -> Option<String> {
        self.handle
            .sessions()
            .into_iter()
            .find(|s| s.id == id)
            .and_then(|s| s.backend)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            smol::block_on(self.handle.shutdown(Duration::from_secs(5)));
            let _ = thread.join();
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn server_id(conn: &mut mysql::Conn) -> u32 {
    conn.query_first("select @@server_id").unwrap().unwrap()
}

#[test]
fn a_session_moves_on_request_and_keeps_its_state() {
    let (db1, db2) = servers();
    let proxy = Running::start(&config(&db1, &db2));
    let mut conn = proxy.connect();
    assert_eq!(server_id(&mut conn), 81, "the first session goes to db1");
    conn.query_drop("set time_zone = '+03:00', sql_mode = 'ANSI_QUOTES'")
        .unwrap();
    conn.query_drop("create table t (id int primary key)")
        .unwrap();
    let id = conn.connection_id() as u64;
    assert_eq!(proxy.backend_of(id).as_deref(), Some("db1"));

    smol::block_on(proxy.handle.migrate(id, "db2")).unwrap();
    wait_until("the session to be on db2", || {
        proxy.backend_of(id).as_deref() == Some("db2")
    });
    let row: (u32, String, String, String) = conn
        .query_first("select @@server_id, @@time_zone, @@sql_mode, database()")
        .unwrap()
        .unwrap();
    assert_eq!(
        row,
        (82, "+03:00".into(), "ANSI_QUOTES".into(), "shop".into())
    );
    // db2 has no table t: the session really runs there now.
    assert!(conn.query_drop("select * from t").is_err());
    assert_eq!(server_id(&mut conn), 82);

    // The core's refusals come back as conflicts.
    let same = smol::block_on(proxy.handle.migrate(id, "db2"));
    assert!(
        matches!(same, Err(ApiError::Conflict(ref m)) if m.contains("already on")),
        "{same:?}"
    );
    let m = proxy.handle.metrics();
    assert_eq!((m.migrations_started, m.migrations_succeeded), (1, 1));
    assert_eq!(m.migration_pause.count(), 1);
    assert_eq!(
        proxy
            .handle
            .backends()
            .iter()
            .map(|b| b.sessions)
            .collect::<Vec<_>>(),
        [0, 1],
        "the old backend connection is released"
    );
}

#[test]
fn a_transaction_pins_the_session_until_it_ends_and_a_drain_moves_everyone() {
    let (db1, db2) = servers();
    let mut proxy = Running::start(&config(&db1, &db2));
    let mut a = proxy.connect();
    let mut b = proxy.connect();
    // Least sessions first: one on each backend.
    let mut ids = [(a.connection_id() as u64, server_id(&mut a))];
    let b_id = b.connection_id() as u64;
    assert_eq!(server_id(&mut b), 82);
    ids[0].1 = server_id(&mut a);
    assert_eq!(ids[0].1, 81);
    let a_id = ids[0].0;

    // In a transaction, a request waits for a safe point: the session stays until COMMIT.
    a.query_drop("begin").unwrap();
    a.query_drop("select 1").unwrap();
    wait_until("the pin to be listed", || {
        proxy
            .handle
            .sessions()
            .iter()
            .any(|s| s.id == a_id && s.pinned.as_deref() == Some("transaction"))
    });
    assert_eq!(proxy.handle.metrics().pinned_sessions["transaction"], 1);
    smol::block_on(proxy.handle.migrate(a_id, "db2")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proxy.backend_of(a_id).as_deref(), Some("db1"));
    assert_eq!(server_id(&mut a), 81);
    a.query_drop("commit").unwrap();
    wait_until("the session to move after COMMIT", || {
        proxy.backend_of(a_id).as_deref() == Some("db2")
    });
    assert_eq!(server_id(&mut a), 82);

    // Drain db2: both sessions go to db1 (the balancer's drain moves), clients see no error.
    proxy.handle.drain("db2").unwrap();
    wait_until("both sessions on db1", || {
        proxy.backend_of(a_id).as_deref() == Some("db1")
            && proxy.backend_of(b_id).as_deref() == Some("db1")
    });
    assert_eq!(server_id(&mut a), 81);
    assert_eq!(server_id(&mut b), 81);
    assert_eq!(
        proxy
            .handle
            .backends()
            .iter()
            .map(|b| b.sessions)
            .collect::<Vec<_>>(),
        [2, 0]
    );
    // A drained backend takes no migration either.
    let refused = smol::block_on(proxy.handle.migrate(a_id, "db2"));
    assert!(
        matches!(refused, Err(ApiError::Conflict(ref m)) if m.contains("draining")),
        "{refused:?}"
    );
    // A new session avoids the drained backend too.
    let mut c = proxy.connect();
    assert_eq!(server_id(&mut c), 81);
    assert_eq!(proxy.handle.metrics().migrations_succeeded, 3);
    drop((a, b, c));

    let outcome = smol::block_on(proxy.handle.shutdown(Duration::from_secs(10)));
    assert_eq!(outcome, ShutdownOutcome::Graceful);
    proxy.thread.take().unwrap().join().unwrap().unwrap();
}
