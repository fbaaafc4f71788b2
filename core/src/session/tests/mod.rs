//! Virtual-clock tests chaining real roles in memory: a [`Backend`] role acts as the *client*
//! (driving the session's client side), the [`ProxySession`] in the middle, and a [`Frontend`]
//! role acts as the *server* (a tiny in-test server answering a few queries).

mod change_user;
mod commands;
mod failover;
mod failures;
mod login;
mod malformed;
mod migration;
mod migration_tidb;
mod refused;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::auth::{AuthPlugin, ClientSecret, Credential, Password};
use crate::backend::{self, BackendConfig, PacketKind, ResponseSummary};
use crate::frontend::{
    column, default_capabilities, AuthMode, ClientCommand, FrontendConfig, UserEntry, UserTable,
};
use crate::wire::{
    Capabilities, ColumnType, Command, LocalInfileRequest, OkPacket, PrepareOk, Query,
    ServerStatus, SessionStateChange,
};
use crate::SeededRandom;

pub(super) const USER: &str = "app";
pub(super) const PASSWORD: &str = "secret";
/// Size of the big values: over one 16 MiB frame.
pub(super) const BIG: usize = (1 << 24) + 1000;

/// What a driver reports when `backend`'s TCP connect is refused.
pub(super) fn connection_refused(backend: &str) -> ConnectFailure {
    ConnectFailure::Unreachable {
        backend: backend.to_owned(),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 3306)).into(),
        error: "connection refused".to_owned(),
    }
}

pub(super) fn users() -> Arc<UserTable> {
    let mut t = UserTable::new();
    t.insert(
        USER,
        UserEntry {
            credential: Credential::native_from_password(PASSWORD.as_bytes()),
            plugin: AuthPlugin::MysqlNativePassword,
        },
    );
    Arc::new(t)
}

/// The session's configuration for `proxy` (true) or `passthrough` (false) mode.
pub(super) fn session_config(proxy: bool) -> SessionConfig {
    let auth = if proxy {
        AuthMode::Proxy {
            users: users(),
            sha2_cache: None,
            rsa: None,
        }
    } else {
        AuthMode::Passthrough
    };
    SessionConfig::new(auth)
}

/// The in-test server: a frontend in proxy mode knowing `app`/`secret`, offering session tracking.
pub(super) fn server_config() -> FrontendConfig {
    let mut config = FrontendConfig::new(AuthMode::Proxy {
        users: users(),
        sha2_cache: None,
        rsa: None,
    });
    config.capabilities =
        default_capabilities() | Capabilities::SESSION_TRACK | Capabilities::LOCAL_FILES;
    config.auto_accept_login = true;
    config.server_version = "10.11.0-MariaDB-test".into();
    config
}

pub(super) fn client_config(password: &str) -> BackendConfig {
    BackendConfig::new(USER, ClientSecret::Plaintext(Password::new(password)))
}

/// How the harness answers `ConnectBackend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connect {
    Accept,
    Refuse,
    /// Leave it pending (the session's connect deadline must fire).
    Ignore,
}

/// What the in-test server remembers.
#[derive(Default)]
pub(super) struct ServerState {
    /// Every command payload received.
    pub commands: Vec<Bytes>,
    /// LOCAL INFILE contents received, while loading.
    pub loading: Option<Vec<u8>>,
    pub loaded: Vec<u8>,
    /// A command received and deliberately not answered yet.
    pub held: Option<ClientCommand>,
    /// COM_CHANGE_USER: the answers to the server's auth switch, as received.
    pub change_user_answers: Vec<Bytes>,
    /// Waiting for the answer to that auth switch.
    pub changing_user: bool,
    /// Accept COM_CHANGE_USER at once, without an auth switch (a server ferry cannot check).
    pub change_user_without_switch: bool,
    /// Between `BEGIN` and `COMMIT` / `ROLLBACK`: every answer says so.
    pub in_transaction: bool,
}

/// The in-test server's salt in its COM_CHANGE_USER auth switch.
pub(super) const CHANGE_USER_SALT: [u8; 20] = [9; 20];

/// Client, session and server wired together in memory on a virtual clock.
pub(super) struct Net {
    pub now: Instant,
    pub client: Backend,
    pub session: ProxySession,
    pub server: Option<Frontend>,
    pub server_config: Arc<FrontendConfig>,
    pub conn: Option<BackendConnId>,
    pub connect: Connect,
    pub events: Vec<Event>,
    pub client_events: Vec<backend::Event>,
    /// Every byte the session sent to the client, and to the server.
    pub to_client: Vec<u8>,
    pub to_server: Vec<u8>,
    pub server_state: ServerState,
    /// The client stopped reading (it vanished).
    pub client_gone: bool,
    /// Contents the client sends when asked for a local file.
    pub local_file: Vec<u8>,
    /// Feed the session through `input_buffer` + `handle_input_buffered`, in 7-byte reads,
    /// instead of `handle_input` (where the side has a plain buffer).
    pub buffered: bool,
}

impl Net {
    pub(super) fn new(config: SessionConfig, client: BackendConfig) -> Self {
        Self::with_server(config, client, server_config())
    }

    pub(super) fn with_server(
        config: SessionConfig,
        client: BackendConfig,
        server: FrontendConfig,
    ) -> Self {
        let now = Instant::now();
        let session = ProxySession::new(
            now,
            Arc::new(config),
            7,
            "10.1.2.3".into(),
            Box::new(SeededRandom::new(11)),
        );
        let client = Backend::new(now, client, Box::new(SeededRandom::new(12)));
        Self {
            now,
            client,
            session,
            server: None,
            server_config: Arc::new(server),
            conn: None,
            connect: Connect::Accept,
            events: Vec::new(),
            client_events: Vec::new(),
            to_client: Vec::new(),
            to_server: Vec::new(),
            server_state: ServerState::default(),
            client_gone: false,
            local_file: b"1,a\n2,b\n".to_vec(),
            buffered: false,
        }
    }

    /// Hands `bytes` read from `peer` to the session the way `buffered` says.
    fn feed(&mut self, peer: Peer, bytes: &[u8]) {
        if !self.buffered {
            return self.session.handle_input(self.now, peer, bytes);
        }
        let step = if bytes.len() > 4096 { 4093 } else { 7 };
        for piece in bytes.chunks(step) {
            match self.session.input_buffer(peer) {
                Some(buf) => {
                    buf.extend_from_slice(piece);
                    self.session.handle_input_buffered(self.now, peer);
                }
                None => self.session.handle_input(self.now, peer, piece),
            }
        }
    }

    /// A logged-in client in `proxy` or `passthrough` mode.
    pub(super) fn logged_in(proxy: bool) -> Self {
        let mut net = Self::new(session_config(proxy), client_config(PASSWORD));
        net.pump();
        assert!(
            net.client_connected(),
            "login failed: {:?} / {:?}",
            net.client_events,
            net.events
        );
        net.client_events.clear();
        net
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.client.handle_timeout(self.now);
        self.pump();
    }

    /// Moves bytes and events between the three parties until nothing moves.
    pub(super) fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some(t) = self.session.poll_transmit() {
                progress = true;
                match t.peer {
                    Peer::Client => {
                        self.to_client.extend_from_slice(&t.data);
                        if !self.client_gone {
                            self.client.handle_input(now, &t.data);
                        }
                    }
                    Peer::Backend(id) => {
                        assert_eq!(Some(id), self.conn, "bytes for an unknown backend");
                        self.to_server.extend_from_slice(&t.data);
                        if let Some(s) = &mut self.server {
                            s.handle_input(now, &t.data);
                        }
                    }
                }
            }
            let mut connect = None;
            while let Some(e) = self.session.poll_event() {
                progress = true;
                match &e {
                    Event::ConnectBackend { conn, .. } => connect = Some(*conn),
                    Event::CloseBackend { conn } => {
                        assert_eq!(Some(*conn), self.conn);
                        self.server = None;
                    }
                    _ => {}
                }
                self.events.push(e);
            }
            if let Some(conn) = connect {
                self.conn = Some(conn);
                match self.connect {
                    Connect::Accept => {
                        self.server = Some(Frontend::new(
                            self.server_config.clone(),
                            99,
                            "10.9.9.9",
                            now,
                            Box::new(SeededRandom::new(13)),
                        ));
                        self.session.backend_connected(now, conn, "db1");
                    }
                    Connect::Refuse => {
                        self.session
                            .backend_connect_failed(now, conn, connection_refused("db1"))
                    }
                    Connect::Ignore => {}
                }
            }
            if !self.client_gone {
                while let Some(b) = self.client.poll_transmit() {
                    progress = true;
                    self.feed(Peer::Client, &b);
                }
                while let Some(e) = self.client.poll_event() {
                    progress = true;
                    if let backend::Event::Response {
                        kind: PacketKind::LocalInfileRequest,
                        ..
                    } = e
                    {
                        for chunk in self.local_file.clone().chunks(3) {
                            self.client.send_local_infile_data(now, chunk).unwrap();
                        }
                        self.client.finish_local_infile(now).unwrap();
                    }
                    self.client_events.push(e);
                }
            }
            if let Some(conn) = self.conn {
                while let Some(b) = self.server.as_mut().and_then(Frontend::poll_transmit) {
                    progress = true;
                    self.feed(Peer::Backend(conn), &b);
                }
            }
            if let Some(server) = &mut self.server {
                while let Some(e) = server.poll_event() {
                    progress = true;
                    serve(server, now, &mut self.server_state, e);
                }
            }
            if !progress {
                return;
            }
        }
    }

    pub(super) fn client_connected(&self) -> bool {
        self.client_events
            .iter()
            .any(|e| matches!(e, backend::Event::Connected(_)))
    }

    /// Sends `sql` from the client and returns the response packets it got and the summary.
    pub(super) fn query(&mut self, sql: &[u8]) -> (Vec<(PacketKind, Bytes)>, ResponseSummary) {
        self.client_events.clear();
        let q = Command::Query(Query {
            attributes: vec![],
            sql,
        });
        self.client.send_command(self.now, &q).unwrap();
        self.pump();
        self.take_response()
    }

    /// The client's response packets and summary since the last call.
    pub(super) fn take_response(&mut self) -> (Vec<(PacketKind, Bytes)>, ResponseSummary) {
        let mut packets = Vec::new();
        let mut summary = None;
        for e in self.client_events.drain(..) {
            match e {
                backend::Event::Response { payload, kind } => packets.push((kind, payload)),
                backend::Event::ResponseComplete(s) => summary = Some(s),
                other => panic!("unexpected client event {other:?}"),
            }
        }
        let summary = summary.unwrap_or_else(|| panic!("no complete response: {packets:?}"));
        (packets, summary)
    }

    pub(super) fn closed_reason(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|e| match e {
            Event::Closed { reason } => Some(reason),
            _ => None,
        })
    }
}

fn ok(status: ServerStatus) -> OkPacket<'static> {
    OkPacket {
        status,
        ..OkPacket::default()
    }
}

/// The in-test server's answers.
fn serve(server: &mut Frontend, now: Instant, st: &mut ServerState, event: frontend::Event) {
    let base = if st.in_transaction {
        ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::IN_TRANS.0)
    } else {
        ServerStatus::AUTOCOMMIT
    };
    let command = match event {
        frontend::Event::Command(c) => c,
        frontend::Event::CommandPacket(data) if st.changing_user => {
            // Every account of the in-test server has the password PASSWORD.
            st.changing_user = false;
            let verified = Credential::native_from_password(PASSWORD.as_bytes())
                .verify_native(&data, &CHANGE_USER_SALT)
                .is_some();
            st.change_user_answers.push(data);
            if verified {
                server.send_ok(now, &ok(base)).unwrap();
            } else {
                let denied = crate::auth::access_denied("?", "test", true);
                server.send_error(now, &denied).unwrap();
            }
            server.end_response(now).unwrap();
            return;
        }
        frontend::Event::CommandPacket(data) => {
            if data.is_empty() {
                st.loaded = st.loading.take().unwrap_or_default();
                server
                    .send_ok(
                        now,
                        &OkPacket {
                            affected_rows: 2,
                            ..ok(base)
                        },
                    )
                    .unwrap();
                server.end_response(now).unwrap();
            } else {
                st.loading
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&data);
                server.read_command_packet(now).unwrap();
            }
            return;
        }
        _ => return,
    };
    st.commands.push(command.payload().clone());
    let caps = server.capabilities();
    match command.parse() {
        Ok(Command::Query(q)) => match q.sql {
            b"BEGIN" | b"COMMIT" | b"ROLLBACK" => {
                st.in_transaction = q.sql == b"BEGIN";
                let status = if st.in_transaction {
                    ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::IN_TRANS.0)
                } else {
                    ServerStatus::AUTOCOMMIT
                };
                server.set_status(now, status);
                server.send_ok(now, &ok(status)).unwrap();
            }
            b"SELECT 1" => {
                let cols = [column(b"1", ColumnType::LongLong)];
                server
                    .send_text_result(now, &cols, [[Some(&b"1"[..])]])
                    .unwrap();
            }
            b"MULTI" => {
                let cols = [column(b"a", ColumnType::VarString)];
                server.set_status(
                    now,
                    ServerStatus(base.0 | ServerStatus::MORE_RESULTS_EXISTS.0),
                );
                server
                    .send_text_result(now, &cols, [[Some(&b"x"[..])]])
                    .unwrap();
                server
                    .send_ok(
                        now,
                        &OkPacket {
                            affected_rows: 3,
                            ..ok(ServerStatus(base.0 | ServerStatus::MORE_RESULTS_EXISTS.0))
                        },
                    )
                    .unwrap();
                server.set_status(now, base);
                server
                    .send_text_result(now, &cols, [[Some(&b"y"[..])], [None]])
                    .unwrap();
            }
            b"SET autocommit=0" => {
                let status = ServerStatus(ServerStatus::SESSION_STATE_CHANGED.0);
                server
                    .send_ok(
                        now,
                        &OkPacket {
                            info: b"vars changed",
                            session_state: vec![
                                SessionStateChange::SystemVariable {
                                    name: b"autocommit",
                                    value: b"OFF",
                                },
                                SessionStateChange::Schema(b"shop"),
                            ],
                            ..ok(status)
                        },
                    )
                    .unwrap();
                server.set_status(now, ServerStatus(0));
            }
            b"BIG" => {
                let value = vec![b'z'; BIG];
                let cols = [column(b"b", ColumnType::Blob)];
                server
                    .send_text_result(now, &cols, [[Some(&value[..])]])
                    .unwrap();
            }
            b"LOAD" => {
                let mut p = Vec::new();
                LocalInfileRequest {
                    filename: b"data.csv",
                }
                .encode(&mut p);
                server.send_packet(now, &p).unwrap();
                server.read_command_packet(now).unwrap();
                return;
            }
            b"HOLD" => {
                st.held = Some(command);
                return;
            }
            b"HALF" => {
                // A result set cut short: header, column, one row, then nothing.
                let mut p = Vec::new();
                crate::wire::ResultSetHeader {
                    column_count: 1,
                    metadata_follows: true,
                }
                .encode(caps, &mut p);
                server.send_packet(now, &p).unwrap();
                p.clear();
                column(b"a", ColumnType::VarString).encode(&mut p);
                server.send_packet(now, &p).unwrap();
                if !caps.contains(Capabilities::DEPRECATE_EOF) {
                    p.clear();
                    crate::wire::EofPacket {
                        warnings: 0,
                        status: base,
                    }
                    .encode(&mut p, caps);
                    server.send_packet(now, &p).unwrap();
                }
                p.clear();
                crate::wire::TextRow::encode(&[Some(b"r1")], &mut p);
                server.send_packet(now, &p).unwrap();
                st.held = Some(command);
                return;
            }
            sql if sql.starts_with(b"BIGQ") => {
                server
                    .send_ok(
                        now,
                        &OkPacket {
                            affected_rows: sql.len() as u64,
                            ..ok(base)
                        },
                    )
                    .unwrap();
            }
            _ => server
                .send_error(now, &ProtocolError::new(1064, "42000", "syntax error"))
                .unwrap(),
        },
        Ok(Command::StmtPrepare { .. }) => {
            let mut p = Vec::new();
            PrepareOk {
                statement_id: 5,
                num_columns: 1,
                num_params: 1,
                warning_count: Some(0),
                metadata_follows: true,
            }
            .encode(caps, &mut p);
            server.send_packet(now, &p).unwrap();
            p.clear();
            column(b"?", ColumnType::LongLong).encode(&mut p);
            server.send_packet(now, &p).unwrap();
            if !caps.contains(Capabilities::DEPRECATE_EOF) {
                send_eof(server, now, base);
            }
            p.clear();
            column(b"n", ColumnType::LongLong).encode(&mut p);
            server.send_packet(now, &p).unwrap();
            if !caps.contains(Capabilities::DEPRECATE_EOF) {
                send_eof(server, now, base);
            }
        }
        Ok(Command::StmtExecute(e)) => {
            // One BIGINT column: the parameter plus one, in the binary protocol.
            let n = match &e.params {
                crate::wire::ExecuteParams::Bound(params) => match params.first() {
                    Some(crate::wire::Param {
                        value: crate::wire::Value::I64(n),
                        ..
                    }) => *n,
                    other => panic!("unexpected parameter {other:?}"),
                },
                other => panic!("unexpected parameters {other:?}"),
            };
            let mut p = Vec::new();
            crate::wire::ResultSetHeader {
                column_count: 1,
                metadata_follows: true,
            }
            .encode(caps, &mut p);
            server.send_packet(now, &p).unwrap();
            p.clear();
            column(b"n", ColumnType::LongLong).encode(&mut p);
            server.send_packet(now, &p).unwrap();
            if !caps.contains(Capabilities::DEPRECATE_EOF) {
                send_eof(server, now, base);
            }
            p.clear();
            crate::wire::BinaryRow {
                values: vec![crate::wire::Value::I64(n + 1)],
            }
            .encode(&mut p);
            server.send_packet(now, &p).unwrap();
            p.clear();
            if caps.contains(Capabilities::DEPRECATE_EOF) {
                OkPacket {
                    eof: true,
                    ..ok(base)
                }
                .encode(&mut p, caps);
                server.send_packet(now, &p).unwrap();
            } else {
                send_eof(server, now, base);
            }
        }
        Ok(Command::StmtClose { .. }) => {}
        Ok(Command::Ping) => server.send_ok_empty(now).unwrap(),
        Ok(Command::ChangeUser(_)) if st.change_user_without_switch => {
            server.send_ok(now, &ok(base)).unwrap();
        }
        Ok(Command::ChangeUser(_)) => {
            let mut p = Vec::new();
            let mut data = CHANGE_USER_SALT.to_vec();
            data.push(0);
            crate::wire::AuthSwitchRequest {
                plugin_name: b"mysql_native_password",
                data: &data,
            }
            .encode(&mut p);
            server.send_packet(now, &p).unwrap();
            st.changing_user = true;
            server.read_command_packet(now).unwrap();
            return;
        }
        other => panic!("the test server got {other:?}"),
    }
    server.end_response(now).unwrap();
}

fn send_eof(server: &mut Frontend, now: Instant, status: ServerStatus) {
    let mut p = Vec::new();
    crate::wire::EofPacket {
        warnings: 0,
        status,
    }
    .encode(&mut p, server.capabilities());
    server.send_packet(now, &p).unwrap();
}

/// A big payload made of a repeated pattern, to check it arrives intact.
pub(super) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[allow(dead_code)]
pub(super) fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    crate::wire::encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}
