//! The control plane: the proxy as a whole, sans-IO, beside the per-session state machine
//! (quinn-proto's `Endpoint` beside its `Connection`). Feature `control` (on by default).
//!
//! - [`Endpoint`]: one per proxy. The configuration ([`config`]), the backend registry and
//!   health verdicts ([`health`]: the probe is a state machine too), placement and failover of
//!   backend connections (with an optional [`BackendChooser`]), drain, undrain and migrate, the
//!   balancer ([`rebalance`]), counters and histograms, live reload of the configuration
//!   ([`reload`]), and the admin API as requests in, responses out ([`admin`]). A multi-threaded driver wraps it in a lock; a single-threaded one
//!   owns it.
//! - [`Connection`]: one per client connection: the core's
//!   [`ProxySession`](crate::session::ProxySession) plus what the control plane tracks for it. It
//!   asks for sockets ([`IoEvent`]) and, when it has work for the endpoint, for a
//!   [`Endpoint::sync`]. It also speaks the PROXY protocol on both sides
//!   ([`proxy_protocol`](crate::proxy_protocol)): the header a trusted load balancer sends before
//!   the client's bytes, and the one it sends first to backends configured for it.
//!
//! A driver holds only I/O: sockets, readiness or tasks, timers, threads, signals and logging
//! set-up. It reads the clock and passes `now` in; it never decides. The drain rule it follows is
//! on [`Connection`]'s module page; a whole driver on `std::net` in under 350 lines is
//! `core/examples/ferry-std.rs`.
//!
//! Features beyond `control`: `toml` (reading the TOML configuration file), `admin-http`
//! (parsing admin requests from bytes, with `httparse`), `cli` (the `ferry` command line, with
//! `clap`). An embedder who wants only the protocol turns off the default features.

mod accept;
pub mod admin;
pub mod build_info;
mod chooser;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
mod connection;
mod counters;
mod endpoint;
mod failed_logins;
pub mod health;
mod log_limit;
mod migration;
mod pool;
mod proxy_header;
pub mod rebalance;
mod registry;
pub mod reload;
mod session_config;
pub mod statements;

pub use accept::{Accept, Refusal, RefusalReason};
pub use admin::{AdminApi, ApiError, BackendInfo, Metrics, ProcessStats, SessionInfo};
pub use chooser::{BackendChooser, Choice, ChooseRequest};
pub use config::{Config, ConfigError, ConfigFile};
pub use connection::{Connection, IoEvent, PoolClose, PooledId};
pub use counters::Counters;
pub use endpoint::{Command, Endpoint, ACCEPT_BACKOFF, ACCEPT_WARN_EVERY};
pub use health::{is_local_exhaustion, CheckFailure, HealthProbe, Verdict};
pub use registry::{Backend, Registry};
pub use reload::{ConfigSource, ConfigStatus, ReloadError, ReloadReport};
pub use session_config::session_config;
