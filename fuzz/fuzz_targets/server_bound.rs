//! Every parser of what a client sends a server, fed an arbitrary payload under arbitrary
//! capabilities: HandshakeResponse41, SSLRequest, the ClientHello classification, COM_* commands.
//!
//! Invariants:
//! - no input panics a parser;
//! - whatever parses re-encodes, and the re-encoding parses to an equal value (up to the
//!   documented defaults an encoder fills in) and re-encodes to the same bytes again;
//! - where the format is canonical, the re-encoding is the input itself (or its consumed prefix).
#![no_main]

use arbitrary::Arbitrary;
use ferry_core::wire::{
    Capabilities, ClientHello, Command, HandshakeResponse41, SslRequest, PRE_41_CLIENT,
    SSL_REQUEST_LEN,
};
use ferry_core::DecodeError;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Negotiated capabilities for the command phase.
    caps: u32,
    /// What the statement lookup answers for COM_STMT_EXECUTE (`None`: unknown statement).
    param_count: Option<u8>,
    payload: Vec<u8>,
}

fuzz_target!(|input: Input| {
    handshake_response(&input.payload);
    ssl_request(&input.payload);
    client_hello(&input.payload);
    command(
        &input.payload,
        Capabilities(input.caps),
        input.param_count.map(u16::from),
    );
});

fn encode_response(r: &HandshakeResponse41<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

/// What the encoder writes for optional fields whose capability is set: an absent database or
/// plugin name goes out empty, an absent zstd level as 3.
fn with_encoder_defaults<'a>(r: &HandshakeResponse41<'a>) -> HandshakeResponse41<'a> {
    let mut r = r.clone();
    if r.capabilities.contains(Capabilities::CONNECT_WITH_DB) {
        r.database = r.database.or(Some(b""));
    }
    if r.capabilities.contains(Capabilities::PLUGIN_AUTH) {
        r.auth_plugin_name = r.auth_plugin_name.or(Some(b""));
    }
    if r.capabilities
        .contains(Capabilities::ZSTD_COMPRESSION_ALGORITHM)
    {
        r.zstd_compression_level = r.zstd_compression_level.or(Some(3));
    }
    r
}

fn handshake_response(payload: &[u8]) {
    let first = match HandshakeResponse41::parse(payload) {
        Ok(r) => r,
        Err(DecodeError::Malformed { what }) if what == PRE_41_CLIENT => {
            assert!(payload.len() >= 2 && payload[1] & 0x02 == 0);
            return;
        }
        Err(_) => return,
    };
    assert!(first.capabilities.contains(Capabilities::PROTOCOL_41));
    let bytes = encode_response(&first);
    // The fixed part is the input's, except the 19 filler bytes, which go out as zeros.
    assert_eq!(&bytes[..9], &payload[..9]);
    assert!(bytes[9..28].iter().all(|&b| b == 0));
    assert_eq!(&bytes[28..32], &payload[28..32]);
    let second = HandshakeResponse41::parse(&bytes).expect("re-encoded response parses");
    assert_eq!(second, with_encoder_defaults(&first));
    assert_eq!(encode_response(&second), bytes);
}

fn ssl_request(payload: &[u8]) {
    let Ok(first) = SslRequest::parse(payload) else {
        return;
    };
    assert_eq!(payload.len(), SSL_REQUEST_LEN);
    let mut bytes = Vec::new();
    first.encode(&mut bytes);
    assert_eq!(bytes.len(), SSL_REQUEST_LEN);
    assert_eq!(&bytes[..9], &payload[..9]);
    assert_eq!(&bytes[28..], &payload[28..]);
    assert_eq!(SslRequest::parse(&bytes), Ok(first));
}

fn client_hello(payload: &[u8]) {
    match ClientHello::parse(payload) {
        Ok(ClientHello::Pre41 { capabilities }) => {
            assert!(!capabilities.contains(Capabilities::PROTOCOL_41));
            assert_eq!(
                HandshakeResponse41::parse(payload),
                Err(DecodeError::Malformed {
                    what: PRE_41_CLIENT
                })
            );
        }
        Ok(ClientHello::SslRequest(r)) => {
            assert!(r.capabilities.contains(Capabilities::SSL));
            assert_eq!(SslRequest::parse(payload), Ok(r));
        }
        Ok(ClientHello::Response(r)) => {
            assert_eq!(HandshakeResponse41::parse(payload), Ok(r));
        }
        Err(_) => {}
    }
}

fn encode_command(c: &Command<'_>, caps: Capabilities) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode(caps, &mut out);
    out
}

/// Whether the command's encoding is the whole payload (`Some(true)`), a prefix of it
/// (`Some(false)`: fixed-size commands ignore trailing bytes), or neither (`None`: lenenc
/// integers, bitmaps and filler can be written more than one way).
fn canonical(c: &Command<'_>, caps: Capabilities) -> Option<bool> {
    match c {
        Command::InitDb { .. }
        | Command::FieldList { .. }
        | Command::StmtPrepare { .. }
        | Command::StmtSendLongData { .. }
        | Command::Unknown { .. } => Some(true),
        Command::Query(_) if !caps.contains(Capabilities::QUERY_ATTRIBUTES) => Some(true),
        Command::Quit
        | Command::Statistics
        | Command::ProcessInfo
        | Command::Refresh { .. }
        | Command::Shutdown { .. }
        | Command::Debug
        | Command::Ping
        | Command::ResetConnection
        | Command::ProcessKill { .. }
        | Command::StmtClose { .. }
        | Command::StmtReset { .. }
        | Command::SetOption { .. }
        | Command::StmtFetch { .. } => Some(false),
        Command::Query(_) | Command::ChangeUser(_) | Command::StmtExecute(_) => None,
    }
}

fn command(payload: &[u8], caps: Capabilities, param_count: Option<u16>) {
    let Ok(first) = Command::parse(payload, caps, |_| param_count) else {
        return;
    };
    assert_eq!(Some(&first.code()), payload.first());
    let bytes = encode_command(&first, caps);
    match canonical(&first, caps) {
        Some(true) => assert_eq!(bytes, payload),
        Some(false) => assert_eq!(&bytes[..], &payload[..bytes.len()]),
        None => {}
    }
    let second = Command::parse(&bytes, caps, |_| param_count).expect("re-encoded command parses");
    // Values may be NaN floats, which are not equal to themselves: compare their rendering
    // (exact except for NaN payloads) and, below, the bytes.
    assert_eq!(format!("{second:?}"), format!("{first:?}"));
    assert_eq!(encode_command(&second, caps), bytes);
}
