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
