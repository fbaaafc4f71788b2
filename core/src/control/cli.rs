//! The command line: `ferry --config ferry.toml` plus flags that override the file.
//!
//! Merge rules ([`Cli::into_config_file`]):
//!
//! - the file (if `--config` is given) is read first; every flag given replaces the file's value:
//!   `--listen` → `proxy.listen`, `--admin` → `admin.listen`, `--workers` → `proxy.workers`,
//!   `--auth-mode` → `auth.mode`, `--log-level` → `log.level`, `--log-format` → `log.format`;
//! - `--backend` (repeatable) replaces the file's whole `[[backends]]` list; backends given by
//!   flag are named `db1`, `db2`, … in order;
//! - a key given neither way takes its default (`--listen` 127.0.0.1:6000, `--admin`
//!   127.0.0.1:6080, ...: see [`crate::control::config`]), so defaults never override the file;
//! - no `--config` and no `--backend` is refused ([`ConfigError::NoBackends`]).
//!
//! Every flag can also be given by an environment variable, `FERRY_` and the flag's name in
//! capitals (`FERRY_CONFIG`, `FERRY_LISTEN`, `FERRY_BACKEND` (comma-separated), `FERRY_ADMIN`,
//! `FERRY_WORKERS`, `FERRY_AUTH_MODE`, `FERRY_LOG_LEVEL`, `FERRY_LOG_FORMAT`, `FERRY_CHECK`); a
//! flag on the command line wins over its variable. The log level's order is in
//! [`LogConfig::filter`](crate::control::config::LogConfig::filter): `--log-level` (or
//! `FERRY_LOG_LEVEL`), then `RUST_LOG`, then `[log] level`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Parser;

use crate::control::config::{
    AuthMode, BackendAddr, BackendSection, Config, ConfigError, ConfigFile, LogFormat, LogLevel,
};

/// ferry: a MySQL-protocol proxy that moves live sessions between backends.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "ferry", version = crate::control::build_info::version_line())]
pub struct Cli {
    /// Configuration file (TOML); flags override its values.
    #[arg(long, short = 'c', value_name = "FILE", env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6000].
    #[arg(long, value_name = "ADDR", env = "FERRY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A backend server, IP:port or host:port (repeatable; comma-separated in FERRY_BACKEND);
    /// replaces the file's backends, named db1, db2, ...
    #[arg(
        long = "backend",
        value_name = "ADDR",
        env = "FERRY_BACKEND",
        value_delimiter = ','
    )]
    pub backends: Vec<BackendAddr>,
    /// Address of the admin HTTP endpoint (/health, /metrics, /api) [default: 127.0.0.1:6080].
    #[arg(long, value_name = "ADDR", env = "FERRY_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Event-loop threads [default: the number of cores].
    #[arg(long, value_name = "N", env = "FERRY_WORKERS")]
    pub workers: Option<NonZeroUsize>,
    /// Who checks passwords: the backend (passthrough) or ferry's user table (proxy).
    #[arg(long, value_enum, value_name = "MODE", env = "FERRY_AUTH_MODE")]
    pub auth_mode: Option<AuthMode>,
    /// Log level; wins over RUST_LOG and [log] level [default: info].
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        env = "FERRY_LOG_LEVEL",
        ignore_case = true
    )]
    pub log_level: Option<LogLevel>,
    /// Log lines as text or JSON objects [default: text].
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "FERRY_LOG_FORMAT",
        ignore_case = true
    )]
    pub log_format: Option<LogFormat>,
    /// Check the configuration, print a summary and exit.
    #[arg(long, env = "FERRY_CHECK")]
    pub check: bool,
}

impl Cli {
    /// The process's command line, parsed; bad flags print clap's message and exit (as clap
    /// does), so a driver needs no `clap` of its own.
    pub fn from_env() -> Self {
        <Self as Parser>::parse()
    }

    /// The configuration file with the flags applied, not yet checked.
    pub fn into_config_file(&self) -> Result<ConfigFile, ConfigError> {
        let mut file = match &self.config {
            Some(path) => ConfigFile::load(path)?,
            None if self.backends.is_empty() => return Err(ConfigError::NoBackends),
            None => ConfigFile::default(),
        };
        if let Some(listen) = self.listen {
            file.proxy.listen = Some(listen.to_string());
        }
        if let Some(admin) = self.admin {
            file.admin.listen = Some(admin.to_string());
        }
        if let Some(workers) = self.workers {
            file.proxy.workers = Some(workers.get());
        }
        if let Some(mode) = self.auth_mode {
            file.auth.mode = Some(mode);
        }
        if let Some(level) = self.log_level {
            file.log.level = Some(level);
        }
        if let Some(format) = self.log_format {
            file.log.format = Some(format);
        }
        if !self.backends.is_empty() {
            file.backends = self
                .backends
                .iter()
                .enumerate()
                .map(|(i, addr)| BackendSection {
                    name: format!("db{}", i + 1),
                    addr: addr.to_string(),
                    proxy_protocol: false,
                })
                .collect();
        }
        Ok(file)
    }

    /// The checked configuration: file, then flags, then defaults and validation.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::from_file(&self.into_config_file()?)?;
        config.log.level_from_flag = self.log_level.is_some();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["ferry"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn version_names_the_build() {
        let err = Cli::try_parse_from(["ferry", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("ferry {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert_eq!(
            text.trim_end(),
            format!("ferry {}", crate::control::build_info::version_line())
        );
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        (dir, path)
    }

    const FILE: &str = r#"
[proxy]
listen = "127.0.0.1:7000"
workers = 3
idle-timeout = "10s"
[admin]
listen = "127.0.0.1:7080"
[[backends]]
name = "primary"
addr = "127.0.0.1:3306"
"#;

    #[test]
    fn no_config_and_no_backend_is_refused() {
        let err = cli(&[]).config().unwrap_err();
        assert_eq!(err, ConfigError::NoBackends);
        assert!(err.to_string().contains("--backend"), "{err}");
    }

    #[test]
    fn backends_by_flag_alone_with_defaults() {
        let c = cli(&["--backend", "127.0.0.1:3306", "--backend", "10.0.0.2:3307"])
            .config()
            .unwrap();
        let names: Vec<_> = c.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["db1", "db2"]);
        assert_eq!(c.backends[1].addr, "10.0.0.2:3307".parse().unwrap());
        assert_eq!(c.proxy.listen, "127.0.0.1:6000".parse().unwrap());
        let named = cli(&["--backend", "db1.internal:3306"]).config().unwrap();
        assert_eq!(named.backends[0].addr.name(), Some("db1.internal"));
        assert!(Cli::try_parse_from(["ferry", "--backend", "db1.internal"]).is_err());
        assert_eq!(c.admin.listen, "127.0.0.1:6080".parse().unwrap());
        assert_eq!(c.auth.mode, AuthMode::Passthrough);
    }

    #[test]
    fn file_values_stand_when_no_flag_is_given() {
        let (_dir, path) = file(FILE);
        let c = cli(&["--config", &path]).config().unwrap();
        assert_eq!(c.proxy.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.admin.listen, "127.0.0.1:7080".parse().unwrap());
        assert_eq!(c.proxy.workers.get(), 3);
        assert_eq!(c.backends[0].name, "primary");
    }

    #[test]
    fn flags_override_the_file() {
        let (_dir, path) = file(FILE);
        let c = cli(&[
            "-c",
            &path,
            "--listen",
            "0.0.0.0:6001",
            "--admin",
            "127.0.0.1:9090",
            "--workers",
            "5",
            "--backend",
            "127.0.0.1:4000",
        ])
        .config()
        .unwrap();
        assert_eq!(c.proxy.listen, "0.0.0.0:6001".parse().unwrap());
        assert_eq!(c.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.proxy.workers.get(), 5);
        // --backend replaces the file's list.
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].name, "db1");
        assert_eq!(c.backends[0].addr, "127.0.0.1:4000".parse().unwrap());
        // Keys without a flag keep the file's value.
        assert_eq!(c.proxy.idle_timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn auth_mode_flag_is_validated_with_the_file() {
        // proxy mode without users: refused by validation, naming the key.
        let err = cli(&["--backend", "127.0.0.1:3306", "--auth-mode", "proxy"])
            .config()
            .unwrap_err();
        assert!(err.to_string().contains("auth.users"), "{err}");
        let (_dir, path) = file(&format!(
            "{FILE}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"\"\n"
        ));
        let c = cli(&["-c", &path]).config().unwrap();
        assert_eq!(c.auth.mode, AuthMode::Proxy);
        // Switching a proxy-mode file to passthrough by flag leaves its users unused: refused.
        let err = cli(&["-c", &path, "--auth-mode", "passthrough"])
            .config()
            .unwrap_err();
        assert!(err.to_string().contains("auth.users"), "{err}");
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser() {
        for args in [
            &["--listen", "localhost"][..],
            &["--backend", "nope"],
            &["--workers", "0"],
            &["--auth-mode", "ldap"],
            &["--bogus"],
        ] {
            let mut argv = vec!["ferry"];
            argv.extend_from_slice(args);
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn missing_config_file_is_reported() {
        let err = cli(&["--config", "/nonexistent/ferry.toml"])
            .config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ferry.toml"), "{err}");
    }

    #[test]
    fn log_flags_override_the_file_and_win_over_rust_log() {
        let (_dir, path) = file(&format!(
            "{FILE}[log]\nlevel = \"warn\"\nformat = \"json\"\n"
        ));
        let c = cli(&["-c", &path]).config().unwrap();
        assert_eq!(
            (c.log.level, c.log.format),
            (LogLevel::Warn, LogFormat::Json)
        );
        assert!(!c.log.level_from_flag);
        assert_eq!(
            c.log.filter(Some("debug")),
            "debug",
            "RUST_LOG wins over the file"
        );
        let c = cli(&["-c", &path, "--log-level", "DEBUG", "--log-format", "text"])
            .config()
            .unwrap();
        assert_eq!(
            (c.log.level, c.log.format),
            (LogLevel::Debug, LogFormat::Text)
        );
        assert_eq!(
            c.log.filter(Some("error")),
            "debug",
            "the flag wins over RUST_LOG"
        );
        for bad in [&["--log-level", "loud"][..], &["--log-format", "xml"]] {
            let argv = [&["ferry", "--backend", "127.0.0.1:1"][..], bad].concat();
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    /// Read from the command's definition, so that no test changes the process's environment
    /// (the tests run in parallel); the variables themselves are used in tests/tests/proxy_logs.rs.
    #[test]
    fn every_flag_has_a_ferry_variable() {
        use clap::CommandFactory;
        let command = Cli::command();
        let mut flags = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let want = format!("FERRY_{}", long.to_ascii_uppercase().replace('-', "_"));
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(want.as_str()), "--{long}");
            flags += 1;
        }
        assert!(flags >= 9, "{flags}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
