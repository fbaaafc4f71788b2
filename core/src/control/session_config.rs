//! From the checked [`Config`] to the core's [`SessionConfig`]: client-facing TLS and auth,
//! backend transport, limits.

use std::sync::Arc;

use crate::auth::AuthPlugin;
use crate::backend::BackendTls;
use crate::frontend::{AuthMode as CoreAuthMode, UserEntry, UserTable};
use crate::session::{MigrationMode as CoreMigrationMode, SessionConfig};
use crate::tls::ServerTrust;

use crate::control::config::{AuthMode, Config, ConfigError, MigrationMode, Problem};

/// The session configuration `config` asks for. Fails only if a backend CA file changed since
/// the configuration was checked.
pub fn session_config(config: &Config) -> Result<SessionConfig, ConfigError> {
    let auth = match config.auth.mode {
        AuthMode::Passthrough => CoreAuthMode::Passthrough,
        AuthMode::Proxy => {
            let mut users = UserTable::new();
            for u in &config.auth.users {
                users.insert(
                    u.name.clone(),
                    UserEntry {
                        credential: u.credential.clone(),
                        plugin: AuthPlugin::MysqlNativePassword,
                    },
                );
            }
            CoreAuthMode::Proxy {
                users: Arc::new(users),
                sha2_cache: None,
                rsa: None,
            }
        }
    };
    let mut session = SessionConfig::new(auth);
    let frontend = Arc::make_mut(&mut session.frontend);
    frontend.max_packet_size = config.proxy.max_packet_size;
    if let Some(tls) = &config.tls {
        frontend.tls = Some(Arc::clone(&tls.server_config));
        frontend.require_tls = tls.require;
    }
    session.idle_timeout = config.proxy.idle_timeout;
    session.max_packet_size = config.proxy.max_packet_size;
    session.backend.max_packet_size = config.proxy.max_packet_size;
    if let Some(version) = &config.proxy.server_version {
        Arc::make_mut(&mut session.frontend).server_version = version.clone();
    }
    // `[migration] timeout` is the deadline of each step; `safe-point-timeout` is how long a
    // request waits for a safe point (a drain retries after it, see `rebalance`).
    session.migration.mode = match config.migration.mode {
        MigrationMode::Off => CoreMigrationMode::Off,
        MigrationMode::Replay => CoreMigrationMode::Replay,
        MigrationMode::Tidb => CoreMigrationMode::Tidb,
    };
    session.migration.step_timeout = config.migration.timeout;
    session.migration.timeout = config.migration.safe_point_timeout;
    session.migration.failover = config.migration.failover;
    session.migration.read_retry = config.migration.read_retry;
    session.multiplexing = config.multiplexing.map(|m| crate::session::Multiplexing {
        max_wait: m.max_wait,
    });
    session.backend.command_timeout = config.proxy.statement_timeout;
    if let Some(tls) = &config.backend_tls {
        let trust = match &tls.ca {
            None => ServerTrust::InsecureTrustAll,
            Some(ca) => ServerTrust::CaPem(std::fs::read(ca).map_err(|e| {
                ConfigError::Invalid(vec![Problem {
                    key: "backend-tls.ca".into(),
                    reason: format!("cannot read {}: {e}", ca.display()),
                }])
            })?),
        };
        // One name for all backends: the configured one, else the first backend's host name
        // or IP.
        let server_name = tls.server_name.clone().unwrap_or_else(|| {
            config
                .backends
                .first()
                .map(|b| b.addr.host())
                .unwrap_or_default()
        });
        session.backend.tls = Some(BackendTls {
            server_name,
            trust,
            required: true,
        });
    }
    Ok(session)
}

// They read TOML text.
#[cfg(test)]
#[cfg(feature = "toml")]
mod tests {
    use super::*;
    use crate::control::config::ConfigFile;

    #[test]
    fn limits_auth_and_idle_timeout_carry_over() {
        let text = r#"
[proxy]
idle-timeout = "90s"
max-packet-size = "32MiB"
[[backends]]
name = "db1"
addr = "127.0.0.1:3306"
[auth]
mode = "proxy"
[[auth.users]]
name = "app"
password-hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
"#;
        let config = Config::from_file(&ConfigFile::parse(text, None).unwrap()).unwrap();
        let s = session_config(&config).unwrap();
        assert_eq!(s.idle_timeout, Some(std::time::Duration::from_secs(90)));
        assert_eq!(s.max_packet_size, 32 << 20);
        assert_eq!(s.frontend.max_packet_size, 32 << 20);
        assert!(s.frontend.tls.is_none() && s.backend.tls.is_none());
        // Proxy auth migrates by replay unless told otherwise.
        assert_eq!(s.migration.mode, CoreMigrationMode::Replay);
        assert_eq!(s.migration.step_timeout, std::time::Duration::from_secs(5));
        match &s.frontend.auth {
            CoreAuthMode::Proxy { users, .. } => assert!(users.get("app").is_some()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn migration_mode_and_step_timeout_carry_over() {
        for (mode, auth, want) in [
            ("off", "proxy", CoreMigrationMode::Off),
            ("tidb", "passthrough", CoreMigrationMode::Tidb),
            ("replay", "proxy", CoreMigrationMode::Replay),
        ] {
            let users = if auth == "proxy" {
                "[[auth.users]]\nname = \"app\"\npassword-hash = \"\"\n"
            } else {
                ""
            };
            let text = format!(
                "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n\
                 [auth]\nmode = \"{auth}\"\n{users}\
                 [migration]\nmode = \"{mode}\"\ntimeout = \"750ms\"\n"
            );
            let config = Config::from_file(&ConfigFile::parse(&text, None).unwrap()).unwrap();
            let s = session_config(&config).unwrap();
            assert_eq!(s.migration.mode, want, "{mode}");
            assert_eq!(
                s.migration.step_timeout,
                std::time::Duration::from_millis(750)
            );
        }
        // Passthrough auth without a [migration] section does not migrate.
        let text = "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n";
        let config = Config::from_file(&ConfigFile::parse(text, None).unwrap()).unwrap();
        assert_eq!(
            session_config(&config).unwrap().migration.mode,
            CoreMigrationMode::Off
        );
    }
}
