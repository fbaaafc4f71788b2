//! Backend choice for a new session.

/// One backend as the policy sees it: health, administrative state and load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendLoad {
    /// The backend passes its health checks.
    pub healthy: bool,
    /// An operator asked for the backend to be emptied: no new sessions, live ones move away.
    pub draining: bool,
    /// Sessions currently on the backend, movable or not. A session being migrated counts on its
    /// target, so a tick that runs while migrations are in flight does not plan them twice.
    pub sessions: usize,
}

impl BackendLoad {
    /// Can this backend take new sessions (and receive migrated ones)?
    pub fn accepts_sessions(&self) -> bool {
        self.healthy && !self.draining
    }
}

/// The backend a new session should go to: the fewest sessions among the healthy, non-draining
/// backends, the lowest index among equals. `None` when no backend can take a session.
pub fn pick_backend(backends: &[BackendLoad]) -> Option<usize> {
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.accepts_sessions())
        // `min_by_key` keeps the first of equal minima: ties go to the lowest index.
        .min_by_key(|(_, b)| b.sessions)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(healthy: bool, draining: bool, sessions: usize) -> BackendLoad {
        BackendLoad {
            healthy,
            draining,
            sessions,
        }
    }

    #[test]
    fn picks_least_loaded_eligible() {
        let b = [
            load(true, false, 5),
            load(false, false, 0),
            load(true, true, 1),
            load(true, false, 3),
        ];
        assert_eq!(pick_backend(&b), Some(3));
    }

    #[test]
    fn ties_go_to_lowest_index() {
        let b = [
            load(false, false, 0),
            load(true, false, 2),
            load(true, false, 2),
        ];
        assert_eq!(pick_backend(&b), Some(1));
    }

    #[test]
    fn none_when_nothing_eligible() {
        assert_eq!(pick_backend(&[]), None);
        assert_eq!(
            pick_backend(&[load(false, false, 0), load(true, true, 0)]),
            None
        );
    }

    proptest! {
        #[test]
        fn pick_is_an_eligible_minimum(
            raw in proptest::collection::vec((any::<bool>(), any::<bool>(), 0usize..20), 0..8)
        ) {
            let b: Vec<_> = raw.iter().map(|&(h, d, s)| load(h, d, s)).collect();
            match pick_backend(&b) {
                None => prop_assert!(b.iter().all(|x| !x.accepts_sessions())),
                Some(i) => {
                    prop_assert!(b[i].accepts_sessions());
                    for (j, other) in b.iter().enumerate() {
                        if other.accepts_sessions() {
                            prop_assert!(b[i].sessions <= other.sessions);
                            if other.sessions == b[i].sessions {
                                prop_assert!(i <= j);
                            }
                        }
                    }
                }
            }
        }
    }
}
