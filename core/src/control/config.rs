//! The `ferry` configuration: the TOML file as written ([`ConfigFile`]), and the checked,
//! typed form the proxy runs with ([`Config`]).
//!
//! Loading is two steps so that command-line flags can override the file before anything is
//! checked: [`ConfigFile::load`] (or [`ConfigFile::parse`]) reads the TOML, refusing unknown keys,
//! then [`Config::from_file`] applies the defaults and checks everything, naming the key and the
//! reason of each problem (`backends[1].addr: invalid address "x": missing port`). Nothing here depends
//! on a driver: every driver uses the same types.
//!
//! ```toml
//! [proxy]
//! listen = "127.0.0.1:6000"      # default
//! workers = 2                     # default: the number of cores
//! max-connections = 10000         # default
//! idle-timeout = "8h"             # default (MySQL's wait_timeout); 0 disables
//! max-packet-size = "64MiB"       # default (MySQL 8's max_allowed_packet); 1KiB ..= 1GiB
//! shutdown-timeout = "30s"        # default: graceful shutdown deadline
//! statement-timeout = "0"         # default 0 = none: a statement whose backend is silent this
//!                                 # long loses its session (client sees 2013), e.g. a frozen server
//! shutdown-delay = "0s"           # default: on SIGTERM, /health/ready answers 503 this long while
//!                                 # new clients are still accepted; then the listener closes and
//!                                 # sessions get shutdown-timeout to finish their transaction
//! max-auth-failures = 0           # default 0 = off: a client address with this many failed
//!                                 # logins (access denied) within auth-failure-window is refused
//!                                 # (ERR 1129) for auth-block-duration
//! auth-failure-window = "60s"     # default
//! auth-block-duration = "60s"     # default
//! proxy-protocol-from = []        # default none: networks (load balancers) whose connections
//!                                 # must start with a PROXY protocol v1/v2 header, e.g.
//!                                 # ["10.0.0.0/8", "192.0.2.7"]; headers from others are refused
//!
//! [admin]
//! listen = "127.0.0.1:6080"      # default (loopback only)
//! token-file = "admin.token"      # optional (or token = "..."): every route but /health needs
//!                                 # `Authorization: Bearer <token>`; 16 to 1024 visible characters
//! read-token-file = "read.token"  # optional (or read-token = "..."): GET routes and /metrics only
//! hosts = ["ferry.internal"]      # names the Host header may carry besides localhost and IPs
//! tls = { cert = "admin.pem", key = "admin-key.pem" }   # optional: the admin port speaks HTTPS
//! max-connections = 32            # default: at the cap, a new connection closes the oldest
//! request-timeout = "5s"          # default: to receive a whole request (and again to answer)
//!
//! [[backends]]                    # at least one
//! name = "db1"                    # letters, digits, '-', '_', '.'; unique
//! addr = "127.0.0.1:3306"         # IP:port, [IPv6]:port or host:port; unique. A host name is
//!                                 # resolved at each connect (sessions, migrations, failovers,
//!                                 # health checks) with the system resolver (getaddrinfo), no
//!                                 # cache but the system's: a DNS change is followed. Its
//!                                 # addresses are tried in order; a name that does not resolve
//!                                 # is a backend that is down (the reason in /api/backends)
//! proxy-protocol = false          # default; true: each connection to it starts with a PROXY
//!                                 # protocol v2 header carrying the client's address (MariaDB:
//!                                 # proxy_protocol_networks must include ferry's address)
//!
//! [auth]
//! mode = "passthrough"            # default; or "proxy"
//! [[auth.users]]                  # mode = "proxy" only, and then at least one
//! name = "app"
//! password-hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"   # as mysql.user stores it; "" = no password
//!
//! [tls]                           # optional: client-facing TLS
//! cert = "server.pem"             # PEM chain; relative paths start at the config file's folder
//! key = "server-key.pem"
//! require = false                 # default; true refuses clients that do not upgrade
//!
//! [backend-tls]                   # optional: TLS to the backends
//! ca = "ca.pem"                   # or: insecure-trust-all = true (tests only)
//! server-name = "db.internal"     # optional; default: the first backend's host name or IP
//!
//! [health]
//! interval = "500ms"             # default: from one round's start to the next
//! timeout = "400ms"               # default: connect + handshake (dead or frozen: down within 0.9s)
//! user = "monitor"                # optional monitor account (mysql_native_password): each check
//!                                 # logs in, pings and quits; without one a check reads the
//!                                 # greeting and closes: one Aborted_connects and one error-log
//!                                 # line per check and backend on the server
//! password-file = "monitor.pw"    # or: password = "..."; never logged
//!
//! [migration]
//! mode = "replay"                 # "replay" | "tidb" | "off"; default: replay with proxy auth, else off
//! timeout = "5s"                  # default: deadline of each migration step
//! safe-point-timeout = "30s"      # default: how long a move waits for a safe point (no
//!                                 # transaction, lock, ...) before it fails as pinned
//! rebalance-interval = "1s"       # default: one rebalancing plan per interval
//! rebalance-max-moves = 8         # default: migrations started per plan; 0 disables rebalancing
//! rebalance-tolerance = 1         # default: no rebalancing while counts differ by at most this
//! failover = true                 # default (replay): rebuild idle sessions when their backend dies
//! read-retry = false              # default: resend a read-only autocommit SELECT cut by a failover
//!
//! [multiplexing]                  # many client sessions on few backend connections (replay only)
//! enabled = false                 # default; needs auth.mode = "proxy" and migration.mode = "replay"
//! max-backend-connections = 32    # default: per backend, in use plus idle in the pool
//! max-wait = "5s"                 # default: a session waiting longer for one gets ERR 1040
//! max-waiting = 1024              # default: sessions that may wait at once (more: ERR 1040 now)
//! idle-timeout = "60s"            # default: an idle pooled connection is closed after this
//! check-after = "1s"              # default: a pooled connection idle longer is pinged first
//!
//! [[routes]]                      # optional: where new sessions go by their login; first match
//! user = "analyst"                # a user, a database or both; a session matching every one
//! database = "reports"            # given goes to this backend (not failed over elsewhere);
//! backend = "db2"                 # others follow the built-in policy
//!
//! [log]
//! level = "info"                  # default; off, error, warn, info, debug, trace
//! format = "text"                 # default; or "json": one JSON object per line
//! ```
//!
//! Durations are seconds or strings such as `"250ms"`, `"1h30m"`; sizes are bytes or strings such
//! as `"64MiB"` (see [`units`]).
//!
//! A running proxy reloads the file on `SIGHUP` or `POST /api/config/reload`: everything but
//! `proxy.listen`, `proxy.workers`, `proxy.shutdown-timeout`, `admin.listen`, `auth.mode`,
//! `migration.mode` and a kept backend's `addr` changes live (see
//! [`reload`](crate::control::reload)).

mod file;
pub mod units;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::native::NativeStage2Hash;
use crate::auth::{ClientSecret, Credential, Password};
pub use crate::backend::BackendAddr;
use crate::balance::RebalancePolicy;
use crate::proxy_protocol::Network;
use crate::tls::{self, ServerTrust};

pub use file::{
    AdminSection, AdminTlsSection, AuthMode, AuthSection, BackendSection, BackendTlsSection,
    ConfigFile, HealthSection, LogFormat, LogLevel, LogSection, MigrationMode, MigrationSection,
    MultiplexingSection, ProxySection, RouteSection, TlsSection, UserSection,
};
use units::ConfigDuration;

/// Default client listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6000";
/// Default admin (HTTP) listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:6080";
/// Default cap on concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default idle timeout: MySQL's `wait_timeout` default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// Default graceful-shutdown deadline.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default window in which `max-auth-failures` failed logins block an address (MaxScale's).
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Default time an address stays blocked (MaxScale's).
pub const DEFAULT_AUTH_BLOCK_DURATION: Duration = Duration::from_secs(60);
/// Default health-check interval.
/// Default health-check interval, from one round's start to the next's: with the timeout below,
/// a backend that dies or freezes is found down within 0.9 s.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// Default health-check timeout (connect and handshake; a local MariaDB greets in about 1 ms).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(400);
/// Default deadline of each migration step.
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default wait of a requested migration for a safe point (the core's default).
pub const DEFAULT_SAFE_POINT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default rebalancing interval.
pub const DEFAULT_REBALANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Smallest accepted `max-packet-size` (MySQL's minimum `max_allowed_packet`).
pub const MIN_PACKET_SIZE: u64 = 1 << 10;
/// Largest accepted `max-packet-size` (MySQL's maximum `max_allowed_packet`).
pub const MAX_PACKET_SIZE: u64 = 1 << 30;
/// Default cap on open admin connections: at the cap, a new connection closes the oldest.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 32;
/// Largest accepted `admin.max-connections` (each one is a descriptor, and a thread in some
/// drivers).
pub const MAX_ADMIN_CONNECTIONS: usize = 4096;
/// Default time an admin connection has to send its whole request (and again to take the answer).
pub const DEFAULT_ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest accepted admin token: 16 characters (`openssl rand -hex 32` gives 64).
pub const MIN_ADMIN_TOKEN: usize = 16;
/// Longest accepted admin token.
pub const MAX_ADMIN_TOKEN: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Errors.

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        reason: String,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or "configuration").
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values parsed but are not acceptable; every problem found is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
    /// Neither a configuration file nor a `--backend` flag: nothing to proxy to.
    #[error("no backend: give --config FILE or at least one --backend ADDR")]
    NoBackends,
}

/// One refused value: the key (`backends[1].addr`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as the file writes it, with indices for arrays of tables.
    pub key: String,
    /// Why the value is refused.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The problems, for [`ConfigError::Invalid`]; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(p) => p,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checked configuration.

/// A checked configuration, defaults applied: what the drivers run with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client-facing listener and limits.
    pub proxy: ProxyConfig,
    /// The admin HTTP endpoint.
    pub admin: AdminConfig,
    /// The backends, in file order (at least one).
    pub backends: Vec<BackendConfig>,
    /// Authentication.
    pub auth: AuthConfig,
    /// Client-facing TLS, if configured.
    pub tls: Option<ClientTlsConfig>,
    /// TLS to the backends, if configured.
    pub backend_tls: Option<BackendTlsConfig>,
    /// Health checks.
    pub health: HealthConfig,
    /// Migration and rebalancing.
    pub migration: MigrationConfig,
    /// Connection multiplexing (`None`: off).
    pub multiplexing: Option<MultiplexingConfig>,
    /// Where new sessions go by their login, first match first (empty: the built-in policy).
    pub routes: Vec<RouteConfig>,
    /// Logging.
    pub log: LogConfig,
}

/// `[log]`, checked. The drivers set logging up from it with [`LogConfig::filter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// The level (`--log-level` or `[log] level`; default info).
    pub level: LogLevel,
    /// Text or JSON lines (`--log-format` or `[log] format`; default text).
    pub format: LogFormat,
    /// Given by flag (or its `FERRY_LOG_LEVEL`): then it wins over `RUST_LOG`.
    pub level_from_flag: bool,
}

impl LogConfig {
    /// The filter to log with (`tracing_subscriber::EnvFilter` syntax), given the process's
    /// `RUST_LOG`: `--log-level` (or `FERRY_LOG_LEVEL`) wins, then a non-empty `RUST_LOG` (which
    /// may name modules: `ferry_core=debug,info`), then `[log] level`, then info.
    pub fn filter(&self, rust_log: Option<&str>) -> String {
        match rust_log.map(str::trim).filter(|r| !r.is_empty()) {
            Some(rust_log) if !self.level_from_flag => rust_log.to_owned(),
            _ => self.level.as_str().to_owned(),
        }
    }
}

/// One `[[routes]]` entry, checked: a session whose login matches every field given goes to
/// `backend` (not failed over: the route decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The user name to match, if given.
    pub user: Option<String>,
    /// The initial database to match, if given.
    pub database: Option<String>,
    /// The backend's name.
    pub backend: String,
}

/// `[proxy]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Event-loop threads.
    pub workers: NonZeroUsize,
    /// Cap on concurrent client connections (at least 1).
    pub max_connections: usize,
    /// Close client connections idle this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Largest packet payload accepted from either side, in bytes.
    pub max_packet_size: usize,
    /// Graceful-shutdown deadline.
    pub shutdown_timeout: Duration,
    /// A statement whose backend sends nothing for this long loses its session (the backend
    /// connection is abandoned, the client's closed); `None` (the default): never, as with a
    /// direct connection.
    pub statement_timeout: Option<Duration>,
    /// The server version clients are told in the greeting; `None`: the backends' own (clients
    /// pick features and collations by it, so by default ferry does not pretend to be another server).
    pub server_version: Option<String>,
    /// Graceful shutdown's first stage: `/health/ready` answers 503 while new clients are still
    /// accepted, so that a load balancer stops sending them before the listener closes
    /// ([`Duration::ZERO`]: the listener closes at once). `shutdown_timeout` counts from the end
    /// of it.
    pub shutdown_delay: Duration,
    /// Failed logins (access denied) from one address within `auth_failure_window` that block
    /// it for `auth_block_duration`; 0: never blocked.
    pub max_auth_failures: u32,
    /// See `max_auth_failures`.
    pub auth_failure_window: Duration,
    /// See `max_auth_failures`.
    pub auth_block_duration: Duration,
    /// Clients connecting from these networks (load balancers) must start with a PROXY protocol
    /// header, whose address is then the client's; a header from anywhere else is refused.
    pub proxy_protocol_from: Vec<Network>,
}

/// `[admin]`, checked.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the admin HTTP endpoint listens.
    pub listen: SocketAddr,
    /// The admin token: with one, every route but `/health` needs it (or the read-only token
    /// for `GET`s) as `Authorization: Bearer <token>`.
    pub token: Option<AdminToken>,
    /// The read-only token: `GET` routes (`/metrics`, `/api/backends`, ...); only with `token`.
    pub read_token: Option<AdminToken>,
    /// Names the `Host` header may carry besides `localhost` and IP addresses (lowercase).
    pub hosts: Vec<String>,
    /// HTTPS on the admin port, if configured.
    pub tls: Option<AdminTlsConfig>,
    /// What one admin connection may cost.
    pub limits: AdminLimits,
}

/// Bounds on the admin port, which the drivers enforce with their I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Admin connections open at once; at the cap, a new one closes the oldest (see
    /// [`AdminSlots`](crate::control::admin::AdminSlots)), so held-open connections cannot
    /// lock out a health check.
    pub max_connections: usize,
    /// Time to receive a whole request (head at most
    /// [`MAX_HEAD`](crate::control::admin::MAX_HEAD) bytes), and again to send the answer.
    pub request_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            request_timeout: DEFAULT_ADMIN_REQUEST_TIMEOUT,
        }
    }
}

/// An admin token. `Debug` does not print it; [`AdminToken::matches`] compares in constant
/// time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Whether `presented` is this token. The time taken does not depend on where they differ,
    /// nor on the token's length: SHA-256 digests of both are compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let (ours, theirs) = (Sha256::digest(self.0.as_bytes()), Sha256::digest(presented));
        ours.ct_eq(&theirs).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(hidden)")
    }
}

/// `[admin] tls`, checked: the files were read and rustls accepted them.
#[derive(Clone)]
pub struct AdminTlsConfig {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// The server configuration built from them.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for AdminTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// One backend, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique name (used in URLs, metrics labels and logs).
    pub name: String,
    /// Its address: an IP address, or a host name resolved at each connect.
    pub addr: BackendAddr,
    /// Every connection to it starts with a PROXY protocol v2 header carrying the client's
    /// address (MariaDB's `proxy_protocol_networks` must then include ferry's).
    pub proxy_protocol: bool,
}

/// `[auth]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Who checks passwords.
    pub mode: AuthMode,
    /// The user table (`proxy` mode; empty in `passthrough` mode).
    pub users: Vec<UserConfig>,
}

/// One user of the proxy's table. `Debug` does not print the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// The user name.
    pub name: String,
    /// What the user's password must match.
    pub credential: Credential,
}

/// `[tls]`, checked: the files were read and rustls accepted them.
#[derive(Clone)]
pub struct ClientTlsConfig {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// Refuse clients that do not upgrade to TLS.
    pub require: bool,
    /// The server configuration built from them.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

/// `[backend-tls]`, checked.
#[derive(Clone)]
pub struct BackendTlsConfig {
    /// The CA file, or `None` with `insecure-trust-all`.
    pub ca: Option<PathBuf>,
    /// The name to verify; `None`: the backend's IP address.
    pub server_name: Option<String>,
    /// The client configuration built from them.
    pub client_config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for BackendTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTlsConfig")
            .field("ca", &self.ca)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// `[health]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between checks of one backend.
    pub interval: Duration,
    /// Deadline of one check (connect and handshake).
    pub timeout: Duration,
    /// The account checks log in as; `None`: checks read the greeting only.
    pub monitor: Option<MonitorAccount>,
}

/// The monitor account of `[health]`. Only `SHA1(password)` is kept (it answers
/// `mysql_native_password`, the plugin the account must use); `Debug` does not print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorAccount {
    /// The user name.
    pub user: String,
    /// What answers the server's challenge.
    pub secret: ClientSecret,
}

/// `[migration]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationConfig {
    /// How sessions move.
    pub mode: MigrationMode,
    /// Deadline of each migration step.
    pub timeout: Duration,
    /// How long a requested migration waits for a safe point before it fails (the session
    /// stays on its backend).
    pub safe_point_timeout: Duration,
    /// Time between rebalancing plans.
    pub rebalance_interval: Duration,
    /// The planner's cap and hysteresis.
    pub rebalance: RebalancePolicy,
    /// `replay`: rebuild idle sessions on another backend when theirs dies (default on).
    pub failover: bool,
    /// With `failover`: send a read-only autocommit `SELECT` in flight again (default off).
    pub read_retry: bool,
}

/// `[multiplexing]`, checked (present only when enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiplexingConfig {
    /// Backend connections per backend, in use plus idle.
    pub max_backend_connections: usize,
    /// How long a session waits for a backend connection before its statement gets ERR 1040.
    pub max_wait: Duration,
    /// Sessions that may wait at once; one more gets ERR 1040 at once.
    pub max_waiting: usize,
    /// An idle pooled connection is closed after this.
    pub idle_timeout: Duration,
    /// A pooled connection idle longer than this is pinged before it is reused.
    pub check_after: Duration,
}

impl Default for MultiplexingConfig {
    fn default() -> Self {
        Self {
            max_backend_connections: 32,
            max_wait: Duration::from_secs(5),
            max_waiting: 1024,
            idle_timeout: Duration::from_secs(60),
            check_after: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Checks `file`, applies defaults, reads the TLS files: every problem is reported at once.
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let mut p = Checker::default();
        let base = file.base_dir.as_deref();

        let proxy = check_proxy(&mut p, &file.proxy);
        let admin = check_admin(&mut p, &file.admin, base);
        let admin_listen = admin.as_ref().map(|a| a.listen);
        if let (Some(a), Some(proxy)) = (admin_listen, &proxy) {
            if a == proxy.listen {
                p.push(
                    "admin.listen",
                    format!("same address as proxy.listen ({a})"),
                );
            }
        }
        let backends = check_backends(&mut p, &file.backends);
        let auth = check_auth(&mut p, &file.auth);
        let tls = file.tls.as_ref().and_then(|t| check_tls(&mut p, t, base));
        let backend_tls = file
            .backend_tls
            .as_ref()
            .and_then(|t| check_backend_tls(&mut p, t, base));
        let health = check_health(&mut p, &file.health, base);
        let migration = check_migration(&mut p, &file.migration, auth.as_ref().map(|a| a.mode));
        let multiplexing = check_multiplexing(
            &mut p,
            &file.multiplexing,
            auth.as_ref().map(|a| a.mode),
            migration.as_ref().map(|m| m.mode),
        );
        let routes = check_routes(&mut p, &file.routes, &backends);
        let log = LogConfig {
            level: file.log.level.unwrap_or_default(),
            format: file.log.format.unwrap_or_default(),
            level_from_flag: false,
        };

        match (proxy, admin, auth, health, migration) {
            (Some(proxy), Some(admin), Some(auth), Some(health), Some(migration))
                if p.problems.is_empty() =>
            {
                Ok(Self {
                    proxy,
                    admin,
                    backends,
                    auth,
                    tls,
                    backend_tls,
                    health,
                    migration,
                    multiplexing,
                    routes,
                    log,
                })
            }
            _ => Err(ConfigError::Invalid(p.problems)),
        }
    }

    /// The one-line summary `--check` prints.
    pub fn summary(&self) -> String {
        format!(
            "configuration ok: listen {}, admin {}, {} backend(s), {} worker(s), auth {:?}, migration {:?}",
            self.proxy.listen,
            self.admin.listen,
            self.backends.len(),
            self.proxy.workers,
            self.auth.mode,
            self.migration.mode,
        )
    }

    /// Loads and checks the file at `path` (feature `toml`).
    #[cfg(feature = "toml")]
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&ConfigFile::load(path)?)
    }
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.push(
                    key,
                    format!("invalid socket address {text:?} (expected IP:port)"),
                );
                None
            }
        }
    }

    /// `IP:port`, `[IPv6]:port` or `host:port`.
    fn backend_addr(&mut self, key: &str, text: &str) -> Option<BackendAddr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(e) => {
                self.push(
                    key,
                    format!("invalid address {text:?}: {e} (expected IP:port or host:port)"),
                );
                None
            }
        }
    }

    fn positive(
        &mut self,
        key: &str,
        value: Option<ConfigDuration>,
        default: Duration,
    ) -> Duration {
        let d = value.map_or(default, |v| v.0);
        if d.is_zero() {
            self.push(key, "must be greater than zero");
        }
        d
    }
}

fn check_proxy(p: &mut Checker, s: &ProxySection) -> Option<ProxyConfig> {
    let listen = p.addr(
        "proxy.listen",
        s.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    );
    let workers = match s.workers {
        Some(n) => NonZeroUsize::new(n),
        // One event loop per core; if the count is unknown, one.
        None => Some(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)),
    };
    if workers.is_none() {
        p.push("proxy.workers", "must be at least 1");
    }
    let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        p.push("proxy.max-connections", "must be at least 1");
    }
    let idle_timeout = match s.idle_timeout {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(ConfigDuration(d)) if d.is_zero() => None,
        Some(ConfigDuration(d)) => Some(d),
    };
    let size = s
        .max_packet_size
        .map_or(crate::wire::DEFAULT_MAX_PACKET_SIZE as u64, |b| b.0);
    if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&size) {
        p.push(
            "proxy.max-packet-size",
            format!("{size} bytes is outside 1KiB ..= 1GiB"),
        );
    }
    let shutdown_timeout = p.positive(
        "proxy.shutdown-timeout",
        s.shutdown_timeout,
        DEFAULT_SHUTDOWN_TIMEOUT,
    );
    let statement_timeout = s.statement_timeout.map(|d| d.0).filter(|d| !d.is_zero());
    let server_version = s.server_version.clone();
    if let Some(v) = &server_version {
        if v.is_empty() || v.len() > 250 || v.bytes().any(|b| b == 0 || !b.is_ascii()) {
            p.push(
                "proxy.server-version",
                "must be 1 to 250 ASCII characters without NUL",
            );
        }
    }
    let shutdown_delay = s.shutdown_delay.map_or(Duration::ZERO, |d| d.0);
    let auth_failure_window = p.positive(
        "proxy.auth-failure-window",
        s.auth_failure_window,
        DEFAULT_AUTH_FAILURE_WINDOW,
    );
    let auth_block_duration = p.positive(
        "proxy.auth-block-duration",
        s.auth_block_duration,
        DEFAULT_AUTH_BLOCK_DURATION,
    );
    let mut proxy_protocol_from = Vec::new();
    for (i, text) in s.proxy_protocol_from.iter().flatten().enumerate() {
        match text.parse::<Network>() {
            Ok(n) => proxy_protocol_from.push(n),
            Err(e) => p.push(format!("proxy.proxy-protocol-from[{i}]"), e.to_string()),
        }
    }
    Some(ProxyConfig {
        listen: listen?,
        workers: workers?,
        max_connections,
        idle_timeout,
        // Bounded by MAX_PACKET_SIZE above, which fits any usize of 32 bits or more.
        max_packet_size: usize::try_from(size).unwrap_or(usize::MAX),
        shutdown_timeout,
        statement_timeout,
        server_version,
        shutdown_delay,
        max_auth_failures: s.max_auth_failures.unwrap_or(0),
        auth_failure_window,
        auth_block_duration,
        proxy_protocol_from,
    })
}

/// Backend names appear in URLs and metric labels: keep them to a safe alphabet.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_routes(
    p: &mut Checker,
    sections: &[RouteSection],
    backends: &[BackendConfig],
) -> Vec<RouteConfig> {
    let mut out = Vec::new();
    for (i, r) in sections.iter().enumerate() {
        if r.user.is_none() && r.database.is_none() {
            p.push(
                format!("routes[{i}]"),
                "give a user, a database or both to match",
            );
            continue;
        }
        if !backends.iter().any(|b| b.name == r.backend) {
            p.push(
                format!("routes[{i}].backend"),
                format!("no backend named {:?}", r.backend),
            );
            continue;
        }
        out.push(RouteConfig {
            user: r.user.clone(),
            database: r.database.clone(),
            backend: r.backend.clone(),
        });
    }
    out
}

fn check_backends(p: &mut Checker, sections: &[BackendSection]) -> Vec<BackendConfig> {
    if sections.is_empty() {
        p.push("backends", "at least one backend is required");
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut addrs: HashMap<BackendAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, b) in sections.iter().enumerate() {
        let name_ok = valid_name(&b.name);
        if !name_ok {
            p.push(
                format!("backends[{i}].name"),
                format!(
                    "invalid name {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                    b.name
                ),
            );
        } else if let Some(first) = names.insert(&b.name, i) {
            p.push(
                format!("backends[{i}].name"),
                format!("duplicate name {:?} (also backends[{first}])", b.name),
            );
        }
        let addr = p.backend_addr(&format!("backends[{i}].addr"), &b.addr);
        if let Some(a) = &addr {
            if let Some(first) = addrs.insert(a.clone(), i) {
                p.push(
                    format!("backends[{i}].addr"),
                    format!("duplicate address {a} (also backends[{first}])"),
                );
            }
        }
        if let (true, Some(addr)) = (name_ok, addr) {
            out.push(BackendConfig {
                name: b.name.clone(),
                addr,
                proxy_protocol: b.proxy_protocol,
            });
        }
    }
    out
}

fn check_auth(p: &mut Checker, s: &AuthSection) -> Option<AuthConfig> {
    let mode = s.mode.unwrap_or(AuthMode::Passthrough);
    match mode {
        AuthMode::Proxy if s.users.is_empty() => {
            p.push("auth.users", "mode \"proxy\" needs at least one user");
        }
        AuthMode::Passthrough if !s.users.is_empty() => {
            p.push(
                "auth.users",
                "users are only checked with mode = \"proxy\" (mode is \"passthrough\")",
            );
        }
        _ => {}
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut users = Vec::new();
    for (i, u) in s.users.iter().enumerate() {
        // MariaDB allows 80 characters, MySQL 32.
        if u.name.is_empty() || u.name.chars().count() > 80 {
            p.push(
                format!("auth.users[{i}].name"),
                "must be 1 to 80 characters",
            );
        } else if let Some(first) = names.insert(&u.name, i) {
            p.push(
                format!("auth.users[{i}].name"),
                format!("duplicate user {:?} (also auth.users[{first}])", u.name),
            );
        }
        // The hash is never echoed: it is as good as a password to anyone who can read the logs.
        let credential = if u.password_hash.is_empty() {
            Some(Credential::NoPassword)
        } else {
            NativeStage2Hash::parse_hex(u.password_hash.as_bytes())
                .ok()
                .map(Credential::Native)
        };
        match credential {
            Some(credential) => users.push(UserConfig {
                name: u.name.clone(),
                credential,
            }),
            None => p.push(
                format!("auth.users[{i}].password-hash"),
                "expected \"*\" followed by 40 hex digits (as mysql.user stores \
                 mysql_native_password hashes), or \"\" for no password",
            ),
        }
    }
    Some(AuthConfig { mode, users })
}

fn resolve(base: Option<&Path>, path: &Path) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

fn read_file(p: &mut Checker, key: &str, base: Option<&Path>, path: &Path) -> Option<Vec<u8>> {
    let full = resolve(base, path);
    match std::fs::read(&full) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            p.push(
                key,
                format!("cannot read {:?}: {e}", full.display().to_string()),
            );
            None
        }
    }
}

fn check_tls(p: &mut Checker, s: &TlsSection, base: Option<&Path>) -> Option<ClientTlsConfig> {
    let cert = read_file(p, "tls.cert", base, &s.cert);
    let key = read_file(p, "tls.key", base, &s.key);
    let (cert, key) = (cert?, key?);
    match tls::server_config(&cert, &key) {
        Ok(server_config) => Some(ClientTlsConfig {
            cert: resolve(base, &s.cert),
            key: resolve(base, &s.key),
            require: s.require,
            server_config,
        }),
        Err(e) => {
            p.push("tls", e.to_string());
            None
        }
    }
}

fn check_backend_tls(
    p: &mut Checker,
    s: &BackendTlsSection,
    base: Option<&Path>,
) -> Option<BackendTlsConfig> {
    if let Some(name) = &s.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            p.push(
                "backend-tls.server-name",
                format!("invalid DNS name or IP address {name:?}"),
            );
        }
    }
    let trust = match (&s.ca, s.insecure_trust_all) {
        (Some(_), true) => {
            p.push(
                "backend-tls",
                "give either ca or insecure-trust-all = true, not both",
            );
            return None;
        }
        (None, false) => {
            p.push(
                "backend-tls",
                "needs ca = \"FILE\" (or insecure-trust-all = true, for tests)",
            );
            return None;
        }
        (Some(ca), false) => ServerTrust::CaPem(read_file(p, "backend-tls.ca", base, ca)?),
        (None, true) => ServerTrust::InsecureTrustAll,
    };
    match tls::client_config(&trust) {
        Ok(client_config) => Some(BackendTlsConfig {
            ca: s.ca.as_deref().map(|ca| resolve(base, ca)),
            server_name: s.server_name.clone(),
            client_config,
        }),
        Err(e) => {
            p.push("backend-tls.ca", e.to_string());
            None
        }
    }
}

fn check_admin(p: &mut Checker, s: &AdminSection, base: Option<&Path>) -> Option<AdminConfig> {
    let listen = p.addr(
        "admin.listen",
        s.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
    );
    let token = admin_token(p, "admin.token", &s.token, &s.token_file, base);
    let read_token = admin_token(
        p,
        "admin.read-token",
        &s.read_token,
        &s.read_token_file,
        base,
    );
    if read_token.is_some() && token.is_none() {
        p.push(
            "admin.read-token",
            "needs admin.token too (without it, changing something would need less than reading)",
        );
    }
    if token.is_some() && token == read_token {
        p.push("admin.read-token", "must differ from admin.token");
    }
    let mut hosts = Vec::new();
    for (i, h) in s.hosts.iter().enumerate() {
        let name = h.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            p.push(
                format!("admin.hosts[{i}]"),
                format!("invalid host name {h:?} (no port, no scheme: e.g. \"ferry.internal\")"),
            );
        } else {
            hosts.push(name);
        }
    }
    let tls = s.tls.as_ref().and_then(|t| {
        let cert = read_file(p, "admin.tls.cert", base, &t.cert);
        let key = read_file(p, "admin.tls.key", base, &t.key);
        match tls::server_config(&cert?, &key?) {
            Ok(server_config) => Some(AdminTlsConfig {
                cert: resolve(base, &t.cert),
                key: resolve(base, &t.key),
                server_config,
            }),
            Err(e) => {
                p.push("admin.tls", e.to_string());
                None
            }
        }
    });
    let max_connections = s.max_connections.unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS);
    if !(1..=MAX_ADMIN_CONNECTIONS).contains(&max_connections) {
        p.push(
            "admin.max-connections",
            format!("must be 1 to {MAX_ADMIN_CONNECTIONS}"),
        );
    }
    let request_timeout = p.positive(
        "admin.request-timeout",
        s.request_timeout,
        DEFAULT_ADMIN_REQUEST_TIMEOUT,
    );
    Some(AdminConfig {
        listen: listen?,
        token,
        read_token,
        hosts,
        tls,
        limits: AdminLimits {
            max_connections,
            request_timeout,
        },
    })
}

/// A token given inline (`key`) or in a file (`key-file`, surrounding white space trimmed).
/// Problems name the key; the token itself is never echoed.
fn admin_token(
    p: &mut Checker,
    key: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
    base: Option<&Path>,
) -> Option<AdminToken> {
    let (text, key) = match (inline, file) {
        (Some(_), Some(_)) => {
            p.push(key, format!("give {key} or {key}-file, not both"));
            return None;
        }
        (Some(text), None) => (text.clone(), key.to_owned()),
        (None, Some(path)) => {
            let key = format!("{key}-file");
            let bytes = read_file(p, &key, base, path)?;
            let Ok(text) = String::from_utf8(bytes) else {
                p.push(key, "the file is not UTF-8 text");
                return None;
            };
            (text.trim().to_owned(), key)
        }
        (None, None) => return None,
    };
    let visible = text.bytes().all(|b| b.is_ascii_graphic());
    if !(MIN_ADMIN_TOKEN..=MAX_ADMIN_TOKEN).contains(&text.len()) || !visible {
        p.push(
            key,
            format!(
                "a token is {MIN_ADMIN_TOKEN} to {MAX_ADMIN_TOKEN} visible ASCII characters, \
                 without spaces (e.g. the output of `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    Some(AdminToken(text))
}

fn check_health(p: &mut Checker, s: &HealthSection, base: Option<&Path>) -> Option<HealthConfig> {
    Some(HealthConfig {
        interval: p.positive("health.interval", s.interval, DEFAULT_HEALTH_INTERVAL),
        timeout: p.positive("health.timeout", s.timeout, DEFAULT_HEALTH_TIMEOUT),
        monitor: check_monitor(p, s, base),
    })
}

/// The monitor account: a user, and exactly one of `password` (`""` for none) and
/// `password-file`. The password is never echoed.
fn check_monitor(
    p: &mut Checker,
    s: &HealthSection,
    base: Option<&Path>,
) -> Option<MonitorAccount> {
    let Some(user) = &s.user else {
        if s.password.is_some() || s.password_file.is_some() {
            p.push("health.user", "a password is given but no user");
        }
        return None;
    };
    if user.is_empty() || user.chars().count() > 80 {
        p.push("health.user", "must be 1 to 80 characters");
    }
    let password = match (&s.password, &s.password_file) {
        (Some(_), Some(_)) => {
            p.push("health", "give either password or password-file, not both");
            return None;
        }
        (None, None) => {
            p.push(
                "health.password",
                "the monitor account needs password or password-file (password = \"\" for none)",
            );
            return None;
        }
        (Some(pw), None) => pw.as_bytes().to_vec(),
        (None, Some(path)) => {
            let mut bytes = read_file(p, "health.password-file", base, path)?;
            // An editor's final newline is not part of the password.
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            bytes
        }
    };
    let secret = if password.is_empty() {
        ClientSecret::NoPassword
    } else {
        ClientSecret::Sha1(Password::new(password).sha1())
    };
    Some(MonitorAccount {
        user: user.clone(),
        secret,
    })
}

fn check_multiplexing(
    p: &mut Checker,
    s: &MultiplexingSection,
    auth: Option<AuthMode>,
    migration: Option<MigrationMode>,
) -> Option<MultiplexingConfig> {
    if !s.enabled.unwrap_or(false) {
        return None;
    }
    if auth != Some(AuthMode::Proxy) || migration != Some(MigrationMode::Replay) {
        p.push(
            "multiplexing.enabled",
            "needs auth.mode = \"proxy\" and migration.mode = \"replay\": a session is \
             brought to its state on any pooled connection by replaying what ferry tracked",
        );
    }
    let d = MultiplexingConfig::default();
    let at_least_one = |p: &mut Checker, key: &str, v: Option<usize>, default: usize| match v {
        Some(0) => {
            p.push(key, "must be at least 1");
            default
        }
        v => v.unwrap_or(default),
    };
    Some(MultiplexingConfig {
        max_backend_connections: at_least_one(
            p,
            "multiplexing.max-backend-connections",
            s.max_backend_connections,
            d.max_backend_connections,
        ),
        max_wait: p.positive("multiplexing.max-wait", s.max_wait, d.max_wait),
        max_waiting: at_least_one(p, "multiplexing.max-waiting", s.max_waiting, d.max_waiting),
        idle_timeout: p.positive("multiplexing.idle-timeout", s.idle_timeout, d.idle_timeout),
        check_after: p.positive("multiplexing.check-after", s.check_after, d.check_after),
    })
}

fn check_migration(
    p: &mut Checker,
    s: &MigrationSection,
    auth: Option<AuthMode>,
) -> Option<MigrationConfig> {
    let mode = s.mode.unwrap_or(match auth {
        Some(AuthMode::Proxy) => MigrationMode::Replay,
        _ => MigrationMode::Off,
    });
    let failover = s.failover.unwrap_or(true);
    let read_retry = s.read_retry.unwrap_or(false);
    if read_retry && (mode != MigrationMode::Replay || !failover) {
        p.push(
            "migration.read-retry",
            "needs mode = \"replay\" and failover = true (a retried statement runs on a \
             session rebuilt by failover)",
        );
    }
    if mode == MigrationMode::Replay && auth == Some(AuthMode::Passthrough) {
        p.push(
            "migration.mode",
            "\"replay\" needs auth.mode = \"proxy\": ferry logs in to the new backend with the \
             credential it recovered at login",
        );
    }
    let tolerance = s.rebalance_tolerance.unwrap_or(1);
    if tolerance == 0 {
        p.push(
            "migration.rebalance-tolerance",
            "must be at least 1 (0 would move sessions back and forth)",
        );
    }
    Some(MigrationConfig {
        mode,
        timeout: p.positive("migration.timeout", s.timeout, DEFAULT_MIGRATION_TIMEOUT),
        safe_point_timeout: p.positive(
            "migration.safe-point-timeout",
            s.safe_point_timeout,
            DEFAULT_SAFE_POINT_TIMEOUT,
        ),
        rebalance_interval: p.positive(
            "migration.rebalance-interval",
            s.rebalance_interval,
            DEFAULT_REBALANCE_INTERVAL,
        ),
        rebalance: RebalancePolicy {
            max_moves: s
                .rebalance_max_moves
                .unwrap_or(RebalancePolicy::default().max_moves),
            tolerance,
        },
        failover,
        read_retry,
    })
}

/// Logs what the open-file limit a driver obtained means for `max_connections` (the driver
/// asked the OS for [`open_files_needed`], up to the hard limit): a warning naming the sessions
/// it leaves room for when it is short, so every program says the same.
pub fn report_open_files(max_connections: usize, limit: std::io::Result<u64>) {
    match limit {
        Ok(limit) if limit < open_files_needed(max_connections) => tracing::warn!(
            open_files = limit,
            max_connections,
            sessions = sessions_within(limit),
            "the open-file limit is below what max-connections needs; raise it (ulimit -n, \
             systemd LimitNOFILE) or lower max-connections"
        ),
        Ok(limit) => tracing::debug!(open_files = limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Logs where the admin endpoint listens, and warns when it is reachable from other machines
/// without a token (anyone who can reach the port could then drain backends), so every driver
/// says the same when it binds it.
pub fn report_admin_listen(admin: &AdminConfig, bound: SocketAddr) {
    let https = admin.tls.is_some();
    let token = admin.token.is_some();
    tracing::info!(%bound, https, token, "admin endpoint listening");
    if !bound.ip().is_loopback() && !token {
        tracing::warn!(
            %bound,
            "the admin endpoint is reachable from other hosts without a token; set [admin] \
             token-file (and read-token-file for monitoring)"
        );
    }
}

/// Descriptors a session holds: the client's and its backend's.
const FILES_PER_SESSION: u64 = 2;
/// Descriptors for everything else: the admin connections (one each, up to their default cap),
/// listeners, event loops, health-check connections, a migrating session's second backend.
const FILES_RESERVED: u64 = 64 + DEFAULT_ADMIN_MAX_CONNECTIONS as u64;

/// The open-file limit `max_connections` sessions need.
pub fn open_files_needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(FILES_PER_SESSION)
        .saturating_add(FILES_RESERVED)
}

/// The sessions an open-file limit leaves room for.
pub fn sessions_within(open_files: u64) -> u64 {
    open_files.saturating_sub(FILES_RESERVED) / FILES_PER_SESSION
}

// They read TOML text.
#[cfg(test)]
#[cfg(feature = "toml")]
mod tests;
