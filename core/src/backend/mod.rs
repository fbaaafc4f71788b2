//! The backend role: ferry as a *client* of a MySQL or MariaDB server, as a sans-IO state machine.
//!
//! A [`Backend`] reads the server's greeting, upgrades to TLS if configured (SSLRequest, then
//! rustls in memory), sends the HandshakeResponse41, answers the auth plugins
//! (`mysql_native_password`, `caching_sha2_password` fast and full, `mysql_clear_password`) and
//! reports [`Event::Connected`]. Then it sends commands — typed ([`Backend::send_command`]) or
//! relayed untouched ([`Backend::send_raw_command`]) — and reports every response packet as
//! [`Event::Response`] (a zero-copy `Bytes` slice of the input, to forward as is) followed by
//! [`Event::ResponseComplete`] with what the response changed. It keeps the server status flags,
//! the current schema, tracked system variables and the prepared statements' shapes.
//!
//! Follows `page_protocol_connection_phase` and `page_protocol_command_phase` of the MySQL protocol
//! documentation; response tracking is in [`response`](self) (see [`PacketKind`]).
//!
//! # Driving it
//!
//! Methods come in four groups: getters; inputs ([`handle_input`](Backend::handle_input),
//! [`handle_eof`](Backend::handle_eof), [`handle_timeout`](Backend::handle_timeout)); mutators
//! (commands, LOCAL INFILE data); and outputs ([`poll_transmit`](Backend::poll_transmit),
//! [`poll_event`](Backend::poll_event), [`poll_timeout`](Backend::poll_timeout)), drained until
//! empty after every input or mutator. Errors are sticky: after one, the machine emits
//! [`Event::Closed`] with it and nothing more.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Instant;
//! use ferry_core::auth::{ClientSecret, Password};
//! use ferry_core::backend::{Backend, BackendConfig, Event};
//! use ferry_core::wire::{Command, Query};
//! use ferry_core::SeededRandom; // a driver passes a CSPRNG-backed RandomSource
//!
//! let config = BackendConfig::new("app", ClientSecret::Plaintext(Password::new("secret")));
//! let mut backend = Backend::new(Instant::now(), config, Box::new(SeededRandom::new(1)));
//! let mut sock = TcpStream::connect("127.0.0.1:3306")?;
//! let mut buf = vec![0u8; 64 * 1024];
//! let mut sent_query = false;
//! loop {
//!     while let Some(bytes) = backend.poll_transmit() {
//!         sock.write_all(&bytes)?;
//!     }
//!     while let Some(event) = backend.poll_event() {
//!         match event {
//!             Event::Connected(_) if !sent_query => {
//!                 let query = Command::Query(Query { attributes: vec![], sql: b"SELECT 1" });
//!                 backend.send_command(Instant::now(), &query).expect("idle");
//!                 sent_query = true;
//!             }
//!             Event::Response { payload, kind } => println!("{kind:?}: {} bytes", payload.len()),
//!             Event::ResponseComplete(summary) => {
//!                 println!("done: {summary:?}");
//!                 return Ok(());
//!             }
//!             Event::Closed { error } => panic!("closed: {error:?}"),
//!             _ => {}
//!         }
//!     }
//!     // A real driver waits for readability or for `backend.poll_timeout()`.
//!     let n = sock.read(&mut buf)?;
//!     if n == 0 {
//!         backend.handle_eof(Instant::now());
//!     } else {
//!         backend.handle_input(Instant::now(), &buf[..n]);
//!     }
//!     backend.handle_timeout(Instant::now());
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

mod addr;
mod auth;
mod config;
mod error;
mod login;
mod response;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

pub use addr::{AddrError, BackendAddr, ResolveError};
pub use config::{BackendConfig, BackendTls, FixedAuth, RelayedAuth, DEFAULT_COLLATION};
pub use error::{BackendError, UsageError};
pub use response::{PacketKind, ResponseSummary, SessionChanges};

use self::auth::{AuthContext, ClientAuth};
use self::response::{has_response, ResponseTracker, Step};
use crate::auth::{AuthPlugin, ClientSecret};
use crate::frontend::ZERO_COPY_THRESHOLD;
use crate::tls::TlsSession;
use crate::wire::{
    frames, AuthSwitchRequest, Capabilities, ChangeUser, Command, PacketDecoder, ServerStatus,
    RETAINED_BUFFER,
};
use crate::{ProtocolError, RandomSource};

/// What a successful login established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedInfo {
    /// The server's version string (MariaDB's may start with `5.5.5-`).
    pub server_version: String,
    /// The server's connection (thread) id, e.g. for `KILL`.
    pub connection_id: u32,
    /// The negotiated capabilities: what both sides agreed to.
    pub capabilities: Capabilities,
    /// What the server offered.
    pub server_capabilities: Capabilities,
    /// Status flags from the final OK.
    pub status: ServerStatus,
    /// The plugin that authenticated the login.
    pub auth_plugin: AuthPlugin,
    /// True when the connection is encrypted.
    pub tls: bool,
    /// Session state reported by the final OK (schema, tracked variables).
    pub session: SessionChanges,
}

/// What a [`Backend`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The login succeeded; commands may be sent.
    Connected(ConnectedInfo),
    /// The server refused the login (or the connection) with this ERR. [`Event::Closed`] follows.
    AuthFailed {
        /// The ERR, decoded.
        error: ProtocolError,
        /// The ERR packet's payload, to relay as is.
        payload: Bytes,
    },
    /// One packet of the current command's response: its payload exactly as received (a slice
    /// of the input, never re-encoded), and what it is.
    Response {
        /// The payload (without the frame header).
        payload: Bytes,
        /// What the packet is.
        kind: PacketKind,
    },
    /// The current command's response is complete; what it did.
    ResponseComplete(ResponseSummary),
    /// The connection is over: `None` after COM_QUIT, else the (sticky) error. Nothing follows.
    Closed {
        /// Why, unless it was an orderly quit.
        error: Option<BackendError>,
    },
}

/// The shape of a prepared statement, from its prepare-OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedStatement {
    /// Number of parameters (needed to parse a COM_STMT_EXECUTE for it).
    pub params: u16,
    /// Number of result columns.
    pub columns: u16,
}

/// One timer per deadline kind; [`Backend::poll_timeout`] is the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Connect,
    Command,
}

/// A COM_CHANGE_USER whose authentication the backend itself answers.
#[derive(Debug)]
struct OwnChangeUser {
    auth: ClientAuth,
    secret: ClientSecret,
    user: String,
}

/// What a successful response changes beyond what its packets say.
#[derive(Debug, Default)]
struct Effect {
    init_db: Option<Vec<u8>>,
    change_user: Option<(String, Vec<u8>)>,
    reset: bool,
}

#[derive(Debug)]
enum State {
    AwaitGreeting,
    Authenticating(ClientAuth),
    /// A relayed login ([`BackendConfig::relayed_auth`]): `awaiting_owner` while the server waits
    /// for the owner's [`Backend::send_auth_data`].
    RelayedAuth {
        awaiting_owner: bool,
    },
    Ready,
    InFlight {
        tracker: Box<ResponseTracker>,
        effect: Effect,
        /// `Some` for [`Backend::change_user`]; `None` for relayed exchanges.
        own_auth: Option<OwnChangeUser>,
        /// A relayed COM_CHANGE_USER waits for the owner's auth data.
        awaiting_auth_data: bool,
    },
    Quitting,
    Closed,
}

/// A connection to a MySQL/MariaDB server, without I/O. See the [module docs](self).
pub struct Backend {
    config: BackendConfig,
    rng: Box<dyn RandomSource + Send>,
    decoder: PacketDecoder,
    /// Boxed: most connections run without TLS, and every session's struct is resident.
    tls: Option<Box<TlsSession>>,
    transmit: VecDeque<Bytes>,
    /// Small outgoing packets are encoded here and split off: header and payload in one chunk,
    /// and, once the owner drops the chunk, the same memory serves the next command.
    out: BytesMut,
    events: VecDeque<Event>,
    state: State,
    /// The tracker of the last finished response, reused by the next command (no allocation).
    spare_tracker: Option<Box<ResponseTracker>>,
    /// Set once [`Event::Closed`] is queued; nothing happens after.
    closed: bool,
    /// The server's handshake arrived (not an ERR in its place).
    greeted: bool,
    /// Rows arrived in this input: the command deadline is re-armed once after decoding it,
    /// not per row (every packet of one input has the same `now`).
    rearm_command_timer: bool,
    timers: [Option<Instant>; 2],
    error: Option<BackendError>,
    server_version: String,
    connection_id: u32,
    server_caps: Capabilities,
    caps: Capabilities,
    salt: Vec<u8>,
    auth_plugin: AuthPlugin,
    status: ServerStatus,
    schema: Option<Vec<u8>>,
    variables: BTreeMap<Vec<u8>, Vec<u8>>,
    statements: crate::IdMap<PreparedStatement>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("state", &self.state)
            .field("user", &self.config.user)
            .field("connection_id", &self.connection_id)
            .field("status", &self.status)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A connection about to read the server's greeting. The connect deadline starts at `now`.
    /// `rng` pads RSA encryption; drivers pass a CSPRNG.
    pub fn new(now: Instant, config: BackendConfig, rng: Box<dyn RandomSource + Send>) -> Self {
        let mut backend = Self {
            decoder: PacketDecoder::new(config.max_packet_size),
            timers: [None; 2],
            rng,
            tls: None,
            transmit: VecDeque::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            state: State::AwaitGreeting,
            spare_tracker: None,
            closed: false,
            greeted: false,
            rearm_command_timer: false,
            error: None,
            server_version: String::new(),
            connection_id: 0,
            server_caps: Capabilities::EMPTY,
            caps: Capabilities::EMPTY,
            salt: Vec::new(),
            auth_plugin: AuthPlugin::MysqlNativePassword,
            status: ServerStatus::default(),
            schema: config.database.as_ref().map(|d| d.as_bytes().to_vec()),
            variables: BTreeMap::new(),
            statements: crate::IdMap::default(),
            config,
        };
        backend.set_timer(Timer::Connect, Some(now + backend.config.connect_timeout));
        backend
    }

    // ---- getters ----

    /// True once logged in and until closed.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Ready | State::InFlight { .. })
    }

    /// True when logged in with no command outstanding: a command may be sent.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// True once [`Event::Closed`] was emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True once the server's greeting (a handshake) arrived. An [`Event::AuthFailed`] while this
    /// is false is the server refusing the *connection* with an ERR in place of its greeting
    /// (1040 "Too many connections", 1129 host blocked...): nothing of the login was sent yet,
    /// so another server may take it.
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// The error the connection stopped on.
    pub fn error(&self) -> Option<&BackendError> {
        self.error.as_ref()
    }

    /// The negotiated capabilities (empty before the greeting).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// What the server offered.
    pub fn server_capabilities(&self) -> Capabilities {
        self.server_caps
    }

    /// The server's version string.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The server's connection id.
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// The latest server status flags (transaction, autocommit, cursor...).
    pub fn status(&self) -> ServerStatus {
        self.status
    }

    /// True while a transaction is open on the server.
    pub fn in_transaction(&self) -> bool {
        self.status.contains(ServerStatus::IN_TRANS)
    }

    /// The current schema, as far as ferry knows (initial database, COM_INIT_DB, session
    /// tracking, COM_CHANGE_USER).
    pub fn schema(&self) -> Option<&[u8]> {
        self.schema.as_deref()
    }

    /// System variables the server reported as changed (latest value per name).
    pub fn system_variables(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.variables
    }

    /// The shape of prepared statement `id`, if it is open.
    pub fn statement(&self, id: u32) -> Option<PreparedStatement> {
        self.statements.get(&id).copied()
    }

    /// The user currently logged in.
    pub fn user(&self) -> &str {
        &self.config.user
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    // ---- inputs ----

    /// Feeds bytes read from the server's socket.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.is_finished() {
            return;
        }
        if let Some(tls) = &mut self.tls {
            if let Err(e) = tls.read_ciphertext(bytes, self.decoder.buffer_mut()) {
                return self.fail(e.into());
            }
            // TLS handshake records and alerts go back at once.
            self.flush_tls();
        } else {
            self.decoder.feed(bytes);
        }
        self.decode_input(now);
    }

    /// The buffer the server's next bytes should be read into, so that they are not copied
    /// again: `None` under TLS (ciphertext goes through [`handle_input`](Self::handle_input)) and
    /// once closed. After appending to it, call [`handle_buffered`](Self::handle_buffered).
    pub fn input_buffer(&mut self) -> Option<&mut BytesMut> {
        if self.tls.is_some() || self.is_finished() {
            return None;
        }
        Some(self.decoder.buffer_mut())
    }

    /// Processes the bytes the driver appended to [`input_buffer`](Self::input_buffer): the
    /// same as [`handle_input`](Self::handle_input) without the copy.
    pub fn handle_buffered(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        self.decode_input(now);
    }

    /// Handles every complete packet buffered.
    fn decode_input(&mut self, now: Instant) {
        loop {
            if self.is_finished() {
                return;
            }
            match self.decoder.next_packet() {
                Ok(Some(packet)) => {
                    if let Err(e) = self.on_packet(now, packet.payload) {
                        return self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => return self.fail(e.into()),
            }
        }
        if std::mem::take(&mut self.rearm_command_timer) {
            self.arm_command_timer(now);
        }
    }

    /// The server closed its end of the connection.
    pub fn handle_eof(&mut self, _now: Instant) {
        match self.state {
            State::Closed => {}
            State::Quitting => self.close(None),
            _ => self.fail(BackendError::PeerClosed),
        }
    }

    /// Fires the deadlines that passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if self.timer(Timer::Connect).is_some_and(|t| t <= now) {
            return self.fail(BackendError::Timeout {
                phase: "connecting and authenticating",
            });
        }
        if self.timer(Timer::Command).is_some_and(|t| t <= now) {
            self.fail(BackendError::Timeout {
                phase: "waiting for a command's response",
            });
        }
    }

    // ---- mutators ----

    /// Sends a typed command. A COM_CHANGE_USER sent this way is relayed: its auth packets come as
    /// events and the owner answers with [`send_auth_data`](Self::send_auth_data); use
    /// [`change_user`](Self::change_user) to have the backend answer them itself.
    pub fn send_command(&mut self, now: Instant, command: &Command<'_>) -> Result<(), UsageError> {
        let mut payload = BytesMut::new();
        command.encode(self.caps, &mut payload);
        self.send_raw_command(now, payload.freeze())
    }

    /// Sends a command payload untouched (its first byte is the command code), e.g. relayed from
    /// a client. The backend restarts the sequence ids and tracks the response.
    pub fn send_raw_command(&mut self, now: Instant, payload: Bytes) -> Result<(), UsageError> {
        self.check_idle()?;
        let Some(&code) = payload.first() else {
            return Err(UsageError::EmptyCommand);
        };
        let mut effect = Effect::default();
        match code {
            Command::COM_INIT_DB => effect.init_db = Some(payload[1..].to_vec()),
            Command::COM_RESET_CONNECTION => effect.reset = true,
            Command::COM_STMT_CLOSE => {
                if let Some(id) = payload.get(1..5) {
                    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                    self.statements.remove(&id);
                }
            }
            Command::COM_CHANGE_USER => {
                if let Ok(Command::ChangeUser(c)) = Command::parse(&payload, self.caps, |_| None) {
                    let user = String::from_utf8_lossy(c.user).into_owned();
                    effect.change_user = Some((user, c.database.to_vec()));
                }
            }
            _ => {}
        }
        self.decoder.reset_sequence();
        self.write_payload(payload);
        self.after_command_sent(now, code, effect, None);
        Ok(())
    }

    /// Sends COM_CHANGE_USER for `user` with `secret`, answering the auth exchange itself. The
    /// response's auth packets are not reported; [`Event::ResponseComplete`] says how it ended.
    /// On success the session is reset: prepared statements and tracked variables are forgotten.
    pub fn change_user(
        &mut self,
        now: Instant,
        user: &str,
        secret: ClientSecret,
        database: Option<&str>,
    ) -> Result<(), UsageError> {
        self.check_idle()?;
        // The server verifies against this connection's original scramble (or switches).
        let plugin = auth::initial_plugin(self.auth_plugin.name().as_bytes(), &secret);
        let ctx = AuthContext {
            secret: &secret,
            tls: self.tls.is_some(),
            allow_cleartext: self.config.allow_cleartext_without_tls,
            server_key: self.config.server_public_key.as_ref(),
        };
        let (auth, response) = match auth::start(plugin.clone(), &self.salt, &ctx) {
            Ok(started) => started,
            Err(e) => {
                self.fail(e);
                return Ok(());
            }
        };
        let attrs: Vec<(&[u8], &[u8])> = self
            .config
            .connect_attrs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let database = database.unwrap_or_default();
        let command = Command::ChangeUser(ChangeUser {
            user: user.as_bytes(),
            auth_response: &response,
            database: database.as_bytes(),
            collation: Some(u16::from(self.config.collation)),
            auth_plugin: Some(plugin.name().as_bytes()),
            connect_attrs: (!attrs.is_empty()).then_some(attrs),
        });
        let mut payload = BytesMut::new();
        command.encode(self.caps, &mut payload);
        self.decoder.reset_sequence();
        self.write_payload(payload.freeze());
        let effect = Effect {
            change_user: Some((user.to_owned(), database.as_bytes().to_vec())),
            ..Effect::default()
        };
        let own = OwnChangeUser {
            auth,
            secret,
            user: user.to_owned(),
        };
        self.after_command_sent(now, Command::COM_CHANGE_USER, effect, Some(own));
        Ok(())
    }

    /// Sends one packet of the local file the server asked for ([`PacketKind::LocalInfileRequest`]).
    /// Empty `data` sends nothing (the empty packet ends the file: use
    /// [`finish_local_infile`](Self::finish_local_infile)).
    pub fn send_local_infile_data(&mut self, now: Instant, data: &[u8]) -> Result<(), UsageError> {
        self.send_local_infile_bytes(now, Bytes::copy_from_slice(data))
    }

    /// [`send_local_infile_data`](Self::send_local_infile_data) without a copy: the packet is
    /// sent from `data`'s memory (e.g. a packet relayed from the client).
    pub fn send_local_infile_bytes(
        &mut self,
        _now: Instant,
        data: Bytes,
    ) -> Result<(), UsageError> {
        self.check_local_infile()?;
        if !data.is_empty() {
            self.write_payload(data);
        }
        Ok(())
    }

    /// Ends the local file (an empty packet); the server's OK or ERR follows.
    pub fn finish_local_infile(&mut self, now: Instant) -> Result<(), UsageError> {
        self.check_local_infile()?;
        self.write_payload(Bytes::new());
        if let State::InFlight { tracker, .. } = &mut self.state {
            tracker.local_infile_sent();
        }
        self.arm_command_timer(now);
        Ok(())
    }

    /// Sends auth data in a relayed COM_CHANGE_USER exchange or a relayed login
    /// ([`BackendConfig::relayed_auth`]), after an [`PacketKind::AuthSwitchRequest`] or
    /// [`PacketKind::AuthMoreData`] event.
    pub fn send_auth_data(&mut self, now: Instant, data: &[u8]) -> Result<(), UsageError> {
        match &mut self.state {
            State::RelayedAuth { awaiting_owner } if *awaiting_owner => {
                *awaiting_owner = false;
                self.write_payload(Bytes::copy_from_slice(data));
                return Ok(());
            }
            State::InFlight {
                awaiting_auth_data, ..
            } if *awaiting_auth_data => *awaiting_auth_data = false,
            State::Closed => return Err(UsageError::Closed),
            _ => return Err(UsageError::NoAuthExchange),
        }
        self.write_payload(Bytes::copy_from_slice(data));
        self.arm_command_timer(now);
        Ok(())
    }

    // ---- outputs ----

    /// Bytes to write to the server's socket, in order (already encrypted under TLS).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// True when [`poll_transmit`](Self::poll_transmit) has more bytes (an owner coalescing
    /// chunks can tell a lone chunk, which needs no copying, from a run of them).
    pub fn has_transmit(&self) -> bool {
        !self.transmit.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Lets go of the memory of buffers and queues that hold nothing, and of the spare response
    /// tracker (an idle connection's, once its owner drained it): each allocates again when next
    /// used. Not for every command: the steady state reuses them.
    pub fn release_buffers(&mut self) {
        self.decoder.release_buffer();
        self.spare_tracker = None;
        if self.out.is_empty() {
            self.out = BytesMut::new();
        }
        if self.transmit.is_empty() {
            self.transmit = VecDeque::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Bytes and slots its buffers and queues hold, and its spare tracker (tests of what an
    /// idle session keeps).
    #[cfg(test)]
    pub(crate) fn retained_capacity(&self) -> usize {
        self.decoder.buffer_capacity()
            + self.out.capacity()
            + self.transmit.capacity()
            + self.events.capacity()
            + usize::from(self.spare_tracker.is_some())
    }

    /// The earliest deadline; call [`handle_timeout`](Self::handle_timeout) when it passes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked after every call into a session: no iterator chain.
        match self.timers {
            [Some(a), Some(b)] => Some(a.min(b)),
            [a, b] => a.or(b),
        }
    }

    // ---- internals ----

    fn is_finished(&self) -> bool {
        self.closed
    }

    fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers[t as usize]
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    fn arm_command_timer(&mut self, now: Instant) {
        let at = self.config.command_timeout.map(|d| now + d);
        self.set_timer(Timer::Command, at);
    }

    fn check_idle(&self) -> Result<(), UsageError> {
        match self.state {
            State::Ready => Ok(()),
            State::InFlight { .. } => Err(UsageError::Busy),
            State::Closed | State::Quitting => Err(UsageError::Closed),
            State::AwaitGreeting | State::Authenticating(_) | State::RelayedAuth { .. } => {
                Err(UsageError::NotConnected)
            }
        }
    }

    fn check_local_infile(&self) -> Result<(), UsageError> {
        match &self.state {
            State::InFlight { tracker, .. } if tracker.awaits_local_infile() => Ok(()),
            State::Closed => Err(UsageError::Closed),
            _ => Err(UsageError::NoLocalInfileRequest),
        }
    }

    fn after_command_sent(
        &mut self,
        now: Instant,
        code: u8,
        effect: Effect,
        own_auth: Option<OwnChangeUser>,
    ) {
        if code == Command::COM_QUIT {
            self.state = State::Quitting;
            return;
        }
        if !has_response(code) {
            return;
        }
        let fresh = ResponseTracker::new(code, self.caps, self.status);
        let tracker = match self.spare_tracker.take() {
            Some(mut spare) => {
                *spare = fresh;
                spare
            }
            None => Box::new(fresh),
        };
        self.state = State::InFlight {
            tracker,
            effect,
            own_auth,
            awaiting_auth_data: false,
        };
        self.arm_command_timer(now);
    }

    /// Frames `payload` with the next sequence id(s) and queues it, through TLS when on.
    fn write_payload(&mut self, payload: Bytes) {
        let mut seq = self.decoder.sequence();
        if let Some(tls) = &mut self.tls {
            let mut framed = BytesMut::with_capacity(payload.len() + 8);
            crate::wire::encode_packet(&mut framed, &mut seq, &payload);
            if let Err(e) = tls.write_plaintext(&framed) {
                self.decoder.set_sequence(seq);
                return self.fail(e.into());
            }
            self.flush_tls();
        } else if payload.len() < ZERO_COPY_THRESHOLD {
            // A copy is cheaper than a separate chunk (and its header's allocation).
            crate::wire::encode_packet(&mut self.out, &mut seq, &payload);
            let chunk = self.split_out();
            self.transmit.push_back(chunk);
        } else {
            // Relayed payloads keep their memory: headers are interleaved, chunks are slices.
            for (header, chunk) in frames(payload, &mut seq) {
                self.out.extend_from_slice(&header);
                let header = self.split_out();
                self.transmit.push_back(header);
                if !chunk.is_empty() {
                    self.transmit.push_back(chunk);
                }
            }
        }
        self.decoder.set_sequence(seq);
    }

    /// What `out` holds, as one chunk; `out` keeps its memory unless that is over
    /// [`RETAINED_BUFFER`] (an idle connection should not hold a large command's buffer).
    fn split_out(&mut self) -> Bytes {
        let chunk = self.out.split().freeze();
        if chunk.len() + self.out.capacity() > RETAINED_BUFFER {
            self.out = BytesMut::new();
        }
        chunk
    }

    fn flush_tls(&mut self) {
        if let Some(tls) = &mut self.tls {
            let mut out = Vec::new();
            tls.take_ciphertext(&mut out);
            if !out.is_empty() {
                self.transmit.push_back(Bytes::from(out));
            }
        }
    }

    fn close(&mut self, error: Option<BackendError>) {
        if self.is_finished() {
            return;
        }
        self.closed = true;
        self.state = State::Closed;
        self.timers = [None; 2];
        self.error.clone_from(&error);
        self.events.push_back(Event::Closed { error });
    }

    fn fail(&mut self, error: BackendError) {
        self.close(Some(error));
    }

    fn auth_context<'a>(&'a self, secret: &'a ClientSecret) -> AuthContext<'a> {
        AuthContext {
            secret,
            tls: self.tls.is_some(),
            allow_cleartext: self.config.allow_cleartext_without_tls,
            server_key: self.config.server_public_key.as_ref(),
        }
    }

    fn on_packet(&mut self, now: Instant, payload: Bytes) -> Result<(), BackendError> {
        if let State::InFlight {
            tracker,
            awaiting_auth_data,
            ..
        } = &mut self.state
        {
            if *awaiting_auth_data {
                return Err(BackendError::UnexpectedPacket {
                    state: "waiting for the owner's auth data",
                });
            }
            let (kind, step) = tracker.handle(&payload)?;
            let auth_packet = matches!(
                kind,
                PacketKind::AuthSwitchRequest | PacketKind::AuthMoreData
            );
            if step == Step::More && !auth_packet {
                // The common case (every row): relayed in place, since moving the whole state
                // out and back costs more than the packet itself.
                self.rearm_command_timer = true;
                self.events.push_back(Event::Response { payload, kind });
                return Ok(());
            }
            let State::InFlight {
                tracker,
                effect,
                own_auth,
                ..
            } = std::mem::replace(&mut self.state, State::Closed)
            else {
                // Matched just above; nothing else can be there.
                return Ok(());
            };
            return self.on_response(now, payload, (kind, step), tracker, effect, own_auth);
        }
        match std::mem::replace(&mut self.state, State::Closed) {
            State::AwaitGreeting => self.on_greeting(payload),
            State::Authenticating(auth) => self.on_auth_packet(auth, payload),
            State::RelayedAuth { awaiting_owner } => {
                self.on_relayed_auth_packet(payload, awaiting_owner)
            }
            // Handled above.
            State::InFlight { .. } => Ok(()),
            State::Ready => Err(BackendError::UnexpectedPacket {
                state: "no command is outstanding",
            }),
            State::Quitting => Err(BackendError::UnexpectedPacket {
                state: "waiting for the server to close after COM_QUIT",
            }),
            State::Closed => Ok(()),
        }
    }

    /// A response packet already classified by the tracker (`kind`, `step`), other than one
    /// relayed in place by [`Self::on_packet`]: it ends the response, or is part of an auth
    /// exchange or a LOCAL INFILE request.
    fn on_response(
        &mut self,
        now: Instant,
        payload: Bytes,
        (kind, step): (PacketKind, Step),
        mut tracker: Box<ResponseTracker>,
        effect: Effect,
        mut own_auth: Option<OwnChangeUser>,
    ) -> Result<(), BackendError> {
        let auth_packet = matches!(
            kind,
            PacketKind::AuthSwitchRequest | PacketKind::AuthMoreData
        );
        // This packet decides the command deadline below, whatever rows came before it.
        self.rearm_command_timer = false;
        let mut awaiting_auth_data = false;
        match (&mut own_auth, auth_packet) {
            (Some(own), true) => {
                if kind == PacketKind::AuthSwitchRequest {
                    let switch = AuthSwitchRequest::parse(&payload)?;
                    let plugin = AuthPlugin::from_bytes(switch.plugin_name);
                    let (next, response) =
                        auth::start(plugin, switch.data, &self.auth_context(&own.secret))?;
                    own.auth = next;
                    self.write_payload(Bytes::from(response));
                } else if let Some(reply) =
                    own.auth.handle_more_data(&payload, self.rng.as_mut())?
                {
                    self.write_payload(Bytes::from(reply));
                }
            }
            (None, true) => {
                // caching_sha2's fast-auth success (`01 03`) is followed by the OK: no answer.
                awaiting_auth_data = !is_fast_auth_success(&payload);
                self.events.push_back(Event::Response { payload, kind });
            }
            _ => self.events.push_back(Event::Response { payload, kind }),
        }
        match step {
            Step::Done => {
                self.set_timer(Timer::Command, None);
                self.state = State::Ready;
                let summary = tracker.take_summary();
                self.spare_tracker = Some(tracker);
                self.complete(&summary, effect, own_auth);
                self.events.push_back(Event::ResponseComplete(summary));
            }
            Step::LocalInfile | Step::AuthExchange if own_auth.is_none() => {
                self.set_timer(Timer::Command, None);
                self.state = State::InFlight {
                    tracker,
                    effect,
                    own_auth,
                    awaiting_auth_data,
                };
            }
            Step::More | Step::LocalInfile | Step::AuthExchange => {
                self.arm_command_timer(now);
                self.state = State::InFlight {
                    tracker,
                    effect,
                    own_auth,
                    awaiting_auth_data,
                };
            }
        }
        Ok(())
    }

    /// Applies what a complete response changed to the tracked session.
    fn complete(
        &mut self,
        summary: &ResponseSummary,
        effect: Effect,
        own_auth: Option<OwnChangeUser>,
    ) {
        self.status = summary.status;
        if summary.is_ok() {
            if let Some(schema) = effect.init_db {
                self.schema = Some(schema);
            }
            if effect.reset || effect.change_user.is_some() {
                self.statements.clear();
                self.variables.clear();
            }
            if let Some((user, database)) = effect.change_user {
                self.config.user = user;
                self.schema = (!database.is_empty()).then_some(database);
                if let Some(own) = own_auth {
                    self.config.user = own.user;
                    self.config.secret = own.secret;
                    self.auth_plugin = own.auth.plugin();
                }
            }
            if let Some(ok) = summary.prepared {
                self.statements.insert(
                    ok.statement_id,
                    PreparedStatement {
                        params: ok.num_params,
                        columns: ok.num_columns,
                    },
                );
            }
        }
        self.absorb_session(&summary.session);
    }

    fn absorb_session(&mut self, session: &SessionChanges) {
        if let Some(schema) = &session.schema {
            self.schema = (!schema.is_empty()).then(|| schema.clone());
        }
        for (name, value) in &session.system_variables {
            self.variables.insert(name.clone(), value.clone());
        }
    }
}

/// caching_sha2_password's "fast auth success" AuthMoreData, which the client does not answer.
pub(crate) fn is_fast_auth_success(payload: &[u8]) -> bool {
    payload == crate::auth::caching_sha2::FAST_AUTH_SUCCESS
}

#[cfg(test)]
mod tests;
