//! `caching_sha2_password`: the SHA-256 fast path and the full authentication (TLS cleartext or
//! RSA), both sides.
//!
//! Follows MySQL's `sql/auth/sha2_password.cc` (`generate_sha2_scramble`, `validate_sha2_scramble`,
//! `caching_sha2_password_authenticate`) and PyMySQL's `scramble_caching_sha2` and
//! `caching_sha2_password_auth`. The transitions are in the [module docs](super) and on
//! [`CachingSha2Server`] and [`CachingSha2Client`].
//!
//! Fast path: stage1 = `SHA256(pw)`, stage2 = `SHA256(stage1)` (what MySQL's cache holds); the
//! client sends `stage1 XOR SHA256(stage2 ‖ salt)`. Note the order: the hash comes *before* the
//! salt here, unlike `mysql_native_password`'s `SHA1(salt ‖ stage2)`.

mod client;
mod server;

pub use client::{CachingSha2Client, ClientAction};
pub use server::{CachingSha2Server, ServerAction};

use sha2::{Digest, Sha256};

use super::{ct_eq, decode_hex, redacted_debug, AuthError, SALT_LEN};

/// Length of a SHA-256 digest, and so of a non-empty fast-path scramble.
pub const DIGEST_LEN: usize = 32;
/// First byte of every AuthMoreData payload.
pub const AUTH_MORE_DATA: u8 = 0x01;
/// Server → client AuthMoreData payload: the fast path matched; an OK packet follows.
pub const FAST_AUTH_SUCCESS: [u8; 2] = [AUTH_MORE_DATA, 0x03];
/// Server → client AuthMoreData payload: send the password (TLS) or go through RSA.
pub const PERFORM_FULL_AUTH: [u8; 2] = [AUTH_MORE_DATA, 0x04];
/// Client → server payload: "send me your RSA public key".
pub const REQUEST_PUBLIC_KEY: [u8; 1] = [0x02];

/// The fast-path stage-1 hash `SHA256(password)`: answers any fast-path challenge, so a secret.
/// `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha256Password([u8; DIGEST_LEN]);

/// The cache value `SHA256(SHA256(password))` that a MySQL server keeps in memory after a full
/// authentication, and that the proxy's user table may store. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha256Stage2Hash([u8; DIGEST_LEN]);

redacted_debug!(Sha256Password, Sha256Stage2Hash);

impl Sha256Password {
    /// `SHA256(password)`.
    pub fn from_password(password: &[u8]) -> Self {
        Self(Sha256::digest(password).into())
    }

    /// Wraps a stage-1 hash kept elsewhere.
    pub fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw hash (secret: handle with care).
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The cache value `SHA256(stage1)` for this password.
    pub fn stage2(&self) -> Sha256Stage2Hash {
        Sha256Stage2Hash(Sha256::digest(self.0).into())
    }
}

impl Sha256Stage2Hash {
    /// `SHA256(SHA256(password))`.
    pub fn from_password(password: &[u8]) -> Self {
        Sha256Password::from_password(password).stage2()
    }

    /// Wraps the 32 raw bytes.
    pub fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (either case), e.g. from a configuration file.
    pub fn parse_hex(text: &[u8]) -> Result<Self, AuthError> {
        decode_hex(text)
            .map(Self)
            .ok_or(AuthError::InvalidStoredHash(
                "caching_sha2_password cache value must be 64 hex digits",
            ))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }
}

/// `SHA256(stage2 ‖ salt)`, the mask both sides XOR with stage1. Uses at most [`SALT_LEN`] bytes.
fn mask(salt: &[u8], stage2: &[u8; DIGEST_LEN]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(&salt[..salt.len().min(SALT_LEN)]);
    h.finalize().into()
}

fn xor32(a: &[u8; DIGEST_LEN], b: &[u8; DIGEST_LEN]) -> [u8; DIGEST_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Client side: the fast-path response to `salt` for `password` (empty for an empty password).
pub fn scramble(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    scramble_with_stage1(&Sha256Password::from_password(password), salt).to_vec()
}

/// Client side from a stage-1 hash: `stage1 XOR SHA256(SHA256(stage1) ‖ salt)`.
pub fn scramble_with_stage1(stage1: &Sha256Password, salt: &[u8]) -> [u8; DIGEST_LEN] {
    xor32(&stage1.0, &mask(salt, &stage1.stage2().0))
}

/// Server side: recovers `SHA256(password)` from a fast-path `scramble` for `salt` if and only if
/// it matches the cache value `stored` (compared in constant time).
pub fn recover_stage1(
    scramble: &[u8],
    salt: &[u8],
    stored: &Sha256Stage2Hash,
) -> Option<Sha256Password> {
    let scramble: &[u8; DIGEST_LEN] = scramble.try_into().ok()?;
    let candidate = Sha256Password(xor32(scramble, &mask(salt, &stored.0)));
    ct_eq(&candidate.stage2().0, &stored.0).then_some(candidate)
}

/// Server side: does the fast-path `scramble` match the cache value `stored`?
pub fn verify(scramble: &[u8], salt: &[u8], stored: &Sha256Stage2Hash) -> bool {
    recover_stage1(scramble, salt, stored).is_some()
}

#[cfg(test)]
mod tests;
