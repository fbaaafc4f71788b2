//! Client commands (`COM_*`): the first packet of every exchange after the handshake.
//!
//! Follows "Text Protocol", "Prepared Statements" and "Utility Commands" in the MySQL protocol
//! documentation (`dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html`).
//! Every command byte is recognised: commands a client must not send (COM_SLEEP, COM_CONNECT,
//! replication commands...) and codes nobody defined become [`Command::Unknown`], so the session
//! answers them with an ERR instead of accepting them.
//!
//! COM_STMT_EXECUTE cannot be read without the statement's parameter count, which only the
//! prepare-OK carried: [`Command::parse`] takes a lookup, and [`StmtExecuteHeader::peek`] gives
//! the statement id and flags of any execute packet so a proxy can route it regardless.

use bytes::BufMut;

use crate::wire::value::{bitmap_is_null, put_null_bitmap, take_null_bitmap};
use crate::wire::{put_lenenc_bytes, put_lenenc_int, put_nul_str, Capabilities, ParseBuf};
use crate::wire::{Value, ValueType};
use crate::DecodeError;

/// A client command, borrowing from the packet payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Command<'a> {
    /// COM_QUIT: close the connection.
    Quit,
    /// COM_INIT_DB: change the default schema.
    InitDb {
        /// Schema name.
        schema: &'a [u8],
    },
    /// COM_QUERY: run a text-protocol statement.
    Query(Query<'a>),
    /// COM_FIELD_LIST (deprecated): the columns of a table.
    FieldList {
        /// Table name.
        table: &'a [u8],
        /// Column-name wildcard (may be empty).
        wildcard: &'a [u8],
    },
    /// COM_REFRESH (deprecated): flush tables, logs, hosts... (`mariadb-admin refresh`,
    /// `flush-threads`). Answered with OK or ERR.
    Refresh {
        /// `REFRESH_*` flags.
        flags: u8,
    },
    /// COM_SHUTDOWN (deprecated): stop the server. Answered with an EOF or ERR.
    Shutdown {
        /// Shutdown level, when sent.
        level: Option<u8>,
    },
    /// COM_STATISTICS: a human-readable status string.
    Statistics,
    /// COM_PROCESS_INFO (deprecated): the process list as a result set.
    ProcessInfo,
    /// COM_PROCESS_KILL (deprecated): kill a connection.
    ProcessKill {
        /// The connection to kill.
        connection_id: u32,
    },
    /// COM_DEBUG: dump debug information to the server log.
    Debug,
    /// COM_PING: is the server alive?
    Ping,
    /// COM_CHANGE_USER: re-authenticate and reset the session.
    ChangeUser(ChangeUser<'a>),
    /// COM_STMT_PREPARE: prepare a statement.
    StmtPrepare {
        /// The statement text.
        query: &'a [u8],
    },
    /// COM_STMT_EXECUTE: execute a prepared statement.
    StmtExecute(StmtExecute<'a>),
    /// COM_STMT_SEND_LONG_DATA: append data to a parameter before execute. Has no response.
    StmtSendLongData {
        /// Statement id.
        statement_id: u32,
        /// Zero-based parameter index.
        param_id: u16,
        /// The chunk.
        data: &'a [u8],
    },
    /// COM_STMT_CLOSE: deallocate a prepared statement. Has no response.
    StmtClose {
        /// Statement id.
        statement_id: u32,
    },
    /// COM_STMT_RESET: reset a statement's long data and cursor.
    StmtReset {
        /// Statement id.
        statement_id: u32,
    },
    /// COM_SET_OPTION: turn multi-statements on (0) or off (1).
    SetOption {
        /// `MYSQL_OPTION_MULTI_STATEMENTS_ON` (0) or `_OFF` (1).
        option: u16,
    },
    /// COM_STMT_FETCH: rows from an open cursor.
    StmtFetch {
        /// Statement id.
        statement_id: u32,
        /// How many rows to fetch.
        num_rows: u32,
    },
    /// COM_RESET_CONNECTION: reset the session without re-authenticating.
    ResetConnection,
    /// A command ferry does not accept: unknown codes and those clients must not send.
    Unknown {
        /// The command byte.
        code: u8,
        /// Everything after it.
        body: &'a [u8],
    },
}

/// COM_QUERY with its query attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<'a> {
    /// Query attributes (`CLIENT_QUERY_ATTRIBUTES`); empty without the capability, and dropped
    /// when encoding without it since the server could not read them.
    pub attributes: Vec<Param<'a>>,
    /// The statement text.
    pub sql: &'a [u8],
}

/// A typed value sent with a command: a COM_STMT_EXECUTE parameter or a query attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Param<'a> {
    /// Type and UNSIGNED flag.
    pub ty: ValueType,
    /// Name; sent only under `CLIENT_QUERY_ATTRIBUTES` (empty for positional parameters).
    pub name: &'a [u8],
    /// The value; [`Value::Null`] is a set bit in the null bitmap.
    pub value: Value<'a>,
}

/// COM_CHANGE_USER.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeUser<'a> {
    /// User name.
    pub user: &'a [u8],
    /// Auth response for the current plugin (at most 255 bytes under `CLIENT_SECURE_CONNECTION`).
    pub auth_response: &'a [u8],
    /// Schema to use.
    pub database: &'a [u8],
    /// Collation id; `None` when fewer than two bytes follow the schema (old clients end the
    /// packet there).
    pub collation: Option<u16>,
    /// Auth plugin name: `Some` exactly under `CLIENT_PLUGIN_AUTH`, where the server requires it.
    pub auth_plugin: Option<&'a [u8]>,
    /// Connection attributes: `Some` exactly under `CLIENT_CONNECT_ATTRS`, where the server
    /// requires the block (it may be empty).
    pub connect_attrs: Option<AttrPairs<'a>>,
}

/// Connection attributes as (key, value) pairs, in packet order.
type AttrPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// The fixed head of COM_STMT_EXECUTE, readable without knowing the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmtExecuteHeader {
    /// Statement id.
    pub statement_id: u32,
    /// `enum_cursor_type` flags plus [`StmtExecute::PARAMETER_COUNT_AVAILABLE`].
    pub flags: u8,
    /// Iteration count (always 1 in practice).
    pub iteration_count: u32,
}

impl StmtExecuteHeader {
    /// Reads the head of a COM_STMT_EXECUTE payload (command byte included), for routing a packet
    /// whose statement ferry does not know.
    pub fn peek(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        if buf.u8("command")? != Command::COM_STMT_EXECUTE {
            return Err(DecodeError::Malformed {
                what: "COM_STMT_EXECUTE command byte",
            });
        }
        Self::parse(&mut buf)
    }

    fn parse(buf: &mut ParseBuf<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            statement_id: buf.u32("statement id")?,
            flags: buf.u8("execute flags")?,
            iteration_count: buf.u32("iteration count")?,
        })
    }
}

/// COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq)]
pub struct StmtExecute<'a> {
    /// Statement id, flags and iteration count.
    pub header: StmtExecuteHeader,
    /// The parameters.
    pub params: ExecuteParams<'a>,
}

/// The parameter block of COM_STMT_EXECUTE.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecuteParams<'a> {
    /// Types sent with the values (`new_params_bound_flag` = 1), or no parameters at all.
    Bound(Vec<Param<'a>>),
    /// Values without types (`new_params_bound_flag` = 0): the types are those of the previous
    /// execute of the statement. Decode with [`ExecuteParams::values_with_types`].
    Unbound {
        /// Number of parameters.
        count: usize,
        /// The null bitmap, `(count + 7) / 8` bytes.
        null_bitmap: &'a [u8],
        /// The values, back to back.
        values: &'a [u8],
    },
}

impl<'a> ExecuteParams<'a> {
    /// The number of parameters.
    pub fn len(&self) -> usize {
        match self {
            ExecuteParams::Bound(p) => p.len(),
            ExecuteParams::Unbound { count, .. } => *count,
        }
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes the values of an `Unbound` block with the types bound earlier (for `Bound`, the
    /// values as they are). `types` must have one entry per parameter.
    pub fn values_with_types(&self, types: &[ValueType]) -> Result<Vec<Value<'a>>, DecodeError> {
        match self {
            ExecuteParams::Bound(p) => Ok(p.iter().map(|p| p.value).collect()),
            ExecuteParams::Unbound {
                count,
                null_bitmap,
                values,
            } => {
                if types.len() != *count {
                    return Err(DecodeError::Malformed {
                        what: "parameter type count",
                    });
                }
                let mut buf = ParseBuf::new(values);
                let out = types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| {
                        if bitmap_is_null(null_bitmap, i, 0) {
                            Ok(Value::Null)
                        } else {
                            Value::parse(&mut buf, *ty)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                buf.finish("parameter values")?;
                Ok(out)
            }
        }
    }
}

impl StmtExecute<'_> {
    /// Flag bit: the parameter count is in the packet (`CLIENT_QUERY_ATTRIBUTES` only).
    pub const PARAMETER_COUNT_AVAILABLE: u8 = 0x08;
    /// Cursor flag: open a read-only cursor.
    pub const CURSOR_TYPE_READ_ONLY: u8 = 0x01;
    /// MariaDB's statement id for "the statement prepared last" (used right after a pipelined
    /// COM_STMT_PREPARE); the `param_count` lookup of [`Command::parse`] must resolve it.
    pub const LAST_PREPARED: u32 = 0xFFFF_FFFF;
}

impl<'a> Command<'a> {
    /// COM_SLEEP (server-internal).
    pub const COM_SLEEP: u8 = 0x00;
    /// COM_QUIT
    pub const COM_QUIT: u8 = 0x01;
    /// COM_INIT_DB
    pub const COM_INIT_DB: u8 = 0x02;
    /// COM_QUERY
    pub const COM_QUERY: u8 = 0x03;
    /// COM_FIELD_LIST
    pub const COM_FIELD_LIST: u8 = 0x04;
    /// COM_REFRESH
    pub const COM_REFRESH: u8 = 0x07;
    /// COM_SHUTDOWN
    pub const COM_SHUTDOWN: u8 = 0x08;
    /// COM_STATISTICS
    pub const COM_STATISTICS: u8 = 0x09;
    /// COM_PROCESS_INFO
    pub const COM_PROCESS_INFO: u8 = 0x0A;
    /// COM_CONNECT (server-internal).
    pub const COM_CONNECT: u8 = 0x0B;
    /// COM_PROCESS_KILL
    pub const COM_PROCESS_KILL: u8 = 0x0C;
    /// COM_DEBUG
    pub const COM_DEBUG: u8 = 0x0D;
    /// COM_PING
    pub const COM_PING: u8 = 0x0E;
    /// COM_CHANGE_USER
    pub const COM_CHANGE_USER: u8 = 0x11;
    /// COM_STMT_PREPARE
    pub const COM_STMT_PREPARE: u8 = 0x16;
    /// COM_STMT_EXECUTE
    pub const COM_STMT_EXECUTE: u8 = 0x17;
    /// COM_STMT_SEND_LONG_DATA
    pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
    /// COM_STMT_CLOSE
    pub const COM_STMT_CLOSE: u8 = 0x19;
    /// COM_STMT_RESET
    pub const COM_STMT_RESET: u8 = 0x1A;
    /// COM_SET_OPTION
    pub const COM_SET_OPTION: u8 = 0x1B;
    /// COM_STMT_FETCH
    pub const COM_STMT_FETCH: u8 = 0x1C;
    /// COM_RESET_CONNECTION
    pub const COM_RESET_CONNECTION: u8 = 0x1F;

    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::Quit => Self::COM_QUIT,
            Command::InitDb { .. } => Self::COM_INIT_DB,
            Command::Query(_) => Self::COM_QUERY,
            Command::FieldList { .. } => Self::COM_FIELD_LIST,
            Command::Refresh { .. } => Self::COM_REFRESH,
            Command::Shutdown { .. } => Self::COM_SHUTDOWN,
            Command::Statistics => Self::COM_STATISTICS,
            Command::ProcessInfo => Self::COM_PROCESS_INFO,
            Command::ProcessKill { .. } => Self::COM_PROCESS_KILL,
            Command::Debug => Self::COM_DEBUG,
            Command::Ping => Self::COM_PING,
            Command::ChangeUser(_) => Self::COM_CHANGE_USER,
            Command::StmtPrepare { .. } => Self::COM_STMT_PREPARE,
            Command::StmtExecute(_) => Self::COM_STMT_EXECUTE,
            Command::StmtSendLongData { .. } => Self::COM_STMT_SEND_LONG_DATA,
            Command::StmtClose { .. } => Self::COM_STMT_CLOSE,
            Command::StmtReset { .. } => Self::COM_STMT_RESET,
            Command::SetOption { .. } => Self::COM_SET_OPTION,
            Command::StmtFetch { .. } => Self::COM_STMT_FETCH,
            Command::ResetConnection => Self::COM_RESET_CONNECTION,
            Command::Unknown { code, .. } => *code,
        }
    }

    /// Parses a command payload under the negotiated capabilities.
    ///
    /// `param_count` maps a statement id to the parameter count its prepare-OK announced; it is
    /// asked only for COM_STMT_EXECUTE. An execute whose count is neither known nor in the packet
    /// is `Malformed` (use [`StmtExecuteHeader::peek`] to route it anyway). Trailing bytes after
    /// fixed-size commands are ignored, as the server does.
    pub fn parse(
        payload: &'a [u8],
        caps: Capabilities,
        param_count: impl FnOnce(u32) -> Option<u16>,
    ) -> Result<Self, DecodeError> {
        let mut buf = ParseBuf::new(payload);
        let code = buf.u8("command")?;
        Ok(match code {
            Self::COM_QUIT => Command::Quit,
            Self::COM_INIT_DB => Command::InitDb {
                schema: buf.take_rest(),
            },
            Self::COM_QUERY => Command::Query(parse_query(&mut buf, caps)?),
            Self::COM_FIELD_LIST => Command::FieldList {
                table: buf.nul_bytes("COM_FIELD_LIST table")?,
                wildcard: buf.take_rest(),
            },
            Self::COM_REFRESH => Command::Refresh {
                flags: buf.u8("refresh flags")?,
            },
            Self::COM_SHUTDOWN => Command::Shutdown {
                level: if buf.is_empty() {
                    None
                } else {
                    Some(buf.u8("shutdown level")?)
                },
            },
            Self::COM_STATISTICS => Command::Statistics,
            Self::COM_PROCESS_INFO => Command::ProcessInfo,
            Self::COM_PROCESS_KILL => Command::ProcessKill {
                connection_id: buf.u32("connection id")?,
            },
            Self::COM_DEBUG => Command::Debug,
            Self::COM_PING => Command::Ping,
            Self::COM_CHANGE_USER => Command::ChangeUser(parse_change_user(&mut buf, caps)?),
            Self::COM_STMT_PREPARE => Command::StmtPrepare {
                query: buf.take_rest(),
            },
            Self::COM_STMT_EXECUTE => {
                Command::StmtExecute(parse_execute(&mut buf, caps, param_count)?)
            }
            Self::COM_STMT_SEND_LONG_DATA => Command::StmtSendLongData {
                statement_id: buf.u32("statement id")?,
                param_id: buf.u16("parameter id")?,
                data: buf.take_rest(),
            },
            Self::COM_STMT_CLOSE => Command::StmtClose {
                statement_id: buf.u32("statement id")?,
            },
            Self::COM_STMT_RESET => Command::StmtReset {
                statement_id: buf.u32("statement id")?,
            },
            Self::COM_SET_OPTION => Command::SetOption {
                option: buf.u16("option")?,
            },
            Self::COM_STMT_FETCH => Command::StmtFetch {
                statement_id: buf.u32("statement id")?,
                num_rows: buf.u32("number of rows")?,
            },
            Self::COM_RESET_CONNECTION => Command::ResetConnection,
            _ => Command::Unknown {
                code,
                body: buf.take_rest(),
            },
        })
    }

    /// Writes the command payload (command byte included) under the negotiated capabilities.
    pub fn encode(&self, caps: Capabilities, out: &mut impl BufMut) {
        out.put_u8(self.code());
        match self {
            Command::Quit
            | Command::Statistics
            | Command::ProcessInfo
            | Command::Debug
            | Command::Ping
            | Command::ResetConnection => {}
            Command::InitDb { schema } => out.put_slice(schema),
            Command::Query(q) => {
                if caps.contains(Capabilities::QUERY_ATTRIBUTES) {
                    put_lenenc_int(out, q.attributes.len() as u64);
                    put_lenenc_int(out, 1); // parameter set count: always 1
                    if !q.attributes.is_empty() {
                        put_params(out, &q.attributes, true);
                    }
                }
                out.put_slice(q.sql);
            }
            Command::FieldList { table, wildcard } => {
                put_nul_str(out, table);
                out.put_slice(wildcard);
            }
            Command::ProcessKill { connection_id } => out.put_u32_le(*connection_id),
            Command::Refresh { flags } => out.put_u8(*flags),
            Command::Shutdown { level } => {
                if let Some(level) = level {
                    out.put_u8(*level);
                }
            }
            Command::ChangeUser(c) => encode_change_user(c, caps, out),
            Command::StmtPrepare { query } => out.put_slice(query),
            Command::StmtExecute(e) => encode_execute(e, caps, out),
            Command::StmtSendLongData {
                statement_id,
                param_id,
                data,
            } => {
                out.put_u32_le(*statement_id);
                out.put_u16_le(*param_id);
                out.put_slice(data);
            }
            Command::StmtClose { statement_id } | Command::StmtReset { statement_id } => {
                out.put_u32_le(*statement_id)
            }
            Command::SetOption { option } => out.put_u16_le(*option),
            Command::StmtFetch {
                statement_id,
                num_rows,
            } => {
                out.put_u32_le(*statement_id);
                out.put_u32_le(*num_rows);
            }
            Command::Unknown { body, .. } => out.put_slice(body),
        }
    }
}

/// Reads a parameter count. An absurd count fails later on the null bitmap it implies, and no
/// allocation is sized by it beyond what the packet can hold.
fn read_param_count(buf: &mut ParseBuf<'_>) -> Result<usize, DecodeError> {
    const WHAT: &str = "parameter count";
    usize::try_from(buf.lenenc_int(WHAT)?).map_err(|_| DecodeError::UnexpectedEnd { what: WHAT })
}

fn parse_query<'a>(buf: &mut ParseBuf<'a>, caps: Capabilities) -> Result<Query<'a>, DecodeError> {
    let mut attributes = Vec::new();
    if caps.contains(Capabilities::QUERY_ATTRIBUTES) {
        let count = read_param_count(buf)?;
        // The server skips the parameter set count ("currently always 1"); so do we.
        buf.lenenc_int("parameter set count")?;
        if count > 0 {
            let bitmap = take_null_bitmap(buf, count, 0)?;
            if buf.u8("new params bound flag")? != 1 {
                // Attributes have no earlier binding to reuse.
                return Err(DecodeError::Malformed {
                    what: "query attributes without types",
                });
            }
            attributes = parse_bound_params(buf, count, bitmap, true)?;
        }
    }
    Ok(Query {
        attributes,
        sql: buf.take_rest(),
    })
}

/// Reads `count` (type, name?) pairs, then the values they describe.
fn parse_bound_params<'a>(
    buf: &mut ParseBuf<'a>,
    count: usize,
    bitmap: &[u8],
    names: bool,
) -> Result<Vec<Param<'a>>, DecodeError> {
    let mut heads = Vec::with_capacity(count.min(buf.remaining() / 2));
    for _ in 0..count {
        let ty = ValueType::parse_param(buf)?;
        let name = if names {
            buf.lenenc_bytes("parameter name")?
        } else {
            b""
        };
        heads.push((ty, name));
    }
    heads
        .into_iter()
        .enumerate()
        .map(|(i, (ty, name))| {
            let value = if bitmap_is_null(bitmap, i, 0) {
                Value::Null
            } else {
                Value::parse(buf, ty)?
            };
            Ok(Param { ty, name, value })
        })
        .collect()
}

/// Writes the null bitmap, the bound flag, the types (and names), and the values.
fn put_params(out: &mut impl BufMut, params: &[Param<'_>], names: bool) {
    let values: Vec<Value<'_>> = params.iter().map(|p| p.value).collect();
    put_null_bitmap(out, &values, 0);
    out.put_u8(1);
    for p in params {
        p.ty.encode_param(out);
        if names {
            put_lenenc_bytes(out, p.name);
        }
    }
    for v in &values {
        v.encode(out);
    }
}

fn parse_execute<'a>(
    buf: &mut ParseBuf<'a>,
    caps: Capabilities,
    param_count: impl FnOnce(u32) -> Option<u16>,
) -> Result<StmtExecute<'a>, DecodeError> {
    let header = StmtExecuteHeader::parse(buf)?;
    let qa = caps.contains(Capabilities::QUERY_ATTRIBUTES);
    let count = if qa && header.flags & StmtExecute::PARAMETER_COUNT_AVAILABLE != 0 {
        read_param_count(buf)?
    } else {
        usize::from(
            param_count(header.statement_id).ok_or(DecodeError::Malformed {
                what: "COM_STMT_EXECUTE for a statement of unknown parameter count",
            })?,
        )
    };
    let params = if count == 0 {
        ExecuteParams::Bound(Vec::new())
    } else {
        let null_bitmap = take_null_bitmap(buf, count, 0)?;
        match buf.u8("new params bound flag")? {
            0 => ExecuteParams::Unbound {
                count,
                null_bitmap,
                values: buf.take_rest(),
            },
            1 => ExecuteParams::Bound(parse_bound_params(buf, count, null_bitmap, qa)?),
            _ => {
                return Err(DecodeError::Malformed {
                    what: "new params bound flag",
                })
            }
        }
    };
    Ok(StmtExecute { header, params })
}

fn encode_execute(e: &StmtExecute<'_>, caps: Capabilities, out: &mut impl BufMut) {
    let h = &e.header;
    out.put_u32_le(h.statement_id);
    out.put_u8(h.flags);
    out.put_u32_le(h.iteration_count);
    let qa = caps.contains(Capabilities::QUERY_ATTRIBUTES);
    if qa && h.flags & StmtExecute::PARAMETER_COUNT_AVAILABLE != 0 {
        put_lenenc_int(out, e.params.len() as u64);
    }
    match &e.params {
        ExecuteParams::Bound(p) if p.is_empty() => {}
        ExecuteParams::Bound(p) => put_params(out, p, qa),
        ExecuteParams::Unbound { count: 0, .. } => {}
        ExecuteParams::Unbound {
            null_bitmap,
            values,
            ..
        } => {
            out.put_slice(null_bitmap);
            out.put_u8(0);
            out.put_slice(values);
        }
    }
}

/// Reads COM_CHANGE_USER as the server does (MariaDB 10.11's `parse_com_change_user_packet`;
/// MySQL's was not compared): a packet it refuses with ERR 1047 "Unknown command" is
/// `Malformed`, and one it accepts is read the same way. A field runs to its NUL or, without one,
/// to the end of the packet; each field needs at least one byte after the previous one; a
/// collation is read only when two bytes are left (one byte left is the plugin name's); under
/// `CLIENT_PLUGIN_AUTH` the plugin name and under `CLIENT_CONNECT_ATTRS` the attribute block are
/// required. (An empty body is no COM_CHANGE_USER at all to MariaDB, which restarts the
/// handshake; it fails here as `UnexpectedEnd`.)
fn parse_change_user<'a>(
    buf: &mut ParseBuf<'a>,
    caps: Capabilities,
) -> Result<ChangeUser<'a>, DecodeError> {
    let user = buf.nul_bytes("COM_CHANGE_USER user")?;
    require_more(buf, "COM_CHANGE_USER auth response")?;
    let auth_response = if caps.contains(Capabilities::SECURE_CONNECTION) {
        let len = buf.u8("auth response length")?;
        buf.take(usize::from(len), "auth response")?
    } else {
        buf.nul_bytes("auth response")?
    };
    require_more(buf, "COM_CHANGE_USER schema")?;
    let database = nul_or_rest(buf, "schema")?;
    let collation = if buf.remaining() >= 2 {
        Some(buf.u16("collation")?)
    } else {
        None
    };
    let auth_plugin = if caps.contains(Capabilities::PLUGIN_AUTH) {
        require_more(buf, "COM_CHANGE_USER auth plugin name")?;
        Some(nul_or_rest(buf, "auth plugin name")?)
    } else {
        None
    };
    let connect_attrs = if caps.contains(Capabilities::CONNECT_ATTRS) {
        Some(parse_connect_attrs(buf)?)
    } else {
        None
    };
    Ok(ChangeUser {
        user,
        auth_response,
        database,
        collation,
        auth_plugin,
        connect_attrs,
    })
}

/// The server's "`field >= end`" check: one more byte must follow.
fn require_more(buf: &ParseBuf<'_>, what: &'static str) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Err(DecodeError::Malformed { what })
    } else {
        Ok(())
    }
}

/// A string up to its NUL (consumed), or the rest of the packet: the server's `strlen` stops at
/// the NUL it keeps after every packet.
fn nul_or_rest<'a>(buf: &mut ParseBuf<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    if buf.peek_rest().contains(&0) {
        buf.nul_bytes(what)
    } else {
        Ok(buf.take_rest())
    }
}

/// Longest attribute block the server takes (its own "artificial length limit of 64k").
const MAX_CONNECT_ATTRS: u64 = 0xFFFF;

/// Reads the length-prefixed block of lenenc key/value pairs. The block must be present and fit
/// the packet, as the server requires; its contents the server does not check, so pairs are read
/// while they make sense and the rest of the block is dropped. Bytes after the block are ignored.
fn parse_connect_attrs<'a>(buf: &mut ParseBuf<'a>) -> Result<AttrPairs<'a>, DecodeError> {
    const WHAT: &str = "connection attributes";
    require_more(buf, WHAT)?;
    let len = buf.lenenc_int(WHAT)?;
    if len > MAX_CONNECT_ATTRS {
        return Err(DecodeError::Malformed { what: WHAT });
    }
    // At most 0xFFFF: fits any usize.
    let block = buf.take(len as usize, WHAT)?;
    let mut attrs = ParseBuf::new(block);
    let mut out = Vec::new();
    while !attrs.is_empty() {
        let (Ok(key), Ok(value)) = (
            attrs.lenenc_bytes("connection attribute key"),
            attrs.lenenc_bytes("connection attribute value"),
        ) else {
            break;
        };
        out.push((key, value));
    }
    Ok(out)
}

/// Writes what [`parse_change_user`] reads back: under `CLIENT_PLUGIN_AUTH` a plugin name and
/// under `CLIENT_CONNECT_ATTRS` an attribute block are always written (empty when absent), since
/// the server refuses a packet without them.
fn encode_change_user(c: &ChangeUser<'_>, caps: Capabilities, out: &mut impl BufMut) {
    put_nul_str(out, c.user);
    if caps.contains(Capabilities::SECURE_CONNECTION) {
        // The length is one byte: longer responses cannot be expressed and are cut, which the
        // server then rejects as a failed login rather than misreading the packet.
        let auth = &c.auth_response[..c.auth_response.len().min(255)];
        out.put_u8(auth.len() as u8); // at most 255 by the line above
        out.put_slice(auth);
    } else {
        put_nul_str(out, c.auth_response);
    }
    put_nul_str(out, c.database);
    let plugin = c.auth_plugin.unwrap_or_default();
    let Some(collation) = c.collation else {
        // Without a collation one byte at most may follow (two would be read as a collation):
        // a plugin name of one byte (its NUL is the server's), or an empty attribute block.
        if caps.contains(Capabilities::PLUGIN_AUTH) {
            out.put_u8(plugin.first().copied().unwrap_or(0));
        } else if caps.contains(Capabilities::CONNECT_ATTRS) {
            out.put_u8(0);
        }
        return;
    };
    out.put_u16_le(collation);
    if caps.contains(Capabilities::PLUGIN_AUTH) {
        put_nul_str(out, plugin);
    }
    if caps.contains(Capabilities::CONNECT_ATTRS) {
        let mut block = Vec::new();
        for (k, v) in c.connect_attrs.iter().flatten() {
            put_lenenc_bytes(&mut block, k);
            put_lenenc_bytes(&mut block, v);
        }
        put_lenenc_bytes(out, &block);
    }
}

#[cfg(test)]
mod tests;
