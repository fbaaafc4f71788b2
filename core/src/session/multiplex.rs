//! Multiplexing, the session's half (the pool is the control plane's, `control::pool`): between
//! statements an unpinned session gives its backend connection back ([`Event::BackendParked`])
//! and takes one for its next statement ([`Event::AcquireBackend`]).
//!
//! ```text
//!   Ready, attached ── response complete, unpinned, snapshot current, nothing to keep ─► park
//!   Ready, detached ── command ─► held; AcquireBackend ─┬─ adopt(pooled): fix-up (only what
//!                                                       │  differs, ping if idle long), swap
//!                                                       ├─ a new connection: login, full replay
//!                                                       ├─ wait (max-wait) ─► ERR 1040
//!                                                       └─ pool full ─► ERR 1040
//!                                      then the held command runs on it
//! ```
//!
//! Acquiring reuses migration's machinery: the connection is the migration's new backend and
//! the fix-up its replay plan (`fixup::plan_items` from the connection's [`ConnState`] to the
//! session's), so statement ids are remapped and parameter types re-bound as after a move.
//!
//! What a connection reads of its own (`CONNECTION_ID()`, `FOUND_ROWS()`, `ROW_COUNT()`,
//! `SHOW WARNINGS` / `ERRORS`, `@@warning_count`, `@@error_count`) pins the session once a
//! statement names it ([`PinReason::ConnectionBound`]): from then on it keeps its connection,
//! so the values stay its own and `KILL` of its `CONNECTION_ID()` reaches it. To make the first
//! such statement right, a statement that leaves something to read (an error, warnings,
//! affected rows, `SQL_CALC_FOUND_ROWS`) keeps the connection until the next statement, or
//! for [`KEEP`] when none comes.
//!
//! Protocol prepared statements stay prepared on a pooled connection ([`PooledStatement`]): a
//! session that takes it uses one with the same text prepared under the same settings
//! (schema, variables, character sets: MariaDB binds them at prepare), and prepares the others
//! as part of the fix-up. COM_STMT_CLOSE is answered by the session alone (it has no response);
//! the statement stays on the connection for the next session that prepares the same text.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::migration::fixup::{self, ConnState};
use super::migration::{Job, Migration, MigrationFailure, Step};
use super::{BackendConnId, Event, Phase, ProxySession, Timer};
use crate::backend::Backend;
use crate::wire::{Capabilities, Command};
use crate::ProtocolError;

/// How long a connection whose last statement left something to read (warnings, affected
/// rows, found rows) stays with its session when no statement follows.
pub(crate) const KEEP: Duration = Duration::from_millis(500);

/// The client capabilities that shape what a connection's server reads or answers (EOF or OK
/// after rows, multi-statements and results, affected or found rows, LOCAL INFILE, the parser's
/// `IGNORE_SPACE` and `NO_SCHEMA`, `wait_timeout` or `interactive_timeout`, metadata, query
/// attributes). Connections are shared only between sessions that agree on these; the others
/// (TLS, compression, attributes, auth plugins) were spent at the login.
fn pooled_capabilities(caps: Capabilities) -> Capabilities {
    caps.intersect(
        Capabilities::FOUND_ROWS
            | Capabilities::LONG_FLAG
            | Capabilities::NO_SCHEMA
            | Capabilities::LOCAL_FILES
            | Capabilities::IGNORE_SPACE
            | Capabilities::PROTOCOL_41
            | Capabilities::INTERACTIVE
            | Capabilities::MULTI_STATEMENTS
            | Capabilities::MULTI_RESULTS
            | Capabilities::PS_MULTI_RESULTS
            | Capabilities::SESSION_TRACK
            | Capabilities::DEPRECATE_EOF
            | Capabilities::OPTIONAL_RESULTSET_METADATA
            | Capabilities::QUERY_ATTRIBUTES,
    )
}

/// A pooled connection holding more statements than this is closed rather than parked.
const MAX_POOLED_STATEMENTS: usize = 256;

/// Tries of one acquire (a pooled connection found dead, a connect that failed) before the
/// session is lost.
const MAX_ATTEMPTS: u8 = 3;

/// A backend connection no session holds, with what the next session needs to know of it.
#[derive(Debug)]
pub struct ParkedBackend {
    pub(crate) backend: Backend,
    /// The session state it holds (the last session's).
    pub(crate) state: Arc<ConnState>,
    /// Protocol prepared statements open on it.
    pub(crate) statements: Vec<PooledStatement>,
    /// The backend's name.
    pub(crate) name: String,
    /// Logged in as.
    pub(crate) user: String,
    /// The login's collation (what the character sets are when `state` says `Login`).
    pub(crate) collation: u8,
    /// The capabilities it asked for that shape responses ([`pooled_capabilities`]): only a
    /// session asking the same may take it.
    pub(crate) capabilities: Capabilities,
}

impl ParkedBackend {
    /// The backend's name.
    pub fn backend_name(&self) -> &str {
        &self.name
    }

    /// The user it is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The collation it logged in with.
    pub fn collation(&self) -> u8 {
        self.collation
    }

    /// The capabilities it asked for at its login.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The session state it holds.
    pub fn state(&self) -> &ConnState {
        &self.state
    }

    /// COM_QUIT, to write before closing it.
    pub fn farewell() -> Bytes {
        Bytes::from_static(&[1, 0, 0, 0, Command::COM_QUIT])
    }
}

/// A protocol prepared statement open on a pooled connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PooledStatement {
    sql: Box<[u8]>,
    /// [`Target::context`] when it was prepared (0: unknown, never reused).
    context: u64,
    /// The backend's statement id.
    id: u32,
}

/// What a session needs from the pool.
#[derive(Debug)]
pub struct AcquireRequest {
    /// The session's user.
    pub user: String,
    /// Its login's collation.
    pub collation: u8,
    /// The capabilities its connection must have asked for.
    pub capabilities: Capabilities,
    /// The state its connection must hold.
    pub target: Arc<ConnState>,
    /// The backend it was on (its pool), if any.
    pub home: Option<String>,
}

/// The state a session's connection must hold, with its settings hashed once.
#[derive(Debug, Clone)]
struct Target {
    state: Arc<ConnState>,
    /// The system variables and character sets, hashed ([`Target::context`] adds the schema).
    settings: u64,
}

impl Target {
    fn new(state: ConnState) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        state.variables.hash(&mut h);
        state.charsets.hash(&mut h);
        Self {
            settings: h.finish(),
            state: Arc::new(state),
        }
    }

    /// The settings a statement prepared in `schema` (else the state's) is bound to: schema,
    /// system variables, character sets (MariaDB binds them at prepare). Never 0.
    fn context(&self, schema: Option<&[u8]>) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        schema.or(self.state.schema.as_deref()).hash(&mut h);
        self.settings.hash(&mut h);
        h.finish().max(1)
    }
}

/// The session's multiplexing bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Mux {
    /// Statements open on the connection held now.
    conn_statements: Vec<PooledStatement>,
    /// The settings when the connection was taken.
    hold_context: u64,
    /// The session's state as computed at its park (or its acquire's start), until its next
    /// statement runs: no statement runs in between, so the acquire reuses it.
    target: Option<Target>,
    /// (client id, backend id) of statements prepared on it since.
    new_prepared: Vec<(u32, u32)>,
    /// The last statement left something to read: keep the connection until the next one.
    keep: bool,
    /// The statement in flight names `SQL_CALC_FOUND_ROWS`.
    calc_found_rows: bool,
    /// Given back, for the owner to take.
    parked: Option<Box<ParkedBackend>>,
    /// The acquire under way: since when, and how many tries.
    acquiring: Option<(Instant, u8)>,
    /// A pooled connection (not a new one) is being fixed up.
    adopted: bool,
    /// The login waits for the pool.
    login_waiting: bool,
    /// The connection being acquired is the login's (the client gets its OK once it is there).
    login: bool,
}

/// Finds `word` (upper case ASCII) in `text`, ignoring ASCII case; the index of each match.
fn find_words<'a>(text: &'a [u8], word: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    text.windows(word.len())
        .enumerate()
        .filter(move |(_, w)| w.eq_ignore_ascii_case(word))
        .map(|(i, _)| i)
}

/// What a statement's text says for multiplexing: (reads the connection's own values, asks for
/// found rows).
fn scan(text: &[u8]) -> (bool, bool) {
    const OWN: &[&[u8]] = &[
        b"CONNECTION_ID",
        b"ROW_COUNT",
        b"WARNINGS",
        b"ERRORS",
        b"WARNING_COUNT",
        b"ERROR_COUNT",
    ];
    let mut own = OWN.iter().any(|w| find_words(text, w).next().is_some());
    let mut calc = false;
    for i in find_words(text, b"FOUND_ROWS") {
        if i >= 9 && text[i - 9..i].eq_ignore_ascii_case(b"SQL_CALC_") {
            calc = true;
        } else {
            own = true;
        }
    }
    (own, calc)
}

impl ProxySession {
    /// True when this session multiplexes its backend connection.
    pub(super) fn multiplexing(&self) -> bool {
        self.mux.is_some()
    }

    /// How long a statement (or a login) waits for a backend connection (only asked with
    /// multiplexing on; the config's default otherwise).
    fn max_wait(&self) -> Duration {
        self.config
            .multiplexing
            .map_or(Duration::from_secs(5), |m| m.max_wait)
    }

    /// Logged in and between statements without a backend connection.
    pub fn is_detached(&self) -> bool {
        self.mux.is_some()
            && self.backend.is_none()
            && matches!(self.phase, Phase::Ready | Phase::Internal(Job::Migration))
            && self.login_info.is_some()
    }

    /// The connection given back with [`Event::BackendParked`].
    pub fn take_parked(&mut self) -> Option<Box<ParkedBackend>> {
        self.mux.as_mut()?.parked.take()
    }

    /// What the pool needs to choose a connection for this session.
    pub fn acquire_request(&mut self) -> Option<AcquireRequest> {
        let target = self.target()?;
        Some(AcquireRequest {
            user: self.state.user.clone().unwrap_or_default(),
            collation: self.login_info.as_ref().map_or(0, |l| l.collation),
            capabilities: pooled_capabilities(self.backend_capabilities()),
            target: target.state,
            home: self.backend_name.clone(),
        })
    }

    fn conn_state(&self) -> ConnState {
        ConnState::of_session(
            &self.state,
            &self.track,
            self.snapshot.current().unwrap_or_default(),
        )
    }

    /// The state the session's connection must hold during an acquire: the one computed at the
    /// park (or at the acquire's first try), else computed now and kept until the acquire ends.
    fn target(&mut self) -> Option<Target> {
        if let Some(target) = self.mux.as_ref()?.target.clone() {
            // Nothing the session ran since may have changed it.
            debug_assert_eq!(*target.state, self.conn_state());
            return Some(target);
        }
        let target = Target::new(self.conn_state());
        self.mux.as_mut()?.target = Some(target.clone());
        Some(target)
    }

    /// Notes a client command under multiplexing: what its text pins or keeps. True when ferry
    /// answers it alone, without a backend connection (COM_STMT_CLOSE: the statement stays on
    /// the connection for whoever prepares the same text).
    pub(super) fn mux_on_command(&mut self, payload: &Bytes) -> bool {
        if self.mux.is_none() {
            return false;
        }
        self.set_timer(Timer::Park, None);
        let Some(mux) = self.mux.as_mut() else {
            return false;
        };
        mux.keep = false;
        match payload.first().copied() {
            Some(Command::COM_QUERY | Command::COM_STMT_PREPARE) => {
                let (own, calc) = scan(&payload[1..]);
                mux.calc_found_rows = calc;
                if own {
                    self.track.connection_bound = true;
                }
                false
            }
            Some(Command::COM_STMT_CLOSE) => true,
            _ => false,
        }
    }

    /// A response completed under multiplexing: note what it leaves to read and the statement it
    /// prepared (`backend_id`: the id the backend gave, `client_id` the client's).
    pub(super) fn mux_on_response(
        &mut self,
        summary: &crate::backend::ResponseSummary,
        prepared: Option<(u32, u32)>,
    ) {
        let Some(mux) = self.mux.as_mut() else {
            return;
        };
        mux.keep = summary.error.is_some()
            || summary.warnings > 0
            || summary.affected_rows > 0
            || std::mem::take(&mut mux.calc_found_rows);
        if let Some(ids) = prepared {
            mux.new_prepared.push(ids);
        }
    }

    /// At a safe point: gives the backend connection back to the pool when nothing needs it.
    /// True when it did.
    pub(super) fn try_park(&mut self, now: Instant) -> bool {
        let Some(mux) = self.mux.as_ref() else {
            return false;
        };
        if self.shutting_down
            || !matches!(self.phase, Phase::Ready)
            || self.held.is_some()
            || self.snapshot.due
            || self.pinned().is_some()
            || !self.backend().is_some_and(Backend::is_idle)
        {
            return false;
        }
        if let Some(m) = &self.migration {
            if m.step != Step::Waiting {
                return false;
            }
        }
        if mux.keep {
            if self.timers[Timer::Park as usize].is_none() {
                self.set_timer(Timer::Park, Some(now + KEEP));
            }
            return false;
        }
        self.park(now);
        true
    }

    /// The [`KEEP`] time passed with no statement.
    pub(super) fn keep_expired(&mut self, now: Instant) {
        self.set_timer(Timer::Park, None);
        if let Some(mux) = self.mux.as_mut() {
            mux.keep = false;
        }
        self.try_park(now);
    }

    fn park(&mut self, now: Instant) {
        let target = Target::new(self.conn_state());
        let Some(mut mux) = self.mux.take() else {
            return;
        };
        let mut statements = std::mem::take(&mut mux.conn_statements);
        // Settings changed while it was held: what was prepared meanwhile is not known to be
        // bound to the settings now.
        let fresh = target.context(None) == mux.hold_context;
        for (client, id) in mux.new_prepared.drain(..) {
            let Some(text) = self.track.statement_sql.get(&client) else {
                continue;
            };
            let context = target.context(text.schema.as_deref());
            statements.push(PooledStatement {
                sql: text.sql.clone(),
                context: if fresh { context } else { 0 },
                id,
            });
        }
        let user = self.state.user.clone().unwrap_or_default();
        let collation = self.login_info.as_ref().map_or(0, |l| l.collation);
        let capabilities = pooled_capabilities(self.backend_capabilities());
        let name = self.backend_name.clone().unwrap_or_default();
        let state = target.state.clone();
        mux.target = Some(target);
        self.mux = Some(mux);
        if statements.len() > MAX_POOLED_STATEMENTS {
            // Too many to keep track of: a fresh connection next time.
            self.release_backend(now);
            return;
        }
        let Some(link) = self.backend.take() else {
            return;
        };
        let Some(backend) = link.conn else {
            return;
        };
        if let Some(mux) = self.mux.as_mut() {
            mux.parked = Some(Box::new(ParkedBackend {
                backend,
                state,
                statements,
                name,
                user,
                collation,
                capabilities,
            }));
        }
        self.events
            .push_back(Event::BackendParked { conn: link.id });
        // A move asked for while attached: detached, it is only a change of pool.
        if let Some(target) = self
            .migration
            .as_ref()
            .filter(|m| m.step == Step::Waiting && m.failover.is_none())
            .map(|m| m.target.clone())
        {
            self.migration = None;
            self.set_timer(Timer::Migration, None);
            self.retarget(target);
        }
    }

    /// A detached session moves to `to`'s pool: nothing to rebuild (the next statement's
    /// fix-up does it).
    pub(super) fn retarget(&mut self, to: String) {
        let from = self.backend_name.replace(to.clone()).unwrap_or_default();
        self.events
            .push_back(Event::MigrationStarted { to: to.clone() });
        self.events.push_back(Event::MigrationDone {
            from,
            to,
            pause: Duration::ZERO,
            skipped_variables: Vec::new(),
        });
    }

    /// Under `proxy` auth ferry checked the client: its session starts on a connection from the
    /// pool (an idle one of its user, brought to a fresh session's state, or a new one), and
    /// the client gets its OK then (or the backend's ERR: an unknown database, a refused login).
    pub(super) fn start_pooled_login(&mut self, now: Instant) {
        if let Some(mux) = self.mux.as_mut() {
            mux.login = true;
        }
        self.start_acquire(now, 0);
    }

    /// A client command while detached: it waits for a backend connection.
    pub(super) fn start_acquire(&mut self, now: Instant, tries: u8) {
        let id = self.next_conn;
        self.next_conn += 1;
        let mut m = Migration::new(
            self.backend_name.clone().unwrap_or_default(),
            Step::Connecting,
            None,
        );
        m.old = self.snapshot.current().unwrap_or_default();
        m.pooled = true;
        m.pool_waiting = true;
        m.new = Some(super::migration::NewBackend { id, conn: None });
        self.migration = Some(m);
        self.phase = Phase::Internal(Job::Migration);
        if let Some(mux) = self.mux.as_mut() {
            let since = mux.acquiring.map_or(now, |(t, _)| t);
            mux.acquiring = Some((since, tries));
            mux.adopted = false;
        }
        let wait = self.max_wait();
        self.set_timer(Timer::MigrationStep, Some(now + wait));
        self.events.push_back(Event::AcquireBackend { conn: id });
    }

    /// The pool gave this session the parked connection `parked` as its connection `conn`:
    /// bring it to the session's state (`check`: ping it first, it was idle a while), then the
    /// statement that waited runs.
    pub fn adopt(
        &mut self,
        now: Instant,
        conn: BackendConnId,
        parked: Box<ParkedBackend>,
        check: bool,
    ) {
        let ParkedBackend {
            backend,
            state,
            statements,
            name,
            ..
        } = *parked;
        let Some(target) = self.target() else {
            return;
        };
        let Some(m) = self.migration.as_mut().filter(|m| {
            m.pooled && m.step == Step::Connecting && m.new.as_ref().is_some_and(|n| n.id == conn)
        }) else {
            return;
        };
        if !check && Arc::ptr_eq(&state, &target.state) {
            // The connection this session gave back, untouched since (another session's park
            // would have left its own state): nothing to bring over, its statement ids stand.
            m.new = Some(super::migration::NewBackend {
                id: conn,
                conn: Some(backend),
            });
            m.to_name = Some(name);
            m.pool_waiting = false;
            m.own_connection = true;
            if let Some(mux) = self.mux.as_mut() {
                mux.conn_statements = statements;
                mux.adopted = true;
            }
            self.finish_migration(now);
            return self.drive(now);
        }
        let mut prepare = Vec::new();
        let mut reused = Vec::new();
        let mut texts: Vec<_> = self.track.statement_sql.iter().collect();
        texts.sort_by_key(|(id, _)| **id);
        for (client, text) in texts {
            let context = target.context(text.schema.as_deref());
            match statements
                .iter()
                .find(|s| s.context == context && *s.sql == *text.sql)
            {
                Some(s) => reused.push((*client, s.id)),
                None => prepare.push((*client, text)),
            }
        }
        let prepare = super::migration::replay_prepares(prepare, target.state.schema.as_deref());
        let plan = match fixup::plan_items(&state, &target.state, prepare) {
            Ok(plan) => plan,
            Err(_) => {
                // The pool checks reachability; a connection that cannot be brought there is
                // closed and another one taken.
                m.new = Some(super::migration::NewBackend {
                    id: conn,
                    conn: Some(backend),
                });
                return self.fail_migration(
                    now,
                    MigrationFailure::BackendLost(super::BackendLoss::NotReady),
                );
            }
        };
        m.plan = plan;
        if check {
            m.plan.push_front(super::migration::replay_ping());
        }
        m.new_ids = reused;
        m.new = Some(super::migration::NewBackend {
            id: conn,
            conn: Some(backend),
        });
        m.to_name = Some(name);
        m.step = Step::Replaying;
        m.pool_waiting = false;
        if let Some(mux) = self.mux.as_mut() {
            mux.conn_statements = statements;
            mux.adopted = true;
        }
        self.arm_step(now);
        self.replay_next(now);
        self.drive(now);
    }

    /// The acquired connection is the session's now (the swap of `finish_migration`).
    pub(super) fn acquired(
        &mut self,
        now: Instant,
        new_ids: &[(u32, u32)],
        fixups: usize,
        skipped_variables: Vec<String>,
    ) {
        let Some(target) = self.target() else {
            return;
        };
        let Some(mux) = self.mux.as_mut() else {
            return;
        };
        // The statement that waited runs next, and may change the state.
        mux.target = None;
        mux.hold_context = target.context(None);
        // Re-prepared ones are new on the connection (reused ones are listed already).
        let listed = |id: u32| mux.conn_statements.iter().any(|s| s.id == id);
        let fresh: Vec<_> = new_ids
            .iter()
            .copied()
            .filter(|(_, b)| !listed(*b))
            .collect();
        mux.new_prepared.extend(fresh);
        let (since, _) = mux.acquiring.take().unwrap_or((now, 0));
        let adopted = std::mem::take(&mut mux.adopted);
        let login = std::mem::take(&mut mux.login);
        self.events.push_back(Event::BackendAcquired {
            reused: adopted,
            fixups,
            waited: now.saturating_duration_since(since),
            skipped_variables,
        });
        if login && self.frontend.accept_login(now).is_ok() {
            let user = self.user().unwrap_or_default().to_owned();
            self.events.push_back(Event::Authenticated { user });
        }
    }

    /// The login's connection could not be had: the client gets `error` and the session ends.
    fn refuse_pooled_login(&mut self, now: Instant, error: ProtocolError) {
        if let Some(mux) = self.mux.as_mut() {
            mux.login = false;
            mux.acquiring = None;
        }
        self.migration = None;
        self.close_reason
            .get_or_insert(super::CloseReason::LoginRefused(error.clone()));
        self.refuse_login(now, false, error);
    }

    fn logging_in(&self) -> bool {
        self.mux.as_ref().is_some_and(|m| m.login)
    }

    /// The login waits for the pool: after `max-wait` it gets ERR 1040, not the connect
    /// timeout's 1429.
    pub fn pool_login_wait(&mut self, now: Instant) {
        let Some(mux) = self.mux.as_mut() else {
            return;
        };
        if !matches!(self.phase, Phase::Login(_)) || mux.login_waiting {
            return;
        }
        mux.login_waiting = true;
        let wait = self.max_wait();
        self.set_timer(Timer::Connect, Some(now + wait));
    }

    /// The login's connection opens now: the connect timeout applies again.
    pub fn pool_login_open(&mut self, now: Instant) {
        if let Some(mux) = self.mux.as_mut().filter(|m| m.login_waiting) {
            mux.login_waiting = false;
            if matches!(self.phase, Phase::Login(_)) {
                let deadline = now + self.config.backend.connect_timeout;
                self.set_timer(Timer::Connect, Some(deadline));
            }
        }
    }

    /// The login waited for the pool until its deadline.
    pub(super) fn login_waited(&self) -> bool {
        self.mux.as_ref().is_some_and(|m| m.login_waiting)
    }

    /// The pool let this session open a new connection for `conn` (a `Connect` follows): from
    /// now on the step deadline applies, not the pool's wait.
    pub fn pool_open(&mut self, now: Instant, conn: BackendConnId) {
        if let Some(m) = self
            .migration
            .as_mut()
            .filter(|m| m.pooled && m.pool_waiting && m.new.as_ref().is_some_and(|n| n.id == conn))
        {
            m.pool_waiting = false;
            self.arm_step(now);
        }
    }

    /// The connection being acquired failed (a pooled one found dead, a connect or login that
    /// failed): another try, or the session is lost. True when handled.
    pub(super) fn acquire_failed(&mut self, now: Instant, reason: MigrationFailure) {
        let tries = self
            .mux
            .as_ref()
            .and_then(|m| m.acquiring)
            .map_or(0, |(_, t)| t);
        self.set_timer(Timer::MigrationStep, None);
        if self.logging_in() {
            // The backend's own answer when it gave one (unknown database, login refused).
            let error = match &reason {
                MigrationFailure::LoginRefused(e) => Some(e.clone()),
                MigrationFailure::Replay {
                    error: super::ReplayError::Error(e),
                    ..
                } => Some(e.clone()),
                _ => None,
            };
            if let Some(error) = error {
                return self.refuse_pooled_login(now, error);
            }
            if tries + 1 >= MAX_ATTEMPTS || self.shutting_down {
                let reason = super::LoginFailure::Connect(super::ConnectFailure::Refused(
                    reason.to_string(),
                ));
                let error = super::login::unavailable(&reason);
                return self.refuse_pooled_login(now, error);
            }
        }
        if tries + 1 < MAX_ATTEMPTS && !self.shutting_down {
            return self.start_acquire(now, tries + 1);
        }
        if let Some(mux) = self.mux.as_mut() {
            mux.acquiring = None;
        }
        let from = self.backend_name.clone().unwrap_or_default();
        self.lose(
            now,
            from,
            super::BackendLoss::Closed,
            super::LossReason::Rebuild(reason),
            None,
        );
    }

    /// No backend connection for this session: the pool is full and its wait queue too
    /// (`waited: false`), or the session waited `max-wait`. The statement that waited gets
    /// MariaDB's ERR 1040; the session goes on.
    pub fn pool_refused(&mut self, now: Instant) {
        let Some(m) = self.migration.take_if(|m| m.pooled) else {
            return;
        };
        self.set_timer(Timer::MigrationStep, None);
        if let Some(new) = m.new {
            self.events.push_back(Event::CloseBackend { conn: new.id });
        }
        if let Some(mux) = self.mux.as_mut() {
            mux.acquiring = None;
        }
        self.events.push_back(Event::PoolTimeout);
        if self.logging_in() {
            // As MariaDB refuses a client over max_connections.
            self.refuse_pooled_login(now, too_many_connections());
            return self.drive(now);
        }
        self.held = None;
        self.held_since = None;
        self.held_arrived = None;
        let _ = self.frontend.send_error(now, &too_many_connections());
        let _ = self.frontend.end_response(now);
        self.enter_ready(now);
        self.drive(now);
    }
}

/// MariaDB's answer when `max_connections` is reached.
pub(crate) fn too_many_connections() -> ProtocolError {
    ProtocolError::new(1040, "08004", "Too many connections")
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn scan_finds_what_reads_the_connection() {
        assert_eq!(scan(b"SELECT 1"), (false, false));
        assert_eq!(scan(b"select connection_id()"), (true, false));
        assert_eq!(scan(b"SHOW WARNINGS"), (true, false));
        assert_eq!(scan(b"SELECT @@warning_count"), (true, false));
        assert_eq!(scan(b"SELECT FOUND_ROWS()"), (true, false));
        assert_eq!(
            scan(b"SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1"),
            (false, true)
        );
        assert_eq!(scan(b"SELECT row_count()"), (true, false));
    }
}
