//! What the proxy test files share: the backend every scenario starts, the client options with
//! timeouts everywhere, and running an inline Python script that answers in JSON.

// Each test file uses only some of these.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use ferry_tests::{require_python_module, run_with_deadline, FerryProcess, MariaDb};

/// The application user every backend has (`GRANT ALL`, `mysql_native_password`).
pub(crate) const USER: &str = "app";
/// Its password.
pub(crate) const PASSWORD: &str = "s3cret";
/// Connect, read and write timeout of every Rust client: nothing may hang a test.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Options for the Rust `mysql` crate connecting to ferry, with timeouts and a LOCAL INFILE
/// handler serving any file the server asks for.
pub(crate) fn mysql_opts(ferry: &FerryProcess, user: &str, password: &str) -> mysql::OptsBuilder {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(ferry.port())
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(CLIENT_TIMEOUT))
        .read_timeout(Some(CLIENT_TIMEOUT))
        .write_timeout(Some(CLIENT_TIMEOUT))
}

/// Runs `script` with `python3 -c` and `args` (available as `sys.argv[1:]`), after checking that
/// `module` imports (failing with the pip package to install); the script's last line of output
/// must be JSON, which is returned. Panics with the script's stderr if it fails or runs > 120 s.
pub(crate) fn python_json(
    module: &str,
    pip: &str,
    script: &str,
    args: &[String],
) -> serde_json::Value {
    let python = require_python_module(module, pip);
    let out = run_with_deadline(
        Command::new(python).arg("-c").arg(script).args(args),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("python ({module}): {e}"));
    assert!(
        out.status.success(),
        "python ({module}) failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    let last = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("python ({module}) printed no JSON ({e}): {}", out.stdout))
}

/// The `mysql` crate's server error code, if `e` is one.
pub(crate) fn mysql_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(m) => Some(m.code),
        _ => None,
    }
}
