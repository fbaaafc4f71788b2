//! What ferry holds of a `replay` session so that it can rebuild it without asking the old
//! backend: the failover case, where the old backend is dead.
//!
//! Schema, system variables and prepared statements are tracked as they change (session-state
//! tracking, the [`Tracker`](super::Tracker)). User variables and the live character sets are
//! not reported by the server, so after a response that reports a state change ferry reads them
//! itself, with the query a planned migration uses ([`replay::old_session_query`], then
//! [`replay::string_values_query`] for exact string values), once the client has its answer. A
//! client command that arrives meanwhile waits for it.
//!
//! What it costs: nothing for a statement that changes no user variable or character set (the
//! common case: a sysbench run, a `SET sql_mode`, take no snapshot); one or two extra queries
//! on the backend after one that does.
//! The query is itself a statement, so it resets what the server keeps of the previous one:
//! `SHOW WARNINGS` and `@@warning_count` (which is why no snapshot is read after a response
//! with warnings or an error: it is read after the next clean one, and the session cannot fail
//! over until then), `ROW_COUNT()` (-1 after it) and `FOUND_ROWS()`.
//!
//! A snapshot that is due but not taken (a read failed, or every statement since left warnings)
//! makes a failover impossible ([`SessionLost`](super::super::Event::SessionLost) with
//! [`LossReason::StateUnknown`](super::LossReason::StateUnknown)); a planned migration then reads
//! the old backend live, as it always did.

use std::time::Instant;

use crate::backend::{PacketKind, ResponseSummary};
use crate::wire::Capabilities;

use super::replay::{self, OldSession};
use super::{Job, MigrationMode, Rows};
use crate::session::{Phase, ProxySession};

/// The held snapshot of a session and its read in progress.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The last snapshot read (`None`: none needed yet: no user variable, default character
    /// sets).
    pub(crate) held: Option<Box<OldSession>>,
    /// State changed since `held` was read.
    pub(crate) due: bool,
    /// The last response left warnings or an error: reading now would hide them.
    pub(crate) blocked: bool,
    /// The read in progress.
    reading: Option<Box<Reading>>,
}

#[derive(Debug)]
struct Reading {
    /// False: the first query (character sets, user variables); true: string values.
    values: bool,
    rows: Rows,
    old: OldSession,
}

impl Snapshot {
    /// What a rebuild replays, when the snapshot is current.
    pub(crate) fn current(&self) -> Option<OldSession> {
        if self.due {
            return None;
        }
        Some(self.held.as_deref().cloned().unwrap_or_default())
    }

    /// The session was reset (COM_RESET_CONNECTION, COM_CHANGE_USER): no user variables, the
    /// login's character sets.
    pub(crate) fn reset(&mut self) {
        self.held = None;
        self.due = false;
        self.blocked = false;
    }

    /// The backend died under the read.
    pub(crate) fn abandon_read(&mut self) {
        self.reading = None;
    }

    /// A planned migration read the old backend live: that is the current snapshot.
    pub(crate) fn store(&mut self, old: &OldSession) {
        self.held = Some(Box::new(old.clone()));
        self.due = false;
    }
}

impl ProxySession {
    /// True when this session keeps a snapshot (replay mode with failover on).
    pub(crate) fn keeps_snapshot(&self) -> bool {
        let m = &self.config.migration;
        m.mode == MigrationMode::Replay && (m.failover || self.config.multiplexing.is_some())
    }

    /// A response completed: note whether it changed what the snapshot holds.
    pub(crate) fn note_snapshot(&mut self, summary: &ResponseSummary) {
        if !self.keeps_snapshot() {
            return;
        }
        // User variables change only through statements that name one (others that could,
        // such as a trigger's, pin the session as an unattributed state change); the character
        // sets are read live because MariaDB does not report every part of them.
        let changes = &summary.session;
        let charsets = changes
            .system_variables
            .iter()
            .any(|(name, _)| replay::is_charset_variable(name));
        if (changes.state_changed && self.track.touched_user_vars) || charsets {
            self.snapshot.due = true;
        }
        self.snapshot.blocked = summary.error.is_some() || summary.warnings > 0;
    }

    /// The session is ready: read the snapshot if one is due and reading cannot hide anything
    /// from the client. True when the read started (`Phase::Internal(Job::Snapshot)`).
    pub(crate) fn try_snapshot(&mut self, now: Instant) -> bool {
        if !self.snapshot.due || self.snapshot.blocked || !matches!(self.phase, Phase::Ready) {
            return false;
        }
        let Some(backend) = self.backend_mut() else {
            return false;
        };
        if !backend.is_idle() {
            return false;
        }
        let query = replay::old_session_query(backend.server_version());
        if backend.send_raw_command(now, query).is_err() {
            return false;
        }
        self.snapshot.reading = Some(Box::new(Reading {
            values: false,
            rows: Rows::default(),
            old: OldSession::default(),
        }));
        self.phase = Phase::Internal(Job::Snapshot);
        true
    }

    /// A packet of the snapshot query's response.
    pub(crate) fn on_snapshot_packet(
        &mut self,
        payload: &[u8],
        kind: PacketKind,
        caps: Capabilities,
    ) {
        if let Some(r) = self.snapshot.reading.as_mut() {
            r.rows.on_packet(payload, kind, caps);
        }
    }

    /// The snapshot query's response is complete: keep what it read (or, after a failure, stay
    /// due: the next clean response tries again), send the second query if strings need their
    /// exact bytes, or go back to `Ready`.
    pub(crate) fn on_snapshot_read(&mut self, now: Instant, summary: ResponseSummary) {
        let Some(mut reading) = self.snapshot.reading.take() else {
            return self.resume(now);
        };
        let rows = std::mem::take(&mut reading.rows);
        let parsed = match (&summary.error, rows.error) {
            (Some(e), _) => Err(e.to_string()),
            (None, Some(e)) => Err(e),
            (None, None) if reading.values => {
                replay::apply_string_values(&mut reading.old.user_vars, &rows.rows)
            }
            (None, None) => replay::parse_old_session(&rows.rows).map(|old| reading.old = old),
        };
        if parsed.is_err() {
            // The session cannot fail over until a read succeeds (a loss then says
            // `state_unknown`). Not again before another response: a failing read must not loop.
            self.snapshot.blocked = true;
            return self.resume(now);
        }
        if !reading.values {
            if let Some(query) = replay::string_values_query(&reading.old.user_vars) {
                reading.values = true;
                // The backend just completed a response: it is idle.
                if let Some(Ok(())) = self.backend_mut().map(|b| b.send_raw_command(now, query)) {
                    self.snapshot.reading = Some(reading);
                    return;
                }
                self.snapshot.blocked = true;
                return self.resume(now);
            }
        }
        self.snapshot.held = Some(Box::new(reading.old));
        self.snapshot.due = false;
        self.resume(now);
    }
}
