//! The admin endpoint's request parser (`ferry_core::control::admin::parse_request`) fed
//! arbitrary bytes, built from raw bytes, HTTP tokens, numbers near the caps and long runs (so
//! that the 8 KiB head and 64 KiB body caps are reached), whole and cut at fuzzer-chosen points
//! as a driver reading a socket would see them. Complete requests are then routed
//! (`admin::route`) against a fake proxy, and every response is written out with
//! `Response::to_bytes`.
//!
//! Invariants:
//! - nothing panics;
//! - `Incomplete` only under the caps (`MAX_HEAD + MAX_BODY`), and only while the bytes can still
//!   become a request: some continuation (the rest of a request line, of a header, the blank line,
//!   the missing body bytes) makes them `Complete`. Two classes are allowed, on purpose: a header
//!   whose value is already unusable (`Content-Length: x`, `Transfer-Encoding`) is judged once the
//!   head is complete, and a request target that is not UTF-8 once it ends (`httparse` reads it
//!   byte by byte), not while they are being read (the caps bound the wait);
//! - a `Complete` request is what the head says: method, path (without the query), a body of
//!   exactly `Content-Length` bytes (0 without one) taken right after the head, head and body
//!   within the caps, no `Transfer-Encoding`;
//! - monotonic: a prefix that is `Complete` gives the same request as the whole input, a prefix
//!   that is `Invalid` means the whole is `Invalid` too (a driver stops at the first answer, so it
//!   gets the same request however the bytes were split);
//! - `Invalid` answers are 4xx or 5xx;
//! - every response (the parser's refusals and the routes' answers) written by `to_bytes` parses
//!   back as an HTTP/1.1 response with its status, a reason phrase, `Content-Type`,
//!   `Connection: close`, `Allow` exactly for a 405, one `Content-Length` equal to the body's
//!   length, and the body right after the head; JSON bodies are valid JSON.
#![no_main]

use arbitrary::Arbitrary;
use ferry_core::control::admin::{
    self, parse_request, AdminApi, ApiError, BackendInfo, Metrics, Parsed, Request, Response,
    SessionInfo, MAX_BODY, MAX_HEAD, MAX_HEADERS,
};
use libfuzzer_sys::fuzz_target;

/// Pieces of HTTP the input is built from (besides raw bytes).
const WORDS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    " ",
    "/",
    "/health",
    "/metrics",
    "/api/backends",
    "/api/sessions",
    "/api/backends/db1/drain",
    "/api/backends/db2/undrain",
    "/api/sessions/7/migrate",
    "/api/sessions/+7/migrate",
    "?",
    "?x=1",
    " HTTP/1.1",
    " HTTP/1.0",
    "HTTP/1.1",
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    "Content-Length: ",
    "content-length:",
    "Content-Length: 0\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Host: a\r\n",
    ": ",
    "{\"to\": \"db2\"}",
    "{\"to\": \"db1\", \"x\": 1}",
    "\t",
    "\0",
    "X-A: b\r\n",
];

/// Numbers a `Content-Length` may be compared with.
const NEAR: [usize; 5] = [
    0,
    MAX_HEAD,
    MAX_BODY,
    MAX_HEAD + MAX_BODY,
    u32::MAX as usize,
];

/// Longest input built (a little over both caps together).
const MAX_INPUT: usize = 2 * (MAX_HEAD + MAX_BODY);

#[derive(Debug, Arbitrary)]
enum Piece {
    Raw(Vec<u8>),
    Word(u8),
    Number(u32),
    /// A decimal number near one of the caps.
    Near(u8, i8),
    /// A byte repeated (up to ~128 KiB): long heads and bodies.
    Repeat(u8, u16),
    /// `n` headers `X-<i>: v`: the header-count cap.
    Headers(u8),
    /// A well-formed request: method and path from the dictionary, an optional extra header,
    /// `Content-Length` (the body's length plus `skew`, or none) and the body.
    Request {
        method: u8,
        path: u8,
        extra: Option<u8>,
        skew: Option<i8>,
        body: Vec<u8>,
    },
}

const METHODS: &[&str] = &["GET", "POST", "HEAD", "DELETE", "get"];
const PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/api/backends",
    "/api/sessions",
    "/api/backends/db1/drain",
    "/api/backends/db2/undrain",
    "/api/backends/db9/drain",
    "/api/backends/db1/stop",
    "/api/sessions/7/migrate",
    "/api/sessions/8/migrate",
    "/api/sessions/x/migrate",
    "/api/sessions/-7/migrate",
    "/api/sessions/18446744073709551616/migrate",
    "/api//sessions",
    "/health/",
    "/health?full=1",
    "*",
    "http://a/health",
];

#[derive(Debug, Arbitrary)]
struct Input {
    pieces: Vec<Piece>,
    /// Where a driver's reads end (positions modulo the length + 1).
    cuts: Vec<u32>,
    serving: bool,
}

fn build(pieces: &[Piece]) -> Vec<u8> {
    let mut buf = Vec::new();
    for p in pieces {
        match p {
            Piece::Raw(b) => buf.extend_from_slice(b),
            Piece::Word(i) => buf.extend_from_slice(WORDS[*i as usize % WORDS.len()].as_bytes()),
            Piece::Number(n) => buf.extend_from_slice(n.to_string().as_bytes()),
            Piece::Near(i, d) => {
                let n = NEAR[*i as usize % NEAR.len()] as i64 + i64::from(*d);
                buf.extend_from_slice(n.max(0).to_string().as_bytes());
            }
            Piece::Repeat(b, n) => buf.resize(buf.len() + usize::from(*n) * 2, *b),
            Piece::Request {
                method,
                path,
                extra,
                skew,
                body,
            } => {
                let method = METHODS[*method as usize % METHODS.len()];
                let path = PATHS[*path as usize % PATHS.len()];
                buf.extend_from_slice(
                    format!("{method} {path} HTTP/1.1\r\nHost: a\r\n").as_bytes(),
                );
                if let Some(w) = extra {
                    buf.extend_from_slice(WORDS[*w as usize % WORDS.len()].as_bytes());
                }
                if let Some(skew) = skew {
                    let n = (body.len() as i64 + i64::from(*skew)).max(0);
                    buf.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
                }
                buf.extend_from_slice(b"\r\n");
                buf.extend_from_slice(body);
            }
            Piece::Headers(n) => {
                for i in 0..*n {
                    buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
                }
            }
        }
        if buf.len() > MAX_INPUT {
            buf.truncate(MAX_INPUT);
            break;
        }
    }
    buf
}

/// The head as an independent parse sees it (more header slots than the parser under test, so
/// that the header-count cap is its own decision): head length, method, target, headers.
struct Head {
    len: usize,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn head(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 4 * MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Some(Head {
            len,
            method: req.method?.to_owned(),
            target: req.path?.to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        }),
        _ => None,
    }
}

/// The declared body length, if the head's Content-Length headers agree on a decimal value.
fn content_length(head: &Head) -> Option<usize> {
    let mut len = None;
    for (name, value) in &head.headers {
        if name == "content-length" {
            let v = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))?
                .parse::<usize>()
                .ok()?;
            if len.is_some_and(|l| l != v) {
                return None;
            }
            len = Some(v);
        }
    }
    Some(len.unwrap_or(0))
}

/// Appends what the body still lacks, if the head is complete.
fn complete_body(buf: &mut Vec<u8>) {
    if let Some(h) = head(buf) {
        if let Some(cl) = content_length(&h) {
            let want = h.len + cl;
            if buf.len() < want && cl <= MAX_BODY {
                buf.resize(want, b'b');
            }
        }
    }
}

/// The headers the parser keeps for the access checks; a second one of each is refused.
const KEPT: [&str; 4] = ["host", "content-type", "authorization", "origin"];

/// Continuations tried on an incomplete input.
fn continuations() -> Vec<Vec<u8>> {
    let full = b"GET / HTTP/1.1\r\nH: v\r\n\r\n";
    let mut c: Vec<Vec<u8>> = (0..=full.len()).map(|i| full[i..].to_vec()).collect();
    for extra in [
        &b"x: v\r\n\r\n"[..],
        b"x / HTTP/1.1\r\n\r\n",
        b"\nGET / HTTP/1.1\r\n\r\n",
        b"0\r\n\r\n",
        b"x HTTP/1.1\r\n\r\n",
    ] {
        c.push(extra.to_vec());
    }
    c
}

/// A head still being read that already carries a header the parser will refuse once the head
/// is complete: `Transfer-Encoding`, a `Content-Length` that is not a decimal number within
/// `MAX_BODY` (or, in the line still being read, cannot become one), or two that disagree.
fn doomed_header(buf: &[u8]) -> bool {
    let mut lines: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    let partial = lines.pop().unwrap_or_default();
    let mut lines = lines
        .into_iter()
        .skip_while(|l| l.is_empty() || *l == b"\r");
    lines.next(); // the request line
    let mut lengths = Vec::new();
    let mut kept_seen: Vec<Vec<u8>> = Vec::new();
    let mut check = |line: &[u8], complete: bool| -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let name = line[..colon].to_ascii_lowercase();
        // A second Host, Content-Type, Authorization or Origin is refused.
        if KEPT.iter().any(|k| k.as_bytes() == &name[..]) {
            if kept_seen.contains(&name) {
                return true;
            }
            kept_seen.push(name.clone());
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        match &name[..] {
            b"transfer-encoding" => true,
            b"content-length" => {
                let n = (value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| value.parse::<u128>().ok())
                    .flatten();
                match n {
                    Some(n) if n <= MAX_BODY as u128 => {
                        lengths.push(n);
                        false
                    }
                    // An empty value in the line being read may still get its digits.
                    None if !complete && value.is_empty() => false,
                    _ => true,
                }
            }
            _ => false,
        }
    };
    let mut doomed = false;
    for line in lines {
        doomed |= check(line, true);
    }
    // A line cut after its CR has its whole value.
    doomed |= check(partial, partial.ends_with(b"\r"));
    doomed || lengths.windows(2).any(|w| w[0] != w[1])
}

/// A request target still being read that is already not UTF-8 (not merely cut inside a
/// character): `httparse` takes such bytes one by one and refuses the target only when it ends.
fn doomed_target(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    if line.contains(&b'\n') {
        return false;
    }
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (_method, Some(target), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    std::str::from_utf8(target).is_err_and(|e| e.error_len().is_some())
}

/// Checks one parse of `buf` on its own.
fn check(buf: &[u8], parsed: &Parsed) {
    match parsed {
        Parsed::Incomplete => {
            assert!(
                buf.len() < MAX_HEAD + MAX_BODY,
                "Incomplete at {} bytes",
                buf.len()
            );
            check_can_complete(buf);
        }
        Parsed::Complete(req) => {
            let h = head(buf).expect("Complete, but the head does not parse");
            assert!(h.len <= MAX_HEAD, "head of {} bytes accepted", h.len);
            assert!(
                h.headers.len() <= MAX_HEADERS,
                "{} headers accepted",
                h.headers.len()
            );
            assert!(
                !h.headers.iter().any(|(n, _)| n == "transfer-encoding"),
                "Transfer-Encoding accepted"
            );
            let cl = content_length(&h).expect("Complete with a bad Content-Length");
            assert!(cl <= MAX_BODY);
            assert_eq!(req.body.len(), cl, "body length is not Content-Length");
            assert_eq!(
                req.body,
                &buf[h.len..h.len + cl],
                "body is not after the head"
            );
            assert_eq!(req.method, h.method);
            for (name, kept) in KEPT.iter().zip([
                &req.headers.host,
                &req.headers.content_type,
                &req.headers.authorization,
                &req.headers.origin,
            ]) {
                let mut values = h.headers.iter().filter(|(n, _)| n == name);
                let want = values
                    .next()
                    .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned());
                assert!(values.next().is_none(), "two {name} headers accepted");
                assert_eq!(kept, &want, "{name}");
            }
            let path = h.target.split_once('?').map_or(&h.target[..], |(p, _)| p);
            assert_eq!(req.path, path);
            assert!(!req.path.contains('?'));
        }
        Parsed::Invalid(resp) => {
            assert!(
                (400..600).contains(&resp.status),
                "Invalid with status {}",
                resp.status
            );
            check_response(resp);
        }
    }
}

/// The bytes that finish a UTF-8 character cut at the end of `buf` (empty if none is cut).
fn finish_utf8(buf: &[u8]) -> Vec<u8> {
    let tail = &buf[buf.len().saturating_sub(3)..];
    let Some(lead) = tail.iter().rposition(|&b| b >= 0xC0) else {
        return Vec::new();
    };
    let mut seq = tail[lead..].to_vec();
    let cut = seq.len();
    while std::str::from_utf8(&seq).is_err_and(|e| e.error_len().is_none()) {
        let Some(next) = (0x80..=0xBF).find(|&b| {
            let mut t = seq.clone();
            t.push(b);
            std::str::from_utf8(&t).map_or_else(|e| e.error_len().is_none(), |_| true)
        }) else {
            break;
        };
        seq.push(next);
    }
    seq.split_off(cut)
}

/// An incomplete input under the caps must have a continuation that makes it a request (checked
/// when there is room for every continuation tried under the head cap).
fn check_can_complete(buf: &[u8]) {
    let head_done = head(buf).is_some();
    let conts = continuations();
    let room = conts.iter().map(Vec::len).max().unwrap_or(0) + 3;
    if !head_done && buf.len() + room > MAX_HEAD {
        return;
    }
    for c in conts {
        if head_done && !c.is_empty() {
            // Only the body is missing: nothing but its bytes may follow.
            continue;
        }
        for fix in [Vec::new(), finish_utf8(buf)] {
            let mut ext = buf.to_vec();
            ext.extend_from_slice(&fix);
            ext.extend_from_slice(&c);
            complete_body(&mut ext);
            if matches!(parse_request(&ext), Parsed::Complete(_)) {
                return;
            }
        }
    }
    assert!(
        doomed_header(buf) || doomed_target(buf),
        "Incomplete, but no continuation makes a request of {:?}",
        String::from_utf8_lossy(&buf[buf.len().saturating_sub(200)..])
    );
}

fn reason_expected(status: u16) -> bool {
    matches!(
        status,
        200 | 202 | 400 | 401 | 403 | 404 | 405 | 408 | 409 | 413 | 431 | 500 | 501 | 503
    )
}

/// `Response::to_bytes` parses back as the response it came from.
fn check_response(resp: &Response) {
    let bytes = resp.to_bytes();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(&bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "response does not parse ({other:?}): {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(r.version, Some(1), "not HTTP/1.1");
    assert_eq!(r.code, Some(resp.status));
    if reason_expected(resp.status) {
        assert!(!r.reason.unwrap_or("").is_empty(), "no reason phrase");
    }
    let values = |name: &str| -> Vec<&[u8]> {
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let cl = values("content-length");
    assert_eq!(cl.len(), 1, "Content-Length headers: {cl:?}");
    assert_eq!(cl[0], resp.body.len().to_string().as_bytes());
    assert_eq!(
        &bytes[n..],
        &resp.body[..],
        "body is not right after the head"
    );
    assert_eq!(values("connection"), [&b"close"[..]]);
    assert_eq!(values("content-type"), [resp.content_type.as_bytes()]);
    match resp.allow {
        Some(allow) => assert_eq!(values("allow"), [allow.as_bytes()]),
        None => assert!(values("allow").is_empty()),
    }
    assert_eq!(
        resp.allow.is_some(),
        resp.status == 405,
        "Allow on a {}",
        resp.status
    );
    if resp.content_type == admin::http::JSON {
        serde_json::from_slice::<serde_json::Value>(&resp.body)
            .unwrap_or_else(|e| panic!("JSON body does not parse: {e}: {:?}", resp.body));
    }
}

/// A fixed proxy: two backends, one listed session (7) that may move to db2 only.
struct Fake {
    serving: bool,
}

impl AdminApi for Fake {
    fn serving(&self) -> bool {
        self.serving
    }
    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(["db1", "db2"]
            .iter()
            .map(|n| BackendInfo {
                name: (*n).into(),
                addr: "127.0.0.1:3306".into(),
                healthy: true,
                sessions: 1,
                draining: false,
                health_warning: None,
                down_reason: None,
            })
            .collect())
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(vec![SessionInfo {
            id: 7,
            user: "app\"\\\u{1}".into(),
            client: "10.1.2.3:5000".into(),
            backend: Some("db1".into()),
            pinned: Some("transaction".into()),
        }])
    }
    fn metrics(&self) -> Result<Metrics, ApiError> {
        Ok(Metrics {
            backends: self.backends()?,
            ..Metrics::default()
        })
    }
    fn set_draining(&mut self, backend: &str, _draining: bool) -> Result<(), ApiError> {
        match backend {
            "db1" | "db2" => Ok(()),
            _ => Err(ApiError::UnknownBackend(backend.into())),
        }
    }
    fn migrate(&mut self, session: u64, to: &str) -> Result<(), ApiError> {
        match (session, to) {
            (7, "db2") => Ok(()),
            (7, "db1") => Err(ApiError::Conflict("already there".into())),
            (7, _) => Err(ApiError::UnknownBackend(to.into())),
            _ => Err(ApiError::UnknownSession(session)),
        }
    }
}

fn check_route(req: &Request, serving: bool) {
    let resp = admin::route(req, &mut Fake { serving });
    assert!(
        matches!(resp.status, 200 | 202 | 400 | 404 | 405 | 409 | 503),
        "route answered {}",
        resp.status
    );
    if req.path == "/health" && req.method == "GET" {
        assert_eq!(resp.status, if serving { 200 } else { 503 });
    }
    check_response(&resp);
}

fuzz_target!(|input: Input| {
    let buf = build(&input.pieces);
    let whole = parse_request(&buf);
    check(&buf, &whole);
    if let Parsed::Complete(req) = &whole {
        check_route(req, input.serving);
    }

    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .take(24)
        .map(|&c| c as usize % (buf.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let part = parse_request(&buf[..cut]);
        check(&buf[..cut], &part);
        match &part {
            Parsed::Complete(_) => assert_eq!(part, whole, "a prefix gave another request"),
            Parsed::Invalid(_) => assert!(
                matches!(whole, Parsed::Invalid(_)),
                "prefix of {cut} bytes Invalid, the whole {whole:?}"
            ),
            Parsed::Incomplete => {}
        }
    }
});
