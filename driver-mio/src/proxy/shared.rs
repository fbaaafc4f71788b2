//! State shared by the workers, the health checker, the balancer and the admin endpoint, and the
//! [`AdminApi`] implementation over it.
//!
//! Counters are per worker ([`WorkerStats`]: atomics written by one thread only, so they never
//! contend) and summed when `/metrics` asks. Sessions appear in `/api/sessions` once they have
//! authenticated; each worker publishes its own in its own map (one lock per worker, so workers
//! never contend with each other), and only when something listed changes (backend, pin,
//! migration).
//!
//! Requests for a session (migrate, cancel) go to the worker that owns it as a
//! [`WorkerCommand`] through its channel and `mio::Waker`: the worker executes them between two
//! polls, so sessions are only ever touched by their own thread.
//!
//! New clients are placed on the worker with the fewest sessions ([`Shared::place_session`]):
//! `SO_REUSEPORT` spreads connections by a hash of their addresses, which leaves a few long-lived
//! connections (a connection pool, a benchmark's threads) on one worker half the time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::admin::{AdminApi, ApiError, BackendInfo, Metrics, SessionInfo};

use super::rebalance::{pin_is_transient, SessionView};
use super::registry::Registry;
use super::session::PinReason;

/// How long the admin endpoint waits for a worker's answer to a migration request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// One worker's counters. Only that worker writes them.
pub(crate) use super::stats::Counters as WorkerStats;

/// A session as the workers publish it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionEntry {
    pub(crate) user: String,
    pub(crate) backend: Option<String>,
    /// The pin's label.
    pub(crate) pinned: Option<&'static str>,
    /// The pin lasts until the client acts (see [`pin_is_transient`]).
    pub(crate) lasting_pin: bool,
    /// The backend a requested or running migration goes to.
    pub(crate) target: Option<String>,
    /// After a failed migration: not planned again before this.
    pub(crate) retry_at: Option<Instant>,
}

/// What a worker is asked to do with one of its sessions.
#[derive(Debug)]
pub(crate) enum WorkerCommand {
    /// `start_migration(now, to)`; the answer (if asked for) says whether it was accepted.
    Migrate {
        session: u64,
        to: String,
        reply: Option<Sender<Result<(), ApiError>>>,
    },
    /// `cancel_migration(now)`.
    CancelMigration { session: u64 },
    /// Serve this client, accepted by another worker ([`Shared::place_session`] counted it here).
    Adopt {
        stream: mio::net::TcpStream,
        host: String,
    },
}

/// A worker's command channel and the waker that interrupts its poll.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) commands: Sender<WorkerCommand>,
    pub(crate) waker: Arc<Waker>,
}

/// What the balancer thread is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BalancerMsg {
    /// Something changed (drain, health): plan now rather than at the next interval.
    Nudge,
    /// Stop the thread.
    Stop,
}

/// Everything the threads of one proxy share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    /// Set once graceful shutdown began.
    pub(crate) shutting_down: AtomicBool,
    /// Client sessions open now, across workers (checked against `max-connections`).
    pub(crate) live_sessions: AtomicUsize,
    /// Client sessions per worker, counting those handed over and not yet adopted.
    worker_sessions: Vec<AtomicUsize>,
    next_connection_id: AtomicU32,
    /// Authenticated sessions by id, one map per worker (the owner).
    sessions: Vec<Mutex<HashMap<u64, SessionEntry>>>,
    /// One per worker, set once the workers exist.
    pub(crate) mailboxes: OnceLock<Vec<Mailbox>>,
    /// The balancer thread, when migration is on.
    pub(crate) balancer: OnceLock<Sender<BalancerMsg>>,
    /// One per worker.
    pub(crate) stats: Vec<WorkerStats>,
}

impl Shared {
    pub(crate) fn new(registry: Registry, workers: usize) -> Self {
        Self {
            registry,
            shutting_down: AtomicBool::new(false),
            live_sessions: AtomicUsize::new(0),
            worker_sessions: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            next_connection_id: AtomicU32::new(1),
            sessions: (0..workers).map(|_| Mutex::default()).collect(),
            mailboxes: OnceLock::new(),
            balancer: OnceLock::new(),
            stats: (0..workers).map(|_| WorkerStats::default()).collect(),
        }
    }

    /// Counts a new client accepted by worker `by` and names the worker to serve it: the one
    /// with the fewest sessions, `by` itself on a tie (no hand-over then). `None`: the
    /// `max_connections` limit is reached and the client must be refused.
    pub(crate) fn place_session(&self, by: usize, max_connections: usize) -> Option<usize> {
        if self.live_sessions.fetch_add(1, Ordering::SeqCst) >= max_connections {
            self.live_sessions.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let load = |w: usize| {
            self.worker_sessions
                .get(w)
                .map_or(usize::MAX, |count| count.load(Ordering::Relaxed))
        };
        let mut best = by;
        for w in 0..self.worker_sessions.len() {
            if load(w) < load(best) {
                best = w;
            }
        }
        // Two workers placing at once may both pick the same one: harmless, the next placement
        // corrects it.
        if let Some(count) = self.worker_sessions.get(best) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        Some(best)
    }

    /// A session placed on `worker` has ended (or could not be started there).
    pub(crate) fn session_ended(&self, worker: usize) {
        self.live_sessions.fetch_sub(1, Ordering::SeqCst);
        if let Some(count) = self.worker_sessions.get(worker) {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection id unique across workers (0 is skipped: clients read it as "none").
    pub(crate) fn next_connection_id(&self) -> u32 {
        loop {
            let id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Worker `worker`'s session map. A poisoned lock is taken anyway: entries are plain values
    /// written in one assignment, never left half-updated.
    fn shard(&self, worker: usize) -> Option<MutexGuard<'_, HashMap<u64, SessionEntry>>> {
        self.sessions
            .get(worker)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Lists (or replaces) an authenticated session of `worker`.
    pub(crate) fn publish_session(&self, worker: usize, id: u64, entry: SessionEntry) {
        if let Some(mut map) = self.shard(worker) {
            map.insert(id, entry);
        }
    }

    /// Changes a listed session of `worker`.
    pub(crate) fn update_session(&self, worker: usize, id: u64, f: impl FnOnce(&mut SessionEntry)) {
        if let Some(entry) = self.shard(worker).as_mut().and_then(|m| m.get_mut(&id)) {
            f(entry);
        }
    }

    /// Removes a session from the list.
    pub(crate) fn unpublish_session(&self, id: u64) {
        for worker in 0..self.sessions.len() {
            if let Some(mut map) = self.shard(worker) {
                if map.remove(&id).is_some() {
                    return;
                }
            }
        }
    }

    /// The worker owning session `id`, and its entry.
    fn find_session(&self, id: u64) -> Option<(usize, SessionEntry)> {
        (0..self.sessions.len()).find_map(|w| Some((w, self.shard(w)?.get(&id)?.clone())))
    }

    /// Every listed session, by id.
    fn entries(&self) -> Vec<(u64, SessionEntry)> {
        let mut all = Vec::new();
        for worker in 0..self.sessions.len() {
            if let Some(map) = self.shard(worker) {
                all.extend(map.iter().map(|(&id, e)| (id, e.clone())));
            }
        }
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The sessions as the balancer plans with them (those on a known backend).
    pub(crate) fn session_views(&self) -> Vec<SessionView> {
        let mut views = Vec::new();
        for worker in 0..self.sessions.len() {
            let Some(map) = self.shard(worker) else {
                continue;
            };
            for (&id, e) in map.iter() {
                let Some(backend) = e.backend.as_deref().and_then(|b| self.registry.find(b)) else {
                    continue;
                };
                views.push(SessionView {
                    id,
                    backend,
                    target: e.target.as_deref().and_then(|t| self.registry.find(t)),
                    pinned: e.lasting_pin,
                    retry_at: e.retry_at,
                });
            }
        }
        views.sort_by_key(|v| v.id);
        views
    }

    /// Hands `command` to `worker` and wakes it.
    pub(crate) fn send(&self, worker: usize, command: WorkerCommand) -> Result<(), ApiError> {
        let mailbox = self
            .mailboxes
            .get()
            .and_then(|m| m.get(worker))
            .ok_or_else(|| ApiError::Unavailable("the proxy is starting".into()))?;
        let gone = || ApiError::Unavailable("the proxy is shutting down".into());
        mailbox.commands.send(command).map_err(|_| gone())?;
        mailbox.waker.wake().map_err(|_| gone())
    }

    /// Asks for session `id` to move to `to` without waiting for the answer; the session is
    /// counted on `to` from now on (the worker corrects that if the core refuses).
    pub(crate) fn request_migration(&self, id: u64, to: &str) {
        let Some((worker, _)) = self.find_session(id) else {
            return;
        };
        self.update_session(worker, id, |e| e.target = Some(to.to_owned()));
        let command = WorkerCommand::Migrate {
            session: id,
            to: to.to_owned(),
            reply: None,
        };
        if self.send(worker, command).is_err() {
            self.update_session(worker, id, |e| e.target = None);
        }
    }

    /// Records session `id`'s new pin.
    pub(crate) fn set_pin(&self, worker: usize, id: u64, pin: Option<PinReason>) {
        self.update_session(worker, id, |e| {
            e.pinned = pin.map(PinReason::as_str);
            e.lasting_pin = pin.is_some_and(|p| !pin_is_transient(p));
        });
    }

    /// Tells the balancer to plan now (when it runs).
    pub(crate) fn nudge_balancer(&self) {
        if let Some(balancer) = self.balancer.get() {
            let _ = balancer.send(BalancerMsg::Nudge);
        }
    }
}

/// The admin endpoint's view of the proxy.
#[derive(Debug, Clone)]
pub(crate) struct ProxyAdmin(pub(crate) Arc<Shared>);

impl AdminApi for ProxyAdmin {
    fn serving(&self) -> bool {
        !self.0.shutting_down.load(Ordering::Relaxed)
    }

    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(self.0.registry.infos())
    }

    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(self
            .0
            .entries()
            .into_iter()
            .map(|(id, e)| SessionInfo {
                id,
                user: e.user,
                backend: e.backend,
                pinned: e.pinned.map(str::to_owned),
            })
            .collect())
    }

    fn metrics(&self) -> Result<Metrics, ApiError> {
        let s = &self.0;
        let mut pinned_sessions = BTreeMap::new();
        for (_, e) in s.entries() {
            if let Some(reason) = e.pinned {
                *pinned_sessions.entry(reason.to_owned()).or_insert(0) += 1;
            }
        }
        Ok(WorkerStats::metrics(
            &s.stats,
            s.live_sessions.load(Ordering::Relaxed) as u64,
            pinned_sessions,
            s.registry.infos(),
        ))
    }

    /// Draining stops new sessions at once; with migration on, the balancer moves the live ones
    /// away (now, then on every tick while it drains). Undraining cancels the migrations still
    /// requested or running away from that backend.
    fn set_draining(&self, backend: &str, draining: bool) -> Result<(), ApiError> {
        let s = &self.0;
        s.registry.set_draining(backend, draining)?;
        if !draining {
            for worker in 0..s.sessions.len() {
                let leaving: Vec<u64> = s
                    .shard(worker)
                    .map(|map| {
                        map.iter()
                            .filter(|(_, e)| {
                                e.backend.as_deref() == Some(backend) && e.target.is_some()
                            })
                            .map(|(&id, _)| id)
                            .collect()
                    })
                    .unwrap_or_default();
                for session in leaving {
                    s.send(worker, WorkerCommand::CancelMigration { session })?;
                }
            }
        }
        s.nudge_balancer();
        Ok(())
    }

    fn migrate(&self, session: u64, to: &str) -> Result<(), ApiError> {
        let s = &self.0;
        let (worker, _) = s
            .find_session(session)
            .ok_or(ApiError::UnknownSession(session))?;
        let index = s
            .registry
            .find(to)
            .ok_or_else(|| ApiError::UnknownBackend(to.to_owned()))?;
        if let Some(b) = s.registry.get(index) {
            if b.draining() {
                return Err(ApiError::Conflict(format!("backend {to} is draining")));
            }
            if !b.healthy() {
                return Err(ApiError::Conflict(format!("backend {to} is not healthy")));
            }
        }
        let (reply, answer) = mpsc::channel();
        s.send(
            worker,
            WorkerCommand::Migrate {
                session,
                to: to.to_owned(),
                reply: Some(reply),
            },
        )?;
        answer.recv_timeout(REPLY_TIMEOUT).unwrap_or_else(|_| {
            Err(ApiError::Unavailable(
                "the session's worker did not answer in time".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn shared() -> Arc<Shared> {
        let backends = [
            BackendConfig {
                name: "db1".into(),
                addr: "127.0.0.1:3306".parse().unwrap(),
            },
            BackendConfig {
                name: "db2".into(),
                addr: "127.0.0.1:3307".parse().unwrap(),
            },
        ];
        Arc::new(Shared::new(Registry::new(&backends), 2))
    }

    fn entry(backend: &str) -> SessionEntry {
        SessionEntry {
            user: "app".into(),
            backend: Some(backend.into()),
            ..SessionEntry::default()
        }
    }

    #[test]
    fn new_clients_go_to_the_worker_with_the_fewest_sessions() {
        let s = shared();
        // Worker 1 accepts everything (as SO_REUSEPORT may arrange): placements alternate.
        let placed: Vec<_> = (0..4).map(|_| s.place_session(1, 100)).collect();
        assert_eq!(placed, [Some(1), Some(0), Some(1), Some(0)]);
        assert_eq!(s.live_sessions.load(Ordering::SeqCst), 4);
        // Two sessions on worker 0 end: the next two clients go there, whoever accepts them.
        s.session_ended(0);
        s.session_ended(0);
        assert_eq!(s.place_session(1, 100), Some(0));
        assert_eq!(s.place_session(0, 100), Some(0));
        // A tie stays with the accepting worker (no hand-over).
        assert_eq!(s.place_session(1, 100), Some(1));
        assert_eq!(s.live_sessions.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn placing_beyond_max_connections_is_refused_and_counts_nothing() {
        let s = shared();
        assert_eq!(s.place_session(0, 2), Some(0));
        assert_eq!(s.place_session(0, 2), Some(1));
        assert_eq!(s.place_session(0, 2), None);
        assert_eq!(s.live_sessions.load(Ordering::SeqCst), 2);
        s.session_ended(1);
        assert_eq!(s.place_session(0, 2), Some(1));
    }

    /// Mailboxes whose commands land in the returned receivers (the wakers wake nothing).
    fn mailboxes(s: &Shared) -> (Vec<mpsc::Receiver<WorkerCommand>>, Vec<mio::Poll>) {
        let mut receivers = Vec::new();
        let mut polls = Vec::new();
        let mut boxes = Vec::new();
        for _ in 0..2 {
            let poll = mio::Poll::new().unwrap();
            let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
            let (tx, rx) = mpsc::channel();
            boxes.push(Mailbox {
                commands: tx,
                waker,
            });
            receivers.push(rx);
            polls.push(poll);
        }
        s.mailboxes.set(boxes).unwrap();
        (receivers, polls)
    }

    #[test]
    fn metrics_sum_the_workers_counters() {
        let s = shared();
        WorkerStats::add(&s.stats[0].commands, 3);
        WorkerStats::add(&s.stats[1].commands, 4);
        WorkerStats::add(&s.stats[1].backend_connect_errors, 1);
        WorkerStats::add(&s.stats[0].migrations_started, 2);
        WorkerStats::add(&s.stats[1].migrations_succeeded, 1);
        *s.stats[0]
            .migrations_failed
            .lock()
            .unwrap()
            .entry("pinned")
            .or_default() += 1;
        *s.stats[1]
            .migrations_failed
            .lock()
            .unwrap()
            .entry("pinned")
            .or_default() += 2;
        s.stats[0]
            .migration_pause
            .lock()
            .unwrap()
            .observe(Duration::from_millis(3));
        s.stats[1]
            .migration_pause
            .lock()
            .unwrap()
            .observe(Duration::from_millis(4));
        s.live_sessions.store(2, Ordering::Relaxed);
        s.publish_session(
            0,
            1,
            SessionEntry {
                pinned: Some("transaction"),
                ..entry("db1")
            },
        );
        s.publish_session(
            1,
            2,
            SessionEntry {
                pinned: Some("transaction"),
                ..entry("db2")
            },
        );
        s.publish_session(1, 3, entry("db2"));
        let m = ProxyAdmin(s).metrics().unwrap();
        assert_eq!(m.commands, 7);
        assert_eq!(m.sessions, 2);
        assert_eq!(m.errors["backend_connect"], 1);
        assert_eq!(m.backends.len(), 2);
        assert_eq!((m.migrations_started, m.migrations_succeeded), (2, 1));
        assert_eq!(m.migrations_failed["pinned"], 3);
        assert_eq!(m.migration_pause.count(), 2);
        assert_eq!(m.migration_pause.sum(), Duration::from_millis(7));
        assert_eq!(m.pinned_sessions.len(), 1);
        assert_eq!(m.pinned_sessions["transaction"], 2);
    }

    #[test]
    fn sessions_are_listed_by_id_with_their_pin() {
        let s = shared();
        let api = ProxyAdmin(Arc::clone(&s));
        s.publish_session(1, 9, entry("db1"));
        s.publish_session(0, 4, entry("db1"));
        s.set_pin(1, 9, Some(PinReason::TemporaryTables));
        s.set_pin(0, 4, Some(PinReason::Transaction));
        // Only the lasting pin keeps a session out of rebalancing plans.
        let views = s.session_views();
        assert_eq!((views[0].id, views[0].pinned), (4, false));
        assert_eq!((views[1].id, views[1].pinned), (9, true));
        s.set_pin(0, 4, None);
        let list = api.sessions().unwrap();
        let ids: Vec<u64> = list.iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 9]);
        assert_eq!(list[1].pinned.as_deref(), Some("temporary_tables"));
        assert_eq!(list[0].pinned, None);
        s.unpublish_session(4);
        assert_eq!(api.sessions().unwrap().len(), 1);
        assert!(api.serving());
        s.shutting_down.store(true, Ordering::Relaxed);
        assert!(!api.serving());
    }

    #[test]
    fn migrate_is_checked_then_handed_to_the_owning_worker() {
        let s = shared();
        let api = ProxyAdmin(Arc::clone(&s));
        s.publish_session(1, 4, entry("db1"));
        assert_eq!(api.migrate(5, "db2"), Err(ApiError::UnknownSession(5)));
        assert_eq!(
            api.migrate(4, "db9"),
            Err(ApiError::UnknownBackend("db9".into()))
        );
        // Not healthy yet: refused before any worker is asked.
        assert!(matches!(api.migrate(4, "db2"), Err(ApiError::Conflict(_))));
        s.registry.set_health(1, true);
        // No worker yet.
        assert!(matches!(
            api.migrate(4, "db2"),
            Err(ApiError::Unavailable(_))
        ));
        let (receivers, _polls) = mailboxes(&s);
        // The worker answers from its own thread.
        let worker = std::thread::spawn(move || match receivers[1].recv().unwrap() {
            WorkerCommand::Migrate { session, to, reply } => {
                assert_eq!((session, to.as_str()), (4, "db2"));
                reply
                    .unwrap()
                    .send(Err(ApiError::Conflict("no".into())))
                    .unwrap();
                receivers
            }
            other => panic!("{other:?}"),
        });
        assert_eq!(api.migrate(4, "db2"), Err(ApiError::Conflict("no".into())));
        let receivers = worker.join().unwrap();
        s.registry.set_draining("db2", true).unwrap();
        assert!(
            matches!(api.migrate(4, "db2"), Err(ApiError::Conflict(m)) if m.contains("draining"))
        );
        assert!(receivers[0].try_recv().is_err());
    }

    #[test]
    fn balancer_requests_count_on_the_target_and_undrain_cancels_them() {
        let s = shared();
        let api = ProxyAdmin(Arc::clone(&s));
        let (receivers, _polls) = mailboxes(&s);
        s.publish_session(0, 7, entry("db1"));
        s.publish_session(1, 8, entry("db2"));
        api.set_draining("db1", true).unwrap();
        s.request_migration(7, "db2");
        let views = s.session_views();
        assert_eq!(views.len(), 2);
        assert_eq!(
            (views[0].id, views[0].backend, views[0].target),
            (7, 0, Some(1))
        );
        assert!(matches!(
            receivers[0].try_recv(),
            Ok(WorkerCommand::Migrate {
                session: 7,
                reply: None,
                ..
            })
        ));
        api.set_draining("db1", false).unwrap();
        assert!(matches!(
            receivers[0].try_recv(),
            Ok(WorkerCommand::CancelMigration { session: 7 })
        ));
        assert!(receivers[1].try_recv().is_err());
        assert!(!s.registry.get(0).unwrap().draining());
    }

    #[test]
    fn connection_ids_are_unique_and_never_zero() {
        let s = shared();
        s.next_connection_id.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(s.next_connection_id(), u32::MAX);
        assert_eq!(s.next_connection_id(), 1);
    }
}
