//! The client side of `caching_sha2_password`: ferry logging in to a backend.

use super::{FAST_AUTH_SUCCESS, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY};
use crate::auth::{auth_salt, AuthError, Password, RsaPublicKey};
use crate::RandomSource;

/// What the client does next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ClientAction {
    /// Send this payload to the server.
    Send(Vec<u8>),
    /// Nothing to send: the server's next packet should be OK or ERR, which the caller handles.
    AwaitResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitFastResult,
    AwaitPublicKey,
    AwaitResult,
    Failed(AuthError),
}

/// Client state machine for one `caching_sha2_password` exchange.
///
/// [`CachingSha2Client::start`] gives the fast-path response (for the HandshakeResponse or
/// AuthSwitchResponse). Then feed each AuthMoreData payload (first byte `0x01`) to
/// [`CachingSha2Client::handle_more_data`]; OK and ERR packets end the exchange and are the
/// caller's to handle.
///
/// ```text
/// AwaitFastResult ── 0x01 0x03 ──────────────────────────────► AwaitResult
///                 ── 0x01 0x04, TLS ── Send(pw ‖ NUL) ────────► AwaitResult
///                 ── 0x01 0x04, key known ── Send(RSA(..)) ───► AwaitResult
///                 ── 0x01 0x04, no key ── Send(0x02) ─────────► AwaitPublicKey
/// AwaitPublicKey  ── 0x01 ‖ PEM ── Send(RSA(..)) ─────────────► AwaitResult
/// ```
///
/// Anything else is [`AuthError::UnexpectedPacket`]; errors are sticky.
#[derive(Debug, Clone)]
pub struct CachingSha2Client {
    password: Password,
    salt: Vec<u8>,
    tls: bool,
    server_key: Option<RsaPublicKey>,
    state: State,
}

impl CachingSha2Client {
    /// Starts an exchange for `password` against the server's `salt` (its `auth-plugin-data`;
    /// see [`auth_salt`]). `tls`: the connection is encrypted, so full authentication sends the
    /// password in clear. `server_key`: a configured server public key, which saves a round trip.
    /// Returns the machine and the fast-path response to send.
    pub fn start(
        password: Password,
        salt: &[u8],
        tls: bool,
        server_key: Option<RsaPublicKey>,
    ) -> (Self, Vec<u8>) {
        let salt = auth_salt(salt).to_vec();
        let response = super::scramble(password.as_bytes(), &salt);
        let machine = Self {
            password,
            salt,
            tls,
            server_key,
            state: State::AwaitFastResult,
        };
        (machine, response)
    }

    /// The server's public key, configured or received (a driver may cache it for later
    /// connections to the same server).
    pub fn server_public_key(&self) -> Option<&RsaPublicKey> {
        self.server_key.as_ref()
    }

    /// True once only OK or ERR can come.
    pub fn awaits_result(&self) -> bool {
        self.state == State::AwaitResult
    }

    /// Feeds an AuthMoreData payload from the server. `rng` pads RSA encryption.
    pub fn handle_more_data(
        &mut self,
        payload: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<ClientAction, AuthError> {
        match self.step(payload, rng) {
            Ok(action) => Ok(action),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(
        &mut self,
        payload: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<ClientAction, AuthError> {
        match &self.state {
            State::AwaitFastResult if payload == FAST_AUTH_SUCCESS => {
                self.state = State::AwaitResult;
                Ok(ClientAction::AwaitResult)
            }
            State::AwaitFastResult if payload == PERFORM_FULL_AUTH => {
                if self.tls {
                    let mut clear = self.password.as_bytes().to_vec();
                    clear.push(0);
                    self.state = State::AwaitResult;
                    Ok(ClientAction::Send(clear))
                } else if self.server_key.is_some() {
                    self.encrypt(rng)
                } else {
                    self.state = State::AwaitPublicKey;
                    Ok(ClientAction::Send(REQUEST_PUBLIC_KEY.to_vec()))
                }
            }
            State::AwaitFastResult => Err(AuthError::UnexpectedPacket {
                state: "waiting for the caching_sha2 fast-auth result",
            }),
            State::AwaitPublicKey => match payload {
                [super::AUTH_MORE_DATA, pem @ ..] => {
                    self.server_key = Some(RsaPublicKey::from_pem(pem)?);
                    self.encrypt(rng)
                }
                _ => Err(AuthError::UnexpectedPacket {
                    state: "waiting for the server's RSA public key",
                }),
            },
            State::AwaitResult => Err(AuthError::UnexpectedPacket {
                state: "waiting for OK or ERR after caching_sha2 authentication",
            }),
            State::Failed(e) => Err(e.clone()),
        }
    }

    fn encrypt(&mut self, rng: &mut dyn RandomSource) -> Result<ClientAction, AuthError> {
        let key = self
            .server_key
            .as_ref()
            .ok_or(AuthError::UnexpectedPacket {
                state: "encrypting without a server key",
            })?;
        let ciphertext = key.encrypt_password(self.password.as_bytes(), &self.salt, rng)?;
        self.state = State::AwaitResult;
        Ok(ClientAction::Send(ciphertext))
    }
}
