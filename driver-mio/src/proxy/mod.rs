//! The proxy: worker threads running mio event loops around the core's
//! [`Endpoint`](ferry_core::control::Endpoint), the control thread (health checks, balancer),
//! the admin endpoint, and graceful shutdown.
//!
//! ```text
//!             ┌──────────── Shared (Arc) ─────────────┐
//!  clients ─► │ worker 0: Poll, listener, connections │ ─► backends
//!  (SO_REUSEPORT) worker 1: ...                        │
//!             │ Mutex<Endpoint>: every decision       │ ◄─ control thread (timers, probes)
//!             │ mailboxes: hand-overs + waker/worker  │ ◄─ admin HTTP thread
//!             │ parked: multiplexing's idle backends  │
//!             └───────────────────────────────────────┘
//! ```
//!
//! [`Proxy::start`] binds everything (errors such as an address in use come back at once), runs
//! the first health round so the first clients find their backends, then starts the workers.
//! [`Proxy::shutdown`] turns `/health/ready` to 503, keeps accepting for `proxy.shutdown-delay`,
//! then closes the listeners, lets every session finish its statement (and its transaction) and
//! returns when the workers are done, at most `proxy.shutdown-timeout` after the listeners closed.

mod control;
mod listen;
mod parked;
mod random;
mod resolver;
mod shared;
mod slab;
mod timers;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use ferry_core::control::admin::wants_process_stats;
use ferry_core::control::{Config, ConfigSource, Endpoint, ReloadError, ReloadReport};

use crate::admin::{AdminServer, Handler};
use crate::process_stats;

pub use random::OsRandom;

use control::ControlThread;
use resolver::Resolver;
use shared::{Mailbox, Shared};
use worker::Worker;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    control: Option<ControlThread>,
    admin: Option<AdminServer>,
}

impl Proxy {
    /// Starts a proxy for `config`. Errors: a file the configuration names (a backend CA)
    /// cannot be read, or an address cannot be bound.
    pub fn start(config: &Config) -> io::Result<Self> {
        let workers = config.proxy.workers.get();
        let endpoint = Endpoint::new(Instant::now(), config, workers)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let shared = Arc::new(Shared::new(endpoint));
        let listeners = listen::bind_listeners(config.proxy.listen, workers)?;
        let local_addr = listeners
            .first()
            .map(|l| l.local_addr())
            .transpose()?
            .unwrap_or(config.proxy.listen);
        let started = SystemTime::now();
        let handler: Handler = {
            let shared = Arc::clone(&shared);
            Arc::new(move |req| {
                // Read before the endpoint's lock is taken: counting descriptors is not free.
                let process = wants_process_stats(req).then(|| process_stats::read(started));
                shared
                    .with_endpoint(|ep| ep.handle_admin_with_process(Instant::now(), req, process))
            })
        };
        let admin = AdminServer::start(&config.admin, handler)?;
        // The first round runs before any client is served, so that they find their backends.
        let next = control::run_timers(&shared);
        let control = ControlThread::start(Arc::clone(&shared), next)?;
        let mut proxy = Self {
            local_addr,
            shared: Arc::clone(&shared),
            workers: Vec::new(),
            control: Some(control),
            admin: Some(admin),
        };
        // Its threads end with the workers, which hold its only handles.
        let resolver = Resolver::start(&shared)?;
        let mut mailboxes = Vec::with_capacity(workers);
        for (index, listener) in listeners.into_iter().enumerate() {
            let (commands, receiver) = std::sync::mpsc::channel();
            let (worker, waker) = Worker::new(
                index,
                listener,
                Arc::clone(&shared),
                config.proxy.shutdown_timeout,
                receiver,
                resolver.clone(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("ferry-worker-{index}"))
                .spawn(move || worker.run())?;
            mailboxes.push(Mailbox { commands, waker });
            proxy.workers.push(thread);
        }
        // Set once, here: nothing else sets it.
        let _ = shared.mailboxes.set(mailboxes);
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

    /// Where [`Proxy::reload`] and `POST /api/config/reload` read the configuration (the
    /// `ferry` binary: its command line's file and flags).
    pub fn set_config_source(&self, source: Box<dyn ConfigSource>) {
        self.shared.with_endpoint(|ep| ep.set_config_source(source));
    }

    /// Reads the configuration from the source and applies what can change live (SIGHUP); the
    /// endpoint logs the outcome. New backends are checked at the control thread's next
    /// wake-up (within a second).
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.shared
            .with_endpoint(|ep| ep.reload_from_source(Instant::now()))
    }

    /// Graceful shutdown: not ready at once, still accepting during `proxy.shutdown-delay`; then
    /// the listeners close and sessions finish their statement or transaction; waits for the
    /// workers (each ends by the endpoint's shutdown deadline), then stops the health checker
    /// and the admin endpoint.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.workers.is_empty() && self.admin.is_none() {
            return;
        }
        // Without a delay, the listeners close now (`Shared::deliver` wakes the workers);
        // otherwise the control thread's timer closes them when the delay ends.
        self.shared
            .with_endpoint(|ep| ep.begin_shutdown(Instant::now()));
        if let Some(control) = &self.control {
            control.nudge();
        }
        for thread in self.workers.drain(..) {
            let _ = thread.join();
        }
        if let Some(control) = self.control.take() {
            control.stop();
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
