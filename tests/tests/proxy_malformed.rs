//! Malformed client packets, sent as raw bytes on a logged-in connection straight to a MariaDB
//! and through ferry (every driver; both auth modes where the answer depends on them): the
//! client must get the same bytes (except where a comment says which field must differ and
//! why), the connection must close in both cases or in neither, and when MariaDB's connection
//! still answers `SELECT 1` afterwards, ferry's must too, with the same bytes.

mod proxy_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferry_core::auth::{auth_salt, native};
use ferry_core::wire::{AuthSwitchRequest, Capabilities, HandshakeResponse41, HandshakeV10};
use ferry_tests::{driver_tests, Driver, FerryProcess, MariaDb};
use proxy_common::{backend, PASSWORD, USER};

driver_tests!(
    an_empty_packet,
    short_and_unknown_stmt_close,
    a_closed_statement_is_unknown,
    a_short_stmt_execute,
    malformed_change_user,
    change_user_without_a_body,
    oversized_packet,
    packet_out_of_order,
);

/// How long a well-formed answer may take: MariaDB waits a second before it refuses a
/// COM_CHANGE_USER.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer that should not come (a COM_STMT_CLOSE has none).
const NO_ANSWER: Duration = Duration::from_millis(700);
/// Silence after the last byte that ends an answer.
const QUIET: Duration = Duration::from_millis(300);

/// What the client's connection asks for: a modern client's set, with connection attributes
/// (which change how the server reads COM_CHANGE_USER).
fn client_capabilities() -> Capabilities {
    let flags = [
        Capabilities::LONG_PASSWORD,
        Capabilities::LONG_FLAG,
        Capabilities::PROTOCOL_41,
        Capabilities::TRANSACTIONS,
        Capabilities::SECURE_CONNECTION,
        Capabilities::MULTI_STATEMENTS,
        Capabilities::MULTI_RESULTS,
        Capabilities::PS_MULTI_RESULTS,
        Capabilities::PLUGIN_AUTH,
        Capabilities::CONNECT_ATTRS,
        Capabilities::DEPRECATE_EOF,
    ];
    Capabilities(flags.iter().fold(0, |acc, f| acc | f.0))
}

/// What came back: the bytes, and whether the server closed the connection after them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    bytes: Vec<u8>,
    closed: bool,
}

impl Answer {
    /// The answer as (sequence id, payload) packets.
    fn packets(&self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = &self.bytes[..];
        while rest.len() >= 4 {
            let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
            let end = (4 + len).min(rest.len());
            out.push((rest[3], rest[4..end].to_vec()));
            rest = &rest[end..];
        }
        out
    }
}

/// A client logged in as [`USER`] (`mysql_native_password`) that sends raw bytes.
struct RawConn {
    stream: TcpStream,
    salt: Vec<u8>,
}

impl RawConn {
    fn login(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT).expect("connect");
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let mut conn = Self {
            stream,
            salt: Vec::new(),
        };
        let (seq, greeting) = conn.packet();
        assert_eq!(seq, 0);
        conn.salt = HandshakeV10::parse(&greeting).expect("greeting").scramble();
        let response = handshake_response(&conn.salt);
        conn.send(1, &response);
        conn.finish_login(2);
        conn
    }

    /// Reads the server's answers to a login (or re-login) until its OK, answering an auth
    /// switch; `seq` is the id the answer should carry.
    fn finish_login(&mut self, mut seq: u8) -> Vec<(u8, Vec<u8>)> {
        let mut seen = Vec::new();
        loop {
            let (got, payload) = self.packet();
            assert_eq!(got, seq, "login answer {payload:?}");
            seen.push((got, payload.clone()));
            match payload.first() {
                Some(0x00) => return seen,
                Some(0xFE) => {
                    let switch = AuthSwitchRequest::parse(&payload).expect("auth switch");
                    let answer = native::scramble(PASSWORD.as_bytes(), auth_salt(switch.data));
                    self.send(seq + 1, &answer);
                    seq += 2;
                }
                _ => panic!("login refused: {payload:?}"),
            }
        }
    }

    fn send(&mut self, seq: u8, payload: &[u8]) {
        let len = payload.len().to_le_bytes();
        let mut frame = vec![len[0], len[1], len[2], seq];
        frame.extend_from_slice(payload);
        self.send_raw(&frame);
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        // A connection the server closed may refuse the write: the answer then says so.
        let _ = self.stream.write_all(bytes);
    }

    /// One whole packet (panics after [`ANSWER_TIMEOUT`]).
    fn packet(&mut self) -> (u8, Vec<u8>) {
        self.stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let mut header = [0; 4];
        self.stream.read_exact(&mut header).expect("packet header");
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let mut payload = vec![0; len];
        self.stream
            .read_exact(&mut payload)
            .expect("packet payload");
        (header[3], payload)
    }

    /// Everything the server sends within `first` (then until [`QUIET`] passes without a byte),
    /// and whether it closed the connection.
    fn answer(&mut self, first: Duration) -> Answer {
        let mut bytes = Vec::new();
        let mut deadline = Instant::now() + first;
        let mut buf = [0; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Answer {
                    bytes,
                    closed: false,
                };
            }
            self.stream.set_read_timeout(Some(deadline - now)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Answer {
                        bytes,
                        closed: true,
                    }
                }
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    deadline = Instant::now() + QUIET;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Answer {
                        bytes,
                        closed: true,
                    }
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// `SELECT 1` and its answer (or the closed connection).
    fn select_1(&mut self) -> Answer {
        self.send(0, b"\x03SELECT 1");
        self.answer(ANSWER_TIMEOUT)
    }
}

/// A HandshakeResponse41 for [`USER`] over `salt`.
fn handshake_response(salt: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    HandshakeResponse41 {
        capabilities: client_capabilities(),
        max_packet_size: 1 << 24,
        collation: 45,
        mariadb_capabilities: 0,
        username: USER.as_bytes(),
        auth_response: &native::scramble(PASSWORD.as_bytes(), salt),
        database: None,
        auth_plugin_name: Some(b"mysql_native_password"),
        connect_attrs: vec![(b"_client_name", b"proxy_malformed")],
        zstd_compression_level: None,
    }
    .encode(&mut out);
    out
}

/// ferry in front of `db`, checking passwords itself (`proxy`) or not (`passthrough`).
fn ferry(driver: Driver, db: &MariaDb, proxy_auth: bool, toml: &str) -> FerryProcess {
    let mut builder = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_toml(toml);
    if proxy_auth {
        builder = builder.proxy_user(USER, &db.user_password_hash(USER));
    }
    builder.start()
}

/// Sends `bytes` on a fresh connection to `addr`; the answer and the answer to `SELECT 1` after
/// it (`None` once the connection closed).
fn probe(addr: SocketAddr, bytes: &[u8], first: Duration) -> (Answer, Option<Answer>) {
    let mut conn = RawConn::login(addr);
    conn.send_raw(bytes);
    let answer = conn.answer(first);
    let after = (!answer.closed).then(|| conn.select_1());
    (answer, after)
}

/// The client sees the same thing directly and through each ferry.
fn same_as_mariadb(
    case: &str,
    db: &MariaDb,
    ferries: &[&FerryProcess],
    bytes: &[u8],
    first: Duration,
) {
    let direct = probe(db.addr(), bytes, first);
    if let Some(after) = &direct.1 {
        assert!(!after.closed, "{case}: MariaDB closed on SELECT 1");
        assert_eq!(
            after.packets()[0],
            (1, vec![1]),
            "{case}: SELECT 1 directly"
        );
    }
    for ferry in ferries {
        let through = probe(ferry.addr(), bytes, first);
        assert_eq!(
            through,
            direct,
            "{case}: through ferry ({})",
            ferry.driver()
        );
    }
}

/// A frame of `payload` with sequence id `seq`.
fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().to_le_bytes();
    [&[len[0], len[1], len[2], seq][..], payload].concat()
}

fn an_empty_packet(driver: Driver) {
    // MariaDB takes it for COM_SLEEP: ERR 1047 "Unknown command", id 1; the connection goes on.
    let db = backend(1);
    let ferry = ferry(driver, &db, false, "");
    same_as_mariadb(
        "empty packet",
        &db,
        &[&ferry],
        &frame(0, b""),
        ANSWER_TIMEOUT,
    );
    let (answer, _) = probe(db.addr(), &frame(0, b""), ANSWER_TIMEOUT);
    assert_eq!(answer.packets()[0].0, 1);
}

fn short_and_unknown_stmt_close(driver: Driver) {
    // No answer: MariaDB reads the missing id bytes past the end of the packet.
    let db = backend(1);
    let ferry = ferry(driver, &db, false, "");
    for payload in [
        &b"\x19"[..],
        b"\x19\x01\x00",
        b"\x19\x01\x00\x00",
        b"\x19\x63\x00\x00\x00",
    ] {
        let case = format!("COM_STMT_CLOSE {payload:02x?}");
        same_as_mariadb(&case, &db, &[&ferry], &frame(0, payload), NO_ANSWER);
        let (answer, _) = probe(db.addr(), &frame(0, payload), NO_ANSWER);
        assert!(answer.bytes.is_empty(), "{case}");
    }
}

/// `[migration]` and `[multiplexing]` keys: every session's statement ids are mapped, and a
/// statement the client closes stays prepared on the pooled connection.
const MULTIPLEXED: &str = "[migration]\nmode = \"replay\"\n\n[multiplexing]\nenabled = true\n\
                           max-backend-connections = 2\n";

/// On a fresh connection to `addr`: prepares `SELECT 1`, closes it, sends `command(id)` for its
/// id; the id, the answer (waited for `first`), and the answer to `SELECT 1` after it.
fn after_closing(
    addr: SocketAddr,
    command: fn(u32) -> Vec<u8>,
    first: Duration,
) -> (u32, Answer, Option<Answer>) {
    let mut conn = RawConn::login(addr);
    conn.send(0, b"\x16SELECT 1");
    let prepared = conn.answer(ANSWER_TIMEOUT).packets();
    let ok = &prepared.first().expect("a prepare answer").1;
    assert_eq!(ok.first(), Some(&0), "prepare OK: {prepared:?}");
    let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    conn.send(0, &[&[0x19][..], &id.to_le_bytes()].concat());
    assert!(
        conn.answer(NO_ANSWER).bytes.is_empty(),
        "a close has no answer"
    );
    conn.send(0, &command(id));
    let answer = conn.answer(first);
    let after = (!answer.closed).then(|| conn.select_1());
    (id, answer, after)
}

/// `bytes` without the first occurrence of `part`.
fn without(bytes: &[u8], part: &[u8]) -> Vec<u8> {
    match bytes.windows(part.len()).position(|w| w == part) {
        Some(at) => [&bytes[..at], &bytes[at + part.len()..]].concat(),
        None => bytes.to_vec(),
    }
}

fn a_closed_statement_is_unknown(driver: Driver) {
    // MariaDB answers ERR 1243 "Unknown prepared statement handler (1) given to ..." and goes on.
    // Through ferry with ids mapped, the closed statement is still prepared on the pooled
    // connection, under a backend id that may be the same number: the command must not reach
    // it.
    let db = backend(1);
    let mux = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_user(USER, &db.user_password_hash(USER))
        .extra_toml(MULTIPLEXED)
        .start();
    type Case = (&'static str, fn(u32) -> Vec<u8>, Duration);
    let cases: [Case; 4] = [
        (
            "execute",
            |id| [&[0x17][..], &id.to_le_bytes(), &[0, 1, 0, 0, 0]].concat(),
            ANSWER_TIMEOUT,
        ),
        (
            "fetch",
            |id| [&[0x1c][..], &id.to_le_bytes(), &[1, 0, 0, 0]].concat(),
            ANSWER_TIMEOUT,
        ),
        (
            "reset",
            |id| [&[0x1a][..], &id.to_le_bytes()].concat(),
            ANSWER_TIMEOUT,
        ),
        // No answer, and the session goes on.
        (
            "long data",
            |id| [&[0x18][..], &id.to_le_bytes(), &[0, 0, b'x']].concat(),
            NO_ANSWER,
        ),
    ];
    // MariaDB's statement ids grow across connections; the messages name them.
    let seen = |(id, answer, after): (u32, Answer, Option<Answer>)| {
        let packets: Vec<(u8, Vec<u8>)> = answer
            .packets()
            .into_iter()
            .map(|(seq, payload)| (seq, without(&payload, format!("({id})").as_bytes())))
            .collect();
        (packets, answer.closed, after)
    };
    for (case, command, first) in cases {
        let direct = seen(after_closing(db.addr(), command, first));
        let through = seen(after_closing(mux.addr(), command, first));
        assert_eq!(through, direct, "{case} of a closed statement");
    }
    let (direct, ..) = seen(after_closing(db.addr(), cases[0].1, ANSWER_TIMEOUT));
    assert_eq!(
        direct[0].1[..3],
        [0xff, 0xdb, 0x04],
        "MariaDB's ERR 1243: {direct:?}"
    );
}

fn a_short_stmt_execute(driver: Driver) {
    // MariaDB answers ERR 1835 "Malformed communication packet" and goes on.
    let db = backend(1);
    let ferry = ferry(driver, &db, false, "");
    same_as_mariadb(
        "short execute",
        &db,
        &[&ferry],
        &frame(0, b"\x17\x01\x00"),
        ANSWER_TIMEOUT,
    );
}

fn malformed_change_user(driver: Driver) {
    // MariaDB refuses each with ERR 1047 "Unknown command" (id 1) after waiting a second, and
    // goes on as the old user; under CLIENT_CONNECT_ATTRS the attribute block is required too.
    let db = backend(1);
    let passthrough = ferry(driver, &db, false, "");
    let proxy = ferry(driver, &db, true, "");
    for payload in [
        &b"\x11app"[..],
        b"\x11app\x00",
        b"\x11app\x00\x14abc",
        b"\x11app\x00\x00\x00",
        b"\x11app\x00\x00\x00\x2d\x00mysql_native_password\x00",
    ] {
        let case = format!("COM_CHANGE_USER {payload:02x?}");
        same_as_mariadb(
            &case,
            &db,
            &[&passthrough, &proxy],
            &frame(0, payload),
            ANSWER_TIMEOUT,
        );
        let (answer, after) = probe(db.addr(), &frame(0, payload), ANSWER_TIMEOUT);
        assert_eq!(answer.packets()[0].0, 1, "{case}");
        assert!(after.is_some(), "{case}");
    }
}

fn change_user_without_a_body(driver: Driver) {
    // MariaDB starts the handshake over: a new greeting (id 1), then a handshake response (id 2)
    // logs in again. ferry's greeting is its own (server version, capabilities, salt and
    // connection id must differ), and in both auth modes the backend checks the password over
    // its own salt, so through ferry an auth switch (ids 3 and 4) comes before the OK (id 5);
    // MariaDB, which checked the response against its own greeting, sends the OK at once (id 3).
    let db = backend(1);
    let passthrough = ferry(driver, &db, false, "");
    let proxy = ferry(driver, &db, true, "");
    for addr in [db.addr(), passthrough.addr(), proxy.addr()] {
        let mut conn = RawConn::login(addr);
        let first_salt = conn.salt.clone();
        conn.send(0, b"\x11");
        let (seq, greeting) = conn.packet();
        assert_eq!(seq, 1, "{addr}");
        let greeting = HandshakeV10::parse(&greeting).expect("a greeting");
        assert_eq!(greeting.protocol_version, 10);
        let salt = greeting.scramble();
        assert_ne!(salt, first_salt, "{addr}: a new salt");
        conn.send(2, &handshake_response(&salt));
        let answers = conn.finish_login(3);
        let ids: Vec<u8> = answers.iter().map(|(seq, _)| *seq).collect();
        if addr == db.addr() {
            assert_eq!(ids, [3]);
        } else {
            assert_eq!(ids, [3, 5], "{addr}");
        }
        let after = conn.select_1();
        assert_eq!(after.packets()[0], (1, vec![1]), "{addr}");
        assert!(!after.closed);
    }
    // A client that takes the greeting for an answer and sends its next command: ERR 1156 with
    // id 2, again with id 0, and the connection closes (MariaDB a second later).
    let direct = {
        let mut conn = RawConn::login(db.addr());
        conn.send(0, b"\x11");
        conn.packet();
        conn.send(0, b"\x03SELECT 1");
        conn.answer(ANSWER_TIMEOUT)
    };
    assert!(direct.closed);
    let ids: Vec<u8> = direct.packets().iter().map(|(seq, _)| *seq).collect();
    assert_eq!(ids, [2, 0]);
    for ferry in [&passthrough, &proxy] {
        let mut conn = RawConn::login(ferry.addr());
        conn.send(0, b"\x11");
        conn.packet();
        conn.send(0, b"\x03SELECT 1");
        assert_eq!(conn.answer(ANSWER_TIMEOUT), direct, "through ferry");
    }
}

fn oversized_packet(driver: Driver) {
    // ERR 1153 as soon as the header announces too much, with the id after the header's (1),
    // and the connection closes. Only the header and a little of the payload are sent.
    let db = MariaDb::builder().arg("--max-allowed-packet=1M").start();
    db.create_user(USER, PASSWORD);
    let ferry = ferry(driver, &db, false, "max-packet-size = \"1MiB\"");
    let mut bytes = vec![0x00, 0x00, 0x20, 0x00, 0x03];
    bytes.extend_from_slice(&[b'x'; 1000]);
    same_as_mariadb("oversized", &db, &[&ferry], &bytes, ANSWER_TIMEOUT);
    let (answer, after) = probe(db.addr(), &bytes, ANSWER_TIMEOUT);
    assert_eq!(answer.packets()[0].0, 1);
    assert!(answer.closed && after.is_none());
}

fn packet_out_of_order(driver: Driver) {
    // ERR 1156 with id 0, and the connection closes.
    let db = backend(1);
    let ferry = ferry(driver, &db, false, "");
    same_as_mariadb(
        "out of order",
        &db,
        &[&ferry],
        &frame(5, b"\x0e"),
        ANSWER_TIMEOUT,
    );
}
