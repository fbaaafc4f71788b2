//! What a server stores for a user ([`Credential`]), what a client knows ([`Password`]), and what
//! a server learns from a successful login ([`ClientSecret`]).

use sha2::{Digest, Sha256};

use super::caching_sha2::{self, Sha256Password, Sha256Stage2Hash};
use super::native::{self, NativeStage2Hash, Sha1Password};
use super::{ct_eq, redacted_debug, AuthError};

/// A plaintext password. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(Vec<u8>);

redacted_debug!(Password);

impl Password {
    /// Wraps the password's bytes (MySQL passwords are byte strings, usually UTF-8).
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Self(password.into())
    }

    /// The password's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for the empty password, which every plugin sends as an empty response.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `SHA1(password)`, the `mysql_native_password` stage-1 hash.
    pub fn sha1(&self) -> Sha1Password {
        Sha1Password::from_password(&self.0)
    }

    /// `SHA256(password)`, the `caching_sha2_password` stage-1 hash.
    pub fn sha256(&self) -> Sha256Password {
        Sha256Password::from_password(&self.0)
    }
}

/// One user's entry in a server's (the proxy's) user table.
///
/// - [`Credential::NoPassword`] accepts only the empty response of every plugin.
/// - [`Credential::Native`] is what `mysql.user` stores for `mysql_native_password` accounts (and
///   what MariaDB stores by default). It verifies native scrambles and plaintext passwords, so it
///   serves all three plugins; with `caching_sha2_password` the fast path cannot match it and the
///   server always asks for full authentication (TLS or RSA), as MySQL does on a cache miss.
/// - [`Credential::CachingSha2`] is a `caching_sha2_password` cache value `SHA256(SHA256(pw))`. It
///   verifies the fast path and plaintext passwords, but not native scrambles.
///
/// `Debug` names the kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The account has no password.
    NoPassword,
    /// A `mysql_native_password` stage-2 hash `SHA1(SHA1(pw))`.
    Native(NativeStage2Hash),
    /// A `caching_sha2_password` cache value `SHA256(SHA256(pw))`.
    CachingSha2(Sha256Stage2Hash),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoPassword => "Credential::NoPassword",
            Self::Native(_) => "Credential::Native(..)",
            Self::CachingSha2(_) => "Credential::CachingSha2(..)",
        })
    }
}

impl Credential {
    /// Parses a `mysql_native_password` `authentication_string` as `mysql.user` stores it: empty
    /// for no password, else `*` and 40 hex digits (or the 20 raw bytes).
    pub fn parse_native(authentication_string: &[u8]) -> Result<Self, AuthError> {
        if authentication_string.is_empty() {
            return Ok(Self::NoPassword);
        }
        NativeStage2Hash::parse(authentication_string).map(Self::Native)
    }

    /// The native credential for `password` (empty: [`Credential::NoPassword`]).
    pub fn native_from_password(password: &[u8]) -> Self {
        if password.is_empty() {
            Self::NoPassword
        } else {
            Self::Native(NativeStage2Hash::from_password(password))
        }
    }

    /// Does `password` (in plaintext) match? Compared in constant time; the empty password
    /// matches only [`Credential::NoPassword`].
    pub fn verify_plaintext(&self, password: &[u8]) -> bool {
        match self {
            Self::NoPassword => password.is_empty(),
            Self::Native(stage2) => {
                !password.is_empty() && native::verify_plaintext(password, stage2)
            }
            Self::CachingSha2(cache) => {
                let sha = Sha256::digest(Sha256::digest(password));
                !password.is_empty() && ct_eq(&sha, cache.as_bytes())
            }
        }
    }

    /// Server side of `mysql_native_password`: checks the client's auth `response` to `salt`.
    /// `Some` on success, with what was learned; `None` for a wrong password, and always for a
    /// [`Credential::CachingSha2`] entry, which cannot check a SHA-1 scramble.
    pub fn verify_native(&self, response: &[u8], salt: &[u8]) -> Option<ClientSecret> {
        match self {
            Self::NoPassword => response.is_empty().then_some(ClientSecret::NoPassword),
            Self::Native(stage2) => {
                native::recover_stage1(response, salt, stage2).map(ClientSecret::Sha1)
            }
            Self::CachingSha2(_) => None,
        }
    }

    /// Server side of the `caching_sha2_password` fast path, for a non-empty `response`: `Some`
    /// when the cache value matches, `None` otherwise (including for non-cache credentials).
    pub(crate) fn verify_sha2_fast(&self, response: &[u8], salt: &[u8]) -> Option<ClientSecret> {
        match self {
            Self::CachingSha2(cache) => {
                caching_sha2::recover_stage1(response, salt, cache).map(ClientSecret::Sha256)
            }
            Self::NoPassword | Self::Native(_) => None,
        }
    }
}

/// What a server learned about the client's password from a successful login: what a proxy
/// can use to log in to backends as the same user. `Debug` does not print secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// The account has no password.
    NoPassword,
    /// `SHA1(pw)`, recovered from a native scramble: answers native challenges.
    Sha1(Sha1Password),
    /// `SHA256(pw)`, recovered from a caching_sha2 fast-path scramble: answers fast paths.
    Sha256(Sha256Password),
    /// The plaintext (cleartext plugin, caching_sha2 full authentication): answers anything.
    Plaintext(Password),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoPassword => "ClientSecret::NoPassword",
            Self::Sha1(_) => "ClientSecret::Sha1(..)",
            Self::Sha256(_) => "ClientSecret::Sha256(..)",
            Self::Plaintext(_) => "ClientSecret::Plaintext(..)",
        })
    }
}

impl ClientSecret {
    /// `SHA1(pw)` for answering `mysql_native_password`, when it is known or derivable.
    /// `None` for [`ClientSecret::NoPassword`] (answer with an empty response) and for
    /// [`ClientSecret::Sha256`] (SHA-256 does not give SHA-1).
    pub fn sha1(&self) -> Option<Sha1Password> {
        match self {
            Self::Sha1(s) => Some(s.clone()),
            Self::Plaintext(p) => Some(p.sha1()),
            Self::NoPassword | Self::Sha256(_) => None,
        }
    }

    /// `SHA256(pw)` for answering a `caching_sha2_password` fast path, when known or derivable.
    pub fn sha256(&self) -> Option<Sha256Password> {
        match self {
            Self::Sha256(s) => Some(s.clone()),
            Self::Plaintext(p) => Some(p.sha256()),
            Self::NoPassword | Self::Sha1(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_native_handles_empty_and_hex() {
        assert_eq!(
            Credential::parse_native(b"").unwrap(),
            Credential::NoPassword
        );
        let c = Credential::parse_native(b"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        assert_eq!(c, Credential::native_from_password(b"password"));
        assert!(Credential::parse_native(b"*XYZ").is_err());
        assert_eq!(
            Credential::native_from_password(b""),
            Credential::NoPassword
        );
    }

    #[test]
    fn verify_plaintext_for_each_kind() {
        let native = Credential::native_from_password(b"pw");
        assert!(native.verify_plaintext(b"pw"));
        assert!(!native.verify_plaintext(b"pW"));
        assert!(!native.verify_plaintext(b""));
        let cache = Credential::CachingSha2(Sha256Stage2Hash::from_password(b"pw"));
        assert!(cache.verify_plaintext(b"pw"));
        assert!(!cache.verify_plaintext(b"px"));
        assert!(!cache.verify_plaintext(b""));
        assert!(Credential::NoPassword.verify_plaintext(b""));
        assert!(!Credential::NoPassword.verify_plaintext(b"pw"));
    }

    #[test]
    fn verify_native_recovers_stage1() {
        let salt = [3u8; 20];
        let native = Credential::native_from_password(b"pw");
        let secret = native
            .verify_native(&native::scramble(b"pw", &salt), &salt)
            .unwrap();
        assert_eq!(
            secret,
            ClientSecret::Sha1(Sha1Password::from_password(b"pw"))
        );
        assert!(native
            .verify_native(&native::scramble(b"no", &salt), &salt)
            .is_none());
        assert!(native.verify_native(b"", &salt).is_none());
        assert_eq!(
            Credential::NoPassword.verify_native(b"", &salt),
            Some(ClientSecret::NoPassword)
        );
        assert!(Credential::NoPassword
            .verify_native(&[1; 20], &salt)
            .is_none());
        let cache = Credential::CachingSha2(Sha256Stage2Hash::from_password(b"pw"));
        assert!(cache
            .verify_native(&native::scramble(b"pw", &salt), &salt)
            .is_none());
    }

    #[test]
    fn client_secret_derives_hashes() {
        let p = ClientSecret::Plaintext(Password::new("pw"));
        assert_eq!(p.sha1(), Some(Sha1Password::from_password(b"pw")));
        assert_eq!(p.sha256(), Some(Sha256Password::from_password(b"pw")));
        assert_eq!(ClientSecret::NoPassword.sha1(), None);
        let s1 = ClientSecret::Sha1(Sha1Password::from_password(b"pw"));
        assert_eq!(s1.sha256(), None);
    }

    #[test]
    fn debug_hides_secrets() {
        assert_eq!(format!("{:?}", Password::new("hunter2")), "Password(..)");
        let c = Credential::native_from_password(b"hunter2");
        assert_eq!(format!("{c:?}"), "Credential::Native(..)");
        let s = ClientSecret::Plaintext(Password::new("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
