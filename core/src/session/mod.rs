//! The proxy session: one client connection ([`Frontend`]) paired with its backend connection
//! ([`Backend`]), without I/O.
//!
//! A [`ProxySession`] authenticates the client (see [`login`](self#authentication)), then relays
//! every command to the backend untouched and every response packet back to the client (the
//! backend's `Bytes`, re-framed with the client side's sequence ids; large payloads are never
//! copied), rewriting only what the two sides' capabilities make different: OK packets lose their
//! session-state section for a client that did not ask for `CLIENT_SESSION_TRACK`. Along the way
//! it keeps the session's state ([`SessionState`]: status flags, schema, variables, prepared
//! statements, cursors), which migration builds on.
//!
//! # Authentication
//!
//! - `passthrough` (TiProxy's model, `reference/tidb-migration-protocol.md` §5): the client's
//!   handshake response goes to the backend with a plugin name no server knows, so the backend
//!   answers with an auth switch carrying its own salt; from there auth packets are relayed both
//!   ways until the backend's OK or ERR, which the client then gets.
//! - `proxy` (MyCat's model): the frontend checks the client against the user table; the session
//!   then logs in to the backend as the same user with the secret the login revealed, and only
//!   when that succeeds does the client get its OK (otherwise the backend's ERR).
//!
//! # Failures
//!
//! | what | the client gets | then |
//! |---|---|---|
//! | backend unreachable | ERR 1429 `HY000` "Can't connect to the backend server (ferry: …)" | closed |
//! | backend refuses the login | its ERR | closed |
//! | backend refuses the connection (ERR in place of its greeting: 1040, 1129…) | nothing: another backend is tried ([`Event::BackendRefused`]); after 3 refusals, or if no other backend can be reached, the last refusal's ERR | closed, or logged in elsewhere |
//! | backend dies while a command runs | nothing: the connection closes as the dead server's would, so the client's library reports its own 2013 "Lost connection to server during query" (with `replay` read retry, a read-only `SELECT` runs again on another backend instead) | closed |
//! | backend sends an oversized packet | ERR 1153 `08S01` | closed |
//! | backend dies between commands (or the health check finds it down) | `replay` with failover, idle and unpinned: nothing, the session is rebuilt on another backend ([`Event::FailoverDone`]); otherwise nothing either, the connection closes (the next command fails in the client with 2006/2013) | closed unless rebuilt |
//! | client packet over the cap | ERR 1153 `08S01`, with the sequence id after the refused frame's (as MariaDB) | closed |
//! | malformed client packet | what MariaDB 10.11 answers (the frontend's "Malformed packets"): ERR 1047 for an empty packet, otherwise the backend's own answer (a malformed COM_CHANGE_USER goes as `11 00`) | the session goes on |
//! | a statement id the client does not hold (closed, reset, never given) once ids are mapped (after a `replay` move; always under multiplexing) | what MariaDB answers: ERR 1243 `HY000` "Unknown prepared statement handler (N) given to mysqld_stmt_execute" (fetch, reset), nothing for a close or long data; it never reaches the backend, where the same number can be another statement | the session goes on |
//! | idle longer than `idle_timeout` | ERR 4031 `HY000` (MySQL 8's inactivity error) | closed |
//! | client vanishes (EOF) | — | backend released ([`Event::CloseBackend`]) |
//!
//! No ERR of ferry's for a dead backend: a direct client sees the server's connection close and
//! its library reports 2013 (the outcome of the statement is unknown; connection pools and ORMs
//! discard the connection and retry), so through ferry it sees the same close. ferry's own
//! reason goes to [`Event::SessionLost`] (log and metrics). A server-range code of ferry's
//! (1158) would be unknown to them, and a client-range one (2013) in an ERR packet reads as
//! "2027 malformed packet" in libmariadb.
//!
//! # Driving it
//!
//! After **every** call, drain [`poll_transmit`](ProxySession::poll_transmit) (write each chunk to
//! its peer's socket), then [`poll_event`](ProxySession::poll_event), then re-arm the timer from
//! [`poll_timeout`](ProxySession::poll_timeout). Here a client and a backend are fed from memory:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use ferry_core::frontend::AuthMode;
//! use ferry_core::session::{Event, Peer, ProxySession, SessionConfig};
//! use ferry_core::SeededRandom; // a driver passes a CSPRNG-backed RandomSource
//!
//! let config = Arc::new(SessionConfig::new(AuthMode::Passthrough));
//! let now = Instant::now();
//! let mut session = ProxySession::new(now, config, 1, "10.0.0.7".into(), Box::new(SeededRandom::new(1)));
//! # let mut reads: Vec<(Peer, Vec<u8>)> = vec![(Peer::Client, vec![])];
//! loop {
//!     while let Some(t) = session.poll_transmit() {
//!         match t.peer {
//!             Peer::Client => { /* write t.data to the client socket */ }
//!             Peer::Backend(_conn) => { /* write t.data to that backend socket */ }
//!         }
//!     }
//!     while let Some(event) = session.poll_event() {
//!         match event {
//!             Event::ConnectBackend { conn, .. } => {
//!                 // start a non-blocking connect; on success:
//!                 session.backend_connected(Instant::now(), conn, "db1");
//!             }
//!             Event::CloseBackend { conn: _ } => { /* close that socket after its writes */ }
//!             Event::Closed { .. } => return,
//!             _ => {}
//!         }
//!     }
//!     // wait for readiness (only on sockets with `wants_input`) or `poll_timeout()`, then:
//!     match reads.pop() {
//!         Some((peer, bytes)) if bytes.is_empty() => session.handle_eof(Instant::now(), peer),
//!         Some((peer, bytes)) => session.handle_input(Instant::now(), peer, &bytes),
//!         None => break,
//!     }
//!     session.handle_timeout(Instant::now());
//! }
//! ```

mod change_user;
mod config;
mod login;
mod migration;
pub mod multiplex;
mod reason;
mod relay;
mod rng;
mod state;

pub use config::{proxy_capabilities, BackendTemplate, Multiplexing, SessionConfig};
pub use migration::fixup;
pub use migration::{
    LossReason, MigrationConfig, MigrationFailure, MigrationMode, MigrationRefused, MigrationStart,
    OldBackendError, PinReason, ReplayError,
};
pub use reason::{BackendLoss, ConnectFailure, Incompatibility, LoginFailure};
pub use state::{SessionState, StatementInfo};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::backend::{Backend, BackendError};
use crate::frontend::{self, Frontend, ZERO_COPY_THRESHOLD};
use crate::wire::Command;
use crate::{ProtocolError, RandomSource};

use self::login::PendingLogin;
use self::migration::{Job, LoginInfo, Migration, Snapshot, StatementIds, Tracker};
use self::rng::HashRandom;

/// Identifies one backend connection *attempt* within a session.
pub type BackendConnId = u64;

/// One end of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The client's socket.
    Client,
    /// The socket of this backend connection.
    Backend(BackendConnId),
}

/// Bytes to write to a peer's socket, in order (already encrypted when that side uses TLS).
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Whose socket.
    pub peer: Peer,
    /// The bytes.
    pub data: Bytes,
}

/// Something the session's owner must do or know. The owner is the control plane's
/// [`Connection`](crate::control::Connection) (which turns these into socket requests for the
/// driver and work for the endpoint), or an embedder's own loop driving the session directly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Open a TCP connection for `conn`: `target: None` = the owner picks a backend for a new
    /// session; `Some(name)` = that backend. Answer with
    /// [`ProxySession::backend_connected`] or [`ProxySession::backend_connect_failed`].
    ConnectBackend {
        /// The connection to open.
        conn: BackendConnId,
        /// Which backend, if the session cares.
        target: Option<String>,
    },
    /// Close the socket of backend connection `conn` (after writing its pending transmits).
    CloseBackend {
        /// The connection to close.
        conn: BackendConnId,
    },
    /// The backend the owner picked for this session's login (`ConnectBackend { target: None }`)
    /// refused the connection with an ERR in place of its greeting: 1040 "Too many connections"
    /// (`max_connections` reached), 1129 (host blocked), ... The owner should treat `backend`
    /// as down until its next passing health check, exactly as if the TCP connect had been
    /// refused, and may log `error` (the server's own message; it carries no secret). A
    /// [`CloseBackend`](Event::CloseBackend) for that connection follows and, unless this login
    /// was refused too often already, a new `ConnectBackend { target: None }`: the client has
    /// seen nothing of the refusing backend and is logged in elsewhere. Migration connections
    /// never cause it (a refusing target fails the migration instead).
    BackendRefused {
        /// The backend's name, as given to [`ProxySession::backend_connected`].
        backend: String,
        /// The ERR it sent.
        error: ProtocolError,
    },
    /// The client logged in (for `/api/sessions` and metrics); see also
    /// [`ProxySession::backend_name`].
    Authenticated {
        /// The user name.
        user: String,
    },
    /// A migration left its wait for a safe point and runs now (for metrics: started).
    MigrationStarted {
        /// The backend it goes to.
        to: String,
    },
    /// The session moved (for metrics: succeeded, and the pause).
    MigrationDone {
        /// The backend it left.
        from: String,
        /// The backend it is on now.
        to: String,
        /// How long the client command that arrived during the migration waited (zero when
        /// none did).
        pause: Duration,
        /// Session variables the new backend refused, skipped (log them).
        skipped_variables: Vec<String>,
    },
    /// A migration failed; the session is still on its old backend (for metrics: failed by
    /// [`MigrationFailure::label`]).
    MigrationFailed {
        /// The backend it was going to.
        to: String,
        /// Why.
        reason: MigrationFailure,
    },
    /// The session's backend connection died, or its backend was reported down
    /// ([`ProxySession::backend_down`]), between statements: the session is being rebuilt on
    /// another backend (`replay` failover). A `ConnectBackend { target: None }` follows: the
    /// owner picks the backend, preferably not `from`. Then [`Event::FailoverDone`], or
    /// [`Event::SessionLost`] if the rebuild fails.
    FailoverStarted {
        /// The backend it lost.
        from: String,
        /// How.
        cause: BackendLoss,
    },
    /// The session was rebuilt on `to`; its client noticed nothing (for metrics: recovered).
    FailoverDone {
        /// The backend it lost.
        from: String,
        /// The backend it is on now.
        to: String,
        /// How long the session had no backend.
        pause: Duration,
        /// The statement in flight was sent again (read retry).
        retried: bool,
        /// Session variables the new backend refused, skipped (log them).
        skipped_variables: Vec<String>,
    },
    /// The session's backend was lost and the session could not be kept: its client connection
    /// closes without an ERR, as the dead server's own connection would (the client's library
    /// reports 2013 "Lost connection" or 2006 "gone away" itself). [`Event::Closed`] follows.
    SessionLost {
        /// The backend it lost.
        from: String,
        /// How.
        cause: BackendLoss,
        /// Why it could not be rebuilt (for metrics: lost by [`LossReason::label`]).
        reason: LossReason,
    },
    /// COM_CHANGE_USER succeeded: the session is now `user`'s (for `/api/sessions`).
    UserChanged {
        /// The new user name.
        user: String,
    },
    /// Multiplexing: the session gave backend connection `conn` back between statements. Take
    /// it with [`ProxySession::take_parked`] and put it in the pool; its socket is no longer the
    /// session's.
    BackendParked {
        /// The connection given back.
        conn: BackendConnId,
    },
    /// Multiplexing: a statement waits for a backend connection, to be `conn`. Answer with
    /// [`ProxySession::adopt`] (a pooled one), a `ConnectBackend`-like connect of `conn` to
    /// the backend the owner picks ([`ProxySession::pool_open`], then `backend_connected`), or
    /// [`ProxySession::pool_refused`] (ERR 1040); the session also gives up by itself after
    /// `max_wait` ([`Event::PoolTimeout`]).
    AcquireBackend {
        /// The connection id it will have.
        conn: BackendConnId,
    },
    /// Multiplexing: the session has a backend connection again (for metrics).
    BackendAcquired {
        /// A pooled connection (false: a new one).
        reused: bool,
        /// Statements sent to bring it to the session's state.
        fixups: usize,
        /// From the statement's arrival to its being sent: what multiplexing added.
        waited: Duration,
        /// Session variables the backend refused, skipped (log them).
        skipped_variables: Vec<String>,
    },
    /// Multiplexing: the session stopped waiting for a backend connection and answered ERR 1040
    /// (the owner takes it out of the pool's queue).
    PoolTimeout,
    /// One command finished (for metrics).
    CommandDone {
        /// Its command byte (`Command::COM_*`).
        code: u8,
        /// True when the response ended with an ERR.
        error: bool,
        /// From the command's arrival (a command that waited for ferry's own work counts its
        /// wait) to the end of its response: the latency its client saw, less the network.
        duration: Duration,
    },
    /// The session is over: write the pending transmits, then close the client socket and any
    /// backend socket. Nothing follows.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent COM_QUIT.
    Quit,
    /// The client closed its socket (or the socket failed).
    ClientGone,
    /// The client side failed: a bad or oversized packet, a login ferry refused, the handshake
    /// deadline, TLS. The client got the ERR the frontend owed it.
    Frontend(frontend::CloseReason),
    /// The backend refused the login (or refused the connection before its greeting and no
    /// other backend took the login, see [`Event::BackendRefused`]); the client got its ERR.
    LoginRefused(ProtocolError),
    /// No backend could be reached or logged in to; the client got ERR 1429.
    BackendUnavailable(LoginFailure),
    /// The backend connection failed after login and the session could not be rebuilt
    /// elsewhere ([`Event::SessionLost`] says why): the client connection was closed without an
    /// ERR (but 1153 for an oversized backend packet).
    BackendLost(BackendLoss),
    /// The client was idle longer than the idle timeout (it got ERR 4031).
    IdleTimeout,
    /// [`ProxySession::begin_shutdown`].
    Shutdown,
}

/// Where the session is.
#[derive(Debug)]
enum Phase {
    /// The frontend runs the greeting and (in proxy mode) the password check.
    Handshake,
    /// Waiting for the backend connection and login.
    Login(PendingLogin),
    /// Command phase, nothing outstanding.
    Ready,
    /// Command phase, a command in flight.
    Command(InFlight),
    /// Command phase, ferry's own work holds the backend (session tracking, a migration); a
    /// client command that arrives waits in `held`.
    Internal(Job),
    Closed,
}

/// A command in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    code: u8,
    /// Client packets that belong to the command are being relayed to the backend.
    client_data: ClientData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientData {
    None,
    /// LOCAL INFILE contents, until the empty packet.
    LocalInfile,
    /// The client's answer to a relayed COM_CHANGE_USER auth packet.
    AuthData,
}

/// One deadline per kind; [`ProxySession::poll_timeout`] is the earliest of these and the roles'.
#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Idle between commands.
    Idle,
    /// From ConnectBackend to the end of the backend login.
    Connect,
    /// A requested migration must find a safe point by then.
    Migration,
    /// The deadline of the running migration step.
    MigrationStep,
    /// Idle since [`IDLE_RELEASE`]: the buffers' memory goes back to the allocator.
    Release,
    /// Multiplexing: the connection kept after a statement that left something to read goes
    /// back to the pool ([`multiplex::KEEP`]).
    Park,
}

/// Number of [`Timer`] kinds.
const TIMERS: usize = 6;

/// How long a session stays idle before it lets go of its buffers and queues: long enough
/// that a busy session (next command within this time) reuses them, allocating nothing per
/// command; short enough that thousands of idle sessions cost little memory.
pub(crate) const IDLE_RELEASE: Duration = Duration::from_millis(200);

/// Slots an idle session's transmit and event queues shrink to, once over [`IDLE_QUEUE_MAX`].
const IDLE_QUEUE: usize = 16;
const IDLE_QUEUE_MAX: usize = 256;
/// Bytes an idle session keeps for re-encoded OK packets, once over [`IDLE_SCRATCH_MAX`].
const IDLE_SCRATCH: usize = 256;
const IDLE_SCRATCH_MAX: usize = 4096;

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The backend connection of the session.
struct BackendLink {
    id: BackendConnId,
    /// `None` until the driver reports the TCP connection open.
    conn: Option<Backend>,
}

/// One client's proxied session. See the [module docs](self).
pub struct ProxySession {
    config: Arc<SessionConfig>,
    frontend: Frontend,
    backend: Option<BackendLink>,
    rng: HashRandom,
    next_conn: BackendConnId,
    phase: Phase,
    state: SessionState,
    backend_name: Option<String>,
    transmits: VecDeque<Transmit>,
    /// Small backend-bound chunks are coalesced here (one write instead of header + payload).
    backend_out: BytesMut,
    events: VecDeque<Event>,
    timers: [Option<Instant>; TIMERS],
    /// Set by whoever closes the frontend, so its `Closed` maps to the session's reason.
    close_reason: Option<CloseReason>,
    shutting_down: bool,
    /// Re-encoded OK packets (small; reused).
    scratch: Vec<u8>,
    /// A requested or running migration.
    migration: Option<Box<Migration>>,
    /// Pins, prepared-statement texts, last insert id (when migration is on).
    track: Tracker,
    /// What a migration login needs (when migration is on).
    login_info: Option<Box<LoginInfo>>,
    /// The client command waiting while `Phase::Internal`, and since when.
    held: Option<frontend::ClientCommand>,
    held_since: Option<Instant>,
    /// Client ↔ backend statement ids, after a replay migration.
    stmt_ids: Option<Box<StatementIds>>,
    /// A COM_CHANGE_USER in flight under `proxy` auth.
    change_user: Option<Box<change_user::ChangeUserCheck>>,
    /// What a failover replays that the server does not report (replay with failover).
    snapshot: Snapshot,
    /// The statement in flight, kept for read retry.
    retry: Option<Bytes>,
    /// When the command in flight arrived (its [`Event::CommandDone`] duration starts there).
    command_started: Instant,
    /// When the client command waiting in `held` arrived.
    held_arrived: Option<Instant>,
    /// Multiplexing (`None`: off).
    mux: Option<Box<multiplex::Mux>>,
}

impl std::fmt::Debug for ProxySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySession")
            .field("phase", &self.phase)
            .field("user", &self.state.user)
            .field("backend", &self.backend_name)
            .finish_non_exhaustive()
    }
}

impl ProxySession {
    /// A session for a client that just connected from `client_host` (shown in "Access denied
    /// for 'u'@'host'"): queues the greeting. `connection_id` is the id the client sees; `rng`
    /// must be a CSPRNG (salts, RSA padding).
    pub fn new(
        now: Instant,
        config: Arc<SessionConfig>,
        connection_id: u32,
        client_host: String,
        rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        let (rng, child) = rng::split(rng);
        let frontend = Frontend::new(
            config.frontend.clone(),
            connection_id,
            client_host,
            now,
            rng,
        );
        let mut session = Self {
            config,
            frontend,
            backend: None,
            rng: child,
            next_conn: 0,
            phase: Phase::Handshake,
            state: SessionState::default(),
            backend_name: None,
            transmits: VecDeque::new(),
            backend_out: BytesMut::new(),
            events: VecDeque::new(),
            timers: [None; TIMERS],
            close_reason: None,
            shutting_down: false,
            scratch: Vec::new(),
            migration: None,
            track: Tracker::default(),
            login_info: None,
            held: None,
            held_since: None,
            stmt_ids: None,
            change_user: None,
            snapshot: Snapshot::default(),
            retry: None,
            command_started: now,
            held_arrived: None,
            mux: None,
        };
        if session.config.multiplexing.is_some() {
            session.mux = Some(Box::default());
        }
        session.drive(now);
        session
    }

    // ---- getters ----

    /// The logged-in user (after the client's handshake response; follows COM_CHANGE_USER).
    pub fn user(&self) -> Option<&str> {
        self.state.user.as_deref().or(self.frontend.user())
    }

    /// The name of the backend the session is on, once connected.
    pub fn backend_name(&self) -> Option<&str> {
        self.backend_name.as_deref()
    }

    /// True between commands (logged in, nothing in flight).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// True once [`Event::Closed`] was queued.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the driver should read from `peer`'s socket (back-pressure: false while the client
    /// has pipelined more than the frontend's input cap, and for closed or unknown connections).
    /// Buffers of bytes *written* are the driver's: it should also stop reading from one side
    /// while the other side's socket has a backlog.
    pub fn wants_input(&self, peer: Peer) -> bool {
        if self.is_closed() {
            return false;
        }
        match peer {
            Peer::Client => self.frontend.wants_input(),
            Peer::Backend(id) => {
                self.backend
                    .as_ref()
                    .is_some_and(|l| l.id == id && l.conn.as_ref().is_some_and(|b| !b.is_closed()))
                    || self.is_migration_conn(id)
            }
        }
    }

    /// The tracked session state (status, schema, variables, prepared statements, cursors).
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The client side (negotiated capabilities, TLS...).
    pub fn frontend(&self) -> &Frontend {
        &self.frontend
    }

    /// The current backend connection, once its socket is open.
    pub fn backend(&self) -> Option<&Backend> {
        self.backend.as_ref().and_then(|l| l.conn.as_ref())
    }

    /// The id of the current backend connection (open or being opened): the one whose backend
    /// answers the session's commands.
    pub fn backend_conn(&self) -> Option<BackendConnId> {
        self.backend.as_ref().map(|l| l.id)
    }

    // ---- inputs ----

    /// Bytes read from `peer`'s socket. Bytes from a backend connection that is not the
    /// session's current one are ignored.
    pub fn handle_input(&mut self, now: Instant, peer: Peer, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        match peer {
            Peer::Client => self.frontend.handle_input(now, bytes),
            Peer::Backend(id) => match self.current_backend(id) {
                Some(b) => b.handle_input(now, bytes),
                None => match self.migration_backend(id) {
                    Some(b) => b.handle_input(now, bytes),
                    None => return,
                },
            },
        }
        self.drive(now);
    }

    /// The buffer `peer`'s next bytes should be read into, so that the core does not copy them
    /// again (a driver appends what it reads, then calls
    /// [`handle_input_buffered`](Self::handle_input_buffered)). `None` when that side runs TLS,
    /// for an unknown or closed connection, and once the session is closed: then read into a
    /// buffer of the driver's own and call [`handle_input`](Self::handle_input).
    ///
    /// Take only what is needed: capacity left in this buffer stays with the session between
    /// commands (up to [`RETAINED_BUFFER`](crate::wire::RETAINED_BUFFER) per side) until it has
    /// been idle for a moment (200 ms), when it is released. It pays
    /// only for a driver that can read into the spare capacity without initialising it first:
    /// zero-filling the room before each read (what safe code must do) costs more than the copy
    /// `handle_input` makes, which is why ferry's own drivers keep a reused read buffer.
    pub fn input_buffer(&mut self, peer: Peer) -> Option<&mut BytesMut> {
        if self.is_closed() {
            return None;
        }
        match peer {
            Peer::Client => self.frontend.input_buffer(),
            Peer::Backend(id) if self.is_current(id) => self.current_backend(id)?.input_buffer(),
            Peer::Backend(id) => self.migration_backend(id)?.input_buffer(),
        }
    }

    /// `peer`'s bytes were appended to [`input_buffer`](Self::input_buffer): the same as
    /// [`handle_input`](Self::handle_input) with those bytes, without copying them.
    pub fn handle_input_buffered(&mut self, now: Instant, peer: Peer) {
        if self.is_closed() {
            return;
        }
        match peer {
            Peer::Client => self.frontend.handle_buffered(now),
            Peer::Backend(id) => match self.current_backend(id) {
                Some(b) => b.handle_buffered(now),
                None => match self.migration_backend(id) {
                    Some(b) => b.handle_buffered(now),
                    None => return,
                },
            },
        }
        self.drive(now);
    }

    /// `peer`'s socket reached end of file or failed.
    pub fn handle_eof(&mut self, now: Instant, peer: Peer) {
        if self.is_closed() {
            return;
        }
        match peer {
            Peer::Client => {
                self.release_backend(now);
                self.frontend.close(now);
                self.finish(CloseReason::ClientGone);
            }
            Peer::Backend(id) => {
                if let Some(b) = self.current_backend(id) {
                    b.handle_eof(now);
                } else if let Some(b) = self.migration_backend(id) {
                    b.handle_eof(now);
                } else if self.is_migration_conn(id) {
                    return self.migration_connect_failed(now, id, ConnectFailure::Closed);
                } else if self.backend.as_ref().is_some_and(|l| l.id == id) {
                    // The connect itself failed before backend_connected.
                    self.backend_connect_failed(now, id, ConnectFailure::Closed);
                    return;
                }
            }
        }
        self.drive(now);
    }

    /// Fires the deadlines that passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.frontend.handle_timeout(now);
        if let Some(b) = self.backend.as_mut().and_then(|l| l.conn.as_mut()) {
            b.handle_timeout(now);
        }
        self.drive(now);
        if self.is_closed() {
            return;
        }
        self.migration_timeouts(now);
        self.drive(now);
        if self.is_closed() {
            return;
        }
        if self.timer_passed(Timer::Connect, now) {
            self.set_timer(Timer::Connect, None);
            if matches!(self.phase, Phase::Login(_)) {
                let reason = if self.login_waited() {
                    LoginFailure::Connect(ConnectFailure::TooManyConnections)
                } else {
                    LoginFailure::Timeout
                };
                self.login_failed(now, reason);
            }
        }
        if self.timer_passed(Timer::Park, now) {
            self.keep_expired(now);
            self.drive(now);
        }
        if self.timer_passed(Timer::Release, now) {
            self.set_timer(Timer::Release, None);
            if self.is_idle() {
                self.release_buffers();
            }
        }
        if self.timer_passed(Timer::Idle, now) && self.is_idle() {
            self.release_backend(now);
            self.close_reason = Some(CloseReason::IdleTimeout);
            self.frontend.close_with_error(
                now,
                ProtocolError::new(
                    4031,
                    "HY000",
                    "The client was disconnected by the server because of inactivity. See \
                 wait_timeout and interactive_timeout for configuring this behavior.",
                ),
            );
        }
        self.drive(now);
    }

    // ---- mutators ----

    /// The client's host is `host` from now on (its "Access denied for 'u'@'host'"), not the one
    /// given to [`ProxySession::new`]: the address of a PROXY protocol header, which comes before
    /// the client's handshake response.
    pub fn set_client_host(&mut self, host: String) {
        self.frontend.set_peer_host(host);
    }

    /// The TCP connection for `conn` is open (to the backend called `backend_name`): the backend
    /// login starts when its greeting arrives.
    pub fn backend_connected(&mut self, now: Instant, conn: BackendConnId, backend_name: &str) {
        if self.is_closed() {
            return;
        }
        if !self.is_current(conn) {
            return self.migration_connected(now, conn, backend_name);
        }
        self.backend_name = Some(backend_name.to_owned());
        self.start_backend(now);
        self.drive(now);
    }

    /// The TCP connection for `conn` could not be opened. For the login's connection the client
    /// gets ERR 1429 with `reason`'s text and the session closes
    /// ([`CloseReason::BackendUnavailable`]); a migration's fails
    /// ([`MigrationFailure::ConnectFailed`]).
    pub fn backend_connect_failed(
        &mut self,
        now: Instant,
        conn: BackendConnId,
        reason: ConnectFailure,
    ) {
        if self.is_closed() {
            return;
        }
        if !self.is_current(conn) {
            return self.migration_connect_failed(now, conn, reason);
        }
        self.login_failed(now, LoginFailure::Connect(reason));
        self.drive(now);
    }

    /// Graceful shutdown: a session running a statement finishes it (its response is relayed),
    /// then closes; an idle session closes now. A session inside a transaction stays until the
    /// client ends it: it closes once it is between statements outside a transaction (after its
    /// COMMIT or ROLLBACK), or when its owner's shutdown deadline drops it. One still logging in
    /// gets ERR 1053 and closes.
    pub fn begin_shutdown(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.shutting_down = true;
        match self.phase {
            Phase::Command(_) => {}
            Phase::Ready => self.finish_shutdown(now),
            // ferry's own work in a transaction: it ends, then the client may finish.
            Phase::Internal(_) if self.held.is_none() && self.state.in_transaction() => {}
            // Nobody waits for an answer: as if idle.
            Phase::Internal(_) if self.held.is_none() => self.shutdown_now(now),
            _ => {
                self.release_backend(now);
                self.close_reason = Some(CloseReason::Shutdown);
                self.frontend.close_with_error(
                    now,
                    ProtocolError::new(1053, "08S01", "Server shutdown in progress"),
                );
            }
        }
        self.drive(now);
    }

    // ---- outputs ----

    /// The next bytes to write, for either peer.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline; call [`handle_timeout`](Self::handle_timeout) when it passes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        // Asked after every call: a plain fold, without building an iterator chain.
        let mut next = self.frontend.poll_timeout();
        if let Some(b) = self.backend() {
            next = earliest(next, b.poll_timeout());
        }
        if self.migration.is_some() {
            next = earliest(next, self.migration_poll_timeout());
        }
        for t in self.timers {
            next = earliest(next, t);
        }
        next
    }

    // ---- internals ----

    /// True when `conn` is the session's backend connection (open or being opened).
    fn is_current(&self, conn: BackendConnId) -> bool {
        self.backend.as_ref().is_some_and(|l| l.id == conn)
    }

    fn current_backend(&mut self, id: BackendConnId) -> Option<&mut Backend> {
        self.backend
            .as_mut()
            .filter(|l| l.id == id)
            .and_then(|l| l.conn.as_mut())
    }

    fn backend_mut(&mut self) -> Option<&mut Backend> {
        self.backend.as_mut().and_then(|l| l.conn.as_mut())
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    fn timer_passed(&self, t: Timer, now: Instant) -> bool {
        self.timers[t as usize].is_some_and(|at| at <= now)
    }

    fn enter_ready(&mut self, now: Instant) {
        self.phase = Phase::Ready;
        let idle = self.config.idle_timeout.map(|d| now + d);
        self.set_timer(Timer::Idle, idle);
        // An idle session keeps small buffers, not the high-water mark of its last burst (the
        // roles and their decoders do the same). Only well past what a command uses: shrinking
        // what the next command grows again would cost two reallocations per command.
        if self.backend_out.capacity() > crate::wire::RETAINED_BUFFER {
            self.backend_out = BytesMut::new();
        }
        if self.transmits.capacity() > IDLE_QUEUE_MAX {
            self.transmits.shrink_to(IDLE_QUEUE);
        }
        if self.events.capacity() > IDLE_QUEUE_MAX {
            self.events.shrink_to(IDLE_QUEUE);
        }
        if self.scratch.capacity() > IDLE_SCRATCH_MAX {
            self.scratch.shrink_to(IDLE_SCRATCH);
        }
        // The rest goes once it stays idle (not per command: the next one would allocate it
        // all again).
        self.set_timer(Timer::Release, Some(now + IDLE_RELEASE));
    }

    /// An idle session lets go of what only a running command needs: its queues, coalescing
    /// buffers and the roles' (each allocates again when next used). Queues the owner has not
    /// drained yet are kept.
    fn release_buffers(&mut self) {
        if self.transmits.is_empty() {
            self.transmits = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.backend_out.is_empty() {
            self.backend_out = BytesMut::new();
        }
        self.scratch = Vec::new();
        self.frontend.release_buffers();
        if let Some(b) = self.backend_mut() {
            b.release_buffers();
        }
    }

    /// Processes the roles' events until neither has any, then collects their output.
    fn drive(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.frontend.poll_event() {
                progressed = true;
                self.on_frontend_event(now, event);
            }
            while let Some(event) = self.backend_mut().and_then(Backend::poll_event) {
                progressed = true;
                self.on_backend_event(now, event);
            }
            if self.migration.is_some() {
                progressed |= self.drive_migration_backend(now);
            }
            if !progressed {
                break;
            }
        }
        self.collect_transmits();
    }

    fn collect_transmits(&mut self) {
        while let Some(data) = self.frontend.poll_transmit() {
            self.transmits.push_back(Transmit {
                peer: Peer::Client,
                data,
            });
        }
        if self.migration.is_some() {
            self.collect_migration_transmits();
        }
        let Some(link) = self.backend.as_mut() else {
            return;
        };
        let peer = Peer::Backend(link.id);
        let Some(backend) = link.conn.as_mut() else {
            return;
        };
        while let Some(chunk) = backend.poll_transmit() {
            if chunk.len() < ZERO_COPY_THRESHOLD {
                if self.backend_out.is_empty() && !backend.has_transmit() {
                    // A lone small chunk (a command: header and payload are one chunk already)
                    // goes as it is: copying it would only make the same single write.
                    self.transmits.push_back(Transmit { peer, data: chunk });
                    continue;
                }
                self.backend_out.extend_from_slice(&chunk);
            } else {
                if !self.backend_out.is_empty() {
                    let data = self.backend_out.split().freeze();
                    self.transmits.push_back(Transmit { peer, data });
                }
                self.transmits.push_back(Transmit { peer, data: chunk });
            }
        }
        if !self.backend_out.is_empty() {
            let data = self.backend_out.split().freeze();
            self.transmits.push_back(Transmit { peer, data });
        }
    }

    fn on_frontend_event(&mut self, now: Instant, event: frontend::Event) {
        match event {
            frontend::Event::ClientLogin(login) => {
                self.remember_login(LoginInfo::new(
                    None,
                    login.collation,
                    login.attributes.clone(),
                ));
                self.on_client_login(now, login)
            }
            frontend::Event::Authenticated(auth) => {
                self.remember_login(LoginInfo::new(
                    Some(auth.secret.clone()),
                    auth.collation,
                    auth.attributes.clone(),
                ));
                self.on_authenticated(now, auth)
            }
            frontend::Event::AuthPacket(data) => {
                if let Some(b) = self.backend_mut() {
                    // A refusal means the backend already failed; its Closed event follows.
                    let _ = b.send_auth_data(now, &data);
                }
            }
            frontend::Event::Command(command) => self.on_command(now, command),
            frontend::Event::CommandPacket(data) => self.on_command_packet(now, data),
            frontend::Event::Closed { reason } => {
                let reason = self.close_reason.take().unwrap_or(match reason {
                    frontend::CloseReason::Quit => CloseReason::Quit,
                    other => CloseReason::Frontend(other),
                });
                self.release_backend(now);
                self.finish(reason);
            }
            // Events a later frontend may add change nothing the session relies on.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    fn on_backend_event(&mut self, now: Instant, event: crate::backend::Event) {
        use crate::backend::Event as B;
        match event {
            B::Connected(info) => {
                self.on_backend_connected(now, info);
                self.start_tracking(now);
            }
            B::AuthFailed { error, .. } => self.on_backend_refused(now, error),
            B::Response { payload, kind } => match self.phase {
                Phase::Login(_) => self.relay_login_packet(now, payload, kind),
                Phase::Command(_) => self.relay_response(now, payload, kind),
                Phase::Internal(_) => self.on_internal_packet(&payload, kind),
                _ => {}
            },
            B::ResponseComplete(summary) if matches!(self.phase, Phase::Internal(_)) => {
                self.on_internal_complete(now, summary)
            }
            B::ResponseComplete(summary) => self.on_response_complete(now, summary),
            B::Closed { error } => self.on_backend_closed(now, error),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// The backend connection is gone (error, or after COM_QUIT).
    fn on_backend_closed(&mut self, now: Instant, error: Option<BackendError>) {
        let Some(link) = self.backend.as_ref() else {
            return;
        };
        let id = link.id;
        if matches!(self.phase, Phase::Login(_)) {
            return self.login_failed(now, LoginFailure::Lost(error.into()));
        }
        // ferry's own limit on backend packets is ferry's to report, to a client waiting.
        let answering = match self.phase {
            Phase::Command(_) => true,
            Phase::Internal(_) => self.held.is_some(),
            _ => false,
        };
        let own_error = match &error {
            Some(BackendError::Decode(d @ crate::DecodeError::PacketTooLarge { .. }))
                if answering =>
            {
                Some(ProtocolError::from_decode(d))
            }
            _ => None,
        };
        self.collect_transmits();
        self.backend = None;
        self.events.push_back(Event::CloseBackend { conn: id });
        if !matches!(self.phase, Phase::Handshake | Phase::Closed) {
            self.backend_lost(now, error.into(), own_error);
        }
    }

    /// Lets go of the backend connection: COM_QUIT if it is idle (a clean quit in the server's
    /// log), then [`Event::CloseBackend`]. A connection with a response in flight cannot be reused,
    /// so it is simply closed.
    fn release_backend(&mut self, now: Instant) {
        if let Some(b) = self.backend_mut() {
            if b.is_idle() {
                // Ready, so the command is accepted (the error case cannot occur).
                let _ = b.send_raw_command(now, Bytes::from_static(&[Command::COM_QUIT]));
            }
        }
        self.collect_transmits();
        if let Some(link) = self.backend.take() {
            self.events.push_back(Event::CloseBackend { conn: link.id });
        }
    }

    /// Shutting down, between statements: closes, unless the client is inside a transaction,
    /// which it may finish first.
    fn finish_shutdown(&mut self, now: Instant) {
        if !self.state.in_transaction() {
            self.shutdown_now(now);
        }
    }

    fn shutdown_now(&mut self, now: Instant) {
        self.release_backend(now);
        self.close_reason = Some(CloseReason::Shutdown);
        self.frontend.close(now);
    }

    /// Queues `Closed` once the frontend is closed; nothing happens after.
    fn finish(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.collect_transmits();
        if let Some(link) = self.backend.take() {
            self.events.push_back(Event::CloseBackend { conn: link.id });
        }
        self.abort_migration();
        self.phase = Phase::Closed;
        self.timers = [None; TIMERS];
        self.events.push_back(Event::Closed { reason });
    }
}

#[cfg(test)]
mod tests;
