//! State shared by the workers, the health checker and the admin endpoint, and the
//! [`AdminApi`] implementation over it.
//!
//! Counters are per worker ([`WorkerStats`]: atomics written by one thread only, so they never
//! contend) and summed when `/metrics` asks. Sessions appear in `/api/sessions` once they have
//! authenticated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::admin::{AdminApi, ApiError, BackendInfo, Metrics, SessionInfo};

use super::registry::Registry;

/// One worker's counters. Only that worker writes them.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) accepted: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) command_errors: AtomicU64,
    pub(crate) client_bytes_received: AtomicU64,
    pub(crate) client_bytes_sent: AtomicU64,
    pub(crate) backend_bytes_received: AtomicU64,
    pub(crate) backend_bytes_sent: AtomicU64,
    pub(crate) backend_connect_errors: AtomicU64,
    pub(crate) refused_max_connections: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
}

impl WorkerStats {
    /// Adds `n` to a counter (relaxed: counters order nothing).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything the threads of one proxy share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    /// Set once graceful shutdown began.
    pub(crate) shutting_down: AtomicBool,
    /// Client sessions open now, across workers (checked against `max-connections`).
    pub(crate) live_sessions: AtomicUsize,
    next_connection_id: AtomicU32,
    /// Authenticated sessions, by id.
    sessions: Mutex<HashMap<u64, SessionInfo>>,
    /// One per worker.
    pub(crate) stats: Vec<WorkerStats>,
}

impl Shared {
    pub(crate) fn new(registry: Registry, workers: usize) -> Self {
        Self {
            registry,
            shutting_down: AtomicBool::new(false),
            live_sessions: AtomicUsize::new(0),
            next_connection_id: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
            stats: (0..workers).map(|_| WorkerStats::default()).collect(),
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

    /// Lists (or updates) an authenticated session.
    pub(crate) fn publish_session(&self, info: SessionInfo) {
        if let Ok(mut map) = self.sessions.lock() {
            map.insert(info.id, info);
        }
    }

    /// Removes a session from the list.
    pub(crate) fn unpublish_session(&self, id: u64) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&id);
        }
    }

    fn sum(&self, field: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.stats
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
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
        let map = self
            .0
            .sessions
            .lock()
            .map_err(|_| ApiError::Unavailable("session list unavailable".into()))?;
        let mut list: Vec<SessionInfo> = map.values().cloned().collect();
        list.sort_by_key(|s| s.id);
        Ok(list)
    }

    fn metrics(&self) -> Result<Metrics, ApiError> {
        let s = &self.0;
        let mut errors = BTreeMap::new();
        for (kind, n) in [
            ("backend_connect", s.sum(|w| &w.backend_connect_errors)),
            ("command", s.sum(|w| &w.command_errors)),
            ("max_connections", s.sum(|w| &w.refused_max_connections)),
            ("accept", s.sum(|w| &w.accept_errors)),
        ] {
            errors.insert(kind.to_owned(), n);
        }
        Ok(Metrics {
            sessions: s.live_sessions.load(Ordering::Relaxed) as u64,
            sessions_accepted: s.sum(|w| &w.accepted),
            commands: s.sum(|w| &w.commands),
            client_bytes_received: s.sum(|w| &w.client_bytes_received),
            client_bytes_sent: s.sum(|w| &w.client_bytes_sent),
            backend_bytes_received: s.sum(|w| &w.backend_bytes_received),
            backend_bytes_sent: s.sum(|w| &w.backend_bytes_sent),
            errors,
            backends: s.registry.infos(),
            ..Metrics::default()
        })
    }

    fn set_draining(&self, backend: &str, draining: bool) -> Result<(), ApiError> {
        // Real: new sessions avoid a draining backend. Live sessions stay until migration exists.
        self.0.registry.set_draining(backend, draining)
    }

    fn migrate(&self, session: u64, to: &str) -> Result<(), ApiError> {
        let known = self
            .0
            .sessions
            .lock()
            .map(|m| m.contains_key(&session))
            .unwrap_or(false);
        if !known {
            return Err(ApiError::UnknownSession(session));
        }
        if self.0.registry.find(to).is_none() {
            return Err(ApiError::UnknownBackend(to.to_owned()));
        }
        Err(ApiError::Conflict(
            "migration is not implemented yet: sessions stay on their backend".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    fn shared() -> Arc<Shared> {
        let backends = [BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:3306".parse().unwrap(),
        }];
        Arc::new(Shared::new(Registry::new(&backends), 2))
    }

    #[test]
    fn metrics_sum_the_workers_counters() {
        let s = shared();
        WorkerStats::add(&s.stats[0].commands, 3);
        WorkerStats::add(&s.stats[1].commands, 4);
        WorkerStats::add(&s.stats[1].backend_connect_errors, 1);
        s.live_sessions.store(2, Ordering::Relaxed);
        let m = ProxyAdmin(s).metrics().unwrap();
        assert_eq!(m.commands, 7);
        assert_eq!(m.sessions, 2);
        assert_eq!(m.errors["backend_connect"], 1);
        assert_eq!(m.backends.len(), 1);
    }

    #[test]
    fn sessions_are_listed_by_id_and_migration_says_it_is_missing() {
        let s = shared();
        let api = ProxyAdmin(Arc::clone(&s));
        for id in [9, 4] {
            s.publish_session(SessionInfo {
                id,
                user: "app".into(),
                backend: Some("db1".into()),
                pinned: None,
            });
        }
        let ids: Vec<u64> = api.sessions().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 9]);
        assert_eq!(api.migrate(5, "db1"), Err(ApiError::UnknownSession(5)));
        assert_eq!(
            api.migrate(4, "db9"),
            Err(ApiError::UnknownBackend("db9".into()))
        );
        match api.migrate(4, "db1") {
            Err(ApiError::Conflict(msg)) => assert!(msg.contains("not implemented yet"), "{msg}"),
            other => panic!("{other:?}"),
        }
        s.unpublish_session(4);
        assert_eq!(api.sessions().unwrap().len(), 1);
        assert!(api.serving());
        s.shutting_down.store(true, Ordering::Relaxed);
        assert!(!api.serving());
    }

    #[test]
    fn connection_ids_are_unique_and_never_zero() {
        let s = shared();
        s.next_connection_id.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(s.next_connection_id(), u32::MAX);
        assert_eq!(s.next_connection_id(), 1);
    }
}
