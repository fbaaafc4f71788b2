//! What [`Endpoint::accept`](super::Endpoint::accept) decides for a new client: serve it
//! ([`Accept::Connection`]) or refuse it ([`Accept::Refused`]) with the ERR packet a MariaDB
//! server sends in place of its greeting, which the driver writes before it closes the socket.
//!
//! MariaDB 10.11 refuses a connection over `max_connections` with `17 00 00 00 ff 10 04 "Too
//! many connections"`: sequence id 0, and no SQL state marker (nothing is negotiated yet, so
//! the server writes the ERR as for a client without `CLIENT_PROTOCOL_41`). Clients show it as
//! `ERROR 1040 (HY000): Too many connections`, or the `mariadb` CLI, which asks for TLS by
//! default, as `ERROR 2002 (HY000): Received error packet before completion of TLS handshake.
//! The authenticity of the following error cannot be verified: 1040 - Too many connections`:
//! the same as with the server itself, byte for byte.

use std::net::IpAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::wire::{encode_packet, Capabilities, ErrPacket};
use crate::ProtocolError;

use super::connection::Connection;

/// [`Endpoint::accept`](super::Endpoint::accept)'s answer.
#[must_use = "a refused client must get its bytes and be closed"]
#[derive(Debug)]
// The connection is moved once, into the driver's session slot: boxing it would cost an
// allocation per client for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Accept {
    /// Serve the client with this connection.
    Connection(Connection),
    /// Write [`Refusal::bytes`] to the client's socket, then close it.
    Refused(Refusal),
}

impl Accept {
    /// The connection, or `None` if the client was refused (its bytes are dropped: for tests
    /// and embedders that close refused sockets bare).
    pub fn into_connection(self) -> Option<Connection> {
        match self {
            Accept::Connection(c) => Some(c),
            Accept::Refused(_) => None,
        }
    }
}

/// Why a client was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalReason {
    /// `proxy.max-connections` sessions are open (ERR 1040).
    MaxConnections,
    /// Its address is blocked after failed logins, until then (ERR 1129).
    Blocked {
        /// When the block expires.
        until: Instant,
    },
    /// The listener is closing (graceful shutdown; ERR 1053).
    ShuttingDown,
}

/// A refused client: the reason and the ERR packet it gets.
#[derive(Debug, Clone)]
pub struct Refusal {
    reason: RefusalReason,
    bytes: Bytes,
}

impl Refusal {
    pub(super) fn new(reason: RefusalReason, client: IpAddr) -> Self {
        let error = match reason {
            RefusalReason::MaxConnections => {
                ProtocolError::new(1040, "08004", "Too many connections")
            }
            // MaxScale's text: MariaDB's own ("unblock with 'mariadb-admin flush-hosts'") would
            // send the user to a command that cannot unblock ferry's block, which expires.
            RefusalReason::Blocked { .. } => ProtocolError::new(
                1129,
                "HY000",
                format!(
                    "Host '{}' is temporarily blocked due to too many authentication failures.",
                    client.to_canonical()
                ),
            ),
            RefusalReason::ShuttingDown => {
                ProtocolError::new(1053, "08S01", "Server shutdown in progress")
            }
        };
        Self {
            reason,
            bytes: greeting_error(&error),
        }
    }

    /// Why.
    pub fn reason(&self) -> RefusalReason {
        self.reason
    }

    /// The bytes to write before closing: one ERR packet, sequence id 0.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// `error` framed as a server sends it in place of its greeting: sequence id 0, no SQL state
/// marker (see the [module docs](self)).
pub(crate) fn greeting_error(error: &ProtocolError) -> Bytes {
    let mut payload = Vec::with_capacity(3 + error.message.len());
    ErrPacket::from(error).encode(&mut payload, Capabilities::EMPTY);
    let mut out = BytesMut::with_capacity(4 + payload.len());
    encode_packet(&mut out, &mut 0, &payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_connections_is_what_mariadb_sends_in_place_of_its_greeting() {
        let r = Refusal::new(RefusalReason::MaxConnections, [127, 0, 0, 1].into());
        // Captured from MariaDB 10.11.19 at max_connections.
        let mut mariadb = vec![0x17, 0x00, 0x00, 0x00, 0xff, 0x10, 0x04];
        mariadb.extend_from_slice(b"Too many connections");
        assert_eq!(&r.bytes()[..], &mariadb[..]);
    }

    #[test]
    fn a_blocked_host_gets_1129_naming_its_address() {
        let until = Instant::now();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let r = Refusal::new(RefusalReason::Blocked { until }, mapped);
        let b = r.bytes();
        assert_eq!(b[3], 0, "sequence id 0");
        assert_eq!(usize::from(b[0]), b.len() - 4);
        assert_eq!((b[4], u16::from_le_bytes([b[5], b[6]])), (0xff, 1129));
        assert_eq!(
            &b[7..],
            b"Host '10.1.2.3' is temporarily blocked due to too many authentication failures."
        );
        assert_eq!(r.reason(), RefusalReason::Blocked { until });
    }

    #[test]
    fn shutting_down_gets_1053() {
        let r = Refusal::new(RefusalReason::ShuttingDown, [127, 0, 0, 1].into());
        assert_eq!(u16::from_le_bytes([r.bytes()[5], r.bytes()[6]]), 1053);
        assert_eq!(&r.bytes()[7..], b"Server shutdown in progress");
    }
}
