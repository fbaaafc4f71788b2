//! Session tokens against certificates made by `openssl` at test time: ferry signs and validates
//! with them (valid, expired, forged, wrong user, rotated, lifetime too long), and openssl checks
//! ferry's signatures over the signed bytes independently (and ferry accepts openssl's), for RSA
//! (PKCS#1 v1.5, PSS), ECDSA P-256 and Ed25519.
//!
//! Needs the `openssl` command: without it the test fails, naming the package to install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use ferry_core::token::{
    CertStore, SessionToken, SignatureScheme, TokenError, CERT_RELOAD_INTERVAL,
    OLD_CERT_VALID_TIME, TOKEN_LIFETIME,
};
use ferry_core::SeededRandom;

/// A certificate and its key, made by openssl in a temporary directory.
struct Cert {
    cert: Vec<u8>,
    key: Vec<u8>,
    /// The certificate's public key as SubjectPublicKeyInfo PEM, for `openssl dgst -verify`.
    pubkey: PathBuf,
    /// The private key file, for `openssl dgst -sign`.
    key_path: PathBuf,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let exe = ferry_tests::require_executable("openssl", "openssl");
    let out = Command::new(&exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `openssl req -x509 -newkey rsa:2048 -<digest> -nodes -days 1 -subj /CN=t`, plus `extra`.
fn make_cert(dir: &Path, name: &str, digest: &str, extra: &[&str]) -> Cert {
    let cert_path = dir.join(format!("{name}_cert.pem"));
    let key_path = dir.join(format!("{name}_key.pem"));
    let pubkey = dir.join(format!("{name}_pub.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        digest,
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=t",
        "-keyout",
        s(&key_path),
        "-out",
        s(&cert_path),
    ];
    args.extend_from_slice(extra);
    openssl(&args);
    openssl(&[
        "x509",
        "-in",
        s(&cert_path),
        "-pubkey",
        "-noout",
        "-out",
        s(&pubkey),
    ]);
    Cert {
        cert: std::fs::read(&cert_path).expect("openssl wrote the certificate"),
        key: std::fs::read(&key_path).expect("openssl wrote the key"),
        pubkey,
        key_path,
    }
}

fn rng() -> SeededRandom {
    SeededRandom::new(0x70_6b_65_6e)
}

fn store_with(now: SystemTime, cert: &Cert) -> CertStore {
    let mut store = CertStore::new();
    store
        .load(now, &cert.cert, &cert.key)
        .expect("ferry loads openssl's certificate and key");
    store
}

/// `openssl dgst -<digest> [pss options] -verify pub -signature sig signed`: true when it prints
/// "Verified OK".
fn openssl_verifies(
    dir: &Path,
    cert: &Cert,
    digest: &str,
    pss: bool,
    token: &SessionToken,
) -> bool {
    let signed = dir.join("signed.json");
    let sig = dir.join("sig.bin");
    std::fs::write(&signed, token.signed_bytes()).unwrap();
    std::fs::write(&sig, &token.signature).unwrap();
    let exe = ferry_tests::require_executable("openssl", "openssl");
    let mut cmd = Command::new(exe);
    cmd.args(["dgst", digest]);
    if pss {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ]);
    }
    let out = cmd
        .args([
            "-verify",
            s(&cert.pubkey),
            "-signature",
            s(&sig),
            s(&signed),
        ])
        .output()
        .expect("openssl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        stdout.contains("Verified OK"),
        "openssl exit status and output disagree: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[test]
fn valid_expired_wrong_user_and_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a", "-sha256", &[]);
    let now = SystemTime::now();
    let store = store_with(now, &cert);
    let token = store.sign(now, 3600, b"app_user", &mut rng()).unwrap();
    let json = token.to_json();

    // Valid, and the user name matches ignoring ASCII case.
    assert_eq!(store.validate(now, &json, b"app_user").as_ref(), Ok(&token));
    assert!(store
        .validate(now + Duration::from_secs(30), &json, b"APP_User")
        .is_ok());

    // Wrong user.
    assert!(matches!(
        store.validate(now, &json, b"root"),
        Err(TokenError::UserMismatch { .. })
    ));

    // Expired: now > expire-time.
    let after = now + TOKEN_LIFETIME + Duration::from_millis(1);
    assert_eq!(
        store.validate(after, &json, b"app_user"),
        Err(TokenError::Expired {
            expire_time: token.expire_time
        })
    );
    assert!(store
        .validate(now + TOKEN_LIFETIME, &json, b"app_user")
        .is_ok());
}

#[test]
fn a_long_lifetime_signed_by_the_right_key_is_refused() {
    // openssl signs a token whose expire-time is an hour after its sign-time: ferry accepts it
    // while the sign-time is recent and refuses it a minute later, though it has not expired.
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a", "-sha256", &[]);
    let now = SystemTime::now();
    let store = store_with(now, &cert);
    let base = store.sign(now, 0, b"app", &mut rng()).unwrap();
    let mut token = SessionToken {
        expire_time: base.sign_time.plus(Duration::from_secs(3600)),
        signature: Vec::new(),
        ..base
    };
    token.signature = openssl_sign(dir.path(), &cert, "-sha256", &token);
    let json = token.to_json();
    assert!(store
        .validate(now + Duration::from_secs(60), &json, b"app")
        .is_ok());
    assert_eq!(
        store.validate(now + Duration::from_secs(61), &json, b"app"),
        Err(TokenError::LifetimeTooLong {
            sign_time: token.sign_time
        })
    );
}

/// `openssl dgst -<digest> -sign key -out sig signed`: openssl's signature over the signed bytes.
fn openssl_sign(dir: &Path, cert: &Cert, digest: &str, token: &SessionToken) -> Vec<u8> {
    let signed = dir.join("to_sign.json");
    let sig = dir.join("openssl_sig.bin");
    std::fs::write(&signed, token.signed_bytes()).unwrap();
    openssl(&[
        "dgst",
        digest,
        "-sign",
        s(&cert.key_path),
        "-out",
        s(&sig),
        s(&signed),
    ]);
    std::fs::read(&sig).unwrap()
}

#[test]
fn forged_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(dir.path(), "a", "-sha256", &[]);
    let b = make_cert(dir.path(), "b", "-sha256", &[]);
    let now = SystemTime::now();
    let store = store_with(now, &a);
    let token = store.sign(now, 0, b"app", &mut rng()).unwrap();

    // Signature bytes flipped.
    for i in [0, token.signature.len() / 2, token.signature.len() - 1] {
        let mut forged = token.clone();
        forged.signature[i] ^= 0x80;
        assert_eq!(
            store.validate(now, &forged.to_json(), b"app"),
            Err(TokenError::InvalidSignature),
            "byte {i} flipped"
        );
        assert!(!openssl_verifies(dir.path(), &a, "-sha256", false, &forged));
    }

    // Signed by another key (B), checked by a server that has only A.
    let by_b = store_with(now, &b)
        .sign(now, 0, b"app", &mut rng())
        .unwrap();
    assert_eq!(
        store.validate(now, &by_b.to_json(), b"app"),
        Err(TokenError::InvalidSignature)
    );

    // A signed field changed after signing (the user name).
    let mut renamed = token.clone();
    renamed.username = b"root".to_vec();
    assert_eq!(
        store.validate(now, &renamed.to_json(), b"root"),
        Err(TokenError::InvalidSignature)
    );

    // No signature at all.
    let unsigned = SessionToken {
        signature: Vec::new(),
        ..token
    };
    assert_eq!(
        store.validate(now, &unsigned.to_json(), b"app"),
        Err(TokenError::InvalidSignature)
    );
}

#[test]
fn rotation_old_certificate_accepted_inside_the_window_refused_after() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert(dir.path(), "a", "-sha256", &[]);
    let b = make_cert(dir.path(), "b", "-sha384", &[]);
    let t0 = SystemTime::now();
    let window = CERT_RELOAD_INTERVAL + OLD_CERT_VALID_TIME;

    // Server 1 (verifier) loads A, then B ten minutes later.
    let mut verifier = store_with(t0, &a);
    let t_b = t0 + CERT_RELOAD_INTERVAL;
    assert_eq!(
        verifier.load(t_b, &b.cert, &b.key),
        Ok(SignatureScheme::RsaPkcs1Sha384)
    );
    // Server 2 has not reloaded yet and still signs with A (its own A load at t0).
    let signer_a = store_with(t0, &a);

    // Inside A's window (loaded at t0, valid until t0 + 25 min): accepted.
    for at in [t_b, t0 + window - Duration::from_secs(30)] {
        let token = signer_a.sign(at, 0, b"app", &mut rng()).unwrap();
        assert!(
            verifier.validate(at, &token.to_json(), b"app").is_ok(),
            "{:?} after the A load",
            at.duration_since(t0).unwrap()
        );
    }
    // A token that A signed just before the window closed, presented just after: refused.
    let late = signer_a
        .sign(t0 + window - Duration::from_secs(1), 0, b"app", &mut rng())
        .unwrap();
    assert!(verifier
        .validate(t0 + window, &late.to_json(), b"app")
        .is_ok());
    assert_eq!(
        verifier.validate(
            t0 + window + Duration::from_secs(1),
            &late.to_json(),
            b"app"
        ),
        Err(TokenError::InvalidSignature)
    );
    // Meanwhile B-signed tokens are accepted all along.
    let by_b = verifier
        .sign(t0 + window + Duration::from_secs(1), 0, b"app", &mut rng())
        .unwrap();
    assert!(verifier
        .validate(
            t0 + window + Duration::from_secs(2),
            &by_b.to_json(),
            b"app"
        )
        .is_ok());
    // And once B's own window ends without a reload, nothing verifies or signs.
    let b_end = t_b + window + Duration::from_secs(1);
    assert_eq!(
        verifier.validate(b_end, &by_b.to_json(), b"app"),
        Err(TokenError::NoValidCertificate { cached: 2 })
    );
    assert_eq!(
        verifier.sign(b_end, 0, b"app", &mut rng()),
        Err(TokenError::NoSigningCertificate)
    );
}

#[test]
fn openssl_verifies_ferrys_signatures_and_ferry_verifies_openssls() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for (name, digest, extra, pss, scheme) in [
        (
            "sha256",
            "-sha256",
            &[][..],
            false,
            SignatureScheme::RsaPkcs1Sha256,
        ),
        (
            "sha384",
            "-sha384",
            &[][..],
            false,
            SignatureScheme::RsaPkcs1Sha384,
        ),
        (
            "sha512",
            "-sha512",
            &[][..],
            false,
            SignatureScheme::RsaPkcs1Sha512,
        ),
        (
            "pss256",
            "-sha256",
            &[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ][..],
            true,
            SignatureScheme::RsaPssSha256,
        ),
    ] {
        let cert = make_cert(dir.path(), name, digest, extra);
        let mut store = CertStore::new();
        assert_eq!(store.load(now, &cert.cert, &cert.key), Ok(scheme), "{name}");
        // A user name with characters Go escapes, so the signed bytes are the interesting ones.
        let token = store
            .sign(
                now,
                -(4 * 3600 + 30 * 60),
                "a<b>&\"ü\u{2028}".as_bytes(),
                &mut rng(),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(token.signed_bytes()).unwrap(),
            format!(
                r#"{{"username":"a\u003cb\u003e\u0026\"ü\u2028","sign-time":"{}","expire-time":"{}"}}"#,
                token.sign_time, token.expire_time
            )
        );
        assert!(token.sign_time.to_string().ends_with("-04:30"));
        assert!(
            openssl_verifies(dir.path(), &cert, digest, pss, &token),
            "{name}: openssl must verify ferry's signature over the signed bytes"
        );
        // The other digest does not verify: the scheme really follows the certificate.
        let other = if digest == "-sha256" {
            "-sha384"
        } else {
            "-sha256"
        };
        assert!(
            !openssl_verifies(dir.path(), &cert, other, pss, &token),
            "{name}"
        );

        if !pss {
            // openssl's PKCS#1 v1.5 signature (deterministic) equals ferry's, and ferry accepts it.
            let theirs = openssl_sign(dir.path(), &cert, digest, &token);
            assert_eq!(theirs, token.signature, "{name}");
            let json = SessionToken {
                signature: theirs,
                ..token.clone()
            }
            .to_json();
            assert!(store
                .validate(now, &json, "A<B>&\"ü\u{2028}".as_bytes())
                .is_ok());
        }
    }
}

/// `openssl req -x509 -newkey <algorithm> [-pkeyopt <opt>]`: an ECDSA or Ed25519 certificate.
fn make_key_cert(dir: &Path, name: &str, algorithm: &str, opt: Option<&str>) -> Cert {
    let cert_path = dir.join(format!("{name}_cert.pem"));
    let key_path = dir.join(format!("{name}_key.pem"));
    let pubkey = dir.join(format!("{name}_pub.pem"));
    let mut args = vec!["req", "-x509", "-newkey", algorithm];
    if let Some(opt) = opt {
        args.extend(["-pkeyopt", opt]);
    }
    args.extend([
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=t",
        "-keyout",
        s(&key_path),
        "-out",
        s(&cert_path),
    ]);
    openssl(&args);
    openssl(&["pkey", "-in", s(&key_path), "-pubout", "-out", s(&pubkey)]);
    Cert {
        cert: std::fs::read(&cert_path).expect("openssl wrote the certificate"),
        key: std::fs::read(&key_path).expect("openssl wrote the key"),
        pubkey,
        key_path,
    }
}

/// What `openssl pkeyutl` signs for a scheme: ECDSA takes the signed bytes as the digest, cut to
/// the curve's size as Go cuts them (P-256: 32 bytes); Ed25519 signs them whole (`-rawin`).
fn pkeyutl_input(scheme: SignatureScheme, signed: &[u8]) -> (Vec<u8>, bool) {
    match scheme {
        SignatureScheme::EcdsaP256 => (signed[..32].to_vec(), false),
        SignatureScheme::Ed25519 => (signed.to_vec(), true),
        other => panic!("not a pkeyutl scheme here: {other:?}"),
    }
}

#[test]
fn openssl_and_ferry_agree_on_ecdsa_and_ed25519_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for (name, algorithm, opt, scheme) in [
        (
            "p256",
            "ec",
            Some("ec_paramgen_curve:P-256"),
            SignatureScheme::EcdsaP256,
        ),
        ("ed25519", "ed25519", None, SignatureScheme::Ed25519),
    ] {
        let cert = make_key_cert(dir.path(), name, algorithm, opt);
        let mut store = CertStore::new();
        assert_eq!(store.load(now, &cert.cert, &cert.key), Ok(scheme), "{name}");
        let token = store.sign(now, 0, b"app", &mut rng()).unwrap();
        let (input, rawin) = pkeyutl_input(scheme, &token.signed_bytes());
        let input_path = dir.path().join(format!("{name}_input.bin"));
        let sig_path = dir.path().join(format!("{name}_sig.bin"));
        std::fs::write(&input_path, &input).unwrap();

        // openssl verifies ferry's signature.
        std::fs::write(&sig_path, &token.signature).unwrap();
        let mut verify = vec![
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            s(&cert.pubkey),
            "-in",
            s(&input_path),
            "-sigfile",
            s(&sig_path),
        ];
        if rawin {
            verify.push("-rawin");
        }
        let out = openssl(&verify);
        assert!(
            String::from_utf8_lossy(&out).contains("Signature Verified Successfully"),
            "{name}: {}",
            String::from_utf8_lossy(&out)
        );

        // ferry verifies openssl's signature, and refuses it for another user.
        let mut sign = vec![
            "pkeyutl",
            "-sign",
            "-inkey",
            s(&cert.key_path),
            "-in",
            s(&input_path),
            "-out",
            s(&sig_path),
        ];
        if rawin {
            sign.push("-rawin");
        }
        openssl(&sign);
        let json = SessionToken {
            signature: std::fs::read(&sig_path).unwrap(),
            ..token.clone()
        }
        .to_json();
        assert!(store.validate(now, &json, b"app").is_ok(), "{name}");
        let renamed = SessionToken {
            username: b"bob".to_vec(),
            signature: std::fs::read(&sig_path).unwrap(),
            ..token.clone()
        }
        .to_json();
        assert!(store.validate(now, &renamed, b"bob").is_err(), "{name}");
    }
}

#[test]
fn openssl_made_unsupported_certificates_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // P-224: a curve Go signs with but ferry does not.
    let p224 = make_key_cert(dir.path(), "p224", "ec", Some("ec_paramgen_curve:P-224"));
    let mut store = CertStore::new();
    let err = store
        .load(SystemTime::now(), &p224.cert, &p224.key)
        .unwrap_err();
    assert!(
        matches!(&err, TokenError::UnsupportedCertificate(why) if why.contains("P-224")),
        "{err}"
    );

    // A key that is not the certificate's.
    let a = make_cert(dir.path(), "a", "-sha256", &[]);
    let b = make_cert(dir.path(), "b", "-sha256", &[]);
    assert_eq!(
        store.load(SystemTime::now(), &a.cert, &b.key),
        Err(TokenError::KeyMismatch)
    );
}
