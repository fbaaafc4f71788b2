//! The admin HTTP endpoint: health, Prometheus metrics, and the JSON API that lists backends and
//! sessions and triggers drains and migrations.
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200 `ok` while serving, 503 while shutting down |
//! | `GET /health/live` | 200 `ok` while the process runs (answered first, without the endpoint) |
//! | `GET /metrics` | Prometheus text exposition 0.0.4 ([`metrics`]) |
//! | `GET /api/backends` | `[{"name", "addr", "healthy", "sessions", "draining"}]` |
//! | `GET /api/sessions` | `[{"id", "user", "backend", "pinned"}]` (`backend`, `pinned`: string or null) |
//! | `POST /api/backends/{name}/drain`, `.../undrain` | 200 `{"backend", "draining"}`; 404 unknown backend |
//! | `POST /api/sessions/{id}/migrate`, body `{"to": "name"}` | 202 `{"session", "to"}`; 400 bad JSON; 404 unknown session or backend; 409 refused |
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
mod routes;
mod slots;

use serde::Serialize;

pub use access::check_access;
#[cfg(feature = "admin-http")]
pub use conn::AdminConnection;
pub use http::{Headers, Request, Response};
pub use metrics::{Histogram, Metrics};
#[cfg(feature = "admin-http")]
pub use parse::{parse_request, Parsed, MAX_BODY, MAX_HEAD, MAX_HEADERS};
pub use routes::{is_live, live, route, serve};
pub use slots::AdminSlots;

/// One backend as `GET /api/backends` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    /// Its configured name.
    pub name: String,
    /// Its address (`IP:port`).
    pub addr: String,
    /// Passing health checks.
    pub healthy: bool,
    /// Sessions on it now.
    pub sessions: u64,
    /// Being drained: takes no new sessions, live ones move away.
    pub draining: bool,
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
    /// True while serving; false once shutdown began (`/health` answers 503).
    fn serving(&self) -> bool;
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
}
