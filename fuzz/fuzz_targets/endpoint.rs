//! The control plane's `Endpoint` driven by arbitrary operations, as a driver would: accepting
//! clients (by shard, some with an in-memory client that logs in as `app` and sends queries),
//! dropping connections, feeding them arbitrary client and backend bytes and EOFs, answering the
//! `IoEvent::Connect`s they emit (connected, to an in-memory server or to the fuzzer's bytes, or
//! failed with an `io::ErrorKind` or errno), syncing them whenever `needs_sync()` (the drain rule of
//! `Connection`'s docs), delivering `poll_command`'s commands with `handle_command`, admin requests
//! (a dictionary of methods, paths and bodies, plus arbitrary ones), drain, undrain, migrate and
//! cancel, health rounds with arbitrary outcomes (probes held back and finished late too), the
//! clock moving by arbitrary steps with `handle_timeout` (endpoint and connections), reloads
//! (backends added and removed, `max-connections`, `idle-timeout`, a new listen address) and
//! shutdown. The configuration is small and fuzzed: 1 to 3 backends, passthrough or proxy auth,
//! migration off, replay or tidb, `max-connections`, timers, a route, 1 to 3 shards, and
//! `[multiplexing]` (with proxy auth and replay, which it needs): `max-backend-connections` 1 to
//! 4, `max-waiting` 1 to 4, `max-wait`, `idle-timeout`, `check-after`. The driver parks sockets
//! (`IoEvent::Park`, with their in-memory server) in one map for every shard, hands them back
//! on `IoEvent::Adopt` (then `adopted`; or their EOF when the fuzzer "lost" the parked socket),
//! and closes those `poll_pool_close` names after every sync, `handle_timeout` and shutdown.
//!
//! Invariants, after every operation (every connection drained):
//! - nothing panics, and draining a connection ends (no livelock between the proxy and its peers);
//! - `live_sessions()` (and `/metrics`' `sessions`) equals accepted minus closed; `sessions_accepted`
//!   counts the accepts; `accept` refuses exactly when shutting down or at `max-connections`, and
//!   gives the new client to the shard with the fewest sessions (the accepting one on a tie);
//! - connection ids are unique and non-zero, shards in range, a command comes from the queue of
//!   its session's shard;
//! - `sessions()` ids are unique, sorted and live, each listed backend and pin is its session's
//!   own (`backend_name()`, `pinned()`); every configured backend is listed with its address,
//!   in configuration order when no reload changed the list, and a listed backend the
//!   configuration no longer has (removed by a reload, sessions left) is draining;
//! - every backend's `sessions` equals the backend connections open or opening to it (connects
//!   emitted and not closed, failed or dropped) over the live connections: so, after closing every
//!   connection at the end, every count is 0;
//! - reload: applied exactly while serving, the running configuration becomes the new one but
//!   for the listen address (reported as needing a restart), the version counts the reloads;
//! - timers: after `handle_timeout(t)` (at `poll_timeout()`, or any later instant), `poll_timeout()`
//!   is later than `t`, or `None`, and stays so whatever else is done at `t`; `None` while
//!   shutting down;
//! - shutdown asks every live session (and only those) to close, once;
//! - admin: `/health` is 200 exactly while serving, `/api/backends` and `/api/sessions` are the
//!   getters' values, drain and undrain set the flag of a known backend and 404 an unknown one,
//!   and every answer has a status the API documents;
//! - multiplexing: a pooled id is parked once ever, adopted and closed (`poll_pool_close`) only
//!   while parked, and no byte goes to a parked socket; per backend, the pool's in use + idle
//!   (`metrics().pool.connections`, and `/metrics`' `ferry_pool_connections`, one series per
//!   backend and state) equals the connections that exist to it (open or opening sockets of
//!   live sessions, plus parked ones), idle equals the parked ones, and the connections stay
//!   within `max-backend-connections` plus those opened by a second connect of the same
//!   connection id (the pool opens one only below the maximum or in place of an idle one; a
//!   login failing over to the next backend is the one connect it lets past it); at most
//!   `max-waiting` sessions wait; without multiplexing nothing is pooled. At the end, once every
//!   connection closed: nothing in use, and after shutdown and its `poll_pool_close`s nothing
//!   parked and every count 0.
#![no_main]

#[path = "backend_bytes.rs"]
mod backend_bytes;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use backend_bytes::{frame, greeting};
use ferry_core::auth::{AuthPlugin, ClientSecret, Credential, Password};
use ferry_core::backend::{self, Backend};
use ferry_core::control::admin::Request;
use ferry_core::control::config::units::ConfigDuration;
use ferry_core::control::config::{
    AuthMode, BackendSection, ConfigFile, MigrationMode, RouteSection, UserSection,
};
use ferry_core::control::{
    Accept, Command, Config, Connection, Endpoint, HealthProbe, IoEvent, PooledId, ACCEPT_BACKOFF,
};
use ferry_core::frontend::{
    column, default_capabilities, AuthMode as ServerAuth, Frontend, FrontendConfig, UserEntry,
    UserTable,
};
use ferry_core::session::{BackendConnId, Peer};
use ferry_core::wire::{Capabilities, ColumnType, Command as WireCommand, Query, ServerStatus};
use ferry_core::{ProtocolError, SeededRandom};
use libfuzzer_sys::fuzz_target;

const USER: &str = "app";
const PASSWORD: &str = "password";
/// `PASSWORD('password')`, as `mysql.user` stores it.
const PASSWORD_HASH: &str = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";

const KINDS: [io::ErrorKind; 12] = [
    io::ErrorKind::ConnectionRefused,
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::ConnectionAborted,
    io::ErrorKind::TimedOut,
    io::ErrorKind::HostUnreachable,
    io::ErrorKind::NetworkUnreachable,
    io::ErrorKind::AddrNotAvailable,
    io::ErrorKind::PermissionDenied,
    io::ErrorKind::WouldBlock,
    io::ErrorKind::Interrupted,
    io::ErrorKind::OutOfMemory,
    io::ErrorKind::Other,
];
const ERRNOS: [i32; 6] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::ECONNREFUSED,
    libc::ETIMEDOUT,
];

const SQL: &[&str] = &[
    "SELECT 1",
    "BEGIN",
    "COMMIT",
    "FAIL",
    "DO 1",
    "SET @a = 1",
    "CREATE TEMPORARY TABLE t (a INT)",
    "LOCK TABLES t READ",
    "UNLOCK TABLES",
    "SELECT GET_LOCK('x', 1)",
    "PREPARE s FROM 'SELECT 1'",
    "USE db",
    "SELECT CONNECTION_ID()",
    "SET NAMES latin1",
    "SELECT SQL_CALC_FOUND_ROWS 1",
    "SET @@session.sql_mode = ''",
];

/// COM_QUIT: what a pooled connection hears before it is closed.
const COM_QUIT: [u8; 5] = [1, 0, 0, 0, 1];

const METHODS: &[&str] = &["GET", "POST", "PUT", ""];
const PATHS: &[&str] = &[
    "/health",
    "/metrics",
    "/api/backends",
    "/api/sessions",
    "/api/backends/{b}/drain",
    "/api/backends/{b}/undrain",
    "/api/sessions/{s}/migrate",
    "/api/backends/db9/drain",
    "/api/sessions/0/migrate",
    "/api/sessions/x/migrate",
    "/",
    "/api/config",
    "/api/config/reload",
];
const BODIES: &[&str] = &[
    "",
    "{\"to\": \"{b}\"}",
    "{\"to\": \"db9\"}",
    "{\"to\": 1}",
    "{\"to\": \"{b}\", \"now\": true}",
    "{",
];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Failure {
    Kind(u8),
    Errno(u8),
}

impl Failure {
    fn io(self) -> io::Error {
        match self {
            Failure::Kind(i) => io::Error::from(KINDS[i as usize % KINDS.len()]),
            Failure::Errno(i) => io::Error::from_raw_os_error(ERRNOS[i as usize % ERRNOS.len()]),
        }
    }
}

/// How a backend answers connects that the fuzzer does not answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Arbitrary)]
enum Dial {
    /// Connected to an in-memory server that knows `app`.
    Serve,
    /// Left to the fuzzer (`Op::Connect`).
    Hold,
    Refuse,
    OutOfFiles,
    /// Connected, and the server answers with ERR 1040.
    TooMany,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum ConnectResult {
    /// Connected; to an in-memory server or to bytes the fuzzer sends.
    Connected {
        serve: bool,
    },
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Outcome {
    Healthy,
    Refused,
    TooMany,
    OutOfFiles,
    /// Given back without a verdict.
    Silent,
    /// Kept by the driver; finished by `Op::FinishHeld`.
    Hold,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Accept {
        by: u8,
        client: bool,
    },
    /// The driver drops the connection (twice: the second call must do nothing).
    Close(u8, bool),
    ClientBytes(u8, Vec<u8>),
    ClientEof(u8),
    /// The in-memory client sends a query, or quits.
    Query(u8, u8),
    Quit(u8),
    BackendBytes(u8, u8, Vec<u8>),
    BackendEof(u8, u8),
    /// Answers a connect left pending.
    Connect(u8, u8, ConnectResult),
    Deliver(u8),
    Admin {
        method: u8,
        path: u8,
        body: u8,
        target: u8,
        raw: Option<Vec<u8>>,
    },
    SetDraining(u8, bool),
    Migrate(u8, u8),
    Cancel(u8),
    /// The clock moves (ms); the endpoint's and connections' due timers fire.
    Advance(u16),
    /// `handle_timeout` at `poll_timeout()` (or now, if that passed).
    Deadline,
    Probes(Vec<Outcome>),
    FinishHeld(u8, Outcome),
    AcceptFailed(u8),
    /// A new configuration: backends db1..db3 by bit (none: db1), `max-connections`,
    /// `idle-timeout`, and a new listen address (not applied: needs a restart).
    Reload {
        backends: u8,
        max_connections: Option<u8>,
        idle_timeout: Option<u8>,
        listen_moved: bool,
    },
    Shutdown,
    /// A parked socket fails while parked: the driver no longer has it (`lost`), or its server
    /// goes silent (the fuzzer's bytes answer from then on).
    ParkedFails {
        k: u8,
        lost: bool,
    },
}

/// `[multiplexing]`, enabled.
#[derive(Debug, Arbitrary)]
struct Mux {
    max_backend_connections: u8,
    max_wait_ms: u16,
    max_waiting: u8,
    idle_timeout_ms: u16,
    check_after_ms: u16,
}

#[derive(Debug, Arbitrary)]
struct Setup {
    backends: u8,
    shards: u8,
    proxy_auth: bool,
    migration: u8,
    max_connections: Option<u8>,
    interval_ms: u16,
    timeout_ms: u16,
    rebalance_ms: u16,
    max_moves: u8,
    tolerance: u8,
    idle_timeout: Option<u8>,
    route: Option<u8>,
    /// Backends healthy after the first health round (bit per backend); `None`: no first round.
    healthy: Option<u8>,
    dial: [Dial; 3],
    /// The driver delivers commands after every operation (else only on `Op::Deliver`).
    auto_deliver: bool,
    /// Multiplexing on (with proxy auth and replay migration, whatever the fields above say).
    multiplexing: Option<Mux>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3306 + i as u16))
}

fn config(s: &Setup) -> Config {
    Config::from_file(&file(s)).expect("a valid configuration")
}

fn file(s: &Setup) -> ConfigFile {
    let n = 1 + s.backends as usize % 3;
    let ms = |v: u16| Some(ConfigDuration(Duration::from_millis(1 + u64::from(v))));
    let mut file = ConfigFile {
        backends: (0..n)
            .map(|i| BackendSection {
                name: format!("db{}", i + 1),
                addr: addr(i).to_string(),
                proxy_protocol: false,
            })
            .collect(),
        ..ConfigFile::default()
    };
    let proxy_auth = s.proxy_auth || s.multiplexing.is_some();
    if proxy_auth {
        file.auth.mode = Some(AuthMode::Proxy);
        file.auth.users = vec![UserSection {
            name: USER.into(),
            password_hash: PASSWORD_HASH.into(),
        }];
    }
    file.migration.mode = match s.migration % 4 {
        _ if s.multiplexing.is_some() => Some(MigrationMode::Replay),
        0 => None,
        1 => Some(MigrationMode::Off),
        2 => Some(MigrationMode::Tidb),
        _ if proxy_auth => Some(MigrationMode::Replay),
        _ => None,
    };
    if let Some(m) = &s.multiplexing {
        let mux = &mut file.multiplexing;
        mux.enabled = Some(true);
        mux.max_backend_connections = Some(1 + usize::from(m.max_backend_connections % 4));
        mux.max_wait = ms(m.max_wait_ms % 2000);
        mux.max_waiting = Some(1 + usize::from(m.max_waiting % 4));
        mux.idle_timeout = ms(m.idle_timeout_ms % 10_000);
        mux.check_after = ms(m.check_after_ms % 3000);
    }
    file.proxy.max_connections = s.max_connections.map(|m| 1 + usize::from(m % 8));
    file.proxy.idle_timeout = s
        .idle_timeout
        .map(|t| ConfigDuration(Duration::from_millis(u64::from(t) * 100)));
    file.health.interval = ms(s.interval_ms);
    file.health.timeout = ms(s.timeout_ms % 5000);
    file.migration.rebalance_interval = ms(s.rebalance_ms);
    file.migration.rebalance_max_moves = Some(usize::from(s.max_moves % 4));
    file.migration.rebalance_tolerance = Some(1 + usize::from(s.tolerance % 3));
    if let Some(r) = s.route {
        file.routes = vec![RouteSection {
            user: (r & 1 == 0 || r & 2 == 0).then(|| USER.into()),
            database: (r & 2 != 0).then(|| "db".into()),
            backend: format!("db{}", 1 + usize::from(r >> 2) % n),
        }];
    }
    file
}

/// `dbN`'s index.
fn backend_number(name: &str) -> usize {
    let n: usize = name
        .strip_prefix("db")
        .and_then(|n| n.parse().ok())
        .unwrap();
    n - 1
}

fn too_many_connections() -> Vec<u8> {
    let mut payload = vec![0xFF];
    payload.extend_from_slice(&1040u16.to_le_bytes());
    payload.extend_from_slice(b"Too many connections");
    frame(&payload)
}

/// The in-memory servers: they know `app`/`password` and report transactions.
fn server_config() -> Arc<FrontendConfig> {
    let mut users = UserTable::new();
    users.insert(
        USER,
        UserEntry {
            credential: Credential::native_from_password(PASSWORD.as_bytes()),
            plugin: AuthPlugin::MysqlNativePassword,
        },
    );
    let mut config = FrontendConfig::new(ServerAuth::Proxy {
        users: Arc::new(users),
        sha2_cache: None,
        rsa: None,
    });
    config.capabilities = default_capabilities() | Capabilities::SESSION_TRACK;
    config.auto_accept_login = true;
    config.server_version = "10.11.0-MariaDB-fuzz".into();
    Arc::new(config)
}

/// `SELECT 1` gives a row, `BEGIN` opens a transaction, `FAIL` an ERR, the rest an OK.
fn serve(fe: &mut Frontend, now: Instant, event: ferry_core::frontend::Event) {
    let ferry_core::frontend::Event::Command(command) = event else {
        return;
    };
    let result = match command.parse() {
        Ok(WireCommand::Query(q)) if q.sql == b"SELECT 1" => {
            let cols = [column(b"1", ColumnType::LongLong)];
            fe.send_text_result(now, &cols, [[Some(&b"1"[..])]])
        }
        Ok(WireCommand::Query(q)) if q.sql == b"BEGIN" || q.sql == b"COMMIT" => {
            let mut status = ServerStatus::AUTOCOMMIT;
            if q.sql == b"BEGIN" {
                status = ServerStatus(status.0 | ServerStatus::IN_TRANS.0);
            }
            fe.set_status(now, status);
            fe.send_ok_empty(now)
        }
        Ok(WireCommand::Query(q)) if q.sql == b"FAIL" => {
            fe.send_error(now, &ProtocolError::new(1064, "42000", "syntax error"))
        }
        Ok(WireCommand::Quit) => return,
        _ => fe.send_ok_empty(now),
    };
    // A command the in-memory server cannot answer (ferry sent something odd) ends nothing here:
    // its ERR from `end_response` is ignored, the fuzzer keeps going.
    let _ = result.and_then(|()| fe.end_response(now));
}

/// A backend connection of a session, as the driver sees it.
struct Socket {
    id: BackendConnId,
    addr: SocketAddr,
    /// `None` while connecting.
    connected: Option<Option<Frontend>>,
    /// Opened by a second connect of the same connection id: a login failing over to the next
    /// backend (or an acquire trying again), which the pool may count past its maximum.
    retry: bool,
}

/// A socket parked in the pool (multiplexing), as the driver holds it.
struct Parked {
    addr: SocketAddr,
    /// Its socket's `retry`.
    retry: bool,
    /// `None`: it failed while parked, the driver no longer has it.
    socket: Option<Socket>,
}

/// The driver's parked sockets, by pooled id (one map for every shard, as a driver shares them).
#[derive(Default)]
struct Pooled {
    parked: BTreeMap<PooledId, Parked>,
    /// Every id parked so far.
    seen: HashSet<PooledId>,
}

impl Pooled {
    /// `IoEvent::Park`: socket `s` is kept under `pooled`.
    fn park(&mut self, pooled: PooledId, s: Socket) {
        assert!(
            s.connected.is_some(),
            "backend connection {} parked while connecting",
            s.id
        );
        assert!(self.seen.insert(pooled), "pooled id {pooled} parked twice");
        let (addr, retry) = (s.addr, s.retry);
        self.parked.insert(
            pooled,
            Parked {
                addr,
                retry,
                socket: Some(s),
            },
        );
    }

    /// `IoEvent::Adopt`: the socket parked under `pooled`, if the driver still has it.
    fn adopt(&mut self, pooled: PooledId) -> Option<Socket> {
        let parked = self.parked.remove(&pooled);
        let parked = parked.unwrap_or_else(|| panic!("pooled id {pooled} adopted, not parked"));
        parked.socket
    }

    /// Every `poll_pool_close`: each names a parked socket, which hears COM_QUIT and closes.
    fn close(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(close) = ep.poll_pool_close() {
            let parked = self.parked.remove(&close.pooled);
            let parked =
                parked.unwrap_or_else(|| panic!("pool close of {}, not parked", close.pooled));
            assert_eq!(&close.farewell[..], &COM_QUIT[..], "the farewell");
            if let Some(Socket {
                connected: Some(Some(mut fe)),
                ..
            }) = parked.socket
            {
                fe.handle_input(now, &close.farewell);
            }
        }
    }
}

/// A client connection, as the driver holds it.
struct Client {
    conn: Connection,
    /// The in-memory client, if any.
    client: Option<Backend>,
    sockets: Vec<Socket>,
    /// The backend connection ids it was asked to connect.
    connects: HashSet<BackendConnId>,
}

struct Harness {
    ep: Endpoint,
    now: Instant,
    config: Config,
    /// The file the first configuration came from, for reloads.
    file: ConfigFile,
    /// Reloads applied: the listing is in configuration order until the first.
    reloads: u64,
    shards: usize,
    dial: [Dial; 3],
    clients: Vec<Client>,
    /// Live connections per shard.
    per_shard: Vec<usize>,
    accepted: usize,
    closed: usize,
    held: Vec<HealthProbe>,
    seed: u64,
    /// The instant of the last `handle_timeout`.
    last_timeout: Option<Instant>,
    /// Multiplexing's parked sockets.
    pooled: Pooled,
    /// `max-backend-connections` (`None`: multiplexing off).
    max_backend: Option<usize>,
    max_waiting: usize,
}

impl Harness {
    /// Backend `dbN` listens on `addr(N - 1)`, whatever the configuration lists now.
    fn backend_index(&self, a: SocketAddr) -> usize {
        (0..3)
            .find(|&i| addr(i) == a)
            .unwrap_or_else(|| panic!("a connect to {a}, which is no backend"))
    }

    /// The drain rule for client `i`, until nothing moves.
    fn pump(&mut self, i: usize) {
        let now = self.now;
        for round in 0.. {
            assert!(round < 10_000, "the connection never settles");
            let c = &mut self.clients[i];
            let mut progress = false;
            if c.conn.needs_sync() {
                self.ep.sync(now, &mut c.conn);
                self.pooled.close(&mut self.ep, now);
                progress = true;
            }
            while let Some(t) = c.conn.poll_transmit() {
                progress = true;
                c.conn.record_sent(t.peer, t.data.len());
                match t.peer {
                    Peer::Client => {
                        if let Some(client) = &mut c.client {
                            client.handle_input(now, &t.data);
                        }
                    }
                    Peer::Backend(id) => {
                        let socket = c.sockets.iter_mut().find(|s| s.id == id);
                        let Some(socket) = socket else {
                            panic!("bytes for backend connection {id}, which is not open");
                        };
                        match &mut socket.connected {
                            Some(Some(fe)) => fe.handle_input(now, &t.data),
                            Some(None) => {}
                            None => panic!("bytes for backend connection {id} while connecting"),
                        }
                    }
                }
            }
            let mut connects = Vec::new();
            while let Some(e) = c.conn.poll_event() {
                progress = true;
                match e {
                    IoEvent::Connect { conn, addr } => {
                        // The backends are IP addresses: connected to without a lookup.
                        let ip = addr.ip().expect("an IP backend");
                        connects.push((conn, ip))
                    }
                    IoEvent::Close { conn } => {
                        if let Some(p) = c.sockets.iter().position(|s| s.id == conn) {
                            c.sockets.remove(p);
                        }
                    }
                    IoEvent::Park { conn, pooled } => {
                        let p = c.sockets.iter().position(|s| s.id == conn);
                        let p = p.unwrap_or_else(|| panic!("park of {conn}, which is not open"));
                        self.pooled.park(pooled, c.sockets.remove(p));
                    }
                    IoEvent::Adopt { conn, pooled } => {
                        assert!(
                            c.sockets.iter().all(|s| s.id != conn),
                            "adopted as {conn}, which is open already"
                        );
                        match self.pooled.adopt(pooled) {
                            Some(mut socket) => {
                                socket.id = conn;
                                c.sockets.push(socket);
                                c.conn.adopted(now, conn);
                            }
                            // Failed while parked: the driver reports it at once.
                            None => c.conn.handle_eof(now, Peer::Backend(conn)),
                        }
                    }
                    _ => {}
                }
            }
            for (id, a) in connects {
                let dial = self.dial[self.backend_index(a)];
                let c = &mut self.clients[i];
                let retry = !c.connects.insert(id);
                c.sockets.push(Socket {
                    id,
                    addr: a,
                    connected: None,
                    retry,
                });
                match dial {
                    Dial::Hold => {}
                    Dial::Serve => self.connect(i, id, ConnectResult::Connected { serve: true }),
                    Dial::Refuse => {
                        let f = ConnectResult::Failed(Failure::Kind(0));
                        self.connect(i, id, f)
                    }
                    Dial::OutOfFiles => {
                        let f = ConnectResult::Failed(Failure::Errno(0));
                        self.connect(i, id, f)
                    }
                    Dial::TooMany => {
                        self.connect(i, id, ConnectResult::Connected { serve: false });
                        let c = &mut self.clients[i];
                        c.conn
                            .handle_input(now, Peer::Backend(id), &too_many_connections());
                    }
                }
            }
            let c = &mut self.clients[i];
            if let Some(client) = &mut c.client {
                while let Some(b) = client.poll_transmit() {
                    progress = true;
                    c.conn.handle_input(now, Peer::Client, &b);
                }
                while client.poll_event().is_some() {
                    progress = true;
                }
            }
            let ids: Vec<BackendConnId> = c.sockets.iter().map(|s| s.id).collect();
            for id in ids {
                let Some(s) = c.sockets.iter().position(|s| s.id == id) else {
                    continue;
                };
                let Some(Some(fe)) = &mut c.sockets[s].connected else {
                    continue;
                };
                while let Some(e) = fe.poll_event() {
                    progress = true;
                    serve(fe, now, e);
                }
                let mut out = Vec::new();
                while let Some(b) = fe.poll_transmit() {
                    out.push(b);
                }
                let closed = fe.is_closed();
                for b in out {
                    progress = true;
                    c.conn.handle_input(now, Peer::Backend(id), &b);
                }
                if closed {
                    // The server hung up: its socket reads EOF, once.
                    progress = true;
                    if let Some(s) = c.sockets.iter_mut().find(|s| s.id == id) {
                        s.connected = Some(None);
                    }
                    c.conn.handle_eof(now, Peer::Backend(id));
                }
            }
            if !progress {
                break;
            }
        }
        assert!(!self.clients[i].conn.needs_sync());
        if self.clients[i].conn.is_closed() {
            self.close(i, false);
        }
    }

    /// Answers the pending connect `id` of client `i`.
    fn connect(&mut self, i: usize, id: BackendConnId, result: ConnectResult) {
        let now = self.now;
        self.seed += 1;
        let seed = self.seed;
        let c = &mut self.clients[i];
        let Some(p) = c
            .sockets
            .iter()
            .position(|s| s.id == id && s.connected.is_none())
        else {
            return;
        };
        match result {
            ConnectResult::Connected { serve } => {
                let fe = serve.then(|| {
                    Frontend::new(
                        server_config(),
                        100 + id as u32,
                        "10.9.9.9",
                        now,
                        Box::new(SeededRandom::new(seed)),
                    )
                });
                c.sockets[p].connected = Some(fe);
                c.conn.connected(now, id);
            }
            ConnectResult::Failed(f) => {
                c.sockets.remove(p);
                c.conn.connect_failed(now, id, &f.io());
            }
        }
    }

    fn close(&mut self, i: usize, twice: bool) {
        let now = self.now;
        let mut c = self.clients.swap_remove(i);
        self.ep.connection_closed(now, &mut c.conn);
        if twice {
            self.ep.connection_closed(now, &mut c.conn);
        }
        self.closed += 1;
        self.per_shard[c.conn.shard()] -= 1;
    }

    fn accept(&mut self, by: u8, with_client: bool) {
        let now = self.now;
        let by = by as usize % (self.shards + 1);
        let live = self.ep.live_sessions();
        let serving = self.ep.is_serving();
        let min = *self.per_shard.iter().min().unwrap();
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        self.seed += 1;
        let accepted = self
            .ep
            .accept(now, client, by, Box::new(SeededRandom::new(self.seed)));
        let conn = match accepted {
            Accept::Connection(conn) => Some(conn),
            Accept::Refused(refused) => {
                // An ERR in place of the greeting: one frame, sequence id 0.
                let b = refused.bytes();
                assert!(b.len() > 7 && usize::from(b[0]) == b.len() - 4);
                assert_eq!((b[3], b[4]), (0, 0xFF));
                None
            }
        };
        let Some(conn) = conn else {
            assert!(
                !serving || live >= self.config.proxy.max_connections,
                "refused with {live} live of {}",
                self.config.proxy.max_connections
            );
            return;
        };
        assert!(serving && live < self.config.proxy.max_connections);
        let shard = conn.shard();
        assert!(shard < self.shards);
        assert_eq!(self.per_shard[shard], min, "not the least loaded shard");
        let by = by.min(self.shards - 1);
        if self.per_shard[by] == min {
            assert_eq!(shard, by, "a tie goes to the accepting shard");
        }
        assert_ne!(conn.id(), 0);
        assert!(
            self.clients.iter().all(|c| c.conn.id() != conn.id()),
            "connection id {} twice",
            conn.id()
        );
        self.per_shard[shard] += 1;
        self.accepted += 1;
        let client = with_client.then(|| {
            let secret = ClientSecret::Plaintext(Password::new(PASSWORD));
            Backend::new(
                now,
                backend::BackendConfig::new(USER, secret),
                Box::new(SeededRandom::new(self.seed)),
            )
        });
        self.clients.push(Client {
            conn,
            client,
            sockets: Vec::new(),
            connects: HashSet::new(),
        });
        let i = self.clients.len() - 1;
        self.pump(i);
    }

    fn pick(&self, i: u8) -> Option<usize> {
        (!self.clients.is_empty()).then(|| i as usize % self.clients.len())
    }

    fn socket(&self, i: usize, s: u8, connected: bool) -> Option<BackendConnId> {
        let open: Vec<&Socket> = self.clients[i]
            .sockets
            .iter()
            .filter(|x| x.connected.is_some() == connected)
            .collect();
        (!open.is_empty()).then(|| open[s as usize % open.len()].id)
    }

    fn backend_name(&self, b: u8) -> String {
        let n = self.config.backends.len();
        match b as usize % (n + 1) {
            i if i < n => self.config.backends[i].name.clone(),
            _ => "db9".into(),
        }
    }

    fn session_id(&self, s: u8) -> u64 {
        match self.pick(s) {
            Some(i) if s % 8 != 7 => self.clients[i].conn.id(),
            _ => u64::from(s) + 1000,
        }
    }

    /// `handle_timeout(t)` and the timer property.
    fn timeout(&mut self, t: Instant) {
        self.ep.handle_timeout(t);
        self.pooled.close(&mut self.ep, t);
        self.last_timeout = Some(t);
        if let Some(next) = self.ep.poll_timeout() {
            assert!(
                next > t,
                "poll_timeout {next:?} not after handle_timeout({t:?})"
            );
        }
    }

    fn probes(&mut self, outcomes: &[Outcome]) {
        let mut k = 0;
        while let Some(p) = self.ep.poll_probe() {
            let o = outcomes.get(k).copied().unwrap_or(Outcome::Healthy);
            k += 1;
            self.finish_probe(p, o);
        }
    }

    fn finish_probe(&mut self, mut p: HealthProbe, o: Outcome) {
        let now = self.now;
        match o {
            Outcome::Healthy => p.handle_input(now, &greeting()),
            Outcome::Refused => {
                p.connect_failed(now, &io::Error::from(io::ErrorKind::ConnectionRefused))
            }
            Outcome::TooMany => p.handle_input(now, &too_many_connections()),
            Outcome::OutOfFiles => {
                p.connect_failed(now, &io::Error::from_raw_os_error(libc::EMFILE))
            }
            Outcome::Silent => {}
            Outcome::Hold => return self.held.push(p),
        }
        self.ep.probe_finished(now, p);
    }

    fn admin(&mut self, req: &Request) {
        let now = self.now;
        let resp = self.ep.handle_admin(now, req);
        assert!(
            matches!(resp.status, 200 | 202 | 400 | 404 | 405 | 409 | 501 | 503),
            "{req:?} answered {}",
            resp.status
        );
        let json =
            || -> serde_json::Value { serde_json::from_slice(&resp.body).expect("a JSON body") };
        let segments: Vec<&str> = req.path.split('/').skip(1).collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["health"]) => {
                // Ready while serving, once the first health round is over.
                let ready = self.ep.is_serving() && self.ep.first_round_done();
                assert_eq!(resp.status, if ready { 200 } else { 503 })
            }
            ("GET", ["api", "backends"]) => {
                assert_eq!(resp.status, 200);
                assert_eq!(json(), serde_json::to_value(self.ep.backends()).unwrap());
            }
            ("GET", ["api", "sessions"]) => {
                assert_eq!(resp.status, 200);
                assert_eq!(json(), serde_json::to_value(self.ep.sessions()).unwrap());
            }
            ("POST", ["api", "backends", name, action @ ("drain" | "undrain")]) => {
                let configured = self.config.backends.iter().any(|b| b.name == *name);
                match self.ep.backends().iter().find(|b| b.name == *name) {
                    // Being removed: stays draining, undrain is refused.
                    Some(b) if !configured => {
                        assert!(b.draining);
                        let want = if *action == "drain" { 200 } else { 409 };
                        assert_eq!(resp.status, want);
                    }
                    Some(b) => {
                        assert_eq!(resp.status, 200);
                        assert_eq!(b.draining, *action == "drain");
                    }
                    None => assert_eq!(resp.status, 404),
                }
            }
            ("GET", ["metrics"]) if resp.status == 200 => self.check_metrics_text(&resp.body),
            ("POST", ["api", "config", "reload"]) => {
                let want = if self.ep.is_serving() { 501 } else { 503 };
                assert_eq!(resp.status, want, "no configuration source");
            }
            ("POST", ["api", "sessions", _, "migrate"]) => {
                assert!(
                    matches!(resp.status, 202 | 400 | 404 | 409),
                    "{}",
                    resp.status
                )
            }
            _ => {}
        }
    }

    /// `/metrics`' `ferry_pool_connections`: one series per backend and state, the values of
    /// `metrics()`.
    fn check_metrics_text(&self, body: &[u8]) {
        let text = std::str::from_utf8(body).expect("UTF-8 metrics");
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("ferry_pool_connections{") else {
                continue;
            };
            let (labels, value) = rest.split_once("} ").expect("a sample");
            let value: u64 = value.parse().expect("a count");
            let old = series.insert(labels.to_owned(), value);
            assert!(old.is_none(), "ferry_pool_connections{{{labels}}} twice");
        }
        let pool = self.ep.metrics().pool;
        let mut want = BTreeMap::new();
        for (name, in_use, idle) in &pool.connections {
            *want
                .entry(format!("backend=\"{name}\",state=\"in_use\""))
                .or_insert(0) += in_use;
            *want
                .entry(format!("backend=\"{name}\",state=\"idle\""))
                .or_insert(0) += idle;
        }
        assert_eq!(series, want, "/metrics' ferry_pool_connections");
    }

    fn reload(&mut self, bits: u8, max: Option<u8>, idle: Option<u8>, listen_moved: bool) {
        let now = self.now;
        let mut file = self.file.clone();
        let chosen: Vec<usize> = (0..3).filter(|i| bits & (1 << i) != 0).collect();
        file.backends = if chosen.is_empty() { vec![0] } else { chosen }
            .into_iter()
            .map(|i| BackendSection {
                name: format!("db{}", i + 1),
                addr: addr(i).to_string(),
                proxy_protocol: false,
            })
            .collect();
        // A route to a backend the file no longer has would be refused.
        file.routes
            .retain(|r| file.backends.iter().any(|b| b.name == r.backend));
        file.proxy.max_connections = max.map(|m| 1 + usize::from(m % 8));
        file.proxy.idle_timeout =
            idle.map(|t| ConfigDuration(Duration::from_millis(u64::from(t) * 100)));
        if listen_moved {
            file.proxy.listen = Some("127.0.0.1:7777".into());
        }
        let new = Config::from_file(&file).expect("a valid configuration");
        let serving = self.ep.is_serving();
        let running_listen = self.config.proxy.listen;
        match self.ep.reload(now, new) {
            Ok(report) => {
                assert!(serving, "a reload applied while shutting down");
                self.reloads += 1;
                assert_eq!(report.version, 1 + self.reloads);
                let pending = report.pending_restart.contains(&"proxy.listen".to_owned());
                assert_eq!(pending, listen_moved);
                assert_eq!(
                    self.ep.config().proxy.listen,
                    running_listen,
                    "listen applied"
                );
                self.config = self.ep.config().clone();
                let names: Vec<&str> = self
                    .config
                    .backends
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect();
                let wanted: Vec<String> = file.backends.iter().map(|b| b.name.clone()).collect();
                assert_eq!(names, wanted);
                assert_eq!(
                    self.config.proxy.max_connections,
                    file.proxy.max_connections.unwrap_or(10_000)
                );
            }
            Err(e) => assert!(!serving, "reload refused while serving: {e}"),
        }
    }

    /// The invariants that hold whenever every connection is drained.
    fn check(&mut self) {
        // Closes asked outside a sync (drain, a backend found down, a reload) reach the driver
        // at its next one: the counts below are the pool's after them.
        self.pooled.close(&mut self.ep, self.now);
        let live = self.accepted - self.closed;
        assert_eq!(self.ep.live_sessions(), live);
        assert_eq!(self.clients.len(), live);
        let m = self.ep.metrics();
        assert_eq!(m.sessions, live as u64);
        assert_eq!(m.sessions_accepted, self.accepted as u64);
        if !self.ep.is_serving() {
            assert_eq!(self.ep.poll_timeout(), None, "timers while shutting down");
        }
        // Nothing done at the instant of the last `handle_timeout` makes a timer due again then.
        if self.last_timeout == Some(self.now) {
            if let Some(next) = self.ep.poll_timeout() {
                assert!(
                    next > self.now,
                    "due again at the instant handle_timeout ran"
                );
            }
        }
        // The listing.
        let sessions = self.ep.sessions();
        for w in sessions.windows(2) {
            assert!(
                w[0].id < w[1].id,
                "sessions not unique and sorted: {sessions:?}"
            );
        }
        for s in &sessions {
            let c = self
                .clients
                .iter()
                .find(|c| c.conn.id() == s.id)
                .unwrap_or_else(|| panic!("session {} listed, but not live", s.id));
            assert_eq!(s.backend.as_deref(), c.conn.session().backend_name());
            assert_eq!(
                s.pinned.as_deref(),
                c.conn.session().pinned().map(|p| p.as_str())
            );
        }
        // The backends and their counts.
        let backends = self.ep.backends();
        if self.reloads == 0 {
            assert_eq!(backends.len(), self.config.backends.len());
            for (b, c) in backends.iter().zip(&self.config.backends) {
                assert_eq!(b.name, c.name, "configuration order");
            }
        }
        for c in &self.config.backends {
            let listed = backends.iter().filter(|b| b.name == c.name).count();
            assert_eq!(listed, 1, "{} listed {listed} times: {backends:?}", c.name);
        }
        let mut open = [0u64; 3];
        let mut retries = [0u64; 3];
        for c in &self.clients {
            for s in &c.sockets {
                open[self.backend_index(s.addr)] += 1;
                retries[self.backend_index(s.addr)] += u64::from(s.retry);
            }
        }
        for p in self.pooled.parked.values() {
            retries[self.backend_index(p.addr)] += u64::from(p.retry);
        }
        for b in &backends {
            let configured = self.config.backends.iter().find(|c| c.name == b.name);
            match configured {
                Some(c) => assert_eq!(b.addr, c.addr.to_string()),
                None => assert!(b.draining, "{} was removed but is not draining", b.name),
            }
            let i = self.backend_index(b.addr.parse().unwrap());
            assert_eq!(
                b.sessions, open[i],
                "{} counts {} backend connections, the driver holds {}",
                b.name, b.sessions, open[i]
            );
        }
        self.check_pool(&open, &retries);
    }

    /// The pool's counts against the sockets the driver holds (`open`: of live sessions, per
    /// backend) and parks.
    fn check_pool(&self, open: &[u64; 3], retries: &[u64; 3]) {
        let pool = self.ep.metrics().pool;
        let Some(max) = self.max_backend else {
            assert!(
                pool.connections.is_empty(),
                "pool counts without multiplexing"
            );
            assert!(self.pooled.parked.is_empty(), "parked without multiplexing");
            return;
        };
        assert!(
            pool.waiting <= self.max_waiting as u64,
            "{} waiting, max-waiting {}",
            pool.waiting,
            self.max_waiting
        );
        let mut parked = [0u64; 3];
        for p in self.pooled.parked.values() {
            parked[self.backend_index(p.addr)] += 1;
        }
        // Per backend (a backend removed and added again by reloads is listed twice: its old
        // registry entry and its new one).
        let mut counted = [(0u64, 0u64); 3];
        for (name, in_use, idle) in &pool.connections {
            let i = backend_number(name);
            counted[i].0 += in_use;
            counted[i].1 += idle;
        }
        for i in 0..3 {
            let (in_use, idle) = counted[i];
            let exist = open[i] + parked[i];
            assert_eq!(
                idle,
                parked[i],
                "db{}: the pool counts {idle} idle, {} parked",
                i + 1,
                parked[i]
            );
            assert_eq!(
                in_use + idle,
                exist,
                "db{}: the pool counts {in_use} in use + {idle} idle, {} open + {} parked exist",
                i + 1,
                open[i],
                parked[i]
            );
            // The pool opens one below the maximum or in place of an idle one; only a login
            // failing over to this backend is counted without that check.
            assert!(
                exist <= max as u64 + retries[i],
                "db{}: {exist} connections ({} by a retry), max-backend-connections {max}",
                i + 1,
                retries[i]
            );
        }
    }

    fn run(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Accept { by, client } => self.accept(by, client),
            Op::Close(i, twice) => {
                if let Some(i) = self.pick(i) {
                    self.close(i, twice);
                }
            }
            Op::ClientBytes(i, b) => {
                if let Some(i) = self.pick(i) {
                    self.clients[i].conn.handle_input(now, Peer::Client, &b);
                    self.pump(i);
                }
            }
            Op::ClientEof(i) => {
                if let Some(i) = self.pick(i) {
                    self.clients[i].conn.handle_eof(now, Peer::Client);
                    self.pump(i);
                }
            }
            Op::Query(i, q) => {
                if let Some(i) = self.pick(i) {
                    if let Some(client) = &mut self.clients[i].client {
                        let sql = SQL[q as usize % SQL.len()].as_bytes();
                        let q = WireCommand::Query(Query {
                            attributes: vec![],
                            sql,
                        });
                        let _ = client.send_command(now, &q);
                    }
                    self.pump(i);
                }
            }
            Op::Quit(i) => {
                if let Some(i) = self.pick(i) {
                    if let Some(client) = &mut self.clients[i].client {
                        let _ = client.send_command(now, &WireCommand::Quit);
                    }
                    self.pump(i);
                }
            }
            Op::BackendBytes(i, s, b) => {
                if let Some(i) = self.pick(i) {
                    if let Some(id) = self.socket(i, s, true) {
                        self.clients[i]
                            .conn
                            .handle_input(now, Peer::Backend(id), &b);
                        self.pump(i);
                    }
                }
            }
            Op::BackendEof(i, s) => {
                if let Some(i) = self.pick(i) {
                    if let Some(id) = self.socket(i, s, true) {
                        self.clients[i].conn.handle_eof(now, Peer::Backend(id));
                        self.pump(i);
                    }
                }
            }
            Op::Connect(i, s, result) => {
                if let Some(i) = self.pick(i) {
                    if let Some(id) = self.socket(i, s, false) {
                        self.connect(i, id, result);
                        self.pump(i);
                    }
                }
            }
            Op::Deliver(shard) => {
                let shard = shard as usize % self.shards;
                while let Some((id, command)) = self.ep.poll_command(shard) {
                    let Some(i) = self.clients.iter().position(|c| c.conn.id() == id) else {
                        // Closed since: the driver drops it.
                        continue;
                    };
                    assert_eq!(
                        self.clients[i].conn.shard(),
                        shard,
                        "a command on another shard"
                    );
                    if matches!(command, Command::Shutdown) {
                        assert!(!self.ep.is_serving());
                    }
                    self.clients[i].conn.handle_command(now, command);
                    self.pump(i);
                }
                let _ = self.ep.take_wakeups();
            }
            Op::Admin {
                method,
                path,
                body,
                target,
                raw,
            } => {
                let b = self.backend_name(target);
                let s = self.session_id(target).to_string();
                let fill = |t: &str| t.replace("{b}", &b).replace("{s}", &s);
                let mut req = match raw {
                    Some(raw) => {
                        let text = String::from_utf8_lossy(&raw).into_owned();
                        let (m, rest) = text.split_once(' ').unwrap_or(("POST", &text));
                        Request::new(
                            m,
                            &format!("/{}", rest.trim_start_matches('/')),
                            fill(BODIES[body as usize % BODIES.len()]),
                        )
                    }
                    None => Request::new(
                        METHODS[method as usize % METHODS.len()],
                        &fill(PATHS[path as usize % PATHS.len()]),
                        fill(BODIES[body as usize % BODIES.len()]),
                    ),
                };
                // As curl sends a JSON request (no token is configured): past the access checks.
                req.headers.content_type = Some("application/json".into());
                self.admin(&req);
            }
            Op::SetDraining(b, draining) => {
                let name = self.backend_name(b);
                let known = self.config.backends.iter().any(|x| x.name == name);
                let removing = !known && self.ep.backends().iter().any(|x| x.name == name);
                let r = self.ep.set_draining(now, &name, draining);
                assert_eq!(r.is_ok(), known || removing && draining, "{r:?}");
                if known {
                    let b = self
                        .ep
                        .backends()
                        .into_iter()
                        .find(|x| x.name == name)
                        .unwrap();
                    assert_eq!(b.draining, draining);
                }
            }
            Op::Migrate(s, b) => {
                let id = self.session_id(s);
                let name = self.backend_name(b);
                let listed = self.ep.sessions().into_iter().any(|s| s.id == id);
                let target = self.ep.backends().into_iter().find(|b| b.name == name);
                if self.ep.migrate(now, id, &name).is_ok() {
                    assert!(listed, "migrate accepted for unlisted session {id}");
                    let t = target.expect("migrate accepted to an unknown backend");
                    assert!(t.healthy && !t.draining, "migrate accepted to {t:?}");
                    assert_ne!(self.config.migration.mode, MigrationMode::Off);
                }
            }
            Op::Cancel(s) => {
                let id = self.session_id(s);
                let live = self.clients.iter().any(|c| c.conn.id() == id);
                assert_eq!(self.ep.cancel_migration(now, id).is_ok(), live);
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                let now = self.now;
                self.timeout(now);
                for i in (0..self.clients.len()).rev() {
                    if self.clients[i]
                        .conn
                        .poll_timeout()
                        .is_some_and(|t| t <= now)
                    {
                        self.clients[i].conn.handle_timeout(now);
                        self.pump(i);
                    }
                }
            }
            Op::Deadline => {
                if let Some(t) = self.ep.poll_timeout() {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.timeout(now);
                }
            }
            Op::Probes(outcomes) => self.probes(&outcomes),
            Op::FinishHeld(k, o) => {
                if !self.held.is_empty() {
                    let k = k as usize % self.held.len();
                    let p = self.held.swap_remove(k);
                    let o = if matches!(o, Outcome::Hold) {
                        Outcome::Silent
                    } else {
                        o
                    };
                    self.finish_probe(p, o);
                }
            }
            Op::AcceptFailed(shard) => {
                let e = io::Error::from_raw_os_error(libc::EMFILE);
                let at = self
                    .ep
                    .accept_failed(now, shard as usize % (self.shards + 1), &e);
                assert_eq!(at, now + ACCEPT_BACKOFF);
            }
            Op::Reload {
                backends,
                max_connections,
                idle_timeout,
                listen_moved,
            } => self.reload(backends, max_connections, idle_timeout, listen_moved),
            Op::ParkedFails { k, lost } => {
                let n = self.pooled.parked.len();
                if let Some(parked) = self.pooled.parked.values_mut().nth(k as usize % n.max(1)) {
                    if lost {
                        parked.socket = None;
                    } else if let Some(s) = &mut parked.socket {
                        s.connected = Some(None);
                    }
                }
            }
            Op::Shutdown => {
                let serving = self.ep.is_serving();
                let mut live: Vec<u64> = self.clients.iter().map(|c| c.conn.id()).collect();
                live.sort_unstable();
                // Whatever was queued before goes first.
                for shard in 0..self.shards {
                    self.run(Op::Deliver(shard as u8));
                }
                self.ep.begin_shutdown(now);
                self.pooled.close(&mut self.ep, now);
                assert!(!self.ep.is_serving());
                assert_eq!(self.ep.poll_timeout(), None);
                // Every session is asked to close, once; a second call asks nothing.
                let mut asked = Vec::new();
                for shard in 0..self.shards {
                    while let Some((id, command)) = self.ep.poll_command(shard) {
                        // Multiplexing: the pool's closes wake its waiters too.
                        assert!(
                            matches!(command, Command::Shutdown | Command::PoolReady),
                            "{command:?} at shutdown"
                        );
                        if command == Command::Shutdown {
                            asked.push(id);
                        }
                        if let Some(i) = self.clients.iter().position(|c| c.conn.id() == id) {
                            self.clients[i].conn.handle_command(now, command);
                            self.pump(i);
                        }
                    }
                }
                asked.sort_unstable();
                if serving {
                    assert_eq!(
                        asked, live,
                        "shutdown asked other sessions than the live ones"
                    );
                } else {
                    assert!(asked.is_empty(), "a second shutdown asked again");
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let config = config(&input.setup);
    let shards = 1 + input.setup.shards as usize % 3;
    let now = Instant::now();
    let ep = Endpoint::new(now, &config, shards).expect("an endpoint");
    let mux = config.multiplexing;
    let mut h = Harness {
        ep,
        now,
        config,
        file: file(&input.setup),
        reloads: 0,
        shards,
        dial: input.setup.dial,
        clients: Vec::new(),
        per_shard: vec![0; shards],
        accepted: 0,
        closed: 0,
        held: Vec::new(),
        seed: 1,
        last_timeout: None,
        pooled: Pooled::default(),
        max_backend: mux.map(|m| m.max_backend_connections),
        max_waiting: mux.map_or(0, |m| m.max_waiting),
    };
    if let Some(healthy) = input.setup.healthy {
        h.timeout(now);
        let outcomes: Vec<Outcome> = (0..3)
            .map(|i| {
                if healthy & (1 << i) != 0 {
                    Outcome::Healthy
                } else {
                    Outcome::Refused
                }
            })
            .collect();
        // Probes come out in configuration order.
        h.probes(&outcomes);
    }
    h.check();
    for op in input.ops.into_iter().take(256) {
        h.run(op);
        if input.setup.auto_deliver {
            for shard in 0..shards {
                h.run(Op::Deliver(shard as u8));
            }
        }
        h.check();
    }
    // Every connection closes: nothing stays counted on any backend.
    while !h.clients.is_empty() {
        h.close(0, false);
    }
    h.check();
    assert_eq!(h.ep.live_sessions(), 0);
    assert!(
        h.ep.sessions().is_empty(),
        "sessions listed after every close"
    );
    for b in h.ep.backends() {
        assert_eq!(b.sessions, 0, "{} still counts sessions", b.name);
    }
    // Nothing in use; what is parked, shutdown closes.
    for (name, in_use, _) in h.ep.metrics().pool.connections {
        assert_eq!(in_use, 0, "{name}: in use after every close");
    }
    h.ep.begin_shutdown(h.now);
    h.pooled.close(&mut h.ep, h.now);
    assert!(
        h.pooled.parked.is_empty(),
        "parked after shutdown: {:?}",
        h.pooled.parked.keys().collect::<Vec<_>>()
    );
    for (name, in_use, idle) in h.ep.metrics().pool.connections {
        assert_eq!((in_use, idle), (0, 0), "{name}: counted after shutdown");
    }
});
