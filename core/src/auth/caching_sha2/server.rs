//! The server side of `caching_sha2_password`: ferry verifying a client.

use super::{FAST_AUTH_SUCCESS, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY};
use crate::auth::{auth_salt, AuthError, ClientSecret, Credential, Password, RsaKeyPair};
use crate::{DecodeError, RandomSource};

/// What the server does next. Payloads are complete packet payloads (the wire layer frames them).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ServerAction {
    /// Send this AuthMoreData payload, then feed the client's next packet to
    /// [`CachingSha2Server::handle_response`].
    Continue(Vec<u8>),
    /// Authenticated: send `before_ok` first when present (the fast-auth-success payload
    /// `0x01 0x03`), then the OK packet. `secret` is what the login revealed.
    Accept {
        /// An AuthMoreData payload to send before OK.
        before_ok: Option<Vec<u8>>,
        /// What the server learned about the password.
        secret: ClientSecret,
    },
    /// Wrong password: send ERR 1045 ([`crate::auth::access_denied`]).
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitFastResponse,
    AwaitFullAuth,
    AwaitEncrypted,
    Done,
    Failed(AuthError),
}

/// Server state machine for one `caching_sha2_password` exchange.
///
/// ```text
/// AwaitFastResponse ── "" or "\0" ─────────────────────► Accept (no password) | Deny
///                   ── scramble matches cache value ────► Accept, before_ok = 0x01 0x03
///                   ── otherwise ── Continue(0x01 0x04) ─► AwaitFullAuth
/// AwaitFullAuth (TLS)    ── pw ‖ NUL ────────────────────► Accept | Deny
/// AwaitFullAuth (no TLS) ── 0x02 ── Continue(0x01 ‖ PEM) ► AwaitEncrypted
///                        ── ciphertext (client had key) ─► as AwaitEncrypted
/// AwaitEncrypted         ── RSA ciphertext ──────────────► Accept | Deny
/// ```
///
/// Without TLS and without an RSA key pair, full authentication fails with
/// [`AuthError::SecureTransportRequired`]. Errors are sticky: once one is returned, every later
/// call returns it again; after `Accept`/`Deny` calls return [`AuthError::Finished`].
#[derive(Debug, Clone)]
pub struct CachingSha2Server {
    salt: Vec<u8>,
    credential: Credential,
    tls: bool,
    state: State,
}

impl CachingSha2Server {
    /// A server that sent `salt` (in its handshake or AuthSwitchRequest) to a client whose
    /// stored credential is `credential`; `tls` says whether the connection is encrypted.
    pub fn new(salt: &[u8], credential: Credential, tls: bool) -> Self {
        Self {
            salt: auth_salt(salt).to_vec(),
            credential,
            tls,
            state: State::AwaitFastResponse,
        }
    }

    /// True after `Accept`, `Deny` or an error.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// Feeds the client's next packet payload (first the handshake response's or
    /// AuthSwitchResponse's auth data, then each later packet). `rsa` is the server's key pair,
    /// if it has one; `rng` blinds RSA decryption.
    pub fn handle_response(
        &mut self,
        response: &[u8],
        rsa: Option<&RsaKeyPair>,
        rng: &mut dyn RandomSource,
    ) -> Result<ServerAction, AuthError> {
        match self.step(response, rsa, rng) {
            Ok(action) => Ok(action),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn step(
        &mut self,
        response: &[u8],
        rsa: Option<&RsaKeyPair>,
        rng: &mut dyn RandomSource,
    ) -> Result<ServerAction, AuthError> {
        match &self.state {
            State::AwaitFastResponse => Ok(self.fast_path(response)),
            State::AwaitFullAuth if self.tls => {
                let password = match response {
                    [password @ .., 0] => password,
                    _ => {
                        return Err(DecodeError::Malformed {
                            what: "NUL-terminated cleartext password",
                        }
                        .into())
                    }
                };
                Ok(self.finish_plaintext(Password::new(password)))
            }
            State::AwaitFullAuth => {
                let rsa = rsa.ok_or(AuthError::SecureTransportRequired)?;
                if response == REQUEST_PUBLIC_KEY {
                    self.state = State::AwaitEncrypted;
                    let mut payload = vec![super::AUTH_MORE_DATA];
                    payload.extend_from_slice(rsa.public_key_pem().as_bytes());
                    Ok(ServerAction::Continue(payload))
                } else {
                    // A client configured with the server's key encrypts at once.
                    Ok(self.decrypt(response, rsa, rng))
                }
            }
            State::AwaitEncrypted => {
                // The key pair was there a step ago; a driver that dropped it is misusing the API.
                let rsa = rsa.ok_or(AuthError::SecureTransportRequired)?;
                Ok(self.decrypt(response, rsa, rng))
            }
            State::Done => Err(AuthError::Finished),
            State::Failed(e) => Err(e.clone()),
        }
    }

    fn fast_path(&mut self, response: &[u8]) -> ServerAction {
        // Some clients send a lone NUL for "no password"; MySQL's server accepts both forms.
        if response.is_empty() || response == [0] {
            self.state = State::Done;
            return match self.credential {
                Credential::NoPassword => ServerAction::Accept {
                    before_ok: None,
                    secret: ClientSecret::NoPassword,
                },
                _ => ServerAction::Deny,
            };
        }
        if self.credential == Credential::NoPassword {
            self.state = State::Done;
            return ServerAction::Deny;
        }
        if let Some(secret) = self.credential.verify_sha2_fast(response, &self.salt) {
            self.state = State::Done;
            return ServerAction::Accept {
                before_ok: Some(FAST_AUTH_SUCCESS.to_vec()),
                secret,
            };
        }
        // A cache miss, a stale cache entry or a native credential: MySQL asks for the password.
        self.state = State::AwaitFullAuth;
        ServerAction::Continue(PERFORM_FULL_AUTH.to_vec())
    }

    fn decrypt(
        &mut self,
        ciphertext: &[u8],
        rsa: &RsaKeyPair,
        rng: &mut dyn RandomSource,
    ) -> ServerAction {
        match rsa.decrypt_password(ciphertext, &self.salt, rng) {
            Some(password) => self.finish_plaintext(password),
            None => {
                self.state = State::Done;
                ServerAction::Deny
            }
        }
    }

    fn finish_plaintext(&mut self, password: Password) -> ServerAction {
        self.state = State::Done;
        if self.credential.verify_plaintext(password.as_bytes()) {
            let secret = if password.is_empty() {
                ClientSecret::NoPassword
            } else {
                ClientSecret::Plaintext(password)
            };
            ServerAction::Accept {
                before_ok: None,
                secret,
            }
        } else {
            ServerAction::Deny
        }
    }
}
