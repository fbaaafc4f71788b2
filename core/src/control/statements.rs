//! Per-statement counters: commands by type and backend, their errors, and a latency histogram
//! per command type. Written once per command by the session's own worker, so the cost is what
//! the common path can afford: a few relaxed atomic adds into fixed arrays, no allocation, no
//! lock, no map. Backends are counted by registry index, up to [`TRACKED_BACKENDS`]; the rest
//! (and a command whose backend is unknown) share one `other` slot, so memory stays bounded
//! (about 19 KiB per shard).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wire::Command;

use super::admin::{Histogram, StatementCount};

/// Backends counted one by one; more share the `other` slot.
pub const TRACKED_BACKENDS: usize = 64;
/// The `backend` label of the shared slot.
pub const OTHER_BACKEND: &str = "other";
const SLOTS: usize = TRACKED_BACKENDS + 1;

/// The `command` label of each command kind, by kind index. The names are MariaDB's `Com_*`
/// status variables', lowercase; commands ferry relays rarely share `other`.
pub const COMMAND_LABELS: [&str; KINDS] = [
    "query",
    "stmt_prepare",
    "stmt_execute",
    "stmt_fetch",
    "stmt_close",
    "stmt_reset",
    "stmt_send_long_data",
    "ping",
    "init_db",
    "change_user",
    "reset_connection",
    "set_option",
    "field_list",
    "statistics",
    "process_kill",
    "other",
];
const KINDS: usize = 16;

/// The kind index of command byte `code` (see [`COMMAND_LABELS`]).
fn kind(code: u8) -> usize {
    match code {
        Command::COM_QUERY => 0,
        Command::COM_STMT_PREPARE => 1,
        Command::COM_STMT_EXECUTE => 2,
        Command::COM_STMT_FETCH => 3,
        Command::COM_STMT_CLOSE => 4,
        Command::COM_STMT_RESET => 5,
        Command::COM_STMT_SEND_LONG_DATA => 6,
        Command::COM_PING => 7,
        Command::COM_INIT_DB => 8,
        Command::COM_CHANGE_USER => 9,
        Command::COM_RESET_CONNECTION => 10,
        Command::COM_SET_OPTION => 11,
        Command::COM_FIELD_LIST => 12,
        Command::COM_STATISTICS => 13,
        Command::COM_PROCESS_KILL => 14,
        _ => KINDS - 1,
    }
}

/// Upper bounds of the latency buckets, in seconds: 100 µs to 30 s (`+Inf` implied).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// [`LATENCY_BUCKETS`] in nanoseconds, so that a bucket is found without floating point.
const LATENCY_BOUNDS_NS: [u64; BUCKETS - 1] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// One shard's statement counters.
#[derive(Debug)]
pub struct StatementCounters {
    /// Commands finished, by `kind * SLOTS + backend slot`.
    total: Box<[AtomicU64]>,
    /// Of those, ended with an ERR.
    errors: Box<[AtomicU64]>,
    /// Latency observations, by `kind * BUCKETS + bucket` (not cumulative).
    buckets: Box<[AtomicU64]>,
    /// Sum of the latencies per kind, in nanoseconds.
    sum_ns: Box<[AtomicU64]>,
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Default for StatementCounters {
    fn default() -> Self {
        Self {
            total: zeros(KINDS * SLOTS),
            errors: zeros(KINDS * SLOTS),
            buckets: zeros(KINDS * BUCKETS),
            sum_ns: zeros(KINDS),
        }
    }
}

impl StatementCounters {
    /// Counts one finished command: `code` its command byte, `backend` the registry index of
    /// the backend that answered (`None`: not known), `error` whether it ended with an ERR,
    /// `duration` its latency.
    pub fn record(&self, code: u8, backend: Option<usize>, error: bool, duration: Duration) {
        let kind = kind(code);
        let slot = backend
            .filter(|&i| i < TRACKED_BACKENDS)
            .unwrap_or(SLOTS - 1);
        let add = |a: &AtomicU64, n: u64| {
            a.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.total[kind * SLOTS + slot], 1);
        if error {
            add(&self.errors[kind * SLOTS + slot], 1);
        }
        // Over 584 years saturates: no latency is that long.
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_NS.partition_point(|&b| b < ns);
        add(&self.buckets[kind * BUCKETS + bucket], 1);
        add(&self.sum_ns[kind], ns);
    }

    /// The sums over `sets`: the commands by kind and backend (those counted at least once;
    /// `backend_names` names the registry indices, others are [`OTHER_BACKEND`]), and one
    /// latency histogram per kind seen.
    pub fn snapshot(
        sets: &[&StatementCounters],
        backend_names: &[&str],
    ) -> (Vec<StatementCount>, Vec<(String, Histogram)>) {
        let load = |field: fn(&StatementCounters) -> &[AtomicU64], i: usize| -> u64 {
            sets.iter()
                .map(|s| field(s)[i].load(Ordering::Relaxed))
                .sum()
        };
        let mut counts = Vec::new();
        let mut latency = Vec::new();
        for (kind, command) in COMMAND_LABELS.iter().enumerate() {
            for slot in 0..SLOTS {
                let total = load(|s| &s.total, kind * SLOTS + slot);
                if total == 0 {
                    continue;
                }
                let backend = match backend_names.get(slot) {
                    Some(name) if slot < TRACKED_BACKENDS => name,
                    _ => OTHER_BACKEND,
                };
                counts.push(StatementCount {
                    command: (*command).to_owned(),
                    backend: backend.to_owned(),
                    total,
                    errors: load(|s| &s.errors, kind * SLOTS + slot),
                });
            }
            let buckets: Vec<u64> = (0..BUCKETS)
                .map(|b| load(|s| &s.buckets, kind * BUCKETS + b))
                .collect();
            if buckets.iter().all(|&n| n == 0) {
                continue;
            }
            let mut h = Histogram::new(&LATENCY_BUCKETS);
            h.add_counts(&buckets, Duration::from_nanos(load(|s| &s.sum_ns, kind)));
            latency.push(((*command).to_owned(), h));
        }
        (counts, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_command_kind_has_a_label_and_bounds_match() {
        assert_eq!(COMMAND_LABELS.len(), KINDS);
        assert_eq!(COMMAND_LABELS[kind(Command::COM_QUERY)], "query");
        assert_eq!(
            COMMAND_LABELS[kind(Command::COM_STMT_EXECUTE)],
            "stmt_execute"
        );
        assert_eq!(COMMAND_LABELS[kind(Command::COM_PING)], "ping");
        assert_eq!(COMMAND_LABELS[kind(0xEE)], "other");
        assert_eq!(COMMAND_LABELS[kind(Command::COM_SLEEP)], "other");
        for (s, ns) in LATENCY_BUCKETS.iter().zip(LATENCY_BOUNDS_NS) {
            assert_eq!(Duration::from_secs_f64(*s), Duration::from_nanos(ns));
        }
    }

    #[test]
    fn counts_by_kind_and_backend_sum_over_shards() {
        let (a, b) = (StatementCounters::default(), StatementCounters::default());
        a.record(Command::COM_QUERY, Some(0), false, ms(1));
        a.record(Command::COM_QUERY, Some(0), true, ms(3));
        b.record(Command::COM_QUERY, Some(0), false, ms(200));
        b.record(Command::COM_QUERY, Some(1), false, Duration::ZERO);
        b.record(Command::COM_STMT_EXECUTE, None, false, ms(40_000));
        // Beyond the tracked backends: the shared slot.
        a.record(Command::COM_PING, Some(TRACKED_BACKENDS), false, ms(1));
        let (counts, latency) = StatementCounters::snapshot(&[&a, &b], &["db1", "db2"]);
        let row = |c: &str, be: &str| {
            counts
                .iter()
                .find(|s| s.command == c && s.backend == be)
                .map(|s| (s.total, s.errors))
        };
        assert_eq!(row("query", "db1"), Some((3, 1)));
        assert_eq!(row("query", "db2"), Some((1, 0)));
        assert_eq!(row("stmt_execute", OTHER_BACKEND), Some((1, 0)));
        assert_eq!(row("ping", OTHER_BACKEND), Some((1, 0)));
        assert_eq!(counts.len(), 4, "only what was counted: {counts:?}");
        let names: Vec<&str> = latency.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["query", "stmt_execute", "ping"]);
        let query = &latency[0].1;
        assert_eq!(query.count(), 4);
        assert_eq!(query.sum(), ms(204));
        // 40 s is past the last bound: only in +Inf.
        assert_eq!(latency[1].1.count(), 1);
        assert_eq!(latency[1].1.cumulative().last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(latency[1].1.cumulative()[LATENCY_BUCKETS.len() - 1].1, 0);
    }

    #[test]
    fn a_bound_is_inclusive_as_prometheus_le() {
        let c = StatementCounters::default();
        c.record(Command::COM_QUERY, Some(0), false, ms(1));
        let (_, latency) = StatementCounters::snapshot(&[&c], &["db1"]);
        let cumulative = latency[0].1.cumulative();
        let at = |le: f64| cumulative.iter().find(|(b, _)| *b == le).unwrap().1;
        assert_eq!((at(0.0005), at(0.001)), (0, 1));
    }
}
