//! [`Proxy`]: building one from the checked [`Config`], and [`Proxy::run`], the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::control::{Accept, BackendChooser, Config, ConfigError, ConfigSource, Endpoint};
use ferry_core::session::SessionConfig;
use smol::channel::Sender;
use smol::future;
use smol::io::AsyncWriteExt;
use smol::net::TcpListener;
use smol::{Executor, Timer};

use crate::handle::ProxyHandle;
use crate::random::OsRandom;
use crate::shared::{Inner, SHARD};
use crate::{control, session};

/// Where the proxy's tasks run: the embedder's executor, or smol's global one.
pub(crate) type Spawner = Option<Arc<Executor<'static>>>;

/// Options for a [`Proxy`]; [`ProxyBuilder::build`] makes it.
pub struct ProxyBuilder {
    config: Config,
    chooser: Option<Box<dyn BackendChooser>>,
    executor: Spawner,
    session_config: Option<SessionConfig>,
    source: Option<Box<dyn ConfigSource>>,
}

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("config", &self.config)
            .field("chooser", &self.chooser.is_some())
            .field("executor", &self.executor.is_some())
            .field("config_source", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyBuilder {
    /// Routes new sessions through `chooser` (see [`BackendChooser`]).
    pub fn chooser(mut self, chooser: impl BackendChooser) -> Self {
        self.chooser = Some(Box::new(chooser));
        self
    }

    /// Spawns the proxy's tasks (sessions, health checks) on `executor` (whoever runs it runs
    /// them); by default they go to smol's global executor ([`smol::spawn`]).
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

    /// Where [`ProxyHandle::reload`] and `POST /api/config/reload` read the configuration
    /// (e.g. `move || cli.config()`: a file, checked). Without one, a program may still apply
    /// configurations of its own with [`ProxyHandle::reload_with`].
    pub fn config_source(mut self, source: impl ConfigSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The proxy. Fails only if a file the configuration names (a backend CA) cannot be read.
    pub fn build(self) -> Result<Proxy, ConfigError> {
        let now = Instant::now();
        let mut endpoint = match self.session_config {
            Some(s) => Endpoint::with_session_config(now, &self.config, s, 1),
            None => Endpoint::new(now, &self.config, 1)?,
        };
        if let Some(chooser) = self.chooser {
            endpoint.set_chooser(chooser);
        }
        if let Some(source) = self.source {
            endpoint.set_config_source(source);
        }
        let (finished_tx, finished_rx) = smol::channel::bounded(1);
        Ok(Proxy {
            inner: Arc::new(Inner::new(endpoint, finished_rx)),
            executor: self.executor,
            finished: finished_tx,
        })
    }
}

/// A proxy, ready to [`run`](Proxy::run) on a listener; [`Proxy::handle`] controls it.
#[derive(Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
    executor: Spawner,
    /// The original of the senders each session task holds (see [`Inner::finished`]).
    finished: Sender<Infallible>,
}

impl Proxy {
    /// A proxy for `config` (the same checked configuration the `ferry` binary runs with; its
    /// `proxy.listen` and `admin` sections are not used: the caller provides the listener, and
    /// may serve the admin endpoint with [`ProxyHandle::handle_admin`]).
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
            source: None,
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
        control::first_round(&inner, &self.executor).await;
        spawn(
            &self.executor,
            control::run(Arc::clone(&inner), self.executor.clone()),
        )
        .detach();
        let backends = inner.control().endpoint.config().backends.len();
        tracing::info!(listen = %local, backends, "ferry (smol) is serving");
        let stop = inner.stop.1.clone();
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
                    // Out of descriptors...: the clients wait in the backlog.
                    let retry = inner
                        .control()
                        .endpoint
                        .accept_failed(Instant::now(), SHARD, &e);
                    Timer::at(retry).await;
                    continue;
                }
            };
            let (commands_tx, commands_rx) = smol::channel::unbounded();
            let accepted = {
                let mut control = inner.control();
                let accepted =
                    control
                        .endpoint
                        .accept(Instant::now(), addr, SHARD, Box::new(OsRandom));
                // Routed under the same lock as the accept, so that a shutdown or a command
                // starting now reaches it.
                if let Accept::Connection(conn) = &accepted {
                    control.add_route(conn.id(), commands_tx);
                }
                control.deliver();
                accepted
            };
            let conn = match accepted {
                Accept::Connection(conn) => conn,
                Accept::Refused(refused) => {
                    // Its ERR (max-connections, blocked, shutting down), then the socket closes.
                    let bytes = refused.bytes().clone();
                    let mut stream = stream;
                    spawn(&self.executor, async move {
                        let _ = stream.write_all(&bytes).await;
                    })
                    .detach();
                    continue;
                }
            };
            let task = session::Task::new(Arc::clone(&inner), conn, stream);
            spawn(
                &self.executor,
                task.serve(commands_rx, self.finished.clone()),
            )
            .detach();
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
pub(crate) fn spawn<T: Send + 'static>(
    executor: &Spawner,
    task: impl Future<Output = T> + Send + 'static,
) -> smol::Task<T> {
    match executor {
        Some(ex) => ex.spawn(task),
        None => smol::spawn(task),
    }
}
