//! Host names of backends, looked up off the event loops: a worker never calls `getaddrinfo`
//! (it may take seconds), it queues a [`Lookup`] for a few resolver threads, which hand the
//! result back through the worker's mailbox and ring its waker. The queue is bounded: a lookup
//! that finds it full fails at once as ferry's own trouble ([`BackendAddr::resolver_busy`]),
//! which marks no backend down. Nothing is cached: each connect looks the name up again, so a
//! DNS change is followed (the system resolver may cache). A session's connect deadline (the
//! core's) covers the lookup: a lookup that hangs ends the attempt there, and its late result
//! is dropped.
//!
//! Health checks run on threads of their own and look names up in place, bounded by the check's
//! time ([`connect_within`]).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferry_core::control::config::BackendAddr;
use ferry_core::session::BackendConnId;

use super::shared::{Shared, WorkerCommand};

/// Resolver threads: lookups run side by side, so that one slow name does not hold up others.
const THREADS: usize = 4;
/// Lookups waiting for a thread, at most.
const QUEUE: usize = 1024;
/// How long a result waits for the workers' mailboxes (set right after the workers start).
const MAILBOX_WAIT: Duration = Duration::from_secs(5);

/// A lookup for backend connection `conn` of the session in worker `worker`'s slot `slot`.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) worker: usize,
    pub(crate) slot: usize,
    pub(crate) session: u64,
    pub(crate) conn: BackendConnId,
    pub(crate) addr: BackendAddr,
}

/// The queue of the resolver threads; they end once every handle is dropped (the workers').
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    lookups: SyncSender<Lookup>,
}

impl Resolver {
    /// Starts the threads; results go to the workers' mailboxes in `shared`.
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        let (lookups, queue) = mpsc::sync_channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..THREADS {
            let (queue, shared) = (Arc::clone(&queue), Arc::clone(shared));
            std::thread::Builder::new()
                .name(format!("ferry-resolver-{i}"))
                .spawn(move || serve(&queue, &shared))?;
        }
        Ok(Self { lookups })
    }

    /// Queues `lookup`; gives it back when the queue is full.
    pub(crate) fn lookup(&self, lookup: Lookup) -> Result<(), Lookup> {
        self.lookups.try_send(lookup).map_err(|e| match e {
            TrySendError::Full(l) | TrySendError::Disconnected(l) => l,
        })
    }
}

/// One resolver thread: lookups until the queue's senders are gone.
fn serve(queue: &Mutex<Receiver<Lookup>>, shared: &Shared) {
    loop {
        // One thread waits on the queue, the others on the lock; none holds it while resolving.
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(lookup) = next else {
            return;
        };
        let result = resolve(&lookup.addr);
        let Some(mailbox) = mailbox(shared, lookup.worker) else {
            continue;
        };
        let command = WorkerCommand::Resolved {
            slot: lookup.slot,
            session: lookup.session,
            conn: lookup.conn,
            result,
        };
        if mailbox.commands.send(command).is_ok() {
            if let Err(e) = mailbox.waker.wake() {
                tracing::warn!(worker = lookup.worker, error = %e, "cannot wake a worker");
            }
        }
    }
}

fn mailbox(shared: &Shared, worker: usize) -> Option<&super::shared::Mailbox> {
    let since = Instant::now();
    loop {
        if let Some(mailboxes) = shared.mailboxes.get() {
            return mailboxes.get(worker);
        }
        if since.elapsed() > MAILBOX_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `addr`'s addresses in order, or the core's error for a failed lookup (blocking).
pub(crate) fn resolve(addr: &BackendAddr) -> io::Result<Vec<SocketAddr>> {
    match addr.name() {
        None => addr.resolved(Ok(Vec::new())),
        Some(host) => addr.resolved((host, addr.port()).to_socket_addrs()),
    }
}

/// Connects to `addr` (its addresses in order) with blocking sockets, the lookup included
/// within `limit`: a lookup runs on a thread of its own, so that a resolver that hangs costs
/// a health check its time, not the control thread's rounds.
pub(crate) fn connect_within(addr: &BackendAddr, limit: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    let addrs = match addr.ip() {
        Some(ip) => vec![ip],
        None => {
            let (found, wait) = mpsc::channel();
            let lookup = addr.clone();
            std::thread::Builder::new()
                .name("ferry-resolve".into())
                .spawn(move || drop(found.send(resolve(&lookup))))?;
            match wait.recv_timeout(limit) {
                Ok(result) => result?,
                Err(_) => return Err(addr.resolve_timed_out(limit)),
            }
        }
    };
    let mut addrs = VecDeque::from(addrs);
    let mut last = io::Error::from(io::ErrorKind::TimedOut);
    while let Some(a) = addrs.pop_front() {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&a, left.max(Duration::from_millis(1))) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
