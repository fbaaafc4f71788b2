//! The configuration file as written: every key optional where a default exists, unknown keys
//! refused. [`super::Config::from_file`] checks it.

use std::fmt;
#[cfg(feature = "toml")]
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;

use super::units::{ByteSize, ConfigDuration};
#[cfg(feature = "toml")]
use super::ConfigError;

/// The TOML file as written: every key optional where a default exists, unknown keys refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// `[proxy]`
    #[serde(default)]
    pub proxy: ProxySection,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminSection,
    /// `[[backends]]`
    #[serde(default)]
    pub backends: Vec<BackendSection>,
    /// `[auth]`
    #[serde(default)]
    pub auth: AuthSection,
    /// `[tls]`
    pub tls: Option<TlsSection>,
    /// `[backend-tls]`
    pub backend_tls: Option<BackendTlsSection>,
    /// `[health]`
    #[serde(default)]
    pub health: HealthSection,
    /// `[migration]`
    #[serde(default)]
    pub migration: MigrationSection,
    /// `[multiplexing]`
    #[serde(default)]
    pub multiplexing: MultiplexingSection,
    /// `[[routes]]`
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
    /// The folder relative paths start from: the config file's, or the working directory.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// `[proxy]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxySection {
    /// `listen`
    pub listen: Option<String>,
    /// `workers`
    pub workers: Option<usize>,
    /// `max-connections`
    pub max_connections: Option<usize>,
    /// `idle-timeout`
    pub idle_timeout: Option<ConfigDuration>,
    /// `max-packet-size`
    pub max_packet_size: Option<ByteSize>,
    /// `shutdown-timeout`
    pub shutdown_timeout: Option<ConfigDuration>,
    /// `statement-timeout`
    pub statement_timeout: Option<ConfigDuration>,
    /// `server-version`
    pub server_version: Option<String>,
    /// `shutdown-delay`
    pub shutdown_delay: Option<ConfigDuration>,
    /// `max-auth-failures`
    pub max_auth_failures: Option<u32>,
    /// `auth-failure-window`
    pub auth_failure_window: Option<ConfigDuration>,
    /// `auth-block-duration`
    pub auth_block_duration: Option<ConfigDuration>,
    /// `proxy-protocol-from`
    pub proxy_protocol_from: Option<Vec<String>>,
}

/// `[admin]` as written. `Debug` does not print the tokens.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminSection {
    /// `listen`
    pub listen: Option<String>,
    /// `token`: the admin token (every route).
    pub token: Option<String>,
    /// `token-file`: a file holding the admin token.
    pub token_file: Option<PathBuf>,
    /// `read-token`: the read-only token (`GET` routes, `/metrics`).
    pub read_token: Option<String>,
    /// `read-token-file`: a file holding the read-only token.
    pub read_token_file: Option<PathBuf>,
    /// `hosts`: more names the `Host` header may carry.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `tls = { cert, key }`
    pub tls: Option<AdminTlsSection>,
    /// `max-connections`
    pub max_connections: Option<usize>,
    /// `request-timeout`
    pub request_timeout: Option<ConfigDuration>,
}

impl fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSection")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("token_file", &self.token_file)
            .field("read_token", &self.read_token.as_ref().map(|_| "(hidden)"))
            .field("read_token_file", &self.read_token_file)
            .field("hosts", &self.hosts)
            .field("tls", &self.tls)
            .field("max_connections", &self.max_connections)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// `[admin] tls` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminTlsSection {
    /// `cert`
    pub cert: PathBuf,
    /// `key`
    pub key: PathBuf,
}

/// `[log]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogSection {
    /// `level`
    pub level: Option<LogLevel>,
    /// `format`
    pub format: Option<LogFormat>,
}

/// How much is logged: the most verbose level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// What an operator follows (the default).
    #[default]
    Info,
    /// Each session's steps.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name as `RUST_LOG` and the file write it (`"info"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// One `[[backends]]` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendSection {
    /// `name`
    pub name: String,
    /// `addr`
    pub addr: String,
    /// `proxy-protocol`
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// One `[[routes]]` entry as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSection {
    /// `user`
    pub user: Option<String>,
    /// `database`
    pub database: Option<String>,
    /// `backend`
    pub backend: String,
}

/// `[auth]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSection {
    /// `mode`
    pub mode: Option<AuthMode>,
    /// `[[auth.users]]`
    #[serde(default)]
    pub users: Vec<UserSection>,
}

/// One `[[auth.users]]` entry as written. `Debug` does not print the hash.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSection {
    /// `name`
    pub name: String,
    /// `password-hash`
    pub password_hash: String,
}

impl fmt::Debug for UserSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `[tls]` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    /// `cert`
    pub cert: PathBuf,
    /// `key`
    pub key: PathBuf,
    /// `require`
    #[serde(default)]
    pub require: bool,
}

/// `[backend-tls]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendTlsSection {
    /// `ca`
    pub ca: Option<PathBuf>,
    /// `insecure-trust-all`
    #[serde(default)]
    pub insecure_trust_all: bool,
    /// `server-name`
    pub server_name: Option<String>,
}

/// `[health]` as written. `Debug` does not print the password.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthSection {
    /// `interval`
    pub interval: Option<ConfigDuration>,
    /// `timeout`
    pub timeout: Option<ConfigDuration>,
    /// `user`: the monitor account the checks log in as
    pub user: Option<String>,
    /// `password`: its password
    pub password: Option<String>,
    /// `password-file`: a file holding its password (one trailing newline is dropped)
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for HealthSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthSection")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

/// `[migration]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MigrationSection {
    /// `mode`
    pub mode: Option<MigrationMode>,
    /// `timeout`
    pub timeout: Option<ConfigDuration>,
    /// `safe-point-timeout`
    pub safe_point_timeout: Option<ConfigDuration>,
    /// `rebalance-interval`
    pub rebalance_interval: Option<ConfigDuration>,
    /// `rebalance-max-moves`
    pub rebalance_max_moves: Option<usize>,
    /// `rebalance-tolerance`
    pub rebalance_tolerance: Option<usize>,
    /// `failover`
    pub failover: Option<bool>,
    /// `read-retry`
    pub read_retry: Option<bool>,
}

/// `[multiplexing]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MultiplexingSection {
    /// `enabled`
    pub enabled: Option<bool>,
    /// `max-backend-connections`
    pub max_backend_connections: Option<usize>,
    /// `max-wait`
    pub max_wait: Option<ConfigDuration>,
    /// `max-waiting`
    pub max_waiting: Option<usize>,
    /// `idle-timeout`
    pub idle_timeout: Option<ConfigDuration>,
    /// `check-after`
    pub check_after: Option<ConfigDuration>,
}

/// Who checks client passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The backend does; ferry relays the exchange.
    Passthrough,
    /// ferry does, against `[[auth.users]]`, then logs in to backends as the same user.
    Proxy,
}

/// How sessions move between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationMode {
    /// Rebuild the session from tracked state (MySQL, MariaDB); needs `proxy` auth.
    Replay,
    /// TiDB's session states and session token.
    Tidb,
    /// Sessions never move; draining only stops new sessions.
    Off,
}

/// The parser's message: where, what, and the line quoted (which names the key), unless that
/// line may hold a secret (a password hash, a token): the message goes to the log and, on a
/// reload, to the admin API.
#[cfg(feature = "toml")]
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else {
        return e.to_string();
    };
    let before = text.get(..at).unwrap_or(text);
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let end = text
        .get(at..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| at + i);
    let line = text.get(start..end).unwrap_or("").to_ascii_lowercase();
    if !["password", "token", "secret"]
        .iter()
        .any(|w| line.contains(w))
    {
        return e.to_string();
    }
    let key = line.split_once('=').map_or("", |(k, _)| k.trim());
    format!(
        "line {}, column {}: {} (key {key:?}; the line is not shown: it may hold a secret)",
        before.matches('\n').count() + 1,
        before.len() - start + 1,
        e.message().trim_end()
    )
}

/// Reading TOML (feature `toml`).
#[cfg(feature = "toml")]
impl ConfigFile {
    /// Parses TOML text. Relative paths will start at `base_dir` (the working directory if `None`).
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let mut file: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: "configuration".into(),
            message: parse_message(text, &e),
        })?;
        file.base_dir = base_dir.map(Path::to_path_buf);
        Ok(file)
    }

    /// Reads and parses the file at `path`; relative paths in it start at its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, Some(base)).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                origin: path.display().to_string(),
                message,
            },
            other => other,
        })
    }
}
