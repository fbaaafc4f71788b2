//! The health checker: a thread that checks every backend each `health.interval`.
//!
//! One check connects with `health.timeout`, reads what the server sends first and lets the
//! core's [`probe_greeting`] judge it (a greeting is healthy; ERR 1040, 1129 or any other ERR,
//! garbage, a refused or silent connection are not). Nothing is sent, so no account is needed.
//! A backend that fails is skipped by new sessions and comes back when a check passes. One that
//! answers with an ERR (it is up but refuses: full, or blocking ferry's host) is still tried by a
//! new session when no backend is healthy, so that the client hears the server's own error, or
//! gets in as soon as a slot frees (see [`Registry::pick_or_refusing`]).
//!
//! Caveat: like HAProxy's plain `mysql-check`, closing after the greeting counts as a handshake
//! error on the server for non-loopback clients; a server with a low `max_connect_errors` and no
//! other traffic from ferry's host may block it (1129), which this check then reports.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::balance::{probe_greeting, Probe, Unhealthy, MAX_GREETING_SIZE};
use ferry_core::ProtocolError;

use super::registry::Registry;
use super::shared::Shared;

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// What went wrong, for the log.
    pub reason: String,
    /// The server answered with an ERR in place of its greeting: it is up, but refuses.
    pub refusing: bool,
    /// The check could not run: ferry itself is out of descriptors or memory. It says nothing
    /// about the backend, whose health stays as it was.
    pub local: bool,
}

impl CheckFailure {
    fn down(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            refusing: false,
            local: false,
        }
    }

    fn connect(error: &io::Error) -> Self {
        Self {
            local: is_local_exhaustion(error),
            ..Self::down(format!("connect: {error}"))
        }
    }
}

/// Is `error` (from opening a connection) ferry running out of its own resources: descriptors
/// (EMFILE, ENFILE), buffers or memory? Such a failure must not mark a backend down: every
/// backend would fail alike, and they would all stay down after the descriptors free up.
pub fn is_local_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The verdict of one check: `Ok(server version)` or why it failed.
pub type Verdict = Result<String, CheckFailure>;

/// Checks one backend within `timeout`.
pub fn check_backend(addr: SocketAddr, timeout: Duration) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| CheckFailure::connect(&e))?;
    let mut bytes = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        match probe_greeting(&bytes) {
            Probe::Healthy { server_version } => return Ok(server_version),
            Probe::Unhealthy(reason) => {
                return Err(CheckFailure {
                    local: false,
                    refusing: matches!(
                        reason,
                        Unhealthy::TooManyConnections
                            | Unhealthy::HostBlocked
                            | Unhealthy::ServerError { .. }
                    ),
                    reason: reason.to_string(),
                })
            }
            Probe::NeedMore => {}
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CheckFailure::down(format!(
                "no greeting within {timeout:?}"
            )));
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|e| CheckFailure::down(format!("socket: {e}")))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(CheckFailure::down("closed before the greeting")),
            Ok(n) if bytes.len() + n <= MAX_GREETING_SIZE + 4 => {
                bytes.extend_from_slice(&chunk[..n])
            }
            // probe_greeting refuses an announcement over the cap before this can happen.
            Ok(_) => return Err(CheckFailure::down("greeting too large")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CheckFailure::down(format!(
                    "no greeting within {timeout:?}"
                )))
            }
            Err(e) => return Err(CheckFailure::down(format!("read: {e}"))),
        }
    }
}

/// Records backend `index`'s verdict from [`check_backend`] in `registry`, logging a change (and,
/// at debug level, a backend still down); `true` if its health changed.
pub fn record_verdict(registry: &Registry, index: usize, verdict: &Verdict) -> bool {
    let Some(b) = registry.get(index) else {
        return false;
    };
    let changed = match verdict {
        Err(failure) if failure.local => {
            tracing::warn!(backend = %b.name, reason = %failure, "health check could not run; health unchanged");
            return false;
        }
        Err(failure) if failure.refusing => registry.set_refusing(index),
        _ => registry.set_health(index, verdict.is_ok()),
    };
    match (verdict, changed) {
        (Ok(version), true) => {
            tracing::info!(backend = %b.name, addr = %b.addr, %version, "backend healthy")
        }
        (Err(reason), true) => {
            tracing::warn!(backend = %b.name, addr = %b.addr, %reason, "backend unhealthy")
        }
        (Err(reason), false) => {
            tracing::debug!(backend = %b.name, addr = %b.addr, %reason, "backend still unhealthy")
        }
        (Ok(_), false) => {}
    }
    changed
}

/// A session's backend `name` answered a new connection with `error` in place of its greeting
/// (the core's `Event::BackendRefused`: 1040 too many connections, 1129 host blocked...): the
/// same verdict as a check that met the ERR, so new sessions skip it until a check passes
/// (unless no backend is healthy). Logged at warn when it goes down, at debug while it stays
/// down (an overloaded server would otherwise flood the log); `true` if this changed its health,
/// `false` also for a name the registry does not know.
pub fn record_refusal(registry: &Registry, name: &str, error: &ProtocolError) -> bool {
    let Some(index) = registry.find(name) else {
        return false;
    };
    let changed = registry.set_refusing(index);
    if let Some(b) = registry.get(index) {
        if changed {
            tracing::warn!(
                backend = %b.name,
                addr = %b.addr,
                code = error.code,
                message = %error.message,
                "backend refused a connection before its greeting; skipped until a health check passes"
            );
        } else {
            tracing::debug!(backend = %b.name, code = error.code, "backend still refusing connections");
        }
    }
    changed
}

/// Checks every backend once, in parallel, and records the verdicts (logging changes).
pub(crate) fn check_all(shared: &Shared, timeout: Duration) {
    let registry = &shared.registry;
    let verdicts: Vec<Verdict> = std::thread::scope(|scope| {
        let handles: Vec<_> = registry
            .backends()
            .iter()
            .map(|b| scope.spawn(move || check_backend(b.addr, timeout)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CheckFailure::down("health check panicked")))
            })
            .collect()
    });
    let mut any_change = false;
    for (index, verdict) in verdicts.into_iter().enumerate() {
        any_change |= record_verdict(registry, index, &verdict);
    }
    if any_change {
        // A backend that came back takes sessions, one that fails loses them (migration on).
        shared.nudge_balancer();
    }
}

/// The running checker thread; [`HealthChecker::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct HealthChecker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthChecker {
    /// Starts checking every `interval` (the first round runs after one interval: the caller
    /// ran one already).
    pub(crate) fn start(
        shared: Arc<Shared>,
        interval: Duration,
        timeout: Duration,
    ) -> io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferry-health".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => check_all(&shared, timeout),
                    // Stop asked, or the proxy is gone.
                    _ => return,
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (at most one check's timeout).
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    /// A server on a free port that writes `first` to each connection, then holds it briefly.
    fn server(first: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(first);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        addr
    }

    fn packet(payload: &[u8]) -> &'static [u8] {
        let mut v = vec![payload.len() as u8, 0, 0, 0];
        v.extend_from_slice(payload);
        v.leak()
    }

    #[test]
    fn refused_silent_and_erring_backends_are_unhealthy() {
        // Nothing listens on a port just released.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check_backend(addr, Duration::from_millis(500)).unwrap_err();
        assert!(err.reason.starts_with("connect:") && !err.refusing, "{err}");

        let silent = server(b"");
        let start = Instant::now();
        let err = check_backend(silent, Duration::from_millis(200)).unwrap_err();
        assert!(err.reason.contains("no greeting") && !err.refusing, "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));

        let mut too_many = vec![0xFF];
        too_many.extend_from_slice(&1040u16.to_le_bytes());
        too_many.extend_from_slice(b"Too many connections");
        let err = check_backend(server(packet(&too_many)), Duration::from_secs(2)).unwrap_err();
        assert!(err.reason.contains("too many connections"), "{err}");
        assert!(
            err.refusing,
            "an ERR greeting means the server is up but refuses"
        );

        let err =
            check_backend(server(packet(b"\x0agarbage")), Duration::from_secs(2)).unwrap_err();
        assert!(!err.refusing, "garbage is not a server that refuses: {err}");
    }

    #[test]
    fn verdicts_change_the_registry_and_report_changes_only() {
        let registry = Registry::new(&[crate::config::BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:3306".parse().unwrap(),
        }]);
        let up: Verdict = Ok("11.4.2-MariaDB".into());
        let down: Verdict = Err(CheckFailure::down("connect: refused"));
        let full: Verdict = Err(CheckFailure {
            reason: "too many connections".into(),
            refusing: true,
            local: false,
        });
        let out_of_files: Verdict = Err(CheckFailure::connect(&io::Error::from_raw_os_error(
            libc::EMFILE,
        )));
        // Unhealthy until a first check passes.
        assert!(record_verdict(&registry, 0, &up));
        assert!(registry.get(0).unwrap().healthy());
        assert!(!record_verdict(&registry, 0, &up));
        assert!(record_verdict(&registry, 0, &down));
        assert!(!registry.get(0).unwrap().healthy());
        assert!(!record_verdict(&registry, 0, &down));
        assert_eq!(
            registry.pick_or_refusing(),
            None,
            "unreachable: no fallback"
        );
        // A check that could not run (ferry out of descriptors) changes nothing, either way.
        assert!(!record_verdict(&registry, 0, &out_of_files));
        assert!(!registry.get(0).unwrap().healthy());
        assert!(record_verdict(&registry, 0, &up));
        assert!(!record_verdict(&registry, 0, &out_of_files));
        assert!(registry.get(0).unwrap().healthy());
        assert!(record_verdict(&registry, 0, &down));
        // A full server is down too, but the fallback when nothing is healthy.
        assert!(!record_verdict(&registry, 0, &full));
        assert_eq!(registry.pick_or_refusing(), Some(0));
        assert!(!record_verdict(&registry, 0, &down));
        assert_eq!(
            registry.pick_or_refusing(),
            None,
            "no longer refusing: unreachable"
        );
        // A verdict for a backend the registry does not have changes nothing.
        assert!(!record_verdict(&registry, 1, &up));
    }

    #[test]
    fn a_refusal_marks_the_backend_down_like_a_failed_check() {
        let registry = Registry::new(&[
            crate::config::BackendConfig {
                name: "db1".into(),
                addr: "127.0.0.1:3306".parse().unwrap(),
            },
            crate::config::BackendConfig {
                name: "db2".into(),
                addr: "127.0.0.1:3307".parse().unwrap(),
            },
        ]);
        let up: Verdict = Ok("11.4.2-MariaDB".into());
        assert!(record_verdict(&registry, 0, &up));
        assert!(record_verdict(&registry, 1, &up));
        let too_many = ProtocolError::new(1040, "08004", "Too many connections");
        assert!(record_refusal(&registry, "db1", &too_many));
        assert!(!registry.get(0).unwrap().healthy());
        assert!(registry.get(1).unwrap().healthy(), "only the refusing one");
        // New sessions go to the other backend now.
        assert_eq!(registry.pick(), Some(1));
        assert!(!record_refusal(&registry, "db1", &too_many), "already down");
        assert!(!record_refusal(&registry, "nope", &too_many));
        // With db2 down as well, db1 is the fallback: its own ERR beats "no healthy backend".
        assert!(record_verdict(
            &registry,
            1,
            &Err(CheckFailure::down("connect: refused"))
        ));
        assert_eq!(registry.pick(), None);
        assert_eq!(registry.pick_or_refusing(), Some(0));
        // A passing check brings it back.
        assert!(record_verdict(&registry, 0, &up));
        assert!(registry.get(0).unwrap().healthy());
    }

    #[test]
    fn a_real_greeting_is_healthy() {
        // A minimal protocol-10 greeting (pre-PLUGIN_AUTH layout the parser accepts).
        let mut g = vec![10];
        g.extend_from_slice(b"8.0.99-test\0");
        g.extend_from_slice(&7u32.to_le_bytes());
        g.extend_from_slice(b"abcdefgh\0");
        g.extend_from_slice(&0x0200u16.to_le_bytes()); // PROTOCOL_41 only
        g.push(45);
        g.extend_from_slice(&2u16.to_le_bytes());
        g.extend_from_slice(&0u16.to_le_bytes());
        g.push(0);
        g.extend_from_slice(&[0; 10]);
        let version = check_backend(server(packet(&g)), Duration::from_secs(2)).unwrap();
        assert_eq!(version, "8.0.99-test");
    }
}
