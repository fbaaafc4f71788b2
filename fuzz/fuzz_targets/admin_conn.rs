//! One admin connection (`ferry_core::control::admin::AdminConnection`) driven as a driver
//! would, by arbitrary steps: socket bytes (raw, or pieces of a request), the client closing,
//! time passing past the deadline or not, and the proxy's answer when it has a request; an
//! access check ([`admin::check_access`]) on each request, against a configuration with or
//! without a token.
//!
//! Invariants:
//! - nothing panics;
//! - a request is handed out at most once, and it is the request the bytes received so far make
//!   (`parse_request` on them, capped at a request's worth);
//! - `GET /health/live` is answered without the proxy: it is never handed out;
//! - at most one response goes out, and it is a whole HTTP/1.1 response;
//! - nothing goes out before a response, and nothing after closing; closed stays closed;
//! - the deadline is `request-timeout` after the start, then after the answer; past it, a
//!   connection still reading answers (408) or closes, and an answered one closes;
//! - access refusals are 401 or 403 and never echo the token.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use ferry_core::control::admin::{
    self, parse_request, AdminConnection, Parsed, Response, MAX_BODY, MAX_HEAD,
};
use ferry_core::control::config::{AdminConfig, Config, ConfigFile};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-admin-token-0123456789";

const PIECES: &[&str] = &[
    "GET /health/live HTTP/1.1\r\n",
    "GET /metrics HTTP/1.1\r\n",
    "POST /api/backends/db1/drain HTTP/1.1\r\n",
    "Host: 127.0.0.1:6080\r\n",
    "Host: evil.example\r\n",
    "Content-Type: application/json\r\n",
    "Content-Type: text/plain\r\n",
    "Authorization: Bearer fuzz-admin-token-0123456789\r\n",
    "Authorization: Bearer wrong\r\n",
    "Origin: http://evil.example\r\n",
    "Content-Length: 3\r\n",
    "\r\n",
    "abc",
];

#[derive(Debug, Arbitrary)]
enum Step {
    Raw(Vec<u8>),
    Piece(u8),
    /// A long run of one byte (up to ~64 KiB): the caps.
    Repeat(u8, u16),
    Eof,
    /// Milliseconds later (up to ~65 s).
    Wait(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    token: bool,
    steps: Vec<Step>,
}

fn config(token: bool) -> AdminConfig {
    let keys = if token {
        format!("token = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "[admin]\nrequest-timeout = \"2s\"\n{keys}[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n"
    );
    Config::from_file(&ConfigFile::parse(&text, None).expect("parses"))
        .expect("valid")
        .admin
}

fuzz_target!(|input: Input| {
    let admin = config(input.token);
    let timeout = admin.limits.request_timeout;
    let start = Instant::now();
    let mut now = start;
    let mut conn = AdminConnection::new(now, &admin);
    let mut received: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let (mut handed_out, mut answered_at, mut closed) = (false, None::<Instant>, false);
    for step in input.steps.into_iter().take(64) {
        let reading = !conn.has_request() && !conn.is_closed();
        match step {
            Step::Raw(bytes) => {
                if reading {
                    received.extend_from_slice(&bytes);
                }
                conn.handle_input(now, &bytes);
            }
            Step::Piece(i) => {
                let piece = PIECES[i as usize % PIECES.len()].as_bytes();
                if reading {
                    received.extend_from_slice(piece);
                }
                conn.handle_input(now, piece);
            }
            Step::Repeat(b, n) => {
                let bytes = vec![b; n as usize];
                if reading {
                    received.extend_from_slice(&bytes);
                }
                conn.handle_input(now, &bytes);
            }
            Step::Eof => conn.handle_eof(now),
            Step::Wait(ms) => {
                let (deadline, was_answered) = (conn.deadline(), conn.is_answered());
                now += Duration::from_millis(u64::from(ms));
                conn.handle_timeout(now);
                if deadline.is_some_and(|d| now >= d) {
                    if was_answered {
                        assert!(conn.is_closed(), "past the answer's deadline, still open");
                    } else {
                        assert!(
                            conn.is_answered() || conn.is_closed(),
                            "past the deadline, still reading"
                        );
                    }
                }
            }
        }
        if let Some(req) = conn.poll_request() {
            assert!(!handed_out, "a request handed out twice");
            handed_out = true;
            let capped = &received[..received.len().min(MAX_HEAD + MAX_BODY)];
            match parse_request(capped) {
                Parsed::Complete(want) => assert_eq!(req, want),
                other => panic!("handed out {req:?}, the bytes say {other:?}"),
            }
            assert!(!admin::is_live(&req), "/health/live went to the proxy");
            let answer = match admin::check_access(&req, &admin) {
                Ok(()) => Response::text(200, "ok\n"),
                Err(refused) => {
                    assert!(matches!(refused.status, 401 | 403), "{}", refused.status);
                    let text = String::from_utf8_lossy(&refused.body);
                    assert!(!text.contains(TOKEN), "{text}");
                    refused
                }
            };
            conn.respond(now, &answer);
            answered_at = Some(now);
        }
        while let Some(bytes) = conn.poll_transmit() {
            assert!(!closed, "bytes after closing");
            assert!(
                conn.is_answered() || conn.is_closed(),
                "bytes before an answer"
            );
            out.extend_from_slice(&bytes);
        }
        if conn.is_closed() {
            closed = true;
        } else {
            assert!(!closed, "reopened");
        }
        if conn.is_answered() && answered_at.is_none() {
            answered_at = Some(now);
        }
        // The deadline runs from the start, then from the answer.
        if let Some(d) = conn.deadline() {
            assert_eq!(d, answered_at.unwrap_or(start) + timeout);
        }
    }
    if !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        let head = match r.parse(&out) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "not a response ({other:?}): {:?}",
                String::from_utf8_lossy(&out)
            ),
        };
        let length = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .expect("Content-Length");
        assert_eq!(out.len(), head + length, "exactly one response");
    }
});
