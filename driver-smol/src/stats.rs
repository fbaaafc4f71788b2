//! The proxy's counters, as atomics every session task adds to, and their [`Metrics`] snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_mio::admin::{BackendInfo, Metrics};

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
}

/// Adds `n` to `counter`.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// A snapshot with `sessions` open now and the backends as the registry sees them.
    pub(crate) fn metrics(&self, sessions: u64, backends: Vec<BackendInfo>) -> Metrics {
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
            ..Metrics::default()
        }
    }
}
