//! `GET` and `POST` on ferry's admin HTTP endpoint, for the tests of either driver; any request
//! over HTTP or HTTPS ([`try_http_exchange`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use ferry_core::tls::{self, ServerTrust, TlsSession};

/// How long [`http_get`] waits to connect, send and read.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on the admin endpoint at `addr`: the status code and the body, each step within
/// `timeout`.
pub fn try_http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    try_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        timeout,
    )
}

/// `POST path` with a JSON `body` (may be empty) on the admin endpoint at `addr`: the status
/// code and the body, each step within `timeout`.
pub fn try_http_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    try_request(addr, &request, timeout)
}

fn try_request(addr: SocketAddr, request: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let answer = try_http_exchange(addr, request, None, timeout)?;
    Ok((answer.status, answer.body))
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) to `addr` and reads the
/// answer until the server closes, each step within `timeout`: over HTTPS when `ca_pem` (the
/// certificate to trust, checked against `addr`'s IP) is given.
pub fn try_http_exchange(
    addr: SocketAddr,
    request: &str,
    ca_pem: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let bytes = match ca_pem {
        // One write: `write!` on the socket would send each piece of the format as a segment.
        None => {
            s.write_all(request.as_bytes())?;
            let mut bytes = Vec::new();
            s.read_to_end(&mut bytes)?;
            bytes
        }
        Some(ca) => https_exchange(&mut s, addr, request.as_bytes(), ca)?,
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}"));
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    Ok(HttpAnswer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// `request` over TLS on `s` (with the core's TLS session), trusting `ca_pem` for `addr`'s IP;
/// the plaintext answer, read until the server closes.
fn https_exchange(
    s: &mut TcpStream,
    addr: SocketAddr,
    request: &[u8],
    ca_pem: &[u8],
) -> io::Result<Vec<u8>> {
    let failed = |e: tls::TlsError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let config = tls::client_config(&ServerTrust::CaPem(ca_pem.to_vec())).map_err(failed)?;
    let mut session = TlsSession::client(config, &addr.ip().to_string()).map_err(failed)?;
    session.write_plaintext(request).map_err(failed)?;
    let (mut plain, mut buf) = (BytesMut::new(), [0u8; 16 * 1024]);
    loop {
        let mut out = Vec::new();
        session.take_ciphertext(&mut out);
        s.write_all(&out)?;
        match s.read(&mut buf)? {
            0 => return Ok(plain.to_vec()),
            n => session
                .read_ciphertext(&buf[..n], &mut plain)
                .map_err(failed)?,
        }
    }
}

/// [`try_http_get`] with a 5 s timeout; panics on I/O errors and unreadable answers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path, HTTP_TIMEOUT).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// [`try_http_post`] with a 5 s timeout; panics on I/O errors and unreadable answers.
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    try_http_post(addr, path, body, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("POST {path} on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// Answers one request with `answer`, returning what was asked.
    fn server(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut chunk).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&chunk[..n]);
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, t)
    }

    #[test]
    fn status_and_body_are_split() {
        let (addr, t) = server("HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope\n");
        assert_eq!(http_get(addr, "/api/x"), (404, "nope\n".to_owned()));
        assert!(t.join().unwrap().starts_with("GET /api/x HTTP/1.1\r\n"));
    }

    #[test]
    fn a_post_carries_its_body() {
        let (addr, t) = server("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        assert_eq!(http_post(addr, "/api/x", ""), (200, "ok\n".to_owned()));
        let request = t.join().unwrap();
        assert!(request.starts_with("POST /api/x HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Content-Length: 0\r\n"), "{request}");
    }

    #[test]
    fn an_answer_without_a_status_is_an_error() {
        let (addr, t) = server("garbage");
        let err = try_http_get(addr, "/", HTTP_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        t.join().unwrap();
    }
}
