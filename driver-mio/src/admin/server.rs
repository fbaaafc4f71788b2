//! The admin listener: a thread that accepts connections on the admin address and serves one
//! request per connection (`Connection: close`), each on a short-lived thread.
//!
//! It cannot hang or slow the proxy: it runs on its own threads, reads at most
//! `MAX_HEAD + MAX_BODY` bytes per connection, gives each connection a deadline
//! ([`Limits::deadline`]) and per-call socket timeouts, and serves at most
//! [`Limits::max_concurrent`] connections at once (others get an immediate 503).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::control::admin::{parse_request, Parsed, Request, Response, MAX_BODY, MAX_HEAD};

/// What answers a request: the endpoint, under its lock.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Bounds on what one admin connection may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole exchange (reading the request, writing the answer) must end within this.
    pub deadline: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_concurrent: usize,
}

impl Default for Limits {
    /// 5 seconds per connection, 8 at once.
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            max_concurrent: 8,
        }
    }
}

/// The running admin endpoint. Dropping it (or [`AdminServer::stop`]) stops accepting and joins
/// the accept thread; connections being served finish on their own within their deadline.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `listen` (errors, such as an address in use, are returned here, at start) and serves
    /// requests with `handler` and the default [`Limits`].
    pub fn start(listen: SocketAddr, handler: Handler) -> io::Result<Self> {
        Self::start_with(listen, handler, Limits::default())
    }

    /// [`AdminServer::start`] with explicit limits.
    pub fn start_with(listen: SocketAddr, handler: Handler, limits: Limits) -> io::Result<Self> {
        let listener = TcpListener::bind(listen)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("ferry-admin".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || accept_loop(&listener, &handler, &stop, limits)
            })?;
        tracing::info!(%local_addr, "admin endpoint listening");
        Ok(Self {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for the accept thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        match TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            Ok(_) => {
                let _ = thread.join();
            }
            // Could not wake it: leave the thread (it exits at its next connection) rather than
            // block the caller.
            Err(e) => tracing::warn!(error = %e, "could not wake the admin accept thread"),
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &TcpListener, handler: &Handler, stop: &AtomicBool, limits: Limits) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= limits.max_concurrent {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(&mut stream);
            continue;
        }
        let handler = Arc::clone(handler);
        let done = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("ferry-admin-conn".into())
            .spawn(move || {
                serve_connection(stream, handler.as_ref(), limits.deadline);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start an admin connection thread");
        }
    }
}

/// Answers 503 on the accept thread, spending at most a few hundred milliseconds. The request is
/// read (up to 4 KiB) and the socket drained after the answer, because closing a socket with
/// unread input sends a reset that can destroy the answer before the client reads it.
fn refuse_busy(stream: &mut TcpStream) {
    let step = Some(Duration::from_millis(50));
    let mut sink = [0u8; 4096];
    let _ = stream.set_read_timeout(step);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = stream.read(&mut sink);
    let _ = stream.write_all(&Response::text(503, "busy\n").to_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream, Instant::now() + Duration::from_millis(200));
}

/// After the answer: reads and discards what the client still sends (at most `MAX_HEAD +
/// MAX_BODY` bytes, until `end`), so that closing does not reset the connection under the answer.
fn drain(stream: &mut TcpStream, end: Instant) {
    let mut sink = [0u8; 4096];
    let mut left = MAX_HEAD + MAX_BODY;
    while left > 0 {
        let remaining = end.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Serves one request on `stream` and closes it.
fn serve_connection(
    mut stream: TcpStream,
    handler: &(dyn Fn(&Request) -> Response + Send + Sync),
    deadline: Duration,
) {
    let end = Instant::now() + deadline;
    let response = match read_request(&mut stream, end) {
        Ok(req) => {
            let response = handler(&req);
            tracing::debug!(method = %req.method, path = %req.path, status = response.status, "admin request");
            response
        }
        Err(Some(response)) => {
            tracing::debug!(status = response.status, "admin request refused");
            response
        }
        Err(None) => return,
    };
    let remaining = end.saturating_duration_since(Instant::now());
    let _ = stream.set_write_timeout(Some(remaining.max(Duration::from_millis(100))));
    let _ = stream.write_all(&response.to_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    drain(
        &mut stream,
        end.max(Instant::now() + Duration::from_millis(100)),
    );
}

/// Reads until a whole request is there, the caps are exceeded or `end` passes. `Err(None)`:
/// the client went away, nothing to answer.
fn read_request(stream: &mut TcpStream, end: Instant) -> Result<Request, Option<Response>> {
    let cap = MAX_HEAD + MAX_BODY;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match parse_request(&buf) {
            Parsed::Complete(req) => return Ok(req),
            Parsed::Invalid(response) => return Err(Some(response)),
            Parsed::Incomplete => {}
        }
        let room = cap.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return Err(Some(Response::text(413, "request too large\n")));
        }
        let remaining = end.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Some(Response::text(408, "request not received in time\n")));
        }
        if stream.set_read_timeout(Some(remaining)).is_err() {
            return Err(None);
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(Response::text(408, "request not received in time\n")))
            }
            Err(_) => return Err(None),
        }
    }
}

#[cfg(test)]
mod tests;
