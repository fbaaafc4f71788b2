//! Parsing admin requests from bytes, without I/O: [`parse_request`] takes the bytes read so far
//! and says whether a whole request is there.
//!
//! Limits: the request head (line and headers) is at most [`MAX_HEAD`] bytes and
//! [`MAX_HEADERS`] headers (431 beyond), the body at most [`MAX_BODY`] bytes by `Content-Length`
//! (413 beyond); `Transfer-Encoding` is not supported (501); anything `httparse` rejects, an
//! unreadable `Content-Length`, or a second `Host`, `Content-Type`, `Authorization` or `Origin`
//! is a 400. Those four are kept in [`Headers`] for the access checks.

use super::http::{Headers, Request, Response};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers accepted.
pub const MAX_HEADERS: usize = 32;
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// What the bytes read so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet: read more (the caller caps the total at `MAX_HEAD + MAX_BODY`).
    Incomplete,
    /// A whole request.
    Complete(Request),
    /// A request that will not be served: send this response and close.
    Invalid(Response),
}

/// Parses the request at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return Parsed::Invalid(head_too_large()),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Invalid(head_too_large())
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(head_too_large()),
        Err(e) => return Parsed::Invalid(Response::text(400, format!("bad request: {e}\n"))),
    };
    let mut content_length: Option<usize> = None;
    let mut headers = Headers::default();
    for h in req.headers.iter() {
        let kept = [
            ("host", &mut headers.host),
            ("content-type", &mut headers.content_type),
            ("authorization", &mut headers.authorization),
            ("origin", &mut headers.origin),
        ]
        .into_iter()
        .find(|(name, _)| h.name.eq_ignore_ascii_case(name));
        if let Some((name, slot)) = kept {
            if slot.is_some() {
                return Parsed::Invalid(Response::text(
                    400,
                    format!("more than one {name} header\n"),
                ));
            }
            // Not UTF-8: kept as an unmatchable value, so the checks refuse it.
            *slot = Some(String::from_utf8_lossy(h.value).trim().to_owned());
            continue;
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Invalid(Response::text(
                501,
                "Transfer-Encoding is not supported; send Content-Length\n",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (value, content_length) {
                (None, _) => return Parsed::Invalid(Response::text(400, "bad Content-Length\n")),
                (Some(v), Some(prev)) if v != prev => {
                    return Parsed::Invalid(Response::text(400, "conflicting Content-Length\n"))
                }
                (Some(v), _) => content_length = Some(v),
            }
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY {
        return Parsed::Invalid(Response::text(413, format!("body over {MAX_BODY} bytes\n")));
    }
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Parsed::Incomplete;
    };
    // A complete parse always sets method and path; the fallbacks only keep this panic-free.
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    Parsed::Complete(Request {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        body: body.to_vec(),
        headers,
    })
}

fn head_too_large() -> Response {
    Response::text(
        431,
        format!("request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Request {
        match parse_request(bytes) {
            Parsed::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn invalid(bytes: &[u8]) -> u16 {
        match parse_request(bytes) {
            Parsed::Invalid(r) => r.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_get_and_strips_query() {
        let r = complete(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert!(r.body.is_empty());
    }

    #[test]
    fn waits_for_head_and_body() {
        let full = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.len() {
            assert_eq!(parse_request(&full[..cut]), Parsed::Incomplete, "cut {cut}");
        }
        assert_eq!(complete(full).body, b"hello");
        // Bytes past Content-Length are not part of the body.
        let mut more = full.to_vec();
        more.extend_from_slice(b"extra");
        assert_eq!(complete(&more).body, b"hello");
    }

    #[test]
    fn keeps_the_headers_the_checks_read() {
        let r = complete(
            b"POST /x HTTP/1.1\r\nhost: 127.0.0.1:6080\r\nCONTENT-TYPE: application/json\r\n\
              Authorization: Bearer abc\r\nOrigin: http://a\r\nX-Other: y\r\n\r\n",
        );
        assert_eq!(r.headers.host.as_deref(), Some("127.0.0.1:6080"));
        assert_eq!(r.headers.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.headers.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.headers.origin.as_deref(), Some("http://a"));
        // The token never shows in debug output.
        assert!(!format!("{r:?}").contains("abc"), "{r:?}");
        assert_eq!(
            complete(b"GET / HTTP/1.1\r\n\r\n").headers,
            Headers::default()
        );
        // One of each: which one would count is ambiguous.
        for name in ["Host", "Content-Type", "Authorization", "Origin"] {
            let twice = format!("GET / HTTP/1.1\r\n{name}: a\r\n{name}: a\r\n\r\n");
            assert_eq!(invalid(twice.as_bytes()), 400, "{name}");
        }
    }

    #[test]
    fn refuses_bad_requests() {
        assert_eq!(invalid(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        assert_eq!(invalid(b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(invalid(b"GET / HTTP/2.0\r\n\r\n"), 400);
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            400
        );
        assert_eq!(
            invalid(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn enforces_caps() {
        let big_body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(invalid(big_body.as_bytes()), 413);
        // A head that never ends.
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(invalid(long.as_bytes()), 431);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(invalid(many.as_bytes()), 431);
    }

    #[test]
    fn response_bytes() {
        let r = Response::method_not_allowed("GET");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("GET"));
    }
}
