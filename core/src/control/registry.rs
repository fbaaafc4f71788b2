//! The backends as all workers, the health checker and the admin endpoint share them: health,
//! draining flag and session counts, in atomics, so that picking a backend takes no lock.
//!
//! A reload adds backends at the end and retires removed ones in place (a tombstone), so an
//! index names the same backend for the life of the process: backend connections
//! (`BackendSlot::index`), health probes and balancer plans carry indices, and one that comes
//! back after its backend left (a late probe, a release) finds the tombstone, never a newer
//! backend. A tombstone is a name, an address and a few flags; a proxy would need millions of
//! reloads that each remove a backend before they weigh anything.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::balance::{pick_backend, BackendLoad};

use crate::control::admin::{ApiError, BackendInfo};
use crate::control::config::{BackendAddr, BackendConfig};

/// One backend's shared state.
#[derive(Debug)]
pub struct Backend {
    /// Configured name.
    pub name: String,
    /// Address (an IP address, or a host name resolved at each connect).
    pub addr: BackendAddr,
    /// Connections to it start with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
    healthy: AtomicBool,
    /// Down, but the server is there: it answered a new connection with an ERR in place of its
    /// greeting (1040 too many connections, 1129 host blocked...).
    refusing: AtomicBool,
    draining: AtomicBool,
    /// Backend connections open (or opening) to it.
    sessions: AtomicUsize,
    /// Removed by a reload: drained (new sessions avoid it, the balancer moves its sessions
    /// away) until its last backend connection closes, then retired.
    removing: AtomicBool,
    /// Gone from the configuration and without connections: a tombstone that keeps its index.
    retired: bool,
}

impl Backend {
    /// Passes health checks.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Being drained: by request, or because a reload removed it.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.removing()
    }

    /// Healthy and not draining: sessions may be placed on it (and pooled connections kept).
    pub fn takes_sessions(&self) -> bool {
        self.healthy() && !self.draining()
    }

    /// Removed by a reload, waiting for its last connection to close (or retired).
    pub fn removing(&self) -> bool {
        self.removing.load(Ordering::Relaxed)
    }

    /// Removed and without connections: a tombstone, skipped by every lookup.
    pub fn retired(&self) -> bool {
        self.retired
    }

    fn new(config: &BackendConfig) -> Self {
        Self {
            name: config.name.clone(),
            addr: config.addr.clone(),
            proxy_protocol: config.proxy_protocol,
            healthy: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            removing: AtomicBool::new(false),
            retired: false,
        }
    }

    /// Down because it answers connections with an ERR (1040...), not because it is gone.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }
}

/// All backends, in the order they were configured (indices are stable: see the module docs).
#[derive(Debug)]
pub struct Registry {
    backends: Vec<Backend>,
}

impl Registry {
    /// Every backend starts unhealthy until its first check passes.
    pub fn new(backends: &[BackendConfig]) -> Self {
        Self {
            backends: backends.iter().map(Backend::new).collect(),
        }
    }

    /// The backends, retired ones included (they keep their index).
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend at `index` (possibly retired).
    pub fn get(&self, index: usize) -> Option<&Backend> {
        self.backends.get(index)
    }

    /// The index of the backend called `name` (not retired).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|b| b.name == name && !b.retired)
    }

    /// Adds a backend (a reload): unhealthy until its first check passes; its index.
    pub fn add(&mut self, config: &BackendConfig) -> usize {
        self.backends.push(Backend::new(config));
        self.backends.len() - 1
    }

    /// Marks `index` removed (`true`: new sessions avoid it, the balancer moves its sessions
    /// away, and it retires once it has no connection), or keeps it after all (`false`).
    pub fn set_removing(&self, index: usize, removing: bool) {
        if let Some(b) = self.backends.get(index).filter(|b| !b.retired) {
            b.removing.store(removing, Ordering::Relaxed);
        }
    }

    /// Retires every removed backend that has no connection left; their names.
    pub fn retire_removed(&mut self) -> Vec<String> {
        let mut retired = Vec::new();
        for b in &mut self.backends {
            if b.removing() && !b.retired && b.sessions.load(Ordering::Relaxed) == 0 {
                b.retired = true;
                b.healthy.store(false, Ordering::Relaxed);
                b.refusing.store(false, Ordering::Relaxed);
                retired.push(b.name.clone());
            }
        }
        retired
    }

    /// Picks a backend for a new connection with the core's policy and counts the connection on
    /// it; `None` if no backend is healthy and not draining.
    pub fn pick(&self) -> Option<usize> {
        self.pick_among(|b| b.healthy.load(Ordering::Relaxed))
    }

    /// [`Registry::pick`] among the backends not called `avoid`.
    pub fn pick_healthy_except(&self, avoid: &str) -> Option<usize> {
        self.pick_among(|b| b.name != avoid && b.healthy.load(Ordering::Relaxed))
    }

    /// [`Registry::pick`], or when no backend is healthy, one that is down only because it
    /// refuses connections: its own ERR (1040 too many connections...) tells a client more than
    /// "no healthy backend", and a slot that frees up serves the next client at once, not after
    /// the next health check.
    pub fn pick_or_refusing(&self) -> Option<usize> {
        self.pick()
            .or_else(|| self.pick_among(|b| b.refusing.load(Ordering::Relaxed)))
    }

    fn pick_among(&self, eligible: impl Fn(&Backend) -> bool) -> Option<usize> {
        let loads: Vec<BackendLoad> = self
            .backends
            .iter()
            .map(|b| BackendLoad {
                healthy: eligible(b) && !b.retired,
                draining: b.draining(),
                sessions: b.sessions.load(Ordering::Relaxed),
            })
            .collect();
        let index = pick_backend(&loads)?;
        self.claim(index);
        Some(index)
    }

    /// Counts one more connection on `index` (a connection to a named backend).
    pub fn claim(&self, index: usize) {
        if let Some(b) = self.backends.get(index) {
            b.sessions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one connection less on `index`.
    pub fn release(&self, index: usize) {
        if let Some(b) = self.backends.get(index) {
            // Never below zero, even if a caller releases twice.
            let _ = b
                .sessions
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Records a health verdict (a backend that is up is not refusing); true if the backend's
    /// health changed.
    pub fn set_health(&self, index: usize, healthy: bool) -> bool {
        self.set_state(index, healthy, false)
    }

    /// Records that the backend answers connections with an ERR in place of its greeting: down,
    /// but a fallback for [`Registry::pick_or_refusing`]; true if its health changed.
    pub fn set_refusing(&self, index: usize) -> bool {
        self.set_state(index, false, true)
    }

    fn set_state(&self, index: usize, healthy: bool, refusing: bool) -> bool {
        // A late verdict on a retired backend changes nothing.
        let Some(b) = self.backends.get(index).filter(|b| !b.retired) else {
            return false;
        };
        b.refusing.store(refusing, Ordering::Relaxed);
        b.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Starts or stops draining the backend called `name` (new sessions avoid it).
    pub fn set_draining(&self, name: &str, draining: bool) -> Result<(), ApiError> {
        let index = self
            .find(name)
            .ok_or_else(|| ApiError::UnknownBackend(name.to_owned()))?;
        let b = &self.backends[index];
        if !draining && b.removing() {
            return Err(ApiError::Conflict(format!(
                "backend {name} is being removed by a reload; add it back to the configuration \
                 and reload to keep it"
            )));
        }
        b.draining.store(draining, Ordering::Relaxed);
        Ok(())
    }

    /// A snapshot for the admin API and metrics (without retired backends; one being removed
    /// shows as draining).
    pub fn infos(&self) -> Vec<BackendInfo> {
        self.backends
            .iter()
            .filter(|b| !b.retired)
            .map(|b| BackendInfo {
                name: b.name.clone(),
                addr: b.addr.to_string(),
                healthy: b.healthy.load(Ordering::Relaxed),
                sessions: b.sessions.load(Ordering::Relaxed) as u64,
                draining: b.draining(),
                health_warning: None,
                down_reason: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(n: usize) -> Registry {
        let configs: Vec<_> = (0..n)
            .map(|i| BackendConfig {
                name: format!("db{}", i + 1),
                addr: format!("127.0.0.1:{}", 3306 + i).parse().unwrap(),
                proxy_protocol: false,
            })
            .collect();
        Registry::new(&configs)
    }

    #[test]
    fn nothing_is_picked_before_a_health_check_passes() {
        let r = registry(2);
        assert_eq!(r.pick(), None);
        assert!(r.infos().iter().all(|b| !b.healthy && b.sessions == 0));
    }

    #[test]
    fn picks_spread_over_healthy_backends_and_skip_unhealthy_and_draining() {
        let r = registry(3);
        for i in 0..3 {
            assert!(r.set_health(i, true));
        }
        // Repeating a verdict is not a change.
        assert!(!r.set_health(0, true));
        let picks: Vec<_> = (0..6).map(|_| r.pick().unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert!(r.set_health(1, false));
        r.set_draining("db3", true).unwrap();
        assert_eq!(r.pick(), Some(0));
        assert_eq!(r.pick(), Some(0));
        let infos = r.infos();
        assert_eq!(
            infos.iter().map(|b| b.sessions).collect::<Vec<_>>(),
            [4, 2, 2]
        );
        assert!(!infos[1].healthy && infos[2].draining);
        // A backend that comes back takes the next sessions (it has the fewest).
        r.set_draining("db3", false).unwrap();
        for _ in 0..2 {
            r.release(0);
        }
        r.set_health(1, true);
        r.release(1);
        r.release(1);
        assert_eq!(r.pick(), Some(1));
    }

    #[test]
    fn a_refusing_backend_is_picked_only_when_none_is_healthy() {
        let r = registry(3);
        // Nothing checked yet: unknown is not refusing, so there is no fallback either.
        assert_eq!(r.pick_or_refusing(), None);
        assert!(!r.set_refusing(0), "it was already down");
        assert!(r.set_health(1, true));
        assert_eq!(
            r.pick_or_refusing(),
            Some(1),
            "a healthy backend comes first"
        );
        assert!(r.set_health(1, false));
        assert_eq!(r.pick(), None);
        assert_eq!(r.pick_or_refusing(), Some(0), "then the one that refuses");
        r.set_draining("db1", true).unwrap();
        assert_eq!(r.pick_or_refusing(), None, "never a draining one");
        r.set_draining("db1", false).unwrap();
        // A passing check ends the refusal, a failed one (unreachable) too.
        assert!(r.set_health(0, true));
        assert!(r.set_health(0, false));
        assert_eq!(r.pick_or_refusing(), None);
        let sessions: Vec<_> = r.infos().iter().map(|b| b.sessions).collect();
        assert_eq!(
            sessions,
            [1, 1, 0],
            "each pick counts its connection, a miss nothing"
        );
    }

    #[test]
    fn release_never_goes_below_zero_and_unknown_names_are_refused() {
        let r = registry(1);
        r.release(0);
        r.release(5);
        assert_eq!(r.infos()[0].sessions, 0);
        assert_eq!(
            r.set_draining("nope", true),
            Err(ApiError::UnknownBackend("nope".into()))
        );
        assert_eq!(r.find("db1"), Some(0));
        assert!(!r.infos()[0].healthy);
    }

    #[test]
    fn removed_backends_drain_then_retire_and_keep_their_index() {
        let mut r = registry(2);
        for i in 0..2 {
            r.set_health(i, true);
        }
        assert_eq!(r.pick(), Some(0));
        r.set_removing(0, true);
        assert!(r.infos()[0].draining, "shown as draining while removed");
        assert_eq!(r.pick(), Some(1), "new sessions avoid it");
        assert!(matches!(
            r.set_draining("db1", false),
            Err(ApiError::Conflict(_))
        ));
        // It keeps its session: not retired yet.
        assert!(r.retire_removed().is_empty());
        r.release(0);
        assert_eq!(r.retire_removed(), ["db1"]);
        assert_eq!(r.find("db1"), None);
        assert_eq!(r.infos().len(), 1);
        assert!(r.get(0).unwrap().retired());
        // A late verdict for the tombstone changes nothing; a new backend of the same name gets
        // a new index, unhealthy until checked.
        assert!(!r.set_health(0, true));
        let again = r.add(&BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:4000".parse().unwrap(),
            proxy_protocol: false,
        });
        assert_eq!(again, 2);
        assert_eq!(r.find("db1"), Some(2));
        assert!(!r.infos()[1].healthy);
        r.set_health(again, true);
        assert_eq!(r.pick(), Some(2), "db2 has a session, the new db1 none");
        // A removal called off before the backend retired keeps it as it was.
        r.set_removing(1, true);
        r.set_removing(1, false);
        assert!(!r.infos()[0].draining);
        assert!(r.retire_removed().is_empty());
    }
}
