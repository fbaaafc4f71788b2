//! The admin listener: a thread that accepts connections on the admin address and serves one
//! request per connection (`Connection: close`), each on a short-lived thread.
//!
//! It cannot hang or slow the proxy, and held-open connections cannot lock out `/health/live`:
//! what a connection may send, for how long, over TLS or not, is the core's
//! [`AdminConnection`]; how many stay open is the core's [`AdminSlots`]: at
//! `[admin] max-connections` a new connection closes the oldest one still sending its request, so
//! the accept loop never waits and a health check always gets in. Requests reach the endpoint
//! (and its lock, which the workers share) one at a time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::control::admin::{AdminConnection, AdminSlots, Request, Response};
use ferry_core::control::config::{report_admin_listen, AdminConfig};
use ferry_core::control::ACCEPT_BACKOFF;

/// What answers a request: the endpoint, under its lock.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// The running admin endpoint. Dropping it (or [`AdminServer::stop`]) stops accepting and joins
/// the accept thread; connections being served finish on their own within their deadline.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the accept thread and the connection threads share.
struct Shared {
    config: AdminConfig,
    handler: Handler,
    /// The open connections, with the socket to shut down when one must give way.
    slots: Mutex<AdminSlots<Arc<TcpStream>>>,
    /// Held while the handler runs: one admin request at a time contends for the endpoint.
    answering: Mutex<()>,
}

/// A thread that panicked leaves nothing half-done here: carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AdminServer {
    /// Binds `config.listen` (errors, such as an address in use, are returned here, at start)
    /// and serves requests with `handler` within `config`'s limits, over TLS if it says so.
    pub fn start(config: &AdminConfig, handler: Handler) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            config: config.clone(),
            handler,
            slots: Mutex::new(AdminSlots::new(config.limits.max_connections)),
            answering: Mutex::new(()),
        });
        let thread = std::thread::Builder::new()
            .name("ferry-admin".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || accept_loop(&listener, &shared, &stop)
            })?;
        report_admin_listen(config, local_addr);
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

/// Accepts, admits (closing the connection that gives way) and hands each connection to a
/// thread of its own: nothing here waits on a client.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let (id, evicted) = lock(&shared.slots).admit(Arc::clone(&stream));
        if let Some(old) = evicted {
            // Its thread's read or write fails at once, and the thread ends.
            let _ = old.shutdown(Shutdown::Both);
            tracing::debug!("admin connections at the cap: closed the oldest");
        }
        let spawned = std::thread::Builder::new()
            .name("ferry-admin-conn".into())
            .spawn({
                let shared = Arc::clone(shared);
                move || {
                    serve_connection(&stream, id, &shared);
                    lock(&shared.slots).release(id);
                }
            });
        if let Err(e) = spawned {
            lock(&shared.slots).release(id);
            tracing::warn!(error = %e, "cannot start an admin connection thread");
        }
    }
}

/// Moves one connection's bytes through its [`AdminConnection`] until it is closed.
fn serve_connection(stream: &TcpStream, id: u64, shared: &Shared) {
    let mut conn = AdminConnection::new(Instant::now(), &shared.config);
    let mut buf = [0u8; 4096];
    let mut write_shut = false;
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            let end = conn.deadline().unwrap_or_else(Instant::now);
            let time = end.saturating_duration_since(Instant::now());
            let written = stream
                .set_write_timeout(Some(time.max(Duration::from_millis(100))))
                .and_then(|()| (&*stream).write_all(&bytes));
            if written.is_err() {
                return;
            }
        }
        if conn.is_closed() {
            return;
        }
        if conn.is_answered() && !write_shut {
            let _ = stream.shutdown(Shutdown::Write);
            write_shut = true;
        }
        if let Some(req) = conn.poll_request() {
            lock(&shared.slots).answering(id);
            let response = {
                let _one_at_a_time = lock(&shared.answering);
                (shared.handler)(&req)
            };
            tracing::debug!(method = %req.method, path = %req.path, status = response.status, "admin request");
            conn.respond(Instant::now(), &response);
            continue;
        }
        // Reading (the request, or leftovers after the answer) always has a deadline.
        let Some(deadline) = conn.deadline() else {
            return;
        };
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now);
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            conn.handle_timeout(now.max(deadline));
            continue;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now().max(deadline));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests;
