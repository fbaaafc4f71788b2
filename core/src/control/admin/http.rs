//! Admin requests and responses as values: [`Request`] (what [`route`](super::route) answers)
//! and [`Response`], with [`Response::to_bytes`] giving the bytes to write. Every response closes
//! the connection, so there is no pipelining to track. Parsing request bytes is in
//! [`parse`](super::parse) (feature `admin-http`).

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The headers the access checks read ([`check_access`](super::check_access)).
    pub headers: Headers,
}

/// The request headers the admin endpoint reads (each at most once; others are ignored).
/// `Debug` does not print `Authorization`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Host`: must name this endpoint (DNS rebinding sends the attacker's name).
    pub host: Option<String>,
    /// `Content-Type`: a mutating request without a token must be JSON, which a browser cannot
    /// send cross-site without asking first (CORS preflight).
    pub content_type: Option<String>,
    /// `Authorization`: `Bearer <token>`.
    pub authorization: Option<String>,
    /// `Origin`: set by browsers on cross-site requests.
    pub origin: Option<String>,
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headers")
            .field("host", &self.host)
            .field("content_type", &self.content_type)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "(hidden)"),
            )
            .field("origin", &self.origin)
            .finish()
    }
}

impl Request {
    /// A request with no headers (a token, a content type... are set on [`Request::headers`]).
    pub fn new(method: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            body: body.into(),
            headers: Headers::default(),
        }
    }
}

/// A response; every one is sent with `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// For 405: the methods the path accepts (`Allow`).
    pub allow: Option<&'static str>,
    /// For 401: the scheme the client must authenticate with (`WWW-Authenticate`).
    pub challenge: Option<&'static str>,
    /// The body.
    pub body: Vec<u8>,
}

/// `Content-Type` of plain text.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// `Content-Type` of JSON.
pub const JSON: &str = "application/json";
/// `Content-Type` of the Prometheus text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: TEXT,
            allow: None,
            challenge: None,
            body: body.into().into_bytes(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self {
                status,
                content_type: JSON,
                allow: None,
                challenge: None,
                body,
            },
            // Our types serialize infallibly (no maps with non-string keys); be safe anyway.
            Err(e) => Self::text(500, format!("cannot encode response: {e}\n")),
        }
    }

    /// A JSON `{"error": message}` response.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(405, format!("method not allowed; use {allow}"))
        }
    }

    /// The bytes to write: status line, headers, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            out.push_str("Allow: ");
            out.push_str(allow);
            out.push_str("\r\n");
        }
        if let Some(challenge) = self.challenge {
            out.push_str("WWW-Authenticate: ");
            out.push_str(challenge);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The reason phrase of the status codes this endpoint sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}
