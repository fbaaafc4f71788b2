//! The proxy: worker threads running mio event loops, the shared backend registry, the health
//! checker, the admin endpoint, and graceful shutdown.
//!
//! ```text
//!             ┌──────────── Shared (Arc) ─────────────┐
//!  clients ─► │ worker 0: Poll, listener, sessions    │ ─► backends
//!  (SO_REUSEPORT) worker 1: ...                        │
//!             │ Registry: health, draining, counts    │ ◄─ health checker thread
//!             │ session lists, per-worker counters    │ ◄─ admin HTTP thread (AdminApi)
//!             │ mailboxes: commands + waker / worker  │ ◄─ balancer thread (migration on)
//!             └───────────────────────────────────────┘
//! ```
//!
//! Migration: a drain, an admin `migrate` or the balancer's plan ([`rebalance`]) becomes a
//! command to the worker owning the session, which calls the core's `start_migration`; the core
//! waits for a safe point and asks for the new connection like any other.
//!
//! [`Proxy::start`] binds everything (errors such as an address in use come back at once), runs
//! one health round so the first clients find their backends, then starts the workers.
//! [`Proxy::shutdown`] stops accepting, lets every session finish its statement
//! (`begin_shutdown`) and returns when the workers are done, at most `proxy.shutdown-timeout`
//! later.

mod balancer;
pub mod health;
mod listen;
pub mod migration;
mod random;
pub mod rebalance;
pub mod registry;
pub mod session;
mod session_config;
mod shared;
mod slab;
pub mod stats;
mod timers;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::Waker;

use crate::admin::AdminServer;
use crate::config::{Config, MigrationMode};

pub use random::OsRandom;
pub use session::{CoreSessions, Session, SessionFactory};
pub use session_config::{advertise_backend_version, session_config};

use balancer::Balancer;
use health::HealthChecker;
use registry::Registry;
use shared::{Mailbox, ProxyAdmin, Shared};
use worker::{Worker, WorkerLimits};

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    workers: Vec<JoinHandle<()>>,
    health: Option<HealthChecker>,
    balancer: Option<Balancer>,
    admin: Option<AdminServer>,
}

impl Proxy {
    /// Starts a proxy for `config` whose sessions `factory` makes.
    pub fn start<F: SessionFactory>(config: &Config, factory: F) -> io::Result<Self> {
        let workers = config.proxy.workers.get();
        let shared = Arc::new(Shared::new(Registry::new(&config.backends), workers));
        let listeners = listen::bind_listeners(config.proxy.listen, workers)?;
        let local_addr = listeners
            .first()
            .map(|l| l.local_addr())
            .transpose()?
            .unwrap_or(config.proxy.listen);
        let admin = AdminServer::start(
            config.admin.listen,
            Arc::new(ProxyAdmin(Arc::clone(&shared))),
        )?;
        // The first round runs before any client is served, so that they find their backends.
        health::check_all(&shared, config.health.timeout);
        let health = HealthChecker::start(
            Arc::clone(&shared),
            config.health.interval,
            config.health.timeout,
        )?;
        let limits = WorkerLimits {
            max_connections: config.proxy.max_connections,
            shutdown_timeout: config.proxy.shutdown_timeout,
        };
        let factory = Arc::new(factory);
        let mut proxy = Self {
            local_addr,
            shared: Arc::clone(&shared),
            wakers: Vec::new(),
            workers: Vec::new(),
            health: Some(health),
            balancer: None,
            admin: Some(admin),
        };
        let mut mailboxes = Vec::with_capacity(workers);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (commands, receiver) = std::sync::mpsc::channel();
            let (worker, waker) = Worker::new(
                index,
                listener,
                Arc::clone(&shared),
                Arc::clone(&factory),
                limits,
                receiver,
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("ferry-worker-{index}"))
                .spawn(move || worker.run())?;
            mailboxes.push(Mailbox {
                commands,
                waker: Arc::clone(&waker),
            });
            proxy.wakers.push(waker);
            proxy.workers.push(thread);
        }
        // Set once, here: nothing else sets it.
        let _ = shared.mailboxes.set(mailboxes);
        if config.migration.mode != MigrationMode::Off {
            proxy.balancer = Some(Balancer::start(
                Arc::clone(&shared),
                config.migration.rebalance_interval,
                config.migration.rebalance,
            )?);
        }
        tracing::info!(listen = %local_addr, workers, backends = config.backends.len(), "ferry is serving");
        Ok(proxy)
    }

    /// The address clients connect to (the bound port when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Graceful shutdown: stop accepting, let sessions finish their statement, wait for the
    /// workers (each ends within the shutdown timeout), then stop the health checker and the
    /// admin endpoint.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.workers.is_empty() && self.admin.is_none() {
            return;
        }
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        if let Some(balancer) = self.balancer.take() {
            balancer.stop();
        }
        for waker in &self.wakers {
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "cannot wake a worker");
            }
        }
        for thread in self.workers.drain(..) {
            let _ = thread.join();
        }
        if let Some(health) = self.health.take() {
            health.stop();
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        tracing::info!("ferry stopped");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
