//! What the proxy test files share: the backend every scenario starts, the client options with
//! timeouts everywhere, running an inline Python script that answers in JSON, and reading and
//! steering sessions through the admin endpoint (drain, `/api/sessions`, `/metrics`).

// Each test file uses only some of these.
#![allow(dead_code)]

pub(crate) mod multiplexed;

use std::process::Command;
use std::time::Duration;

use ferry_tests::{
    require_python_module, run_with_deadline, wait_until, Driver, FerryBuilder, FerryProcess,
    MariaDb,
};
use serde_json::{json, Value as Json};

/// The application user every backend has (`GRANT ALL`, `mysql_native_password`).
pub(crate) const USER: &str = "app";
/// Its password.
pub(crate) const PASSWORD: &str = "s3cret";
/// Connect, read and write timeout of every Rust client: nothing may hang a test.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a migration may take to show in `/api/sessions` (it runs in milliseconds; the
/// balancer's retry after a failure takes 3 s).
pub(crate) const MOVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Replay migration on, rebalancing off: sessions move only when a test says so (a drain, a
/// migrate request).
pub(crate) const REPLAY_NO_REBALANCE: &str =
    "[migration]\nmode = \"replay\"\nrebalance-max-moves = 0\n";

/// A private MariaDB with `@@server_id = server_id`, LOCAL INFILE allowed, 64 MiB packets, and
/// [`USER`] created.
pub(crate) fn backend(server_id: u32) -> MariaDb {
    let db = MariaDb::builder()
        .server_id(server_id)
        .args(["--local-infile=1", "--max-allowed-packet=64M"])
        .start();
    db.create_user(USER, PASSWORD);
    db
}

/// The second account of [`backend_with_reader`]: may read everything, change nothing (the
/// target of the COM_CHANGE_USER tests).
pub(crate) const READER: &str = "reader";
/// Its password.
pub(crate) const READER_PASSWORD: &str = "r3ad-only";

/// [`backend`] with [`READER`] created too.
pub(crate) fn backend_with_reader(server_id: u32) -> MariaDb {
    let db = backend(server_id);
    db.sql(&format!(
        "CREATE USER {READER}@'%' IDENTIFIED VIA mysql_native_password \
         USING PASSWORD('{READER_PASSWORD}'); GRANT SELECT ON *.* TO {READER}@'%'"
    ));
    db
}

/// ferry (started) in front of `db` alone, as `db1`: passthrough auth, or proxy auth knowing
/// [`USER`] and [`READER`] with `db`'s hashes.
pub(crate) fn ferry_over(driver: Driver, db: &MariaDb, proxy_auth: bool) -> FerryProcess {
    let mut builder = FerryProcess::builder(driver).backend("db1", db.addr());
    if proxy_auth {
        builder = builder
            .proxy_user(USER, &db.user_password_hash(USER))
            .proxy_user(READER, &db.user_password_hash(READER));
    }
    builder.start()
}

/// Options for the Rust `mysql` crate connecting to ferry, with timeouts and a LOCAL INFILE
/// handler serving any file the server asks for.
pub(crate) fn mysql_opts(ferry: &FerryProcess, user: &str, password: &str) -> mysql::OptsBuilder {
    client_opts(ferry.port(), user, password)
}

/// A `mysql` crate connection to ferry as the test user.
pub(crate) fn connect(ferry: &FerryProcess) -> mysql::Result<mysql::Conn> {
    mysql::Conn::new(mysql_opts(ferry, USER, PASSWORD))
}

/// Options for the Rust `mysql` crate connecting to 127.0.0.1:`port` (ferry or a backend
/// directly), with timeouts.
pub(crate) fn client_opts(port: u16, user: &str, password: &str) -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(CLIENT_TIMEOUT))
        .read_timeout(Some(CLIENT_TIMEOUT))
        .write_timeout(Some(CLIENT_TIMEOUT))
}

/// ferry (not started yet) in front of `db1` and `db2`, named so, with proxy auth for [`USER`]:
/// the two backends a migration test moves sessions between.
pub(crate) fn proxy_over_pair(driver: Driver, db1: &MariaDb, db2: &MariaDb) -> FerryBuilder {
    FerryProcess::builder(driver)
        .backend("db1", db1.addr())
        .backend("db2", db2.addr())
        .proxy_user(USER, &db1.user_password_hash(USER))
}

/// `POST /api/backends/{backend}/drain` (or `undrain`); panics unless 200.
pub(crate) fn drain(ferry: &FerryProcess, backend: &str, on: bool) {
    let action = if on { "drain" } else { "undrain" };
    let (status, body) = ferry.http_post(&format!("/api/backends/{backend}/{action}"), "");
    assert_eq!(status, 200, "{action} {backend}: {body}");
}

/// Session `id`'s entry in `/api/sessions`.
pub(crate) fn session(ferry: &FerryProcess, id: u32) -> Json {
    let all = ferry.api("/api/sessions");
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == json!(id)).cloned())
        .unwrap_or_else(|| panic!("session {id} not in /api/sessions: {all}"))
}

/// Session `id`'s backend in `/api/sessions`.
pub(crate) fn session_backend(ferry: &FerryProcess, id: u32) -> String {
    session(ferry, id)["backend"]
        .as_str()
        .unwrap_or_else(|| panic!("session {id} has no backend"))
        .to_owned()
}

/// Waits until session `id` is on `backend`; panics with the session list otherwise.
pub(crate) fn wait_on(ferry: &FerryProcess, id: u32, backend: &str) {
    let moved = wait_until(MOVE_TIMEOUT, || session_backend(ferry, id) == backend);
    assert!(
        moved,
        "session {id} did not reach {backend}: {}",
        ferry.api("/api/sessions")
    );
}

/// One sample of `/metrics` (`name{labels}` exactly as written there), 0 if absent.
pub(crate) fn metric(ferry: &FerryProcess, sample: &str) -> f64 {
    let (status, text) = ferry.http_get("/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

/// The sum of every sample of metric `name` in `/metrics` (with any labels), `None` if absent.
pub(crate) fn metric_sum(ferry: &FerryProcess, name: &str) -> Option<f64> {
    let (status, text) = ferry.http_get("/metrics");
    assert_eq!(status, 200, "{text}");
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Runs `script` with `python3 -c` and `args` (available as `sys.argv[1:]`), after checking that
/// `module` imports (failing with the pip package to install); see [`client_json`].
pub(crate) fn python_json(
    module: &str,
    pip: &str,
    script: &str,
    args: &[String],
) -> serde_json::Value {
    let python = require_python_module(module, pip);
    client_json(
        &format!("python ({module})"),
        Command::new(python).arg("-c").arg(script).args(args),
    )
}

/// Runs a client program whose last line of output is JSON, and returns that. Panics with its
/// output if it fails, prints no JSON or runs over 120 s.
pub(crate) fn client_json(what: &str, command: &mut Command) -> serde_json::Value {
    let out = run_with_deadline(command, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    let last = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {}", out.stdout))
}

/// The `mysql` crate's server error code, if `e` is one.
pub(crate) fn mysql_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(m) => Some(m.code),
        _ => None,
    }
}
