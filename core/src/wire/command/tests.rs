use super::*;
use crate::wire::value::tests::arb_value;
use crate::wire::{ColumnType, DateTime};
use proptest::prelude::*;

const NONE: fn(u32) -> Option<u16> = |_| None;

fn caps(flags: &[Capabilities]) -> Capabilities {
    flags
        .iter()
        .fold(Capabilities::PROTOCOL_41, |acc, f| acc | *f)
}

fn encode(cmd: &Command<'_>, caps: Capabilities) -> Vec<u8> {
    let mut out = Vec::new();
    cmd.encode(caps, &mut out);
    out
}

#[test]
fn com_query_from_the_docs() {
    let payload = b"\x03select USER()";
    let cmd = Command::parse(payload, caps(&[]), NONE).unwrap();
    assert_eq!(
        cmd,
        Command::Query(Query {
            attributes: vec![],
            sql: b"select USER()"
        })
    );
    assert_eq!(cmd.code(), 0x03);
    assert_eq!(encode(&cmd, caps(&[])), payload);
}

#[test]
fn com_query_with_attributes() {
    let qa = caps(&[Capabilities::QUERY_ATTRIBUTES]);
    // 1 attribute, 1 set, bitmap 00, bound 01, type STRING (fe 00) named "a", value "x".
    let payload = b"\x03\x01\x01\x00\x01\xfe\x00\x01a\x01xselect 1";
    let cmd = Command::parse(payload, qa, NONE).unwrap();
    let Command::Query(q) = &cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(q.sql, b"select 1");
    assert_eq!(
        q.attributes,
        [Param {
            ty: ValueType::new(ColumnType::String, false),
            name: b"a",
            value: Value::Bytes(b"x"),
        }]
    );
    assert_eq!(encode(&cmd, qa), payload);
    // No attributes: just the two counts.
    let cmd = Command::parse(b"\x03\x00\x01select 1", qa, NONE).unwrap();
    assert_eq!(
        cmd,
        Command::parse(b"\x03select 1", caps(&[]), NONE).unwrap()
    );
    // The same bytes without the capability are plain SQL.
    let Command::Query(q) = Command::parse(payload, caps(&[]), NONE).unwrap() else {
        panic!()
    };
    assert_eq!(q.sql, &payload[1..]);
    // Attributes that reuse an earlier binding cannot exist.
    assert!(Command::parse(b"\x03\x01\x01\x00\x00select", qa, NONE).is_err());
}

#[test]
fn stmt_execute_from_the_docs() {
    // Statement 1, no cursor, one VARCHAR parameter "foo".
    let payload = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x0f\x00\x03foo";
    let cmd = Command::parse(payload, caps(&[]), |id| (id == 1).then_some(1)).unwrap();
    let expected = Command::StmtExecute(StmtExecute {
        header: StmtExecuteHeader {
            statement_id: 1,
            flags: 0,
            iteration_count: 1,
        },
        params: ExecuteParams::Bound(vec![Param {
            ty: ValueType::new(ColumnType::VarChar, false),
            name: b"",
            value: Value::Bytes(b"foo"),
        }]),
    });
    assert_eq!(cmd, expected);
    assert_eq!(encode(&cmd, caps(&[])), payload);
    // Unknown statement: not parseable, but routable.
    assert!(Command::parse(payload, caps(&[]), NONE).is_err());
    assert_eq!(
        StmtExecuteHeader::peek(payload).unwrap(),
        StmtExecuteHeader {
            statement_id: 1,
            flags: 0,
            iteration_count: 1
        }
    );
    assert!(StmtExecuteHeader::peek(b"\x03\x01\x00\x00\x00\x00\x01\x00\x00\x00").is_err());
    assert!(StmtExecuteHeader::peek(b"\x17\x01\x00").is_err());
}

#[test]
fn stmt_execute_with_parameter_count_in_packet() {
    let qa = caps(&[Capabilities::QUERY_ATTRIBUTES]);
    // flags 0x08: count follows (2); NULL first param; types LONGLONG unsigned named "", and
    // TINY named "t"; one value.
    let payload =
        b"\x17\x07\x00\x00\x00\x08\x01\x00\x00\x00\x02\x01\x01\x08\x80\x00\x01\x00\x01t\x05";
    let cmd = Command::parse(payload, qa, NONE).unwrap();
    let Command::StmtExecute(e) = &cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(e.header.statement_id, 7);
    assert_eq!(
        e.params,
        ExecuteParams::Bound(vec![
            Param {
                ty: ValueType::new(ColumnType::LongLong, true),
                name: b"",
                value: Value::Null
            },
            Param {
                ty: ValueType::new(ColumnType::Tiny, false),
                name: b"t",
                value: Value::I8(5)
            },
        ])
    );
    assert_eq!(encode(&cmd, qa), payload);
}

#[test]
fn stmt_execute_reusing_earlier_types() {
    // Two params, second NULL, new_params_bound = 0, first is an INT 42.
    let payload = b"\x17\x02\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x2a\x00\x00\x00";
    let cmd = Command::parse(payload, caps(&[]), |_| Some(2)).unwrap();
    let Command::StmtExecute(e) = &cmd else {
        panic!()
    };
    assert_eq!(e.params.len(), 2);
    let int = ValueType::new(ColumnType::Long, false);
    assert_eq!(
        e.params.values_with_types(&[int, int]).unwrap(),
        [Value::I32(42), Value::Null]
    );
    assert!(e.params.values_with_types(&[int]).is_err());
    let big = ValueType::new(ColumnType::LongLong, false);
    assert!(e.params.values_with_types(&[big, int]).is_err());
    assert_eq!(encode(&cmd, caps(&[])), payload);
}

#[test]
fn utility_commands_by_hand() {
    let c = caps(&[]);
    let cases: Vec<(&[u8], Command<'_>)> = vec![
        (b"\x01", Command::Quit),
        (b"\x02test", Command::InitDb { schema: b"test" }),
        (
            b"\x04t1\x00a%",
            Command::FieldList {
                table: b"t1",
                wildcard: b"a%",
            },
        ),
        (b"\x07\x04", Command::Refresh { flags: 4 }),
        (b"\x08", Command::Shutdown { level: None }),
        (b"\x08\x00", Command::Shutdown { level: Some(0) }),
        (b"\x09", Command::Statistics),
        (b"\x0a", Command::ProcessInfo),
        (
            b"\x0c\x05\x00\x00\x00",
            Command::ProcessKill { connection_id: 5 },
        ),
        (b"\x0d", Command::Debug),
        (b"\x0e", Command::Ping),
        (b"\x16select ?", Command::StmtPrepare { query: b"select ?" }),
        (
            b"\x18\x01\x00\x00\x00\x02\x00abc",
            Command::StmtSendLongData {
                statement_id: 1,
                param_id: 2,
                data: b"abc",
            },
        ),
        (
            b"\x19\x01\x00\x00\x00",
            Command::StmtClose { statement_id: 1 },
        ),
        (
            b"\x1a\x01\x00\x00\x00",
            Command::StmtReset { statement_id: 1 },
        ),
        (b"\x1b\x01\x00", Command::SetOption { option: 1 }),
        (
            b"\x1c\x01\x00\x00\x00\x0a\x00\x00\x00",
            Command::StmtFetch {
                statement_id: 1,
                num_rows: 10,
            },
        ),
        (b"\x1f", Command::ResetConnection),
    ];
    for (bytes, cmd) in cases {
        assert_eq!(Command::parse(bytes, c, NONE).unwrap(), cmd, "{bytes:?}");
        assert_eq!(encode(&cmd, c), bytes);
        assert_eq!(cmd.code(), bytes[0]);
    }
}

#[test]
fn commands_clients_must_not_send_are_unknown() {
    for code in [0x00u8, 0x05, 0x06, 0x0b, 0x0f, 0x12, 0x1d, 0x20, 0xfa, 0xff] {
        let payload = [code, 1, 2];
        let cmd = Command::parse(&payload, caps(&[]), NONE).unwrap();
        assert_eq!(
            cmd,
            Command::Unknown {
                code,
                body: &[1, 2]
            }
        );
        assert_eq!(cmd.code(), code);
        assert_eq!(encode(&cmd, caps(&[])), payload);
    }
    assert!(matches!(
        Command::parse(&[], caps(&[]), NONE),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
}

#[test]
fn change_user_by_hand() {
    let c = caps(&[
        Capabilities::SECURE_CONNECTION,
        Capabilities::PLUGIN_AUTH,
        Capabilities::CONNECT_ATTRS,
    ]);
    let payload =
        b"\x11bob\x00\x03abcdb\x00\x21\x00mysql_native_password\x00\x07\x01k\x01v\x01x\x00";
    let cmd = Command::parse(payload, c, NONE).unwrap();
    assert_eq!(
        cmd,
        Command::ChangeUser(ChangeUser {
            user: b"bob",
            auth_response: b"abc",
            database: b"db",
            collation: Some(33),
            auth_plugin: Some(b"mysql_native_password"),
            connect_attrs: Some(vec![(b"k", b"v"), (b"x", b"")]),
        })
    );
    assert_eq!(encode(&cmd, c), payload);
    // An old client: NUL-terminated password, schema, end.
    let old = b"\x11bob\x00pw\x00db\x00";
    let Command::ChangeUser(cu) = Command::parse(old, caps(&[]), NONE).unwrap() else {
        panic!()
    };
    assert_eq!(
        (cu.auth_response, cu.database, cu.collation),
        (&b"pw"[..], &b"db"[..], None)
    );
    // Auth data longer than the packet.
    assert!(Command::parse(b"\x11bob\x00\x09ab", c, NONE).is_err());
    // Attribute block longer than its contents.
    assert!(Command::parse(b"\x11u\x00\x00\x00\x21\x00p\x00\x05\x01k", c, NONE).is_err());
}

/// What MariaDB 10.11 answers with ERR 1047 "Unknown command" (measured on a raw socket; the
/// integration test `proxy_malformed` compares ferry with the server) fails to parse; what it
/// reads (it answers those with an auth switch) parses the same way.
#[test]
fn change_user_is_read_as_the_server_reads_it() {
    let secure = caps(&[Capabilities::SECURE_CONNECTION]);
    let plugin = caps(&[Capabilities::SECURE_CONNECTION, Capabilities::PLUGIN_AUTH]);
    let attrs = caps(&[
        Capabilities::SECURE_CONNECTION,
        Capabilities::PLUGIN_AUTH,
        Capabilities::CONNECT_ATTRS,
    ]);
    fn parse(payload: &[u8], c: Capabilities) -> Option<ChangeUser<'_>> {
        match Command::parse(payload, c, NONE) {
            Ok(Command::ChangeUser(cu)) => Some(cu),
            Ok(other) => panic!("{other:?}"),
            Err(_) => None,
        }
    }
    for c in [secure, plugin, attrs] {
        for refused in [
            &b"\x11"[..],          // no user at all
            b"\x11app",            // user without its NUL
            b"\x11app\x00",        // nothing after the user
            b"\x11app\x00\x14abc", // auth data past the end
            b"\x11app\x00\x00",    // nothing after the auth data: no schema
            b"\x11app\x00\x02ab",  // the same with auth data
        ] {
            assert_eq!(parse(refused, c), None, "{refused:?} under {c:?}");
        }
    }
    // Without CLIENT_PLUGIN_AUTH a schema without its NUL ends the packet; with it, the plugin
    // name is missing.
    let cu = parse(b"\x11app\x00\x00mydb", secure).unwrap();
    assert_eq!((cu.database, cu.collation), (&b"mydb"[..], None));
    assert_eq!(parse(b"\x11app\x00\x00mydb", plugin), None);
    // Collation and plugin: both required under CLIENT_PLUGIN_AUTH...
    assert_eq!(parse(b"\x11app\x00\x00\x00", plugin), None);
    assert_eq!(parse(b"\x11app\x00\x00\x00\x2d\x00", plugin), None);
    // ...but one byte after the schema is no collation: it is the plugin name.
    let cu = parse(b"\x11app\x00\x00\x00-", plugin).unwrap();
    assert_eq!((cu.collation, cu.auth_plugin), (None, Some(&b"-"[..])));
    let cu = parse(b"\x11app\x00\x00\x00\x00", plugin).unwrap();
    assert_eq!((cu.collation, cu.auth_plugin), (None, Some(&b""[..])));
    let cu = parse(b"\x11app\x00\x00\x00\x2d\x00x", plugin).unwrap();
    assert_eq!((cu.collation, cu.auth_plugin), (Some(45), Some(&b"x"[..])));
    // Under CLIENT_CONNECT_ATTRS the block must be there and fit; its contents are not checked.
    let full = b"\x11app\x00\x00\x00\x2d\x00mysql_native_password\x00";
    assert_eq!(parse(full, attrs), None);
    assert_eq!(parse(&[&full[..], b"\x05ab"].concat(), attrs), None);
    assert_eq!(parse(&[&full[..], b"\xfb"].concat(), attrs), None);
    let garbage = [&full[..], b"\x02\x05a"].concat();
    assert_eq!(parse(&garbage, attrs).unwrap().connect_attrs, Some(vec![]));
    let half = [&full[..], b"\x05\x01k\x01v\x09"].concat();
    let pairs = parse(&half, attrs).unwrap().connect_attrs;
    assert_eq!(pairs, Some(vec![(&b"k"[..], &b"v"[..])]));
    let mut big = full.to_vec();
    big.extend_from_slice(b"\xfd\x00\x00\x01");
    big.extend_from_slice(&[0; 0x1_0000]);
    assert_eq!(parse(&big, attrs), None, "over the server's 64 KiB limit");
}

#[test]
fn change_user_encodes_what_the_server_requires() {
    let attrs = caps(&[
        Capabilities::SECURE_CONNECTION,
        Capabilities::PLUGIN_AUTH,
        Capabilities::CONNECT_ATTRS,
    ]);
    let mut cu = ChangeUser {
        user: b"app",
        auth_response: b"",
        database: b"",
        collation: Some(45),
        auth_plugin: None,
        connect_attrs: None,
    };
    // An absent plugin name and attribute block go out empty.
    let bytes = encode(&Command::ChangeUser(cu.clone()), attrs);
    assert_eq!(bytes, b"\x11app\x00\x00\x00\x2d\x00\x00\x00");
    assert!(Command::parse(&bytes, attrs, NONE).is_ok());
    // Without a collation, one byte: the plugin name's first.
    cu.collation = None;
    cu.auth_plugin = Some(b"-");
    let plugin = caps(&[Capabilities::SECURE_CONNECTION, Capabilities::PLUGIN_AUTH]);
    let bytes = encode(&Command::ChangeUser(cu.clone()), plugin);
    assert_eq!(bytes, b"\x11app\x00\x00\x00-");
    assert_eq!(
        Command::parse(&bytes, plugin, NONE),
        Ok(Command::ChangeUser(cu))
    );
}

#[test]
fn malformed_execute_and_query() {
    let qa = caps(&[Capabilities::QUERY_ATTRIBUTES]);
    // Absurd attribute count: the null bitmap it implies is not there.
    let mut absurd = vec![0x03, 0xFE];
    absurd.extend_from_slice(&u64::MAX.to_le_bytes());
    absurd.extend_from_slice(b"\x01select");
    assert!(Command::parse(&absurd, qa, NONE).is_err());
    let mut absurd = b"\x17\x01\x00\x00\x00\x08\x01\x00\x00\x00\xfe".to_vec();
    absurd.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(Command::parse(&absurd, qa, NONE).is_err());
    // Null bitmap too short for 20 parameters.
    let short = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00";
    assert!(matches!(
        Command::parse(short, caps(&[]), |_| Some(20)),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
    // Bound flag 2.
    let bad_flag = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x02";
    assert!(Command::parse(bad_flag, caps(&[]), |_| Some(1)).is_err());
    // Types promised, values missing.
    let no_value = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\x01";
    assert!(Command::parse(no_value, caps(&[]), |_| Some(1)).is_err());
    // A parameter of a type with no binary form.
    let unknown_type = b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x42\x00\x01";
    assert!(Command::parse(unknown_type, caps(&[]), |_| Some(1)).is_err());
    // Fixed-size commands cut short.
    for p in [
        &b"\x0c\x01"[..],
        b"\x19",
        b"\x1b\x01",
        b"\x1c\x01\x00\x00\x00\x01",
        b"\x04t1",
    ] {
        assert!(Command::parse(p, caps(&[]), NONE).is_err(), "{p:?}");
    }
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn arb_bytes(max: usize) -> impl Strategy<Value = &'static [u8]> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(leak)
}

/// Bytes without NUL, for NUL-terminated strings.
fn arb_cstr() -> impl Strategy<Value = &'static [u8]> {
    prop::collection::vec(1u8..=255, 0..12).prop_map(leak)
}

fn arb_caps() -> impl Strategy<Value = Capabilities> {
    prop::collection::vec(any::<bool>(), 4).prop_map(|b| {
        let all = [
            Capabilities::QUERY_ATTRIBUTES,
            Capabilities::SECURE_CONNECTION,
            Capabilities::PLUGIN_AUTH,
            Capabilities::CONNECT_ATTRS,
        ];
        let on: Vec<_> = all
            .iter()
            .zip(b)
            .filter(|(_, b)| *b)
            .map(|(c, _)| *c)
            .collect();
        caps(&on)
    })
}

/// Values that compare equal to themselves (no NaN).
fn arb_eq_value() -> impl Strategy<Value = Value<'static>> {
    arb_value().prop_filter("NaN is not equal to itself", |v| {
        !matches!(v, Value::Float(f) if f.is_nan()) && !matches!(v, Value::Double(f) if f.is_nan())
    })
}

fn arb_params(names: bool) -> impl Strategy<Value = Vec<Param<'static>>> {
    let param = (arb_eq_value(), arb_bytes(6), any::<u8>(), any::<bool>()).prop_map(
        move |(value, name, null_ty, null_unsigned)| Param {
            // A NULL may carry any type: only the bitmap says it is NULL.
            ty: if value.is_null() {
                ValueType::new(ColumnType::from_u8(null_ty), null_unsigned)
            } else {
                value.natural_type()
            },
            name: if names { name } else { b"" },
            value,
        },
    );
    prop::collection::vec(param, 0..6)
}

fn arb_change_user(c: Capabilities) -> impl Strategy<Value = ChangeUser<'static>> {
    let auth = if c.contains(Capabilities::SECURE_CONNECTION) {
        arb_bytes(40).boxed()
    } else {
        arb_cstr().boxed()
    };
    let attrs = prop::collection::vec((arb_bytes(8), arb_bytes(8)), 0..4);
    let plugin_auth = c.contains(Capabilities::PLUGIN_AUTH);
    let connect_attrs = c.contains(Capabilities::CONNECT_ATTRS);
    (
        arb_cstr(),
        auth,
        arb_cstr(),
        prop::option::of(any::<u16>()),
        arb_cstr(),
        attrs,
    )
        .prop_map(
            move |(user, auth_response, database, collation, plugin, attrs)| {
                // The server requires the plugin name and the attribute block when their flags
                // are on, and without a collation only one byte may follow the schema.
                let collation = if plugin_auth || connect_attrs {
                    Some(collation.unwrap_or(45))
                } else {
                    collation
                };
                ChangeUser {
                    user,
                    auth_response,
                    database,
                    collation,
                    auth_plugin: plugin_auth.then_some(plugin),
                    connect_attrs: connect_attrs.then_some(attrs),
                }
            },
        )
}

fn arb_execute(c: Capabilities) -> impl Strategy<Value = StmtExecute<'static>> {
    let qa = c.contains(Capabilities::QUERY_ATTRIBUTES);
    let unbound = (1usize..20, arb_bytes(20)).prop_flat_map(|(count, values)| {
        prop::collection::vec(any::<u8>(), count.div_ceil(8)).prop_map(move |bm| {
            ExecuteParams::Unbound {
                count,
                null_bitmap: leak(bm),
                values,
            }
        })
    });
    let params = prop_oneof![arb_params(qa).prop_map(ExecuteParams::Bound), unbound];
    (any::<u32>(), any::<u8>(), any::<u32>(), params).prop_map(
        |(statement_id, flags, iteration_count, params)| StmtExecute {
            header: StmtExecuteHeader {
                statement_id,
                flags,
                iteration_count,
            },
            params,
        },
    )
}

fn arb_command(c: Capabilities) -> BoxedStrategy<Command<'static>> {
    let qa = c.contains(Capabilities::QUERY_ATTRIBUTES);
    prop_oneof![
        Just(Command::Quit),
        arb_bytes(20).prop_map(|schema| Command::InitDb { schema }),
        (arb_params(true), arb_bytes(30)).prop_map(move |(attributes, sql)| {
            Command::Query(Query {
                attributes: if qa { attributes } else { vec![] },
                sql,
            })
        }),
        (arb_cstr(), arb_bytes(10))
            .prop_map(|(table, wildcard)| Command::FieldList { table, wildcard }),
        Just(Command::Statistics),
        any::<u8>().prop_map(|flags| Command::Refresh { flags }),
        any::<Option<u8>>().prop_map(|level| Command::Shutdown { level }),
        Just(Command::ProcessInfo),
        any::<u32>().prop_map(|connection_id| Command::ProcessKill { connection_id }),
        Just(Command::Debug),
        Just(Command::Ping),
        arb_change_user(c).prop_map(Command::ChangeUser),
        arb_bytes(30).prop_map(|query| Command::StmtPrepare { query }),
        arb_execute(c).prop_map(Command::StmtExecute),
        (any::<u32>(), any::<u16>(), arb_bytes(30)).prop_map(|(statement_id, param_id, data)| {
            Command::StmtSendLongData {
                statement_id,
                param_id,
                data,
            }
        }),
        any::<u32>().prop_map(|statement_id| Command::StmtClose { statement_id }),
        any::<u32>().prop_map(|statement_id| Command::StmtReset { statement_id }),
        any::<u16>().prop_map(|option| Command::SetOption { option }),
        (any::<u32>(), any::<u32>()).prop_map(|(statement_id, num_rows)| Command::StmtFetch {
            statement_id,
            num_rows
        }),
        Just(Command::ResetConnection),
        (
            prop::sample::select(vec![0x00u8, 0x05, 0x0b, 0x12, 0x20, 0x7f, 0xff]),
            arb_bytes(10)
        )
            .prop_map(|(code, body)| Command::Unknown { code, body }),
    ]
    .boxed()
}

fn param_count_of(cmd: &Command<'_>) -> Option<u16> {
    match cmd {
        Command::StmtExecute(e) => u16::try_from(e.params.len()).ok(),
        _ => None,
    }
}

proptest! {
    #[test]
    fn command_round_trips((c, cmd) in arb_caps().prop_flat_map(|c| (Just(c), arb_command(c)))) {
        let bytes = encode(&cmd, c);
        let count = param_count_of(&cmd);
        let back = Command::parse(&bytes, c, |_| count).unwrap();
        prop_assert_eq!(&back, &cmd);
        prop_assert_eq!(&encode(&back, c), &bytes);
        if let Command::StmtExecute(e) = &cmd {
            prop_assert_eq!(StmtExecuteHeader::peek(&bytes).unwrap(), e.header);
        }
    }

    #[test]
    fn truncated_commands_never_panic((c, cmd) in arb_caps().prop_flat_map(|c| (Just(c), arb_command(c)))) {
        let bytes = encode(&cmd, c);
        let count = param_count_of(&cmd);
        for end in 0..bytes.len() {
            let _ = Command::parse(&bytes[..end], c, |_| count);
            let _ = StmtExecuteHeader::peek(&bytes[..end]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64),
                                   c in arb_caps(), count in any::<u16>()) {
        let _ = Command::parse(&bytes, c, |_| Some(count));
        let mut with_code = bytes.clone();
        if let Some(first) = with_code.first_mut() {
            *first %= 0x20;
        }
        let _ = Command::parse(&with_code, c, |_| Some(count));
    }
}

#[test]
fn datetime_parameter_round_trips() {
    let d = DateTime {
        year: 2024,
        month: 2,
        day: 29,
        ..DateTime::default()
    };
    let cmd = Command::StmtExecute(StmtExecute {
        header: StmtExecuteHeader {
            statement_id: 3,
            flags: 0,
            iteration_count: 1,
        },
        params: ExecuteParams::Bound(vec![Param {
            ty: ValueType::new(ColumnType::Date, false),
            name: b"",
            value: Value::DateTime(d),
        }]),
    });
    let bytes = encode(&cmd, caps(&[]));
    assert_eq!(&bytes[10..], b"\x00\x01\x0a\x00\x04\xe8\x07\x02\x1d");
    assert_eq!(Command::parse(&bytes, caps(&[]), |_| Some(1)).unwrap(), cmd);
}
