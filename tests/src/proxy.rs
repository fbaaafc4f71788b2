//! The real ferry proxy as a child process, for integration tests: [`FerryProcess`] writes a TOML
//! configuration into a temporary directory, starts the driver's binary on free loopback ports,
//! waits until `GET /health` answers 200, captures its log, and kills it on drop.
//!
//! Tests run against every driver in [`Driver::ALL`] through [`driver_tests!`](crate::driver_tests),
//! which turns one `fn scenario(driver: Driver)` into one `#[test]` per driver.
//!
//! ```no_run
//! use ferry_tests::{Driver, FerryProcess, MariaDb};
//! let db = MariaDb::start();
//! let ferry = FerryProcess::builder(Driver::Mio).backend("db1", db.addr()).start();
//! // connect a client to ferry.addr() ...
//! ```
//!
//! **Adding a driver** (as `std`, the `ferry-std` example of `ferry-core`, was): add its variant
//! to [`Driver`] and to [`Driver::ALL`], its name in [`Driver::name`], its `CargoTarget` arm in
//! [`Driver::cargo_target`] (`example: true` for a cargo example), and its line in
//! [`driver_tests!`]. Its program must take `--config FILE` with the same TOML as the `ferry`
//! binary.

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::require_executable;
use crate::command::{run_with_deadline, CommandOutput};

/// How long ferry gets to answer `/health` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long building a driver's program may take (a cold build of the workspace).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How many times start-up is tried with fresh ports when a port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;
/// How much of ferry's log a failure message quotes.
const LOG_TAIL_LINES: usize = 60;
/// Timeout of one admin HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of one `mariadb` CLI run through ferry.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one `mariadb-admin` command (each is a single quick round trip).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Which proxy program runs the core: each is tested with the same scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Driver {
    /// The `ferry` binary of `ferry-mio`: the mio event loop.
    Mio,
    /// The `ferry-smol` binary of `ferry-smol`: one smol task per session.
    Smol,
    /// The `ferry-std` example of `ferry-core`: blocking `std::net` sockets, a thread per
    /// connection.
    Std,
}

/// A program cargo builds: `cargo build -p <package> --bin/--example <name>`.
#[derive(Debug, Clone, Copy)]
struct CargoTarget {
    package: &'static str,
    name: &'static str,
    example: bool,
}

impl Driver {
    /// Every driver the proxy tests run against.
    pub const ALL: &'static [Driver] = &[Driver::Mio, Driver::Smol, Driver::Std];

    /// A short lowercase name (`"mio"`).
    pub fn name(self) -> &'static str {
        match self {
            Driver::Mio => "mio",
            Driver::Smol => "smol",
            Driver::Std => "std",
        }
    }

    fn cargo_target(self) -> CargoTarget {
        match self {
            Driver::Mio => CargoTarget {
                package: "ferry-mio",
                name: "ferry",
                example: false,
            },
            Driver::Smol => CargoTarget {
                package: "ferry-smol",
                name: "ferry-smol",
                example: true,
            },
            Driver::Std => CargoTarget {
                package: "ferry-core",
                name: "ferry-std",
                example: true,
            },
        }
    }

    /// The environment variable that names a prebuilt program instead of building one
    /// (`FERRY_TEST_BIN_MIO`).
    pub fn env_override(self) -> String {
        format!("FERRY_TEST_BIN_{}", self.name().to_uppercase())
    }

    /// The driver's program: `$FERRY_TEST_BIN_<NAME>` if set, else built (once per test process)
    /// with cargo in the profile the tests were built with, so it is never stale.
    ///
    /// Panics with cargo's output when the build fails.
    pub fn program(self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.env_override()) {
            return PathBuf::from(path);
        }
        static BUILT: OnceLock<std::sync::Mutex<Vec<(Driver, PathBuf)>>> = OnceLock::new();
        let built = BUILT.get_or_init(Default::default);
        // Held while building: two tests wanting the same program build it once.
        let mut built = built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, path)) = built.iter().find(|(d, _)| *d == self) {
            return path.clone();
        }
        let path = cargo_build(self.cargo_target());
        built.push((self, path.clone()));
        path
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `#[test]` per driver for each scenario `fn name(driver: Driver)`: `driver_tests!(a, b)`
/// makes tests `a::mio`, `a::smol`, `a::std`, `b::mio`, ... (filter by driver with
/// `cargo test ... std`).
#[macro_export]
macro_rules! driver_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn mio() {
                    super::$name($crate::Driver::Mio)
                }
                #[test]
                fn smol() {
                    super::$name($crate::Driver::Smol)
                }
                #[test]
                fn std() {
                    super::$name($crate::Driver::Std)
                }
            }
        )+
    };
}

/// Builds `target` with the cargo running these tests, in their profile, and returns the path
/// cargo reports for the executable.
fn cargo_build(target: CargoTarget) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "--message-format=json-render-diagnostics",
            "-p",
            target.package,
        ])
        .arg(if target.example { "--example" } else { "--bin" })
        .arg(target.name);
    match test_profile().as_deref() {
        None | Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let out = run_with_deadline(&mut cmd, BUILD_TIMEOUT)
        .unwrap_or_else(|e| panic!("cargo build of {target:?} did not finish: {e}"));
    assert!(
        out.status.success(),
        "cargo build of {target:?} failed ({}):\n{}",
        out.status,
        out.stderr
    );
    out.stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == target.name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built {target:?} but reported no executable"))
}

/// The cargo profile directory the running test executable lives in (`target/<profile>/deps/`).
fn test_profile() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.file_name()?.to_str()?.to_owned())
}

/// Who checks client passwords, as `[auth]` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSetup {
    /// `mode = "passthrough"`: the backend does.
    Passthrough,
    /// `mode = "proxy"`: ferry does, against these `(name, password-hash)` users.
    Proxy(Vec<(String, String)>),
}

/// Options for a ferry process; [`start`](Self::start) starts it.
#[derive(Debug, Clone)]
pub struct FerryBuilder {
    driver: Driver,
    /// Name and `addr` text (an IP address, or a host name and port).
    backends: Vec<(String, String)>,
    /// Extra keys of `[[backends]]` entries, by backend name.
    backend_keys: Vec<(String, String)>,
    auth: AuthSetup,
    tls: Option<bool>,
    workers: usize,
    /// Extra keys of `[proxy]`.
    proxy_toml: String,
    /// Extra keys of `[health]`.
    health_toml: String,
    extra_toml: String,
    /// Extra keys of `[admin]`.
    admin_toml: String,
    /// `[admin] tls` with the generated certificate.
    admin_tls: bool,
    /// Extra command-line arguments and environment variables.
    args: Vec<String>,
    env: Vec<(String, String)>,
    rust_log: String,
    health_interval: Duration,
    open_files: Option<(u64, u64)>,
}

impl FerryBuilder {
    /// Adds a `[[backends]]` entry.
    pub fn backend(mut self, name: &str, addr: SocketAddr) -> Self {
        self.backends.push((name.to_owned(), addr.to_string()));
        self
    }

    /// Adds a `[[backends]]` entry whose `addr` is `addr` as written (e.g. `localhost:3306`,
    /// a host name ferry resolves at each connect).
    pub fn backend_at(mut self, name: &str, addr: &str) -> Self {
        self.backends.push((name.to_owned(), addr.to_owned()));
        self
    }

    /// Adds `keys` (TOML lines) to backend `name`'s `[[backends]]` entry, e.g.
    /// `proxy-protocol = true`.
    pub fn backend_toml(mut self, name: &str, keys: &str) -> Self {
        self.backend_keys.push((name.to_owned(), keys.to_owned()));
        self
    }

    /// `[auth] mode = "proxy"` with this user (repeatable): `hash` as `mysql.user` stores it.
    pub fn proxy_user(mut self, name: &str, hash: &str) -> Self {
        let entry = (name.to_owned(), hash.to_owned());
        match &mut self.auth {
            AuthSetup::Proxy(users) => users.push(entry),
            AuthSetup::Passthrough => self.auth = AuthSetup::Proxy(vec![entry]),
        }
        self
    }

    /// Client-facing TLS with a fresh self-signed certificate for `127.0.0.1` and `localhost`
    /// (see [`FerryProcess::cert_path`]); `require` refuses clients that do not upgrade.
    pub fn tls(mut self, require: bool) -> Self {
        self.tls = Some(require);
        self
    }

    /// Event-loop threads (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds `keys` (TOML lines) to the `[proxy]` section, e.g. `max-connections = 1`.
    pub fn proxy_toml(mut self, keys: &str) -> Self {
        self.proxy_toml.push_str(keys);
        self.proxy_toml.push('\n');
        self
    }

    /// Adds `keys` (TOML lines) to the `[health]` section, e.g. `user = "monitor"`.
    pub fn health_toml(mut self, keys: &str) -> Self {
        self.health_toml.push_str(keys);
        self.health_toml.push('\n');
        self
    }

    /// TOML appended to the generated file verbatim (sections not generated: `[migration]`...).
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
        self
    }

    /// `[health] interval` (default 500 ms): a long one keeps the health checker from deciding
    /// what a test wants the sessions themselves to find out.
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// Starts the process with these soft and hard open-file limits (through util-linux's
    /// `prlimit`, which then runs ferry in its own place: the pid is ferry's).
    pub fn open_files(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Adds `keys` (TOML lines) to the `[admin]` section, e.g. `token = "..."`.
    pub fn admin_toml(mut self, keys: &str) -> Self {
        self.admin_toml.push_str(keys);
        self.admin_toml.push('\n');
        self
    }

    /// HTTPS on the admin port, with the same fresh self-signed certificate as [`Self::tls`]
    /// (see [`FerryProcess::cert_path`]); the process's own admin requests then use HTTPS.
    pub fn admin_tls(mut self) -> Self {
        self.admin_tls = true;
        self
    }

    /// Adds a command-line argument after `--config FILE` (e.g. `--log-format`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Sets an environment variable for the process (e.g. `FERRY_LOG_LEVEL`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `RUST_LOG` for the process (default `info`, or the test's own `RUST_LOG`; empty: unset
    /// for ferry, which then follows `[log] level`).
    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = filter.to_owned();
        self
    }

    fn toml(&self, listen: SocketAddr, admin: SocketAddr) -> String {
        let mut t = format!(
            "[proxy]\nlisten = \"{listen}\"\nworkers = {}\nshutdown-timeout = \"5s\"\n{}\n\
             [admin]\nlisten = \"{admin}\"\n{}{}\n\
             [health]\ninterval = \"{}ms\"\ntimeout = \"1s\"\n{}\n",
            self.workers,
            self.proxy_toml,
            self.admin_toml,
            if self.admin_tls {
                "tls = { cert = \"cert.pem\", key = \"key.pem\" }\n"
            } else {
                ""
            },
            self.health_interval.as_millis(),
            self.health_toml
        );
        for (name, addr) in &self.backends {
            t.push_str(&format!(
                "[[backends]]\nname = \"{name}\"\naddr = \"{addr}\"\n"
            ));
            for (_, keys) in self.backend_keys.iter().filter(|(n, _)| n == name) {
                t.push_str(keys);
                t.push('\n');
            }
            t.push('\n');
        }
        match &self.auth {
            AuthSetup::Passthrough => t.push_str("[auth]\nmode = \"passthrough\"\n\n"),
            AuthSetup::Proxy(users) => {
                t.push_str("[auth]\nmode = \"proxy\"\n\n");
                for (name, hash) in users {
                    t.push_str(&format!(
                        "[[auth.users]]\nname = \"{name}\"\npassword-hash = \"{hash}\"\n\n"
                    ));
                }
            }
        }
        if let Some(require) = self.tls {
            t.push_str(&format!(
                "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\nrequire = {require}\n\n"
            ));
        }
        t.push_str(&self.extra_toml);
        t
    }

    /// Starts the process and waits until `/health` answers 200.
    ///
    /// Panics (quoting ferry's log) when it exits or is not ready within 30 s.
    pub fn start(self) -> FerryProcess {
        assert!(
            !self.backends.is_empty(),
            "ferry needs at least one backend"
        );
        let program = self.driver.program();
        let dir = tempfile::Builder::new()
            .prefix("ferry-proxy-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let cert_path =
            (self.tls.is_some() || self.admin_tls).then(|| write_certificate(dir.path()));
        let admin_ca = match (&cert_path, self.admin_tls) {
            (Some(path), true) => Some(std::fs::read(path).expect("read cert.pem")),
            _ => None,
        };
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let (listen, admin) = (free_addr(), free_addr());
            let config = dir.path().join("ferry.toml");
            std::fs::write(&config, self.toml(listen, admin))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let log_path = dir.path().join("ferry.log");
            let log = File::create(&log_path)
                .and_then(|f| Ok((f.try_clone()?, f)))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
            let mut command = match self.open_files {
                None => Command::new(&program),
                Some((soft, hard)) => {
                    let mut c = Command::new("prlimit");
                    c.arg(format!("--nofile={soft}:{hard}"))
                        .arg("--")
                        .arg(&program);
                    c
                }
            };
            let child = command
                .arg("--config")
                .arg(&config)
                .args(&self.args)
                .env("RUST_LOG", &self.rust_log)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.0)
                .stderr(log.1)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut ferry = FerryProcess {
                child: Some(child),
                driver: self.driver,
                listen,
                admin,
                log_path,
                config_path: config,
                cert_path: cert_path.clone(),
                admin_ca: admin_ca.clone(),
                _dir: None,
            };
            match ferry.wait_ready() {
                Ok(()) => {
                    ferry._dir = Some(dir);
                    return ferry;
                }
                Err(log) if log.contains("in use") => {
                    ferry.kill();
                    last_log = log;
                }
                Err(log) => {
                    ferry.kill();
                    panic!(
                        "{} ({}) did not become ready:\n{log}",
                        program.display(),
                        self.driver
                    )
                }
            }
        }
        panic!("ferry found its ports taken {PORT_ATTEMPTS} times; last log:\n{last_log}")
    }
}

/// Writes a fresh self-signed certificate and key as `cert.pem` / `key.pem` into `dir`.
fn write_certificate(dir: &Path) -> PathBuf {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("rcgen self-signed certificate");
    let path = dir.join("cert.pem");
    std::fs::write(&path, cert.cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).expect("write key.pem");
    path
}

/// A running ferry process; dropping it kills the process and removes its directory. When the
/// test is panicking, the end of ferry's log is printed first.
pub struct FerryProcess {
    child: Option<Child>,
    driver: Driver,
    listen: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    config_path: PathBuf,
    cert_path: Option<PathBuf>,
    /// With HTTPS on the admin port: the certificate its requests trust.
    admin_ca: Option<Vec<u8>>,
    /// Set once started; removed after [`Drop::drop`] killed the process.
    _dir: Option<TempDir>,
}

impl fmt::Debug for FerryProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FerryProcess")
            .field("driver", &self.driver)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("listen", &self.listen)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl FerryProcess {
    /// Options for a process of `driver`: no backend yet, passthrough auth, no TLS, 2 workers.
    pub fn builder(driver: Driver) -> FerryBuilder {
        FerryBuilder {
            driver,
            backends: Vec::new(),
            backend_keys: Vec::new(),
            auth: AuthSetup::Passthrough,
            tls: None,
            workers: 2,
            proxy_toml: String::new(),
            health_toml: String::new(),
            extra_toml: String::new(),
            admin_toml: String::new(),
            admin_tls: false,
            args: Vec::new(),
            env: Vec::new(),
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            open_files: None,
            health_interval: Duration::from_millis(500),
        }
    }

    /// The driver running.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.listen.port()
    }

    /// The admin HTTP endpoint.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The PEM certificate clients can verify ferry with, when started with TLS.
    pub fn cert_path(&self) -> Option<&Path> {
        self.cert_path.as_deref()
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The process id, or `None` once it was stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything ferry logged so far (standard output and error).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("({} unreadable: {e})", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `GET path` on the admin endpoint: the status code and the body. Panics on I/O errors.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.try_http_get(path)
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.admin))
    }

    fn try_http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        match &self.admin_ca {
            None => crate::admin_http::try_http_get(self.admin, path, HTTP_TIMEOUT),
            Some(_) => {
                let request = format!(
                    "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.admin
                );
                self.admin_request(&request).map(|a| (a.status, a.body))
            }
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request) to the admin endpoint, over HTTPS when it was
    /// started with [`FerryBuilder::admin_tls`]; the answer.
    pub fn admin_request(&self, request: &str) -> std::io::Result<crate::HttpAnswer> {
        crate::admin_http::try_http_exchange(
            self.admin,
            request,
            self.admin_ca.as_deref(),
            HTTP_TIMEOUT,
        )
    }

    /// `POST path` with a JSON `body` (may be empty): the status code and the body; panics on
    /// I/O errors.
    pub fn http_post(&self, path: &str, body: &str) -> (u16, String) {
        crate::admin_http::try_http_post(self.admin, path, body, HTTP_TIMEOUT)
            .unwrap_or_else(|e| panic!("POST {path} on {}: {e}", self.admin))
    }

    /// `GET path` as JSON; panics unless the status is 200 and the body is JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.http_get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Runs the `mariadb` CLI through ferry (TCP, batch mode, no column names, 10 s connect
    /// timeout), with `extra` arguments before `-e sql`. Panics only if it cannot run or hangs.
    pub fn mariadb(&self, user: &str, password: &str, extra: &[&str], sql: &str) -> CommandOutput {
        let out = run_with_deadline(
            self.mariadb_client("mariadb", user, password)
                .args(["--batch", "--skip-column-names"])
                .args(extra)
                .arg("-e")
                .arg(sql),
            CLI_TIMEOUT,
        );
        out.unwrap_or_else(|e| panic!("mariadb through ferry ({sql}): {e}"))
    }

    /// Runs `mariadb-admin command` through ferry (TCP, 10 s connect timeout). Panics only if it
    /// cannot run or hangs.
    pub fn mariadb_admin(&self, user: &str, password: &str, command: &str) -> CommandOutput {
        let out = run_with_deadline(
            self.mariadb_client("mariadb-admin", user, password)
                .arg(command),
            ADMIN_TIMEOUT,
        );
        out.unwrap_or_else(|e| panic!("mariadb-admin {command} through ferry: {e}"))
    }

    /// `program` (from mariadb-client) connecting to ferry over TCP as `user`.
    fn mariadb_client(&self, program: &str, user: &str, password: &str) -> Command {
        let mut command = Command::new(require_executable(program, "mariadb-client"));
        command
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg("-h127.0.0.1")
            .arg(format!("-P{}", self.port()))
            .arg(format!("-u{user}"))
            .arg(format!("-p{password}"))
            .arg("--connect-timeout=10");
        command
    }

    /// Sends SIGTERM (graceful shutdown) and returns the exit status, waiting at most `limit`.
    /// Panics if it is still running then (it is killed) or was already stopped.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.take().expect("ferry was already stopped");
        crate::ChildGuard::new(child).signal_and_wait("TERM", limit)
    }

    /// Sends `signal` (a name for `kill`, e.g. `"TERM"`) and returns at once; see
    /// [`FerryProcess::wait_exit`]. Panics if it cannot be sent or ferry was stopped.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("ferry was already stopped");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// Waits at most `limit` for the process to exit (after [`FerryProcess::signal`]) and
    /// returns its status. Panics if it is still running then (it is killed) or was already
    /// stopped.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("ferry was already stopped");
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                outcome => {
                    self.kill();
                    panic!(
                        "ferry still running {limit:?} later ({outcome:?}); log:\n{}",
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it. Does nothing when already stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "exited during start-up ({status}); log:\n{}",
                        self.log_tail(LOG_TAIL_LINES)
                    ));
                }
            }
            if matches!(self.try_http_get("/health"), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no 200 from /health after {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        if thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- ferry ({}) log, last {LOG_TAIL_LINES} lines:\n{}",
                self.driver,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.kill();
    }
}

/// A loopback address whose port was free a moment ago (ferry retries if it is taken meanwhile).
fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, crate::mariadb::free_port()))
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_toml_has_every_section_asked_for() {
        let b = FerryProcess::builder(Driver::Mio)
            .backend("db1", "127.0.0.1:3306".parse().unwrap())
            .backend("db2", "127.0.0.1:3307".parse().unwrap())
            .proxy_user("app", "*ABC")
            .tls(true)
            .backend_toml("db2", "proxy-protocol = true")
            .extra_toml("[migration]\nmode = \"off\"");
        let t = b.toml(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        for needle in [
            "listen = \"127.0.0.1:1\"",
            "listen = \"127.0.0.1:2\"",
            "name = \"db2\"\naddr = \"127.0.0.1:3307\"\nproxy-protocol = true\n",
            "mode = \"proxy\"",
            "password-hash = \"*ABC\"",
            "require = true",
            "[migration]\nmode = \"off\"",
        ] {
            assert!(t.contains(needle), "{needle:?} missing from:\n{t}");
        }
    }

    #[test]
    fn every_driver_has_a_distinct_name_and_override() {
        let names: Vec<_> = Driver::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["mio", "smol", "std"]);
        assert_eq!(Driver::Mio.env_override(), "FERRY_TEST_BIN_MIO");
    }

    #[test]
    fn wait_until_reports_success_and_timeout() {
        assert!(wait_until(Duration::from_millis(10), || true));
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(100), || false));
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
