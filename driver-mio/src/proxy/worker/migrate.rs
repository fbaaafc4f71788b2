//! The worker's part of migration: executing the commands other threads send for its sessions
//! (migrate, cancel; also adopting a client another worker accepted), and acting on the
//! sessions' migration events (metrics, the published backend, the retry pause after a failure).
//! The connections a migration opens and closes are ordinary
//! `ConnectBackend { target: Some(name) }` / `CloseBackend` events.

use std::time::Instant;

use crate::admin::ApiError;

use super::super::migration::{self, Listing};
use super::super::session::{Event, MigrationStart, Session, SessionFactory};
use super::super::shared::WorkerCommand;
use super::Worker;

impl<F: SessionFactory> Worker<F> {
    /// Executes every command waiting in the channel (the waker rang).
    pub(super) fn run_commands(&mut self, now: Instant) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                WorkerCommand::Migrate { session, to, reply } => {
                    let result = self.migrate(session, to, now);
                    if let Some(reply) = reply {
                        // The admin thread may have given up waiting; nothing to do then.
                        let _ = reply.send(result);
                    }
                }
                WorkerCommand::Adopt { stream, host } => self.adopt(stream, host, now),
                WorkerCommand::CancelMigration { session } => {
                    if let Some(slot) = self.find_slot(session) {
                        if let Some(s) = self.sessions.get_mut(slot) {
                            s.session.cancel_migration(now);
                        }
                        self.after_call(slot, now);
                    }
                }
            }
        }
    }

    /// The slot of live, authenticated session `id`.
    fn find_slot(&self, id: u64) -> Option<usize> {
        self.sessions
            .iter()
            .find(|(_, s)| s.id == id && s.published && !s.closed)
            .map(|(slot, _)| slot)
    }

    fn migrate(&mut self, id: u64, to: String, now: Instant) -> Result<(), ApiError> {
        let Some(slot) = self.find_slot(id) else {
            return Err(ApiError::UnknownSession(id));
        };
        let s = self
            .sessions
            .get_mut(slot)
            .ok_or(ApiError::UnknownSession(id))?;
        let result = s.session.start_migration(now, to.clone());
        // What the core holds now (a refusal may leave an earlier request in place).
        let target = s.session.migration_target().map(str::to_owned);
        self.shared
            .update_session(self.index, id, |e| e.target = target);
        let result = match result {
            Ok(MigrationStart::Started) => {
                tracing::info!(session = id, %to, "migration starts");
                Ok(())
            }
            Ok(MigrationStart::Waiting(pin)) => {
                let reason = pin.map_or("a command in flight", |p| p.as_str());
                tracing::info!(session = id, %to, %reason, "migration waits for a safe point");
                Ok(())
            }
            Err(refused) => {
                tracing::debug!(session = id, %to, %refused, "migration refused");
                Err(ApiError::Conflict(refused.to_string()))
            }
        };
        self.after_call(slot, now);
        result
    }

    /// `MigrationStarted`, `MigrationDone` or `MigrationFailed` from session `slot`: counted and
    /// logged as in every driver, then the published entry follows.
    pub(super) fn migration_event(&mut self, slot: usize, event: Event, now: Instant) {
        let Some(id) = self.sessions.get(slot).map(|s| s.id) else {
            return;
        };
        let stats = &self.shared.stats[self.index];
        match migration::migration_event(stats, id, event, now) {
            Some(Listing::Moved { to }) => self.shared.update_session(self.index, id, |e| {
                e.backend = Some(to);
                e.target = None;
                e.retry_at = None;
            }),
            Some(Listing::Stays { retry_at }) => self.shared.update_session(self.index, id, |e| {
                e.target = None;
                e.retry_at = Some(retry_at);
            }),
            Some(Listing::Unchanged) | None => {}
        }
    }
}
