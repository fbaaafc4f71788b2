//! Every parser of what a server sends a client, fed an arbitrary payload under arbitrary
//! capabilities: HandshakeV10, OK / ERR / EOF (and session-state changes), column definitions,
//! result-set headers, text rows, binary rows with fuzzer-chosen column types, prepare-OK,
//! LOCAL INFILE requests, AuthSwitchRequest and AuthMoreData.
//!
//! Invariants:
//! - no input panics a parser;
//! - whatever parses re-encodes, the re-encoding parses to an equal value and re-encodes to the
//!   same bytes;
//! - where the format is canonical (ERR, EOF, LOCAL INFILE, auth switch, more data), the
//!   re-encoding is the input itself.
#![no_main]

use arbitrary::Arbitrary;
use ferry_core::wire::{
    AuthMoreData, AuthSwitchRequest, BinaryRow, Capabilities, ColumnDefinition41, ColumnType,
    EofPacket, ErrPacket, HandshakeV10, LocalInfileRequest, OkPacket, PrepareOk, ResponseKind,
    ResultSetHeader, ServerStatus, SessionStateChange, TextRow, ValueType,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    caps: u32,
    /// Column count a text row is read with.
    text_columns: u8,
    /// Column types a binary row is read with: (type code, UNSIGNED).
    binary_columns: Vec<(u8, bool)>,
    metadata_byte: bool,
    payload: Vec<u8>,
}

/// Encodes with `f` into a fresh buffer.
fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

fuzz_target!(|input: Input| {
    let p = &input.payload[..];
    let caps = Capabilities(input.caps);

    handshake(p);
    responses(p, caps);
    column_definition(p);
    result_set_header(p, caps, input.metadata_byte);
    text_row(p, usize::from(input.text_columns));
    binary_row(p, &input.binary_columns);
    prepare_ok(p, caps);
    canonical_packets(p, caps);
});

fn handshake(p: &[u8]) {
    let Ok(first) = HandshakeV10::parse(p) else {
        return;
    };
    let bytes = enc(|o| first.encode(o));
    let second = HandshakeV10::parse(&bytes).expect("re-encoded handshake parses");
    let part2_len = usize::from(first.auth_plugin_data_len)
        .saturating_sub(8)
        .max(13);
    if first.scramble_2.len() < part2_len {
        assert_eq!(second, first);
        assert_eq!(enc(|o| second.encode(o)), bytes);
    } else {
        // The input filled scramble part 2 without its NUL terminator; the encoder adds one
        // beyond the announced length, so only the fields before the plugin name survive.
        assert_eq!(second.scramble(), first.scramble());
        assert_eq!(second.capabilities, first.capabilities);
    }
    assert_eq!(first.scramble().len(), 8 + first.scramble_2.len());
}

fn responses(p: &[u8], caps: Capabilities) {
    let kind = ResponseKind::of(p, caps);
    match kind {
        Err(_) => assert!(p.is_empty()),
        Ok(ResponseKind::Ok) => assert_eq!(p[0], 0x00),
        Ok(ResponseKind::Err) => assert_eq!(p[0], 0xFF),
        Ok(ResponseKind::LocalInfile) => assert_eq!(p[0], 0xFB),
        Ok(ResponseKind::Eof) => assert_eq!(p[0], 0xFE),
        Ok(ResponseKind::ResultSet) => assert!(!matches!(p[0], 0x00 | 0xFF | 0xFB)),
    }

    if let Ok(first) = OkPacket::parse(p, caps) {
        assert_eq!(first.eof, p[0] == 0xFE);
        let bytes = enc(|o| first.encode(o, caps));
        let second = OkPacket::parse(&bytes, caps).expect("re-encoded OK parses");
        assert_eq!(second, first);
        assert_eq!(enc(|o| second.encode(o, caps)), bytes);

        let stripped = enc(|o| first.encode_without_session_state(o, caps));
        let third = OkPacket::parse(&stripped, caps).expect("OK without session state parses");
        assert!(third.session_state.is_empty());
        assert!(!third.status.contains(ServerStatus::SESSION_STATE_CHANGED));
        assert_eq!(third.affected_rows, first.affected_rows);
        assert_eq!(third.last_insert_id, first.last_insert_id);
        assert_eq!(third.info, first.info);
    }

    if let Ok(first) = ErrPacket::parse(p, caps) {
        let bytes = enc(|o| first.encode(o, caps));
        assert_eq!(bytes, p);
        let err = first.to_protocol_error();
        assert_eq!(err.code, first.code);
    }

    if let Ok(first) = EofPacket::parse(p, caps) {
        assert_eq!(enc(|o| first.encode(o, caps)), p);
    }

    if let Ok(first) = SessionStateChange::parse_all(p) {
        let bytes = enc(|o| first.iter().for_each(|c| c.encode(o)));
        let second = SessionStateChange::parse_all(&bytes).expect("re-encoded state parses");
        assert_eq!(second, first);
    }
}

fn column_definition(p: &[u8]) {
    let Ok(first) = ColumnDefinition41::parse(p) else {
        return;
    };
    let bytes = enc(|o| first.encode(o));
    let second = ColumnDefinition41::parse(&bytes).expect("re-encoded column parses");
    assert_eq!(second, first);
    assert_eq!(enc(|o| second.encode(o)), bytes);
    // Every column type can at least be asked how its values are encoded.
    let _ = first.value_type();
}

fn result_set_header(p: &[u8], caps: Capabilities, metadata_byte: bool) {
    if let Ok(first) = ResultSetHeader::parse(p, caps) {
        assert_ne!(first.column_count, 0);
        let bytes = enc(|o| first.encode(caps, o));
        assert_eq!(ResultSetHeader::parse(&bytes, caps), Ok(first));
    }
    if let Ok(first) = ResultSetHeader::parse_with_metadata_byte(p, metadata_byte) {
        let bytes = enc(|o| first.encode_with_metadata_byte(metadata_byte, o));
        assert_eq!(
            ResultSetHeader::parse_with_metadata_byte(&bytes, metadata_byte),
            Ok(first)
        );
    }
}

fn text_row(p: &[u8], columns: usize) {
    // The lazy reader yields what it can, and stops after an error.
    let mut lazy = Vec::new();
    let mut failed = false;
    for cell in TextRow::new(p) {
        match cell {
            Ok(c) => lazy.push(c),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    if let Ok(cells) = TextRow::parse(p, columns) {
        assert_eq!(cells.len(), columns);
        // A row read whole is what the lazy reader yields.
        assert!(!failed);
        assert_eq!(cells, lazy);
        let bytes = enc(|o| TextRow::encode(&cells, o));
        assert_eq!(TextRow::parse(&bytes, columns), Ok(cells));
    } else if !failed {
        // The lazy reader read the whole payload, so the count was wrong.
        assert_ne!(lazy.len(), columns);
    }
}

fn binary_row(p: &[u8], columns: &[(u8, bool)]) {
    let types: Vec<ValueType> = columns
        .iter()
        .map(|&(code, unsigned)| ValueType::new(ColumnType::from_u8(code), unsigned))
        .collect();
    let Ok(first) = BinaryRow::parse(p, &types) else {
        return;
    };
    assert_eq!(first.values.len(), types.len());
    let bytes = enc(|o| first.encode(o));
    let second = BinaryRow::parse(&bytes, &types).expect("re-encoded binary row parses");
    // Doubles may be NaN (not equal to themselves): compare renderings and bytes.
    assert_eq!(format!("{second:?}"), format!("{first:?}"));
    assert_eq!(enc(|o| second.encode(o)), bytes);
}

fn prepare_ok(p: &[u8], caps: Capabilities) {
    let Ok(first) = PrepareOk::parse(p, caps) else {
        return;
    };
    let bytes = enc(|o| first.encode(caps, o));
    assert_eq!(PrepareOk::parse(&bytes, caps), Ok(first));
}

fn canonical_packets(p: &[u8], _caps: Capabilities) {
    if let Ok(req) = LocalInfileRequest::parse(p) {
        assert_eq!(enc(|o| req.encode(o)), p);
    }
    if let Ok(req) = AuthSwitchRequest::parse(p) {
        assert_eq!(enc(|o| req.encode(o)), p);
    }
    if let Ok(more) = AuthMoreData::parse(p) {
        assert_eq!(enc(|o| more.encode(o)), p);
    }
}
