//! What the workers, the control thread and the admin endpoint share: the core's
//! [`Endpoint`] behind a lock, and each worker's mailbox.
//!
//! The endpoint decides; this only moves things between threads. A worker takes the lock when a
//! session needs the endpoint (login, move, pin, close) and never for the bytes of a statement.
//! Commands the endpoint queues for sessions (migrate, cancel, shutdown) wait in it, by worker;
//! [`Shared::deliver`] rings the waker of every worker that has some, and the worker takes them
//! with [`Endpoint::poll_command`]. A client accepted by one worker and placed on another by the
//! endpoint travels as a [`WorkerCommand::Adopt`].
//!
//! Multiplexing's parked backend sockets are here too ([`super::parked`]), and every release of
//! the endpoint's lock closes the ones the endpoint let go of
//! ([`Endpoint::poll_pool_close`]): after a sync, its timers, a session's close or shutdown
//! alike, without each caller having to remember it.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ferry_core::control::{Connection, Endpoint};
use ferry_core::session::BackendConnId;
use mio::Waker;

use super::parked::ParkedSockets;

/// What a worker is handed by another thread, besides the endpoint's commands.
#[derive(Debug)]
pub(crate) enum WorkerCommand {
    /// Serve this client: another worker accepted it and the endpoint placed it here.
    Adopt {
        stream: mio::net::TcpStream,
        conn: Box<Connection>,
    },
    /// A backend's host name was looked up (see [`super::resolver`]) for backend connection
    /// `conn` of session `session` in `slot`: its addresses, or the core's error.
    Resolved {
        slot: usize,
        session: u64,
        conn: BackendConnId,
        result: std::io::Result<Vec<std::net::SocketAddr>>,
    },
}

/// A worker's channel and the waker that interrupts its poll.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) commands: Sender<WorkerCommand>,
    pub(crate) waker: Arc<Waker>,
}

/// Everything the threads of one proxy share.
#[derive(Debug)]
pub(crate) struct Shared {
    endpoint: Mutex<Endpoint>,
    /// Set once the endpoint stopped accepting (graceful shutdown, after its delay): the
    /// workers close their listeners.
    pub(crate) shutting_down: AtomicBool,
    /// One per worker, set once the workers exist.
    pub(crate) mailboxes: OnceLock<Vec<Mailbox>>,
    /// Multiplexing's backend sockets no session holds.
    pub(crate) parked: ParkedSockets,
}

impl Shared {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint: Mutex::new(endpoint),
            shutting_down: AtomicBool::new(false),
            mailboxes: OnceLock::new(),
            parked: ParkedSockets::default(),
        }
    }

    /// The endpoint. A thread that panicked while holding it left it as the last completed call
    /// did (no call is left half-done by a panic in this driver's code), so poisoning is ignored.
    pub(crate) fn endpoint(&self) -> EndpointGuard<'_> {
        let guard = self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        EndpointGuard {
            guard: Some(guard),
            parked: &self.parked,
        }
    }

    /// Wakes the workers whose sessions have commands waiting in the endpoint, and every
    /// worker when the endpoint stopped accepting (they close their listeners).
    pub(crate) fn deliver(&self, endpoint: &mut Endpoint) {
        let mut woken = endpoint.take_wakeups();
        let Some(mailboxes) = self.mailboxes.get() else {
            return;
        };
        if !endpoint.is_accepting() && !self.shutting_down.swap(true, Ordering::SeqCst) {
            woken = (0..mailboxes.len()).collect();
        }
        for worker in woken {
            if let Some(m) = mailboxes.get(worker) {
                if let Err(e) = m.waker.wake() {
                    tracing::warn!(worker, error = %e, "cannot wake a worker");
                }
            }
        }
    }

    /// Runs `f` on the endpoint and wakes the workers it gave commands to.
    pub(crate) fn with_endpoint<T>(&self, f: impl FnOnce(&mut Endpoint) -> T) -> T {
        let mut endpoint = self.endpoint();
        let out = f(&mut endpoint);
        self.deliver(&mut endpoint);
        out
    }
}

/// The endpoint's lock. Dropping it takes the pooled connections the endpoint asked to close,
/// releases the lock, then closes them (their farewells are written outside the lock).
#[derive(Debug)]
pub(crate) struct EndpointGuard<'a> {
    /// `None` only while being dropped.
    guard: Option<MutexGuard<'a, Endpoint>>,
    parked: &'a ParkedSockets,
}

impl Deref for EndpointGuard<'_> {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        // Some until drop.
        self.guard
            .as_deref()
            .expect("endpoint guard used after drop")
    }
}

impl DerefMut for EndpointGuard<'_> {
    fn deref_mut(&mut self) -> &mut Endpoint {
        // Some until drop.
        self.guard
            .as_deref_mut()
            .expect("endpoint guard used after drop")
    }
}

impl Drop for EndpointGuard<'_> {
    fn drop(&mut self) {
        let Some(mut endpoint) = self.guard.take() else {
            return;
        };
        let closes: Vec<_> = std::iter::from_fn(|| endpoint.poll_pool_close()).collect();
        drop(endpoint);
        self.parked.close(closes);
    }
}
