//! Counters as a plain snapshot ([`Metrics`]) and their rendering in the Prometheus text
//! exposition format 0.0.4 ([`render`]).
//!
//! The event loop keeps its own counters (per worker, without locks) and builds a [`Metrics`]
//! when `/metrics` is asked for, merging workers with [`Histogram::merge`] and plain additions.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ferry_sessions` | gauge | |
//! | `ferry_sessions_accepted_total` | counter | |
//! | `ferry_commands_total` | counter | |
//! | `ferry_bytes_received_total`, `ferry_bytes_sent_total` | counter | `peer` = `client` / `backend` |
//! | `ferry_errors_total` | counter | `kind` |
//! | `ferry_backend_up`, `ferry_backend_draining`, `ferry_backend_sessions` | gauge | `backend`, `addr` |
//! | `ferry_migrations_started_total`, `ferry_migrations_succeeded_total` | counter | |
//! | `ferry_migrations_failed_total` | counter | `reason` |
//! | `ferry_pinned_sessions` | gauge | `reason` |
//! | `ferry_migration_pause_seconds` | histogram | |
//! | `ferry_pool_connections` | gauge | `backend`, `state` (`in_use`, `idle`) |
//! | `ferry_pool_acquires_total` | counter | `result` (`reused`, `fixed_up`, `opened`) |
//! | `ferry_pool_fixup_statements_total` | counter | |
//! | `ferry_pool_fixup_seconds` | histogram | |
//! | `ferry_pool_waits_total` | counter | |
//! | `ferry_pool_wait_seconds` | histogram | |
//! | `ferry_pool_waiting` | gauge | |
//! | `ferry_pool_timeouts_total` | counter | |
//! | `ferry_failover_recovered_total`, `ferry_failover_retried_total` | counter | |
//! | `ferry_failover_lost_total` | counter | `reason` |
//! | `ferry_migrations_total` | counter | `result` = `succeeded` / `failed` / `cancelled` |
//! | `ferry_statements_total`, `ferry_statement_errors_total` | counter | `command`, `backend` |
//! | `ferry_statement_duration_seconds` | histogram | `command` |
//! | `ferry_build_info` | gauge (1) | `version`, `revision` |
//! | `process_cpu_seconds_total` | counter | |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes` | gauge | |
//! | `process_open_fds`, `process_max_fds` | gauge | |
//! | `process_start_time_seconds` | gauge | |
//!
//! Statements are counted by `command` (MariaDB's `Com_*` names: `query`, `stmt_execute`,
//! `stmt_prepare`, `ping`, ..., `other`) and by the `backend` that answered (`other` past
//! [`TRACKED_BACKENDS`](crate::control::statements::TRACKED_BACKENDS) backends); a series
//! appears once it counted something. A statement's duration runs from its arrival to the end
//! of its response (a statement that waited for a migration counts the wait).
//!
//! The `process_*` families are the Prometheus client libraries' standard ones. Reading them is
//! I/O (`/proc`), so the core never does: the driver reads a [`ProcessStats`] when
//! [`wants_process_stats`](super::wants_process_stats) says a request shows them, and passes it
//! in ([`Endpoint::handle_admin_with_process`](crate::control::Endpoint::handle_admin_with_process));
//! without it (an embedder that does not), those families are left out.
//! | `ferry_login_failures_total` | counter | `reason` |

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::{BackendInfo, ProcessStats};
use crate::control::build_info;

/// Everything `/metrics` shows, as plain values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Client sessions open now.
    pub sessions: u64,
    /// Client connections accepted since start.
    pub sessions_accepted: u64,
    /// Commands relayed since start.
    pub commands: u64,
    /// Bytes read from clients.
    pub client_bytes_received: u64,
    /// Bytes written to clients.
    pub client_bytes_sent: u64,
    /// Bytes read from backends.
    pub backend_bytes_received: u64,
    /// Bytes written to backends.
    pub backend_bytes_sent: u64,
    /// Errors by kind (`backend_connect`, `command`, `max_connections`, `accept`,
    /// `blocked_host`).
    pub errors: BTreeMap<String, u64>,
    /// Per backend: health, draining, sessions.
    pub backends: Vec<BackendInfo>,
    /// Migrations started since start.
    pub migrations_started: u64,
    /// Migrations that completed.
    pub migrations_succeeded: u64,
    /// Migrations that failed, by reason (the session stayed on its old backend).
    pub migrations_failed: BTreeMap<String, u64>,
    /// Sessions pinned now, by reason.
    pub pinned_sessions: BTreeMap<String, u64>,
    /// The pause each migration added to the statement that waited for it.
    pub migration_pause: Histogram,
    /// Sessions rebuilt on another backend after theirs died (failover).
    pub failovers_recovered: u64,
    /// Statements in flight sent again after a failover (read retry).
    pub failover_retries: u64,
    /// Sessions lost with their backend, by reason.
    pub sessions_lost: BTreeMap<String, u64>,
    /// Statements by command type and backend (those counted at least once).
    pub statements: Vec<StatementCount>,
    /// Statement latency per command type (those seen at least once).
    pub statement_duration: Vec<(String, Histogram)>,
    /// The process's CPU, memory and descriptors, if the driver read them.
    pub process: Option<ProcessStats>,
    /// Failed logins, by reason (`access_denied`, `refused`, ...).
    pub login_failures: BTreeMap<String, u64>,
    /// Multiplexing's pool (all zero when it is off).
    pub pool: PoolMetrics,
}

/// Multiplexing's pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolMetrics {
    /// Connections taken for a statement: `reused` as they were, `fixed_up`, `opened` new.
    pub acquires: BTreeMap<String, u64>,
    /// Fix-up statements sent.
    pub fixup_statements: u64,
    /// What a fix-up added to its statement.
    pub fixup_seconds: Histogram,
    /// Sessions that waited for a connection.
    pub waits: u64,
    /// How long they waited.
    pub wait_seconds: Histogram,
    /// Statements answered ERR 1040 for want of a connection.
    pub timeouts: u64,
    /// Per backend: (name, in use, idle).
    pub connections: Vec<(String, u64, u64)>,
    /// Sessions waiting now.
    pub waiting: u64,
}

/// Statements of one command type answered by one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementCount {
    /// The command type (`query`, `stmt_execute`, ...).
    pub command: String,
    /// The backend's name (`other` past the tracked ones).
    pub backend: String,
    /// Statements finished.
    pub total: u64,
    /// Of those, ended with an ERR.
    pub errors: u64,
}

/// A cumulative histogram with fixed bucket bounds (seconds), as Prometheus wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending, finite; `+Inf` is implied.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds` for `+Inf`.
    counts: Vec<u64>,
    /// Sum of the observations.
    sum: Duration,
}

/// Bucket bounds for migration pauses: 0.5 ms to 5 s.
pub const PAUSE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Default for Histogram {
    /// A histogram over [`PAUSE_BUCKETS`].
    fn default() -> Self {
        Self::new(&PAUSE_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these upper bounds in seconds (sorted; duplicates, NaN and infinities
    /// dropped).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Self {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: Duration::ZERO,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: Duration) {
        let secs = value.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < secs);
        self.counts[i] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds `other`'s observations (another worker's) to these; `false`, and nothing added,
    /// if the bounds differ.
    pub fn merge(&mut self, other: &Histogram) -> bool {
        if self.bounds != other.bounds {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
        true
    }

    /// Adds per-bucket observation counts (not cumulative; one more than the bounds, for
    /// `+Inf`) and their sum; `false`, and nothing added, if the number of buckets differs.
    pub fn add_counts(&mut self, counts: &[u64], sum: Duration) -> bool {
        if counts.len() != self.counts.len() {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(counts) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(sum);
        true
    }

    /// The cumulative counts by upper bound, `+Inf` (as `f64::INFINITY`) last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let mut total = 0;
        bounds
            .zip(&self.counts)
            .map(|(b, n)| {
                total += n;
                (b, total)
            })
            .collect()
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> Duration {
        self.sum
    }
}

/// Renders `m` in the Prometheus text exposition format 0.0.4.
pub fn render(m: &Metrics) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    family(o, "ferry_sessions", "gauge", "Client sessions open now.");
    sample(o, "ferry_sessions", &[], m.sessions);
    family(
        o,
        "ferry_sessions_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    sample(o, "ferry_sessions_accepted_total", &[], m.sessions_accepted);
    family(o, "ferry_commands_total", "counter", "Commands relayed.");
    sample(o, "ferry_commands_total", &[], m.commands);
    family(
        o,
        "ferry_bytes_received_total",
        "counter",
        "Bytes read, by peer.",
    );
    sample(
        o,
        "ferry_bytes_received_total",
        &[("peer", "client")],
        m.client_bytes_received,
    );
    sample(
        o,
        "ferry_bytes_received_total",
        &[("peer", "backend")],
        m.backend_bytes_received,
    );
    family(
        o,
        "ferry_bytes_sent_total",
        "counter",
        "Bytes written, by peer.",
    );
    sample(
        o,
        "ferry_bytes_sent_total",
        &[("peer", "client")],
        m.client_bytes_sent,
    );
    sample(
        o,
        "ferry_bytes_sent_total",
        &[("peer", "backend")],
        m.backend_bytes_sent,
    );
    family(o, "ferry_errors_total", "counter", "Errors, by kind.");
    for (kind, n) in &m.errors {
        sample(o, "ferry_errors_total", &[("kind", kind)], *n);
    }

    family(
        o,
        "ferry_backend_up",
        "gauge",
        "1 if the backend passes health checks.",
    );
    for b in &m.backends {
        let labels = [("backend", b.name.as_str()), ("addr", b.addr.as_str())];
        sample(o, "ferry_backend_up", &labels, u64::from(b.healthy));
    }
    family(
        o,
        "ferry_backend_draining",
        "gauge",
        "1 if the backend is being drained.",
    );
    for b in &m.backends {
        let labels = [("backend", b.name.as_str()), ("addr", b.addr.as_str())];
        sample(o, "ferry_backend_draining", &labels, u64::from(b.draining));
    }
    family(
        o,
        "ferry_backend_sessions",
        "gauge",
        "Sessions on the backend.",
    );
    for b in &m.backends {
        let labels = [("backend", b.name.as_str()), ("addr", b.addr.as_str())];
        sample(o, "ferry_backend_sessions", &labels, b.sessions);
    }

    family(
        o,
        "ferry_migrations_started_total",
        "counter",
        "Session migrations started.",
    );
    sample(
        o,
        "ferry_migrations_started_total",
        &[],
        m.migrations_started,
    );
    family(
        o,
        "ferry_migrations_succeeded_total",
        "counter",
        "Session migrations completed.",
    );
    sample(
        o,
        "ferry_migrations_succeeded_total",
        &[],
        m.migrations_succeeded,
    );
    family(
        o,
        "ferry_migrations_failed_total",
        "counter",
        "Session migrations that failed (the session stayed), by reason.",
    );
    for (reason, n) in &m.migrations_failed {
        sample(
            o,
            "ferry_migrations_failed_total",
            &[("reason", reason)],
            *n,
        );
    }
    family(
        o,
        "ferry_pinned_sessions",
        "gauge",
        "Sessions that cannot migrate now, by reason.",
    );
    for (reason, n) in &m.pinned_sessions {
        sample(o, "ferry_pinned_sessions", &[("reason", reason)], *n);
    }
    family(
        o,
        "ferry_failover_recovered_total",
        "counter",
        "Sessions rebuilt on another backend after theirs died.",
    );
    sample(
        o,
        "ferry_failover_recovered_total",
        &[],
        m.failovers_recovered,
    );
    family(
        o,
        "ferry_failover_retried_total",
        "counter",
        "Statements in flight sent again after a failover (read retry).",
    );
    sample(o, "ferry_failover_retried_total", &[], m.failover_retries);
    family(
        o,
        "ferry_failover_lost_total",
        "counter",
        "Sessions lost with their backend (client connection closed), by reason.",
    );
    for (reason, n) in &m.sessions_lost {
        sample(o, "ferry_failover_lost_total", &[("reason", reason)], *n);
    }

    family(
        o,
        "ferry_login_failures_total",
        "counter",
        "Failed client logins, by reason.",
    );
    for (reason, n) in &m.login_failures {
        sample(o, "ferry_login_failures_total", &[("reason", reason)], *n);
    }

    let name = "ferry_migration_pause_seconds";
    family(
        o,
        name,
        "histogram",
        "Pause a migration added to the statement that waited for it.",
    );
    histogram(o, name, &[], &m.migration_pause);

    render_migrations(o, m);
    render_pool(o, &m.pool);
    render_statements(o, m);
    render_build_info(o);
    if let Some(p) = &m.process {
        render_process(o, p);
    }
    out
}

/// Multiplexing's families.
fn render_pool(o: &mut String, p: &PoolMetrics) {
    family(
        o,
        "ferry_pool_connections",
        "gauge",
        "Multiplexing: backend connections by backend and state (in_use, idle).",
    );
    for (backend, in_use, idle) in &p.connections {
        let b = backend.as_str();
        sample(
            o,
            "ferry_pool_connections",
            &[("backend", b), ("state", "in_use")],
            *in_use,
        );
        sample(
            o,
            "ferry_pool_connections",
            &[("backend", b), ("state", "idle")],
            *idle,
        );
    }
    family(
        o,
        "ferry_pool_acquires_total",
        "counter",
        "Multiplexing: backend connections taken for a statement, by result.",
    );
    for (result, n) in &p.acquires {
        sample(o, "ferry_pool_acquires_total", &[("result", result)], *n);
    }
    family(
        o,
        "ferry_pool_fixup_statements_total",
        "counter",
        "Multiplexing: statements sent to bring a connection to its session's state.",
    );
    sample(
        o,
        "ferry_pool_fixup_statements_total",
        &[],
        p.fixup_statements,
    );
    let name = "ferry_pool_fixup_seconds";
    family(
        o,
        name,
        "histogram",
        "Multiplexing: latency a fix-up added to its statement.",
    );
    histogram(o, name, &[], &p.fixup_seconds);
    family(
        o,
        "ferry_pool_waits_total",
        "counter",
        "Multiplexing: statements that waited for a backend connection.",
    );
    sample(o, "ferry_pool_waits_total", &[], p.waits);
    let name = "ferry_pool_wait_seconds";
    family(o, name, "histogram", "Multiplexing: how long those waited.");
    histogram(o, name, &[], &p.wait_seconds);
    family(
        o,
        "ferry_pool_waiting",
        "gauge",
        "Multiplexing: sessions waiting for a backend connection now.",
    );
    sample(o, "ferry_pool_waiting", &[], p.waiting);
    family(
        o,
        "ferry_pool_timeouts_total",
        "counter",
        "Multiplexing: statements answered ERR 1040 for want of a backend connection.",
    );
    sample(o, "ferry_pool_timeouts_total", &[], p.timeouts);
}

/// `ferry_migrations_total{result}`: every migration that ended, in one family (the
/// `_succeeded` and `_failed` families above stay for existing dashboards).
fn render_migrations(o: &mut String, m: &Metrics) {
    let cancelled = m.migrations_failed.get("cancelled").copied().unwrap_or(0);
    let failed = m.migrations_failed.values().sum::<u64>() - cancelled;
    let name = "ferry_migrations_total";
    family(
        o,
        name,
        "counter",
        "Session migrations that ended, by result (succeeded, failed, cancelled).",
    );
    sample(o, name, &[("result", "succeeded")], m.migrations_succeeded);
    sample(o, name, &[("result", "failed")], failed);
    sample(o, name, &[("result", "cancelled")], cancelled);
}

fn render_statements(o: &mut String, m: &Metrics) {
    family(
        o,
        "ferry_statements_total",
        "counter",
        "Client commands answered, by command type and backend.",
    );
    for s in &m.statements {
        let labels = [("command", s.command.as_str()), ("backend", &s.backend)];
        sample(o, "ferry_statements_total", &labels, s.total);
    }
    family(
        o,
        "ferry_statement_errors_total",
        "counter",
        "Client commands answered with an error, by command type and backend.",
    );
    for s in &m.statements {
        let labels = [("command", s.command.as_str()), ("backend", &s.backend)];
        sample(o, "ferry_statement_errors_total", &labels, s.errors);
    }
    let name = "ferry_statement_duration_seconds";
    family(
        o,
        name,
        "histogram",
        "Client command latency, from its arrival to the end of its response, by command type.",
    );
    for (command, h) in &m.statement_duration {
        histogram(o, name, &[("command", command)], h);
    }
}

fn render_build_info(o: &mut String) {
    let name = "ferry_build_info";
    family(
        o,
        name,
        "gauge",
        "Always 1; the labels say which ferry this is.",
    );
    let labels = [
        ("version", build_info::VERSION),
        ("revision", build_info::revision()),
    ];
    sample(o, name, &labels, 1);
}

fn render_process(o: &mut String, p: &ProcessStats) {
    if let Some(cpu) = p.cpu {
        family(
            o,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(o, "process_cpu_seconds_total {}", cpu.as_secs_f64());
    }
    let gauges = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            family(o, name, "gauge", help);
            sample(o, name, &[], v);
        }
    }
    if let Some(start) = p.start_time {
        let name = "process_start_time_seconds";
        family(
            o,
            name,
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(o, "{name} {}", start.as_secs_f64());
    }
}

/// The `_bucket`, `_sum` and `_count` samples of histogram `h` named `name` with `labels`.
fn histogram(o: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut le = String::new();
    for (bound, n) in h.cumulative() {
        le.clear();
        if bound.is_infinite() {
            le.push_str("+Inf");
        } else {
            let _ = write!(le, "{bound}");
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(o, &bucket, &with_le, n);
    }
    series(o, &format!("{name}_sum"), labels);
    let _ = writeln!(o, " {}", h.sum.as_secs_f64());
    sample(o, &format!("{name}_count"), labels, h.count());
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    series(out, name, labels);
    let _ = writeln!(out, " {value}");
}

/// A sample's name and labels, without its value.
fn series(out: &mut String, name: &str, labels: &[(&str, &str)]) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
}

/// Label values escape `\`, `"` and newlines (exposition format 0.0.4).
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_metrics() -> Metrics {
        let mut m = Metrics {
            sessions: 3,
            sessions_accepted: 10,
            commands: 1234,
            client_bytes_received: 1,
            client_bytes_sent: 2,
            backend_bytes_received: 3,
            backend_bytes_sent: 4,
            migrations_started: 5,
            migrations_succeeded: 4,
            ..Metrics::default()
        };
        m.errors.insert("backend_connect".into(), 2);
        m.migrations_failed.insert("timeout".into(), 1);
        m.failovers_recovered = 7;
        m.sessions_lost.insert("pinned".into(), 2);
        m.login_failures.insert("access_denied".into(), 6);
        m.pinned_sessions.insert("transaction".into(), 2);
        m.pinned_sessions.insert("temporary table".into(), 1);
        m.backends = vec![
            BackendInfo {
                name: "db1".into(),
                addr: "127.0.0.1:3306".into(),
                healthy: true,
                sessions: 2,
                draining: false,
                health_warning: None,
                down_reason: None,
            },
            BackendInfo {
                name: "db2".into(),
                addr: "127.0.0.1:3307".into(),
                healthy: false,
                sessions: 1,
                draining: true,
                health_warning: None,
                down_reason: None,
            },
        ];
        m.migration_pause.observe(Duration::from_micros(300));
        m.migration_pause.observe(Duration::from_millis(3));
        m.migration_pause.observe(Duration::from_millis(3));
        m.migration_pause.observe(Duration::from_secs(60));
        m.migrations_failed.insert("cancelled".into(), 2);
        m.statements = vec![
            StatementCount {
                command: "query".into(),
                backend: "db1".into(),
                total: 7,
                errors: 2,
            },
            StatementCount {
                command: "stmt_execute".into(),
                backend: "db2".into(),
                total: 3,
                errors: 0,
            },
        ];
        let mut latency = Histogram::new(&[0.001, 0.01]);
        latency.observe(Duration::from_micros(500));
        latency.observe(Duration::from_millis(5));
        latency.observe(Duration::from_millis(50));
        m.statement_duration = vec![("query".into(), latency)];
        m.process = Some(ProcessStats {
            cpu: Some(Duration::from_millis(1500)),
            resident_memory_bytes: Some(1 << 20),
            virtual_memory_bytes: Some(1 << 30),
            open_fds: Some(17),
            max_fds: Some(65536),
            start_time: Some(Duration::from_secs(1_700_000_000)),
        });
        m
    }

    #[test]
    fn renders_every_family_and_sample() {
        let text = render(&sample_metrics());
        for line in [
            "ferry_sessions 3",
            "ferry_sessions_accepted_total 10",
            "ferry_commands_total 1234",
            "ferry_bytes_received_total{peer=\"client\"} 1",
            "ferry_bytes_received_total{peer=\"backend\"} 3",
            "ferry_bytes_sent_total{peer=\"client\"} 2",
            "ferry_bytes_sent_total{peer=\"backend\"} 4",
            "ferry_errors_total{kind=\"backend_connect\"} 2",
            "ferry_backend_up{backend=\"db1\",addr=\"127.0.0.1:3306\"} 1",
            "ferry_backend_up{backend=\"db2\",addr=\"127.0.0.1:3307\"} 0",
            "ferry_backend_draining{backend=\"db2\",addr=\"127.0.0.1:3307\"} 1",
            "ferry_backend_sessions{backend=\"db1\",addr=\"127.0.0.1:3306\"} 2",
            "ferry_migrations_started_total 5",
            "ferry_migrations_succeeded_total 4",
            "ferry_migrations_failed_total{reason=\"timeout\"} 1",
            "ferry_failover_recovered_total 7",
            "ferry_failover_retried_total 0",
            "ferry_failover_lost_total{reason=\"pinned\"} 2",
            "ferry_login_failures_total{reason=\"access_denied\"} 6",
            "ferry_pinned_sessions{reason=\"temporary table\"} 1",
            "ferry_pinned_sessions{reason=\"transaction\"} 2",
            "# TYPE ferry_migration_pause_seconds histogram",
            "ferry_migration_pause_seconds_bucket{le=\"0.0005\"} 1",
            "ferry_migration_pause_seconds_bucket{le=\"0.001\"} 1",
            "ferry_migration_pause_seconds_bucket{le=\"0.005\"} 3",
            "ferry_migration_pause_seconds_bucket{le=\"5\"} 3",
            "ferry_migration_pause_seconds_bucket{le=\"+Inf\"} 4",
            "ferry_migration_pause_seconds_sum 60.0063",
            "ferry_migration_pause_seconds_count 4",
            "ferry_migrations_total{result=\"succeeded\"} 4",
            "ferry_migrations_total{result=\"failed\"} 1",
            "ferry_migrations_total{result=\"cancelled\"} 2",
            "ferry_statements_total{command=\"query\",backend=\"db1\"} 7",
            "ferry_statements_total{command=\"stmt_execute\",backend=\"db2\"} 3",
            "ferry_statement_errors_total{command=\"query\",backend=\"db1\"} 2",
            "ferry_statement_errors_total{command=\"stmt_execute\",backend=\"db2\"} 0",
            "ferry_statement_duration_seconds_bucket{command=\"query\",le=\"0.001\"} 1",
            "ferry_statement_duration_seconds_bucket{command=\"query\",le=\"0.01\"} 2",
            "ferry_statement_duration_seconds_bucket{command=\"query\",le=\"+Inf\"} 3",
            "ferry_statement_duration_seconds_sum{command=\"query\"} 0.0555",
            "ferry_statement_duration_seconds_count{command=\"query\"} 3",
            "process_cpu_seconds_total 1.5",
            "process_resident_memory_bytes 1048576",
            "process_virtual_memory_bytes 1073741824",
            "process_open_fds 17",
            "process_max_fds 65536",
            "process_start_time_seconds 1700000000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn exposition_format_is_well_formed() {
        let text = render(&sample_metrics());
        assert!(text.ends_with('\n'));
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(matches!(kind, "counter" | "gauge" | "histogram"));
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            // name{labels} value, where the name belongs to a declared family.
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                .unwrap_or(name);
            assert!(declared.contains(family), "undeclared {name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }

    #[test]
    fn build_info_is_always_there_and_process_metrics_only_when_read() {
        let text = render(&Metrics::default());
        let build = format!(
            "ferry_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            build_info::VERSION,
            build_info::revision()
        );
        assert!(text.lines().any(|l| l == build), "{text}");
        assert!(!text.contains("process_"), "{text}");
        // The migration results are there from the start, at zero.
        assert!(text
            .lines()
            .any(|l| l == "ferry_migrations_total{result=\"failed\"} 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.errors.insert("a\"b\\c\nd".into(), 1);
        let text = render(&m);
        assert!(
            text.contains("ferry_errors_total{kind=\"a\\\"b\\\\c\\nd\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_merge_and_bounds() {
        let mut a = Histogram::new(&[1.0, 0.5, f64::NAN, 0.5, f64::INFINITY]);
        assert_eq!(a.bounds, vec![0.5, 1.0]);
        a.observe(Duration::from_millis(500)); // le 0.5 is inclusive
        a.observe(Duration::from_millis(700));
        let mut b = Histogram::new(&[0.5, 1.0]);
        b.observe(Duration::from_secs(2));
        assert!(a.merge(&b));
        assert_eq!(a.counts, vec![1, 1, 1]);
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum(), Duration::from_millis(3200));
        assert!(!a.merge(&Histogram::default()));
        assert_eq!(a.count(), 3);
    }
}
