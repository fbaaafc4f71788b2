//! The listener over real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use ferry_core::control::admin::{route, AdminApi, MAX_BODY, MAX_HEAD};
use ferry_core::control::config::{Config, ConfigFile};
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
            down_reason: None,
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

/// `[admin]` on a free port of 127.0.0.1 with `keys`; relative paths start at `dir`.
fn admin_config(keys: &str, dir: Option<&std::path::Path>) -> AdminConfig {
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{keys}\n\
         [[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n"
    );
    Config::from_file(&ConfigFile::parse(&text, dir).unwrap())
        .unwrap()
        .admin
}

fn start(keys: &str) -> (AdminServer, Arc<Fake>) {
    start_with(&admin_config(keys, None))
}

fn start_with(config: &AdminConfig) -> (AdminServer, Arc<Fake>) {
    let api = Arc::new(Fake::default());
    let fake = Arc::clone(&api);
    let handler: Handler = Arc::new(move |req: &Request| route(req, &mut &*fake));
    let server = AdminServer::start(config, handler).unwrap();
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
    let (server, api) = start("");
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
    let (server, _) = start("request-timeout = \"300ms\"");
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
    let (server, _) = start("");
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

/// Whether the server closed `s` (without answering) within a second.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).is_ok() && out.is_empty()
}

#[test]
fn at_the_cap_a_new_connection_closes_the_oldest_silent_one() {
    let (server, _) = start("max-connections = 1\nrequest-timeout = \"10s\"");
    // Hold the only slot with a silent connection: the next one takes it over.
    let mut hold = TcpStream::connect(server.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        exchange(server.local_addr(), b"GET /health HTTP/1.1\r\n\r\n").0,
        200
    );
    assert!(closed_by_server(&mut hold));
}

#[test]
fn hundreds_of_held_open_connections_do_not_lock_out_health_live() {
    let (server, _) = start("max-connections = 4\nrequest-timeout = \"30s\"");
    let addr = server.local_addr();
    let mut held = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(addr).unwrap();
        // Half a request, then silence (a slowloris), or nothing at all.
        if i % 2 == 0 {
            s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        }
        held.push(s);
        if i % 50 == 49 {
            let started = Instant::now();
            let live = exchange(addr, b"GET /health/live HTTP/1.1\r\n\r\n");
            assert_eq!(live, (200, "ok\n".into()));
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
    }
    // The server keeps at most 4 open: the oldest were closed without waiting for their
    // request timeout.
    let closed = held[..250]
        .iter_mut()
        .map(closed_by_server)
        .filter(|&c| c)
        .count();
    assert_eq!(closed, 250);
    assert_eq!(exchange(addr, b"GET /health HTTP/1.1\r\n\r\n").0, 200);
}

#[test]
fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), cert.signing_key.serialize_pem()).unwrap();
    let config = admin_config(
        "tls = { cert = \"c.pem\", key = \"k.pem\" }",
        Some(dir.path()),
    );
    let (server, _) = start_with(&config);
    let trust = ferry_core::tls::ServerTrust::CaPem(cert.cert.pem().into_bytes());
    let client_config = ferry_core::tls::client_config(&trust).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(client_config, name).unwrap();
    let sock = TcpStream::connect(server.local_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(tls, sock);
    stream
        .write_all(b"GET /api/backends HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\"name\":\"db1\""), "{text}");
    // Plaintext on the HTTPS port gets no answer.
    let mut plain = TcpStream::connect(server.local_addr()).unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(
        !out.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn bind_errors_are_reported_at_start_and_stop_is_prompt() {
    let (server, _) = start("");
    let taken = server.local_addr();
    let handler: Handler = Arc::new(|_: &Request| Response::text(200, "ok\n"));
    let config = AdminConfig {
        listen: taken,
        ..admin_config("", None)
    };
    let err = AdminServer::start(&config, handler).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing listens there any more.
    assert!(TcpStream::connect(taken).is_err());
}
