//! One task per client session: the control plane's [`Connection`] (the core's session plus
//! what the endpoint tracks of it) between async sockets.
//!
//! The task only moves bytes, opens and closes sockets and runs a timer; every decision is the
//! core's. Its loop:
//!
//! 1. **Drain** (after every call into the connection, the core's drain rule): sync with the
//!    endpoint when the connection asks for it ([`Connection::needs_sync`]: a backend to
//!    choose, a failover, the listing, migration bookkeeping), take all transmits and write
//!    them (one vectored write per socket and round, awaited: the next read waits until the
//!    bytes are in the kernel, which is the write side of back-pressure), then carry out the
//!    socket events (connect, close; with multiplexing, park a backend socket in the shared
//!    pool or adopt one from it), and repeat while anything came out.
//! 2. **Wait** for the first of: a command from the endpoint (shutdown, migrate), the
//!    connection's deadline ([`Timer::at`] of `poll_timeout`), a backend connect finishing,
//!    bytes from the client or a backend — a socket is polled only while the connection
//!    `wants_input` from it (the read side of back-pressure). Bytes are read into one buffer
//!    per thread, not per session, and handed over inside the same poll, so an idle session
//!    holds no read buffer; when the deadline fires on an idle session (the core releases its
//!    buffers once idle for a moment), the task's empty write queues are released too.
//!
//! The whole loop is raced against the proxy's abort signal (the shutdown deadline), so a
//! session stuck writing to a client that reads nothing is still dropped in time. However the
//! task ends (closed, aborted, its future dropped), dropping the [`Task`] tells the endpoint
//! ([`Endpoint::connection_closed`](ferry_core::control::Endpoint::connection_closed)).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use ferry_core::control::{Command, Connection, IoEvent};
use ferry_core::session::{BackendConnId, Peer};
use smol::channel::{Receiver, Sender};
use smol::future;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use smol::net::TcpStream;
use smol::stream::Stream;
use smol::Timer;

use crate::shared::Inner;

/// Size of the per-thread read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// How long a closed client socket may take to deliver the last bytes and send its FIN.
const LINGER: Duration = Duration::from_secs(5);
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

thread_local! {
    /// Reads land here and go to the connection within the same poll: one buffer per thread.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

type Connect = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// A backend connection being opened.
struct Connecting {
    conn: BackendConnId,
    future: Connect,
}

/// An open backend connection.
struct BackendSocket {
    conn: BackendConnId,
    stream: TcpStream,
    out: Vec<Bytes>,
    eof: bool,
}

/// A session task's state.
pub(crate) struct Task {
    inner: Arc<Inner>,
    conn: Connection,
    client: TcpStream,
    client_out: Vec<Bytes>,
    client_eof: bool,
    backends: Vec<BackendSocket>,
    connecting: Vec<Connecting>,
}

impl Drop for Task {
    /// However the task ends (closed, aborted at the shutdown deadline, its future dropped with
    /// the executor), the endpoint forgets the connection exactly once: its backend
    /// connections no longer count, it leaves the listing, and no command is routed to it.
    fn drop(&mut self) {
        let mut control = self.inner.control();
        control
            .endpoint
            .connection_closed(Instant::now(), &mut self.conn);
        control.remove_route(self.conn.id());
        // Its backend connections no longer count: a session waiting for one may go on.
        control.deliver();
    }
}

impl Task {
    /// The task of a connection the endpoint accepted on `client`.
    pub(crate) fn new(inner: Arc<Inner>, conn: Connection, client: TcpStream) -> Self {
        let _ = client.set_nodelay(true);
        Self {
            inner,
            conn,
            client,
            client_out: Vec::new(),
            client_eof: false,
            backends: Vec::new(),
            connecting: Vec::new(),
        }
    }

    /// Serves the client until its session closes (or the proxy aborts at the shutdown
    /// deadline), with the endpoint's commands from `commands`. `finished` is dropped when the
    /// session is over: the proxy's shutdown waits for that.
    ///
    /// Not an `async fn`: one would hold the task twice (its argument, and the local it is
    /// moved to), 3 KiB more in every session's future; the block uses what it captured.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn serve(
        mut self,
        commands: Receiver<Command>,
        finished: Sender<Infallible>,
    ) -> impl Future<Output = ()> + Send {
        async move {
            let abort = self.inner.abort.1.clone();
            let finished_normally = future::or(
                async {
                    self.run(commands).await;
                    true
                },
                async move {
                    let _ = abort.recv().await;
                    false
                },
            )
            .await;
            let client = self.client.clone();
            drop(self);
            drop(finished);
            if finished_normally {
                linger(client).await;
            }
        }
    }

    async fn run(&mut self, commands: Receiver<Command>) {
        let mut commands = pin!(commands);
        // Armed lazily: only when the connection's deadline comes *earlier* than the armed one
        // (re-arming a reactor timer after every command costs more than the command's relay);
        // a timer that fires before the deadline is simply re-armed.
        let mut timer = Timer::never();
        let mut armed: Option<Instant> = None;
        loop {
            self.drain().await;
            if self.conn.is_closed() {
                return;
            }
            if let Some(at) = self.conn.poll_timeout() {
                if armed.is_none_or(|a| at < a) {
                    timer.set_at(at);
                    armed = Some(at);
                }
            }
            future::poll_fn(|cx| self.poll_wake(cx, &mut timer, &mut armed, commands.as_mut()))
                .await;
        }
    }

    /// Waits for one thing to happen and feeds it to the connection.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Timer,
        armed: &mut Option<Instant>,
        mut commands: Pin<&mut Receiver<Command>>,
    ) -> Poll<()> {
        match commands.as_mut().poll_next(cx) {
            Poll::Ready(Some(command)) => {
                self.conn.handle_command(Instant::now(), command);
                return Poll::Ready(());
            }
            // The route is removed only when this task ends: nothing more will come.
            Poll::Ready(None) | Poll::Pending => {}
        }
        if armed.is_some() && Pin::new(&mut *timer).poll(cx).is_ready() {
            *armed = None;
            let now = Instant::now();
            if self.conn.poll_timeout().is_some_and(|at| at <= now) {
                self.conn.handle_timeout(now);
                self.release_queues();
            }
            // Otherwise the deadline moved later: the loop re-arms at it.
            return Poll::Ready(());
        }
        for i in 0..self.connecting.len() {
            if let Poll::Ready(result) = self.connecting[i].future.as_mut().poll(cx) {
                let attempt = self.connecting.swap_remove(i);
                self.connect_done(attempt.conn, result);
                return Poll::Ready(());
            }
        }
        if !self.client_eof && self.conn.wants_input(Peer::Client) {
            if let Poll::Ready(()) = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let polled = Pin::new(&mut self.client).poll_read(cx, &mut buf);
                polled.map(|r| self.client_read(r, &buf))
            }) {
                return Poll::Ready(());
            }
        }
        for i in 0..self.backends.len() {
            let b = &self.backends[i];
            if b.eof || !self.conn.wants_input(Peer::Backend(b.conn)) {
                continue;
            }
            if let Poll::Ready(()) = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let polled = Pin::new(&mut self.backends[i].stream).poll_read(cx, &mut buf);
                polled.map(|r| self.backend_read(i, r, &buf))
            }) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }

    fn client_read(&mut self, result: io::Result<usize>, buf: &[u8]) {
        let now = Instant::now();
        match result {
            Ok(0) => {
                self.client_eof = true;
                self.conn.handle_eof(now, Peer::Client);
            }
            Ok(n) => self.conn.handle_input(now, Peer::Client, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(session = self.conn.id(), error = %e, "client read failed");
                self.client_eof = true;
                self.conn.handle_eof(now, Peer::Client);
            }
        }
    }

    fn backend_read(&mut self, i: usize, result: io::Result<usize>, buf: &[u8]) {
        let now = Instant::now();
        let conn = self.backends[i].conn;
        match result {
            Ok(0) => {
                self.backends[i].eof = true;
                self.conn.handle_eof(now, Peer::Backend(conn));
            }
            Ok(n) => self.conn.handle_input(now, Peer::Backend(conn), &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(session = self.conn.id(), error = %e, "backend read failed");
                self.backends[i].eof = true;
                self.conn.handle_eof(now, Peer::Backend(conn));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The drain rule.

    /// Syncs with the endpoint, writes the transmits and carries out the socket events until
    /// the connection has nothing more.
    async fn drain(&mut self) {
        let mut events = Vec::new();
        loop {
            let mut produced = self.take_output(&mut events);
            self.write_all().await;
            for event in events.drain(..) {
                produced = true;
                self.io_event(event);
            }
            if !produced && !self.conn.needs_sync() {
                return;
            }
        }
    }

    /// Syncs if needed, moves the transmits to the sockets' queues and the socket events to
    /// `events`, except parks: those are carried out at once, under the endpoint's lock, so
    /// that the socket is in the pool before the endpoint can hand it to another session or
    /// close it. True if anything came out.
    fn take_output(&mut self, events: &mut Vec<IoEvent>) -> bool {
        let mut control = None;
        if self.conn.needs_sync() {
            control
                .insert(self.inner.control())
                .endpoint
                .sync(Instant::now(), &mut self.conn);
        }
        let mut produced = false;
        while let Some(t) = self.conn.poll_transmit() {
            produced = true;
            if t.data.is_empty() {
                continue;
            }
            match t.peer {
                Peer::Client if !self.client_eof => self.client_out.push(t.data),
                Peer::Backend(conn) => match self.backends.iter_mut().find(|b| b.conn == conn) {
                    Some(b) if !b.eof => b.out.push(t.data),
                    _ => tracing::trace!(
                        session = self.conn.id(),
                        conn,
                        "bytes for a closed backend dropped"
                    ),
                },
                Peer::Client => {}
            }
        }
        while let Some(event) = self.conn.poll_event() {
            produced = true;
            let IoEvent::Park { conn, pooled } = event else {
                events.push(event);
                continue;
            };
            let control = control.get_or_insert_with(|| self.inner.control());
            if let Some(i) = self.backends.iter().position(|b| b.conn == conn) {
                let b = self.backends.swap_remove(i);
                // One that failed is dropped instead: its adopter hears of its end.
                if !b.eof {
                    control.park(pooled, b.stream, b.out);
                }
            }
        }
        // Releasing the lock: commands to other sessions, pooled sockets to close.
        if let Some(mut control) = control {
            control.deliver();
        }
        produced
    }

    /// An idle session's sockets let go of their empty write queues, as the session lets go of
    /// its buffers once idle for a while (on its timer: a busy session keeps reusing them).
    fn release_queues(&mut self) {
        if !self.conn.session().is_idle() {
            return;
        }
        if self.client_out.is_empty() {
            self.client_out = Vec::new();
        }
        for b in &mut self.backends {
            if b.out.is_empty() {
                b.out = Vec::new();
            }
        }
    }

    /// Writes every queued byte; a failed write is that peer's end of file.
    async fn write_all(&mut self) {
        if !self.client_out.is_empty() {
            let mut out = std::mem::take(&mut self.client_out);
            match write_vectored_all(&mut self.client, &mut out).await {
                Ok(n) => self.conn.record_sent(Peer::Client, n),
                Err(e) => {
                    tracing::debug!(session = self.conn.id(), error = %e, "client write failed");
                    self.client_eof = true;
                    self.conn.handle_eof(Instant::now(), Peer::Client);
                }
            }
            out.clear();
            // The (empty) vector is kept: its capacity serves the next round.
            self.client_out = out;
        }
        for i in 0..self.backends.len() {
            if self.backends[i].out.is_empty() {
                continue;
            }
            let b = &mut self.backends[i];
            let mut out = std::mem::take(&mut b.out);
            let result = write_vectored_all(&mut b.stream, &mut out).await;
            out.clear();
            b.out = out;
            let peer = Peer::Backend(b.conn);
            match result {
                Ok(n) => self.conn.record_sent(peer, n),
                Err(e) => {
                    b.eof = true;
                    tracing::debug!(session = self.conn.id(), error = %e, "backend write failed");
                    self.conn.handle_eof(Instant::now(), peer);
                }
            }
        }
    }

    /// Opens, closes, parks or adopts a backend socket, as the connection asks.
    fn io_event(&mut self, event: IoEvent) {
        match event {
            // A host name is resolved in the attempt; the connect deadline (the core's) covers
            // the lookup too: a Close drops the future.
            IoEvent::Connect { conn, addr } => self.connecting.push(Connecting {
                conn,
                future: Box::pin(crate::resolve::connect(addr)),
            }),
            IoEvent::Close { conn } => {
                if let Some(i) = self.backends.iter().position(|b| b.conn == conn) {
                    // Its queue was written by the drain before this event.
                    let b = self.backends.swap_remove(i);
                    let _ = b.stream.shutdown(std::net::Shutdown::Both);
                }
                if let Some(i) = self.connecting.iter().position(|c| c.conn == conn) {
                    self.connecting.swap_remove(i);
                }
            }
            // Bytes queued when it was parked go out with the drain's next writes.
            IoEvent::Adopt { conn, pooled } => {
                let parked = self.inner.control().adopt(pooled);
                match parked {
                    Some((stream, out)) => {
                        self.backends.push(BackendSocket {
                            conn,
                            stream,
                            out,
                            eof: false,
                        });
                        self.conn.adopted(Instant::now(), conn);
                    }
                    None => self.conn.handle_eof(Instant::now(), Peer::Backend(conn)),
                }
            }
            // Carried out by `take_output`.
            IoEvent::Park { .. } => {}
            other => tracing::debug!(?other, "socket event not handled by this driver"),
        }
    }

    fn connect_done(&mut self, conn: BackendConnId, result: io::Result<TcpStream>) {
        let now = Instant::now();
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                // Where a host name led (the PROXY header's destination).
                let peer = stream.peer_addr();
                self.backends.push(BackendSocket {
                    conn,
                    stream,
                    out: Vec::new(),
                    eof: false,
                });
                match peer {
                    Ok(peer) => self.conn.connected_to(now, conn, peer),
                    Err(_) => self.conn.connected(now, conn),
                }
            }
            // The endpoint decides at the next sync: another backend, or the client hears of it.
            Err(e) => self.conn.connect_failed(now, conn, &e),
        }
    }
}

/// After the session's last bytes: send FIN and read (discarding) until the client's, so that
/// closing with unread input does not reset the connection under the last bytes written.
async fn linger(mut client: TcpStream) {
    let _ = client.shutdown(std::net::Shutdown::Write);
    let discard = async {
        let mut buf = [0u8; 512];
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    future::or(discard, async {
        Timer::after(LINGER).await;
    })
    .await;
}

/// Writes all of `bufs` with vectored writes; returns the bytes written.
async fn write_vectored_all(stream: &mut TcpStream, bufs: &mut [Bytes]) -> io::Result<usize> {
    let mut total = 0;
    let mut first = 0;
    while first < bufs.len() {
        // The slices are built in each poll, not kept across the await: every session task's
        // future would hold their 1 KiB, idle or not.
        let n = future::poll_fn(|cx| {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, b) in iov.iter_mut().zip(&bufs[first..]) {
                *slot = IoSlice::new(b);
                count += 1;
            }
            Pin::new(&mut *stream).poll_write_vectored(cx, &iov[..count])
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        total += n;
        let mut n = n;
        while n > 0 && first < bufs.len() {
            let len = bufs[first].len();
            if len <= n {
                n -= len;
                first += 1;
            } else {
                bufs[first].advance(n);
                n = 0;
            }
        }
        while first < bufs.len() && bufs[first].is_empty() {
            first += 1;
        }
    }
    Ok(total)
}
