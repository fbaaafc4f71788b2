//! [`Proxy`]: building one from the binary's [`Config`], and [`Proxy::run`], the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use ferry_core::session::SessionConfig;
use ferry_mio::config::{Config, ConfigError, MigrationMode};
use ferry_mio::proxy::registry::Registry;
use ferry_mio::proxy::{advertise_backend_version, session_config};
use smol::channel::Sender;
use smol::future;
use smol::net::TcpListener;
use smol::{Executor, Timer};

use crate::chooser::BackendChooser;
use crate::handle::ProxyHandle;
use crate::shared::{Inner, Limits, SessionEntry};
use crate::stats::add;
use crate::{balancer, health, session};

/// Pause after a failed `accept` (out of descriptors...): the connection waits in the backlog.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Options for a [`Proxy`]; [`ProxyBuilder::build`] makes it.
pub struct ProxyBuilder {
    config: Config,
    chooser: Option<Box<dyn BackendChooser>>,
    executor: Option<Arc<Executor<'static>>>,
    session_config: Option<SessionConfig>,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("config", &self.config)
            .field("chooser", &self.chooser.is_some())
            .field("executor", &self.executor.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// Routes new sessions through `chooser` (see [`BackendChooser`]).
    pub fn chooser(mut self, chooser: impl BackendChooser) -> Self {
        self.chooser = Some(Box::new(chooser));
        self
    }

    /// Spawns the session tasks on `executor` (whoever runs it runs the sessions); by default
    /// they go to smol's global executor ([`smol::spawn`]).
    pub fn executor(mut self, executor: Arc<Executor<'static>>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Uses this session configuration instead of the one derived from the [`Config`] (for
    /// core options the file does not have, e.g. a `caching_sha2_password` cache).
    pub fn session_config(mut self, session_config: SessionConfig) -> Self {
        self.session_config = Some(session_config);
        self
    }

    /// The proxy. Fails only if a file the configuration names (a backend CA) cannot be read.
    pub fn build(self) -> Result<Proxy, ConfigError> {
        let session_config = match self.session_config {
            Some(s) => s,
            None => {
                let mut s = session_config(&self.config)?;
                advertise_backend_version(&mut s, &self.config);
                s
            }
        };
        let limits = Limits {
            max_connections: self.config.proxy.max_connections,
            shutdown_timeout: self.config.proxy.shutdown_timeout,
            health_interval: self.config.health.interval,
            health_timeout: self.config.health.timeout,
            rebalance: (self.config.migration.mode != MigrationMode::Off).then_some((
                self.config.migration.rebalance_interval,
                self.config.migration.rebalance,
            )),
        };
        let (finished_tx, finished_rx) = smol::channel::bounded(1);
        let inner = Arc::new(Inner::new(
            Registry::new(&self.config.backends),
            Arc::new(session_config),
            self.chooser,
            limits,
            finished_rx,
        ));
        Ok(Proxy {
            inner,
            executor: self.executor,
            finished: finished_tx,
        })
    }
}

/// A proxy, ready to [`run`](Proxy::run) on a listener; [`Proxy::handle`] controls it.
#[derive(Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
    executor: Option<Arc<Executor<'static>>>,
    /// The original of the senders each session task holds (see [`Inner::finished`]).
    finished: Sender<Infallible>,
}

impl Proxy {
    /// A proxy for `config` (the same checked configuration the `ferry` binary runs with; its
    /// `proxy.listen` and `admin` sections are not used: the caller provides the listener, and
    /// may serve the admin endpoint with [`ProxyHandle::admin_api`]).
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// Options beyond the configuration: a [`BackendChooser`], an executor.
    pub fn builder(config: &Config) -> ProxyBuilder {
        ProxyBuilder {
            config: config.clone(),
            chooser: None,
            executor: None,
            session_config: None,
        }
    }

    /// A handle to stop the proxy, list its sessions and backends, drain, migrate.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle::new(Arc::clone(&self.inner))
    }

    /// Serves clients from `listener` until [`ProxyHandle::shutdown`]: checks the backends'
    /// health once (so the first clients find theirs), then accepts, one task per session, and
    /// keeps checking health every `health.interval`. Returns when the listener is closed and
    /// every session has ended (gracefully, or dropped at the shutdown deadline). Errors: only
    /// the listener's local address being unreadable.
    pub async fn run(self, listener: TcpListener) -> io::Result<()> {
        let inner = self.inner;
        let local = listener.local_addr()?;
        let _ = inner.local_addr.set(local);
        health::check_all(&inner).await;
        spawn(
            &self.executor,
            health::run(Arc::clone(&inner), inner.stop.1.clone()),
        );
        if let Some((interval, policy)) = inner.limits.rebalance {
            spawn(
                &self.executor,
                balancer::run(Arc::clone(&inner), interval, policy, inner.stop.1.clone()),
            );
        }
        tracing::info!(listen = %local, backends = inner.registry.backends().len(), "ferry (smol) is serving");
        let stop = inner.stop.1.clone();
        // `accept` has failed since it last succeeded: logged once per episode.
        let mut accept_failing = false;
        loop {
            let accepted = future::or(async { Some(listener.accept().await) }, async {
                let _ = stop.recv().await;
                None
            })
            .await;
            let (stream, addr) = match accepted {
                None => break,
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Some(Err(e)) => {
                    add(&inner.stats.accept_errors, 1);
                    if !accept_failing {
                        accept_failing = true;
                        tracing::warn!(error = %e, retry_every = ?ACCEPT_BACKOFF, "accept failed; clients wait in the backlog");
                    }
                    Timer::after(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            if accept_failing {
                accept_failing = false;
                tracing::info!("accepting again");
            }
            if inner.stopping.load(Ordering::SeqCst) {
                break;
            }
            let live = inner.live.fetch_add(1, Ordering::SeqCst);
            if live >= inner.limits.max_connections {
                inner.live.fetch_sub(1, Ordering::SeqCst);
                add(&inner.stats.refused_max_connections, 1);
                tracing::warn!(client = %addr, max = inner.limits.max_connections, "max-connections reached; connection closed");
                continue;
            }
            add(&inner.stats.accepted, 1);
            let id = inner.next_connection_id();
            let (commands_tx, commands_rx) = smol::channel::unbounded();
            // Listed before the task runs, so that a shutdown starting now reaches it.
            inner.sessions().insert(
                u64::from(id),
                SessionEntry {
                    info: None,
                    commands: commands_tx,
                    target: None,
                    retry_at: None,
                    lasting_pin: false,
                },
            );
            tracing::debug!(session = id, client = %addr, "client connected");
            spawn(
                &self.executor,
                session::serve(
                    Arc::clone(&inner),
                    id,
                    stream,
                    addr,
                    commands_rx,
                    self.finished.clone(),
                ),
            );
        }
        drop(listener);
        drop(self.finished);
        // Err once every session task dropped its sender: all are over.
        let _ = inner.finished.recv().await;
        tracing::info!("ferry (smol) stopped");
        Ok(())
    }
}

/// Runs `task` on `executor`, or on smol's global executor.
fn spawn(
    executor: &Option<Arc<Executor<'static>>>,
    task: impl Future<Output = ()> + Send + 'static,
) {
    match executor {
        Some(ex) => ex.spawn(task).detach(),
        None => smol::spawn(task).detach(),
    }
}
