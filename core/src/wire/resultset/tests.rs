use super::*;
use crate::wire::value::tests::arb_value;
use proptest::prelude::*;

fn opt_meta() -> Capabilities {
    Capabilities::PROTOCOL_41 | Capabilities::OPTIONAL_RESULTSET_METADATA
}

fn bytes_of(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

/// `SELECT @@version_comment` column, as in the protocol docs.
const VERSION_COMMENT_COLUMN: &[u8] = b"\x03def\x00\x00\x00\x11@@version_comment\x00\x0c\x08\x00\x1c\x00\x00\x00\xfd\x00\x00\x1f\x00\x00";

#[test]
fn column_definition_by_hand() {
    let col = ColumnDefinition41::parse(VERSION_COMMENT_COLUMN).unwrap();
    assert_eq!(col.catalog, b"def");
    assert_eq!(col.name, b"@@version_comment");
    assert_eq!(col.schema, b"");
    assert_eq!(col.collation, 8);
    assert_eq!(col.column_length, 28);
    assert_eq!(col.column_type, ColumnType::VarString);
    assert_eq!(col.flags, ColumnFlags(0));
    assert_eq!(col.decimals, 0x1f);
    assert_eq!(col.default_value, None);
    assert_eq!(
        col.value_type(),
        ValueType::new(ColumnType::VarString, false)
    );
    assert_eq!(bytes_of(|o| col.encode(o)), VERSION_COMMENT_COLUMN);
}

#[test]
fn field_list_column_carries_its_default() {
    let mut with_default = VERSION_COMMENT_COLUMN.to_vec();
    with_default.extend_from_slice(b"\x01x");
    let col = ColumnDefinition41::parse(&with_default).unwrap();
    assert_eq!(col.default_value, Some(Some(&b"x"[..])));
    assert_eq!(bytes_of(|o| col.encode(o)), with_default);
    let mut null_default = VERSION_COMMENT_COLUMN.to_vec();
    null_default.push(0xFB);
    let col = ColumnDefinition41::parse(&null_default).unwrap();
    assert_eq!(col.default_value, Some(None));
    assert_eq!(bytes_of(|o| col.encode(o)), null_default);
}

#[test]
fn malformed_column_definitions() {
    // Every proper prefix is an error.
    for end in 0..VERSION_COMMENT_COLUMN.len() {
        assert!(ColumnDefinition41::parse(&VERSION_COMMENT_COLUMN[..end]).is_err());
    }
    // A fixed block shorter than 12 bytes.
    let short = b"\x03def\x00\x00\x00\x01a\x00\x0a\x08\x00\x1c\x00\x00\x00\xfd\x00\x00\x1f";
    assert!(ColumnDefinition41::parse(short).is_err());
    // Trailing garbage after the default value.
    let mut trailing = VERSION_COMMENT_COLUMN.to_vec();
    trailing.extend_from_slice(b"\x01xy");
    assert!(ColumnDefinition41::parse(&trailing).is_err());
}

#[test]
fn unsigned_flag_picks_the_binary_encoding() {
    let mut col = ColumnDefinition41::parse(VERSION_COMMENT_COLUMN).unwrap();
    col.column_type = ColumnType::LongLong;
    col.flags = ColumnFlags(ColumnFlags::UNSIGNED.0 | ColumnFlags::NOT_NULL.0);
    assert_eq!(col.value_type(), ValueType::new(ColumnType::LongLong, true));
    let row = b"\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff";
    let parsed = BinaryRow::parse_with_columns(row, &[col]).unwrap();
    assert_eq!(parsed.values, [Value::U64(u64::MAX)]);
}

#[test]
fn result_set_header() {
    let h = ResultSetHeader::parse(b"\x01", Capabilities::PROTOCOL_41).unwrap();
    assert_eq!(
        h,
        ResultSetHeader {
            column_count: 1,
            metadata_follows: true
        }
    );
    let h = ResultSetHeader::parse(b"\x02\x00", opt_meta()).unwrap();
    assert!(!h.metadata_follows);
    assert_eq!(bytes_of(|o| h.encode(opt_meta(), o)), b"\x02\x00");
    let big = ResultSetHeader::parse(b"\xfc\x00\x01", Capabilities::PROTOCOL_41).unwrap();
    assert_eq!(big.column_count, 256);
    for (bytes, caps) in [
        (&b""[..], Capabilities::PROTOCOL_41),
        (b"\x00", Capabilities::PROTOCOL_41), // that is an OK packet
        (b"\xfb", Capabilities::PROTOCOL_41), // a LOCAL INFILE request
        (b"\x01", opt_meta()),                // metadata byte missing
        (b"\x01\x02", opt_meta()),            // not a metadata value
        (b"\x01\x01", Capabilities::PROTOCOL_41), // trailing byte
        (b"\xfc\x00", Capabilities::PROTOCOL_41),
    ] {
        assert!(ResultSetHeader::parse(bytes, caps).is_err(), "{bytes:?}");
    }
    // MariaDB's cache-metadata form reads the same byte without the MySQL capability.
    let h = ResultSetHeader::parse_with_metadata_byte(b"\x03\x00", true).unwrap();
    assert_eq!((h.column_count, h.metadata_follows), (3, false));
}

#[test]
fn text_row_by_hand() {
    let payload = b"\x011\xfb\x03abc\x00";
    let cells = TextRow::parse(payload, 4).unwrap();
    assert_eq!(cells, [Some(&b"1"[..]), None, Some(b"abc"), Some(b"")]);
    assert_eq!(bytes_of(|o| TextRow::encode(&cells, o)), payload);
    let lazy: Vec<_> = TextRow::new(payload).collect::<Result<_, _>>().unwrap();
    assert_eq!(lazy, cells);
    // Too few cells, too many, a cell longer than the packet, an absurd count.
    assert!(TextRow::parse(payload, 5).is_err());
    assert!(TextRow::parse(payload, 3).is_err());
    assert!(TextRow::parse(b"\x05ab", 1).is_err());
    assert!(TextRow::parse(b"\x011", usize::MAX).is_err());
    // The lazy reader stops after an error.
    let mut row = TextRow::new(b"\x011\xff\x011");
    assert_eq!(row.next(), Some(Ok(Some(&b"1"[..]))));
    assert!(matches!(row.next(), Some(Err(_))));
    assert_eq!(row.next(), None);
}

#[test]
fn binary_row_from_the_docs() {
    // One VAR_STRING column "foobar".
    let payload = b"\x00\x00\x06foobar";
    let ty = [ValueType::new(ColumnType::VarString, false)];
    let row = BinaryRow::parse(payload, &ty).unwrap();
    assert_eq!(row.values, [Value::Bytes(b"foobar")]);
    assert_eq!(bytes_of(|o| row.encode(o)), payload);
    // Columns 1 and 3 NULL of three: bits 2 and 4 of the bitmap.
    let ty = [
        ValueType::new(ColumnType::Long, false),
        ValueType::new(ColumnType::Tiny, false),
        ValueType::new(ColumnType::Double, false),
    ];
    let payload = b"\x00\x14\x07";
    let row = BinaryRow::parse(payload, &ty).unwrap();
    assert_eq!(row.values, [Value::Null, Value::I8(7), Value::Null]);
    assert_eq!(bytes_of(|o| row.encode(o)), payload);
}

#[test]
fn malformed_binary_rows() {
    let ty = [ValueType::new(ColumnType::LongLong, false); 7];
    // Seven columns need a two-byte bitmap ((7 + 9) / 8).
    assert!(matches!(
        BinaryRow::parse(b"\x00\xfc", &ty),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
    assert!(BinaryRow::parse(b"\x00\xfc\x01", &ty).is_ok()); // all NULL
    assert!(BinaryRow::parse(b"\x01\x00", &ty[..1]).is_err()); // header
    assert!(BinaryRow::parse(b"", &ty[..1]).is_err());
    assert!(BinaryRow::parse(b"\x00\x00\x01\x02", &ty[..1]).is_err()); // value cut
    assert!(BinaryRow::parse(b"\x00\x04\x00", &ty[..1]).is_err()); // trailing
    let unknown = [ValueType::new(ColumnType::Unknown(0x30), false)];
    assert!(BinaryRow::parse(b"\x00\x00\x00", &unknown).is_err());
}

#[test]
fn prepare_ok_from_the_docs() {
    // Statement 1, one column, two parameters, no warnings.
    let payload = b"\x00\x01\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00";
    let ok = PrepareOk::parse(payload, Capabilities::PROTOCOL_41).unwrap();
    assert_eq!(
        ok,
        PrepareOk {
            statement_id: 1,
            num_columns: 1,
            num_params: 2,
            warning_count: Some(0),
            metadata_follows: true,
        }
    );
    assert_eq!(
        bytes_of(|o| ok.encode(Capabilities::PROTOCOL_41, o)),
        payload
    );
    // The short form without a warning count.
    let short = PrepareOk::parse(&payload[..10], Capabilities::PROTOCOL_41).unwrap();
    assert_eq!(short.warning_count, None);
    assert_eq!(
        bytes_of(|o| short.encode(Capabilities::PROTOCOL_41, o)),
        &payload[..10]
    );
    // Metadata skipped.
    let mut skip = payload.to_vec();
    skip.push(0);
    let ok = PrepareOk::parse(&skip, opt_meta()).unwrap();
    assert!(!ok.metadata_follows);
    assert_eq!(bytes_of(|o| ok.encode(opt_meta(), o)), skip);
    // Malformed: cut inside the fields or the warning count, wrong status, bad metadata byte.
    for end in [0, 1, 5, 9, 11] {
        assert!(PrepareOk::parse(&payload[..end], Capabilities::PROTOCOL_41).is_err());
    }
    let mut err = payload.to_vec();
    err[0] = 0xFF;
    assert!(PrepareOk::parse(&err, Capabilities::PROTOCOL_41).is_err());
    skip[12] = 7;
    assert!(PrepareOk::parse(&skip, opt_meta()).is_err());
}

#[test]
fn local_infile_request() {
    let payload = b"\xfb/etc/passwd";
    let req = LocalInfileRequest::parse(payload).unwrap();
    assert_eq!(req.filename, b"/etc/passwd");
    assert_eq!(bytes_of(|o| req.encode(o)), payload);
    assert!(LocalInfileRequest::parse(b"").is_err());
    assert!(LocalInfileRequest::parse(b"\x00x").is_err());
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn arb_bytes() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        prop::collection::vec(any::<u8>(), 250..300),
    ]
    .prop_map(leak)
}

fn arb_column() -> impl Strategy<Value = ColumnDefinition41<'static>> {
    (
        prop::collection::vec(arb_bytes(), 6),
        any::<(u16, u32, u8, u16, u8)>(),
        prop::option::of(prop::option::of(arb_bytes())),
    )
        .prop_map(
            |(names, (collation, column_length, ty, flags, decimals), default_value)| {
                ColumnDefinition41 {
                    catalog: names[0],
                    schema: names[1],
                    table: names[2],
                    org_table: names[3],
                    name: names[4],
                    org_name: names[5],
                    collation,
                    column_length,
                    column_type: ColumnType::from_u8(ty),
                    flags: ColumnFlags(flags),
                    decimals,
                    default_value,
                }
            },
        )
}

proptest! {
    #[test]
    fn column_definition_round_trips(col in arb_column()) {
        let bytes = bytes_of(|o| col.encode(o));
        prop_assert_eq!(ColumnDefinition41::parse(&bytes).unwrap(), col);
        for end in 0..bytes.len() {
            let _ = ColumnDefinition41::parse(&bytes[..end]);
        }
    }

    #[test]
    fn header_round_trips(column_count in 1u64.., meta in any::<bool>(), byte in any::<bool>()) {
        let h = ResultSetHeader { column_count, metadata_follows: meta || !byte };
        let bytes = bytes_of(|o| h.encode_with_metadata_byte(byte, o));
        prop_assert_eq!(ResultSetHeader::parse_with_metadata_byte(&bytes, byte).unwrap(), h);
    }

    #[test]
    fn text_row_round_trips(cells in prop::collection::vec(prop::option::of(arb_bytes()), 0..8)) {
        let bytes = bytes_of(|o| TextRow::encode(&cells, o));
        prop_assert_eq!(TextRow::parse(&bytes, cells.len()).unwrap(), cells.clone());
        for end in 0..bytes.len() {
            prop_assert!(TextRow::parse(&bytes[..end], cells.len()).is_err());
        }
    }

    #[test]
    fn binary_row_round_trips(values in prop::collection::vec(arb_value(), 0..12)) {
        let row = BinaryRow { values };
        let types: Vec<ValueType> = row.values.iter().map(|v| v.natural_type()).collect();
        let bytes = bytes_of(|o| row.encode(o));
        let back = BinaryRow::parse(&bytes, &types).unwrap();
        // Compare re-encoded bytes too: NaN floats are not equal to themselves.
        prop_assert_eq!(bytes_of(|o| back.encode(o)), bytes.clone());
        prop_assert_eq!(back.values.len(), row.values.len());
        for end in 0..bytes.len() {
            prop_assert!(BinaryRow::parse(&bytes[..end], &types).is_err());
        }
    }

    #[test]
    fn prepare_ok_round_trips(id in any::<u32>(), cols in any::<u16>(), params in any::<u16>(),
                              warnings in prop::option::of(any::<u16>()), meta in any::<bool>(),
                              opt in any::<bool>()) {
        let caps = if opt { opt_meta() } else { Capabilities::PROTOCOL_41 };
        let ok = PrepareOk {
            statement_id: id,
            num_columns: cols,
            num_params: params,
            warning_count: warnings,
            metadata_follows: meta || !opt || warnings.is_none(),
        };
        let bytes = bytes_of(|o| ok.encode(caps, o));
        prop_assert_eq!(PrepareOk::parse(&bytes, caps).unwrap(), ok);
    }

    #[test]
    fn local_infile_round_trips(name in arb_bytes()) {
        let req = LocalInfileRequest { filename: name };
        let bytes = bytes_of(|o| req.encode(o));
        prop_assert_eq!(LocalInfileRequest::parse(&bytes).unwrap(), req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64),
                                   n in 0usize..10, types in prop::collection::vec(any::<(u8, bool)>(), 0..10)) {
        let types: Vec<ValueType> =
            types.into_iter().map(|(t, u)| ValueType::new(ColumnType::from_u8(t), u)).collect();
        let _ = ColumnDefinition41::parse(&bytes);
        let _ = ResultSetHeader::parse(&bytes, opt_meta());
        let _ = TextRow::parse(&bytes, n);
        let _ = TextRow::new(&bytes).count();
        let _ = BinaryRow::parse(&bytes, &types);
        let _ = PrepareOk::parse(&bytes, opt_meta());
        let _ = LocalInfileRequest::parse(&bytes);
    }
}
