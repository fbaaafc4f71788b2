//! The real-server harness itself: start, query, run several at once, always tear down.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::{require_executable, run_with_deadline, MariaDb};

/// Whether a process with this pid exists (a reaped child's pid is gone).
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn one_server_with_a_user_and_a_database() {
    let started = Instant::now();
    let db = MariaDb::start();
    eprintln!("server ready in {:?}", started.elapsed());

    assert!(db.query_scalar("SELECT VERSION()").contains("MariaDB"));
    assert_eq!(db.query_scalar("SELECT @@port"), db.port().to_string());
    assert_eq!(db.addr().port(), db.port());
    assert!(db.socket_path().exists());
    TcpStream::connect(db.addr()).expect("the TCP port accepts connections");

    db.create_database("shop");
    db.create_user("app", "s3cret'pw");
    db.sql("CREATE TABLE shop.items (id INT PRIMARY KEY, name TEXT); INSERT INTO shop.items VALUES (1, 'a'), (2, 'b')");
    assert_eq!(db.query_scalar("SELECT COUNT(*) FROM shop.items"), "2");
    assert_eq!(
        db.sql("SELECT id, name FROM shop.items ORDER BY id"),
        "1\ta\n2\tb\n"
    );
    assert_eq!(
        db.query_scalar("SELECT plugin FROM mysql.user WHERE user = 'app' AND host = '%'"),
        "mysql_native_password"
    );
    let hash = db.user_password_hash("app");
    assert_eq!(hash, db.query_scalar("SELECT PASSWORD('s3cret''pw')"));
    assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");

    // The new user can log in over TCP with its password, using a real client.
    let client = require_executable("mariadb", "mariadb-client");
    let out = run_with_deadline(
        Command::new(&client).args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{}", db.port()),
            "-uapp",
            "-ps3cret'pw",
            "-N",
            "-B",
            "-e",
            "SELECT CURRENT_USER(), COUNT(*) FROM shop.items",
        ]),
        Duration::from_secs(30),
    )
    .expect("client runs");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "app@%\t2\n");

    // Errors carry the server's message.
    let err = db
        .try_sql("SELECT * FROM shop.nosuch")
        .expect_err("no such table");
    assert!(err.stderr.contains("1146"), "{err}");
}

#[test]
fn three_servers_at_once_on_distinct_ports_and_server_ids() {
    let started = Instant::now();
    let handles: Vec<_> = (1..=3u32)
        .map(|i| thread::spawn(move || MariaDb::builder().server_id(100 + i).start()))
        .collect();
    let servers: Vec<MariaDb> = handles
        .into_iter()
        .map(|h| h.join().expect("server starts"))
        .collect();
    eprintln!("three servers ready in {:?}", started.elapsed());

    let ports: HashSet<u16> = servers.iter().map(MariaDb::port).collect();
    assert_eq!(ports.len(), 3, "ports must differ: {ports:?}");
    let dirs: HashSet<PathBuf> = servers.iter().map(|s| s.datadir().to_owned()).collect();
    assert_eq!(dirs.len(), 3);
    for (i, server) in servers.iter().enumerate() {
        let expected = 101 + i as u32;
        assert_eq!(server.server_id(), expected);
        assert_eq!(
            server.query_scalar("SELECT @@server_id"),
            expected.to_string()
        );
        assert_eq!(
            server.query_scalar("SELECT @@port"),
            server.port().to_string()
        );
    }
    // Each has its own data: a database made on one is not on the others.
    servers[0].create_database("only_on_first");
    assert_eq!(
        servers[0].query_scalar(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'only_on_first'"
        ),
        "1"
    );
    assert_eq!(
        servers[1].query_scalar(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'only_on_first'"
        ),
        "0"
    );
}

#[test]
fn a_panicking_test_still_tears_its_server_down() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = thread::spawn(move || {
        let db = MariaDb::start();
        tx.send((
            db.pid().expect("running"),
            db.datadir().to_owned(),
            db.port(),
        ))
        .expect("send");
        panic!("test body fails while the server runs");
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let (pid, datadir, port) = rx.recv().expect("the server had started");
    assert!(
        !process_exists(pid),
        "mariadbd {pid} still runs after the panic"
    );
    assert!(
        !datadir.exists(),
        "{} still exists after the panic",
        datadir.display()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
}

#[test]
fn drop_stops_the_server_and_removes_its_data() {
    let db = MariaDb::start();
    let pid = db.pid().expect("running");
    let datadir = db.datadir().to_owned();
    assert!(process_exists(pid));
    drop(db);
    assert!(!process_exists(pid), "mariadbd {pid} still runs after drop");
    assert!(!datadir.exists());
}

#[test]
fn restart_keeps_port_and_data_and_kill_is_a_crash() {
    let mut db = MariaDb::builder().server_id(42).start();
    db.sql("CREATE DATABASE kept; CREATE TABLE kept.t (x INT) ENGINE=InnoDB; INSERT INTO kept.t VALUES (7)");
    let (port, old_pid) = (db.port(), db.pid());

    db.restart();
    assert_eq!(db.port(), port);
    assert_ne!(db.pid(), old_pid);
    assert_eq!(db.query_scalar("SELECT x FROM kept.t"), "7");
    assert_eq!(db.query_scalar("SELECT @@server_id"), "42");

    db.kill();
    assert_eq!(db.pid(), None);
    assert!(
        TcpStream::connect(db.addr()).is_err(),
        "a killed server does not answer"
    );
    db.restart(); // InnoDB recovers from the crash
    assert_eq!(db.query_scalar("SELECT x FROM kept.t"), "7");
}

#[test]
fn extra_server_args_reach_the_server() {
    let db = MariaDb::builder()
        .arg("--max-connections=77")
        .args(["--lower-case-table-names=1"])
        .start();
    assert_eq!(db.query_scalar("SELECT @@max_connections"), "77");
    assert_eq!(db.query_scalar("SELECT @@lower_case_table_names"), "1");
}

#[test]
fn tls_with_a_generated_certificate() {
    let openssl = require_executable("openssl", "openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = run_with_deadline(
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(60),
    )
    .expect("openssl runs");
    assert!(out.status.success(), "{}", out.stderr);

    let db = MariaDb::builder().ssl(&cert, &key).start();
    assert_eq!(db.query_scalar("SELECT @@have_ssl"), "YES");
}

#[test]
fn a_server_that_cannot_start_fails_with_its_error_log() {
    let err = thread::spawn(|| {
        MariaDb::builder()
            .arg("--ferry-no-such-option")
            .ready_timeout(Duration::from_secs(20))
            .start()
    })
    .join()
    .expect_err("start must panic");
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("failed to start"), "{message}");
    assert!(
        message.contains("ferry-no-such-option"),
        "the log names the bad option: {message}"
    );
}
