//! The backend against canned server bytes on a virtual clock.

use std::time::Duration;

use bytes::BufMut;

use super::*;
use crate::auth::caching_sha2::{self, FAST_AUTH_SUCCESS, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY};
use crate::auth::{native, Password, RsaKeyPair};
use crate::wire::{
    encode_packet, put_lenenc_int, ColumnDefinition41, ColumnFlags, ColumnType, EofPacket,
    ExecuteParams, LocalInfileRequest, Packet, Query, SessionStateChange, StmtExecute,
    StmtExecuteHeader,
};
use crate::wire::{
    ErrPacket, HandshakeResponse41, HandshakeV10, OkPacket, SslRequest, MAX_FRAME_PAYLOAD,
};
use crate::SeededRandom;

const SALT: [u8; 20] = *b"abcdefghijklmnopqrst";
const SALT2: [u8; 20] = *b"ABCDEFGHIJKLMNOPQRST";

fn server_caps(deprecate_eof: bool) -> Capabilities {
    let mut caps = Capabilities(0xFFFF_FFFF).without(
        Capabilities::SSL
            | Capabilities::COMPRESS
            | Capabilities::ZSTD_COMPRESSION_ALGORITHM
            | Capabilities::QUERY_ATTRIBUTES
            | Capabilities::OPTIONAL_RESULTSET_METADATA,
    );
    if !deprecate_eof {
        caps = caps.without(Capabilities::DEPRECATE_EOF);
    }
    caps
}

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = seq;
    encode_packet(&mut out, &mut seq, payload);
    out.to_vec()
}

fn greeting(caps: Capabilities, plugin: &str) -> Vec<u8> {
    let hello = HandshakeV10::new(
        b"10.11.6-MariaDB",
        42,
        &SALT,
        caps,
        45,
        ServerStatus::AUTOCOMMIT,
        plugin.as_bytes(),
    );
    let mut out = BytesMut::new();
    hello.encode(&mut out);
    frame(0, &out)
}

fn ok_payload(status: ServerStatus, affected: u64, caps: Capabilities) -> Vec<u8> {
    ok_with_state(status, affected, caps, vec![])
}

fn ok_with_state(
    status: ServerStatus,
    affected: u64,
    caps: Capabilities,
    state: Vec<SessionStateChange<'_>>,
) -> Vec<u8> {
    let status = if state.is_empty() {
        status
    } else {
        ServerStatus(status.0 | ServerStatus::SESSION_STATE_CHANGED.0)
    };
    let ok = OkPacket {
        affected_rows: affected,
        status,
        session_state: state,
        ..OkPacket::default()
    };
    let mut out = Vec::new();
    ok.encode(&mut out, caps);
    out
}

fn eof_ok(status: ServerStatus, caps: Capabilities) -> Vec<u8> {
    if caps.contains(Capabilities::DEPRECATE_EOF) {
        let ok = OkPacket {
            eof: true,
            status,
            ..OkPacket::default()
        };
        let mut out = Vec::new();
        ok.encode(&mut out, caps);
        out
    } else {
        let mut out = Vec::new();
        EofPacket {
            warnings: 0,
            status,
        }
        .encode(&mut out, caps);
        out
    }
}

fn err_payload(code: u16, msg: &str) -> Vec<u8> {
    let err = ErrPacket {
        code,
        sql_state: Some(*b"28000"),
        message: msg.as_bytes(),
    };
    let mut out = Vec::new();
    err.encode(&mut out, Capabilities::PROTOCOL_41);
    out
}

fn column(name: &str) -> Vec<u8> {
    let col = ColumnDefinition41 {
        catalog: b"def",
        schema: b"",
        table: b"",
        org_table: b"",
        name: name.as_bytes(),
        org_name: b"",
        collation: 63,
        column_length: 11,
        column_type: ColumnType::from_u8(3),
        flags: ColumnFlags(0),
        decimals: 0,
        default_value: None,
    };
    let mut out = Vec::new();
    col.encode(&mut out);
    out
}

fn count(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_lenenc_int(&mut out, n);
    out
}

fn text_row(cells: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cells {
        crate::wire::put_lenenc_bytes(&mut out, c);
    }
    out
}

fn plaintext(pw: &str) -> ClientSecret {
    ClientSecret::Plaintext(Password::new(pw))
}

fn new_backend(t0: Instant, secret: ClientSecret) -> Backend {
    let mut config = BackendConfig::new("app", secret);
    config.database = Some("shop".into());
    Backend::new(t0, config, Box::new(SeededRandom::new(7)))
}

/// Everything the backend wants to send, as packets (sequence ids kept).
fn sent_packets(b: &mut Backend) -> Vec<Packet> {
    let mut bytes = Vec::new();
    while let Some(t) = b.poll_transmit() {
        bytes.extend_from_slice(&t);
    }
    let mut dec = PacketDecoder::default();
    dec.set_check_sequence(false);
    dec.feed(&bytes);
    let mut out = Vec::new();
    while let Some(p) = dec.next_packet().expect("backend frames are valid") {
        out.push(p);
    }
    assert_eq!(dec.buffered_len(), 0, "partial frame sent");
    out
}

fn events(b: &mut Backend) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

/// A backend logged in with mysql_native_password; returns it and the negotiated capabilities.
fn connected(t0: Instant, deprecate_eof: bool) -> Backend {
    let mut b = new_backend(t0, plaintext("secret"));
    b.handle_input(
        t0,
        &greeting(server_caps(deprecate_eof), "mysql_native_password"),
    );
    sent_packets(&mut b);
    let caps = b.capabilities();
    b.handle_input(
        t0,
        &frame(2, &ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)),
    );
    assert!(matches!(events(&mut b)[..], [Event::Connected(_)]));
    assert!(b.is_idle());
    b
}

fn query(b: &mut Backend, t: Instant, sql: &str) {
    let cmd = Command::Query(Query {
        attributes: vec![],
        sql: sql.as_bytes(),
    });
    b.send_command(t, &cmd).expect("idle");
    let sent = sent_packets(b);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].seq, 0);
}

/// Feeds server packets numbered from `seq` and returns the events.
fn feed(b: &mut Backend, t: Instant, first_seq: u8, payloads: &[Vec<u8>]) -> Vec<Event> {
    for (i, p) in payloads.iter().enumerate() {
        b.handle_input(t, &frame(first_seq + i as u8, p));
    }
    events(b)
}

fn kinds(evs: &[Event]) -> Vec<PacketKind> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Response { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

fn summary(evs: &[Event]) -> &ResponseSummary {
    match evs.last() {
        Some(Event::ResponseComplete(s)) => s,
        other => panic!("expected ResponseComplete last, got {other:?}"),
    }
}

fn closed_error(evs: &[Event]) -> &BackendError {
    match evs.last() {
        Some(Event::Closed { error: Some(e) }) => e,
        other => panic!("expected Closed with an error, got {other:?}"),
    }
}

#[test]
fn native_login_mirrors_capabilities_and_reports_connected() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, plaintext("secret"));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    let sent = sent_packets(&mut b);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].seq, 1);
    let resp = HandshakeResponse41::parse(&sent[0].payload).unwrap();
    assert_eq!(resp.username, b"app");
    assert_eq!(resp.database, Some(&b"shop"[..]));
    assert_eq!(resp.auth_plugin_name, Some(&b"mysql_native_password"[..]));
    assert_eq!(resp.auth_response, native::scramble(b"secret", &SALT));
    for flag in [
        Capabilities::SESSION_TRACK,
        Capabilities::DEPRECATE_EOF,
        Capabilities::MULTI_RESULTS,
        Capabilities::CONNECT_WITH_DB,
        Capabilities::PLUGIN_AUTH,
    ] {
        assert!(resp.capabilities.contains(flag), "{flag:?} missing");
    }
    assert!(!resp.capabilities.contains(Capabilities::SSL));
    assert!(!resp.capabilities.contains(Capabilities::COMPRESS));

    let caps = b.capabilities();
    let ok = ok_with_state(
        ServerStatus::AUTOCOMMIT,
        0,
        caps,
        vec![SessionStateChange::Schema(b"shop")],
    );
    b.handle_input(t0, &frame(2, &ok));
    let evs = events(&mut b);
    let Event::Connected(info) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(info.connection_id, 42);
    assert_eq!(info.server_version, "10.11.6-MariaDB");
    assert_eq!(info.auth_plugin, AuthPlugin::MysqlNativePassword);
    assert!(info.status.contains(ServerStatus::AUTOCOMMIT));
    assert_eq!(info.session.schema.as_deref(), Some(&b"shop"[..]));
    assert!(!info.tls);
    assert_eq!(b.schema(), Some(&b"shop"[..]));
    assert_eq!(b.poll_timeout(), None, "connect deadline cleared");
}

#[test]
fn recovered_sha1_answers_like_the_password() {
    let t0 = Instant::now();
    let sha1 = Password::new("secret").sha1();
    let mut b = new_backend(t0, ClientSecret::Sha1(sha1));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    let resp = sent_packets(&mut b);
    let resp = HandshakeResponse41::parse(&resp[0].payload).unwrap();
    assert_eq!(resp.auth_response, native::scramble(b"secret", &SALT));
}

#[test]
fn wrong_password_surfaces_the_err_then_closes() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, plaintext("wrong"));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    sent_packets(&mut b);
    let err = err_payload(
        1045,
        "Access denied for user 'app'@'127.0.0.1' (using password: YES)",
    );
    b.handle_input(t0, &frame(2, &err));
    let evs = events(&mut b);
    assert_eq!(evs.len(), 2, "{evs:?}");
    match &evs[0] {
        Event::AuthFailed { error, payload } => {
            assert_eq!(error.code, 1045);
            assert_eq!(&error.sql_state, b"28000");
            assert_eq!(&payload[..], &err[..]);
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(closed_error(&evs), BackendError::AuthFailed(e) if e.code == 1045));
    // Sticky: nothing more happens.
    b.handle_input(
        t0,
        &frame(
            3,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    b.handle_timeout(t0 + Duration::from_secs(100));
    assert!(events(&mut b).is_empty());
    assert!(b.is_closed());
    assert_eq!(b.send_command(t0, &Command::Ping), Err(UsageError::Closed));
}

/// MariaDB at `max_connections` answers the TCP connection with an ERR instead of its greeting:
/// the same AuthFailed and Closed as a refused login, told apart by `greeted`.
#[test]
fn err_in_place_of_the_greeting_is_a_refusal_before_greeting() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, plaintext("secret"));
    assert!(!b.greeted());
    let mut err = vec![0xFF];
    err.extend_from_slice(&1040u16.to_le_bytes());
    err.extend_from_slice(b"Too many connections");
    b.handle_input(t0, &frame(0, &err));
    let evs = events(&mut b);
    assert!(
        matches!(&evs[0], Event::AuthFailed { error, payload } if error.code == 1040 && payload[..] == err[..]),
        "{evs:?}"
    );
    assert!(matches!(closed_error(&evs), BackendError::AuthFailed(e) if e.code == 1040));
    assert!(!b.greeted(), "an ERR is not a greeting");
    assert!(
        sent_packets(&mut b).is_empty(),
        "nothing of the login was sent"
    );

    // A real greeting sets it, and a later login ERR keeps it set.
    let mut b = new_backend(t0, plaintext("wrong"));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    assert!(b.greeted());
    sent_packets(&mut b);
    b.handle_input(t0, &frame(2, &err_payload(1045, "Access denied")));
    assert!(matches!(events(&mut b)[0], Event::AuthFailed { .. }));
    assert!(b.greeted());
}

#[test]
fn auth_switch_to_native_uses_the_new_salt() {
    let t0 = Instant::now();
    // With only SHA1(pw), the caching_sha2 default is answered with native; the server switches.
    let mut b = new_backend(t0, ClientSecret::Sha1(Password::new("pw").sha1()));
    b.handle_input(t0, &greeting(server_caps(true), "caching_sha2_password"));
    let first = sent_packets(&mut b);
    let resp = HandshakeResponse41::parse(&first[0].payload).unwrap();
    assert_eq!(resp.auth_plugin_name, Some(&b"mysql_native_password"[..]));

    let mut switch = Vec::new();
    let mut data = SALT2.to_vec();
    data.push(0);
    AuthSwitchRequest {
        plugin_name: b"mysql_native_password",
        data: &data,
    }
    .encode(&mut switch);
    b.handle_input(t0, &frame(2, &switch));
    let sent = sent_packets(&mut b);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].seq, 3);
    assert_eq!(&sent[0].payload[..], &native::scramble(b"pw", &SALT2)[..]);
    b.handle_input(
        t0,
        &frame(
            4,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    assert!(
        matches!(&events(&mut b)[..], [Event::Connected(i)] if i.auth_plugin == AuthPlugin::MysqlNativePassword)
    );
}

#[test]
fn caching_sha2_fast_path() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, plaintext("pw"));
    b.handle_input(t0, &greeting(server_caps(true), "caching_sha2_password"));
    let sent = sent_packets(&mut b);
    let resp = HandshakeResponse41::parse(&sent[0].payload).unwrap();
    assert_eq!(resp.auth_plugin_name, Some(&b"caching_sha2_password"[..]));
    assert_eq!(resp.auth_response, caching_sha2::scramble(b"pw", &SALT));
    b.handle_input(t0, &frame(2, &FAST_AUTH_SUCCESS));
    assert!(sent_packets(&mut b).is_empty());
    b.handle_input(
        t0,
        &frame(
            3,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    assert!(
        matches!(&events(&mut b)[..], [Event::Connected(i)] if i.auth_plugin == AuthPlugin::CachingSha2Password)
    );
}

#[test]
fn caching_sha2_full_auth_requests_the_key_and_encrypts() {
    let t0 = Instant::now();
    let keys = RsaKeyPair::from_pem(include_bytes!("../auth/testdata/rsa2048_pkcs8.pem")).unwrap();
    let mut b = new_backend(t0, plaintext("hunter2"));
    b.handle_input(t0, &greeting(server_caps(true), "caching_sha2_password"));
    sent_packets(&mut b);
    b.handle_input(t0, &frame(2, &PERFORM_FULL_AUTH));
    let sent = sent_packets(&mut b);
    assert_eq!(
        (sent[0].seq, &sent[0].payload[..]),
        (3, &REQUEST_PUBLIC_KEY[..])
    );
    let mut key = vec![0x01];
    key.extend_from_slice(keys.public_key_pem().as_bytes());
    b.handle_input(t0, &frame(4, &key));
    let sent = sent_packets(&mut b);
    assert_eq!(sent[0].seq, 5);
    let pw = keys
        .decrypt_password(&sent[0].payload, &SALT, &mut SeededRandom::new(1))
        .expect("decrypts under the server key");
    assert_eq!(pw.as_bytes(), b"hunter2");
    b.handle_input(
        t0,
        &frame(
            6,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    assert!(matches!(&events(&mut b)[..], [Event::Connected(_)]));
}

#[test]
fn caching_sha2_with_only_sha1_fails_clearly() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, ClientSecret::Sha1(Password::new("pw").sha1()));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    sent_packets(&mut b);
    let mut switch = Vec::new();
    AuthSwitchRequest {
        plugin_name: b"caching_sha2_password",
        data: &SALT2,
    }
    .encode(&mut switch);
    b.handle_input(t0, &frame(2, &switch));
    let evs = events(&mut b);
    let err = closed_error(&evs);
    assert!(
        matches!(err, BackendError::Unsupported(m) if m.contains("SHA1")),
        "{err}"
    );
    assert!(sent_packets(&mut b).is_empty());
}

#[test]
fn caching_sha2_with_only_sha256_does_fast_path_but_not_full_auth() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, ClientSecret::Sha256(Password::new("pw").sha256()));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    let sent = sent_packets(&mut b);
    let resp = HandshakeResponse41::parse(&sent[0].payload).unwrap();
    assert_eq!(resp.auth_plugin_name, Some(&b"caching_sha2_password"[..]));
    assert_eq!(resp.auth_response, caching_sha2::scramble(b"pw", &SALT));
    b.handle_input(t0, &frame(2, &PERFORM_FULL_AUTH));
    let evs = events(&mut b);
    assert!(
        matches!(closed_error(&evs), BackendError::Unsupported(m) if m.contains("full authentication"))
    );
}

#[test]
fn clear_password_needs_tls_unless_allowed() {
    let t0 = Instant::now();
    let mut switch = Vec::new();
    AuthSwitchRequest {
        plugin_name: b"mysql_clear_password",
        data: b"",
    }
    .encode(&mut switch);

    let mut b = new_backend(t0, plaintext("pw"));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    sent_packets(&mut b);
    b.handle_input(t0, &frame(2, &switch));
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::Unsupported(_)
    ));
    assert!(sent_packets(&mut b).is_empty(), "the password never leaves");

    let mut config = BackendConfig::new("app", plaintext("pw"));
    config.allow_cleartext_without_tls = true;
    let mut b = Backend::new(t0, config, Box::new(SeededRandom::new(1)));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    sent_packets(&mut b);
    b.handle_input(t0, &frame(2, &switch));
    let sent = sent_packets(&mut b);
    assert_eq!(&sent[0].payload[..], b"pw\0");
}

#[test]
fn connect_deadline_fires_on_the_virtual_clock() {
    let t0 = Instant::now();
    let mut b = new_backend(t0, plaintext("pw"));
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    b.handle_timeout(t0 + Duration::from_secs(9));
    assert!(events(&mut b).is_empty());
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    b.handle_timeout(t0 + Duration::from_secs(10));
    let evs = events(&mut b);
    assert!(matches!(closed_error(&evs), BackendError::Timeout { .. }));
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn command_timeout_is_a_read_timeout() {
    let t0 = Instant::now();
    let mut config = BackendConfig::new("app", plaintext("pw"));
    config.command_timeout = Some(Duration::from_secs(5));
    let mut b = Backend::new(t0, config, Box::new(SeededRandom::new(1)));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    b.handle_input(
        t0,
        &frame(
            2,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    events(&mut b);
    sent_packets(&mut b);
    assert_eq!(b.poll_timeout(), None, "no timer while idle");
    let t1 = t0 + Duration::from_secs(1);
    query(&mut b, t1, "SELECT SLEEP(10)");
    assert_eq!(b.poll_timeout(), Some(t1 + Duration::from_secs(5)));
    // A packet pushes the deadline back.
    let t2 = t1 + Duration::from_secs(4);
    feed(&mut b, t2, 1, &[count(1)]);
    assert_eq!(b.poll_timeout(), Some(t2 + Duration::from_secs(5)));
    b.handle_timeout(t2 + Duration::from_secs(5));
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::Timeout { .. }
    ));
}

#[test]
fn rows_and_a_local_infile_request_in_one_read_leave_no_command_deadline() {
    // The deadline is re-armed once per input for rows; a packet that hands the turn to the
    // client (here a LOCAL INFILE request after a first result) decides it, rows or not.
    let t0 = Instant::now();
    let mut config = BackendConfig::new("app", plaintext("pw"));
    config.command_timeout = Some(Duration::from_secs(5));
    let mut b = Backend::new(t0, config, Box::new(SeededRandom::new(1)));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    sent_packets(&mut b);
    let caps = b.capabilities();
    b.handle_input(
        t0,
        &frame(2, &ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)),
    );
    events(&mut b);
    query(
        &mut b,
        t0,
        "SELECT 1; LOAD DATA LOCAL INFILE 'f.csv' INTO TABLE t",
    );
    let more = ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::MORE_RESULTS_EXISTS.0);
    let mut req = Vec::new();
    LocalInfileRequest { filename: b"f.csv" }.encode(&mut req);
    let packets = [
        count(1),
        column("1"),
        text_row(&[b"1"]),
        eof_ok(more, caps),
        req,
    ];
    let mut input = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        input.extend_from_slice(&frame(1 + i as u8, p));
    }
    let t1 = t0 + Duration::from_secs(1);
    b.handle_input(t1, &input);
    let evs = events(&mut b);
    assert_eq!(kinds(&evs).last(), Some(&PacketKind::LocalInfileRequest));
    assert_eq!(
        b.poll_timeout(),
        None,
        "the client's turn: no command deadline"
    );
    // Rows alone in one read: the deadline counts from that read.
    b.send_local_infile_data(t1, b"1\n").unwrap();
    b.finish_local_infile(t1).unwrap();
    sent_packets(&mut b);
    let t2 = t1 + Duration::from_secs(1);
    b.handle_input(
        t2,
        &frame(8, &ok_payload(ServerStatus::AUTOCOMMIT, 1, caps)),
    );
    events(&mut b);
    query(&mut b, t2, "SELECT 1");
    let t3 = t2 + Duration::from_secs(3);
    let mut input = Vec::new();
    for (i, p) in [count(1), column("1"), text_row(&[b"1"])]
        .iter()
        .enumerate()
    {
        input.extend_from_slice(&frame(1 + i as u8, p));
    }
    b.handle_input(t3, &input);
    assert_eq!(b.poll_timeout(), Some(t3 + Duration::from_secs(5)));
}

#[test]
fn text_result_set_with_deprecate_eof_relays_payloads_untouched() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    query(&mut b, t0, "SELECT a, b FROM t");
    let packets = vec![
        count(2),
        column("a"),
        column("b"),
        text_row(&[b"1", b"x"]),
        // A row whose first cell is NULL (0xFB) and one starting with an empty string (0x00).
        vec![0xFB, 1, b'y'],
        vec![0x00, 1, b'z'],
        eof_ok(ServerStatus::AUTOCOMMIT, caps),
    ];
    let evs = feed(&mut b, t0, 1, &packets);
    use PacketKind::*;
    assert_eq!(
        kinds(&evs),
        [
            ResultSetHeader,
            ColumnDefinition,
            ColumnDefinition,
            Row,
            Row,
            Row,
            Eof
        ]
    );
    for (e, p) in evs.iter().zip(&packets) {
        let Event::Response { payload, .. } = e else {
            panic!()
        };
        assert_eq!(&payload[..], &p[..]);
    }
    let s = summary(&evs);
    assert_eq!((s.result_sets, s.rows), (1, 3));
    assert!(s.is_ok());
    assert!(b.is_idle());
}

#[test]
fn text_result_set_with_eofs() {
    let t0 = Instant::now();
    let mut b = connected(t0, false);
    let caps = b.capabilities();
    assert!(!caps.contains(Capabilities::DEPRECATE_EOF));
    query(&mut b, t0, "SELECT a");
    let evs = feed(
        &mut b,
        t0,
        1,
        &[
            count(1),
            column("a"),
            eof_ok(ServerStatus::AUTOCOMMIT, caps),
            text_row(&[b"1"]),
            eof_ok(
                ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::IN_TRANS.0),
                caps,
            ),
        ],
    );
    use PacketKind::*;
    assert_eq!(
        kinds(&evs),
        [ResultSetHeader, ColumnDefinition, Eof, Row, Eof]
    );
    assert_eq!(summary(&evs).rows, 1);
    assert!(b.in_transaction());
}

#[test]
fn multi_results_and_an_err_midway() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    let more = ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::MORE_RESULTS_EXISTS.0);
    query(&mut b, t0, "SELECT 1; INSERT ...; SELECT 2");
    let evs = feed(
        &mut b,
        t0,
        1,
        &[
            count(1),
            column("1"),
            text_row(&[b"1"]),
            eof_ok(more, caps),
            ok_payload(more, 3, caps),
            count(1),
            column("2"),
            text_row(&[b"2"]),
            eof_ok(ServerStatus::AUTOCOMMIT, caps),
        ],
    );
    let s = summary(&evs);
    assert_eq!((s.result_sets, s.rows, s.affected_rows), (2, 2, 3));
    assert!(!s.status.contains(ServerStatus::MORE_RESULTS_EXISTS));

    query(&mut b, t0, "SELECT 1; SELECT nope");
    let evs = feed(
        &mut b,
        t0,
        1,
        &[
            count(1),
            column("1"),
            text_row(&[b"1"]),
            eof_ok(more, caps),
            err_payload(1054, "Unknown column 'nope'"),
        ],
    );
    let s = summary(&evs);
    assert_eq!(s.error.as_ref().map(|e| e.code), Some(1054));
    assert_eq!(s.result_sets, 1);
    assert!(b.is_idle());
}

#[test]
fn local_infile_exchange() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    assert_eq!(
        b.send_local_infile_data(t0, b"x"),
        Err(UsageError::NoLocalInfileRequest)
    );
    query(&mut b, t0, "LOAD DATA LOCAL INFILE 'f.csv' INTO TABLE t");
    let mut req = Vec::new();
    LocalInfileRequest { filename: b"f.csv" }.encode(&mut req);
    let evs = feed(&mut b, t0, 1, &[req]);
    assert_eq!(kinds(&evs), [PacketKind::LocalInfileRequest]);
    b.send_local_infile_data(t0, b"1,a\n").unwrap();
    b.send_local_infile_data(t0, b"2,b\n").unwrap();
    b.finish_local_infile(t0).unwrap();
    let sent = sent_packets(&mut b);
    let got: Vec<(u8, &[u8])> = sent.iter().map(|p| (p.seq, &p.payload[..])).collect();
    assert_eq!(got, [(2, &b"1,a\n"[..]), (3, b"2,b\n"), (4, b"")]);
    let evs = feed(
        &mut b,
        t0,
        5,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 2, caps)],
    );
    assert_eq!(summary(&evs).affected_rows, 2);
}

#[test]
fn prepare_execute_cursor_fetch_close() {
    let t0 = Instant::now();
    let mut b = connected(t0, false);
    let caps = b.capabilities();
    b.send_command(
        t0,
        &Command::StmtPrepare {
            query: b"SELECT a FROM t WHERE b > ?",
        },
    )
    .unwrap();
    sent_packets(&mut b);
    let mut prep = Vec::new();
    crate::wire::PrepareOk {
        statement_id: 9,
        num_columns: 1,
        num_params: 1,
        warning_count: Some(0),
        metadata_follows: true,
    }
    .encode(caps, &mut prep);
    let eof = eof_ok(ServerStatus::AUTOCOMMIT, caps);
    let evs = feed(
        &mut b,
        t0,
        1,
        &[prep, column("?"), eof.clone(), column("a"), eof.clone()],
    );
    use PacketKind::*;
    assert_eq!(
        kinds(&evs),
        [PrepareOk, ParamDefinition, Eof, ColumnDefinition, Eof]
    );
    assert_eq!(summary(&evs).prepared.map(|p| p.statement_id), Some(9));
    assert_eq!(
        b.statement(9),
        Some(PreparedStatement {
            params: 1,
            columns: 1
        })
    );

    let exec = Command::StmtExecute(StmtExecute {
        header: StmtExecuteHeader {
            statement_id: 9,
            flags: StmtExecute::CURSOR_TYPE_READ_ONLY,
            iteration_count: 1,
        },
        params: ExecuteParams::Bound(vec![crate::wire::Param {
            ty: crate::wire::ValueType::new(ColumnType::from_u8(3), false),
            name: b"",
            value: crate::wire::Value::I32(1),
        }]),
    });
    b.send_command(t0, &exec).unwrap();
    sent_packets(&mut b);
    let cursor = ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::CURSOR_EXISTS.0);
    let evs = feed(
        &mut b,
        t0,
        1,
        &[count(1), column("a"), eof_ok(cursor, caps)],
    );
    assert_eq!(kinds(&evs), [ResultSetHeader, ColumnDefinition, Eof]);
    assert!(summary(&evs).status.contains(ServerStatus::CURSOR_EXISTS));

    b.send_command(
        t0,
        &Command::StmtFetch {
            statement_id: 9,
            num_rows: 2,
        },
    )
    .unwrap();
    sent_packets(&mut b);
    let row = vec![0x00, 0x00, 5, 0, 0, 0];
    let evs = feed(&mut b, t0, 1, &[row.clone(), row, eof_ok(cursor, caps)]);
    assert_eq!(kinds(&evs), [Row, Row, Eof]);
    assert_eq!(summary(&evs).rows, 2);
    b.send_command(
        t0,
        &Command::StmtFetch {
            statement_id: 9,
            num_rows: 2,
        },
    )
    .unwrap();
    sent_packets(&mut b);
    let last = ServerStatus(cursor.0 | ServerStatus::LAST_ROW_SENT.0);
    let evs = feed(&mut b, t0, 1, &[eof_ok(last, caps)]);
    assert!(summary(&evs).status.contains(ServerStatus::LAST_ROW_SENT));

    // No response to COM_STMT_CLOSE: idle at once, statement forgotten.
    b.send_command(t0, &Command::StmtClose { statement_id: 9 })
        .unwrap();
    assert!(b.is_idle());
    assert_eq!(b.statement(9), None);
    assert_eq!(sent_packets(&mut b).len(), 1);
}

#[test]
fn session_tracking_updates_schema_and_variables() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    query(&mut b, t0, "USE shop2; SET autocommit=0");
    let ok = ok_with_state(
        ServerStatus::default(),
        0,
        caps,
        vec![
            SessionStateChange::Schema(b"shop2"),
            SessionStateChange::SystemVariable {
                name: b"autocommit",
                value: b"OFF",
            },
            SessionStateChange::StateChange(true),
        ],
    );
    let evs = feed(&mut b, t0, 1, &[ok]);
    let s = summary(&evs);
    assert_eq!(s.session.schema.as_deref(), Some(&b"shop2"[..]));
    assert!(s.session.state_changed);
    assert_eq!(b.schema(), Some(&b"shop2"[..]));
    assert_eq!(
        b.system_variables().get(&b"autocommit"[..]).map(|v| &v[..]),
        Some(&b"OFF"[..])
    );
    assert!(!b.status().contains(ServerStatus::AUTOCOMMIT));

    // COM_INIT_DB changes the schema even without tracking.
    b.send_command(t0, &Command::InitDb { schema: b"other" })
        .unwrap();
    sent_packets(&mut b);
    feed(
        &mut b,
        t0,
        1,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
    );
    assert_eq!(b.schema(), Some(&b"other"[..]));
}

#[test]
fn statistics_field_list_reset_and_ping() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    b.send_command(t0, &Command::Statistics).unwrap();
    sent_packets(&mut b);
    let evs = feed(&mut b, t0, 1, &[b"Uptime: 5  Threads: 1".to_vec()]);
    assert_eq!(kinds(&evs), [PacketKind::Statistics]);
    summary(&evs);

    b.send_command(
        t0,
        &Command::FieldList {
            table: b"t",
            wildcard: b"",
        },
    )
    .unwrap();
    sent_packets(&mut b);
    let evs = feed(
        &mut b,
        t0,
        1,
        &[
            column("a"),
            column("b"),
            eof_ok(ServerStatus::AUTOCOMMIT, caps),
        ],
    );
    assert_eq!(
        kinds(&evs),
        [
            PacketKind::ColumnDefinition,
            PacketKind::ColumnDefinition,
            PacketKind::Eof
        ]
    );

    b.send_command(t0, &Command::ResetConnection).unwrap();
    sent_packets(&mut b);
    let evs = feed(
        &mut b,
        t0,
        1,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
    );
    assert!(summary(&evs).is_ok());
    assert_eq!(b.send_command(t0, &Command::Ping), Ok(()));
    assert_eq!(b.send_command(t0, &Command::Ping), Err(UsageError::Busy));
}

/// COM_SET_OPTION (PHP's mysqlnd sends it before `multi_query`), COM_DEBUG and COM_SHUTDOWN
/// succeed with an EOF, in either EOF format; before, that EOF closed the connection as an
/// unexpected packet.
#[test]
fn set_option_and_debug_end_with_an_eof() {
    let t0 = Instant::now();
    for deprecate_eof in [true, false] {
        let mut b = connected(t0, deprecate_eof);
        let caps = b.capabilities();
        for command in [
            Command::SetOption { option: 0 },
            Command::Debug,
            Command::Shutdown { level: None },
        ] {
            b.send_command(t0, &command).unwrap();
            sent_packets(&mut b);
            let status = ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::IN_TRANS.0);
            let evs = feed(&mut b, t0, 1, &[eof_ok(status, caps)]);
            assert_eq!(kinds(&evs), [PacketKind::Eof], "{command:?}");
            assert!(summary(&evs).is_ok());
            assert_eq!(summary(&evs).status, status);
            assert_eq!(b.send_command(t0, &Command::Ping), Ok(()));
            feed(
                &mut b,
                t0,
                1,
                &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
            );
        }
        // An ERR is still an ERR.
        b.send_command(t0, &Command::SetOption { option: 7 })
            .unwrap();
        sent_packets(&mut b);
        let evs = feed(&mut b, t0, 1, &[err_payload(1047, "Unknown command")]);
        assert_eq!(summary(&evs).error.as_ref().map(|e| e.code), Some(1047));
    }
}

#[test]
fn change_user_answers_its_own_auth_switch() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    b.change_user(t0, "bob", plaintext("bobpw"), Some("db2"))
        .unwrap();
    let sent = sent_packets(&mut b);
    let Ok(Command::ChangeUser(c)) = Command::parse(&sent[0].payload, caps, |_| None) else {
        panic!()
    };
    assert_eq!((c.user, c.database), (&b"bob"[..], &b"db2"[..]));
    assert_eq!(c.auth_response, native::scramble(b"bobpw", &SALT));
    let mut switch = Vec::new();
    AuthSwitchRequest {
        plugin_name: b"mysql_native_password",
        data: &SALT2,
    }
    .encode(&mut switch);
    let evs = feed(&mut b, t0, 1, &[switch]);
    assert!(evs.is_empty(), "auth packets stay inside: {evs:?}");
    let sent = sent_packets(&mut b);
    assert_eq!(
        (sent[0].seq, &sent[0].payload[..]),
        (2, &native::scramble(b"bobpw", &SALT2)[..])
    );
    let evs = feed(
        &mut b,
        t0,
        3,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
    );
    assert!(summary(&evs).is_ok());
    assert_eq!(b.user(), "bob");
    assert_eq!(b.schema(), Some(&b"db2"[..]));
}

#[test]
fn relayed_change_user_waits_for_the_owner() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let caps = b.capabilities();
    let cmd = Command::ChangeUser(ChangeUser {
        user: b"carol",
        auth_response: b"x",
        database: b"",
        collation: Some(45),
        auth_plugin: Some(b"mysql_native_password"),
        connect_attrs: None,
    });
    b.send_command(t0, &cmd).unwrap();
    sent_packets(&mut b);
    let mut switch = Vec::new();
    AuthSwitchRequest {
        plugin_name: b"mysql_native_password",
        data: &SALT2,
    }
    .encode(&mut switch);
    let evs = feed(&mut b, t0, 1, &[switch]);
    assert_eq!(kinds(&evs), [PacketKind::AuthSwitchRequest]);
    b.send_auth_data(t0, b"answer").unwrap();
    assert_eq!(sent_packets(&mut b)[0].seq, 2);
    let evs = feed(
        &mut b,
        t0,
        3,
        &[ok_payload(ServerStatus::AUTOCOMMIT, 0, caps)],
    );
    assert!(summary(&evs).is_ok());
    assert_eq!(b.user(), "carol");
}

#[test]
fn unexpected_and_garbage_packets_close_without_panicking() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    // In sequence (the login ended at 2), but no command is outstanding.
    b.handle_input(
        t0,
        &frame(
            3,
            &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
        ),
    );
    let evs = events(&mut b);
    assert!(matches!(
        closed_error(&evs),
        BackendError::UnexpectedPacket { .. }
    ));

    let mut b = connected(t0, true);
    query(&mut b, t0, "SELECT 1");
    // Truncated column definition.
    let evs = feed(&mut b, t0, 1, &[count(1), vec![3, b'd']]);
    assert!(matches!(closed_error(&evs), BackendError::Decode(_)));

    let mut b = connected(t0, true);
    query(&mut b, t0, "SELECT 1");
    b.handle_input(t0, &frame(5, &count(1)));
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::Decode(_)
    ));

    let mut b = new_backend(t0, plaintext("pw"));
    b.handle_input(t0, &frame(0, b"\x0agarbage"));
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::Decode(_)
    ));
}

#[test]
fn any_split_of_the_input_gives_the_same_events() {
    let t0 = Instant::now();
    let caps = {
        let b = connected(t0, true);
        b.capabilities()
    };
    let mut stream = Vec::new();
    let more = ServerStatus(ServerStatus::AUTOCOMMIT.0 | ServerStatus::MORE_RESULTS_EXISTS.0);
    for (i, p) in [
        count(1),
        column("a"),
        text_row(&[b"hello"]),
        eof_ok(more, caps),
        ok_payload(ServerStatus::AUTOCOMMIT, 1, caps),
    ]
    .iter()
    .enumerate()
    {
        stream.extend(frame(i as u8 + 1, p));
    }
    let run = |cuts: &[usize]| {
        let mut b = connected(t0, true);
        query(&mut b, t0, "SELECT a; DO 1");
        let mut last = 0;
        for &c in cuts.iter().chain([stream.len()].iter()) {
            b.handle_input(t0, &stream[last..c]);
            last = c;
        }
        events(&mut b)
    };
    let whole = run(&[]);
    assert!(matches!(whole.last(), Some(Event::ResponseComplete(_))));
    for i in 0..stream.len() {
        assert_eq!(run(&[i]), whole, "split at {i}");
        if i + 3 < stream.len() {
            assert_eq!(run(&[i, i + 3]), whole);
        }
    }
}

#[test]
fn large_raw_command_is_framed_in_continuation_frames() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    let mut payload = BytesMut::new();
    payload.put_u8(Command::COM_QUERY);
    payload.put_bytes(b'x', MAX_FRAME_PAYLOAD + 10);
    let payload = payload.freeze();
    b.send_raw_command(t0, payload.clone()).unwrap();
    let sent = sent_packets(&mut b);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, payload);
    assert_eq!(b.send_raw_command(t0, Bytes::new()), Err(UsageError::Busy));
}

#[test]
fn tls_upgrade_then_login_over_tls() {
    use crate::tls::{server_config, ServerTrust};
    let t0 = Instant::now();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let mut config = BackendConfig::new("app", plaintext("pw"));
    config.tls = Some(BackendTls {
        server_name: "localhost".into(),
        trust: ServerTrust::CaPem(cert_pem.clone().into_bytes()),
        required: true,
    });
    let mut b = Backend::new(t0, config, Box::new(SeededRandom::new(3)));
    let caps = server_caps(true) | Capabilities::SSL;
    b.handle_input(t0, &greeting(caps, "mysql_native_password"));

    // First bytes: the 32-byte SSLRequest in clear (seq 1), then the TLS ClientHello.
    let mut wire = Vec::new();
    while let Some(t) = b.poll_transmit() {
        wire.extend_from_slice(&t);
    }
    let mut seq = 1;
    let mut expect = BytesMut::new();
    let mut req = Vec::new();
    SslRequest::parse(&wire[4..36]).unwrap().encode(&mut req);
    encode_packet(&mut expect, &mut seq, &req);
    assert_eq!(&wire[..36], &expect[..]);
    assert!(SslRequest::parse(&wire[4..36])
        .unwrap()
        .capabilities
        .contains(Capabilities::SSL));

    let mut server =
        TlsSession::server(server_config(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap())
            .unwrap();
    let mut plain = BytesMut::new();
    let mut to_server = wire[36..].to_vec();
    for _ in 0..10 {
        server.read_ciphertext(&to_server, &mut plain).unwrap();
        let mut back = Vec::new();
        server.take_ciphertext(&mut back);
        b.handle_input(t0, &back);
        to_server.clear();
        while let Some(t) = b.poll_transmit() {
            to_server.extend_from_slice(&t);
        }
        if to_server.is_empty() && back.is_empty() {
            break;
        }
    }
    // The HandshakeResponse41 arrived encrypted, with seq 2.
    let mut dec = PacketDecoder::default();
    dec.set_sequence(2);
    dec.feed(&plain);
    let p = dec
        .next_packet()
        .unwrap()
        .expect("handshake response over TLS");
    let resp = HandshakeResponse41::parse(&p.payload).unwrap();
    assert_eq!(resp.auth_response, native::scramble(b"pw", &SALT));
    assert!(resp.capabilities.contains(Capabilities::SSL));

    let mut ok = BytesMut::new();
    let mut seq = 3;
    encode_packet(
        &mut ok,
        &mut seq,
        &ok_payload(ServerStatus::AUTOCOMMIT, 0, b.capabilities()),
    );
    server.write_plaintext(&ok).unwrap();
    let mut back = Vec::new();
    server.take_ciphertext(&mut back);
    b.handle_input(t0, &back);
    assert!(matches!(&events(&mut b)[..], [Event::Connected(i)] if i.tls));
    assert!(b.is_tls());
}

#[test]
fn tls_required_but_not_offered_fails() {
    let t0 = Instant::now();
    let mut config = BackendConfig::new("app", plaintext("pw"));
    config.tls = Some(BackendTls {
        server_name: "localhost".into(),
        trust: crate::tls::ServerTrust::InsecureTrustAll,
        required: true,
    });
    let mut b = Backend::new(t0, config, Box::new(SeededRandom::new(3)));
    b.handle_input(t0, &greeting(server_caps(true), "mysql_native_password"));
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::Unsupported(_)
    ));
    assert!(b.poll_transmit().is_none(), "nothing sent in clear");
}

#[test]
fn quit_then_eof_is_an_orderly_close() {
    let t0 = Instant::now();
    let mut b = connected(t0, true);
    b.send_command(t0, &Command::Quit).unwrap();
    assert_eq!(sent_packets(&mut b).len(), 1);
    b.handle_eof(t0);
    assert_eq!(events(&mut b), [Event::Closed { error: None }]);

    let mut b = connected(t0, true);
    b.handle_eof(t0);
    assert!(matches!(
        closed_error(&events(&mut b)),
        BackendError::PeerClosed
    ));
}

mod buffers;
mod fixed_auth;
