//! The signing certificates with TiDB's rotation rule, and token signing and validation over them.
//!
//! Each successful [`CertStore::load`] puts a new entry in front, even when the certificate did not
//! change, valid for verification for [`CERT_RELOAD_INTERVAL`] + [`OLD_CERT_VALID_TIME`]. So after
//! a rotation every server keeps accepting the old certificate for a while: another server may go
//! on signing with it until its own next reload.

use std::time::SystemTime;

use super::cert::{SignatureScheme, SigningCert};
use super::time::{system_time_to_nanos, TokenTime};
use super::{SessionToken, TokenError, CERT_RELOAD_INTERVAL, OLD_CERT_VALID_TIME, TOKEN_LIFETIME};
use crate::RandomSource;

/// One load of the certificate and key.
#[derive(Debug, Clone)]
struct Entry {
    cert: SigningCert,
    /// Not usable once `now` is after this.
    valid_until: SystemTime,
}

/// The signing certificates, newest first: signs with the newest, verifies with any still valid.
///
/// Sans-IO: the caller reads the files and the clock, and calls [`load`](Self::load) at
/// [`next_reload`](Self::next_reload).
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    /// Newest first; `valid_until` is therefore non-increasing along the list.
    entries: Vec<Entry>,
    /// The last call to `load`, successful or not: reloads happen on a fixed interval.
    last_load: Option<SystemTime>,
}

impl CertStore {
    /// An empty store: nothing signs or verifies until the first successful [`load`](Self::load).
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the PEM certificate (its first certificate is the leaf) and PEM private key (PKCS#1,
    /// PKCS#8 or SEC1, unencrypted) and puts them in front, valid for verification until `now` +
    /// [`CERT_RELOAD_INTERVAL`] + [`OLD_CERT_VALID_TIME`]; entries expired at `now` are dropped.
    ///
    /// On error (bad PEM, key not matching, unsupported algorithm) the store is unchanged: the
    /// caller logs the error and keeps serving with what it had. Returns the new entry's scheme.
    pub fn load(
        &mut self,
        now: SystemTime,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<SignatureScheme, TokenError> {
        self.last_load = Some(now);
        let cert = SigningCert::from_pem(cert_pem, key_pem)?;
        let scheme = cert.scheme();
        let valid_until = later(now, CERT_RELOAD_INTERVAL + OLD_CERT_VALID_TIME);
        // Entries are ordered by expiry, so the first expired one ends the live ones.
        let live = self
            .entries
            .iter()
            .take_while(|e| now <= e.valid_until)
            .count();
        self.entries.truncate(live);
        self.entries.insert(0, Entry { cert, valid_until });
        Ok(scheme)
    }

    /// When the driver should call [`load`](Self::load) next: `now` if it never did, else the last
    /// call (successful or not) + [`CERT_RELOAD_INTERVAL`]. A deadline in the past means "now".
    pub fn next_reload(&self, now: SystemTime) -> SystemTime {
        match self.last_load {
            None => now,
            Some(last) => later(last, CERT_RELOAD_INTERVAL),
        }
    }

    /// The scheme the newest certificate signs with, if it is still valid at `now`.
    pub fn signing_scheme(&self, now: SystemTime) -> Option<SignatureScheme> {
        self.signer(now).map(SigningCert::scheme)
    }

    /// How many loaded certificates can still verify at `now`.
    pub fn valid_certificates(&self, now: SystemTime) -> usize {
        self.entries
            .iter()
            .take_while(|e| now <= e.valid_until)
            .count()
    }

    /// Signs a token for `username`: `sign-time` = `now` written with the local offset
    /// `utc_offset_secs` (east of UTC positive), `expire-time` = `sign-time` + [`TOKEN_LIFETIME`],
    /// signed with the newest certificate. `rng` blinds the RSA private-key operation (and makes
    /// the PSS salt, and the ECDSA P-521 nonce): pass a CSPRNG.
    ///
    /// Fails with [`TokenError::NoSigningCertificate`] when nothing was loaded or the newest entry
    /// has expired (loads have been failing for longer than the validity window).
    pub fn sign(
        &self,
        now: SystemTime,
        utc_offset_secs: i32,
        username: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<SessionToken, TokenError> {
        let cert = self.signer(now).ok_or(TokenError::NoSigningCertificate)?;
        let sign_time = TokenTime::from_system_time(now, utc_offset_secs);
        let mut token = SessionToken {
            username: username.to_vec(),
            sign_time,
            expire_time: sign_time.plus(TOKEN_LIFETIME),
            signature: Vec::new(),
        };
        token.signature = cert.sign(&token.signed_bytes(), rng)?;
        Ok(token)
    }

    /// Validates a token received as the auth data of a `tidb_session_token` login by
    /// `handshake_user`, in TiDB's order:
    ///
    /// 1. parse the JSON ([`TokenError::MalformedToken`]);
    /// 2. verify the signature over the re-derived signed bytes with the certificates, newest
    ///    first, stopping at the first expired one ([`TokenError::NoValidCertificate`] when none
    ///    was valid, [`TokenError::InvalidSignature`] when none verified);
    /// 3. `now` after `expire-time` ([`TokenError::Expired`]);
    /// 4. `sign-time` + [`TOKEN_LIFETIME`] before `now` ([`TokenError::LifetimeTooLong`]);
    /// 5. the user names equal ignoring ASCII case ([`TokenError::UserMismatch`]). Go's
    ///    `strings.EqualFold` also folds non-ASCII letters; ferry is stricter there.
    ///
    /// There is no clock-skew allowance. Returns the token on success.
    pub fn validate(
        &self,
        now: SystemTime,
        token_bytes: &[u8],
        handshake_user: &[u8],
    ) -> Result<SessionToken, TokenError> {
        let token = SessionToken::from_json(token_bytes)?;
        let signed = token.signed_bytes();
        let mut tried = 0;
        let mut verified = false;
        for entry in self.entries.iter().take_while(|e| now <= e.valid_until) {
            tried += 1;
            if entry.cert.verify(&signed, &token.signature) {
                verified = true;
                break;
            }
        }
        if tried == 0 {
            return Err(TokenError::NoValidCertificate {
                cached: self.entries.len(),
            });
        }
        if !verified {
            return Err(TokenError::InvalidSignature);
        }
        let now_nanos = system_time_to_nanos(now);
        if now_nanos > token.expire_time.unix_nanos() {
            return Err(TokenError::Expired {
                expire_time: token.expire_time,
            });
        }
        if token.sign_time.plus(TOKEN_LIFETIME).unix_nanos() < now_nanos {
            return Err(TokenError::LifetimeTooLong {
                sign_time: token.sign_time,
            });
        }
        if !handshake_user.eq_ignore_ascii_case(&token.username) {
            return Err(TokenError::UserMismatch {
                handshake_user: String::from_utf8_lossy(handshake_user).into_owned(),
                token_user: String::from_utf8_lossy(&token.username).into_owned(),
            });
        }
        Ok(token)
    }

    fn signer(&self, now: SystemTime) -> Option<&SigningCert> {
        self.entries
            .first()
            .filter(|e| now <= e.valid_until)
            .map(|e| &e.cert)
    }
}

/// `t + d`, or `t` itself where `SystemTime` cannot represent the sum (`+` would panic): no real
/// clock is near that end, and no input may panic the core.
fn later(t: SystemTime, d: std::time::Duration) -> SystemTime {
    t.checked_add(d).unwrap_or(t)
}

#[cfg(test)]
mod tests;
