//! ferry on smol: the same proxy as the `ferry` binary, as a library for async programs.
//!
//! A [`Proxy`] is built from the binary's own checked [`Config`] and runs on a listener the
//! caller provides; a [`ProxyHandle`] stops it gracefully, lists its sessions and backends,
//! drains backends and asks sessions to migrate, and answers the admin endpoint's requests
//! ([`ProxyHandle::handle_admin`]), and applies a new configuration live
//! ([`ProxyHandle::reload`], [`ProxyHandle::reload_with`]). A [`BackendChooser`] lets the
//! embedder route new sessions, e.g. by user name.
//!
//! This crate holds only I/O: sockets, tasks and timers. Every decision is taken by the sans-IO
//! control plane of `ferry-core` ([`ferry_core::control`]), exactly as in the other drivers: one
//! [`Endpoint`](ferry_core::control::Endpoint) per proxy (accepting, backend choice and
//! failover, health verdicts, drains, migrations, the balancer, counters, the admin API), behind
//! a lock, and one [`Connection`](ferry_core::control::Connection) per client session, each
//! served by a task of its own between async sockets. A control task runs the endpoint's timers
//! and the sockets of its health probes.
//!
//! With `[migration] mode` on (`replay` with proxy auth, `tidb` with passthrough), a drain moves
//! every session off the backend and the endpoint's balancer evens out the load; the core moves
//! each session at its next safe point (a session in a transaction waits for its end).
//!
//! The library uses `ferry-core` without its default features (no TOML, HTTP or command-line
//! parsing). Reading the configuration from TOML, as below, takes `ferry-core`'s feature `toml`
//! (`ferry-core = { version = "...", features = ["toml"] }` beside this crate); a program may also
//! fill a [`ConfigFile`] in code and check it with [`Config::from_file`].
//!
//! ```no_run
//! use std::time::Duration;
//! use ferry_smol::{Choice, ChooseRequest, Config, ConfigFile, Proxy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = ConfigFile::parse(r#"
//!     [[backends]]
//!     name = "primary"
//!     addr = "127.0.0.1:3306"
//!     [[backends]]
//!     name = "reports"
//!     addr = "127.0.0.1:3307"
//! "#, None)?;
//! let config = Config::from_file(&file)?;
//! smol::block_on(async {
//!     let proxy = Proxy::builder(&config)
//!         .chooser(|req: &ChooseRequest<'_>| match req.user {
//!             Some("analyst") => Choice::Backend("reports".into()),
//!             _ => Choice::Default,
//!         })
//!         .build()?;
//!     let handle = proxy.handle();
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     println!("serving on {}", listener.local_addr()?);
//!     let serving = smol::spawn(proxy.run(listener));
//!     // ... later:
//!     for s in handle.sessions() {
//!         println!("session {} of {} on {:?}", s.id, s.user, s.backend);
//!     }
//!     handle.drain("primary")?;
//!     handle.shutdown(Duration::from_secs(30)).await;
//!     serving.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! A runnable version: `cargo run -p ferry-smol --example embed -- 127.0.0.1:3306`. The
//! `ferry-smol` example runs this driver with the `ferry` command line, configuration file and
//! admin endpoint (`cargo run -p ferry-smol --example ferry-smol -- --config ferry.toml`; the
//! integration tests and the benchmark start it).
#![forbid(unsafe_code)]

mod control;
mod handle;
mod process_stats;
mod proxy;
mod random;
mod resolve;
mod session;
mod shared;

pub use handle::{ProxyHandle, ShutdownOutcome};
pub use proxy::{Proxy, ProxyBuilder};

/// Admin requests and responses as values, for [`ProxyHandle::handle_admin`] (re-exported from
/// `ferry-core`).
pub use ferry_core::control::admin;
/// The admin types the handle speaks in (re-exported from `ferry-core`).
pub use ferry_core::control::{ApiError, BackendInfo, Metrics, SessionInfo};
/// The chooser types (re-exported from `ferry-core`).
pub use ferry_core::control::{BackendChooser, Choice, ChooseRequest};
/// The configuration types (re-exported from `ferry-core`).
pub use ferry_core::control::{Config, ConfigError, ConfigFile};
/// The reload types (re-exported from `ferry-core`).
pub use ferry_core::control::{ConfigSource, ConfigStatus, ReloadError, ReloadReport};
