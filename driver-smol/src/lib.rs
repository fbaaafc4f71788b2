//! ferry on smol: the same proxy as the `ferry` binary, as a library for async programs.
//!
//! A [`Proxy`] is built from the binary's own [`Config`](ferry_mio::config::Config) and runs on
//! a listener the caller provides; a [`ProxyHandle`] stops it gracefully, lists its sessions and
//! backends, drains backends and asks sessions to migrate (the operations of the admin endpoint,
//! which it can also serve: [`ProxyHandle::admin_api`]). A [`BackendChooser`] lets the embedder
//! route new sessions, e.g. by user name.
//!
//! With `[migration] mode` on (`replay` with proxy auth, `tidb` with passthrough), a drain moves
//! every session off the backend and a balancer task evens out the load, with the same planner
//! as the mio driver (`ferry_mio::proxy::rebalance`); the core moves each session at its next
//! safe point (a session in a transaction waits for its end).
//!
//! Each client session is one task: the core's sans-IO
//! [`ProxySession`](ferry_core::session::ProxySession) between async sockets, with a timer at the
//! session's next deadline. The driver parses no MySQL byte and takes no protocol decision, so
//! it behaves exactly as the mio driver does.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferry_mio::config::{Config, ConfigFile};
//! use ferry_smol::{Choice, ChooseRequest, Proxy};
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
//! `ferry-smol` binary runs this driver with the `ferry` command line (for the integration
//! tests and the benchmark).
#![forbid(unsafe_code)]

mod balancer;
mod chooser;
mod handle;
mod health;
mod proxy;
mod session;
mod shared;
mod stats;
mod tick;

pub use chooser::{BackendChooser, Choice, ChooseRequest};
pub use handle::{ProxyHandle, ShutdownOutcome};
pub use proxy::{Proxy, ProxyBuilder};

/// The admin types the handle speaks in (re-exported from `ferry-mio`).
pub use ferry_mio::admin::{ApiError, BackendInfo, Metrics, SessionInfo};
/// The configuration types (re-exported from `ferry-mio`).
pub use ferry_mio::config::{Config, ConfigError, ConfigFile};
