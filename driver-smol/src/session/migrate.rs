//! The session task's part of migration: the commands that ask for one (an admin request, a
//! drain, the balancer's plan) and the session's migration events (metrics, the listed backend,
//! the retry pause after a failure). The connections a migration opens and closes are ordinary
//! `ConnectBackend { target: Some(name) }` / `CloseBackend` events, served like a login's.

use std::time::Instant;

use ferry_core::session::{Event, MigrationStart};
use ferry_mio::admin::ApiError;
use ferry_mio::proxy::migration::{migration_event, Listing};

use super::Task;

impl Task {
    /// Asks the core to move the session to `to` at its next safe point.
    pub(super) fn start_migration(&mut self, to: String) -> Result<(), ApiError> {
        let now = Instant::now();
        let result = self.session.start_migration(now, to.clone());
        // What the core holds now (a refusal may leave an earlier request in place).
        let target = self.session.migration_target().map(str::to_owned);
        self.update_entry(|e| e.target = target);
        match result {
            Ok(MigrationStart::Started) => {
                tracing::info!(session = self.id, %to, "migration starts");
                Ok(())
            }
            Ok(MigrationStart::Waiting(pin)) => {
                let reason = pin.map_or("a command in flight", |p| p.as_str());
                tracing::info!(session = self.id, %to, %reason, "migration waits for a safe point");
                Ok(())
            }
            Err(refused) => {
                tracing::debug!(session = self.id, %to, %refused, "migration refused");
                Err(ApiError::Conflict(refused.to_string()))
            }
        }
    }

    /// Handles a migration event (counted and logged as in every driver, then the listed entry
    /// follows); false if `event` is not one.
    pub(super) fn migration_event(&mut self, event: Event) -> bool {
        let Some(listing) = migration_event(&self.inner.stats, self.id, event, Instant::now())
        else {
            return false;
        };
        match listing {
            // The listed backend follows the core's after every drain (`sync_listing`).
            Listing::Moved { .. } => self.update_entry(|e| {
                e.target = None;
                e.retry_at = None;
            }),
            Listing::Stays { retry_at } => self.update_entry(|e| {
                e.target = None;
                e.retry_at = Some(retry_at);
            }),
            Listing::Unchanged => {}
        }
        true
    }
}
