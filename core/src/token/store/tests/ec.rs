//! ECDSA and Ed25519 certificates: loading, signing and validation through the store, and
//! signatures cross-checked with OpenSSL (made once at fixture time, see testdata/README.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::token::TokenError;
use crate::SeededRandom;

const A_CERT: &[u8] = include_bytes!("../../testdata/a_cert.pem");
const A_KEY: &[u8] = include_bytes!("../../testdata/a_key.pem");
const EC_CERT: &[u8] = include_bytes!("../../testdata/ec_cert.pem");
const EC_KEY: &[u8] = include_bytes!("../../testdata/ec_key.pem");
const EC_KEY_SEC1: &[u8] = include_bytes!("../../testdata/ec_key_sec1.pem");
const EC_BY_A_CERT: &[u8] = include_bytes!("../../testdata/ec_by_a_cert.pem");
const EC_B_CERT: &[u8] = include_bytes!("../../testdata/ec_b_cert.pem");
const EC_B_KEY: &[u8] = include_bytes!("../../testdata/ec_b_key.pem");
const EC384_CERT: &[u8] = include_bytes!("../../testdata/ec384_cert.pem");
const EC384_KEY: &[u8] = include_bytes!("../../testdata/ec384_key.pem");
const EC384_KEY_SEC1: &[u8] = include_bytes!("../../testdata/ec384_key_sec1.pem");
const EC521_CERT: &[u8] = include_bytes!("../../testdata/ec521_cert.pem");
const EC521_KEY: &[u8] = include_bytes!("../../testdata/ec521_key.pem");
const EC224_CERT: &[u8] = include_bytes!("../../testdata/ec224_cert.pem");
const EC224_KEY: &[u8] = include_bytes!("../../testdata/ec224_key.pem");
const ED25519_CERT: &[u8] = include_bytes!("../../testdata/ed25519_cert.pem");
const ED25519_KEY: &[u8] = include_bytes!("../../testdata/ed25519_key.pem");
const ED25519_B_KEY: &[u8] = include_bytes!("../../testdata/ed25519_b_key.pem");
const ED25519_BY_A_CERT: &[u8] = include_bytes!("../../testdata/ed25519_by_a_cert.pem");

/// The signed bytes of the token for "app" signed at [`t0`] in UTC, which the OpenSSL
/// signatures below were made over.
const SIGNED_APP_T0: &[u8] = include_bytes!("../../testdata/signed_app_t0.json");

/// Every supported non-RSA pair: certificate, key, the scheme it must load as.
const PAIRS: [(&str, &[u8], &[u8], SignatureScheme); 7] = [
    ("P-256 PKCS#8", EC_CERT, EC_KEY, SignatureScheme::EcdsaP256),
    (
        "P-256 SEC1",
        EC_CERT,
        EC_KEY_SEC1,
        SignatureScheme::EcdsaP256,
    ),
    // Issued by the RSA certificate A (sha256WithRSAEncryption): the key picks the scheme.
    (
        "P-256 under RSA",
        EC_BY_A_CERT,
        EC_KEY,
        SignatureScheme::EcdsaP256,
    ),
    (
        "P-384 PKCS#8",
        EC384_CERT,
        EC384_KEY,
        SignatureScheme::EcdsaP384,
    ),
    (
        "P-384 SEC1",
        EC384_CERT,
        EC384_KEY_SEC1,
        SignatureScheme::EcdsaP384,
    ),
    (
        "P-521 PKCS#8",
        EC521_CERT,
        EC521_KEY,
        SignatureScheme::EcdsaP521,
    ),
    (
        "Ed25519",
        ED25519_CERT,
        ED25519_KEY,
        SignatureScheme::Ed25519,
    ),
];

/// 2022-06-01T12:34:56.5Z, as in ../tests.rs.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_654_086_896, 500_000_000)
}

fn rng() -> SeededRandom {
    SeededRandom::new(0x5eed)
}

fn store(cert: &[u8], key: &[u8]) -> CertStore {
    let mut store = CertStore::new();
    store.load(t0(), cert, key).unwrap();
    store
}

/// The token for "app" at [`t0`] carrying `signature`.
fn app_token(signature: &[u8]) -> SessionToken {
    let sign_time = TokenTime::from_system_time(t0(), 0);
    let token = SessionToken {
        username: b"app".to_vec(),
        sign_time,
        expire_time: sign_time.plus(TOKEN_LIFETIME),
        signature: signature.to_vec(),
    };
    assert_eq!(
        token.signed_bytes(),
        SIGNED_APP_T0,
        "the fixture's signed bytes"
    );
    token
}

#[test]
fn ecdsa_and_ed25519_certificates_sign_and_validate() {
    for (name, cert, key, scheme) in PAIRS {
        let mut store = CertStore::new();
        assert_eq!(store.load(t0(), cert, key), Ok(scheme), "{name}");
        let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
        let after = t0() + Duration::from_secs(1);
        assert_eq!(
            store.validate(after, &token.to_json(), b"APP").as_ref(),
            Ok(&token),
            "{name}"
        );
        if scheme == SignatureScheme::Ed25519 {
            assert_eq!(token.signature.len(), 64);
        } else {
            assert_eq!(token.signature[0], 0x30, "{name}: DER SEQUENCE");
        }
        // Another user's name, or any flipped signature bit: refused.
        let renamed = SessionToken {
            username: b"apq".to_vec(),
            ..token.clone()
        };
        assert_eq!(
            store.validate(after, &renamed.to_json(), b"apq"),
            Err(TokenError::InvalidSignature),
            "{name}"
        );
        for i in [0, token.signature.len() / 2, token.signature.len() - 1] {
            let mut forged = token.clone();
            forged.signature[i] ^= 0x01;
            assert_eq!(
                store.validate(after, &forged.to_json(), b"app"),
                Err(TokenError::InvalidSignature),
                "{name}: byte {i}"
            );
        }
        // Trailing bytes after a valid signature: Go's parsers refuse them too.
        let mut padded = token.clone();
        padded.signature.push(0);
        assert_eq!(
            store.validate(after, &padded.to_json(), b"app"),
            Err(TokenError::InvalidSignature),
            "{name}"
        );
    }
}

#[test]
fn openssl_signatures_validate() {
    // OpenSSL signed SIGNED_APP_T0 as the digest (ECDSA; `openssl pkeyutl` takes the leftmost
    // 32/48 bytes, OpenSSL's own truncation the 66-byte shift for P-521) or raw (Ed25519).
    for (name, cert, key, sig) in [
        (
            "P-256",
            EC_CERT,
            EC_KEY,
            &include_bytes!("../../testdata/ec_openssl.sig")[..],
        ),
        (
            "P-384",
            EC384_CERT,
            EC384_KEY,
            include_bytes!("../../testdata/ec384_openssl.sig"),
        ),
        (
            "P-521",
            EC521_CERT,
            EC521_KEY,
            include_bytes!("../../testdata/ec521_openssl.sig"),
        ),
        (
            "Ed25519",
            ED25519_CERT,
            ED25519_KEY,
            include_bytes!("../../testdata/ed25519_openssl.sig"),
        ),
    ] {
        let store = store(cert, key);
        let token = app_token(sig);
        assert_eq!(
            store.validate(t0(), &token.to_json(), b"app").as_ref(),
            Ok(&token),
            "{name}"
        );
        let renamed = SessionToken {
            username: b"apq".to_vec(),
            ..token
        };
        assert_eq!(
            store.validate(t0(), &renamed.to_json(), b"apq"),
            Err(TokenError::InvalidSignature),
            "{name}"
        );
    }
}

#[test]
fn ferry_signatures_are_the_ones_openssl_verified() {
    // P-256, P-384 (RFC 6979) and Ed25519 are deterministic; the P-521 nonce comes from the
    // seeded generator. The committed files passed `openssl pkeyutl -verify` (P-521: OpenSSL
    // through Python `cryptography`) when they were made.
    for (name, cert, key, want) in [
        (
            "P-256",
            EC_CERT,
            EC_KEY,
            &include_bytes!("../../testdata/ec_ferry.sig")[..],
        ),
        (
            "P-384",
            EC384_CERT,
            EC384_KEY,
            include_bytes!("../../testdata/ec384_ferry.sig"),
        ),
        (
            "P-521",
            EC521_CERT,
            EC521_KEY,
            include_bytes!("../../testdata/ec521_ferry.sig"),
        ),
        (
            "Ed25519",
            ED25519_CERT,
            ED25519_KEY,
            include_bytes!("../../testdata/ed25519_ferry.sig"),
        ),
    ] {
        let token = store(cert, key).sign(t0(), 0, b"app", &mut rng()).unwrap();
        assert_eq!(token.signed_bytes(), SIGNED_APP_T0);
        assert_eq!(token.signature, want, "{name}");
    }
    // So the P-521 signature does depend on the generator (and P-256 does not).
    let p521 = store(EC521_CERT, EC521_KEY);
    let other = p521
        .sign(t0(), 0, b"app", &mut SeededRandom::new(1))
        .unwrap();
    assert_ne!(
        other.signature,
        include_bytes!("../../testdata/ec521_ferry.sig")
    );
    let p256 = store(EC_CERT, EC_KEY);
    let same = p256
        .sign(t0(), 0, b"app", &mut SeededRandom::new(1))
        .unwrap();
    assert_eq!(
        same.signature,
        include_bytes!("../../testdata/ec_ferry.sig")
    );
}

#[test]
fn ecdsa_signs_only_the_leftmost_bytes_as_go_does() {
    // Go's ECDSA (and so TiDB's token) covers the signed bytes up to the curve order's bit
    // length and no further: bytes past it can change without breaking the signature. This is
    // the compatibility being tested, and why ECDSA tokens do not protect their times (see
    // `SignatureScheme::EcdsaP256`).
    let msg = SIGNED_APP_T0;
    for (cert, key, covered) in [(EC_CERT, EC_KEY, 32), (EC384_CERT, EC384_KEY, 48)] {
        let cert = store(cert, key).entries[0].cert.clone();
        let sig = cert.sign(msg, &mut rng()).unwrap();
        let changed = |i: usize, bit: u8| {
            let mut m = msg.to_vec();
            m[i] ^= bit;
            m
        };
        assert!(cert.verify(&changed(covered, 0xff), &sig), "{covered}");
        assert!(cert.verify(&msg[..covered], &sig), "{covered}");
        assert!(!cert.verify(&changed(covered - 1, 0x01), &sig), "{covered}");
    }
    // P-521: the leftmost 66 bytes shifted right by 7, so the low 7 bits of byte 65 drop too.
    let cert = store(EC521_CERT, EC521_KEY).entries[0].cert.clone();
    let sig = cert.sign(msg, &mut rng()).unwrap();
    let changed = |i: usize, bit: u8| {
        let mut m = msg.to_vec();
        m[i] ^= bit;
        m
    };
    assert!(cert.verify(&changed(66, 0xff), &sig));
    assert!(cert.verify(&changed(65, 0x7f), &sig));
    assert!(!cert.verify(&changed(65, 0x80), &sig));
    // Ed25519 covers every byte.
    let cert = store(ED25519_CERT, ED25519_KEY).entries[0].cert.clone();
    let sig = cert.sign(msg, &mut rng()).unwrap();
    assert!(!cert.verify(&changed(msg.len() - 1, 0x01), &sig));

    // Through the store: an ECDSA P-256 token whose times were moved 20 minutes on still validates.
    let p256 = store(EC_CERT, EC_KEY);
    let token = p256.sign(t0(), 0, b"app", &mut rng()).unwrap();
    let later = t0() + Duration::from_secs(20 * 60);
    let moved = SessionToken {
        sign_time: TokenTime::from_system_time(later, 0),
        expire_time: TokenTime::from_system_time(later, 0).plus(TOKEN_LIFETIME),
        ..token
    };
    assert!(p256.validate(later, &moved.to_json(), b"app").is_ok());

    // ...and so does one relabelled for another user whose name shares the first 19 bytes (32
    // minus `{"username":"`); a difference within them breaks it.
    let prefix = "abcdefghijklmnopqrs";
    let token = p256
        .sign(t0(), 0, format!("{prefix}_app").as_bytes(), &mut rng())
        .unwrap();
    for (other, verifies) in [
        (format!("{prefix}_root"), true),
        ("abcdefghijklmnopqrX".into(), false),
    ] {
        let relabelled = SessionToken {
            username: other.clone().into_bytes(),
            ..token.clone()
        };
        let got = p256.validate(t0(), &relabelled.to_json(), other.as_bytes());
        assert_eq!(got.is_ok(), verifies, "{other}: {got:?}");
    }
}

#[test]
fn high_s_ecdsa_signatures_are_accepted() {
    // Go's VerifyASN1 takes any s in [1, n-1]; (r, n - s) is as valid as (r, s).
    for (cert, key) in [
        (EC_CERT, EC_KEY),
        (EC384_CERT, EC384_KEY),
        (EC521_CERT, EC521_KEY),
    ] {
        let store = store(cert, key);
        let token = store.sign(t0(), 0, b"app", &mut rng()).unwrap();
        let (negated, was_high) = negate_s(store.signing_scheme(t0()).unwrap(), &token.signature);
        let flipped = SessionToken {
            signature: negated,
            ..token.clone()
        };
        assert_ne!(flipped.signature, token.signature);
        assert!(store.validate(t0(), &flipped.to_json(), b"app").is_ok());
        assert!(store.validate(t0(), &token.to_json(), b"app").is_ok());
        // One of the two has the high s, whichever way the signer left it.
        let (_, flipped_high) = negate_s(store.signing_scheme(t0()).unwrap(), &flipped.signature);
        assert_ne!(was_high, flipped_high);
    }
}

/// `(r, n - s)` as DER, and whether the given `s` was in the high half.
fn negate_s(scheme: SignatureScheme, der: &[u8]) -> (Vec<u8>, bool) {
    macro_rules! negate {
        ($curve:ident) => {{
            let sig = $curve::ecdsa::Signature::from_der(der).unwrap();
            let (r, s) = sig.split_scalars();
            let negated = $curve::ecdsa::Signature::from_scalars(r, -s);
            let high = sig.normalize_s().is_some();
            (negated.unwrap().to_der().as_bytes().to_vec(), high)
        }};
    }
    match scheme {
        SignatureScheme::EcdsaP256 => negate!(p256),
        SignatureScheme::EcdsaP384 => negate!(p384),
        SignatureScheme::EcdsaP521 => negate!(p521),
        other => panic!("not ECDSA: {other:?}"),
    }
}

#[test]
fn a_token_is_refused_under_another_certificate() {
    let signed = |cert, key| {
        store(cert, key)
            .sign(t0(), 0, b"app", &mut rng())
            .unwrap()
            .to_json()
    };
    let p256 = signed(EC_CERT, EC_KEY);
    let ed25519 = signed(ED25519_CERT, ED25519_KEY);
    for (token, cert, key) in [
        (&p256, EC_B_CERT, EC_B_KEY),
        (&p256, EC384_CERT, EC384_KEY),
        (&p256, EC521_CERT, EC521_KEY),
        (&p256, ED25519_CERT, ED25519_KEY),
        (&p256, A_CERT, A_KEY),
        (&ed25519, EC_CERT, EC_KEY),
        (&ed25519, A_CERT, A_KEY),
    ] {
        assert_eq!(
            store(cert, key).validate(t0(), token, b"app"),
            Err(TokenError::InvalidSignature)
        );
    }
    // The same key under another certificate (EC_BY_A) verifies: only the key counts.
    assert!(store(EC_BY_A_CERT, EC_KEY)
        .validate(t0(), &p256, b"app")
        .is_ok());
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_at_load() {
    for (name, cert, key) in [
        ("P-256, other P-256 key", EC_CERT, EC_B_KEY),
        ("P-256, P-384 key", EC_CERT, EC384_KEY),
        ("P-384, P-256 SEC1 key", EC384_CERT, EC_KEY_SEC1),
        ("P-256, RSA key", EC_CERT, A_KEY),
        ("RSA, P-256 SEC1 key", A_CERT, EC_KEY_SEC1),
        ("RSA, Ed25519 key", A_CERT, ED25519_KEY),
        ("Ed25519, other Ed25519 key", ED25519_CERT, ED25519_B_KEY),
        ("Ed25519, P-256 key", ED25519_CERT, EC_KEY),
        ("P-256, Ed25519 key", EC_CERT, ED25519_KEY),
    ] {
        let mut store = CertStore::new();
        assert_eq!(
            store.load(t0(), cert, key),
            Err(TokenError::KeyMismatch),
            "{name}"
        );
        assert_eq!(store.entries.len(), 0);
    }
}

#[test]
fn unsupported_curves_and_ed25519_under_other_algorithms_are_refused() {
    for (cert, key, needles) in [
        (
            EC224_CERT,
            EC224_KEY,
            &["P-224", "P-256, P-384 or P-521"][..],
        ),
        (EC_CERT, EC224_KEY, &["P-224"]),
        (
            ED25519_BY_A_CERT,
            ED25519_KEY,
            &["Ed25519", "1.2.840.113549.1.1.11"],
        ),
    ] {
        let mut store = CertStore::new();
        match store.load(t0(), cert, key) {
            Err(TokenError::UnsupportedCertificate(why)) => {
                for needle in needles {
                    assert!(why.contains(needle), "{why:?} should mention {needle}");
                }
            }
            other => panic!("expected UnsupportedCertificate({needles:?}), got {other:?}"),
        }
        assert_eq!(store.entries.len(), 0);
    }
}

#[test]
fn debug_output_does_not_show_ec_or_ed25519_keys() {
    for (_, cert, key, scheme) in PAIRS {
        let debug = format!("{:?}", store(cert, key));
        assert!(debug.contains(&format!("{scheme:?}")), "{debug}");
        assert!(debug.len() < 300, "{debug}");
    }
}
