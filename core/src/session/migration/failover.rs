//! Failover: a `replay` session whose backend died is rebuilt on another backend, from what ferry
//! holds ([`snapshot`](super::snapshot) and the tracked state), before its next statement. The
//! client sees nothing.
//!
//! ```text
//!   backend connection closed (EOF, reset, ERR-less kill)  ─┐
//!   the health check found the backend down (frozen, …)    ─┤ idle? unpinned? snapshot current?
//!                                                           ▼
//!   yes ─► FailoverStarted ─ Connecting (the owner picks, avoiding the old backend) ─ LoggingIn
//!          ─ Replaying ─► FailoverDone; the command that waited runs (read retry: the
//!          statement that was in flight is sent again)
//!   no  ─► SessionLost { reason } and the client connection closes without an ERR, as the dead
//!          server's own connection would: the client library reports its own 2013/2006
//! ```
//!
//! What cannot be rebuilt ([`LossReason`]): a statement in flight (its outcome is unknown; with
//! `read_retry`, an autocommit read-only `SELECT` is sent again instead, see `retry`), a pinned
//! session (transaction, temporary tables, locks, …), a snapshot not current, `tidb` mode (its
//! state lives in the old backend, which cannot answer `SHOW SESSION_STATES` any more).
//!
//! A backend reported down while a session is busy or pinned is left alone: a statement in
//! flight on a frozen backend runs until it answers or until the statement timeout (the backend
//! role's `command_timeout`) cuts it, exactly like a direct connection would wait; a pinned
//! session keeps its connection in case the backend comes back.

use std::time::Instant;

use bytes::Bytes;

use super::{Job, Migration, MigrationFailure, MigrationMode, PinReason, Step};
use crate::session::{BackendLoss, ClientData, CloseReason, Event, InFlight, Phase, ProxySession};
use crate::ProtocolError;

/// Why a session could not survive the loss of its backend ([`Event::SessionLost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// The migration mode is not `replay`: `tidb` reads the session from the old backend, which
    /// is gone; `off` tracks nothing.
    NoReplay,
    /// `[migration] failover = false`.
    Disabled,
    /// ferry holds no credential to log in again (passthrough auth).
    NoCredential,
    /// The session is pinned (open transaction, temporary tables, locks, …).
    Pinned(PinReason),
    /// A statement was in flight: its outcome is unknown (and it was not a retryable read).
    InFlight,
    /// State changed since ferry last read the session's user variables (see `snapshot`).
    StateUnknown,
    /// The proxy is shutting down.
    ShuttingDown,
    /// Rebuilding on another backend failed.
    Rebuild(MigrationFailure),
}

impl LossReason {
    /// A short stable label (metrics: sessions lost by reason).
    pub fn label(&self) -> &'static str {
        match self {
            LossReason::NoReplay => "no_replay",
            LossReason::Disabled => "disabled",
            LossReason::NoCredential => "no_credential",
            LossReason::Pinned(_) => "pinned",
            LossReason::InFlight => "in_flight",
            LossReason::StateUnknown => "state_unknown",
            LossReason::ShuttingDown => "shutting_down",
            LossReason::Rebuild(_) => "rebuild_failed",
        }
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossReason::NoReplay => f.write_str(
                "only replay migration can rebuild a session whose backend died \
                 (tidb mode needs the old backend's session states)",
            ),
            LossReason::Disabled => f.write_str("failover is disabled"),
            LossReason::NoCredential => f.write_str("no credential to log in again"),
            LossReason::Pinned(p) => write!(f, "pinned: {p}"),
            LossReason::InFlight => f.write_str("a statement was in flight"),
            LossReason::StateUnknown => {
                f.write_str("the session's user variables were not read since they changed")
            }
            LossReason::ShuttingDown => f.write_str("shutting down"),
            LossReason::Rebuild(e) => write!(f, "rebuilding failed: {e}"),
        }
    }
}

/// A failover in progress (the migration's `failover`).
#[derive(Debug)]
pub(crate) struct Failover {
    /// The backend that was lost.
    pub(crate) from: String,
    pub(crate) cause: BackendLoss,
    pub(crate) started: Instant,
    /// The statement to send again once rebuilt (read retry), as the client sent it.
    pub(crate) retry: Option<Bytes>,
}

impl ProxySession {
    /// The health check found backend `backend` down. An idle, unpinned session on it is rebuilt
    /// on another backend now (its old connection is closed); a busy or pinned one stays (see the
    /// module docs). The outcome comes as [`Event::FailoverDone`] or [`Event::SessionLost`].
    pub fn backend_down(&mut self, now: Instant, backend: &str) {
        if self.is_closed()
            || self.is_detached()
            || self.backend_name.as_deref() != Some(backend)
            || !matches!(self.phase, Phase::Ready)
            || self.unrecoverable(false).is_some()
        {
            return;
        }
        match self.migration.as_ref().map(|m| m.step) {
            None => {}
            // The failover places the session instead.
            Some(Step::Waiting) => {
                self.fail_migration(now, MigrationFailure::OldBackendLost(BackendLoss::Down))
            }
            Some(_) => return,
        }
        let from = self.backend_name.take().unwrap_or_default();
        self.release_backend(now);
        self.start_failover(now, from, BackendLoss::Down, None);
        self.drive(now);
    }

    /// The session's backend connection closed under it (`self.backend` is already gone), in
    /// the command phase: a failover, the planned migration carrying on without it, or the
    /// session lost.
    pub(crate) fn backend_lost(
        &mut self,
        now: Instant,
        cause: BackendLoss,
        own_error: Option<ProtocolError>,
    ) {
        if let Some(step) = self.migration.as_ref().map(|m| m.step) {
            match step {
                Step::Waiting | Step::ReadOld | Step::ReadValues => {
                    self.fail_migration(now, MigrationFailure::OldBackendLost(cause.clone()));
                    if matches!(self.phase, Phase::Internal(Job::Migration | Job::Discard)) {
                        // Nothing of ours is running any more.
                        self.phase = Phase::Ready;
                    }
                }
                // The new backend is being set up: the move completes without the old one
                // (or, failing, loses the session).
                _ => return,
            }
        }
        let from = self.backend_name.take().unwrap_or_default();
        let in_flight = match self.phase {
            Phase::Command(f) => Some(f),
            _ => None,
        };
        let retry = in_flight.and_then(|f| self.take_retry(f));
        if matches!(self.phase, Phase::Internal(Job::Snapshot)) {
            self.snapshot.abandon_read();
        }
        match self.unrecoverable(in_flight.is_some() && retry.is_none()) {
            None => self.start_failover(now, from, cause, retry),
            Some(reason) => self.lose(now, from, cause, reason, own_error),
        }
    }

    /// Why the session cannot be rebuilt now, if it cannot. `in_flight`: a statement whose
    /// outcome is unknown was running.
    fn unrecoverable(&self, in_flight: bool) -> Option<LossReason> {
        let m = &self.config.migration;
        let reason = if self.shutting_down {
            LossReason::ShuttingDown
        } else if m.mode != MigrationMode::Replay {
            LossReason::NoReplay
        } else if !m.failover {
            LossReason::Disabled
        } else if self.login_info.as_ref().is_none_or(|l| l.secret.is_none()) {
            LossReason::NoCredential
        } else if let Some(pin) = self.pinned() {
            // Before "in flight": a statement of a transaction could not be retried anyway.
            LossReason::Pinned(pin)
        } else if in_flight {
            LossReason::InFlight
        } else if self.snapshot.due {
            LossReason::StateUnknown
        } else {
            return None;
        };
        Some(reason)
    }

    fn start_failover(
        &mut self,
        now: Instant,
        from: String,
        cause: BackendLoss,
        retry: Option<Bytes>,
    ) {
        let old = self.snapshot.current().unwrap_or_default();
        self.events.push_back(Event::FailoverStarted {
            from: from.clone(),
            cause: cause.clone(),
        });
        let failover = Box::new(Failover {
            from,
            cause,
            started: now,
            retry,
        });
        let mut migration = Migration::new(String::new(), Step::Connecting, Some(failover));
        migration.old = old;
        self.migration = Some(migration);
        self.phase = Phase::Internal(Job::Migration);
        self.connect_new(now);
    }

    /// The session cannot go on: the client connection closes the way the dead server's would,
    /// without an ERR (`own_error`: one ferry owes, such as 1153 for an oversized packet).
    pub(crate) fn lose(
        &mut self,
        now: Instant,
        from: String,
        cause: BackendLoss,
        reason: LossReason,
        own_error: Option<ProtocolError>,
    ) {
        self.events.push_back(Event::SessionLost {
            from,
            cause: cause.clone(),
            reason,
        });
        self.close_reason = Some(CloseReason::BackendLost(cause));
        match own_error {
            Some(err) => self.frontend.close_with_error(now, err),
            None => self.frontend.close(now),
        }
    }

    /// After a failover with read retry: the statement that was in flight runs on the new
    /// backend (nothing of its response reached the client).
    pub(crate) fn resend(&mut self, now: Instant, mut payload: Bytes) {
        let code = payload.first().copied().unwrap_or(0);
        if let Some(ids) = self.stmt_ids.as_mut() {
            payload = ids.rewrite(payload, &self.track.param_types);
        }
        self.phase = Phase::Command(InFlight {
            code,
            client_data: ClientData::None,
        });
        let sent = self.backend_mut().map(|b| b.send_raw_command(now, payload));
        if !matches!(sent, Some(Ok(()))) {
            let from = self.backend_name.take().unwrap_or_default();
            self.lose(now, from, BackendLoss::NotReady, LossReason::InFlight, None);
        }
    }
}
