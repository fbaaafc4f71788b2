//! Live session migration (issue 5): moving a session to another backend between two statements
//! without the client noticing, as an explicit state machine of the [`ProxySession`].
//!
//! ```text
//!            start_migration(target)
//!                    │
//!   (pinned or a command in flight: wait for a safe point, until `timeout` → Failed(Pinned))
//!                    ▼
//!   ReadOld ── old backend: SHOW SESSION_STATES (tidb) / charsets, user vars (replay) ────┐
//!                    │ (replay: only after a state change or a character set change)      │
//!                    ▼                                                                    │
//!   ReadValues ── replay, string user variables: exact bytes and collations ──────────────┤
//!                    ▼                                                               ERR: Failed
//!   Connecting ── Event::ConnectBackend { target: Some(name) } ── backend_connected ──┐
//!                    ▼                                                                │
//!   LoggingIn ── tidb: token login (tidb_session_token, only OK) / replay: same user, │
//!                secret recovered at login, current database ── ERR/timeout: Failed ◄─┘
//!                    ▼
//!   Replaying ── replay: one statement per item (see `replay`); a refused optional
//!                variable is skipped; any other ERR: Failed
//!   Restoring ── tidb: SET SESSION_STATES '…'; ERR: Failed
//!                    ▼
//!   swap: old backend COM_QUIT + CloseBackend, new one current, statement ids mapped
//!         (replay), MigrationDone { pause }, then the client command that waited runs
//! ```
//!
//! While a migration runs (from `ReadOld` on), the session is in `Phase::Internal`: a client
//! command that arrives waits (the frontend hands out one command at a time, so at most one
//! waits) and runs after the swap, or after a failure on the old backend. That wait is the
//! `pause` reported. Every step has the deadline `step_timeout`; a failure closes the new
//! connection ([`Event::CloseBackend`]) and leaves the session on its old backend, untouched.
//!
//! A *safe point* (`reference/tidb-migration-protocol.md` §4): no command in flight and not
//! pinned ([`PinReason`]: open transaction, cursor, long data, temporary tables, user locks,
//! LOCK TABLES and, in `replay` mode, state ferry cannot attribute). A pending migration is
//! re-checked every time a response completes, so a session in a transaction moves right after
//! its COMMIT.
//!
//! `replay` mode also runs ferry's session tracking (`SET session_track_system_variables='*',
//! …`) after every backend login and every COM_RESET_CONNECTION / COM_CHANGE_USER, before the
//! client's next command (its OK is not relayed).
//!
//! Cost when nothing is pending: one `Option` test per response, the statement scan of
//! [`pin`](self) (no allocation) when migration is enabled, nothing at all when it is `Off`.

mod failover;
pub mod fixup;
mod ids;
mod pin;
mod replay;
mod retry;
mod snapshot;
mod sql;
mod steps;
mod tidb;

pub(super) use failover::Failover;
pub use failover::LossReason;
pub(super) use snapshot::Snapshot;

pub use pin::PinReason;

pub(super) use ids::StatementIds;
pub(super) use pin::Tracker;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::auth::ClientSecret;
use crate::backend::{Backend, FixedAuth, PacketKind, ResponseSummary};
use crate::frontend::ClientCommand;
use crate::wire::{Capabilities, ResultSetHeader, TextRow};
use crate::ProtocolError;

use self::replay::{Item, OldSession};
use self::tidb::SessionStates;
use super::{
    BackendConnId, BackendLoss, ConnectFailure, Event, Incompatibility, Phase, ProxySession, Timer,
    Transmit,
};

/// How sessions move between backends (`[migration] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationMode {
    /// No migration (the default): nothing is tracked beyond [`SessionState`](super::SessionState).
    #[default]
    Off,
    /// MySQL/MariaDB with `proxy` auth: rebuild the session from what ferry tracked.
    Replay,
    /// TiDB-compatible servers with `passthrough` auth: SHOW/SET SESSION_STATES and a token login.
    Tidb,
}

/// Migration settings shared by all sessions.
#[derive(Debug, Clone)]
pub struct MigrationConfig {
    /// The mode.
    pub mode: MigrationMode,
    /// How long a requested migration may wait for a safe point before it is reported failed
    /// ([`MigrationFailure::Pinned`]); the session stays where it is.
    pub timeout: Duration,
    /// The deadline of each step (reading the old session, connecting and logging in, each
    /// replayed statement).
    pub step_timeout: Duration,
    /// `replay` only: rebuild an idle, unpinned session on another backend when its backend
    /// connection dies or its backend is reported down (see [`failover`](self)). It needs the
    /// session's user variables and character sets held by ferry, so after a statement that
    /// changes session state ferry reads them (one query, after the client has its answer).
    pub failover: bool,
    /// With `failover`: a statement in flight when the backend died is sent again on the
    /// rebuilt session when it cannot have had an effect (see `retry`). Off by default.
    pub read_retry: bool,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            mode: MigrationMode::Off,
            timeout: Duration::from_secs(30),
            step_timeout: Duration::from_secs(5),
            failover: true,
            read_retry: false,
        }
    }
}

/// What [`ProxySession::start_migration`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStart {
    /// The session was at a safe point: the migration runs now.
    Started,
    /// Not at a safe point: the request waits for one (until the migration timeout). `Some`:
    /// the pin; `None`: a command is in flight.
    Waiting(Option<PinReason>),
}

/// Why [`ProxySession::start_migration`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationRefused {
    /// The configuration's migration mode is `Off`.
    #[error("migration is disabled")]
    Disabled,
    /// The session is not logged in yet.
    #[error("the session is not logged in yet")]
    NotReady,
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// A migration is already requested or running.
    #[error("a migration is already in progress")]
    AlreadyMigrating,
    /// The session is already on that backend.
    #[error("the session is already on that backend")]
    SameBackend,
    /// `replay` mode without a credential for the user (`passthrough` auth).
    #[error("replay migration needs proxy auth (no credential for the user)")]
    NoCredential,
}

/// Why a migration failed (the session stays on its old backend).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationFailure {
    /// No safe point came before the migration timeout (the pin then, or `None`: busy).
    Pinned(Option<PinReason>),
    /// A step passed its deadline.
    Timeout {
        /// Which step.
        step: &'static str,
    },
    /// [`ProxySession::cancel_migration`].
    Cancelled,
    /// The new backend could not be reached.
    ConnectFailed(ConnectFailure),
    /// The new backend refused the login.
    LoginRefused(ProtocolError),
    /// The new backend cannot serve this client (e.g. no `CLIENT_DEPRECATE_EOF`).
    Incompatible(Incompatibility),
    /// The old backend could not report the session (ERR, no token, unreadable result).
    OldBackend(OldBackendError),
    /// A replayed statement failed.
    Replay {
        /// What it restored.
        what: String,
        /// The error.
        error: ReplayError,
    },
    /// The new backend connection failed midway.
    BackendLost(BackendLoss),
    /// The old backend connection died before the move could leave it (a failover follows
    /// when the session can be rebuilt).
    OldBackendLost(BackendLoss),
    /// The session ended first.
    SessionClosed,
}

impl MigrationFailure {
    /// A short stable label (metrics: failed by reason).
    pub fn label(&self) -> &'static str {
        match self {
            MigrationFailure::Pinned(_) => "pinned",
            MigrationFailure::Timeout { .. } => "timeout",
            MigrationFailure::Cancelled => "cancelled",
            MigrationFailure::ConnectFailed(_) => "connect_failed",
            MigrationFailure::LoginRefused(_) => "login_refused",
            MigrationFailure::Incompatible(_) => "incompatible",
            MigrationFailure::OldBackend(_) => "old_backend",
            MigrationFailure::Replay { .. } => "replay",
            MigrationFailure::BackendLost(_) => "backend_lost",
            MigrationFailure::OldBackendLost(_) => "old_backend_lost",
            MigrationFailure::SessionClosed => "session_closed",
        }
    }
}

impl std::fmt::Display for MigrationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationFailure::Pinned(Some(p)) => write!(f, "no safe point in time (pinned: {p})"),
            MigrationFailure::Pinned(None) => f.write_str("no safe point in time (busy)"),
            MigrationFailure::Timeout { step } => write!(f, "timed out {step}"),
            MigrationFailure::Cancelled => f.write_str("cancelled"),
            MigrationFailure::ConnectFailed(e) => write!(f, "cannot connect: {e}"),
            MigrationFailure::LoginRefused(e) => write!(f, "login refused: {e}"),
            MigrationFailure::Incompatible(e) => write!(f, "incompatible backend: {e}"),
            MigrationFailure::OldBackend(e) => write!(f, "cannot read the session: {e}"),
            MigrationFailure::Replay { what, error } => write!(f, "replaying {what}: {error}"),
            // A clean close reads "closed" here (the "backend" is in the prefix already).
            MigrationFailure::BackendLost(BackendLoss::Closed) => {
                f.write_str("new backend lost: closed")
            }
            MigrationFailure::BackendLost(e) => write!(f, "new backend lost: {e}"),
            MigrationFailure::OldBackendLost(e) => write!(f, "old backend lost: {e}"),
            MigrationFailure::SessionClosed => f.write_str("the session closed"),
        }
    }
}

/// Why the old backend could not report the session ([`MigrationFailure::OldBackend`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OldBackendError {
    /// It answered ferry's query with this ERR.
    #[error("{0}")]
    Error(ProtocolError),
    /// Its answer could not be read (undecodable, too many rows, no token, unexpected values).
    #[error("{0}")]
    Unreadable(String),
    /// The old backend's connection refused ferry's follow-up query (it was not idle).
    #[error("the old backend refused the query")]
    QueryRefused,
}

/// Why a replayed statement failed ([`MigrationFailure::Replay`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The new backend answered it with this ERR.
    #[error("{0}")]
    Error(ProtocolError),
    /// It cannot be written safely (what is wrong with it).
    #[error("{0}")]
    Unencodable(String),
    /// A replayed COM_STMT_PREPARE was answered without a prepare-OK.
    #[error("no prepare-OK")]
    NoPrepareOk,
}

/// What `Phase::Internal` is busy with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    /// ferry's session-tracking statement on the current backend (replay mode).
    Tracking,
    /// A migration step.
    Migration,
    /// The response to a query of an abandoned migration, dropped when it completes.
    Discard,
    /// Reading the session's snapshot (replay with failover, see `snapshot`).
    Snapshot,
}

/// The replay items preparing `statements` (client id, text), each in its own schema, the
/// connection back in `schema` after them.
pub(super) fn replay_prepares(
    statements: Vec<(u32, &pin::PreparedText)>,
    schema: Option<&[u8]>,
) -> Vec<Item> {
    replay::prepare_items(statements, schema)
}

/// COM_PING, as a replay item.
pub(super) fn replay_ping() -> Item {
    Item::Ping
}

/// What a migration login needs from the client's login (kept only when migration is on).
#[derive(Debug)]
pub(super) struct LoginInfo {
    /// `proxy` auth: what the login revealed; `passthrough`: nothing.
    secret: Option<ClientSecret>,
    pub(in crate::session) collation: u8,
    attributes: Vec<(String, String)>,
}

impl LoginInfo {
    pub(super) fn new(
        secret: Option<ClientSecret>,
        collation: u8,
        attributes: Vec<(String, String)>,
    ) -> Box<Self> {
        Box::new(Self {
            secret,
            collation,
            attributes,
        })
    }

    /// A COM_CHANGE_USER that ferry verified: later logins are the new user's.
    pub(super) fn replace_secret(&mut self, secret: ClientSecret) {
        self.secret = Some(secret);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Waiting,
    ReadOld,
    /// The exact bytes of string user variables (`replay` on MariaDB, see `replay`).
    ReadValues,
    Connecting,
    LoggingIn,
    Replaying,
    Restoring,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Waiting => "waiting for a safe point",
            Step::ReadOld => "reading the session on the old backend",
            Step::ReadValues => "reading the user variables' values on the old backend",
            Step::Connecting => "connecting to the new backend",
            Step::LoggingIn => "logging in to the new backend",
            Step::Replaying => "replaying the session",
            Step::Restoring => "restoring the session states",
        }
    }
}

/// Rows of a result set ferry reads itself (small: user variables, session states).
#[derive(Debug, Default)]
struct Rows {
    columns: usize,
    rows: Vec<Vec<Option<Vec<u8>>>>,
    error: Option<String>,
}

/// More rows than this in a result ferry reads is an error (bounds the memory).
const MAX_ROWS: usize = 10_000;

impl Rows {
    fn on_packet(&mut self, payload: &[u8], kind: PacketKind, caps: Capabilities) {
        match kind {
            PacketKind::ResultSetHeader => match ResultSetHeader::parse(payload, caps) {
                Ok(h) => self.columns = usize::try_from(h.column_count).unwrap_or(usize::MAX),
                Err(e) => self.error = Some(e.to_string()),
            },
            PacketKind::Row if self.rows.len() >= MAX_ROWS => {
                self.error = Some(format!("more than {MAX_ROWS} rows"));
            }
            PacketKind::Row => match TextRow::parse(payload, self.columns) {
                Ok(cells) => self
                    .rows
                    .push(cells.into_iter().map(|c| c.map(<[u8]>::to_vec)).collect()),
                Err(e) => self.error = Some(e.to_string()),
            },
            _ => {}
        }
    }
}

/// The new backend connection.
pub(super) struct NewBackend {
    pub(super) id: BackendConnId,
    pub(super) conn: Option<Backend>,
}

/// A requested or running migration.
pub(super) struct Migration {
    pub(super) target: String,
    /// The name the driver reported for the new connection.
    pub(super) to_name: Option<String>,
    pub(super) step: Step,
    pub(super) new: Option<NewBackend>,
    cancelled: bool,
    rows: Rows,
    pub(super) plan: VecDeque<Item>,
    current: Option<Item>,
    /// What `ReadOld` read (replay).
    pub(super) old: OldSession,
    /// (client id, new backend id) of each re-prepared statement.
    pub(super) new_ids: Vec<(u32, u32)>,
    skipped: Vec<String>,
    states: Option<SessionStates>,
    /// A failover rather than a planned move (no target: the owner picks).
    pub(super) failover: Option<Box<Failover>>,
    /// Multiplexing: a backend connection taken for the next statement (see `multiplex`).
    pub(super) pooled: bool,
    /// Multiplexing: still waiting for the pool (no connection given or opened yet).
    pub(super) pool_waiting: bool,
    /// Statements sent on the new connection (fix-ups, for metrics).
    pub(super) sent: usize,
    /// Multiplexing: the connection is the one this session gave back, untouched since: the
    /// statement ids it maps stand as they are.
    pub(super) own_connection: bool,
}

impl Migration {
    /// A move to `target` starting at `step` (`failover`: a failover, whose target the owner
    /// picks).
    pub(super) fn new(target: String, step: Step, failover: Option<Box<Failover>>) -> Box<Self> {
        Box::new(Self {
            target,
            to_name: None,
            step,
            new: None,
            cancelled: false,
            rows: Rows::default(),
            plan: VecDeque::new(),
            current: None,
            old: OldSession::default(),
            new_ids: Vec::new(),
            skipped: Vec::new(),
            states: None,
            failover,
            pooled: false,
            pool_waiting: false,
            sent: 0,
            own_connection: false,
        })
    }
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("target", &self.target)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl ProxySession {
    // ---- getters ----

    /// Why the session cannot move now, if it cannot (`None` also when migration is off).
    pub fn pinned(&self) -> Option<PinReason> {
        match self.config.migration.mode {
            MigrationMode::Off => None,
            mode => self.track.pin(&self.state, mode == MigrationMode::Replay),
        }
    }

    /// True from [`start_migration`](Self::start_migration) until the migration succeeded or
    /// failed (waiting for a safe point included).
    pub fn migration_in_progress(&self) -> bool {
        self.migration.is_some()
    }

    /// The backend a requested or running migration goes to.
    pub fn migration_target(&self) -> Option<&str> {
        self.migration
            .as_ref()
            .filter(|m| m.failover.is_none())
            .map(|m| m.target.as_str())
    }

    // ---- mutators ----

    /// Moves the session to backend `target`: now if it is at a safe point, otherwise at the
    /// next one (the drain case), until the migration timeout. The outcome comes as
    /// [`Event::MigrationDone`] or [`Event::MigrationFailed`].
    pub fn start_migration(
        &mut self,
        now: Instant,
        target: String,
    ) -> Result<MigrationStart, MigrationRefused> {
        let mode = self.config.migration.mode;
        if self.is_closed() {
            return Err(MigrationRefused::Closed);
        }
        if mode == MigrationMode::Off {
            return Err(MigrationRefused::Disabled);
        }
        if matches!(self.phase, Phase::Handshake | Phase::Login(_)) || self.login_info.is_none() {
            return Err(MigrationRefused::NotReady);
        }
        if self.migration.is_some() {
            return Err(MigrationRefused::AlreadyMigrating);
        }
        if self.backend_name.as_deref() == Some(target.as_str()) {
            return Err(MigrationRefused::SameBackend);
        }
        if self.is_detached() && matches!(self.phase, Phase::Ready) {
            // Multiplexing, between statements: only its pool changes.
            self.retarget(target);
            return Ok(MigrationStart::Started);
        }
        if mode == MigrationMode::Replay
            && self.login_info.as_ref().is_some_and(|l| l.secret.is_none())
        {
            return Err(MigrationRefused::NoCredential);
        }
        let deadline = now + self.config.migration.timeout;
        self.migration = Some(Migration::new(target, Step::Waiting, None));
        self.set_timer(Timer::Migration, Some(deadline));
        let started = self.try_begin_migration(now);
        self.drive(now);
        Ok(if started {
            MigrationStart::Started
        } else {
            MigrationStart::Waiting(self.pinned())
        })
    }

    /// Abandons a requested or running migration ([`Event::MigrationFailed`] with
    /// [`MigrationFailure::Cancelled`]); a query already sent to the old backend finishes
    /// first. Returns false when there was none.
    pub fn cancel_migration(&mut self, now: Instant) -> bool {
        let Some(m) = self.migration.as_mut() else {
            return false;
        };
        if m.failover.is_some() {
            // Not the owner's to cancel: without it the session is lost.
            return false;
        }
        if matches!(m.step, Step::ReadOld | Step::ReadValues) {
            m.cancelled = true;
        } else {
            self.fail_migration(now, MigrationFailure::Cancelled);
        }
        self.drive(now);
        true
    }

    // ---- hooks called by the session ----

    /// The client's login: what a migration login will need.
    pub(super) fn remember_login(&mut self, info: Box<LoginInfo>) {
        if self.config.migration.mode != MigrationMode::Off {
            self.login_info = Some(info);
        }
    }

    /// A backend login finished (or the session was reset): in replay mode, run ferry's
    /// session tracking before the client's next command.
    pub(super) fn start_tracking(&mut self, now: Instant) {
        if self.config.migration.mode != MigrationMode::Replay
            || !matches!(self.phase, Phase::Ready)
        {
            return;
        }
        let Some(backend) = self.backend_mut() else {
            return;
        };
        if !backend.capabilities().contains(Capabilities::SESSION_TRACK) {
            self.track.no_tracking = true;
            return;
        }
        let mut payload = vec![crate::wire::Command::COM_QUERY];
        payload.extend_from_slice(replay::TRACKING_SETUP);
        if backend.send_raw_command(now, payload.into()).is_ok() {
            self.phase = Phase::Internal(Job::Tracking);
        }
    }

    /// The session just became ready: start a pending migration if this is a safe point.
    pub(super) fn on_ready(&mut self, now: Instant) {
        if self.try_snapshot(now) || self.try_park(now) {
            return;
        }
        if self.migration.is_some() {
            self.try_begin_migration(now);
        }
    }

    /// A client command that arrived while ferry is busy: it waits.
    pub(super) fn hold_command(&mut self, now: Instant, command: ClientCommand) {
        self.held = Some(command);
        self.held_since = Some(now);
    }

    /// A response packet on the current backend during `Phase::Internal`.
    pub(super) fn on_internal_packet(&mut self, payload: &[u8], kind: PacketKind) {
        let caps = self
            .backend()
            .map_or(Capabilities::EMPTY, Backend::capabilities);
        match self.phase {
            Phase::Internal(Job::Migration) => {
                if let Some(m) = self.migration.as_mut() {
                    m.rows.on_packet(payload, kind, caps);
                }
            }
            Phase::Internal(Job::Snapshot) => self.on_snapshot_packet(payload, kind, caps),
            _ => {}
        }
    }

    /// A response complete on the current backend during `Phase::Internal`.
    pub(super) fn on_internal_complete(&mut self, now: Instant, summary: ResponseSummary) {
        let job = match &self.phase {
            Phase::Internal(job) => *job,
            _ => return,
        };
        match job {
            Job::Tracking => {
                self.track.no_tracking = summary.error.is_some();
                self.resume(now);
            }
            Job::Discard => self.resume(now),
            Job::Migration => self.on_old_read(now, summary),
            Job::Snapshot => self.on_snapshot_read(now, summary),
        }
    }

    /// The backend connection `id` of a running migration, once its socket is open.
    pub(super) fn migration_backend(&mut self, id: BackendConnId) -> Option<&mut Backend> {
        self.migration
            .as_mut()?
            .new
            .as_mut()
            .filter(|n| n.id == id)?
            .conn
            .as_mut()
    }

    /// True when `id` is the (possibly still connecting) new connection of a migration.
    pub(super) fn is_migration_conn(&self, id: BackendConnId) -> bool {
        self.migration
            .as_ref()
            .and_then(|m| m.new.as_ref())
            .is_some_and(|n| n.id == id)
    }

    /// The capabilities a backend connection of this session asks for: the client's, with
    /// multi-statements as the client last set them (COM_SET_OPTION), not as it logged in.
    pub(super) fn backend_capabilities(&self) -> Capabilities {
        match self.state.multi_statements {
            Some(true) => self.frontend.capabilities() | Capabilities::MULTI_STATEMENTS,
            Some(false) => self
                .frontend
                .capabilities()
                .without(Capabilities::MULTI_STATEMENTS),
            None => self.frontend.capabilities(),
        }
    }

    /// The driver opened the migration's connection.
    pub(super) fn migration_connected(&mut self, now: Instant, conn: BackendConnId, name: &str) {
        if !self.is_migration_conn(conn) {
            return;
        }
        let mode = self.config.migration.mode;
        let Some(info) = self.login_info.as_ref() else {
            return;
        };
        let user = self.state.user.clone().unwrap_or_default();
        let secret = info.secret.clone().unwrap_or(ClientSecret::NoPassword);
        let capabilities = self.backend_capabilities();
        let mut config = self
            .config
            .backend
            .backend_config(user, secret, capabilities);
        config.collation = info.collation;
        config.connect_attrs = info.attributes.clone();
        config.max_packet_size = self.config.backend_packet_cap();
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        if m.step != Step::Connecting {
            return;
        }
        match (mode, &m.states) {
            (MigrationMode::Tidb, Some(states)) => {
                config.database = states.current_db.clone();
                config.fixed_auth = Some(FixedAuth {
                    plugin: tidb::TOKEN_PLUGIN.to_owned(),
                    auth_data: states.token.clone(),
                });
            }
            _ => {
                config.database = self
                    .state
                    .schema
                    .as_ref()
                    .map(|s| String::from_utf8_lossy(s).into_owned());
            }
        }
        let rng = Box::new(super::rng::HashRandom::from_parent(&mut self.rng));
        if let Some(new) = m.new.as_mut() {
            new.conn = Some(Backend::new(now, config, rng));
        }
        m.to_name = Some(name.to_owned());
        m.step = Step::LoggingIn;
        self.arm_step(now);
        self.drive(now);
    }

    /// The migration's connection could not be opened (or closed before it was reported open).
    pub(super) fn migration_connect_failed(
        &mut self,
        now: Instant,
        conn: BackendConnId,
        reason: ConnectFailure,
    ) {
        if self.is_migration_conn(conn) {
            self.fail_migration(now, MigrationFailure::ConnectFailed(reason));
            self.drive(now);
        }
    }

    /// Fires the migration's deadlines.
    pub(super) fn migration_timeouts(&mut self, now: Instant) {
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        if let Some(b) = m.new.as_mut().and_then(|n| n.conn.as_mut()) {
            b.handle_timeout(now);
        }
        let step = m.step;
        let pool_waiting = m.pool_waiting;
        if step == Step::Waiting && self.timer_passed(Timer::Migration, now) {
            let pin = self.pinned();
            self.fail_migration(now, MigrationFailure::Pinned(pin));
        } else if pool_waiting && self.timer_passed(Timer::MigrationStep, now) {
            self.pool_refused(now);
        } else if step != Step::Waiting && self.timer_passed(Timer::MigrationStep, now) {
            self.fail_migration(now, MigrationFailure::Timeout { step: step.name() });
        }
    }

    /// The earliest deadline of the migration's backend connection.
    pub(super) fn migration_poll_timeout(&self) -> Option<Instant> {
        self.migration
            .as_ref()?
            .new
            .as_ref()?
            .conn
            .as_ref()?
            .poll_timeout()
    }

    /// Queues the new backend's output.
    pub(super) fn collect_migration_transmits(&mut self) {
        let Some(new) = self.migration.as_mut().and_then(|m| m.new.as_mut()) else {
            return;
        };
        let peer = super::Peer::Backend(new.id);
        if let Some(b) = new.conn.as_mut() {
            while let Some(data) = b.poll_transmit() {
                self.transmits.push_back(Transmit { peer, data });
            }
        }
    }

    /// Processes the new backend's events; false when it had none.
    pub(super) fn drive_migration_backend(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while let Some(event) = self
            .migration
            .as_mut()
            .and_then(|m| m.new.as_mut())
            .and_then(|n| n.conn.as_mut())
            .and_then(Backend::poll_event)
        {
            progressed = true;
            self.on_new_backend_event(now, event);
        }
        progressed
    }

    /// The session is closing: a migration ends with it.
    pub(super) fn abort_migration(&mut self) {
        let Some(mut m) = self.migration.take() else {
            return;
        };
        if let Some(new) = m.new.take() {
            self.events.push_back(Event::CloseBackend { conn: new.id });
        }
        if m.failover.is_none() && !m.pooled {
            self.events.push_back(Event::MigrationFailed {
                to: m.target,
                reason: MigrationFailure::SessionClosed,
            });
        }
    }
}
