use super::*;
use crate::SeededRandom;

const PRIV_PKCS8: &str = include_str!("../testdata/rsa2048_pkcs8.pem");
const PRIV_PKCS1: &str = include_str!("../testdata/rsa2048_pkcs1.pem");
const PUB_SPKI: &str = include_str!("../testdata/rsa2048_spki_pub.pem");
const PUB_PKCS1: &str = include_str!("../testdata/rsa2048_pkcs1_pub.pem");
/// PyMySQL's `sha2_rsa_encrypt(b"password", bytes(range(1, 21)), PUB_SPKI)`.
const PYMYSQL_CT: &str = include_str!("../testdata/pymysql_ct_password_salt_1_20.hex");

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn salt() -> Vec<u8> {
    (1..=20).collect()
}

#[test]
fn parses_all_pem_forms_of_one_key() {
    let a = RsaKeyPair::from_pem(PRIV_PKCS8.as_bytes()).unwrap();
    let b = RsaKeyPair::from_pem(PRIV_PKCS1.as_bytes()).unwrap();
    let spki = RsaPublicKey::from_pem(PUB_SPKI.as_bytes()).unwrap();
    let pkcs1 = RsaPublicKey::from_pem(PUB_PKCS1.as_bytes()).unwrap();
    assert_eq!(a.public_key(), spki);
    assert_eq!(b.public_key(), spki);
    assert_eq!(pkcs1, spki);
    // What the server sends is the SPKI form, byte for byte what OpenSSL writes.
    assert_eq!(a.public_key_pem(), PUB_SPKI);
    assert_eq!(spki.to_pem().unwrap(), PUB_SPKI);
    assert_eq!(spki.max_password_len(), 256 - 42 - 1);
}

#[test]
fn public_pem_tolerates_trailing_nul_and_missing_newline() {
    let mut sent = PUB_SPKI.as_bytes().to_vec();
    sent.push(0);
    assert!(RsaPublicKey::from_pem(&sent).is_ok());
    assert!(RsaPublicKey::from_pem(PUB_SPKI.trim_end().as_bytes()).is_ok());
}

#[test]
fn rejects_bad_pem() {
    for bad in [
        &b""[..],
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"\xff\xfe",
        PRIV_PKCS8.as_bytes(), // a private key is not a public key
    ] {
        assert!(matches!(
            RsaPublicKey::from_pem(bad),
            Err(AuthError::InvalidKey(_))
        ));
    }
    assert!(matches!(
        RsaKeyPair::from_pem(PUB_SPKI.as_bytes()),
        Err(AuthError::InvalidKey(_))
    ));
}

#[test]
fn decrypts_pymysql_ciphertext() {
    let pair = RsaKeyPair::from_pem(PRIV_PKCS8.as_bytes()).unwrap();
    let mut rng = SeededRandom::new(1);
    let pw = pair
        .decrypt_password(&unhex(PYMYSQL_CT), &salt(), &mut rng)
        .unwrap();
    assert_eq!(pw.as_bytes(), b"password");
    // With another salt the XOR leaves no NUL terminator where one belongs.
    assert!(pair
        .decrypt_password(&unhex(PYMYSQL_CT), &[0xaa; 20], &mut rng)
        .is_none());
    let mut ct = unhex(PYMYSQL_CT);
    ct[100] ^= 1;
    assert!(pair.decrypt_password(&ct, &salt(), &mut rng).is_none());
    assert!(pair.decrypt_password(b"short", &salt(), &mut rng).is_none());
}

#[test]
fn encrypt_decrypt_round_trip_and_length_limit() {
    let pair = RsaKeyPair::from_pem(PRIV_PKCS1.as_bytes()).unwrap();
    let public = RsaPublicKey::from_pem(PUB_SPKI.as_bytes()).unwrap();
    let mut rng = SeededRandom::new(7);
    for pw in [&b""[..], b"x", "pässwörd ✓".as_bytes(), &[b'a'; 213]] {
        let ct = public.encrypt_password(pw, &salt(), &mut rng).unwrap();
        assert_eq!(ct.len(), 256);
        let back = pair.decrypt_password(&ct, &salt(), &mut rng).unwrap();
        assert_eq!(back.as_bytes(), pw);
    }
    // Padding is random: the same input encrypts differently each time.
    let c1 = public.encrypt_password(b"pw", &salt(), &mut rng).unwrap();
    let c2 = public.encrypt_password(b"pw", &salt(), &mut rng).unwrap();
    assert_ne!(c1, c2);
    assert_eq!(
        public.encrypt_password(&[b'a'; 214], &salt(), &mut rng),
        Err(AuthError::PasswordTooLong { len: 215, max: 214 })
    );
}

#[test]
fn debug_hides_private_key() {
    let pair = RsaKeyPair::from_pem(PRIV_PKCS8.as_bytes()).unwrap();
    assert_eq!(format!("{pair:?}"), "RsaKeyPair { bits: 2048, .. }");
}
