//! The programs of this crate in front of a real MariaDB: the `ferry-smol` binary (ferry's
//! command line and admin endpoint on the smol driver) and the `embed` example.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{free_port, http_get, mariadb_cli, ChildGuard, MariaDb};

#[test]
fn the_ferry_smol_binary_serves_with_ferrys_command_line_and_admin_endpoint() {
    let db = MariaDb::builder().server_id(71).start();
    db.create_user("app", "s3cret");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_ferry-smol"))
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .args(["--workers", "2", "--backend", &db.addr().to_string()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Serving once the first health round found the backend.
    while TcpStream::connect(admin).is_err()
        || !http_get(admin, "/api/backends")
            .1
            .contains("\"healthy\":true")
    {
        assert!(Instant::now() < deadline, "ferry-smol did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(admin, "/health"), (200, "ok\n".to_owned()));
    let (_, body) = http_get(admin, "/api/backends");
    let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(backends[0]["name"], "db1");
    assert_eq!(backends[0]["healthy"], true, "{body}");

    let out = mariadb_cli(
        listen.port(),
        "app",
        "s3cret",
        "create database shop; create table shop.t (id int, v varchar(10)); \
         insert into shop.t values (1, 'a'), (2, 'b'); select count(*), max(v) from shop.t; select @@server_id",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["2\tb", "71"],
        "{out:?}"
    );

    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ferry_sessions_accepted_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_commands_total"), "{metrics}");
    let (status, body) = http_get(admin, "/api/sessions");
    assert_eq!((status, body.as_str()), (200, "[]"));

    let status = guard.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(status.success(), "ferry-smol exited with {status}");
}

/// The `embed` example, built next to the test binaries by `cargo test`.
fn embed_example() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ferry-smol"));
    let path = bin.parent().unwrap().join("examples").join("embed");
    assert!(
        path.exists(),
        "{} is missing: cargo test builds examples; run `cargo build -p ferry-smol --example embed`",
        path.display()
    );
    path
}

#[test]
fn the_embed_example_prints_its_port_serves_and_stops_on_ctrl_c() {
    let db = MariaDb::builder().server_id(72).start();
    db.create_user("app", "s3cret");
    let child = Command::new(embed_example())
        .arg(db.addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child_mut().unwrap().stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    let port: u16 = first
        .strip_prefix("ferry (smol) listening on port ")
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    let out = mariadb_cli(port, "app", "s3cret", "select @@server_id");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "72");
    let chosen = lines.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(chosen.contains("user Some(\"app\")"), "{chosen}");

    let status = guard.signal_and_wait("INT", Duration::from_secs(15));
    assert!(status.success(), "embed exited with {status}");
    // The reader thread ends with the child's stdout.
    let rest: Vec<String> =
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(rest.iter().any(|l| l == "stopped: Graceful"), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("healthy true")), "{rest:?}");
}
