//! [`RawClient`]: a blocking MySQL client made of ferry-core's backend role, for logins that no
//! stock client can do (`tidb_session_token`, a proxy's relayed login) and for looking at a
//! server's answers packet by packet.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_core::auth::{auth_salt, native, ClientSecret, Password, TIDB_SESSION_TOKEN};
use ferry_core::backend::{Backend, BackendConfig, Event, PacketKind, RelayedAuth};
use ferry_core::wire::{
    BinaryRow, ColumnDefinition41, Command, ExecuteParams, Param, Query, ServerStatus, StmtExecute,
    StmtExecuteHeader, TextRow, Value,
};
use ferry_core::ProtocolError;

use crate::OsRandom;

/// How long any one exchange may take before the client gives up (and panics).
const DEADLINE: Duration = Duration::from_secs(20);

/// A result set (or an OK) as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, cells as text (binary-protocol values rendered like the text protocol); `None`: NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Server status after the response.
    pub status: ServerStatus,
}

impl RawResult {
    /// The cell of the first row in the column called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

/// A blocking connection driven by [`Backend`]. Panics on I/O failures and timeouts (a test
/// helper); server errors come back as `Err(ProtocolError)`.
#[derive(Debug)]
pub struct RawClient {
    backend: Backend,
    stream: TcpStream,
}

impl RawClient {
    /// Logs in as `user` with `password` (`mysql_native_password`, answered by the backend role).
    pub fn password_login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        database: Option<&str>,
    ) -> Result<Self, ProtocolError> {
        let mut config = BackendConfig::new(user, ClientSecret::Plaintext(Password::new(password)));
        config.database = database.map(str::to_owned);
        Self::connect(addr, config, |_| panic!("unexpected auth switch"))
    }

    /// Logs in as `user` with plugin `tidb_session_token` and `token` as the auth data, as a
    /// migrating proxy does (`reference/tidb-migration-protocol.md` §4 step 4).
    pub fn token_login(
        addr: SocketAddr,
        user: &str,
        token: &[u8],
        database: Option<&str>,
    ) -> Result<Self, ProtocolError> {
        let mut config = BackendConfig::new(user, ClientSecret::NoPassword);
        config.database = database.map(str::to_owned);
        config.relayed_auth = Some(RelayedAuth {
            plugin: TIDB_SESSION_TOKEN.to_owned(),
            auth_response: token.to_vec(),
        });
        Self::connect(addr, config, |_| {
            panic!("a token login must be answered with OK or ERR, not an auth switch")
        })
    }

    /// Logs in like a relaying proxy: names a plugin the server does not know, then answers the
    /// server's auth switch to `mysql_native_password` with `password` over the switch's salt.
    pub fn relayed_password_login(
        addr: SocketAddr,
        user: &str,
        password: &str,
    ) -> Result<Self, ProtocolError> {
        let mut config = BackendConfig::new(user, ClientSecret::NoPassword);
        config.relayed_auth = Some(RelayedAuth {
            plugin: RelayedAuth::FORCE_SWITCH_PLUGIN.to_owned(),
            auth_response: b"whatever".to_vec(),
        });
        Self::connect(addr, config, |switch| {
            let req = ferry_core::wire::AuthSwitchRequest::parse(switch).expect("auth switch");
            assert_eq!(req.plugin_name, b"mysql_native_password");
            native::scramble(password.as_bytes(), auth_salt(req.data))
        })
    }

    /// Connects with `config`; in a relayed login, `on_switch` answers each auth switch request
    /// (its payload) with the client's auth data.
    pub fn connect(
        addr: SocketAddr,
        config: BackendConfig,
        mut on_switch: impl FnMut(&[u8]) -> Vec<u8>,
    ) -> Result<Self, ProtocolError> {
        let stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let backend = Backend::new(Instant::now(), config, Box::new(OsRandom));
        let mut client = Self { backend, stream };
        let deadline = Instant::now() + DEADLINE;
        loop {
            client.flush();
            while let Some(event) = client.backend.poll_event() {
                match event {
                    Event::Connected(_) => return Ok(client),
                    Event::AuthFailed { error, .. } => return Err(error),
                    Event::Response {
                        payload,
                        kind: PacketKind::AuthSwitchRequest,
                    } => {
                        let data = on_switch(&payload);
                        client
                            .backend
                            .send_auth_data(Instant::now(), &data)
                            .expect("send_auth_data after an auth switch");
                    }
                    Event::Closed { error } => panic!("closed during login: {error:?}"),
                    other => panic!("unexpected event during login: {other:?}"),
                }
            }
            client.flush();
            client.read(deadline);
        }
    }

    /// The backend role underneath (status, capabilities...).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Runs a text-protocol statement.
    pub fn query(&mut self, sql: &str) -> Result<RawResult, ProtocolError> {
        let cmd = Command::Query(Query {
            attributes: Vec::new(),
            sql: sql.as_bytes(),
        });
        self.run(&cmd, false).map(|(r, _)| r)
    }

    /// Prepares a statement; returns its id.
    pub fn prepare(&mut self, sql: &str) -> Result<u32, ProtocolError> {
        let cmd = Command::StmtPrepare {
            query: sql.as_bytes(),
        };
        let (_, id) = self.run(&cmd, false)?;
        Ok(id.expect("a successful prepare has a prepare-OK"))
    }

    /// Executes statement `id` with `params` (types sent along); binary rows come back as text.
    pub fn execute(&mut self, id: u32, params: &[Value<'_>]) -> Result<RawResult, ProtocolError> {
        let cmd = Command::StmtExecute(StmtExecute {
            header: StmtExecuteHeader {
                statement_id: id,
                flags: 0,
                iteration_count: 1,
            },
            params: ExecuteParams::Bound(
                params
                    .iter()
                    .map(|v| Param {
                        ty: v.natural_type(),
                        name: b"",
                        value: *v,
                    })
                    .collect(),
            ),
        });
        self.run(&cmd, true).map(|(r, _)| r)
    }

    /// Closes statement `id` (no response).
    pub fn close_statement(&mut self, id: u32) {
        let cmd = Command::StmtClose { statement_id: id };
        self.backend
            .send_command(Instant::now(), &cmd)
            .expect("the connection is idle");
        self.flush();
    }

    /// Sends a command and collects its response.
    fn run(
        &mut self,
        cmd: &Command<'_>,
        binary: bool,
    ) -> Result<(RawResult, Option<u32>), ProtocolError> {
        self.backend
            .send_command(Instant::now(), cmd)
            .expect("the connection is idle");
        let deadline = Instant::now() + DEADLINE;
        let mut result = RawResult::default();
        let mut columns: Vec<Vec<u8>> = Vec::new();
        loop {
            self.flush();
            while let Some(event) = self.backend.poll_event() {
                match event {
                    Event::Response { payload, kind } => match kind {
                        PacketKind::ColumnDefinition => columns.push(payload.to_vec()),
                        PacketKind::Row => {
                            result.rows.push(decode_row(&payload, &columns, binary));
                        }
                        _ => {}
                    },
                    Event::ResponseComplete(summary) => {
                        if let Some(e) = summary.error {
                            return Err(e);
                        }
                        result.status = summary.status;
                        if summary.prepared.is_none() {
                            result.columns = columns
                                .iter()
                                .map(|c| {
                                    let def = ColumnDefinition41::parse(c).expect("column def");
                                    String::from_utf8_lossy(def.name).into_owned()
                                })
                                .collect();
                        }
                        return Ok((result, summary.prepared.map(|p| p.statement_id)));
                    }
                    Event::Closed { error } => panic!("connection closed: {error:?}"),
                    other => panic!("unexpected event: {other:?}"),
                }
            }
            self.read(deadline);
        }
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.backend.poll_transmit() {
            self.stream.write_all(&bytes).expect("write to the server");
        }
    }

    fn read(&mut self, deadline: Instant) {
        assert!(
            Instant::now() < deadline,
            "the server did not answer in time"
        );
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => self.backend.handle_eof(Instant::now()),
            Ok(n) => self.backend.handle_input(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read from the server: {e}"),
        }
        self.backend.handle_timeout(Instant::now());
    }
}

fn decode_row(payload: &[u8], columns: &[Vec<u8>], binary: bool) -> Vec<Option<String>> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if !binary {
        return TextRow::parse(payload, columns.len())
            .expect("text row")
            .into_iter()
            .map(|c| c.map(text))
            .collect();
    }
    let defs: Vec<ColumnDefinition41<'_>> = columns
        .iter()
        .map(|c| ColumnDefinition41::parse(c).expect("column def"))
        .collect();
    let row = BinaryRow::parse_with_columns(payload, &defs).expect("binary row");
    row.values
        .iter()
        .map(|v| match *v {
            Value::Null => None,
            Value::I8(i) => Some(i.to_string()),
            Value::U8(i) => Some(i.to_string()),
            Value::I16(i) => Some(i.to_string()),
            Value::U16(i) => Some(i.to_string()),
            Value::I32(i) => Some(i.to_string()),
            Value::U32(i) => Some(i.to_string()),
            Value::I64(i) => Some(i.to_string()),
            Value::U64(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Double(f) => Some(f.to_string()),
            Value::Bytes(b) => Some(text(b)),
            Value::DateTime(d) => Some(format!("{d:?}")),
            Value::Time(t) => Some(format!("{t:?}")),
        })
        .collect()
}
