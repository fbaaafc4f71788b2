//! The admin endpoint's safety through the real proxy programs, for every driver: tokens (admin
//! and read-only), what a web page could send cross-site (a `text/plain` or bodiless `POST`, a
//! rebound `Host`, a foreign `Origin`), HTTPS, and 2,000 connections held open on the admin port
//! while MySQL clients run: their answers do not change and `/health/live` keeps answering.

mod proxy_common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use ferry_tests::{driver_tests, Driver, FerryProcess, HttpAnswer};
use proxy_common::{backend, mysql_opts, PASSWORD, USER};

driver_tests!(
    tokens_guard_every_route_but_health,
    without_a_token_what_a_browser_can_send_cross_site_is_refused,
    held_open_admin_connections_change_no_mysql_answer,
    the_admin_endpoint_serves_https,
);

const ADMIN_TOKEN: &str = "admin-0123456789abcdef-token";
const READ_TOKEN: &str = "read-0123456789abcdef-token";

/// `method path` with `headers` (whole lines, without CRLF) and `body`, as a client on this
/// machine sends it: `Host` is the endpoint's address unless `headers` gives one.
fn request(
    ferry: &FerryProcess,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> HttpAnswer {
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        text.push_str(&format!("Host: {}\r\n", ferry.admin_addr()));
    }
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    ferry
        .admin_request(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

const JSON: &str = "Content-Type: application/json";

/// Whether `db1` is draining, read with `token`.
fn draining(ferry: &FerryProcess, token: Option<&str>) -> bool {
    let auth = token.map(bearer);
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let answer = request(ferry, "GET", "/api/backends", &headers, "");
    assert_eq!(answer.status, 200, "{answer:?}");
    let list: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    list[0]["draining"].as_bool().unwrap()
}

fn tokens_guard_every_route_but_health(driver: Driver) {
    let db = backend(1);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .admin_toml(&format!(
            "token-file = \"{}\"\nread-token = \"{READ_TOKEN}\"",
            token_file.display()
        ))
        // Everything ferry logs, to check that no token is among it.
        .rust_log("debug")
        .start();
    let drain = "/api/backends/db1/drain";

    // A POST without the token: 401 with the challenge, and nothing done.
    let answer = request(&ferry, "POST", drain, &[JSON], "");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.head.contains("\r\nWWW-Authenticate: Bearer"),
        "{answer:?}"
    );
    assert!(answer.body.contains("token"), "{answer:?}");
    // A wrong one, and the read-only one (403: it is known, but may only read).
    let wrong = bearer("admin-0123456789abcdef-tokem");
    assert_eq!(
        request(&ferry, "POST", drain, &[JSON, &wrong], "").status,
        401
    );
    let read = bearer(READ_TOKEN);
    let answer = request(&ferry, "POST", drain, &[JSON, &read], "");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("read-only"), "{answer:?}");
    assert!(!draining(&ferry, Some(READ_TOKEN)));

    // Reading: either token; none is a 401.
    for path in ["/metrics", "/api/backends", "/api/sessions"] {
        assert_eq!(request(&ferry, "GET", path, &[], "").status, 401, "{path}");
        assert_eq!(request(&ferry, "GET", path, &[&read], "").status, 200);
        let admin = bearer(ADMIN_TOKEN);
        assert_eq!(request(&ferry, "GET", path, &[&admin], "").status, 200);
    }
    // Health needs none: orchestrators probe without tokens.
    for path in ["/health", "/health/live"] {
        let answer = request(&ferry, "GET", path, &[], "");
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "ok\n"),
            "{path}"
        );
    }

    // The admin token with a JSON body: done.
    let admin = bearer(ADMIN_TOKEN);
    let answer = request(&ferry, "POST", drain, &[JSON, &admin], "");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(draining(&ferry, Some(ADMIN_TOKEN)));
    // With the token, a text/plain body is accepted too: a page cannot send Authorization
    // cross-site without a preflight this endpoint never allows, and it cannot know the token.
    let plain = "Content-Type: text/plain";
    let answer = request(
        &ferry,
        "POST",
        "/api/backends/db1/undrain",
        &[plain, &admin],
        "",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(!draining(&ferry, Some(ADMIN_TOKEN)));
    // Not under another name, token or not (DNS rebinding).
    let rebound = format!("Host: attacker.example:{}", ferry.admin_addr().port());
    let answer = request(&ferry, "POST", drain, &[JSON, &admin, &rebound], "");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(!draining(&ferry, Some(ADMIN_TOKEN)));

    // No token in what ferry logged.
    let log = ferry.log();
    assert!(log.contains("DEBUG"), "logging at debug: {log}");
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(READ_TOKEN),
        "{log}"
    );
}

fn without_a_token_what_a_browser_can_send_cross_site_is_refused(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    let drain = "/api/backends/db1/drain";
    // What a page can send to 127.0.0.1 without a preflight: a "simple" content type, or none.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let line = content_type.map(|t| format!("Content-Type: {t}"));
        let headers: Vec<&str> = line.iter().map(String::as_str).collect();
        let answer = request(&ferry, "POST", drain, &headers, "x");
        assert_eq!(answer.status, 403, "{content_type:?}: {answer:?}");
        assert!(answer.body.contains("application/json"), "{answer:?}");
    }
    // DNS rebinding: the page's own name, resolving to 127.0.0.1, in Host; reading too.
    let port = ferry.admin_addr().port();
    let rebound = format!("Host: attacker.example:{port}");
    assert_eq!(
        request(&ferry, "POST", drain, &[JSON, &rebound], "").status,
        403
    );
    let answer = request(&ferry, "GET", "/api/sessions", &[&rebound], "");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("Host"), "{answer:?}");
    // A foreign Origin.
    let origin = "Origin: http://attacker.example";
    assert_eq!(
        request(&ferry, "POST", drain, &[JSON, origin], "").status,
        403
    );
    assert!(!draining(&ferry, None));
    // What `curl -H 'Content-Type: application/json'` sends, by address or by localhost.
    let localhost = format!("Host: localhost:{port}");
    assert_eq!(
        request(&ferry, "POST", drain, &[JSON, &localhost], "").status,
        200
    );
    assert!(draining(&ferry, None));
}

/// Raises this process's soft open-file limit to `want` (or the hard limit): the test holds
/// 2,000 sockets per driver, and the drivers' tests run at once.
fn raise_open_files(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|soft| soft < want.min(hard)) {
        limit.current = Some(want.min(hard));
        setrlimit(Resource::Nofile, limit).expect("raise the open-file limit");
    }
}

/// Opens `n` connections to `addr` that each send half a request (or nothing) and stay silent.
fn hold_open(addr: SocketAddr, n: usize, held: &mut Vec<TcpStream>) {
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"));
        if i % 2 == 0 {
            // A slowloris: the request line, never the end of the head.
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
        }
        held.push(s);
    }
}

/// `/health/live` answers 200 within 2 s: not stuck behind the connections flooding the admin
/// port (they are closed after `request-timeout`, 5 s). It answers in milliseconds on a quiet
/// machine; a loaded 2-core CI machine running two such tests at once once took 1.03 s.
fn assert_live(ferry: &FerryProcess, when: &str) {
    let started = Instant::now();
    let answer = request(ferry, "GET", "/health/live", &[], "");
    let took = started.elapsed();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ok\n"),
        "{when}"
    );
    assert!(
        took < Duration::from_secs(2),
        "{when}: /health/live took {took:?}"
    );
}

fn held_open_admin_connections_change_no_mysql_answer(driver: Driver) {
    const HELD: usize = 2_000;
    raise_open_files(16_384);
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    // A MySQL client loop: each answer checked, each round trip timed.
    let stop = Arc::new(AtomicBool::new(false));
    let client = std::thread::spawn({
        let stop = Arc::clone(&stop);
        let opts = mysql_opts(&ferry, USER, PASSWORD);
        move || {
            let mut conn = mysql::Conn::new(opts).expect("connect through ferry");
            let (mut queries, mut slowest) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::SeqCst) || queries < 100 {
                let started = Instant::now();
                let row: Option<(u64, String)> = conn
                    .query_first(format!("SELECT {queries}, REPEAT('x', {})", queries % 500))
                    .expect("query through ferry");
                slowest = slowest.max(started.elapsed());
                let expected = "x".repeat((queries % 500) as usize);
                assert_eq!(row, Some((queries, expected)), "answer {queries}");
                queries += 1;
            }
            (queries, slowest)
        }
    });
    let addr = ferry.admin_addr();
    let mut held = Vec::with_capacity(HELD + 200);
    for step in 0..10 {
        hold_open(addr, HELD / 10, &mut held);
        assert_live(
            &ferry,
            &format!("with {} held open", (step + 1) * HELD / 10),
        );
    }
    // All 2,000 held, and more arriving: live, health and metrics answer; so does MySQL.
    for round in 0..10 {
        hold_open(addr, 20, &mut held);
        assert_live(&ferry, &format!("round {round}"));
        assert_eq!(request(&ferry, "GET", "/health", &[], "").status, 200);
        assert_eq!(request(&ferry, "GET", "/metrics", &[], "").status, 200);
    }
    let sessions = ferry.api("/api/sessions");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    stop.store(true, Ordering::SeqCst);
    let (queries, slowest) = client.join().expect("the MySQL client loop");
    assert!(queries >= 100);
    assert!(
        slowest < Duration::from_secs(2),
        "slowest MySQL round trip {slowest:?}"
    );
    drop(held);
    // The port recovers: a new request is served as ever.
    assert_live(&ferry, "after");
}

fn the_admin_endpoint_serves_https(driver: Driver) {
    let db = backend(1);
    // The harness itself waits for /health over HTTPS, trusting the generated certificate.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .admin_tls()
        .admin_toml(&format!("token = \"{ADMIN_TOKEN}\""))
        .start();
    let answer = request(&ferry, "GET", "/api/backends", &[&bearer(ADMIN_TOKEN)], "");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.contains("\"name\":\"db1\""), "{answer:?}");
    assert_eq!(request(&ferry, "GET", "/api/backends", &[], "").status, 401);
    assert_live(&ferry, "over HTTPS");
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = ferry_tests::try_http_get(ferry.admin_addr(), "/health", Duration::from_secs(5));
    assert!(plain.is_err(), "{plain:?}");
    // Nor does a client that trusts another certificate.
    let other = rcgen_certificate();
    let refused = ferry_tests::try_http_exchange(
        ferry.admin_addr(),
        "GET /health HTTP/1.1\r\n\r\n",
        Some(other.as_bytes()),
        Duration::from_secs(5),
    );
    assert!(refused.is_err(), "{refused:?}");
}

/// A self-signed certificate that is not ferry's.
fn rcgen_certificate() -> String {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    cert.cert.pem()
}
