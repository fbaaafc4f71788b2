//! Server-side authentication in `proxy` mode: one state machine per login, over the plugins of
//! [`crate::auth`].
//!
//! ```text
//! start(user, client plugin, response to the greeting salt)
//!   unknown user ──────────────────────────────────────────────► Deny 1045
//!   client plugin ≠ account plugin ── Send(AuthSwitchRequest,
//!                                     fresh salt) ─────────────► AwaitSwitchResponse
//!   client plugin = account plugin ── verify(plugin, response) ─► (below)
//! AwaitSwitchResponse ── response ── verify(plugin, response) ─► (below)
//!
//! verify(mysql_native_password): scramble matches stage-2 hash ─► Accept (secret = SHA1(pw))
//!                                otherwise ─────────────────────► Deny 1045
//! verify(mysql_clear_password):  over TLS and password matches ─► Accept (secret = pw), else Deny
//! verify(caching_sha2_password): user in the Sha2Cache and the
//!                                fast scramble matches ─────────► Accept, before OK: 0x01 0x03
//!                                otherwise ── CachingSha2Server (fast path on a stored cache
//!                                value; else 0x01 0x04 → TLS cleartext or RSA) ─► Sha2
//! Sha2 ── each client packet ── CachingSha2Server ─► Send(more data) | Accept | Deny
//!   Accept after full authentication stores SHA256(SHA256(pw)) in the Sha2Cache.
//! ```
//!
//! Unknown users and wrong passwords get the same ERR (1045 `28000`, "using password: YES" or
//! "NO" after an empty response), so a client cannot tell them apart.

use std::sync::Arc;

use crate::auth::caching_sha2::{
    self, CachingSha2Server, ServerAction, Sha256Stage2Hash, FAST_AUTH_SUCCESS,
};
use crate::auth::{access_denied, clear, AuthError, AuthPlugin, ClientSecret, RsaKeyPair};
use crate::wire::AuthSwitchRequest;
use crate::{ProtocolError, RandomSource};

use super::users::{Sha2Cache, UserEntry, UserTable};

/// What the connection does after a step of the exchange.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this payload (AuthSwitchRequest or AuthMoreData) and feed the client's next packet to
    /// [`ProxyAuth::handle`].
    Send(Vec<u8>),
    /// Credentials check out: send `before_ok` (if any), then the login is the owner's call.
    Accept {
        before_ok: Option<Vec<u8>>,
        secret: ClientSecret,
        plugin: AuthPlugin,
    },
    /// Send this ERR and close.
    Deny(ProtocolError),
}

/// What the exchange needs from the configuration and the connection.
pub(crate) struct AuthContext<'a> {
    pub(crate) users: Option<&'a UserTable>,
    pub(crate) sha2_cache: Option<&'a Arc<dyn Sha2Cache>>,
    pub(crate) rsa: Option<&'a RsaKeyPair>,
    pub(crate) host: &'a str,
    pub(crate) tls: bool,
    pub(crate) rng: &'a mut dyn RandomSource,
}

#[derive(Debug)]
enum State {
    AwaitSwitchResponse { plugin: AuthPlugin, salt: [u8; 20] },
    Sha2(Box<CachingSha2Server>),
    Done,
}

/// One login being checked against the user table.
#[derive(Debug)]
pub(crate) struct ProxyAuth {
    user: String,
    entry: Option<UserEntry>,
    state: State,
}

/// A fresh salt: 20 bytes in 1..=127, never NUL (clients treat the salt as a C string).
pub(crate) fn fresh_salt(rng: &mut dyn RandomSource) -> [u8; 20] {
    let mut salt = [0u8; 20];
    rng.fill(&mut salt);
    for b in &mut salt {
        *b = *b % 127 + 1;
    }
    salt
}

impl ProxyAuth {
    /// Starts checking `user`, whose client answered `salt` with `response` for `client_plugin`
    /// (`None`: the client has no `CLIENT_PLUGIN_AUTH`, so the response is a native scramble).
    pub(crate) fn start(
        ctx: &mut AuthContext<'_>,
        user: &str,
        client_plugin: Option<AuthPlugin>,
        response: &[u8],
        salt: &[u8; 20],
    ) -> (Self, Step) {
        let mut auth = Self {
            user: user.to_owned(),
            entry: ctx.users.and_then(|u| u.get(user)).cloned(),
            state: State::Done,
        };
        let Some(entry) = auth.entry.clone() else {
            let err = access_denied(user, ctx.host, !response.is_empty());
            return (auth, Step::Deny(err));
        };
        let client_plugin = client_plugin.unwrap_or(AuthPlugin::MysqlNativePassword);
        let step = if client_plugin == entry.plugin {
            auth.verify(ctx, entry.plugin.clone(), response, salt)
        } else {
            match entry.plugin {
                AuthPlugin::MysqlNativePassword
                | AuthPlugin::CachingSha2Password
                | AuthPlugin::MysqlClearPassword => {
                    let salt = fresh_salt(ctx.rng);
                    let mut data = salt.to_vec();
                    data.push(0);
                    let mut payload = Vec::new();
                    AuthSwitchRequest {
                        plugin_name: entry.plugin.name().as_bytes(),
                        data: &data,
                    }
                    .encode(&mut payload);
                    auth.state = State::AwaitSwitchResponse {
                        plugin: entry.plugin.clone(),
                        salt,
                    };
                    Step::Send(payload)
                }
                // An account configured with a plugin ferry cannot verify: nobody logs in.
                _ => Step::Deny(access_denied(user, ctx.host, !response.is_empty())),
            }
        };
        (auth, step)
    }

    /// Feeds the client's next auth packet.
    pub(crate) fn handle(&mut self, ctx: &mut AuthContext<'_>, packet: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitSwitchResponse { plugin, salt } => self.verify(ctx, plugin, packet, &salt),
            State::Sha2(mut server) => {
                let result = server.handle_response(packet, ctx.rsa, ctx.rng);
                let step = self.sha2_step(ctx, result, true);
                if matches!(step, Step::Send(_)) {
                    self.state = State::Sha2(server);
                }
                step
            }
            State::Done => Step::Deny(ProtocolError::new(1043, "08S01", "Bad handshake")),
        }
    }

    fn verify(
        &mut self,
        ctx: &mut AuthContext<'_>,
        plugin: AuthPlugin,
        response: &[u8],
        salt: &[u8; 20],
    ) -> Step {
        let denied = || access_denied(&self.user, ctx.host, !response.is_empty());
        // `entry` is set whenever verify runs: start() denies unknown users before any verify.
        let Some(credential) = self.entry.as_ref().map(|e| e.credential.clone()) else {
            return Step::Deny(denied());
        };
        match plugin {
            AuthPlugin::MysqlNativePassword => match credential.verify_native(response, salt) {
                Some(secret) => Step::Accept {
                    before_ok: None,
                    secret,
                    plugin,
                },
                None => Step::Deny(denied()),
            },
            // The password travels in clear: only accepted inside TLS.
            AuthPlugin::MysqlClearPassword if ctx.tls => match clear::verify(response, &credential)
            {
                Ok(Some(secret)) => Step::Accept {
                    before_ok: None,
                    secret,
                    plugin,
                },
                Ok(None) | Err(_) => Step::Deny(denied()),
            },
            AuthPlugin::CachingSha2Password => {
                if let Some(cached) = ctx.sha2_cache.and_then(|c| c.get(&self.user)) {
                    if let Some(stage1) = caching_sha2::recover_stage1(response, salt, &cached) {
                        return Step::Accept {
                            before_ok: Some(FAST_AUTH_SUCCESS.to_vec()),
                            secret: ClientSecret::Sha256(stage1),
                            plugin,
                        };
                    }
                }
                let mut server = Box::new(CachingSha2Server::new(salt, credential, ctx.tls));
                let result = server.handle_response(response, ctx.rsa, ctx.rng);
                let step = self.sha2_step(ctx, result, !response.is_empty());
                if matches!(step, Step::Send(_)) {
                    self.state = State::Sha2(server);
                }
                step
            }
            _ => Step::Deny(denied()),
        }
    }

    fn sha2_step(
        &self,
        ctx: &mut AuthContext<'_>,
        result: Result<ServerAction, AuthError>,
        using_password: bool,
    ) -> Step {
        match result {
            Ok(ServerAction::Continue(payload)) => Step::Send(payload),
            Ok(ServerAction::Accept { before_ok, secret }) => {
                if let (ClientSecret::Plaintext(pw), Some(cache)) = (&secret, ctx.sha2_cache) {
                    cache.insert(&self.user, Sha256Stage2Hash::from_password(pw.as_bytes()));
                }
                Step::Accept {
                    before_ok,
                    secret,
                    plugin: AuthPlugin::CachingSha2Password,
                }
            }
            Ok(ServerAction::Deny) | Err(AuthError::SecureTransportRequired) => {
                Step::Deny(access_denied(&self.user, ctx.host, using_password))
            }
            Err(AuthError::Decode(e)) => Step::Deny(ProtocolError::from_decode(&e)),
            Err(_) => Step::Deny(access_denied(&self.user, ctx.host, using_password)),
        }
    }
}
