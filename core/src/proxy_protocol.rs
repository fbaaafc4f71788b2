//! The PROXY protocol (HAProxy's, <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>):
//! the header a proxy or load balancer sends as the very first bytes of a TCP connection to say
//! whose connection it is relaying, in its text form (v1, `PROXY TCP4 src dst sport dport\r\n`)
//! or its binary form (v2, a 12-byte signature, then version, command, family and addresses).
//!
//! ferry reads one from the clients it trusts ([`Network`]s of `[proxy] proxy-protocol-from`),
//! so that its sessions, logs and admin API show the real client, and sends a v2 header to the
//! backends configured for it, so that MariaDB's `proxy_protocol_networks` sees that client too.
//!
//! The parsing is the [`ppp`] crate's (a maintained parser with both versions); this module
//! only frames it for a byte stream: [`parse`] says whether the bytes so far hold a whole
//! header, need more, or cannot be one, and the answer does not depend on how the bytes were
//! split into reads.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bytes::Bytes;
use ppp::v2::{Builder, Command, Protocol, Version};
use ppp::PartialResult;

/// The first 12 bytes of every v2 header.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What every v1 header starts with.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// The longest v1 header line, CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// The longest header: v2's 16 fixed bytes and a 16-bit payload length (v1 lines are at most
/// 107 bytes). A peer sending more without completing one is refused by [`parse`] before that.
pub const MAX_HEADER_LEN: usize = 16 + u16::MAX as usize;

/// A header's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 (text) or 2 (binary).
    pub version: u8,
    /// The client's address; `None` when the header carries none (v1 `UNKNOWN`, v2 `LOCAL`, a v2
    /// address family without IP addresses): the connection's own peer address stands, as the
    /// specification says.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when given.
    pub destination: Option<SocketAddr>,
}

/// What [`parse`] found in the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header's beginning: more bytes are needed.
    Incomplete,
    /// A whole header, `len` bytes long; whatever follows it is the relayed connection's.
    Complete {
        /// What it says.
        header: ProxyHeader,
        /// How many bytes it took.
        len: usize,
    },
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// They do not start with either version's signature.
    #[error("no PROXY protocol header")]
    Missing,
    /// They start like one, but are not a valid header.
    #[error("malformed PROXY protocol v{version} header: {reason}")]
    Malformed {
        /// The version the signature announced.
        version: u8,
        /// The parser's reason.
        reason: String,
    },
}

/// Parses the header at the start of `input` (a connection's first bytes, gathered so far).
pub fn parse(input: &[u8]) -> Result<Parsed, HeaderError> {
    if input.starts_with(V2_SIGNATURE) {
        return match ppp::v2::Header::try_from(input) {
            Ok(h) => Ok(Parsed::Complete {
                header: v2_header(&h),
                len: h.len(),
            }),
            Err(e) if e.is_incomplete() => Ok(Parsed::Incomplete),
            Err(e) => Err(malformed(2, &e)),
        };
    }
    if input.starts_with(V1_PREFIX) {
        // A line is judged once its CRLF is in (or it is too long to be one): `ppp` reads a
        // line cut right after a space as a bad value, not as one that needs more bytes.
        let line_end = input.iter().position(|&b| b == b'\r');
        let waiting = match line_end {
            None => input.len() < V1_MAX_LEN,
            Some(cr) => cr + 1 == input.len() && input.len() < V1_MAX_LEN,
        };
        if waiting {
            return Ok(Parsed::Incomplete);
        }
        return match ppp::v1::Header::try_from(input) {
            Ok(h) => Ok(Parsed::Complete {
                header: v1_header(&h),
                len: h.header.len(),
            }),
            // The whole line is there: what it lacks will not come.
            Err(e) => Err(malformed(1, &e)),
        };
    }
    match starts_like_header(input) {
        None => Ok(Parsed::Incomplete),
        Some(_) => Err(HeaderError::Missing),
    }
}

/// Whether `input` starts with a header's signature: `Some(true)` if it does, `Some(false)` if
/// it cannot, `None` while it is too short to tell (a prefix of a signature). A MySQL client's
/// first packet never looks like one: "PROX" or "\r\n\r\n" as a packet header would announce a
/// 5 MiB or 640 KiB handshake response with sequence id 0x58 or 0x0d.
pub fn starts_like_header(input: &[u8]) -> Option<bool> {
    let prefix_of = |signature: &[u8]| {
        let n = input.len().min(signature.len());
        input[..n] == signature[..n]
    };
    match (prefix_of(V2_SIGNATURE), prefix_of(V1_PREFIX)) {
        (false, false) => Some(false),
        _ if input.starts_with(V2_SIGNATURE) || input.starts_with(V1_PREFIX) => Some(true),
        _ => None,
    }
}

fn malformed(version: u8, error: &dyn fmt::Display) -> HeaderError {
    HeaderError::Malformed {
        version,
        reason: error.to_string(),
    }
}

fn v1_header(h: &ppp::v1::Header<'_>) -> ProxyHeader {
    let (source, destination) = match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        ppp::v1::Addresses::Unknown => (None, None),
    };
    ProxyHeader {
        version: 1,
        source,
        destination,
    }
}

fn v2_header(h: &ppp::v2::Header<'_>) -> ProxyHeader {
    let (source, destination) = match (h.command, h.addresses) {
        // LOCAL: the proxy's own connection (a health check); its addresses are not a client's.
        (Command::Local, _) => (None, None),
        (Command::Proxy, ppp::v2::Addresses::IPv4(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (Command::Proxy, ppp::v2::Addresses::IPv6(a)) => (
            Some(SocketAddr::from((a.source_address, a.source_port))),
            Some(SocketAddr::from((
                a.destination_address,
                a.destination_port,
            ))),
        ),
        (Command::Proxy, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => {
            (None, None)
        }
    };
    ProxyHeader {
        version: 2,
        source,
        destination,
    }
}

/// A v2 `PROXY` header for a TCP connection from `source` to `destination` (both IPv4, else
/// both IPv6 with IPv4 addresses mapped: the header has one address family).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Bytes {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (source, destination) = match (canonical(source), canonical(destination)) {
        (s @ SocketAddr::V4(_), d @ SocketAddr::V4(_)) => (s, d),
        (s, d) => (mapped(s), mapped(d)),
    };
    let header = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    )
    .build()
    // Writing fails only past 64 KiB: two addresses are 36 bytes at most.
    .expect("a v2 header without TLVs always fits");
    Bytes::from(header)
}

fn mapped(a: SocketAddr) -> SocketAddr {
    let ip = match a.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    SocketAddr::new(IpAddr::V6(ip), a.port())
}

/// An IP network (`10.0.0.0/8`, `fd00::/8`, or one address) whose connections are trusted to
/// start with a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in it. An IPv4-mapped IPv6 address (a dual-stack listener's view of an
    /// IPv4 client) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_bits(u32::from(net), u32::from(ip), self.prefix, 32)
            }
            (IpAddr::V6(net), ip) => {
                let ip = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                prefix_bits(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_bits<T>(a: T, b: T, prefix: u8, width: u32) -> bool
where
    T: Copy + std::ops::BitXor<Output = T> + std::ops::Shr<u32, Output = T> + PartialEq + From<u8>,
{
    let shift = width - u32::from(prefix);
    // A shift by the whole width overflows: /0 matches everything.
    shift == width || (a ^ b) >> shift == T::from(0)
}

/// Why a network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(String);

impl FromStr for Network {
    type Err = NetworkError;

    /// `IP/prefix` or a single IP. Host bits must be zero (`10.1.0.0/16`, not `10.1.2.3/16`):
    /// a mistyped network trusts what its author did not mean.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| NetworkError(format!("invalid IP address {ip:?}")))?;
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| {
                    NetworkError(format!("invalid prefix length {p:?} (0 ..= {width})"))
                })?,
        };
        let network = Self { addr, prefix };
        let base = network.base();
        if base != addr {
            return Err(NetworkError(format!(
                "{s} has host bits set (the network is {base}/{prefix})"
            )));
        }
        Ok(network)
    }
}

impl Network {
    /// The address with its host bits cleared.
    fn base(&self) -> IpAddr {
        let keep = |width: u32| u32::from(self.prefix).min(width);
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - keep(32)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - keep(128)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests;
