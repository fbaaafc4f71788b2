//! Interop proof: ferry-core's codec and auth, and nothing else, talk to a real MariaDB.
//!
//! A tiny blocking loop over `std::net::TcpStream` reads into the framing decoder and writes
//! encoded packets; every byte in between is parsed or produced by `ferry_core::wire` and
//! `ferry_core::auth`. It logs in with `mysql_native_password` (also through an auth switch),
//! runs text queries with NULLs, multi-byte text and a 20 MiB value that spans two frames, runs a
//! prepared statement with int, string, NULL and double parameters and reads the binary result
//! set, and checks that a wrong password is refused with ERR 1045. Each run of the loop is
//! checked value by value.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_core::auth::{auth_salt, native, MYSQL_NATIVE_PASSWORD};
use ferry_core::wire::{
    AuthSwitchRequest, BinaryRow, Capabilities, ColumnDefinition41, ColumnType, Command, EofPacket,
    ErrPacket, ExecuteParams, HandshakeResponse41, HandshakeV10, OkPacket, PacketDecoder, Param,
    PrepareOk, Query, ResponseKind, ResultSetHeader, StmtExecute, StmtExecuteHeader, TextRow,
    Value, ValueType, MAX_FRAME_PAYLOAD,
};
use ferry_tests::MariaDb;

const USER: &str = "interop";
const PASSWORD: &str = "s3cret pässword";
/// utf8mb4_general_ci: the connection speaks utf8mb4 both ways.
const UTF8MB4_GENERAL_CI: u8 = 45;
const MULTI_BYTE: &str = "żółw 🐢 日本";
/// The value of the large query: 20 MiB, more than one frame's 16 MiB.
const BIG: usize = 20 * 1024 * 1024;

/// What the client offers; intersected with what the server offers.
fn client_capabilities(deprecate_eof: bool) -> Capabilities {
    let mut caps = Capabilities::PROTOCOL_41
        | Capabilities::LONG_PASSWORD
        | Capabilities::LONG_FLAG
        | Capabilities::TRANSACTIONS
        | Capabilities::SECURE_CONNECTION
        | Capabilities::MULTI_RESULTS
        | Capabilities::PS_MULTI_RESULTS
        | Capabilities::PLUGIN_AUTH
        | Capabilities::PLUGIN_AUTH_LENENC_CLIENT_DATA;
    if deprecate_eof {
        caps |= Capabilities::DEPRECATE_EOF;
    }
    caps
}

/// One client connection: a socket, the decoder that frames what it reads, the agreed flags.
struct Conn {
    stream: TcpStream,
    decoder: PacketDecoder,
    caps: Capabilities,
    /// Whether the server asked to switch auth plugins during login.
    switched: bool,
}

/// How a login ended.
enum Login {
    Ok(Conn),
    Err {
        code: u16,
        sql_state: [u8; 5],
        message: String,
    },
}

impl Conn {
    fn connect(db: &MariaDb) -> Self {
        let stream = TcpStream::connect(db.addr()).expect("connect to MariaDB");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        Self {
            stream,
            decoder: PacketDecoder::default(),
            caps: Capabilities::EMPTY,
            switched: false,
        }
    }

    /// The next packet's payload, reading from the socket until the decoder has one.
    fn read(&mut self) -> Bytes {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(packet) = self.decoder.next_packet().expect("well-formed frames") {
                return packet.payload;
            }
            let n = self.stream.read(&mut buf).expect("read from MariaDB");
            assert_ne!(n, 0, "MariaDB closed the connection");
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Sends one packet with the connection's next sequence id.
    fn write(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        self.decoder.encode_packet(&mut out, payload);
        self.stream.write_all(&out).expect("write to MariaDB");
    }

    /// Sends a command: a new exchange, so the sequence restarts at 0.
    fn command(&mut self, command: &Command<'_>) {
        let mut payload = Vec::new();
        command.encode(self.caps, &mut payload);
        self.decoder.reset_sequence();
        self.write(&payload);
    }

    /// Reads an end-of-rows packet (or of column definitions without DEPRECATE_EOF).
    fn expect_eof(&mut self) {
        let p = self.read();
        EofPacket::parse(&p, self.caps).expect("EOF packet");
    }

    /// Is this packet the end of a result set's rows? Fails the test on an ERR.
    fn is_end_of_rows(&self, p: &[u8]) -> bool {
        match p.first() {
            Some(0xFF) => panic!("{:?}", ErrPacket::parse(p, self.caps)),
            Some(0xFE) => ResponseKind::of(p, self.caps).expect("non-empty") == ResponseKind::Eof,
            _ => false,
        }
    }
}

/// Logs in as `user` with `password`. With `claim_plugin`, the handshake response names that
/// plugin (and sends junk for it), so the server has to switch the client to its own plugin.
fn login(
    db: &MariaDb,
    user: &str,
    password: &str,
    deprecate_eof: bool,
    claim_plugin: Option<&str>,
) -> Login {
    let mut conn = Conn::connect(db);
    let greeting = conn.read();
    let hello = HandshakeV10::parse(&greeting).expect("HandshakeV10");
    assert_eq!(hello.protocol_version, 10);
    assert!(
        String::from_utf8_lossy(hello.server_version).contains("MariaDB"),
        "{:?}",
        String::from_utf8_lossy(hello.server_version)
    );
    assert_eq!(hello.auth_plugin_name, MYSQL_NATIVE_PASSWORD.as_bytes());
    let salt = hello.scramble();
    assert_eq!(auth_salt(&salt).len(), 20);

    conn.caps = client_capabilities(deprecate_eof).intersect(hello.capabilities);
    assert!(conn.caps.contains(Capabilities::PLUGIN_AUTH));
    assert_eq!(
        conn.caps.contains(Capabilities::DEPRECATE_EOF),
        deprecate_eof
    );

    let scramble = native::scramble(password.as_bytes(), auth_salt(&salt));
    let (plugin, auth_response): (&[u8], &[u8]) = match claim_plugin {
        Some(other) => (other.as_bytes(), b"not a real answer"),
        None => (MYSQL_NATIVE_PASSWORD.as_bytes(), &scramble),
    };
    let response = HandshakeResponse41 {
        capabilities: conn.caps,
        max_packet_size: 64 << 20,
        collation: UTF8MB4_GENERAL_CI,
        mariadb_capabilities: 0,
        username: user.as_bytes(),
        auth_response,
        database: None,
        auth_plugin_name: Some(plugin),
        connect_attrs: vec![(b"_client_name".as_slice(), b"ferry-interop".as_slice())],
        zstd_compression_level: None,
    };
    let mut payload = Vec::new();
    response.encode(&mut payload);
    conn.write(&payload);

    loop {
        let p = conn.read();
        match p.first() {
            Some(0x00) => {
                let ok = OkPacket::parse(&p, conn.caps).expect("OK packet");
                assert!(!ok.eof);
                return Login::Ok(conn);
            }
            Some(0xFF) => {
                let err = ErrPacket::parse(&p, conn.caps).expect("ERR packet");
                return Login::Err {
                    code: err.code,
                    sql_state: err.sql_state.expect("4.1 ERR carries a SQL state"),
                    message: String::from_utf8_lossy(err.message).into_owned(),
                };
            }
            Some(&AuthSwitchRequest::HEADER) => {
                let switch = AuthSwitchRequest::parse(&p).expect("AuthSwitchRequest");
                assert_eq!(switch.plugin_name, MYSQL_NATIVE_PASSWORD.as_bytes());
                conn.switched = true;
                let answer = native::scramble(password.as_bytes(), auth_salt(switch.data));
                conn.write(&answer);
            }
            other => panic!("unexpected packet during login: {other:?}"),
        }
    }
}

fn login_ok(db: &MariaDb, deprecate_eof: bool, claim_plugin: Option<&str>) -> Conn {
    match login(db, USER, PASSWORD, deprecate_eof, claim_plugin) {
        Login::Ok(conn) => conn,
        Login::Err { code, message, .. } => panic!("login failed: {code} {message}"),
    }
}

/// A text result set as received: column definition and row payloads, parsed by the caller.
struct ResultSet {
    columns: Vec<Bytes>,
    rows: Vec<Bytes>,
}

impl ResultSet {
    fn column_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| {
                let def = ColumnDefinition41::parse(c).expect("column definition");
                String::from_utf8(def.name.to_vec()).expect("UTF-8 name")
            })
            .collect()
    }
}

/// Reads column definitions and rows after a result-set header.
fn read_result_set(conn: &mut Conn, header: &[u8]) -> ResultSet {
    assert_eq!(
        ResponseKind::of(header, conn.caps).expect("response"),
        ResponseKind::ResultSet,
        "{:?}",
        ErrPacket::parse(header, conn.caps)
    );
    let count = ResultSetHeader::parse(header, conn.caps)
        .expect("result set header")
        .column_count;
    let columns: Vec<Bytes> = (0..count).map(|_| conn.read()).collect();
    if !conn.caps.contains(Capabilities::DEPRECATE_EOF) {
        conn.expect_eof();
    }
    let mut rows = Vec::new();
    loop {
        let p = conn.read();
        if conn.is_end_of_rows(&p) {
            if conn.caps.contains(Capabilities::DEPRECATE_EOF) {
                assert!(
                    OkPacket::parse(&p, conn.caps)
                        .expect("OK ends the rows")
                        .eof
                );
            } else {
                EofPacket::parse(&p, conn.caps).expect("EOF ends the rows");
            }
            return ResultSet { columns, rows };
        }
        rows.push(p);
    }
}

fn query(conn: &mut Conn, sql: &str) -> ResultSet {
    conn.command(&Command::Query(Query {
        attributes: Vec::new(),
        sql: sql.as_bytes(),
    }));
    let header = conn.read();
    read_result_set(conn, &header)
}

fn text_queries(conn: &mut Conn) {
    let rs = query(
        conn,
        &format!("SELECT NULL AS a, '{MULTI_BYTE}' AS b, 42 AS c, '' AS d, NULL AS e, CHAR_LENGTH('{MULTI_BYTE}') AS f"),
    );
    assert_eq!(rs.column_names(), ["a", "b", "c", "d", "e", "f"]);
    let null_column = ColumnDefinition41::parse(&rs.columns[0]).expect("column definition");
    assert_eq!(null_column.column_type, ColumnType::Null);
    assert_eq!(rs.rows.len(), 1);
    let cells = TextRow::parse(&rs.rows[0], 6).expect("text row");
    assert_eq!(
        cells,
        [
            None,
            Some(MULTI_BYTE.as_bytes()),
            Some(&b"42"[..]),
            Some(&b""[..]),
            None,
            Some(&b"9"[..]),
        ]
    );

    // Several rows, NULLs among them, from a server-side expression.
    let rs = query(
        conn,
        "SELECT seq, IF(seq % 2 = 0, NULL, CONCAT('row ', seq, ' ✓')) FROM mysql.seq_1_to_5 ORDER BY seq",
    );
    let rows: Vec<Vec<Option<Vec<u8>>>> = rs
        .rows
        .iter()
        .map(|r| {
            TextRow::parse(r, 2)
                .expect("text row")
                .into_iter()
                .map(|c| c.map(<[u8]>::to_vec))
                .collect()
        })
        .collect();
    let expected: Vec<Vec<Option<Vec<u8>>>> = (1..=5)
        .map(|i| {
            vec![
                Some(i.to_string().into_bytes()),
                (i % 2 == 1).then(|| format!("row {i} ✓").into_bytes()),
            ]
        })
        .collect();
    assert_eq!(rows, expected);
}

fn big_value(conn: &mut Conn) {
    let rs = query(conn, "SELECT REPEAT('x', 20*1024*1024) AS big");
    assert_eq!(rs.rows.len(), 1);
    let row = &rs.rows[0];
    // The row is one packet spanning two frames, joined by the decoder.
    assert!(row.len() > MAX_FRAME_PAYLOAD, "row of {} bytes", row.len());
    let cells = TextRow::parse(row, 1).expect("text row");
    let cell = cells[0].expect("not NULL");
    assert_eq!(cell.len(), BIG);
    assert!(cell.iter().all(|&b| b == b'x'));
}

fn prepared_statement(conn: &mut Conn) {
    let sql = "SELECT ? AS i, ? AS s, ? AS n, ? AS d, CONCAT(?, '!') AS c";
    conn.command(&Command::StmtPrepare {
        query: sql.as_bytes(),
    });
    let p = conn.read();
    assert_eq!(
        p.first(),
        Some(&0x00),
        "{:?}",
        ErrPacket::parse(&p, conn.caps)
    );
    let prepared = PrepareOk::parse(&p, conn.caps).expect("prepare OK");
    assert_eq!(prepared.num_params, 5);
    assert_eq!(prepared.num_columns, 5);
    for _ in 0..prepared.num_params {
        ColumnDefinition41::parse(&conn.read()).expect("parameter definition");
    }
    if !conn.caps.contains(Capabilities::DEPRECATE_EOF) {
        conn.expect_eof();
    }
    for _ in 0..prepared.num_columns {
        ColumnDefinition41::parse(&conn.read()).expect("column definition");
    }
    if !conn.caps.contains(Capabilities::DEPRECATE_EOF) {
        conn.expect_eof();
    }

    let int = -1_234_567_890_123_i64;
    let double = -3.141_592_653_589_793e-7_f64;
    let params = vec![
        Param {
            ty: ValueType::new(ColumnType::LongLong, false),
            name: b"",
            value: Value::I64(int),
        },
        Param {
            ty: ValueType::new(ColumnType::VarString, false),
            name: b"",
            value: Value::Bytes(MULTI_BYTE.as_bytes()),
        },
        Param {
            ty: ValueType::new(ColumnType::Null, false),
            name: b"",
            value: Value::Null,
        },
        Param {
            ty: ValueType::new(ColumnType::Double, false),
            name: b"",
            value: Value::Double(double),
        },
        Param {
            ty: ValueType::new(ColumnType::VarString, false),
            name: b"",
            value: Value::Bytes(b"hey"),
        },
    ];
    conn.command(&Command::StmtExecute(StmtExecute {
        header: StmtExecuteHeader {
            statement_id: prepared.statement_id,
            flags: 0,
            iteration_count: 1,
        },
        params: ExecuteParams::Bound(params),
    }));
    let header = conn.read();
    let rs = read_result_set(conn, &header);
    assert_eq!(rs.column_names(), ["i", "s", "n", "d", "c"]);
    let columns: Vec<ColumnDefinition41<'_>> = rs
        .columns
        .iter()
        .map(|c| ColumnDefinition41::parse(c).expect("column definition"))
        .collect();
    assert_eq!(columns[0].column_type, ColumnType::LongLong);
    assert_eq!(columns[3].column_type, ColumnType::Double);
    assert_eq!(rs.rows.len(), 1);
    let row = BinaryRow::parse_with_columns(&rs.rows[0], &columns).expect("binary row");
    assert_eq!(row.values.len(), 5);
    assert_eq!(row.values[0], Value::I64(int));
    assert_eq!(row.values[1], Value::Bytes(MULTI_BYTE.as_bytes()));
    assert_eq!(row.values[2], Value::Null);
    match row.values[3] {
        Value::Double(d) => assert_eq!(d.to_bits(), double.to_bits()),
        other => panic!("expected a DOUBLE, got {other:?}"),
    }
    assert_eq!(row.values[4], Value::Bytes(b"hey!"));

    conn.command(&Command::StmtClose {
        statement_id: prepared.statement_id,
    });
}

fn ping(conn: &mut Conn) {
    conn.command(&Command::Ping);
    let p = conn.read();
    let ok = OkPacket::parse(&p, conn.caps).expect("OK after COM_PING");
    assert!(!ok.eof);
}

#[test]
fn codec_and_auth_against_mariadb() {
    let db = MariaDb::builder().arg("--max-allowed-packet=64M").start();
    db.create_user(USER, PASSWORD);
    assert_eq!(
        db.query_scalar("SELECT @@max_allowed_packet"),
        (64 << 20).to_string()
    );

    // Without CLIENT_DEPRECATE_EOF: column definitions and rows end with EOF packets.
    let mut conn = login_ok(&db, false, None);
    assert!(!conn.switched);
    text_queries(&mut conn);
    prepared_statement(&mut conn);
    big_value(&mut conn);
    ping(&mut conn);
    conn.command(&Command::Quit);

    // With CLIENT_DEPRECATE_EOF: OK packets with header 0xFE end the rows.
    let mut conn = login_ok(&db, true, None);
    text_queries(&mut conn);
    prepared_statement(&mut conn);
    big_value(&mut conn);
    ping(&mut conn);
    conn.command(&Command::Quit);

    // The handshake response names another plugin: the server switches us to its own.
    let mut conn = login_ok(&db, true, Some("caching_sha2_password"));
    assert!(conn.switched, "the server did not ask to switch plugins");
    text_queries(&mut conn);
    conn.command(&Command::Quit);

    // A wrong password: ERR 1045, SQL state 28000.
    match login(&db, USER, "not the password", true, None) {
        Login::Ok(_) => panic!("logged in with a wrong password"),
        Login::Err {
            code,
            sql_state,
            message,
        } => {
            assert_eq!(code, 1045, "{message}");
            assert_eq!(&sql_state, b"28000");
            assert!(message.contains("Access denied"), "{message}");
        }
    }
    // And through the auth switch too.
    match login(
        &db,
        USER,
        "not the password",
        false,
        Some("caching_sha2_password"),
    ) {
        Login::Ok(_) => panic!("logged in with a wrong password after a switch"),
        Login::Err { code, .. } => assert_eq!(code, 1045),
    }
}
