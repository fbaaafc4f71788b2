//! The command phase: each client command goes to the backend as received, each response packet
//! comes back to the client as received (re-framed with the client's sequence ids), and only OK
//! packets are rewritten, when exactly one side tracks session state (`CLIENT_SESSION_TRACK`
//! changes how an OK's info is framed): stripped of the session-state section for a client that
//! did not ask for it, or with the info length-prefixed for a client that did when the backend
//! cannot track.
//!
//! ```text
//! Ready ── Command ──► send_raw_command ─┬─ no response (STMT_CLOSE, SEND_LONG_DATA) ─► Ready
//!                                        └─► Command ── Response* ──► client
//!   Command ── 0xFB (LOCAL INFILE) ─► client; client packets ─► backend until the empty one
//!   Command ── auth switch / more data (COM_CHANGE_USER) ─► client; its answer ─► backend
//!              (under proxy auth, checked against ferry's user table first: change_user.rs)
//!   Command ── ResponseComplete ─► state, end_response, CommandDone ─► Ready (or close if
//!              shutting down)
//! ```

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::backend::{PacketKind, RelayedAuth, ResponseSummary};
use crate::frontend::ClientCommand;
use crate::wire::{Capabilities, ChangeUser, Command, OkPacket};
use crate::ProtocolError;

use super::{ClientData, CloseReason, Event, InFlight, MigrationMode, Phase, ProxySession, Timer};

/// ERR 1153 for a client packet over the session's cap.
fn too_large() -> ProtocolError {
    ProtocolError::new(
        1153,
        "08S01",
        "Got a packet bigger than 'max_allowed_packet' bytes",
    )
}

impl ProxySession {
    pub(super) fn on_command(&mut self, now: Instant, command: ClientCommand) {
        if matches!(self.phase, Phase::Internal(_)) {
            // ferry's own work holds the backend: the command runs when it is done (and its
            // latency counts the wait).
            self.held_arrived = Some(now);
            return self.hold_command(now, command);
        }
        if !matches!(self.phase, Phase::Ready) {
            return;
        }
        self.command_started = self.held_arrived.take().unwrap_or(now);
        let mut payload = command.payload().clone();
        if payload.len() > self.config.client_packet_cap() {
            self.close_reason = Some(CloseReason::Frontend(crate::frontend::CloseReason::Error(
                too_large(),
            )));
            self.release_backend(now);
            return self.frontend.close_with_error(now, too_large());
        }
        let code = command.code();
        let mut answered_here = false;
        if self.multiplexing() {
            answered_here = self.mux_on_command(&payload);
            if !answered_here && self.backend.is_none() {
                self.held_arrived = Some(self.command_started);
                self.hold_command(now, command);
                return self.start_acquire(now, 0);
            }
        }
        if let Some(id) = self.stmt_ids.as_ref().and_then(|ids| ids.unknown(&payload)) {
            return self.refuse_unknown_statement(now, code, id);
        }
        self.state.on_command(&payload, command.capabilities());
        if self.config.migration.mode != MigrationMode::Off {
            self.track.on_command(&payload);
            if code == Command::COM_STMT_EXECUTE {
                self.track.on_execute(&payload, &self.state);
            }
        }
        if self.config.migration.read_retry {
            self.note_retry(&payload);
        }
        if let Some(ids) = self.stmt_ids.as_mut() {
            payload = ids.rewrite(payload, &self.track.param_types);
        }
        if answered_here {
            // Tracked (and forgotten by the id map) like any close; no backend sees it.
            return self.done_without_response(now, code);
        }
        if code == Command::COM_CHANGE_USER {
            let change = match command.parse() {
                Ok(Command::ChangeUser(change)) => Some(change),
                _ => None,
            };
            self.begin_change_user(change.as_ref().map(|c| c.user));
            if let Some(change) = change {
                payload = self.force_auth_switch(change).unwrap_or(payload);
            }
        }
        let Some(backend) = self.backend_mut() else {
            return;
        };
        if backend.send_raw_command(now, payload).is_err() {
            // Only a closed backend refuses (Ready means idle); its Closed event was handled.
            return;
        }
        self.set_timer(Timer::Idle, None);
        if self.backend_mut().is_some_and(|b| b.is_idle()) {
            // No response comes (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
            self.done_without_response(now, code);
        } else {
            self.phase = Phase::Command(InFlight {
                code,
                client_data: ClientData::None,
            });
        }
    }

    /// A command that has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) is done: the
    /// session is ready for the next.
    pub(super) fn done_without_response(&mut self, now: Instant, code: u8) {
        self.done_here(now, code, false);
    }

    /// A command naming statement `id`, which the client does not hold, answered as MariaDB
    /// answers it: ERR 1243 for an execute, fetch or reset, nothing for a close or long data.
    fn refuse_unknown_statement(&mut self, now: Instant, code: u8, id: u32) {
        let to = match code {
            Command::COM_STMT_EXECUTE => "mysqld_stmt_execute",
            Command::COM_STMT_FETCH => "mysqld_stmt_fetch",
            Command::COM_STMT_RESET => "mysqld_stmt_reset",
            _ => return self.done_without_response(now, code),
        };
        let message = format!("Unknown prepared statement handler ({id}) given to {to}");
        let _ = self
            .frontend
            .send_error(now, &ProtocolError::new(1243, "HY000", message));
        self.done_here(now, code, true);
    }

    /// A command ferry answered itself (or that has no answer) is done.
    fn done_here(&mut self, now: Instant, code: u8, error: bool) {
        let _ = self.frontend.end_response(now);
        self.events.push_back(Event::CommandDone {
            code,
            error,
            duration: now.saturating_duration_since(self.command_started),
        });
        self.enter_ready(now);
        if self.shutting_down {
            self.finish_shutdown(now);
        } else {
            self.on_ready(now);
        }
    }

    /// COM_CHANGE_USER is re-encoded naming a plugin no server knows, so the backend answers
    /// with an auth switch carrying its own salt (the client's scramble was computed over a
    /// salt the backend never issued); the exchange is then relayed like a passthrough login.
    /// The backend checks the new user's password in both auth modes; under `proxy` auth ferry
    /// checks the client's answer against its own table before the backend sees it.
    fn force_auth_switch(&self, mut change: ChangeUser<'_>) -> Option<Bytes> {
        let caps = self.backend()?.capabilities();
        change.auth_plugin = Some(RelayedAuth::FORCE_SWITCH_PLUGIN.as_bytes());
        if change.collation.is_none() {
            change.collation = Some(u16::from(crate::backend::DEFAULT_COLLATION));
        }
        let mut out = BytesMut::new();
        Command::ChangeUser(change).encode(caps, &mut out);
        Some(out.freeze())
    }

    /// A client packet that belongs to the command in flight.
    pub(super) fn on_command_packet(&mut self, now: Instant, data: Bytes) {
        let Phase::Command(inflight) = self.phase else {
            return;
        };
        if data.len() > self.config.client_packet_cap() {
            self.close_reason = Some(CloseReason::Frontend(crate::frontend::CloseReason::Error(
                too_large(),
            )));
            self.release_backend(now);
            return self.frontend.close_with_error(now, too_large());
        }
        let Some(backend) = self.backend_mut() else {
            return;
        };
        match inflight.client_data {
            ClientData::LocalInfile if data.is_empty() => {
                let _ = backend.finish_local_infile(now);
                self.set_client_data(ClientData::None);
            }
            ClientData::LocalInfile => {
                let _ = backend.send_local_infile_bytes(now, data);
                let _ = self.frontend.read_command_packet(now);
            }
            ClientData::AuthData => {
                let data = self.checked_change_user_answer(data);
                let Some(backend) = self.backend_mut() else {
                    return;
                };
                let _ = backend.send_auth_data(now, &data);
                self.set_client_data(ClientData::None);
            }
            ClientData::None => {}
        }
    }

    fn set_client_data(&mut self, client_data: ClientData) {
        if let Phase::Command(inflight) = &mut self.phase {
            inflight.client_data = client_data;
        }
    }

    /// One response packet: to the client, untouched unless it is an OK to strip.
    pub(super) fn relay_response(&mut self, now: Instant, payload: Bytes, kind: PacketKind) {
        // Part of the answer reaches the client: the statement can no longer run again.
        self.retry = None;
        // Rows (nearly every packet) only pass the kind tests: the capabilities are looked at
        // for the few packets that can end a response or start an exchange.
        let then = match kind {
            PacketKind::Row | PacketKind::ColumnDefinition => None,
            PacketKind::PrepareOk if self.stmt_ids.is_some() => {
                return self.relay_prepare_ok(now, payload)
            }
            PacketKind::Ok | PacketKind::Eof => {
                if kind == PacketKind::Ok {
                    if let Some(err) = self.unchecked_change_user() {
                        return self.refuse_unchecked_change(now, err);
                    }
                }
                if self.rewrite_ok(now, &payload, kind) {
                    return;
                }
                None
            }
            PacketKind::LocalInfileRequest => Some(ClientData::LocalInfile),
            PacketKind::AuthSwitchRequest | PacketKind::AuthMoreData
                if payload[..] != crate::auth::caching_sha2::FAST_AUTH_SUCCESS =>
            {
                if kind == PacketKind::AuthSwitchRequest {
                    self.note_change_user_switch(&payload);
                }
                Some(ClientData::AuthData)
            }
            _ => None,
        };
        // The frontend refuses only when closed (client gone): nothing to deliver then.
        let _ = self.frontend.send_packet_bytes(now, payload);
        if let Some(client_data) = then {
            self.set_client_data(client_data);
            let _ = self.frontend.read_command_packet(now);
        }
    }

    /// An OK (or an OK-format EOF) when exactly one side tracks session state: re-encoded for
    /// the client and sent; false when it goes untouched.
    fn rewrite_ok(&mut self, now: Instant, payload: &[u8], kind: PacketKind) -> bool {
        let backend_caps = self
            .backend()
            .map_or(Capabilities::EMPTY, |b| b.capabilities());
        let client_caps = self.frontend.capabilities();
        let ok_format = kind == PacketKind::Ok
            || (kind == PacketKind::Eof && backend_caps.contains(Capabilities::DEPRECATE_EOF));
        // The two sides frame an OK's info differently unless both or neither track sessions.
        let client_tracks = client_caps.contains(Capabilities::SESSION_TRACK);
        let bridge = backend_caps.contains(Capabilities::SESSION_TRACK) != client_tracks;
        if !(ok_format && bridge) {
            return false;
        }
        let Ok(ok) = OkPacket::parse(payload, backend_caps) else {
            return false;
        };
        self.scratch.clear();
        if client_tracks {
            ok.encode(&mut self.scratch, client_caps);
        } else {
            ok.encode_without_session_state(&mut self.scratch, client_caps);
        }
        let _ = self.frontend.send_packet(now, &self.scratch);
        true
    }

    /// A prepare-OK after a replay migration: the client gets an id of its own (the backend's
    /// could collide with one it holds).
    fn relay_prepare_ok(&mut self, now: Instant, payload: Bytes) {
        let Some(ids) = self.stmt_ids.as_mut() else {
            return;
        };
        let Some(backend) = payload
            .get(1..5)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        else {
            let _ = self.frontend.send_packet_bytes(now, payload);
            return;
        };
        let client = ids.assign(backend);
        self.scratch.clear();
        self.scratch.extend_from_slice(&payload);
        self.scratch[1..5].copy_from_slice(&client.to_le_bytes());
        let _ = self.frontend.send_packet(now, &self.scratch);
    }

    pub(super) fn on_response_complete(&mut self, now: Instant, mut summary: ResponseSummary) {
        let Phase::Command(inflight) = self.phase else {
            return;
        };
        let mode = self.config.migration.mode;
        let backend_stmt = summary.prepared.as_ref().map(|ok| ok.statement_id);
        if mode != MigrationMode::Off {
            // The state and the tracker know statements by the client's ids.
            let client_id = summary.prepared.as_mut().map(|ok| {
                if let Some(id) = self
                    .stmt_ids
                    .as_ref()
                    .and_then(|m| m.client_id(ok.statement_id))
                {
                    ok.statement_id = id;
                }
                ok.statement_id
            });
            self.track
                .on_response(&summary, client_id, mode == MigrationMode::Replay);
            if let Some(text) = client_id.and_then(|id| self.track.statement_sql.get_mut(&id)) {
                // A prepare changes no schema: the current one is the statement's.
                text.schema = self.state.schema.as_deref().map(Into::into);
            }
        }
        if self.multiplexing() {
            let client_stmt = summary.prepared.as_ref().map(|ok| ok.statement_id);
            let prepared = client_stmt.zip(backend_stmt);
            self.mux_on_response(&summary, prepared);
        }
        if summary.command == Command::COM_CHANGE_USER && self.finish_change_user(summary.is_ok()) {
            // ferry holds the new user's credential: a migration can log in as them.
            self.track.changed_user = false;
        }
        let reset = summary.is_ok()
            && matches!(
                summary.command,
                Command::COM_RESET_CONNECTION | Command::COM_CHANGE_USER
            );
        if reset {
            if let Some(ids) = self.stmt_ids.as_mut() {
                ids.clear();
            }
            self.snapshot.reset();
        } else {
            self.note_snapshot(&summary);
        }
        self.retry = None;
        self.state.on_response(&summary);
        if summary.command == Command::COM_CHANGE_USER && summary.is_ok() {
            if let Some(user) = self.state.user.clone() {
                self.events.push_back(Event::UserChanged { user });
            }
        }
        self.frontend.set_status(now, summary.status);
        let _ = self.frontend.end_response(now);
        self.events.push_back(Event::CommandDone {
            code: inflight.code,
            error: summary.error.is_some(),
            duration: now.saturating_duration_since(self.command_started),
        });
        self.enter_ready(now);
        if self.shutting_down {
            self.finish_shutdown(now);
        } else if reset {
            // The server forgot ferry's session tracking with the rest.
            self.start_tracking(now);
        } else {
            self.on_ready(now);
        }
    }

    /// The backend accepted a COM_CHANGE_USER ferry did not check: its session is now a user
    /// ferry never verified, so the client gets `err` and the session ends.
    fn refuse_unchecked_change(&mut self, now: Instant, err: ProtocolError) {
        self.change_user = None;
        self.close_reason = Some(CloseReason::Frontend(crate::frontend::CloseReason::Error(
            err.clone(),
        )));
        self.release_backend(now);
        self.frontend.close_with_error(now, err);
    }
}
