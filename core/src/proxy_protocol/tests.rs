use proptest::prelude::*;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(input: &[u8]) -> (ProxyHeader, usize) {
    match parse(input) {
        Ok(Parsed::Complete { header, len }) => (header, len),
        other => panic!("{input:?}: {other:?}"),
    }
}

/// A v2 header as the specification lays it out, byte by byte (not through `ppp`).
fn v2_by_hand(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    h.extend_from_slice(payload);
    h
}

#[test]
fn the_v2_signature_is_ppps() {
    assert_eq!(&V2_SIGNATURE[..], ppp::v2::PROTOCOL_PREFIX);
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let line = b"PROXY TCP4 10.1.2.3 192.168.0.1 56324 3306\r\n";
    let mut input = line.to_vec();
    input.extend_from_slice(b"\x20\x00\x00\x01 the client's bytes");
    let (h, len) = complete(&input);
    assert_eq!(len, line.len());
    assert_eq!(h.version, 1);
    assert_eq!(h.source, Some(addr("10.1.2.3:56324")));
    assert_eq!(h.destination, Some(addr("192.168.0.1:3306")));

    let (h, _) = complete(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 6000\r\n");
    assert_eq!(h.source, Some(addr("[2001:db8::7]:4000")));

    let (h, len) = complete(b"PROXY UNKNOWN\r\nrest");
    assert_eq!((h.source, h.destination, len), (None, None, 15));
    // UNKNOWN may carry anything up to the line's end.
    let (h, _) = complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
    assert_eq!(h.source, None);
}

#[test]
fn v2_proxy_local_and_address_families() {
    let mut payload = vec![10, 1, 2, 3, 127, 0, 0, 1];
    payload.extend_from_slice(&4321u16.to_be_bytes());
    payload.extend_from_slice(&6000u16.to_be_bytes());
    let mut input = v2_by_hand(1, 0x11, &payload);
    let len = input.len();
    input.extend_from_slice(b"after");
    let (h, n) = complete(&input);
    assert_eq!(n, len);
    assert_eq!(h.version, 2);
    assert_eq!(h.source, Some(addr("10.1.2.3:4321")));
    assert_eq!(h.destination, Some(addr("127.0.0.1:6000")));

    // TLVs after the addresses belong to the header.
    let mut with_tlv = payload.clone();
    with_tlv.extend_from_slice(&[0x04, 0x00, 0x01, 0x2a]);
    let input = v2_by_hand(1, 0x11, &with_tlv);
    assert_eq!(complete(&input).1, input.len());

    // IPv6.
    let mut p6 = Vec::new();
    p6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    p6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    p6.extend_from_slice(&[0, 80, 1, 187]);
    let (h, _) = complete(&v2_by_hand(1, 0x21, &p6));
    assert_eq!(h.source, Some(addr("[2001:db8::7]:80")));

    // LOCAL (a proxy's own health check): no client address, whatever the payload says.
    let (h, n) = complete(&v2_by_hand(0, 0x11, &payload));
    assert_eq!((h.source, n), (None, 16 + 12));
    let (h, n) = complete(&v2_by_hand(0, 0x00, &[]));
    assert_eq!((h.source, n), (None, 16));
    // UNSPEC and unix sockets: no IP address either.
    assert_eq!(complete(&v2_by_hand(1, 0x00, &[])).0.source, None);
    assert_eq!(complete(&v2_by_hand(1, 0x31, &[0; 216])).0.source, None);
}

#[test]
fn bad_headers_are_malformed_and_others_missing() {
    for bad in [
        &b"PROXY TCP4 10.1.2 127.0.0.1 1 2\r\n"[..],
        b"PROXY TCP4 10.1.2.3 127.0.0.1 99999 2\r\n",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 01 2\r\n",
        b"PROXY TCP5 10.1.2.3 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 1 2\rX",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 1 2 3\r\n",
        b"PROXY TCP4 \xff\r\n",
    ] {
        assert!(
            matches!(parse(bad), Err(HeaderError::Malformed { version: 1, .. })),
            "{bad:?}: {:?}",
            parse(bad)
        );
    }
    // A v1 line is 107 bytes at most: a peer cannot make ferry wait for more.
    let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
    assert!(matches!(parse(&long), Err(HeaderError::Malformed { .. })));

    let mut bad_version = v2_by_hand(1, 0x11, &[0; 12]);
    bad_version[12] = 0x31;
    let mut bad_command = v2_by_hand(1, 0x11, &[0; 12]);
    bad_command[12] = 0x2F;
    let short_addresses = v2_by_hand(1, 0x11, &[0; 4]);
    let bad_family = v2_by_hand(1, 0x41, &[0; 12]);
    for bad in [bad_version, bad_command, short_addresses, bad_family] {
        assert!(
            matches!(parse(&bad), Err(HeaderError::Malformed { version: 2, .. })),
            "{bad:?}: {:?}",
            parse(&bad)
        );
    }

    // A MySQL handshake response, TLS, HTTP: no header at all.
    for other in [
        &b"\x20\x00\x00\x01\x85\xa6"[..],
        b"\x16\x03\x01",
        b"GET / HTTP/1.1\r\n",
        b"PROXYZ",
        b"\r\n\r\nX",
    ] {
        assert_eq!(parse(other), Err(HeaderError::Missing), "{other:?}");
        assert_eq!(starts_like_header(other), Some(false), "{other:?}");
    }
}

#[test]
fn beginnings_need_more() {
    let line = b"PROXY TCP4 10.1.2.3 192.168.0.1 56324 3306\r\n";
    let v2 = encode_v2(addr("10.1.2.3:1"), addr("10.0.0.1:2"));
    for full in [&line[..], &v2[..], b"PROXY UNKNOWN\r\n"] {
        for cut in 0..full.len() {
            assert_eq!(
                parse(&full[..cut]),
                Ok(Parsed::Incomplete),
                "{:?}",
                &full[..cut]
            );
        }
    }
    assert_eq!(starts_like_header(b""), None);
    assert_eq!(starts_like_header(b"PROX"), None);
    assert_eq!(starts_like_header(b"\r\n\r\n\0"), None);
    assert_eq!(starts_like_header(b"PROXY "), Some(true));
    assert_eq!(starts_like_header(&v2[..12]), Some(true));
}

#[test]
fn encode_v2_is_what_the_specification_lays_out() {
    let h = encode_v2(addr("10.1.2.3:4321"), addr("127.0.0.1:3306"));
    let mut payload = vec![10, 1, 2, 3, 127, 0, 0, 1];
    payload.extend_from_slice(&4321u16.to_be_bytes());
    payload.extend_from_slice(&3306u16.to_be_bytes());
    assert_eq!(h[..], v2_by_hand(1, 0x11, &payload)[..]);

    // One family per header: an IPv4 client to an IPv6 backend goes as a mapped address.
    let h = encode_v2(addr("10.1.2.3:4321"), addr("[::1]:3306"));
    let (header, len) = complete(&h);
    assert_eq!(len, 16 + 36);
    assert_eq!(header.source, Some(addr("[::ffff:10.1.2.3]:4321")));
    assert_eq!(header.destination, Some(addr("[::1]:3306")));
    // A mapped client to an IPv4 backend goes as IPv4.
    let h = encode_v2(addr("[::ffff:10.1.2.3]:4321"), addr("127.0.0.1:3306"));
    assert_eq!(h.len(), 16 + 12);
    assert_eq!(complete(&h).0.source, Some(addr("10.1.2.3:4321")));
}

#[test]
fn networks() {
    let net: Network = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.200.1.1".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()), "mapped");
    assert!(!net.contains("::1".parse().unwrap()));
    assert_eq!(net.to_string(), "10.0.0.0/8");

    let host: Network = "127.0.0.2".parse().unwrap();
    assert_eq!(host.to_string(), "127.0.0.2/32");
    assert!(host.contains("127.0.0.2".parse().unwrap()));
    assert!(!host.contains("127.0.0.1".parse().unwrap()));

    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
    assert!(!all.contains("2001:db8::1".parse().unwrap()));

    let v6: Network = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    let all6: Network = "::/0".parse().unwrap();
    assert!(all6.contains("::1".parse().unwrap()));

    for (bad, why) in [
        ("10.1.2.3/8", "host bits set (the network is 10.0.0.0/8)"),
        ("10.0.0.0/33", "invalid prefix length"),
        ("fd00::/129", "invalid prefix length"),
        ("10.0.0/8", "invalid IP address"),
        ("localhost", "invalid IP address"),
        ("10.0.0.0/", "invalid prefix length"),
    ] {
        let e = bad.parse::<Network>().unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

proptest! {
    /// However the bytes are split into reads, gathering them until `parse` has an answer gives
    /// the answer the whole input gives at once.
    #[test]
    fn splitting_does_not_change_the_answer(
        kind in 0..4u8,
        src in any::<[u8; 4]>(),
        sport in any::<u16>(),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        noise in proptest::collection::vec(any::<u8>(), 0..8),
        flip in any::<Option<prop::sample::Index>>(),
    ) {
        let source = SocketAddr::from((src, sport));
        let mut input = match kind {
            0 => format!("PROXY TCP4 {} 10.0.0.1 {sport} 3306\r\n", source.ip()).into_bytes(),
            1 => encode_v2(source, addr("10.0.0.1:3306")).to_vec(),
            2 => encode_v2(source, addr("[::1]:3306")).to_vec(),
            _ => noise.clone(),
        };
        if let Some(i) = flip {
            let i = i.index(input.len().max(1));
            if let Some(b) = input.get_mut(i) {
                *b ^= 0x5a;
            }
        }
        input.extend_from_slice(&tail);
        let whole = parse(&input);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.push(input.len());
        points.sort_unstable();
        let mut answer = Ok(Parsed::Incomplete);
        for p in points {
            answer = parse(&input[..p]);
            if answer != Ok(Parsed::Incomplete) {
                break;
            }
        }
        prop_assert_eq!(&answer, &whole);
        if let Ok(Parsed::Complete { header, len }) = whole {
            prop_assert!(len <= input.len());
            if kind < 3 && flip.is_none() {
                prop_assert_eq!(header.source.map(|s| s.ip().to_canonical()), Some(source.ip()));
                prop_assert_eq!(header.source.map(|s| s.port()), Some(sport));
            }
        }
    }
}
