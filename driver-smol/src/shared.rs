//! What the accept loop, the session tasks, the health task and the [`ProxyHandle`]s share.
//!
//! [`ProxyHandle`]: crate::ProxyHandle

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ferry_core::balance::RebalancePolicy;
use ferry_mio::proxy::rebalance::SessionView;

use ferry_core::session::SessionConfig;
use ferry_mio::admin::{ApiError, SessionInfo};
use ferry_mio::proxy::registry::Registry;
use smol::channel::{Receiver, Sender};

use crate::chooser::BackendChooser;
use crate::stats::Stats;

/// What a session task is asked to do from outside.
#[derive(Debug)]
pub(crate) enum Command {
    /// Graceful shutdown: finish the statement in flight, then close.
    Shutdown,
    /// Move to backend `to` at the next safe point; the answer goes to `reply` (none for the
    /// balancer's requests).
    Migrate {
        to: String,
        reply: Option<Sender<Result<(), ApiError>>>,
    },
    /// Give up a requested or running migration.
    CancelMigration,
}

/// A live session as the proxy lists it.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    /// Listed (in [`Inner::session_infos`]) once authenticated, as the mio driver does.
    pub(crate) info: Option<SessionInfo>,
    pub(crate) commands: Sender<Command>,
    /// The backend a requested or running migration goes to.
    pub(crate) target: Option<String>,
    /// Its last migration failed: the balancer leaves it alone until then.
    pub(crate) retry_at: Option<Instant>,
    /// Pinned by a reason that lasts until the client acts (temporary tables, locks, ...), as
    /// opposed to a transaction, which the core waits out ([`pin_is_transient`](ferry_mio::proxy::rebalance::pin_is_transient)).
    pub(crate) lasting_pin: bool,
}

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) health_interval: Duration,
    pub(crate) health_timeout: Duration,
    /// `None`: migration is off (no balancer).
    pub(crate) rebalance: Option<(Duration, RebalancePolicy)>,
}

/// The state of one proxy.
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) session_config: Arc<SessionConfig>,
    pub(crate) chooser: Option<Box<dyn BackendChooser>>,
    pub(crate) limits: Limits,
    pub(crate) stats: Stats,
    /// Sessions open now.
    pub(crate) live: AtomicUsize,
    next_connection_id: AtomicU32,
    sessions: Mutex<HashMap<u64, SessionEntry>>,
    /// Set once shutdown began.
    pub(crate) stopping: AtomicBool,
    /// Closed when shutdown begins: the accept loop and the health task stop.
    pub(crate) stop: (Sender<Infallible>, Receiver<Infallible>),
    /// Closed at the shutdown deadline: every session task drops its sockets at once.
    pub(crate) abort: (Sender<Infallible>, Receiver<Infallible>),
    /// Every session task holds a sender of this channel (and `run` holds one while
    /// accepting): receiving fails once all are gone.
    pub(crate) finished: Receiver<Infallible>,
    /// Wakes the balancer before its interval (a drain, an undrain, a health change).
    pub(crate) nudge: (Sender<()>, Receiver<()>),
    /// The address served, once `run` started.
    pub(crate) local_addr: OnceLock<SocketAddr>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("registry", &self.registry)
            .field("limits", &self.limits)
            .field("live", &self.live)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(
        registry: Registry,
        session_config: Arc<SessionConfig>,
        chooser: Option<Box<dyn BackendChooser>>,
        limits: Limits,
        finished: Receiver<Infallible>,
    ) -> Self {
        Self {
            registry,
            session_config,
            chooser,
            limits,
            stats: Stats::default(),
            live: AtomicUsize::new(0),
            next_connection_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            stop: smol::channel::bounded(1),
            abort: smol::channel::bounded(1),
            nudge: smol::channel::bounded(1),
            finished,
            local_addr: OnceLock::new(),
        }
    }

    /// A connection id unique within this proxy (0 is skipped: clients read it as "none").
    pub(crate) fn next_connection_id(&self) -> u32 {
        loop {
            let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// The session table. A task that panicked while holding the lock left consistent data
    /// (every update is a single insert, remove or field write), so poisoning is ignored.
    pub(crate) fn sessions(&self) -> MutexGuard<'_, HashMap<u64, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The authenticated sessions, by id.
    pub(crate) fn session_infos(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self
            .sessions()
            .values()
            .filter_map(|e| e.info.clone())
            .collect();
        list.sort_by_key(|s| s.id);
        list
    }

    /// The live sessions as the rebalancing planner sees them (authenticated ones with a
    /// known backend).
    pub(crate) fn session_views(&self) -> Vec<SessionView> {
        self.sessions()
            .values()
            .filter_map(|e| {
                let info = e.info.as_ref()?;
                let backend = self.registry.find(info.backend.as_deref()?)?;
                Some(SessionView {
                    id: info.id,
                    backend,
                    target: e.target.as_deref().and_then(|t| self.registry.find(t)),
                    pinned: e.lasting_pin,
                    retry_at: e.retry_at,
                })
            })
            .collect()
    }

    /// Sessions pinned now, by reason.
    pub(crate) fn pinned_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for e in self.sessions().values() {
            if let Some(reason) = e.info.as_ref().and_then(|i| i.pinned.clone()) {
                *counts.entry(reason).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Wakes the balancer (a full channel means a nudge is already pending).
    pub(crate) fn nudge_balancer(&self) {
        let _ = self.nudge.0.try_send(());
    }

    /// The command channel of session `id`.
    pub(crate) fn commands_of(&self, id: u64) -> Option<Sender<Command>> {
        self.sessions().get(&id).map(|e| e.commands.clone())
    }
}
