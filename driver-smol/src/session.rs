//! One task per client session: the core's [`ProxySession`] between async sockets.
//!
//! The task only moves bytes and carries out the session's requests; every protocol decision is
//! the core's. Its loop:
//!
//! 1. **Drain** (after every call into the session): take all transmits, write them (one
//!    vectored write per socket and round, awaited: the next read waits until the bytes are in
//!    the kernel, which is the write side of back-pressure), then carry out the events
//!    (connect, close, publish...), and repeat while the session produced anything.
//! 2. **Wait** for the first of: a command (shutdown, migrate), the session's deadline
//!    ([`Timer::at`] of `poll_timeout`), a backend connect finishing, bytes from the client or a
//!    backend — a socket is polled only while the session `wants_input` from it (the read side
//!    of back-pressure). Bytes are read into one buffer per thread, not per session, and handed
//!    to the session inside the same poll, so an idle session holds no read buffer.
//!
//! The whole loop is raced against the proxy's abort signal (the shutdown deadline), so a
//! session stuck writing to a client that reads nothing is still dropped in time.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use ferry_core::session::{BackendConnId, Event, Peer, ProxySession};
use ferry_mio::admin::SessionInfo;
use ferry_mio::proxy::health::{is_local_exhaustion, record_refusal};
use ferry_mio::proxy::rebalance::pin_is_transient;
use ferry_mio::proxy::OsRandom;
use smol::future;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::stream::Stream;
use smol::Timer;

use crate::chooser::{Choice, ChooseRequest};
use crate::shared::{Command, Inner, SessionEntry};
use crate::stats::add;

mod migrate;

/// Size of the per-thread read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// How long a closed client socket may take to deliver the last bytes and send its FIN.
const LINGER: Duration = Duration::from_secs(5);
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

thread_local! {
    /// Reads land here and go to the session within the same poll: one buffer per thread.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

type Connect = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// A backend connection in progress.
struct Connecting {
    conn: BackendConnId,
    /// Registry index of the backend (counted in its load until released).
    index: usize,
    /// The built-in policy chose it, so another backend may be tried if it refuses.
    picked: bool,
    /// Backends tried so far for this connection.
    attempts: usize,
    future: Connect,
}

/// An open backend connection.
struct BackendSocket {
    conn: BackendConnId,
    index: usize,
    stream: TcpStream,
    out: Vec<Bytes>,
    eof: bool,
}

/// A session task's state.
struct Task {
    inner: Arc<Inner>,
    id: u64,
    client_addr: SocketAddr,
    session: ProxySession,
    client: TcpStream,
    client_out: Vec<Bytes>,
    client_eof: bool,
    backends: Vec<BackendSocket>,
    connecting: Vec<Connecting>,
    /// A backend answered with an ERR in place of its greeting: the next one must be healthy
    /// (the client gets that ERR if there is none), never a second try at a refusing one.
    refused: bool,
    /// What the session list shows of it (backend, pin), to update it only on change.
    listed: Option<(Option<String>, Option<&'static str>)>,
}

impl Drop for Task {
    /// Backend load is released however the task ends (closed, aborted, dropped executor).
    fn drop(&mut self) {
        for b in &self.backends {
            self.inner.registry.release(b.index);
        }
        for c in &self.connecting {
            self.inner.registry.release(c.index);
        }
    }
}

/// Serves one client until its session closes (or the proxy aborts at the shutdown deadline).
/// `_finished` is dropped when the session is over: the proxy's shutdown waits for that.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    id: u32,
    client: TcpStream,
    client_addr: SocketAddr,
    commands: smol::channel::Receiver<Command>,
    _finished: smol::channel::Sender<std::convert::Infallible>,
) {
    let _ = client.set_nodelay(true);
    let now = Instant::now();
    let session = ProxySession::new(
        now,
        Arc::clone(&inner.session_config),
        id,
        client_addr.ip().to_string(),
        Box::new(OsRandom),
    );
    let mut task = Task {
        inner: Arc::clone(&inner),
        id: u64::from(id),
        client_addr,
        session,
        client,
        client_out: Vec::new(),
        client_eof: false,
        backends: Vec::new(),
        connecting: Vec::new(),
        refused: false,
        listed: None,
    };
    let abort = inner.abort.1.clone();
    let finished_normally = future::or(
        async {
            task.run(commands).await;
            true
        },
        async move {
            let _ = abort.recv().await;
            false
        },
    )
    .await;
    inner.sessions().remove(&task.id);
    inner.live.fetch_sub(1, Ordering::SeqCst);
    tracing::debug!(session = task.id, "connection closed");
    let client = task.client.clone();
    drop(task);
    drop(_finished);
    if finished_normally {
        linger(client).await;
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

impl Task {
    async fn run(&mut self, commands: smol::channel::Receiver<Command>) {
        let mut commands = pin!(commands);
        // Armed lazily: only when the session's deadline comes *earlier* than the armed one
        // (re-arming a reactor timer after every command costs more than the command's relay);
        // a timer that fires before the deadline is simply re-armed.
        let mut timer = Timer::never();
        let mut armed: Option<Instant> = None;
        if self.inner.stopping.load(Ordering::SeqCst) {
            // Accepted just before shutdown began (the shutdown may not have seen it).
            self.session.begin_shutdown(Instant::now());
        }
        loop {
            self.drain().await;
            if self.session.is_closed() {
                return;
            }
            if let Some(at) = self.session.poll_timeout() {
                if armed.is_none_or(|a| at < a) {
                    timer.set_at(at);
                    armed = Some(at);
                }
            }
            future::poll_fn(|cx| self.poll_wake(cx, &mut timer, &mut armed, commands.as_mut()))
                .await;
        }
    }

    /// Waits for one thing to happen and feeds it to the session.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut Timer,
        armed: &mut Option<Instant>,
        mut commands: Pin<&mut smol::channel::Receiver<Command>>,
    ) -> Poll<()> {
        match commands.as_mut().poll_next(cx) {
            Poll::Ready(Some(command)) => {
                self.command(command);
                return Poll::Ready(());
            }
            // Every handle is gone and so is the proxy's table: nothing will ask again.
            Poll::Ready(None) | Poll::Pending => {}
        }
        if armed.is_some() && Pin::new(&mut *timer).poll(cx).is_ready() {
            *armed = None;
            let now = Instant::now();
            if self.session.poll_timeout().is_some_and(|at| at <= now) {
                self.session.handle_timeout(now);
            }
            // Otherwise the deadline moved later: the loop re-arms at it.
            return Poll::Ready(());
        }
        for i in 0..self.connecting.len() {
            if let Poll::Ready(result) = self.connecting[i].future.as_mut().poll(cx) {
                let attempt = self.connecting.swap_remove(i);
                self.connect_done(attempt, result);
                return Poll::Ready(());
            }
        }
        if !self.client_eof && self.session.wants_input(Peer::Client) {
            if let Poll::Ready(result) = READ_BUF.with(|buf| {
                let mut buf = buf.borrow_mut();
                let polled = Pin::new(&mut self.client).poll_read(cx, &mut buf);
                polled.map(|r| self.client_read(r, &buf))
            }) {
                return Poll::Ready(result);
            }
        }
        for i in 0..self.backends.len() {
            let b = &self.backends[i];
            if b.eof || !self.session.wants_input(Peer::Backend(b.conn)) {
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
                self.session.handle_eof(now, Peer::Client);
            }
            Ok(n) => {
                add(&self.inner.stats.client_bytes_received, n as u64);
                self.session.handle_input(now, Peer::Client, &buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(session = self.id, error = %e, "client read failed");
                self.client_eof = true;
                self.session.handle_eof(now, Peer::Client);
            }
        }
    }

    fn backend_read(&mut self, i: usize, result: io::Result<usize>, buf: &[u8]) {
        let now = Instant::now();
        let conn = self.backends[i].conn;
        match result {
            Ok(0) => {
                self.backends[i].eof = true;
                self.session.handle_eof(now, Peer::Backend(conn));
            }
            Ok(n) => {
                add(&self.inner.stats.backend_bytes_received, n as u64);
                self.session
                    .handle_input(now, Peer::Backend(conn), &buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(session = self.id, error = %e, "backend read failed");
                self.backends[i].eof = true;
                self.session.handle_eof(now, Peer::Backend(conn));
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Shutdown => self.session.begin_shutdown(Instant::now()),
            Command::Migrate { to, reply } => {
                let result = self.start_migration(to);
                if let Some(reply) = reply {
                    // The asker may have given up waiting; nothing to do then.
                    let _ = reply.try_send(result);
                }
            }
            Command::CancelMigration => {
                self.session.cancel_migration(Instant::now());
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The drain rule.

    /// Writes the session's transmits and carries out its events until it has nothing more.
    async fn drain(&mut self) {
        loop {
            let mut produced = false;
            while let Some(t) = self.session.poll_transmit() {
                produced = true;
                if t.data.is_empty() {
                    continue;
                }
                match t.peer {
                    Peer::Client if !self.client_eof => self.client_out.push(t.data),
                    Peer::Backend(conn) => {
                        match self.backends.iter_mut().find(|b| b.conn == conn) {
                            Some(b) if !b.eof => b.out.push(t.data),
                            _ => tracing::trace!(
                                session = self.id,
                                conn,
                                "bytes for a closed backend dropped"
                            ),
                        }
                    }
                    Peer::Client => {}
                }
            }
            self.write_all().await;
            while let Some(event) = self.session.poll_event() {
                produced = true;
                self.event(event);
            }
            if !produced {
                self.sync_listing();
                return;
            }
        }
    }

    /// Writes every queued byte; a failed write is that peer's end of file.
    async fn write_all(&mut self) {
        let now = Instant::now();
        if !self.client_out.is_empty() {
            let mut out = std::mem::take(&mut self.client_out);
            match write_vectored_all(&mut self.client, &mut out).await {
                Ok(n) => add(&self.inner.stats.client_bytes_sent, n as u64),
                Err(e) => {
                    tracing::debug!(session = self.id, error = %e, "client write failed");
                    self.client_eof = true;
                    self.session.handle_eof(now, Peer::Client);
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
            match result {
                Ok(n) => add(&self.inner.stats.backend_bytes_sent, n as u64),
                Err(e) => {
                    let conn = b.conn;
                    b.eof = true;
                    tracing::debug!(session = self.id, error = %e, "backend write failed");
                    self.session.handle_eof(now, Peer::Backend(conn));
                }
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::ConnectBackend { conn, target } => self.connect(conn, target.as_deref()),
            Event::CloseBackend { conn } => {
                if let Some(i) = self.backends.iter().position(|b| b.conn == conn) {
                    let b = self.backends.swap_remove(i);
                    // Its queue was written by the drain before this event.
                    let _ = b.stream.shutdown(std::net::Shutdown::Both);
                    self.inner.registry.release(b.index);
                }
                if let Some(i) = self.connecting.iter().position(|c| c.conn == conn) {
                    let c = self.connecting.swap_remove(i);
                    self.inner.registry.release(c.index);
                }
            }
            Event::BackendRefused { backend, error } => {
                // An ERR in place of the greeting (too many connections): down until a health
                // check passes, as a refused connect; the session asks for another backend.
                add(&self.inner.stats.backend_connect_errors, 1);
                self.refused = true;
                tracing::debug!(session = self.id, %backend, code = error.code, "backend refused the session's connection");
                record_refusal(&self.inner.registry, &backend, &error);
            }
            Event::Authenticated { user } => {
                tracing::info!(session = self.id, %user, backend = self.session.backend_name().unwrap_or("-"), "authenticated");
                self.publish(user);
            }
            Event::UserChanged { user } => {
                tracing::info!(session = self.id, %user, "user changed");
                self.publish(user);
            }
            Event::CommandDone { error, .. } => {
                add(&self.inner.stats.commands, 1);
                if error {
                    add(&self.inner.stats.command_errors, 1);
                }
            }
            Event::Closed { reason } => {
                tracing::debug!(session = self.id, ?reason, "session closed");
            }
            other => {
                if let Some(other) = self.migration_event_or(other) {
                    tracing::debug!(?other, "event not handled by this driver");
                }
            }
        }
    }

    /// Lists the session once authenticated as `user`.
    fn publish(&mut self, user: String) {
        let backend = self.session.backend_name().map(str::to_owned);
        let pin = self.session.pinned();
        let pinned = pin.map(|p| p.as_str());
        self.listed = Some((backend.clone(), pinned));
        let id = self.id;
        self.update_entry(|e| {
            e.lasting_pin = pin.is_some_and(|p| !pin_is_transient(p));
            e.info = Some(SessionInfo {
                id,
                user,
                backend,
                pinned: pinned.map(str::to_owned),
            })
        });
    }

    /// Updates the listed backend and pin when they changed (checked after every drain: a
    /// command can pin or unpin, a migration moves the session).
    fn sync_listing(&mut self) {
        let Some((backend, pinned)) = &self.listed else {
            return;
        };
        let now_backend = self.session.backend_name();
        let pin = self.session.pinned();
        let now_pinned = pin.map(|p| p.as_str());
        if backend.as_deref() == now_backend && *pinned == now_pinned {
            return;
        }
        let backend = now_backend.map(str::to_owned);
        self.listed = Some((backend.clone(), now_pinned));
        self.update_entry(|e| {
            e.lasting_pin = pin.is_some_and(|p| !pin_is_transient(p));
            if let Some(info) = e.info.as_mut() {
                info.backend = backend;
                info.pinned = now_pinned.map(str::to_owned);
            }
        });
    }

    /// Changes this session's entry in the proxy's table.
    fn update_entry(&self, f: impl FnOnce(&mut SessionEntry)) {
        if let Some(entry) = self.inner.sessions().get_mut(&self.id) {
            f(entry);
        }
    }

    /// A migration event is handled (`None`); any other event is given back.
    fn migration_event_or(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::MigrationStarted { .. }
            | Event::MigrationDone { .. }
            | Event::MigrationFailed { .. } => {
                self.migration_event(event);
                None
            }
            other => Some(other),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Backend connections.

    /// Picks the backend for `conn` (the session's target, else the chooser, else the built-in
    /// policy) and starts connecting.
    fn connect(&mut self, conn: BackendConnId, target: Option<&str>) {
        let registry = &self.inner.registry;
        let choice = match target {
            Some(name) => Choice::Backend(name.to_owned()),
            None => match &self.inner.chooser {
                None => Choice::Default,
                Some(chooser) => {
                    let backends = registry.infos();
                    let state = self.session.state();
                    let request = ChooseRequest {
                        session: self.id,
                        client: self.client_addr,
                        user: self.session.user(),
                        database: state
                            .schema
                            .as_deref()
                            .and_then(|s| std::str::from_utf8(s).ok()),
                        backends: &backends,
                    };
                    chooser.choose(&request)
                }
            },
        };
        let (index, picked) = match choice {
            Choice::Default => match self.pick() {
                Some(index) => (index, true),
                None => return self.connect_failed(conn, "no healthy backend"),
            },
            Choice::Backend(name) => match registry.find(&name) {
                Some(index) => {
                    registry.claim(index);
                    (index, false)
                }
                None => return self.connect_failed(conn, &format!("no backend named {name:?}")),
            },
            Choice::Refuse(reason) => return self.connect_failed(conn, &reason),
        };
        self.start_connect(conn, index, picked, 1);
    }

    /// The driver's own choice: a healthy backend, else (before any refusal) one that refuses
    /// connections, whose ERR tells the client more than "no healthy backend".
    fn pick(&self) -> Option<usize> {
        if self.refused {
            self.inner.registry.pick()
        } else {
            self.inner.registry.pick_or_refusing()
        }
    }

    fn start_connect(&mut self, conn: BackendConnId, index: usize, picked: bool, attempts: usize) {
        let Some(addr) = self.inner.registry.get(index).map(|b| b.addr) else {
            return;
        };
        tracing::trace!(session = self.id, conn, %addr, "connecting");
        self.connecting.push(Connecting {
            conn,
            index,
            picked,
            attempts,
            future: Box::pin(TcpStream::connect(addr)),
        });
    }

    fn connect_done(&mut self, attempt: Connecting, result: io::Result<TcpStream>) {
        let registry = &self.inner.registry;
        let Connecting {
            conn,
            index,
            picked,
            attempts,
            ..
        } = attempt;
        let (name, addr) = registry
            .get(index)
            .map(|b| (b.name.clone(), b.addr))
            .unwrap_or_else(|| (String::new(), self.client_addr));
        match result {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                tracing::debug!(session = self.id, backend = %name, "backend connected");
                self.backends.push(BackendSocket {
                    conn,
                    index,
                    stream,
                    out: Vec::new(),
                    eof: false,
                });
                self.session.backend_connected(Instant::now(), conn, &name);
            }
            Err(e) => {
                registry.release(index);
                add(&self.inner.stats.backend_connect_errors, 1);
                if is_local_exhaustion(&e) {
                    // Out of descriptors: not the backend's fault, and no other would do better.
                    tracing::warn!(backend = %name, error = %e, "cannot open a backend connection");
                    return self.connect_failed(conn, &format!("ferry: {e}"));
                }
                if registry.set_health(index, false) {
                    tracing::warn!(backend = %name, %addr, error = %e, "backend unreachable; skipped until a health check passes");
                }
                if picked && attempts < registry.backends().len() {
                    if let Some(next) = self.pick() {
                        return self.start_connect(conn, next, true, attempts + 1);
                    }
                }
                self.connect_failed(conn, &format!("backend {name} ({addr}): {e}"));
            }
        }
    }

    fn connect_failed(&mut self, conn: BackendConnId, reason: &str) {
        tracing::info!(session = self.id, %reason, "backend connection failed");
        self.session
            .backend_connect_failed(Instant::now(), conn, reason);
    }
}

/// Writes all of `bufs` with vectored writes; returns the bytes written.
async fn write_vectored_all(stream: &mut TcpStream, bufs: &mut [Bytes]) -> io::Result<usize> {
    let mut total = 0;
    let mut first = 0;
    while first < bufs.len() {
        let n = {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, b) in iov.iter_mut().zip(&bufs[first..]) {
                *slot = IoSlice::new(b);
                count += 1;
            }
            stream.write_vectored(&iov[..count]).await?
        };
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
