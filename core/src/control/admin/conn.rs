//! One admin connection, without I/O: socket bytes in, a request out for the proxy to answer,
//! the answer's bytes back out. It owns what every driver must do the same way: TLS (when
//! `[admin] tls` is set, over the core's [`TlsSession`]), the caps on the request's size
//! ([`MAX_HEAD`], [`MAX_BODY`]), the time it may take (`[admin] request-timeout`, for the
//! request and again for the answer), answering `GET /health/live` by itself, and what follows
//! the answer (the write side shut, the client's leftovers read and discarded, so that closing
//! does not reset the connection under the answer).
//!
//! The driver's loop, blocking or not:
//!
//! ```text
//! loop {
//!     write every conn.poll_transmit();  once conn.is_answered(): shut the write side down
//!     if conn.is_closed(): close the socket, release the slot; stop
//!     if let Some(req) = conn.poll_request(): conn.respond(now, &endpoint.handle_admin(now, &req))
//!     else read until conn.deadline(): handle_input(now, bytes) | handle_eof(now) | handle_timeout(now)
//! }
//! ```

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::http::{Request, Response};
use super::parse::{parse_request, Parsed, MAX_BODY, MAX_HEAD};
use super::routes::{is_live, live};
use crate::control::config::AdminConfig;
use crate::tls::TlsSession;

/// The most request bytes kept: a head and a body at their caps.
const MAX_REQUEST: usize = MAX_HEAD + MAX_BODY;

#[derive(Debug)]
enum State {
    /// Receiving the request (and first the TLS handshake).
    Reading,
    /// A whole request, for [`AdminConnection::poll_request`].
    Ready(Request),
    /// The proxy is answering.
    Asked,
    /// The answer is queued: after it, leftovers are read and discarded until the client closes.
    Answered,
    /// Done: close the socket.
    Closed,
}

/// One admin connection's state: see the [module](self) for the driver's loop. `Debug` shows
/// no request bytes (they may hold a token).
pub struct AdminConnection {
    tls: Option<TlsSession>,
    /// Plaintext request bytes received so far.
    request: Vec<u8>,
    /// Socket bytes to write.
    out: Vec<u8>,
    state: State,
    deadline: Instant,
    timeout: Duration,
    /// Bytes read and thrown away after the answer.
    discarded: usize,
}

impl std::fmt::Debug for AdminConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConnection")
            .field("tls", &self.tls.is_some())
            .field("received", &self.request.len())
            .field("state", &self.state)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl AdminConnection {
    /// A connection accepted at `now` on the endpoint configured by `admin`.
    pub fn new(now: Instant, admin: &AdminConfig) -> Self {
        let timeout = admin.limits.request_timeout;
        let mut state = State::Reading;
        let tls = admin.tls.as_ref().and_then(|t| {
            TlsSession::server(t.server_config.clone())
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "admin connection: cannot start TLS");
                    state = State::Closed;
                })
                .ok()
        });
        Self {
            tls,
            request: Vec::new(),
            out: Vec::new(),
            state,
            deadline: now + timeout,
            timeout,
            discarded: 0,
        }
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        match self.state {
            State::Reading => {}
            State::Answered => {
                // Leftovers (or a TLS close_notify): read so that closing sends no reset.
                self.discarded += bytes.len();
                if self.discarded > MAX_REQUEST {
                    self.state = State::Closed;
                }
                return;
            }
            State::Ready(_) | State::Asked | State::Closed => return,
        }
        let mut plain = BytesMut::new();
        let input = match &mut self.tls {
            None => bytes,
            Some(tls) => {
                let read = tls.read_ciphertext(bytes, &mut plain);
                // Handshake records, or the alert that tells the client why it failed.
                tls.take_ciphertext(&mut self.out);
                if let Err(e) = read {
                    tracing::debug!(error = %e, "admin connection: TLS failed");
                    self.state = State::Closed;
                    return;
                }
                &plain[..]
            }
        };
        let room = MAX_REQUEST.saturating_sub(self.request.len());
        self.request
            .extend_from_slice(&input[..input.len().min(room)]);
        match parse_request(&self.request) {
            Parsed::Complete(req) if is_live(&req) => self.respond(now, &live()),
            Parsed::Complete(req) => self.state = State::Ready(req),
            Parsed::Invalid(response) => self.respond(now, &response),
            // Unreachable with both caps enforced by the parser; kept so nothing can grow.
            Parsed::Incomplete if self.request.len() >= MAX_REQUEST => {
                self.respond(now, &Response::text(413, "request too large\n"));
            }
            Parsed::Incomplete => {}
        }
    }

    /// The client closed its side (or the socket failed).
    pub fn handle_eof(&mut self, _now: Instant) {
        match self.state {
            // Nothing to answer, or the answer was taken: done.
            State::Reading | State::Answered => self.state = State::Closed,
            // A client may close its side once it sent the request: it still reads the answer.
            State::Ready(_) | State::Asked | State::Closed => {}
        }
    }

    /// Time passed; past [`AdminConnection::deadline`], a request not received is answered 408
    /// (over plaintext; a TLS handshake not done is just closed), and after an answer the
    /// connection closes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        match self.state {
            State::Reading if self.tls.as_ref().is_some_and(TlsSession::is_handshaking) => {
                self.state = State::Closed;
            }
            State::Reading => {
                self.respond(now, &Response::text(408, "request not received in time\n"));
            }
            State::Answered => self.state = State::Closed,
            State::Ready(_) | State::Asked | State::Closed => {}
        }
    }

    /// A whole request for the proxy to answer ([`respond`](Self::respond)), once.
    pub fn poll_request(&mut self) -> Option<Request> {
        match std::mem::replace(&mut self.state, State::Asked) {
            State::Ready(req) => Some(req),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The proxy's answer: queued for [`poll_transmit`](Self::poll_transmit); the connection
    /// has `request-timeout` from `now` to deliver it.
    pub fn respond(&mut self, now: Instant, response: &Response) {
        if matches!(self.state, State::Answered | State::Closed) {
            return;
        }
        let bytes = response.to_bytes();
        match &mut self.tls {
            None => self.out.extend_from_slice(&bytes),
            Some(tls) => {
                if tls.write_plaintext(&bytes).is_err() {
                    self.state = State::Closed;
                    return;
                }
                tls.close();
                tls.take_ciphertext(&mut self.out);
            }
        }
        self.state = State::Answered;
        self.deadline = now + self.timeout;
    }

    /// Bytes to write to the socket, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// The answer is queued: once [`poll_transmit`](Self::poll_transmit)'s bytes are written,
    /// shut the socket's write side down and keep reading until the client closes.
    pub fn is_answered(&self) -> bool {
        matches!(self.state, State::Answered)
    }

    /// Whether the request is whole (given to the proxy, or answered): at the cap on open
    /// connections, others give way first ([`AdminSlots::answering`](super::AdminSlots::answering)).
    pub fn has_request(&self) -> bool {
        matches!(self.state, State::Ready(_) | State::Asked | State::Answered)
    }

    /// Over: close the socket (after writing what [`poll_transmit`](Self::poll_transmit) gave).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due; `None` while the proxy answers.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Reading | State::Answered => Some(self.deadline),
            State::Ready(_) | State::Asked | State::Closed => None,
        }
    }
}

#[cfg(test)]
#[cfg(feature = "toml")]
mod tests;
