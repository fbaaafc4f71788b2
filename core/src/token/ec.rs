//! ECDSA the way TiDB signs session tokens: Go's `ecdsa.SignASN1` / `VerifyASN1` called with the
//! signed bytes themselves as the "digest". So there is no hashing: the bytes are truncated as Go's
//! `hashToInt` truncates a digest, signatures are DER `SEQUENCE { r, s }`, and any valid `s` is
//! accepted (Go does not normalise it to the low half). Curves: P-256, P-384, P-521.

use ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier, RandomizedPrehashSigner};
use rsa::pkcs8::der::Decode;
use rsa::pkcs8::{DecodePrivateKey, ObjectIdentifier};

use super::{SignatureScheme, TokenError};
use crate::random::RngAdapter;
use crate::RandomSource;

// `new_unwrap` runs at compile time (const items): a malformed OID fails the build, never a run.
const P224: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.33");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// A curve ferry signs and verifies tokens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    /// The curve of a named-curve OID (certificate or key parameters).
    pub(super) fn from_oid(oid: ObjectIdentifier) -> Result<Self, TokenError> {
        match oid {
            P256 => Ok(Curve::P256),
            P384 => Ok(Curve::P384),
            P521 => Ok(Curve::P521),
            _ => {
                let name = if oid == P224 {
                    "P-224".to_string()
                } else {
                    oid.to_string()
                };
                Err(TokenError::UnsupportedCertificate(format!(
                    "ECDSA curve {name} is not supported: use P-256, P-384 or P-521"
                )))
            }
        }
    }

    pub(super) fn scheme(self) -> SignatureScheme {
        match self {
            Curve::P256 => SignatureScheme::EcdsaP256,
            Curve::P384 => SignatureScheme::EcdsaP384,
            Curve::P521 => SignatureScheme::EcdsaP521,
        }
    }

    fn order_bits(self) -> usize {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// Go's `hashToInt(msg)` as big-endian bytes of the order's byte length: the leftmost
    /// order-length bytes, shifted right by the bits past the order's bit length (7 for P-521).
    ///
    /// The result is exactly the field size, so RustCrypto's `bits2field` takes it unchanged: on
    /// its own it truncates to whole bytes without that shift, and refuses inputs under half the
    /// field size, which Go reads as small integers.
    fn go_prehash(self, msg: &[u8]) -> Vec<u8> {
        let order_bytes = self.order_bits().div_ceil(8);
        let kept = &msg[..msg.len().min(order_bytes)];
        let mut out = vec![0; order_bytes - kept.len()];
        out.extend_from_slice(kept);
        let excess = (kept.len() * 8).saturating_sub(self.order_bits());
        if excess > 0 {
            for i in (0..out.len()).rev() {
                let carry = if i > 0 { out[i - 1] << (8 - excess) } else { 0 };
                out[i] = (out[i] >> excess) | carry;
            }
        }
        out
    }
}

/// The certificate's public key.
#[derive(Clone)]
pub(super) enum EcPublicKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl EcPublicKey {
    /// From the SEC1 point of a certificate's `subjectPublicKey`.
    pub(super) fn from_sec1(curve: Curve, point: &[u8]) -> Result<Self, TokenError> {
        let invalid =
            |e: ecdsa::Error| TokenError::InvalidCertificate(format!("ECDSA public key: {e}"));
        Ok(match curve {
            Curve::P256 => {
                Self::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(invalid)?)
            }
            Curve::P384 => {
                Self::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(invalid)?)
            }
            Curve::P521 => {
                Self::P521(p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(invalid)?)
            }
        })
    }

    pub(super) fn curve(&self) -> Curve {
        match self {
            Self::P256(_) => Curve::P256,
            Self::P384(_) => Curve::P384,
            Self::P521(_) => Curve::P521,
        }
    }

    /// Whether `signature` (DER) is valid for `msg` as Go's `ecdsa.VerifyASN1(key, msg, sig)`.
    pub(super) fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let prehash = self.curve().go_prehash(msg);
        match self {
            Self::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok()),
            Self::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok()),
            Self::P521(key) => p521::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok()),
        }
    }

    /// The uncompressed point, to compare keys of any curve.
    fn uncompressed(&self) -> Vec<u8> {
        match self {
            Self::P256(key) => key.to_encoded_point(false).as_bytes().to_vec(),
            Self::P384(key) => key.to_encoded_point(false).as_bytes().to_vec(),
            Self::P521(key) => key.to_encoded_point(false).as_bytes().to_vec(),
        }
    }
}

impl PartialEq for EcPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.curve() == other.curve() && self.uncompressed() == other.uncompressed()
    }
}

/// The private key.
#[derive(Clone)]
pub(super) enum EcPrivateKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl EcPrivateKey {
    /// From a PKCS#8 `PrivateKeyInfo` whose algorithm parameters named `curve`.
    pub(super) fn from_pkcs8(curve: Curve, der: &[u8]) -> Result<Self, TokenError> {
        let invalid = |e: rsa::pkcs8::Error| TokenError::InvalidPrivateKey(e.to_string());
        Ok(match curve {
            Curve::P256 => Self::P256(
                p256::SecretKey::from_pkcs8_der(der)
                    .map_err(invalid)?
                    .into(),
            ),
            Curve::P384 => Self::P384(
                p384::SecretKey::from_pkcs8_der(der)
                    .map_err(invalid)?
                    .into(),
            ),
            Curve::P521 => {
                let secret = p521::SecretKey::from_pkcs8_der(der).map_err(invalid)?;
                Self::P521(p521_signing_key(&secret)?)
            }
        })
    }

    /// From a SEC1 `ECPrivateKey` ("EC PRIVATE KEY"), whose parameters must name the curve (Go's
    /// `x509.ParseECPrivateKey` refuses one without them too).
    pub(super) fn from_sec1(der: &[u8]) -> Result<Self, TokenError> {
        let invalid = |e: &dyn std::fmt::Display| TokenError::InvalidPrivateKey(e.to_string());
        let parsed = sec1::EcPrivateKey::from_der(der).map_err(|e| invalid(&e))?;
        let oid = parsed
            .parameters
            .and_then(|p| p.named_curve())
            .ok_or_else(|| invalid(&"SEC1 EC private key without a named curve"))?;
        Ok(match Curve::from_oid(oid)? {
            Curve::P256 => Self::P256(
                p256::SecretKey::from_sec1_der(der)
                    .map_err(|e| invalid(&e))?
                    .into(),
            ),
            Curve::P384 => Self::P384(
                p384::SecretKey::from_sec1_der(der)
                    .map_err(|e| invalid(&e))?
                    .into(),
            ),
            Curve::P521 => {
                let secret = p521::SecretKey::from_sec1_der(der).map_err(|e| invalid(&e))?;
                Self::P521(p521_signing_key(&secret)?)
            }
        })
    }

    pub(super) fn public_key(&self) -> EcPublicKey {
        match self {
            Self::P256(key) => EcPublicKey::P256(*key.verifying_key()),
            Self::P384(key) => EcPublicKey::P384(*key.verifying_key()),
            Self::P521(key) => EcPublicKey::P521(p521::ecdsa::VerifyingKey::from(key)),
        }
    }

    /// Signs `msg` as Go's `ecdsa.SignASN1(rand, key, msg)`, DER-encoded. P-256 and P-384 use
    /// RFC 6979 deterministic nonces, so `rng` is not read; the `p521` crate has no RFC 6979, so
    /// the P-521 nonce comes from `rng`, which must then be a CSPRNG (a predictable nonce reveals
    /// the private key).
    pub(super) fn sign(
        &self,
        msg: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<u8>, TokenError> {
        let curve = match self {
            Self::P256(_) => Curve::P256,
            Self::P384(_) => Curve::P384,
            Self::P521(_) => Curve::P521,
        };
        let prehash = curve.go_prehash(msg);
        let failed = |e: ecdsa::Error| TokenError::Signing(e.to_string());
        Ok(match self {
            Self::P256(key) => {
                let sig: p256::ecdsa::Signature = key.sign_prehash(&prehash).map_err(failed)?;
                sig.to_der().as_bytes().to_vec()
            }
            Self::P384(key) => {
                let sig: p384::ecdsa::Signature = key.sign_prehash(&prehash).map_err(failed)?;
                sig.to_der().as_bytes().to_vec()
            }
            Self::P521(key) => {
                let sig: p521::ecdsa::Signature = key
                    .sign_prehash_with_rng(&mut RngAdapter(rng), &prehash)
                    .map_err(failed)?;
                sig.to_der().as_bytes().to_vec()
            }
        })
    }
}

/// `p521` 0.13 wraps its signing key in its own type, made from the scalar bytes.
fn p521_signing_key(secret: &p521::SecretKey) -> Result<p521::ecdsa::SigningKey, TokenError> {
    p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes())
        .map_err(|e| TokenError::InvalidPrivateKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prehash_keeps_the_leftmost_bytes_of_byte_aligned_orders() {
        let msg: Vec<u8> = (1..=100).collect();
        assert_eq!(Curve::P256.go_prehash(&msg), msg[..32]);
        assert_eq!(Curve::P384.go_prehash(&msg), msg[..48]);
    }

    #[test]
    fn the_p521_prehash_drops_the_7_bits_past_the_order() {
        // 66 bytes 0xff then more: the integer is 521 one-bits, i.e. 0x01 then 65 bytes 0xff.
        let msg = [0xff; 70];
        let mut want = vec![0xff; 66];
        want[0] = 0x01;
        assert_eq!(Curve::P521.go_prehash(&msg), want);
        // A bit carried across a byte boundary: 00 01 00 .. >> 7 = 00 00 02 ..
        let mut msg = [0u8; 66];
        msg[1] = 0x01;
        let mut want = vec![0u8; 66];
        want[2] = 0x02;
        assert_eq!(Curve::P521.go_prehash(&msg), want);
    }

    #[test]
    fn a_short_message_is_read_as_a_small_integer() {
        // Go reads fewer bytes than the order's as they are, with no shift.
        let got = Curve::P521.go_prehash(&[0xab, 0xcd]);
        assert_eq!(got.len(), 66);
        assert_eq!(got[64..], [0xab, 0xcd]);
        assert!(got[..64].iter().all(|&b| b == 0));
        assert_eq!(Curve::P256.go_prehash(b"")[..], [0; 32]);
    }

    #[test]
    fn unknown_curves_are_named_in_the_error() {
        for (oid, name) in [
            (P224, "P-224"),
            (ObjectIdentifier::new_unwrap("1.3.132.0.10"), "1.3.132.0.10"),
        ] {
            match Curve::from_oid(oid) {
                Err(TokenError::UnsupportedCertificate(why)) => {
                    assert!(why.contains(name) && why.contains("P-256"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
