//! Real clients against the frontend: the [`TestServer`] (built on `ferry_core::frontend`) is
//! logged in to and queried by the `mariadb` CLI, PyMySQL, mysql-connector-python (pure) and the
//! Rust `mysql` crate, with right and wrong passwords, with and without TLS, over
//! `mysql_native_password` and every path of `caching_sha2_password`.
//!
//! A missing client program or Python module fails the test with what to install.

use std::process::Command;
use std::time::Duration;

use ferry_core::auth::AuthPlugin;
use ferry_tests::{require_executable, require_python_module, run_with_deadline, TestServer};

const NATIVE: AuthPlugin = AuthPlugin::MysqlNativePassword;
const SHA2: AuthPlugin = AuthPlugin::CachingSha2Password;
/// PyMySQL upgrades to TLS whenever the server offers it unless told not to.
const PLAIN: &str = ", ssl_disabled=True";

// ---------------------------------------------------------------- mariadb CLI

fn mariadb_cli(
    server: &TestServer,
    user: &str,
    password: &str,
    extra: &[&str],
    sql: &str,
) -> (bool, String, String) {
    let bin = require_executable("mariadb", "mariadb-client");
    let port = server.port().to_string();
    let mut cmd = Command::new(bin);
    cmd.args(["--no-defaults", "-h", "127.0.0.1", "-P", &port, "-u", user])
        .arg(format!("-p{password}"))
        .args(["-N", "-B", "--connect-timeout=10"])
        .args(extra)
        .args(["-e", sql]);
    let out = run_with_deadline(&mut cmd, Duration::from_secs(30)).expect("mariadb ran");
    (out.status.success(), out.stdout, out.stderr)
}

#[test]
fn mariadb_cli_native_plain_and_tls() {
    let server = TestServer::builder().user("u", "pw", NATIVE).tls().start();
    let (ok, out, err) = mariadb_cli(&server, "u", "pw", &[], "select 1");
    assert!(ok, "stderr: {err}");
    assert_eq!(out.trim(), "1");

    let (ok, out, err) = mariadb_cli(
        &server,
        "u",
        "pw",
        &["--ssl"],
        "select user(); select * from people",
    );
    assert!(ok, "stderr: {err}");
    assert_eq!(out, "u@127.0.0.1\n1\talice\n2\tNULL\n");
    // Verifying the server's certificate against its CA proves the session really is TLS.
    let ca = format!("--ssl-ca={}", server.cert_path().unwrap().display());
    let (ok, out, err) = mariadb_cli(
        &server,
        "u",
        "pw",
        &["--ssl", "--ssl-verify-server-cert", &ca],
        "select 1",
    );
    assert!(ok, "stderr: {err}");
    assert_eq!(out.trim(), "1");

    let (ok, out, err) = mariadb_cli(
        &server,
        "u",
        "pw",
        &[],
        "use db1; select database(); select @@version",
    );
    assert!(ok, "stderr: {err}");
    assert_eq!(out, "db1\n8.0.36-ferry\n");

    let (ok, _, err) = mariadb_cli(&server, "u", "pw", &[], "select 2");
    assert!(!ok);
    assert!(err.contains("ERROR 1064 (42000)"), "{err}");
}

#[test]
fn mariadb_cli_wrong_password_unknown_db_and_required_tls() {
    let server = TestServer::builder().user("u", "pw", NATIVE).tls().start();
    let (ok, _, err) = mariadb_cli(&server, "u", "nope", &[], "select 1");
    assert!(!ok);
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'u'@'127.0.0.1' (using password: YES)"
        ),
        "{err}"
    );
    let (ok, _, err) = mariadb_cli(&server, "u", "nope", &["--ssl"], "select 1");
    assert!(!ok && err.contains("ERROR 1045 (28000)"), "{err}");
    let (ok, _, err) = mariadb_cli(&server, "u", "pw", &["-D", "nodb"], "select 1");
    assert!(
        !ok && err.contains("ERROR 1049 (42000): Unknown database 'nodb'"),
        "{err}"
    );

    let strict = TestServer::builder()
        .user("u", "pw", NATIVE)
        .require_tls()
        .start();
    let (ok, _, err) = mariadb_cli(&strict, "u", "pw", &["--skip-ssl"], "select 1");
    assert!(!ok && err.contains("ERROR 3159"), "{err}");
    let (ok, out, err) = mariadb_cli(&strict, "u", "pw", &["--ssl"], "select 1");
    assert!(ok && out.trim() == "1", "{err}");
}

// ---------------------------------------------------------------- Python drivers

/// Runs `script` with `python3 -c`; the script prints one line: `OK <result>` or `ERR <code>`.
fn python(module: &str, pip: &str, script: &str) -> String {
    let python = require_python_module(module, pip);
    let out = run_with_deadline(
        Command::new(python).args(["-c", script]),
        Duration::from_secs(60),
    )
    .expect("python ran");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout.trim().to_owned()
}

/// A PyMySQL connection with keyword arguments `kwargs` (Python syntax), running `select user()`
/// and the `people` query.
fn pymysql(server: &TestServer, user: &str, password: &str, kwargs: &str) -> String {
    let script = format!(
        r#"
import pymysql
try:
    c = pymysql.connect(host="127.0.0.1", port={port}, user={user:?}, password={password:?},
                        connect_timeout=10{kwargs})
    cur = c.cursor()
    cur.execute("select user()")
    u = cur.fetchone()[0]
    cur.execute("select * from people")
    rows = cur.fetchall()
    cur.execute("select 1")
    one = cur.fetchone()[0]
    tls = c._sock.__class__.__name__
    print("OK", u, rows, one, tls)
except pymysql.err.OperationalError as e:
    print("ERR", e.args[0])
"#,
        port = server.port(),
    );
    python("pymysql", "PyMySQL", &script)
}

#[test]
fn pymysql_native_with_and_without_tls() {
    let server = TestServer::builder().user("u", "pw", NATIVE).tls().start();
    assert_eq!(
        pymysql(&server, "u", "pw", PLAIN),
        "OK u@127.0.0.1 ((1, 'alice'), (2, None)) 1 socket"
    );
    let ca = server.cert_path().unwrap().display().to_string();
    let tls = format!(r#", ssl={{"ca": {ca:?}, "check_hostname": False}}"#);
    assert_eq!(
        pymysql(&server, "u", "pw", &tls),
        "OK u@127.0.0.1 ((1, 'alice'), (2, None)) 1 SSLSocket"
    );
    assert_eq!(pymysql(&server, "u", "bad", PLAIN), "ERR 1045");
    assert_eq!(pymysql(&server, "u", "bad", &tls), "ERR 1045");
    assert_eq!(pymysql(&server, "nobody", "pw", PLAIN), "ERR 1045");
}

#[test]
fn pymysql_caching_sha2_full_path_over_tls_then_fast_path() {
    // The greeting names caching_sha2_password, so PyMySQL starts with it (no switch).
    let server = TestServer::builder()
        .user("s", "pw", SHA2)
        .tls()
        .default_plugin(SHA2)
        .start();
    // Not cached yet: without TLS or an RSA key the full path cannot run.
    assert_eq!(pymysql(&server, "s", "pw", PLAIN), "ERR 1045");
    let ca = server.cert_path().unwrap().display().to_string();
    let tls = format!(r#", ssl={{"ca": {ca:?}, "check_hostname": False}}"#);
    assert_eq!(pymysql(&server, "s", "bad", &tls), "ERR 1045");
    assert_eq!(
        pymysql(&server, "s", "pw", &tls),
        "OK s@127.0.0.1 ((1, 'alice'), (2, None)) 1 SSLSocket"
    );
    // Cached now: the fast path works on plain TCP.
    assert_eq!(
        pymysql(&server, "s", "pw", PLAIN),
        "OK s@127.0.0.1 ((1, 'alice'), (2, None)) 1 socket"
    );
    assert_eq!(pymysql(&server, "s", "bad", PLAIN), "ERR 1045");
}

#[test]
fn pymysql_caching_sha2_full_path_over_rsa() {
    // The greeting names mysql_native_password: PyMySQL is switched to caching_sha2_password.
    let server = TestServer::builder().user("s", "pw", SHA2).rsa().start();
    // Key requested from the server (0x02, then the PEM).
    assert_eq!(
        pymysql(&server, "s", "pw", PLAIN),
        "OK s@127.0.0.1 ((1, 'alice'), (2, None)) 1 socket"
    );
    assert_eq!(pymysql(&server, "s", "bad", PLAIN), "ERR 1045");

    // Key given to the client up front.
    let server = TestServer::builder()
        .user("s", "pw", SHA2)
        .rsa()
        .default_plugin(SHA2)
        .start();
    let key = server.rsa_public_key_path().unwrap().display().to_string();
    let kw = format!(r#", server_public_key=open({key:?}, "rb").read()"#);
    assert_eq!(
        pymysql(&server, "s", "pw", &kw),
        "OK s@127.0.0.1 ((1, 'alice'), (2, None)) 1 socket"
    );
    assert_eq!(pymysql(&server, "s", "wrong", &kw), "ERR 1045");
}

fn connector(server: &TestServer, user: &str, password: &str, kwargs: &str) -> String {
    let script = format!(
        r#"
import mysql.connector
try:
    c = mysql.connector.connect(host="127.0.0.1", port={port}, user={user:?}, password={password:?},
                                use_pure=True, connection_timeout=10{kwargs})
    cur = c.cursor()
    cur.execute("select user()")
    u = cur.fetchone()[0]
    cur.execute("select * from people")
    rows = cur.fetchall()
    print("OK", u, rows, c._socket.__class__.__name__)
except mysql.connector.Error as e:
    print("ERR", e.errno)
"#,
        port = server.port(),
    );
    python("mysql.connector", "mysql-connector-python", &script)
}

#[test]
fn connector_python_native_and_caching_sha2_over_tls() {
    let server = TestServer::builder()
        .user("u", "pw", NATIVE)
        .user("s", "pw", SHA2)
        .tls()
        .start();
    let plain = ", ssl_disabled=True";
    let ok_plain = connector(&server, "u", "pw", plain);
    assert!(
        ok_plain.starts_with("OK u@127.0.0.1 [(1, 'alice'), (2, None)]"),
        "{ok_plain}"
    );
    assert_eq!(connector(&server, "u", "bad", plain), "ERR 1045");

    let ca = server.cert_path().unwrap().display().to_string();
    let tls = format!(r#", ssl_ca={ca:?}, ssl_verify_cert=False"#);
    let ok_tls = connector(&server, "u", "pw", &tls);
    assert!(ok_tls.starts_with("OK u@127.0.0.1"), "{ok_tls}");
    let sha_tls = format!(r#"{tls}, auth_plugin="caching_sha2_password""#);
    let ok_sha = connector(&server, "s", "pw", &sha_tls);
    assert!(
        ok_sha.starts_with("OK s@127.0.0.1 [(1, 'alice'), (2, None)]"),
        "{ok_sha}"
    );
    assert_eq!(connector(&server, "s", "bad", &sha_tls), "ERR 1045");
}

// ---------------------------------------------------------------- Rust `mysql` crate

/// What `rust_mysql` read: the server version, then the rows of its test query.
type ServerRows = (String, Vec<(i64, Option<String>)>);

fn rust_mysql(
    server: &TestServer,
    user: &str,
    password: &str,
    tls: bool,
) -> Result<ServerRows, mysql::Error> {
    use mysql::prelude::Queryable;
    let mut opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(server.port())
        .user(Some(user))
        .pass(Some(password))
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        // Otherwise the crate asks for @@socket on loopback and panics on the NULL answer.
        .prefer_socket(false);
    if tls {
        opts = opts.ssl_opts(Some(
            mysql::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ));
    }
    let mut conn = mysql::Conn::new(opts)?;
    let user: Option<String> = conn.query_first("select user()")?;
    let rows: Vec<(i64, Option<String>)> = conn.query("select * from people")?;
    let one: Option<i64> = conn.query_first("SELECT 1")?;
    assert_eq!(one, Some(1));
    conn.select_db("db1")?;
    let db: Option<String> = conn.query_first("select database()")?;
    assert_eq!(db.as_deref(), Some("db1"));
    Ok((user.unwrap_or_default(), rows))
}

fn access_denied(result: Result<ServerRows, mysql::Error>) -> bool {
    matches!(result, Err(mysql::Error::MySqlError(e)) if e.code == 1045)
}

#[test]
fn rust_mysql_crate_native_and_caching_sha2_with_and_without_tls() {
    let server = TestServer::builder()
        .user("u", "pw", NATIVE)
        .user("s", "pw", SHA2)
        .tls()
        .rsa()
        .start();
    let expected_rows = vec![(1, Some("alice".to_owned())), (2, None)];
    for tls in [false, true] {
        let (user, rows) = rust_mysql(&server, "u", "pw", tls).expect("native login");
        assert_eq!(user, "u@127.0.0.1");
        assert_eq!(rows, expected_rows);
        assert!(
            access_denied(rust_mysql(&server, "u", "bad", tls)),
            "tls={tls}"
        );
        // caching_sha2: full path over TLS (cleartext) or RSA (key requested), then cached.
        let (user, rows) = rust_mysql(&server, "s", "pw", tls).expect("caching_sha2 login");
        assert_eq!(user, "s@127.0.0.1");
        assert_eq!(rows, expected_rows);
        assert!(
            access_denied(rust_mysql(&server, "s", "bad", tls)),
            "tls={tls}"
        );
    }
}
