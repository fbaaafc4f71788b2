//! The endpoint on a virtual clock: accepting, placement and failover, the listing, drain and
//! migrate requests, health rounds, the balancer, metrics and the admin API. Logged-in sessions
//! run through the real roles in memory: a client, the accepted `Connection`, and servers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::*;
use crate::auth::{AuthPlugin, ClientSecret, Credential, Password};
use crate::backend;
use crate::control::config::units::ConfigDuration;
use crate::control::config::{
    AuthMode as ConfigAuth, BackendAddr, BackendSection, ConfigFile, UserSection,
};
use crate::control::IoEvent;
use crate::frontend::{
    column, default_capabilities, AuthMode as ServerAuth, Frontend, FrontendConfig, UserEntry,
    UserTable,
};
use crate::session::{BackendConnId, Peer};
use crate::wire::{Capabilities, ColumnType, Command as WireCommand, Query, ServerStatus};
use crate::{ProtocolError, SeededRandom};

/// Two backends, `db1` and `db2`, and what `edit` sets (built without TOML: these tests run with
/// feature `control` alone).
fn endpoint(edit: impl FnOnce(&mut ConfigFile), shards: usize) -> (Endpoint, Instant) {
    let backend = |name: &str, port: u16| BackendSection {
        name: name.into(),
        addr: format!("127.0.0.1:{port}"),
        proxy_protocol: false,
    };
    let mut file = ConfigFile {
        backends: vec![backend("db1", 3306), backend("db2", 3307)],
        ..ConfigFile::default()
    };
    edit(&mut file);
    let config = Config::from_file(&file).unwrap();
    let now = Instant::now();
    (Endpoint::new(now, &config, shards).unwrap(), now)
}

/// The defaults.
fn defaults(_: &mut ConfigFile) {}

fn client() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn accept(ep: &mut Endpoint, now: Instant, by: usize) -> Option<Connection> {
    ep.accept(now, client(), by, Box::new(SeededRandom::new(7)))
        .into_connection()
}

/// A MariaDB greeting, framed.
fn greeting(version: &[u8]) -> Vec<u8> {
    let g = crate::wire::HandshakeV10::new(
        version,
        7,
        &[b'a'; 20],
        crate::frontend::default_capabilities(),
        45,
        crate::wire::ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    let mut payload = Vec::new();
    g.encode(&mut payload);
    let mut frame = bytes::BytesMut::new();
    crate::wire::encode_packet(&mut frame, &mut 0, &payload);
    frame.to_vec()
}

/// Runs one health round: each backend answers with `answers[i]` (a greeting's version, or
/// `None`: connection refused).
fn health_round(ep: &mut Endpoint, now: Instant, answers: &[Option<&[u8]>]) {
    ep.handle_timeout(now);
    let mut probes = Vec::new();
    while let Some(p) = ep.poll_probe() {
        probes.push(p);
    }
    assert_eq!(probes.len(), answers.len());
    for mut p in probes {
        match answers[p.backend()] {
            Some(version) => p.handle_input(now, &greeting(version)),
            None => p.connect_failed(now, &io::Error::from(io::ErrorKind::ConnectionRefused)),
        }
        assert!(p.is_done());
        ep.probe_finished(now, p);
    }
}

#[test]
fn the_first_health_round_is_due_at_once_and_sets_the_advertised_version() {
    let (mut ep, now) = endpoint(defaults, 1);
    assert_eq!(ep.poll_timeout(), Some(now));
    health_round(&mut ep, now, &[None, Some(b"5.5.5-10.11.19-MariaDB")]);
    assert_eq!(
        ep.session_config.frontend.server_version,
        "5.5.5-10.11.19-MariaDB"
    );
    let infos = ep.backends();
    assert!(!infos[0].healthy && infos[1].healthy);
    // The next round comes an interval later, and does not change the version.
    let next = ep.poll_timeout().unwrap();
    assert_eq!(next, now + ep.config().health.interval);
    health_round(&mut ep, next, &[Some(b"other"), Some(b"other")]);
    assert_eq!(
        ep.session_config.frontend.server_version,
        "5.5.5-10.11.19-MariaDB"
    );
    assert!(ep.backends()[0].healthy);
}

#[test]
fn a_configured_server_version_wins() {
    let (mut ep, now) = endpoint(|f| f.proxy.server_version = Some("8.0.40".into()), 1);
    health_round(&mut ep, now, &[Some(b"10.11"), Some(b"10.11")]);
    assert_eq!(ep.session_config.frontend.server_version, "8.0.40");
}

#[test]
fn new_clients_go_to_the_shard_with_the_fewest_sessions() {
    let (mut ep, now) = endpoint(defaults, 2);
    let shards: Vec<usize> = (0..4)
        .map(|_| accept(&mut ep, now, 1).unwrap().shard())
        .collect();
    assert_eq!(shards, [1, 0, 1, 0]);
    assert_eq!(ep.live_sessions(), 4);
    assert_eq!(ep.metrics().sessions_accepted, 4);
}

#[test]
fn max_connections_refuses_and_a_closed_connection_frees_its_place() {
    let (mut ep, now) = endpoint(|f| f.proxy.max_connections = Some(2), 1);
    let mut a = accept(&mut ep, now, 0).unwrap();
    let b = accept(&mut ep, now, 0).unwrap();
    assert_ne!(a.id(), b.id());
    assert!(accept(&mut ep, now, 0).is_none());
    assert_eq!(ep.metrics().errors["max_connections"], 1);
    ep.connection_closed(now, &mut a);
    ep.connection_closed(now, &mut a);
    assert_eq!(ep.live_sessions(), 1);
    assert!(accept(&mut ep, now, 0).is_some());
    ep.begin_shutdown(now);
    assert!(!ep.is_serving());
    assert!(
        accept(&mut ep, now, 0).is_none(),
        "refused while shutting down"
    );
    // Every live session is asked to shut down.
    let mut commands = Vec::new();
    while let Some(c) = ep.poll_command(0) {
        commands.push(c);
    }
    assert_eq!(commands.len(), 2);
    assert!(commands.iter().all(|(_, c)| *c == Command::Shutdown));
    assert_eq!(ep.take_wakeups(), [0]);
}

#[test]
fn connection_ids_are_never_zero() {
    let (mut ep, _) = endpoint(defaults, 1);
    ep.next_connection_id = u32::MAX;
    assert_eq!(ep.next_connection_id(), u32::MAX);
    assert_eq!(ep.next_connection_id(), 1);
}

#[test]
fn accept_failures_are_counted_and_back_off() {
    let (mut ep, now) = endpoint(defaults, 1);
    let e = io::Error::from_raw_os_error(libc::EMFILE);
    assert_eq!(ep.accept_failed(now, 0, &e), now + ACCEPT_BACKOFF);
    ep.accept_failed(now, 0, &e);
    assert_eq!(ep.metrics().errors["accept"], 2);
    assert_eq!(ep.shards[0].accept_warned, Some(now), "warned once");
    // Accepting flaps (a descriptor freed and taken again): within ACCEPT_WARN_EVERY the new
    // failure is counted, not logged again.
    let later = now + Duration::from_secs(1);
    assert!(accept(&mut ep, later, 0).is_some());
    assert!(!ep.shards[0].accept_failing);
    ep.accept_failed(later, 0, &e);
    assert_eq!(ep.shards[0].accept_warned, Some(now));
    assert_eq!(ep.metrics().errors["accept"], 3);
    // A new episode after that is logged.
    let much_later = now + ACCEPT_WARN_EVERY + Duration::from_secs(1);
    assert!(accept(&mut ep, much_later, 0).is_some());
    ep.accept_failed(much_later, 0, &e);
    assert_eq!(ep.shards[0].accept_warned, Some(much_later));
}

#[test]
fn migrate_is_checked_before_any_session_is_asked() {
    let (mut ep, now) = endpoint(defaults, 1);
    // Passthrough auth: migration is off by default.
    assert_eq!(ep.migrate(now, 5, "db2"), Err(ApiError::UnknownSession(5)));
    let conn = accept(&mut ep, now, 0).unwrap();
    let id = conn.id();
    // Not logged in yet: not listed.
    assert_eq!(
        ep.migrate(now, id, "db2"),
        Err(ApiError::UnknownSession(id))
    );
    ep.sessions.get_mut(&id).unwrap().user = Some("app".into());
    ep.sessions.get_mut(&id).unwrap().backend = Some("db1".into());
    assert_eq!(
        ep.migrate(now, id, "db9"),
        Err(ApiError::UnknownBackend("db9".into()))
    );
    assert!(
        matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("not healthy"))
    );
    health_round(&mut ep, now, &[Some(b"10.11"), Some(b"10.11")]);
    assert!(
        matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("disabled"))
    );
    ep.set_draining(now, "db2", true).unwrap();
    assert!(
        matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(m)) if m.contains("draining"))
    );
    assert!(ep.poll_command(0).is_none());
}

// ---------------------------------------------------------------------------------------------
// Logged-in sessions: a client (the core's client role), the `Connection` the endpoint accepted,
// and in-memory servers (the core's server role), wired by the drain rule of `Connection`'s docs.

const USER: &str = "app";
const PASSWORD: &str = "secret";

fn db1() -> BackendAddr {
    "127.0.0.1:3306".parse().unwrap()
}

fn db2() -> BackendAddr {
    "127.0.0.1:3307".parse().unwrap()
}

/// Where the in-memory resolver sends every host name.
const RESOLVED_IP: [u8; 4] = [10, 1, 1, 1];

/// `[auth] mode = "proxy"` knowing `app`/`secret` (migration: replay, the default with it).
fn proxy_auth(file: &mut ConfigFile) {
    let hash = Sha1::digest(Sha1::digest(PASSWORD.as_bytes()));
    let hex: String = hash.iter().map(|b| format!("{b:02X}")).collect();
    file.auth.mode = Some(ConfigAuth::Proxy);
    file.auth.users = vec![UserSection {
        name: USER.into(),
        password_hash: format!("*{hex}"),
    }];
}

/// An endpoint whose two backends passed a health check.
fn healthy_endpoint(edit: impl FnOnce(&mut ConfigFile)) -> (Endpoint, Instant) {
    let (mut ep, now) = endpoint(edit, 1);
    health_round(
        &mut ep,
        now,
        &[Some(b"10.11.0-MariaDB"), Some(b"10.11.0-MariaDB")],
    );
    assert!(ep.backends().iter().all(|b| b.healthy));
    (ep, now)
}

/// The in-memory servers: they know `app`/`secret` and track session state.
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
    config.server_version = "10.11.0-MariaDB-test".into();
    Arc::new(config)
}

/// How a backend address answers a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dial {
    Accept,
    /// ECONNREFUSED: nothing listens.
    Refuse,
    /// EMFILE: ferry itself is out of descriptors.
    OutOfFiles,
    /// Never answered (still connecting).
    Hold,
    /// Connected, but the server answers with ERR 1040 in place of its greeting.
    TooMany,
    /// A host name that does not resolve.
    Unresolvable,
}

/// ERR 1040 as a server sends it in place of its greeting (no SQL state yet).
fn too_many_connections() -> Vec<u8> {
    let mut payload = vec![0xFF];
    payload.extend_from_slice(&1040u16.to_le_bytes());
    payload.extend_from_slice(b"Too many connections");
    let mut frame = bytes::BytesMut::new();
    crate::wire::encode_packet(&mut frame, &mut 0, &payload);
    frame.to_vec()
}

/// One in-memory server connection.
struct Server {
    addr: BackendAddr,
    fe: Frontend,
    /// Every command payload received.
    log: Vec<Bytes>,
    /// The PROXY header its connection started with, if any.
    proxy_header: Option<crate::proxy_protocol::ProxyHeader>,
    /// Bytes came already: a header now would be data.
    fed: bool,
}

thread_local! {
    /// Multiplexing: the sockets parked by any session (each test runs on its own thread).
    static PARKED: std::cell::RefCell<HashMap<crate::control::PooledId, Server>> =
        std::cell::RefCell::new(HashMap::new());
}

/// The parked sockets.
fn parked() -> Vec<crate::control::PooledId> {
    PARKED.with_borrow(|p| p.keys().copied().collect())
}

/// A client, its connection through the proxy, and the servers it reached.
struct Session {
    conn: Connection,
    client: backend::Backend,
    servers: HashMap<BackendConnId, Server>,
    dial: HashMap<BackendAddr, Dial>,
    /// Every `IoEvent::Connect`'s address, in order.
    connects: Vec<BackendAddr>,
    /// Connects left unanswered (`Dial::Hold`).
    held: Vec<(BackendConnId, BackendAddr)>,
    /// Every `IoEvent::Close`.
    closes: Vec<BackendConnId>,
    client_events: Vec<backend::Event>,
    /// Bytes read from the client and backends, and written to them, by the "driver".
    from_client: u64,
    to_client: u64,
    from_backends: u64,
    to_backends: u64,
}

impl Session {
    /// A client connecting through `ep` (not run yet: see [`Session::pump`]).
    fn connect(ep: &mut Endpoint, now: Instant, password: &str) -> Self {
        let conn = accept(ep, now, 0).expect("accepted");
        let secret = ClientSecret::Plaintext(Password::new(password));
        let client = backend::Backend::new(
            now,
            backend::BackendConfig::new(USER, secret),
            Box::new(SeededRandom::new(12)),
        );
        Self {
            conn,
            client,
            servers: HashMap::new(),
            dial: HashMap::new(),
            connects: Vec::new(),
            held: Vec::new(),
            closes: Vec::new(),
            client_events: Vec::new(),
            from_client: 0,
            to_client: 0,
            from_backends: 0,
            to_backends: 0,
        }
    }

    /// A client logged in through `ep`, every backend accepting connections.
    fn logged_in(ep: &mut Endpoint, now: Instant) -> Self {
        let mut s = Self::connect(ep, now, PASSWORD);
        s.pump(ep, now);
        assert!(
            s.is_logged_in(),
            "login failed: {:?}, connects {:?}",
            s.client_events,
            s.connects
        );
        s.client_events.clear();
        s
    }

    fn is_logged_in(&self) -> bool {
        self.client_events
            .iter()
            .any(|e| matches!(e, backend::Event::Connected(_)))
    }

    /// The ERR the client's login got.
    fn login_error(&self) -> ProtocolError {
        self.client_events
            .iter()
            .find_map(|e| match e {
                backend::Event::AuthFailed { error, .. } => Some(error.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no login error: {:?}", self.client_events))
    }

    /// The address of the server the session talks to now.
    fn backend_addr(&self) -> Option<BackendAddr> {
        let name = self.conn.session().backend_name()?;
        Some(if name == "db1" { db1() } else { db2() })
    }

    /// The drain rule, until nothing moves: sync when asked, transmits, socket events, then
    /// what the client and the servers send.
    fn pump(&mut self, ep: &mut Endpoint, now: Instant) {
        loop {
            let mut progress = false;
            if self.conn.needs_sync() {
                ep.sync(now, &mut self.conn);
                progress = true;
            }
            while let Some(t) = self.conn.poll_transmit() {
                progress = true;
                self.conn.record_sent(t.peer, t.data.len());
                match t.peer {
                    Peer::Client => {
                        self.to_client += t.data.len() as u64;
                        self.client.handle_input(now, &t.data);
                    }
                    Peer::Backend(id) => {
                        self.to_backends += t.data.len() as u64;
                        let server = self.servers.get_mut(&id).expect("bytes for an open conn");
                        let mut data = &t.data[..];
                        if !std::mem::replace(&mut server.fed, true) {
                            use crate::proxy_protocol::{parse, Parsed};
                            if let Ok(Parsed::Complete { header, len }) = parse(data) {
                                server.proxy_header = Some(header);
                                data = &data[len..];
                            }
                        }
                        server.fe.handle_input(now, data);
                    }
                }
            }
            while let Some(e) = self.conn.poll_event() {
                progress = true;
                match e {
                    IoEvent::Connect { conn, addr } => {
                        self.connects.push(addr.clone());
                        match self.dial.get(&addr).copied().unwrap_or(Dial::Accept) {
                            Dial::Accept => self.open(now, conn, addr),
                            Dial::Refuse => self.conn.connect_failed(
                                now,
                                conn,
                                &io::Error::from(io::ErrorKind::ConnectionRefused),
                            ),
                            Dial::OutOfFiles => self.conn.connect_failed(
                                now,
                                conn,
                                &io::Error::from_raw_os_error(libc::EMFILE),
                            ),
                            Dial::Hold => self.held.push((conn, addr)),
                            Dial::Unresolvable => {
                                let lookup = io::Error::other("Name or service not known");
                                let failed = addr.resolved::<Vec<SocketAddr>>(Err(lookup));
                                self.conn.connect_failed(now, conn, &failed.unwrap_err());
                            }
                            Dial::TooMany => {
                                self.conn.connected(now, conn);
                                let err = too_many_connections();
                                self.from_backends += err.len() as u64;
                                self.conn.handle_input(now, Peer::Backend(conn), &err);
                            }
                        }
                    }
                    IoEvent::Close { conn } => {
                        self.closes.push(conn);
                        self.servers.remove(&conn);
                        self.held.retain(|(c, _)| *c != conn);
                    }
                    IoEvent::Park { conn, pooled } => {
                        let server = self.servers.remove(&conn).expect("a parked conn is open");
                        PARKED.with_borrow_mut(|p| p.insert(pooled, server));
                    }
                    IoEvent::Adopt { conn, pooled } => {
                        match PARKED.with_borrow_mut(|p| p.remove(&pooled)) {
                            Some(server) => {
                                self.servers.insert(conn, server);
                                self.conn.adopted(now, conn);
                            }
                            None => self.conn.handle_eof(now, Peer::Backend(conn)),
                        }
                    }
                }
            }
            while let Some(b) = self.client.poll_transmit() {
                progress = true;
                self.from_client += b.len() as u64;
                self.conn.handle_input(now, Peer::Client, &b);
            }
            while let Some(e) = self.client.poll_event() {
                progress = true;
                self.client_events.push(e);
            }
            let ids: Vec<BackendConnId> = self.servers.keys().copied().collect();
            for id in ids {
                let Some(server) = self.servers.get_mut(&id) else {
                    continue;
                };
                while let Some(e) = server.fe.poll_event() {
                    progress = true;
                    serve(server, now, e);
                }
                let mut out = Vec::new();
                while let Some(b) = server.fe.poll_transmit() {
                    out.push(b);
                }
                for b in out {
                    progress = true;
                    self.from_backends += b.len() as u64;
                    self.conn.handle_input(now, Peer::Backend(id), &b);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn open(&mut self, now: Instant, conn: BackendConnId, addr: BackendAddr) {
        let fe = Frontend::new(
            server_config(),
            100 + conn as u32,
            "10.9.9.9",
            now,
            Box::new(SeededRandom::new(13 + conn)),
        );
        let ip = addr.ip();
        let port = addr.port();
        self.servers.insert(
            conn,
            Server {
                addr,
                fe,
                log: Vec::new(),
                proxy_header: None,
                fed: false,
            },
        );
        match ip {
            Some(_) => self.conn.connected(now, conn),
            // A host name: the driver says where its lookup led.
            None => self
                .conn
                .connected_to(now, conn, SocketAddr::from((RESOLVED_IP, port))),
        }
    }

    /// Sends `sql`; the client's response summary.
    fn query(&mut self, ep: &mut Endpoint, now: Instant, sql: &str) -> backend::ResponseSummary {
        self.client_events.clear();
        let q = WireCommand::Query(Query {
            attributes: vec![],
            sql: sql.as_bytes(),
        });
        self.client.send_command(now, &q).unwrap();
        self.pump(ep, now);
        self.client_events
            .drain(..)
            .find_map(|e| match e {
                backend::Event::ResponseComplete(s) => Some(s),
                _ => None,
            })
            .expect("a complete response")
    }

    /// The client quits.
    fn quit(&mut self, ep: &mut Endpoint, now: Instant) {
        self.client.send_command(now, &WireCommand::Quit).unwrap();
        self.pump(ep, now);
    }
}

/// The in-memory servers' answers: `SELECT 1` gives one row, `FAIL` an ERR, anything else OK.
fn serve(server: &mut Server, now: Instant, event: crate::frontend::Event) {
    let crate::frontend::Event::Command(command) = event else {
        return;
    };
    server.log.push(command.payload().clone());
    match command.parse() {
        Ok(WireCommand::Query(q)) if q.sql == b"SELECT 1" => {
            let cols = [column(b"1", ColumnType::LongLong)];
            server
                .fe
                .send_text_result(now, &cols, [[Some(&b"1"[..])]])
                .unwrap();
        }
        Ok(WireCommand::Query(q)) if q.sql == b"BEGIN" || q.sql == b"COMMIT" => {
            let mut status = ServerStatus::AUTOCOMMIT;
            if q.sql == b"BEGIN" {
                status = ServerStatus(status.0 | ServerStatus::IN_TRANS.0);
            }
            server.fe.set_status(now, status);
            server.fe.send_ok_empty(now).unwrap();
        }
        Ok(WireCommand::Query(q)) if q.sql == b"FAIL" => {
            let err = ProtocolError::new(1064, "42000", "syntax error");
            server.fe.send_error(now, &err).unwrap();
        }
        Ok(WireCommand::Quit) => return,
        _ => server.fe.send_ok_empty(now).unwrap(),
    }
    server.fe.end_response(now).unwrap();
}

/// Hands every queued command of shard 0 to its session; what was delivered.
fn deliver(ep: &mut Endpoint, now: Instant, sessions: &mut [&mut Session]) -> Vec<(u64, Command)> {
    let mut delivered = Vec::new();
    while let Some((id, command)) = ep.poll_command(0) {
        delivered.push((id, command.clone()));
        let s = sessions
            .iter_mut()
            .find(|s| s.conn.id() == id)
            .unwrap_or_else(|| panic!("a command for unknown session {id}"));
        s.conn.handle_command(now, command);
        s.pump(ep, now);
    }
    delivered
}

fn sessions_on(ep: &Endpoint) -> Vec<u64> {
    ep.backends().iter().map(|b| b.sessions).collect()
}

// ---- placement ----

#[test]
fn a_login_connects_to_the_least_loaded_healthy_backend() {
    for proxy in [false, true] {
        let (mut ep, now) = healthy_endpoint(|f| {
            if proxy {
                proxy_auth(f);
            }
        });
        let a = Session::logged_in(&mut ep, now);
        assert_eq!(a.connects, [db1()], "proxy auth: {proxy}");
        assert_eq!(a.conn.session().backend_name(), Some("db1"));
        assert_eq!(sessions_on(&ep), [1, 0]);
        // The next one goes where there are fewer.
        let b = Session::logged_in(&mut ep, now);
        assert_eq!(b.connects, [db2()]);
        assert_eq!(sessions_on(&ep), [1, 1]);
        // Both are listed, with their user and backend.
        let listed: Vec<(u64, String, Option<String>)> = ep
            .sessions()
            .into_iter()
            .map(|s| (s.id, s.user, s.backend))
            .collect();
        assert_eq!(
            listed,
            [
                (a.conn.id(), USER.to_owned(), Some("db1".to_owned())),
                (b.conn.id(), USER.to_owned(), Some("db2".to_owned())),
            ]
        );
        // An unhealthy backend gets no session, even with the fewest.
        health_round(
            &mut ep,
            now + Duration::from_secs(2),
            &[Some(b"10.11"), None],
        );
        let c = Session::logged_in(&mut ep, now);
        assert_eq!(c.connects, [db1()]);
        assert_eq!(sessions_on(&ep), [2, 1]);
    }
}

#[test]
fn nothing_is_connected_before_a_health_check_passes() {
    let (mut ep, now) = endpoint(defaults, 1);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.pump(&mut ep, now);
    assert!(s.connects.is_empty());
    let err = s.login_error();
    assert_eq!(err.code, 1429, "{err:?}");
    assert!(
        err.message.contains("no healthy backend"),
        "{}",
        err.message
    );
    assert!(s.conn.is_closed());
    // Listed only once logged in.
    assert!(ep.sessions().is_empty());
}

#[test]
fn a_draining_backend_gets_no_new_session() {
    let (mut ep, now) = healthy_endpoint(defaults);
    ep.set_draining(now, "db1", true).unwrap();
    for _ in 0..2 {
        let s = Session::logged_in(&mut ep, now);
        assert_eq!(s.connects, [db2()]);
    }
    assert_eq!(sessions_on(&ep), [0, 2]);
}

// ---- failover ----

#[test]
fn a_refused_connect_marks_the_backend_down_and_the_next_one_is_tried() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::Refuse);
    s.pump(&mut ep, now);
    assert_eq!(s.connects, [db1(), db2()]);
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    assert_eq!(s.conn.session().backend_name(), Some("db2"));
    let infos = ep.backends();
    assert!(!infos[0].healthy, "the refusing backend is marked down");
    assert!(infos[1].healthy);
    assert_eq!(
        sessions_on(&ep),
        [0, 1],
        "the failed attempt no longer counts"
    );
    assert_eq!(ep.metrics().errors["backend_connect"], 1);
    // The next client does not try it again.
    let t = Session::logged_in(&mut ep, now);
    assert_eq!(t.connects, [db2()]);
}

#[test]
fn a_refused_connect_is_handled_at_the_next_sync() {
    // The driver's side, step by step: connect_failed only queues work.
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::Hold);
    s.pump(&mut ep, now);
    let [(c, ref addr)] = s.held[..] else {
        panic!("one connect: {:?}", s.held)
    };
    assert_eq!(*addr, db1());
    s.held.clear();
    s.conn
        .connect_failed(now, c, &io::Error::from(io::ErrorKind::ConnectionRefused));
    assert!(s.conn.needs_sync());
    assert!(ep.backends()[0].healthy, "nothing decided before the sync");
    ep.sync(now, &mut s.conn);
    assert!(!ep.backends()[0].healthy);
    match s.conn.poll_event() {
        Some(IoEvent::Connect { conn, addr }) => {
            assert_eq!(addr, db2());
            assert_eq!(conn, c, "the same backend connection, to another backend");
        }
        other => panic!("expected a connect to db2, got {other:?}"),
    }
    assert_eq!(sessions_on(&ep), [0, 1]);
}

#[test]
fn when_every_backend_fails_the_client_gets_1429_and_the_session_closes() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::Refuse);
    s.dial.insert(db2(), Dial::Refuse);
    s.pump(&mut ep, now);
    assert_eq!(s.connects, [db1(), db2()], "each backend tried once");
    let err = s.login_error();
    assert_eq!(err.code, 1429, "{err:?}");
    assert!(err.message.contains("db2"), "{}", err.message);
    assert!(s.conn.is_closed());
    assert!(ep.backends().iter().all(|b| !b.healthy));
    assert_eq!(sessions_on(&ep), [0, 0]);
    assert_eq!(ep.metrics().errors["backend_connect"], 2);
    ep.connection_closed(now, &mut s.conn);
    assert_eq!(ep.live_sessions(), 0);
}

#[test]
fn out_of_descriptors_does_not_mark_the_backend_down() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::OutOfFiles);
    s.pump(&mut ep, now);
    // Not the backend's fault: it stays healthy, and no other backend is tried either.
    assert_eq!(s.connects, [db1()]);
    assert!(ep.backends().iter().all(|b| b.healthy));
    let err = s.login_error();
    assert_eq!(err.code, 1429, "{err:?}");
    assert!(err.message.contains("ferry:"), "{}", err.message);
    assert!(s.conn.is_closed());
    assert_eq!(sessions_on(&ep), [0, 0]);
    // The next client gets in on the same backend.
    let t = Session::logged_in(&mut ep, now);
    assert_eq!(t.connects, [db1()]);
}

#[test]
fn a_chooser_places_new_sessions_and_its_backend_is_not_failed_over() {
    let (mut ep, now) = healthy_endpoint(defaults);
    ep.set_chooser(Box::new(|req: &ChooseRequest<'_>| {
        assert_eq!(req.user, Some(USER));
        assert_eq!(req.backends.len(), 2);
        Choice::Backend("db2".into())
    }));
    let s = Session::logged_in(&mut ep, now);
    assert_eq!(s.connects, [db2()]);
    assert_eq!(sessions_on(&ep), [0, 1]);
    // Its choice cannot be reached: marked down, but no other backend is tried.
    let mut t = Session::connect(&mut ep, now, PASSWORD);
    t.dial.insert(db2(), Dial::Refuse);
    t.pump(&mut ep, now);
    assert_eq!(t.connects, [db2()]);
    assert_eq!(t.login_error().code, 1429);
    assert!(!ep.backends()[1].healthy);
    assert_eq!(sessions_on(&ep), [0, 1]);
    ep.set_chooser(Box::new(|_: &ChooseRequest<'_>| {
        Choice::Refuse("closed".into())
    }));
    let mut u = Session::connect(&mut ep, now, PASSWORD);
    u.pump(&mut ep, now);
    assert!(u.connects.is_empty());
    assert!(u.login_error().message.contains("closed"));
}

#[test]
fn the_configured_routes_place_matching_logins_and_leave_the_rest_to_the_policy() {
    let (mut ep, now) = healthy_endpoint(|file| {
        file.routes = vec![crate::control::config::RouteSection {
            user: Some(USER.into()),
            database: None,
            backend: "db2".into(),
        }];
    });
    for _ in 0..2 {
        let s = Session::logged_in(&mut ep, now);
        assert_eq!(s.connects, [db2()], "routed, not balanced");
    }
    assert_eq!(sessions_on(&ep), [0, 2]);
    // An embedder's chooser replaces the routes.
    ep.set_chooser(Box::new(|_: &ChooseRequest<'_>| Choice::Default));
    let s = Session::logged_in(&mut ep, now);
    assert_eq!(s.connects, [db1()]);
}

#[test]
fn a_backend_that_refuses_the_connection_is_marked_down_and_another_is_tried() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::TooMany);
    s.pump(&mut ep, now);
    assert_eq!(s.connects, [db1(), db2()]);
    assert!(s.is_logged_in(), "{:?}", s.client_events);
    assert_eq!(s.conn.session().backend_name(), Some("db2"));
    assert!(!ep.backends()[0].healthy);
    assert_eq!(
        sessions_on(&ep),
        [0, 1],
        "the refused connection is released"
    );
    assert_eq!(ep.metrics().errors["backend_connect"], 1);
    // Both refuse: the client hears the server's own ERR, not "no healthy backend".
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::connect(&mut ep, now, PASSWORD);
    s.dial.insert(db1(), Dial::TooMany);
    s.dial.insert(db2(), Dial::TooMany);
    s.pump(&mut ep, now);
    assert_eq!(
        s.connects,
        [db1(), db2()],
        "a refusing backend is not retried"
    );
    assert_eq!(s.login_error().code, 1040);
    assert!(s.conn.is_closed());
    assert_eq!(sessions_on(&ep), [0, 0]);
    // With nothing healthy, a new client still tries a backend that refused: its slot may
    // have freed up.
    let t = Session::logged_in(&mut ep, now);
    assert_eq!(t.connects, [db1()]);
}

#[test]
fn the_listing_follows_pins() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut s = Session::logged_in(&mut ep, now);
    assert_eq!(ep.sessions()[0].pinned, None);
    assert!(s.query(&mut ep, now, "BEGIN").error.is_none());
    assert_eq!(s.conn.session().pinned(), Some(PinReason::Transaction));
    assert_eq!(ep.sessions()[0].pinned.as_deref(), Some("transaction"));
    assert_eq!(ep.metrics().pinned_sessions["transaction"], 1);
    assert!(s.query(&mut ep, now, "COMMIT").error.is_none());
    assert_eq!(ep.sessions()[0].pinned, None);
    assert!(ep.metrics().pinned_sessions.is_empty());
}

#[test]
fn shutdown_closes_every_session_and_stops_the_timers() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    assert!(ep.poll_timeout().is_some());
    ep.begin_shutdown(now);
    assert_eq!(
        ep.poll_timeout(),
        None,
        "no health round nor balancer while shutting down"
    );
    let delivered = deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert_eq!(delivered.len(), 2);
    assert!(delivered.iter().all(|(_, c)| *c == Command::Shutdown));
    // Idle: closed at once, backends released.
    assert!(a.conn.is_closed() && b.conn.is_closed());
    assert_eq!(sessions_on(&ep), [0, 0]);
    ep.connection_closed(now, &mut a.conn);
    ep.connection_closed(now, &mut b.conn);
    assert_eq!(ep.live_sessions(), 0);
    // Drains and timers plan nothing any more.
    ep.handle_timeout(now + Duration::from_secs(60));
    assert!(ep.poll_probe().is_none());
}

// ---- drain, undrain, migrate ----

#[test]
fn a_drain_migrates_the_listed_sessions_away() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    assert_eq!(sessions_on(&ep), [1, 1]);
    assert!(ep.take_wakeups().is_empty());
    ep.set_draining(now, "db1", true).unwrap();
    assert!(ep.backends()[0].draining);
    assert_eq!(ep.take_wakeups(), [0]);
    let delivered = deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert_eq!(
        delivered,
        [(a.conn.id(), Command::Migrate { to: "db2".into() })]
    );
    // The session asked for a connection to its target, which the endpoint opened by name.
    assert_eq!(a.connects, [db1(), db2()]);
    assert_eq!(a.conn.session().backend_name(), Some("db2"));
    assert_eq!(a.backend_addr(), Some(db2()));
    assert_eq!(a.closes.len(), 1, "the old backend connection is closed");
    assert!(a.servers.values().all(|s| s.addr == db2()));
    assert_eq!(sessions_on(&ep), [0, 2]);
    let listed = ep.sessions();
    assert!(
        listed.iter().all(|s| s.backend.as_deref() == Some("db2")),
        "{listed:?}"
    );
    let m = ep.metrics();
    assert_eq!((m.migrations_started, m.migrations_succeeded), (1, 1));
    // It still answers, from db2.
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    // Nothing left to move: the next plans are empty.
    ep.handle_timeout(now + Duration::from_secs(1));
    assert!(ep.poll_command(0).is_none());
}

#[test]
fn undraining_cancels_the_migrations_still_running() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    // The target never answers the connect: the migration runs until cancelled.
    a.dial.insert(db2(), Dial::Hold);
    ep.set_draining(now, "db1", true).unwrap();
    let delivered = deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert_eq!(delivered.len(), 1);
    assert_eq!(a.held.len(), 1);
    assert_eq!(a.conn.session().migration_target(), Some("db2"));
    assert_eq!(
        sessions_on(&ep),
        [1, 2],
        "the target's connection counts already"
    );
    ep.set_draining(now, "db1", false).unwrap();
    assert!(!ep.backends()[0].draining);
    let delivered = deliver(&mut ep, now, &mut [&mut a, &mut b]);
    assert_eq!(delivered, [(a.conn.id(), Command::CancelMigration)]);
    // The session stays, the pending connect is dropped and no longer counts.
    assert_eq!(a.conn.session().migration_target(), None);
    assert_eq!(a.conn.session().backend_name(), Some("db1"));
    assert!(a.held.is_empty());
    assert_eq!(sessions_on(&ep), [1, 1]);
    assert_eq!(ep.metrics().migrations_failed["cancelled"], 1);
    // The session is not planned again at once (it just failed to move), and nothing else
    // needs moving.
    ep.handle_timeout(now + Duration::from_secs(1));
    assert!(ep.poll_command(0).is_none());
    // A drain without a migration running cancels nothing on undrain.
    ep.set_draining(now, "db2", false).unwrap();
    assert!(ep.poll_command(0).is_none());
}

#[test]
fn an_admin_migration_is_queued_for_its_session() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    let id = a.conn.id();
    assert!(
        matches!(ep.migrate(now, id, "db1"), Err(ApiError::Conflict(m)) if m.contains("already"))
    );
    ep.migrate(now, id, "db2").unwrap();
    assert!(
        matches!(ep.migrate(now, id, "db2"), Err(ApiError::Conflict(_))),
        "already migrating"
    );
    assert_eq!(
        deliver(&mut ep, now, &mut [&mut a, &mut b]),
        [(id, Command::Migrate { to: "db2".into() })]
    );
    // To the backend named, though the built-in policy would have chosen db1 (a tie).
    assert_eq!(a.connects, [db1(), db2()]);
    assert_eq!(a.conn.session().backend_name(), Some("db2"));
    assert_eq!(sessions_on(&ep), [0, 2]);
    // Listed on db2 now, with no target: it may be moved again.
    ep.migrate(now, id, "db1").unwrap();
    assert_eq!(
        ep.poll_command(0),
        Some((id, Command::Migrate { to: "db1".into() }))
    );
    assert_eq!(ep.cancel_migration(now, id), Ok(()));
    assert_eq!(ep.poll_command(0), Some((id, Command::CancelMigration)));
    assert_eq!(
        ep.cancel_migration(now, 999),
        Err(ApiError::UnknownSession(999))
    );
}

// ---- timers ----

#[test]
fn the_balancer_runs_on_handle_timeout_at_poll_timeout() {
    let (mut ep, now) = healthy_endpoint(|f| {
        proxy_auth(f);
        f.health.interval = Some(ConfigDuration(Duration::from_secs(2)));
    });
    let mut on_db1 = Vec::new();
    let sessions: Vec<Session> = (0..4).map(|_| Session::logged_in(&mut ep, now)).collect();
    for mut s in sessions {
        if s.conn.session().backend_name() == Some("db2") {
            // Leaves without a plan noticing.
            ep.connection_closed(now, &mut s.conn);
        } else {
            on_db1.push(s);
        }
    }
    assert_eq!(sessions_on(&ep), [2, 0]);
    // The balancer's tick comes before the next health round.
    let tick = now + ep.config().migration.rebalance_interval;
    assert!(tick < now + ep.config().health.interval);
    assert_eq!(ep.poll_timeout(), Some(tick));
    ep.handle_timeout(tick - Duration::from_millis(1));
    assert!(ep.poll_command(0).is_none(), "not before its time");
    assert!(ep.poll_probe().is_none());
    ep.handle_timeout(tick);
    let (id, command) = ep.poll_command(0).expect("a move");
    assert_eq!(command, Command::Migrate { to: "db2".into() });
    assert!(on_db1.iter().any(|s| s.conn.id() == id));
    assert!(ep.poll_command(0).is_none(), "one move evens 2/0");
    assert_eq!(
        ep.poll_timeout(),
        Some(now + ep.config().health.interval),
        "then the health round is next"
    );
    // Delivered, it moves the session.
    let mut refs: Vec<&mut Session> = on_db1.iter_mut().collect();
    let s = refs.iter_mut().find(|s| s.conn.id() == id).unwrap();
    s.conn.handle_command(tick, command);
    s.pump(&mut ep, tick);
    assert_eq!(sessions_on(&ep), [1, 1]);
}

#[test]
fn without_migration_only_health_rounds_are_timed() {
    let (mut ep, now) = healthy_endpoint(|f| {
        f.health.interval = Some(ConfigDuration(Duration::from_secs(2)));
    });
    let mut a = Session::logged_in(&mut ep, now);
    let _b = Session::logged_in(&mut ep, now);
    ep.connection_closed(now, &mut a.conn);
    let _c = Session::logged_in(&mut ep, now);
    assert_eq!(ep.poll_timeout(), Some(now + ep.config().health.interval));
    ep.set_draining(now, "db1", true).unwrap();
    ep.handle_timeout(now + Duration::from_secs(1));
    assert!(ep.poll_command(0).is_none(), "migration is off");
    // A health round in progress holds the next one back.
    let round = now + ep.config().health.interval;
    ep.handle_timeout(round);
    let probe = ep.poll_probe().expect("a probe");
    assert_eq!(probe.addr(), &db1());
    assert_eq!(probe.deadline(), round + ep.config().health.timeout);
    // While it runs, the next wake-up is the round's end (its probes' deadline and a grace).
    let round_end = round + ep.config().health.timeout + ROUND_GRACE;
    assert_eq!(
        ep.poll_timeout(),
        Some(round_end),
        "no new round while one runs"
    );
    let second = ep.poll_probe().expect("a second probe");
    assert_eq!(second.addr(), &db2());
    assert!(ep.poll_probe().is_none());
    // A probe given up (its deadline passed) is a failed check.
    ep.probe_finished(round, probe);
    assert_eq!(ep.poll_timeout(), Some(round_end));
    ep.probe_finished(round, second);
    assert!(ep.backends().iter().all(|b| !b.healthy));
    assert_eq!(ep.poll_timeout(), Some(round + ep.config().health.interval));
}

#[test]
fn a_round_whose_probes_never_come_back_is_given_up_at_its_end() {
    let (mut ep, _) = healthy_endpoint(defaults);
    let round = ep.poll_timeout().unwrap();
    ep.handle_timeout(round);
    let lost = ep.poll_probe().expect("a probe");
    let late = ep.poll_probe().expect("a second probe");
    // The driver never gives them back: at the round's end it is given up, and the next round
    // comes an interval later.
    let round_end = round + ep.config().health.timeout + ROUND_GRACE;
    assert_eq!(ep.poll_timeout(), Some(round_end));
    ep.handle_timeout(round_end);
    let next = round_end + ep.config().health.interval;
    assert_eq!(ep.poll_timeout(), Some(next));
    assert!(ep.poll_probe().is_none());
    // A probe of the given-up round still counts as a verdict, not as one of a new round.
    ep.handle_timeout(next);
    let fresh: Vec<_> = std::iter::from_fn(|| ep.poll_probe()).collect();
    assert_eq!(fresh.len(), 2);
    ep.probe_finished(next, late);
    assert!(!ep.backends()[1].healthy, "the late verdict is recorded");
    assert_eq!(
        ep.poll_timeout(),
        Some(next + ep.config().health.timeout + ROUND_GRACE),
        "the new round still waits for its own two probes"
    );
    drop(lost);
}

// ---- closing ----

#[test]
fn connection_closed_releases_the_backend_counts() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    let mut c = Session::logged_in(&mut ep, now);
    assert_eq!(sessions_on(&ep), [2, 1]);
    // Dropped by the driver (shutdown deadline): its backend connection no longer counts.
    ep.connection_closed(now, &mut a.conn);
    assert_eq!(sessions_on(&ep), [1, 1]);
    ep.connection_closed(now, &mut a.conn);
    assert_eq!(sessions_on(&ep), [1, 1], "a second call changes nothing");
    assert_eq!(ep.live_sessions(), 2);
    // The client quits: released at the sync that follows, and only once.
    b.quit(&mut ep, now);
    assert!(b.conn.is_closed());
    assert_eq!(b.closes.len(), 1);
    assert_eq!(sessions_on(&ep), [1, 0]);
    ep.connection_closed(now, &mut b.conn);
    assert_eq!(sessions_on(&ep), [1, 0]);
    // Closed with its release not synced yet: released once by connection_closed.
    let mut d = Session::logged_in(&mut ep, now);
    assert_eq!(sessions_on(&ep), [1, 1]);
    d.client.send_command(now, &WireCommand::Quit).unwrap();
    let quit = d.client.poll_transmit().unwrap();
    d.conn.handle_input(now, Peer::Client, &quit);
    assert!(d.conn.needs_sync());
    ep.connection_closed(now, &mut d.conn);
    assert_eq!(sessions_on(&ep), [1, 0]);
    // A connect still pending when the connection is dropped.
    let mut e = Session::connect(&mut ep, now, PASSWORD);
    e.dial.insert(db2(), Dial::Hold);
    e.pump(&mut ep, now);
    assert_eq!(e.held.len(), 1);
    assert_eq!(sessions_on(&ep), [1, 1]);
    ep.connection_closed(now, &mut e.conn);
    assert_eq!(sessions_on(&ep), [1, 0]);
    assert_eq!(ep.live_sessions(), 1);
    assert_eq!(ep.sessions().len(), 1);
    assert_eq!(ep.sessions()[0].id, c.conn.id());
    ep.connection_closed(now, &mut c.conn);
    assert_eq!(sessions_on(&ep), [0, 0]);
    assert_eq!(ep.live_sessions(), 0);
}

// ---- metrics ----

#[test]
fn metrics_count_commands_and_bytes() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut s = Session::logged_in(&mut ep, now);
    let before = ep.metrics();
    assert_eq!((before.commands, before.errors["command"]), (0, 0));
    assert_eq!(s.query(&mut ep, now, "SELECT 1").rows, 1);
    assert!(s.query(&mut ep, now, "FAIL").error.is_some());
    assert_eq!(s.query(&mut ep, now, "DO 1").rows, 0);
    let m = ep.metrics();
    assert_eq!(m.commands, 3);
    assert_eq!(m.errors["command"], 1);
    assert_eq!(m.sessions, 1);
    assert_eq!(m.sessions_accepted, 1);
    // Every byte the driver moved, both ways, on both sides.
    assert!(s.from_client > 0 && s.to_backends > 0);
    assert_eq!(m.client_bytes_received, s.from_client);
    assert_eq!(m.client_bytes_sent, s.to_client);
    assert_eq!(m.backend_bytes_received, s.from_backends);
    assert_eq!(m.backend_bytes_sent, s.to_backends);
    // The same numbers on /metrics.
    let text = String::from_utf8(ep.handle_admin(now, &get("/metrics")).body).unwrap();
    let line = format!(
        "ferry_bytes_received_total{{peer=\"client\"}} {}",
        s.from_client
    );
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
}

#[test]
fn metrics_count_statements_by_command_and_backend() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    assert_eq!(sessions_on(&ep), [1, 1]);
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    assert!(a.query(&mut ep, now, "FAIL").error.is_some());
    assert_eq!(b.query(&mut ep, now, "SELECT 1").rows, 1);
    let m = ep.metrics();
    let rows: Vec<(&str, &str, u64, u64)> = m
        .statements
        .iter()
        .map(|s| (s.command.as_str(), s.backend.as_str(), s.total, s.errors))
        .collect();
    assert_eq!(rows, [("query", "db1", 2, 1), ("query", "db2", 1, 0)]);
    assert_eq!(m.statement_duration.len(), 1);
    assert_eq!(m.statement_duration[0].0, "query");
    assert_eq!(m.statement_duration[0].1.count(), 3);
    let text = String::from_utf8(ep.handle_admin(now, &get("/metrics")).body).unwrap();
    for line in [
        "ferry_statements_total{command=\"query\",backend=\"db1\"} 2",
        "ferry_statement_errors_total{command=\"query\",backend=\"db1\"} 1",
        "ferry_statement_duration_seconds_count{command=\"query\"} 3",
        "ferry_migrations_total{result=\"succeeded\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    // No process metrics unless the driver read them.
    assert!(!text.contains("process_open_fds"), "{text}");
    let process = admin::ProcessStats {
        open_fds: Some(42),
        ..Default::default()
    };
    let r = ep.handle_admin_with_process(now, &get("/metrics"), Some(process));
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.lines().any(|l| l == "process_open_fds 42"), "{text}");
    assert!(
        !text.contains("process_max_fds"),
        "only what was read: {text}"
    );
}

// ---- the admin API ----

fn get(path: &str) -> admin::Request {
    admin::Request::new("GET", path, "")
}

/// A `POST` as `curl -H 'Content-Type: application/json'` sends it (no token is configured).
fn post(path: &str, body: &str) -> admin::Request {
    let mut request = admin::Request::new("POST", path, body);
    request.headers.content_type = Some("application/json".into());
    request
}

fn json(response: &admin::Response) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)))
}

#[test]
fn admin_requests_are_answered_from_the_endpoint() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let r = ep.handle_admin(now, &get("/api/backends"));
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r),
        serde_json::json!([
            {"name": "db1", "addr": "127.0.0.1:3306", "healthy": true, "sessions": 1, "draining": false},
            {"name": "db2", "addr": "127.0.0.1:3307", "healthy": true, "sessions": 0, "draining": false},
        ])
    );
    let r = ep.handle_admin(now, &get("/api/sessions"));
    assert_eq!(
        json(&r),
        serde_json::json!([{"id": a.conn.id(), "user": USER, "backend": "db1", "pinned": null, "client": "127.0.0.1:50000"}])
    );
    // Drain: the backend is marked and its session asked to move.
    let r = ep.handle_admin(now, &post("/api/backends/db1/drain", ""));
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r),
        serde_json::json!({"backend": "db1", "draining": true})
    );
    assert!(ep.backends()[0].draining);
    assert_eq!(
        deliver(&mut ep, now, &mut [&mut a]),
        [(a.conn.id(), Command::Migrate { to: "db2".into() })]
    );
    let r = ep.handle_admin(now, &get("/api/backends"));
    assert_eq!(json(&r)[0]["draining"], true);
    assert_eq!(json(&r)[1]["sessions"], 1);
    assert_eq!(
        ep.handle_admin(now, &post("/api/backends/db9/drain", ""))
            .status,
        404
    );
    let r = ep.handle_admin(now, &post("/api/backends/db1/undrain", ""));
    assert_eq!(r.status, 200);
    assert!(!ep.backends()[0].draining);
    // Migrate by request, then refused while draining.
    let path = format!("/api/sessions/{}/migrate", a.conn.id());
    let r = ep.handle_admin(now, &post(&path, r#"{"to": "db1"}"#));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        ep.poll_command(0),
        Some((a.conn.id(), Command::Migrate { to: "db1".into() }))
    );
    ep.handle_admin(now, &post("/api/backends/db2/drain", ""));
    // Health: 200 while serving, 503 once shutdown began.
    let r = ep.handle_admin(now, &get("/health"));
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));
    ep.begin_shutdown(now);
    assert_eq!(ep.handle_admin(now, &get("/health")).status, 503);
    assert_eq!(ep.handle_admin(now, &get("/nope")).status, 404);
}

#[test]
fn ready_only_once_the_first_health_round_is_over() {
    let (mut ep, now) = endpoint(defaults, 1);
    let r = ep.handle_admin(now, &get("/health/ready"));
    assert_eq!((r.status, &r.body[..]), (503, &b"starting\n"[..]));
    assert_eq!(ep.handle_admin(now, &get("/health/live")).status, 200);
    // Both backends down still ends the first round: ferry serves (and says why it cannot).
    health_round(&mut ep, now, &[None, None]);
    assert!(ep.first_round_done());
    assert_eq!(ep.handle_admin(now, &get("/health/ready")).status, 200);
}

#[test]
fn admin_requests_a_browser_could_send_cross_site_change_nothing() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let mut plain = admin::Request::new("POST", "/api/backends/db1/drain", "");
    plain.headers.content_type = Some("text/plain".into());
    assert_eq!(ep.handle_admin(now, &plain).status, 403);
    let mut rebound = post("/api/backends/db1/drain", "");
    rebound.headers.host = Some("attacker.example:6080".into());
    assert_eq!(ep.handle_admin(now, &rebound).status, 403);
    assert!(!ep.backends()[0].draining);
    // With a token configured, none is a 401 (and /health needs none).
    let (mut ep, now) = healthy_endpoint(|f| f.admin.token = Some("t".repeat(20)));
    assert_eq!(
        ep.handle_admin(now, &post("/api/backends/db1/drain", ""))
            .status,
        401
    );
    assert_eq!(ep.handle_admin(now, &get("/api/backends")).status, 401);
    assert_eq!(ep.handle_admin(now, &get("/health")).status, 200);
    let mut authorized = post("/api/backends/db1/drain", "");
    authorized.headers.authorization = Some(format!("Bearer {}", "t".repeat(20)));
    assert_eq!(ep.handle_admin(now, &authorized).status, 200);
    assert!(ep.backends()[0].draining);
}

// ---- failover ----

/// The server of `s`'s current backend connection dies: its socket reaches EOF.
fn kill_backend(s: &mut Session, ep: &mut Endpoint, now: Instant) {
    let (&id, _) = s
        .servers
        .iter()
        .find(|(_, server)| Some(&server.addr) == s.backend_addr().as_ref())
        .expect("a backend connection");
    s.servers.remove(&id);
    s.conn.handle_eof(now, Peer::Backend(id));
    s.pump(ep, now);
}

#[test]
fn a_session_whose_backend_dies_is_rebuilt_on_another_backend() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let _b = Session::logged_in(&mut ep, now);
    assert_eq!(a.connects, [db1()]);
    kill_backend(&mut a, &mut ep, now);
    // db1 still passes for healthy (no check ran) and has fewer sessions, but the failover
    // avoids the backend it just lost.
    assert_eq!(a.connects, [db1(), db2()]);
    assert_eq!(a.conn.session().backend_name(), Some("db2"));
    assert!(a.client_events.is_empty(), "the client saw nothing");
    assert_eq!(a.query(&mut ep, now, "SELECT 1").rows, 1);
    assert_eq!(sessions_on(&ep), [0, 2]);
    assert_eq!(ep.sessions()[0].backend.as_deref(), Some("db2"));
    let m = ep.metrics();
    assert_eq!(m.failovers_recovered, 1);
    assert!(m.sessions_lost.is_empty());
    assert!(admin_text(&mut ep, now).contains("ferry_failover_recovered_total 1"));
}

#[test]
fn a_session_killed_on_the_only_backend_comes_back_to_it() {
    let (mut ep, now) = endpoint(proxy_auth, 1);
    health_round(&mut ep, now, &[Some(b"10.11"), None]);
    let mut a = Session::logged_in(&mut ep, now);
    kill_backend(&mut a, &mut ep, now);
    assert_eq!(a.connects, [db1(), db1()], "no other healthy backend");
    assert_eq!(ep.metrics().failovers_recovered, 1);
}

#[test]
fn a_pinned_session_is_lost_and_counted_by_reason() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    a.query(&mut ep, now, "BEGIN");
    kill_backend(&mut a, &mut ep, now);
    assert!(a.conn.is_closed());
    assert_eq!(a.connects, [db1()], "no rebuild");
    ep.connection_closed(now, &mut a.conn);
    let m = ep.metrics();
    assert_eq!(m.sessions_lost["pinned"], 1);
    assert_eq!(m.failovers_recovered, 0);
    assert!(admin_text(&mut ep, now).contains("ferry_failover_lost_total{reason=\"pinned\"} 1"));
}

#[test]
fn a_backend_found_down_fails_its_idle_sessions_over() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let mut b = Session::logged_in(&mut ep, now);
    assert_eq!(a.backend_addr(), Some(db1()));
    // Frozen (or gone): the check fails, and db1's session is rebuilt on db2 at once, before
    // the balancer's move.
    let next = ep.poll_timeout().unwrap();
    health_round(&mut ep, next, &[None, Some(b"10.11")]);
    let delivered = deliver(&mut ep, next, &mut [&mut a, &mut b]);
    assert_eq!(
        delivered.first(),
        Some(&(
            a.conn.id(),
            Command::BackendDown {
                backend: "db1".into()
            }
        ))
    );
    assert!(delivered.iter().all(|(id, _)| *id == a.conn.id()));
    assert_eq!(a.conn.session().backend_name(), Some("db2"));
    assert_eq!(a.closes.len(), 1, "the old connection is let go");
    let m = ep.metrics();
    assert_eq!((m.failovers_recovered, m.migrations_succeeded), (1, 0));
    assert_eq!(a.query(&mut ep, next, "SELECT 1").rows, 1);
}

#[test]
fn a_backend_that_refuses_connections_keeps_its_sessions_from_failover() {
    let (mut ep, now) = healthy_endpoint(proxy_auth);
    let mut a = Session::logged_in(&mut ep, now);
    let next = ep.poll_timeout().unwrap();
    ep.handle_timeout(next);
    let mut probes = Vec::new();
    while let Some(p) = ep.poll_probe() {
        probes.push(p);
    }
    for mut p in probes {
        let answer = if p.backend() == 0 {
            too_many_connections()
        } else {
            greeting(b"10.11")
        };
        p.handle_input(next, &answer);
        ep.probe_finished(next, p);
    }
    assert!(!ep.backends()[0].healthy);
    let delivered = deliver(&mut ep, next, &mut [&mut a]);
    assert!(
        !delivered
            .iter()
            .any(|(_, c)| matches!(c, Command::BackendDown { .. })),
        "{delivered:?}"
    );
    assert_eq!(ep.metrics().failovers_recovered, 0);
}

/// `/metrics` as the admin API serves it.
fn admin_text(ep: &mut Endpoint, now: Instant) -> String {
    let request = admin::Request::new("GET", "/metrics", "");
    String::from_utf8(ep.handle_admin(now, &request).body.to_vec()).unwrap()
}

/// Runs one health round with the monitor login against in-memory servers: backend `i` knows
/// the monitor account with password `passwords[i]`.
fn monitor_round(ep: &mut Endpoint, now: Instant, passwords: &[&str]) {
    ep.handle_timeout(now);
    let probes: Vec<_> = std::iter::from_fn(|| ep.poll_probe()).collect();
    assert_eq!(probes.len(), passwords.len());
    for mut p in probes {
        let mut users = UserTable::new();
        users.insert(
            "monitor",
            UserEntry {
                credential: Credential::native_from_password(passwords[p.backend()].as_bytes()),
                plugin: AuthPlugin::MysqlNativePassword,
            },
        );
        let mut config = FrontendConfig::new(ServerAuth::Proxy {
            users: Arc::new(users),
            sha2_cache: None,
            rsa: None,
        });
        config.auto_accept_login = true;
        config.server_version = "10.11.0-MariaDB-test".into();
        let mut server = Frontend::new(
            Arc::new(config),
            9,
            "127.0.0.1",
            now,
            Box::new(SeededRandom::new(5)),
        );
        while !p.is_done() {
            let mut moved = false;
            while let Some(b) = server.poll_transmit() {
                moved = true;
                p.handle_input(now, &b);
            }
            while let Some(b) = p.poll_transmit() {
                moved = true;
                server.handle_input(now, &b);
            }
            while let Some(event) = server.poll_event() {
                moved = true;
                if let crate::frontend::Event::Command(_) = event {
                    server.send_ok_empty(now).unwrap();
                    server.end_response(now).unwrap();
                }
            }
            assert!(moved || p.is_done(), "probe stuck: {p:?}");
        }
        ep.probe_finished(now, p);
    }
}

#[test]
fn a_refused_monitor_login_keeps_the_backend_up_with_a_warning() {
    let (mut ep, now) = endpoint(
        |f| {
            f.health.user = Some("monitor".into());
            f.health.password = Some("pw".into());
        },
        1,
    );
    monitor_round(&mut ep, now, &["pw", "other"]);
    let backends = ep.backends();
    assert!(backends.iter().all(|b| b.healthy), "{backends:?}");
    assert_eq!(backends[0].health_warning, None);
    let warning = backends[1].health_warning.as_deref().unwrap();
    assert!(warning.contains("ERROR 1045"), "{warning}");
    assert_eq!(ep.metrics().errors["health_login"], 1);
    // In the JSON only where there is one.
    let body = String::from_utf8(ep.handle_admin(now, &get("/api/backends")).body).unwrap();
    assert_eq!(body.matches("health_warning").count(), 1, "{body}");
    // Fixed: the warning goes.
    let later = now + Duration::from_secs(1);
    monitor_round(&mut ep, later, &["pw", "pw"]);
    assert!(ep.backends().iter().all(|b| b.health_warning.is_none()));
    assert_eq!(ep.metrics().errors["health_login"], 1);
}

#[test]
fn rounds_start_an_interval_apart_so_a_frozen_backend_is_found_within_interval_and_timeout() {
    let (mut ep, now) = healthy_endpoint(defaults);
    let health = ep.config().health.clone();
    let start = ep.poll_timeout().unwrap();
    ep.handle_timeout(start);
    let probes: Vec<_> = std::iter::from_fn(|| ep.poll_probe()).collect();
    // The last verdict comes at the probes' deadline (a frozen backend's timeout).
    let end = start + health.timeout;
    for mut p in probes {
        p.handle_timeout(end);
        ep.probe_finished(end, p);
    }
    assert_eq!(ep.poll_timeout(), Some(start + health.interval));
    assert!(
        health.interval + health.timeout <= Duration::from_secs(1),
        "the default"
    );
    assert!(now <= start);
}

mod backend_names;
mod multiplexing;
mod ops;
mod proxy_protocol;
mod reload;
