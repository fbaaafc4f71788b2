//! One admin connection on a virtual clock, over plaintext and over TLS.

use std::sync::Arc;

use super::*;
use crate::control::config::{Config, ConfigFile};
use crate::tls::{self, ServerTrust};

fn admin(keys: &str, dir: Option<&std::path::Path>) -> AdminConfig {
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:6080\"\nrequest-timeout = \"2s\"\n{keys}\n\
         [[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n"
    );
    let file = ConfigFile::parse(&text, dir).unwrap();
    Config::from_file(&file).unwrap().admin
}

fn take(conn: &mut AdminConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = conn.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
    out
}

fn status(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[test]
fn a_request_goes_to_the_proxy_and_its_answer_comes_back() {
    let now = Instant::now();
    let mut c = AdminConnection::new(now, &admin("", None));
    assert_eq!(c.deadline(), Some(now + Duration::from_secs(2)));
    c.handle_input(now, b"GET /metrics HTTP/1.1\r\nHo");
    assert!(c.poll_request().is_none() && !c.has_request());
    c.handle_input(
        now,
        b"st: x\r\nAuthorization: Bearer secret-token-1\r\n\r\n",
    );
    // Its debug output shows neither the token nor the request's bytes.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("secret") && !debug.contains("71, 69, 84"),
        "{debug}"
    );
    let req = c.poll_request().unwrap();
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/metrics")
    );
    assert_eq!(req.headers.host.as_deref(), Some("x"));
    assert!(c.poll_request().is_none(), "given once");
    // The proxy takes its time: no deadline runs meanwhile.
    assert_eq!(c.deadline(), None);
    c.handle_timeout(now + Duration::from_secs(60));
    let later = now + Duration::from_secs(61);
    c.respond(later, &Response::text(200, "m\n"));
    assert!(c.is_answered() && c.has_request());
    assert_eq!(status(&take(&mut c)), 200);
    // Then leftovers are discarded until the client closes, or the deadline.
    assert_eq!(c.deadline(), Some(later + Duration::from_secs(2)));
    c.handle_input(later, b"junk");
    assert!(take(&mut c).is_empty());
    c.handle_eof(later);
    assert!(c.is_closed());
}

#[test]
fn health_live_is_answered_without_the_proxy() {
    let now = Instant::now();
    let mut c = AdminConnection::new(now, &admin("", None));
    c.handle_input(now, b"GET /health/live HTTP/1.1\r\nHost: evil\r\n\r\n");
    assert!(c.poll_request().is_none());
    let out = take(&mut c);
    assert_eq!(status(&out), 200);
    assert!(out.ends_with(b"\r\n\r\nok\n"));
}

#[test]
fn bad_and_slow_requests_are_answered_by_the_connection() {
    let now = Instant::now();
    let config = admin("", None);
    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"garbage\r\n\r\n");
    assert_eq!(status(&take(&mut c)), 400);

    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"GET /metrics HTTP/1.1\r\n");
    c.handle_timeout(now + Duration::from_millis(1999));
    assert!(take(&mut c).is_empty());
    c.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(status(&take(&mut c)), 408);
    // And the answer's own deadline closes it if the client never does.
    c.handle_timeout(now + Duration::from_secs(4));
    assert!(c.is_closed());

    // An endless head: 431 once past the cap, whatever keeps coming.
    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"GET / HTTP/1.1\r\nX: ");
    for _ in 0..100 {
        c.handle_input(now, &[b'a'; 4096]);
    }
    assert_eq!(status(&take(&mut c)), 431);
    assert!(
        c.is_closed(),
        "the leftovers past a request's worth close it"
    );

    // A client gone before its request was whole: nothing to answer.
    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"GET / HT");
    c.handle_eof(now);
    assert!(c.is_closed() && take(&mut c).is_empty());

    // One that closed its side after a whole request still gets the answer.
    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"GET /metrics HTTP/1.1\r\n\r\n");
    c.handle_eof(now);
    assert!(c.poll_request().is_some());
    c.respond(now, &Response::text(200, "m\n"));
    assert_eq!(status(&take(&mut c)), 200);
}

#[test]
fn over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), cert.signing_key.serialize_pem()).unwrap();
    let config = admin(
        "tls = { cert = \"c.pem\", key = \"k.pem\" }",
        Some(dir.path()),
    );
    let trust = ServerTrust::CaPem(cert.cert.pem().into_bytes());
    let client_config = tls::client_config(&trust).unwrap();
    let now = Instant::now();
    let mut c = AdminConnection::new(now, &config);
    let mut client = TlsSession::client(Arc::clone(&client_config), "127.0.0.1").unwrap();
    client
        .write_plaintext(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = BytesMut::new();
    let mut request = None;
    for _ in 0..10 {
        let mut to_server = Vec::new();
        client.take_ciphertext(&mut to_server);
        if !to_server.is_empty() {
            c.handle_input(now, &to_server);
        }
        if let Some(req) = c.poll_request() {
            c.respond(now, &Response::text(200, "over tls\n"));
            request = Some(req);
        }
        client.read_ciphertext(&take(&mut c), &mut answer).unwrap();
    }
    assert_eq!(request.unwrap().path, "/metrics");
    assert_eq!(status(&answer), 200);
    assert!(answer.ends_with(b"over tls\n"));

    // Plaintext on the TLS port: closed, no request.
    let mut c = AdminConnection::new(now, &config);
    c.handle_input(now, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(c.is_closed() && c.poll_request().is_none());
    // A handshake that never finishes is closed at the deadline, with no 408 in the clear.
    let mut c = AdminConnection::new(now, &config);
    let mut client = TlsSession::client(client_config, "127.0.0.1").unwrap();
    let mut hello = Vec::new();
    client.take_ciphertext(&mut hello);
    c.handle_input(now, &hello[..hello.len() / 2]);
    c.handle_timeout(now + Duration::from_secs(2));
    assert!(c.is_closed());
    assert!(!String::from_utf8_lossy(&take(&mut c)).contains("408"));
}
