//! Authentication plugins, both sides of each: the server verifying, the client answering.
//!
//! Everything here works on packet *payloads* (`&[u8]` in, `Vec<u8>` or an action enum out); the
//! wire codec frames them and the connection roles decide when to call what. No I/O, no clock;
//! randomness (RSA-OAEP padding, RSA blinding) comes from an injected [`crate::RandomSource`].
//!
//! References: MySQL's `sql/auth/password.cc` and `sql/auth/sha2_password.cc`, the protocol pages
//! on `dev.mysql.com` (`page_protocol_connection_phase_authentication_methods`), and PyMySQL's
//! `pymysql/_auth.py`, which the integration test `tests/tests/auth_known_answers.rs` runs
//! against this code.
//!
//! # The plugins and their transitions
//!
//! The salt ("scramble", "nonce") is the 20 bytes of `auth-plugin-data` that the server sent in
//! its handshake or AuthSwitchRequest; [`auth_salt`] trims what arrives on the wire to those bytes.
//!
//! ## `mysql_native_password` ([`native`]) — one step
//!
//! ```text
//! server: salt ─────────────────────────────► client
//! client: SHA1(pw) XOR SHA1(salt ‖ SHA1(SHA1(pw)))  (empty for an empty password)
//! server: OK if SHA1(scramble XOR SHA1(salt ‖ stage2)) == stage2, else ERR 1045
//! ```
//!
//! The server stores only stage2 = SHA1(SHA1(pw)) (`*HEX` in `mysql.user`). Verifying *recovers*
//! stage1 = SHA1(pw) ([`native::recover_stage1`]); a proxy keeps it to answer a backend's new
//! salt ([`native::scramble_with_stage1`]) without ever knowing the password.
//!
//! ## `caching_sha2_password` ([`caching_sha2`]) — up to four steps
//!
//! ```text
//! client: fast scramble  SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ salt)   (empty: no password)
//!   server, empty response:       OK (account without password) or ERR
//!   server, cache hit + match:    0x01 0x03 (fast auth success), then OK
//!   server, otherwise:            0x01 0x04 (perform full authentication)
//! full authentication, over TLS:  client sends pw ‖ NUL in clear
//! full authentication, no TLS:    client sends 0x02 (request public key) unless it has the key,
//!                                 server answers 0x01 ‖ PEM,
//!                                 client sends RSA-OAEP-SHA1((pw ‖ NUL) XOR salt-repeated)
//! server: OK if the password matches what it stores, else ERR 1045
//! ```
//!
//! [`caching_sha2::CachingSha2Server`] and [`caching_sha2::CachingSha2Client`] are these two
//! sides as state machines.
//!
//! ## `mysql_clear_password` ([`clear`]) — one step
//!
//! The client sends pw ‖ NUL; the server checks it against its stored hash. Only safe over TLS.
//!
//! # What a server stores
//!
//! [`Credential`] is one user's entry in the proxy's user table: no password, a
//! `mysql_native_password` stage-2 hash, or a `caching_sha2_password` cache value
//! SHA256(SHA256(pw)). Any of them verifies a plaintext password (cleartext plugin, caching_sha2
//! full authentication); the scrambles need the matching kind.

pub mod caching_sha2;
pub mod clear;
mod credential;
pub mod native;
mod rsa_keys;

pub use credential::{ClientSecret, Credential, Password};
pub use rsa_keys::{RsaKeyPair, RsaPublicKey};

use subtle::ConstantTimeEq;

use crate::{DecodeError, ProtocolError};

/// `mysql_native_password`: SHA-1 challenge/response.
pub const MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
/// `caching_sha2_password`: SHA-256 fast path, then TLS or RSA full authentication.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
/// `mysql_clear_password`: the password in clear, NUL-terminated.
pub const MYSQL_CLEAR_PASSWORD: &str = "mysql_clear_password";
/// `tidb_session_token`: TiDB's session-migration token (implemented with the session tokens).
pub const TIDB_SESSION_TOKEN: &str = "tidb_session_token";

/// Length of the salt every plugin here uses (`SCRAMBLE_LENGTH` in MySQL).
pub const SALT_LEN: usize = 20;

/// An authentication plugin, as named in handshakes and AuthSwitchRequests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthPlugin {
    /// [`MYSQL_NATIVE_PASSWORD`]
    MysqlNativePassword,
    /// [`CACHING_SHA2_PASSWORD`]
    CachingSha2Password,
    /// [`MYSQL_CLEAR_PASSWORD`]
    MysqlClearPassword,
    /// [`TIDB_SESSION_TOKEN`]
    TidbSessionToken,
    /// Any other plugin name (e.g. `sha256_password`, `client_ed25519`): ferry can relay it but not
    /// speak it.
    Unknown(String),
}

impl AuthPlugin {
    /// The plugin called `name` (case-sensitive, as MySQL compares them).
    pub fn from_name(name: &str) -> Self {
        match name {
            MYSQL_NATIVE_PASSWORD => Self::MysqlNativePassword,
            CACHING_SHA2_PASSWORD => Self::CachingSha2Password,
            MYSQL_CLEAR_PASSWORD => Self::MysqlClearPassword,
            TIDB_SESSION_TOKEN => Self::TidbSessionToken,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The plugin named by wire bytes (a NUL-terminated string already stripped of its NUL).
    /// Bytes that are not UTF-8 name an [`AuthPlugin::Unknown`] plugin, lossily converted.
    pub fn from_bytes(name: &[u8]) -> Self {
        Self::from_name(&String::from_utf8_lossy(name))
    }

    /// The plugin's name as sent on the wire.
    pub fn name(&self) -> &str {
        match self {
            Self::MysqlNativePassword => MYSQL_NATIVE_PASSWORD,
            Self::CachingSha2Password => CACHING_SHA2_PASSWORD,
            Self::MysqlClearPassword => MYSQL_CLEAR_PASSWORD,
            Self::TidbSessionToken => TIDB_SESSION_TOKEN,
            Self::Unknown(name) => name,
        }
    }
}

impl std::fmt::Display for AuthPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an authentication exchange could not go on. The connection answers any of these with an
/// ERR packet (see [`access_denied`]); a merely wrong password is not an error but a `Deny` step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer's packet could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The peer sent a packet that this state does not expect (peer misbehaved).
    #[error("unexpected authentication packet while {state}")]
    UnexpectedPacket {
        /// What the state machine was waiting for.
        state: &'static str,
    },
    /// A stored password hash is not in a format ferry understands (configuration error).
    #[error("invalid stored password hash: {0}")]
    InvalidStoredHash(&'static str),
    /// An RSA key could not be parsed (configuration error, or a bad key from the server).
    #[error("invalid RSA key: {0}")]
    InvalidKey(String),
    /// The password is too long for the server's RSA key (OAEP-SHA1 fits key bytes − 42).
    #[error("password of {len} bytes is too long for the RSA key (at most {max})")]
    PasswordTooLong {
        /// Length of password ‖ NUL.
        len: usize,
        /// The most the key can encrypt.
        max: usize,
    },
    /// Full authentication without TLS needs an RSA key pair, and the server has none.
    #[error("authentication requires a secure connection or an RSA key pair")]
    SecureTransportRequired,
    /// RSA encryption or decryption failed.
    #[error("RSA operation failed")]
    Rsa,
    /// The state machine was driven after it finished (API misuse).
    #[error("authentication exchange already finished")]
    Finished,
}

/// Compares two byte strings in time that depends only on their lengths, never their contents.
///
/// Lengths are not secret here (hashes have fixed sizes), so unequal lengths return `false` early.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The salt bytes that the plugins use, from `auth-plugin-data` as received on the wire.
///
/// Servers send 20 bytes followed by a NUL terminator in AuthSwitchRequest (and the handshake
/// splits them in 8 + 12 + NUL); MySQL's algorithms use the first [`SALT_LEN`] bytes, as PyMySQL
/// does. Shorter data is used whole, without one trailing NUL.
pub fn auth_salt(plugin_data: &[u8]) -> &[u8] {
    match plugin_data {
        data if data.len() >= SALT_LEN => &data[..SALT_LEN],
        [rest @ .., 0] => rest,
        data => data,
    }
}

/// The ERR that MySQL sends for a failed login: 1045 / 28000
/// `Access denied for user 'user'@'host' (using password: YES|NO)`.
pub fn access_denied(user: &str, host: &str, using_password: bool) -> ProtocolError {
    let using = if using_password { "YES" } else { "NO" };
    ProtocolError::new(
        1045,
        "28000",
        format!("Access denied for user '{user}'@'{host}' (using password: {using})"),
    )
}

/// XORs `data` in place with `key`, repeated as needed (`key` must not be empty).
fn xor_repeating(data: &mut [u8], key: &[u8]) {
    for (b, k) in data.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// Decodes exactly `2 * N` hex digits (either case) into `N` bytes.
fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Writes a fixed-size secret as `Name(..)`: secret-holding types never print their contents.
macro_rules! redacted_debug {
    ($($ty:ty),+ $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), "(..)"))
            }
        }
    )+};
}
pub(crate) use redacted_debug;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_round_trip() {
        for p in [
            AuthPlugin::MysqlNativePassword,
            AuthPlugin::CachingSha2Password,
            AuthPlugin::MysqlClearPassword,
            AuthPlugin::TidbSessionToken,
        ] {
            assert_eq!(AuthPlugin::from_name(p.name()), p);
            assert_eq!(AuthPlugin::from_bytes(p.name().as_bytes()), p);
        }
        assert_eq!(
            AuthPlugin::from_name("sha256_password"),
            AuthPlugin::Unknown("sha256_password".into())
        );
        assert_eq!(
            AuthPlugin::from_name("sha256_password").name(),
            "sha256_password"
        );
        // MySQL compares plugin names case-sensitively.
        assert!(matches!(
            AuthPlugin::from_name("MYSQL_NATIVE_PASSWORD"),
            AuthPlugin::Unknown(_)
        ));
        assert_eq!(
            AuthPlugin::CachingSha2Password.to_string(),
            CACHING_SHA2_PASSWORD
        );
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn auth_salt_trims_terminator_and_length() {
        let salt: Vec<u8> = (1..=20).collect();
        let mut with_nul = salt.clone();
        with_nul.push(0);
        assert_eq!(auth_salt(&salt), &salt[..]);
        assert_eq!(auth_salt(&with_nul), &salt[..]);
        let mut long = salt.clone();
        long.extend_from_slice(b"extra");
        assert_eq!(auth_salt(&long), &salt[..]);
        assert_eq!(auth_salt(&[7, 8, 0]), &[7, 8]);
        // A full-length salt is used whole, even if its last byte happens to be 0.
        let mut ends_in_zero = salt.clone();
        ends_in_zero[19] = 0;
        assert_eq!(auth_salt(&ends_in_zero), &ends_in_zero[..]);
        assert_eq!(auth_salt(&[]), &[] as &[u8]);
    }

    #[test]
    fn access_denied_matches_mysql() {
        let e = access_denied("bob", "10.0.0.1", true);
        assert_eq!(e.code, 1045);
        assert_eq!(&e.sql_state, b"28000");
        assert_eq!(
            e.message,
            "Access denied for user 'bob'@'10.0.0.1' (using password: YES)"
        );
        assert!(access_denied("a", "h", false)
            .message
            .ends_with("(using password: NO)"));
    }

    #[test]
    fn decode_hex_checks_length_and_digits() {
        assert_eq!(decode_hex::<2>(b"0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>(b"0aF"), None);
        assert_eq!(decode_hex::<2>(b"0aFfe0"), None);
        assert_eq!(decode_hex::<2>(b"0aFg"), None);
        assert_eq!(decode_hex::<0>(b""), Some([]));
    }

    #[test]
    fn xor_repeating_cycles_key() {
        let mut d = [0u8, 0, 0, 0, 0];
        xor_repeating(&mut d, &[1, 2]);
        assert_eq!(d, [1, 2, 1, 2, 1]);
    }
}
