//! The sans-IO backend (`ferry_core::backend`) against a real MariaDB, driven by a small blocking
//! std::net loop: logins (native password, wrong password, recovered SHA1, TLS with a self-signed
//! certificate) and every response kind the backend tracks.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_core::auth::{ClientSecret, Password};
use ferry_core::backend::{
    Backend, BackendConfig, BackendError, BackendTls, ConnectedInfo, Event, PacketKind,
    ResponseSummary,
};
use ferry_core::tls::ServerTrust;
use ferry_core::wire::{
    Capabilities, Command, ExecuteParams, Query, ServerStatus, StmtExecute, StmtExecuteHeader,
    TextRow,
};
use ferry_core::SeededRandom;
use ferry_tests::{require_executable, run_with_deadline, MariaDb};

/// Longest a single step may take before the test fails instead of hanging.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One backend over one blocking socket.
struct Conn {
    sock: TcpStream,
    backend: Backend,
    events: VecDeque<Event>,
    buf: Vec<u8>,
}

impl Conn {
    fn open(db: &MariaDb, config: BackendConfig) -> Conn {
        let sock = TcpStream::connect(db.addr()).expect("connect to MariaDB");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        sock.set_nodelay(true).expect("nodelay");
        let backend = Backend::new(Instant::now(), config, Box::new(SeededRandom::new(42)));
        Conn {
            sock,
            backend,
            events: VecDeque::new(),
            buf: vec![0; 256 * 1024],
        }
    }

    /// Writes what the backend wants sent, reads once, feeds what arrived.
    fn pump(&mut self) {
        while let Some(bytes) = self.backend.poll_transmit() {
            self.sock.write_all(&bytes).expect("write to MariaDB");
        }
        while let Some(e) = self.backend.poll_event() {
            self.events.push_back(e);
        }
        if !self.events.is_empty() {
            return;
        }
        let now = Instant::now();
        match self.sock.read(&mut self.buf) {
            Ok(0) => self.backend.handle_eof(now),
            Ok(n) => self.backend.handle_input(now, &self.buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read from MariaDB: {e}"),
        }
        self.backend.handle_timeout(Instant::now());
        while let Some(bytes) = self.backend.poll_transmit() {
            self.sock.write_all(&bytes).expect("write to MariaDB");
        }
        while let Some(e) = self.backend.poll_event() {
            self.events.push_back(e);
        }
    }

    fn next_event(&mut self) -> Event {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            assert!(Instant::now() < deadline, "no event from the backend");
            self.pump();
        }
    }

    fn expect_connected(&mut self) -> ConnectedInfo {
        match self.next_event() {
            Event::Connected(info) => info,
            e => panic!("expected Connected, got {e:?}"),
        }
    }

    /// Collects the response packets until the response is complete.
    fn response(&mut self) -> (Vec<(PacketKind, Bytes)>, ResponseSummary) {
        let mut packets = Vec::new();
        loop {
            match self.next_event() {
                Event::Response { payload, kind } => packets.push((kind, payload)),
                Event::ResponseComplete(s) => return (packets, s),
                e => panic!("expected a response, got {e:?}"),
            }
        }
    }

    fn command(&mut self, cmd: &Command<'_>) -> (Vec<(PacketKind, Bytes)>, ResponseSummary) {
        self.backend
            .send_command(Instant::now(), cmd)
            .expect("backend idle");
        self.response()
    }

    fn query(&mut self, sql: &str) -> (Vec<(PacketKind, Bytes)>, ResponseSummary) {
        self.command(&Command::Query(Query {
            attributes: vec![],
            sql: sql.as_bytes(),
        }))
    }

    /// Runs `sql` and returns its text rows (one result set).
    fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let (packets, summary) = self.query(sql);
        assert!(summary.is_ok(), "`{sql}` failed: {:?}", summary.error);
        let columns = packets
            .iter()
            .filter(|(k, _)| *k == PacketKind::ColumnDefinition)
            .count();
        packets
            .iter()
            .filter(|(k, _)| *k == PacketKind::Row)
            .map(|(_, p)| {
                TextRow::parse(p, columns)
                    .expect("text row")
                    .into_iter()
                    .map(|c| c.map(|c| String::from_utf8_lossy(c).into_owned()))
                    .collect()
            })
            .collect()
    }

    fn scalar(&mut self, sql: &str) -> Option<String> {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "`{sql}` gave {rows:?}");
        rows[0][0].clone()
    }
}

fn kinds(packets: &[(PacketKind, Bytes)]) -> Vec<PacketKind> {
    packets.iter().map(|(k, _)| *k).collect()
}

fn plaintext(pw: &str) -> ClientSecret {
    ClientSecret::Plaintext(Password::new(pw))
}

fn config(user: &str, secret: ClientSecret) -> BackendConfig {
    let mut c = BackendConfig::new(user, secret);
    c.command_timeout = Some(STEP_TIMEOUT);
    c
}

#[test]
fn logins_native_wrong_password_and_recovered_sha1() {
    let db = MariaDb::start();
    db.create_user("app", "s3cret");
    db.create_database("shop");

    let mut cfg = config("app", plaintext("s3cret"));
    cfg.database = Some("shop".into());
    cfg.connect_attrs = vec![("program_name".into(), "ferry-test".into())];
    let mut conn = Conn::open(&db, cfg);
    let info = conn.expect_connected();
    assert!(info.capabilities.contains(Capabilities::SESSION_TRACK));
    assert!(info.capabilities.contains(Capabilities::DEPRECATE_EOF));
    assert!(
        info.server_version.contains("MariaDB"),
        "{}",
        info.server_version
    );
    assert!(info.status.contains(ServerStatus::AUTOCOMMIT));
    assert_eq!(conn.backend.schema(), Some(&b"shop"[..]));
    assert_eq!(
        conn.scalar("SELECT CURRENT_USER()").as_deref(),
        Some("app@%")
    );
    assert_eq!(conn.scalar("SELECT DATABASE()").as_deref(), Some("shop"));
    assert_eq!(
        conn.scalar("SELECT CONNECTION_ID()"),
        Some(info.connection_id.to_string())
    );

    // A wrong password: the server's ERR comes out as AuthFailed, then Closed; nothing panics.
    let mut bad = Conn::open(&db, config("app", plaintext("nope")));
    match bad.next_event() {
        Event::AuthFailed { error, payload } => {
            assert_eq!(error.code, 1045, "{error}");
            assert_eq!(&error.sql_state, b"28000");
            assert!(error.message.contains("Access denied"), "{}", error.message);
            assert_eq!(payload[0], 0xFF);
        }
        e => panic!("expected AuthFailed, got {e:?}"),
    }
    match bad.next_event() {
        Event::Closed {
            error: Some(BackendError::AuthFailed(e)),
        } => assert_eq!(e.code, 1045),
        e => panic!("expected Closed, got {e:?}"),
    }
    assert!(bad.backend.is_closed());

    // A recovered SHA1(password), as proxy auth mode has it: never the plaintext.
    let sha1 = Password::new("s3cret").sha1();
    let mut conn2 = Conn::open(&db, config("app", ClientSecret::Sha1(sha1)));
    conn2.expect_connected();
    assert_eq!(
        conn2.scalar("SELECT CURRENT_USER()").as_deref(),
        Some("app@%")
    );
    let wrong_sha1 = Password::new("other").sha1();
    let mut bad2 = Conn::open(&db, config("app", ClientSecret::Sha1(wrong_sha1)));
    assert!(matches!(bad2.next_event(), Event::AuthFailed { error, .. } if error.code == 1045));

    // COM_QUIT ends the connection in order.
    conn.backend
        .send_command(Instant::now(), &Command::Quit)
        .unwrap();
    assert_eq!(conn.next_event(), Event::Closed { error: None });
}

#[test]
fn tls_to_mariadb_with_a_self_signed_certificate() {
    let openssl = require_executable("openssl", "openssl");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_cert(&openssl, &cert, &key);
    let db = MariaDb::builder().ssl(&cert, &key).start();
    db.create_user("app", "pw");

    let ca = std::fs::read(&cert).expect("read cert");
    let mut cfg = config("app", plaintext("pw"));
    cfg.tls = Some(BackendTls {
        server_name: "localhost".into(),
        trust: ServerTrust::CaPem(ca),
        required: true,
    });
    let mut conn = Conn::open(&db, cfg);
    let info = conn.expect_connected();
    assert!(info.tls && conn.backend.is_tls());
    assert!(info.capabilities.contains(Capabilities::SSL));
    let cipher = conn.rows("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
    assert!(
        cipher[0][1].as_deref().is_some_and(|c| !c.is_empty()),
        "{cipher:?}"
    );
    // A large result over TLS.
    assert_eq!(
        conn.scalar("SELECT LENGTH(REPEAT('y', 3000000))")
            .as_deref(),
        Some("3000000")
    );
    let big = conn.rows("SELECT REPEAT('z', 1000000)");
    assert_eq!(big[0][0].as_ref().map(String::len), Some(1_000_000));

    // A certificate for another name is refused.
    let mut cfg = config("app", plaintext("pw"));
    cfg.tls = Some(BackendTls {
        server_name: "db.example".into(),
        trust: ServerTrust::CaPem(std::fs::read(&cert).unwrap()),
        required: true,
    });
    let mut wrong = Conn::open(&db, cfg);
    assert!(matches!(
        wrong.next_event(),
        Event::Closed {
            error: Some(BackendError::Tls(_))
        }
    ));

    // Trust-all (tests only) also connects.
    let mut cfg = config("app", plaintext("pw"));
    cfg.tls = Some(BackendTls {
        server_name: "localhost".into(),
        trust: ServerTrust::InsecureTrustAll,
        required: true,
    });
    let mut conn = Conn::open(&db, cfg);
    assert!(conn.expect_connected().tls);
}

fn make_cert(openssl: &Path, cert: &Path, key: &Path) {
    let out = run_with_deadline(
        Process::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
            ])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
        Duration::from_secs(60),
    )
    .expect("openssl runs");
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn every_response_kind_against_mariadb() {
    let db = MariaDb::builder()
        .args(["--local-infile=1", "--max-allowed-packet=64M"])
        .start();
    db.create_user("app", "pw");
    db.create_user("other", "pw2");
    db.create_database("shop");
    db.create_database("shop2");
    let mut cfg = config("app", plaintext("pw"));
    cfg.database = Some("shop".into());
    let mut c = Conn::open(&db, cfg);
    c.expect_connected();

    // OK with affected rows and last insert id.
    let (p, s) = c.query("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))");
    assert_eq!(kinds(&p), [PacketKind::Ok]);
    assert!(s.is_ok());
    let (_, s) = c.query("INSERT INTO t (v) VALUES ('a'), ('b'), ('c')");
    assert_eq!((s.affected_rows, s.last_insert_id), (3, 1));

    // A text result set (DEPRECATE_EOF: no EOF after the columns).
    let (p, s) = c.query("SELECT id, v FROM t ORDER BY id");
    use PacketKind::*;
    assert_eq!(
        kinds(&p),
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
    assert_eq!((s.result_sets, s.rows), (1, 3));

    // An ERR.
    let (p, s) = c.query("SELECT nope FROM t");
    assert_eq!(kinds(&p), [Err]);
    assert_eq!(s.error.as_ref().map(|e| e.code), Some(1054));

    // Multi-statements, and an ERR midway that ends them.
    let (p, s) = c.query("SELECT 1; SELECT 2; DO 3");
    assert_eq!(s.result_sets, 2);
    assert_eq!(kinds(&p).last(), Some(&Ok));
    let (_, s) = c.query("SELECT 1; SELECT nope; SELECT 3");
    assert_eq!(s.result_sets, 1);
    assert_eq!(s.error.as_ref().map(|e| e.code), Some(1054));
    assert_eq!(
        c.scalar("SELECT 'still in sync'").as_deref(),
        Some("still in sync")
    );

    // A stored procedure: two result sets, then the CALL's own OK.
    c.query("CREATE PROCEDURE two() BEGIN SELECT 1; SELECT v FROM t; END");
    let (p, s) = c.query("CALL two()");
    assert!(s.is_ok(), "{:?}", s.error);
    assert_eq!((s.result_sets, s.rows), (2, 4));
    assert_eq!(kinds(&p).last(), Some(&Ok));

    // LOAD DATA LOCAL INFILE: the request is an event, the file goes through mutators.
    c.backend
        .send_command(
            Instant::now(),
            &Command::Query(Query {
                attributes: vec![],
                sql: b"LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE t FIELDS TERMINATED BY ',' (id, v)",
            }),
        )
        .unwrap();
    match c.next_event() {
        Event::Response {
            kind: LocalInfileRequest,
            payload,
        } => assert_eq!(&payload[1..], b"rows.csv"),
        e => panic!("expected the LOCAL INFILE request, got {e:?}"),
    }
    c.backend
        .send_local_infile_data(Instant::now(), b"10,ten\n11,eleven\n")
        .unwrap();
    c.backend
        .send_local_infile_data(Instant::now(), b"12,twelve\n")
        .unwrap();
    c.backend.finish_local_infile(Instant::now()).unwrap();
    let (p, s) = c.response();
    assert_eq!(kinds(&p), [Ok]);
    assert_eq!(s.affected_rows, 3);
    assert_eq!(
        c.scalar("SELECT v FROM t WHERE id = 11").as_deref(),
        Some("eleven")
    );

    // Prepare: the prepare-OK, parameter and column definitions; the param count is kept.
    let (p, s) = c.command(&Command::StmtPrepare {
        query: b"SELECT id, v FROM t WHERE id > ? ORDER BY id",
    });
    assert_eq!(
        kinds(&p),
        [
            PrepareOk,
            ParamDefinition,
            ColumnDefinition,
            ColumnDefinition
        ]
    );
    let stmt = s.prepared.expect("prepare-OK").statement_id;
    assert_eq!(
        c.backend.statement(stmt).map(|s| (s.params, s.columns)),
        Some((1, 2))
    );

    // Binary result set.
    let exec = |flags| {
        Command::StmtExecute(StmtExecute {
            header: StmtExecuteHeader {
                statement_id: stmt,
                flags,
                iteration_count: 1,
            },
            params: ExecuteParams::Bound(vec![ferry_core::wire::Param {
                ty: ferry_core::wire::ValueType::new(
                    ferry_core::wire::ColumnType::from_u8(8),
                    false,
                ),
                name: b"",
                value: ferry_core::wire::Value::I64(1),
            }]),
        })
    };
    let (p, s) = c.command(&exec(0));
    assert_eq!(s.rows, 5, "{:?}", kinds(&p));
    assert!(p
        .iter()
        .filter(|(k, _)| *k == Row)
        .all(|(_, r)| r[0] == 0x00));

    // Cursor: EXECUTE with CURSOR_TYPE_READ_ONLY returns only the column definitions, then FETCH.
    let (p, s) = c.command(&exec(StmtExecute::CURSOR_TYPE_READ_ONLY));
    assert_eq!(
        kinds(&p),
        [ResultSetHeader, ColumnDefinition, ColumnDefinition, Eof]
    );
    assert!(s.status.contains(ServerStatus::CURSOR_EXISTS));
    assert!(c.backend.status().contains(ServerStatus::CURSOR_EXISTS));
    let fetch = Command::StmtFetch {
        statement_id: stmt,
        num_rows: 2,
    };
    let (p, s) = c.command(&fetch);
    assert_eq!(kinds(&p), [Row, Row, Eof]);
    assert!(!s.status.contains(ServerStatus::LAST_ROW_SENT));
    let (_, s) = c.command(&Command::StmtFetch {
        statement_id: stmt,
        num_rows: 100,
    });
    assert_eq!(s.rows, 3);
    assert!(
        s.status.contains(ServerStatus::LAST_ROW_SENT),
        "{:?}",
        s.status
    );

    // COM_STMT_CLOSE has no response: idle at once, and the connection stays in sync.
    c.backend
        .send_command(Instant::now(), &Command::StmtClose { statement_id: stmt })
        .unwrap();
    assert!(c.backend.is_idle());
    assert_eq!(c.backend.statement(stmt), None);
    assert_eq!(c.scalar("SELECT 7").as_deref(), Some("7"));

    // COM_FIELD_LIST: column definitions until the end marker.
    let (p, s) = c.command(&Command::FieldList {
        table: b"t",
        wildcard: b"",
    });
    assert!(s.is_ok());
    assert_eq!(kinds(&p), [ColumnDefinition, ColumnDefinition, Eof]);

    // COM_STATISTICS: one raw string.
    let (p, _) = c.command(&Command::Statistics);
    assert_eq!(kinds(&p), [Statistics]);
    assert!(p[0].1.starts_with(b"Uptime"), "{:?}", p[0].1);

    // COM_PING.
    let (p, _) = c.command(&Command::Ping);
    assert_eq!(kinds(&p), [Ok]);

    // A 20 MB row: continuation frames joined into one payload.
    let (p, s) = c.query("SELECT REPEAT('x', 20 * 1024 * 1024)");
    assert_eq!(s.rows, 1);
    let row = &p.iter().find(|(k, _)| *k == Row).expect("row").1;
    // Over 16 MiB the length is 0xFE + 8 bytes: a row starting with 0xFE, not an end marker.
    assert_eq!(row[0], 0xFE);
    assert_eq!(row.len(), 20 * 1024 * 1024 + 9);
    assert!(row[9..].iter().all(|&b| b == b'x'));

    // Session tracking: schema, system variables, transaction flags.
    let (_, s) = c.query("USE shop2");
    assert_eq!(s.session.schema.as_deref(), Some(&b"shop2"[..]));
    assert_eq!(c.backend.schema(), Some(&b"shop2"[..]));
    c.query("SET SESSION session_track_system_variables = '*', session_track_state_change = ON");
    let (_, s) = c.query("SET SESSION sql_mode = 'ANSI_QUOTES'");
    assert!(
        s.session
            .system_variables
            .iter()
            .any(|(n, v)| n == b"sql_mode" && v == b"ANSI_QUOTES"),
        "{:?}",
        s.session
    );
    assert_eq!(
        c.backend
            .system_variables()
            .get(&b"sql_mode"[..])
            .map(|v| &v[..]),
        Some(&b"ANSI_QUOTES"[..])
    );
    let (_, s) = c.query("SET @u = 1");
    assert!(s.session.state_changed);
    c.query("BEGIN");
    assert!(c.backend.in_transaction());
    c.query("COMMIT");
    assert!(!c.backend.in_transaction());
    c.command(&Command::InitDb { schema: b"shop" });
    assert_eq!(c.backend.schema(), Some(&b"shop"[..]));

    // COM_RESET_CONNECTION: user variables and prepared statements are gone.
    c.command(&Command::StmtPrepare { query: b"SELECT 1" });
    let (p, s) = c.command(&Command::ResetConnection);
    assert_eq!(kinds(&p), [Ok]);
    assert!(s.is_ok());
    assert_eq!(c.scalar("SELECT @u"), None);
    assert!(c.backend.system_variables().is_empty());

    // COM_CHANGE_USER, answered by the backend itself.
    c.backend
        .change_user(Instant::now(), "other", plaintext("pw2"), Some("shop2"))
        .unwrap();
    let (p, s) = c.response();
    assert!(s.is_ok(), "{:?}", s.error);
    assert_eq!(kinds(&p).last(), Some(&Ok));
    assert_eq!(c.backend.user(), "other");
    assert_eq!(
        c.scalar("SELECT CURRENT_USER()").as_deref(),
        Some("other@%")
    );
    assert_eq!(c.scalar("SELECT DATABASE()").as_deref(), Some("shop2"));

    // Relayed COM_QUERY bytes pass untouched through send_raw_command.
    let mut raw = vec![Command::COM_QUERY];
    raw.extend_from_slice(b"SELECT 'raw'");
    c.backend
        .send_raw_command(Instant::now(), Bytes::from(raw))
        .unwrap();
    let (p, _) = c.response();
    let row = &p.iter().find(|(k, _)| *k == Row).expect("row").1;
    assert_eq!(&row[..], b"\x03raw");
}
