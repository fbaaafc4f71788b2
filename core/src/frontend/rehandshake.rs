//! COM_CHANGE_USER without a body (the command byte alone). MariaDB 10.11 takes it for a new
//! login on the same connection: it sends a fresh greeting (sequence id 1, a new salt, the same
//! connection id) and reads a HandshakeResponse41 (id 2), as at connect time. The frontend does
//! the same, and turns the response into the COM_CHANGE_USER it amounts to, which the owner
//! handles like any other (the proxy session has the backend check the password):
//!
//! ```text
//! Idle ── 11 ──► greeting (id 1) ──► Rehandshake
//!   Rehandshake ── HandshakeResponse41 (id 2) ─► Event::Command(COM_CHANGE_USER), Busy; the
//!                                                response continues at id 3
//!               ── other packet (id 2) ─► ERR 1043 "Bad handshake" (id 3), Idle
//!               ── packet out of order ─► ERR 1156 (id 2), ERR 1156 (id 0), Closed
//! ```
//!
//! The answers are MariaDB's (measured on a raw socket; `tests/tests/proxy_malformed.rs` compares
//! them), except what a proxy cannot reproduce: MariaDB narrows the connection's capabilities to
//! those of the new response (ferry keeps the negotiated ones), waits a second before every
//! failure it answers, and resets the session and counts a failed change even when the response
//! is refused here before any server sees it.

use bytes::{Bytes, BytesMut};

use crate::wire::{ChangeUser, ClientHello, Command, HandshakeResponse41, HandshakeV10};
use crate::ProtocolError;

use super::handshake::bad_handshake;
use super::{auth, Frontend, Phase};

impl Frontend {
    /// COM_CHANGE_USER without a body: a new greeting, then wait for the response.
    pub(super) fn start_rehandshake(&mut self) {
        self.salt = auth::fresh_salt(self.rng.as_mut());
        let mut greeting = Vec::new();
        HandshakeV10::new(
            self.config.server_version.as_bytes(),
            self.connection_id,
            &self.salt,
            self.config.advertised_capabilities(),
            self.config.collation,
            self.status,
            self.config.default_plugin.name().as_bytes(),
        )
        .encode(&mut greeting);
        self.decoder.encode_packet(&mut self.plain, &greeting);
        self.phase = Phase::Rehandshake;
    }

    /// The client's answer to the greeting.
    pub(super) fn on_rehandshake_response(&mut self, payload: Bytes) {
        let Ok(ClientHello::Response(response)) = ClientHello::parse(&payload) else {
            // Also an SSLRequest: MariaDB answers it so on a connection without TLS, and ferry
            // does not upgrade a connection in the middle of a session.
            self.encode_err(&bad_handshake());
            self.decoder.reset_sequence();
            self.phase = Phase::Idle;
            return;
        };
        let change = change_user_of(&response);
        let mut command = BytesMut::new();
        Command::ChangeUser(change).encode(self.caps, &mut command);
        // The response continues the exchange: the owner's answer takes the next id (3).
        self.emit_command(command.freeze(), None);
    }

    /// A decode error while waiting for the response. Out of order (a client that took the
    /// greeting for an answer and sent its next command), MariaDB sends the ERR twice, with the
    /// exchange's next id and then with 0, and closes.
    pub(super) fn fail_rehandshake(&mut self, err: ProtocolError, out_of_order: bool) {
        if out_of_order {
            self.encode_err(&err);
            self.decoder.reset_sequence();
        }
        self.fail(err);
    }
}

/// The COM_CHANGE_USER a handshake response amounts to. Its auth data was computed over the new
/// greeting's salt, which no server issued; a proxy has the server ask again anyway.
fn change_user_of<'a>(response: &HandshakeResponse41<'a>) -> ChangeUser<'a> {
    ChangeUser {
        user: response.username,
        auth_response: response.auth_response,
        database: response.database.unwrap_or_default(),
        collation: Some(u16::from(response.collation)),
        auth_plugin: response.auth_plugin_name,
        connect_attrs: Some(response.connect_attrs.clone()),
    }
}
