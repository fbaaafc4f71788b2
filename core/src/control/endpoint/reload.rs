//! [`Endpoint::reload`]: applying a new configuration to the running proxy (what may change
//! live and what needs a restart is in [`reload`](crate::control::reload)), and the version the
//! admin API shows.

use std::sync::Arc;
use std::time::Instant;

use super::Endpoint;
use crate::control::chooser::{BackendChooser, Routes};
use crate::control::config::{Config, MigrationMode};
use crate::control::reload::{diff, ConfigSource, ConfigStatus, ReloadError, ReloadReport};
use crate::control::session_config::session_config;

/// The endpoint's record of its configuration's history.
pub(super) struct ReloadState {
    /// 1 at start, one more per reload applied.
    version: u64,
    loaded_at: Instant,
    pending_restart: Vec<String>,
    last_error: Option<String>,
    source: Option<Box<dyn ConfigSource>>,
    /// The chooser is the configuration's `[[routes]]` (rebuilt by a reload), not the
    /// embedder's.
    pub(super) routes_chooser: bool,
    /// The server version the backends gave at the first health round, for a reload that
    /// drops `[proxy] server-version`.
    pub(super) advertised: Option<String>,
}

impl ReloadState {
    pub(super) fn new(now: Instant, config: &Config) -> Self {
        Self {
            version: 1,
            loaded_at: now,
            pending_restart: Vec::new(),
            last_error: None,
            source: None,
            routes_chooser: !config.routes.is_empty(),
            advertised: None,
        }
    }
}

impl Endpoint {
    /// Where [`Endpoint::reload_from_source`] (`SIGHUP`, `POST /api/config/reload`) reads the
    /// configuration: the driver's file reader.
    pub fn set_config_source(&mut self, source: Box<dyn ConfigSource>) {
        self.reload.source = Some(source);
    }

    /// The running configuration's version, age, keys waiting for a restart, backends still
    /// being removed and the last refusal (`GET /api/config`).
    pub fn config_status(&self, now: Instant) -> ConfigStatus {
        ConfigStatus {
            version: self.reload.version,
            age_seconds: now
                .saturating_duration_since(self.reload.loaded_at)
                .as_secs_f64(),
            pending_restart: self.reload.pending_restart.clone(),
            removing: self
                .registry
                .backends()
                .iter()
                .filter(|b| b.removing() && !b.retired())
                .map(|b| b.name.clone())
                .collect(),
            last_error: self.reload.last_error.clone(),
        }
    }

    /// Reads the configuration from the [`ConfigSource`] and applies it with
    /// [`Endpoint::reload`].
    pub fn reload_from_source(&mut self, now: Instant) -> Result<ReloadReport, ReloadError> {
        if self.shutdown.is_some() {
            return Err(ReloadError::ShuttingDown);
        }
        let loaded = match &self.reload.source {
            None => return Err(ReloadError::NoSource),
            Some(source) => source.load(),
        };
        match loaded {
            Ok(config) => self.reload(now, config),
            Err(e) => Err(self.refused(ReloadError::Refused(e))),
        }
    }

    /// Applies `new` to the running proxy (see [`reload`](crate::control::reload) for what
    /// changes live): backends added join as unhealthy and a health round starts at once;
    /// removed ones drain and leave once their last connection closes; new sessions get a
    /// session configuration built from `new`, open ones keep theirs. Keys that need a restart
    /// keep their running values and are reported. On `Err` nothing changed. Logged either way.
    pub fn reload(&mut self, now: Instant, new: Config) -> Result<ReloadReport, ReloadError> {
        if self.shutdown.is_some() {
            return Err(ReloadError::ShuttingDown);
        }
        let removing: Vec<_> = self
            .registry
            .backends()
            .iter()
            .filter(|b| b.removing() && !b.retired())
            .map(|b| (b.name.clone(), b.addr.clone()))
            .collect();
        let diff = match diff(&self.config, new, &removing) {
            Ok(d) => d,
            Err(e) => return Err(self.refused(ReloadError::Refused(e))),
        };
        let mut sessions = match session_config(&diff.effective) {
            Ok(s) => s,
            Err(e) => return Err(self.refused(ReloadError::Refused(e))),
        };
        if diff.effective.proxy.server_version.is_none() {
            if let Some(version) = &self.reload.advertised {
                Arc::make_mut(&mut sessions.frontend).server_version = version.clone();
            }
        }

        // Nothing fails from here on.
        for b in &diff.added {
            self.registry.add(b);
        }
        for name in &diff.kept {
            if let Some(i) = self.registry.find(name) {
                self.registry.set_removing(i, false);
            }
        }
        for name in &diff.removed {
            if let Some(i) = self.registry.find(name) {
                self.registry.set_removing(i, true);
                self.pool.close_backend(i);
            }
        }
        self.config = diff.effective;
        self.session_config = Arc::new(sessions);
        // An embedder's chooser stays; the configuration's `[[routes]]` follow the file.
        if self.reload.routes_chooser || self.chooser.is_none() {
            self.chooser = (!self.config.routes.is_empty())
                .then(|| Box::new(Routes(self.config.routes.clone())) as Box<dyn BackendChooser>);
            self.reload.routes_chooser = self.chooser.is_some();
        }
        // New backends are checked at once (their probes wait for the driver's next
        // `poll_probe`; a round already running finds them at the next one); a shorter
        // interval counts from now.
        if !diff.added.is_empty() && self.health.outstanding == 0 {
            self.start_round(now);
        } else {
            self.health.next = self.health.next.min(now + self.config.health.interval);
        }
        self.next_rebalance = self
            .next_rebalance
            .min(now + self.config.migration.rebalance_interval);
        self.reload.version += 1;
        self.reload.loaded_at = now;
        self.reload.pending_restart = diff.pending_restart.clone();
        self.reload.last_error = None;
        let report = ReloadReport {
            version: self.reload.version,
            added: diff.added.iter().map(|b| b.name.clone()).collect(),
            removed: diff.removed,
            changed: diff.changed,
            pending_restart: diff.pending_restart,
        };
        tracing::info!(
            version = report.version,
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            "configuration reloaded; new sessions use it"
        );
        if !report.pending_restart.is_empty() {
            tracing::warn!(
                keys = ?report.pending_restart,
                "configuration keys changed that need a restart; their running values stay"
            );
        }
        if !report.removed.is_empty() && self.config.migration.mode == MigrationMode::Off {
            tracing::info!(
                backends = ?report.removed,
                "migration is off: removed backends keep their sessions until they end"
            );
        }
        self.retire_removed();
        self.plan(now);
        Ok(report)
    }

    /// Removed backends without a connection left leave the registry.
    pub(super) fn retire_removed(&mut self) {
        for name in self.registry.retire_removed() {
            tracing::info!(backend = %name, "removed backend has no session left; it is gone");
        }
    }

    /// Logs a refused reload and keeps its reason for `GET /api/config`.
    fn refused(&mut self, error: ReloadError) -> ReloadError {
        tracing::warn!(
            %error,
            version = self.reload.version,
            "configuration reload refused; the running configuration stays"
        );
        self.reload.last_error = Some(error.to_string());
        error
    }
}
