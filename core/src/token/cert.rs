//! A signing certificate and its private key: parsed from PEM, checked to match, and the signature
//! scheme chosen by the certificate's own signature algorithm, as TiDB does.
//!
//! Supported: RSA keys with certificates signed `sha{256,384,512}WithRSAEncryption` (PKCS#1 v1.5
//! over that hash of the signed bytes) or RSASSA-PSS with SHA-256/384/512, MGF1 with the same hash
//! and salt length = hash length (PSS over that hash, same salt length). Refused with
//! [`TokenError::UnsupportedCertificate`]: ECDSA and Ed25519 keys (TiDB signs those differently:
//! raw-bytes prehash, pure Ed25519; not implemented), and weak or unknown certificate algorithms
//! (SHA-1 and MD5, which Go's `CheckSignature` refuses too, other PSS parameters).

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1::RsaPssParams;
use rsa::pkcs8::der::{Decode, Encode};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, ObjectIdentifier, PrivateKeyInfo};
use rsa::{Pkcs1v15Sign, Pss};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::TokenError;
use crate::random::RngAdapter;
use crate::RandomSource;

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
/// DER of ASN.1 NULL: the parameters a hash algorithm identifier may carry.
const DER_NULL: &[u8] = &[0x05, 0x00];

/// How tokens are signed and verified under a certificate, from its signature algorithm.
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

impl SignatureScheme {
    fn hash(self) -> Hash {
        match self {
            Self::RsaPkcs1Sha256 | Self::RsaPssSha256 => Hash::Sha256,
            Self::RsaPkcs1Sha384 | Self::RsaPssSha384 => Hash::Sha384,
            Self::RsaPkcs1Sha512 | Self::RsaPssSha512 => Hash::Sha512,
        }
    }

    fn is_pss(self) -> bool {
        matches!(
            self,
            Self::RsaPssSha256 | Self::RsaPssSha384 | Self::RsaPssSha512
        )
    }

    fn pkcs1(self) -> Pkcs1v15Sign {
        match self.hash() {
            Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
            Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
            Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
        }
    }

    /// PSS with salt length = hash length; `blinded` only means the private-key operation is
    /// blinded with the injected randomness (the signature is ordinary PSS).
    fn pss(self, blinded: bool) -> Pss {
        match (self.hash(), blinded) {
            (Hash::Sha256, false) => Pss::new::<Sha256>(),
            (Hash::Sha384, false) => Pss::new::<Sha384>(),
            (Hash::Sha512, false) => Pss::new::<Sha512>(),
            (Hash::Sha256, true) => Pss::new_blinded::<Sha256>(),
            (Hash::Sha384, true) => Pss::new_blinded::<Sha384>(),
            (Hash::Sha512, true) => Pss::new_blinded::<Sha512>(),
        }
    }

    /// The scheme a certificate signature algorithm means, as Go's `x509` maps it.
    fn from_algorithm(
        oid: ObjectIdentifier,
        params: Option<&x509_cert::der::Any>,
    ) -> Result<Self, TokenError> {
        let unsupported = |why: String| Err(TokenError::UnsupportedCertificate(why));
        match oid {
            SHA256_WITH_RSA => Ok(Self::RsaPkcs1Sha256),
            SHA384_WITH_RSA => Ok(Self::RsaPkcs1Sha384),
            SHA512_WITH_RSA => Ok(Self::RsaPkcs1Sha512),
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
                Ok(match hash {
                    Hash::Sha256 => Self::RsaPssSha256,
                    Hash::Sha384 => Self::RsaPssSha384,
                    Hash::Sha512 => Self::RsaPssSha512,
                })
            }
            _ => unsupported(format!(
                "certificate signature algorithm {oid} is not supported: session tokens are \
                 signed with RSA keys only (PKCS#1 v1.5 or PSS with SHA-256/384/512)"
            )),
        }
    }
}

/// A parsed certificate (leaf) and its matching RSA private key. `Debug` hides the key.
#[derive(Clone)]
pub(crate) struct SigningCert {
    scheme: SignatureScheme,
    private: rsa::RsaPrivateKey,
    public: rsa::RsaPublicKey,
}

impl std::fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCert")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SigningCert {
    /// Parses the first certificate of `cert_pem` and the private key of `key_pem` (PKCS#1 or
    /// PKCS#8), and checks that they belong together.
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TokenError> {
        let leaf = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| TokenError::InvalidCertificate("no PEM certificate found".into()))?
            .map_err(|e| TokenError::InvalidCertificate(e.to_string()))?;
        let cert = x509_cert::Certificate::from_der(leaf.as_ref())
            .map_err(|e| TokenError::InvalidCertificate(e.to_string()))?;

        let spki = &cert.tbs_certificate.subject_public_key_info;
        match spki.algorithm.oid {
            RSA_ENCRYPTION => {}
            EC_PUBLIC_KEY => {
                return Err(TokenError::UnsupportedCertificate(
                    "ECDSA certificates are not supported: use an RSA key".into(),
                ))
            }
            ED25519 => {
                return Err(TokenError::UnsupportedCertificate(
                    "Ed25519 certificates are not supported: use an RSA key".into(),
                ))
            }
            oid => {
                return Err(TokenError::UnsupportedCertificate(format!(
                    "public key algorithm {oid} is not supported: use an RSA key"
                )))
            }
        }
        let scheme = SignatureScheme::from_algorithm(
            cert.signature_algorithm.oid,
            cert.signature_algorithm.parameters.as_ref(),
        )?;
        let spki_der = spki
            .to_der()
            .map_err(|e| TokenError::InvalidCertificate(e.to_string()))?;
        let public = rsa::RsaPublicKey::from_public_key_der(&spki_der)
            .map_err(|e| TokenError::InvalidCertificate(format!("public key: {e}")))?;

        let private = parse_private_key(key_pem)?;
        // Not secret: both halves are public keys.
        if private.to_public_key() != public {
            return Err(TokenError::KeyMismatch);
        }
        Ok(Self {
            scheme,
            private,
            public,
        })
    }

    pub(crate) fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// Signs `msg` (hashed here). The randomness blinds the private-key operation and, for PSS,
    /// makes the salt.
    pub(crate) fn sign(
        &self,
        msg: &[u8],
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<u8>, TokenError> {
        let digest = self.scheme.hash().digest(msg);
        let mut rng = RngAdapter(rng);
        let result = if self.scheme.is_pss() {
            self.private
                .sign_with_rng(&mut rng, self.scheme.pss(true), &digest)
        } else {
            self.private
                .sign_with_rng(&mut rng, self.scheme.pkcs1(), &digest)
        };
        result.map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Whether `signature` is this certificate's signature over `msg`.
    pub(crate) fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let digest = self.scheme.hash().digest(msg);
        if self.scheme.is_pss() {
            self.public
                .verify(self.scheme.pss(false), &digest, signature)
                .is_ok()
        } else {
            self.public
                .verify(self.scheme.pkcs1(), &digest, signature)
                .is_ok()
        }
    }
}

fn parse_private_key(key_pem: &[u8]) -> Result<rsa::RsaPrivateKey, TokenError> {
    let invalid = |e: &dyn std::fmt::Display| TokenError::InvalidPrivateKey(e.to_string());
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TokenError::InvalidPrivateKey(format!(
            "{e} (expected an unencrypted PKCS#1 or PKCS#8 PEM key)"
        ))
    })?;
    let private = match key {
        PrivateKeyDer::Pkcs1(der) => {
            rsa::RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der()).map_err(|e| invalid(&e))?
        }
        PrivateKeyDer::Pkcs8(der) => {
            let bytes = der.secret_pkcs8_der();
            let info = PrivateKeyInfo::from_der(bytes).map_err(|e| invalid(&e))?;
            match info.algorithm.oid {
                RSA_ENCRYPTION => {}
                EC_PUBLIC_KEY | ED25519 => {
                    return Err(TokenError::UnsupportedCertificate(
                        "ECDSA and Ed25519 private keys are not supported: use an RSA key".into(),
                    ))
                }
                oid => {
                    return Err(TokenError::InvalidPrivateKey(format!(
                        "private key algorithm {oid} is not RSA"
                    )))
                }
            }
            rsa::RsaPrivateKey::from_pkcs8_der(bytes).map_err(|e| invalid(&e))?
        }
        PrivateKeyDer::Sec1(_) => {
            return Err(TokenError::UnsupportedCertificate(
                "EC private keys (ECDSA) are not supported: use an RSA key".into(),
            ))
        }
        _ => {
            return Err(TokenError::InvalidPrivateKey(
                "unknown private key format".into(),
            ))
        }
    };
    private.validate().map_err(|e| invalid(&e))?;
    Ok(private)
}
