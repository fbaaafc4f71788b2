use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

/// Greeting payload captured from MariaDB 10.11.19 (Debian 12) over TCP.
const MARIADB_GREETING: &str =
    "0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100\
030000002a773a59353b677400fef7080200ff81150000000000001d00000034443a33313c7a735076244c00\
6d7973716c5f6e61746976655f70617373776f726400";

/// The `mariadb` 10.11 command-line client's (libmariadb 3.3.20) answer to it, no TLS.
const MARIADB_CLIENT_RESPONSE: &str =
    "84a2bf000000100021000000000000000000000000000000000000001d00\
0000726f6f7400006d7973716c5f6e61746976655f70617373776f7264007f035f6f73054c696e75780c5f636c69\
656e745f6e616d650a6c69626d617269616462045f7069640531303837340f5f636c69656e745f76657273696f6e\
06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f6e616d65056d7973716c0c5f73\
65727665725f686f7374093132372e302e302e31";

#[test]
fn parses_a_real_mariadb_greeting() {
    let payload = hex(MARIADB_GREETING);
    let h = HandshakeV10::parse(&payload).unwrap();
    assert_eq!(h.protocol_version, 10);
    assert_eq!(h.server_version, b"5.5.5-10.11.19-MariaDB-0+deb12u1");
    assert_eq!(h.connection_id, 3);
    assert_eq!(h.capabilities, Capabilities(0x81ff_f7fe));
    assert!(
        !h.capabilities.contains(Capabilities::LONG_PASSWORD),
        "MariaDB clears CLIENT_MYSQL"
    );
    assert!(h.capabilities.contains(Capabilities::SESSION_TRACK));
    assert_eq!(h.collation, 8);
    assert_eq!(h.status, ServerStatus::AUTOCOMMIT);
    assert_eq!(h.auth_plugin_data_len, 21);
    assert_eq!(h.mariadb_capabilities, 0x1d);
    assert_eq!(h.scramble(), b"*w:Y5;gt4D:31<zsPv$L");
    assert_eq!(h.auth_plugin_name, b"mysql_native_password");
    assert_eq!(
        encoded(|o| h.encode(o)),
        payload,
        "re-encodes byte for byte"
    );
}

#[test]
fn parses_a_real_mariadb_client_response() {
    let payload = hex(MARIADB_CLIENT_RESPONSE);
    let hello = ClientHello::parse(&payload).unwrap();
    let ClientHello::Response(r) = hello else {
        panic!("not a response: {hello:?}")
    };
    assert_eq!(r.capabilities, Capabilities(0x00bf_a284));
    assert!(r
        .capabilities
        .contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA));
    assert!(!r.capabilities.contains(Capabilities::CONNECT_WITH_DB));
    assert_eq!(r.max_packet_size, 1 << 20);
    assert_eq!(r.collation, 0x21);
    assert_eq!(r.mariadb_capabilities, 0x1d);
    assert_eq!(r.username, b"root");
    assert_eq!(r.auth_response, b"");
    assert_eq!(r.database, None);
    assert_eq!(r.auth_plugin_name, Some(&b"mysql_native_password"[..]));
    let keys: Vec<&[u8]> = r.connect_attrs.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            &b"_os"[..],
            b"_client_name",
            b"_pid",
            b"_client_version",
            b"_platform",
            b"program_name",
            b"_server_host"
        ]
    );
    assert_eq!(r.connect_attrs[1].1, b"libmariadb");
    assert_eq!(
        encoded(|o| r.encode(o)),
        payload,
        "re-encodes byte for byte"
    );
}

#[test]
fn new_greeting_carries_the_scramble_like_a_server() {
    let scramble = *b"*w:Y5;gt4D:31<zsPv$L";
    let caps = Capabilities(0x81ff_f7fe);
    let mut h = HandshakeV10::new(
        b"5.5.5-10.11.19-MariaDB-0+deb12u1",
        3,
        &scramble,
        caps,
        8,
        ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    h.mariadb_capabilities = 0x1d;
    assert_eq!(encoded(|o| h.encode(o)), hex(MARIADB_GREETING));
}

#[test]
fn greeting_without_nul_after_plugin_name_is_accepted() {
    let mut payload = hex(MARIADB_GREETING);
    payload.pop();
    let h = HandshakeV10::parse(&payload).unwrap();
    assert_eq!(h.auth_plugin_name, b"mysql_native_password");
}

#[test]
fn truncated_and_foreign_greetings_are_errors() {
    let payload = hex(MARIADB_GREETING);
    // Every cut before the scramble's end is an error, never a panic.
    for cut in 0..payload.len() - 23 {
        assert!(HandshakeV10::parse(&payload[..cut]).is_err(), "cut {cut}");
    }
    let mut v9 = payload.clone();
    v9[0] = 9;
    assert!(matches!(
        HandshakeV10::parse(&v9),
        Err(DecodeError::Malformed { .. })
    ));
    // 0xFF: the server refused the connection with an ERR packet instead.
    assert!(HandshakeV10::parse(&[0xFF, 0x10, 0x04]).is_err());
}

#[test]
fn pre_41_client_is_recognised() {
    // CLIENT_LONG_PASSWORD | CLIENT_CONNECT_WITH_DB, 3-byte max packet, "u\0", scramble.
    let payload = [0x09, 0x00, 0xff, 0xff, 0xff, b'u', 0, b'x', b'y'];
    assert_eq!(
        ClientHello::parse(&payload).unwrap(),
        ClientHello::Pre41 {
            capabilities: Capabilities(0x0009)
        }
    );
    assert_eq!(
        HandshakeResponse41::parse(&payload),
        Err(DecodeError::Malformed {
            what: PRE_41_CLIENT
        })
    );
}

#[test]
fn ssl_request_is_told_apart_from_a_response() {
    let req = SslRequest {
        capabilities: Capabilities::PROTOCOL_41 | Capabilities::SSL,
        max_packet_size: 1 << 24,
        collation: 45,
        mariadb_capabilities: 0,
    };
    let payload = encoded(|o| req.encode(o));
    assert_eq!(payload.len(), SSL_REQUEST_LEN);
    assert_eq!(
        ClientHello::parse(&payload).unwrap(),
        ClientHello::SslRequest(req)
    );
    // The same 32 bytes without CLIENT_SSL are a (truncated) handshake response, hence an error.
    let mut no_ssl = payload.clone();
    no_ssl[1] &= !0x08;
    assert!(ClientHello::parse(&no_ssl).is_err());
    assert!(SslRequest::parse(&payload[..31]).is_err());
    assert!(ClientHello::parse(&[0x00]).is_err());
}

#[test]
fn auth_switch_and_more_data() {
    let payload = b"\xfemysql_native_password\0abcdefghijklmnopqrst\0";
    let s = AuthSwitchRequest::parse(payload).unwrap();
    assert_eq!(s.plugin_name, b"mysql_native_password");
    assert_eq!(s.data, b"abcdefghijklmnopqrst\0");
    assert_eq!(encoded(|o| s.encode(o)), payload);
    assert!(
        AuthSwitchRequest::parse(b"\xfe").is_err(),
        "old auth switch"
    );
    assert!(AuthSwitchRequest::parse(b"\xfeno-nul").is_err());
    assert!(AuthSwitchRequest::parse(b"\x01x\0").is_err());

    // caching_sha2_password fast-auth success.
    let m = AuthMoreData::parse(b"\x01\x03").unwrap();
    assert_eq!(m.data, b"\x03");
    assert_eq!(encoded(|o| m.encode(o)), b"\x01\x03");
    assert!(AuthMoreData::parse(b"").is_err());
    assert!(AuthMoreData::parse(b"\x00").is_err());
}

fn nonzero_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..=max)
}

#[derive(Debug, Clone)]
struct OwnedGreeting {
    server_version: Vec<u8>,
    connection_id: u32,
    scramble_1: [u8; 8],
    scramble_2: Vec<u8>,
    capabilities: Capabilities,
    collation: u8,
    status: u16,
    auth_plugin_data_len: u8,
    mariadb_capabilities: u32,
    auth_plugin_name: Vec<u8>,
}

fn greeting() -> impl Strategy<Value = OwnedGreeting> {
    (
        nonzero_bytes(40),
        any::<u32>(),
        any::<[u8; 8]>(),
        nonzero_bytes(30),
        any::<u32>(),
        any::<(u8, u16, u8, u32)>(),
        nonzero_bytes(30),
    )
        .prop_map(
            |(sv, id, s1, mut s2, caps, (coll, status, apdl, mcaps), plugin)| {
                let capabilities = Capabilities(caps);
                if !capabilities.contains(Capabilities::SECURE_CONNECTION) {
                    s2.clear();
                }
                // The length byte must leave room for part 2 and its NUL.
                let min_len = if s2.len() <= 12 { 0 } else { s2.len() + 9 };
                let auth_plugin_data_len = apdl.max(min_len as u8);
                OwnedGreeting {
                    server_version: sv,
                    connection_id: id,
                    scramble_1: s1,
                    scramble_2: s2,
                    capabilities,
                    collation: coll,
                    status,
                    auth_plugin_data_len,
                    mariadb_capabilities: mcaps,
                    auth_plugin_name: if capabilities.contains(Capabilities::PLUGIN_AUTH) {
                        plugin
                    } else {
                        Vec::new()
                    },
                }
            },
        )
}

#[derive(Debug, Clone)]
struct OwnedResponse {
    capabilities: Capabilities,
    max_packet_size: u32,
    collation: u8,
    mariadb_capabilities: u32,
    username: Vec<u8>,
    auth_response: Vec<u8>,
    database: Option<Vec<u8>>,
    auth_plugin_name: Option<Vec<u8>>,
    connect_attrs: Vec<(Vec<u8>, Vec<u8>)>,
    zstd_compression_level: Option<u8>,
}

fn response() -> impl Strategy<Value = OwnedResponse> {
    (
        any::<(u32, u32, u8, u32)>(),
        nonzero_bytes(20),
        prop::collection::vec(any::<u8>(), 0..300),
        nonzero_bytes(20),
        nonzero_bytes(20),
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..10),
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            0..4,
        ),
        any::<u8>(),
    )
        .prop_map(
            |((caps, max, coll, mcaps), user, auth, db, plugin, attrs, zstd)| {
                let c = Capabilities(caps) | Capabilities::PROTOCOL_41;
                let auth_response = if c.contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA) {
                    auth
                } else if c.contains(Capabilities::SECURE_CONNECTION) {
                    auth.into_iter().take(255).collect()
                } else {
                    auth.into_iter().filter(|&b| b != 0).collect()
                };
                OwnedResponse {
                    capabilities: c,
                    max_packet_size: max,
                    collation: coll,
                    mariadb_capabilities: mcaps,
                    username: user,
                    auth_response,
                    database: c.contains(Capabilities::CONNECT_WITH_DB).then_some(db),
                    auth_plugin_name: c.contains(Capabilities::PLUGIN_AUTH).then_some(plugin),
                    connect_attrs: if c.contains(Capabilities::CONNECT_ATTRS) {
                        attrs
                    } else {
                        Vec::new()
                    },
                    zstd_compression_level: c
                        .contains(Capabilities::ZSTD_COMPRESSION_ALGORITHM)
                        .then_some(zstd),
                }
            },
        )
}

proptest! {
    #[test]
    fn greeting_round_trips(g in greeting()) {
        let h = HandshakeV10 {
            protocol_version: 10,
            server_version: &g.server_version,
            connection_id: g.connection_id,
            scramble_1: g.scramble_1,
            scramble_2: &g.scramble_2,
            capabilities: g.capabilities,
            collation: g.collation,
            status: ServerStatus(g.status),
            auth_plugin_data_len: g.auth_plugin_data_len,
            mariadb_capabilities: g.mariadb_capabilities,
            auth_plugin_name: &g.auth_plugin_name,
        };
        let bytes = encoded(|o| h.encode(o));
        prop_assert_eq!(HandshakeV10::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn response_round_trips(r in response()) {
        let msg = HandshakeResponse41 {
            capabilities: r.capabilities,
            max_packet_size: r.max_packet_size,
            collation: r.collation,
            mariadb_capabilities: r.mariadb_capabilities,
            username: &r.username,
            auth_response: &r.auth_response,
            database: r.database.as_deref(),
            auth_plugin_name: r.auth_plugin_name.as_deref(),
            connect_attrs: r.connect_attrs.iter().map(|(k, v)| (&k[..], &v[..])).collect(),
            zstd_compression_level: r.zstd_compression_level,
        };
        let bytes = encoded(|o| msg.encode(o));
        prop_assert_eq!(HandshakeResponse41::parse(&bytes).unwrap(), msg.clone());
        prop_assert_eq!(ClientHello::parse(&bytes).unwrap(), ClientHello::Response(msg));
    }

    #[test]
    fn ssl_request_round_trips(caps in any::<u32>(), max in any::<u32>(), coll in any::<u8>(), m in any::<u32>()) {
        let req = SslRequest {
            capabilities: Capabilities(caps) | Capabilities::PROTOCOL_41 | Capabilities::SSL,
            max_packet_size: max,
            collation: coll,
            mariadb_capabilities: m,
        };
        let bytes = encoded(|o| req.encode(o));
        prop_assert_eq!(SslRequest::parse(&bytes).unwrap(), req);
        prop_assert_eq!(ClientHello::parse(&bytes).unwrap(), ClientHello::SslRequest(req));
    }

    #[test]
    fn auth_switch_round_trips(plugin in nonzero_bytes(30), data in prop::collection::vec(any::<u8>(), 0..40)) {
        let s = AuthSwitchRequest { plugin_name: &plugin, data: &data };
        let bytes = encoded(|o| s.encode(o));
        prop_assert_eq!(AuthSwitchRequest::parse(&bytes).unwrap(), s);
    }

    #[test]
    fn auth_more_data_round_trips(data in prop::collection::vec(any::<u8>(), 0..40)) {
        let m = AuthMoreData { data: &data };
        let bytes = encoded(|o| m.encode(o));
        prop_assert_eq!(AuthMoreData::parse(&bytes).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = HandshakeV10::parse(&bytes);
        let _ = ClientHello::parse(&bytes);
        let _ = HandshakeResponse41::parse(&bytes);
        let _ = SslRequest::parse(&bytes);
        let _ = AuthSwitchRequest::parse(&bytes);
        let _ = AuthMoreData::parse(&bytes);
    }
}

/// A greeting whose part 2 fills the announced length (no NUL on the wire) re-encodes to the same
/// bytes and keeps its plugin name; an extra NUL used to shift the name by one (found by fuzzing).
#[test]
fn greeting_with_part_two_filling_its_length_round_trips() {
    let scramble = *b"abcdefghijklmnopqrst";
    let caps =
        Capabilities::PROTOCOL_41 | Capabilities::SECURE_CONNECTION | Capabilities::PLUGIN_AUTH;
    let mut g = HandshakeV10::new(
        b"v",
        1,
        &scramble,
        caps,
        8,
        ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    g.auth_plugin_data_len = 20; // part 2 = max(13, 12) = 13 bytes on the wire
    g.scramble_2 = b"ijklmnopqrstu"; // exactly 13, no room for a NUL
    let bytes = encoded(|o| g.encode(o));
    let parsed = HandshakeV10::parse(&bytes).unwrap();
    assert_eq!(parsed.scramble_2, g.scramble_2);
    assert_eq!(parsed.auth_plugin_name, b"mysql_native_password");
    assert_eq!(encoded(|o| parsed.encode(o)), bytes);
}
