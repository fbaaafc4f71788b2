//! Which live sessions to migrate where, each tick: the drain, the evacuation of failing backends
//! and the balancing of session counts, as one pure function ([`plan_migrations`]) over a snapshot
//! of the backends and the sessions. No clock (time is a parameter); the
//! [`Endpoint`](super::Endpoint) runs it and sends the moves to the sessions as commands.
//!
//! Per tick:
//!
//! 1. **Drain**: every session on a draining backend that has no migration requested (and is not
//!    in its retry pause after a failure) is sent to the accepting backend with the fewest
//!    sessions. Pinned sessions too: the core keeps the request and starts it at the session's
//!    next safe point. Not bounded: `POST /drain` means "all of them".
//! 2. **Rebalance** (skipped when `policy.max_moves` is 0): the core's
//!    [`plan_rebalance`](crate::balance::plan_rebalance) over the sessions that can move
//!    soon (no lasting pin, nothing requested, not pausing), which evacuates backends failing
//!    health checks and then evens out counts within the policy's tolerance, at most `max_moves`
//!    moves. A session in a transaction counts as movable: busy sessions are nearly always in
//!    one, and the core starts the migration right after its COMMIT ([`pin_is_transient`]).
//!
//! Session counts are taken from the session list, with a session whose migration is requested
//! counted on its target: the next tick sees the moves of this one even before they happen, so a
//! target is never chosen twice for the same room and plans do not oscillate.

use std::time::{Duration, Instant};

use crate::balance::{plan_rebalance, BackendLoad, Move, RebalancePolicy, SessionLoad};
use crate::session::PinReason;

/// How long a session whose migration failed is left alone before it is planned again.
pub const RETRY_DELAY: Duration = Duration::from_secs(3);

/// True for pins that end by themselves within a statement or a transaction (the core keeps a
/// request until then); false for those that last until the client acts (temporary tables,
/// locks, ...), whose sessions rebalancing leaves alone.
pub fn pin_is_transient(reason: PinReason) -> bool {
    matches!(
        reason,
        PinReason::Transaction | PinReason::Cursor | PinReason::LongData
    )
}

/// One backend as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendView {
    /// Passes health checks.
    pub healthy: bool,
    /// Being drained.
    pub draining: bool,
}

/// One live session as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    /// The session id.
    pub id: u64,
    /// Index of its backend.
    pub backend: usize,
    /// Index of the backend a requested or running migration goes to.
    pub target: Option<usize>,
    /// The session is pinned now by a lasting reason (not [`pin_is_transient`]).
    pub pinned: bool,
    /// Its last migration failed: not planned before this instant.
    pub retry_at: Option<Instant>,
}

/// The migrations to request this tick (see the module docs): drain moves first, then at most
/// `policy.max_moves` rebalancing moves. Sessions naming an unknown backend are ignored.
pub fn plan_migrations(
    backends: &[BackendView],
    sessions: &[SessionView],
    now: Instant,
    policy: &RebalancePolicy,
) -> Vec<Move> {
    let accepting: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].healthy && !backends[i].draining)
        .collect();
    let mut counts = vec![0usize; backends.len()];
    for s in sessions {
        if let Some(c) = counts.get_mut(s.target.unwrap_or(s.backend)) {
            *c += 1;
        }
    }
    let free = |s: &SessionView| {
        s.target.is_none() && s.retry_at.is_none_or(|t| t <= now) && s.backend < backends.len()
    };

    let mut moves = Vec::new();
    let mut drained = vec![false; sessions.len()];
    for (i, s) in sessions.iter().enumerate() {
        if !free(s) || !backends[s.backend].draining {
            continue;
        }
        drained[i] = true;
        // Fewest sessions, lowest index among equals.
        let Some(to) = accepting.iter().copied().min_by_key(|&b| counts[b]) else {
            continue;
        };
        counts[s.backend] -= 1;
        counts[to] += 1;
        moves.push(Move {
            session: s.id,
            from: s.backend,
            to,
        });
    }

    if policy.max_moves > 0 {
        let loads: Vec<BackendLoad> = backends
            .iter()
            .zip(&counts)
            .map(|(b, &sessions)| BackendLoad {
                healthy: b.healthy,
                draining: b.draining,
                sessions,
            })
            .collect();
        let candidates: Vec<SessionLoad> = sessions
            .iter()
            .zip(&drained)
            .filter(|(s, &drained)| !drained && free(s))
            .map(|(s, _)| SessionLoad {
                id: s.id,
                backend: s.backend,
                movable: !s.pinned,
            })
            .collect();
        moves.extend(plan_rebalance(&loads, &candidates, policy));
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: BackendView = BackendView {
        healthy: true,
        draining: false,
    };
    const DRAINING: BackendView = BackendView {
        healthy: true,
        draining: true,
    };
    const DOWN: BackendView = BackendView {
        healthy: false,
        draining: false,
    };

    fn session(id: u64, backend: usize) -> SessionView {
        SessionView {
            id,
            backend,
            target: None,
            pinned: false,
            retry_at: None,
        }
    }

    fn targets(moves: &[Move]) -> Vec<(u64, usize)> {
        moves.iter().map(|m| (m.session, m.to)).collect()
    }

    const OFF: RebalancePolicy = RebalancePolicy {
        max_moves: 0,
        tolerance: 1,
    };

    #[test]
    fn a_drain_moves_every_session_pinned_included_to_the_least_loaded_backends() {
        let now = Instant::now();
        let mut sessions: Vec<_> = (1..=5).map(|id| session(id, 0)).collect();
        sessions[1].pinned = true;
        // One session already on db3 and one heading there: db2 gets the first two.
        sessions.push(session(6, 2));
        sessions.push(SessionView {
            target: Some(2),
            ..session(7, 1)
        });
        let moves = plan_migrations(&[DRAINING, UP, UP], &sessions, now, &OFF);
        assert_eq!(targets(&moves), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 1)]);
        assert!(moves.iter().all(|m| m.from == 0));
    }

    #[test]
    fn requested_and_pausing_sessions_are_not_planned_again() {
        let now = Instant::now();
        let sessions = [
            SessionView {
                target: Some(1),
                ..session(1, 0)
            },
            SessionView {
                retry_at: Some(now + RETRY_DELAY),
                ..session(2, 0)
            },
            SessionView {
                retry_at: Some(now - Duration::from_millis(1)),
                ..session(3, 0)
            },
        ];
        let moves = plan_migrations(&[DRAINING, UP], &sessions, now, &OFF);
        assert_eq!(targets(&moves), [(3, 1)]);
        // Nowhere to go: nothing planned.
        let moves = plan_migrations(&[DRAINING, DOWN], &sessions, now, &OFF);
        assert!(moves.is_empty());
    }

    #[test]
    fn rebalancing_is_bounded_skips_pinned_sessions_and_converges() {
        let now = Instant::now();
        let policy = RebalancePolicy {
            max_moves: 2,
            tolerance: 1,
        };
        // A backend came back: six sessions on db1, none on db2.
        let mut sessions: Vec<_> = (1..=6).map(|id| session(id, 0)).collect();
        sessions[0].pinned = true;
        let mut ticks = 0;
        loop {
            let moves = plan_migrations(&[UP, UP], &sessions, now, &policy);
            if moves.is_empty() {
                break;
            }
            assert!(moves.len() <= 2);
            for m in moves {
                assert_ne!(m.session, 1, "a pinned session was planned");
                let s = sessions.iter_mut().find(|s| s.id == m.session).unwrap();
                s.backend = m.to;
            }
            ticks += 1;
            assert!(ticks < 10, "no convergence");
        }
        let on_db2 = sessions.iter().filter(|s| s.backend == 1).count();
        assert_eq!(on_db2, 3);
        // Stable: the next plan is empty, as is a plan with the moves still in flight.
        assert!(plan_migrations(&[UP, UP], &sessions, now, &policy).is_empty());
    }

    #[test]
    fn only_lasting_pins_keep_sessions_out_of_rebalancing() {
        assert!(pin_is_transient(PinReason::Transaction));
        assert!(pin_is_transient(PinReason::Cursor));
        assert!(!pin_is_transient(PinReason::TemporaryTables));
        assert!(!pin_is_transient(PinReason::UserLocks));
        assert!(!pin_is_transient(PinReason::UnattributedStateChange));
    }

    #[test]
    fn in_flight_moves_count_on_their_target() {
        let now = Instant::now();
        let policy = RebalancePolicy::default();
        // Four on db1, two of them already heading to db2: balanced, nothing more to do.
        let mut sessions: Vec<_> = (1..=4).map(|id| session(id, 0)).collect();
        sessions[2].target = Some(1);
        sessions[3].target = Some(1);
        assert!(plan_migrations(&[UP, UP], &sessions, now, &policy).is_empty());
    }

    #[test]
    fn sessions_leave_a_failing_backend_only_when_rebalancing_is_on() {
        let now = Instant::now();
        let sessions: Vec<_> = (1..=3).map(|id| session(id, 0)).collect();
        assert!(plan_migrations(&[DOWN, UP], &sessions, now, &OFF).is_empty());
        let policy = RebalancePolicy {
            max_moves: 2,
            tolerance: 1,
        };
        let moves = plan_migrations(&[DOWN, UP, UP], &sessions, now, &policy);
        assert_eq!(targets(&moves), [(1, 1), (2, 2)]);
        // Unknown backend indices are ignored.
        let stray = [session(9, 7)];
        assert!(plan_migrations(&[UP, UP], &stray, now, &policy).is_empty());
    }
}
