//! Generic responses: OK (with session-state tracking), ERR and EOF, and telling them apart.
//!
//! Follows `page_protocol_basic_response_packets` of the MySQL protocol documentation (and
//! `page_protocol_basic_ok_packet` for session-state information). Like the other messages, parsed
//! values borrow from the payload and encoders append to any `BufMut`; the negotiated
//! capabilities are the parse context.

use bytes::BufMut;

use super::{put_lenenc_bytes, put_lenenc_int, Capabilities, ParseBuf, ServerStatus};
use crate::{DecodeError, ProtocolError};

/// What the first byte of a response payload says it is.
///
/// Meant for the **first packet of a command's response**. Inside a result set's rows, `0x00` (an
/// empty string or a binary row) and `0xFB` (NULL) are row data; there only [`Eof`](Self::Eof) and
/// [`Err`](Self::Err) mean something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `0x00`: an [`OkPacket`].
    Ok,
    /// `0xFF`: an [`ErrPacket`].
    Err,
    /// `0xFE` and short: an [`EofPacket`] (payload under 9 bytes) or, under
    /// `CLIENT_DEPRECATE_EOF`, the [`OkPacket`] with header `0xFE` that ends a result set (payload
    /// under `0xFFFFFF` bytes, since a row starting with `0xFE` is at least that long).
    Eof,
    /// `0xFB`: a LOCAL INFILE request; the payload after the byte is the file name.
    LocalInfile,
    /// Anything else: a result-set header (column count).
    ResultSet,
}

impl ResponseKind {
    /// Classifies a response payload under the negotiated capabilities. An empty payload is an
    /// error.
    pub fn of(payload: &[u8], caps: Capabilities) -> Result<Self, DecodeError> {
        let first = *payload.first().ok_or(DecodeError::UnexpectedEnd {
            what: "response header",
        })?;
        Ok(match first {
            0x00 => Self::Ok,
            0xFF => Self::Err,
            0xFB => Self::LocalInfile,
            0xFE if is_end_marker(payload.len(), caps) => Self::Eof,
            _ => Self::ResultSet,
        })
    }
}

/// Whether a `0xFE`-headed payload of `len` bytes is an end marker (EOF, or OK under
/// `CLIENT_DEPRECATE_EOF`) rather than data whose first field has an 8-byte length.
fn is_end_marker(len: usize, caps: Capabilities) -> bool {
    if caps.contains(Capabilities::DEPRECATE_EOF) {
        len < 0xFF_FFFF
    } else {
        len < 9
    }
}

/// `SESSION_TRACK_SYSTEM_VARIABLES`
pub const SESSION_TRACK_SYSTEM_VARIABLES: u64 = 0;
/// `SESSION_TRACK_SCHEMA`
pub const SESSION_TRACK_SCHEMA: u64 = 1;
/// `SESSION_TRACK_STATE_CHANGE`
pub const SESSION_TRACK_STATE_CHANGE: u64 = 2;
/// `SESSION_TRACK_GTIDS`
pub const SESSION_TRACK_GTIDS: u64 = 3;
/// `SESSION_TRACK_TRANSACTION_CHARACTERISTICS`
pub const SESSION_TRACK_TRANSACTION_CHARACTERISTICS: u64 = 4;
/// `SESSION_TRACK_TRANSACTION_STATE` (MariaDB: `SESSION_TRACK_TRANSACTION_TYPE`)
pub const SESSION_TRACK_TRANSACTION_STATE: u64 = 5;

/// One session-state change reported in an OK packet under `CLIENT_SESSION_TRACK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStateChange<'a> {
    /// A tracked system variable changed (`session_track_system_variables`).
    SystemVariable {
        /// Variable name.
        name: &'a [u8],
        /// New value, as text.
        value: &'a [u8],
    },
    /// The current schema changed (`session_track_schema`).
    Schema(&'a [u8]),
    /// Some session state changed (`session_track_state_change`); servers send `"1"` (true).
    /// Its data is the bare character, without an inner length.
    StateChange(bool),
    /// GTIDs of the transaction (`session_track_gtids`).
    Gtids {
        /// Encoding specification (0: the GTID set as text).
        encoding: u8,
        /// The GTIDs.
        gtids: &'a [u8],
    },
    /// `SET TRANSACTION` statements that recreate the transaction's characteristics.
    TransactionCharacteristics(&'a [u8]),
    /// The transaction state as 8 characters (e.g. `T_______`), `session_track_transaction_info`.
    TransactionState(&'a [u8]),
    /// A type ferry does not know, kept raw.
    Unknown {
        /// The entry type.
        kind: u64,
        /// The entry's data.
        data: &'a [u8],
    },
}

impl<'a> SessionStateChange<'a> {
    /// Parses the entries of a session-state block (the bytes inside its lenenc length).
    pub fn parse_all(block: &'a [u8]) -> Result<Vec<Self>, DecodeError> {
        let mut p = ParseBuf::new(block);
        let mut out = Vec::new();
        while !p.is_empty() {
            let kind = p.lenenc_int("session state type")?;
            let data = p.lenenc_bytes("session state data")?;
            out.push(Self::parse_entry(kind, data)?);
        }
        Ok(out)
    }

    fn parse_entry(kind: u64, data: &'a [u8]) -> Result<Self, DecodeError> {
        let mut d = ParseBuf::new(data);
        let entry = match kind {
            SESSION_TRACK_SYSTEM_VARIABLES => Self::SystemVariable {
                name: d.lenenc_bytes("session state variable name")?,
                value: d.lenenc_bytes("session state variable value")?,
            },
            SESSION_TRACK_SCHEMA => Self::Schema(d.lenenc_bytes("session state schema")?),
            // The one type whose data is the value itself, not a lenenc string inside.
            SESSION_TRACK_STATE_CHANGE => match d.take_rest() {
                b"1" => Self::StateChange(true),
                b"0" => Self::StateChange(false),
                _ => {
                    return Err(DecodeError::Malformed {
                        what: "session state change flag",
                    })
                }
            },
            SESSION_TRACK_GTIDS => Self::Gtids {
                encoding: d.u8("session state gtids encoding")?,
                gtids: d.lenenc_bytes("session state gtids")?,
            },
            SESSION_TRACK_TRANSACTION_CHARACTERISTICS => Self::TransactionCharacteristics(
                d.lenenc_bytes("session state transaction characteristics")?,
            ),
            SESSION_TRACK_TRANSACTION_STATE => {
                Self::TransactionState(d.lenenc_bytes("session state transaction state")?)
            }
            _ => return Ok(Self::Unknown { kind, data }),
        };
        d.finish("session state entry")?;
        Ok(entry)
    }

    /// Appends the entry (type, then its data as a lenenc string) to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let mut data = Vec::new();
        let kind = match self {
            Self::SystemVariable { name, value } => {
                put_lenenc_bytes(&mut data, name);
                put_lenenc_bytes(&mut data, value);
                SESSION_TRACK_SYSTEM_VARIABLES
            }
            Self::Schema(name) => {
                put_lenenc_bytes(&mut data, name);
                SESSION_TRACK_SCHEMA
            }
            Self::StateChange(changed) => {
                data.push(if *changed { b'1' } else { b'0' });
                SESSION_TRACK_STATE_CHANGE
            }
            Self::Gtids { encoding, gtids } => {
                data.push(*encoding);
                put_lenenc_bytes(&mut data, gtids);
                SESSION_TRACK_GTIDS
            }
            Self::TransactionCharacteristics(s) => {
                put_lenenc_bytes(&mut data, s);
                SESSION_TRACK_TRANSACTION_CHARACTERISTICS
            }
            Self::TransactionState(s) => {
                put_lenenc_bytes(&mut data, s);
                SESSION_TRACK_TRANSACTION_STATE
            }
            Self::Unknown { kind, data: raw } => {
                data.extend_from_slice(raw);
                *kind
            }
        };
        put_lenenc_int(out, kind);
        put_lenenc_bytes(out, &data);
    }
}

/// An OK packet: a command succeeded, or (header `0xFE`) a result set ended under
/// `CLIENT_DEPRECATE_EOF`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkPacket<'a> {
    /// True for the `0xFE`-headed OK that ends a result set under `CLIENT_DEPRECATE_EOF`.
    pub eof: bool,
    /// Rows affected.
    pub affected_rows: u64,
    /// Last `AUTO_INCREMENT` id.
    pub last_insert_id: u64,
    /// Server status; 0 unless `CLIENT_PROTOCOL_41` or `CLIENT_TRANSACTIONS`.
    pub status: ServerStatus,
    /// Warning count; 0 unless `CLIENT_PROTOCOL_41`.
    pub warnings: u16,
    /// Human-readable information (e.g. `Rows matched: 1  Changed: 1  Warnings: 0`).
    pub info: &'a [u8],
    /// Session-state changes, present under `CLIENT_SESSION_TRACK` when `status` has
    /// `SERVER_SESSION_STATE_CHANGED`.
    pub session_state: Vec<SessionStateChange<'a>>,
}

impl<'a> OkPacket<'a> {
    /// Parses an OK packet (header `0x00` or `0xFE`) under the negotiated capabilities.
    pub fn parse(payload: &'a [u8], caps: Capabilities) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        let eof = match p.u8("OK header")? {
            0x00 => false,
            0xFE => true,
            _ => return Err(DecodeError::Malformed { what: "OK header" }),
        };
        let affected_rows = p.lenenc_int("OK affected rows")?;
        let last_insert_id = p.lenenc_int("OK last insert id")?;
        let (status, warnings) = if caps.contains(Capabilities::PROTOCOL_41) {
            (ServerStatus(p.u16("OK status")?), p.u16("OK warnings")?)
        } else if caps.contains(Capabilities::TRANSACTIONS) {
            (ServerStatus(p.u16("OK status")?), 0)
        } else {
            (ServerStatus::default(), 0)
        };
        let mut info: &[u8] = &[];
        let mut session_state = Vec::new();
        if caps.contains(Capabilities::SESSION_TRACK) {
            // Servers leave the info out altogether when it is empty and nothing changed.
            if !p.is_empty() {
                info = p.lenenc_bytes("OK info")?;
            }
            if status.contains(ServerStatus::SESSION_STATE_CHANGED) && !p.is_empty() {
                let block = p.lenenc_bytes("OK session state")?;
                session_state = SessionStateChange::parse_all(block)?;
            }
            p.finish("OK packet")?;
        } else if !p.is_empty() {
            // The protocol documents string<EOF> here, but MySQL and MariaDB servers both write a
            // length-encoded string, and libmariadb reads one. Accept the documented form too.
            let mut lenenc = p;
            info = match lenenc.lenenc_bytes("OK info") {
                Ok(s) if lenenc.is_empty() => s,
                _ => p.take_rest(),
            };
        }
        Ok(Self {
            eof,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
            session_state,
        })
    }

    /// Appends the payload to `out` as a server would send it to a peer with `caps`.
    ///
    /// Without `CLIENT_SESSION_TRACK` the session-state changes are not written (and cannot be).
    pub fn encode(&self, out: &mut impl BufMut, caps: Capabilities) {
        self.encode_inner(out, caps, self.status, true);
    }

    /// Appends the payload without the session-state section, and with
    /// `SERVER_SESSION_STATE_CHANGED` cleared: for a client that did not ask for tracking while
    /// the backend connection did.
    pub fn encode_without_session_state(&self, out: &mut impl BufMut, caps: Capabilities) {
        let status = ServerStatus(self.status.0 & !ServerStatus::SESSION_STATE_CHANGED.0);
        self.encode_inner(out, caps, status, false);
    }

    fn encode_inner(
        &self,
        out: &mut impl BufMut,
        caps: Capabilities,
        status: ServerStatus,
        with_state: bool,
    ) {
        out.put_u8(if self.eof { 0xFE } else { 0x00 });
        put_lenenc_int(out, self.affected_rows);
        put_lenenc_int(out, self.last_insert_id);
        if caps.contains(Capabilities::PROTOCOL_41) {
            out.put_u16_le(status.0);
            out.put_u16_le(self.warnings);
        } else if caps.contains(Capabilities::TRANSACTIONS) {
            out.put_u16_le(status.0);
        }
        if caps.contains(Capabilities::SESSION_TRACK) {
            let state = with_state && status.contains(ServerStatus::SESSION_STATE_CHANGED);
            if state || !self.info.is_empty() {
                put_lenenc_bytes(out, self.info);
            }
            if state {
                let mut block = Vec::new();
                for change in &self.session_state {
                    change.encode(&mut block);
                }
                put_lenenc_bytes(out, &block);
            }
        } else if !self.info.is_empty() {
            // Length-encoded, as real servers write it (see `parse`).
            put_lenenc_bytes(out, self.info);
        }
    }
}

/// An ERR packet (header `0xFF`).
///
/// MariaDB's progress reports (code `0xFFFF`, only to clients that asked) share the header; they
/// parse as an `ErrPacket` whose message is the raw report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    /// Error code (e.g. 1045).
    pub code: u16,
    /// SQL state after the `#` marker; sent under `CLIENT_PROTOCOL_41`.
    pub sql_state: Option<[u8; 5]>,
    /// The message.
    pub message: &'a [u8],
}

impl<'a> ErrPacket<'a> {
    /// Parses an ERR packet. Before capabilities are agreed (an ERR instead of the greeting),
    /// parse with `Capabilities::EMPTY`.
    pub fn parse(payload: &'a [u8], caps: Capabilities) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        if p.u8("ERR header")? != 0xFF {
            return Err(DecodeError::Malformed { what: "ERR header" });
        }
        let code = p.u16("ERR code")?;
        let sql_state = if caps.contains(Capabilities::PROTOCOL_41) && p.peek_u8() == Some(b'#') {
            p.u8("ERR SQL state marker")?;
            Some(p.array("ERR SQL state")?)
        } else {
            None
        };
        Ok(Self {
            code,
            sql_state,
            message: p.take_rest(),
        })
    }

    /// Appends the payload to `out`. The SQL state is written only under `CLIENT_PROTOCOL_41`.
    pub fn encode(&self, out: &mut impl BufMut, caps: Capabilities) {
        out.put_u8(0xFF);
        out.put_u16_le(self.code);
        if let (true, Some(state)) = (caps.contains(Capabilities::PROTOCOL_41), self.sql_state) {
            out.put_u8(b'#');
            out.put_slice(&state);
        }
        out.put_slice(self.message);
    }

    /// An owned [`ProtocolError`] with the same code, state (`HY000` when absent) and message.
    pub fn to_protocol_error(&self) -> ProtocolError {
        ProtocolError {
            code: self.code,
            sql_state: self.sql_state.unwrap_or(*b"HY000"),
            message: String::from_utf8_lossy(self.message).into_owned(),
        }
    }
}

impl<'a> From<&'a ProtocolError> for ErrPacket<'a> {
    fn from(err: &'a ProtocolError) -> Self {
        Self {
            code: err.code,
            sql_state: Some(err.sql_state),
            message: err.message.as_bytes(),
        }
    }
}

/// An EOF packet (header `0xFE`, under 9 bytes), used when `CLIENT_DEPRECATE_EOF` is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EofPacket {
    /// Warning count; 0 unless `CLIENT_PROTOCOL_41`.
    pub warnings: u16,
    /// Server status; 0 unless `CLIENT_PROTOCOL_41`.
    pub status: ServerStatus,
}

impl EofPacket {
    /// Parses an EOF packet.
    pub fn parse(payload: &[u8], caps: Capabilities) -> Result<Self, DecodeError> {
        let mut p = ParseBuf::new(payload);
        if p.u8("EOF header")? != 0xFE {
            return Err(DecodeError::Malformed { what: "EOF header" });
        }
        let mut eof = Self::default();
        if caps.contains(Capabilities::PROTOCOL_41) {
            eof.warnings = p.u16("EOF warnings")?;
            eof.status = ServerStatus(p.u16("EOF status")?);
        }
        p.finish("EOF packet")?;
        Ok(eof)
    }

    /// Appends the payload to `out`.
    pub fn encode(&self, out: &mut impl BufMut, caps: Capabilities) {
        out.put_u8(0xFE);
        if caps.contains(Capabilities::PROTOCOL_41) {
            out.put_u16_le(self.warnings);
            out.put_u16_le(self.status.0);
        }
    }
}

#[cfg(test)]
mod tests;
