//! Migration on a virtual clock: a client (backend role), the session, and several in-test
//! servers (frontend roles) keyed by backend connection, so a session can move between them.
//! Every statement a server receives is logged, so replays are checked statement by statement.

use std::collections::HashMap;

use super::*;
use crate::wire::{ExecuteParams, StmtExecute, StmtExecuteHeader};

/// How a server answers a login and what it refuses.
#[derive(Clone, Default)]
pub(super) struct Script {
    /// SQL prefixes answered with ERR 1193.
    pub(super) fail: Vec<&'static str>,
    /// SQL prefixes never answered (deadline tests).
    pub(super) hold: Vec<&'static str>,
    /// Rows of the user-variables query (name, value, type, charset).
    pub(super) user_vars: Vec<[Option<&'static str>; 4]>,
    /// A string variable's exact bytes and collation, when USER_VARIABLES shows them lossily
    /// (otherwise its shown value and `<charset>_general_ci`).
    pub(super) exact: Vec<(&'static str, &'static [u8], &'static str)>,
    /// First statement id handed out.
    pub(super) first_stmt: u32,
    /// `tidb` test server: `Some` answers token logins and SHOW/SET SESSION_STATES.
    pub(super) tidb: Option<super::migration_tidb::TidbScript>,
}

/// One in-test server connection.
pub(super) struct Server {
    pub(super) name: String,
    pub(super) fe: Frontend,
    pub(super) script: Script,
    /// Every command payload received.
    pub(super) log: Vec<Bytes>,
    pub(super) next_stmt: u32,
    pub(super) status: ServerStatus,
    pub(super) closed: bool,
    /// A `tidb_session_token` login was accepted.
    pub(super) token_login: bool,
    /// The connection's character set and collation (`SET NAMES`).
    pub(super) names: (String, String),
}

impl Server {
    /// The SQL (or `#<code>` + rest) of each command received, for assertions.
    pub(super) fn statements(&self) -> Vec<String> {
        self.log
            .iter()
            .map(|p| match p.first() {
                Some(&Command::COM_QUERY) => String::from_utf8_lossy(&p[1..]).into_owned(),
                Some(&Command::COM_STMT_PREPARE) => {
                    format!("PREPARE {}", String::from_utf8_lossy(&p[1..]))
                }
                Some(&c) => format!("#{c:02X}"),
                None => String::new(),
            })
            .collect()
    }
}

/// How the harness answers `ConnectBackend` for a target.
pub(super) struct Mig {
    pub(super) now: Instant,
    pub(super) client: Backend,
    pub(super) session: ProxySession,
    pub(super) servers: HashMap<BackendConnId, Server>,
    /// Connection ids in the order they were opened, with the backend name.
    pub(super) conns: Vec<(BackendConnId, String)>,
    pub(super) scripts: HashMap<String, Script>,
    pub(super) connect: HashMap<String, Connect>,
    pub(super) server_configs: HashMap<String, Arc<FrontendConfig>>,
    pub(super) events: Vec<Event>,
    pub(super) client_events: Vec<backend::Event>,
    /// A connect left pending (`Connect::Ignore`).
    pub(super) pending: Option<(BackendConnId, String)>,
    /// Where a `ConnectBackend { target: None }` goes (the login's, a failover's).
    pub(super) pick: String,
}

/// A session configuration with migration `mode`, without failover: these tests see the old
/// backend read live at migration time (`failover.rs` has the snapshot's tests).
pub(super) fn migration_config(mode: MigrationMode) -> SessionConfig {
    let mut config = session_config(mode == MigrationMode::Replay);
    config.migration.mode = mode;
    config.migration.failover = false;
    config
}

impl Mig {
    /// A logged-in client on `db1`, with servers `db1`, `db2`, `db3` (replay servers by default).
    pub(super) fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        let session = ProxySession::new(
            now,
            Arc::new(config),
            7,
            "10.1.2.3".into(),
            Box::new(SeededRandom::new(11)),
        );
        let client = Backend::new(
            now,
            client_config(PASSWORD),
            Box::new(SeededRandom::new(12)),
        );
        let mut mig = Self {
            now,
            client,
            session,
            servers: HashMap::new(),
            conns: Vec::new(),
            scripts: HashMap::new(),
            connect: HashMap::new(),
            server_configs: HashMap::new(),
            events: Vec::new(),
            client_events: Vec::new(),
            pending: None,
            pick: "db1".into(),
        };
        for (i, name) in ["db1", "db2", "db3"].into_iter().enumerate() {
            mig.scripts.insert(
                name.into(),
                Script {
                    first_stmt: 1 + 99 * i as u32,
                    ..Script::default()
                },
            );
            mig.server_configs
                .insert(name.into(), Arc::new(server_config()));
        }
        mig
    }

    /// Logs the client in (to `db1`).
    pub(super) fn login(&mut self) {
        self.pump();
        assert!(
            self.client_events
                .iter()
                .any(|e| matches!(e, backend::Event::Connected(_))),
            "login failed: {:?} / {:?}",
            self.client_events,
            self.events
        );
        self.client_events.clear();
    }

    pub(super) fn logged_in(mode: MigrationMode) -> Self {
        let mut mig = Self::new(migration_config(mode));
        mig.login();
        mig
    }

    /// The server of the session's current backend.
    pub(super) fn server(&self, name: &str) -> &Server {
        let (id, _) = self
            .conns
            .iter()
            .rev()
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("no connection to {name}"));
        &self.servers[id]
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.pump();
    }

    /// Opens the connection left pending.
    pub(super) fn accept_pending(&mut self) {
        let (conn, name) = self.pending.take().expect("a pending connect");
        self.open(conn, &name);
        self.pump();
    }

    fn open(&mut self, conn: BackendConnId, name: &str) {
        let script = self.scripts[name].clone();
        let fe = Frontend::new(
            self.server_configs[name].clone(),
            100 + conn as u32,
            "10.9.9.9",
            self.now,
            Box::new(SeededRandom::new(13 + conn)),
        );
        self.servers.insert(
            conn,
            Server {
                name: name.into(),
                fe,
                next_stmt: script.first_stmt,
                script,
                log: Vec::new(),
                status: ServerStatus::AUTOCOMMIT,
                closed: false,
                token_login: false,
                names: ("utf8mb4".into(), "utf8mb4_general_ci".into()),
            },
        );
        self.conns.push((conn, name.into()));
        self.session.backend_connected(self.now, conn, name);
    }

    pub(super) fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some(t) = self.session.poll_transmit() {
                progress = true;
                match t.peer {
                    Peer::Client => self.client.handle_input(now, &t.data),
                    Peer::Backend(id) => {
                        let server = self.servers.get_mut(&id).expect("bytes for an open conn");
                        assert!(!server.closed, "bytes after CloseBackend");
                        server.fe.handle_input(now, &t.data);
                    }
                }
            }
            let mut connects = Vec::new();
            while let Some(e) = self.session.poll_event() {
                progress = true;
                match &e {
                    Event::ConnectBackend { conn, target } => {
                        connects.push((*conn, target.clone().unwrap_or_else(|| self.pick.clone())))
                    }
                    Event::CloseBackend { conn } => {
                        if let Some(s) = self.servers.get_mut(conn) {
                            s.closed = true;
                        }
                    }
                    _ => {}
                }
                self.events.push(e);
            }
            for (conn, name) in connects {
                match self.connect.get(&name).copied().unwrap_or(Connect::Accept) {
                    Connect::Accept => self.open(conn, &name),
                    Connect::Refuse => {
                        self.session
                            .backend_connect_failed(now, conn, connection_refused(&name))
                    }
                    Connect::Ignore => self.pending = Some((conn, name)),
                }
            }
            while let Some(b) = self.client.poll_transmit() {
                progress = true;
                self.session.handle_input(now, Peer::Client, &b);
            }
            while let Some(e) = self.client.poll_event() {
                progress = true;
                self.client_events.push(e);
            }
            let ids: Vec<_> = self.servers.keys().copied().collect();
            for id in ids {
                let server = self.servers.get_mut(&id).unwrap();
                if server.closed {
                    continue;
                }
                let mut out = Vec::new();
                while let Some(b) = server.fe.poll_transmit() {
                    out.push(b);
                }
                let mut events = Vec::new();
                while let Some(e) = server.fe.poll_event() {
                    events.push(e);
                }
                for e in events {
                    progress = true;
                    serve(server, now, e);
                }
                while let Some(b) = server.fe.poll_transmit() {
                    out.push(b);
                }
                for b in out {
                    progress = true;
                    self.session.handle_input(now, Peer::Backend(id), &b);
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Sends `command` from the client; returns the response's OK info (or the ERR message).
    pub(super) fn send(&mut self, command: &Command<'_>) -> String {
        self.client_events.clear();
        self.client.send_command(self.now, command).unwrap();
        self.pump();
        self.answer()
    }

    pub(super) fn query(&mut self, sql: &str) -> String {
        self.send(&Command::Query(Query {
            attributes: vec![],
            sql: sql.as_bytes(),
        }))
    }

    /// The response the client got since the last command: `info` of its last OK, `ERR <msg>`,
    /// or `rows:<n>`.
    pub(super) fn answer(&mut self) -> String {
        let caps = self.client.capabilities();
        let mut info = None;
        let mut summary = None;
        for e in self.client_events.drain(..) {
            match e {
                backend::Event::Response {
                    payload,
                    kind: PacketKind::Ok,
                } => {
                    let ok = OkPacket::parse(&payload, caps).unwrap();
                    info = Some(String::from_utf8_lossy(ok.info).into_owned());
                }
                backend::Event::ResponseComplete(s) => summary = Some(s),
                _ => {}
            }
        }
        let summary = summary.expect("a complete response");
        if let Some(e) = summary.error {
            return format!("ERR {}", e.message);
        }
        info.unwrap_or_else(|| format!("rows:{}", summary.rows))
    }

    pub(super) fn prepare(&mut self, sql: &str) -> u32 {
        self.client_events.clear();
        let q = Command::StmtPrepare {
            query: sql.as_bytes(),
        };
        self.client.send_command(self.now, &q).unwrap();
        self.pump();
        let mut id = None;
        for e in self.client_events.drain(..) {
            if let backend::Event::ResponseComplete(s) = e {
                id = s.prepared.map(|p| p.statement_id);
            }
        }
        id.expect("a prepare-OK")
    }

    pub(super) fn execute(&mut self, id: u32) -> String {
        self.send(&Command::StmtExecute(StmtExecute {
            header: StmtExecuteHeader {
                statement_id: id,
                flags: 0,
                iteration_count: 1,
            },
            params: ExecuteParams::Bound(vec![]),
        }))
    }

    pub(super) fn migration_events(&self) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::MigrationStarted { .. }
                        | Event::MigrationDone { .. }
                        | Event::MigrationFailed { .. }
                )
            })
            .collect()
    }

    pub(super) fn failure(&self) -> Option<&MigrationFailure> {
        self.events.iter().find_map(|e| match e {
            Event::MigrationFailed { reason, .. } => Some(reason),
            _ => None,
        })
    }

    pub(super) fn done(&self) -> Option<(&str, &str, Duration, &[String])> {
        self.events.iter().find_map(|e| match e {
            Event::MigrationDone {
                from,
                to,
                pause,
                skipped_variables,
            } => Some((from.as_str(), to.as_str(), *pause, &skipped_variables[..])),
            _ => None,
        })
    }
}

pub(super) fn ok_with(
    server: &mut Server,
    now: Instant,
    info: &str,
    state: Vec<SessionStateChange<'_>>,
    insert_id: u64,
) {
    let status = if state.is_empty() {
        server.status
    } else {
        ServerStatus(server.status.0 | ServerStatus::SESSION_STATE_CHANGED.0)
    };
    server.fe.set_status(now, server.status);
    server
        .fe
        .send_ok(
            now,
            &OkPacket {
                status,
                info: info.as_bytes(),
                session_state: state,
                last_insert_id: insert_id,
                ..OkPacket::default()
            },
        )
        .unwrap();
}

/// `SET a = b` / `SET SESSION a = 'b'` → (a, b), quotes removed.
fn parse_set(sql: &str) -> Option<(String, String)> {
    let rest = sql.strip_prefix("SET ")?;
    let rest = rest.strip_prefix("SESSION ").unwrap_or(rest);
    let (name, value) = rest.split_once('=')?;
    let value = value.trim().trim_matches('\'').to_owned();
    Some((name.trim().to_owned(), value))
}

/// `SELECT i, CAST(@`v` AS BINARY), COLLATION(@`v`) UNION ALL …`: each variable's exact bytes.
fn string_values(server: &mut Server, now: Instant, sql: &str) {
    let cols = [
        column(b"0", ColumnType::LongLong),
        column(b"CAST", ColumnType::Blob),
        column(b"COLLATION", ColumnType::VarString),
    ];
    let rows: Vec<[Option<Vec<u8>>; 3]> = sql
        .split(" UNION ALL ")
        .map(|select| {
            let (index, rest) = select
                .strip_prefix("SELECT ")
                .and_then(|s| s.split_once(", CAST(@`"))
                .expect("the values query");
            let name = rest.split_once("` AS BINARY)").expect("a name").0;
            let script = &server.script;
            let (value, collation) = match script.exact.iter().find(|(n, ..)| *n == name) {
                Some((_, value, collation)) => (Some(value.to_vec()), Some(collation.to_string())),
                None => match script.user_vars.iter().find(|r| r[0] == Some(name)) {
                    Some([_, value, _, charset]) => (
                        value.map(|v| v.as_bytes().to_vec()),
                        charset.map(|c| format!("{c}_general_ci")),
                    ),
                    // No such variable: NULL, as on a server.
                    None => (None, None),
                },
            };
            [
                Some(index.as_bytes().to_vec()),
                value,
                collation.map(String::into_bytes),
            ]
        })
        .collect();
    server.fe.set_status(now, server.status);
    server
        .fe
        .send_text_result(
            now,
            &cols,
            rows.iter()
                .map(|r| r.iter().map(|c| c.as_deref()).collect::<Vec<_>>()),
        )
        .unwrap();
}

/// The in-test servers' answers (see [`Script`]).
fn serve(server: &mut Server, now: Instant, event: frontend::Event) {
    let command = match event {
        frontend::Event::Command(c) => c,
        frontend::Event::ClientLogin(login) => {
            return super::migration_tidb::tidb_login(server, now, login);
        }
        _ => return,
    };
    server.log.push(command.payload().clone());
    let name = server.name.clone();
    if command.code() == Command::COM_STMT_EXECUTE {
        // By header: a tidb server restores statements it never prepared on this connection.
        let id = StmtExecuteHeader::peek(command.payload())
            .unwrap()
            .statement_id;
        ok_with(server, now, &format!("{name}:exec:{id}"), vec![], 0);
        server.fe.end_response(now).unwrap();
        return;
    }
    match command.parse() {
        Ok(Command::Query(q)) => {
            let sql = String::from_utf8_lossy(q.sql).into_owned();
            if server.script.hold.iter().any(|p| sql.starts_with(p)) {
                return;
            }
            if server.script.fail.iter().any(|p| sql.starts_with(p)) {
                let err =
                    ProtocolError::new(1193, "HY000", format!("Unknown system variable: {sql}"));
                server.fe.send_error(now, &err).unwrap();
                server.fe.end_response(now).unwrap();
                return;
            }
            if server.script.tidb.is_some() && super::migration_tidb::tidb_query(server, now, &sql)
            {
                server.fe.end_response(now).unwrap();
                return;
            }
            let upper = sql.to_ascii_uppercase();
            if sql.starts_with("SELECT @@character_set_client") {
                // The old-session query: the live character sets joined with USER_VARIABLES.
                let cols = [
                    "@@character_set_client",
                    "@@character_set_results",
                    "@@character_set_connection",
                    "@@collation_connection",
                    "VARIABLE_NAME",
                    "VARIABLE_VALUE",
                    "VARIABLE_TYPE",
                    "CHARACTER_SET_NAME",
                ]
                .map(|c| column(c.as_bytes(), ColumnType::VarString));
                let (cs, coll) = &server.names;
                let charsets = [cs, cs, cs, coll].map(|c| Some(c.as_bytes()));
                let mut rows: Vec<Vec<Option<&[u8]>>> = server
                    .script
                    .user_vars
                    .iter()
                    .map(|r| {
                        let vars = r.iter().map(|c| c.map(str::as_bytes));
                        charsets.iter().copied().chain(vars).collect()
                    })
                    .collect();
                if rows.is_empty() {
                    rows.push(charsets.iter().copied().chain([None; 4]).collect());
                }
                server.fe.set_status(now, server.status);
                server.fe.send_text_result(now, &cols, rows).unwrap();
            } else if sql.starts_with("SELECT 0, CAST(@")
                || sql.contains(" AS BINARY), COLLATION(@")
            {
                string_values(server, now, &sql);
            } else if sql.starts_with("SELECT LAST_INSERT_ID(") {
                let cols = [column(b"LAST_INSERT_ID()", ColumnType::LongLong)];
                server.fe.set_status(now, server.status);
                server
                    .fe
                    .send_text_result(now, &cols, [[Some(&b"1"[..])]])
                    .unwrap();
            } else if upper == "BEGIN" {
                server.status = ServerStatus(server.status.0 | ServerStatus::IN_TRANS.0);
                ok_with(server, now, &format!("{name}:{sql}"), vec![], 0);
            } else if upper == "COMMIT" {
                server.status = ServerStatus(server.status.0 & !ServerStatus::IN_TRANS.0);
                ok_with(server, now, &format!("{name}:{sql}"), vec![], 0);
            } else if upper.starts_with("INSERT") {
                ok_with(server, now, &format!("{name}:{sql}"), vec![], 42);
            } else if let Some(db) = sql.strip_prefix("USE ") {
                let db = db.to_owned();
                ok_with(
                    server,
                    now,
                    &format!("{name}:{sql}"),
                    vec![
                        SessionStateChange::Schema(db.as_bytes()),
                        SessionStateChange::StateChange(true),
                    ],
                    0,
                );
            } else if let Some(names) = sql.strip_prefix("SET NAMES ") {
                let words: Vec<&str> = names.split(' ').map(|w| w.trim_matches('\'')).collect();
                let cs = words[0].to_owned();
                let coll = match words[..] {
                    [_, collate, coll] if collate.eq_ignore_ascii_case("COLLATE") => coll.into(),
                    _ => format!("{cs}_swedish_ci"),
                };
                server.names = (cs.clone(), coll);
                // Like MariaDB 10.11: the three character sets, not collation_connection.
                let mut state: Vec<SessionStateChange<'_>> = [
                    "character_set_client",
                    "character_set_connection",
                    "character_set_results",
                ]
                .into_iter()
                .map(|n| SessionStateChange::SystemVariable {
                    name: n.as_bytes(),
                    value: cs.as_bytes(),
                })
                .collect();
                state.push(SessionStateChange::StateChange(true));
                ok_with(server, now, &format!("{name}:{sql}"), state, 0);
            } else if sql.starts_with("SET @") {
                ok_with(
                    server,
                    now,
                    &format!("{name}:{sql}"),
                    vec![SessionStateChange::StateChange(true)],
                    0,
                );
            } else if sql.starts_with("SET session_track") {
                ok_with(server, now, &format!("{name}:{sql}"), vec![], 0);
            } else if let Some((var, value)) = parse_set(&sql) {
                if var == "autocommit" {
                    let on = value == "1" || value.eq_ignore_ascii_case("ON");
                    let flag = ServerStatus::AUTOCOMMIT.0;
                    server.status = ServerStatus(if on {
                        server.status.0 | flag
                    } else {
                        server.status.0 & !flag
                    });
                }
                let value = if var == "autocommit" && value == "0" {
                    "OFF".to_owned()
                } else {
                    value
                };
                ok_with(
                    server,
                    now,
                    &format!("{name}:{sql}"),
                    vec![
                        SessionStateChange::SystemVariable {
                            name: var.as_bytes(),
                            value: value.as_bytes(),
                        },
                        SessionStateChange::StateChange(true),
                    ],
                    0,
                );
            } else if upper.starts_with("CREATE TEMPORARY")
                || upper.starts_with("DROP")
                || upper.starts_with("PREPARE")
                || upper.starts_with("DEALLOCATE")
            {
                // MariaDB 10.11 reports a state change for these.
                ok_with(
                    server,
                    now,
                    &format!("{name}:{sql}"),
                    vec![SessionStateChange::StateChange(true)],
                    0,
                );
            } else {
                ok_with(server, now, &format!("{name}:{sql}"), vec![], 0);
            }
        }
        Ok(Command::StmtPrepare { .. }) => {
            let id = server.next_stmt;
            server.next_stmt += 1;
            let mut p = Vec::new();
            PrepareOk {
                statement_id: id,
                num_columns: 0,
                num_params: 0,
                warning_count: Some(0),
                metadata_follows: true,
            }
            .encode(server.fe.capabilities(), &mut p);
            server.fe.send_packet(now, &p).unwrap();
        }
        Ok(Command::StmtClose { .. }) => {}
        Ok(Command::Ping) => server.fe.send_ok_empty(now).unwrap(),
        // As MariaDB answers it: an EOF (an OK with header 0xFE under DEPRECATE_EOF).
        Ok(Command::SetOption { .. }) => {
            let caps = server.fe.capabilities();
            let mut p = Vec::new();
            if caps.contains(Capabilities::DEPRECATE_EOF) {
                OkPacket {
                    eof: true,
                    status: server.status,
                    ..OkPacket::default()
                }
                .encode(&mut p, caps);
            } else {
                crate::wire::EofPacket {
                    warnings: 0,
                    status: server.status,
                }
                .encode(&mut p, caps);
            }
            server.fe.send_packet(now, &p).unwrap();
        }
        other => panic!("the test server got {other:?}"),
    }
    server.fe.end_response(now).unwrap();
}

// ---- the tests ----

/// Sets up every kind of state `replay` rebuilds; returns the two statement ids.
pub(super) fn stateful_session(mig: &mut Mig) -> (u32, u32) {
    mig.scripts.get_mut("db1").unwrap().user_vars = vec![
        [Some("i"), Some("42"), Some("INT"), Some("latin1")],
        [Some("d"), Some("3.14"), Some("DECIMAL"), Some("latin1")],
        [Some("f"), Some("2.5"), Some("DOUBLE"), Some("latin1")],
        [Some("s"), Some("it's"), Some("VARCHAR"), Some("utf8mb4")],
        [Some("n"), None, Some("VARCHAR"), Some("binary")],
        // USER_VARIABLES is utf8mb3: 4-byte characters show as '?', binary bytes mangled.
        [Some("e"), Some("? ok"), Some("VARCHAR"), Some("utf8mb4")],
        [Some("b"), Some("?"), Some("VARCHAR"), Some("binary")],
        // MariaDB's types for `@u = 18446744073709551615` and `@ni = CAST(NULL AS SIGNED)`.
        [
            Some("u"),
            Some("18446744073709551615"),
            Some("INT UNSIGNED"),
            Some("latin1"),
        ],
        [Some("ni"), None, Some("INT"), Some("latin1")],
    ];
    mig.scripts.get_mut("db1").unwrap().exact = vec![
        ("e", "😀 ok".as_bytes(), "utf8mb4_unicode_ci"),
        ("b", &[0xFF], "binary"),
    ];
    for s in mig.servers.values_mut() {
        if s.name == "db1" {
            s.script.user_vars = mig.scripts["db1"].user_vars.clone();
            s.script.exact = mig.scripts["db1"].exact.clone();
        }
    }
    assert_eq!(mig.query("USE shop"), "db1:USE shop");
    mig.query("SET NAMES latin1");
    mig.query("SET sql_mode = 'ANSI_QUOTES'");
    mig.query("SET time_zone = '+02:00'");
    mig.query("SET autocommit = 0");
    mig.query(
        "SET @i = 42, @d = 3.14, @f = 2.5e0, @s = 'it''s', @n = NULL, \
         @e = '😀 ok' COLLATE utf8mb4_unicode_ci, @b = X'FF', @u = 18446744073709551615, \
         @ni = CAST(NULL AS SIGNED)",
    );
    let a = mig.prepare("SELECT 'a'");
    let b = mig.prepare("SELECT 'b'");
    assert_eq!(
        mig.query("INSERT INTO t VALUES (NULL)"),
        "db1:INSERT INTO t VALUES (NULL)"
    );
    assert_eq!((a, b), (1, 2));
    (a, b)
}

#[test]
fn replay_rebuilds_every_piece_of_state_on_the_new_backend() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    assert_eq!(
        mig.server("db1").statements()[0],
        "SET session_track_system_variables='*', session_track_schema=1, session_track_state_change=1",
        "tracking first, before the client's first command"
    );
    let (a, b) = stateful_session(&mut mig);
    assert_eq!(mig.session.pinned(), None);
    let started = mig.session.start_migration(mig.now, "db2".into());
    assert_eq!(started, Ok(MigrationStart::Started));
    mig.pump();
    let (from, to, pause, skipped) = mig.done().expect("migrated");
    assert_eq!(
        (from, to, pause, skipped),
        ("db1", "db2", Duration::ZERO, &[][..])
    );
    assert_eq!(mig.session.backend_name(), Some("db2"));
    assert!(!mig.session.migration_in_progress());

    let old = mig.server("db1");
    assert!(old.closed, "the old connection was released");
    assert!(old.fe.is_closed(), "after COM_QUIT");
    let read = old.statements();
    assert_eq!(
        read[read.len() - 1],
        "SELECT 3, CAST(@`s` AS BINARY), COLLATION(@`s`) UNION ALL \
         SELECT 5, CAST(@`e` AS BINARY), COLLATION(@`e`) UNION ALL \
         SELECT 6, CAST(@`b` AS BINARY), COLLATION(@`b`)",
        "the exact bytes of the non-NULL strings"
    );
    assert!(read[read.len() - 2].starts_with(
        "SELECT @@character_set_client, @@character_set_results, @@character_set_connection, \
         @@collation_connection, u.VARIABLE_NAME, u.VARIABLE_VALUE, u.VARIABLE_TYPE, \
         u.CHARACTER_SET_NAME FROM (SELECT 1) AS one \
         LEFT JOIN information_schema.USER_VARIABLES AS u ON 1"
    ));

    let new = mig.server("db2");
    assert_eq!(new.fe.database(), Some("shop"), "current database at login");
    assert_eq!(new.fe.user(), Some(USER));
    assert_eq!(
        new.statements(),
        vec![
            "SET session_track_system_variables='*', session_track_schema=1, session_track_state_change=1",
            "SET NAMES 'latin1' COLLATE 'latin1_swedish_ci'",
            "SET SESSION autocommit = 'OFF'",
            "SET SESSION sql_mode = 'ANSI_QUOTES'",
            "SET SESSION time_zone = '+02:00'",
            "SET @`i` = 42, @`d` = 3.14, @`f` = 2.5e0, \
             @`s` = _utf8mb4 X'69742773' COLLATE utf8mb4_general_ci, @`n` = NULL, \
             @`e` = _utf8mb4 X'F09F9880206F6B' COLLATE utf8mb4_unicode_ci, @`b` = _binary X'FF', \
             @`u` = CAST(18446744073709551615 AS UNSIGNED), @`ni` = CAST(NULL AS SIGNED)",
            "PREPARE SELECT 'a'",
            "PREPARE SELECT 'b'",
            "SELECT LAST_INSERT_ID(42)",
        ]
    );
    assert!(
        mig.client_events.is_empty(),
        "nothing of the replay reached the client"
    );

    // Same statement ids for the client, the new backend's behind them.
    assert_eq!(mig.execute(a), "db2:exec:100");
    assert_eq!(mig.execute(b), "db2:exec:101");
    assert_eq!(mig.query("SELECT @@port"), "db2:SELECT @@port");
    let c = mig.prepare("SELECT 'c'");
    assert_eq!(c, 3, "a new id never collides with the client's");
    assert_eq!(mig.execute(c), "db2:exec:102");
    mig.client
        .send_command(mig.now, &Command::StmtClose { statement_id: a })
        .unwrap();
    mig.pump();
    assert_eq!(
        mig.server("db2").log.last().unwrap()[..5],
        [Command::COM_STMT_CLOSE, 100, 0, 0, 0]
    );
    assert_eq!(mig.session.state().schema.as_deref(), Some(&b"shop"[..]));
}

/// Multi-statements follow the client's last COM_SET_OPTION to the new backend: the login there
/// asks for them as the client last set them, not as it logged in.
#[test]
fn multi_statements_set_by_com_set_option_survive_the_move() {
    for (option, wanted) in [(1u16, false), (0, true)] {
        let mut mig = Mig::logged_in(MigrationMode::Replay);
        mig.client_events.clear();
        mig.client
            .send_command(mig.now, &Command::SetOption { option })
            .unwrap();
        mig.pump();
        assert!(
            mig.client_events.iter().any(|e| matches!(
                e,
                backend::Event::ResponseComplete(s) if s.is_ok()
            )),
            "{:?}",
            mig.client_events
        );
        assert_eq!(mig.session.state().multi_statements, Some(wanted));
        mig.session.start_migration(mig.now, "db2".into()).unwrap();
        mig.pump();
        mig.done().expect("migrated");
        assert_eq!(
            mig.server("db2")
                .fe
                .capabilities()
                .contains(Capabilities::MULTI_STATEMENTS),
            wanted,
            "option {option}"
        );
    }
}

#[test]
fn a_command_sent_during_the_migration_waits_and_runs_on_the_new_backend() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.connect.insert("db2".into(), Connect::Ignore);
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    assert!(mig.session.migration_in_progress());
    mig.client_events.clear();
    mig.client
        .send_command(
            mig.now,
            &Command::Query(Query {
                attributes: vec![],
                sql: b"SELECT 1",
            }),
        )
        .unwrap();
    mig.pump();
    assert!(mig.client_events.is_empty(), "it waits");
    assert_eq!(mig.server("db1").statements().last().unwrap(), "SET session_track_system_variables='*', session_track_schema=1, session_track_state_change=1");
    mig.now += Duration::from_millis(3);
    mig.accept_pending();
    assert_eq!(mig.answer(), "db2:SELECT 1");
    let (_, _, pause, _) = mig.done().unwrap();
    assert_eq!(pause, Duration::from_millis(3), "the wait is the pause");
    // The statement's latency counts its wait.
    let durations: Vec<Duration> = mig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::CommandDone {
                code: Command::COM_QUERY,
                duration,
                ..
            } => Some(*duration),
            _ => None,
        })
        .collect();
    assert_eq!(durations.last(), Some(&Duration::from_millis(3)));
}

/// Each failure leaves the session on db1, usable, with its statement.
#[test]
fn every_failure_leaves_the_session_on_its_old_backend() {
    type Setup = fn(&mut Mig);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "connect refused",
            |m| {
                m.connect.insert("db2".into(), Connect::Refuse);
            },
            "connect_failed",
        ),
        (
            "login ERR",
            |m| {
                let mut config = server_config();
                config.auth = AuthMode::Proxy {
                    users: Arc::new(UserTable::new()),
                    sha2_cache: None,
                    rsa: None,
                };
                m.server_configs.insert("db2".into(), Arc::new(config));
            },
            "login_refused",
        ),
        (
            "replay ERR",
            |m| m.scripts.get_mut("db2").unwrap().fail.push("SET NAMES"),
            "replay",
        ),
        (
            "user variables ERR",
            |m| {
                for s in m.servers.values_mut() {
                    s.script.fail.push("SELECT @@character_set_client");
                }
            },
            "old_backend",
        ),
        (
            "user variable values ERR",
            |m| {
                for s in m.servers.values_mut() {
                    s.script.fail.push("SELECT 3, CAST(@");
                }
            },
            "old_backend",
        ),
        (
            "connect deadline",
            |m| {
                m.connect.insert("db2".into(), Connect::Ignore);
            },
            "timeout",
        ),
        (
            "replay deadline",
            |m| m.scripts.get_mut("db2").unwrap().hold.push("SET @"),
            "timeout",
        ),
        (
            "prepare ERR",
            |m| {
                m.scripts
                    .get_mut("db2")
                    .unwrap()
                    .fail
                    .push("SELECT LAST_INSERT_ID")
            },
            "replay",
        ),
    ];
    for (what, setup, label) in cases {
        let mut mig = Mig::logged_in(MigrationMode::Replay);
        let (a, _) = stateful_session(&mut mig);
        setup(&mut mig);
        mig.session.start_migration(mig.now, "db2".into()).unwrap();
        mig.pump();
        if label == "timeout" {
            assert!(mig.failure().is_none(), "{what}: not before the deadline");
            mig.advance(Duration::from_secs(5));
        }
        let reason = mig
            .failure()
            .unwrap_or_else(|| panic!("{what}: no failure: {:?}", mig.events));
        assert_eq!(reason.label(), label, "{what}: {reason}");
        if label == "connect_failed" {
            let refused = MigrationFailure::ConnectFailed(connection_refused("db2"));
            assert_eq!(reason, &refused, "{what}");
        }
        assert!(!mig.session.migration_in_progress(), "{what}");
        assert_eq!(mig.session.backend_name(), Some("db1"), "{what}");
        if let Some((conn, _)) = mig.conns.iter().find(|(_, n)| n == "db2") {
            assert!(
                mig.servers[conn].closed,
                "{what}: the new connection is closed"
            );
        }
        assert!(
            mig.events
                .iter()
                .any(|e| matches!(e, Event::CloseBackend { conn } if *conn != mig.conns[0].0))
                || label == "old_backend",
            "{what}"
        );
        assert!(!mig.server("db1").closed, "{what}");
        assert_eq!(mig.query("SELECT @@port"), "db1:SELECT @@port", "{what}");
        assert_eq!(
            mig.execute(a),
            "db1:exec:1",
            "{what}: statement ids untouched"
        );
    }
}

/// MariaDB 10.11 reports the character sets after `SET NAMES … COLLATE …`, not
/// `collation_connection`: the live value, read on the old backend, is replayed.
#[test]
fn set_names_collate_keeps_its_collation() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.query("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci");
    assert_eq!(
        mig.session
            .state()
            .variables
            .get(&b"collation_connection"[..]),
        None,
        "not reported"
    );
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    assert!(mig.done().is_some(), "{:?}", mig.events);
    assert!(mig
        .server("db1")
        .statements()
        .last()
        .unwrap()
        .starts_with("SELECT @@character_set_client"));
    assert_eq!(
        mig.server("db2").statements()[1..],
        ["SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"]
    );
    assert_eq!(
        mig.server("db2").names,
        ("utf8mb4".to_owned(), "utf8mb4_unicode_ci".to_owned())
    );
}

#[test]
fn a_refused_variable_is_skipped_and_reported() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.query("SET time_zone = 'Mars/Olympus'");
    mig.query("SET sql_mode = ''");
    mig.scripts
        .get_mut("db2")
        .unwrap()
        .fail
        .push("SET SESSION time_zone");
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    let (_, to, _, skipped) = mig.done().expect("migrated anyway");
    assert_eq!((to, skipped), ("db2", &["time_zone".to_owned()][..]));
    assert!(mig
        .server("db2")
        .statements()
        .contains(&"SET SESSION sql_mode = ''".to_owned()));
}

#[test]
fn a_session_in_a_transaction_waits_until_commit_then_moves() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.query("BEGIN");
    assert_eq!(mig.session.pinned(), Some(PinReason::Transaction));
    let r = mig.session.start_migration(mig.now, "db2".into());
    assert_eq!(r, Ok(MigrationStart::Waiting(Some(PinReason::Transaction))));
    assert_eq!(
        mig.session.start_migration(mig.now, "db3".into()),
        Err(MigrationRefused::AlreadyMigrating)
    );
    mig.advance(Duration::from_secs(10));
    assert_eq!(
        mig.query("INSERT INTO t VALUES (1)"),
        "db1:INSERT INTO t VALUES (1)"
    );
    assert!(mig.migration_events().is_empty(), "still waiting");
    assert_eq!(mig.query("COMMIT"), "db1:COMMIT");
    assert_eq!(
        mig.done().map(|d| d.1),
        Some("db2"),
        "moved right after COMMIT"
    );
    assert_eq!(mig.query("SELECT 1"), "db2:SELECT 1");
    assert_eq!(
        mig.server("db2").statements().last().unwrap(),
        "SELECT 1",
        "LAST_INSERT_ID replayed before: {:?}",
        mig.server("db2").statements()
    );
}

#[test]
fn a_temporary_table_pins_until_dropped_and_the_request_times_out() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.query("CREATE TEMPORARY TABLE scratch (a INT)");
    assert_eq!(mig.session.pinned(), Some(PinReason::TemporaryTables));
    let r = mig.session.start_migration(mig.now, "db2".into());
    assert_eq!(
        r,
        Ok(MigrationStart::Waiting(Some(PinReason::TemporaryTables)))
    );
    mig.advance(Duration::from_secs(29));
    assert!(mig.failure().is_none());
    mig.advance(Duration::from_secs(1));
    assert_eq!(
        mig.failure(),
        Some(&MigrationFailure::Pinned(Some(PinReason::TemporaryTables)))
    );
    assert_eq!(mig.session.backend_name(), Some("db1"));
    assert_eq!(mig.conns.len(), 1, "no connection was even opened");
    mig.query("DROP TEMPORARY TABLE scratch");
    assert_eq!(mig.session.pinned(), None);
    mig.events.clear();
    assert_eq!(
        mig.session.start_migration(mig.now, "db2".into()),
        Ok(MigrationStart::Started)
    );
    mig.pump();
    assert_eq!(mig.done().map(|d| d.1), Some("db2"));
}

#[test]
fn cancel_refusals_and_a_session_that_closes_mid_migration() {
    let mut mig = Mig::new(migration_config(MigrationMode::Replay));
    assert_eq!(
        mig.session.start_migration(mig.now, "db2".into()),
        Err(MigrationRefused::NotReady)
    );
    mig.login();
    assert_eq!(
        mig.session.start_migration(mig.now, "db1".into()),
        Err(MigrationRefused::SameBackend)
    );
    mig.query("BEGIN");
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    assert!(mig.session.cancel_migration(mig.now));
    mig.pump();
    assert_eq!(mig.failure(), Some(&MigrationFailure::Cancelled));
    assert!(!mig.session.cancel_migration(mig.now));
    mig.query("COMMIT");
    assert_eq!(mig.conns.len(), 1, "a cancelled request never starts");

    mig.connect.insert("db2".into(), Connect::Ignore);
    mig.events.clear();
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    mig.session.handle_eof(mig.now, Peer::Client);
    mig.pump();
    assert_eq!(mig.failure(), Some(&MigrationFailure::SessionClosed));
    let (pending, _) = mig.pending.clone().unwrap();
    assert!(mig
        .events
        .iter()
        .any(|e| matches!(e, Event::CloseBackend { conn } if *conn == pending)));

    let mut off = Mig::logged_in(MigrationMode::Off);
    assert_eq!(
        off.session.start_migration(off.now, "db2".into()),
        Err(MigrationRefused::Disabled)
    );
    assert_eq!(
        off.server("db1").statements(),
        Vec::<String>::new(),
        "no tracking when off"
    );
    off.query("CREATE TEMPORARY TABLE t (a INT)");
    assert_eq!(off.session.pinned(), None, "nothing tracked when off");
}

/// Labels are metric labels and the texts log lines: both stayed what they were when the
/// payloads were strings.
#[test]
fn failure_labels_and_texts_are_stable() {
    let err = ProtocolError::new(1193, "HY000", "Unknown system variable 'x'");
    let cases = [
        (
            MigrationFailure::ConnectFailed(connection_refused("db2")),
            "connect_failed",
            "cannot connect: backend db2 (127.0.0.1:3306): connection refused",
        ),
        (
            MigrationFailure::ConnectFailed(ConnectFailure::UnknownBackend("db9".into())),
            "connect_failed",
            "cannot connect: no backend named \"db9\"",
        ),
        (
            MigrationFailure::Incompatible(Incompatibility::DeprecateEof),
            "incompatible",
            "incompatible backend: the backend does not support CLIENT_DEPRECATE_EOF",
        ),
        (
            MigrationFailure::OldBackend(OldBackendError::Error(err.clone())),
            "old_backend",
            "cannot read the session: ERROR 1193 (HY000): Unknown system variable 'x'",
        ),
        (
            MigrationFailure::OldBackend(OldBackendError::Unreadable("no token".into())),
            "old_backend",
            "cannot read the session: no token",
        ),
        (
            MigrationFailure::OldBackend(OldBackendError::QueryRefused),
            "old_backend",
            "cannot read the session: the old backend refused the query",
        ),
        (
            MigrationFailure::Replay {
                what: "SET NAMES".into(),
                error: ReplayError::Error(err),
            },
            "replay",
            "replaying SET NAMES: ERROR 1193 (HY000): Unknown system variable 'x'",
        ),
        (
            MigrationFailure::Replay {
                what: "user variables".into(),
                error: ReplayError::Unencodable("bad value".into()),
            },
            "replay",
            "replaying user variables: bad value",
        ),
        (
            MigrationFailure::Replay {
                what: "prepared statement 1".into(),
                error: ReplayError::NoPrepareOk,
            },
            "replay",
            "replaying prepared statement 1: no prepare-OK",
        ),
        (
            MigrationFailure::BackendLost(BackendLoss::Closed),
            "backend_lost",
            "new backend lost: closed",
        ),
        (
            MigrationFailure::BackendLost(BackendLoss::Failed(BackendError::PeerClosed)),
            "backend_lost",
            "new backend lost: backend closed the connection",
        ),
        (
            MigrationFailure::BackendLost(BackendLoss::NotReady),
            "backend_lost",
            "new backend lost: the new backend is not ready",
        ),
    ];
    for (failure, label, text) in cases {
        assert_eq!(failure.label(), label, "{failure:?}");
        assert_eq!(failure.to_string(), text, "{failure:?}");
    }
}

/// SQL `PREPARE`d statements are prepared again on the new backend, from their exact bytes, after
/// the user variables; a deallocated one is not.
#[test]
fn sql_prepared_statements_are_prepared_again_on_the_new_backend() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    for s in mig.servers.values_mut() {
        s.script.user_vars = vec![[Some("v"), Some("x"), Some("VARCHAR"), Some("utf8mb4")]];
    }
    mig.query("SET @v = 'x'");
    mig.query("PREPARE s FROM 'SELECT ?, ''é'''");
    mig.query("PREPARE gone FROM 'SELECT 1'");
    assert_eq!(mig.query("EXECUTE s USING @v"), "db1:EXECUTE s USING @v");
    mig.query("DEALLOCATE PREPARE gone");
    mig.query("PREPARE t FROM \"SELECT 2\"");
    assert_eq!(mig.session.pinned(), None);
    mig.session.start_migration(mig.now, "db2".into()).unwrap();
    mig.pump();
    assert_eq!(mig.done().map(|d| d.1), Some("db2"), "{:?}", mig.events);
    assert_eq!(
        mig.server("db2").statements()[1..],
        [
            "SET @`v` = _utf8mb4 X'78' COLLATE utf8mb4_general_ci",
            "PREPARE `s` FROM X'53454C454354203F2C2027C3A927'",
            "PREPARE `t` FROM X'53454C4543542032'",
        ]
    );
    assert_eq!(mig.query("EXECUTE s USING @v"), "db2:EXECUTE s USING @v");
    assert_eq!(mig.session.pinned(), None);

    // A new backend that refuses one fails the migration, naming it.
    mig.scripts.get_mut("db3").unwrap().fail.push("PREPARE `t`");
    mig.events.clear();
    mig.session.start_migration(mig.now, "db3".into()).unwrap();
    mig.pump();
    match mig.failure() {
        Some(MigrationFailure::Replay { what, .. }) => {
            assert_eq!(what, "SQL prepared statement t")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mig.session.backend_name(), Some("db2"));
}

/// A statement prepared from a variable cannot be prepared again: the session waits until it is
/// deallocated, then moves.
#[test]
fn a_statement_prepared_from_a_variable_pins_until_deallocated() {
    let mut mig = Mig::logged_in(MigrationMode::Replay);
    mig.query("SET @q = 'SELECT 1'");
    mig.query("PREPARE dyn FROM @q");
    mig.query("PREPARE s FROM 'SELECT 2'");
    let unknown = Some(PinReason::SqlPrepareUnknownText);
    assert_eq!(mig.session.pinned(), unknown);
    assert_eq!(
        PinReason::SqlPrepareUnknownText.as_str(),
        "sql_prepare_unknown_text"
    );
    let r = mig.session.start_migration(mig.now, "db2".into());
    assert_eq!(r, Ok(MigrationStart::Waiting(unknown)));
    assert_eq!(mig.query("EXECUTE dyn"), "db1:EXECUTE dyn");
    assert!(mig.migration_events().is_empty(), "still waiting");
    assert_eq!(
        mig.query("DEALLOCATE PREPARE DYN"),
        "db1:DEALLOCATE PREPARE DYN"
    );
    assert_eq!(mig.done().map(|d| d.1), Some("db2"), "moved right after");
    assert_eq!(
        mig.server("db2").statements()[1..],
        ["PREPARE `s` FROM X'53454C4543542032'"]
    );
}
