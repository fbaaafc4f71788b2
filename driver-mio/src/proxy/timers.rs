//! Per-worker timers: a binary heap of `(deadline, key)` with lazy deletion, and the per-owner
//! [`Deadline`] that keeps heap traffic low.
//!
//! A session's deadline moves on every command (the idle timeout restarts), almost always
//! *later*. [`Deadline::set`] pushes to the heap only when the new deadline is *earlier* than the
//! one already armed; a later one is remembered and re-armed when the armed entry comes due
//! ([`Deadline::fire`] answers [`Fire::Rearm`]). So an active session costs a heap push per
//! deadline that moves earlier, not per command. Entries that no longer match their owner are
//! skipped when popped, and [`Timers::compact`] drops them when they pile up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A heap of deadlines, earliest first.
#[derive(Debug)]
pub(crate) struct Timers<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Adds a deadline.
    pub(crate) fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, stale or not (waking for a stale one costs one empty round).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns an entry due at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` accepts.
    pub(crate) fn compact(&mut self, mut live: impl FnMut(Instant, K) -> bool) {
        self.heap.retain(|Reverse((at, key))| live(*at, *key));
    }
}

/// One owner's deadline: what it wants, and what is armed in the heap.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// The deadline the owner asked for last.
    wanted: Option<Instant>,
    /// The earliest entry of this owner in the heap (the only one that is not stale).
    armed: Option<Instant>,
}

/// What to do with a heap entry of this owner that came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fire {
    /// Not the armed entry (superseded): ignore it.
    Stale,
    /// The owner's deadline moved later meanwhile: push this one instead, do nothing now.
    Rearm(Instant),
    /// The owner's deadline passed: call it.
    Due,
}

impl Deadline {
    /// Sets the wanted deadline; pushes to `timers` only when it is earlier than the armed one.
    pub(crate) fn set<K: Ord + Copy>(
        &mut self,
        at: Option<Instant>,
        key: K,
        timers: &mut Timers<K>,
    ) {
        self.wanted = at;
        if let Some(at) = at {
            if !matches!(self.armed, Some(armed) if armed <= at) {
                self.armed = Some(at);
                timers.push(at, key);
            }
        }
    }

    /// Judges a heap entry for `at` popped at `now`. On [`Fire::Rearm`] the caller pushes the
    /// returned instant with the same key.
    pub(crate) fn fire(&mut self, at: Instant, now: Instant) -> Fire {
        if self.armed != Some(at) {
            return Fire::Stale;
        }
        self.armed = None;
        match self.wanted {
            Some(wanted) if wanted <= now => Fire::Due,
            Some(wanted) => {
                self.armed = Some(wanted);
                Fire::Rearm(wanted)
            }
            // The owner no longer wants a timeout.
            None => Fire::Stale,
        }
    }

    /// True if the heap entry for `at` is this owner's armed one (for [`Timers::compact`]).
    pub(crate) fn is_armed_at(&self, at: Instant) -> bool {
        self.armed == Some(at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn heap_pops_due_entries_earliest_first() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.push(ms(t0, 30), 3u32);
        timers.push(ms(t0, 10), 1);
        timers.push(ms(t0, 20), 2);
        assert_eq!(timers.next(), Some(ms(t0, 10)));
        assert_eq!(timers.pop_due(ms(t0, 5)), None);
        assert_eq!(timers.pop_due(ms(t0, 25)), Some((ms(t0, 10), 1)));
        assert_eq!(timers.pop_due(ms(t0, 25)), Some((ms(t0, 20), 2)));
        assert_eq!(timers.pop_due(ms(t0, 25)), None);
        assert_eq!(timers.len(), 1);
        timers.compact(|_, k| k != 3);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn later_deadlines_do_not_touch_the_heap_until_the_armed_one_comes_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        d.set(Some(ms(t0, 100)), 7u32, &mut timers);
        // Every command moves the idle deadline later: no pushes.
        for n in 101..200 {
            d.set(Some(ms(t0, n)), 7, &mut timers);
        }
        assert_eq!(timers.len(), 1);
        // The armed entry comes due: re-arm at the wanted deadline, nothing fires.
        let (at, key) = timers.pop_due(ms(t0, 100)).unwrap();
        assert_eq!(key, 7);
        assert_eq!(d.fire(at, ms(t0, 100)), Fire::Rearm(ms(t0, 199)));
        timers.push(ms(t0, 199), key);
        let (at, _) = timers.pop_due(ms(t0, 199)).unwrap();
        assert_eq!(d.fire(at, ms(t0, 199)), Fire::Due);
        // Once fired, the same entry is stale.
        assert_eq!(d.fire(at, ms(t0, 199)), Fire::Stale);
    }

    #[test]
    fn an_earlier_deadline_supersedes_the_armed_one() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        d.set(Some(ms(t0, 100)), 1u32, &mut timers);
        d.set(Some(ms(t0, 50)), 1, &mut timers);
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next(), Some(ms(t0, 50)));
        let (at, _) = timers.pop_due(ms(t0, 60)).unwrap();
        assert_eq!(d.fire(at, ms(t0, 60)), Fire::Due);
        // The 100 ms entry is stale now; compaction drops it.
        assert!(!d.is_armed_at(ms(t0, 100)));
        timers.compact(|at, _| d.is_armed_at(at));
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn clearing_the_deadline_makes_the_armed_entry_stale() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        d.set(Some(ms(t0, 10)), 1u32, &mut timers);
        d.set(None, 1, &mut timers);
        let (at, _) = timers.pop_due(ms(t0, 10)).unwrap();
        assert_eq!(d.fire(at, ms(t0, 10)), Fire::Stale);
        // A new deadline after that arms again.
        d.set(Some(ms(t0, 20)), 1, &mut timers);
        assert_eq!(timers.len(), 1);
    }
}
