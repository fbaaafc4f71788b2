//! Command/response tracking: for each packet the server sends after a command, what it is and
//! whether the response is over, and what the response changed.
//!
//! Follows `page_protocol_command_phase` (text and binary result sets, prepare-OK, cursors, LOCAL
//! INFILE, multi-results) under the negotiated capabilities: with `CLIENT_DEPRECATE_EOF` no EOF
//! follows the column definitions and an OK with header `0xFE` ends the rows; without it EOFs do
//! both. A terminator with `SERVER_MORE_RESULTS_EXISTS` announces another result; an ERR always
//! ends the response (servers stop a multi-statement at the first error).
//!
//! ```text
//! First ─ OK ─┬─ MORE_RESULTS ─► First            First ─ 0xFB ─► owner sends the file ─► First
//!             └─ else ─────────► Done             First ─ ERR ──► Done
//! First ─ header(n) ─► Columns(n) ─┬─ DEPRECATE_EOF ─► Rows
//!                                  └─ else ─► ColumnsEnd ─┬─ EOF+CURSOR_EXISTS (EXECUTE) ─► Done
//!                                                         └─ EOF ─► Rows
//! Rows ─ row ─► Rows;  Rows ─ EOF/OK(0xFE) ─┬─ MORE_RESULTS ─► First;  else ─► Done
//! ```

use crate::wire::{
    Capabilities, ColumnDefinition41, Command, EofPacket, ErrPacket, OkPacket, PrepareOk,
    ResponseKind, ResultSetHeader, ServerStatus, SessionStateChange,
};
use crate::ProtocolError;

use super::BackendError;

/// What one response packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketKind {
    /// An OK packet (header `0x00`), ending a command or one statement of several.
    Ok,
    /// An ERR packet; it ends the response.
    Err,
    /// An end marker: EOF, or under `CLIENT_DEPRECATE_EOF` the OK with header `0xFE`.
    Eof,
    /// The column count opening a result set.
    ResultSetHeader,
    /// A column definition (of a result set, a prepared statement or COM_FIELD_LIST).
    ColumnDefinition,
    /// A row, text or binary.
    Row,
    /// COM_STMT_PREPARE's answer.
    PrepareOk,
    /// A parameter definition after a prepare-OK.
    ParamDefinition,
    /// The server asks for a local file (`0xFB` + name): send it with
    /// [`Backend::send_local_infile_data`](super::Backend::send_local_infile_data), then
    /// [`Backend::finish_local_infile`](super::Backend::finish_local_infile).
    LocalInfileRequest,
    /// COM_STATISTICS's one human-readable string.
    Statistics,
    /// An auth switch during COM_CHANGE_USER.
    AuthSwitchRequest,
    /// Auth plugin data during COM_CHANGE_USER.
    AuthMoreData,
}

/// The session-state changes a response reported (`CLIENT_SESSION_TRACK`), in the order received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionChanges {
    /// The new current schema (`session_track_schema`).
    pub schema: Option<Vec<u8>>,
    /// System variables set, as (name, value) (`session_track_system_variables`).
    pub system_variables: Vec<(Vec<u8>, Vec<u8>)>,
    /// Some other session state changed (`session_track_state_change`): user variables, temporary
    /// tables, prepared statements...
    pub state_changed: bool,
    /// The transaction state characters (`session_track_transaction_info`).
    pub transaction_state: Option<Vec<u8>>,
    /// Statements recreating the transaction characteristics.
    pub transaction_characteristics: Option<Vec<u8>>,
    /// GTIDs (`session_track_gtids`).
    pub gtids: Option<Vec<u8>>,
}

impl SessionChanges {
    pub(crate) fn apply(&mut self, changes: &[SessionStateChange<'_>]) {
        for change in changes {
            match change {
                SessionStateChange::SystemVariable { name, value } => {
                    self.system_variables.push((name.to_vec(), value.to_vec()))
                }
                SessionStateChange::Schema(s) => self.schema = Some(s.to_vec()),
                SessionStateChange::StateChange(changed) => self.state_changed |= changed,
                SessionStateChange::Gtids { gtids, .. } => self.gtids = Some(gtids.to_vec()),
                SessionStateChange::TransactionCharacteristics(s) => {
                    self.transaction_characteristics = Some(s.to_vec())
                }
                SessionStateChange::TransactionState(s) => {
                    self.transaction_state = Some(s.to_vec())
                }
                // Types ferry does not know change nothing it tracks.
                _ => {}
            }
        }
    }

    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a complete response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSummary {
    /// The command byte the response answers.
    pub command: u8,
    /// `Some` when the response ended with an ERR (earlier results of a multi-statement may have
    /// succeeded).
    pub error: Option<ProtocolError>,
    /// Server status after the response (unchanged by an ERR, which carries none).
    pub status: ServerStatus,
    /// Affected rows of the last OK.
    pub affected_rows: u64,
    /// Last insert id of the last OK.
    pub last_insert_id: u64,
    /// Warnings of the last OK or end marker.
    pub warnings: u16,
    /// Result sets received.
    pub result_sets: u32,
    /// Rows received, over all result sets.
    pub rows: u64,
    /// Session-state changes reported by every OK of the response.
    pub session: SessionChanges,
    /// COM_STMT_PREPARE's answer.
    pub prepared: Option<PrepareOk>,
}

impl ResponseSummary {
    /// The summary of a response to `command` nothing has been received for (allocates nothing).
    pub(crate) fn blank(command: u8, status: ServerStatus) -> Self {
        Self {
            command,
            error: None,
            status,
            affected_rows: 0,
            last_insert_id: 0,
            warnings: 0,
            result_sets: 0,
            rows: 0,
            session: SessionChanges::default(),
            prepared: None,
        }
    }

    /// True when the response did not end with an ERR.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// What the tracker wants next after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// More packets of this response follow.
    More,
    /// The server waits for the local file's contents.
    LocalInfile,
    /// The server waits for auth data (COM_CHANGE_USER).
    AuthExchange,
    /// The response is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    First,
    Columns(u64),
    ColumnsEnd,
    Rows,
    PrepareFirst,
    Params(u16),
    ParamsEnd,
    PrepareColumns(u16),
    PrepareColumnsEnd,
    FieldList,
    Statistics,
    ChangeUser,
    /// The owner is sending the file; a server packet now is a protocol error.
    LocalInfileData,
    Done,
}

/// Tracks one command's response to its end.
#[derive(Debug, Clone)]
pub(crate) struct ResponseTracker {
    caps: Capabilities,
    expect: Expect,
    summary: ResponseSummary,
}

/// Whether a command gets a response at all.
pub(crate) fn has_response(command: u8) -> bool {
    !matches!(
        command,
        Command::COM_QUIT | Command::COM_STMT_CLOSE | Command::COM_STMT_SEND_LONG_DATA
    )
}

impl ResponseTracker {
    /// A tracker for the response to `command`, sent with the server in `status`.
    pub(crate) fn new(command: u8, caps: Capabilities, status: ServerStatus) -> Self {
        let expect = match command {
            Command::COM_STMT_PREPARE => Expect::PrepareFirst,
            Command::COM_FIELD_LIST => Expect::FieldList,
            Command::COM_STATISTICS => Expect::Statistics,
            Command::COM_CHANGE_USER => Expect::ChangeUser,
            // A fetch answers with rows and an end marker straight away.
            Command::COM_STMT_FETCH => Expect::Rows,
            _ => Expect::First,
        };
        Self {
            caps,
            expect,
            summary: ResponseSummary::blank(command, status),
        }
    }

    /// Takes the summary of the finished response, leaving a blank one (so the tracker's memory
    /// can serve the next command).
    pub(crate) fn take_summary(&mut self) -> ResponseSummary {
        let blank = ResponseSummary::blank(self.summary.command, self.summary.status);
        std::mem::replace(&mut self.summary, blank)
    }

    /// The owner finished sending the local file; the server's OK or ERR comes next.
    pub(crate) fn local_infile_sent(&mut self) {
        if self.expect == Expect::LocalInfileData {
            self.expect = Expect::First;
        }
    }

    /// True while the server waits for the local file.
    pub(crate) fn awaits_local_infile(&self) -> bool {
        self.expect == Expect::LocalInfileData
    }

    /// Classifies the next packet of the response and moves on.
    pub(crate) fn handle(&mut self, payload: &[u8]) -> Result<(PacketKind, Step), BackendError> {
        let caps = self.caps;
        let (kind, next) = match self.expect {
            Expect::First => return self.first(payload),
            Expect::Columns(left) => {
                ColumnDefinition41::parse(payload)?;
                let next = match left.saturating_sub(1) {
                    0 if caps.contains(Capabilities::DEPRECATE_EOF) => Expect::Rows,
                    0 => Expect::ColumnsEnd,
                    n => Expect::Columns(n),
                };
                (PacketKind::ColumnDefinition, next)
            }
            Expect::ColumnsEnd => {
                let eof = EofPacket::parse(payload, caps)?;
                self.summary.status = eof.status;
                self.summary.warnings = eof.warnings;
                let cursor = eof.status.contains(ServerStatus::CURSOR_EXISTS)
                    && self.summary.command == Command::COM_STMT_EXECUTE;
                (
                    PacketKind::Eof,
                    if cursor { Expect::Done } else { Expect::Rows },
                )
            }
            Expect::Rows => match ResponseKind::of(payload, caps)? {
                ResponseKind::Eof => {
                    let status = self.terminator(payload)?;
                    let next = if status.contains(ServerStatus::MORE_RESULTS_EXISTS) {
                        Expect::First
                    } else {
                        Expect::Done
                    };
                    (PacketKind::Eof, next)
                }
                ResponseKind::Err => return Ok((self.err(payload)?, Step::Done)),
                _ => {
                    self.summary.rows += 1;
                    (PacketKind::Row, Expect::Rows)
                }
            },
            Expect::PrepareFirst => match ResponseKind::of(payload, caps)? {
                ResponseKind::Err => return Ok((self.err(payload)?, Step::Done)),
                ResponseKind::Ok => {
                    let ok = PrepareOk::parse(payload, caps)?;
                    self.summary.prepared = Some(ok);
                    self.summary.warnings = ok.warning_count.unwrap_or(0);
                    (PacketKind::PrepareOk, self.after_params(ok.num_params, ok))
                }
                _ => return Err(unexpected("waiting for a prepare-OK")),
            },
            Expect::Params(left) => {
                ColumnDefinition41::parse(payload)?;
                let next = match left.saturating_sub(1) {
                    0 if caps.contains(Capabilities::DEPRECATE_EOF) => self.prepare_columns(),
                    0 => Expect::ParamsEnd,
                    n => Expect::Params(n),
                };
                (PacketKind::ParamDefinition, next)
            }
            Expect::ParamsEnd => {
                EofPacket::parse(payload, caps)?;
                (PacketKind::Eof, self.prepare_columns())
            }
            Expect::PrepareColumns(left) => {
                ColumnDefinition41::parse(payload)?;
                let next = match left.saturating_sub(1) {
                    0 if caps.contains(Capabilities::DEPRECATE_EOF) => Expect::Done,
                    0 => Expect::PrepareColumnsEnd,
                    n => Expect::PrepareColumns(n),
                };
                (PacketKind::ColumnDefinition, next)
            }
            Expect::PrepareColumnsEnd => {
                EofPacket::parse(payload, caps)?;
                (PacketKind::Eof, Expect::Done)
            }
            Expect::FieldList => match ResponseKind::of(payload, caps)? {
                ResponseKind::Err => return Ok((self.err(payload)?, Step::Done)),
                ResponseKind::Eof => {
                    self.terminator(payload)?;
                    (PacketKind::Eof, Expect::Done)
                }
                _ => {
                    ColumnDefinition41::parse(payload)?;
                    (PacketKind::ColumnDefinition, Expect::FieldList)
                }
            },
            Expect::Statistics => match payload.first() {
                Some(0xFF) => return Ok((self.err(payload)?, Step::Done)),
                _ => (PacketKind::Statistics, Expect::Done),
            },
            Expect::ChangeUser => match payload.first() {
                Some(0x00) => {
                    self.ok(payload)?;
                    (PacketKind::Ok, Expect::Done)
                }
                Some(0xFF) => return Ok((self.err(payload)?, Step::Done)),
                Some(0xFE) => return Ok((PacketKind::AuthSwitchRequest, Step::AuthExchange)),
                Some(0x01) => return Ok((PacketKind::AuthMoreData, Step::AuthExchange)),
                _ => return Err(unexpected("waiting for the COM_CHANGE_USER result")),
            },
            Expect::LocalInfileData => {
                return Err(unexpected("sending a LOCAL INFILE file"));
            }
            Expect::Done => return Err(unexpected("no command is outstanding")),
        };
        self.expect = next;
        let step = if next == Expect::Done {
            Step::Done
        } else {
            Step::More
        };
        Ok((kind, step))
    }

    /// The first packet of a response, or of the next result of a multi-result response.
    fn first(&mut self, payload: &[u8]) -> Result<(PacketKind, Step), BackendError> {
        match ResponseKind::of(payload, self.caps)? {
            ResponseKind::Ok => {
                let status = self.ok(payload)?;
                if status.contains(ServerStatus::MORE_RESULTS_EXISTS) {
                    Ok((PacketKind::Ok, Step::More))
                } else {
                    self.expect = Expect::Done;
                    Ok((PacketKind::Ok, Step::Done))
                }
            }
            ResponseKind::Err => Ok((self.err(payload)?, Step::Done)),
            ResponseKind::LocalInfile if self.summary.command == Command::COM_QUERY => {
                self.expect = Expect::LocalInfileData;
                Ok((PacketKind::LocalInfileRequest, Step::LocalInfile))
            }
            // COM_SET_OPTION, COM_DEBUG and COM_SHUTDOWN succeed with an EOF (an OK with header
            // 0xFE under DEPRECATE_EOF), not an OK.
            ResponseKind::Eof
                if matches!(
                    self.summary.command,
                    Command::COM_SET_OPTION | Command::COM_DEBUG | Command::COM_SHUTDOWN
                ) =>
            {
                self.terminator(payload)?;
                self.expect = Expect::Done;
                Ok((PacketKind::Eof, Step::Done))
            }
            ResponseKind::LocalInfile | ResponseKind::Eof => {
                Err(unexpected("waiting for the first packet of a response"))
            }
            ResponseKind::ResultSet => {
                let header = ResultSetHeader::parse(payload, self.caps)?;
                if !header.metadata_follows {
                    // ferry never negotiates optional metadata; a server skipping it misbehaves.
                    return Err(unexpected("reading a result set without metadata"));
                }
                self.summary.result_sets += 1;
                self.expect = Expect::Columns(header.column_count);
                Ok((PacketKind::ResultSetHeader, Step::More))
            }
        }
    }

    fn after_params(&self, params: u16, ok: PrepareOk) -> Expect {
        if params > 0 {
            Expect::Params(params)
        } else if ok.num_columns > 0 {
            Expect::PrepareColumns(ok.num_columns)
        } else {
            Expect::Done
        }
    }

    fn prepare_columns(&self) -> Expect {
        match self.summary.prepared {
            Some(ok) if ok.num_columns > 0 => Expect::PrepareColumns(ok.num_columns),
            _ => Expect::Done,
        }
    }

    /// An OK packet: status, counts and session state. Returns the status.
    fn ok(&mut self, payload: &[u8]) -> Result<ServerStatus, BackendError> {
        let ok = OkPacket::parse(payload, self.caps)?;
        self.summary.status = ok.status;
        self.summary.affected_rows = ok.affected_rows;
        self.summary.last_insert_id = ok.last_insert_id;
        self.summary.warnings = ok.warnings;
        self.summary.session.apply(&ok.session_state);
        Ok(ok.status)
    }

    /// An end marker: an OK with header `0xFE` under DEPRECATE_EOF, else an EOF.
    fn terminator(&mut self, payload: &[u8]) -> Result<ServerStatus, BackendError> {
        if self.caps.contains(Capabilities::DEPRECATE_EOF) {
            let ok = OkPacket::parse(payload, self.caps)?;
            self.summary.status = ok.status;
            self.summary.warnings = ok.warnings;
            self.summary.session.apply(&ok.session_state);
            Ok(ok.status)
        } else {
            let eof = EofPacket::parse(payload, self.caps)?;
            self.summary.status = eof.status;
            self.summary.warnings = eof.warnings;
            Ok(eof.status)
        }
    }

    fn err(&mut self, payload: &[u8]) -> Result<PacketKind, BackendError> {
        let err = ErrPacket::parse(payload, self.caps)?;
        self.summary.error = Some(err.to_protocol_error());
        self.expect = Expect::Done;
        Ok(PacketKind::Err)
    }
}

fn unexpected(state: &'static str) -> BackendError {
    BackendError::UnexpectedPacket { state }
}
