//! The migration's steps (see the diagram in [`migration`](super)): leaving the wait at a safe
//! point, reading the old session, connecting, replaying or restoring, then the swap, or a
//! failure that leaves the session where it was.

use std::time::{Duration, Instant};

use crate::backend::{self, Backend, ResponseSummary};
use crate::wire::{Capabilities, ServerStatus};

use super::replay::{self, Item};
use super::{
    tidb, Job, LossReason, MigrationFailure, MigrationMode, NewBackend, OldBackendError,
    ReplayError, Rows, StatementIds, Step,
};
use crate::session::{
    BackendLink, BackendLoss, Event, Incompatibility, Phase, ProxySession, Timer,
};

impl ProxySession {
    // ---- the steps ----

    pub(crate) fn arm_step(&mut self, now: Instant) {
        let at = now + self.config.migration.step_timeout;
        self.set_timer(Timer::MigrationStep, Some(at));
    }

    /// Leaves `Waiting` if the session is at a safe point; true when it did.
    pub(super) fn try_begin_migration(&mut self, now: Instant) -> bool {
        let waiting = self
            .migration
            .as_ref()
            .is_some_and(|m| m.step == Step::Waiting);
        if !waiting
            || self.shutting_down
            || !matches!(self.phase, Phase::Ready)
            || self.pinned().is_some()
            || !self.backend().is_some_and(Backend::is_idle)
        {
            return false;
        }
        let mode = self.config.migration.mode;
        // With failover on, what the old backend would report is held already.
        let held = match mode {
            MigrationMode::Replay if self.keeps_snapshot() => self.snapshot.current(),
            _ => None,
        };
        let query = match mode {
            MigrationMode::Tidb => Some(tidb::show_session_states()),
            _ if held.is_some() => None,
            // Only a state change can have set a user variable; the character sets are read
            // live whenever the client changed them (MariaDB does not report every change).
            MigrationMode::Replay
                if self.state.opaque_state_changed || replay::charsets_changed(&self.state) =>
            {
                let version = self.backend().map_or("", Backend::server_version);
                Some(replay::old_session_query(version))
            }
            _ => None,
        };
        self.set_timer(Timer::Migration, None);
        self.phase = Phase::Internal(Job::Migration);
        let Some(m) = self.migration.as_mut() else {
            return false;
        };
        self.events.push_back(Event::MigrationStarted {
            to: m.target.clone(),
        });
        if let Some(old) = held {
            m.old = old;
        }
        match query {
            Some(query) => {
                m.step = Step::ReadOld;
                m.rows = Rows::default();
                self.arm_step(now);
                // The backend is idle (checked above), so the command is accepted.
                if let Some(b) = self.backend_mut() {
                    let _ = b.send_raw_command(now, query);
                }
            }
            None => self.connect_new(now),
        }
        true
    }

    /// The old backend's answer to `ReadOld`.
    pub(super) fn on_old_read(&mut self, now: Instant, summary: ResponseSummary) {
        let Some(m) = self.migration.as_mut() else {
            return self.resume(now);
        };
        let rows = std::mem::take(&mut m.rows);
        if m.cancelled {
            return self.fail_migration(now, MigrationFailure::Cancelled);
        }
        if let Some(err) = summary.error {
            return self.fail_migration(
                now,
                MigrationFailure::OldBackend(OldBackendError::Error(err)),
            );
        }
        if let Some(e) = rows.error {
            return self.fail_migration(
                now,
                MigrationFailure::OldBackend(OldBackendError::Unreadable(e)),
            );
        }
        let parsed = match (self.config.migration.mode, m.step) {
            (MigrationMode::Tidb, _) => {
                tidb::parse_session_states(&rows.rows).map(|s| m.states = Some(s))
            }
            (_, Step::ReadValues) => replay::apply_string_values(&mut m.old.user_vars, &rows.rows),
            _ => replay::parse_old_session(&rows.rows).map(|old| m.old = old),
        };
        if let Err(e) = parsed {
            return self.fail_migration(
                now,
                MigrationFailure::OldBackend(OldBackendError::Unreadable(e)),
            );
        }
        // USER_VARIABLES shows strings through utf8mb3 ('?' for what it cannot hold, binary
        // bytes mangled): their exact bytes are read in a second query.
        let values = match m.step {
            Step::ReadOld => replay::string_values_query(&m.old.user_vars),
            _ => None,
        };
        let Some(query) = values else {
            if self.config.migration.mode == MigrationMode::Replay && self.keeps_snapshot() {
                if let Some(m) = self.migration.as_ref() {
                    self.snapshot.store(&m.old);
                }
            }
            return self.connect_new(now);
        };
        m.step = Step::ReadValues;
        self.arm_step(now);
        // The old backend just completed a response: it is idle.
        let sent = self.backend_mut().map(|b| b.send_raw_command(now, query));
        if !matches!(sent, Some(Ok(()))) {
            self.fail_migration(
                now,
                MigrationFailure::OldBackend(OldBackendError::QueryRefused),
            );
        }
    }

    pub(super) fn connect_new(&mut self, now: Instant) {
        let id = self.next_conn;
        self.next_conn += 1;
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        m.step = Step::Connecting;
        m.new = Some(NewBackend { id, conn: None });
        let target = m.failover.is_none().then(|| m.target.clone());
        self.events
            .push_back(Event::ConnectBackend { conn: id, target });
        self.arm_step(now);
    }

    pub(super) fn on_new_backend_event(&mut self, now: Instant, event: backend::Event) {
        use crate::backend::Event as B;
        match event {
            B::Connected(info) => {
                let flag = Capabilities::DEPRECATE_EOF;
                if info.capabilities.contains(flag) != self.frontend.capabilities().contains(flag) {
                    return self.fail_migration(
                        now,
                        MigrationFailure::Incompatible(Incompatibility::DeprecateEof),
                    );
                }
                let mode = self.config.migration.mode;
                let Some(m) = self.migration.as_mut() else {
                    return;
                };
                if mode == MigrationMode::Tidb {
                    let states = m.states.as_ref().map_or(&[][..], |s| &s.states[..]);
                    let statement = tidb::set_session_states(states);
                    m.step = Step::Restoring;
                    self.send_new(now, statement);
                } else {
                    let old = std::mem::take(&mut m.old);
                    m.plan = replay::plan(&self.state, &self.track, old);
                    m.step = Step::Replaying;
                    self.replay_next(now);
                }
            }
            B::AuthFailed { error, .. } => {
                self.fail_migration(now, MigrationFailure::LoginRefused(error))
            }
            B::Response { .. } => {}
            B::ResponseComplete(summary) => self.on_new_complete(now, summary),
            B::Closed { error } => {
                self.fail_migration(now, MigrationFailure::BackendLost(error.into()));
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    pub(super) fn send_new(&mut self, now: Instant, payload: bytes::Bytes) {
        let sent = self
            .migration
            .as_mut()
            .and_then(|m| m.new.as_mut())
            .and_then(|n| n.conn.as_mut())
            .map(|b| b.send_raw_command(now, payload));
        match sent {
            Some(Ok(())) => self.arm_step(now),
            _ => self.fail_migration(now, MigrationFailure::BackendLost(BackendLoss::NotReady)),
        }
    }

    /// Sends the next replay statement, or swaps when there is none.
    pub(crate) fn replay_next(&mut self, now: Instant) {
        loop {
            let Some(m) = self.migration.as_mut() else {
                return;
            };
            let Some(item) = m.plan.pop_front() else {
                return self.finish_migration(now);
            };
            let no_backslash_escapes = m
                .new
                .as_ref()
                .and_then(|n| n.conn.as_ref())
                .is_some_and(|b| b.status().contains(ServerStatus::NO_BACKSLASH_ESCAPES));
            match item.payload(no_backslash_escapes) {
                Ok(payload) => {
                    m.current = Some(item);
                    m.sent += 1;
                    return self.send_new(now, payload);
                }
                Err(_) if item.skippable() => m.skipped.push(item.label()),
                Err(error) => {
                    let what = item.label();
                    let error = ReplayError::Unencodable(error);
                    return self.fail_migration(now, MigrationFailure::Replay { what, error });
                }
            }
        }
    }

    pub(super) fn on_new_complete(&mut self, now: Instant, summary: ResponseSummary) {
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        match m.step {
            Step::Restoring => match summary.error {
                Some(e) => self.fail_migration(
                    now,
                    MigrationFailure::Replay {
                        what: "SET SESSION_STATES".into(),
                        error: ReplayError::Error(e),
                    },
                ),
                None => self.finish_migration(now),
            },
            Step::Replaying => {
                let Some(item) = m.current.take() else {
                    return;
                };
                if let Some(e) = summary.error {
                    if !item.skippable() {
                        let what = item.label();
                        let error = ReplayError::Error(e);
                        return self.fail_migration(now, MigrationFailure::Replay { what, error });
                    }
                    m.skipped.push(item.label());
                } else if let Item::Prepare { client_id, .. } = item {
                    match summary.prepared {
                        Some(ok) => m.new_ids.push((client_id, ok.statement_id)),
                        None => {
                            let what = item.label();
                            let error = ReplayError::NoPrepareOk;
                            return self
                                .fail_migration(now, MigrationFailure::Replay { what, error });
                        }
                    }
                }
                self.replay_next(now);
            }
            _ => {}
        }
    }

    /// Success: the new connection becomes the session's.
    pub(in crate::session) fn finish_migration(&mut self, now: Instant) {
        let Some(mut m) = self.migration.take() else {
            return;
        };
        let Some(NewBackend {
            id,
            conn: Some(conn),
        }) = m.new.take()
        else {
            return;
        };
        self.set_timer(Timer::MigrationStep, None);
        self.set_timer(Timer::Migration, None);
        let failover = m.failover.take();
        let from = match &failover {
            Some(f) => f.from.clone(),
            None => self.backend_name.take().unwrap_or_default(),
        };
        self.release_backend(now);
        let status = conn.status();
        self.backend = Some(BackendLink {
            id,
            conn: Some(conn),
        });
        let to = m.to_name.take().unwrap_or_else(|| m.target.clone());
        self.backend_name = Some(to.clone());
        let pooled = m.pooled.then(|| (m.new_ids.clone(), m.sent));
        if self.config.migration.mode == MigrationMode::Replay {
            if !m.own_connection {
                let mut ids =
                    StatementIds::new(self.stmt_ids.take(), self.state.statements.keys().copied());
                for (client, backend) in m.new_ids.drain(..) {
                    ids.insert(client, backend);
                }
                self.stmt_ids = Some(ids);
            }
            self.track.no_tracking = false;
        }
        self.state.status = status;
        self.frontend.set_status(now, status);
        let skipped_variables = std::mem::take(&mut m.skipped);
        if let Some((new_ids, sent)) = pooled {
            self.acquired(now, &new_ids, sent, skipped_variables);
            return self.resume(now);
        }
        let Some(failover) = failover else {
            let pause = self
                .held_since
                .take()
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            self.events.push_back(Event::MigrationDone {
                from,
                to,
                pause,
                skipped_variables,
            });
            return self.resume(now);
        };
        self.events.push_back(Event::FailoverDone {
            from,
            to,
            pause: now.saturating_duration_since(failover.started),
            retried: failover.retry.is_some(),
            skipped_variables,
        });
        match failover.retry {
            Some(statement) => self.resend(now, statement),
            None => self.resume(now),
        }
    }

    /// Failure: the new connection is closed; the session continues on the old one.
    pub(crate) fn fail_migration(&mut self, now: Instant, reason: MigrationFailure) {
        let Some(mut m) = self.migration.take() else {
            return;
        };
        self.set_timer(Timer::MigrationStep, None);
        self.set_timer(Timer::Migration, None);
        if let Some(new) = m.new.take() {
            self.events.push_back(Event::CloseBackend { conn: new.id });
        }
        if m.pooled {
            return self.acquire_failed(now, reason);
        }
        if let Some(f) = m.failover.take() {
            return self.lose(now, f.from, f.cause, LossReason::Rebuild(reason), None);
        }
        self.events.push_back(Event::MigrationFailed {
            to: m.target,
            reason: reason.clone(),
        });
        if self.backend.is_none() && matches!(self.phase, Phase::Internal(Job::Migration)) {
            // The old backend died while the move was under way: nothing to stay on.
            let from = self.backend_name.take().unwrap_or_default();
            let cause = BackendLoss::Closed;
            return self.lose(now, from, cause, LossReason::Rebuild(reason), None);
        }
        if matches!(self.phase, Phase::Internal(Job::Migration)) {
            if self.backend().is_some_and(Backend::is_idle) {
                self.resume(now);
            } else {
                // A query of ours is still running on the old backend: drop its answer.
                self.phase = Phase::Internal(Job::Discard);
            }
        }
    }

    /// Back to `Ready` after internal work; the client command that waited (if any) runs now.
    pub(super) fn resume(&mut self, now: Instant) {
        let idle = self.timers[Timer::Idle as usize];
        self.enter_ready(now);
        self.held_since = None;
        match self.held.take() {
            Some(command) => self.on_command(now, command),
            None => {
                // Internal work is not client activity: the idle deadline stays.
                self.set_timer(Timer::Idle, idle);
                if self.shutting_down {
                    self.finish_shutdown(now);
                } else {
                    self.on_ready(now);
                }
            }
        }
    }
}
