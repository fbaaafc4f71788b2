//! The backend connection pool of multiplexing (`[multiplexing]`): many client sessions on few
//! backend connections.
//!
//! Sessions give their connection back between statements ([`Pool::park`]) and take one for
//! the next ([`Pool::acquire`]). The pool decides, once for every driver:
//!
//! - **which connection**: an idle one of the session's backend logged in as its user with its
//!   login collation and the same client capabilities (they shape every response: EOF or OK
//!   after rows, multi-statements...), whose state the session's can be reached from (see
//!   [`fixup`](crate::session::fixup)): the one the session used last if it is still idle
//!   (its state matches, and what it read of its own stays right), else the one needing the
//!   fewest fix-up statements among the most recently parked;
//! - **whether to open one**: while the backend has fewer than `max-backend-connections`
//!   (in use, idle and opening), or by closing an idle connection that does not fit;
//! - **who waits**: a bounded queue, first come first served per backend; a connection parked or
//!   closed wakes the first waiter ([`Command::PoolReady`](super::Command::PoolReady)), which
//!   tries again; the session itself gives up after `max-wait` (ERR 1040);
//! - **what closes**: idle connections after `idle-timeout`, those of a backend that is down,
//!   draining or removed, all of them at shutdown ([`Pool::poll_close`]).
//!
//! A login under `proxy` auth takes a connection like a statement does (ferry checked the
//! password; the connection is brought to a fresh session's state). Connections opened outside
//! the pool's choice (a failover's, a migration's) pass through [`Pool::acquire`] without a
//! request: they are counted and may wait, and never reuse one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::config::MultiplexingConfig;
use super::connection::{PoolClose, PooledId};
use crate::session::fixup;
use crate::session::multiplex::{AcquireRequest, ParkedBackend};

/// Idle connections looked at for the shortest fix-up, most recently parked first.
const CANDIDATES: usize = 8;

/// An idle connection.
#[derive(Debug)]
struct Idle {
    id: PooledId,
    index: usize,
    parked: Box<ParkedBackend>,
    since: Instant,
    /// The session that parked it.
    session: u64,
    /// Set aside for this waiting session, which was told to come for it.
    reserved: Option<u64>,
}

#[derive(Debug)]
struct Waiter {
    session: u64,
    index: usize,
    /// Told to try again, and has not yet.
    woken: bool,
}

/// What [`Pool::acquire`] decided.
#[derive(Debug)]
pub(super) enum Grant {
    /// This pooled connection (`check`: idle long, ping it first).
    Adopt {
        pooled: PooledId,
        parked: Box<ParkedBackend>,
        check: bool,
    },
    /// Open a new one (it is counted already).
    Open,
    /// Wait in the queue.
    Wait,
    /// The queue is full: ERR 1040 now.
    Full,
}

/// How many fix-up statements bring `idle` to `request`'s state, if it can serve it at all.
fn fits(idle: &Idle, request: &AcquireRequest) -> Option<usize> {
    if idle.parked.user() != request.user
        || idle.parked.collation() != request.collation
        || idle.parked.capabilities() != request.capabilities
    {
        return None;
    }
    // A session taking back the connection it gave, its state unchanged: the same state.
    if Arc::ptr_eq(&idle.parked.state, &request.target) {
        return Some(0);
    }
    fixup::plan(idle.parked.state(), &request.target)
        .ok()
        .map(|p| p.len())
}

fn adopt(now: Instant, idle: Idle, config: MultiplexingConfig) -> Grant {
    Grant::Adopt {
        pooled: idle.id,
        check: now.saturating_duration_since(idle.since) > config.check_after,
        parked: idle.parked,
    }
}

/// The pool (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Pool {
    config: Option<MultiplexingConfig>,
    next_id: PooledId,
    /// Per registry index: connections in use, idle and opening.
    counts: Vec<usize>,
    idle: Vec<Idle>,
    waiters: VecDeque<Waiter>,
    closes: VecDeque<PoolClose>,
    woken: Vec<u64>,
    closing: bool,
}

impl Pool {
    /// A pool for `config` (`None`: multiplexing is off, the pool does nothing).
    pub(super) fn new(config: Option<MultiplexingConfig>) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// True when multiplexing is on.
    pub(super) fn is_on(&self) -> bool {
        self.config.is_some()
    }

    fn count(&mut self, index: usize) -> &mut usize {
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        &mut self.counts[index]
    }

    /// Connections of backend `index`: (in use, idle).
    pub(super) fn usage(&self, index: usize) -> (usize, usize) {
        let idle = self.idle.iter().filter(|i| i.index == index).count();
        let total = self.counts.get(index).copied().unwrap_or(0);
        (total.saturating_sub(idle), idle)
    }

    /// Sessions waiting for a connection.
    pub(super) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// A connection for `session` on backend `index`: `request` for a statement (a pooled one
    /// may do), `None` for a login (a new one).
    pub(super) fn acquire(
        &mut self,
        now: Instant,
        session: u64,
        index: usize,
        request: Option<&AcquireRequest>,
    ) -> Grant {
        let Some(config) = self.config else {
            *self.count(index) += 1;
            return Grant::Open;
        };
        // A connection set aside for this session: its own, or (if it does not fit) its place.
        if let Some(i) = self.idle.iter().position(|i| i.reserved == Some(session)) {
            let fits = request
                .is_some_and(|r| self.idle[i].index == index && fits(&self.idle[i], r).is_some());
            let idle = self.idle.swap_remove(i);
            self.stop_waiting(session);
            if fits {
                return adopt(now, idle, config);
            }
            let other = idle.index;
            self.close(idle);
            if other != index {
                self.wake(other);
            } else {
                *self.count(index) += 1;
                return Grant::Open;
            }
        }
        // Fairness: a session queues behind those already waiting for the backend (a parked
        // connection is set aside for the first of them).
        let queued_ahead = self
            .waiters
            .iter()
            .take_while(|w| w.session != session)
            .any(|w| w.index == index);
        if !queued_ahead {
            if let Some(request) = request {
                if let Some(i) = self.best_idle(session, index, request) {
                    let idle = self.idle.swap_remove(i);
                    self.stop_waiting(session);
                    return adopt(now, idle, config);
                }
            }
            if *self.count(index) < config.max_backend_connections {
                *self.count(index) += 1;
                self.stop_waiting(session);
                return Grant::Open;
            }
            // Full, but an idle connection does not fit this session: replace it.
            if let Some(i) = self
                .idle
                .iter()
                .position(|i| i.index == index && i.reserved.is_none())
            {
                let idle = self.idle.remove(i);
                self.close(idle);
                *self.count(index) += 1;
                self.stop_waiting(session);
                return Grant::Open;
            }
        }
        if let Some(w) = self.waiters.iter_mut().find(|w| w.session == session) {
            // Its backend may have changed since it queued (a failover, a drain).
            w.index = index;
            w.woken = false;
            return Grant::Wait;
        }
        if self.waiters.len() >= config.max_waiting {
            return Grant::Full;
        }
        self.waiters.push_back(Waiter {
            session,
            index,
            woken: false,
        });
        Grant::Wait
    }

    /// The idle connection that suits `request` best.
    fn best_idle(&self, session: u64, index: usize, request: &AcquireRequest) -> Option<usize> {
        // Its own first: one it left untouched needs no fix-up and keeps its statement ids.
        let own = self.idle.iter().rposition(|idle| {
            idle.session == session && idle.index == index && idle.reserved.is_none()
        });
        if let Some(pos) = own.filter(|&pos| fits(&self.idle[pos], request).is_some()) {
            return Some(pos);
        }
        let mut best: Option<(usize, usize)> = None;
        let mut looked = 0;
        for (pos, idle) in self.idle.iter().enumerate().rev() {
            if idle.index != index || idle.reserved.is_some() {
                continue;
            }
            let Some(len) = fits(idle, request) else {
                continue;
            };
            if len == 0 {
                return Some(pos);
            }
            if best.is_none_or(|(_, best_len)| len < best_len) {
                best = Some((pos, len));
            }
            looked += 1;
            if looked >= CANDIDATES {
                break;
            }
        }
        best.map(|(pos, _)| pos)
    }

    fn stop_waiting(&mut self, session: u64) {
        self.waiters.retain(|w| w.session != session);
    }

    /// A session no longer waits (it gave up, or closed): what was set aside for it goes to
    /// the next waiter.
    pub(super) fn cancel_wait(&mut self, session: u64) {
        self.stop_waiting(session);
        if let Some(i) = self.idle.iter().position(|i| i.reserved == Some(session)) {
            self.idle[i].reserved = None;
            let (pos, index) = (i, self.idle[i].index);
            if let Some(waiter) = self.next_waiter(index) {
                self.idle[pos].reserved = Some(waiter);
            }
        }
    }

    /// `session` gives back its connection to backend `index`; `None` when the pool does not
    /// take it (multiplexing off, shutting down, the backend not `usable`): close it.
    pub(super) fn park(
        &mut self,
        now: Instant,
        session: u64,
        index: usize,
        parked: Box<ParkedBackend>,
        usable: bool,
    ) -> Option<PooledId> {
        let over = self.config.is_none_or(|c| {
            self.counts.get(index).copied().unwrap_or(0) > c.max_backend_connections
        });
        if self.closing || !usable || over {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let reserved = self.next_waiter(index);
        self.idle.push(Idle {
            id,
            index,
            parked,
            since: now,
            session,
            reserved,
        });
        Some(id)
    }

    /// A connection to backend `index` opens outside [`Pool::acquire`] (a login failing over
    /// from a backend that could not be reached).
    pub(super) fn opened(&mut self, index: usize) {
        if self.config.is_some() {
            *self.count(index) += 1;
        }
    }

    /// A counted connection of backend `index` closed (or failed to open).
    pub(super) fn gone(&mut self, index: usize) {
        if self.config.is_none() {
            return;
        }
        let count = self.count(index);
        *count = count.saturating_sub(1);
        self.wake(index);
    }

    /// The first waiter of backend `index` not told yet tries again (a connection closed: it
    /// may open one).
    fn wake(&mut self, index: usize) {
        let _ = self.next_waiter(index);
    }

    /// The first waiter of backend `index` not told yet, told to try again now.
    fn next_waiter(&mut self, index: usize) -> Option<u64> {
        let w = self
            .waiters
            .iter_mut()
            .find(|w| w.index == index && !w.woken)?;
        w.woken = true;
        self.woken.push(w.session);
        Some(w.session)
    }

    /// Sessions to tell to try again.
    pub(super) fn take_woken(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.woken)
    }

    fn close(&mut self, idle: Idle) {
        if let Some(count) = self.counts.get_mut(idle.index) {
            *count = count.saturating_sub(1);
        }
        self.closes.push_back(PoolClose {
            pooled: idle.id,
            farewell: ParkedBackend::farewell(),
        });
    }

    fn close_where(&mut self, mut close: impl FnMut(&Idle) -> bool) {
        let mut i = 0;
        while i < self.idle.len() {
            if close(&self.idle[i]) {
                let idle = self.idle.swap_remove(i);
                let index = idle.index;
                self.close(idle);
                self.wake(index);
            } else {
                i += 1;
            }
        }
    }

    /// Backend `index` is down, draining or removed: its idle connections close.
    pub(super) fn close_backend(&mut self, index: usize) {
        self.close_where(|i| i.index == index);
    }

    /// Shutdown: every idle connection closes, and none is taken back.
    pub(super) fn close_all(&mut self) {
        self.closing = true;
        self.close_where(|_| true);
    }

    /// Closes the connections idle longer than `idle-timeout`.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        let Some(config) = self.config else {
            return;
        };
        self.close_where(|i| now.saturating_duration_since(i.since) >= config.idle_timeout);
    }

    /// When the next idle connection times out.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let config = self.config?;
        self.idle
            .iter()
            .map(|i| i.since + config.idle_timeout)
            .min()
    }

    /// The next pooled connection to close.
    pub(super) fn poll_close(&mut self) -> Option<PoolClose> {
        self.closes.pop_front()
    }
}
