//! The real proxy program, for every driver, where things are not plain: TLS from the client to
//! ferry (optional and required), both auth modes with right and wrong passwords, a backend
//! that is down, and a backend killed in the middle of a session while ferry keeps serving
//! sessions on another one. Every wait is bounded.

mod proxy_common;

use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, wait_until, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{backend, mysql_code, mysql_opts, python_json, PASSWORD, USER};

driver_tests!(
    tls_mariadb_cli_and_pymysql,
    tls_required_refuses_plain_clients,
    proxy_auth_mode_cli_and_pymysql,
    a_backend_that_is_down_gives_an_error_quickly,
    a_backend_killed_mid_session,
    a_client_that_vanishes_mid_result_releases_its_backend,
);

// ---------------------------------------------------------------- TLS

const PYMYSQL_TLS_SCRIPT: &str = r#"
import json, ssl, sys
import pymysql
port, ca = int(sys.argv[1]), sys.argv[2]
c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="s3cret",
                    connect_timeout=10, read_timeout=30, write_timeout=30,
                    ssl={"ca": ca, "check_hostname": False})
cur = c.cursor()
cur.execute("select 40 + 2, current_user()")
row = list(cur.fetchone())
print(json.dumps({"tls": isinstance(c._sock, ssl.SSLSocket),
                  "version": c._sock.version(), "row": row}))
"#;

fn tls_mariadb_cli_and_pymysql(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .tls(false)
        .start();
    let ca = ferry
        .cert_path()
        .expect("TLS configured")
        .display()
        .to_string();

    // Verifying ferry's certificate against its CA proves the session is TLS with ferry; the
    // CLI's `status` reports the cipher it negotiated.
    let out = ferry.mariadb(
        USER,
        PASSWORD,
        &[
            "--ssl",
            "--ssl-verify-server-cert",
            &format!("--ssl-ca={ca}"),
        ],
        "status; select 40 + 2",
    );
    assert!(out.status.success(), "{out:?}");
    let ssl_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_else(|| panic!("no SSL line in: {}", out.stdout));
    assert!(ssl_line.contains("Cipher in use is"), "{ssl_line}");
    assert!(out.stdout.ends_with("42\n"), "{out:?}");

    // Without TLS, on the same listener: allowed when not required.
    let out = ferry.mariadb(USER, PASSWORD, &["--skip-ssl"], "status");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("SSL:\t\t\tNot in use"),
        "{}",
        out.stdout
    );

    let r = python_json(
        "pymysql",
        "PyMySQL",
        PYMYSQL_TLS_SCRIPT,
        &[ferry.port().to_string(), ca],
    );
    assert_eq!(r["tls"], true, "{r}");
    assert!(
        r["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{r}"
    );
    assert_eq!(r["row"], serde_json::json!([42, "app@%"]), "{r}");
}

fn tls_required_refuses_plain_clients(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .tls(true)
        .start();
    let ca = ferry
        .cert_path()
        .expect("TLS configured")
        .display()
        .to_string();

    let out = ferry.mariadb(USER, PASSWORD, &["--skip-ssl"], "select 1");
    assert!(!out.status.success(), "a plain client got in: {out:?}");
    assert!(out.stderr.contains("ERROR"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // The Rust crate without TLS: refused with a server error, not a hang.
    let err = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect_err("plain refused");
    assert!(mysql_code(&err).is_some(), "not an ERR packet: {err:?}");

    let out = ferry.mariadb(
        USER,
        PASSWORD,
        &[
            "--ssl",
            "--ssl-verify-server-cert",
            &format!("--ssl-ca={ca}"),
        ],
        "select 40 + 2",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "42\n");
    // A wrong password over TLS is still 1045.
    let out = ferry.mariadb(
        USER,
        "wrong",
        &["--ssl", &format!("--ssl-ca={ca}")],
        "select 1",
    );
    assert!(out.stderr.contains("ERROR 1045 (28000)"), "{out:?}");
}

// ---------------------------------------------------------------- auth modes

const PYMYSQL_LOGIN_SCRIPT: &str = r#"
import json, sys
import pymysql
port = int(sys.argv[1])
out = {}
for name, password in (("right", "s3cret"), ("wrong", "nope")):
    try:
        c = pymysql.connect(host="127.0.0.1", port=port, user="app", password=password,
                            connect_timeout=10, read_timeout=30, ssl_disabled=True)
        cur = c.cursor()
        cur.execute("select current_user(), @@port")
        out[name] = list(cur.fetchone())
        c.close()
    except pymysql.err.OperationalError as e:
        out[name] = e.args[0]
print(json.dumps(out))
"#;

fn proxy_auth_mode_cli_and_pymysql(driver: Driver) {
    let db = backend(1);
    let hash = db.user_password_hash(USER);
    assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .proxy_user(USER, &hash)
        .start();

    let out = ferry.mariadb(USER, PASSWORD, &[], "select current_user(), @@port");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, format!("app@%\t{}\n", db.port()));
    let out = ferry.mariadb(USER, "wrong", &[], "select 1");
    assert!(out.stderr.contains("ERROR 1045 (28000)"), "{out:?}");
    let out = ferry.mariadb("nobody", PASSWORD, &[], "select 1");
    assert!(out.stderr.contains("ERROR 1045 (28000)"), "{out:?}");

    let r = python_json(
        "pymysql",
        "PyMySQL",
        PYMYSQL_LOGIN_SCRIPT,
        &[ferry.port().to_string()],
    );
    assert_eq!(r["right"], serde_json::json!(["app@%", db.port()]), "{r}");
    assert_eq!(r["wrong"], 1045, "{r}");

    // The same client against passthrough: the backend's 1045.
    let passthrough = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    let r = python_json(
        "pymysql",
        "PyMySQL",
        PYMYSQL_LOGIN_SCRIPT,
        &[passthrough.port().to_string()],
    );
    assert_eq!(r["right"], serde_json::json!(["app@%", db.port()]), "{r}");
    assert_eq!(r["wrong"], 1045, "{r}");
}

// ---------------------------------------------------------------- backends failing

const PYMYSQL_DOWN_SCRIPT: &str = r#"
import json, sys, time
import pymysql
start = time.monotonic()
try:
    pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret",
                    connect_timeout=20, read_timeout=20, ssl_disabled=True)
    out = {"error": None}
except pymysql.err.MySQLError as e:
    out = {"error": e.args[0], "message": str(e)}
out["seconds"] = time.monotonic() - start
print(json.dumps(out))
"#;

fn a_backend_that_is_down_gives_an_error_quickly(driver: Driver) {
    // A backend that was there and is gone: nothing listens on its port any more.
    let mut db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    assert_eq!(ferry.mariadb(USER, PASSWORD, &[], "select 1").stdout, "1\n");
    db.stop();

    // Each client gets an error within a bound far below its own timeouts (20-30 s).
    let bound = Duration::from_secs(10);
    let start = Instant::now();
    let out = ferry.mariadb(USER, PASSWORD, &[], "select 1");
    // ferry's own ERR, with its reason: a server-range code libmariadb shows as sent (a
    // client-range code such as 2003 would come out as "2027 malformed packet").
    assert!(
        !out.status.success() && out.stderr.contains("ERROR 1429") && out.stderr.contains("ferry:"),
        "{out:?}"
    );
    assert!(
        start.elapsed() < bound,
        "mariadb took {:?}",
        start.elapsed()
    );

    let start = Instant::now();
    let err = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect_err("backend down");
    assert!(
        start.elapsed() < bound,
        "mysql crate took {:?}",
        start.elapsed()
    );
    assert!(
        mysql_code(&err).is_some(),
        "not an ERR packet from ferry: {err:?}"
    );

    let r = python_json(
        "pymysql",
        "PyMySQL",
        PYMYSQL_DOWN_SCRIPT,
        &[ferry.port().to_string()],
    );
    assert!(r["error"].is_number(), "{r}");
    assert!(
        r["seconds"]
            .as_f64()
            .is_some_and(|s| s < bound.as_secs_f64()),
        "{r}"
    );

    // The admin endpoint says so, and ferry itself is still up.
    assert!(
        wait_until(Duration::from_secs(5), || ferry.api("/api/backends")[0]
            ["healthy"]
            == false),
        "{}",
        ferry.api("/api/backends")
    );
    assert_eq!(ferry.http_get("/health").0, 200);
}

fn a_backend_killed_mid_session(driver: Driver) {
    let mut db1 = backend(1);
    let db2 = backend(2);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .start();
    // Least sessions: two sessions land on two different backends.
    let mut a = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("session a");
    let mut b = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("session b");
    let id_of =
        |c: &mut mysql::Conn| -> u32 { c.query_first("select @@server_id").unwrap().unwrap() };
    let (mut on_db1, mut on_db2) = match (id_of(&mut a), id_of(&mut b)) {
        (1, 2) => (a, b),
        (2, 1) => (b, a),
        other => panic!("sessions not spread over both backends: {other:?}"),
    };
    let sessions = ferry.api("/api/sessions");
    let on = |id: u32| {
        sessions
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            .map(|s| (s["user"].clone(), s["backend"].clone()))
    };
    assert_eq!(
        on(on_db1.connection_id()),
        Some((USER.into(), "db1".into())),
        "{sessions}"
    );
    assert_eq!(
        on(on_db2.connection_id()),
        Some((USER.into(), "db2".into())),
        "{sessions}"
    );

    // db1 dies while its session waits for a 5 s statement.
    let sleeper = std::thread::spawn(move || {
        let started = Instant::now();
        let result = on_db1.query_first::<i32, _>("select sleep(5)");
        (result, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(700));
    let killed_at = Instant::now();
    db1.kill();
    let (result, _) = sleeper.join().expect("sleeper thread");
    let waited = killed_at.elapsed();
    let err = result.expect_err("the statement cannot succeed on a killed server");
    // ferry's ERR (1158 lost connection to the backend) or, had it closed first, the client's
    // own lost-connection error.
    match &err {
        mysql::Error::MySqlError(e) => assert!(matches!(e.code, 1158 | 2006 | 2013), "{err}"),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => {}
        other => panic!("unexpected error kind: {other:?}"),
    }
    assert!(
        waited < Duration::from_secs(3),
        "the client learnt of the dead backend only after {waited:?}"
    );

    // The session on db2 is untouched, and new sessions go to db2.
    assert_eq!(
        on_db2.query_first::<u32, _>("select @@server_id").unwrap(),
        Some(2)
    );
    for _ in 0..3 {
        let mut c = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).expect("new session");
        assert_eq!(
            c.query_first::<u32, _>("select @@server_id").unwrap(),
            Some(2)
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let b = ferry.api("/api/backends");
            b[0]["healthy"] == false && b[1]["healthy"] == true
        }),
        "{}",
        ferry.api("/api/backends")
    );
    assert_eq!(ferry.http_get("/health").0, 200);
}

const PYMYSQL_VANISH_SCRIPT: &str = r#"
import json, sys
import pymysql, pymysql.cursors
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="s3cret",
                    connect_timeout=10, read_timeout=30, ssl_disabled=True,
                    cursorclass=pymysql.cursors.SSCursor)
with c.cursor(pymysql.cursors.Cursor) as cur:
    cur.execute("select connection_id()")
    backend_id = cur.fetchone()[0]
cur = c.cursor()
# An unbuffered result far larger than the socket buffers: most of it is still on its way.
cur.execute("select seq, repeat('x', 200) from mysql.seq_1_to_200000")
first = cur.fetchone()[0]
c._sock.close()  # vanish: no COM_QUIT, the rest of the result unread
print(json.dumps({"backend_id": backend_id, "first": first}))
"#;

fn a_client_that_vanishes_mid_result_releases_its_backend(driver: Driver) {
    let db = backend(1);
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .start();
    let r = python_json(
        "pymysql",
        "PyMySQL",
        PYMYSQL_VANISH_SCRIPT,
        &[ferry.port().to_string()],
    );
    assert_eq!(r["first"], 1, "{r}");
    let backend_id = r["backend_id"].as_u64().expect("connection id");
    // ferry lets go of the session and closes its backend connection: the server's thread ends.
    assert!(
        wait_until(Duration::from_secs(10), || {
            ferry.api("/api/backends")[0]["sessions"] == 0
                && db.query_scalar(&format!(
                    "select count(*) from information_schema.processlist where id = {backend_id}"
                )) == "0"
        }),
        "backends: {}; processlist: {}",
        ferry.api("/api/backends"),
        db.sql("select id, command, state, info from information_schema.processlist")
    );
    assert!(ferry
        .api("/api/sessions")
        .as_array()
        .is_some_and(|a| a.is_empty()));
    // ferry still serves.
    assert_eq!(ferry.mariadb(USER, PASSWORD, &[], "select 1").stdout, "1\n");
}
