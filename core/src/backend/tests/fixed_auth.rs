//! The fixed login ([`BackendConfig::fixed_auth`]): exact auth data and plugin on the wire, only
//! an OK accepted.

use super::*;
use crate::wire::{encode_packet, ErrPacket, HandshakeResponse41, HandshakeV10, OkPacket};
use crate::SeededRandom;

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}

fn greeting(caps: Capabilities) -> Vec<u8> {
    let hello = HandshakeV10::new(
        b"8.0.11-TiDB-v7.5.0",
        9,
        b"abcdefghijklmnopqrst",
        caps,
        45,
        ServerStatus::AUTOCOMMIT,
        b"mysql_native_password",
    );
    let mut out = BytesMut::new();
    hello.encode(&mut out);
    frame(0, &out)
}

fn server_caps() -> Capabilities {
    Capabilities(0xFFFF_FFFF).without(
        Capabilities::SSL
            | Capabilities::COMPRESS
            | Capabilities::ZSTD_COMPRESSION_ALGORITHM
            | Capabilities::QUERY_ATTRIBUTES
            | Capabilities::OPTIONAL_RESULTSET_METADATA,
    )
}

/// A backend with a fixed login of `data`, after the greeting; returns it and the response sent.
fn after_greeting(data: Vec<u8>, caps: Capabilities) -> (Backend, Vec<u8>) {
    let now = Instant::now();
    let mut config = BackendConfig::new("app", ClientSecret::NoPassword);
    config.connect_attrs = vec![("_client_name".into(), "ferry".into())];
    config.fixed_auth = Some(FixedAuth {
        plugin: "tidb_session_token".into(),
        auth_data: data,
    });
    let mut b = Backend::new(now, config, Box::new(SeededRandom::new(1)));
    b.handle_input(now, &greeting(caps));
    let mut wire = Vec::new();
    while let Some(t) = b.poll_transmit() {
        wire.extend_from_slice(&t);
    }
    (b, wire)
}

fn token() -> Vec<u8> {
    // Longer than 250 bytes: needs the length-encoded form.
    let mut t = br#"{"username":"app","sign-time":"2024-01-01T00:00:00Z","expire-time":"2024-01-01T00:01:00Z","signature":""#.to_vec();
    t.extend(std::iter::repeat_n(b'A', 300));
    t.extend_from_slice(b"\"}");
    t
}

#[test]
fn sends_the_data_unchanged_and_accepts_only_ok() {
    let data = token();
    let (mut b, wire) = after_greeting(data.clone(), server_caps());
    let hello = HandshakeResponse41::parse(&wire[4..]).unwrap();
    assert_eq!(hello.auth_response, &data[..], "token bytes unchanged");
    assert_eq!(hello.auth_plugin_name, Some(&b"tidb_session_token"[..]));
    assert!(hello
        .capabilities
        .contains(Capabilities::PLUGIN_AUTH | Capabilities::CONNECT_ATTRS));
    assert!(hello
        .capabilities
        .contains(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA));
    let mut ok = Vec::new();
    OkPacket {
        status: ServerStatus::AUTOCOMMIT,
        ..OkPacket::default()
    }
    .encode(&mut ok, b.capabilities());
    b.handle_input(Instant::now(), &frame(2, &ok));
    match b.poll_event() {
        Some(Event::Connected(info)) => {
            assert_eq!(info.auth_plugin, AuthPlugin::TidbSessionToken)
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    assert!(b.is_idle());
}

#[test]
fn an_auth_switch_fails_the_login() {
    let (mut b, _) = after_greeting(b"{}".to_vec(), server_caps());
    let mut switch = Vec::new();
    AuthSwitchRequest {
        plugin_name: b"mysql_native_password",
        data: b"abcdefghijklmnopqrst\0",
    }
    .encode(&mut switch);
    b.handle_input(Instant::now(), &frame(2, &switch));
    match b.poll_event() {
        Some(Event::Closed {
            error: Some(BackendError::UnexpectedPacket { .. }),
        }) => {}
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(b.poll_transmit().is_none(), "nothing answered the switch");
}

#[test]
fn an_err_is_reported_as_auth_failed() {
    let (mut b, _) = after_greeting(b"{}".to_vec(), server_caps());
    let mut err = Vec::new();
    ErrPacket {
        code: 1045,
        sql_state: Some(*b"28000"),
        message: b"Access denied",
    }
    .encode(&mut err, Capabilities::PROTOCOL_41);
    b.handle_input(Instant::now(), &frame(2, &err));
    assert!(matches!(b.poll_event(), Some(Event::AuthFailed { error, .. }) if error.code == 1045));
}

#[test]
fn long_data_without_lenenc_is_refused_rather_than_truncated() {
    let caps = server_caps().without(Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA);
    let (mut b, wire) = after_greeting(token(), caps);
    assert!(wire.is_empty(), "no truncated response sent");
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed {
            error: Some(BackendError::Unsupported(_))
        })
    ));
}
