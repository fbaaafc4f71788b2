//! The command phase: each command handed out as a [`ClientCommand`], one at a time, and the
//! mutators the owner answers it with.
//!
//! Sequence ids are the frontend's business: every packet sent with a `send_*` call gets the next
//! id of the current exchange, and [`Frontend::end_response`] restarts the counter for the next
//! command.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::wire::{
    Capabilities, ColumnDefinition41, ColumnFlags, ColumnType, Command, EofPacket, OkPacket,
    PrepareOk, ResultSetHeader, StmtExecuteHeader, TextRow,
};
use crate::{DecodeError, ProtocolError};

use super::{CloseReason, Frontend, FrontendError, Phase};

/// The least the wire buffer grows by when a relayed packet does not fit (see `send_packet`).
const WIRE_MIN_GROWTH: usize = 2048;

/// One command from the client: its payload (command byte first) as received, shared with the
/// input buffer, and what is needed to parse it.
#[derive(Debug, Clone)]
pub struct ClientCommand {
    payload: Bytes,
    caps: Capabilities,
    param_count: Option<u16>,
}

impl ClientCommand {
    /// The command byte (`Command::COM_*`).
    pub fn code(&self) -> u8 {
        // The frontend never emits an empty payload (it answers it as COM_SLEEP).
        self.payload.first().copied().unwrap_or(0)
    }

    /// The payload, command byte included, for relaying untouched. (A COM_CHANGE_USER the
    /// server would refuse as malformed comes as `11 00`, which every server refuses alike: see
    /// the [module docs](super#malformed-packets).)
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The negotiated capabilities the command was sent under.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The typed command, borrowing from the payload. Fails for a packet the frontend could not
    /// read but handed out for the server to judge (a short COM_STMT_CLOSE, a malformed
    /// COM_CHANGE_USER...), and for a COM_STMT_EXECUTE whose statement's parameter count the
    /// frontend never saw in a prepare-OK and the packet does not carry, or whose parameters were
    /// sent with COM_STMT_SEND_LONG_DATA (their values are not in the packet);
    /// [`StmtExecuteHeader::peek`] reads such a packet's statement id anyway.
    pub fn parse(&self) -> Result<Command<'_>, DecodeError> {
        let count = self.param_count;
        Command::parse(&self.payload, self.caps, |_| count)
    }
}

/// A column definition for [`Frontend::send_text_result`]: `name` of `column_type`, utf8mb4,
/// nullable, no table.
pub fn column(name: &[u8], column_type: ColumnType) -> ColumnDefinition41<'_> {
    let numeric = matches!(
        column_type,
        ColumnType::Tiny | ColumnType::Short | ColumnType::Long | ColumnType::LongLong
    );
    ColumnDefinition41 {
        catalog: b"def",
        schema: b"",
        table: b"",
        org_table: b"",
        name,
        org_name: name,
        // binary for numbers, utf8mb4_general_ci for text, as MySQL labels them
        collation: if numeric { 63 } else { 45 },
        column_length: if numeric { 21 } else { 1024 },
        column_type,
        flags: if numeric {
            ColumnFlags(ColumnFlags::NUM.0 | ColumnFlags::BINARY.0)
        } else {
            ColumnFlags(0)
        },
        decimals: if numeric { 0 } else { 0x1F },
        default_value: None,
    }
}

/// What handling one command packet came to.
enum Outcome {
    Emit(Option<u16>),
    Unknown,
    Quit,
    /// COM_CHANGE_USER without a body: MariaDB starts the handshake over (`rehandshake.rs`).
    Rehandshake,
}

/// A COM_CHANGE_USER the server refuses as malformed, whatever the capabilities: a user name and
/// nothing after it. MariaDB answers it with ERR 1047 "Unknown command" (after the second it waits
/// on every failed change), as it answers every malformed COM_CHANGE_USER.
const REFUSED_CHANGE_USER: &[u8] = &[Command::COM_CHANGE_USER, 0];

impl Frontend {
    /// Handles one packet in the `Idle` phase.
    ///
    /// A packet the frontend cannot read is handed out all the same, for the owner to relay:
    /// MariaDB reads a short packet past its end (COM_STMT_CLOSE, COM_STMT_RESET...) or answers
    /// it with an ERR and carries on, and only the server knows what it will do. Two exceptions:
    /// an empty packet, which MariaDB takes for COM_SLEEP and answers with ERR 1047 "Unknown
    /// command", and a malformed COM_CHANGE_USER, which is handed out as [`REFUSED_CHANGE_USER`]:
    /// whether the server refuses it depends on the capabilities, and the owner's server
    /// connection may not have the client's.
    pub(super) fn on_command(&mut self, mut payload: Bytes) {
        let known = |id: u32| self.param_counts.get(&id).copied();
        let outcome = match Command::parse(&payload, self.caps, known) {
            Ok(Command::Quit) => Outcome::Quit,
            Ok(Command::Unknown { .. }) => Outcome::Unknown,
            Ok(Command::StmtExecute(e)) => Outcome::Emit(known(e.header.statement_id)),
            Ok(Command::StmtClose { statement_id }) => {
                self.param_counts.remove(&statement_id);
                Outcome::Emit(None)
            }
            Ok(_) => Outcome::Emit(None),
            Err(_) if payload.is_empty() => Outcome::Unknown,
            Err(_) if payload[..] == [Command::COM_CHANGE_USER] => Outcome::Rehandshake,
            Err(_) if payload[0] == Command::COM_CHANGE_USER => {
                payload = Bytes::from_static(REFUSED_CHANGE_USER);
                Outcome::Emit(None)
            }
            // An execute with a sound header is handed out with what the frontend knows of the
            // statement: it may not have seen it prepared (the owner may know it), or parameters
            // sent with COM_STMT_SEND_LONG_DATA have no value in the packet.
            Err(_) => Outcome::Emit(
                StmtExecuteHeader::peek(&payload)
                    .ok()
                    .and_then(|h| known(h.statement_id)),
            ),
        };
        match outcome {
            Outcome::Quit => self.close_with(CloseReason::Quit, None),
            Outcome::Unknown => {
                self.encode_err(&ProtocolError::new(1047, "08S01", "Unknown command"));
                self.decoder.reset_sequence();
            }
            Outcome::Rehandshake => self.start_rehandshake(),
            Outcome::Emit(param_count) => self.emit_command(payload, param_count),
        }
    }

    /// Hands `payload` out as the outstanding command.
    pub(super) fn emit_command(&mut self, payload: Bytes, param_count: Option<u16>) {
        let code = payload.first().copied().unwrap_or(0);
        self.phase = Phase::Busy {
            code,
            first_packet: true,
        };
        self.events.push_back(super::Event::Command(ClientCommand {
            payload,
            caps: self.caps,
            param_count,
        }));
    }

    fn expect_busy(&mut self, call: &'static str) -> Result<(), FrontendError> {
        self.expect_phase(call, |p| matches!(p, Phase::Busy { .. }))
    }

    /// Sends one response packet `payload` (no header: the frontend frames it with the next
    /// sequence id). A prepare-OK sent this way records the statement's parameter count.
    pub fn send_packet(&mut self, _now: Instant, payload: &[u8]) -> Result<(), FrontendError> {
        self.expect_busy("send_packet")?;
        if let Phase::Busy {
            code,
            first_packet: first @ true,
        } = &mut self.phase
        {
            *first = false;
            if *code == Command::COM_STMT_PREPARE && payload.first() == Some(&0) {
                if let Ok(ok) = PrepareOk::parse(payload, self.caps) {
                    self.param_counts.insert(ok.statement_id, ok.num_params);
                }
            }
        }
        if self.tls.is_none() && self.plain.is_empty() {
            // Straight to the wire buffer (after everything queued, like a flush would put it):
            // one copy per relayed row, not two.
            let need = payload.len() + crate::wire::HEADER_LEN;
            if self.wire.capacity() - self.wire.len() < need {
                // Grown to powers of two from a few KiB rather than by the size of each row:
                // a result set reaches its size in a few doublings (each copies what is
                // encoded so far), and one that fits RETAINED_BUFFER keeps its buffer for the
                // next response instead of being released and regrown every time.
                // (`reserve` would double whatever size the buffer had, e.g. one a swap with
                // `plain` brought, and overshoot RETAINED_BUFFER.)
                let len = self.wire.len();
                let target = (len + need).max(WIRE_MIN_GROWTH).next_power_of_two();
                if !self.wire.try_reclaim(target - len) {
                    let mut grown = BytesMut::with_capacity(target);
                    grown.extend_from_slice(&self.wire);
                    self.wire = grown;
                }
            }
            self.decoder.encode_packet(&mut self.wire, payload);
        } else {
            self.decoder.encode_packet(&mut self.plain, payload);
            self.flush();
        }
        Ok(())
    }

    /// Sends an OK packet (encoded for the client's capabilities).
    pub fn send_ok(&mut self, _now: Instant, ok: &OkPacket<'_>) -> Result<(), FrontendError> {
        self.expect_busy("send_ok")?;
        self.encode_ok(ok);
        self.flush();
        Ok(())
    }

    /// Sends an OK with no rows affected, no info, and the frontend's status flags.
    pub fn send_ok_empty(&mut self, now: Instant) -> Result<(), FrontendError> {
        let status = self.status;
        self.send_ok(
            now,
            &OkPacket {
                eof: false,
                affected_rows: 0,
                last_insert_id: 0,
                status,
                warnings: 0,
                info: b"",
                session_state: Vec::new(),
            },
        )
    }

    /// Sends an ERR packet. The connection stays open.
    pub fn send_error(&mut self, _now: Instant, err: &ProtocolError) -> Result<(), FrontendError> {
        self.expect_busy("send_error")?;
        self.encode_err(err);
        self.flush();
        Ok(())
    }

    /// Sends a whole text-protocol result set: header, column definitions, rows (`None` is NULL)
    /// and the end marker (EOF, or OK under `CLIENT_DEPRECATE_EOF`), with the frontend's status.
    pub fn send_text_result<'r, R>(
        &mut self,
        _now: Instant,
        columns: &[ColumnDefinition41<'_>],
        rows: impl IntoIterator<Item = R>,
    ) -> Result<(), FrontendError>
    where
        R: AsRef<[Option<&'r [u8]>]>,
    {
        self.expect_busy("send_text_result")?;
        let deprecate_eof = self.caps.contains(Capabilities::DEPRECATE_EOF);
        let mut payload = Vec::new();
        ResultSetHeader {
            column_count: columns.len() as u64,
            metadata_follows: true,
        }
        .encode(self.caps, &mut payload);
        self.decoder.encode_packet(&mut self.plain, &payload);
        for col in columns {
            payload.clear();
            col.encode(&mut payload);
            self.decoder.encode_packet(&mut self.plain, &payload);
        }
        if !deprecate_eof {
            self.encode_eof();
        }
        for row in rows {
            payload.clear();
            TextRow::encode(row.as_ref(), &mut payload);
            self.decoder.encode_packet(&mut self.plain, &payload);
        }
        if deprecate_eof {
            let status = self.status;
            self.encode_ok(&OkPacket {
                eof: true,
                affected_rows: 0,
                last_insert_id: 0,
                status,
                warnings: 0,
                info: b"",
                session_state: Vec::new(),
            });
        } else {
            self.encode_eof();
        }
        if let Phase::Busy { first_packet, .. } = &mut self.phase {
            *first_packet = false;
        }
        self.flush();
        Ok(())
    }

    fn encode_eof(&mut self) {
        let mut payload = Vec::new();
        EofPacket {
            warnings: 0,
            status: self.status,
        }
        .encode(&mut payload, self.caps);
        self.decoder.encode_packet(&mut self.plain, &payload);
    }

    /// The response to the outstanding command is complete: the next command (already buffered,
    /// or the next to arrive) comes out as an event.
    pub fn end_response(&mut self, _now: Instant) -> Result<(), FrontendError> {
        self.expect_busy("end_response")?;
        self.phase = Phase::Idle;
        self.read_command_packet = false;
        self.decoder.reset_sequence();
        self.process();
        self.flush();
        Ok(())
    }

    /// Sets the status flags the frontend writes into its own OK and EOF packets (e.g. clear
    /// `AUTOCOMMIT` or set `IN_TRANS` as the session changes).
    pub fn set_status(&mut self, _now: Instant, status: crate::wire::ServerStatus) {
        self.status = status;
    }
}
