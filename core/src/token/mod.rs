//! TiDB-compatible session tokens: what a server signs so that a proxy can log a migrated session in
//! to another server (`tidb_session_token` auth), and what the other server verifies.
//! Follows `reference/tidb-migration-protocol.md` sections 1 and 2.
//!
//! - [`SessionToken`]: the token, its signed bytes (Go's `json.Marshal` output, byte for byte) and
//!   its wire JSON;
//! - [`TokenTime`]: Go-style RFC 3339 timestamps that keep their UTC offset;
//! - [`CertStore`]: the signing certificates with TiDB's rotation rule (each load valid for
//!   verification for 25 minutes, the newest signs), [`CertStore::sign`] and
//!   [`CertStore::validate`].
//!
//! Time and randomness are injected: the caller passes `now` to every call and calls
//! [`CertStore::load`] with the file contents by [`CertStore::next_reload`].
//!
//! Supported certificates, as TiDB signs with them ([`SignatureScheme`]): RSA keys with PKCS#1 v1.5
//! or PSS over SHA-256/384/512, chosen by the certificate's signature algorithm; ECDSA keys on
//! P-256, P-384 and P-521, the signed bytes used as the prehash; Ed25519 keys, pure Ed25519. Other
//! keys and curves are refused at load with [`TokenError::UnsupportedCertificate`]. TiDB's ECDSA
//! tokens sign only the first 32, 48 or 66 bytes of the signed text, so their times (and the end of
//! long user names) are not protected: prefer RSA or Ed25519.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use ferry_core::token::CertStore;
//! # fn run(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), ferry_core::token::TokenError> {
//! let mut rng = ferry_core::SeededRandom::new(7); // a CSPRNG in production
//! let now = SystemTime::now(); // read by the driver, never by the core
//! let mut store = CertStore::new();
//! store.load(now, cert_pem, key_pem)?;
//! let token = store.sign(now, 0, b"app", &mut rng)?;
//! // ... the proxy sends token.to_json() as the auth data of a `tidb_session_token` login ...
//! store.validate(now + Duration::from_secs(1), &token.to_json(), b"APP")?;
//! // and the driver reloads the files by this deadline:
//! let _deadline = store.next_reload(now);
//! # Ok(()) }
//! ```

mod cert;
mod ec;
mod json;
mod store;
mod time;

use std::time::Duration;

pub use cert::SignatureScheme;
pub use json::{write_go_json_string, SessionToken};
pub use store::CertStore;
pub use time::TokenTime;

use crate::ProtocolError;

/// How long a token is valid after signing: `expire-time` = `sign-time` + this, and a token whose
/// `sign-time` is older than this is refused whatever its `expire-time` says.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// How often the signing certificate and key are reloaded ([`CertStore::next_reload`]).
pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How long a loaded certificate stays usable for verification after the next reload: it must
/// outlast one reload interval, because another server may still sign with it until its own reload.
pub const OLD_CERT_VALID_TIME: Duration = Duration::from_secs(15 * 60);
/// TiDB's `ErrCannotMigrateSession` error number: the detail of every token failure.
pub const ER_CANNOT_MIGRATE_SESSION: u16 = 8146;
/// MySQL `ER_ACCESS_DENIED_ERROR`: what a server sends a client whose token was refused.
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;

/// Why a certificate could not be loaded, a token could not be signed, or a token was refused.
///
/// Three groups, by the call that returns them:
/// - from [`CertStore::load`]: [`InvalidCertificate`](Self::InvalidCertificate),
///   [`InvalidPrivateKey`](Self::InvalidPrivateKey), [`KeyMismatch`](Self::KeyMismatch),
///   [`UnsupportedCertificate`](Self::UnsupportedCertificate): log it; the store is unchanged;
/// - from [`CertStore::sign`]: [`NoSigningCertificate`](Self::NoSigningCertificate),
///   [`Signing`](Self::Signing): the server answers `SHOW SESSION_STATES` with
///   [`cannot_migrate`](Self::cannot_migrate) (8146);
/// - from [`CertStore::validate`]: the rest: the server denies the login with
///   [`access_denied`](Self::access_denied) (1045) and logs [`detail`](Self::detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The certificate PEM held no certificate, or it did not parse.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The private key PEM held no key, or it did not parse.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(String),
    /// The private key is not the certificate's.
    #[error("private key does not match public key")]
    KeyMismatch,
    /// The certificate or key is of a kind ferry does not sign with (P-224 or another curve, an RSA
    /// certificate signed with SHA-1, ...).
    #[error("unsupported certificate: {0}")]
    UnsupportedCertificate(String),
    /// Every loaded certificate has expired (or none was loaded).
    #[error("no certificate or key file to sign the data")]
    NoSigningCertificate,
    /// The signing operation failed (e.g. an RSA key too small for the hash).
    #[error("signing failed: {0}")]
    Signing(String),
    /// The token is not valid JSON of the expected shape.
    #[error("malformed token: {0}")]
    MalformedToken(String),
    /// No loaded certificate is still valid for verification.
    #[error("no valid certificate to check the signature, cached certificates: {cached}")]
    NoValidCertificate {
        /// Certificates in the store, all expired.
        cached: usize,
    },
    /// No valid certificate verifies the signature: forged, altered, or signed with a key this
    /// server does not have (or no longer has).
    #[error("signature verification failed")]
    InvalidSignature,
    /// `now` is after the token's `expire-time`.
    #[error("token expired {expire_time}")]
    Expired {
        /// The token's `expire-time`.
        expire_time: TokenTime,
    },
    /// The token's `sign-time` is more than [`TOKEN_LIFETIME`] ago.
    #[error("token lifetime is too long {sign_time}")]
    LifetimeTooLong {
        /// The token's `sign-time`.
        sign_time: TokenTime,
    },
    /// The token belongs to another user than the one logging in.
    #[error("username does not match: {handshake_user:?} {token_user:?}")]
    UserMismatch {
        /// The user name of the handshake (lossy UTF-8).
        handshake_user: String,
        /// The user name in the token (lossy UTF-8).
        token_user: String,
    },
}

impl TokenError {
    /// The text TiDB logs: `ErrCannotMigrateSession`, "cannot migrate the current session: …".
    pub fn detail(&self) -> String {
        format!("cannot migrate the current session: {self}")
    }

    /// Error 8146 (`ErrCannotMigrateSession`, SQL state HY000) with [`detail`](Self::detail): what
    /// a server answers `SHOW SESSION_STATES` with when it cannot sign.
    pub fn cannot_migrate(&self) -> ProtocolError {
        ProtocolError::new(ER_CANNOT_MIGRATE_SESSION, "HY000", self.detail())
    }

    /// Error 1045 (access denied, SQL state 28000) for `user`@`host`: what a server sends the
    /// client when a token login fails. The cause is not sent; log [`detail`](Self::detail).
    pub fn access_denied(&self, user: &[u8], host: &str) -> ProtocolError {
        ProtocolError::new(
            ER_ACCESS_DENIED_ERROR,
            "28000",
            format!(
                "Access denied for user '{}'@'{host}' (using password: YES)",
                String::from_utf8_lossy(user)
            ),
        )
    }
}
