//! The connection phase: the server's greeting, the TLS upgrade, the HandshakeResponse41 and the
//! auth exchange up to the OK (`page_protocol_connection_phase`).

use bytes::{Bytes, BytesMut};

use super::auth::{self, ClientAuth};
use super::{
    Backend, BackendError, ConnectedInfo, Event, PacketKind, SessionChanges, State, Timer,
};
use crate::auth::AuthPlugin;
use crate::tls::{client_config, TlsSession};
use crate::wire::{
    AuthSwitchRequest, Capabilities, ErrPacket, HandshakeResponse41, HandshakeV10, OkPacket,
    SslRequest,
};

impl Backend {
    pub(super) fn on_greeting(&mut self, payload: Bytes) -> Result<(), BackendError> {
        if payload.first() == Some(&0xFF) {
            let err = ErrPacket::parse(&payload, Capabilities::EMPTY)?;
            let error = err.to_protocol_error();
            self.events.push_back(Event::AuthFailed {
                error: error.clone(),
                payload,
            });
            return Err(BackendError::AuthFailed(error));
        }
        let hello = HandshakeV10::parse(&payload)?;
        self.greeted = true;
        if hello.protocol_version != 10 {
            return Err(BackendError::Unsupported(format!(
                "protocol version {}",
                hello.protocol_version
            )));
        }
        let server = hello.capabilities;
        for (flag, name) in [
            (Capabilities::PROTOCOL_41, "CLIENT_PROTOCOL_41"),
            (Capabilities::SECURE_CONNECTION, "CLIENT_SECURE_CONNECTION"),
        ] {
            if !server.contains(flag) {
                return Err(BackendError::Unsupported(format!("server without {name}")));
            }
        }
        let tls_config = match &self.config.tls {
            Some(t) if server.contains(Capabilities::SSL) => Some(t.clone()),
            Some(t) if t.required => {
                return Err(BackendError::Unsupported(
                    "TLS is required but the server does not offer it".into(),
                ))
            }
            _ => None,
        };
        self.server_caps = server;
        self.caps = self.config.negotiate(server, tls_config.is_some());
        self.server_version = String::from_utf8_lossy(hello.server_version).into_owned();
        self.connection_id = hello.connection_id;
        self.status = hello.status;
        let mut salt = hello.scramble_1.to_vec();
        salt.extend_from_slice(hello.scramble_2);
        self.salt = salt;
        let max_packet = u32::try_from(self.config.max_packet_size).unwrap_or(u32::MAX);

        if let Some(t) = tls_config {
            let request = SslRequest {
                capabilities: self.caps,
                max_packet_size: max_packet,
                collation: self.config.collation,
                mariadb_capabilities: 0,
            };
            let mut out = BytesMut::new();
            request.encode(&mut out);
            self.write_payload(out.freeze());
            if self.decoder.buffered_len() > 0 {
                return Err(BackendError::UnexpectedPacket {
                    state: "starting TLS (the server sent data before the TLS handshake)",
                });
            }
            self.tls = Some(Box::new(TlsSession::client(
                client_config(&t.trust)?,
                &t.server_name,
            )?));
        }

        if let Some(fixed) = self.config.fixed_auth.clone() {
            // Truncating the data (what the encoder does without the flag) would corrupt it.
            if fixed.auth_data.len() > 250
                && !self
                    .caps
                    .contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA)
            {
                return Err(BackendError::Unsupported(
                    "auth data of 251 bytes or more needs CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA"
                        .into(),
                ));
            }
            self.send_handshake_response(max_packet, fixed.plugin.as_bytes(), &fixed.auth_data);
            self.auth_plugin = AuthPlugin::from_bytes(fixed.plugin.as_bytes());
            // A one-step plugin: OK, ERR, and (refused below) an auth switch are all that follow.
            self.state = State::Authenticating(ClientAuth::OneShot(self.auth_plugin.clone()));
            return Ok(());
        }
        if let Some(relayed) = self.config.relayed_auth.clone() {
            self.send_handshake_response(
                max_packet,
                relayed.plugin.as_bytes(),
                &relayed.auth_response,
            );
            self.state = State::RelayedAuth {
                awaiting_owner: false,
            };
            return Ok(());
        }
        let plugin = auth::initial_plugin(hello.auth_plugin_name, &self.config.secret);
        let (auth, response) = auth::start(
            plugin.clone(),
            &self.salt,
            &self.auth_context(&self.config.secret),
        )?;
        self.auth_plugin = plugin.clone();
        self.send_handshake_response(max_packet, plugin.name().as_bytes(), &response);
        self.state = State::Authenticating(auth);
        Ok(())
    }

    fn send_handshake_response(&mut self, max_packet: u32, plugin: &[u8], response: &[u8]) {
        let attrs: Vec<(&[u8], &[u8])> = self
            .config
            .connect_attrs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let hello = HandshakeResponse41 {
            capabilities: self.caps,
            max_packet_size: max_packet,
            collation: self.config.collation,
            mariadb_capabilities: 0,
            username: self.config.user.as_bytes(),
            auth_response: response,
            database: self.config.database.as_deref().map(str::as_bytes),
            auth_plugin_name: Some(plugin),
            connect_attrs: attrs,
            zstd_compression_level: None,
        };
        let mut out = BytesMut::new();
        hello.encode(&mut out);
        self.write_payload(out.freeze());
    }

    /// A relayed login ([`super::BackendConfig::relayed_auth`]): OK and ERR end it as usual; auth
    /// switches and more-data packets go to the owner, who answers with `send_auth_data` (except
    /// caching_sha2's fast-auth success, which the client does not answer either).
    pub(super) fn on_relayed_auth_packet(
        &mut self,
        payload: Bytes,
        awaiting_owner: bool,
    ) -> Result<(), BackendError> {
        if awaiting_owner {
            return Err(BackendError::UnexpectedPacket {
                state: "waiting for the owner's auth data",
            });
        }
        let kind = match payload.first() {
            Some(0x00) | Some(0xFF) => {
                let plugin = ClientAuth::OneShot(self.auth_plugin.clone());
                return self.on_auth_packet(plugin, payload);
            }
            Some(0xFE) => {
                let switch = AuthSwitchRequest::parse(&payload)?;
                self.auth_plugin = AuthPlugin::from_bytes(switch.plugin_name);
                self.salt = crate::auth::auth_salt(switch.data).to_vec();
                PacketKind::AuthSwitchRequest
            }
            Some(0x01) => PacketKind::AuthMoreData,
            _ => {
                return Err(BackendError::UnexpectedPacket {
                    state: "relaying a login",
                })
            }
        };
        let awaiting_owner = !super::is_fast_auth_success(&payload);
        self.events.push_back(Event::Response { payload, kind });
        self.state = State::RelayedAuth { awaiting_owner };
        Ok(())
    }

    pub(super) fn on_auth_packet(
        &mut self,
        mut auth: ClientAuth,
        payload: Bytes,
    ) -> Result<(), BackendError> {
        match payload.first() {
            Some(0x00) => {
                let ok = OkPacket::parse(&payload, self.caps)?;
                let mut session = SessionChanges::default();
                session.apply(&ok.session_state);
                self.status = ok.status;
                self.absorb_session(&session);
                self.set_timer(Timer::Connect, None);
                self.state = State::Ready;
                self.events.push_back(Event::Connected(ConnectedInfo {
                    server_version: self.server_version.clone(),
                    connection_id: self.connection_id,
                    capabilities: self.caps,
                    server_capabilities: self.server_caps,
                    status: self.status,
                    auth_plugin: auth.plugin(),
                    tls: self.tls.is_some(),
                    session,
                }));
                Ok(())
            }
            Some(0xFF) => {
                let error = ErrPacket::parse(&payload, self.caps)?.to_protocol_error();
                self.events.push_back(Event::AuthFailed {
                    error: error.clone(),
                    payload,
                });
                Err(BackendError::AuthFailed(error))
            }
            Some(0xFE) if self.config.fixed_auth.is_some() => Err(BackendError::UnexpectedPacket {
                state: "a fixed-auth login (only OK or ERR may answer it)",
            }),
            Some(0xFE) => {
                let switch = AuthSwitchRequest::parse(&payload)?;
                let plugin = AuthPlugin::from_bytes(switch.plugin_name);
                let (next, response) = auth::start(
                    plugin.clone(),
                    switch.data,
                    &self.auth_context(&self.config.secret),
                )?;
                self.auth_plugin = plugin;
                // The new plugin's salt replaces the greeting's (COM_CHANGE_USER reuses it).
                self.salt = crate::auth::auth_salt(switch.data).to_vec();
                self.write_payload(Bytes::from(response));
                self.state = State::Authenticating(next);
                Ok(())
            }
            Some(0x01) => {
                if let Some(reply) = auth.handle_more_data(&payload, self.rng.as_mut())? {
                    self.write_payload(Bytes::from(reply));
                }
                self.state = State::Authenticating(auth);
                Ok(())
            }
            _ => Err(BackendError::UnexpectedPacket {
                state: "authenticating",
            }),
        }
    }
}
