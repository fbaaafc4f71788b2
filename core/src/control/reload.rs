//! Live reload: what a new configuration changes, what of it can change while sessions run, and
//! the values the admin API reports about it. Applying it is
//! [`Endpoint::reload`](super::Endpoint::reload).
//!
//! A reload is all or nothing for what can change live, and nothing for what cannot:
//!
//! - **Live**: backends added (they take sessions after their first passing health check) and
//!   removed (drained: the balancer migrates their sessions away, new sessions avoid them, and
//!   they leave once their last connection closes; with migration off their sessions stay until
//!   they end); `[auth] users`; `[proxy] max-connections`, `idle-timeout`, `max-packet-size`,
//!   `statement-timeout`, `server-version`; `[tls]` (certificate and key read again) and
//!   `[backend-tls]`; `[health]`; `[migration]` but its mode; `[[routes]]`; `[admin]` tokens
//!   and `hosts`. Sessions already open keep the session configuration they started with (users
//!   table, limits, TLS); new sessions get the new one.
//! - **Restart only**: `proxy.listen`, `proxy.workers`, `proxy.shutdown-timeout`,
//!   `admin.listen`, `admin.tls`, `admin.max-connections`, `admin.request-timeout` (the admin
//!   port is set up when it opens), `auth.mode` and `migration.mode` (every live session was set
//!   up for the old modes), and a kept backend's address (to move a backend live, add it under a new name and
//!   remove the old one). A change there is not applied: the running value stays and the key is
//!   listed in `pending_restart` until a restart, or a reload that puts the value back.
//! - **Refused**: a file that does not parse or check ([`Config::from_file`] names the key), or
//!   one that gives a backend still being removed a new address. The running configuration
//!   stays, the error is logged and kept for `GET /api/config`.
//!
//! Reading the file is I/O, so the core does not do it: a driver gives the endpoint a
//! [`ConfigSource`] (for the `ferry` programs, the command line's `--config` file with its flags
//! applied), which `SIGHUP` and `POST /api/config/reload` both use.

use std::collections::HashMap;

use serde::Serialize;

use super::config::{BackendAddr, BackendConfig, Config, ConfigError, Problem};

/// Where a reload reads the configuration: the driver's side of it (reading files is I/O).
/// Called while the endpoint is locked: it reads a small file and returns.
///
/// Any `Fn() -> Result<Config, ConfigError>` closure is one; the `ferry` programs give
/// `move || cli.config()` (the file named by `--config`, then the flags).
pub trait ConfigSource: Send + Sync + 'static {
    /// The configuration as it is now, checked.
    fn load(&self) -> Result<Config, ConfigError>;
}

impl<F> ConfigSource for F
where
    F: Fn() -> Result<Config, ConfigError> + Send + Sync + 'static,
{
    fn load(&self) -> Result<Config, ConfigError> {
        self()
    }
}

/// What a reload did (`POST /api/config/reload` answers it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The configuration's version now (1 at start, one more per reload applied).
    pub version: u64,
    /// Backends added: they take sessions after their first passing health check.
    pub added: Vec<String>,
    /// Backends removed: drained, then gone once their last session left.
    pub removed: Vec<String>,
    /// Other keys applied: those whose value changed, and `tls` / `backend-tls` whenever
    /// configured (their files are read again). New sessions use them.
    pub changed: Vec<String>,
    /// Keys whose new value needs a restart: not applied, the running value stays.
    pub pending_restart: Vec<String>,
}

/// The running configuration, as `GET /api/config` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigStatus {
    /// 1 at start, one more per reload applied.
    pub version: u64,
    /// Seconds since that version was applied.
    pub age_seconds: f64,
    /// Keys changed in the file that need a restart (the running value stays).
    pub pending_restart: Vec<String>,
    /// Backends removed by a reload that still have sessions (shown draining in
    /// `/api/backends`).
    pub removing: Vec<String>,
    /// Why the last reload was refused, if it was (cleared by one that is applied).
    pub last_error: Option<String>,
}

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The driver gave no [`ConfigSource`] (an embedder's proxy without a file).
    #[error("no configuration source to reload from")]
    NoSource,
    /// Shutting down: nothing changes any more.
    #[error("shutting down")]
    ShuttingDown,
    /// The new configuration was refused; the running one stays.
    #[error("{0}")]
    Refused(ConfigError),
}

/// A new configuration compared with the running one.
#[derive(Debug)]
pub(crate) struct Diff {
    /// What runs from now on: the new configuration with the running values of the keys that
    /// need a restart.
    pub(crate) effective: Config,
    /// Backends to add to the registry.
    pub(crate) added: Vec<BackendConfig>,
    /// Backends to drain and remove.
    pub(crate) removed: Vec<String>,
    /// Backends being removed that the new configuration keeps after all.
    pub(crate) kept: Vec<String>,
    /// See [`ReloadReport::changed`].
    pub(crate) changed: Vec<String>,
    /// See [`ReloadReport::pending_restart`].
    pub(crate) pending_restart: Vec<String>,
}

/// Compares `new` with `running`; `removing` are the backends a reload removed that still have
/// sessions (name, address). Refused (with the key) when `new` gives one of those a new
/// address, or when keeping a backend's running address would give two backends one address.
pub(crate) fn diff(
    running: &Config,
    mut new: Config,
    removing: &[(String, BackendAddr)],
) -> Result<Diff, ConfigError> {
    let admin_tls = |c: &Config| {
        c.admin
            .tls
            .as_ref()
            .map(|t| (t.cert.clone(), t.key.clone()))
    };
    let restart_only = [
        ("proxy.listen", new.proxy.listen != running.proxy.listen),
        ("proxy.workers", new.proxy.workers != running.proxy.workers),
        (
            "proxy.shutdown-timeout",
            new.proxy.shutdown_timeout != running.proxy.shutdown_timeout,
        ),
        ("admin.listen", new.admin.listen != running.admin.listen),
        // The drivers set up the admin port's TLS and limits when it opens.
        ("admin.tls", admin_tls(&new) != admin_tls(running)),
        (
            "admin.max-connections",
            new.admin.limits.max_connections != running.admin.limits.max_connections,
        ),
        (
            "admin.request-timeout",
            new.admin.limits.request_timeout != running.admin.limits.request_timeout,
        ),
        ("auth.mode", new.auth.mode != running.auth.mode),
        (
            "migration.mode",
            new.migration.mode != running.migration.mode,
        ),
        // The pool and every session were set up for it.
        ("multiplexing", new.multiplexing != running.multiplexing),
    ];
    let mut pending: Vec<String> = restart_only
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| (*key).to_owned())
        .collect();
    new.proxy.listen = running.proxy.listen;
    new.proxy.workers = running.proxy.workers;
    new.proxy.shutdown_timeout = running.proxy.shutdown_timeout;
    new.admin.listen = running.admin.listen;
    new.admin.tls = running.admin.tls.clone();
    new.admin.limits = running.admin.limits;
    new.auth.mode = running.auth.mode;
    new.migration.mode = running.migration.mode;
    new.multiplexing = running.multiplexing;

    // A backend given by name keeps its name: a change of what it resolves to needs nothing
    // (each connect resolves it again); a change of the configured text needs a restart.
    let running_addr: HashMap<&str, &BackendAddr> = running
        .backends
        .iter()
        .map(|b| (b.name.as_str(), &b.addr))
        .collect();
    let removing_addr: HashMap<&str, &BackendAddr> =
        removing.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let mut problems = Vec::new();
    let (mut added, mut kept) = (Vec::new(), Vec::new());
    for (i, b) in new.backends.iter_mut().enumerate() {
        if let Some(&addr) = running_addr.get(b.name.as_str()) {
            if *addr != b.addr {
                pending.push(format!("backends[{i}].addr"));
                b.addr = addr.clone();
            }
        } else if let Some(&addr) = removing_addr.get(b.name.as_str()) {
            if *addr == b.addr {
                kept.push(b.name.clone());
            } else {
                problems.push(Problem {
                    key: format!("backends[{i}].addr"),
                    reason: format!(
                        "backend {:?} is still being removed from {addr} (sessions are left \
                         on it): reload again once it is gone from /api/backends, or give the \
                         new one another name",
                        b.name
                    ),
                });
            }
        } else {
            added.push(b.clone());
        }
    }
    let mut seen: HashMap<&BackendAddr, usize> = HashMap::new();
    for (i, b) in new.backends.iter().enumerate() {
        if let Some(first) = seen.insert(&b.addr, i) {
            problems.push(Problem {
                key: format!("backends[{i}].addr"),
                reason: format!(
                    "{} is still backends[{first}]'s address until a restart (its new address \
                     needs one)",
                    b.addr
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    let removed = running
        .backends
        .iter()
        .filter(|old| !new.backends.iter().any(|b| b.name == old.name))
        .map(|old| old.name.clone())
        .collect();

    let changed = changed_keys(running, &new);
    Ok(Diff {
        effective: new,
        added,
        removed,
        kept,
        changed,
        pending_restart: pending,
    })
}

/// The live keys whose values differ (and the TLS sections whenever configured).
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (p, q) = (&old.proxy, &new.proxy);
    let (m, n) = (&old.migration, &new.migration);
    let tls_paths = |c: &Config| {
        c.tls
            .as_ref()
            .map(|t| (t.cert.clone(), t.key.clone(), t.require))
    };
    let backend_tls = |c: &Config| {
        c.backend_tls
            .as_ref()
            .map(|t| (t.ca.clone(), t.server_name.clone()))
    };
    let checks: [(&str, bool); 20] = [
        (
            "proxy.max-connections",
            p.max_connections != q.max_connections,
        ),
        ("proxy.idle-timeout", p.idle_timeout != q.idle_timeout),
        (
            "proxy.max-packet-size",
            p.max_packet_size != q.max_packet_size,
        ),
        (
            "proxy.statement-timeout",
            p.statement_timeout != q.statement_timeout,
        ),
        ("proxy.server-version", p.server_version != q.server_version),
        ("auth.users", old.auth.users != new.auth.users),
        // The files are read at every reload: a renewed certificate under the same name counts.
        ("tls", new.tls.is_some() || tls_paths(old) != tls_paths(new)),
        (
            "backend-tls",
            new.backend_tls.is_some() || backend_tls(old) != backend_tls(new),
        ),
        (
            "health.interval",
            old.health.interval != new.health.interval,
        ),
        ("health.timeout", old.health.timeout != new.health.timeout),
        ("migration.timeout", m.timeout != n.timeout),
        (
            "migration.safe-point-timeout",
            m.safe_point_timeout != n.safe_point_timeout,
        ),
        (
            "migration.rebalance-interval",
            m.rebalance_interval != n.rebalance_interval,
        ),
        (
            "migration.rebalance-max-moves",
            m.rebalance.max_moves != n.rebalance.max_moves,
        ),
        (
            "migration.rebalance-tolerance",
            m.rebalance.tolerance != n.rebalance.tolerance,
        ),
        ("migration.failover", m.failover != n.failover),
        ("migration.read-retry", m.read_retry != n.read_retry),
        ("admin.token", old.admin.token != new.admin.token),
        (
            "admin.read-token",
            old.admin.read_token != new.admin.read_token,
        ),
        ("admin.hosts", old.admin.hosts != new.admin.hosts),
    ];
    let mut changed: Vec<String> = checks
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| (*key).to_owned())
        .collect();
    if old.routes != new.routes {
        changed.push("routes".to_owned());
    }
    changed
}

// They read TOML text.
#[cfg(test)]
#[cfg(feature = "toml")]
mod tests {
    use super::*;
    use crate::control::config::ConfigFile;

    const BASE: &str = r#"
[proxy]
listen = "127.0.0.1:6000"
workers = 2
idle-timeout = "1h"
[admin]
listen = "127.0.0.1:6080"
[[backends]]
name = "db1"
addr = "127.0.0.1:3306"
[[backends]]
name = "db2"
addr = "127.0.0.1:3307"
"#;

    fn config(text: &str) -> Config {
        Config::from_file(&ConfigFile::parse(text, None).unwrap()).unwrap()
    }

    #[test]
    fn an_identical_file_changes_nothing() {
        let d = diff(&config(BASE), config(BASE), &[]).unwrap();
        assert!(d.added.is_empty() && d.removed.is_empty() && d.kept.is_empty());
        assert!(d.changed.is_empty(), "{:?}", d.changed);
        assert!(d.pending_restart.is_empty());
    }

    #[test]
    fn backends_are_matched_by_name() {
        let text = BASE.replace(
            "name = \"db1\"\naddr = \"127.0.0.1:3306\"",
            "name = \"db3\"\naddr = \"127.0.0.1:3308\"",
        );
        let d = diff(&config(BASE), config(&text), &[]).unwrap();
        let added: Vec<&str> = d.added.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(added, ["db3"]);
        assert_eq!(d.removed, ["db1"]);
        // The effective configuration is the new file's list.
        let names: Vec<&str> = d
            .effective
            .backends
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["db3", "db2"]);
        assert!(d.changed.is_empty());
    }

    #[test]
    fn keys_that_need_a_restart_keep_their_running_value() {
        let text = BASE
            .replace("127.0.0.1:6000", "127.0.0.1:7000")
            .replace("workers = 2", "workers = 3\nmax-connections = 5")
            .replace(
                "127.0.0.1:6080\"",
                "127.0.0.1:7080\"\nmax-connections = 4\ntoken = \"0123456789abcdef\"",
            )
            .replace("127.0.0.1:3307", "127.0.0.1:4000");
        let running = config(BASE);
        let d = diff(&running, config(&text), &[]).unwrap();
        assert_eq!(
            d.pending_restart,
            [
                "proxy.listen",
                "proxy.workers",
                "admin.listen",
                "admin.max-connections",
                "backends[1].addr"
            ]
        );
        let e = &d.effective;
        assert_eq!(e.proxy.listen, running.proxy.listen);
        assert_eq!(e.proxy.workers, running.proxy.workers);
        assert_eq!(e.admin.listen, running.admin.listen);
        assert_eq!(e.admin.limits, running.admin.limits);
        assert_eq!(e.backends[1].addr, running.backends[1].addr);
        // The rest is applied.
        assert_eq!(e.proxy.max_connections, 5);
        assert!(e.admin.token.as_ref().unwrap().matches(b"0123456789abcdef"));
        assert_eq!(d.changed, ["proxy.max-connections", "admin.token"]);
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn auth_and_migration_modes_need_a_restart_but_the_users_do_not() {
        let proxy = format!(
            "{BASE}[auth]\nmode = \"proxy\"\n[[auth.users]]\nname = \"app\"\npassword-hash = \"\"\n"
        );
        let more_users = format!("{proxy}[[auth.users]]\nname = \"other\"\npassword-hash = \"\"\n");
        let d = diff(&config(&proxy), config(&more_users), &[]).unwrap();
        assert_eq!(d.changed, ["auth.users"]);
        assert!(d.pending_restart.is_empty());
        let off = format!("{more_users}[migration]\nmode = \"off\"\nfailover = false\n");
        let d = diff(&config(&proxy), config(&off), &[]).unwrap();
        assert_eq!(d.pending_restart, ["migration.mode"]);
        assert_eq!(d.effective.migration.mode, config(&proxy).migration.mode);
        assert_eq!(d.changed, ["auth.users", "migration.failover"]);
        let d = diff(&config(&proxy), config(BASE), &[]).unwrap();
        assert_eq!(d.pending_restart, ["auth.mode", "migration.mode"]);
    }

    #[test]
    fn a_backend_being_removed_may_come_back_at_its_address_only() {
        let without_db1 = BASE.replace(
            "[[backends]]\nname = \"db1\"\naddr = \"127.0.0.1:3306\"\n",
            "",
        );
        let running = config(&without_db1);
        let removing = [("db1".to_owned(), "127.0.0.1:3306".parse().unwrap())];
        let d = diff(&running, config(BASE), &removing).unwrap();
        assert_eq!(d.kept, ["db1"]);
        assert!(d.added.is_empty());
        let moved = BASE.replace("3306", "3999");
        let err = diff(&running, config(&moved), &removing).unwrap_err();
        assert_eq!(err.problems()[0].key, "backends[0].addr");
        assert!(err.to_string().contains("still being removed"), "{err}");
    }

    #[test]
    fn a_backend_given_by_name_keeps_it_and_a_new_text_needs_a_restart() {
        let named = BASE.replace("127.0.0.1:3307", "db2.internal:3307");
        let running = config(&named);
        // The same name: nothing to do (what it resolves to is looked up at each connect).
        let d = diff(&running, config(&named), &[]).unwrap();
        assert!(
            d.pending_restart.is_empty() && d.changed.is_empty(),
            "{d:?}"
        );
        // Its IP in place of the name, or another name: a new address, which needs a restart.
        for text in [
            BASE.to_owned(),
            named.replace("db2.internal", "db2b.internal"),
        ] {
            let d = diff(&running, config(&text), &[]).unwrap();
            assert_eq!(d.pending_restart, ["backends[1].addr"]);
            assert_eq!(d.effective.backends[1].addr, running.backends[1].addr);
        }
        // A removed named backend comes back under its name only.
        let without = named.replace(
            "[[backends]]\nname = \"db2\"\naddr = \"db2.internal:3307\"\n",
            "",
        );
        let removing = [("db2".to_owned(), "db2.internal:3307".parse().unwrap())];
        let d = diff(&config(&without), config(&named), &removing).unwrap();
        assert_eq!(d.kept, ["db2"]);
        let err = diff(&config(&without), config(BASE), &removing).unwrap_err();
        assert_eq!(err.problems()[0].key, "backends[1].addr");
    }

    #[test]
    fn a_kept_address_may_not_be_given_to_another_backend() {
        // db2 moves (needs a restart), and db3 takes db2's running address.
        let text = BASE.replace("127.0.0.1:3307", "127.0.0.1:4000")
            + "[[backends]]\nname = \"db3\"\naddr = \"127.0.0.1:3307\"\n";
        let err = diff(&config(BASE), config(&text), &[]).unwrap_err();
        assert_eq!(err.problems()[0].key, "backends[2].addr");
    }
}
