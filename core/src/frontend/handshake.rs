//! The connection phase: the client's first packet (SSLRequest or handshake response), the TLS
//! upgrade, and the authentication steps up to the login decision. Transitions are drawn in the
//! [module docs](super).

use bytes::Bytes;

use crate::auth::AuthPlugin;
use crate::tls::TlsSession;
use crate::wire::{Capabilities, ClientHello, HandshakeResponse41};
use crate::ProtocolError;

use super::auth::{AuthContext, ProxyAuth, Step};
use super::{AuthMode, Authenticated, ClientLogin, CloseReason, Event, Frontend, Phase};

impl Frontend {
    pub(super) fn on_hello(&mut self, payload: Bytes) {
        let hello = match ClientHello::parse(&payload) {
            Ok(hello) => hello,
            Err(_) => return self.fail(bad_handshake()),
        };
        match hello {
            ClientHello::Pre41 { .. } => {
                // The client cannot read a 4.1 ERR; answer in the old format.
                self.caps = Capabilities::EMPTY;
                self.fail(ProtocolError::new(
                    1251,
                    "08004",
                    "Client does not support authentication protocol requested by server; \
                     consider upgrading MySQL client",
                ));
            }
            ClientHello::SslRequest(_) if self.tls.is_none() => self.start_tls(),
            ClientHello::SslRequest(_) => self.fail(bad_handshake()),
            ClientHello::Response(response) => {
                if self.config.require_tls && self.tls.is_none() {
                    return self.fail(ProtocolError::new(
                        3159,
                        "HY000",
                        "Connections using insecure transport are prohibited while \
                         --require_secure_transport=ON.",
                    ));
                }
                self.on_handshake_response(&response, &payload);
            }
        }
    }

    fn start_tls(&mut self) {
        let Some(config) = self.config.tls.clone() else {
            // CLIENT_SSL was not offered: the client broke the handshake.
            return self.fail(bad_handshake());
        };
        self.flush();
        let mut tls = match TlsSession::server(config) {
            Ok(tls) => tls,
            Err(e) => return self.close_with(CloseReason::Tls(e), None),
        };
        // Bytes after the SSLRequest are the start of the TLS handshake.
        let ciphertext = self.decoder.take_buffered();
        if let Err(e) = tls.read_ciphertext(&ciphertext, self.decoder.buffer_mut()) {
            return self.close_with(CloseReason::Tls(e), None);
        }
        self.tls = Some(Box::new(tls));
        self.phase = Phase::AwaitHello;
    }

    fn on_handshake_response(&mut self, response: &HandshakeResponse41<'_>, payload: &Bytes) {
        self.caps = response
            .capabilities
            .intersect(self.config.advertised_capabilities());
        let user = String::from_utf8_lossy(response.username).into_owned();
        self.user = Some(user.clone());
        self.database = response
            .database
            .filter(|d| !d.is_empty())
            .map(|d| String::from_utf8_lossy(d).into_owned());
        let plugin = response.auth_plugin_name.map(AuthPlugin::from_bytes);
        match &self.config.auth {
            AuthMode::Passthrough => {
                let login = ClientLogin {
                    user,
                    database: self.database.clone(),
                    plugin,
                    auth_response: payload.slice_ref(response.auth_response),
                    salt: self.salt,
                    client_capabilities: response.capabilities,
                    collation: response.collation,
                    attributes: owned_attributes(response),
                    tls: self.tls.is_some(),
                };
                self.phase = Phase::PassthroughOwner;
                self.events.push_back(Event::ClientLogin(login));
            }
            AuthMode::Proxy { .. } => {
                let salt = self.salt;
                let (auth, step) = ProxyAuth::start(
                    &mut self.auth_context_parts(),
                    &user,
                    plugin,
                    response.auth_response,
                    &salt,
                );
                self.pending_login = Some((response.collation, owned_attributes(response)));
                self.apply_step(auth, step);
            }
        }
    }

    pub(super) fn auth_context_parts(&mut self) -> AuthContext<'_> {
        let (users, sha2_cache, rsa) = match &self.config.auth {
            AuthMode::Proxy {
                users,
                sha2_cache,
                rsa,
            } => (Some(&**users), sha2_cache.as_ref(), rsa.as_deref()),
            AuthMode::Passthrough => (None, None, None),
        };
        AuthContext {
            users,
            sha2_cache,
            rsa,
            host: &self.peer_host,
            tls: self.tls.is_some(),
            rng: self.rng.as_mut(),
        }
    }

    pub(super) fn apply_step(&mut self, auth: ProxyAuth, step: Step) {
        match step {
            Step::Send(payload) => {
                self.decoder.encode_packet(&mut self.plain, &payload);
                self.phase = Phase::ProxyAuth(auth);
            }
            Step::Accept {
                before_ok,
                secret,
                plugin,
            } => {
                if let Some(payload) = before_ok {
                    self.decoder.encode_packet(&mut self.plain, &payload);
                }
                let (collation, attributes) = self.pending_login.take().unwrap_or_default();
                self.events.push_back(Event::Authenticated(Authenticated {
                    user: self.user.clone().unwrap_or_default(),
                    database: self.database.clone(),
                    plugin,
                    secret,
                    capabilities: self.caps,
                    collation,
                    attributes,
                    tls: self.tls.is_some(),
                }));
                self.phase = Phase::AwaitLogin;
                if self.config.auto_accept_login {
                    self.enter_command_phase();
                }
            }
            Step::Deny(err) => self.fail(err),
        }
    }
}

/// ERR 1043 `08S01` "Bad handshake": what MySQL sends for anything wrong before login.
pub(super) fn bad_handshake() -> ProtocolError {
    ProtocolError::new(1043, "08S01", "Bad handshake")
}

fn owned_attributes(response: &HandshakeResponse41<'_>) -> Vec<(String, String)> {
    response
        .connect_attrs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}
