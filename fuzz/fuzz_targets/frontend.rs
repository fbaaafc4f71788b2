//! The frontend state machine (`ferry_core::frontend::Frontend`) fed arbitrary client bytes,
//! interleaved with arbitrary owner decisions (accept/reject the login, relay auth packets, answer
//! commands, end responses), timeouts and closes, in `proxy` or `passthrough` mode. Optionally a
//! valid native login comes first, so the fuzzer reaches the command phase quickly.
//!
//! Invariants:
//! - nothing panics, whatever the bytes and whatever the order of the owner's calls (misplaced
//!   calls return `Err`, never panic);
//! - after `Closed` no event ever follows, the machine reports itself closed, wants no input and
//!   has no deadline;
//! - the same client bytes fed in one call or in the fuzzer's chunks give the same events and the
//!   same output bytes (checked on the runs that only feed bytes).
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::BytesMut;
use ferry_core::auth::{native, AuthPlugin, Credential};
use ferry_core::frontend::{AuthMode, Event, Frontend, FrontendConfig, UserEntry, UserTable};
use ferry_core::wire::{encode_packet, Capabilities, HandshakeResponse41, HandshakeV10};
use ferry_core::{ProtocolError, SeededRandom};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Input(Vec<u8>),
    Accept,
    Reject,
    SendOk,
    SendErr,
    SendPacket(Vec<u8>),
    SendResult(u8),
    EndResponse,
    SendAuthPacket(Vec<u8>),
    FinishAuth(bool),
    Timeout(u16),
    Close,
}

#[derive(Debug, Arbitrary)]
struct Input {
    passthrough: bool,
    login: bool,
    auto_accept: bool,
    client_caps: u32,
    ops: Vec<Op>,
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}

fn frontend(input: &Input, now: Instant) -> Frontend {
    let mut users = UserTable::new();
    users.insert(
        "u",
        UserEntry {
            credential: Credential::native_from_password(b"pw"),
            plugin: AuthPlugin::MysqlNativePassword,
        },
    );
    let mode = if input.passthrough {
        AuthMode::Passthrough
    } else {
        AuthMode::Proxy {
            users: Arc::new(users),
            sha2_cache: None,
            rsa: None,
        }
    };
    let mut config = FrontendConfig::new(mode);
    config.auto_accept_login = input.auto_accept;
    config.max_packet_size = 1 << 16;
    config.input_buffer_cap = 1 << 12;
    Frontend::new(
        Arc::new(config),
        1,
        "fuzz",
        now,
        Box::new(SeededRandom::new(5)),
    )
}

/// A valid native handshake response to the greeting `fe` sent.
fn login_bytes(fe: &mut Frontend, caps: u32) -> Vec<u8> {
    let mut greeting = Vec::new();
    while let Some(b) = fe.poll_transmit() {
        greeting.extend_from_slice(&b);
    }
    let salt = HandshakeV10::parse(greeting.get(4..).unwrap_or_default())
        .map(|g| g.scramble())
        .unwrap_or_default();
    let mut payload = Vec::new();
    HandshakeResponse41 {
        capabilities: Capabilities(
            caps | Capabilities::PROTOCOL_41.0 | Capabilities::PLUGIN_AUTH.0,
        )
        .without(Capabilities::SSL),
        max_packet_size: 1 << 24,
        collation: 45,
        mariadb_capabilities: 0,
        username: b"u",
        auth_response: &native::scramble(b"pw", &salt),
        database: None,
        auth_plugin_name: Some(b"mysql_native_password"),
        connect_attrs: Vec::new(),
        zstd_compression_level: None,
    }
    .encode(&mut payload);
    frame(1, &payload)
}

/// Drains the outputs, checking the closed-state invariants; returns (events as text, bytes).
fn drain(fe: &mut Frontend, closed: &mut bool, events: &mut Vec<String>, out: &mut Vec<u8>) {
    while let Some(b) = fe.poll_transmit() {
        out.extend_from_slice(&b);
    }
    while let Some(e) = fe.poll_event() {
        assert!(!*closed, "event after Closed: {e:?}");
        if matches!(e, Event::Closed { .. }) {
            *closed = true;
        }
        events.push(format!("{e:?}"));
    }
    if *closed {
        assert!(fe.is_closed());
        assert!(!fe.wants_input());
        assert_eq!(fe.poll_timeout(), None);
    }
}

fn run(input: &Input, chunks: Option<&[Vec<u8>]>, whole: Option<&[u8]>) -> (Vec<String>, Vec<u8>) {
    let t0 = Instant::now();
    let mut fe = frontend(input, t0);
    let (mut closed, mut events, mut out) = (false, Vec::new(), Vec::new());
    if input.login {
        let bytes = login_bytes(&mut fe, input.client_caps);
        fe.handle_input(t0, &bytes);
    }
    drain(&mut fe, &mut closed, &mut events, &mut out);
    if let Some(chunks) = chunks {
        for c in chunks {
            fe.handle_input(t0, c);
            drain(&mut fe, &mut closed, &mut events, &mut out);
        }
    }
    if let Some(whole) = whole {
        fe.handle_input(t0, whole);
        drain(&mut fe, &mut closed, &mut events, &mut out);
    }
    (events, out)
}

fuzz_target!(|input: Input| {
    let only_bytes = input.ops.iter().all(|op| matches!(op, Op::Input(_)));
    if only_bytes {
        let chunks: Vec<Vec<u8>> = input
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Input(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        let whole: Vec<u8> = chunks.concat();
        let split = run(&input, Some(&chunks), None);
        let joined = run(&input, None, Some(&whole));
        // The salt comes from the same seed, so both runs must agree byte for byte.
        assert_eq!(split, joined, "chunking changed the outcome");
        return;
    }

    let t0 = Instant::now();
    let mut fe = frontend(&input, t0);
    let (mut closed, mut events, mut out) = (false, Vec::new(), Vec::new());
    if input.login {
        let bytes = login_bytes(&mut fe, input.client_caps);
        fe.handle_input(t0, &bytes);
    }
    drain(&mut fe, &mut closed, &mut events, &mut out);
    let mut now = t0;
    for op in &input.ops {
        match op {
            Op::Input(b) => fe.handle_input(now, b),
            Op::Accept => drop(fe.accept_login(now)),
            Op::Reject => drop(fe.reject_login(now, ProtocolError::new(1049, "42000", "no"))),
            Op::SendOk => drop(fe.send_ok_empty(now)),
            Op::SendErr => drop(fe.send_error(now, &ProtocolError::new(1064, "42000", "no"))),
            Op::SendPacket(p) => drop(fe.send_packet(now, p)),
            Op::SendResult(n) => {
                let cols = [ferry_core::frontend::column(
                    b"c",
                    ferry_core::wire::ColumnType::VarString,
                )];
                let rows = (0..*n).map(|i| [if i % 3 == 0 { None } else { Some(&b"v"[..]) }]);
                drop(fe.send_text_result(now, &cols, rows));
            }
            Op::EndResponse => drop(fe.end_response(now)),
            Op::SendAuthPacket(p) => drop(fe.send_auth_packet(now, p)),
            Op::FinishAuth(ok) => drop(fe.finish_auth(
                now,
                if *ok {
                    Ok(())
                } else {
                    Err(ProtocolError::new(1045, "28000", "denied"))
                },
            )),
            Op::Timeout(ms) => {
                now += Duration::from_millis(u64::from(*ms) * 10);
                fe.handle_timeout(now);
            }
            Op::Close => fe.close(now),
        }
        drain(&mut fe, &mut closed, &mut events, &mut out);
    }
});
