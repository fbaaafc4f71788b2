//! The frontend role: ferry as the server a MySQL client talks to.
//!
//! A [`Frontend`] owns one client connection's protocol state: it sends the greeting, upgrades to
//! TLS on an SSLRequest (terminating TLS in memory with [`crate::tls::TlsSession`]), runs the
//! authentication exchange, and then decodes each command into an [`Event::Command`] for its owner
//! to answer. It never touches a socket or a clock: bytes and `now` go in, bytes, events and a
//! deadline come out. Follows the MySQL "Connection Phase" and "Command Phase" pages
//! (`dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html`).
//!
//! # Phases
//!
//! ```text
//! new() ── greeting ──► AwaitHello ── SSLRequest ──► (TLS) AwaitHello
//!   AwaitHello ── pre-4.1 client ──────────────► ERR 1251, Closed
//!              ── plaintext while require_tls ──► ERR 3159, Closed
//!              ── HandshakeResponse41:
//!                   proxy mode:       ProxyAuth (see `auth.rs`) ── Deny ──► ERR 1045, Closed
//!                                                                └ Accept ─► Event::Authenticated
//!                   passthrough mode: Event::ClientLogin ─► PassthroughOwner
//!   PassthroughOwner ── send_auth_packet() ─► PassthroughClient ── packet ─► Event::AuthPacket
//!                    ── finish_auth(Ok) ─► OK, Idle;  finish_auth(Err) ─► ERR, Closed
//!   AwaitLogin (after Authenticated) ── accept_login() ─► OK, Idle
//!                                    ── reject_login(e) ─► ERR e, Closed
//!   any handshake phase ── deadline passes ─► ERR 1043 "Bad handshake", Closed
//!   Idle ── command ─► Event::Command, Busy ── send_*()… end_response() ─► Idle
//!        ── COM_QUIT ─► Closed;  unknown command ─► ERR 1047, Idle
//!        ── COM_CHANGE_USER without a body ─► greeting, Rehandshake (`rehandshake.rs`)
//!        ── malformed, oversized, out of order: see the table below
//! ```
//!
//! # Malformed packets
//!
//! In the command phase the frontend answers as MariaDB 10.11 does (measured on a raw socket;
//! `tests/tests/proxy_malformed.rs` compares a proxy's answers with the server's), and leaves to
//! the server what only the server can judge:
//!
//! | the client sends | the frontend | the client gets |
//! |---|---|---|
//! | an empty packet (`00 00 00 00`) | answers it as COM_SLEEP | ERR 1047 `08S01` "Unknown command" (id 1); the connection goes on |
//! | a command it cannot read (a COM_STMT_CLOSE or COM_STMT_RESET without its 4-byte id, a short COM_STMT_EXECUTE...) | hands it out as received ([`ClientCommand::parse`] fails) | what the server answers: nothing for COM_STMT_CLOSE (whose id MariaDB reads past the end of the packet), an ERR for most others; the connection goes on |
//! | a COM_CHANGE_USER the server refuses (a user name without its NUL, nothing after it, auth data past the end, no plugin name under `CLIENT_PLUGIN_AUTH`...; the rules are in [`crate::wire::Command::parse`]) | hands out `11 00` instead, which every server refuses whatever the capabilities it negotiated | the server's refusal: MariaDB's ERR 1047 "Unknown command" (id 1), a second late; the connection goes on |
//! | COM_CHANGE_USER without a body (`11`) | sends a new greeting (id 1) and reads a handshake response, as MariaDB does (`rehandshake.rs`) | the greeting, then the change's outcome |
//! | a packet over [`FrontendConfig::max_packet_size`] | fails as soon as the header is read | ERR 1153 `08S01` with the id after the header's; closed |
//! | a packet with the wrong sequence id | fails | ERR 1156 `08S01` "Got packets out of order" with the id expected (0 for a command); closed |
//!
//! # Driving it
//!
//! Methods fall in four groups: getters, `handle_*` (input and time), mutators (decisions taken
//! outside), and `poll_*`, which the driver drains until empty after **every** other call. Every
//! `handle_*` and mutator takes the current time, `now`, as its first argument:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use ferry_core::auth::{AuthPlugin, Credential};
//! use ferry_core::frontend::{AuthMode, Event, Frontend, FrontendConfig, UserEntry, UserTable};
//! use ferry_core::wire::Command;
//! use ferry_core::SeededRandom;
//!
//! let mut users = UserTable::new();
//! users.insert("app", UserEntry {
//!     credential: Credential::native_from_password(b"secret"),
//!     plugin: AuthPlugin::MysqlNativePassword,
//! });
//! let mut config = FrontendConfig::new(AuthMode::Proxy {
//!     users: Arc::new(users), sha2_cache: None, rsa: None,
//! });
//! config.auto_accept_login = true;
//! // The driver supplies OS randomness; a seed keeps the example deterministic.
//! let mut frontend = Frontend::new(
//!     Arc::new(config), 1, "127.0.0.1", Instant::now(), Box::new(SeededRandom::new(7)),
//! );
//! # let mut socket_reads: Vec<Vec<u8>> = Vec::new();
//! loop {
//!     while let Some(bytes) = frontend.poll_transmit() { /* write bytes to the socket */ }
//!     while let Some(event) = frontend.poll_event() {
//!         if let Event::Command(cmd) = event {
//!             let now = Instant::now();
//!             match cmd.parse() {
//!                 Ok(Command::Ping) => frontend.send_ok_empty(now).unwrap(),
//!                 _ => frontend
//!                     .send_error(now, &ferry_core::ProtocolError::new(1064, "42000", "no"))
//!                     .unwrap(),
//!             }
//!             frontend.end_response(now).unwrap();
//!         }
//!     }
//!     if frontend.is_closed() { break; }
//!     // Wait for the socket (only while `wants_input()`) or until `poll_timeout()`, then:
//!     match socket_reads.pop() {
//!         Some(bytes) => frontend.handle_input(Instant::now(), &bytes),
//!         None => break, // (the example has no socket)
//!     }
//!     frontend.handle_timeout(Instant::now());
//! }
//! ```
//!
//! # Back-pressure
//!
//! One command is outstanding at a time: after an [`Event::Command`], later packets stay buffered
//! until the owner calls [`Frontend::end_response`]. A client that pipelines keeps sending, so the
//! driver must stop reading from the socket while [`Frontend::wants_input`] is false (input
//! buffered beyond the outstanding command reached
//! [`FrontendConfig::input_buffer_cap`]). While nothing is outstanding the buffer holds at most
//! one partial packet, bounded by the packet size cap.
//!
//! # Events and payloads
//!
//! [`Event::Command`] carries the command's payload as owned `Bytes`, shared with the decoder's
//! input buffer (no copy), and [`ClientCommand::parse`] gives the typed view
//! ([`crate::wire::Command`]) borrowing from it. `parse` fails for a packet the frontend could not
//! read either and handed out for the server to judge (see above), and for a COM_STMT_EXECUTE of
//! a statement whose parameter count the frontend never saw in a prepare-OK.
//!
//! Errors are sticky: after a fatal error the frontend queues the ERR it owes (if any), then
//! [`Event::Closed`], and ignores all later input.

mod auth;
mod command;
mod config;
mod handshake;
mod rehandshake;
mod relay;
mod users;

pub use command::{column, ClientCommand};
pub use config::{
    default_capabilities, AuthMode, FrontendConfig, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_INPUT_BUFFER_CAP, HANDSHAKE_MAX_PACKET_SIZE,
};
pub use relay::ZERO_COPY_THRESHOLD;
pub use users::{Sha2Cache, UserEntry, UserTable};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::auth::{AuthPlugin, ClientSecret};
use crate::tls::{TlsError, TlsSession};
use crate::wire::{
    Capabilities, ErrPacket, HandshakeV10, OkPacket, PacketDecoder, ServerStatus, RETAINED_BUFFER,
};
use crate::{ProtocolError, RandomSource};

use self::auth::ProxyAuth;
use self::handshake::bad_handshake;

/// Something the owner must know or decide. Drained with [`Frontend::poll_event`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// `passthrough` mode: the client's handshake response. Relay it (or its credentials) to the
    /// backend, then answer with [`Frontend::send_auth_packet`] / [`Frontend::finish_auth`].
    ClientLogin(ClientLogin),
    /// `passthrough` mode: the client's answer to the packet last relayed with
    /// [`Frontend::send_auth_packet`] (payload only).
    AuthPacket(Bytes),
    /// `proxy` mode: the credentials check out. Log in to a backend if needed, then call
    /// [`Frontend::accept_login`] or [`Frontend::reject_login`] (unless `auto_accept_login`).
    Authenticated(Authenticated),
    /// A packet the client sent while a command is outstanding, after the owner asked for one
    /// with [`Frontend::read_command_packet`] (LOCAL INFILE contents, auth data in a
    /// COM_CHANGE_USER exchange). Payload only; the frontend keeps the sequence ids.
    CommandPacket(Bytes),
    /// A command to answer: send a response with the `send_*` mutators, then
    /// [`Frontend::end_response`] (also for commands without a response, such as
    /// COM_STMT_CLOSE, where nothing is sent).
    Command(ClientCommand),
    /// The connection is over; close the socket once [`Frontend::poll_transmit`] is drained.
    /// Nothing follows.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// The client's handshake response, owned, as `passthrough` mode hands it out.
#[derive(Debug, Clone)]
pub struct ClientLogin {
    /// User name.
    pub user: String,
    /// Initial database, if the client asked for one.
    pub database: Option<String>,
    /// Plugin the auth response is for (`None`: no `CLIENT_PLUGIN_AUTH`, a native scramble).
    pub plugin: Option<AuthPlugin>,
    /// The auth response, computed over [`Self::salt`].
    pub auth_response: Bytes,
    /// The salt of the greeting the response answers.
    pub salt: [u8; 20],
    /// The client's capabilities as sent (not intersected with the server's).
    pub client_capabilities: Capabilities,
    /// The client's collation id.
    pub collation: u8,
    /// Connection attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// True when the connection is under TLS.
    pub tls: bool,
}

/// A login whose credentials ferry verified (`proxy` mode).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// User name.
    pub user: String,
    /// Initial database, if the client asked for one: check it before accepting the login
    /// (MySQL answers an unknown one with 1049 `42000` "Unknown database 'x'").
    pub database: Option<String>,
    /// Plugin that verified the password.
    pub plugin: AuthPlugin,
    /// What the login revealed: SHA1(pw) (native), SHA256(pw) (caching_sha2 fast path) or the
    /// password (full authentication, cleartext), for logging in to backends as this user.
    pub secret: ClientSecret,
    /// Negotiated capabilities (client's ∩ server's).
    pub capabilities: Capabilities,
    /// The client's collation id.
    pub collation: u8,
    /// Connection attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// True when the connection is under TLS.
    pub tls: bool,
}

/// Why a frontend closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent COM_QUIT.
    Quit,
    /// The frontend sent this ERR and closed (refused login, bad packet, oversized packet...).
    Error(ProtocolError),
    /// The handshake did not finish in time (ERR 1043 was sent).
    HandshakeTimeout,
    /// The TLS layer failed; nothing more can be sent.
    Tls(TlsError),
    /// The owner called [`Frontend::close`].
    Local,
}

/// A mutator called when the frontend cannot do what it asks (API misuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The call does not fit the current phase.
    #[error("{call} is not allowed while the frontend is {phase}")]
    InvalidPhase {
        /// The method called.
        call: &'static str,
        /// The phase the frontend is in.
        phase: &'static str,
    },
}

#[derive(Debug)]
enum Phase {
    /// Greeting sent; waiting for an SSLRequest (unless `tls` already) or HandshakeResponse41.
    AwaitHello,
    /// `proxy` mode: waiting for the client's next auth packet.
    ProxyAuth(ProxyAuth),
    /// `passthrough` mode: waiting for the owner.
    PassthroughOwner,
    /// `passthrough` mode: a server packet was relayed; waiting for the client's answer.
    PassthroughClient,
    /// Credentials checked; waiting for `accept_login` / `reject_login`.
    AwaitLogin,
    /// Command phase, nothing outstanding.
    Idle,
    /// Command phase: a COM_CHANGE_USER without a body was answered with a new greeting, as
    /// MariaDB does; waiting for the handshake response (`rehandshake.rs`).
    Rehandshake,
    /// Command phase, a command outstanding.
    Busy {
        /// Its command byte.
        code: u8,
        /// No response packet sent yet.
        first_packet: bool,
    },
    Closed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::AwaitHello => "awaiting the handshake response",
            Phase::ProxyAuth(_) => "authenticating",
            Phase::PassthroughOwner => "awaiting the owner's auth packet",
            Phase::PassthroughClient => "awaiting the client's auth packet",
            Phase::AwaitLogin => "awaiting accept_login or reject_login",
            Phase::Idle => "idle",
            Phase::Rehandshake => "awaiting a handshake response to COM_CHANGE_USER",
            Phase::Busy { .. } => "answering a command",
            Phase::Closed => "closed",
        }
    }
}

/// The server side of one client connection. See the [module docs](self).
pub struct Frontend {
    config: Arc<FrontendConfig>,
    rng: Box<dyn RandomSource + Send>,
    connection_id: u32,
    peer_host: String,
    salt: [u8; 20],
    decoder: PacketDecoder,
    /// Boxed: most sessions run without TLS, and every session's struct is resident.
    tls: Option<Box<TlsSession>>,
    /// Encoded packets not yet handed to TLS or the wire.
    plain: BytesMut,
    /// Bytes ready for the socket.
    wire: BytesMut,
    /// Chunks ready for the socket *before* `wire` (zero-copy payloads from
    /// [`Frontend::send_packet_bytes`]); whatever is in `wire` was written after all of them.
    queued: VecDeque<Bytes>,
    /// The owner asked for the client's next packet during a command (`read_command_packet`).
    read_command_packet: bool,
    events: VecDeque<Event>,
    phase: Phase,
    /// Negotiated capabilities; the server's own until the client answers.
    caps: Capabilities,
    status: ServerStatus,
    deadline: Option<Instant>,
    user: Option<String>,
    database: Option<String>,
    /// Parameter counts from the prepare-OKs sent, for decoding COM_STMT_EXECUTE.
    param_counts: crate::IdMap<u16>,
    /// Collation and attributes of the handshake response, for the `Authenticated` event.
    pending_login: Option<(u8, Vec<(String, String)>)>,
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend")
            .field("connection_id", &self.connection_id)
            .field("phase", &self.phase.name())
            .field("tls", &self.tls.is_some())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Frontend {
    /// A connection from `peer_host` (used in "Access denied for user 'u'@'host'"), numbered
    /// `connection_id`. Queues the greeting with a fresh salt from `rng`; the handshake deadline
    /// is `now + config.handshake_timeout`.
    pub fn new(
        config: Arc<FrontendConfig>,
        connection_id: u32,
        peer_host: impl Into<String>,
        now: Instant,
        mut rng: Box<dyn RandomSource + Send>,
    ) -> Self {
        let salt = auth::fresh_salt(rng.as_mut());
        let caps = config.advertised_capabilities();
        let mut decoder = PacketDecoder::new(config.max_packet_size.min(HANDSHAKE_MAX_PACKET_SIZE));
        let mut greeting = Vec::new();
        HandshakeV10::new(
            config.server_version.as_bytes(),
            connection_id,
            &salt,
            caps,
            config.collation,
            config.status,
            config.default_plugin.name().as_bytes(),
        )
        .encode(&mut greeting);
        let mut plain = BytesMut::new();
        decoder.encode_packet(&mut plain, &greeting);
        let mut frontend = Self {
            status: config.status,
            deadline: Some(now + config.handshake_timeout),
            config,
            rng,
            connection_id,
            peer_host: peer_host.into(),
            salt,
            decoder,
            tls: None,
            plain,
            wire: BytesMut::new(),
            queued: VecDeque::new(),
            read_command_packet: false,
            events: VecDeque::new(),
            phase: Phase::AwaitHello,
            caps,
            user: None,
            database: None,
            param_counts: crate::IdMap::default(),
            pending_login: None,
        };
        frontend.flush();
        frontend
    }

    // ---- getters ----

    /// The connection id sent in the greeting.
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// The salt of the greeting.
    pub fn salt(&self) -> &[u8; 20] {
        &self.salt
    }

    /// Negotiated capabilities (the server's own before the client answered).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Status flags written into the OK and EOF packets the frontend builds.
    pub fn status(&self) -> ServerStatus {
        self.status
    }

    /// The user, once the client sent its handshake response.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The current database as the client asked for it at login (the owner tracks changes).
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// True once the connection upgraded to TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// True in the command phase (login OK sent).
    pub fn is_command_phase(&self) -> bool {
        matches!(
            self.phase,
            Phase::Idle | Phase::Rehandshake | Phase::Busy { .. }
        )
    }

    /// True once closed: only draining `poll_transmit` and `poll_event` remains.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the driver should read more from the socket. False once closed, and while the
    /// owner has something to do (a command outstanding, a login or auth packet to decide) and
    /// [`FrontendConfig::input_buffer_cap`] bytes are already buffered.
    pub fn wants_input(&self) -> bool {
        match self.phase {
            Phase::Closed => false,
            Phase::Busy { .. } | Phase::AwaitLogin | Phase::PassthroughOwner => {
                self.decoder.buffered_len() < self.config.input_buffer_cap
            }
            _ => true,
        }
    }

    // ---- input and time ----

    /// Bytes read from the client's socket (ciphertext once TLS is on).
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        if let Some(tls) = &mut self.tls {
            if let Err(e) = tls.read_ciphertext(bytes, self.decoder.buffer_mut()) {
                self.close_with(CloseReason::Tls(e), None);
                return;
            }
        } else {
            self.decoder.feed(bytes);
        }
        self.handle_timeout(now);
        self.process();
        self.flush();
    }

    /// The buffer the client's next bytes should be read into, so that they are not copied
    /// again: `None` under TLS (ciphertext goes through [`handle_input`](Self::handle_input)) and
    /// once closed. After appending to it, call [`handle_buffered`](Self::handle_buffered).
    pub fn input_buffer(&mut self) -> Option<&mut BytesMut> {
        if self.tls.is_some() || self.is_closed() {
            return None;
        }
        Some(self.decoder.buffer_mut())
    }

    /// Processes the bytes the driver appended to [`input_buffer`](Self::input_buffer): the
    /// same as [`handle_input`](Self::handle_input) without the copy. (Bytes that arrived with
    /// an SSLRequest are handed to TLS as they would be after `handle_input`.)
    pub fn handle_buffered(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.handle_timeout(now);
        self.process();
        self.flush();
    }

    /// Checks the handshake deadline: once it passed, ERR 1043 and close.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            let err = ProtocolError::new(1043, "08S01", "Bad handshake");
            self.close_with(CloseReason::HandshakeTimeout, Some(err));
        }
    }

    // ---- mutators: login ----

    /// The client's host is `host` (shown in "Access denied for user 'u'@'host'") rather than
    /// the one given to [`Frontend::new`]: the address a PROXY protocol header gave, read before
    /// the handshake response.
    pub fn set_peer_host(&mut self, host: impl Into<String>) {
        self.peer_host = host.into();
    }

    /// Sends the login OK and enters the command phase (after [`Event::Authenticated`]).
    pub fn accept_login(&mut self, _now: Instant) -> Result<(), FrontendError> {
        self.expect_phase("accept_login", |p| matches!(p, Phase::AwaitLogin))?;
        self.enter_command_phase();
        Ok(())
    }

    /// Refuses the login with `err` (e.g. 1049 "Unknown database") and closes.
    pub fn reject_login(&mut self, _now: Instant, err: ProtocolError) -> Result<(), FrontendError> {
        self.expect_phase("reject_login", |p| matches!(p, Phase::AwaitLogin))?;
        self.fail(err);
        Ok(())
    }

    /// `passthrough` mode: relays one server auth packet (AuthSwitchRequest, AuthMoreData...)
    /// to the client; its answer comes out as [`Event::AuthPacket`].
    pub fn send_auth_packet(&mut self, _now: Instant, payload: &[u8]) -> Result<(), FrontendError> {
        self.expect_phase("send_auth_packet", |p| matches!(p, Phase::PassthroughOwner))?;
        self.decoder.encode_packet(&mut self.plain, payload);
        self.phase = Phase::PassthroughClient;
        self.process();
        self.flush();
        Ok(())
    }

    /// `passthrough` mode: ends the exchange: `Ok` sends the login OK (command phase), `Err`
    /// sends that ERR and closes.
    pub fn finish_auth(
        &mut self,
        _now: Instant,
        result: Result<(), ProtocolError>,
    ) -> Result<(), FrontendError> {
        self.expect_phase("finish_auth", |p| matches!(p, Phase::PassthroughOwner))?;
        match result {
            Ok(()) => self.enter_command_phase(),
            Err(err) => self.fail(err),
        }
        Ok(())
    }

    /// Closes the connection without an ERR (e.g. the server is shutting down).
    pub fn close(&mut self, _now: Instant) {
        if !self.is_closed() {
            self.close_with(CloseReason::Local, None);
        }
    }

    // ---- outputs ----

    /// Bytes to write to the socket, already encrypted under TLS.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.queued.pop_front() {
            return Some(chunk);
        }
        self.flush();
        if self.wire.is_empty() {
            return None;
        }
        let chunk = self.wire.split().freeze();
        if chunk.len() + self.wire.capacity() > RETAINED_BUFFER {
            // After a large response: let the memory go with the chunk rather than keep it for
            // an idle session.
            self.wire = BytesMut::new();
        }
        Some(chunk)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Lets go of the memory of buffers and queues that hold nothing (an idle session's, once
    /// its owner drained it): each allocates again when next used. Not for every command:
    /// the steady state reuses them.
    pub fn release_buffers(&mut self) {
        self.decoder.release_buffer();
        if self.plain.is_empty() {
            self.plain = BytesMut::new();
        }
        if self.wire.is_empty() {
            self.wire = BytesMut::new();
        }
        if self.queued.is_empty() {
            self.queued = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Bytes and slots its buffers and queues hold (tests of what an idle session keeps).
    #[cfg(test)]
    pub(crate) fn retained_capacity(&self) -> usize {
        self.decoder.buffer_capacity()
            + self.plain.capacity()
            + self.wire.capacity()
            + self.queued.capacity()
            + self.events.capacity()
    }

    /// When to call [`Self::handle_timeout`]: the handshake deadline, until login completes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            None
        } else {
            self.deadline
        }
    }

    // ---- internals ----

    fn expect_phase(
        &self,
        call: &'static str,
        ok: impl Fn(&Phase) -> bool,
    ) -> Result<(), FrontendError> {
        if ok(&self.phase) {
            Ok(())
        } else {
            Err(FrontendError::InvalidPhase {
                call,
                phase: self.phase.name(),
            })
        }
    }

    /// Decodes and handles every packet the current phase may consume.
    fn process(&mut self) {
        loop {
            match self.phase {
                Phase::AwaitHello
                | Phase::ProxyAuth(_)
                | Phase::PassthroughClient
                | Phase::Idle
                | Phase::Rehandshake => {}
                Phase::Busy { .. } if self.read_command_packet => {}
                _ => return,
            }
            let packet = match self.decoder.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(e) => {
                    let too_large = matches!(e, crate::DecodeError::PacketTooLarge { .. });
                    let err = if self.is_command_phase() || too_large {
                        ProtocolError::from_decode(&e)
                    } else {
                        bad_handshake()
                    };
                    if let Phase::Rehandshake = self.phase {
                        let out_of_order = matches!(e, crate::DecodeError::OutOfOrder { .. });
                        self.fail_rehandshake(err, out_of_order);
                    } else {
                        self.fail(err);
                    }
                    return;
                }
            };
            match std::mem::replace(&mut self.phase, Phase::Closed) {
                Phase::AwaitHello => self.on_hello(packet.payload),
                Phase::ProxyAuth(mut auth) => {
                    let step = auth.handle(&mut self.auth_context_parts(), &packet.payload);
                    self.apply_step(auth, step);
                }
                Phase::PassthroughClient => {
                    self.phase = Phase::PassthroughOwner;
                    self.events.push_back(Event::AuthPacket(packet.payload));
                }
                Phase::Idle => {
                    self.phase = Phase::Idle;
                    self.on_command(packet.payload);
                }
                Phase::Rehandshake => self.on_rehandshake_response(packet.payload),
                busy @ Phase::Busy { .. } => {
                    self.phase = busy;
                    self.read_command_packet = false;
                    self.events.push_back(Event::CommandPacket(packet.payload));
                }
                other => self.phase = other,
            }
        }
    }
}

impl Frontend {
    /// Sends the login OK; from now on packets are commands.
    fn enter_command_phase(&mut self) {
        self.encode_ok(&OkPacket {
            eof: false,
            affected_rows: 0,
            last_insert_id: 0,
            status: self.status,
            warnings: 0,
            info: b"",
            session_state: Vec::new(),
        });
        self.deadline = None;
        self.pending_login = None;
        self.decoder
            .set_max_packet_size(self.config.max_packet_size);
        self.decoder.reset_sequence();
        self.phase = Phase::Idle;
        self.process();
        self.flush();
    }

    fn encode_ok(&mut self, ok: &OkPacket<'_>) {
        let mut payload = Vec::new();
        ok.encode(&mut payload, self.caps);
        self.decoder.encode_packet(&mut self.plain, &payload);
    }

    fn encode_err(&mut self, err: &ProtocolError) {
        let mut payload = Vec::new();
        ErrPacket::from(err).encode(&mut payload, self.caps);
        self.decoder.encode_packet(&mut self.plain, &payload);
    }

    /// Sends `err` and closes.
    fn fail(&mut self, err: ProtocolError) {
        self.close_with(CloseReason::Error(err.clone()), Some(err));
    }

    fn close_with(&mut self, reason: CloseReason, err: Option<ProtocolError>) {
        if let Some(err) = err {
            self.encode_err(&err);
        }
        let tls_failed = matches!(reason, CloseReason::Tls(_));
        self.phase = Phase::Closed;
        self.deadline = None;
        if tls_failed {
            // The TLS stream is broken: nothing more can be sent on it.
            self.plain.clear();
        } else {
            self.flush();
            if let Some(tls) = &mut self.tls {
                tls.close();
            }
            self.flush();
        }
        self.events.push_back(Event::Closed { reason });
    }

    /// Moves encoded packets to the wire buffer, through TLS when it is on.
    fn flush(&mut self) {
        match &mut self.tls {
            None => {
                // The two buffers trade places rather than `plain` being split off: split, both
                // would share one allocation with the chunk in flight, so encoding the next
                // response could never reuse it (an allocation per response). Swapped, each is
                // reused as soon as the driver drops the chunk frozen from it.
                if self.plain.is_empty() {
                    return;
                }
                if self.wire.is_empty() {
                    std::mem::swap(&mut self.plain, &mut self.wire);
                } else {
                    self.wire.extend_from_slice(&self.plain);
                    self.plain.clear();
                    if self.plain.capacity() > RETAINED_BUFFER {
                        self.plain = BytesMut::new();
                    }
                }
            }
            Some(tls) => {
                if !self.plain.is_empty() {
                    let written = tls.write_plaintext(&self.plain);
                    // Cleared, not split: the buffer is reused for the next packets.
                    self.plain.clear();
                    if let Err(e) = written {
                        self.phase = Phase::Closed;
                        self.deadline = None;
                        self.events.push_back(Event::Closed {
                            reason: CloseReason::Tls(e),
                        });
                        return;
                    }
                }
                let mut out = Vec::new();
                tls.take_ciphertext(&mut out);
                self.wire.extend_from_slice(&out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
