//! `mysql_native_password`: the SHA-1 challenge/response, both sides, and stage-1 recovery.
//!
//! One step (see the [module docs](super)): the client answers the salt with
//! `SHA1(pw) XOR SHA1(salt ‖ SHA1(SHA1(pw)))`, or nothing for an empty password; the server, which
//! stores only stage2 = `SHA1(SHA1(pw))`, undoes the XOR to get stage1 = `SHA1(pw)` and checks
//! `SHA1(stage1) == stage2`. Follows MySQL's `sql/auth/password.cc` (`scramble`,
//! `check_scramble`) and PyMySQL's `scramble_native_password`.
//!
//! Recovery is what makes ferry's `proxy` auth mode work: the recovered [`Sha1Password`] answers
//! any other salt ([`scramble_with_stage1`]), so ferry logs in to backends as the user without
//! storing or learning a plaintext password.

use sha1::{Digest, Sha1};

use super::{ct_eq, decode_hex, redacted_debug, AuthError, SALT_LEN};

/// Length of a SHA-1 digest, and so of a non-empty scramble.
pub const SCRAMBLE_LEN: usize = 20;

/// The stage-1 hash `SHA1(password)`: enough to answer any native challenge, so a secret.
///
/// Obtained from a plaintext password ([`Sha1Password::from_password`]) or recovered from a
/// client's scramble ([`recover_stage1`]). `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha1Password([u8; SCRAMBLE_LEN]);

/// The stage-2 hash `SHA1(SHA1(password))` that `mysql.user` stores (as `*` and 40 hex digits).
///
/// Not enough to log in, but enough to recover [`Sha1Password`] from one observed scramble and to
/// attack the password offline, so `Debug` does not print it either. [`Self::to_hex`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct NativeStage2Hash([u8; SCRAMBLE_LEN]);

redacted_debug!(Sha1Password, NativeStage2Hash);

impl Sha1Password {
    /// `SHA1(password)`.
    pub fn from_password(password: &[u8]) -> Self {
        Self(Sha1::digest(password).into())
    }

    /// Wraps a stage-1 hash kept elsewhere.
    pub fn from_bytes(bytes: [u8; SCRAMBLE_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw hash (secret: handle with care).
    pub fn as_bytes(&self) -> &[u8; SCRAMBLE_LEN] {
        &self.0
    }

    /// The stage-2 hash `SHA1(stage1)` a server stores for this password.
    pub fn stage2(&self) -> NativeStage2Hash {
        NativeStage2Hash(Sha1::digest(self.0).into())
    }
}

impl NativeStage2Hash {
    /// `SHA1(SHA1(password))`.
    pub fn from_password(password: &[u8]) -> Self {
        Sha1Password::from_password(password).stage2()
    }

    /// Wraps the 20 raw bytes.
    pub fn from_bytes(bytes: [u8; SCRAMBLE_LEN]) -> Self {
        Self(bytes)
    }

    /// Takes either the 20 raw bytes or the 41-character text form `*` + 40 hex digits (either
    /// case) that `mysql.user.authentication_string` and `PASSWORD()` show.
    pub fn parse(stored: &[u8]) -> Result<Self, AuthError> {
        match stored.len() {
            SCRAMBLE_LEN => {
                let mut out = [0u8; SCRAMBLE_LEN];
                out.copy_from_slice(stored);
                Ok(Self(out))
            }
            41 => Self::parse_hex(stored),
            _ => Err(AuthError::InvalidStoredHash(
                "mysql_native_password hash must be 20 bytes or '*' and 40 hex digits",
            )),
        }
    }

    /// Parses the text form `*` + 40 hex digits (upper or lower case).
    pub fn parse_hex(text: &[u8]) -> Result<Self, AuthError> {
        let Some((b'*', hex)) = text.split_first() else {
            return Err(AuthError::InvalidStoredHash(
                "mysql_native_password hash text must start with '*'",
            ));
        };
        decode_hex(hex)
            .map(Self)
            .ok_or(AuthError::InvalidStoredHash(
                "mysql_native_password hash text must have 40 hex digits",
            ))
    }

    /// The text form as MySQL prints it: `*` and 40 upper-case hex digits.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut s = String::with_capacity(41);
        s.push('*');
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 0x0f)] as char);
        }
        s
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; SCRAMBLE_LEN] {
        &self.0
    }
}

/// `SHA1(salt ‖ stage2)`, the mask both sides XOR with stage1. Uses at most [`SALT_LEN`] bytes.
fn mask(salt: &[u8], stage2: &[u8; SCRAMBLE_LEN]) -> [u8; SCRAMBLE_LEN] {
    let mut h = Sha1::new();
    h.update(&salt[..salt.len().min(SALT_LEN)]);
    h.update(stage2);
    h.finalize().into()
}

fn xor20(a: &[u8; SCRAMBLE_LEN], b: &[u8; SCRAMBLE_LEN]) -> [u8; SCRAMBLE_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Client side: the auth response to `salt` for `password` (empty for an empty password, as
/// MySQL's client and PyMySQL send). `salt` is the server's 20 bytes (see [`super::auth_salt`]).
pub fn scramble(password: &[u8], salt: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    scramble_with_stage1(&Sha1Password::from_password(password), salt).to_vec()
}

/// Client side from a stage-1 hash: `stage1 XOR SHA1(salt ‖ SHA1(stage1))`. This is how a proxy
/// that recovered [`Sha1Password`] answers a backend's fresh salt.
pub fn scramble_with_stage1(stage1: &Sha1Password, salt: &[u8]) -> [u8; SCRAMBLE_LEN] {
    xor20(&stage1.0, &mask(salt, &stage1.stage2().0))
}

/// Server side: recovers `SHA1(password)` from the client's `scramble` for `salt`, if and only if
/// it matches `stored` (compared in constant time). `None` means a wrong password or a response of
/// the wrong length (an empty response is never accepted here: see [`verify`]).
pub fn recover_stage1(
    scramble: &[u8],
    salt: &[u8],
    stored: &NativeStage2Hash,
) -> Option<Sha1Password> {
    let scramble: &[u8; SCRAMBLE_LEN] = scramble.try_into().ok()?;
    let candidate = Sha1Password(xor20(scramble, &mask(salt, &stored.0)));
    ct_eq(&candidate.stage2().0, &stored.0).then_some(candidate)
}

/// Server side: does `scramble` prove knowledge of the password behind `stored`?
///
/// Accounts without a password are [`super::Credential::NoPassword`], which accepts exactly the
/// empty response; here an empty response is always rejected.
pub fn verify(scramble: &[u8], salt: &[u8], stored: &NativeStage2Hash) -> bool {
    recover_stage1(scramble, salt, stored).is_some()
}

/// Server side, for plaintext passwords (cleartext plugin, caching_sha2 full authentication):
/// `SHA1(SHA1(password)) == stored`, in constant time.
pub fn verify_plaintext(password: &[u8], stored: &NativeStage2Hash) -> bool {
    ct_eq(&NativeStage2Hash::from_password(password).0, &stored.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PASSWORD('password')` in MySQL 5.7 / MariaDB.
    const PASSWORD_HEX: &str = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19";
    /// Salt 0x01..=0x14; expected scramble computed with PyMySQL's
    /// `scramble_native_password(b"password", bytes(range(1, 21)))`.
    const SCRAMBLE_PASSWORD_SALT_1_20: &str = "c17d6009a5cb47e59f7483fcf05553bbbf7dd0d6";

    fn salt() -> Vec<u8> {
        (1..=20).collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn stage2_known_answer() {
        let h = NativeStage2Hash::from_password(b"password");
        assert_eq!(h.to_hex(), PASSWORD_HEX);
        assert_eq!(NativeStage2Hash::parse(PASSWORD_HEX.as_bytes()).unwrap(), h);
        let lower = PASSWORD_HEX.to_ascii_lowercase();
        assert_eq!(NativeStage2Hash::parse(lower.as_bytes()).unwrap(), h);
        assert_eq!(NativeStage2Hash::parse(h.as_bytes()).unwrap(), h);
        // stage1 = SHA1("password"), a well-known digest.
        assert_eq!(
            hex(Sha1Password::from_password(b"password").as_bytes()),
            "5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8"
        );
    }

    #[test]
    fn parse_rejects_bad_forms() {
        for bad in [
            &b""[..],
            b"2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", // 40 chars, no star
            b"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1", // 39 digits
            b"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1G", // non-hex
            b"#2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", // wrong prefix
            &[0u8; 21],
        ] {
            assert!(
                matches!(
                    NativeStage2Hash::parse(bad),
                    Err(AuthError::InvalidStoredHash(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scramble_known_answer() {
        assert_eq!(
            hex(&scramble(b"password", &salt())),
            SCRAMBLE_PASSWORD_SALT_1_20
        );
        assert!(scramble(b"", &salt()).is_empty());
        // A salt with the wire's trailing bytes is cut to 20, as MySQL and PyMySQL do.
        let mut long = salt();
        long.push(0);
        assert_eq!(scramble(b"password", &long), scramble(b"password", &salt()));
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong() {
        let stored = NativeStage2Hash::from_password(b"s3cret");
        let s = scramble(b"s3cret", &salt());
        assert!(verify(&s, &salt(), &stored));
        assert!(!verify(&scramble(b"s3cres", &salt()), &salt(), &stored));
        let other_salt = [9u8; 20];
        assert!(!verify(&s, &other_salt, &stored));
        assert!(!verify(&s[..19], &salt(), &stored));
        assert!(!verify(b"", &salt(), &stored));
        let mut flipped = s.clone();
        flipped[7] ^= 1;
        assert!(!verify(&flipped, &salt(), &stored));
    }

    #[test]
    fn recovery_answers_a_new_salt() {
        let stored = NativeStage2Hash::parse(PASSWORD_HEX.as_bytes()).unwrap();
        let client = scramble(b"password", &salt());
        let stage1 = recover_stage1(&client, &salt(), &stored).expect("right password");
        assert_eq!(stage1, Sha1Password::from_password(b"password"));
        let backend_salt: Vec<u8> = (100..120).collect();
        assert_eq!(
            scramble_with_stage1(&stage1, &backend_salt).to_vec(),
            scramble(b"password", &backend_salt)
        );
        assert!(recover_stage1(&scramble(b"Password", &salt()), &salt(), &stored).is_none());
    }

    #[test]
    fn verify_plaintext_checks_stage2() {
        let stored = NativeStage2Hash::parse(PASSWORD_HEX.as_bytes()).unwrap();
        assert!(verify_plaintext(b"password", &stored));
        assert!(!verify_plaintext(b"password ", &stored));
        assert!(!verify_plaintext(b"", &stored));
    }

    #[test]
    fn debug_hides_secrets() {
        let s1 = Sha1Password::from_password(b"password");
        assert_eq!(format!("{s1:?}"), "Sha1Password(..)");
        let s2 = s1.stage2();
        let dbg = format!("{s2:?}");
        assert_eq!(dbg, "NativeStage2Hash(..)");
        assert!(!dbg.contains("2470"));
    }
}
