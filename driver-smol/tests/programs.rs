//! The programs of this crate in front of a real MariaDB: the `ferry-smol` binary (ferry's
//! command line and admin endpoint on the smol driver) and the `embed` example.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{require_executable, run_with_deadline, CommandOutput, MariaDb};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mariadb(port: u16, user: &str, password: &str, sql: &str) -> CommandOutput {
    let client = require_executable("mariadb", "mariadb-client");
    run_with_deadline(
        Command::new(client)
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg("-h127.0.0.1")
            .arg(format!("-P{port}"))
            .arg(format!("-u{user}"))
            .arg(format!("-p{password}"))
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("-e")
            .arg(sql),
        Duration::from_secs(30),
    )
    .expect("run mariadb")
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: ferry\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_owned())
}

/// Kills the child on drop (a failed test must not leave it running).
struct Guard(Option<Child>);

impl Guard {
    /// Sends `signal`, then waits at most `limit` for the exit status.
    fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let mut child = self.0.take().unwrap();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running {limit:?} after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
    let mut guard = Guard(Some(child));
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

    let out = mariadb(
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
    let mut guard = Guard(Some(child));
    let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
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
    let out = mariadb(port, "app", "s3cret", "select @@server_id");
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
