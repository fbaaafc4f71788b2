//! The programs of this crate in front of a real MariaDB: the `ferry-smol` example (ferry's
//! command line and admin endpoint on the smol driver) and the `embed` example.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{free_port, http_get, mariadb_cli, ChildGuard, MariaDb};

#[test]
fn the_ferry_smol_example_serves_with_ferrys_command_line_and_admin_endpoint() {
    let db = MariaDb::builder().server_id(71).start();
    db.create_user("app", "s3cret");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(example("ferry-smol"))
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

/// An example of this crate, built next to the test binaries by `cargo test`
/// (`target/<profile>/examples/`, beside the `deps/` folder this test runs from).
fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds examples; run `cargo build -p ferry-smol --example {name}`",
        path.display()
    );
    path
}

#[test]
fn the_embed_example_prints_its_port_serves_and_stops_on_ctrl_c() {
    let db = MariaDb::builder().server_id(72).start();
    db.create_user("app", "s3cret");
    let child = Command::new(example("embed"))
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

#[test]
fn the_ferry_smol_example_checks_and_refuses_configurations_as_ferry_does() {
    let run = |args: &[&str]| {
        ferry_tests::run_with_deadline(
            Command::new(example("ferry-smol"))
                .args(args)
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        )
        .unwrap()
    };
    let out = run(&["--check", "--backend", "127.0.0.1:3306", "--workers", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.starts_with("configuration ok: listen 127.0.0.1:6000, admin 127.0.0.1:6080, 1 backend(s), 3 worker(s)"),
        "{out:?}"
    );
    // No backend at all: refused with exit code 2, saying why.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .starts_with("ferry-smol: configuration refused:\n"),
        "{out:?}"
    );
    assert!(out.stderr.contains("--backend"), "{out:?}");
}
