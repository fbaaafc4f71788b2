//! The listener over real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use ferry_core::control::admin::{route, AdminApi};
use ferry_core::control::{ApiError, BackendInfo, Metrics, SessionInfo};

#[derive(Default)]
struct Fake {
    drained: AtomicBool,
}

/// Through a shared reference: its state is atomic.
impl AdminApi for &Fake {
    fn serving(&self) -> bool {
        true
    }
    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(vec![BackendInfo {
            name: "db1".into(),
            addr: "127.0.0.1:3306".into(),
            healthy: true,
            sessions: 0,
            draining: self.drained.load(Ordering::SeqCst),
            health_warning: None,
        }])
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(Vec::new())
    }
    fn metrics(&self) -> Result<Metrics, ApiError> {
        Ok(Metrics::default())
    }
    fn set_draining(&mut self, backend: &str, draining: bool) -> Result<(), ApiError> {
        if backend != "db1" {
            return Err(ApiError::UnknownBackend(backend.into()));
        }
        self.drained.store(draining, Ordering::SeqCst);
        Ok(())
    }
    fn migrate(&mut self, session: u64, _: &str) -> Result<(), ApiError> {
        Err(ApiError::UnknownSession(session))
    }
}

fn start(limits: Limits) -> (AdminServer, Arc<Fake>) {
    let api = Arc::new(Fake::default());
    let fake = Arc::clone(&api);
    let handler: Handler = Arc::new(move |req: &Request| route(req, &mut &*fake));
    let server = AdminServer::start_with("127.0.0.1:0".parse().unwrap(), handler, limits).unwrap();
    (server, api)
}

/// Sends `request`, reads until the server closes; returns (status, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[test]
fn serves_requests_over_tcp() {
    let (server, api) = start(Limits::default());
    let addr = server.local_addr();
    assert_eq!(
        exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        (200, "ok\n".into())
    );
    // The request may arrive in pieces.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /api/backends/db1/dr").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"ain HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    assert!(api.drained.load(Ordering::SeqCst));
    let (status, body) = exchange(addr, b"GET /api/backends HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.contains("\"draining\":true"), "{body}");
    assert_eq!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(exchange(addr, b"garbage\r\n\r\n").0, 400);
    server.stop();
}

#[test]
fn slow_or_silent_clients_are_cut_off_at_the_deadline() {
    let limits = Limits {
        deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let (server, _) = start(limits);
    let started = Instant::now();
    // Half a request, then silence.
    let (status, _) = exchange(server.local_addr(), b"GET /health HTTP/1.1\r\n");
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Meanwhile and after, others are served.
    assert_eq!(
        exchange(server.local_addr(), b"GET /health HTTP/1.1\r\n\r\n").0,
        200
    );
}

#[test]
fn oversized_requests_are_refused_without_reading_them_all() {
    let (server, _) = start(Limits::default());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // An endless header: the server answers 431 once it passed MAX_HEAD.
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nX-Long: ");
    let _ = s.write_all(&vec![b'a'; MAX_HEAD + 10]);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let big = format!(
        "POST /api/sessions/1/migrate HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    assert_eq!(exchange(server.local_addr(), big.as_bytes()).0, 413);
}

#[test]
fn connections_over_the_limit_get_503() {
    let limits = Limits {
        deadline: Duration::from_secs(2),
        max_concurrent: 1,
    };
    let (server, _) = start(limits);
    // Hold the only slot with a silent connection.
    let hold = TcpStream::connect(server.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exchange(server.local_addr(), b"GET /health HTTP/1.1\r\n\r\n").0,
        503
    );
    drop(hold);
}

#[test]
fn bind_errors_are_reported_at_start_and_stop_is_prompt() {
    let (server, _) = start(Limits::default());
    let taken = server.local_addr();
    let handler: Handler = Arc::new(|_: &Request| Response::text(200, "ok\n"));
    let err = AdminServer::start(taken, handler).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing listens there any more.
    assert!(TcpStream::connect(taken).is_err());
}
