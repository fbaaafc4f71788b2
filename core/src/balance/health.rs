//! The health probe: is a backend that just sent its first packet able to take sessions?
//!
//! A driver's health checker connects to a backend with a short timeout, reads what the server
//! sends first and hands the bytes read so far to [`probe_greeting`] until it stops answering
//! [`Probe::NeedMore`]. The server speaks first: a protocol-10 greeting means it accepts
//! connections; an ERR packet in its place (`1040` too many connections, `1129` host blocked,
//! anything else) means it does not. Nothing is sent, so the check needs no account.
//!
//! Pure and stateless: the same bytes always give the same answer, so the caller keeps the
//! buffer and may call again with more.

use std::fmt;

use crate::wire::{Capabilities, ErrPacket, HandshakeV10, PacketDecoder};
use crate::DecodeError;

/// Cap on the greeting's size: real greetings are about 100 bytes; a peer announcing more than
/// this is not a MySQL server worth waiting for.
pub const MAX_GREETING_SIZE: usize = 16 * 1024;

/// MySQL's ER_CON_COUNT_ERROR: "Too many connections".
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// MySQL's ER_HOST_IS_BLOCKED: too many connection errors from this host.
pub const ER_HOST_IS_BLOCKED: u16 = 1129;

/// The verdict on the bytes a backend sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A well-formed protocol-10 greeting: the backend accepts connections.
    Healthy {
        /// The server's version string (lossy UTF-8), e.g. `11.4.2-MariaDB`.
        server_version: String,
    },
    /// The backend answered but cannot take sessions.
    Unhealthy(Unhealthy),
    /// The first packet is not complete yet: read more and call again.
    NeedMore,
}

/// Why a backend is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unhealthy {
    /// ERR 1040: the server has no connection slot left.
    TooManyConnections,
    /// ERR 1129: the server blocks this host after too many connection errors.
    HostBlocked,
    /// Another ERR packet instead of the greeting.
    ServerError {
        /// The error code.
        code: u16,
        /// The server's message (lossy UTF-8).
        message: String,
    },
    /// The first packet is not a greeting ferry understands.
    Malformed(DecodeError),
}

impl fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyConnections => {
                write!(f, "too many connections (ERR {ER_CON_COUNT_ERROR})")
            }
            Self::HostBlocked => write!(f, "host blocked (ERR {ER_HOST_IS_BLOCKED})"),
            Self::ServerError { code, message } => write!(f, "server error {code}: {message}"),
            Self::Malformed(e) => write!(f, "not a MySQL greeting: {e}"),
        }
    }
}

/// Judges the bytes a backend sent so far (from the start of the connection).
pub fn probe_greeting(bytes: &[u8]) -> Probe {
    let mut decoder = PacketDecoder::new(MAX_GREETING_SIZE);
    decoder.feed(bytes);
    let packet = match decoder.next_packet() {
        Ok(Some(packet)) => packet,
        Ok(None) => return Probe::NeedMore,
        Err(e) => return Probe::Unhealthy(Unhealthy::Malformed(e)),
    };
    let payload = &packet.payload[..];
    if payload.first() == Some(&0xFF) {
        // Capabilities are not agreed yet: servers send this ERR without the SQL state.
        return Probe::Unhealthy(match ErrPacket::parse(payload, Capabilities::EMPTY) {
            Ok(err) => match err.code {
                ER_CON_COUNT_ERROR => Unhealthy::TooManyConnections,
                ER_HOST_IS_BLOCKED => Unhealthy::HostBlocked,
                code => Unhealthy::ServerError {
                    code,
                    message: String::from_utf8_lossy(err.message).into_owned(),
                },
            },
            Err(e) => Unhealthy::Malformed(e),
        });
    }
    match HandshakeV10::parse(payload) {
        Ok(greeting) => Probe::Healthy {
            server_version: String::from_utf8_lossy(greeting.server_version).into_owned(),
        },
        Err(e) => Probe::Unhealthy(Unhealthy::Malformed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthPlugin;
    use crate::wire::{encode_packet, ServerStatus};
    use bytes::BytesMut;

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        let mut seq = 0;
        encode_packet(&mut out, &mut seq, payload);
        out.to_vec()
    }

    fn greeting(version: &[u8]) -> Vec<u8> {
        let scramble = [7u8; 20];
        let caps = Capabilities(
            Capabilities::PROTOCOL_41.0
                | Capabilities::SECURE_CONNECTION.0
                | Capabilities::PLUGIN_AUTH.0,
        );
        let hello = HandshakeV10::new(
            version,
            42,
            &scramble,
            caps,
            45,
            ServerStatus::AUTOCOMMIT,
            AuthPlugin::MysqlNativePassword.name().as_bytes(),
        );
        let mut payload = BytesMut::new();
        hello.encode(&mut payload);
        packet(&payload)
    }

    fn err(code: u16, message: &str) -> Vec<u8> {
        let mut payload = vec![0xFF];
        payload.extend_from_slice(&code.to_le_bytes());
        payload.extend_from_slice(message.as_bytes());
        packet(&payload)
    }

    #[test]
    fn a_greeting_is_healthy_and_names_the_version() {
        let bytes = greeting(b"11.4.2-MariaDB-log");
        assert_eq!(
            probe_greeting(&bytes),
            Probe::Healthy {
                server_version: "11.4.2-MariaDB-log".into()
            }
        );
    }

    #[test]
    fn every_prefix_of_a_greeting_needs_more() {
        let bytes = greeting(b"8.0.36");
        for cut in 0..bytes.len() {
            assert_eq!(
                probe_greeting(&bytes[..cut]),
                Probe::NeedMore,
                "cut at {cut}"
            );
        }
        // Bytes after the greeting (there are none in practice) do not change the verdict.
        let mut more = bytes.clone();
        more.extend_from_slice(b"trailing");
        assert!(matches!(probe_greeting(&more), Probe::Healthy { .. }));
    }

    #[test]
    fn too_many_connections_and_host_blocked_are_named() {
        assert_eq!(
            probe_greeting(&err(1040, "Too many connections")),
            Probe::Unhealthy(Unhealthy::TooManyConnections)
        );
        assert_eq!(
            probe_greeting(&err(1129, "Host '10.0.0.9' is blocked")),
            Probe::Unhealthy(Unhealthy::HostBlocked)
        );
        let other = probe_greeting(&err(1130, "Host is not allowed to connect"));
        assert_eq!(
            other,
            Probe::Unhealthy(Unhealthy::ServerError {
                code: 1130,
                message: "Host is not allowed to connect".into()
            })
        );
        if let Probe::Unhealthy(reason) = other {
            assert!(reason.to_string().contains("1130"), "{reason}");
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        // An HTTP server on the backend port.
        let http = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(matches!(
            probe_greeting(http),
            Probe::Unhealthy(Unhealthy::Malformed(_))
        ));
        // Protocol 9, a truncated ERR, an empty payload.
        for payload in [&[9u8, b'x', 0][..], &[0xFF, 0x04], &[]] {
            assert!(
                matches!(
                    probe_greeting(&packet(payload)),
                    Probe::Unhealthy(Unhealthy::Malformed(_))
                ),
                "{payload:?}"
            );
        }
        // A first frame with the wrong sequence id.
        let mut bytes = greeting(b"8.0");
        bytes[3] = 5;
        assert!(matches!(
            probe_greeting(&bytes),
            Probe::Unhealthy(Unhealthy::Malformed(DecodeError::OutOfOrder { .. }))
        ));
    }

    #[test]
    fn an_oversized_announcement_fails_at_once() {
        // 4 header bytes announcing 1 MiB: refused without waiting for the payload.
        let header = [0x00, 0x00, 0x10, 0x00];
        assert!(matches!(
            probe_greeting(&header),
            Probe::Unhealthy(Unhealthy::Malformed(DecodeError::PacketTooLarge { .. }))
        ));
    }
}
