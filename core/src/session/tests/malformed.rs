//! Malformed client packets through the session: the client gets what MariaDB 10.11 answers
//! (see the frontend's module docs; `tests/tests/proxy_malformed.rs` compares with a real
//! server), either from the frontend or from the backend the packet is relayed to.
//!
//! The client speaks raw frames here, and the in-test server (which reads only well-formed
//! commands) is taken out while a malformed packet reaches the backend: the test checks the bytes
//! relayed and answers as MariaDB does.

use super::*;
use crate::auth::native;
use crate::wire::{ErrPacket, HandshakeResponse41, HandshakeV10};

/// A logged-in session whose client the test drives with raw frames.
fn raw_client(proxy: bool) -> Net {
    let mut net = Net::logged_in(proxy);
    // The harness's client role would trip over answers to packets it did not send.
    net.client_gone = true;
    net.events.clear();
    net
}

/// Packets as (sequence id, payload).
type Packets = Vec<(u8, Bytes)>;

/// Sends one frame from the client; returns what the client and the backend got for it.
fn exchange(net: &mut Net, seq: u8, payload: &[u8]) -> (Packets, Packets) {
    net.to_client.clear();
    net.to_server.clear();
    net.session
        .handle_input(net.now, Peer::Client, &frame(seq, payload));
    net.pump();
    (packets(&net.to_client), packets(&net.to_server))
}

/// Sends the backend's answer (frames) as MariaDB would; returns what the client got.
fn backend_answers(net: &mut Net, frames: &[u8]) -> Packets {
    net.to_client.clear();
    net.session
        .handle_input(net.now, Peer::Backend(net.conn.unwrap()), frames);
    net.pump();
    packets(&net.to_client)
}

fn packets(mut bytes: &[u8]) -> Packets {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(bytes[0]) | usize::from(bytes[1]) << 8 | usize::from(bytes[2]) << 16;
        out.push((bytes[3], Bytes::copy_from_slice(&bytes[4..4 + len])));
        bytes = &bytes[4 + len..];
    }
    out
}

fn err_code(payload: &[u8]) -> u16 {
    ErrPacket::parse(payload, Capabilities::PROTOCOL_41)
        .unwrap()
        .code
}

/// The session still relays commands: SELECT 1 gets its result set from the in-test server.
fn select_1_works(net: &mut Net) {
    let (to_client, _) = exchange(net, 0, b"\x03SELECT 1");
    assert_eq!(to_client.first(), Some(&(1, Bytes::from_static(&[1]))));
    assert!(net.closed_reason().is_none());
}

#[test]
fn an_empty_packet_gets_1047_from_ferry_and_the_session_goes_on() {
    for proxy in [true, false] {
        let mut net = raw_client(proxy);
        let (to_client, to_server) = exchange(&mut net, 0, b"");
        assert_eq!(to_client.len(), 1);
        assert_eq!((to_client[0].0, err_code(&to_client[0].1)), (1, 1047));
        assert!(to_server.is_empty());
        select_1_works(&mut net);
    }
}

#[test]
fn a_short_stmt_close_is_relayed_and_nothing_answers() {
    for proxy in [true, false] {
        let mut net = raw_client(proxy);
        let server = net.server.take();
        for payload in [&b"\x19"[..], b"\x19\x01\x00"] {
            let (to_client, to_server) = exchange(&mut net, 0, payload);
            assert!(to_client.is_empty());
            assert_eq!(to_server, [(0, Bytes::copy_from_slice(payload))]);
        }
        net.server = server;
        select_1_works(&mut net);
    }
}

#[test]
fn a_malformed_change_user_gets_the_backends_refusal() {
    // MariaDB's answer to `11 00` (and to every malformed COM_CHANGE_USER).
    let mut unknown = Vec::new();
    ErrPacket::from(&ProtocolError::new(1047, "08S01", "Unknown command"))
        .encode(&mut unknown, Capabilities::PROTOCOL_41);
    for proxy in [true, false] {
        for payload in [&b"\x11app"[..], b"\x11app\x00", b"\x11app\x00\x14abc"] {
            let mut net = raw_client(proxy);
            let server = net.server.take();
            let (to_client, to_server) = exchange(&mut net, 0, payload);
            assert!(to_client.is_empty());
            assert_eq!(to_server, [(0, Bytes::from_static(b"\x11\x00"))]);
            let to_client = backend_answers(&mut net, &frame(1, &unknown));
            assert_eq!(to_client, [(1, Bytes::from(unknown.clone()))]);
            assert!(!net
                .events
                .iter()
                .any(|e| matches!(e, Event::UserChanged { .. })));
            net.server = server;
            select_1_works(&mut net);
        }
    }
}

#[test]
fn a_change_user_without_a_body_is_a_new_handshake_then_a_change() {
    for proxy in [true, false] {
        let mut net = raw_client(proxy);
        let (to_client, to_server) = exchange(&mut net, 0, b"\x11");
        assert!(to_server.is_empty(), "the greeting is ferry's");
        assert_eq!(to_client.len(), 1);
        assert_eq!(to_client[0].0, 1);
        let greeting = HandshakeV10::parse(&to_client[0].1).unwrap();
        assert_eq!(greeting.connection_id, 7);
        // The client logs in again over the new greeting, as it would to MariaDB.
        let salt = greeting.scramble();
        let mut response = Vec::new();
        HandshakeResponse41 {
            capabilities: net.client.capabilities(),
            max_packet_size: 1 << 24,
            collation: 45,
            mariadb_capabilities: 0,
            username: USER.as_bytes(),
            auth_response: &native::scramble(PASSWORD.as_bytes(), &salt),
            database: None,
            auth_plugin_name: Some(b"mysql_native_password"),
            connect_attrs: vec![],
            zstd_compression_level: None,
        }
        .encode(&mut response);
        let (to_client, to_server) = exchange(&mut net, 2, &response);
        // The backend got a COM_CHANGE_USER and asked for the password over its own salt.
        let [(0, change)] = &to_server[..] else {
            panic!("{to_server:?}")
        };
        assert_eq!(change[0], Command::COM_CHANGE_USER);
        assert_eq!(to_client.len(), 1);
        assert_eq!((to_client[0].0, to_client[0].1[0]), (3, 0xFE));
        let answer = native::scramble(PASSWORD.as_bytes(), &CHANGE_USER_SALT);
        let (to_client, _) = exchange(&mut net, 4, &answer);
        assert_eq!(to_client.len(), 1);
        assert_eq!((to_client[0].0, to_client[0].1[0]), (5, 0));
        assert!(net
            .events
            .contains(&Event::UserChanged { user: USER.into() }));
        select_1_works(&mut net);
    }
}

#[test]
fn a_command_in_place_of_the_new_handshake_closes_with_1156_twice() {
    let mut net = raw_client(true);
    exchange(&mut net, 0, b"\x11");
    let (to_client, to_server) = exchange(&mut net, 0, b"\x03SELECT 1");
    assert!(to_server.iter().all(|(_, p)| p[..] == [Command::COM_QUIT]));
    let seqs: Vec<(u8, u16)> = to_client.iter().map(|(s, p)| (*s, err_code(p))).collect();
    assert_eq!(seqs, [(2, 1156), (0, 1156)]);
    assert!(net.closed_reason().is_some());
}

#[test]
fn an_oversized_packet_gets_1153_with_the_next_sequence_id() {
    // Over the frontend's cap (refused from the header) and over the session's own (refused
    // once read): the same answer.
    for frontend_cap in [true, false] {
        let mut config = session_config(true);
        if frontend_cap {
            Arc::make_mut(&mut config.frontend).max_packet_size = 100;
        } else {
            config.max_packet_size = 100;
        }
        let mut net = Net::new(config, client_config(PASSWORD));
        net.pump();
        assert!(net.client_connected());
        net.client_gone = true;
        let mut query = vec![b'x'; 200];
        query[0] = Command::COM_QUERY;
        let (to_client, to_server) = exchange(&mut net, 0, &query);
        assert_eq!(to_client.len(), 1, "{frontend_cap}");
        assert_eq!((to_client[0].0, err_code(&to_client[0].1)), (1, 1153));
        assert!(to_server.iter().all(|(_, p)| p[..] == [Command::COM_QUIT]));
        assert!(net.closed_reason().is_some());
    }
}
