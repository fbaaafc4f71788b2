//! The client side of the auth plugins, as the backend answers a server: which plugin to start
//! with, the first response, and the answers to AuthMoreData.
//!
//! What can be answered depends on what ferry knows of the password ([`ClientSecret`]):
//!
//! | plugin | plaintext | SHA1(pw) | SHA256(pw) | no password |
//! |---|---|---|---|---|
//! | `mysql_native_password` | yes | yes | no | yes |
//! | `caching_sha2_password` | fast + full | no | fast only | yes |
//! | `mysql_clear_password` | TLS (or allowed) | no | no | yes |
//!
//! The plugin algorithms themselves live in [`crate::auth`]; this file only chooses and sequences.

use crate::auth::caching_sha2::{self, CachingSha2Client, ClientAction, FAST_AUTH_SUCCESS};
use crate::auth::{auth_salt, clear, native, AuthPlugin, ClientSecret, Password, RsaPublicKey};
use crate::RandomSource;

use super::BackendError;

/// What the plugin answers may depend on.
pub(crate) struct AuthContext<'a> {
    pub(crate) secret: &'a ClientSecret,
    pub(crate) tls: bool,
    pub(crate) allow_cleartext: bool,
    pub(crate) server_key: Option<&'a RsaPublicKey>,
}

/// One plugin exchange in progress.
#[derive(Debug)]
pub(crate) enum ClientAuth {
    /// `mysql_native_password` or `mysql_clear_password`: one step, only OK/ERR/switch can follow.
    OneShot(AuthPlugin),
    /// `caching_sha2_password` with the plaintext (or no password): every path is possible.
    Sha2(Box<CachingSha2Client>),
    /// `caching_sha2_password` with only `SHA256(pw)`: the fast path or a clear failure.
    Sha2FastOnly,
}

/// The plugin for the first response: the server's default when ferry can answer it, otherwise
/// one it can (the server switches to the account's own plugin anyway if it differs).
pub(crate) fn initial_plugin(server_default: &[u8], secret: &ClientSecret) -> AuthPlugin {
    let plugin = AuthPlugin::from_bytes(server_default);
    match (&plugin, secret) {
        (AuthPlugin::MysqlNativePassword, ClientSecret::Sha256(_)) => {
            AuthPlugin::CachingSha2Password
        }
        (AuthPlugin::MysqlNativePassword, _) => plugin,
        (AuthPlugin::CachingSha2Password, ClientSecret::Sha1(_)) => AuthPlugin::MysqlNativePassword,
        (AuthPlugin::CachingSha2Password, _) => plugin,
        (_, ClientSecret::Sha256(_)) => AuthPlugin::CachingSha2Password,
        // Never volunteer the clear-text password: a server that wants it asks by switching.
        _ => AuthPlugin::MysqlNativePassword,
    }
}

fn cannot(plugin: &AuthPlugin, why: &str) -> BackendError {
    BackendError::Unsupported(format!("cannot answer {plugin}: {why}"))
}

/// Starts `plugin` against the server's `plugin_data` (its salt); returns the machine and the
/// auth response to send.
pub(crate) fn start(
    plugin: AuthPlugin,
    plugin_data: &[u8],
    ctx: &AuthContext<'_>,
) -> Result<(ClientAuth, Vec<u8>), BackendError> {
    let salt = auth_salt(plugin_data);
    match &plugin {
        AuthPlugin::MysqlNativePassword => {
            let response = match ctx.secret {
                ClientSecret::NoPassword => Vec::new(),
                ClientSecret::Plaintext(p) => native::scramble(p.as_bytes(), salt),
                ClientSecret::Sha1(stage1) => native::scramble_with_stage1(stage1, salt).to_vec(),
                ClientSecret::Sha256(_) => {
                    return Err(cannot(&plugin, "only SHA256(password) is known"))
                }
            };
            Ok((ClientAuth::OneShot(plugin), response))
        }
        AuthPlugin::MysqlClearPassword => {
            if !ctx.tls && !ctx.allow_cleartext {
                return Err(cannot(
                    &plugin,
                    "it would send the password in clear without TLS (not allowed by the configuration)",
                ));
            }
            let response = match ctx.secret {
                ClientSecret::NoPassword => clear::client_response(b""),
                ClientSecret::Plaintext(p) => clear::client_response(p.as_bytes()),
                ClientSecret::Sha1(_) | ClientSecret::Sha256(_) => {
                    return Err(cannot(&plugin, "only a hash of the password is known"))
                }
            };
            Ok((ClientAuth::OneShot(plugin), response))
        }
        AuthPlugin::CachingSha2Password => match ctx.secret {
            ClientSecret::Sha1(_) => Err(cannot(
                &plugin,
                "only SHA1(password) is known; caching_sha2_password needs the plaintext \
                 password or SHA256(password)",
            )),
            ClientSecret::Sha256(stage1) => Ok((
                ClientAuth::Sha2FastOnly,
                caching_sha2::scramble_with_stage1(stage1, salt).to_vec(),
            )),
            ClientSecret::NoPassword | ClientSecret::Plaintext(_) => {
                let password = match ctx.secret {
                    ClientSecret::Plaintext(p) => p.clone(),
                    _ => Password::default(),
                };
                let (machine, response) =
                    CachingSha2Client::start(password, salt, ctx.tls, ctx.server_key.cloned());
                Ok((ClientAuth::Sha2(Box::new(machine)), response))
            }
        },
        AuthPlugin::TidbSessionToken | AuthPlugin::Unknown(_) => {
            Err(cannot(&plugin, "ferry does not speak this plugin"))
        }
    }
}

impl ClientAuth {
    /// The plugin's name, for the `Connected` event.
    pub(crate) fn plugin(&self) -> AuthPlugin {
        match self {
            ClientAuth::OneShot(p) => p.clone(),
            ClientAuth::Sha2(_) | ClientAuth::Sha2FastOnly => AuthPlugin::CachingSha2Password,
        }
    }

    /// Answers an AuthMoreData payload (header `0x01` included): `Some(bytes)` to send, `None` to
    /// wait for OK/ERR.
    pub(crate) fn handle_more_data(
        &mut self,
        payload: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        match self {
            ClientAuth::OneShot(_) => Err(BackendError::UnexpectedPacket {
                state: "waiting for the result of a one-step auth plugin",
            }),
            ClientAuth::Sha2(machine) => match machine.handle_more_data(payload, rng)? {
                ClientAction::Send(bytes) => Ok(Some(bytes)),
                ClientAction::AwaitResult => Ok(None),
            },
            ClientAuth::Sha2FastOnly if payload == FAST_AUTH_SUCCESS => Ok(None),
            ClientAuth::Sha2FastOnly => Err(cannot(
                &AuthPlugin::CachingSha2Password,
                "the server asks for full authentication, which needs the plaintext password \
                 (only SHA256(password) is known)",
            )),
        }
    }
}
