//! A signing certificate and its private key: parsed from PEM, checked to match, and the signature
//! scheme chosen as TiDB chooses it: for RSA keys by the certificate's own signature algorithm,
//! for ECDSA and Ed25519 keys by the key alone.
//!
//! Supported:
//! - RSA keys with certificates signed `sha{256,384,512}WithRSAEncryption` (PKCS#1 v1.5 over that
//!   hash of the signed bytes) or RSASSA-PSS with SHA-256/384/512, MGF1 with the same hash and
//!   salt length = hash length (PSS over that hash, same salt length);
//! - ECDSA keys on P-256, P-384 and P-521 (`ec.rs`: the signed bytes are the prehash, as
//!   Go's `ecdsa.SignASN1` is called), whatever algorithm signed the certificate;
//! - Ed25519 keys (pure Ed25519 over the signed bytes) in certificates signed with Ed25519.
//!
//! Refused with [`TokenError::UnsupportedCertificate`]: other key types and curves (P-224 among
//! them), RSA certificates signed with weak or unknown algorithms (SHA-1 and MD5, which Go's
//! `CheckSignature` refuses too, other PSS parameters), and Ed25519 keys in certificates signed
//! otherwise (TiDB verifies Ed25519 tokens with the certificate's signature algorithm, which then
//! fails for every token).

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1::RsaPssParams;
use rsa::pkcs8::der::{Decode, Encode};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::{Pkcs1v15Sign, Pss};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::TokenError;
use crate::random::RngAdapter;
use crate::RandomSource;

// `new_unwrap` runs at compile time (const items): a malformed OID fails the build, never a run.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const MD5_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4");
const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// Ed25519 public keys are this long in the certificate's `subjectPublicKey`.
const ED25519_KEY_LEN: usize = 32;
/// DER of ASN.1 NULL: the parameters a hash algorithm identifier may carry.
const DER_NULL: &[u8] = &[0x05, 0x00];

/// How tokens are signed and verified under a certificate: for RSA keys from the certificate's
/// signature algorithm, for ECDSA and Ed25519 keys from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// RSA PKCS#1 v1.5 over SHA-256 of the signed bytes (`sha256WithRSAEncryption`).
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 over SHA-384 (`sha384WithRSAEncryption`).
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 over SHA-512 (`sha512WithRSAEncryption`).
    RsaPkcs1Sha512,
    /// RSASSA-PSS over SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// RSASSA-PSS over SHA-384, MGF1-SHA-384, 48-byte salt.
    RsaPssSha384,
    /// RSASSA-PSS over SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
    /// ECDSA on P-256 with the signed bytes as the prehash, DER signature; deterministic
    /// (RFC 6979).
    ///
    /// TiDB passes the signed bytes where Go expects a digest, and Go keeps only the leftmost
    /// order-length bytes of it. So only the first 32 bytes are signed (`{"username":"` and 19
    /// bytes after it): the times are not covered at all, and user names sharing their first 19
    /// bytes share signatures. Compatible with TiDB, weak: prefer RSA or Ed25519.
    EcdsaP256,
    /// ECDSA on P-384 like [`EcdsaP256`](Self::EcdsaP256), only the first 48 signed bytes covered;
    /// deterministic (RFC 6979).
    EcdsaP384,
    /// ECDSA on P-521 like [`EcdsaP256`](Self::EcdsaP256): the first 66 signed bytes shifted right
    /// by 7 bits (Go's truncation to the 521-bit order), so 521 bits covered. The nonce comes from
    /// the injected randomness (the `p521` crate has no RFC 6979).
    EcdsaP521,
    /// Pure Ed25519 over the signed bytes, 64-byte signature.
    Ed25519,
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(msg).to_vec(),
            Hash::Sha384 => Sha384::digest(msg).to_vec(),
            Hash::Sha512 => Sha512::digest(msg).to_vec(),
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            SHA256 => Some(Hash::Sha256),
            SHA384 => Some(Hash::Sha384),
            SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// RSA padding and hash, from the certificate's signature algorithm.
#[derive(Clone, Copy)]
struct RsaScheme {
    hash: Hash,
    pss: bool,
}

impl RsaScheme {
    fn public(self) -> SignatureScheme {
        match (self.hash, self.pss) {
            (Hash::Sha256, false) => SignatureScheme::RsaPkcs1Sha256,
            (Hash::Sha384, false) => SignatureScheme::RsaPkcs1Sha384,
            (Hash::Sha512, false) => SignatureScheme::RsaPkcs1Sha512,
            (Hash::Sha256, true) => SignatureScheme::RsaPssSha256,
            (Hash::Sha384, true) => SignatureScheme::RsaPssSha384,
            (Hash::Sha512, true) => SignatureScheme::RsaPssSha512,
        }
    }

    fn pkcs1(hash: Hash) -> Self {
        Self { hash, pss: false }
    }

    fn pkcs1_padding(self) -> Pkcs1v15Sign {
        match self.hash {
            Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    /// PSS with salt length = hash length; `blinded` only means the private-key operation is
    /// blinded with the injected randomness (the signature is ordinary PSS).
    fn pss(self, blinded: bool) -> Pss {
        match (self.hash, blinded) {
            (Hash::Sha256, false) => Pss::new::<Sha256>(),
            (Hash::Sha384, false) => Pss::new::<Sha384>(),
            (Hash::Sha512, false) => Pss::new::<Sha512>(),
            (Hash::Sha256, true) => Pss::new_blinded::<Sha256>(),
            (Hash::Sha384, true) => Pss::new_blinded::<Sha384>(),
            (Hash::Sha512, true) => Pss::new_blinded::<Sha512>(),
        }
    }

    /// The scheme a certificate signature algorithm means for an RSA key, as Go's `x509` maps it.
    fn from_algorithm(
        oid: ObjectIdentifier,
        params: Option<&x509_cert::der::Any>,
    ) -> Result<Self, TokenError> {
        let unsupported = |why: String| Err(TokenError::UnsupportedCertificate(why));
        match oid {
            SHA256_WITH_RSA => Ok(Self::pkcs1(Hash::Sha256)),
            SHA384_WITH_RSA => Ok(Self::pkcs1(Hash::Sha384)),
            SHA512_WITH_RSA => Ok(Self::pkcs1(Hash::Sha512)),
            SHA1_WITH_RSA | MD5_WITH_RSA => unsupported(format!(
                "certificate signature algorithm {oid} (SHA-1/MD5) is insecure; \
                 use a certificate signed with SHA-256 or stronger"
            )),
            RSASSA_PSS => {
                let bad = || {
                    TokenError::UnsupportedCertificate(
                        "RSASSA-PSS certificate parameters other than SHA-256/384/512 with \
                         MGF1 of the same hash and salt length = hash length"
                            .into(),
                    )
                };
                let der = params.and_then(|p| p.to_der().ok()).ok_or_else(bad)?;
                let p = RsaPssParams::try_from(der.as_slice()).map_err(|_| bad())?;
                let hash = Hash::from_oid(p.hash.oid).ok_or_else(bad)?;
                let null_or_absent = |a: Option<rsa::pkcs8::der::asn1::AnyRef<'_>>| {
                    a.is_none_or(|a| a.to_der().is_ok_and(|d| d == DER_NULL))
                };
                let mgf_hash = p.mask_gen.parameters.as_ref().ok_or_else(bad)?;
                let ok = null_or_absent(p.hash.parameters)
                    && p.mask_gen.oid == MGF1
                    && mgf_hash.oid == p.hash.oid
                    && null_or_absent(mgf_hash.parameters)
                    && usize::from(p.salt_len) == hash.len();
                if !ok {
                    return Err(bad());
                }
                Ok(Self { hash, pss: true })
            }
            _ => unsupported(format!(
                "certificate signature algorithm {oid} is not supported for an RSA key: \
                 use a certificate signed with RSA (PKCS#1 v1.5 or PSS) and SHA-256/384/512"
            )),
        }
    }
}

/// The certificate's public key, by type; an RSA key with the scheme its certificate names.
enum PublicKey {
    Rsa(rsa::RsaPublicKey, RsaScheme),
    Ec(EcPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    fn from_certificate(cert: &x509_cert::Certificate) -> Result<Self, TokenError> {
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let cert_algorithm = &cert.signature_algorithm;
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            TokenError::InvalidCertificate(format!("{what} public key: {e}"))
        };
        match spki.algorithm.oid {
            RSA_ENCRYPTION => {
                let der = spki.to_der().map_err(|e| invalid("RSA", &e))?;
                let key =
                    rsa::RsaPublicKey::from_public_key_der(&der).map_err(|e| invalid("RSA", &e))?;
                let scheme = RsaScheme::from_algorithm(
                    cert_algorithm.oid,
                    cert_algorithm.parameters.as_ref(),
                )?;
                Ok(Self::Rsa(key, scheme))
            }
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                    .ok_or_else(|| invalid("ECDSA", &"no named curve"))?;
                let point = spki.subject_public_key.raw_bytes();
                Ok(Self::Ec(EcPublicKey::from_sec1(
                    Curve::from_oid(curve)?,
                    point,
                )?))
            }
            ED25519 if cert_algorithm.oid != ED25519 => {
                Err(TokenError::UnsupportedCertificate(format!(
                    "an Ed25519 key needs a certificate signed with Ed25519, not {}: TiDB \
                     verifies Ed25519 tokens with the certificate's own signature algorithm, \
                     so no token would verify",
                    cert_algorithm.oid
                )))
            }
            ED25519 => {
                let bytes: &[u8; ED25519_KEY_LEN] = spki
                    .subject_public_key
                    .raw_bytes()
                    .try_into()
                    .map_err(|_| invalid("Ed25519", &"not 32 bytes"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|e| invalid("Ed25519", &e))?;
                Ok(Self::Ed25519(key))
            }
            oid => Err(TokenError::UnsupportedCertificate(format!(
                "public key algorithm {oid} is not supported: use an RSA, ECDSA (P-256, P-384, \
                 P-521) or Ed25519 key"
            ))),
        }
    }
}

/// The private key, by type.
enum PrivateKey {
    Rsa(rsa::RsaPrivateKey),
    Ec(EcPrivateKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// The matched key pair and how it signs.
#[derive(Clone)]
enum Keys {
    Rsa {
        scheme: RsaScheme,
        private: rsa::RsaPrivateKey,
        public: rsa::RsaPublicKey,
    },
    Ec {
        private: EcPrivateKey,
        public: EcPublicKey,
    },
    Ed25519 {
        private: ed25519_dalek::SigningKey,
        public: ed25519_dalek::VerifyingKey,
    },
}

/// A parsed certificate (leaf) and its matching private key. `Debug` hides the key.
#[derive(Clone)]
pub(crate) struct SigningCert {
    scheme: SignatureScheme,
    keys: Keys,
}

impl std::fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCert")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SigningCert {
    /// Parses the first certificate of `cert_pem` and the private key of `key_pem` (PKCS#1,
    /// PKCS#8 or SEC1), and checks that they belong together.
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TokenError> {
        let leaf = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| TokenError::InvalidCertificate("no PEM certificate found".into()))?
            .map_err(|e| TokenError::InvalidCertificate(e.to_string()))?;
        let cert = x509_cert::Certificate::from_der(leaf.as_ref())
            .map_err(|e| TokenError::InvalidCertificate(e.to_string()))?;

        let public = PublicKey::from_certificate(&cert)?;
        // Not secret: each comparison is between two public keys.
        let keys = match (parse_private_key(key_pem)?, public) {
            (PrivateKey::Rsa(private), PublicKey::Rsa(public, scheme))
                if private.to_public_key() == public =>
            {
                Keys::Rsa {
                    scheme,
                    private,
                    public,
                }
            }
            (PrivateKey::Ec(private), PublicKey::Ec(public)) if private.public_key() == public => {
                Keys::Ec { private, public }
            }
            (PrivateKey::Ed25519(private), PublicKey::Ed25519(public))
                if private.verifying_key() == public =>
            {
                Keys::Ed25519 { private, public }
            }
            _ => return Err(TokenError::KeyMismatch),
        };
        let scheme = match &keys {
            Keys::Rsa { scheme, .. } => scheme.public(),
            Keys::Ec { public, .. } => public.curve().scheme(),
            Keys::Ed25519 { .. } => SignatureScheme::Ed25519,
        };
        Ok(Self { scheme, keys })
    }

    pub(crate) fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// Signs `msg`. For RSA the randomness blinds the private-key operation and, for PSS, makes
    /// the salt; for ECDSA on P-521 it makes the nonce; P-256, P-384 and Ed25519 do not read it.
    pub(crate) fn sign(
        &self,
        msg: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<u8>, TokenError> {
        match &self.keys {
            Keys::Rsa {
                scheme, private, ..
            } => {
                let digest = scheme.hash.digest(msg);
                let mut rng = RngAdapter(rng);
                let result = if scheme.pss {
                    private.sign_with_rng(&mut rng, scheme.pss(true), &digest)
                } else {
                    private.sign_with_rng(&mut rng, scheme.pkcs1_padding(), &digest)
                };
                result.map_err(|e| TokenError::Signing(e.to_string()))
            }
            Keys::Ec { private, .. } => private.sign(msg, rng),
            Keys::Ed25519 { private, .. } => {
                use ed25519_dalek::Signer as _;
                Ok(private.sign(msg).to_bytes().to_vec())
            }
        }
    }

    /// Whether `signature` is this certificate's signature over `msg`.
    pub(crate) fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        match &self.keys {
            Keys::Rsa { scheme, public, .. } => {
                let digest = scheme.hash.digest(msg);
                if scheme.pss {
                    public.verify(scheme.pss(false), &digest, signature).is_ok()
                } else {
                    public
                        .verify(scheme.pkcs1_padding(), &digest, signature)
                        .is_ok()
                }
            }
            Keys::Ec { public, .. } => public.verify(msg, signature),
            Keys::Ed25519 { public, .. } => {
                // Go's `ed25519.Verify`: cofactorless, `s` must be canonical; so is dalek's
                // non-strict `verify`.
                use ed25519_dalek::Verifier as _;
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| public.verify(msg, &sig).is_ok())
            }
        }
    }
}

fn parse_private_key(key_pem: &[u8]) -> Result<PrivateKey, TokenError> {
    let invalid = |e: &dyn std::fmt::Display| TokenError::InvalidPrivateKey(e.to_string());
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TokenError::InvalidPrivateKey(format!(
            "{e} (expected an unencrypted PKCS#1, PKCS#8 or SEC1 PEM key)"
        ))
    })?;
    let rsa_key = match key {
        PrivateKeyDer::Pkcs1(der) => {
            rsa::RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der()).map_err(|e| invalid(&e))?
        }
        PrivateKeyDer::Pkcs8(der) => {
            let bytes = der.secret_pkcs8_der();
            let info = PrivateKeyInfo::from_der(bytes).map_err(|e| invalid(&e))?;
            match info.algorithm.oid {
                RSA_ENCRYPTION => {
                    rsa::RsaPrivateKey::from_pkcs8_der(bytes).map_err(|e| invalid(&e))?
                }
                EC_PUBLIC_KEY => {
                    let curve = info.algorithm.parameters_oid().map_err(|e| invalid(&e))?;
                    let key = EcPrivateKey::from_pkcs8(Curve::from_oid(curve)?, bytes)?;
                    return Ok(PrivateKey::Ec(key));
                }
                ED25519 => {
                    let key = ed25519_dalek::SigningKey::from_pkcs8_der(bytes)
                        .map_err(|e| invalid(&e))?;
                    return Ok(PrivateKey::Ed25519(key));
                }
                oid => {
                    return Err(TokenError::InvalidPrivateKey(format!(
                        "private key algorithm {oid} is not RSA, ECDSA or Ed25519"
                    )))
                }
            }
        }
        PrivateKeyDer::Sec1(der) => {
            return Ok(PrivateKey::Ec(EcPrivateKey::from_sec1(
                der.secret_sec1_der(),
            )?))
        }
        _ => {
            return Err(TokenError::InvalidPrivateKey(
                "unknown private key format".into(),
            ))
        }
    };
    rsa_key.validate().map_err(|e| invalid(&e))?;
    Ok(PrivateKey::Rsa(rsa_key))
}
