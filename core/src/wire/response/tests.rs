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

/// The capabilities the `mariadb` 10.11 client negotiated in the captures below.
const MARIADB_CLIENT: Capabilities = Capabilities(0x00bf_a284);

#[test]
fn real_mariadb_oks_with_session_tracking() {
    assert!(MARIADB_CLIENT.contains(Capabilities::SESSION_TRACK | Capabilities::PROTOCOL_41));

    // After login: nothing but status AUTOCOMMIT; the info is left out entirely.
    let payload = hex("00000002000000");
    let ok = OkPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert_eq!(ok.status, ServerStatus::AUTOCOMMIT);
    assert!(ok.info.is_empty() && ok.session_state.is_empty() && !ok.eof);
    assert_eq!(encoded(|o| ok.encode(o, MARIADB_CLIENT)), payload);

    // SET session_track_system_variables='*'.
    let payload = hex("000000024000000026002\
         11e73657373696f6e5f747261636b5f73797374656d5f7661726961626c6573012a020131");
    let ok = OkPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert!(ok.status.contains(ServerStatus::SESSION_STATE_CHANGED));
    assert_eq!(
        ok.session_state,
        [
            SessionStateChange::SystemVariable {
                name: b"session_track_system_variables",
                value: b"*"
            },
            SessionStateChange::StateChange(true)
        ]
    );
    assert_eq!(encoded(|o| ok.encode(o, MARIADB_CLIENT)), payload);

    // USE mysql (COM_INIT_DB).
    let payload = hex("00000002400000000b0106056d7973716c020131");
    let ok = OkPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert_eq!(
        ok.session_state,
        [
            SessionStateChange::Schema(b"mysql"),
            SessionStateChange::StateChange(true)
        ]
    );
    assert_eq!(encoded(|o| ok.encode(o, MARIADB_CLIENT)), payload);

    // SET autocommit=0: AUTOCOMMIT clears.
    let payload = hex("000000004000000014000f0a6175746f636f6d6d6974034f4646020131");
    let ok = OkPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert_eq!(ok.status, ServerStatus::SESSION_STATE_CHANGED);
    assert_eq!(
        ok.session_state[0],
        SessionStateChange::SystemVariable {
            name: b"autocommit",
            value: b"OFF"
        }
    );

    // Stripped for a client that did not ask: the flag and the section go.
    let stripped = encoded(|o| ok.encode_without_session_state(o, MARIADB_CLIENT));
    assert_eq!(stripped, hex("00000000000000"));
    let plain = MARIADB_CLIENT.without(Capabilities::SESSION_TRACK);
    assert_eq!(
        encoded(|o| ok.encode_without_session_state(o, plain)),
        hex("00000000000000")
    );
}

#[test]
fn real_mariadb_err_and_eof() {
    let payload = hex(
        "ff190523343230303046554e4354494f4e206d7973716c2e6e6f73756368666e20646f6573206e6f74206578697374",
    );
    assert_eq!(
        ResponseKind::of(&payload, MARIADB_CLIENT),
        Ok(ResponseKind::Err)
    );
    let err = ErrPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert_eq!(err.code, 1305);
    assert_eq!(err.sql_state, Some(*b"42000"));
    assert_eq!(err.message, b"FUNCTION mysql.nosuchfn does not exist");
    assert_eq!(encoded(|o| err.encode(o, MARIADB_CLIENT)), payload);
    let pe = err.to_protocol_error();
    assert_eq!(
        pe.to_string(),
        "ERROR 1305 (42000): FUNCTION mysql.nosuchfn does not exist"
    );
    assert_eq!(ErrPacket::from(&pe), err);

    let payload = hex("fe00000200");
    assert_eq!(
        ResponseKind::of(&payload, MARIADB_CLIENT),
        Ok(ResponseKind::Eof)
    );
    let eof = EofPacket::parse(&payload, MARIADB_CLIENT).unwrap();
    assert_eq!(eof.status, ServerStatus::AUTOCOMMIT);
    assert_eq!(eof.warnings, 0);
    assert_eq!(encoded(|o| eof.encode(o, MARIADB_CLIENT)), payload);
}

#[test]
fn err_before_the_handshake_has_no_sql_state() {
    // "Host is not allowed to connect": sent instead of the greeting, caps not yet agreed.
    let payload = b"\xff\x6a\x04#Host 'x' is not allowed";
    let err = ErrPacket::parse(payload, Capabilities::EMPTY).unwrap();
    assert_eq!(err.code, 1130);
    assert_eq!(err.sql_state, None);
    assert_eq!(err.message, b"#Host 'x' is not allowed");
    let pe = ProtocolError::new(1045, "28000", "Access denied");
    assert_eq!(
        encoded(|o| ErrPacket::from(&pe).encode(o, Capabilities::PROTOCOL_41)),
        b"\xff\x15\x04#28000Access denied"
    );
    assert_eq!(
        encoded(|o| ErrPacket::from(&pe).encode(o, Capabilities::EMPTY)),
        b"\xff\x15\x04Access denied"
    );
}

#[test]
fn ok_as_eof_under_deprecate_eof() {
    let caps = Capabilities::PROTOCOL_41 | Capabilities::DEPRECATE_EOF;
    let payload = hex("fe000002000000");
    assert_eq!(ResponseKind::of(&payload, caps), Ok(ResponseKind::Eof));
    let ok = OkPacket::parse(&payload, caps).unwrap();
    assert!(ok.eof);
    assert_eq!(ok.status, ServerStatus::AUTOCOMMIT);
    assert_eq!(encoded(|o| ok.encode(o, caps)), payload);
    // A long OK-as-EOF (with info) is still an end marker under DEPRECATE_EOF...
    let long = hex("fe0000020000000a696e666f20696e666f21");
    assert_eq!(ResponseKind::of(&long, caps), Ok(ResponseKind::Eof));
    // ...but without it, a 0xFE payload of 9+ bytes is data.
    assert_eq!(
        ResponseKind::of(&long, Capabilities::PROTOCOL_41),
        Ok(ResponseKind::ResultSet)
    );
    assert_eq!(
        ResponseKind::of(&vec![0xFE; 0xFF_FFFF], caps),
        Ok(ResponseKind::ResultSet)
    );
}

#[test]
fn classification_of_first_bytes() {
    let c = Capabilities::PROTOCOL_41;
    assert_eq!(ResponseKind::of(&[0x00, 0, 0], c), Ok(ResponseKind::Ok));
    assert_eq!(
        ResponseKind::of(b"\xfb/tmp/x.csv", c),
        Ok(ResponseKind::LocalInfile)
    );
    assert_eq!(ResponseKind::of(&[0x03], c), Ok(ResponseKind::ResultSet));
    assert_eq!(
        ResponseKind::of(&[0xFC, 0x00, 0x01], c),
        Ok(ResponseKind::ResultSet)
    );
    assert!(ResponseKind::of(&[], c).is_err());
}

#[test]
fn other_session_state_types_and_unknown_ones() {
    let caps = Capabilities::PROTOCOL_41 | Capabilities::SESSION_TRACK;
    let ok = OkPacket {
        status: ServerStatus::SESSION_STATE_CHANGED,
        info: b"info",
        session_state: vec![
            SessionStateChange::Gtids {
                encoding: 0,
                gtids: b"3E11FA47-71CA-11E1-9E33-C80AA9429562:23",
            },
            SessionStateChange::TransactionCharacteristics(b"START TRANSACTION READ ONLY;"),
            SessionStateChange::TransactionState(b"T_______"),
            SessionStateChange::Unknown {
                kind: 42,
                data: b"\x01\x02",
            },
        ],
        ..OkPacket::default()
    };
    let bytes = encoded(|o| ok.encode(o, caps));
    // The unknown entry is kept raw: type 42, data of 2 bytes.
    assert!(bytes.ends_with(&[42, 2, 1, 2]));
    assert_eq!(OkPacket::parse(&bytes, caps).unwrap(), ok);
}

#[test]
fn malformed_responses_are_errors() {
    let caps = Capabilities::PROTOCOL_41 | Capabilities::SESSION_TRACK;
    assert!(OkPacket::parse(&[0x01, 0, 0, 0, 0, 0, 0], caps).is_err());
    assert!(OkPacket::parse(&[0x00, 0xFB, 0], caps).is_err());
    // Session-state block claims more than is there.
    assert!(OkPacket::parse(&hex("000000024000000005020131"), caps).is_err());
    // State-change flag other than "0"/"1".
    assert!(OkPacket::parse(&hex("000000024000000003020131"), caps).is_ok());
    assert!(OkPacket::parse(&hex("00000002400000000302017a"), caps).is_err());
    // ...or wrapped in an inner length as the other types are.
    assert!(OkPacket::parse(&hex("00000002400000000402020131"), caps).is_err());
    // Schema entry with trailing bytes inside its data.
    assert!(OkPacket::parse(&hex("00000002400000000401020078"), caps).is_err());
    // Trailing bytes after the session-tracking fields.
    assert!(OkPacket::parse(&hex("0000000200000000ff"), caps).is_err());
    assert!(ErrPacket::parse(&[0xFF, 0x01], caps).is_err());
    assert!(ErrPacket::parse(b"\xff\x01\x00#420", caps).is_err());
    assert!(EofPacket::parse(&[0xFE, 0, 0, 2, 0, 9], caps).is_err());
    assert!(EofPacket::parse(&[0xFE, 0, 0], caps).is_err());
    assert_eq!(
        EofPacket::parse(&[0xFE], Capabilities::EMPTY),
        Ok(EofPacket::default())
    );
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Owned form of a session-state change, for generating borrowed ones.
#[derive(Debug, Clone)]
enum OwnedChange {
    Var(Vec<u8>, Vec<u8>),
    Schema(Vec<u8>),
    State(bool),
    Gtids(u8, Vec<u8>),
    Chars(Vec<u8>),
    Trx(Vec<u8>),
    Unknown(u64, Vec<u8>),
}

fn change() -> impl Strategy<Value = OwnedChange> {
    prop_oneof![
        (bytes(40), bytes(300)).prop_map(|(n, v)| OwnedChange::Var(n, v)),
        bytes(70).prop_map(OwnedChange::Schema),
        any::<bool>().prop_map(OwnedChange::State),
        (any::<u8>(), bytes(60)).prop_map(|(e, g)| OwnedChange::Gtids(e, g)),
        bytes(60).prop_map(OwnedChange::Chars),
        bytes(8).prop_map(OwnedChange::Trx),
        (6u64..=u64::MAX, bytes(20)).prop_map(|(k, d)| OwnedChange::Unknown(k, d)),
    ]
}

fn borrow(c: &OwnedChange) -> SessionStateChange<'_> {
    match c {
        OwnedChange::Var(n, v) => SessionStateChange::SystemVariable { name: n, value: v },
        OwnedChange::Schema(s) => SessionStateChange::Schema(s),
        OwnedChange::State(b) => SessionStateChange::StateChange(*b),
        OwnedChange::Gtids(e, g) => SessionStateChange::Gtids {
            encoding: *e,
            gtids: g,
        },
        OwnedChange::Chars(s) => SessionStateChange::TransactionCharacteristics(s),
        OwnedChange::Trx(s) => SessionStateChange::TransactionState(s),
        OwnedChange::Unknown(k, d) => SessionStateChange::Unknown { kind: *k, data: d },
    }
}

proptest! {
    #[test]
    fn ok_round_trips(
        caps in any::<u32>(),
        eof in any::<bool>(),
        affected in any::<u64>(),
        last_id in any::<u64>(),
        status in any::<u16>(),
        warnings in any::<u16>(),
        info in bytes(300),
        changes in prop::collection::vec(change(), 0..5),
    ) {
        let caps = Capabilities(caps);
        let mut ok = OkPacket {
            eof,
            affected_rows: affected,
            last_insert_id: last_id,
            status: ServerStatus(status),
            warnings,
            info: &info,
            session_state: changes.iter().map(borrow).collect(),
        };
        // What the capabilities cannot carry is absent after a round trip.
        if !caps.contains(Capabilities::PROTOCOL_41) {
            ok.warnings = 0;
            if !caps.contains(Capabilities::TRANSACTIONS) {
                ok.status = ServerStatus::default();
            }
        }
        if !caps.contains(Capabilities::SESSION_TRACK)
            || !ok.status.contains(ServerStatus::SESSION_STATE_CHANGED)
        {
            ok.session_state.clear();
        }
        let bytes = encoded(|o| ok.encode(o, caps));
        prop_assert_eq!(&OkPacket::parse(&bytes, caps).unwrap(), &ok);
        let expected_kind = if eof { ResponseKind::Eof } else { ResponseKind::Ok };
        if !eof || bytes.len() < 9 || caps.contains(Capabilities::DEPRECATE_EOF) {
            prop_assert_eq!(ResponseKind::of(&bytes, caps).unwrap(), expected_kind);
        }

        // Stripping keeps everything but the session state and its flag.
        let stripped = encoded(|o| ok.encode_without_session_state(o, caps));
        let back = OkPacket::parse(&stripped, caps).unwrap();
        let mut want = ok.clone();
        want.session_state.clear();
        if caps.contains(Capabilities::PROTOCOL_41) || caps.contains(Capabilities::TRANSACTIONS) {
            want.status = ServerStatus(want.status.0 & !ServerStatus::SESSION_STATE_CHANGED.0);
        }
        prop_assert_eq!(back, want);
    }

    #[test]
    fn err_round_trips(caps in any::<u32>(), code in any::<u16>(), state in any::<[u8; 5]>(), message in bytes(200)) {
        let caps = Capabilities(caps);
        let err = ErrPacket {
            code,
            sql_state: caps.contains(Capabilities::PROTOCOL_41).then_some(state),
            message: &message,
        };
        let bytes = encoded(|o| err.encode(o, caps));
        prop_assert_eq!(ErrPacket::parse(&bytes, caps).unwrap(), err);
        prop_assert_eq!(ResponseKind::of(&bytes, caps).unwrap(), ResponseKind::Err);
    }

    #[test]
    fn eof_round_trips(caps in any::<u32>(), warnings in any::<u16>(), status in any::<u16>()) {
        let caps = Capabilities(caps);
        let eof = if caps.contains(Capabilities::PROTOCOL_41) {
            EofPacket { warnings, status: ServerStatus(status) }
        } else {
            EofPacket::default()
        };
        let bytes = encoded(|o| eof.encode(o, caps));
        prop_assert_eq!(EofPacket::parse(&bytes, caps).unwrap(), eof);
        prop_assert_eq!(ResponseKind::of(&bytes, caps).unwrap(), ResponseKind::Eof);
    }

    #[test]
    fn arbitrary_bytes_never_panic(caps in any::<u32>(), bytes in bytes(100)) {
        let caps = Capabilities(caps);
        let _ = ResponseKind::of(&bytes, caps);
        let _ = OkPacket::parse(&bytes, caps);
        let _ = ErrPacket::parse(&bytes, caps);
        let _ = EofPacket::parse(&bytes, caps);
        let _ = SessionStateChange::parse_all(&bytes);
    }
}

/// MariaDB 10.11's OK for a multi-row INSERT to a client without CLIENT_SESSION_TRACK (PyMySQL),
/// captured from a real server: the info is length-encoded although the protocol documents
/// string<EOF>, and libmariadb rejects the packet ("malformed packet") without the length.
#[test]
fn ok_info_without_session_track_is_length_encoded_like_real_servers() {
    let captured = hex("00020001000000265265636f7264733a203220204475706c6963617465733a203020205761726e696e67733a2030");
    let caps = Capabilities::PROTOCOL_41 | Capabilities::TRANSACTIONS;
    let ok = OkPacket::parse(&captured, caps).unwrap();
    assert_eq!(ok.affected_rows, 2);
    assert_eq!(ok.info, b"Records: 2  Duplicates: 0  Warnings: 0");
    let mut out = Vec::new();
    ok.encode(&mut out, caps);
    assert_eq!(out, captured);
    let mut stripped = Vec::new();
    ok.encode_without_session_state(&mut stripped, caps);
    assert_eq!(stripped, captured);
    // The documented string<EOF> form still parses.
    let documented = [&captured[..7], b"Rows matched: 1"].concat();
    assert_eq!(
        OkPacket::parse(&documented, caps).unwrap().info,
        b"Rows matched: 1"
    );
}
