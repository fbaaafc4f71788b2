//! The proxy's counters: the mio driver's [`Counters`], one set that every session task adds to.

use std::sync::atomic::AtomicU64;

pub(crate) use ferry_mio::proxy::stats::Counters as Stats;

/// Adds `n` to `counter`.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    Stats::add(counter, n);
}
