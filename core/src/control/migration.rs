//! What a session's migration events (`MigrationStarted`, `MigrationDone`, `MigrationFailed`)
//! do to the proxy: counted in the [`Counters`], logged, and what changes in the session's
//! listing ([`Listing`]), which the [`Endpoint`](super::Endpoint) applies.

use std::time::Instant;

use crate::session::Event;

use super::counters::Counters;
use super::rebalance::RETRY_DELAY;

/// What a migration event changes in the published entry of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Listing {
    /// Nothing: the migration left its wait and runs (its target is listed already).
    Unchanged,
    /// The session is on backend `to` now: no target any more, no retry pause.
    Moved {
        /// The backend the session moved to.
        to: String,
    },
    /// The migration failed or was cancelled and the session stays: no target any more, and no
    /// new attempt on this session before `retry_at`.
    Stays {
        /// When the balancer may try this session again.
        retry_at: Instant,
    },
}

/// Counts and logs migration `event` of session `session`, which happened at `now`; `None` if
/// `event` is not a migration event (nothing is counted or logged then).
pub(super) fn migration_event(
    stats: &Counters,
    session: u64,
    event: Event,
    now: Instant,
) -> Option<Listing> {
    let listing = match event {
        Event::MigrationStarted { to } => {
            Counters::add(&stats.migrations_started, 1);
            tracing::debug!(session, %to, "migration running");
            Listing::Unchanged
        }
        Event::MigrationDone {
            from,
            to,
            pause,
            skipped_variables,
        } => {
            stats.migration_done(pause);
            if !skipped_variables.is_empty() {
                // Names only: a variable's value may be a secret.
                tracing::warn!(session, %to, skipped = ?skipped_variables, "the new backend refused these session variables; the session runs without them");
            }
            tracing::info!(session, %from, %to, pause_us = pause.as_micros() as u64, "session migrated");
            Listing::Moved { to }
        }
        Event::MigrationFailed { to, reason } => {
            stats.migration_failed(reason.label());
            // A cancellation was asked for: not a fault.
            if reason.label() == "cancelled" {
                tracing::info!(session, %to, "migration cancelled; the session stays");
            } else {
                tracing::warn!(session, %to, %reason, "migration failed; the session stays");
            }
            Listing::Stays {
                retry_at: now + RETRY_DELAY,
            }
        }
        _ => return None,
    };
    Some(listing)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::session::MigrationFailure;

    use super::*;
    use crate::control::admin::Metrics;

    fn snapshot(stats: &Counters) -> Metrics {
        Counters::metrics(&[stats], 0, Default::default(), Vec::new())
    }

    #[test]
    fn started_counts_and_changes_nothing() {
        let stats = Counters::default();
        let event = Event::MigrationStarted { to: "b".into() };
        let listing = migration_event(&stats, 1, event, Instant::now());
        assert_eq!(listing, Some(Listing::Unchanged));
        assert_eq!(stats.migrations_started.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn done_counts_the_pause_and_moves_the_listing() {
        let stats = Counters::default();
        let event = Event::MigrationDone {
            from: "a".into(),
            to: "b".into(),
            pause: Duration::from_millis(5),
            skipped_variables: vec!["sql_log_bin".into()],
        };
        let listing = migration_event(&stats, 1, event, Instant::now());
        assert_eq!(listing, Some(Listing::Moved { to: "b".into() }));
        let m = snapshot(&stats);
        assert_eq!(m.migrations_succeeded, 1);
        assert_eq!(m.migration_pause.count(), 1);
        assert_eq!(m.migration_pause.sum(), Duration::from_millis(5));
        assert!(m.migrations_failed.is_empty());
    }

    #[test]
    fn failed_counts_by_label_and_pauses_retries() {
        let stats = Counters::default();
        let now = Instant::now();
        for reason in [
            MigrationFailure::Cancelled,
            MigrationFailure::Pinned(None),
            MigrationFailure::Pinned(None),
        ] {
            let event = Event::MigrationFailed {
                to: "b".into(),
                reason,
            };
            let listing = migration_event(&stats, 1, event, now);
            assert_eq!(
                listing,
                Some(Listing::Stays {
                    retry_at: now + RETRY_DELAY
                })
            );
        }
        let m = snapshot(&stats);
        assert_eq!(m.migrations_failed["cancelled"], 1);
        assert_eq!(m.migrations_failed["pinned"], 2);
        assert_eq!(m.migrations_succeeded, 0);
    }

    #[test]
    fn other_events_are_not_counted() {
        let stats = Counters::default();
        let event = Event::Authenticated { user: "u".into() };
        assert_eq!(migration_event(&stats, 1, event, Instant::now()), None);
        let m = snapshot(&stats);
        assert_eq!(m.migrations_started + m.migrations_succeeded, 0);
        assert!(m.migrations_failed.is_empty());
    }
}
