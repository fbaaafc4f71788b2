//! The PROXY protocol on a client connection: what the [`Connection`](super::Connection) does with
//! the client's first bytes before its session sees any ([`ClientGate`]).
//!
//! - From a peer in `[proxy] proxy-protocol-from` (a load balancer), the first bytes must be a
//!   v1 or v2 header (HAProxy's `accept-proxy` and the specification's rule: a receiver never
//!   guesses whether one is there). Its source address becomes the session's client; a header
//!   without one (v1 `UNKNOWN`, v2 `LOCAL`) keeps the socket's.
//! - From any other peer, a header is refused: it would let anyone claim any address. Nothing else
//!   changes for such a peer, whose first packet never looks like a header (see
//!   [`starts_like_header`]).
//!
//! Either way the client gets an ERR as MariaDB words it and the connection closes. ferry sends
//! its greeting first, as MariaDB does: the greeting holds nothing that depends on the client.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::proxy_protocol::{parse, starts_like_header, HeaderError, Parsed, ProxyHeader};
use crate::ProtocolError;

/// The client's first bytes, until it is known whether they hold a PROXY header.
#[derive(Debug)]
pub(super) enum ClientGate {
    /// A trusted peer: gathering its header.
    Expect(Vec<u8>),
    /// Any other peer: watching that its first bytes are not a header.
    Watch(Vec<u8>),
    /// Decided: every byte goes to the session.
    Open,
}

/// What [`ClientGate::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step<'a> {
    /// Not decided yet: the bytes are kept.
    Wait,
    /// The session's bytes (those kept, then the new ones, after the header if there was one).
    Pass {
        header: Option<ProxyHeader>,
        bytes: Cow<'a, [u8]>,
    },
    /// Close the connection.
    Refuse(Refusal),
}

/// Why a connection's first bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error("PROXY protocol header from an address not in proxy.proxy-protocol-from")]
    Untrusted,
    #[error("no PROXY protocol header from an address in proxy.proxy-protocol-from")]
    Missing,
    #[error("{0}")]
    Malformed(String),
}

impl Refusal {
    /// The ERR the client gets (`peer`: the socket's address).
    pub(super) fn error(&self, peer: IpAddr) -> ProtocolError {
        match self {
            // MariaDB's own answers (ER_HOST_NOT_PRIVILEGED, ER_UNKNOWN_ERROR).
            Self::Untrusted => ProtocolError::new(
                1130,
                "HY000",
                format!("Proxy header is not accepted from {peer}"),
            ),
            Self::Malformed(_) => ProtocolError::new(1105, "HY000", "Failed to parse proxy header"),
            Self::Missing => ProtocolError::new(
                1130,
                "HY000",
                format!("Host '{peer}' must send a PROXY protocol header"),
            ),
        }
    }
}

impl ClientGate {
    /// For a peer that must send a header (`trusted`) or must not.
    pub(super) fn new(trusted: bool) -> Self {
        if trusted {
            Self::Expect(Vec::new())
        } else {
            Self::Watch(Vec::new())
        }
    }

    pub(super) fn is_open(&self) -> bool {
        matches!(self, Self::Open)
    }

    /// The client's next bytes. Memory is bounded: a header is at most
    /// [`MAX_HEADER_LEN`](crate::proxy_protocol::MAX_HEADER_LEN) bytes (and [`parse`] decides as
    /// soon as the bytes cannot be one), a signature 12.
    pub(super) fn feed<'a>(&mut self, bytes: &'a [u8]) -> Step<'a> {
        match self {
            Self::Open => Step::Pass {
                header: None,
                bytes: Cow::Borrowed(bytes),
            },
            Self::Watch(kept) => {
                let all = gathered(kept, bytes);
                match starts_like_header(&all) {
                    None => keep(kept, all),
                    Some(true) => {
                        *self = Self::Open;
                        Step::Refuse(Refusal::Untrusted)
                    }
                    Some(false) => {
                        *self = Self::Open;
                        Step::Pass {
                            header: None,
                            bytes: all,
                        }
                    }
                }
            }
            Self::Expect(kept) => {
                let all = gathered(kept, bytes);
                let (header, len) = match parse(&all) {
                    Ok(Parsed::Incomplete) => return keep(kept, all),
                    Ok(Parsed::Complete { header, len }) => (header, len),
                    Err(HeaderError::Missing) => {
                        *self = Self::Open;
                        return Step::Refuse(Refusal::Missing);
                    }
                    Err(e) => {
                        *self = Self::Open;
                        return Step::Refuse(Refusal::Malformed(e.to_string()));
                    }
                };
                *self = Self::Open;
                let rest = match all {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[len..]),
                    Cow::Owned(mut v) => Cow::Owned(v.split_off(len)),
                };
                Step::Pass {
                    header: Some(header),
                    bytes: rest,
                }
            }
        }
    }
}

/// The bytes kept so far and `bytes`, without a copy when nothing was kept.
fn gathered<'a>(kept: &mut Vec<u8>, bytes: &'a [u8]) -> Cow<'a, [u8]> {
    if kept.is_empty() {
        Cow::Borrowed(bytes)
    } else {
        let mut all = std::mem::take(kept);
        all.extend_from_slice(bytes);
        Cow::Owned(all)
    }
}

fn keep<'a>(kept: &mut Vec<u8>, all: Cow<'_, [u8]>) -> Step<'a> {
    *kept = all.into_owned();
    Step::Wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::encode_v2;

    fn pass(step: Step<'_>) -> (Option<ProxyHeader>, Vec<u8>) {
        match step {
            Step::Pass { header, bytes } => (header, bytes.into_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_trusted_peers_header_is_taken_off_and_the_rest_passes() {
        let mut gate = ClientGate::new(true);
        let (header, rest) = pass(gate.feed(b"PROXY TCP4 10.1.2.3 10.0.0.1 7 8\r\nhello"));
        assert_eq!(header.unwrap().source, Some("10.1.2.3:7".parse().unwrap()));
        assert_eq!(rest, b"hello");
        assert!(gate.is_open());
        assert_eq!(pass(gate.feed(b"more")), (None, b"more".to_vec()));
    }

    #[test]
    fn a_header_split_over_reads_is_gathered() {
        let mut input =
            encode_v2("10.1.2.3:7".parse().unwrap(), "10.0.0.1:8".parse().unwrap()).to_vec();
        input.extend_from_slice(b"hello");
        for cut in 1..input.len() {
            let mut gate = ClientGate::new(true);
            let mut got = Vec::new();
            let mut header = None;
            for chunk in [&input[..cut], &input[cut..]] {
                match gate.feed(chunk) {
                    Step::Wait => {}
                    Step::Pass { header: h, bytes } => {
                        header = header.or(h);
                        got.extend_from_slice(&bytes);
                    }
                    Step::Refuse(r) => panic!("cut {cut}: {r}"),
                }
            }
            assert_eq!(got, b"hello", "cut {cut}");
            assert_eq!(header.unwrap().source, Some("10.1.2.3:7".parse().unwrap()));
        }
    }

    #[test]
    fn a_trusted_peer_without_a_header_or_with_a_bad_one_is_refused() {
        let mut gate = ClientGate::new(true);
        // A MySQL handshake response.
        assert_eq!(
            gate.feed(b"\x55\x00\x00\x01\x85\xa6"),
            Step::Refuse(Refusal::Missing)
        );
        let mut gate = ClientGate::new(true);
        assert_eq!(gate.feed(b"PROXY TCP4 1.2"), Step::Wait);
        assert!(matches!(
            gate.feed(b".3 1.2.3.4 1 2\r\n"),
            Step::Refuse(Refusal::Malformed(_))
        ));
        let peer = "10.0.0.5".parse().unwrap();
        assert_eq!(
            Refusal::Malformed(String::new()).error(peer).message,
            "Failed to parse proxy header"
        );
        assert_eq!(
            Refusal::Missing.error(peer).message,
            "Host '10.0.0.5' must send a PROXY protocol header"
        );
    }

    #[test]
    fn an_untrusted_peers_header_is_refused_and_its_other_bytes_pass() {
        let mut gate = ClientGate::new(false);
        assert_eq!(gate.feed(b"PRO"), Step::Wait);
        assert_eq!(gate.feed(b"XY TCP4"), Step::Refuse(Refusal::Untrusted));
        let e = Refusal::Untrusted.error("127.0.0.1".parse().unwrap());
        assert_eq!(
            (e.code, e.message.as_str()),
            (1130, "Proxy header is not accepted from 127.0.0.1")
        );

        let mut gate = ClientGate::new(false);
        let v2 = encode_v2("10.1.2.3:7".parse().unwrap(), "10.0.0.1:8".parse().unwrap());
        assert_eq!(gate.feed(&v2[..5]), Step::Wait);
        assert_eq!(gate.feed(&v2[5..]), Step::Refuse(Refusal::Untrusted));

        // A handshake response of 80 bytes starts with 'P': kept until it differs, then passed
        // whole.
        let mut gate = ClientGate::new(false);
        assert_eq!(gate.feed(b"P"), Step::Wait);
        assert_eq!(
            pass(gate.feed(b"\x00\x00\x01rest")),
            (None, b"P\x00\x00\x01rest".to_vec())
        );
        let mut gate = ClientGate::new(false);
        assert_eq!(
            pass(gate.feed(b"\x55\x00\x00\x01")),
            (None, b"\x55\x00\x00\x01".to_vec())
        );
    }
}
