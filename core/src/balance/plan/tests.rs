use proptest::prelude::*;

use super::*;

fn backend(healthy: bool, draining: bool, sessions: usize) -> BackendLoad {
    BackendLoad {
        healthy,
        draining,
        sessions,
    }
}

/// `per_backend[i]` movable sessions on backend `i`, ids numbered from 1 in backend order.
fn sessions_on(per_backend: &[usize]) -> Vec<SessionLoad> {
    let mut out = Vec::new();
    for (backend, &n) in per_backend.iter().enumerate() {
        for _ in 0..n {
            out.push(SessionLoad {
                id: out.len() as u64 + 1,
                backend,
                movable: true,
            });
        }
    }
    out
}

fn policy(max_moves: usize, tolerance: usize) -> RebalancePolicy {
    RebalancePolicy {
        max_moves,
        tolerance,
    }
}

#[test]
fn spread_within_tolerance_means_no_moves() {
    let b = [backend(true, false, 5), backend(true, false, 4)];
    assert!(plan_rebalance(&b, &sessions_on(&[5, 4]), &policy(8, 1)).is_empty());
    let b = [backend(true, false, 7), backend(true, false, 4)];
    assert!(plan_rebalance(&b, &sessions_on(&[7, 4]), &policy(8, 3)).is_empty());
    // Tolerance 0 is raised to 1: a spread of 1 would otherwise swap back and forth.
    let b = [backend(true, false, 5), backend(true, false, 4)];
    assert!(plan_rebalance(&b, &sessions_on(&[5, 4]), &policy(8, 0)).is_empty());
}

#[test]
fn new_backend_fills_up_at_bounded_rate() {
    let b = [backend(true, false, 10), backend(true, false, 0)];
    let s = sessions_on(&[10, 0]);
    let plan = plan_rebalance(&b, &s, &policy(3, 1));
    assert_eq!(
        plan,
        vec![
            Move {
                session: 1,
                from: 0,
                to: 1
            },
            Move {
                session: 2,
                from: 0,
                to: 1
            },
            Move {
                session: 3,
                from: 0,
                to: 1
            },
        ]
    );
    // Without the cap it stops at even counts.
    assert_eq!(plan_rebalance(&b, &s, &policy(100, 1)).len(), 5);
}

#[test]
fn draining_backend_is_evacuated_to_least_loaded() {
    let b = [
        backend(true, true, 3),
        backend(true, false, 2),
        backend(true, false, 0),
    ];
    let s = sessions_on(&[3, 2, 0]);
    let plan = plan_rebalance(&b, &s, &policy(100, 1));
    let targets: Vec<_> = plan.iter().map(|m| (m.from, m.to)).collect();
    // 3 leave backend 0: to 2, 2, then (2 vs 2) backend 1; nothing more to even out (3 vs 2).
    assert_eq!(targets, vec![(0, 2), (0, 2), (0, 1)]);
}

#[test]
fn unhealthy_backends_are_evacuated_before_draining_ones() {
    let b = [
        backend(true, true, 2),
        backend(false, false, 2),
        backend(true, false, 0),
    ];
    let s = sessions_on(&[2, 2, 0]);
    let plan = plan_rebalance(&b, &s, &policy(2, 1));
    assert!(plan.iter().all(|m| m.from == 1 && m.to == 2), "{plan:?}");
}

#[test]
fn pinned_sessions_stay_and_others_move_instead() {
    let b = [
        backend(true, false, 6),
        backend(true, false, 4),
        backend(true, false, 0),
    ];
    let mut s = sessions_on(&[6, 4, 0]);
    for session in s.iter_mut().filter(|s| s.backend == 0) {
        session.movable = false;
    }
    let plan = plan_rebalance(&b, &s, &policy(100, 1));
    assert!(!plan.is_empty());
    assert!(plan.iter().all(|m| m.from == 1 && m.to == 2), "{plan:?}");
}

#[test]
fn nothing_to_do_without_targets_or_cap() {
    let b = [backend(false, false, 3), backend(true, true, 0)];
    assert!(plan_rebalance(&b, &sessions_on(&[3, 0]), &policy(8, 1)).is_empty());
    let b = [backend(true, true, 3), backend(true, false, 0)];
    assert!(plan_rebalance(&b, &sessions_on(&[3, 0]), &policy(0, 1)).is_empty());
}

#[test]
fn bad_input_is_tolerated() {
    let b = [backend(true, false, 0), backend(true, false, 0)];
    let s = [
        SessionLoad {
            id: 1,
            backend: 0,
            movable: true,
        },
        SessionLoad {
            id: 1,
            backend: 0,
            movable: true,
        },
        SessionLoad {
            id: 2,
            backend: 0,
            movable: true,
        },
        SessionLoad {
            id: 3,
            backend: 0,
            movable: true,
        },
        SessionLoad {
            id: 9,
            backend: 7,
            movable: true,
        },
    ];
    // Counts say 0 but three distinct sessions are listed on backend 0: one moves.
    let plan = plan_rebalance(&b, &s, &policy(8, 1));
    assert_eq!(
        plan,
        vec![Move {
            session: 1,
            from: 0,
            to: 1
        }]
    );
}

/// (sessions on backends to leave, sum of squared counts on accepting backends): each move lowers it.
fn potential(backends: &[BackendLoad], counts: &[usize]) -> (usize, usize) {
    let mut leave = 0;
    let mut squares = 0;
    for (b, &c) in backends.iter().zip(counts) {
        if b.accepts_sessions() {
            squares += c * c;
        } else {
            leave += c;
        }
    }
    (leave, squares)
}

#[derive(Debug, Clone)]
struct World {
    backends: Vec<BackendLoad>,
    sessions: Vec<SessionLoad>,
}

impl World {
    fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.backends.len()];
        for s in &self.sessions {
            c[s.backend] += 1;
        }
        c
    }

    fn snapshot(&self) -> Vec<BackendLoad> {
        self.backends
            .iter()
            .zip(self.counts())
            .map(|(b, sessions)| BackendLoad { sessions, ..*b })
            .collect()
    }

    fn apply(&mut self, plan: &[Move]) {
        for m in plan {
            let s = self
                .sessions
                .iter_mut()
                .find(|s| s.id == m.session)
                .unwrap();
            assert_eq!(s.backend, m.from);
            s.backend = m.to;
        }
    }
}

fn world() -> impl Strategy<Value = World> {
    // Mostly healthy and not draining, so that there are usually targets to move to.
    let flags = (
        proptest::bool::weighted(0.75),
        proptest::bool::weighted(0.25),
    );
    proptest::collection::vec(flags, 1..6).prop_flat_map(|flags| {
        let n = flags.len();
        let backends: Vec<_> = flags
            .into_iter()
            .map(|(healthy, draining)| backend(healthy, draining, 0))
            .collect();
        proptest::collection::vec((0..n, proptest::bool::weighted(0.8)), 0..60).prop_map(
            move |raw| World {
                backends: backends.clone(),
                sessions: raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (backend, movable))| SessionLoad {
                        id: i as u64 * 7 + 3,
                        backend,
                        movable,
                    })
                    .collect(),
            },
        )
    })
}

proptest! {
    #[test]
    fn plans_respect_cap_targets_and_movability(
        w in world(), max_moves in 0usize..10, tolerance in 0usize..4
    ) {
        let p = policy(max_moves, tolerance);
        let plan = plan_rebalance(&w.snapshot(), &w.sessions, &p);
        prop_assert!(plan.len() <= max_moves);
        let mut seen = std::collections::HashSet::new();
        for m in &plan {
            prop_assert!(w.backends[m.to].accepts_sessions(), "target {m:?}");
            prop_assert_ne!(m.from, m.to);
            let s = w.sessions.iter().find(|s| s.id == m.session).unwrap();
            prop_assert!(s.movable);
            prop_assert_eq!(s.backend, m.from);
            prop_assert!(seen.insert(m.session), "moved twice");
        }
    }

    #[test]
    fn every_move_strictly_reduces_imbalance(
        w in world(), max_moves in 0usize..10, tolerance in 0usize..4
    ) {
        let snapshot = w.snapshot();
        let plan = plan_rebalance(&snapshot, &w.sessions, &policy(max_moves, tolerance));
        let mut counts = w.counts();
        let mut before = potential(&snapshot, &counts);
        for m in &plan {
            counts[m.from] -= 1;
            counts[m.to] += 1;
            let after = potential(&snapshot, &counts);
            prop_assert!(after < before, "{m:?}: {before:?} -> {after:?}");
            before = after;
        }
    }

    #[test]
    fn repeated_plans_converge_then_stay_put(
        mut w in world(), max_moves in 1usize..5, tolerance in 0usize..4
    ) {
        let p = policy(max_moves, tolerance);
        let n = w.sessions.len();
        // The potential is at most n + n² and every move lowers it.
        let mut rounds = 0;
        loop {
            let plan = plan_rebalance(&w.snapshot(), &w.sessions, &p);
            if plan.is_empty() {
                break;
            }
            w.apply(&plan);
            rounds += 1;
            prop_assert!(rounds <= n + n * n, "did not converge");
        }
        // At rest: asking again changes nothing.
        prop_assert!(plan_rebalance(&w.snapshot(), &w.sessions, &p).is_empty());
        // And the rest state is the balanced one the policy promises.
        let snapshot = w.snapshot();
        let has_target = snapshot.iter().any(|b| b.accepts_sessions());
        for (i, b) in snapshot.iter().enumerate() {
            let movable_here = w.sessions.iter().any(|s| s.backend == i && s.movable);
            if has_target && !b.accepts_sessions() {
                prop_assert!(!movable_here, "movable session left on backend {i}");
            }
        }
        let t = tolerance.max(1);
        let min = snapshot.iter().filter(|b| b.accepts_sessions()).map(|b| b.sessions).min();
        if let Some(min) = min {
            for (i, b) in snapshot.iter().enumerate() {
                let movable_here = w.sessions.iter().any(|s| s.backend == i && s.movable);
                if b.accepts_sessions() && movable_here {
                    prop_assert!(b.sessions <= min + t, "backend {i} over tolerance");
                }
            }
        }
    }
}
