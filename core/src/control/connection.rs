//! [`Connection`]: one client connection through the proxy, the per-session half of the control
//! plane (quinn-proto's `Connection` beside its `Endpoint`).
//!
//! It wraps the core's [`ProxySession`] and turns the session's events into two kinds of output:
//!
//! - **I/O for the driver** ([`IoEvent`]): open a TCP connection to this address, close that
//!   backend socket. The backend is already chosen; the driver never decides. A backend given by
//!   host name is resolved by the driver at each connect ([`BackendAddr::resolved`]: its
//!   addresses in order, or the failure to report); the connect's deadline (the session's
//!   connect timeout) covers the lookup too.
//! - **Work for the [`Endpoint`](super::Endpoint)**: choosing a backend, failover after a failed
//!   connect or a refusal, the session listing, migration bookkeeping. The work waits in the
//!   connection until the driver calls [`Endpoint::sync`](super::Endpoint::sync), which it does
//!   whenever [`Connection::needs_sync`] says so. The common path of a statement (bytes in, bytes
//!   out, a command counted) needs no sync, so a multi-threaded driver takes the endpoint's lock
//!   only when a session logs in, moves, pins or closes.
//!
//! The PROXY protocol ([`proxy_protocol`](crate::proxy_protocol)) is handled here too, so that
//! drivers need nothing for it: a client's first bytes go through a gate (a trusted peer's header
//! is taken off, see [`proxy_header`](super::proxy_header)) before the session sees them, and a
//! backend connection to a backend configured for it gets a v2 header as its first bytes, queued
//! when the TCP connection opens (the server speaks first in MySQL, the header goes before its
//! greeting is even read). Every backend connection a session opens (login, migration, failover)
//! goes through [`Connection::connected_to`], so each carries the header, with the address the
//! socket reached as its destination.
//!
//! The drain rule, for every driver, after any call into a connection:
//!
//! ```text
//! loop {
//!     if conn.needs_sync() { endpoint.lock().sync(now, &mut conn) }
//!     while let Some(t) = conn.poll_transmit() { queue t.data on t.peer's socket }
//!     while let Some(e) = conn.poll_event() { connect / close (a failed connect: conn.connect_failed) }
//!     if !conn.needs_sync() { break }
//! }
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::backend::BackendAddr;
use crate::proxy_protocol::{self, ProxyHeader};
use crate::session::multiplex::ParkedBackend;
use crate::session::{
    BackendConnId, Event, MigrationRefused, MigrationStart, Peer, PinReason, ProxySession,
    SessionConfig, Transmit,
};
use crate::wire::{encode_packet, Capabilities, ErrPacket};
use crate::{ProtocolError, RandomSource};

use super::counters::Counters;
use super::endpoint::Command;
use super::failed_logins::FailedLogin;
use super::health::{connect_reason, is_local_exhaustion};
use super::proxy_header::{ClientGate, Refusal, Step};

/// Socket work for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoEvent {
    /// Open a TCP connection to `addr` for backend connection `conn` (a host name: resolved
    /// now, its addresses tried in order); answer with [`Connection::connected_to`] or
    /// [`Connection::connect_failed`] (a failed lookup: the error of
    /// [`BackendAddr::resolved`]).
    Connect {
        /// The connection to open.
        conn: BackendConnId,
        /// Where.
        addr: BackendAddr,
    },
    /// Close the socket of `conn` once its queued bytes are written (or drop its connect attempt).
    Close {
        /// The connection to close.
        conn: BackendConnId,
    },
    /// Multiplexing: the session lets go of backend socket `conn` between statements. Keep the
    /// socket, unread, under `pooled` where any session (on any worker) can take it back with
    /// [`IoEvent::Adopt`]; write any bytes still queued for it first (the core queues none). The
    /// endpoint owns the pooled connection from now on: it hands it to a session
    /// ([`IoEvent::Adopt`]) or asks for it to be closed ([`Endpoint::poll_pool_close`](super::Endpoint::poll_pool_close)).
    Park {
        /// The session's connection.
        conn: BackendConnId,
        /// The pooled connection's id.
        pooled: PooledId,
    },
    /// Multiplexing: the socket parked under `pooled` is this session's backend connection
    /// `conn` from now on (read it again); then call [`Connection::adopted`]. The endpoint hands
    /// out each parked socket once. A driver that no longer has it (it failed while parked)
    /// reports `conn`'s end of file instead ([`Connection::handle_eof`]).
    Adopt {
        /// The session's connection.
        conn: BackendConnId,
        /// The pooled connection's id.
        pooled: PooledId,
    },
}

/// Identifies a backend connection of the pool while no session holds it (multiplexing).
pub type PooledId = u64;

/// A pooled connection the endpoint closes (idle too long, its backend down or removed, a
/// pool over its size): write `farewell` (COM_QUIT) without waiting, then close the socket
/// parked under `pooled` ([`Endpoint::poll_pool_close`](super::Endpoint::poll_pool_close)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolClose {
    /// The parked socket.
    pub pooled: PooledId,
    /// Bytes to write before closing it.
    pub farewell: bytes::Bytes,
}

/// A backend connection of this session, from the choice of its backend until it closes.
#[derive(Debug, Clone)]
pub(super) struct BackendSlot {
    pub(super) conn: BackendConnId,
    /// Registry index (its session count includes this connection until released).
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) addr: BackendAddr,
    /// Send a PROXY protocol v2 header first.
    pub(super) proxy_protocol: bool,
    /// Chosen by the built-in policy, so another backend may be tried if it cannot be reached.
    pub(super) picked: bool,
    /// Backends tried so far for this connection.
    pub(super) attempts: usize,
}

/// What the endpoint must do for a connection (see [`Endpoint::sync`](super::Endpoint::sync)).
#[derive(Debug)]
pub(super) enum Work {
    /// The session asked for a backend connection (`None`: any backend, for a login).
    NeedBackend {
        conn: BackendConnId,
        target: Option<String>,
    },
    /// A connect failed at the TCP level.
    ConnectFailed {
        slot: BackendSlot,
        /// ferry itself is out of descriptors or memory: not the backend's fault.
        local: bool,
        error: String,
        /// Why the backend is down, as `/api/backends` shows it (a health check's wording).
        reason: String,
    },
    /// The backend answered the session's connection with an ERR in place of its greeting.
    Refused {
        backend: String,
        error: ProtocolError,
    },
    /// A backend connection closed: one session less on that backend.
    Release { index: usize },
    /// Logged in (`Authenticated`) or changed user (`UserChanged`): the listing shows `user`.
    User { user: String },
    /// `MigrationStarted`, `MigrationDone` or `MigrationFailed`.
    Migration(Event),
    /// A migration request was answered: the listed target follows the core's.
    TargetChanged,
    /// The session closed before it was authenticated, because of the client.
    LoginFailed(FailedLogin),
    /// Multiplexing: a statement needs a backend connection, to be `conn`.
    Acquire { conn: BackendConnId },
    /// Multiplexing: the session gave back `conn`, a connection to registry backend `index`.
    Park {
        conn: BackendConnId,
        index: usize,
        parked: Box<ParkedBackend>,
    },
    /// Multiplexing: the session stopped waiting for a connection.
    CancelWait,
}

/// Multiplexing: what the connection waits for from the pool, asked again when the endpoint
/// wakes it ([`Command::PoolReady`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PoolPending {
    /// A connection for a statement.
    Acquire(BackendConnId),
    /// A new connection (a login's, a failover's or a migration's, to that backend if named).
    Connect(BackendConnId, Option<String>),
}

/// One client connection: the core's session plus what the control plane tracks for it.
pub struct Connection {
    id: u64,
    shard: usize,
    /// The client: the socket's peer, or the address a trusted peer's PROXY header gave.
    client: SocketAddr,
    /// The socket's peer (a load balancer, when it sent a PROXY header).
    peer: SocketAddr,
    /// The client's first bytes, until it is known whether they hold a PROXY header.
    gate: ClientGate,
    /// Bytes of the connection's own, written before the session's: PROXY headers to backends,
    /// ferry's refusal of a client's first bytes.
    transmits: VecDeque<Transmit>,
    pub(super) session: ProxySession,
    pub(super) counters: Arc<Counters>,
    pub(super) backends: Vec<BackendSlot>,
    /// A backend answered this session with an ERR in place of its greeting: its next backend
    /// must be a healthy one (the client gets that ERR if there is none).
    pub(super) refused: bool,
    pub(super) work: VecDeque<Work>,
    io: VecDeque<IoEvent>,
    /// Listed by the endpoint (authenticated), with this backend and pin.
    pub(super) listed: Option<(Option<String>, Option<PinReason>)>,
    /// A failover is placing the session: not on this backend, which it just lost, if another
    /// will do.
    pub(super) avoid: Option<String>,
    /// [`Endpoint::connection_closed`](super::Endpoint::connection_closed) ran.
    pub(super) finished: bool,
    /// The session was authenticated once (a close after that is no failed login).
    logged_in: bool,
    /// Multiplexing: waiting for the pool.
    pub(super) pool_pending: Option<PoolPending>,
    /// Multiplexing: the pending acquire waited in the pool's queue.
    pub(super) pool_queued: bool,
    /// Multiplexing: a pooled connection given, until the driver reports its socket attached.
    adopting: Option<(BackendConnId, Box<ParkedBackend>, bool)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("shard", &self.shard)
            .field("client", &self.client)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// `proxy_trusted`: `client` is in `proxy-protocol-from`, and must start with a PROXY header.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        now: Instant,
        id: u32,
        shard: usize,
        client: SocketAddr,
        proxy_trusted: bool,
        config: Arc<SessionConfig>,
        counters: Arc<Counters>,
        random: Box<dyn RandomSource + Send>,
    ) -> Self {
        let session = ProxySession::new(now, config, id, client.ip().to_string(), random);
        Self {
            id: u64::from(id),
            shard,
            client,
            peer: client,
            gate: ClientGate::new(proxy_trusted),
            transmits: VecDeque::new(),
            session,
            counters,
            backends: Vec::new(),
            refused: false,
            work: VecDeque::new(),
            io: VecDeque::new(),
            listed: None,
            avoid: None,
            finished: false,
            logged_in: false,
            pool_pending: None,
            pool_queued: false,
            adopting: None,
        }
    }

    // ---- getters ----

    /// The session id (the connection id the client sees).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shard (worker) that owns it: commands for it come from
    /// [`Endpoint::poll_command`](super::Endpoint::poll_command) with this shard.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The client's address: the one its PROXY protocol header gave (from a trusted peer),
    /// else the socket's peer.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The socket's peer: the client, or the load balancer that sent its PROXY header.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The core session.
    pub fn session(&self) -> &ProxySession {
        &self.session
    }

    /// The session is over: write what is queued, close every socket, then call
    /// [`Endpoint::connection_closed`](super::Endpoint::connection_closed).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Back-pressure: false while the session takes no more bytes from `peer`.
    pub fn wants_input(&self, peer: Peer) -> bool {
        self.session.wants_input(peer)
    }

    /// The endpoint has work from this connection, or its listing changed: call
    /// [`Endpoint::sync`](super::Endpoint::sync).
    pub fn needs_sync(&self) -> bool {
        if !self.work.is_empty() {
            return true;
        }
        match &self.listed {
            Some((backend, pin)) if !self.finished => {
                backend.as_deref() != self.session.backend_name() || *pin != self.session.pinned()
            }
            _ => false,
        }
    }

    // ---- handle_* (inputs) ----

    /// Bytes read from `peer`.
    pub fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        let counter = match peer {
            Peer::Client => &self.counters.client_bytes_received,
            Peer::Backend(_) => &self.counters.backend_bytes_received,
        };
        Counters::add(counter, bytes.len() as u64);
        if peer == Peer::Client && !self.gate.is_open() {
            return self.handle_first_bytes(now, bytes);
        }
        self.session.handle_input(now, peer, bytes);
        self.absorb_events(now);
    }

    /// `peer`'s socket reached end of file or failed.
    pub fn handle_eof(&mut self, now: Instant, peer: Peer) {
        // A pooled socket the driver no longer had: the session takes another.
        let _ = self.adopting.take_if(|(c, ..)| Peer::Backend(*c) == peer);
        self.session.handle_eof(now, peer);
        self.absorb_events(now);
    }

    /// The deadline from [`Connection::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.absorb_events(now);
    }

    /// A request from the endpoint (drain, migrate, shutdown), delivered by the driver.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Shutdown => self.session.begin_shutdown(now),
            Command::CancelMigration => {
                self.session.cancel_migration(now);
            }
            Command::Migrate { to } => {
                let result = self.session.start_migration(now, to.clone());
                self.log_migration_start(&to, &result);
                self.work.push_back(Work::TargetChanged);
            }
            Command::BackendDown { backend } => self.session.backend_down(now, &backend),
            Command::PoolReady => match self.pool_pending {
                Some(PoolPending::Acquire(conn)) => self.work.push_back(Work::Acquire { conn }),
                Some(PoolPending::Connect(conn, ref target)) => {
                    let target = target.clone();
                    self.work.push_back(Work::NeedBackend { conn, target });
                }
                None => {}
            },
        }
        self.absorb_events(now);
    }

    /// The TCP connection for `conn` is open (to the configured address; for a backend given
    /// by host name, [`Connection::connected_to`] tells which address the name led to).
    pub fn connected(&mut self, now: Instant, conn: BackendConnId) {
        let peer = self
            .backends
            .iter()
            .find(|b| b.conn == conn)
            .and_then(|b| b.addr.ip());
        self.open(now, conn, peer);
    }

    /// The TCP connection for `conn` is open to `peer` (the socket's peer: for a backend given
    /// by host name, the address its lookup gave).
    pub fn connected_to(&mut self, now: Instant, conn: BackendConnId, peer: SocketAddr) {
        self.open(now, conn, Some(peer));
    }

    fn open(&mut self, now: Instant, conn: BackendConnId, peer: Option<SocketAddr>) {
        let Some(slot) = self.backends.iter().find(|b| b.conn == conn) else {
            return;
        };
        let name = slot.name.clone();
        tracing::debug!(session = self.id, backend = %name, ?peer, "backend connected");
        if slot.proxy_protocol {
            // Destination: the backend's address (where the socket went; unspecified if the
            // driver could not say for a host name); ferry's end of the socket is the driver's
            // to know, and MariaDB reads only the source.
            let destination = peer.or(slot.addr.ip()).unwrap_or(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                slot.addr.port(),
            ));
            self.transmits.push_back(Transmit {
                peer: Peer::Backend(conn),
                data: proxy_protocol::encode_v2(self.client, destination),
            });
        }
        self.session.backend_connected(now, conn, &name);
        self.absorb_events(now);
    }

    /// The TCP connection for `conn` could not be opened: the endpoint decides, at the next
    /// sync, whether another backend is tried or the session hears of it.
    pub fn connect_failed(&mut self, _now: Instant, conn: BackendConnId, error: &io::Error) {
        let Some(i) = self.backends.iter().position(|b| b.conn == conn) else {
            return;
        };
        let slot = self.backends.swap_remove(i);
        self.work.push_back(Work::ConnectFailed {
            slot,
            local: is_local_exhaustion(error),
            error: error.to_string(),
            reason: connect_reason(error),
        });
    }

    /// `n` bytes were written to `peer` (for the metrics).
    pub fn record_sent(&self, peer: Peer, n: usize) {
        let counter = match peer {
            Peer::Client => &self.counters.client_bytes_sent,
            Peer::Backend(_) => &self.counters.backend_bytes_sent,
        };
        Counters::add(counter, n as u64);
    }

    // ---- poll_* (outputs) ----

    /// The next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        if self.transmits.capacity() > 0 {
            // Used at a backend connect or a refusal only: an idle session keeps no queue.
            self.transmits = VecDeque::new();
        }
        self.session.poll_transmit()
    }

    /// The next socket to open or close.
    pub fn poll_event(&mut self) -> Option<IoEvent> {
        let event = self.io.pop_front();
        if event.is_none() && self.io.capacity() > 0 {
            // Sockets open and close at login, migration and close only: an idle session keeps
            // no queue for them.
            self.io = VecDeque::new();
        }
        event
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    // ---- internals ----

    /// The client's bytes while its gate is closed: a trusted peer's PROXY header is taken off
    /// (its address becomes the client's), anything else passes or is refused.
    fn handle_first_bytes(&mut self, now: Instant, bytes: &[u8]) {
        match self.gate.feed(bytes) {
            Step::Wait => {}
            Step::Pass { header, bytes } => {
                if let Some(header) = header {
                    self.proxied(header);
                }
                if !bytes.is_empty() {
                    self.session.handle_input(now, Peer::Client, &bytes);
                }
                self.absorb_events(now);
            }
            Step::Refuse(refusal) => self.refuse(now, &refusal),
        }
    }

    /// A trusted peer's header: its source is the client from now on (a header without one, as
    /// a balancer's own health check sends, leaves the peer's address).
    fn proxied(&mut self, header: ProxyHeader) {
        let Some(source) = header.source else {
            tracing::debug!(session = self.id, peer = %self.peer, version = header.version, "PROXY header without a client address");
            return;
        };
        tracing::debug!(session = self.id, client = %source, peer = %self.peer, version = header.version, "PROXY header");
        self.client = source;
        self.session.set_client_host(source.ip().to_string());
    }

    /// Closes a client whose first bytes broke the PROXY protocol rules, with MariaDB's ERR
    /// (after the greeting, as the sequence id 2 that answers a handshake response).
    fn refuse(&mut self, now: Instant, refusal: &Refusal) {
        tracing::warn!(session = self.id, peer = %self.peer, reason = %refusal, "connection refused (PROXY protocol)");
        while let Some(t) = self.session.poll_transmit() {
            self.transmits.push_back(t);
        }
        let error = refusal.error(self.peer.ip());
        let mut payload = Vec::new();
        ErrPacket::from(&error).encode(&mut payload, Capabilities::PROTOCOL_41);
        let mut frame = BytesMut::new();
        encode_packet(&mut frame, &mut 2, &payload);
        self.transmits.push_back(Transmit {
            peer: Peer::Client,
            data: frame.freeze(),
        });
        self.session.handle_eof(now, Peer::Client);
        self.absorb_events(now);
    }

    /// Opens backend connection `conn` to registry backend `index` (the endpoint chose it).
    pub(super) fn start_connect(&mut self, slot: BackendSlot) {
        tracing::trace!(session = self.id, conn = slot.conn, addr = %slot.addr, "connecting");
        self.io.push_back(IoEvent::Connect {
            conn: slot.conn,
            addr: slot.addr.clone(),
        });
        // One backend connection at a time but during a migration: no room for four.
        self.backends.reserve_exact(1);
        self.backends.push(slot);
    }

    /// Multiplexing: the pool gave `pooled`, a connection to `slot`'s backend, as `slot.conn`.
    pub(super) fn start_adopt(
        &mut self,
        now: Instant,
        slot: BackendSlot,
        pooled: PooledId,
        parked: Box<ParkedBackend>,
        check: bool,
    ) {
        let _ = now;
        let conn = slot.conn;
        tracing::trace!(session = self.id, conn, pooled, "pooled connection taken");
        self.io.push_back(IoEvent::Adopt { conn, pooled });
        self.backends.push(slot);
        self.adopting = Some((conn, parked, check));
    }

    /// The driver made the socket of [`IoEvent::Adopt`] connection `conn`'s: the session
    /// brings it to its state, then its statement runs.
    pub fn adopted(&mut self, now: Instant, conn: BackendConnId) {
        let Some((c, parked, check)) = self.adopting.take_if(|(c, ..)| *c == conn) else {
            return;
        };
        self.session.adopt(now, c, parked, check);
        self.absorb_events(now);
    }

    /// Multiplexing: the pool keeps `conn`'s socket as `pooled`.
    pub(super) fn io_park(&mut self, conn: BackendConnId, pooled: PooledId) {
        self.io.push_back(IoEvent::Park { conn, pooled });
    }

    /// Multiplexing: the pool did not take back `conn`: it closes after a COM_QUIT.
    pub(super) fn close_unpooled(&mut self, conn: BackendConnId) {
        self.transmits.push_back(Transmit {
            peer: Peer::Backend(conn),
            data: ParkedBackend::farewell(),
        });
        self.io.push_back(IoEvent::Close { conn });
    }

    /// Moves the session's events into I/O, work and counters.
    pub(super) fn absorb_events(&mut self, _now: Instant) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::ConnectBackend { conn, target } => {
                    self.work.push_back(Work::NeedBackend { conn, target })
                }
                Event::AcquireBackend { conn } => {
                    self.pool_pending = Some(PoolPending::Acquire(conn));
                    self.work.push_back(Work::Acquire { conn });
                }
                Event::BackendParked { conn } => {
                    let slot = self.backends.iter().position(|b| b.conn == conn);
                    let slot = slot.map(|i| self.backends.swap_remove(i));
                    match (slot, self.session.take_parked()) {
                        (Some(slot), Some(parked)) => self.work.push_back(Work::Park {
                            conn,
                            index: slot.index,
                            parked,
                        }),
                        // Not a connection of ours to pool: closed.
                        (slot, _) => {
                            if let Some(slot) = slot {
                                self.work.push_back(Work::Release { index: slot.index });
                            }
                            self.io.push_back(IoEvent::Close { conn });
                        }
                    }
                }
                Event::BackendAcquired {
                    reused,
                    fixups,
                    waited,
                    skipped_variables,
                } => {
                    if !skipped_variables.is_empty() {
                        tracing::warn!(session = self.id, skipped = ?skipped_variables, "session variables the backend refused were skipped");
                    }
                    self.pool_pending = None;
                    let queued = std::mem::take(&mut self.pool_queued);
                    self.counters.pool_acquired(reused, fixups, waited, queued);
                }
                Event::PoolTimeout => {
                    self.pool_pending = None;
                    Counters::add(&self.counters.pool_timeouts, 1);
                    self.work.push_back(Work::CancelWait);
                }
                Event::CloseBackend { conn } => {
                    if let Some(i) = self.backends.iter().position(|b| b.conn == conn) {
                        let slot = self.backends.swap_remove(i);
                        self.work.push_back(Work::Release { index: slot.index });
                    }
                    self.io.push_back(IoEvent::Close { conn });
                }
                Event::BackendRefused { backend, error } => {
                    Counters::add(&self.counters.backend_connect_errors, 1);
                    self.refused = true;
                    tracing::debug!(session = self.id, %backend, code = error.code, "backend refused the session's connection");
                    self.work.push_back(Work::Refused { backend, error });
                }
                Event::Authenticated { user } => {
                    self.logged_in = true;
                    tracing::info!(session = self.id, %user, client = %self.client, backend = self.session.backend_name().unwrap_or("-"), "authenticated");
                    self.work.push_back(Work::User { user });
                }
                Event::UserChanged { user } => {
                    tracing::info!(session = self.id, %user, "user changed");
                    self.work.push_back(Work::User { user });
                }
                Event::CommandDone {
                    code,
                    error,
                    duration,
                } => {
                    Counters::add(&self.counters.commands, 1);
                    if error {
                        Counters::add(&self.counters.command_errors, 1);
                    }
                    // At most two slots (one during a migration): no map needed.
                    let conn = self.session.backend_conn();
                    let backend = self.backends.iter().find(|b| Some(b.conn) == conn);
                    let index = backend.map(|b| b.index);
                    (self.counters.statements).record(code, index, error, duration);
                }
                Event::Closed { reason } => {
                    tracing::debug!(session = self.id, ?reason, "session closed");
                    if !self.logged_in {
                        if let Some(failed) = FailedLogin::from_close(&reason) {
                            self.work.push_back(Work::LoginFailed(failed));
                        }
                    }
                }
                Event::FailoverStarted { from, cause } => {
                    tracing::info!(session = self.id, backend = %from, %cause, "backend lost; rebuilding the session on another backend");
                    self.avoid = Some(from);
                }
                Event::FailoverDone {
                    from,
                    to,
                    pause,
                    retried,
                    skipped_variables,
                } => {
                    Counters::add(&self.counters.failovers_recovered, 1);
                    if retried {
                        Counters::add(&self.counters.failover_retries, 1);
                    }
                    self.avoid = None;
                    tracing::info!(session = self.id, %from, %to, ?pause, retried, "session rebuilt after its backend was lost");
                    if !skipped_variables.is_empty() {
                        tracing::warn!(session = self.id, %to, skipped = ?skipped_variables, "session variables the new backend refused were skipped");
                    }
                }
                Event::SessionLost {
                    from,
                    cause,
                    reason,
                } => {
                    self.counters.session_lost(reason.label());
                    tracing::info!(session = self.id, backend = %from, %cause, %reason, "backend lost; session closed");
                }
                event @ (Event::MigrationStarted { .. }
                | Event::MigrationDone { .. }
                | Event::MigrationFailed { .. }) => self.work.push_back(Work::Migration(event)),
            }
        }
    }

    fn log_migration_start(&self, to: &str, result: &Result<MigrationStart, MigrationRefused>) {
        let session = self.id;
        match result {
            Ok(MigrationStart::Started) => tracing::info!(session, %to, "migration starts"),
            Ok(MigrationStart::Waiting(pin)) => {
                let reason = pin.map_or("a command in flight", |p| p.as_str());
                tracing::info!(session, %to, %reason, "migration waits for a safe point");
            }
            Err(refused) => tracing::debug!(session, %to, %refused, "migration refused"),
        }
    }
}
