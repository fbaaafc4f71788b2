//! The rebalancing planner: a bounded list of session moves per tick toward even session counts.
//!
//! Each tick the driver hands over a snapshot (backends, and the sessions it could move right now)
//! and executes the returned [`Move`]s as migrations. The plan:
//!
//! 1. evacuates backends that must be left: first those failing health checks while they still
//!    answer (their sessions are at risk), then draining ones; each session goes to the target with
//!    the fewest sessions;
//! 2. then, among the backends that accept sessions, moves one session at a time from the most
//!    loaded (that has a movable session) to the least loaded, as long as their difference exceeds
//!    [`RebalancePolicy::tolerance`].
//!
//! Every move strictly lowers the potential (sessions on backends to leave, then the sum of squared
//! counts on the others): step 1 removes a session from a backend to leave; step 2 moves from `h`
//! to `l` with `h - l >= 2`, and `(h-1)² + (l+1)² < h² + l²` exactly when `h - l > 1`. So repeated
//! plans converge, and once a plan is empty the next one (same snapshot) is empty too. A tolerance
//! of 0 would let a spread of 1 swap back and forth; it is raised to 1.

use super::pick::BackendLoad;

/// How aggressive a tick may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalancePolicy {
    /// At most this many moves per plan (per tick): no migration storms.
    pub max_moves: usize,
    /// No balancing move while the largest and smallest session counts among accepting backends
    /// differ by at most this much (hysteresis). Values below 1 count as 1.
    pub tolerance: usize,
}

impl Default for RebalancePolicy {
    /// Eight moves per tick, tolerance 1 (counts end within one of each other).
    fn default() -> Self {
        Self {
            max_moves: 8,
            tolerance: 1,
        }
    }
}

/// A live session as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLoad {
    /// The driver's session id.
    pub id: u64,
    /// Index of its backend in the `backends` slice.
    pub backend: usize,
    /// Can it be migrated now? False for pinned sessions and sessions already migrating.
    pub movable: bool,
}

/// One decision: migrate `session` from backend `from` to backend `to` (indices into `backends`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The session to migrate.
    pub session: u64,
    /// Its current backend.
    pub from: usize,
    /// The backend to move it to; always one that accepts sessions.
    pub to: usize,
}

/// Plans at most `policy.max_moves` moves (see the module docs for the order and the guarantees).
///
/// `backends[i].sessions` counts every session on backend `i`; `sessions` lists those the planner
/// may name (non-movable ones may be left out). Sessions naming an index out of range are ignored,
/// a session listed twice moves at most once, and among a backend's movable sessions the lowest ids
/// move first, so the same snapshot always gives the same plan.
pub fn plan_rebalance(
    backends: &[BackendLoad],
    sessions: &[SessionLoad],
    policy: &RebalancePolicy,
) -> Vec<Move> {
    let tolerance = policy.tolerance.max(1);
    let targets: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].accepts_sessions())
        .collect();
    if targets.is_empty() || policy.max_moves == 0 {
        return Vec::new();
    }

    // Movable session ids per backend, highest first so that `pop` yields the lowest.
    let mut candidates: Vec<Vec<u64>> = vec![Vec::new(); backends.len()];
    for s in sessions.iter().filter(|s| s.movable) {
        if let Some(list) = candidates.get_mut(s.backend) {
            list.push(s.id);
        }
    }
    for list in &mut candidates {
        list.sort_unstable_by(|a, b| b.cmp(a));
        list.dedup();
    }
    // A count below the listed sessions would be inconsistent input; trust the list.
    let mut counts: Vec<usize> = backends
        .iter()
        .zip(&candidates)
        .map(|(b, list)| b.sessions.max(list.len()))
        .collect();

    let mut moves = Vec::new();

    // Step 1: evacuate, unhealthy backends before draining ones.
    let unhealthy = (0..backends.len()).filter(|&i| !backends[i].healthy);
    let draining = (0..backends.len()).filter(|&i| backends[i].healthy && backends[i].draining);
    for from in unhealthy.chain(draining) {
        while moves.len() < policy.max_moves {
            let Some(session) = candidates[from].pop() else {
                break;
            };
            let to = least_loaded(&targets, &counts);
            push(&mut moves, &mut counts, Move { session, from, to });
        }
    }

    // Step 2: even out the accepting backends.
    while moves.len() < policy.max_moves {
        let to = least_loaded(&targets, &counts);
        let from = targets
            .iter()
            .copied()
            .filter(|&i| !candidates[i].is_empty())
            // Ties go to the lowest index: `max_by_key` keeps the last maximum, so compare
            // with the index reversed.
            .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)));
        let Some(from) = from else { break };
        if counts[from] <= counts[to] + tolerance {
            break;
        }
        let Some(session) = candidates[from].pop() else {
            break;
        };
        push(&mut moves, &mut counts, Move { session, from, to });
    }
    moves
}

/// Records `m` and updates the counts; `m.from` holds at least the moved session.
fn push(moves: &mut Vec<Move>, counts: &mut [usize], m: Move) {
    counts[m.from] -= 1;
    counts[m.to] += 1;
    moves.push(m);
}

/// The target with the fewest sessions, the lowest index among equals. `targets` is not empty.
fn least_loaded(targets: &[usize], counts: &[usize]) -> usize {
    targets
        .iter()
        .copied()
        .min_by_key(|&i| counts[i])
        // The caller returns early when there are no targets.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
