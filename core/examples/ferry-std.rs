//! `ferry-std`: the whole ferry proxy (sessions, admin endpoint, health checks, migration, drain,
//! balancer) on `std::net` with blocking sockets and a thread per connection (and per socket
//! reader, probe, admin request): the proof that drivers only do I/O. Every decision is
//! [`ferry_core::control`]'s; this file moves bytes and runs threads, timers and signals. Same
//! command line as `ferry` (`--config ferry.toml`, reread on SIGHUP); [`Endpoint`] in a `Mutex`.
//! With `[multiplexing]`, backend sockets (and their reader threads) move between sessions
//! through a shared pool, as the core says.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{
    mpsc, mpsc::Sender, mpsc::SyncSender, Arc, Condvar, Mutex, MutexGuard, PoisonError,
};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use ferry_core::control::admin::{wants_process_stats, AdminConnection, AdminSlots};
use ferry_core::control::config::BackendAddr;
use ferry_core::control::config::{open_files_needed, report_admin_listen, report_open_files};
use ferry_core::control::config::{AdminConfig, LogFormat};
use ferry_core::control::ProcessStats;
use ferry_core::control::ACCEPT_BACKOFF;
use ferry_core::control::{cli::Cli, Accept, Command, Connection, Endpoint, HealthProbe, IoEvent};
use ferry_core::control::{PoolClose, PooledId};
use ferry_core::{session::Peer, RandomSource};
use rand::RngCore;
use signal_hook::{consts::SIGHUP, consts::SIGINT, consts::SIGTERM, iterator::Signals};
use tracing_subscriber::EnvFilter;

/// The control thread's longest sleep, so that it soon sees a deadline moved earlier.
const TICK: Duration = Duration::from_millis(100);

/// Salts and scrambles come from the OS's CSPRNG.
struct OsRandom;
impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// What wakes a session thread.
enum Input {
    /// Bytes from `peer`; its reader reads on once `go` is sent, ends if dropped (back-pressure).
    Bytes(Peer, Vec<u8>, SyncSender<()>),
    Eof(Peer),
    Command(Command),
}

/// Shared by all threads for the process's lifetime: the endpoint, each session's input channel,
/// the backend sockets parked in the pool (multiplexing) by pooled id.
struct Shared {
    ep: Mutex<Endpoint>,
    sessions: Mutex<HashMap<u64, Sender<Input>>>,
    pool: Mutex<HashMap<PooledId, Arc<Sock>>>,
    started: SystemTime,
}

/// Where a socket's reader thread hands what it reads.
enum Owner {
    /// A session's channel, as this peer's input.
    Session(Peer, Sender<Input>),
    /// Parked in the pool: the reader holds what it read (an EOF) for the session adopting it.
    Parked,
    /// Closed from the pool: the reader ends.
    Closed,
}

/// A socket and its reader thread's owner.
struct Sock {
    stream: TcpStream,
    owner: Mutex<Owner>,
    adopted: Condvar,
}

impl Sock {
    /// The reader hands its input to `owner` from now on.
    fn set_owner(&self, owner: Owner) {
        *lock(&self.owner) = owner;
        self.adopted.notify_one();
    }
}

/// A thread that panicked leaves the endpoint consistent (every call is whole): carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn until(t: Instant) -> Duration {
    t.saturating_duration_since(Instant::now())
}

type Thread = JoinHandle<()>;
fn spawn(f: impl FnOnce() + Send + 'static) -> io::Result<Thread> {
    thread::Builder::new().spawn(f)
}

/// Hands what the endpoint queued (after syncs, admin requests, timers, probes, shutdown) to
/// sessions, and closes the pooled sockets it gives up (their farewell written without waiting).
fn deliver(sh: &Shared) {
    let mut ep = lock(&sh.ep);
    while let Some((id, command)) = ep.poll_command(0) {
        if let Some(tx) = lock(&sh.sessions).get(&id) {
            let _ = tx.send(Input::Command(command));
        }
    }
    while let Some(PoolClose { pooled, farewell }) = ep.poll_pool_close() {
        if let Some(sock) = lock(&sh.pool).remove(&pooled) {
            sock.set_owner(Owner::Closed);
            let _ = sock.stream.set_nonblocking(true);
            let _ = (&sock.stream).write(&farewell);
            close(Some(sock));
        }
    }
}

/// `stream`, read as `peer`'s input of the session with channel `tx`.
fn new_sock(stream: TcpStream, peer: Peer, tx: &Sender<Input>) -> Arc<Sock> {
    let _ = stream.set_nodelay(true); // small packets go out at once (no Nagle delay)
    let owner = Mutex::new(Owner::Session(peer, tx.clone()));
    Arc::new(Sock {
        stream,
        owner,
        adopted: Condvar::new(),
    })
}

/// Reads `sock` on a thread of its own into its owner's channel.
fn spawn_reader(sock: &Arc<Sock>) -> io::Result<Thread> {
    let (reader, mut buf) = (Arc::clone(sock), vec![0; 64 * 1024]);
    spawn(move || loop {
        let read = (&reader.stream).read(&mut buf);
        let mut owner = lock(&reader.owner);
        while matches!(*owner, Owner::Parked) {
            owner = reader
                .adopted
                .wait(owner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let Owner::Session(peer, tx) = &*owner else {
            return; // closed from the pool
        };
        let n = match read {
            Ok(0) | Err(_) => return drop(tx.send(Input::Eof(*peer))),
            Ok(n) => n,
        };
        let (go, wait) = mpsc::sync_channel(1);
        let sent = tx.send(Input::Bytes(*peer, buf[..n].to_vec(), go));
        drop(owner);
        if sent.is_err() || wait.recv().is_err() {
            return; // the session is over
        }
    })
}

/// `addr`'s addresses: a host name is looked up now (on a thread of its own, so that a resolver
/// that hangs costs at most `limit`); what a failed lookup means is the core's.
fn resolve(addr: &BackendAddr, limit: Duration) -> io::Result<Vec<SocketAddr>> {
    let Some(host) = addr.name() else {
        return addr.resolved(Ok(Vec::new())); // an IP address: no lookup
    };
    let (host, port, (found, wait)) = (host.to_owned(), addr.port(), mpsc::channel());
    spawn(move || drop(found.send((host.as_str(), port).to_socket_addrs().map(Vec::from_iter))))?;
    match wait.recv_timeout(limit) {
        Ok(lookup) => addr.resolved(lookup),
        Err(_) => Err(addr.resolve_timed_out(limit)),
    }
}

/// Connects to `addr` (its addresses in order), lookup and connects within `limit`.
fn connect(addr: &BackendAddr, limit: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    let mut last = io::Error::from(io::ErrorKind::TimedOut);
    for a in resolve(addr, limit)? {
        match TcpStream::connect_timeout(&a, until(deadline).max(Duration::from_millis(1))) {
            Ok(sock) => return Ok(sock),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Opens backend connection `c` and starts reading it.
fn open(sh: &Shared, addr: &BackendAddr, c: u64, tx: &Sender<Input>) -> io::Result<Arc<Sock>> {
    let timeout = lock(&sh.ep).config().health.timeout;
    let sock = new_sock(connect(addr, timeout)?, Peer::Backend(c), tx);
    spawn_reader(&sock).map(|_| sock)
}

/// Shuts a socket down (its reader ends), after what was queued on it is written.
fn close(sock: Option<Arc<Sock>>) {
    sock.map(|s| s.stream.shutdown(Shutdown::Both));
}

type Sockets = HashMap<Peer, Arc<Sock>>;

/// The drain rule (`Connection`'s module docs): sync; write what is queued, then open or close
/// a socket; until nothing is left. Writes block: a slow peer slows its own session down.
/// Parks are carried out under the endpoint's lock, with the sync that decided them: the socket
/// is in the pool before the endpoint can hand it to another session or close it.
fn drain(sh: &Shared, conn: &mut Connection, socks: &mut Sockets, tx: &Sender<Input>) {
    let mut events = VecDeque::new();
    loop {
        if conn.needs_sync() {
            let mut ep = lock(&sh.ep);
            ep.sync(Instant::now(), conn);
            while let Some(event) = conn.poll_event() {
                match event {
                    // Written in full before (writes block): parked with nothing pending.
                    IoEvent::Park { conn: c, pooled } => {
                        if let Some(sock) = socks.remove(&Peer::Backend(c)) {
                            sock.set_owner(Owner::Parked);
                            lock(&sh.pool).insert(pooled, sock);
                        }
                    }
                    other => events.push_back(other),
                }
            }
            drop(ep);
            deliver(sh); // e.g. a session waiting for a pooled connection may go on
        }
        if let Some(t) = conn.poll_transmit() {
            match socks.get(&t.peer).map(|s| (&s.stream).write_all(&t.data)) {
                Some(Ok(())) => conn.record_sent(t.peer, t.data.len()),
                _ => conn.handle_eof(Instant::now(), t.peer),
            }
        } else if let Some(event) = events.pop_front().or_else(|| conn.poll_event()) {
            match event {
                IoEvent::Connect { conn: c, addr } => match open(sh, &addr, c, tx) {
                    Ok(sock) => {
                        let peer = sock.stream.peer_addr(); // where a host name led
                        socks.insert(Peer::Backend(c), sock);
                        match peer {
                            Ok(peer) => conn.connected_to(Instant::now(), c, peer),
                            Err(_) => conn.connected(Instant::now(), c),
                        }
                    }
                    Err(e) => conn.connect_failed(Instant::now(), c, &e),
                },
                IoEvent::Close { conn: c } => close(socks.remove(&Peer::Backend(c))),
                IoEvent::Adopt { conn: c, pooled } => match lock(&sh.pool).remove(&pooled) {
                    Some(sock) => {
                        sock.set_owner(Owner::Session(Peer::Backend(c), tx.clone()));
                        socks.insert(Peer::Backend(c), sock);
                        conn.adopted(Instant::now(), c);
                    }
                    None => conn.handle_eof(Instant::now(), Peer::Backend(c)),
                },
                _ => {}
            }
        } else if !conn.needs_sync() {
            return;
        }
    }
}

/// One client connection, from `accept` to `connection_closed`.
fn session(sh: &Shared, client: TcpStream, addr: SocketAddr) {
    let (tx, rx) = mpsc::channel();
    let mut ep = lock(&sh.ep);
    let mut conn = match ep.accept(Instant::now(), addr, 0, Box::new(OsRandom)) {
        Accept::Connection(conn) => conn,
        Accept::Refused(refused) => {
            drop(ep); // its ERR (max-connections, blocked, shutting down); dropping closes
            return drop((&client).write_all(refused.bytes()));
        }
    };
    lock(&sh.sessions).insert(conn.id(), tx.clone()); // under `ep`: no command is missed
    drop(ep);
    let mut socks = HashMap::from([(Peer::Client, new_sock(client, Peer::Client, &tx))]);
    if spawn_reader(&socks[&Peer::Client]).is_err() {
        conn.handle_eof(Instant::now(), Peer::Client);
    }
    let mut held = None; // client bytes the session wants none of yet (their reader waits)
    drain(sh, &mut conn, &mut socks, &tx);
    while !conn.is_closed() {
        let wants = conn.wants_input(Peer::Client);
        let t = conn.poll_timeout().map_or(Duration::MAX, until);
        let input = held.take_if(|_| wants).or_else(|| rx.recv_timeout(t).ok());
        let now = Instant::now();
        match input {
            Some(i @ Input::Bytes(Peer::Client, ..)) if !wants => held = Some(i),
            Some(Input::Bytes(peer, data, go)) => {
                let _ = go.send(()); // its reader reads on while this is handled
                conn.handle_input(now, peer, &data);
            }
            Some(Input::Eof(peer)) => conn.handle_eof(now, peer),
            Some(Input::Command(command)) => conn.handle_command(now, command),
            None => conn.handle_timeout(now),
        }
        drain(sh, &mut conn, &mut socks, &tx);
    }
    lock(&sh.sessions).remove(&conn.id());
    // Written in full: FIN to the client.
    let _ = socks[&Peer::Client].stream.shutdown(Shutdown::Write);
    socks.into_values().map(Some).for_each(close);
    lock(&sh.ep).connection_closed(Instant::now(), &mut conn);
    deliver(sh); // its backend connections no longer count: a waiting session may go on
}

/// One health check: connect, then write what the probe sends (a monitor login) and read, until
/// it has its verdict and nothing left to write.
fn run_probe(sh: &Shared, mut probe: HealthProbe) {
    match connect(probe.addr(), probe.timeout()) {
        Err(e) => probe.connect_failed(Instant::now(), &e),
        Ok(mut sock) => {
            let mut buf = [0; 4096];
            loop {
                // Past the deadline, I/O times out at once and the probe gives up.
                let t = Some(until(probe.deadline()).max(Duration::from_millis(1)));
                while let Some(bytes) = probe.poll_transmit() {
                    let w = sock
                        .set_write_timeout(t)
                        .and_then(|()| sock.write_all(&bytes));
                    w.unwrap_or_else(|e| probe.write_failed(Instant::now(), &e));
                }
                if probe.is_done() {
                    break;
                }
                match sock.set_read_timeout(t).and_then(|()| sock.read(&mut buf)) {
                    Ok(0) => probe.handle_eof(Instant::now()),
                    Ok(n) => probe.handle_input(Instant::now(), &buf[..n]),
                    Err(e) => probe.read_failed(Instant::now(), &e),
                }
            }
        }
    }
    lock(&sh.ep).probe_finished(Instant::now(), probe);
    deliver(sh);
}

/// The endpoint's timers (health rounds, a thread per probe; the balancer): probes, next time.
fn tick(sh: &'static Shared) -> (Vec<Thread>, Option<Instant>) {
    let mut ep = lock(&sh.ep);
    ep.handle_timeout(Instant::now());
    let probes: Vec<_> = std::iter::from_fn(|| ep.poll_probe()).collect();
    let next = ep.poll_timeout();
    drop(ep);
    deliver(sh);
    let threads = probes.into_iter().filter_map(|probe| {
        let copy = probe.clone(); // no thread to spare: run it here, or the rounds would stop
        let spawned = spawn(move || run_probe(sh, probe));
        spawned.map_err(|_| run_probe(sh, copy)).ok()
    });
    (threads.collect(), next)
}

/// The admin port: its settings, the open connections (at the cap the core names one to close)
/// and a lock so that one admin request at a time contends for the endpoint.
struct Admin {
    config: AdminConfig,
    slots: Mutex<AdminSlots<Arc<TcpStream>>>,
    answering: Mutex<()>,
}

/// One admin connection: its bytes through the core's `AdminConnection` (TLS, limits, deadlines)
/// until it is closed; its request answered by the endpoint.
fn admin_conn(sh: &Shared, admin: &Admin, sock: &TcpStream, id: u64) -> io::Result<()> {
    let mut conn = AdminConnection::new(Instant::now(), &admin.config);
    let mut buf = [0; 4096];
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            sock.set_write_timeout(Some(admin.config.limits.request_timeout))?;
            (&*sock).write_all(&bytes)?;
        }
        if conn.is_closed() {
            return Ok(());
        } else if conn.is_answered() {
            let _ = sock.shutdown(Shutdown::Write); // then read what the client still sends
        }
        if let Some(request) = conn.poll_request() {
            lock(&admin.slots).answering(id);
            let _one_at_a_time = lock(&admin.answering);
            let process = wants_process_stats(&request).then(|| process_stats(sh.started));
            let response =
                lock(&sh.ep).handle_admin_with_process(Instant::now(), &request, process);
            deliver(sh); // drain, undrain and migrate queue commands
            let (method, path, status) = (&request.method, &request.path, response.status);
            tracing::debug!(%method, %path, status, "admin request");
            conn.respond(Instant::now(), &response);
            continue;
        }
        let Some(deadline) = conn.deadline() else {
            return Ok(()); // unreachable: only an answer in progress has no deadline
        };
        sock.set_read_timeout(Some(until(deadline).max(Duration::from_millis(1))))?;
        match (&*sock).read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_input(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now().max(deadline));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The process's CPU time, memory and descriptors for `/metrics` (Linux's `/proc/self`).
fn process_stats(started: SystemTime) -> ProcessStats {
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    ProcessStats {
        cpu: Some(Duration::new(cpu.tv_sec as u64, cpu.tv_nsec as u32)),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        start_time: started.duration_since(SystemTime::UNIX_EPOCH).ok(),
        ..ProcessStats::default()
    }
    .with_statm(&statm, rustix::param::page_size() as u64)
}

fn refused<T>(why: ferry_core::control::ConfigError) -> T {
    eprintln!("ferry-std: configuration refused:\n{why}");
    std::process::exit(2)
}

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let config = cli.config().unwrap_or_else(refused);
    // The level: --log-level, then RUST_LOG, then [log] level (LogConfig::filter decides).
    let filter = config.log.filter(std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match config.log.format {
        LogFormat::Json => logger.json().flatten_event(true).init(),
        LogFormat::Text => logger.with_ansi(io::stderr().is_terminal()).init(),
    }
    let mut endpoint = Endpoint::new(Instant::now(), &config, 1).unwrap_or_else(refused);
    let (listen, admin) = (config.proxy.listen, config.admin.listen);
    if cli.check {
        println!("{}", config.summary());
        return ExitCode::SUCCESS;
    }
    // Room for max-connections sessions (two descriptors each), up to the hard limit.
    let max = config.proxy.max_connections;
    report_open_files(max, rlimit::increase_nofile_limit(open_files_needed(max)));
    endpoint.set_config_source(Box::new(move || cli.config())); // SIGHUP, POST /api/config/reload
    let bind = |addr| TcpListener::bind(addr).inspect_err(|e| eprintln!("ferry-std: {addr}: {e}"));
    let (Ok(listener), Ok(admin_listener)) = (bind(listen), bind(admin)) else {
        return ExitCode::FAILURE;
    };
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP]).expect("signal handlers");
    let sh: &'static Shared = Box::leak(Box::new(Shared {
        ep: Mutex::new(endpoint),
        sessions: Mutex::default(),
        pool: Mutex::default(),
        started: SystemTime::now(),
    }));
    // The first health round is due at once: it fixes the server version clients are told.
    tick(sh).0.into_iter().for_each(|t| drop(t.join()));
    thread::spawn(move || loop {
        thread::sleep(tick(sh).1.map_or(TICK, until).min(TICK));
    });
    report_admin_listen(&config.admin, admin_listener.local_addr().unwrap_or(admin));
    let admin_port: &'static Admin = Box::leak(Box::new(Admin {
        slots: Mutex::new(AdminSlots::new(config.admin.limits.max_connections)),
        config: config.admin.clone(),
        answering: Mutex::default(),
    }));
    thread::spawn(move || {
        for sock in admin_listener.incoming() {
            let Ok(sock) = sock.map(Arc::new) else {
                thread::sleep(ACCEPT_BACKOFF); // out of descriptors: no spin
                continue;
            };
            // At the cap, the connection that gives way is shut down: its thread ends.
            let (id, evicted) = lock(&admin_port.slots).admit(Arc::clone(&sock));
            evicted.map(|old| old.shutdown(Shutdown::Both));
            let spawned = spawn(move || {
                let _ = admin_conn(sh, admin_port, &sock, id);
                lock(&admin_port.slots).release(id);
            });
            if spawned.is_err() {
                lock(&admin_port.slots).release(id);
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    });
    thread::spawn(move || {
        while lock(&sh.ep).is_accepting() {
            let spawned = listener.accept();
            let spawned = spawned.and_then(|(sock, addr)| spawn(move || session(sh, sock, addr)));
            if let Err(e) = spawned {
                // Out of descriptors (or threads): the clients wait in the backlog until then.
                thread::sleep(until(lock(&sh.ep).accept_failed(Instant::now(), 0, &e)));
            }
        } // the listener closes: the kernel refuses new clients
    });
    tracing::info!(%listen, %admin, "ferry-std serving");
    let signal = signals.forever().find(|&signal| {
        if signal == SIGHUP {
            // Logged by the endpoint; the control thread delivers the moves it plans.
            drop(lock(&sh.ep).reload_from_source(Instant::now()));
        }
        signal != SIGHUP // the others shut down
    });
    tracing::info!(?signal, "shutting down gracefully");
    lock(&sh.ep).begin_shutdown(Instant::now());
    deliver(sh);
    while lock(&sh.ep).is_accepting() {
        thread::sleep(TICK); // shutdown-delay: clients are served, until the tick thread ends it
    }
    let _ = TcpStream::connect(listen); // wakes the accept loop, which then stops
    let deadline = lock(&sh.ep)
        .shutdown_deadline()
        .unwrap_or_else(Instant::now);
    while lock(&sh.ep).live_sessions() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    ExitCode::SUCCESS
}
