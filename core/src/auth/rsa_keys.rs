//! RSA keys for `caching_sha2_password` full authentication without TLS, and the password
//! encryption MySQL uses with them: RSA-OAEP with SHA-1 (digest and MGF1) over
//! `(password ‖ NUL) XOR salt` (the salt repeated), as `sql/auth/sha2_password.cc` and PyMySQL's
//! `sha2_rsa_encrypt` do.
//!
//! Padding randomness and decryption blinding come from the injected [`RandomSource`].
//! Note: RSA decryption in the `rsa` crate 0.9 is not fully constant-time (RUSTSEC-2023-0071,
//! "Marvin"); blinding is always on here, and TLS full authentication avoids RSA altogether.

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::Oaep;
use sha1::Sha1;

use super::{auth_salt, xor_repeating, AuthError, Password};
use crate::random::RngAdapter;
use crate::RandomSource;

/// Bytes OAEP-SHA1 padding takes from the key size: two digests and two bytes.
const OAEP_SHA1_OVERHEAD: usize = 2 * 20 + 2;

/// A server's RSA public key, as a client receives it (or has it configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey(rsa::RsaPublicKey);

impl RsaPublicKey {
    /// Parses a PEM public key: SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, what MySQL sends) or
    /// PKCS#1 (`BEGIN RSA PUBLIC KEY`). Trailing NULs and whitespace are ignored.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let text = pem_text(pem)?;
        let key = if text.contains("BEGIN RSA PUBLIC KEY") {
            rsa::RsaPublicKey::from_pkcs1_pem(text)
                .map_err(|e| AuthError::InvalidKey(e.to_string()))
        } else {
            rsa::RsaPublicKey::from_public_key_pem(text)
                .map_err(|e| AuthError::InvalidKey(e.to_string()))
        }?;
        Ok(Self(key))
    }

    /// The key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`, LF line endings).
    pub fn to_pem(&self) -> Result<String, AuthError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| AuthError::InvalidKey(e.to_string()))
    }

    /// The longest password (without its NUL terminator) this key can encrypt.
    pub fn max_password_len(&self) -> usize {
        self.0.size().saturating_sub(OAEP_SHA1_OVERHEAD + 1)
    }

    /// Client side: RSA-OAEP-SHA1 of `(password ‖ NUL) XOR salt`, the salt (its first 20 bytes,
    /// see [`auth_salt`](super::auth_salt)) repeated over the message.
    pub fn encrypt_password(
        &self,
        password: &[u8],
        salt: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<u8>, AuthError> {
        let mut message = Vec::with_capacity(password.len() + 1);
        message.extend_from_slice(password);
        message.push(0);
        let max = self.max_password_len() + 1;
        if message.len() > max {
            return Err(AuthError::PasswordTooLong {
                len: message.len(),
                max,
            });
        }
        xor_repeating(&mut message, auth_salt(salt));
        self.0
            .encrypt(&mut RngAdapter(rng), Oaep::new::<Sha1>(), &message)
            .map_err(|_| AuthError::Rsa)
    }
}

/// A server's RSA key pair. `Debug` does not print the private key.
#[derive(Clone)]
pub struct RsaKeyPair {
    private: rsa::RsaPrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeyPair")
            .field("bits", &(self.private.size() * 8))
            .finish_non_exhaustive()
    }
}

impl RsaKeyPair {
    /// Parses a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`, `openssl genrsa -traditional`)
    /// or unencrypted PKCS#8 (`BEGIN PRIVATE KEY`, OpenSSL 3's `genrsa` default).
    pub fn from_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let text = pem_text(pem)?;
        let private = if text.contains("BEGIN RSA PRIVATE KEY") {
            rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .map_err(|e| AuthError::InvalidKey(e.to_string()))
        } else {
            rsa::RsaPrivateKey::from_pkcs8_pem(text)
                .map_err(|e| AuthError::InvalidKey(e.to_string()))
        }?;
        Self::from_private_key(private)
    }

    /// Wraps a key pair made elsewhere (e.g. generated at startup by the driver).
    pub fn from_private_key(private: rsa::RsaPrivateKey) -> Result<Self, AuthError> {
        private
            .validate()
            .map_err(|e| AuthError::InvalidKey(e.to_string()))?;
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| AuthError::InvalidKey(e.to_string()))?;
        Ok(Self {
            private,
            public_pem,
        })
    }

    /// The public half.
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey(self.private.to_public_key())
    }

    /// The public half as SubjectPublicKeyInfo PEM: what the server sends a client that asks.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Server side: decrypts a client's [`RsaPublicKey::encrypt_password`] output and returns the
    /// password without its NUL. `None` when the ciphertext does not decrypt under this key or
    /// the result is not NUL-terminated (wrong key, wrong salt, garbage): the server denies.
    pub fn decrypt_password(
        &self,
        ciphertext: &[u8],
        salt: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Option<Password> {
        let mut message = self
            .private
            .decrypt_blinded(&mut RngAdapter(rng), Oaep::new::<Sha1>(), ciphertext)
            .ok()?;
        xor_repeating(&mut message, auth_salt(salt));
        match message.pop() {
            Some(0) => Some(Password::new(message)),
            _ => None,
        }
    }
}

/// The PEM as text, without trailing NULs or whitespace (servers may send either).
fn pem_text(pem: &[u8]) -> Result<&str, AuthError> {
    let text =
        std::str::from_utf8(pem).map_err(|_| AuthError::InvalidKey("PEM is not UTF-8".into()))?;
    Ok(text.trim_end_matches(|c: char| c == '\0' || c.is_ascii_whitespace()))
}

#[cfg(test)]
mod tests;
