//! [`ProxyHandle`]: the embedder's controls of a running proxy — the operations of the admin
//! endpoint, plus graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_mio::admin::{AdminApi, ApiError, BackendInfo, Metrics, SessionInfo};
use smol::future;
use smol::Timer;

use crate::shared::{Command, Inner};
use crate::stats::Stats;

/// How long [`ProxyHandle::migrate`] waits for the session's answer.
const MIGRATE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long aborted sessions get to drop their sockets after the shutdown deadline.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// How a [`ProxyHandle::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// Every session finished its statement and closed before the deadline.
    Graceful,
    /// The deadline passed: these sessions were still open and were dropped.
    DeadlinePassed {
        /// Sessions dropped at the deadline.
        aborted: usize,
    },
}

/// Controls a [`Proxy`](crate::Proxy) (cheap to clone; every clone controls the same proxy).
/// It also implements the admin endpoint's [`AdminApi`], so the `ferry` admin server can serve
/// it: see [`ProxyHandle::admin_api`].
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

impl ProxyHandle {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The address clients connect to, once [`Proxy::run`](crate::Proxy::run) started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr.get().copied()
    }

    /// The configuration's graceful-shutdown deadline (`proxy.shutdown-timeout`), for
    /// [`ProxyHandle::shutdown`].
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.limits.shutdown_timeout
    }

    /// False once shutdown began.
    pub fn is_serving(&self) -> bool {
        !self.inner.stopping.load(Ordering::SeqCst)
    }

    /// The authenticated sessions, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner.session_infos()
    }

    /// Client sessions open now (including those still logging in).
    pub fn session_count(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// The backends in configuration order: health, draining, backend connections open.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.inner.registry.infos()
    }

    /// The counters, as `/metrics` shows them.
    pub fn metrics(&self) -> Metrics {
        Stats::metrics(
            std::slice::from_ref(&self.inner.stats),
            self.inner.live.load(Ordering::Relaxed) as u64,
            self.inner.pinned_counts(),
            self.inner.registry.infos(),
        )
    }

    /// Drains backend `backend`: new sessions avoid it (the built-in policy skips it; a chooser
    /// sees the flag in [`ChooseRequest::backends`](crate::ChooseRequest::backends)), and with
    /// migration on, its live sessions move to the other backends, each at its next safe point.
    pub fn drain(&self, backend: &str) -> Result<(), ApiError> {
        self.set_draining(backend, true)
    }

    /// Backend `backend` takes new sessions again (and, with rebalancing on, its share of the
    /// live ones).
    pub fn undrain(&self, backend: &str) -> Result<(), ApiError> {
        self.set_draining(backend, false)
    }

    fn set_draining(&self, backend: &str, draining: bool) -> Result<(), ApiError> {
        self.inner.registry.set_draining(backend, draining)?;
        if !draining {
            // The drain's moves still waiting (pinned sessions) are called off.
            let leaving: Vec<_> = self
                .inner
                .sessions()
                .values()
                .filter(|e| {
                    e.target.is_some()
                        && e.info.as_ref().and_then(|i| i.backend.as_deref()) == Some(backend)
                })
                .map(|e| e.commands.clone())
                .collect();
            for commands in leaving {
                let _ = commands.try_send(Command::CancelMigration);
            }
        }
        self.inner.nudge_balancer();
        Ok(())
    }

    /// Gives up the migration requested or running for session `session` (it stays on its
    /// backend; a running migration is rolled back).
    pub fn cancel_migration(&self, session: u64) -> Result<(), ApiError> {
        let commands = self
            .inner
            .commands_of(session)
            .ok_or(ApiError::UnknownSession(session))?;
        commands
            .try_send(Command::CancelMigration)
            .map_err(|_| ApiError::UnknownSession(session))
    }

    /// Asks session `session` to move to backend `to` at its next safe point. `Ok` means the
    /// session accepted the request (it may wait for a safe point), not that the move is done;
    /// [`ProxyHandle::sessions`] shows the new backend once it is. Refused with
    /// [`ApiError::Conflict`] when the core refuses: migration off (`[migration] mode`), already
    /// on that backend, already migrating, not logged in, no credential for replay...
    pub async fn migrate(&self, session: u64, to: &str) -> Result<(), ApiError> {
        let registry = &self.inner.registry;
        let target = registry
            .find(to)
            .and_then(|i| registry.get(i))
            .ok_or_else(|| ApiError::UnknownBackend(to.to_owned()))?;
        if target.draining() {
            return Err(ApiError::Conflict(format!("backend {to} is draining")));
        }
        if !target.healthy() {
            return Err(ApiError::Conflict(format!("backend {to} is not healthy")));
        }
        // Only listed (authenticated) sessions can be asked, as with the admin endpoint.
        let listed = self
            .inner
            .sessions()
            .get(&session)
            .is_some_and(|e| e.info.is_some());
        let commands = match self.inner.commands_of(session) {
            Some(c) if listed => c,
            _ => return Err(ApiError::UnknownSession(session)),
        };
        let (reply, answer) = smol::channel::bounded(1);
        let sent = commands
            .send(Command::Migrate {
                to: to.to_owned(),
                reply: Some(reply),
            })
            .await;
        if sent.is_err() {
            return Err(ApiError::UnknownSession(session));
        }
        let answer = future::or(async { answer.recv().await.ok() }, async {
            Timer::after(MIGRATE_ANSWER_TIMEOUT).await;
            None
        })
        .await;
        answer.unwrap_or(Err(ApiError::Unavailable(
            "the session did not answer the migration request".into(),
        )))
    }

    /// Graceful shutdown: stops accepting (the listener is closed), asks every session to
    /// finish its statement and close (idle sessions close at once, with ERR 1053 for those
    /// still logging in), and waits for them until `timeout` has passed; sessions still open
    /// then are dropped. [`Proxy::run`](crate::Proxy::run) returns once all are gone. Calling
    /// it again waits again.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownOutcome {
        let deadline = Instant::now() + timeout;
        let inner = &self.inner;
        if !inner.stopping.swap(true, Ordering::SeqCst) {
            tracing::info!(
                sessions = inner.live.load(Ordering::SeqCst),
                ?timeout,
                "shutting down"
            );
            inner.stop.0.close();
            let commands: Vec<_> = inner
                .sessions()
                .values()
                .map(|e| e.commands.clone())
                .collect();
            for c in commands {
                let _ = c.try_send(Command::Shutdown);
            }
        }
        let finished = future::or(
            async {
                let _ = inner.finished.recv().await;
                true
            },
            async {
                Timer::at(deadline).await;
                false
            },
        )
        .await;
        if finished {
            return ShutdownOutcome::Graceful;
        }
        let aborted = inner.live.load(Ordering::SeqCst);
        tracing::warn!(
            sessions = aborted,
            "shutdown deadline passed; dropping the remaining sessions"
        );
        inner.abort.0.close();
        future::or(
            async {
                let _ = inner.finished.recv().await;
            },
            async {
                Timer::after(ABORT_GRACE).await;
            },
        )
        .await;
        ShutdownOutcome::DeadlinePassed { aborted }
    }

    /// The handle as the admin endpoint's [`AdminApi`], to serve `/health`, `/metrics` and
    /// `/api/...` with [`ferry_mio::admin::AdminServer`] (which runs on its own thread).
    pub fn admin_api(&self) -> Arc<dyn AdminApi> {
        Arc::new(self.clone())
    }
}

/// Called from the admin server's thread (not from async code: `migrate` blocks on the
/// session's answer).
impl AdminApi for ProxyHandle {
    fn serving(&self) -> bool {
        self.is_serving()
    }

    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError> {
        Ok(ProxyHandle::backends(self))
    }

    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError> {
        Ok(ProxyHandle::sessions(self))
    }

    fn metrics(&self) -> Result<Metrics, ApiError> {
        Ok(ProxyHandle::metrics(self))
    }

    fn set_draining(&self, backend: &str, draining: bool) -> Result<(), ApiError> {
        ProxyHandle::set_draining(self, backend, draining)
    }

    fn migrate(&self, session: u64, to: &str) -> Result<(), ApiError> {
        smol::block_on(ProxyHandle::migrate(self, session, to))
    }
}
