//! The proxy's counters, as atomics every session task adds to, and their [`Metrics`] snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ferry_mio::admin::{BackendInfo, Histogram, Metrics};

/// A counter lock; a panic while holding it left a whole value behind, so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counters since start. Relaxed atomics: they order nothing, and tasks on any thread add to them.
#[derive(Debug, Default)]
pub(crate) struct Stats {
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
    pub(crate) migrations_started: AtomicU64,
    pub(crate) migrations_succeeded: AtomicU64,
    /// Failed migrations by reason label.
    pub(crate) migrations_failed: Mutex<BTreeMap<String, u64>>,
    /// The pause each migration added to the command that waited for it.
    pub(crate) migration_pause: Mutex<Histogram>,
}

/// Adds `n` to `counter`.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Counts a failed migration under `label`.
    pub(crate) fn migration_failed(&self, label: &str) {
        *lock(&self.migrations_failed)
            .entry(label.to_owned())
            .or_insert(0) += 1;
    }

    /// Records the pause of a migration that succeeded.
    pub(crate) fn migration_done(&self, pause: Duration) {
        add(&self.migrations_succeeded, 1);
        lock(&self.migration_pause).observe(pause);
    }

    /// A snapshot with `sessions` open now (`pinned` of them by reason) and the backends as the
    /// registry sees them.
    pub(crate) fn metrics(
        &self,
        sessions: u64,
        pinned: BTreeMap<String, u64>,
        backends: Vec<BackendInfo>,
    ) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut errors = BTreeMap::new();
        // The same kinds as the mio driver, so dashboards work with either.
        for (kind, n) in [
            ("backend_connect", get(&self.backend_connect_errors)),
            ("command", get(&self.command_errors)),
            ("max_connections", get(&self.refused_max_connections)),
            ("accept", get(&self.accept_errors)),
        ] {
            errors.insert(kind.to_owned(), n);
        }
        Metrics {
            sessions,
            sessions_accepted: get(&self.accepted),
            commands: get(&self.commands),
            client_bytes_received: get(&self.client_bytes_received),
            client_bytes_sent: get(&self.client_bytes_sent),
            backend_bytes_received: get(&self.backend_bytes_received),
            backend_bytes_sent: get(&self.backend_bytes_sent),
            errors,
            backends,
            migrations_started: get(&self.migrations_started),
            migrations_succeeded: get(&self.migrations_succeeded),
            migrations_failed: lock(&self.migrations_failed).clone(),
            pinned_sessions: pinned,
            migration_pause: lock(&self.migration_pause).clone(),
        }
    }
}
