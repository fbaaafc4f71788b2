//! The proxy session as the event loop drives it.
//!
//! The loop is generic over the [`Session`] trait rather than tied to `ferry_core`'s
//! [`ProxySession`], so that its own tests can drive it with a byte-relay session (no MySQL);
//! monomorphisation makes that free. [`Session`] is exactly the core's contract: inputs
//! (`handle_*`), the driver's decisions (`backend_connected`, ...), and outputs drained by
//! `poll_*` until empty after every call. [`CoreSessions`] makes the real sessions.

use std::sync::Arc;
use std::time::Instant;

pub use ferry_core::session::{
    BackendConnId, CloseReason, Event, MigrationRefused, MigrationStart, Peer, PinReason, Transmit,
};
use ferry_core::session::{ProxySession, SessionConfig};

use super::random::OsRandom;

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

    // Migration: the defaults are a session that never moves (the loop's byte-relay tests).

    /// Why the session cannot move now, if it cannot.
    fn pinned(&self) -> Option<PinReason> {
        None
    }
    /// The backend a requested or running migration goes to.
    fn migration_target(&self) -> Option<&str> {
        None
    }
    /// Moves the session to backend `target` now or at its next safe point.
    fn start_migration(
        &mut self,
        _now: Instant,
        _target: String,
    ) -> Result<MigrationStart, MigrationRefused> {
        Err(MigrationRefused::Disabled)
    }
    /// Abandons a requested or running migration; false when there was none.
    fn cancel_migration(&mut self, _now: Instant) -> bool {
        false
    }
}

/// Makes the session of each accepted client. Shared by all workers.
pub trait SessionFactory: Send + Sync + 'static {
    /// The session type.
    type Session: Session;
    /// A session for a client that just connected from `client_host` (an IP address).
    fn new_session(&self, now: Instant, connection_id: u32, client_host: String) -> Self::Session;
}

impl Session for ProxySession {
    fn user(&self) -> Option<&str> {
        ProxySession::user(self)
    }
    fn backend_name(&self) -> Option<&str> {
        ProxySession::backend_name(self)
    }
    fn is_closed(&self) -> bool {
        ProxySession::is_closed(self)
    }
    fn wants_input(&self, peer: Peer) -> bool {
        ProxySession::wants_input(self, peer)
    }
    fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        ProxySession::handle_input(self, now, peer, bytes)
    }
    fn handle_eof(&mut self, now: Instant, peer: Peer) {
        ProxySession::handle_eof(self, now, peer)
    }
    fn handle_timeout(&mut self, now: Instant) {
        ProxySession::handle_timeout(self, now)
    }
    fn backend_connected(&mut self, now: Instant, conn: BackendConnId, backend_name: &str) {
        ProxySession::backend_connected(self, now, conn, backend_name)
    }
    fn backend_connect_failed(&mut self, now: Instant, conn: BackendConnId, reason: &str) {
        ProxySession::backend_connect_failed(self, now, conn, reason)
    }
    fn begin_shutdown(&mut self, now: Instant) {
        ProxySession::begin_shutdown(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        ProxySession::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        ProxySession::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        ProxySession::poll_timeout(self)
    }
    fn pinned(&self) -> Option<PinReason> {
        ProxySession::pinned(self)
    }
    fn migration_target(&self) -> Option<&str> {
        ProxySession::migration_target(self)
    }
    fn start_migration(
        &mut self,
        now: Instant,
        target: String,
    ) -> Result<MigrationStart, MigrationRefused> {
        ProxySession::start_migration(self, now, target)
    }
    fn cancel_migration(&mut self, now: Instant) -> bool {
        ProxySession::cancel_migration(self, now)
    }
}

/// Makes the core's [`ProxySession`]s, all sharing one [`SessionConfig`], each with OS randomness.
#[derive(Debug, Clone)]
pub struct CoreSessions {
    config: Arc<SessionConfig>,
}

impl CoreSessions {
    /// A factory for sessions configured by `config`.
    pub fn new(config: Arc<SessionConfig>) -> Self {
        Self { config }
    }
}

impl SessionFactory for CoreSessions {
    type Session = ProxySession;

    fn new_session(&self, now: Instant, connection_id: u32, client_host: String) -> ProxySession {
        ProxySession::new(
            now,
            Arc::clone(&self.config),
            connection_id,
            client_host,
            Box::new(OsRandom),
        )
    }
}
