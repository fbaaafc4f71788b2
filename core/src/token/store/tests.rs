//! Certificate loading, rotation, signing and validation on a virtual clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::token::{TokenError, ER_ACCESS_DENIED_ERROR, ER_CANNOT_MIGRATE_SESSION};
use crate::SeededRandom;

const A_CERT: &[u8] = include_bytes!("../testdata/a_cert.pem");
const A_KEY: &[u8] = include_bytes!("../testdata/a_key.pem");
const B_CERT: &[u8] = include_bytes!("../testdata/b_cert.pem");
const B_KEY: &[u8] = include_bytes!("../testdata/b_key.pem");
const C_PSS_CERT: &[u8] = include_bytes!("../testdata/c_pss_cert.pem");
const C_KEY: &[u8] = include_bytes!("../testdata/c_key_pkcs1.pem");
const A_SHA1_CERT: &[u8] = include_bytes!("../testdata/a_sha1_cert.pem");
const A_PSS_SALT20_CERT: &[u8] = include_bytes!("../testdata/a_pss_salt20_cert.pem");

/// The virtual clock's origin: 2022-06-01T12:34:56.5Z.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_654_086_896, 500_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn rng() -> SeededRandom {
    SeededRandom::new(0x5eed)
}

fn store_a() -> CertStore {
    let mut store = CertStore::new();
    assert_eq!(
        store.load(t0(), A_CERT, A_KEY).unwrap(),
        SignatureScheme::RsaPkcs1Sha256
    );
    store
}

#[test]
fn a_signed_token_validates_within_its_lifetime() {
    let store = store_a();
    let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    assert_eq!(token.sign_time.to_string(), "2022-06-01T12:34:56.5Z");
    assert_eq!(token.expire_time.to_string(), "2022-06-01T12:35:56.5Z");
    assert_eq!(token.signature.len(), 256);
    for after in [0, 1, 59, 60] {
        let got = store.validate(t0() + secs(after), &token.to_json(), b"app");
        assert_eq!(got.as_ref(), Ok(&token), "{after}s after signing");
    }
}

#[test]
fn the_local_offset_is_written_and_survives_validation() {
    let store = store_a();
    let token = store.sign(t0(), 2 * 3600, b"app", &mut rng()).unwrap();
    assert_eq!(token.sign_time.to_string(), "2022-06-01T14:34:56.5+02:00");
    store.validate(t0(), &token.to_json(), b"app").unwrap();
}

#[test]
fn expiry_and_lifetime_are_checked_to_the_nanosecond() {
    let store = store_a();
    let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    let json = token.to_json();
    let end = t0() + TOKEN_LIFETIME;
    assert!(store.validate(end, &json, b"app").is_ok());
    assert_eq!(
        store.validate(end + Duration::from_nanos(1), &json, b"app"),
        Err(TokenError::Expired {
            expire_time: token.expire_time
        })
    );
}

#[test]
fn a_token_claiming_a_long_lifetime_is_refused() {
    // A token signed by the right key whose expire-time is far after its sign-time: refused once
    // the sign-time is more than a minute old, even though it has not "expired".
    let mut store = store_a();
    let cert = store.entries[0].cert.clone();
    let sign_time = TokenTime::from_system_time(t0(), 0);
    let mut token = SessionToken {
        username: b"app".to_vec(),
        sign_time,
        expire_time: sign_time.plus(secs(3600)),
        signature: Vec::new(),
    };
    token.signature = cert.sign(&token.signed_bytes(), &mut rng()).unwrap();
    let json = token.to_json();
    assert!(store.validate(t0() + secs(60), &json, b"app").is_ok());
    assert_eq!(
        store.validate(t0() + secs(61), &json, b"app"),
        Err(TokenError::LifetimeTooLong { sign_time })
    );
    // Expiry is checked before the lifetime.
    store.load(t0() + secs(3600), A_CERT, A_KEY).unwrap();
    assert!(matches!(
        store.validate(t0() + secs(3601), &json, b"app"),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn user_names_match_ignoring_ascii_case_only() {
    let store = store_a();
    let token = store
        .sign(t0(), 0, "Äpp_User".as_bytes(), &mut rng())
        .unwrap();
    let json = token.to_json();
    assert!(store.validate(t0(), &json, "Äpp_User".as_bytes()).is_ok());
    assert!(store.validate(t0(), &json, "ÄPP_uSER".as_bytes()).is_ok());
    for other in ["äpp_user", "Äpp_Use", "Äpp_Userx", ""] {
        assert_eq!(
            store.validate(t0(), &json, other.as_bytes()),
            Err(TokenError::UserMismatch {
                handshake_user: other.into(),
                token_user: "Äpp_User".into()
            }),
            "{other}"
        );
    }
}

#[test]
fn any_change_to_a_signed_field_breaks_the_signature() {
    let store = store_a();
    let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    let later = token.sign_time.plus(secs(1));
    let altered = [
        SessionToken {
            username: b"root".to_vec(),
            ..token.clone()
        },
        SessionToken {
            sign_time: later,
            ..token.clone()
        },
        SessionToken {
            expire_time: later.plus(TOKEN_LIFETIME),
            ..token.clone()
        },
        SessionToken {
            signature: Vec::new(),
            ..token.clone()
        },
    ];
    for t in altered {
        assert_eq!(
            store.validate(t0(), &t.to_json(), &t.username),
            Err(TokenError::InvalidSignature),
            "{t:?}"
        );
    }
    for i in [0, 100, 255] {
        let mut t = token.clone();
        t.signature[i] ^= 0x01;
        assert_eq!(
            store.validate(t0(), &t.to_json(), b"app"),
            Err(TokenError::InvalidSignature)
        );
    }
}

#[test]
fn the_signature_covers_the_exact_time_strings() {
    // Same instant, different offset: a different signed text, so the signature fails.
    let store = store_a();
    let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    let shifted = String::from_utf8(token.to_json())
        .unwrap()
        .replace("12:34:56.5Z", "13:34:56.5+01:00");
    assert_eq!(
        store.validate(t0(), shifted.as_bytes(), b"app"),
        Err(TokenError::InvalidSignature)
    );
    // Same signed text in another JSON layout: still valid.
    use base64::Engine as _;
    let t = &token;
    let relaid = format!(
        "{{ \"signature\" : {:?},\n \"expire-time\":\"{}\", \"username\":\"app\", \"x\":1,\"sign-time\":\"{}\" }}",
        base64::engine::general_purpose::STANDARD.encode(&t.signature),
        // The parser canonicalises times as Go does: ".500" reads as ".5".
        t.expire_time.to_string().replace(".5Z", ".500Z"),
        t.sign_time
    );
    assert_eq!(
        store.validate(t0(), relaid.as_bytes(), b"app").as_ref(),
        Ok(t)
    );
}

#[test]
fn rotation_keeps_the_old_certificate_for_25_minutes_after_its_load() {
    let mut store = store_a();
    let by_a = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    // B replaces A five minutes later; B signs from now on, A still verifies.
    let t_b = t0() + secs(5 * 60);
    assert_eq!(
        store.load(t_b, B_CERT, B_KEY).unwrap(),
        SignatureScheme::RsaPkcs1Sha384
    );
    assert_eq!(
        store.signing_scheme(t_b),
        Some(SignatureScheme::RsaPkcs1Sha384)
    );
    assert_eq!(store.valid_certificates(t_b), 2);

    // A token A signed just before A's window closes (another server still on A), checked here.
    let mut other = CertStore::new();
    let a_end = t0() + CERT_RELOAD_INTERVAL + OLD_CERT_VALID_TIME;
    other.load(a_end - secs(30), A_CERT, A_KEY).unwrap();
    let late_by_a = other.sign(a_end - secs(10), 0, b"app", &mut rng()).unwrap();
    assert!(store
        .validate(a_end - secs(5), &late_by_a.to_json(), b"app")
        .is_ok());
    assert!(store.validate(a_end, &late_by_a.to_json(), b"app").is_ok());
    assert_eq!(
        store.validate(
            a_end + Duration::from_nanos(1),
            &late_by_a.to_json(),
            b"app"
        ),
        Err(TokenError::InvalidSignature)
    );
    assert_eq!(store.valid_certificates(a_end + secs(1)), 1);

    // The first A token itself is long expired by then, and was valid right after rotation.
    assert!(store
        .validate(t_b - secs(4 * 60), &by_a.to_json(), b"app")
        .is_ok());

    // The next load (same B files) drops A from the list.
    store.load(a_end + secs(1), B_CERT, B_KEY).unwrap();
    assert_eq!(store.entries.len(), 2, "B twice, A dropped");
}

#[test]
fn each_load_pushes_an_entry_even_when_unchanged() {
    let mut store = CertStore::new();
    for i in 0..3 {
        store
            .load(t0() + CERT_RELOAD_INTERVAL * i, A_CERT, A_KEY)
            .unwrap();
    }
    assert_eq!(store.entries.len(), 3);
    // The third load (at 20 min) is valid until 45 min.
    let t = t0() + secs(45 * 60);
    assert_eq!(store.valid_certificates(t), 1);
    assert_eq!(store.valid_certificates(t + secs(1)), 0);
}

#[test]
fn a_failed_load_leaves_the_store_unchanged() {
    let mut store = store_a();
    let later = t0() + secs(60);
    assert!(matches!(
        store.load(later, b"not a certificate", A_KEY),
        Err(TokenError::InvalidCertificate(_))
    ));
    assert!(matches!(
        store.load(later, B_CERT, b""),
        Err(TokenError::InvalidPrivateKey(_))
    ));
    assert_eq!(
        store.load(later, B_CERT, A_KEY),
        Err(TokenError::KeyMismatch)
    );
    assert_eq!(store.entries.len(), 1);
    assert_eq!(
        store.signing_scheme(later),
        Some(SignatureScheme::RsaPkcs1Sha256)
    );
    // The failed attempt still schedules the next reload.
    assert_eq!(store.next_reload(later), later + CERT_RELOAD_INTERVAL);
}

#[test]
fn next_reload_follows_the_last_attempt() {
    let mut store = CertStore::new();
    assert_eq!(store.next_reload(t0()), t0(), "never loaded: load now");
    store.load(t0(), A_CERT, A_KEY).unwrap();
    assert_eq!(
        store.next_reload(t0() + secs(1)),
        t0() + CERT_RELOAD_INTERVAL
    );
}

#[test]
fn signing_fails_without_a_valid_certificate() {
    let mut rng = rng();
    let empty = CertStore::new();
    let err = empty.sign(t0(), 0, b"app", &mut rng).unwrap_err();
    assert_eq!(err, TokenError::NoSigningCertificate);
    assert_eq!(
        err.to_string(),
        "no certificate or key file to sign the data"
    );
    let store = store_a();
    let end = t0() + CERT_RELOAD_INTERVAL + OLD_CERT_VALID_TIME;
    assert!(store.sign(end, 0, b"app", &mut rng).is_ok());
    assert_eq!(
        store.sign(end + secs(1), 0, b"app", &mut rng),
        Err(TokenError::NoSigningCertificate)
    );
}

#[test]
fn validation_without_a_valid_certificate() {
    let store = store_a();
    let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
    let err = CertStore::new()
        .validate(t0(), &token.to_json(), b"app")
        .unwrap_err();
    assert_eq!(err, TokenError::NoValidCertificate { cached: 0 });
    let end = t0() + CERT_RELOAD_INTERVAL + OLD_CERT_VALID_TIME;
    let err = store
        .validate(end + secs(1), &token.to_json(), b"app")
        .unwrap_err();
    assert_eq!(err, TokenError::NoValidCertificate { cached: 1 });
    assert_eq!(
        err.to_string(),
        "no valid certificate to check the signature, cached certificates: 1"
    );
}

#[test]
fn malformed_tokens_are_refused_before_anything_else() {
    let store = CertStore::new();
    for bad in [&b"token"[..], b"", b"{\"sign-time\":1}", b"null"] {
        assert!(matches!(
            store.validate(t0(), bad, b"app"),
            Err(TokenError::MalformedToken(_))
        ));
    }
}

#[test]
fn pss_certificates_sign_and_verify() {
    let mut store = CertStore::new();
    assert_eq!(
        store.load(t0(), C_PSS_CERT, C_KEY).unwrap(),
        SignatureScheme::RsaPssSha512
    );
    let a = store
        .sign(t0(), 0, b"app", &mut SeededRandom::new(1))
        .unwrap();
    let b = store
        .sign(t0(), 0, b"app", &mut SeededRandom::new(2))
        .unwrap();
    assert_ne!(a.signature, b.signature, "PSS salts are random");
    assert!(store.validate(t0(), &a.to_json(), b"app").is_ok());
    assert!(store.validate(t0(), &b.to_json(), b"app").is_ok());
    // A PKCS#1 v1.5 signature by the same key over the same bytes does not pass as PSS.
    let mut forged = a.clone();
    let digest = {
        use sha2::Digest as _;
        sha2::Sha512::digest(a.signed_bytes())
    };
    forged.signature =
        rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(std::str::from_utf8(C_KEY).unwrap())
            .map(|k: rsa::RsaPrivateKey| {
                k.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha512>(), &digest)
                    .unwrap()
            })
            .unwrap();
    assert_eq!(
        store.validate(t0(), &forged.to_json(), b"app"),
        Err(TokenError::InvalidSignature)
    );
}

#[test]
fn unsupported_certificates_are_refused_with_a_clear_error() {
    let mut store = CertStore::new();
    // ECDSA and Ed25519 cases are in tests/ec.rs.
    for (cert, key, needle) in [
        (A_SHA1_CERT, A_KEY, "SHA-1"),
        (A_PSS_SALT20_CERT, A_KEY, "salt length"),
    ] {
        match store.load(t0(), cert, key) {
            Err(TokenError::UnsupportedCertificate(why)) => {
                assert!(why.contains(needle), "{why:?} should mention {needle}")
            }
            other => panic!("expected UnsupportedCertificate({needle}), got {other:?}"),
        }
    }
    assert_eq!(store.entries.len(), 0);
}

#[test]
fn a_pkcs1_key_and_a_certificate_chain_load() {
    // The leaf is the first certificate of the chain; the key is PKCS#1.
    let chain = [C_PSS_CERT, A_CERT].concat();
    let mut store = CertStore::new();
    assert_eq!(
        store.load(t0(), &chain, C_KEY).unwrap(),
        SignatureScheme::RsaPssSha512
    );
    let chain = [A_CERT, C_PSS_CERT].concat();
    assert_eq!(
        store.load(t0(), &chain, C_KEY),
        Err(TokenError::KeyMismatch)
    );
}

#[test]
fn errors_map_to_the_mysql_errors_a_server_sends() {
    let err = TokenError::InvalidSignature;
    let denied = err.access_denied(b"app", "10.0.0.1");
    assert_eq!(denied.code, ER_ACCESS_DENIED_ERROR);
    assert_eq!(&denied.sql_state, b"28000");
    assert_eq!(
        denied.message,
        "Access denied for user 'app'@'10.0.0.1' (using password: YES)"
    );
    assert_eq!(
        err.detail(),
        "cannot migrate the current session: signature verification failed"
    );
    let cannot = TokenError::NoSigningCertificate.cannot_migrate();
    assert_eq!(cannot.code, ER_CANNOT_MIGRATE_SESSION);
    assert_eq!(
        cannot.message,
        "cannot migrate the current session: no certificate or key file to sign the data"
    );
}

#[test]
fn debug_output_does_not_show_the_private_key() {
    let store = store_a();
    let debug = format!("{store:?}");
    assert!(debug.contains("RsaPkcs1Sha256"), "{debug}");
    assert!(!debug.contains("BigUint") && debug.len() < 500, "{debug}");
}

#[test]
fn the_far_end_of_system_time_does_not_panic() {
    // The largest SystemTime on this platform: adding the validity window must not overflow.
    let mut end = UNIX_EPOCH;
    let mut step = Duration::from_secs(u64::MAX / 2);
    while step > Duration::ZERO {
        match end.checked_add(step) {
            Some(t) => end = t,
            None => step /= 2,
        }
    }
    let mut store = CertStore::new();
    store.load(end, A_CERT, A_KEY).unwrap();
    assert_eq!(store.next_reload(end), end);
    let token = store.sign(end, 0, b"app", &mut rng()).unwrap();
    let _ = store.validate(end, &token.to_json(), b"app");
}

mod ec;
