//! TLS terminated inside the core, over rustls's in-memory API: ciphertext bytes in, plaintext out,
//! and the reverse. No socket is involved, so every driver gets TLS for free and the state machines
//! stay testable on a virtual clock.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// A TLS failure: bad configuration, or a peer that broke the TLS protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificates or keys could not be read, or rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The peer sent something TLS does not allow (bad record, failed handshake, bad certificate).
    #[error("TLS: {0}")]
    Protocol(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain and a PEM private key (PKCS#1, PKCS#8 or SEC1).
pub fn server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Config(
            "certificate: no PEM certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Config(format!("private key: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// How a client-side connection decides whether to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Verify against these PEM CA certificates.
    CaPem(Vec<u8>),
    /// Accept any certificate. For tests against self-signed servers only: it gives no protection
    /// against an active attacker.
    InsecureTrustAll,
}

/// A client configuration trusting `trust`.
pub fn client_config(trust: &ServerTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = match trust {
        ServerTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ServerTrust::InsecureTrustAll => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAll(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct TrustAll(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One side of a TLS connection, driven by bytes.
pub struct TlsSession {
    conn: rustls::Connection,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsSession {
    /// The server side (ferry facing a client).
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn =
            rustls::ServerConnection::new(config).map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    /// The client side (ferry facing a backend server named `server_name`).
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(mut conn: rustls::Connection) -> Self {
        // The owner drains ciphertext after every call (the core's drain rule) and bounds its own
        // buffers, so rustls's internal cap would only turn large writes into spurious errors.
        conn.set_buffer_limit(None);
        Self { conn }
    }

    /// True until the TLS handshake completes.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Consumes ciphertext from the peer and appends whatever plaintext it yields to `plaintext`.
    pub fn read_ciphertext(
        &mut self,
        mut input: &[u8],
        plaintext: &mut BytesMut,
    ) -> Result<(), TlsError> {
        while !input.is_empty() {
            // Reading from a slice cannot fail; rustls reads at most one buffer's worth per call.
            let n = self
                .conn
                .read_tls(&mut input)
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            if n == 0 {
                break;
            }
            self.conn
                .process_new_packets()
                .map_err(|e| TlsError::Protocol(e.to_string()))?;
            self.drain_plaintext(plaintext)?;
        }
        Ok(())
    }

    fn drain_plaintext(&mut self, plaintext: &mut BytesMut) -> Result<(), TlsError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.conn.reader().read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => plaintext.extend_from_slice(&chunk[..n]),
                // No plaintext buffered right now: more records must arrive first.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(TlsError::Protocol(e.to_string())),
            }
        }
    }

    /// Queues plaintext to be encrypted and sent (buffered until the handshake completes).
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| TlsError::Protocol(e.to_string()))
    }

    /// Moves all pending ciphertext (handshake records and encrypted data) into `out`.
    pub fn take_ciphertext(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).unwrap_or(0) == 0 {
                break;
            }
        }
    }

    /// Queues a close_notify alert.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    /// Shuttles ciphertext between the two sides until neither has anything to say.
    fn pump(
        a: &mut TlsSession,
        b: &mut TlsSession,
        a_plain: &mut BytesMut,
        b_plain: &mut BytesMut,
    ) {
        for _ in 0..20 {
            let (mut ab, mut ba) = (Vec::new(), Vec::new());
            a.take_ciphertext(&mut ab);
            b.read_ciphertext(&ab, b_plain).unwrap();
            b.take_ciphertext(&mut ba);
            a.read_ciphertext(&ba, a_plain).unwrap();
            if ab.is_empty() && ba.is_empty() {
                return;
            }
        }
        panic!("TLS did not settle");
    }

    #[test]
    fn in_memory_handshake_and_data_both_ways() {
        let (cert, key) = self_signed();
        let mut server =
            TlsSession::server(server_config(cert.as_bytes(), key.as_bytes()).unwrap()).unwrap();
        let trust = ServerTrust::CaPem(cert.clone().into_bytes());
        let mut client = TlsSession::client(client_config(&trust).unwrap(), "localhost").unwrap();
        let (mut cp, mut sp) = (BytesMut::new(), BytesMut::new());
        client.write_plaintext(b"hello server").unwrap();
        pump(&mut client, &mut server, &mut cp, &mut sp);
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(&sp[..], b"hello server");
        let big = vec![7u8; 100_000];
        server.write_plaintext(&big).unwrap();
        pump(&mut server, &mut client, &mut sp, &mut cp);
        assert_eq!(&cp[..], &big[..]);
    }

    #[test]
    fn wrong_ca_is_refused_and_garbage_is_an_error() {
        let (cert, key) = self_signed();
        let (other_ca, _) = self_signed();
        let mut server =
            TlsSession::server(server_config(cert.as_bytes(), key.as_bytes()).unwrap()).unwrap();
        let trust = ServerTrust::CaPem(other_ca.into_bytes());
        let mut client = TlsSession::client(client_config(&trust).unwrap(), "localhost").unwrap();
        let (mut ch, mut sh) = (Vec::new(), Vec::new());
        let (mut cp, mut sp) = (BytesMut::new(), BytesMut::new());
        client.take_ciphertext(&mut ch);
        server.read_ciphertext(&ch, &mut sp).unwrap();
        server.take_ciphertext(&mut sh);
        assert!(matches!(
            client.read_ciphertext(&sh, &mut cp),
            Err(TlsError::Protocol(_))
        ));

        let mut fresh =
            TlsSession::server(server_config(cert.as_bytes(), key.as_bytes()).unwrap()).unwrap();
        assert!(fresh
            .read_ciphertext(b"\x16\x03\x01\xff\xffgarbage", &mut sp)
            .is_err());
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        assert!(matches!(
            server_config(b"nope", b"nope"),
            Err(TlsError::Config(_))
        ));
    }
}
