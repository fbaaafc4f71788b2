//! The TiDB test server's command phase: each command answered from the session state.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use ferry_core::frontend::{column, ClientCommand, Frontend};
use ferry_core::token::{write_go_json_string, SessionToken};
use ferry_core::wire::{
    BinaryRow, ColumnType, Command, EofPacket, ExecuteParams, OkPacket, PrepareOk, ResultSetHeader,
    ServerStatus, StmtExecute, Value,
};
use ferry_core::ProtocolError;

use super::session::{datum_type, is_numeric_var, Prepared, Session};
use super::sql::{self, Datum, Expr, Item, Stmt, Target};
use super::{Conn, ShowStatesFault};
use crate::OsRandom;

/// Sent for anything the frontend role allows but this server does not do.
const ER_NOT_SUPPORTED_YET: u16 = 1235;
/// Sent for a statement outside the supported subset.
const ER_PARSE_ERROR: u16 = 1064;
/// A generic failure (TiDB's `ErrUnknown`).
const ER_UNKNOWN_ERROR: u16 = 1105;

/// 1049 "Unknown database".
pub(super) fn unknown_database(db: &str) -> ProtocolError {
    ProtocolError::new(1049, "42000", format!("Unknown database '{db}'"))
}

fn unknown_statement(id: u32, call: &str) -> ProtocolError {
    ProtocolError::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {call}"),
    )
}

/// A session token as TiDB writes it into `SHOW SESSION_STATES`: its JSON re-serialised with
/// keys sorted and `", "` / `": "` separators.
pub fn tidb_token_text(token: &SessionToken) -> String {
    let parsed: BTreeMap<String, String> = serde_json::from_slice(&token.to_json())
        .expect("SessionToken::to_json writes an object of strings");
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (key, value)) in parsed.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_go_json_string(&mut out, key.as_bytes());
        out.extend_from_slice(b": ");
        write_go_json_string(&mut out, value.as_bytes());
    }
    out.push(b'}');
    String::from_utf8(out).expect("JSON text of UTF-8 strings is UTF-8")
}

impl Conn {
    /// Answers one command; the caller ends the response.
    pub(super) fn on_command(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
        cmd: &ClientCommand,
    ) {
        let stmts = &self.session.stmts;
        let last = self.session.last_stmt_id;
        let resolve = |id: u32| {
            if id == StmtExecute::LAST_PREPARED {
                last
            } else {
                id
            }
        };
        // Parsed here, not with `cmd.parse()`: statements restored by SET SESSION_STATES were
        // never prepared through this connection's frontend, which then lacks their shapes.
        let parsed = Command::parse(cmd.payload(), cmd.capabilities(), |id| {
            stmts.get(&resolve(id)).map(|p| p.params)
        });
        let result = match parsed {
            Ok(Command::Query(q)) => {
                let sql = String::from_utf8_lossy(q.sql).into_owned();
                self.query(frontend, now, &sql)
            }
            Ok(Command::InitDb { schema }) => {
                let db = String::from_utf8_lossy(schema).into_owned();
                self.use_db(&db).map(|()| Reply::Ok)
            }
            Ok(Command::Ping) => Ok(Reply::Ok),
            Ok(Command::ResetConnection) => {
                let (user, db) = (self.session.user.clone(), self.session.db.clone());
                self.session = Session {
                    user,
                    db,
                    ..Session::default()
                };
                Ok(Reply::Ok)
            }
            Ok(Command::StmtPrepare { query }) => {
                let text = String::from_utf8_lossy(query).into_owned();
                self.prepare(frontend, now, &text)
            }
            Ok(Command::StmtExecute(exec)) => {
                let id = resolve(exec.header.statement_id);
                self.execute(frontend, now, id, &exec.params)
            }
            Ok(Command::StmtClose { statement_id }) => {
                self.session.stmts.remove(&resolve(statement_id));
                Ok(Reply::Nothing)
            }
            Ok(Command::StmtReset { statement_id }) => {
                match self.session.stmts.contains_key(&resolve(statement_id)) {
                    true => Ok(Reply::Ok),
                    false => Err(unknown_statement(statement_id, "mysqld_stmt_reset")),
                }
            }
            Ok(_) => Err(ProtocolError::new(
                ER_NOT_SUPPORTED_YET,
                "42000",
                "This command is not supported by the TiDB test server",
            )),
            Err(_) if cmd.code() == Command::COM_STMT_EXECUTE => {
                let id = ferry_core::wire::StmtExecuteHeader::peek(cmd.payload())
                    .map_or(0, |h| h.statement_id);
                Err(unknown_statement(id, "mysqld_stmt_execute"))
            }
            Err(e) => Err(ProtocolError::from_decode(&e)),
        };
        frontend.set_status(now, self.status());
        let sent = match result {
            Ok(Reply::Ok) => frontend.send_ok_empty(now),
            Ok(Reply::Nothing | Reply::Sent) => Ok(()),
            Err(e) => frontend.send_error(now, &e),
        };
        sent.expect("a command is outstanding while it is answered");
    }

    fn status(&self) -> ServerStatus {
        let mut status = 0;
        if self.session.autocommit() {
            status |= ServerStatus::AUTOCOMMIT.0;
        }
        if self.session.in_trans {
            status |= ServerStatus::IN_TRANS.0;
        }
        ServerStatus(status)
    }

    fn use_db(&mut self, db: &str) -> Result<(), ProtocolError> {
        if !self.shared.config.databases.iter().any(|d| d == db) {
            return Err(unknown_database(db));
        }
        self.session.db = Some(db.to_owned());
        Ok(())
    }

    fn query(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
        sql: &str,
    ) -> Result<Reply, ProtocolError> {
        let stmt = sql::parse(sql).map_err(|why| {
            ProtocolError::new(
                ER_PARSE_ERROR,
                "42000",
                format!("You have an error in your SQL syntax ({why}): the TiDB test server does not know '{sql}'"),
            )
        })?;
        match stmt {
            Stmt::Select(items) => {
                let values = self.eval_items(&items, &[])?;
                frontend.set_status(now, self.status());
                let cols: Vec<_> = items
                    .iter()
                    .zip(&values)
                    .map(|(item, v)| {
                        let ty = match datum_type(v) {
                            ColumnType::Null => ColumnType::VarString,
                            ty => ty,
                        };
                        column(item.name.as_bytes(), ty)
                    })
                    .collect();
                let texts: Vec<Option<String>> = values.iter().map(Datum::to_text).collect();
                let row: Vec<Option<&[u8]>> = texts
                    .iter()
                    .map(|t| t.as_deref().map(str::as_bytes))
                    .collect();
                frontend
                    .send_text_result(now, &cols, [&row[..]])
                    .expect("a command is outstanding");
                Ok(Reply::Sent)
            }
            Stmt::Set(assignments) => {
                for (target, expr) in assignments {
                    self.assign(target, &expr)?;
                }
                Ok(Reply::Ok)
            }
            Stmt::Use(db) => self.use_db(&db).map(|()| Reply::Ok),
            Stmt::Begin => {
                self.session.in_trans = true;
                Ok(Reply::Ok)
            }
            Stmt::Commit | Stmt::Rollback => {
                self.session.in_trans = false;
                Ok(Reply::Ok)
            }
            Stmt::ShowSessionStates => self.show_session_states(frontend, now),
            Stmt::SetSessionStates(text) => {
                if self.shared.faults.fail_set_states.load(Ordering::SeqCst) {
                    return Err(ProtocolError::new(
                        ER_UNKNOWN_ERROR,
                        "HY000",
                        "SET SESSION_STATES refused (injected fault)",
                    ));
                }
                self.session
                    .restore(&text, &self.shared.config.databases)
                    .map_err(|why| ProtocolError::new(ER_UNKNOWN_ERROR, "HY000", why))?;
                self.shared
                    .counters
                    .states_restored
                    .fetch_add(1, Ordering::SeqCst);
                Ok(Reply::Ok)
            }
        }
    }

    fn assign(&mut self, target: Target, expr: &Expr) -> Result<(), ProtocolError> {
        match target {
            Target::User(name) => {
                let value = self.eval(expr, &[])?;
                self.session.user_vars.insert(name, value);
            }
            Target::Names(charset) => {
                for var in [
                    "character_set_client",
                    "character_set_connection",
                    "character_set_results",
                ] {
                    let _ = self.session.set_sys_var(var, &Datum::Str(charset.clone()));
                }
            }
            Target::Sys(name) => {
                if self.read_only_var(&name).is_some() {
                    return Err(ProtocolError::new(
                        1238,
                        "HY000",
                        format!("Variable '{name}' is a read only variable"),
                    ));
                }
                let value = match expr {
                    Expr::Word(w) => Datum::Str(w.clone()),
                    other => self.eval(other, &[])?,
                };
                self.session
                    .set_sys_var(&name, &value)
                    .map_err(|(code, msg)| ProtocolError::new(code, "42000", msg))?;
            }
        }
        Ok(())
    }

    /// Variables that only read: what identifies the instance and what clients ask at connect.
    fn read_only_var(&self, name: &str) -> Option<Datum> {
        let config = &self.shared.config;
        Some(match name {
            "port" => Datum::Int(i64::from(self.shared.port)),
            "server_id" => Datum::Int(i64::from(config.server_id)),
            "version" => Datum::Str(config.server_version.clone()),
            "version_comment" => Datum::Str("ferry TiDB-style test server".into()),
            "max_allowed_packet" => Datum::Int(67_108_864),
            "lower_case_table_names" => Datum::Int(0),
            "system_time_zone" => Datum::Str("UTC".into()),
            "hostname" => Datum::Str("localhost".into()),
            "socket" => Datum::Null,
            _ => return None,
        })
    }

    fn eval_items(&self, items: &[Item], params: &[Datum]) -> Result<Vec<Datum>, ProtocolError> {
        items.iter().map(|i| self.eval(&i.expr, params)).collect()
    }

    fn eval(&self, expr: &Expr, params: &[Datum]) -> Result<Datum, ProtocolError> {
        Ok(match expr {
            Expr::Lit(d) => d.clone(),
            Expr::UserVar(name) => self
                .session
                .user_vars
                .get(name)
                .cloned()
                .unwrap_or(Datum::Null),
            Expr::SysVar(name) => match self.read_only_var(name) {
                Some(d) => d,
                None => {
                    let value = self.session.sys_var(name).ok_or_else(|| {
                        ProtocolError::new(
                            1193,
                            "HY000",
                            format!("Unknown system variable '{name}'"),
                        )
                    })?;
                    match value.parse() {
                        Ok(i) if is_numeric_var(name) => Datum::Int(i),
                        _ => Datum::Str(value),
                    }
                }
            },
            Expr::Param(i) => params.get(*i).cloned().ok_or_else(|| {
                ProtocolError::new(
                    1210,
                    "HY000",
                    "Incorrect arguments to EXECUTE: '?' outside a prepared statement",
                )
            })?,
            Expr::Func(f) => match f.as_str() {
                "database" | "schema" => self.session.db.clone().map_or(Datum::Null, Datum::Str),
                "user" | "current_user" | "session_user" => {
                    Datum::Str(format!("{}@{}", self.session.user, self.host))
                }
                "connection_id" => Datum::Int(i64::from(self.connection_id)),
                "version" => Datum::Str(self.shared.config.server_version.clone()),
                "last_insert_id" => Datum::Int(0),
                other => {
                    return Err(ProtocolError::new(
                        1305,
                        "42000",
                        format!("FUNCTION {other} does not exist"),
                    ))
                }
            },
            Expr::Word(w) => {
                return Err(ProtocolError::new(
                    1054,
                    "42S22",
                    format!("Unknown column '{w}' in 'field list'"),
                ))
            }
        })
    }

    fn show_session_states(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
    ) -> Result<Reply, ProtocolError> {
        let fault = self.shared.faults.show_states();
        if fault == ShowStatesFault::Error {
            return Err(ProtocolError::new(
                ferry_core::token::ER_CANNOT_MIGRATE_SESSION,
                "HY000",
                "cannot migrate the current session: injected fault",
            ));
        }
        let states = self.session.states_json().to_string();
        let token = match fault {
            ShowStatesFault::EmptyToken => Some(String::new()),
            ShowStatesFault::NullToken => None,
            _ => {
                let token = self
                    .shared
                    .config
                    .certs
                    .sign(
                        SystemTime::now(),
                        0,
                        self.session.user.as_bytes(),
                        &mut OsRandom,
                    )
                    .map_err(|e| e.cannot_migrate())?;
                Some(tidb_token_text(&token))
            }
        };
        self.shared
            .counters
            .states_shown
            .fetch_add(1, Ordering::SeqCst);
        let cols = [
            column(b"Session_states", ColumnType::Json),
            column(b"Session_token", ColumnType::Json),
        ];
        let row = [Some(states.as_bytes()), token.as_deref().map(str::as_bytes)];
        frontend
            .send_text_result(now, &cols, [&row[..]])
            .expect("a command is outstanding");
        Ok(Reply::Sent)
    }

    fn prepare(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
        text: &str,
    ) -> Result<Reply, ProtocolError> {
        let prepared = Prepared::new(text).map_err(|why| {
            ProtocolError::new(
                ER_PARSE_ERROR,
                "42000",
                format!("The TiDB test server cannot prepare '{text}': {why}"),
            )
        })?;
        let id = self.session.next_stmt_id();
        let caps = frontend.capabilities();
        let deprecate_eof = caps.contains(ferry_core::wire::Capabilities::DEPRECATE_EOF);
        let mut payload = Vec::new();
        PrepareOk {
            statement_id: id,
            num_columns: u16::try_from(prepared.items.len()).unwrap_or(u16::MAX),
            num_params: prepared.params,
            warning_count: Some(0),
            metadata_follows: true,
        }
        .encode(caps, &mut payload);
        let mut packets = vec![payload];
        let mut definitions = |names: &mut dyn Iterator<Item = &str>| {
            let mut any = false;
            for name in names {
                let mut p = Vec::new();
                column(name.as_bytes(), ColumnType::VarString).encode(&mut p);
                packets.push(p);
                any = true;
            }
            if any && !deprecate_eof {
                packets.push(self.eof(frontend));
            }
        };
        definitions(&mut (0..prepared.params).map(|_| "?"));
        definitions(&mut prepared.items.iter().map(|i| i.name.as_str()));
        for p in packets {
            frontend
                .send_packet(now, &p)
                .expect("a command is outstanding");
        }
        self.session.stmts.insert(id, prepared);
        Ok(Reply::Sent)
    }

    fn eof(&self, frontend: &Frontend) -> Vec<u8> {
        let mut p = Vec::new();
        EofPacket {
            warnings: 0,
            status: self.status(),
        }
        .encode(&mut p, frontend.capabilities());
        p
    }

    fn execute(
        &mut self,
        frontend: &mut Frontend,
        now: Instant,
        id: u32,
        params: &ExecuteParams<'_>,
    ) -> Result<Reply, ProtocolError> {
        let bad_args =
            || ProtocolError::new(1210, "HY000", "Incorrect arguments to mysqld_stmt_execute");
        let stmt = self
            .session
            .stmts
            .get_mut(&id)
            .ok_or_else(|| unknown_statement(id, "mysqld_stmt_execute"))?;
        if let ExecuteParams::Bound(bound) = params {
            if !bound.is_empty() {
                stmt.types = bound.iter().map(|p| p.ty).collect();
            }
        }
        let values = params
            .values_with_types(&stmt.types)
            .map_err(|_| bad_args())?;
        let args: Vec<Datum> = values.iter().map(value_to_datum).collect();
        let items = stmt.items.clone();
        let data = self.eval_items(&items, &args)?;

        let caps = frontend.capabilities();
        let deprecate_eof = caps.contains(ferry_core::wire::Capabilities::DEPRECATE_EOF);
        let mut packets = Vec::new();
        let mut p = Vec::new();
        ResultSetHeader {
            column_count: items.len() as u64,
            metadata_follows: true,
        }
        .encode(caps, &mut p);
        packets.push(p);
        for (item, d) in items.iter().zip(&data) {
            let mut p = Vec::new();
            column(item.name.as_bytes(), datum_type(d)).encode(&mut p);
            packets.push(p);
        }
        if !deprecate_eof {
            packets.push(self.eof(frontend));
        }
        let mut p = Vec::new();
        BinaryRow {
            values: data.iter().map(datum_to_value).collect(),
        }
        .encode(&mut p);
        packets.push(p);
        if deprecate_eof {
            let mut p = Vec::new();
            OkPacket {
                eof: true,
                affected_rows: 0,
                last_insert_id: 0,
                status: self.status(),
                warnings: 0,
                info: b"",
                session_state: Vec::new(),
            }
            .encode(&mut p, caps);
            packets.push(p);
        } else {
            packets.push(self.eof(frontend));
        }
        for p in packets {
            frontend
                .send_packet(now, &p)
                .expect("a command is outstanding");
        }
        Ok(Reply::Sent)
    }
}

/// How a command was answered.
enum Reply {
    /// Send an OK.
    Ok,
    /// The response was sent already.
    Sent,
    /// The command has no response (COM_STMT_CLOSE).
    Nothing,
}

fn value_to_datum(v: &Value<'_>) -> Datum {
    match *v {
        Value::Null => Datum::Null,
        Value::I8(i) => Datum::Int(i.into()),
        Value::U8(i) => Datum::Int(i.into()),
        Value::I16(i) => Datum::Int(i.into()),
        Value::U16(i) => Datum::Int(i.into()),
        Value::I32(i) => Datum::Int(i.into()),
        Value::U32(i) => Datum::Int(i.into()),
        Value::I64(i) => Datum::Int(i),
        Value::U64(i) => i64::try_from(i).map_or(Datum::Str(i.to_string()), Datum::Int),
        Value::Float(f) => Datum::Double(f.into()),
        Value::Double(f) => Datum::Double(f),
        Value::DateTime(d) => Datum::Str(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        )),
        Value::Time(t) => Datum::Str(format!(
            "{}{:02}:{:02}:{:02}",
            if t.negative { "-" } else { "" },
            u64::from(t.days) * 24 + u64::from(t.hours),
            t.minutes,
            t.seconds
        )),
        Value::Bytes(b) => Datum::Str(String::from_utf8_lossy(b).into_owned()),
    }
}

fn datum_to_value(d: &Datum) -> Value<'_> {
    match d {
        Datum::Null => Value::Null,
        Datum::Int(i) => Value::I64(*i),
        Datum::Double(f) => Value::Double(*f),
        Datum::Str(s) => Value::Bytes(s.as_bytes()),
    }
}
