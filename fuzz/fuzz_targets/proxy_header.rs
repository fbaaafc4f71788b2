//! The PROXY protocol, from the parser to the connection: arbitrary bytes for
//! `proxy_protocol::parse`, arbitrary network texts, arbitrary addresses for `encode_v2`, and a
//! client connection accepted by an `Endpoint` (from a trusted peer or not) whose first bytes are
//! a header (valid v1/v2, mutated, or arbitrary) split over arbitrary reads, then optionally an
//! in-memory client logging in to a backend configured for PROXY headers or not.
//!
//! Invariants:
//! - nothing panics;
//! - `parse` is decided by a prefix and keeps its answer: splitting the input over reads (bytes
//!   gathered until an answer) gives the answer of the whole; a complete header is self-delimiting
//!   (`parse(&input[..len])` is the same header);
//! - `encode_v2` parses back to its source (one address family: IPv4, else IPv6 with IPv4 mapped);
//! - a network that parses prints as text that parses to itself, and contains its own address;
//! - the connection does what the whole header says: a trusted peer's valid header names the
//!   client (`Connection::client`), a missing or bad one closes the connection with ERR 1130 or
//!   1105 after the greeting, as does any header from an untrusted peer; bytes that are neither
//!   leave the session to judge them;
//! - after a login, the first bytes a backend configured for it gets are the v2 header of the
//!   client's address and the backend's, and a backend not configured for it gets none.
#![no_main]

#[path = "backend_bytes.rs"]
mod backend_bytes;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use arbitrary::Arbitrary;
use backend_bytes::greeting;
use ferry_core::auth::{ClientSecret, Password};
use ferry_core::backend::{self, Backend};
use ferry_core::control::config::{BackendSection, ConfigFile};
use ferry_core::control::{Config, Connection, Endpoint, IoEvent};
use ferry_core::proxy_protocol::{
    encode_v2, parse, starts_like_header, Network, Parsed, ProxyHeader,
};
use ferry_core::session::Peer;
use ferry_core::SeededRandom;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Header {
    None,
    V1 { src: [u8; 4], port: u16 },
    V1Six { src: [u8; 16], port: u16 },
    V1Unknown,
    V2 { src: [u8; 4], port: u16 },
    V2Six { src: [u8; 16], port: u16 },
    V2Local,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<u8>,
    raw_cuts: Vec<u8>,
    network: String,
    src: ([u8; 16], u16, bool),
    dst: ([u8; 16], u16, bool),
    trusted: bool,
    backend_proxy_protocol: bool,
    header: Header,
    /// XOR a byte of the header (index, mask).
    flip: Option<(u16, u8)>,
    cuts: Vec<u8>,
    login: bool,
}

fn addr((bytes, port, v4): ([u8; 16], u16, bool)) -> SocketAddr {
    if v4 {
        let [a, b, c, d, ..] = bytes;
        SocketAddr::from((Ipv4Addr::new(a, b, c, d), port))
    } else {
        SocketAddr::from((Ipv6Addr::from(bytes), port))
    }
}

/// Splits `input` at the points `cuts` picks (sorted, in range).
fn chunks<'a>(input: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * input.len() / 255)
        .collect();
    points.push(input.len());
    points.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(&input[at..p]);
        at = p;
    }
    out
}

fn check_parse(input: &[u8], cuts: &[u8]) {
    let whole = parse(input);
    let mut gathered = 0;
    let mut answer = parse(&[]);
    for chunk in chunks(input, cuts) {
        gathered += chunk.len();
        answer = parse(&input[..gathered]);
        if answer != Ok(Parsed::Incomplete) {
            break;
        }
    }
    assert_eq!(answer, whole, "split reads changed the answer");
    if let Ok(Parsed::Complete { header, len }) = whole {
        assert!(len <= input.len());
        assert_eq!(
            parse(&input[..len]),
            Ok(Parsed::Complete { header, len }),
            "a header is self-delimiting"
        );
        assert_eq!(starts_like_header(input), Some(true));
    }
}

fn check_encode(src: SocketAddr, dst: SocketAddr) {
    let h = encode_v2(src, dst);
    let Ok(Parsed::Complete { header, len }) = parse(&h) else {
        panic!("encode_v2 does not parse: {h:?}");
    };
    assert_eq!(len, h.len());
    let source = header.source.expect("a PROXY command with addresses");
    assert_eq!(source.port(), src.port());
    assert_eq!(source.ip().to_canonical(), src.ip().to_canonical());
}

fn check_network(text: &str) {
    let Ok(net) = text.parse::<Network>() else {
        return;
    };
    let again: Network = net.to_string().parse().expect("a network's text parses");
    assert_eq!(again, net);
    let ip: IpAddr = net.to_string().split('/').next().unwrap().parse().unwrap();
    assert!(net.contains(ip));
}

fn header_bytes(h: &Header) -> Vec<u8> {
    let ferry: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    match h {
        Header::None => Vec::new(),
        Header::V1 { src, port } => format!(
            "PROXY TCP4 {} 127.0.0.1 {port} 6000\r\n",
            Ipv4Addr::from(*src)
        )
        .into_bytes(),
        Header::V1Six { src, port } => {
            format!("PROXY TCP6 {} ::1 {port} 6000\r\n", Ipv6Addr::from(*src)).into_bytes()
        }
        Header::V1Unknown => b"PROXY UNKNOWN\r\n".to_vec(),
        Header::V2 { src, port } => encode_v2(SocketAddr::from((*src, *port)), ferry).to_vec(),
        Header::V2Six { src, port } => encode_v2(
            SocketAddr::from((Ipv6Addr::from(*src), *port)),
            "[::1]:6000".parse().unwrap(),
        )
        .to_vec(),
        Header::V2Local => {
            let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            h.extend_from_slice(&[0x20, 0x00, 0, 0]);
            h
        }
        Header::Raw(bytes) => bytes.clone(),
    }
}

const USER: &str = "app";
const PEER: &str = "127.0.0.1:50000";

fn backend_addr() -> SocketAddr {
    "127.0.0.1:3306".parse().unwrap()
}

fn endpoint(input: &Input, now: Instant) -> Endpoint {
    let mut file = ConfigFile {
        backends: vec![BackendSection {
            name: "db1".into(),
            addr: backend_addr().to_string(),
            proxy_protocol: input.backend_proxy_protocol,
        }],
        ..ConfigFile::default()
    };
    file.proxy.proxy_protocol_from = Some(if input.trusted {
        vec!["10.0.0.0/8".into(), "127.0.0.0/8".into()]
    } else {
        vec!["10.0.0.0/8".into()]
    });
    let config = Config::from_file(&file).expect("a valid configuration");
    let mut ep = Endpoint::new(now, &config, 1).expect("an endpoint");
    ep.handle_timeout(now);
    while let Some(mut probe) = ep.poll_probe() {
        probe.handle_input(now, &greeting());
        ep.probe_finished(now, probe);
    }
    ep
}

/// Client-bound bytes, backend connects and backend-bound bytes, after the drain rule.
#[derive(Default)]
struct Out {
    to_client: Vec<u8>,
    /// Per backend connection opened: the bytes it got.
    to_backend: Vec<(u64, Vec<u8>)>,
}

fn drain(ep: &mut Endpoint, conn: &mut Connection, now: Instant, out: &mut Out) {
    for _ in 0..64 {
        if conn.needs_sync() {
            ep.sync(now, conn);
        }
        let mut moved = false;
        while let Some(t) = conn.poll_transmit() {
            moved = true;
            match t.peer {
                Peer::Client => out.to_client.extend_from_slice(&t.data),
                Peer::Backend(id) => match out.to_backend.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, bytes)) => bytes.extend_from_slice(&t.data),
                    None => panic!("bytes for backend connection {id} before it opened"),
                },
            }
        }
        while let Some(e) = conn.poll_event() {
            moved = true;
            if let IoEvent::Connect { conn: c, addr } = e {
                assert_eq!(addr.ip(), Some(backend_addr()));
                out.to_backend.push((c, Vec::new()));
                conn.connected(now, c);
            }
        }
        if !moved && !conn.needs_sync() {
            return;
        }
    }
    panic!("the drain rule does not end");
}

/// The ERR code of the client-bound bytes after the greeting, if they hold one.
fn refusal_code(to_client: &[u8]) -> Option<u16> {
    let greeting_len = 4
        + usize::from(to_client.first().copied()?)
        + (usize::from(*to_client.get(1)?) << 8)
        + (usize::from(*to_client.get(2)?) << 16);
    let err = to_client.get(greeting_len..)?;
    // Sequence id 2, then 0xFF and the code.
    (err.len() > 7 && err[3] == 2 && err[4] == 0xFF).then(|| u16::from_le_bytes([err[5], err[6]]))
}

fuzz_target!(|input: Input| {
    check_parse(&input.raw, &input.raw_cuts);
    check_network(&input.network);
    check_encode(addr(input.src), addr(input.dst));

    let now = Instant::now();
    let mut ep = endpoint(&input, now);
    let peer: SocketAddr = PEER.parse().unwrap();
    let ferry_core::control::Accept::Connection(mut conn) =
        ep.accept(now, peer, 0, Box::new(SeededRandom::new(1)))
    else {
        panic!("refused");
    };
    let mut out = Out::default();
    drain(&mut ep, &mut conn, now, &mut out);

    let mut header = header_bytes(&input.header);
    if let Some((i, mask)) = input.flip {
        let len = header.len();
        if let Some(b) = header.get_mut(usize::from(i) % len.max(1)) {
            *b ^= mask;
        }
    }
    check_parse(&header, &input.cuts);
    for chunk in chunks(&header, &input.cuts) {
        conn.handle_input(now, Peer::Client, chunk);
        drain(&mut ep, &mut conn, now, &mut out);
    }

    // What the whole header says decides.
    let parsed = parse(&header);
    let expected_client: Option<SocketAddr> = if input.trusted {
        match parsed {
            Ok(Parsed::Incomplete) => {
                assert!(!conn.is_closed(), "closed before the header is complete");
                assert_eq!(refusal_code(&out.to_client), None);
                None
            }
            Ok(Parsed::Complete {
                header: ProxyHeader { source, .. },
                len,
            }) => {
                assert_eq!(refusal_code(&out.to_client), None);
                assert_eq!(conn.client(), source.unwrap_or(peer));
                assert_eq!(conn.peer(), peer);
                // Whatever followed the header went to the session: only after an exact header
                // can the in-memory client log in.
                (header.len() == len).then(|| conn.client())
            }
            Err(e) => {
                assert!(conn.is_closed(), "{e}: not refused");
                let code = refusal_code(&out.to_client);
                assert!(matches!(code, Some(1130 | 1105)), "{e}: {code:?}");
                None
            }
        }
    } else {
        match starts_like_header(&header) {
            Some(true) => {
                assert!(conn.is_closed(), "an untrusted header was taken");
                assert_eq!(refusal_code(&out.to_client), Some(1130));
                None
            }
            _ => {
                assert_eq!(conn.client(), peer);
                header.is_empty().then_some(peer)
            }
        }
    };

    // A client logs in after the header: the backend's first bytes say who it is.
    if let (true, Some(client)) = (input.login, expected_client) {
        let secret = ClientSecret::Plaintext(Password::new("pw"));
        let mut role = Backend::new(
            now,
            backend::BackendConfig::new(USER, secret),
            Box::new(SeededRandom::new(2)),
        );
        let greeting_bytes = std::mem::take(&mut out.to_client);
        role.handle_input(now, &greeting_bytes);
        while let Some(b) = role.poll_transmit() {
            conn.handle_input(now, Peer::Client, &b);
            drain(&mut ep, &mut conn, now, &mut out);
        }
        let (_, first) = out
            .to_backend
            .first()
            .expect("a backend connection for the login");
        let expected = encode_v2(client, backend_addr());
        if input.backend_proxy_protocol {
            assert!(
                first.starts_with(&expected),
                "no header for the backend: {first:?}"
            );
        } else {
            assert!(
                first.is_empty(),
                "bytes before the server's greeting: {first:?}"
            );
        }
    }
    ep.connection_closed(now, &mut conn);
});
