//! The proxy session as the event loop drives it.
//!
//! The loop is written against the [`Session`] trait rather than `ferry_core`'s `ProxySession`
//! directly, for two reasons: its own tests drive it with a byte-relay session (no MySQL), and
//! the core's session landed after the loop. [`Session`] is exactly the core's contract: inputs
//! (`handle_*`), the driver's decisions (`backend_connected`, ...), and outputs drained by
//! `poll_*` until empty after every call.

use std::time::Instant;

use bytes::Bytes;

/// One backend connection *attempt* within a session (a new one per connect, per migration).
pub type BackendConnId = u64;

/// Which socket of a session bytes come from or go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The client's socket.
    Client,
    /// The socket of one backend connection.
    Backend(BackendConnId),
}

/// Bytes to write to one of the session's sockets.
#[derive(Debug)]
#[must_use]
pub struct Transmit {
    /// The socket.
    pub peer: Peer,
    /// The bytes, in order after everything transmitted to that peer before.
    pub data: Bytes,
}

/// What a session asks of the driver, besides writing bytes.
#[derive(Debug)]
pub enum Event {
    /// Open a TCP connection for `conn`: to a backend the driver picks (`target: None`) or to
    /// the backend named `target`. Answered with `backend_connected` / `backend_connect_failed`.
    ConnectBackend {
        /// The attempt's id.
        conn: BackendConnId,
        /// The backend to use; `None`: the driver's balancing choice.
        target: Option<String>,
    },
    /// Close backend connection `conn` once what was transmitted to it is written.
    CloseBackend {
        /// The attempt's id.
        conn: BackendConnId,
    },
    /// The client logged in.
    Authenticated {
        /// The user name.
        user: String,
    },
    /// One command finished.
    CommandDone {
        /// The command byte.
        code: u8,
        /// It ended in an ERR.
        error: bool,
    },
    /// The session is over: write what is pending, then close every socket of it.
    Closed {
        /// Why, for the log.
        reason: String,
    },
}

/// A proxy session: the sans-IO state machine the event loop feeds.
pub trait Session: Send {
    /// The user, once authenticated.
    fn user(&self) -> Option<&str>;
    /// The backend the session is on, once it has one.
    fn backend_name(&self) -> Option<&str>;
    /// The session is over (it emitted [`Event::Closed`]).
    fn is_closed(&self) -> bool;
    /// Back-pressure: false while the session will not take more bytes from `peer`.
    fn wants_input(&self, peer: Peer) -> bool;
    /// Bytes read from `peer`.
    fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]);
    /// `peer`'s socket reached end of file or failed.
    fn handle_eof(&mut self, now: Instant, peer: Peer);
    /// The deadline from [`Session::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The connection asked for by [`Event::ConnectBackend`] is established.
    fn backend_connected(&mut self, now: Instant, conn: BackendConnId, backend_name: &str);
    /// The connection asked for by [`Event::ConnectBackend`] could not be made.
    fn backend_connect_failed(&mut self, now: Instant, conn: BackendConnId, reason: &str);
    /// Graceful shutdown: finish the current statement, then close (idle sessions close now).
    fn begin_shutdown(&mut self, now: Instant);
    /// The next bytes to write.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Event>;
    /// When [`Session::handle_timeout`] must be called next.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Makes the session of each accepted client. Shared by all workers.
pub trait SessionFactory: Send + Sync + 'static {
    /// The session type.
    type Session: Session;
    /// A session for a client that just connected from `client_host` (an IP address).
    fn new_session(&self, now: Instant, connection_id: u32, client_host: String) -> Self::Session;
}
