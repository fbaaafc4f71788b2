//! What the accept loop, the session tasks, the control task and the [`ProxyHandle`]s share:
//! the core's [`Endpoint`] behind one lock, with the I/O routing around it (which session task
//! gets which command, the backend sockets parked in the multiplexing pool), and the signals
//! that stop and abort the tasks.
//!
//! [`ProxyHandle`]: crate::ProxyHandle

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_core::control::{Command, Endpoint, PoolClose, PooledId};
use smol::channel::{Receiver, Sender};
use smol::net::TcpStream;
use smol::Async;

/// The shard of every session: this driver runs one endpoint shard and lets the executor spread
/// the session tasks over its threads.
pub(crate) const SHARD: usize = 0;

/// The endpoint and the command channel of each live session task.
pub(crate) struct Control {
    pub(crate) endpoint: Endpoint,
    /// Each live session's command channel, by session id: where the endpoint's
    /// [`Endpoint::poll_command`] goes.
    routes: HashMap<u64, Sender<Command>>,
    /// Multiplexing: the backend sockets no session holds, unread, by pooled id (any session
    /// task may adopt one; the endpoint decides which, and when one closes).
    parked: HashMap<PooledId, Parked>,
    /// [`Inner::stop`]'s sender: closed once the endpoint stops accepting.
    stop: Sender<Infallible>,
}

impl Control {
    /// Hands the commands the endpoint queued to their session tasks, and stops the accept
    /// loop once the endpoint stops accepting (graceful shutdown, after its delay). Called
    /// after every endpoint call that may queue some (admin requests, timers, probes, drain,
    /// migrate, shutdown...).
    pub(crate) fn deliver(&mut self) {
        if !self.endpoint.is_accepting() {
            self.stop.close();
        }
        while let Some(close) = self.endpoint.poll_pool_close() {
            self.close_parked(close);
        }
        if self.endpoint.take_wakeups().is_empty() {
            return;
        }
        while let Some((id, command)) = self.endpoint.poll_command(SHARD) {
            match self.routes.get(&id) {
                // Unbounded: never full; closed only once the task has ended.
                Some(route) => {
                    let _ = route.try_send(command);
                }
                None => tracing::trace!(session = id, ?command, "command for a closed session"),
            }
        }
    }

    /// Session `id`'s commands go to `route` from now on.
    pub(crate) fn add_route(&mut self, id: u64, route: Sender<Command>) {
        self.routes.insert(id, route);
    }

    /// Session `id` is over.
    pub(crate) fn remove_route(&mut self, id: u64) {
        self.routes.remove(&id);
    }

    /// Keeps backend socket `stream`, unread, under `pooled`, with `out`, the bytes queued for
    /// it and not written yet (the core queues none before a park).
    pub(crate) fn park(&mut self, pooled: PooledId, stream: TcpStream, out: Vec<Bytes>) {
        self.parked.insert(pooled, Parked { stream, out });
    }

    /// The socket parked under `pooled` and its unwritten bytes, for the session that adopts
    /// it; `None` if it is gone.
    pub(crate) fn adopt(&mut self, pooled: PooledId) -> Option<(TcpStream, Vec<Bytes>)> {
        self.parked.remove(&pooled).map(|p| (p.stream, p.out))
    }

    /// Writes a parked socket's farewell (COM_QUIT) and closes it. The writes do not wait (the
    /// lock is held): an idle socket's send buffer is empty, and if it is not, the backend
    /// sees the connection close without it.
    fn close_parked(&mut self, close: PoolClose) {
        let Some(Parked { stream, out }) = self.parked.remove(&close.pooled) else {
            return;
        };
        let socket: Arc<Async<std::net::TcpStream>> = stream.into();
        let mut raw = socket.get_ref();
        // Non-blocking (the reactor's socket): at worst WouldBlock. Dropping closes it.
        for bytes in out.iter().chain([&close.farewell]) {
            if raw.write_all(bytes).is_err() {
                break;
            }
        }
    }
}

/// A backend socket no session holds (multiplexing).
struct Parked {
    stream: TcpStream,
    /// Bytes queued for it and not written when it was parked.
    out: Vec<Bytes>,
}

/// The state of one proxy.
pub(crate) struct Inner {
    control: Mutex<Control>,
    /// `proxy.shutdown-timeout`.
    pub(crate) shutdown_timeout: Duration,
    /// Closed when the endpoint stops accepting (shutdown, after `shutdown-delay`): the accept
    /// loop and the control task stop.
    pub(crate) stop: (Sender<Infallible>, Receiver<Infallible>),
    /// Closed at the shutdown deadline: every session task drops its sockets at once.
    pub(crate) abort: (Sender<Infallible>, Receiver<Infallible>),
    /// Every session task holds a sender of this channel (and `run` holds one while
    /// accepting): receiving fails once all are gone.
    pub(crate) finished: Receiver<Infallible>,
    /// Wakes the control task before its deadline: a health probe finished, so the endpoint's
    /// next timeout moved.
    pub(crate) nudge: (Sender<()>, Receiver<()>),
    /// The address served, once `run` started.
    pub(crate) local_addr: OnceLock<SocketAddr>,
    /// When the proxy was built (`process_start_time_seconds`).
    pub(crate) started: SystemTime,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("local_addr", &self.local_addr.get())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(endpoint: Endpoint, finished: Receiver<Infallible>) -> Self {
        let shutdown_timeout = endpoint.config().proxy.shutdown_timeout;
        let stop = smol::channel::bounded(1);
        Self {
            control: Mutex::new(Control {
                endpoint,
                routes: HashMap::new(),
                parked: HashMap::new(),
                stop: stop.0.clone(),
            }),
            shutdown_timeout,
            stop,
            abort: smol::channel::bounded(1),
            finished,
            nudge: smol::channel::bounded(1),
            local_addr: OnceLock::new(),
            started: SystemTime::now(),
        }
    }

    /// The endpoint (and the routes). Never held across an `.await`. A task that panicked
    /// while holding it (a chooser that panicked) is not a reason to stop every other one, so
    /// poisoning is ignored.
    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the control task (a full channel means a nudge is already pending).
    pub(crate) fn nudge(&self) {
        let _ = self.nudge.0.try_send(());
    }
}
