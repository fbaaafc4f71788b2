//! One event loop: a `mio::Poll`, its own client listener, and the sessions it accepted.
//!
//! The loop only moves bytes and executes the sessions' requests; every protocol decision is the
//! session's. Its rules:
//!
//! - **Reads** go into one 64 KiB buffer per worker (never per session) and straight into
//!   `handle_input`; a read shorter than the buffer means the socket is drained (mio is
//!   edge-triggered, and the next byte makes a new edge), so no extra `read` returns WouldBlock.
//! - **After every call** into a session (the core's drain rule): the endpoint is synced under
//!   its lock when the connection asks for it, the transmits are queued per socket, the socket
//!   events are executed, and every socket that got bytes is flushed once with `writev`: a result set of a
//!   hundred rows costs one system call, not a hundred. Bytes stay queued only when the socket
//!   would block (WRITABLE interest is always registered, so the edge wakes us).
//! - **Back-pressure**: a socket is read only while its session `wants_input` from it and the
//!   opposite side's write queue is under [`HIGH_WATER`]; READABLE interest is dropped otherwise
//!   and re-registered when that changes (re-registering reports data already waiting).
//! - **Backends** are connected without blocking to the address the session's
//!   [`Connection`] names (the core's endpoint chose it); WRITABLE (or an error) completes the
//!   attempt, judged by `take_error` and `peer_addr`, and the result goes back to the connection.
//!   A host name goes to the resolver threads first ([`super::resolver`]); its addresses come
//!   back through the mailbox and are tried in order.
//!   Failover, marking a backend down and refusals are the endpoint's, at the next sync.
//! - **Multiplexing**: a backend socket the session parks leaves the session's tables and queues
//!   for the shared parked sockets, inside the endpoint lock of the sync that told the endpoint,
//!   but stays in this worker's poll under its reserved token: taken back here (the common
//!   case), it costs no system call; adopted by another worker, it moves to that worker's poll
//!   and this worker frees the token before its next poll ([`parking`]). Releasing the
//!   endpoint's lock closes the pooled ones the endpoint let go of.
//! - **Timers**: each session's `poll_timeout` is armed in a per-worker heap ([`super::timers`]).
//!   When a session's timer fires while it is idle (the core releases its buffers once idle for
//!   a moment), its sockets' empty write queues are released too: an idle client costs little.
//! - **Shutdown**: once the endpoint stops accepting (after `shutdown-delay`), the listener is
//!   closed, the endpoint's `Shutdown` commands reach the sessions, and the loop ends when all
//!   sessions are gone and their last bytes written, or at the endpoint's shutdown deadline.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use ferry_core::control::{Accept, Connection, IoEvent};
use ferry_core::session::{BackendConnId, Peer, Transmit};

use super::random::OsRandom;
use super::resolver::Resolver;
use super::shared::{Shared, WorkerCommand};
use super::slab::Slab;
use super::timers::{Deadline, Fire, Timers};
use parking::{park_socket, ParkedHere};

mod close;
mod commands;
mod connect;
mod parking;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Socket `i` has token `FIRST_SOCKET + i`.
const FIRST_SOCKET: usize = 2;
/// The per-worker read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Stop reading one side while the other side has this much queued and unwritten.
pub(crate) const HIGH_WATER: usize = 1 << 20;
/// Buffers handed to one `writev`.
const MAX_IOV: usize = 64;
/// How long a closing socket may take to deliver its last bytes and see the peer's FIN.
const LINGER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A backend connection in progress.
    Connecting,
    Open,
    /// Detached from its session: writing its last bytes, then waiting for the peer's FIN.
    Closing,
}

#[derive(Debug)]
struct Socket {
    stream: TcpStream,
    /// Session slot and id (the id tells a reused slot apart).
    session: usize,
    session_id: u64,
    peer: Peer,
    state: State,
    out: VecDeque<Bytes>,
    queued: usize,
    /// READABLE is part of the registered interest.
    reading: bool,
    /// Reading is over (EOF, error, or write side failed).
    eof: bool,
    /// Input may be waiting that no edge will report (edge-triggered polling): a readable edge
    /// was taken and no read has drained the socket since. A socket parked so is re-armed when
    /// taken back ([`parking::moor`]).
    unread: bool,
    /// Tells this socket's linger timer from a reused slot's.
    generation: u64,
    /// A backend connect's next addresses (a host name's other addresses), tried in order if
    /// this one fails.
    fallback: VecDeque<SocketAddr>,
}

#[derive(Debug)]
struct Slot {
    conn: Connection,
    id: u64,
    client: usize,
    backends: Vec<(BackendConnId, usize)>,
    /// Backend connections whose host name the resolver threads are looking up.
    resolving: Vec<BackendConnId>,
    deadline: Deadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Session {
        slot: usize,
        id: u64,
    },
    Linger {
        socket: usize,
        generation: u64,
    },
    /// Accepting again after a failed `accept` (the endpoint's back-off).
    AcceptRetry,
}

/// One worker thread's event loop.
pub(crate) struct Worker {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    shutdown_timeout: Duration,
    buf: Box<[u8]>,
    sockets: Slab<Socket>,
    sessions: Slab<Slot>,
    timers: Timers<TimerKey>,
    /// Sockets with bytes queued since the last flush.
    touched: Vec<usize>,
    /// Socket events taken from a session, executed after its transmits are queued.
    pending: Vec<IoEvent>,
    next_generation: u64,
    shutdown_deadline: Option<Instant>,
    /// A [`TimerKey::AcceptRetry`] is armed.
    accept_retry_armed: bool,
    /// Clients handed over by other workers, with [`WAKER`] rung after each (which also says
    /// the endpoint may have commands for this worker's sessions).
    commands: Receiver<WorkerCommand>,
    /// Looks backends' host names up (its results come through `commands`).
    resolver: Resolver,
    /// Backend sockets this worker parked that are still in its poll.
    parked_here: ParkedHere,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker serving `listener`; the waker interrupts its poll (for shutdown and after a
    /// command is sent on `commands`' sender).
    pub(crate) fn new(
        index: usize,
        mut listener: TcpListener,
        shared: Arc<Shared>,
        shutdown_timeout: Duration,
        commands: Receiver<WorkerCommand>,
        resolver: Resolver,
    ) -> io::Result<(Self, Arc<Waker>)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let parked_here = ParkedHere::new(poll.registry())?;
        Ok((
            Self {
                index,
                poll,
                listener: Some(listener),
                shared,
                shutdown_timeout,
                buf: vec![0; READ_BUFFER].into_boxed_slice(),
                sockets: Slab::default(),
                sessions: Slab::default(),
                timers: Timers::default(),
                touched: Vec::new(),
                pending: Vec::new(),
                next_generation: 0,
                shutdown_deadline: None,
                accept_retry_armed: false,
                commands,
                resolver,
                parked_here,
            },
            waker,
        ))
    }

    /// Runs until shutdown completes (or polling fails).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut ready: Vec<(Token, bool, bool, bool)> = Vec::with_capacity(1024);
        // The clock is read once per iteration, after the poll: the next timeout counts from
        // that reading, so a timer fires late by at most the time one iteration takes.
        let mut now = Instant::now();
        loop {
            // Every event collected for them has been handled: their sockets left the poll.
            for key in self.parked_here.vacated() {
                self.sockets.release(key);
            }
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    now = Instant::now();
                    continue;
                }
                tracing::error!(worker = self.index, error = %e, "poll failed; worker stops");
                break;
            }
            ready.clear();
            ready.extend(events.iter().map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed(),
                    e.is_writable() || e.is_write_closed(),
                    e.is_error() || e.is_read_closed(),
                )
            }));
            now = Instant::now();
            for &(token, readable, writable, error) in &ready {
                match token {
                    LISTENER => self.accept_all(now),
                    WAKER => self.run_commands(now),
                    Token(t) => {
                        self.socket_ready(t - FIRST_SOCKET, readable, writable, error, now);
                    }
                }
            }
            self.fire_timers(now);
            if self.shutdown_deadline.is_none() && self.shared.shutting_down.load(Ordering::SeqCst)
            {
                self.begin_shutdown(Instant::now());
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.shutdown_complete() {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        worker = self.index,
                        sessions = self.sessions.len(),
                        "shutdown deadline passed; closing the remaining connections"
                    );
                    break;
                }
            }
        }
        self.close_everything(Instant::now());
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let next = match (self.timers.next(), self.shutdown_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|at| at.saturating_duration_since(now))
    }

    // -----------------------------------------------------------------------------------------
    // Accepting.

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, addr) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: the connection waits in the backlog, and
                    // a timer tries again (no new edge comes for clients already waiting).
                    let index = self.index;
                    let retry = self
                        .shared
                        .with_endpoint(|ep| ep.accept_failed(now, index, &e));
                    if !self.accept_retry_armed {
                        self.accept_retry_armed = true;
                        self.timers.push(retry, TimerKey::AcceptRetry);
                    }
                    return;
                }
            };
            let index = self.index;
            let accepted = self
                .shared
                .with_endpoint(|ep| ep.accept(now, addr, index, Box::new(OsRandom)));
            let conn = match accepted {
                Accept::Connection(conn) => conn,
                Accept::Refused(refused) => {
                    // Its ERR (max-connections, blocked, shutting down) fits the empty send
                    // buffer of a new socket; dropping the stream then closes it.
                    let mut stream = stream;
                    let _ = stream.write(refused.bytes());
                    continue;
                }
            };
            if conn.shard() == self.index {
                self.adopt(stream, conn, now);
            } else {
                self.hand_over(stream, conn, now);
            }
        }
    }

    /// Serves a client placed on this worker (accepted here or handed over).
    pub(super) fn adopt(&mut self, stream: TcpStream, mut conn: Connection, now: Instant) {
        if self.shutdown_deadline.is_some() {
            // Accepted just before shutdown began elsewhere: closing it is what the listener's
            // close does to the clients behind it.
            self.shared
                .with_endpoint(|ep| ep.connection_closed(now, &mut conn));
            return;
        }
        if let Err((e, mut conn)) = self.start_session(stream, conn, now) {
            tracing::warn!(client = %conn.client(), error = %e, "cannot serve a new client");
            self.shared
                .with_endpoint(|ep| ep.connection_closed(now, &mut conn));
        }
    }

    /// Passes a client to worker `conn.shard()` through its mailbox.
    fn hand_over(&self, stream: TcpStream, conn: Connection, now: Instant) {
        let worker = conn.shard();
        let Some(mailbox) = self.shared.mailboxes.get().and_then(|m| m.get(worker)) else {
            return;
        };
        let command = WorkerCommand::Adopt {
            stream,
            conn: Box::new(conn),
        };
        match mailbox.commands.send(command) {
            Ok(()) => {
                if let Err(e) = mailbox.waker.wake() {
                    // The client is served at that worker's next wake-up.
                    tracing::warn!(worker, error = %e, "cannot wake a worker");
                }
            }
            // Workers drop their mailbox only when the proxy shuts down: the client is refused
            // (its connection closes), as the listeners being closed would do.
            Err(std::sync::mpsc::SendError(WorkerCommand::Adopt { mut conn, .. })) => {
                self.shared
                    .with_endpoint(|ep| ep.connection_closed(now, &mut conn));
            }
            // Not what was sent.
            Err(std::sync::mpsc::SendError(WorkerCommand::Resolved { .. })) => {}
        }
    }

    #[allow(clippy::result_large_err)]
    fn start_session(
        &mut self,
        mut stream: TcpStream,
        conn: Connection,
        now: Instant,
    ) -> Result<(), (io::Error, Connection)> {
        if let Err(e) = stream.set_nodelay(true) {
            return Err((e, conn));
        }
        let socket_key = self.sockets.next_key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(FIRST_SOCKET + socket_key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return Err((e, conn));
        }
        let id = conn.id();
        let slot = self.sessions.insert(Slot {
            conn,
            id,
            client: socket_key,
            backends: Vec::new(),
            resolving: Vec::new(),
            deadline: Deadline::default(),
        });
        let generation = self.generation();
        let key = self.sockets.insert(Socket {
            stream,
            session: slot,
            session_id: id,
            peer: Peer::Client,
            state: State::Open,
            out: VecDeque::new(),
            queued: 0,
            reading: true,
            eof: false,
            unread: false,
            generation,
            fallback: VecDeque::new(),
        });
        debug_assert_eq!(key, socket_key);
        self.after_call(slot, now);
        Ok(())
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    // -----------------------------------------------------------------------------------------
    // Readiness.

    /// `error`: an error or the peer's FIN came with this edge.
    fn socket_ready(
        &mut self,
        key: usize,
        readable: bool,
        writable: bool,
        error: bool,
        now: Instant,
    ) {
        let Some(socket) = self.sockets.get(key) else {
            // A parked socket's (remembered for its adoption), or a stale event.
            self.parked_here.event(key, readable || error);
            return;
        };
        match socket.state {
            State::Connecting => {
                if self.finish_connect(key, now) && readable {
                    // The server speaks first: its greeting may have come with this very edge,
                    // and edge-triggered polling would not report it again.
                    self.read_socket(key, error, now);
                }
            }
            State::Open => {
                if writable && !socket.out.is_empty() {
                    self.flush_and_settle(key, now);
                }
                if readable || error {
                    // With the peer's FIN (or an error) in the same edge, a short read does not
                    // mean the end has been seen: read on to EOF.
                    self.read_socket(key, error, now);
                }
            }
            State::Closing => {
                if (writable || error) && self.flush(key).is_err() {
                    self.destroy(key);
                    return;
                }
                if readable || error {
                    self.discard_input(key);
                }
            }
        }
    }

    /// Flushes an open socket after WRITABLE, then lets its session react: a drained queue may
    /// lift back-pressure on the other side, a failed write is the peer's EOF.
    fn flush_and_settle(&mut self, key: usize, now: Instant) {
        let failed = self.flush(key).is_err();
        let Some(socket) = self.sockets.get_mut(key) else {
            return;
        };
        let (slot, peer) = (socket.session, socket.peer);
        if failed {
            socket.eof = true;
            socket.out.clear();
            socket.queued = 0;
            if let Some(s) = self.sessions.get_mut(slot) {
                s.conn.handle_eof(now, peer);
                self.after_call(slot, now);
            }
        } else {
            self.update_interest(slot);
        }
    }

    fn read_socket(&mut self, key: usize, to_end: bool, now: Instant) {
        // The edge is taken: until a read shows the socket drained, input may wait unreported.
        if let Some(socket) = self.sockets.get_mut(key) {
            socket.unread = true;
        }
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(socket) = self.sockets.get_mut(key) {
            if socket.state != State::Open || socket.eof {
                break;
            }
            let (slot, peer) = (socket.session, socket.peer);
            if !self.may_read(slot, peer) {
                break;
            }
            let Some(socket) = self.sockets.get_mut(key) else {
                break;
            };
            match socket.stream.read(&mut buf) {
                Ok(0) => {
                    socket.eof = true;
                    tracing::trace!(session = socket.session_id, ?peer, "end of file");
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.conn.handle_eof(now, peer);
                        self.after_call(slot, now);
                    }
                    break;
                }
                Ok(n) => {
                    // With the peer's FIN in the edge, the end is still to be read.
                    socket.unread = n == buf.len() || to_end;
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.conn.handle_input(now, peer, &buf[..n]);
                        self.after_call(slot, now);
                    }
                    if n < buf.len() && !to_end {
                        // A short read drained the socket; the next byte is a new edge.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.unread = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    socket.eof = true;
                    tracing::debug!(session = socket.session_id, ?peer, error = %e, "read failed");
                    if let Some(s) = self.sessions.get_mut(slot) {
                        s.conn.handle_eof(now, peer);
                        self.after_call(slot, now);
                    }
                    break;
                }
            }
        }
        self.buf = buf;
    }

    /// A closing socket's input is read and dropped until the peer's FIN, so that closing does
    /// not reset the connection under the last bytes written.
    fn discard_input(&mut self, key: usize) {
        // Not the worker's buffer: this runs inside `read_socket`, which holds that one.
        let mut buf = [0u8; 4096];
        let mut done = false;
        if let Some(socket) = self.sockets.get_mut(key) {
            loop {
                match socket.stream.read(&mut buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            if socket.out.is_empty() && done {
                self.destroy(key);
            }
        }
    }

    /// May `peer`'s socket of session `slot` be read now?
    fn may_read(&self, slot: usize, peer: Peer) -> bool {
        let Some(s) = self.sessions.get(slot) else {
            return false;
        };
        if s.conn.is_closed() || !s.conn.wants_input(peer) {
            return false;
        }
        // The opposite side's queue: a slow reader holds back the fast writer.
        match peer {
            Peer::Client => s
                .backends
                .iter()
                .all(|&(_, k)| self.sockets.get(k).map_or(0, |b| b.queued) < HIGH_WATER),
            Peer::Backend(_) => self.sockets.get(s.client).map_or(0, |c| c.queued) < HIGH_WATER,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Driving a session.

    /// The drain rule: after any call into session `slot`, sync the endpoint if the connection
    /// asks for it, queue its transmits, execute its socket events (which may call it again),
    /// flush, then re-arm interest and timer, or tear down.
    fn after_call(&mut self, slot: usize, now: Instant) {
        loop {
            let mut pending = std::mem::take(&mut self.pending);
            {
                let Some(s) = self.sessions.get_mut(slot) else {
                    self.pending = pending;
                    return;
                };
                let mut endpoint = None;
                if s.conn.needs_sync() {
                    endpoint
                        .insert(self.shared.endpoint())
                        .sync(now, &mut s.conn);
                }
                while let Some(t) = s.conn.poll_transmit() {
                    route(&mut self.sockets, &mut self.touched, s, t);
                }
                while let Some(e) = s.conn.poll_event() {
                    let IoEvent::Park { conn, pooled } = e else {
                        pending.push(e);
                        continue;
                    };
                    // Parked before the endpoint's lock is released (taken now if the sync did
                    // not): no other worker can be handed `pooled` before it is there.
                    endpoint.get_or_insert_with(|| self.shared.endpoint());
                    let here = &mut self.parked_here;
                    if let Some(p) =
                        park_socket(&mut self.sockets, &mut self.touched, here, s, conn)
                    {
                        self.shared.parked.park(pooled, p);
                    }
                }
                // The sync may have queued commands (a pooled connection for a waiting session):
                // their workers are woken. Releasing the lock closes the pooled connections the
                // endpoint let go of.
                if let Some(mut endpoint) = endpoint {
                    self.shared.deliver(&mut endpoint);
                }
            }
            let had_events = !pending.is_empty();
            for event in pending.drain(..) {
                self.handle_io(slot, event, now);
            }
            self.pending = pending;
            // Only a socket event (a connect that failed at once) gives the connection new work
            // after the sync above.
            if !had_events {
                break;
            }
        }
        // Flush every socket that got bytes; a failed write is that peer's end of file.
        let mut failed = Vec::new();
        while let Some(key) = self.touched.pop() {
            if self.flush(key).is_err() {
                failed.push(key);
            }
        }
        for key in failed {
            let Some(socket) = self.sockets.get_mut(key) else {
                continue;
            };
            socket.out.clear();
            socket.queued = 0;
            if socket.state == State::Closing {
                self.destroy(key);
                continue;
            }
            socket.eof = true;
            let (owner, peer) = (socket.session, socket.peer);
            if let Some(s) = self.sessions.get_mut(owner) {
                if !s.conn.is_closed() {
                    s.conn.handle_eof(now, peer);
                    self.after_call(owner, now);
                }
            }
        }
        let Some(s) = self.sessions.get_mut(slot) else {
            return;
        };
        if s.conn.is_closed() {
            self.teardown(slot, now);
            return;
        }
        let at = s.conn.poll_timeout();
        let key = TimerKey::Session { slot, id: s.id };
        s.deadline.set(at, key, &mut self.timers);
        self.update_interest(slot);
    }

    fn handle_io(&mut self, slot: usize, event: IoEvent, now: Instant) {
        match event {
            IoEvent::Connect { conn, addr } => self.connect_backend(slot, conn, addr, now),
            IoEvent::Adopt { conn, pooled } => self.adopt_parked(slot, conn, pooled, now),
            IoEvent::Close { conn } => {
                let Some(s) = self.sessions.get_mut(slot) else {
                    return;
                };
                // A lookup still running: its result will find no attempt.
                s.resolving.retain(|&c| c != conn);
                if let Some(i) = s.backends.iter().position(|&(c, _)| c == conn) {
                    let (_, key) = s.backends.swap_remove(i);
                    self.close_socket(key, now);
                }
            }
            // Later additions to the core's socket events are not this loop's yet.
            other => tracing::debug!(?other, "socket event not handled by this driver"),
        }
    }

    /// Writes the socket's queue until it is empty or the socket would block.
    fn flush(&mut self, key: usize) -> io::Result<()> {
        let Some(socket) = self.sockets.get_mut(key) else {
            return Ok(());
        };
        if socket.state == State::Connecting {
            // Written once connected.
            return Ok(());
        }
        let mut written_total = 0;
        let result = loop {
            if socket.out.is_empty() {
                break Ok(());
            }
            let written = if socket.out.len() == 1 {
                // One chunk (the common case: a command, or a small response coalesced by the
                // core): `send` is a shorter path through the kernel than `writev`.
                socket.stream.write(&socket.out[0])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (slot, bytes) in iov.iter_mut().zip(socket.out.iter()) {
                    *slot = IoSlice::new(bytes);
                    n += 1;
                }
                socket.stream.write_vectored(&iov[..n])
            };
            match written {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    written_total += n;
                    socket.queued -= n;
                    while n > 0 {
                        let Some(front) = socket.out.front_mut() else {
                            break;
                        };
                        if front.len() <= n {
                            n -= front.len();
                            socket.out.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if let Some(s) = self.sessions.get(socket.session) {
            if s.id == socket.session_id {
                s.conn.record_sent(socket.peer, written_total);
            }
        }
        if socket.state == State::Closing && socket.out.is_empty() && result.is_ok() {
            // Everything is written: send FIN, then wait (briefly) for the peer's.
            let _ = socket.stream.shutdown(std::net::Shutdown::Write);
        }
        result
    }

    /// Re-registers READABLE interest where back-pressure changed.
    fn update_interest(&mut self, slot: usize) {
        let Some(s) = self.sessions.get(slot) else {
            return;
        };
        let mut keys = [None; 3];
        keys[0] = Some((s.client, Peer::Client));
        for (i, &(conn, key)) in s.backends.iter().take(2).enumerate() {
            keys[i + 1] = Some((key, Peer::Backend(conn)));
        }
        for (key, peer) in keys.into_iter().flatten() {
            let want = self.may_read(slot, peer);
            let Some(socket) = self.sockets.get_mut(key) else {
                continue;
            };
            if socket.state != State::Open || socket.eof || socket.reading == want {
                continue;
            }
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::WRITABLE
            };
            match self.poll.registry().reregister(
                &mut socket.stream,
                Token(FIRST_SOCKET + key),
                interest,
            ) {
                Ok(()) => socket.reading = want,
                Err(e) => tracing::warn!(error = %e, "cannot change socket interest"),
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Session { slot, id } => {
                    let Some(s) = self.sessions.get_mut(slot).filter(|s| s.id == id) else {
                        continue;
                    };
                    match s.deadline.fire(at, now) {
                        Fire::Stale => {}
                        Fire::Rearm(at) => self.timers.push(at, key),
                        Fire::Due => {
                            s.conn.handle_timeout(now);
                            self.after_call(slot, now);
                            self.release_queues(slot);
                        }
                    }
                }
                TimerKey::AcceptRetry => {
                    self.accept_retry_armed = false;
                    self.accept_all(now);
                }
                TimerKey::Linger { socket, generation } => {
                    let lingering = self
                        .sockets
                        .get(socket)
                        .is_some_and(|s| s.generation == generation && s.state == State::Closing);
                    if lingering {
                        self.destroy(socket);
                    }
                }
            }
        }
        // Stale entries pile up only when deadlines move earlier; drop them now and then.
        if self.timers.len() > 64 + 4 * (self.sessions.len() + self.sockets.len()) {
            let (sessions, sockets) = (&self.sessions, &self.sockets);
            self.timers.compact(|at, key| match key {
                TimerKey::Session { slot, id } => sessions
                    .get(slot)
                    .is_some_and(|s| s.id == id && s.deadline.is_armed_at(at)),
                TimerKey::Linger { socket, generation } => sockets
                    .get(socket)
                    .is_some_and(|s| s.generation == generation),
                TimerKey::AcceptRetry => true,
            });
        }
    }

    /// An idle session's sockets let go of their empty write queues, as the session lets go of
    /// its buffers once idle for a while (on its timer: a busy session keeps reusing them).
    fn release_queues(&mut self, slot: usize) {
        let Some(s) = self.sessions.get(slot) else {
            return;
        };
        if !s.conn.session().is_idle() {
            return;
        }
        let keys = std::iter::once(s.client).chain(s.backends.iter().map(|&(_, key)| key));
        for key in keys {
            if let Some(socket) = self.sockets.get_mut(key) {
                if socket.out.is_empty() {
                    socket.out = VecDeque::new();
                }
            }
        }
    }
}

/// Queues a transmit on its socket (bytes for a socket that is gone are dropped: the session
/// learns of that socket's end through `handle_eof`).
fn route(sockets: &mut Slab<Socket>, touched: &mut Vec<usize>, s: &Slot, t: Transmit) {
    let key = match t.peer {
        Peer::Client => Some(s.client),
        Peer::Backend(conn) => s
            .backends
            .iter()
            .find(|&&(c, _)| c == conn)
            .map(|&(_, k)| k),
    };
    let Some(socket) = key.and_then(|k| sockets.get_mut(k)) else {
        tracing::trace!(session = s.id, peer = ?t.peer, "bytes for a closed socket dropped");
        return;
    };
    if socket.state == State::Closing || t.data.is_empty() {
        return;
    }
    if socket.out.is_empty() {
        if let Some(k) = key {
            touched.push(k);
        }
    }
    socket.queued += t.data.len();
    socket.out.push_back(t.data);
}
