//! [`Endpoint`]: the proxy as a whole, sans-IO (quinn-proto's `Endpoint` beside its
//! `Connection`). It owns the checked configuration, the backend registry, the session listing,
//! the counters, the health-check schedule and the balancer, and it answers the admin API. Every
//! decision that is not one session's own is taken here, once, for every driver:
//!
//! - **Accepting**: `max-connections`, blocked addresses, which shard (worker) serves a new
//!   client (the one with the fewest sessions), connection ids, the accept back-off after a
//!   failed `accept`. A refused client gets the ERR a MariaDB server would send in place of its
//!   greeting ([`Accept::Refused`]).
//! - **Failed logins**: counted by reason, logged at info (rate-limited, as every line a client
//!   can cause: [`LogLimiter`]), and with `max-auth-failures` an address that fails too often
//!   is blocked for a while ([`AuthFailures`]).
//! - **Graceful shutdown** ([`Endpoint::begin_shutdown`]): `/health/ready` answers 503 at once,
//!   new clients are still accepted for `shutdown-delay`; then the listener closes
//!   ([`Endpoint::is_accepting`]) and every session is asked to finish (a session inside a
//!   transaction may finish it) until [`Endpoint::shutdown_deadline`].
//! - **Placement and failover** ([`Endpoint::sync`]): the backend of each new backend connection
//!   (the migration's target, else the [`BackendChooser`], else least sessions among healthy
//!   backends), and after a TCP error or a refusal, the backend marked down and the next one tried.
//! - **Health**: rounds of [`HealthProbe`]s every `health.interval` (the driver runs each probe's
//!   socket), verdicts recorded in the registry; the first round also fixes the server version
//!   advertised to clients.
//! - **Migration**: drains, undrains, admin requests and the balancer's plan become
//!   [`Command`]s for the sessions, which the driver hands to their [`Connection`]s.
//! - **Reload** ([`Endpoint::reload`], in `endpoint/reload.rs`): a new configuration applied
//!   live, backends added and removed, the version `GET /api/config` shows.
//!
//! A multi-threaded driver keeps it in a `Mutex`; a single-threaded one owns it. Every mutator
//! takes `now`; [`Endpoint::poll_timeout`] says when [`Endpoint::handle_timeout`] is due, and
//! after any call the driver delivers [`Endpoint::poll_command`] to the shards that
//! [`Endpoint::take_wakeups`] names.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::BackendConfig;
use crate::session::{ConnectFailure, MigrationRefused, PinReason, SessionConfig};
use crate::RandomSource;

use super::accept::{Accept, Refusal, RefusalReason};
use super::admin::{self, AdminApi, ApiError, BackendInfo, Metrics, ProcessStats, SessionInfo};
use super::chooser::{BackendChooser, Choice, ChooseRequest, Routes};
use super::config::{AuthMode, Config, ConfigError, MigrationMode};
use super::connection::{BackendSlot, Connection, PoolClose, PoolPending, Work};
use super::counters::Counters;
use super::failed_logins::{AuthFailures, FailedLogin, Recorded};
use super::health::{record_refusal, record_verdict, HealthProbe, Verdict};
use super::log_limit::{LogKind, LogLimiter};
use super::migration::{migration_event, Listing as Moved};
use super::pool::{Grant, Pool};
use super::rebalance::{pin_is_transient, plan_migrations, BackendView, SessionView};
use super::registry::Registry;
use super::reload::{ConfigStatus, ReloadError, ReloadReport};
use super::session_config::session_config;

mod reload;
use reload::ReloadState;

/// How long accepting pauses after `accept` failed (out of descriptors): the clients wait in the
/// backlog, and an edge-triggered driver would otherwise not look again until the next client.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long after an "accept failed" warning a new failure is counted but not logged again.
pub const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the endpoint asks of one session; the driver delivers it to
/// [`Connection::handle_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Move to backend `to` at the next safe point.
    Migrate {
        /// The target backend's name.
        to: String,
    },
    /// Give up a requested or running migration.
    CancelMigration,
    /// Graceful shutdown: finish the statement in flight (and an open transaction), then close.
    Shutdown,
    /// The health check found `backend` down: an idle session on it fails over (see
    /// [`ProxySession::backend_down`](crate::session::ProxySession::backend_down)).
    BackendDown {
        /// The backend's name.
        backend: String,
    },
    /// Multiplexing: a backend connection may be free; a session waiting for one tries again.
    PoolReady,
}

/// A session as the endpoint lists it.
#[derive(Debug, Clone, Default)]
struct Listing {
    shard: usize,
    /// `Some` once authenticated: only then is it in `/api/sessions` and plans.
    user: Option<String>,
    backend: Option<String>,
    pinned: Option<PinReason>,
    /// The backend a requested or running migration goes to.
    target: Option<String>,
    /// After a failed migration: not planned again before this.
    retry_at: Option<Instant>,
    /// The client's address (from its PROXY header, when a trusted peer sent one), once
    /// authenticated.
    client: Option<SocketAddr>,
}

/// One worker's share: its counters (written by its sessions only), its session count and the
/// commands for its sessions.
#[derive(Debug, Default)]
struct Shard {
    counters: Arc<Counters>,
    sessions: usize,
    commands: VecDeque<(u64, Command)>,
    wake: bool,
    /// `accept` has failed since it last succeeded (logged once per episode).
    accept_failing: bool,
    /// When "accept failed" was last logged: an accept that flaps between failing and
    /// succeeding (descriptors freed and taken again at once) is one episode for the log.
    accept_warned: Option<Instant>,
}

/// How long past its probes' deadline a round may take before it is given up (a driver that
/// never gave a probe back must not stop the health checks).
const ROUND_GRACE: Duration = Duration::from_secs(1);

/// The health-check schedule.
#[derive(Debug)]
struct HealthRounds {
    /// When the next round starts.
    next: Instant,
    /// The round running (or last run), counted from 1.
    round: u64,
    /// When the running round is given up if probes are still out.
    round_end: Instant,
    /// Probes of the running round handed out and not yet finished.
    outstanding: usize,
    /// Probes of the round just started, for [`Endpoint::poll_probe`].
    queued: Vec<HealthProbe>,
    /// The first round's verdicts in configuration order, until it completes.
    first: Option<Vec<Option<Verdict>>>,
}

/// Graceful shutdown, once begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    /// `shutdown-delay`: not ready, but still accepting, until then.
    Delay { until: Instant },
    /// The listener is closed; the sessions finish until then.
    Closing { deadline: Instant },
}

/// The proxy as a whole; see the [module docs](self).
pub struct Endpoint {
    config: Config,
    session_config: Arc<SessionConfig>,
    registry: Registry,
    chooser: Option<Box<dyn BackendChooser>>,
    shards: Vec<Shard>,
    sessions: HashMap<u64, Listing>,
    live: usize,
    next_connection_id: u32,
    shutdown: Option<Shutdown>,
    health: HealthRounds,
    next_rebalance: Instant,
    reload: ReloadState,
    auth_failures: AuthFailures,
    log_limiter: LogLimiter,
    /// The monitor account's login, for health checks (`[health] user`).
    monitor: Option<Arc<BackendConfig>>,
    /// Per registry index: the last check's warning (a refused monitor login).
    health_warnings: Vec<Option<String>>,
    /// Per registry index: why it is down (the last failed check or backend connect).
    down_reasons: Vec<Option<String>>,
    /// Multiplexing's backend connections.
    pool: Pool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("registry", &self.registry)
            .field("live", &self.live)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint for `config`, made at `now`, with `shards` workers (at least one), its sessions configured
    /// from `config` ([`session_config`]). Fails only if a file the configuration names (a
    /// backend CA) cannot be read.
    pub fn new(now: Instant, config: &Config, shards: usize) -> Result<Self, ConfigError> {
        Ok(Self::with_session_config(
            now,
            config,
            session_config(config)?,
            shards,
        ))
    }

    /// [`Endpoint::new`] with a session configuration of the caller's (for core options the
    /// file does not have).
    pub fn with_session_config(
        now: Instant,
        config: &Config,
        session_config: SessionConfig,
        shards: usize,
    ) -> Self {
        let first = Some(vec![None; config.backends.len()]);
        let monitor = config.health.monitor.as_ref().map(|m| {
            let mut login = BackendConfig::new(m.user.clone(), m.secret.clone());
            login.connect_timeout = config.health.timeout;
            // The sessions' transport: a backend that requires TLS requires it of the monitor.
            login.tls = session_config.backend.tls.clone();
            Arc::new(login)
        });
        Self {
            config: config.clone(),
            session_config: Arc::new(session_config),
            registry: Registry::new(&config.backends),
            chooser: (!config.routes.is_empty())
                .then(|| Box::new(Routes(config.routes.clone())) as Box<dyn BackendChooser>),
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            sessions: HashMap::new(),
            live: 0,
            next_connection_id: 1,
            shutdown: None,
            // The first round is due at once: drivers run it before serving.
            health: HealthRounds {
                next: now,
                round: 0,
                round_end: now,
                outstanding: 0,
                queued: Vec::new(),
                first,
            },
            next_rebalance: now + config.migration.rebalance_interval,
            reload: ReloadState::new(now, config),
            auth_failures: AuthFailures::new(&config.proxy),
            log_limiter: LogLimiter::default(),
            monitor,
            health_warnings: vec![None; config.backends.len()],
            down_reasons: vec![None; config.backends.len()],
            pool: Pool::new(config.multiplexing),
        }
    }

    /// Routes new sessions through `chooser` (see [`BackendChooser`]), in place of the
    /// configuration's `[[routes]]`.
    pub fn set_chooser(&mut self, chooser: Box<dyn BackendChooser>) {
        self.chooser = Some(chooser);
        self.reload.routes_chooser = false;
    }

    // ---- getters ----

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ready for new clients: false once [`Endpoint::begin_shutdown`] ran (`/health/ready` and
    /// `/health` answer 503).
    pub fn is_serving(&self) -> bool {
        self.shutdown.is_none()
    }

    /// The listeners stay open: false once the shutdown's delay is over (at once without
    /// `shutdown-delay`). A driver closes its listeners when it turns false (it may change in
    /// [`Endpoint::handle_timeout`] and [`Endpoint::begin_shutdown`]); a client accepted after
    /// that is refused with ERR 1053.
    pub fn is_accepting(&self) -> bool {
        !matches!(self.shutdown, Some(Shutdown::Closing { .. }))
    }

    /// Once the listeners are closed: when the sessions still open are dropped
    /// (`shutdown-timeout` after the listeners closed).
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        match self.shutdown {
            Some(Shutdown::Closing { deadline }) => Some(deadline),
            _ => None,
        }
    }

    /// The listeners are closed: no health rounds, balancer or failover any more.
    fn closing(&self) -> bool {
        !self.is_accepting()
    }

    /// Client sessions open now (including those still logging in).
    pub fn live_sessions(&self) -> usize {
        self.live
    }

    /// The backends in the order they were configured (a reload adds at the end): health,
    /// draining (a backend a reload removed shows as draining until it is gone), backend
    /// connections open, and what the last health check warned of.
    pub fn backends(&self) -> Vec<BackendInfo> {
        let mut infos = self.registry.infos();
        // By name: the listing skips backends a reload retired, the warnings are by index.
        for info in &mut infos {
            let warning = self
                .registry
                .find(&info.name)
                .and_then(|i| self.health_warnings.get(i));
            if let Some(warning) = warning {
                info.health_warning.clone_from(warning);
            }
            if !info.healthy {
                let reason = self
                    .registry
                    .find(&info.name)
                    .and_then(|i| self.down_reasons.get(i));
                if let Some(reason) = reason {
                    info.down_reason.clone_from(reason);
                }
            }
        }
        infos
    }

    /// The authenticated sessions, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .sessions
            .iter()
            .filter_map(|(&id, l)| {
                Some(SessionInfo {
                    id,
                    user: l.user.clone()?,
                    backend: l.backend.clone(),
                    pinned: l.pinned.map(|p| p.as_str().to_owned()),
                    client: l.client.map(|c| c.to_string()).unwrap_or_default(),
                })
            })
            .collect();
        list.sort_by_key(|s| s.id);
        list
    }

    /// The counters, as `/metrics` shows them.
    pub fn metrics(&self) -> Metrics {
        let mut pinned = BTreeMap::new();
        for l in self.sessions.values().filter(|l| l.user.is_some()) {
            if let Some(reason) = l.pinned {
                *pinned.entry(reason.as_str().to_owned()).or_insert(0) += 1;
            }
        }
        let sets: Vec<&Counters> = self.shards.iter().map(|s| &*s.counters).collect();
        let mut m = Counters::metrics(&sets, self.live as u64, pinned, self.registry.infos());
        if self.pool.is_on() {
            for (index, b) in self.registry.backends().iter().enumerate() {
                let (in_use, idle) = self.pool.usage(index);
                m.pool
                    .connections
                    .push((b.name.clone(), in_use as u64, idle as u64));
            }
            m.pool.waiting = self.pool.waiting() as u64;
        }
        m
    }

    // ---- accepting ----

    /// A client connected from `client`, accepted by shard `accepted_by`:
    /// [`Accept::Connection`], owned by [`Connection::shard`] (the shard with the fewest
    /// sessions, `accepted_by` on a tie), with `random` as its CSPRNG; or [`Accept::Refused`]
    /// (listener closing, address blocked, `max-connections` reached): the driver writes the
    /// refusal's bytes and closes the socket.
    pub fn accept(
        &mut self,
        now: Instant,
        client: SocketAddr,
        accepted_by: usize,
        random: Box<dyn RandomSource + Send>,
    ) -> Accept {
        let accepted_by = accepted_by.min(self.shards.len() - 1);
        let by = &mut self.shards[accepted_by];
        if by.accept_failing {
            by.accept_failing = false;
            tracing::info!(worker = accepted_by, "accepting again");
        }
        if let Some(refusal) = self.refusal(now, client, accepted_by) {
            return Accept::Refused(refusal);
        }
        Counters::add(&self.shards[accepted_by].counters.accepted, 1);
        let mut shard = accepted_by;
        for (i, s) in self.shards.iter().enumerate() {
            if s.sessions < self.shards[shard].sessions {
                shard = i;
            }
        }
        self.live += 1;
        self.shards[shard].sessions += 1;
        let id = self.next_connection_id();
        self.sessions.insert(
            u64::from(id),
            Listing {
                shard,
                ..Listing::default()
            },
        );
        let proxy_trusted =
            (self.config.proxy.proxy_protocol_from.iter()).any(|n| n.contains(client.ip()));
        tracing::debug!(session = id, client = %client, proxy_trusted, "client connected");
        Accept::Connection(Connection::new(
            now,
            id,
            shard,
            client,
            proxy_trusted,
            Arc::clone(&self.session_config),
            Arc::clone(&self.shards[shard].counters),
            random,
        ))
    }

    /// Why a client from `client` is refused now, if it is (counted and logged, rate-limited).
    fn refusal(&mut self, now: Instant, client: SocketAddr, shard: usize) -> Option<Refusal> {
        let ip = client.ip();
        let reason = if self.closing() {
            RefusalReason::ShuttingDown
        } else if let Some(until) = self.auth_failures.blocked_until(now, ip) {
            RefusalReason::Blocked { until }
        } else if self.live >= self.config.proxy.max_connections {
            RefusalReason::MaxConnections
        } else {
            return None;
        };
        let counters = &self.shards[shard].counters;
        match reason {
            RefusalReason::ShuttingDown => {
                tracing::debug!(client = %client, "shutting down; connection refused");
            }
            RefusalReason::Blocked { until } => {
                Counters::add(&counters.refused_blocked, 1);
                if let Some(suppressed) = self.log_limiter.allow(now, LogKind::BlockedHost) {
                    let blocked_for = until.saturating_duration_since(now);
                    tracing::warn!(client = %client, ?blocked_for, suppressed, "address blocked after failed logins; connection refused");
                }
            }
            RefusalReason::MaxConnections => {
                Counters::add(&counters.refused_max_connections, 1);
                if let Some(suppressed) = self.log_limiter.allow(now, LogKind::MaxConnections) {
                    let max = self.config.proxy.max_connections;
                    tracing::warn!(client = %client, max, suppressed, "max-connections reached; connection refused");
                }
            }
        }
        Some(Refusal::new(reason, ip))
    }

    /// A login from `client` failed: counted, logged (rate-limited), and toward a block.
    fn login_failed(
        &mut self,
        now: Instant,
        counters: &Counters,
        client: SocketAddr,
        user: Option<&str>,
        failed: &FailedLogin,
    ) {
        counters.login_failed(failed.reason);
        if let Some(suppressed) = self.log_limiter.allow(now, LogKind::LoginFailed) {
            let user = user.unwrap_or("-");
            let (code, error) = failed
                .error
                .as_ref()
                .map_or((0, ""), |e| (e.code, e.message.as_str()));
            tracing::info!(%user, client = %client, reason = failed.reason, code, error, suppressed, "login failed");
        }
        if !failed.counts_toward_block() {
            return;
        }
        match self.auth_failures.record(now, client.ip()) {
            Recorded::Counted => {}
            Recorded::Blocked { until } => {
                if let Some(suppressed) = self.log_limiter.allow(now, LogKind::HostBlocked) {
                    let blocked_for = until.saturating_duration_since(now);
                    let max = self.config.proxy.max_auth_failures;
                    let window = self.config.proxy.auth_failure_window;
                    tracing::warn!(client = %client.ip(), failures = max, ?window, ?blocked_for, suppressed, "address blocked after failed logins");
                }
            }
            Recorded::Untracked => {
                if let Some(suppressed) = self.log_limiter.allow(now, LogKind::FailureTableFull) {
                    tracing::warn!(client = %client.ip(), tracked = self.auth_failures.len(), suppressed, "too many addresses with failed logins; this one is not tracked for blocking");
                }
            }
        }
    }

    /// `accept` failed on shard `shard` (out of descriptors...): counted, logged once per
    /// episode (and at most once per [`ACCEPT_WARN_EVERY`]); accept again at the returned instant
    /// (the clients wait in the backlog).
    pub fn accept_failed(&mut self, now: Instant, shard: usize, error: &io::Error) -> Instant {
        if let Some(s) = self.shards.get_mut(shard) {
            Counters::add(&s.counters.accept_errors, 1);
            let quiet = s
                .accept_warned
                .is_some_and(|at| now.saturating_duration_since(at) < ACCEPT_WARN_EVERY);
            if !s.accept_failing && !quiet {
                s.accept_warned = Some(now);
                tracing::warn!(worker = shard, %error, retry_every = ?ACCEPT_BACKOFF, "accept failed; clients wait in the backlog");
            }
            s.accept_failing = true;
        }
        now + ACCEPT_BACKOFF
    }

    /// A connection id unique within the proxy (0 is skipped: clients read it as "none").
    fn next_connection_id(&mut self) -> u32 {
        loop {
            let id = self.next_connection_id;
            self.next_connection_id = id.wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }

    /// The driver dropped `conn` (its session closed, or the shutdown deadline passed): its
    /// backend connections no longer count and it leaves the listing. Calling it again does
    /// nothing.
    pub fn connection_closed(&mut self, now: Instant, conn: &mut Connection) {
        if conn.finished {
            return;
        }
        conn.finished = true;
        for slot in conn.backends.drain(..) {
            self.registry.release(slot.index);
            self.pool.gone(slot.index);
        }
        self.pool.cancel_wait(conn.id());
        let work: Vec<Work> = conn.work.drain(..).collect();
        for work in work {
            match work {
                Work::Release { index }
                | Work::ConnectFailed {
                    slot: BackendSlot { index, .. },
                    ..
                } => {
                    self.registry.release(index);
                    self.pool.gone(index);
                }
                // Never parked: its socket closes with the session's.
                Work::Park { index, .. } => {
                    self.registry.release(index);
                    self.pool.gone(index);
                }
                // Not synced before it was dropped: still a failed login.
                Work::LoginFailed(failed) => {
                    let counters = Arc::clone(&conn.counters);
                    self.login_failed(now, &counters, conn.client(), conn.session.user(), &failed);
                }
                _ => {}
            }
        }
        self.sessions.remove(&conn.id());
        self.live = self.live.saturating_sub(1);
        if let Some(s) = self.shards.get_mut(conn.shard()) {
            s.sessions = s.sessions.saturating_sub(1);
        }
        for session in self.pool.take_woken() {
            self.send(session, Command::PoolReady);
        }
        tracing::debug!(session = conn.id(), "connection closed");
    }

    // ---- the connections' work ----

    /// Does the work `conn` has for the endpoint (see [`Connection::needs_sync`]): backend
    /// choice and failover, the listing, migration bookkeeping. May queue transmits and
    /// [`IoEvent`](super::IoEvent)s on `conn`.
    pub fn sync(&mut self, now: Instant, conn: &mut Connection) {
        while let Some(work) = conn.work.pop_front() {
            match work {
                Work::NeedBackend { conn: c, target } => self.connect(now, conn, c, target),
                Work::Acquire { conn: c } => self.acquire(now, conn, c),
                Work::Park {
                    conn: c,
                    index,
                    parked,
                } => {
                    self.registry.release(index);
                    let usable = self
                        .registry
                        .get(index)
                        .is_some_and(super::registry::Backend::takes_sessions);
                    match self.pool.park(now, conn.id(), index, parked, usable) {
                        Some(pooled) => conn.io_park(c, pooled),
                        None => {
                            conn.close_unpooled(c);
                            self.pool.gone(index);
                        }
                    }
                }
                Work::CancelWait => {
                    conn.pool_pending = None;
                    self.pool.cancel_wait(conn.id());
                }
                Work::ConnectFailed {
                    slot,
                    local,
                    error,
                    reason,
                } => {
                    if !local {
                        self.record_down_reason(slot.index, Some(reason));
                    }
                    self.connect_failed(now, conn, slot, local, &error)
                }
                Work::Refused { backend, error } => {
                    if let Some(index) = self.registry.find(&backend) {
                        let reason =
                            format!("refused a connection: {} {}", error.code, error.message);
                        self.record_down_reason(index, Some(reason));
                    }
                    record_refusal(&self.registry, &backend, &error);
                }
                Work::Release { index } => {
                    self.registry.release(index);
                    self.pool.gone(index);
                }
                Work::User { user } => {
                    if let Some(l) = self.sessions.get_mut(&conn.id()) {
                        l.user = Some(user);
                        l.client = Some(conn.client());
                    }
                    if conn.listed.is_none() {
                        conn.listed = Some((None, None));
                    }
                }
                Work::Migration(event) => {
                    let moved = migration_event(&conn.counters, conn.id(), event, now);
                    if let Some(l) = self.sessions.get_mut(&conn.id()) {
                        match moved {
                            Some(Moved::Moved { .. }) => {
                                l.target = None;
                                l.retry_at = None;
                            }
                            Some(Moved::Stays { retry_at }) => {
                                l.target = None;
                                l.retry_at = Some(retry_at);
                            }
                            Some(Moved::Unchanged) | None => {}
                        }
                    }
                }
                Work::TargetChanged => {
                    let target = conn.session.migration_target().map(str::to_owned);
                    if let Some(l) = self.sessions.get_mut(&conn.id()) {
                        l.target = target;
                    }
                }
                Work::LoginFailed(failed) => {
                    let counters = Arc::clone(&conn.counters);
                    self.login_failed(now, &counters, conn.client(), conn.session.user(), &failed);
                }
            }
            conn.absorb_events(now);
        }
        // Work comes at login, migration and close only: an idle session keeps no queue for it.
        conn.work = VecDeque::new();
        for session in self.pool.take_woken() {
            self.send(session, Command::PoolReady);
        }
        if conn.listed.is_some() && !conn.finished {
            let backend = conn.session.backend_name().map(str::to_owned);
            let pinned = conn.session.pinned();
            if let Some(l) = self.sessions.get_mut(&conn.id()) {
                l.backend.clone_from(&backend);
                l.pinned = pinned;
            }
            conn.listed = Some((backend, pinned));
        }
    }

    /// Chooses the backend of `conn`'s connection `c` (its target, else the chooser, else the
    /// built-in policy) and asks the driver to connect.
    fn connect(&mut self, now: Instant, conn: &mut Connection, c: u64, target: Option<String>) {
        let wanted = target.clone();
        let (index, picked) = match self.choose(conn, target) {
            Ok(choice) => choice,
            Err(reason) => return self.fail_connect(now, conn, c, reason),
        };
        if self.pool.is_on() {
            // Multiplexing: a login's connection counts in the pool, and may have to wait.
            match self.pool.acquire(now, conn.id(), index, None) {
                Grant::Open | Grant::Adopt { .. } => {
                    conn.pool_pending = None;
                    conn.session.pool_login_open(now);
                }
                Grant::Wait => {
                    self.registry.release(index);
                    conn.pool_pending = Some(PoolPending::Connect(c, wanted));
                    conn.session.pool_login_wait(now);
                    return;
                }
                Grant::Full => {
                    self.registry.release(index);
                    conn.pool_pending = None;
                    return self.fail_connect(now, conn, c, ConnectFailure::TooManyConnections);
                }
            }
        }
        self.start_connect(conn, c, index, picked, 1);
    }

    /// The backend of a new connection of `conn`'s (its `target`, else the chooser, else the
    /// built-in policy), claimed in the registry; `true` when the policy picked it (another may
    /// be tried if it cannot be reached).
    fn choose(
        &mut self,
        conn: &Connection,
        target: Option<String>,
    ) -> Result<(usize, bool), ConnectFailure> {
        let choice = match target {
            Some(name) => Choice::Backend(name),
            None => match &self.chooser {
                None => Choice::Default,
                Some(chooser) => {
                    let backends = self.registry.infos();
                    let state = conn.session.state();
                    chooser.choose(&ChooseRequest {
                        session: conn.id(),
                        client: conn.client(),
                        user: conn.session.user(),
                        database: state
                            .schema
                            .as_deref()
                            .and_then(|s| std::str::from_utf8(s).ok()),
                        backends: &backends,
                    })
                }
            },
        };
        match choice {
            Choice::Default => self
                .pick_avoiding(conn.avoid.as_deref(), conn.refused)
                .map(|index| (index, true))
                .ok_or(ConnectFailure::NoHealthyBackend),
            Choice::Backend(name) => match self.registry.find(&name) {
                Some(index) => {
                    self.registry.claim(index);
                    Ok((index, false))
                }
                None => Err(ConnectFailure::UnknownBackend(name)),
            },
            Choice::Refuse(reason) => Err(ConnectFailure::Refused(reason)),
        }
    }

    /// Multiplexing: a backend connection for `conn`'s next statement, as `c`: a pooled one, a
    /// new one, a place in the queue, or ERR 1040.
    fn acquire(&mut self, now: Instant, conn: &mut Connection, c: u64) {
        let Some(request) = conn.session.acquire_request() else {
            return;
        };
        let home = request
            .home
            .as_deref()
            .and_then(|name| self.registry.find(name))
            .filter(|&i| {
                self.registry
                    .get(i)
                    .is_some_and(super::registry::Backend::takes_sessions)
            });
        let index = match home {
            Some(index) => index,
            // A login (routes and the chooser place it), or its backend is down, draining or
            // gone: the session continues elsewhere.
            None => match self.choose(conn, None) {
                Ok((index, _)) => {
                    self.registry.release(index);
                    index
                }
                Err(reason) => {
                    conn.pool_pending = None;
                    return self.fail_connect(now, conn, c, reason);
                }
            },
        };
        match self.pool.acquire(now, conn.id(), index, Some(&request)) {
            Grant::Adopt {
                pooled,
                parked,
                check,
            } => {
                self.registry.claim(index);
                let Some(slot) = self.slot(c, index) else {
                    return;
                };
                conn.start_adopt(now, slot, pooled, parked, check);
            }
            Grant::Open => {
                self.registry.claim(index);
                conn.session.pool_open(now, c);
                self.start_connect(conn, c, index, false, 1);
            }
            Grant::Wait => {
                if !std::mem::replace(&mut conn.pool_queued, true) {
                    Counters::add(&conn.counters.pool_waits, 1);
                }
            }
            Grant::Full => {
                conn.pool_pending = None;
                conn.session.pool_refused(now);
            }
        }
    }

    /// The slot of connection `c` to registry backend `index`.
    fn slot(&self, c: u64, index: usize) -> Option<BackendSlot> {
        let b = self.registry.get(index)?;
        Some(BackendSlot {
            conn: c,
            index,
            name: b.name.clone(),
            addr: b.addr.clone(),
            proxy_protocol: b.proxy_protocol,
            picked: false,
            attempts: 1,
        })
    }

    /// [`Endpoint::pick`] without backend `avoid` (a failover's lost backend), unless no other
    /// is healthy: a session killed on a live backend may come back to it.
    fn pick_avoiding(&self, avoid: Option<&str>, refused: bool) -> Option<usize> {
        avoid
            .and_then(|name| self.registry.pick_healthy_except(name))
            .or_else(|| self.pick(refused))
    }

    /// The built-in choice: a healthy backend, else (before any refusal) one that refuses
    /// connections, whose own ERR tells the client more than "no healthy backend".
    fn pick(&self, refused: bool) -> Option<usize> {
        if refused {
            self.registry.pick()
        } else {
            self.registry.pick_or_refusing()
        }
    }

    fn start_connect(
        &mut self,
        conn: &mut Connection,
        c: u64,
        index: usize,
        picked: bool,
        attempts: usize,
    ) {
        let Some(b) = self.registry.get(index) else {
            return;
        };
        conn.start_connect(BackendSlot {
            conn: c,
            index,
            name: b.name.clone(),
            addr: b.addr.clone(),
            proxy_protocol: b.proxy_protocol,
            picked,
            attempts,
        });
    }

    /// A connect to `slot`'s backend failed: mark it down (unless ferry itself ran out of
    /// descriptors) and try another backend if the policy chose this one.
    fn connect_failed(
        &mut self,
        now: Instant,
        conn: &mut Connection,
        slot: BackendSlot,
        local: bool,
        error: &str,
    ) {
        self.registry.release(slot.index);
        self.pool.gone(slot.index);
        Counters::add(&conn.counters.backend_connect_errors, 1);
        let BackendSlot {
            conn: c,
            name,
            addr,
            ..
        } = &slot;
        if local {
            if let Some(suppressed) = self.log_limiter.allow(now, LogKind::BackendConnectLocal) {
                tracing::warn!(backend = %name, %error, suppressed, "cannot open a backend connection");
            }
            let reason = ConnectFailure::LocalResources(error.to_owned());
            return self.fail_connect(now, conn, *c, reason);
        }
        if self.registry.set_health(slot.index, false) {
            tracing::warn!(backend = %name, %addr, %error, "backend unreachable; skipped until a health check passes");
            self.backend_went_down(slot.index);
        }
        if slot.picked && slot.attempts < self.registry.backends().len() {
            if let Some(next) = self.pick(conn.refused) {
                // Counted on the backend tried next, even over its maximum: the session was let
                // in, only its backend changes.
                self.pool.opened(next);
                return self.start_connect(conn, *c, next, true, slot.attempts + 1);
            }
        }
        let reason = ConnectFailure::Unreachable {
            backend: name.clone(),
            addr: addr.clone(),
            error: error.to_owned(),
        };
        self.fail_connect(now, conn, *c, reason);
    }

    fn fail_connect(
        &mut self,
        now: Instant,
        conn: &mut Connection,
        c: u64,
        reason: ConnectFailure,
    ) {
        tracing::info!(session = conn.id(), %reason, "backend connection failed");
        conn.session.backend_connect_failed(now, c, reason);
    }

    // ---- commands for the sessions ----

    fn send(&mut self, session: u64, command: Command) {
        let Some(shard) = self.sessions.get(&session).map(|l| l.shard) else {
            return;
        };
        if let Some(s) = self.shards.get_mut(shard) {
            s.commands.push_back((session, command));
            s.wake = true;
        }
    }

    /// The next pooled connection to close (multiplexing): the driver writes its farewell and
    /// closes the socket parked under its id. Ask after every [`Endpoint::sync`] and
    /// [`Endpoint::handle_timeout`] until `None`.
    pub fn poll_pool_close(&mut self) -> Option<PoolClose> {
        self.pool.poll_close()
    }

    /// The next command for a session of `shard`.
    pub fn poll_command(&mut self, shard: usize) -> Option<(u64, Command)> {
        self.shards.get_mut(shard)?.commands.pop_front()
    }

    /// The shards that got commands since the last call: wake them.
    pub fn take_wakeups(&mut self) -> Vec<usize> {
        let mut woken = Vec::new();
        for (i, s) in self.shards.iter_mut().enumerate() {
            if std::mem::take(&mut s.wake) {
                woken.push(i);
            }
        }
        woken
    }

    /// Graceful shutdown, as load balancers expect: `/health/ready` (and `/health`) answers 503
    /// from now on, while new clients are still accepted for `proxy.shutdown-delay` (the
    /// balancer's time to notice); then ([`Endpoint::handle_timeout`] at
    /// [`Endpoint::poll_timeout`], or at once without a delay) the listeners close
    /// ([`Endpoint::is_accepting`]) and every session is asked to finish: an idle one closes,
    /// one running a statement closes after it, one inside a transaction may finish it (it
    /// closes at its COMMIT or ROLLBACK), until [`Endpoint::shutdown_deadline`]. Calling it again
    /// does nothing.
    pub fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let delay = self.config.proxy.shutdown_delay;
        tracing::info!(
            sessions = self.live,
            ?delay,
            "shutting down: not ready any more"
        );
        self.shutdown = Some(Shutdown::Delay { until: now + delay });
        self.pool.close_all();
        if delay.is_zero() {
            self.close_listeners(now);
        }
    }

    /// The shutdown's delay is over: the listeners close and every session is asked to finish.
    fn close_listeners(&mut self, now: Instant) {
        let deadline = now + self.config.proxy.shutdown_timeout;
        self.shutdown = Some(Shutdown::Closing { deadline });
        tracing::info!(sessions = self.live, timeout = ?self.config.proxy.shutdown_timeout, "closing the listeners; sessions finish their statement or transaction");
        let mut ids: Vec<u64> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.send(id, Command::Shutdown);
        }
    }

    /// Backend `index` was found down: with replay failover, its idle sessions are rebuilt
    /// elsewhere now rather than at their next statement (a frozen backend never closes their
    /// connections). Not for a backend that refuses connections (1040...): it still serves the
    /// sessions it has.
    fn backend_went_down(&mut self, index: usize) {
        self.pool.close_backend(index);
        let replay = self.config.migration.mode == MigrationMode::Replay;
        let Some(b) = self.registry.get(index) else {
            return;
        };
        if !replay || !self.session_config.migration.failover || b.refusing() || self.closing() {
            return;
        }
        let name = b.name.clone();
        let mut on_it: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.backend.as_deref() == Some(name.as_str()))
            .map(|(&id, _)| id)
            .collect();
        on_it.sort_unstable();
        if !on_it.is_empty() {
            tracing::info!(backend = %name, sessions = on_it.len(), "backend down; failing its idle sessions over");
        }
        for id in on_it {
            self.send(
                id,
                Command::BackendDown {
                    backend: name.clone(),
                },
            );
        }
    }

    // ---- drain, undrain, migrate ----

    /// Draining stops new sessions at once; with migration on, the balancer moves the live ones
    /// away (now, then on every tick while it drains). Undraining cancels the migrations still
    /// requested or running away from that backend.
    pub fn set_draining(
        &mut self,
        now: Instant,
        backend: &str,
        draining: bool,
    ) -> Result<(), ApiError> {
        self.registry.set_draining(backend, draining)?;
        if let Some(index) = self.registry.find(backend).filter(|_| draining) {
            self.pool.close_backend(index);
        }
        if !draining {
            let mut leaving: Vec<u64> = self
                .sessions
                .iter()
                .filter(|(_, l)| l.backend.as_deref() == Some(backend) && l.target.is_some())
                .map(|(&id, _)| id)
                .collect();
            leaving.sort_unstable();
            for id in leaving {
                // No longer counted on its target: the plan below must not balance against a
                // move that is being called off.
                if let Some(l) = self.sessions.get_mut(&id) {
                    l.target = None;
                }
                self.send(id, Command::CancelMigration);
            }
        }
        self.plan(now);
        Ok(())
    }

    /// Asks session `session` to move to backend `to` at its next safe point. `Ok` means the
    /// request was accepted (the session may wait for a safe point), not that the move is done.
    /// The refusals are the core's ([`MigrationRefused`]), judged from what the session last
    /// reported; a session that refuses anyway when the command reaches it logs why and stays.
    pub fn migrate(&mut self, _now: Instant, session: u64, to: &str) -> Result<(), ApiError> {
        let listing = self
            .sessions
            .get(&session)
            .filter(|l| l.user.is_some())
            .ok_or(ApiError::UnknownSession(session))?;
        let index = self
            .registry
            .find(to)
            .ok_or_else(|| ApiError::UnknownBackend(to.to_owned()))?;
        if let Some(b) = self.registry.get(index) {
            if b.draining() {
                return Err(ApiError::Conflict(format!("backend {to} is draining")));
            }
            if !b.healthy() {
                return Err(ApiError::Conflict(format!("backend {to} is not healthy")));
            }
        }
        let refused = if self.config.migration.mode == MigrationMode::Off {
            Some(MigrationRefused::Disabled)
        } else if listing.target.is_some() {
            Some(MigrationRefused::AlreadyMigrating)
        } else if listing.backend.as_deref() == Some(to) {
            Some(MigrationRefused::SameBackend)
        } else if self.config.migration.mode == MigrationMode::Replay
            && self.config.auth.mode == AuthMode::Passthrough
        {
            Some(MigrationRefused::NoCredential)
        } else {
            None
        };
        if let Some(refused) = refused {
            tracing::debug!(session, %to, %refused, "migration refused");
            return Err(ApiError::Conflict(refused.to_string()));
        }
        if let Some(l) = self.sessions.get_mut(&session) {
            l.target = Some(to.to_owned());
        }
        self.send(session, Command::Migrate { to: to.to_owned() });
        Ok(())
    }

    /// Gives up the migration requested or running for `session`.
    pub fn cancel_migration(&mut self, _now: Instant, session: u64) -> Result<(), ApiError> {
        if !self.sessions.contains_key(&session) {
            return Err(ApiError::UnknownSession(session));
        }
        self.send(session, Command::CancelMigration);
        Ok(())
    }

    /// The admin request `request` answered (routes, JSON, status codes, Prometheus text), or
    /// refused by [`admin::check_access`] (tokens, `Host`, cross-site requests). `/metrics`
    /// shows no process metrics this way: see [`Endpoint::handle_admin_with_process`].
    pub fn handle_admin(&mut self, now: Instant, request: &admin::Request) -> admin::Response {
        self.handle_admin_with_process(now, request, None)
    }

    /// [`Endpoint::handle_admin`], with what the driver read about its process (for
    /// `/metrics`; read only when [`admin::wants_process_stats`] says so, and outside the
    /// endpoint's lock).
    pub fn handle_admin_with_process(
        &mut self,
        now: Instant,
        request: &admin::Request,
        process: Option<ProcessStats>,
    ) -> admin::Response {
        if let Err(refused) = admin::check_access(request, &self.config.admin) {
            return refused;
        }
        admin::route(
            request,
            &mut AdminView {
                endpoint: self,
                now,
                process,
            },
        )
    }

    // ---- timers: health rounds and the balancer ----

    /// When [`Endpoint::handle_timeout`] is due next: the end of the shutdown's delay, the next
    /// health round (none while one runs) or the next balancer tick (with migration on); none
    /// once the listeners are closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = self.closing();
        let health = match (closing, self.health.outstanding) {
            (true, _) => None,
            (false, 0) => Some(self.health.next),
            // A round runs: its probes come back by their deadline, or it is given up then.
            (false, _) => Some(self.health.round_end),
        };
        let rebalance = (self.config.migration.mode != MigrationMode::Off && !closing)
            .then_some(self.next_rebalance);
        let delay_end = match self.shutdown {
            Some(Shutdown::Delay { until }) => Some(until),
            _ => None,
        };
        let pool = self.pool.poll_timeout();
        [health, rebalance, delay_end, pool]
            .into_iter()
            .flatten()
            .min()
    }

    /// Closes the listeners when the shutdown's delay is over, starts a health round when one
    /// is due (its probes come from [`Endpoint::poll_probe`]), and runs the balancer when its
    /// interval passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.pool.handle_timeout(now);
        for session in self.pool.take_woken() {
            self.send(session, Command::PoolReady);
        }
        if let Some(Shutdown::Delay { until }) = self.shutdown {
            if until <= now {
                self.close_listeners(now);
            }
        }
        if self.health.outstanding > 0 && self.health.round_end <= now {
            tracing::warn!(
                missing = self.health.outstanding,
                "health checks did not come back in time; the round is given up"
            );
            self.round_done(now);
            // The driver may be stuck: not at once again.
            self.health.next = now + self.config.health.interval;
        }
        if self.health.outstanding == 0 && self.health.next <= now && !self.closing() {
            self.start_round(now);
        }
        if self.config.migration.mode != MigrationMode::Off
            && self.next_rebalance <= now
            && !self.closing()
        {
            self.next_rebalance = now + self.config.migration.rebalance_interval;
            self.plan(now);
        }
        self.retire_removed();
    }

    /// Starts a health round: one probe per backend, for [`Endpoint::poll_probe`].
    fn start_round(&mut self, now: Instant) {
        let timeout = self.config.health.timeout;
        self.health.round += 1;
        let round = self.health.round;
        self.health.queued = self
            .registry
            .backends()
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| !b.retired())
            .map(|(i, b)| {
                let probe = HealthProbe::new(round, i, b.addr.clone(), now, timeout);
                match &self.monitor {
                    Some(login) => probe.with_login(Arc::clone(login)),
                    None => probe,
                }
            })
            .collect();
        self.health.outstanding = self.health.queued.len();
        self.health.round_end = now + timeout + ROUND_GRACE;
        // From the round's start, so that a backend that freezes is found down within
        // interval + timeout; a round that overruns pushes the next one (`round_done`).
        self.health.next = now + self.config.health.interval;
    }

    /// The next health probe to run: connect to [`HealthProbe::addr`] within its timeout, feed
    /// it what the server sends, and give it back to [`Endpoint::probe_finished`].
    pub fn poll_probe(&mut self) -> Option<HealthProbe> {
        self.health.queued.pop()
    }

    /// Records a finished probe's verdict (logging changes); a backend that came back or went
    /// down changes the balancer's plan at once.
    pub fn probe_finished(&mut self, now: Instant, probe: HealthProbe) {
        let (index, round) = (probe.backend(), probe.round());
        let warning = probe.warning().map(str::to_owned);
        let verdict = probe.into_verdict();
        if verdict.is_ok() {
            // A failed check says nothing of the monitor account.
            self.record_warning(index, warning);
        }
        // Never judged yet (at startup, or added by a reload): unhealthy, and no reason kept. A
        // first verdict that it is down is a change (from unknown) that the registry cannot see.
        let unknown = self.registry.get(index).is_some_and(|b| !b.healthy())
            && self.down_reasons.get(index).is_none_or(Option::is_none);
        match &verdict {
            Ok(_) => self.record_down_reason(index, None),
            Err(failure) if !failure.local => {
                self.record_down_reason(index, Some(failure.reason.clone()))
            }
            Err(_) => {}
        }
        let changed = record_verdict(&self.registry, index, &verdict);
        if let (true, false, Err(failure), Some(b)) =
            (unknown, changed, &verdict, self.registry.get(index))
        {
            if !failure.local {
                tracing::warn!(backend = %b.name, addr = %b.addr, reason = %failure, "backend unhealthy");
            }
        }
        if changed && verdict.is_err() {
            self.backend_went_down(index);
        }
        if let Some(slot) = self.health.first.as_mut().and_then(|f| f.get_mut(index)) {
            *slot = Some(verdict);
        }
        // A probe of a round given up was recorded, but counts for no round.
        if round == self.health.round && self.health.outstanding > 0 {
            self.health.outstanding -= 1;
            if self.health.outstanding == 0 {
                self.round_done(now);
            }
        }
        if changed {
            self.plan(now);
        }
    }

    /// Keeps why backend `index` is down (or `None`: it is up) for `/api/backends`. The log
    /// says it where the health changes (`record_verdict`, `connect_failed`), once per change.
    fn record_down_reason(&mut self, index: usize, reason: Option<String>) {
        if self.down_reasons.len() <= index {
            // A backend a reload added.
            self.down_reasons.resize(index + 1, None);
        }
        if let Some(slot) = self.down_reasons.get_mut(index) {
            *slot = reason;
        }
    }

    /// Keeps backend `index`'s check warning for `/api/backends`, counting it, and logging it
    /// when it appears or changes (at warn: the backend stays in rotation, but the operator's
    /// monitor account does not work) and when it clears.
    fn record_warning(&mut self, index: usize, warning: Option<String>) {
        if self.health_warnings.len() <= index {
            // A backend a reload added.
            self.health_warnings.resize(index + 1, None);
        }
        let Some(slot) = self.health_warnings.get_mut(index) else {
            return;
        };
        let name = self.registry.get(index).map_or("?", |b| b.name.as_str());
        if warning.is_some() {
            Counters::add(&self.shards[0].counters.health_login_errors, 1);
        }
        match (slot.as_deref(), warning.as_deref()) {
            (old, Some(new)) if old != Some(new) => tracing::warn!(
                backend = %name,
                warning = %new,
                "health check: the monitor account cannot log in; the backend is judged by its \
                 greeting alone and stays in rotation (fix [health] user / password)"
            ),
            (Some(_), None) => {
                tracing::info!(backend = %name, "health check: the monitor account logs in again")
            }
            _ => {}
        }
        *slot = warning;
    }

    /// The first health round is over (every probe came back, or it was given up): backends
    /// have their first verdicts and the advertised server version is fixed. A driver serves
    /// clients from then on.
    pub fn first_round_done(&self) -> bool {
        self.health.first.is_none()
    }

    fn round_done(&mut self, now: Instant) {
        self.health.outstanding = 0;
        if self.health.next <= now {
            // The round overran its interval: the next one an interval from now.
            self.health.next = now + self.config.health.interval;
        }
        if let Some(first) = self.health.first.take() {
            self.advertise_version(&first);
        }
    }

    /// Without `[proxy] server-version`, tells clients the version of the first backend (in
    /// configuration order) that answered the first health round, exactly as its greeting gives
    /// it: clients choose collations and features by the version (mysql-connector-python asks a
    /// "MySQL 8" for `utf8mb4_0900_ai_ci`, which MariaDB refuses), so a proxy must not claim to
    /// be a different server. Keeps the core's default, and says so, when none answered.
    fn advertise_version(&mut self, first: &[Option<Verdict>]) {
        let probed = first.iter().flatten().find_map(|v| v.as_ref().ok());
        // Kept for a reload that drops `server-version`.
        self.reload.advertised = probed.cloned();
        if self.config.proxy.server_version.is_some() {
            return;
        }
        match probed {
            Some(version) => {
                tracing::info!(%version, "advertising the backends' server version");
                let config = Arc::make_mut(&mut self.session_config);
                Arc::make_mut(&mut config.frontend).server_version = version.clone();
            }
            None => tracing::warn!(
                version = %self.session_config.frontend.server_version,
                "no backend answered at start; advertising the default server version \
                 (set [proxy] server-version to match your backends)"
            ),
        }
    }

    /// One balancer plan (drain moves, then rebalancing), executed as commands.
    fn plan(&mut self, now: Instant) {
        if self.config.migration.mode == MigrationMode::Off || self.closing() {
            return;
        }
        let backends: Vec<BackendView> = self
            .registry
            .backends()
            .iter()
            .map(|b| BackendView {
                healthy: b.healthy(),
                draining: b.draining(),
            })
            .collect();
        let mut views: Vec<SessionView> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.user.is_some())
            .filter_map(|(&id, l)| {
                Some(SessionView {
                    id,
                    backend: self.registry.find(l.backend.as_deref()?)?,
                    target: l.target.as_deref().and_then(|t| self.registry.find(t)),
                    pinned: l.pinned.is_some_and(|p| !pin_is_transient(p)),
                    retry_at: l.retry_at,
                })
            })
            .collect();
        views.sort_by_key(|v| v.id);
        let moves = plan_migrations(&backends, &views, now, &self.config.migration.rebalance);
        if moves.is_empty() {
            return;
        }
        tracing::info!(moves = moves.len(), "migrating sessions");
        for m in moves {
            let (Some(from), Some(to)) = (self.registry.get(m.from), self.registry.get(m.to))
            else {
                continue;
            };
            let to = to.name.clone();
            tracing::debug!(session = m.session, from = %from.name, %to, "migration requested");
            // Counted on its target at once, so that the next plan sees the move.
            if let Some(l) = self.sessions.get_mut(&m.session) {
                l.target = Some(to.clone());
            }
            self.send(m.session, Command::Migrate { to });
        }
    }
}

/// The endpoint as the admin routes see it, at one instant.
struct AdminView<'a> {
    endpoint: &'a mut Endpoint,
    now: Instant,
    process: Option<ProcessStats>,
}

impl AdminApi for AdminView<'_> {
    fn serving(&self) -> bool {
        self.endpoint.is_serving()
    }
    fn starting(&self) -> bool {
        !self.endpoint.first_round_done()
    }
    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(self.endpoint.backends())
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(self.endpoint.sessions())
    }
    fn metrics(&self) -> Result<Metrics, ApiError> {
        Ok(Metrics {
            process: self.process,
            ..self.endpoint.metrics()
        })
    }
    fn set_draining(&mut self, backend: &str, draining: bool) -> Result<(), ApiError> {
        self.endpoint.set_draining(self.now, backend, draining)
    }
    fn migrate(&mut self, session: u64, to: &str) -> Result<(), ApiError> {
        self.endpoint.migrate(self.now, session, to)
    }
    fn config_status(&self) -> Result<ConfigStatus, ApiError> {
        Ok(self.endpoint.config_status(self.now))
    }
    fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        self.endpoint.reload_from_source(self.now)
    }
}

#[cfg(test)]
mod tests;
