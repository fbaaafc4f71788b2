//! [`ProxyHandle`]: the embedder's controls of a running proxy — the operations of the admin
//! endpoint, plus graceful shutdown. Each is a call into the endpoint, whose commands for the
//! sessions are then handed to their tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::control::admin::{wants_process_stats, Request, Response};
use ferry_core::control::{
    ApiError, BackendInfo, Config, ConfigStatus, Metrics, ReloadError, ReloadReport, SessionInfo,
};
use smol::future;
use smol::Timer;

use crate::process_stats;
use crate::shared::{Control, Inner};

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
/// It also answers the admin endpoint's requests ([`ProxyHandle::handle_admin`]), for an
/// embedder that serves `/health`, `/metrics` and `/api/...`.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

impl ProxyHandle {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Runs `f` on the endpoint, then hands the commands it queued to the sessions.
    fn with_control<T>(&self, f: impl FnOnce(&mut Control, Instant) -> T) -> T {
        let mut control = self.inner.control();
        let result = f(&mut control, Instant::now());
        control.deliver();
        result
    }

    /// The address clients connect to, once [`Proxy::run`](crate::Proxy::run) started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr.get().copied()
    }

    /// The configuration's graceful-shutdown deadline (`proxy.shutdown-timeout`), for
    /// [`ProxyHandle::shutdown`].
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.shutdown_timeout
    }

    /// False once shutdown began.
    pub fn is_serving(&self) -> bool {
        self.inner.control().endpoint.is_serving()
    }

    /// The authenticated sessions, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner.control().endpoint.sessions()
    }

    /// Client sessions open now (including those still logging in).
    pub fn session_count(&self) -> usize {
        self.inner.control().endpoint.live_sessions()
    }

    /// The backends in configuration order: health, draining, backend connections open.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.inner.control().endpoint.backends()
    }

    /// The counters, as `/metrics` shows them.
    pub fn metrics(&self) -> Metrics {
        self.inner.control().endpoint.metrics()
    }

    /// Drains backend `backend`: new sessions avoid it (the built-in policy skips it; a chooser
    /// sees the flag in [`ChooseRequest::backends`](crate::ChooseRequest::backends)), and with
    /// migration on, its live sessions move to the other backends, each at its next safe point.
    pub fn drain(&self, backend: &str) -> Result<(), ApiError> {
        self.with_control(|c, now| c.endpoint.set_draining(now, backend, true))
    }

    /// Backend `backend` takes new sessions again (and, with rebalancing on, its share of the
    /// live ones); the drain's moves still waiting (pinned sessions) are called off.
    pub fn undrain(&self, backend: &str) -> Result<(), ApiError> {
        self.with_control(|c, now| c.endpoint.set_draining(now, backend, false))
    }

    /// Gives up the migration requested or running for session `session` (it stays on its
    /// backend; a running migration is rolled back).
    pub fn cancel_migration(&self, session: u64) -> Result<(), ApiError> {
        self.with_control(|c, now| c.endpoint.cancel_migration(now, session))
    }

    /// Asks session `session` to move to backend `to` at its next safe point. `Ok` means the
    /// request was accepted (the session may wait for a safe point), not that the move is done;
    /// [`ProxyHandle::sessions`] shows the new backend once it is. Refused with
    /// [`ApiError::Conflict`] when the core refuses: migration off (`[migration] mode`), already
    /// on that backend, already migrating, target draining or unhealthy, no credential for
    /// replay...; with [`ApiError::UnknownSession`] for a session not (yet) logged in.
    ///
    /// The endpoint answers at once; the method stays `async` for compatibility.
    pub async fn migrate(&self, session: u64, to: &str) -> Result<(), ApiError> {
        self.with_control(|c, now| c.endpoint.migrate(now, session, to))
    }

    /// Reads the configuration from the builder's
    /// [`config_source`](crate::ProxyBuilder::config_source) and applies what can change live:
    /// backends added (they take sessions after their first passing health check, which starts
    /// at once) and removed (drained, then gone), users, limits, timeouts, TLS files; keys that
    /// need a restart are reported, not applied. A refused configuration leaves the running one
    /// as it is. Logged either way.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = self.with_control(|c, now| c.endpoint.reload_from_source(now));
        // New backends: the health round is due now.
        self.inner.nudge();
        result
    }

    /// [`ProxyHandle::reload`] with a configuration the program made itself.
    pub fn reload_with(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let result = self.with_control(|c, now| c.endpoint.reload(now, config));
        self.inner.nudge();
        result
    }

    /// The running configuration's version, keys waiting for a restart, backends still being
    /// removed and the last refused reload (`GET /api/config`).
    pub fn config_status(&self) -> ConfigStatus {
        self.with_control(|c, now| c.endpoint.config_status(now))
    }

    /// Answers one admin request (`/health`, `/metrics`, `/api/...`, as the `ferry` binary's
    /// admin endpoint does), carrying out what it asks (drain, migrate). Reading the request
    /// from a socket is the caller's (with `ferry-core`'s feature `admin-http`:
    /// `ferry_core::control::admin::parse_request`), as is writing
    /// [`Response::to_bytes`]; the `ferry-smol` example serves it on smol. `/metrics` includes
    /// the process's CPU, memory and descriptors (read from `/proc/self` on Linux).
    pub fn handle_admin(&self, request: &Request) -> Response {
        // Read before the endpoint's lock is taken: counting descriptors is not free.
        let process = wants_process_stats(request).then(|| process_stats::read(self.inner.started));
        let response =
            self.with_control(|c, now| c.endpoint.handle_admin_with_process(now, request, process));
        // A reload may have moved the endpoint's timers (a health round for new backends).
        self.inner.nudge();
        response
    }

    /// Graceful shutdown: not ready at once (`/health/ready` answers 503), while new clients
    /// are still accepted for `proxy.shutdown-delay`; then the listener closes and every session
    /// is asked to finish its statement and close (idle sessions close at once, with ERR 1053
    /// for those still logging in; a session inside a transaction may finish it), and waits for
    /// them until `timeout` has passed from the listener's close; sessions still open then are
    /// dropped. [`Proxy::run`](crate::Proxy::run) returns once all are gone. Calling it again
    /// waits again.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownOutcome {
        let inner = &self.inner;
        let delay = self.with_control(|c, now| {
            c.endpoint.begin_shutdown(now);
            c.endpoint.config().proxy.shutdown_delay
        });
        // The control task ends the delay at the endpoint's timer (and `Control::deliver`
        // closes `stop`): it must look at the timer again now.
        inner.nudge();
        let closed = future::or(
            async {
                let _ = inner.stop.1.recv().await;
                true
            },
            async {
                Timer::after(delay + ABORT_GRACE).await;
                false
            },
        )
        .await;
        if !closed {
            // No control task runs the endpoint's timers (the proxy is not running).
            self.with_control(|c, now| c.endpoint.handle_timeout(now));
        }
        let deadline = Instant::now() + timeout;
        tracing::debug!(?timeout, "shutdown deadline");
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
        let aborted = self.session_count();
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
}
