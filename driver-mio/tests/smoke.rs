//! Smoke test of the real `ferry` binary in front of a real MariaDB: the `mariadb` CLI runs
//! statements through it, the admin endpoint answers, and SIGTERM shuts it down cleanly.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{free_port, http_get, mariadb_cli, ChildGuard, CommandOutput, MariaDb};

/// The ferry process; killed on drop if a test failed before stopping it.
struct Ferry {
    guard: ChildGuard,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Ferry {
    fn start(backends: &[SocketAddr], extra: &[&str]) -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("--listen")
            .arg(listen.to_string())
            .arg("--admin")
            .arg(admin.to_string())
            .arg("--workers")
            .arg("2");
        for b in backends {
            cmd.arg("--backend").arg(b.to_string());
        }
        cmd.args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start ferry");
        let ferry = Self {
            guard: ChildGuard::new(child),
            listen,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "ferry did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ferry
    }

    fn mariadb(&self, user: &str, password: &str, sql: &str) -> CommandOutput {
        mariadb_cli(self.listen.port(), user, password, sql)
    }

    fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// SIGTERM, then the exit status within `limit`.
    fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.guard.signal_and_wait("TERM", limit)
    }
}

#[test]
fn mariadb_cli_through_ferry_admin_endpoint_and_graceful_shutdown() {
    let db = MariaDb::builder().server_id(11).start();
    db.create_user("app", "s3cret");
    let mut ferry = Ferry::start(&[db.addr()], &[]);

    let out = ferry.mariadb("app", "s3cret", "select 1");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "1");

    // Statements that need real relaying: DDL, writes, a result set, the backend's identity.
    let out = ferry.mariadb(
        "app",
        "s3cret",
        "create database shop; create table shop.t (id int primary key, name varchar(20)); \
         insert into shop.t values (1, 'one'); insert into shop.t values (2, 'two'); \
         select id, name from shop.t order by id; select @@port, @@server_id",
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["1\tone", "2\ttwo", &format!("{}\t11", db.port())],
        "{out:?}"
    );

    // A wrong password is the backend's ERR 1045, relayed.
    let out = ferry.mariadb("app", "wrong", "select 1");
    assert!(!out.status.success());
    assert!(out.stderr.contains("1045"), "{out:?}");

    let (status, body) = ferry.http_get("/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = ferry.http_get("/api/backends");
    assert_eq!(status, 200);
    let backends: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(backends[0]["name"], "db1");
    assert_eq!(backends[0]["addr"], db.addr().to_string());
    assert_eq!(backends[0]["healthy"], true);
    assert_eq!(backends[0]["sessions"], 0, "sessions not released: {body}");
    let (status, metrics) = ferry.http_get("/metrics");
    assert_eq!(status, 200);
    // Three clients, plus the connection that waited for ferry to listen.
    assert!(
        metrics.contains("ferry_sessions_accepted_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_sessions 0"), "{metrics}");

    let status = ferry.terminate(Duration::from_secs(10));
    assert!(status.success(), "ferry exited with {status}");
}

#[test]
fn a_backend_that_is_down_gives_the_client_an_error_not_a_hang() {
    // Nothing listens on this port.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut ferry = Ferry::start(&[dead], &[]);
    let start = Instant::now();
    let out = ferry.mariadb("app", "x", "select 1");
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("ERROR"), "{out:?}");
    assert!(start.elapsed() < Duration::from_secs(15));
    let (_, body) = ferry.http_get("/api/backends");
    assert!(body.contains("\"healthy\":false"), "{body}");
    let status = ferry.terminate(Duration::from_secs(10));
    assert!(status.success(), "ferry exited with {status}");
}
