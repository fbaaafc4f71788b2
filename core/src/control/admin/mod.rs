//! The admin HTTP endpoint: health, Prometheus metrics, and the JSON API that lists backends and
//! sessions and triggers drains and migrations.
//!
//! | request | answer |
//! |---|---|
//! | `GET /health/ready`, `GET /health` | 200 `ok` while serving; 503 until the first health round is over and once shutdown began (during `proxy.shutdown-delay` new clients are still accepted) |
//! | `GET /health/live` | 200 `ok` while the process runs (answered first, without the endpoint) |
//! | `GET /metrics` | Prometheus text exposition 0.0.4 ([`metrics`]) |
//! | `GET /api/backends` | `[{"name", "addr", "healthy", "sessions", "draining"}]`, plus `"health_warning"` when a check found one (a refused monitor login) and `"down_reason"` while it is down |
//! | `GET /api/sessions` | `[{"id", "user", "backend", "pinned", "client"}]` (`backend`, `pinned`: string or null; `client`: `IP:port`, from the PROXY header when a trusted balancer sent one) |
//! | `POST /api/backends/{name}/drain`, `.../undrain` | 200 `{"backend", "draining"}`; 404 unknown backend |
//! | `POST /api/sessions/{id}/migrate`, body `{"to": "name"}` | 202 `{"session", "to"}`; 400 bad JSON; 404 unknown session or backend; 409 refused |
//! | `GET /api/config` | `{"version", "age_seconds", "pending_restart", "removing", "last_error"}` ([`ConfigStatus`]) |
//! | `POST /api/config/reload` | 200 [`ReloadReport`] `{"version", "added", "removed", "changed", "pending_restart"}`; 422 `{"error", "problems": [{"key", "reason"}]}` refused (the running configuration stays); 501 no source; 503 shutting down |
//!
//! Every route but `/health` and below is subject to [`check_access`]: tokens, `Host`, and
//! what a browser could send cross-site (see [`access`](check_access)).
//!
//! Layers: [`parse`] parses request bytes (with `httparse`, capped; feature `admin-http`),
//! [`http`] holds the request and response values, [`serve`] checks access and [`route`] maps
//! a request to [`AdminApi`] calls and their answers to a response. The
//! [`Endpoint`](super::Endpoint) implements the API
//! ([`Endpoint::handle_admin`](super::Endpoint::handle_admin)). A driver accepts sockets,
//! admits them in [`AdminSlots`] (the cap on open connections), and moves bytes through an
//! [`AdminConnection`] (TLS, the request's size and time limits, `/health/live`), giving the
//! requests it yields to the endpoint.

mod access;
#[cfg(feature = "admin-http")]
mod conn;
pub mod http;
pub mod metrics;
#[cfg(feature = "admin-http")]
pub mod parse;
mod process;
mod routes;
mod slots;

use serde::Serialize;

use super::reload::{ConfigStatus, ReloadError, ReloadReport};

pub use access::check_access;
#[cfg(feature = "admin-http")]
pub use conn::AdminConnection;
pub use http::{Headers, Request, Response};
pub use metrics::{Histogram, Metrics, PoolMetrics, StatementCount};
#[cfg(feature = "admin-http")]
pub use parse::{parse_request, Parsed, MAX_BODY, MAX_HEAD, MAX_HEADERS};
pub use process::{wants_process_stats, ProcessStats};
pub use routes::{is_live, live, route, serve};
pub use slots::AdminSlots;

/// One backend as `GET /api/backends` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    /// Its configured name.
    pub name: String,
    /// Its address as configured (`IP:port`, or `host:port` for one given by host name).
    pub addr: String,
    /// Passing health checks.
    pub healthy: bool,
    /// Sessions on it now.
    pub sessions: u64,
    /// Being drained: takes no new sessions, live ones move away.
    pub draining: bool,
    /// What the last health check found that leaves the backend up but needs the operator (the
    /// monitor account's login refused, with the server's ERR); left out of the JSON when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_warning: Option<String>,
    /// Why it is down: the last failed health check or backend connect (`connect: Connection
    /// refused`, `cannot resolve "db1.internal": ...`); left out of the JSON while it is healthy
    /// or before its first check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
}

/// One client session as `GET /api/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// The session id (the connection id the client sees).
    pub id: u64,
    /// The user it logged in as (empty before authentication).
    pub user: String,
    /// The backend it is on; `None` before it has one.
    pub backend: Option<String>,
    /// Why it cannot be migrated now (`"transaction"`, `"temporary table"`, ...); `None` if it can.
    pub pinned: Option<String>,
    /// The client's address (`IP:port`; from its PROXY protocol header when a trusted load
    /// balancer sent one).
    pub client: String,
}

/// Why the proxy refused or could not carry out an admin request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No backend has this name (404).
    #[error("no backend named {0:?}")]
    UnknownBackend(String),
    /// No live session has this id (404).
    #[error("no session with id {0}")]
    UnknownSession(u64),
    /// The request is understood but cannot be done in the current state (409): migration off,
    /// target unhealthy or draining, already on that backend, ...
    #[error("{0}")]
    Conflict(String),
    /// The proxy cannot answer now (503): shutting down, or its event loop did not reply in time.
    #[error("{0}")]
    Unavailable(String),
}

/// What the admin routes need from the proxy: the [`Endpoint`](super::Endpoint) at one instant
/// (and fakes in tests).
pub trait AdminApi {
    /// True while serving; false once shutdown began (`/health/ready` and `/health` answer 503).
    fn serving(&self) -> bool;
    /// True until the first health round is over: no client is served yet (the advertised
    /// version is not known), so `/health/ready` and `/health` answer 503 `starting`.
    fn starting(&self) -> bool {
        false
    }
    /// A snapshot of the backends, in configuration order.
    fn backends(&self) -> Result<Vec<BackendInfo>, ApiError>;
    /// A snapshot of the live sessions.
    fn sessions(&self) -> Result<Vec<SessionInfo>, ApiError>;
    /// A snapshot of the counters.
    fn metrics(&self) -> Result<Metrics, ApiError>;
    /// Starts (`true`) or stops (`false`) draining the backend called `backend`.
    fn set_draining(&mut self, backend: &str, draining: bool) -> Result<(), ApiError>;
    /// Asks for session `session` to migrate to backend `to` at its next safe point. `Ok` means
    /// the request was accepted, not that the migration is done.
    fn migrate(&mut self, session: u64, to: &str) -> Result<(), ApiError>;
    /// The running configuration's version and reload state (`GET /api/config`).
    fn config_status(&self) -> Result<ConfigStatus, ApiError> {
        Err(ApiError::Unavailable("no configuration status".into()))
    }
    /// Reads the configuration again and applies it (`POST /api/config/reload`).
    fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        Err(ReloadError::NoSource)
    }
}
