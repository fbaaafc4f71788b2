//! A private MariaDB server per test: started as a plain process on a free loopback port with its
//! own temporary data directory, and always torn down — [`Drop`] stops the process and removes the
//! directory, also when the test panics.
//!
//! SQL helpers go through the `mariadb` command-line client over the unix socket, so the harness
//! does not depend on ferry's own code.
//!
//! ```no_run
//! let db = ferry_tests::MariaDb::builder().server_id(7).start();
//! db.create_user("app", "secret");
//! db.create_database("shop");
//! assert_eq!(db.query_scalar("SELECT @@server_id"), "7");
//! // connect a client under test to db.addr() ...
//! ```

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::require_executable;
use crate::command::run_with_deadline;
use crate::datadir::{copy_tree_sparse, template};

/// How long a server gets to become ready unless the builder says otherwise.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to shut down after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one SQL helper call may take.
const SQL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times start-up is tried with a fresh port when the port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How much of the error log a failure message quotes.
const LOG_TAIL_LINES: usize = 40;

/// Options for a server; [`MariaDbBuilder::start`] starts it.
#[derive(Debug, Clone)]
pub struct MariaDbBuilder {
    server_id: u32,
    args: Vec<OsString>,
    ready_timeout: Duration,
}

impl Default for MariaDbBuilder {
    fn default() -> Self {
        Self {
            server_id: 1,
            args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

impl MariaDbBuilder {
    /// Sets `@@server_id` (default 1), e.g. to tell backends apart in a test.
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = id;
        self
    }

    /// Adds one `mariadbd` argument, e.g. `"--max-connections=500"`. Later arguments override the
    /// harness's defaults.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several `mariadbd` arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Serves TLS with this PEM certificate and key (`--ssl-cert`, `--ssl-key`).
    pub fn ssl(self, cert: &Path, key: &Path) -> Self {
        self.arg(format!("--ssl-cert={}", cert.display()))
            .arg(format!("--ssl-key={}", key.display()))
    }

    /// How long to wait for the server to accept connections (default 30 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the server and waits until it answers SQL.
    ///
    /// Panics when `mariadbd`, `mariadb-install-db` or `mariadb` is missing (naming the Debian
    /// package), or when the server does not come up (quoting the end of its error log).
    pub fn start(self) -> MariaDb {
        let mariadbd = require_executable("mariadbd", "mariadb-server");
        let install_db = require_executable("mariadb-install-db", "mariadb-server");
        let client = require_executable("mariadb", "mariadb-client");
        let template = template(&install_db, &mariadbd);

        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("ferry-mariadb-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
            let datadir = dir.path().join("data");
            // Its own tmpdir: servers sharing /tmp have lost each other's temporary-table files.
            std::fs::create_dir(dir.path().join("tmp"))
                .unwrap_or_else(|e| panic!("cannot create a tmpdir: {e}"));
            copy_tree_sparse(&template, &datadir).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    template.display(),
                    datadir.display()
                )
            });
            let mut db = MariaDb {
                child: None,
                port: free_port(),
                socket: datadir.join("sock"),
                datadir,
                mariadbd: mariadbd.clone(),
                client: client.clone(),
                server_id: self.server_id,
                extra_args: self.args.clone(),
                ready_timeout: self.ready_timeout,
                _dir: dir,
            };
            match db.spawn_and_wait() {
                Ok(()) => return db,
                Err(StartFailure::PortTaken(log)) => last_failure = log,
                Err(StartFailure::Other(message)) => panic!("{message}"),
            }
            // `db` drops here: the failed attempt's process and directory go with it.
        }
        panic!(
            "mariadbd found its port taken {PORT_ATTEMPTS} times; last error log:\n{last_failure}"
        )
    }
}

/// A running private MariaDB server; dropping it stops the server and deletes its data.
///
/// The server listens on `127.0.0.1:`[`port`](Self::port) and on [`socket_path`](Self::socket_path);
/// `root` has no password. Several can run at once.
pub struct MariaDb {
    child: Option<Child>,
    port: u16,
    socket: PathBuf,
    datadir: PathBuf,
    mariadbd: PathBuf,
    client: PathBuf,
    server_id: u32,
    extra_args: Vec<OsString>,
    ready_timeout: Duration,
    /// Removes the data directory when dropped, after [`Drop::drop`] stopped the server.
    _dir: TempDir,
}

enum StartFailure {
    /// Another process bound the port between our choosing it and the server binding it.
    PortTaken(String),
    Other(String),
}

/// A SQL statement run by the `mariadb` client failed.
#[derive(Debug, Clone)]
pub struct SqlError {
    /// The statement(s) sent.
    pub sql: String,
    /// The client's exit status; `None` if it was killed for taking too long.
    pub status: Option<ExitStatus>,
    /// What the client printed on standard error (the server's error message).
    pub stderr: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(
                f,
                "`{}` failed ({status}): {}",
                self.sql,
                self.stderr.trim()
            ),
            None => write!(f, "`{}` did not finish: {}", self.sql, self.stderr.trim()),
        }
    }
}

impl std::error::Error for SqlError {}

impl fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDb")
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("port", &self.port)
            .field("datadir", &self.datadir)
            .finish_non_exhaustive()
    }
}

impl MariaDb {
    /// Starts a server with default options (see [`MariaDbBuilder::start`]).
    pub fn start() -> MariaDb {
        Self::builder().start()
    }

    /// Options for a server.
    pub fn builder() -> MariaDbBuilder {
        MariaDbBuilder::default()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The data directory (removed on drop).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The server's `@@server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's process id, or `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the server's error log.
    pub fn error_log_tail(&self, lines: usize) -> String {
        tail(&self.datadir.join("error.log"), lines)
    }

    /// Runs `sql` (one or more `;`-separated statements) as root over the unix socket and returns
    /// what the client printed: rows as tab-separated lines without column names (`-N -B`), with
    /// tabs, newlines and backslashes inside values escaped, and NULL as `NULL`.
    pub fn try_sql(&self, sql: &str) -> Result<String, SqlError> {
        let out = run_with_deadline(
            Command::new(&self.client)
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "-N", "-B", "--connect-timeout=10", "-e", sql]),
            SQL_TIMEOUT,
        );
        match out {
            Ok(o) if o.status.success() => Ok(o.stdout),
            Ok(o) => Err(SqlError {
                sql: sql.to_owned(),
                status: Some(o.status),
                stderr: o.stderr,
            }),
            Err(e) => Err(SqlError {
                sql: sql.to_owned(),
                status: None,
                stderr: e.to_string(),
            }),
        }
    }

    /// Like [`try_sql`](Self::try_sql), but panics with the server's message on error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a query that returns exactly one value and returns it (`NULL` for SQL NULL). Panics on
    /// error and when the result is not one row of one column.
    pub fn query_scalar(&self, sql: &str) -> String {
        let out = self.sql(sql);
        let value = out.strip_suffix('\n').unwrap_or(&out);
        assert!(
            !value.contains('\n') && !value.contains('\t') && !out.is_empty(),
            "`{sql}` returned {out:?}, not one row of one column"
        );
        value.to_owned()
    }

    /// Creates `name`@`%` with a `mysql_native_password` password and grants it everything.
    pub fn create_user(&self, name: &str, password: &str) {
        let (name, password) = (quote_string(name), quote_string(password));
        self.sql(&format!(
            "CREATE USER {name}@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD({password}); \
             GRANT ALL PRIVILEGES ON *.* TO {name}@'%' WITH GRANT OPTION"
        ));
    }

    /// The `mysql_native_password` hash stored for `name`@`%` (`*` and 40 hex digits), as ferry's
    /// `proxy` auth mode takes it.
    pub fn user_password_hash(&self, name: &str) -> String {
        self.query_scalar(&format!(
            "SELECT authentication_string FROM mysql.user WHERE user = {} AND host = '%'",
            quote_string(name)
        ))
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        self.sql(&format!("CREATE DATABASE {}", quote_identifier(name)));
    }

    /// Stops the server gracefully (SIGTERM, then SIGKILL after 10 s), keeping its data so that
    /// [`restart`](Self::restart) can start it again. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, STOP_TIMEOUT);
        }
    }

    /// Kills the server with SIGKILL, as a crash would, keeping its data.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::ZERO);
        }
    }

    /// Freezes the server with SIGSTOP, as a hung host would: its sockets stay open and a TCP
    /// connect still succeeds (the kernel accepts it), but nothing answers. [`thaw`](Self::thaw)
    /// lets it run again; [`stop`](Self::stop) and drop work on a frozen server too.
    ///
    /// Panics when the server is not running.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a server frozen by [`freeze`](Self::freeze) run again (SIGCONT). Does nothing when it
    /// is stopped.
    pub fn thaw(&self) {
        if self.child.is_some() {
            self.signal(rustix::process::Signal::CONT);
        }
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = self
            .pid()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
            .unwrap_or_else(|| panic!("signal {signal:?}: the server is not running"));
        // The child is not reaped while `self.child` holds it: the pid is still the server's.
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("signal {signal:?} to mariadbd {}: {e}", pid.as_raw_pid()));
    }

    /// Stops the server if it is running and starts it again on the same port and data.
    ///
    /// Panics when it does not come back.
    pub fn restart(&mut self) {
        self.stop();
        match self.spawn_and_wait() {
            Ok(()) => {}
            Err(StartFailure::PortTaken(log)) => {
                panic!("mariadbd could not get its port {} back:\n{log}", self.port)
            }
            Err(StartFailure::Other(message)) => panic!("{message}"),
        }
    }

    fn server_args(&self) -> Vec<OsString> {
        let d = &self.datadir;
        let mut args: Vec<OsString> = [
            // --no-defaults must come first: no /etc/mysql or ~/.my.cnf may leak in.
            "--no-defaults".to_owned(),
            format!("--datadir={}", d.display()),
            format!("--tmpdir={}", d.with_file_name("tmp").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--socket={}", self.socket.display()),
            "--user=root".to_owned(),
            format!("--log-error={}", d.join("error.log").display()),
            format!("--pid-file={}", d.join("mariadbd.pid").display()),
            format!("--server-id={}", self.server_id),
            // No DNS on this machine; client hosts are addresses, so 'user'@'%' matches.
            "--skip-name-resolve".to_owned(),
            // Tests need no durability across a machine crash.
            "--innodb-flush-log-at-trx-commit=2".to_owned(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let stdio_path = self.datadir.join("mariadbd.stdio");
        let stdio = File::create(&stdio_path)
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| {
                StartFailure::Other(format!("cannot create {}: {e}", stdio_path.display()))
            })?;
        let args = self.server_args();
        // The server never inherits the test's stdio: an orphan holding CI's pipe would hang it.
        let child = Command::new(&self.mariadbd)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdio.0)
            .stderr(stdio.1)
            .spawn()
            .map_err(|e| {
                StartFailure::Other(format!("cannot start {}: {e}", self.mariadbd.display()))
            })?;
        self.child = Some(child);

        let deadline = Instant::now() + self.ready_timeout;
        let why = loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                break format!("mariadbd exited during start-up ({status})");
            }
            if self.socket.exists()
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok()
                && self.try_sql("SELECT 1").is_ok()
            {
                // The TCP port could belong to someone else; make sure it is this server's.
                match self.try_sql("SELECT @@port") {
                    Ok(port) if port.trim() == self.port.to_string() => return Ok(()),
                    other => break format!("server on the socket reports port {other:?}"),
                }
            }
            if Instant::now() >= deadline {
                break format!("not ready after {:?}", self.ready_timeout);
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.stop();
        let log = format!(
            "{}\n--- stdout/stderr:\n{}",
            self.error_log_tail(LOG_TAIL_LINES),
            tail(&stdio_path, LOG_TAIL_LINES)
        );
        if log.contains("Address already in use") || log.contains("Bind on TCP/IP port") {
            return Err(StartFailure::PortTaken(log));
        }
        Err(StartFailure::Other(format!(
            "MariaDB on port {} failed to start: {why}\ncommand: {} {}\n--- error log (last \
             {LOG_TAIL_LINES} lines):\n{log}",
            self.port,
            self.mariadbd.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
        )))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // Runs during unwinding too; `terminate` never panics (a second panic would abort).
        self.stop();
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child so its pid is released.
fn terminate(mut child: Child, grace: Duration) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let (Some(pid), false) = (pid, grace.is_zero()) {
        // The child is not reaped yet, so its pid cannot have been reused by another process.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        // A frozen server (`MariaDb::freeze`) acts on SIGTERM only once it runs again.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A port on 127.0.0.1 that was free a moment ago: bind port 0, read it, release it. A server
/// that loses the race fails to bind and [`MariaDbBuilder::start`] tries another.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
}

/// The last `lines` lines of the file at `path`, or a note that it could not be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

/// `s` as a single-quoted SQL string literal.
pub fn quote_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `s` as a backquoted SQL identifier.
pub fn quote_identifier(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote_string("it's"), "'it''s'");
        assert_eq!(quote_string(r"a\b"), r"'a\\b'");
        assert_eq!(quote_identifier("we`ird"), "`we``ird`");
    }

    #[test]
    fn free_ports_are_nonzero_and_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port was just free");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert!(tail(&dir.path().join("missing"), 2).contains("unreadable"));
    }
}
