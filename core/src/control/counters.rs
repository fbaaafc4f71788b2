//! The proxy's counters and their [`Metrics`] snapshot: the [`Endpoint`](super::Endpoint) keeps
//! one [`Counters`] per shard (a worker thread's sessions write only their own, so they never
//! contend) and [`Counters::metrics`] sums them. Atomics, so that a session counts a command
//! without taking the endpoint's lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::control::admin::{BackendInfo, Histogram, Metrics, PoolMetrics};
use crate::control::failed_logins::LOGIN_FAILURE_REASONS;
use crate::control::statements::StatementCounters;

/// A counter lock; a panic while holding it left a whole value behind, so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counters since start. Relaxed atomics: they order nothing.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Client commands relayed.
    pub commands: AtomicU64,
    /// Client commands that ended in an error.
    pub command_errors: AtomicU64,
    /// Bytes read from clients.
    pub client_bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub client_bytes_sent: AtomicU64,
    /// Bytes read from backends.
    pub backend_bytes_received: AtomicU64,
    /// Bytes written to backends.
    pub backend_bytes_sent: AtomicU64,
    /// Backend connections that could not be made (refused, unreachable, or answered with an
    /// ERR in place of the greeting, such as 1040 too many connections).
    pub backend_connect_errors: AtomicU64,
    /// Clients refused at `proxy.max-connections`.
    pub refused_max_connections: AtomicU64,
    /// Failed `accept` calls.
    pub accept_errors: AtomicU64,
    /// Health checks whose monitor login the backend refused.
    pub health_login_errors: AtomicU64,
    /// Migrations the core started.
    pub migrations_started: AtomicU64,
    /// Migrations that moved their session.
    pub migrations_succeeded: AtomicU64,
    /// Failed migrations by [`MigrationFailure::label`](crate::session::MigrationFailure::label);
    /// locked once per failed migration.
    pub migrations_failed: Mutex<BTreeMap<&'static str, u64>>,
    /// The pause each migration added to the command that waited for it; locked once per
    /// migration.
    pub migration_pause: Mutex<Histogram>,
    /// Sessions rebuilt on another backend after theirs died.
    pub failovers_recovered: AtomicU64,
    /// Of those, statements in flight sent again (read retry).
    pub failover_retries: AtomicU64,
    /// Sessions lost with their backend, by
    /// [`LossReason::label`](crate::session::LossReason::label).
    pub sessions_lost: Mutex<BTreeMap<&'static str, u64>>,
    /// Commands by type and backend, and their latency.
    pub statements: StatementCounters,
    /// Clients refused because their address is blocked after failed logins.
    pub refused_blocked: AtomicU64,
    /// Failed logins by reason (see `failed_logins.rs`); locked once per failed login.
    pub login_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Multiplexing: backend connections taken from the pool as they were.
    pub pool_reused: AtomicU64,
    /// Multiplexing: pooled connections taken and fixed up first.
    pub pool_fixed_up: AtomicU64,
    /// Multiplexing: new backend connections opened for a statement.
    pub pool_opened: AtomicU64,
    /// Multiplexing: fix-up statements sent.
    pub pool_fixup_statements: AtomicU64,
    /// Multiplexing: what a fix-up added to its statement (locked once per fix-up).
    pub pool_fixup_seconds: Mutex<Histogram>,
    /// Multiplexing: sessions that had to wait for a connection.
    pub pool_waits: AtomicU64,
    /// Multiplexing: how long those waited until they had one (locked once per wait).
    pub pool_wait_seconds: Mutex<Histogram>,
    /// Multiplexing: statements answered ERR 1040 (no connection within `max-wait`, or the
    /// queue full).
    pub pool_timeouts: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter` (relaxed: counters order nothing).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a failed migration under `label`.
    pub fn migration_failed(&self, label: &'static str) {
        *lock(&self.migrations_failed).entry(label).or_insert(0) += 1;
    }

    /// Counts a session lost with its backend under `label`.
    pub fn session_lost(&self, label: &'static str) {
        *lock(&self.sessions_lost).entry(label).or_insert(0) += 1;
    }

    /// Counts a failed login under `reason`.
    pub fn login_failed(&self, reason: &'static str) {
        *lock(&self.login_failures).entry(reason).or_insert(0) += 1;
    }

    /// Multiplexing: a session has a backend connection for its statement.
    pub fn pool_acquired(&self, reused: bool, fixups: usize, waited: Duration, queued: bool) {
        let kind = match (reused, fixups) {
            (false, _) => &self.pool_opened,
            (true, 0) => &self.pool_reused,
            (true, _) => &self.pool_fixed_up,
        };
        Self::add(kind, 1);
        if fixups > 0 {
            Self::add(&self.pool_fixup_statements, fixups as u64);
            lock(&self.pool_fixup_seconds).observe(waited);
        }
        if queued {
            lock(&self.pool_wait_seconds).observe(waited);
        }
    }

    /// Counts a migration that succeeded and records its pause.
    pub fn migration_done(&self, pause: Duration) {
        Self::add(&self.migrations_succeeded, 1);
        lock(&self.migration_pause).observe(pause);
    }

    /// A snapshot of the sums over `sets`, with `sessions` open now (`pinned_sessions` of them
    /// pinned, by reason) and the backends as the registry sees them.
    pub fn metrics(
        sets: &[&Counters],
        sessions: u64,
        pinned_sessions: BTreeMap<String, u64>,
        backends: Vec<BackendInfo>,
    ) -> Metrics {
        let sum = |field: fn(&Counters) -> &AtomicU64| -> u64 {
            sets.iter().map(|c| field(c).load(Ordering::Relaxed)).sum()
        };
        // The same kinds in every driver, so that dashboards work with either.
        let errors = [
            ("backend_connect", sum(|c| &c.backend_connect_errors)),
            ("command", sum(|c| &c.command_errors)),
            ("max_connections", sum(|c| &c.refused_max_connections)),
            ("accept", sum(|c| &c.accept_errors)),
            ("blocked_host", sum(|c| &c.refused_blocked)),
            ("health_login", sum(|c| &c.health_login_errors)),
        ]
        .into_iter()
        .map(|(kind, n)| (kind.to_owned(), n))
        .collect();
        let mut migrations_failed = BTreeMap::new();
        let mut migration_pause = Histogram::default();
        let mut sessions_lost = BTreeMap::new();
        let mut pool_fixup_seconds = Histogram::default();
        let mut pool_wait_seconds = Histogram::default();
        // Every reason from the start, so that dashboards and alerts find the series.
        let mut login_failures: BTreeMap<String, u64> = LOGIN_FAILURE_REASONS
            .iter()
            .map(|r| ((*r).to_owned(), 0))
            .collect();
        for c in sets {
            for (&reason, &n) in lock(&c.login_failures).iter() {
                *login_failures.entry(reason.to_owned()).or_insert(0) += n;
            }
            for (&reason, &n) in lock(&c.sessions_lost).iter() {
                *sessions_lost.entry(reason.to_owned()).or_insert(0) += n;
            }
            for (&reason, &n) in lock(&c.migrations_failed).iter() {
                *migrations_failed.entry(reason.to_owned()).or_insert(0) += n;
            }
            migration_pause.merge(&lock(&c.migration_pause));
            pool_fixup_seconds.merge(&lock(&c.pool_fixup_seconds));
            pool_wait_seconds.merge(&lock(&c.pool_wait_seconds));
        }
        // Registry indices name the backends (the listing is in registry order).
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let statement_sets: Vec<&StatementCounters> = sets.iter().map(|c| &c.statements).collect();
        let (statements, statement_duration) = StatementCounters::snapshot(&statement_sets, &names);
        Metrics {
            sessions,
            sessions_accepted: sum(|c| &c.accepted),
            commands: sum(|c| &c.commands),
            client_bytes_received: sum(|c| &c.client_bytes_received),
            client_bytes_sent: sum(|c| &c.client_bytes_sent),
            backend_bytes_received: sum(|c| &c.backend_bytes_received),
            backend_bytes_sent: sum(|c| &c.backend_bytes_sent),
            errors,
            backends,
            migrations_started: sum(|c| &c.migrations_started),
            migrations_succeeded: sum(|c| &c.migrations_succeeded),
            migrations_failed,
            pinned_sessions,
            migration_pause,
            failovers_recovered: sum(|c| &c.failovers_recovered),
            failover_retries: sum(|c| &c.failover_retries),
            sessions_lost,
            statements,
            statement_duration,
            process: None,
            login_failures,
            pool: PoolMetrics {
                acquires: [
                    ("reused".to_owned(), sum(|c| &c.pool_reused)),
                    ("fixed_up".to_owned(), sum(|c| &c.pool_fixed_up)),
                    ("opened".to_owned(), sum(|c| &c.pool_opened)),
                ]
                .into_iter()
                .collect(),
                fixup_statements: sum(|c| &c.pool_fixup_statements),
                fixup_seconds: pool_fixup_seconds,
                waits: sum(|c| &c.pool_waits),
                wait_seconds: pool_wait_seconds,
                timeouts: sum(|c| &c.pool_timeouts),
                connections: Vec::new(),
                waiting: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_every_set() {
        let sets = [Counters::default(), Counters::default()];
        Counters::add(&sets[0].commands, 3);
        Counters::add(&sets[1].commands, 4);
        Counters::add(&sets[1].accept_errors, 2);
        Counters::add(&sets[0].client_bytes_sent, 10);
        sets[0].migration_failed("pinned");
        sets[1].migration_failed("pinned");
        sets[1].migration_failed("timeout");
        sets[0].migration_done(Duration::from_millis(3));
        sets[1].migration_done(Duration::from_millis(4));
        let pinned = BTreeMap::from([("transaction".to_owned(), 1)]);
        let m = Counters::metrics(&[&sets[0], &sets[1]], 5, pinned.clone(), Vec::new());
        assert_eq!((m.sessions, m.commands, m.client_bytes_sent), (5, 7, 10));
        assert_eq!(m.errors["accept"], 2);
        assert_eq!(m.errors["command"], 0);
        assert_eq!(m.errors.len(), 6);
        assert_eq!(m.migrations_succeeded, 2);
        assert_eq!(m.migrations_failed["pinned"], 2);
        assert_eq!(m.migrations_failed["timeout"], 1);
        assert_eq!(m.migration_pause.count(), 2);
        assert_eq!(m.migration_pause.sum(), Duration::from_millis(7));
        assert_eq!(m.pinned_sessions, pinned);
        assert_eq!(
            m.login_failures["access_denied"], 0,
            "every reason is shown"
        );
        sets[0].login_failed("access_denied");
        sets[1].login_failed("access_denied");
        Counters::add(&sets[1].refused_blocked, 1);
        let m = Counters::metrics(&[&sets[0], &sets[1]], 5, BTreeMap::new(), Vec::new());
        assert_eq!(m.login_failures["access_denied"], 2);
        assert_eq!(m.errors["blocked_host"], 1);
    }

    #[test]
    fn one_set_is_its_own_snapshot() {
        let c = Counters::default();
        Counters::add(&c.accepted, 1);
        Counters::add(&c.backend_connect_errors, 1);
        c.migration_done(Duration::from_millis(1));
        let m = Counters::metrics(&[&c], 0, BTreeMap::new(), Vec::new());
        assert_eq!((m.sessions_accepted, m.errors["backend_connect"]), (1, 1));
        assert_eq!(m.migration_pause.count(), 1);
        assert!(m.migrations_failed.is_empty());
    }
}
