//! Health checks: the probe of one backend as a state machine ([`HealthProbe`]: connect result
//! and bytes in, bytes to write and a verdict out), and what a verdict does to the registry.
//!
//! A probe connects within `health.timeout` (a backend given by host name: the driver's lookup
//! included, a name that does not resolve failing the check with the lookup's reason) and reads
//! what the server sends first; the core's [`probe_greeting`] judges it (a greeting is healthy; ERR 1040, 1129 or any other ERR,
//! garbage, a refused or silent connection are not). A backend that fails is skipped by new
//! sessions and comes back when a check passes. One that answers with an ERR (it is up but
//! refuses: full, or blocking ferry's host) is still tried by a new session when no backend is
//! healthy, so that the client hears the server's own error, or gets in as soon as a slot frees
//! (see [`Registry::pick_or_refusing`]).
//!
//! Two ways to end a check:
//!
//! - **Without a monitor account** (the default), the probe closes right after the greeting:
//!   nothing is sent and no account is needed, but the server sees a handshake abandoned. Each
//!   check costs one `Aborted_connects` and one "Aborted connection … (This connection closed
//!   normally without authentication)" line in its error log (at the default `log_warnings = 2`),
//!   per backend: at the default 500 ms interval, about 170,000 lines a day. For non-loopback
//!   clients such handshakes may also count towards `max_connect_errors` and end in ferry's host
//!   being blocked (1129), which this check then reports (like HAProxy's plain `mysql-check`).
//! - **With `[health] user`** (a `mysql_native_password` account that needs no privilege), the
//!   probe logs in, sends COM_PING and COM_QUIT ([`login`]): a clean session on the server, no
//!   aborted connection. The probe then has bytes to write too ([`HealthProbe::poll_transmit`]).
//!   A refused login (a wrong password, a missing account) leaves the backend as its greeting
//!   judged it, up, with a [`HealthProbe::warning`] that the endpoint logs at warn, counts
//!   (`ferry_errors_total{kind="health_login"}`) and shows in `/api/backends`: the server is
//!   there, and a mistake in the monitor account must not take every backend out of rotation.

mod login;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{BackendAddr, BackendConfig, ResolveError};
use crate::balance::{probe_greeting, Probe, Unhealthy, MAX_GREETING_SIZE};
use crate::ProtocolError;

use self::login::{Outcome, ProbeLogin};
use super::registry::Registry;

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
            ..Self::down(connect_reason(error))
        }
    }
}

/// Why a connect failed, as `/api/backends` and the log say it: `connect: <error>`, or for a
/// name that did not resolve, `cannot resolve "db1.internal": <error>`.
pub(super) fn connect_reason(error: &io::Error) -> String {
    match ResolveError::of(error) {
        Some(r) => r.to_string(),
        None => format!("connect: {error}"),
    }
}

/// Is `error` (from opening a connection) ferry running out of its own resources: descriptors
/// (EMFILE, ENFILE), buffers or memory? Such a failure must not mark a backend down: every
/// backend would fail alike, and they would all stay down after the descriptors free up.
/// A name lookup that failed so (or that the driver's resolver had no room for) is too.
pub fn is_local_exhaustion(error: &io::Error) -> bool {
    let os = match ResolveError::of(error) {
        Some(r) if r.is_busy() => return true,
        Some(r) => r.raw_os_error(),
        None => error.raw_os_error(),
    };
    matches!(
        os,
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

/// One health check of one backend, without I/O. The driver connects to [`HealthProbe::addr`]
/// (a host name resolved first, its addresses tried in order, all within the check's time,
/// giving up at [`HealthProbe::deadline`]), then until [`HealthProbe::is_done`]: writes what
/// [`HealthProbe::poll_transmit`] gives (with a monitor account; reporting a failed write with
/// [`HealthProbe::write_failed`]), reads and reports what happens with the `handle_*` methods.
/// Then it closes the socket and hands the probe to
/// [`Endpoint::probe_finished`](super::Endpoint::probe_finished).
///
/// A clone taken before the probe ran is the same probe; a clone of a running one starts its
/// monitor login over (a connection cannot be shared).
#[derive(Debug, Clone)]
pub struct HealthProbe {
    /// The round it belongs to (the endpoint counts a round's probes back in).
    round: u64,
    backend: usize,
    addr: BackendAddr,
    timeout: Duration,
    deadline: Instant,
    bytes: Vec<u8>,
    /// The server version from its greeting, while a monitor login goes on.
    greeted: Option<String>,
    login: Option<ProbeLogin>,
    verdict: Option<Verdict>,
    warning: Option<String>,
}

impl HealthProbe {
    pub(super) fn new(
        round: u64,
        backend: usize,
        addr: BackendAddr,
        now: Instant,
        timeout: Duration,
    ) -> Self {
        Self {
            round,
            backend,
            addr,
            timeout,
            deadline: now + timeout,
            bytes: Vec::new(),
            greeted: None,
            login: None,
            verdict: None,
            warning: None,
        }
    }

    /// The check logs in as the monitor account `config` describes, pings and quits.
    pub(super) fn with_login(mut self, config: Arc<BackendConfig>) -> Self {
        self.login = Some(ProbeLogin::new(config));
        self
    }

    /// The health round it belongs to.
    pub(super) fn round(&self) -> u64 {
        self.round
    }

    /// The registry index of the backend it checks.
    pub fn backend(&self) -> usize {
        self.backend
    }

    /// The backend's address (a host name: resolve it for each check, and report a failed
    /// lookup to [`HealthProbe::connect_failed`] with the error of
    /// [`BackendAddr::resolved`]).
    pub fn addr(&self) -> &BackendAddr {
        &self.addr
    }

    /// The whole check (connect and greeting) must end by then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The check's time budget (`health.timeout`), for a connect timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A verdict is in and nothing is left to write: stop reading and close the socket.
    pub fn is_done(&self) -> bool {
        self.verdict.is_some() && !self.has_transmit()
    }

    /// The next bytes to write to the server (a monitor login's packets, COM_PING, COM_QUIT).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if matches!(self.verdict, Some(Err(_))) {
            // A failed check sends nothing more: the socket just closes.
            return None;
        }
        self.login.as_mut()?.poll_transmit()
    }

    fn has_transmit(&self) -> bool {
        !matches!(self.verdict, Some(Err(_)))
            && self.login.as_ref().is_some_and(ProbeLogin::has_transmit)
    }

    /// Something the check found that leaves the backend up but needs the operator: the monitor
    /// account's login was refused (the server's ERR). Never holds a secret.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The connection could not be opened (or the socket failed before any byte came); at or
    /// past the deadline, the check timed out. A name that did not resolve is down for that
    /// reason, whenever the lookup gave up (a lookup that outlived the check's time says so).
    pub fn connect_failed(&mut self, now: Instant, error: &io::Error) {
        if ResolveError::of(error).is_some() {
            return self.decide(Err(CheckFailure::connect(error)));
        }
        self.handle_timeout(now);
        if error.kind() == io::ErrorKind::TimedOut {
            return self.handle_timeout(self.deadline);
        }
        self.decide(Err(CheckFailure::connect(error)));
    }

    /// Bytes the server sent, read at `now`. Past the deadline they come too late: the check
    /// fails as [`handle_timeout`](Self::handle_timeout) would fail it, whatever they hold.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_timeout(now);
        if self.verdict.is_some() {
            return;
        }
        if self.greeted.is_none() {
            self.judge_greeting(bytes);
            if self.verdict.is_some() {
                return;
            }
        }
        if let Some(login) = self.login.as_mut() {
            let outcome = login.handle_input(now, bytes);
            self.on_login(outcome);
        }
    }

    /// Only the first packet is judged: bytes past the largest greeting are never looked at,
    /// however the reads were split.
    fn judge_greeting(&mut self, bytes: &[u8]) {
        let room = (MAX_GREETING_SIZE + 4).saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        match probe_greeting(&self.bytes) {
            // With a monitor account the login goes on; the version is the verdict's if it
            // succeeds.
            Probe::Healthy { server_version } if self.login.is_some() => {
                self.greeted = Some(server_version);
                self.bytes = Vec::new();
            }
            Probe::Healthy { server_version } => self.decide(Ok(server_version)),
            Probe::Unhealthy(reason) => self.decide(Err(CheckFailure {
                local: false,
                refusing: matches!(
                    reason,
                    Unhealthy::TooManyConnections
                        | Unhealthy::HostBlocked
                        | Unhealthy::ServerError { .. }
                ),
                reason: reason.to_string(),
            })),
            // probe_greeting refuses an announced length over the cap, so a full buffer that
            // still needs more cannot happen; judged as too large all the same.
            Probe::NeedMore if room == 0 => {
                self.decide(Err(CheckFailure::down("greeting too large")))
            }
            Probe::NeedMore => {}
        }
    }

    /// The server closed the connection (at or past the deadline: the check timed out).
    pub fn handle_eof(&mut self, now: Instant) {
        self.handle_timeout(now);
        if self.greeted.is_some() {
            if let Some(login) = self.login.as_mut() {
                let outcome = login.handle_eof(now);
                self.on_login(outcome);
            }
        }
        self.decide(Err(CheckFailure::down("closed before the greeting")));
    }

    /// Writing failed (at or past the deadline: the check timed out). After a verdict (the
    /// final COM_QUIT) it changes nothing: the socket closes all the same.
    pub fn write_failed(&mut self, now: Instant, error: &io::Error) {
        self.handle_timeout(now);
        self.decide(Err(CheckFailure::down(format!("write: {error}"))));
        if let Some(login) = self.login.as_mut() {
            while login.poll_transmit().is_some() {}
        }
    }

    fn on_login(&mut self, outcome: Option<Outcome>) {
        let version = self.greeted.clone().unwrap_or_default();
        match outcome {
            None => {}
            Some(Outcome::Served) => self.decide(Ok(version)),
            Some(Outcome::LoginRefused(error)) => {
                self.warning = Some(format!("monitor login refused: {error}"));
                self.decide(Ok(version));
            }
            Some(Outcome::Down(reason)) => self.decide(Err(CheckFailure::down(reason))),
        }
    }

    /// Reading failed (at or past the deadline: the check timed out).
    pub fn read_failed(&mut self, now: Instant, error: &io::Error) {
        self.handle_timeout(now);
        if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return self.handle_timeout(self.deadline);
        }
        self.decide(Err(CheckFailure::down(format!("read: {error}"))));
    }

    /// Time passed: at the deadline, a check still waiting fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline {
            let failure = self.timed_out();
            self.decide(Err(failure));
        }
    }

    fn timed_out(&self) -> CheckFailure {
        let timeout = self.timeout;
        match (&self.greeted, &self.login) {
            (Some(_), Some(login)) => CheckFailure::down(format!(
                "no answer to {} within {timeout:?}",
                login.waiting_for()
            )),
            _ => CheckFailure::down(format!("no greeting within {timeout:?}")),
        }
    }

    /// The verdict, once [`HealthProbe::is_done`].
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// The verdict; a probe given up before one came failed for want of a greeting.
    pub(super) fn into_verdict(self) -> Verdict {
        let failure = self.timed_out();
        self.verdict.unwrap_or(Err(failure))
    }

    fn decide(&mut self, verdict: Verdict) {
        if self.verdict.is_none() {
            self.verdict = Some(verdict);
        }
    }
}

/// Records backend `index`'s verdict from a [`HealthProbe`] in `registry`, logging a change (and,
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

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    /// A probe of backend 0, started at the returned instant (a virtual clock: nothing waits).
    fn probe() -> (HealthProbe, Instant) {
        let now = Instant::now();
        let addr = "127.0.0.1:3306".parse().unwrap();
        (HealthProbe::new(1, 0, addr, now, TIMEOUT), now)
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![payload.len() as u8, 0, 0, 0];
        v.extend_from_slice(payload);
        v
    }

    /// What a probe fed `first` decides, or `None` if it is still waiting.
    fn answer(first: &[u8]) -> Option<Verdict> {
        let (mut p, now) = probe();
        p.handle_input(now, first);
        p.verdict().cloned()
    }

    fn failure(verdict: Option<Verdict>) -> CheckFailure {
        match verdict {
            Some(Err(failure)) => failure,
            other => panic!("expected a failed check, got {other:?}"),
        }
    }

    #[test]
    fn refused_silent_and_erring_backends_are_unhealthy() {
        // Nothing listens: the connect is refused.
        let (mut p, now) = probe();
        p.connect_failed(now, &io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(p.is_done());
        let err = failure(p.verdict().cloned());
        assert!(err.reason.starts_with("connect:") && !err.refusing, "{err}");
        assert!(!err.local, "a refused connect is the backend's: {err}");

        // Connected, but the server says nothing: the check fails at its deadline, not later.
        let (mut silent, start) = probe();
        assert_eq!(silent.deadline(), start + TIMEOUT);
        assert_eq!(silent.timeout(), TIMEOUT);
        silent.handle_input(start, b"");
        silent.handle_timeout(start + TIMEOUT - Duration::from_millis(1));
        assert!(!silent.is_done(), "still waiting before the deadline");
        silent.handle_timeout(start + TIMEOUT);
        let err = failure(silent.verdict().cloned());
        assert!(err.reason.contains("no greeting") && !err.refusing, "{err}");

        let mut too_many = vec![0xFF];
        too_many.extend_from_slice(&1040u16.to_le_bytes());
        too_many.extend_from_slice(b"Too many connections");
        let err = failure(answer(&packet(&too_many)));
        assert!(err.reason.contains("too many connections"), "{err}");
        assert!(
            err.refusing,
            "an ERR greeting means the server is up but refuses"
        );

        let err = failure(answer(&packet(b"\x0agarbage")));
        assert!(!err.refusing, "garbage is not a server that refuses: {err}");
        assert!(err.reason.contains("not a MySQL greeting"), "{err}");
    }

    #[test]
    fn a_connect_that_times_out_or_a_closed_connection_is_unhealthy() {
        // The driver's connect timeout: the same verdict as the deadline passing.
        let (mut p, now) = probe();
        p.connect_failed(now, &io::Error::from(io::ErrorKind::TimedOut));
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.contains("no greeting within") && !err.local,
            "{err}"
        );
        // A read that timed out or would block (a socket read timeout) likewise.
        let (mut p, now) = probe();
        p.read_failed(now, &io::Error::from(io::ErrorKind::WouldBlock));
        assert!(failure(p.verdict().cloned()).reason.contains("no greeting"));
        // Another read error is the backend's failure.
        let (mut p, now) = probe();
        p.read_failed(now, &io::Error::from(io::ErrorKind::ConnectionReset));
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.starts_with("read:") && !err.refusing && !err.local,
            "{err}"
        );
        // The server closed before its greeting (half of one came).
        let (mut p, now) = probe();
        p.handle_input(now, &[40, 0, 0, 0, 10]);
        assert!(!p.is_done());
        p.handle_eof(now);
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.contains("closed before the greeting") && !err.refusing,
            "{err}"
        );
        // A probe given up without a verdict failed for want of a greeting.
        let (p, _) = probe();
        let err = p.into_verdict().unwrap_err();
        assert!(err.reason.contains("no greeting") && !err.local, "{err}");
    }

    #[test]
    fn a_name_that_does_not_resolve_is_down_with_the_lookups_reason() {
        let now = Instant::now();
        let addr: BackendAddr = "db1.internal:3306".parse().unwrap();
        let lookup = io::Error::other("Name or service not known");
        let error = addr
            .resolved::<Vec<std::net::SocketAddr>>(Err(lookup))
            .unwrap_err();
        let mut p = HealthProbe::new(1, 0, addr.clone(), now, TIMEOUT);
        assert_eq!(p.addr(), &addr);
        p.connect_failed(now, &error);
        assert!(p.is_done());
        let err = failure(p.verdict().cloned());
        assert_eq!(
            err.reason,
            "cannot resolve \"db1.internal\": Name or service not known"
        );
        assert!(!err.local && !err.refusing, "{err:?}");
        // Found no address: down too.
        let mut p = HealthProbe::new(1, 0, addr.clone(), now, TIMEOUT);
        p.connect_failed(now, &addr.resolved(Ok(Vec::new())).unwrap_err());
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.ends_with("no address found") && !err.local,
            "{err}"
        );
        // A lookup the driver gave up at the deadline says so, not "no greeting".
        let mut p = HealthProbe::new(1, 0, addr.clone(), now, TIMEOUT);
        p.connect_failed(now + TIMEOUT, &addr.resolve_timed_out(TIMEOUT));
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.contains("cannot resolve") && err.reason.contains("no answer within"),
            "{err}"
        );
        // ferry's own trouble (a full resolver queue, no descriptors) leaves health unchanged.
        let registry = Registry::new(&[crate::control::config::BackendConfig {
            name: "db1".into(),
            addr: addr.clone(),
            proxy_protocol: false,
        }]);
        assert!(record_verdict(&registry, 0, &Ok("10.11".into())));
        for local in [
            addr.resolver_busy(),
            addr.resolved::<Vec<std::net::SocketAddr>>(Err(io::Error::from_raw_os_error(
                libc::EMFILE,
            )))
            .unwrap_err(),
        ] {
            assert!(is_local_exhaustion(&local), "{local}");
            let mut p = HealthProbe::new(1, 0, addr.clone(), now, TIMEOUT);
            p.connect_failed(now, &local);
            let verdict = p.into_verdict();
            assert!(verdict.as_ref().unwrap_err().local);
            assert!(!record_verdict(&registry, 0, &verdict));
            assert!(registry.get(0).unwrap().healthy());
        }
        // The failed lookup takes it down (a change, logged once).
        let mut p = HealthProbe::new(1, 0, addr.clone(), now, TIMEOUT);
        p.connect_failed(now, &error);
        let verdict = p.into_verdict();
        assert!(record_verdict(&registry, 0, &verdict));
        assert!(
            !record_verdict(&registry, 0, &verdict),
            "still down: no change"
        );
        assert!(!registry.get(0).unwrap().healthy());
    }

    #[test]
    fn out_of_descriptors_is_local_and_leaves_health_unchanged() {
        let registry = Registry::new(&[crate::control::config::BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:3306".parse().unwrap(),
            proxy_protocol: false,
        }]);
        for errno in [libc::EMFILE, libc::ENFILE] {
            let (mut p, now) = probe();
            p.connect_failed(now, &io::Error::from_raw_os_error(errno));
            let verdict = p.into_verdict();
            let err = verdict.clone().unwrap_err();
            assert!(err.local && !err.refusing, "{err}");
            // Down stays down, up stays up.
            assert!(!record_verdict(&registry, 0, &verdict));
            assert!(!registry.get(0).unwrap().healthy());
            assert!(record_verdict(&registry, 0, &Ok("10.11".into())));
            assert!(!record_verdict(&registry, 0, &verdict));
            assert!(registry.get(0).unwrap().healthy());
            assert!(record_verdict(&registry, 0, &Err(CheckFailure::down("x"))));
        }
        assert!(!is_local_exhaustion(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }

    #[test]
    fn verdicts_change_the_registry_and_report_changes_only() {
        let registry = Registry::new(&[crate::control::config::BackendConfig {
            name: "db1".into(),
            addr: "127.0.0.1:3306".parse().unwrap(),
            proxy_protocol: false,
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
            crate::control::config::BackendConfig {
                name: "db1".into(),
                addr: "127.0.0.1:3306".parse().unwrap(),
                proxy_protocol: false,
            },
            crate::control::config::BackendConfig {
                name: "db2".into(),
                addr: "127.0.0.1:3307".parse().unwrap(),
                proxy_protocol: false,
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

    /// A minimal protocol-10 greeting of version `8.0.99-test` (pre-PLUGIN_AUTH layout the
    /// parser accepts), framed.
    fn greeting() -> Vec<u8> {
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
        packet(&g)
    }

    #[test]
    fn a_real_greeting_is_healthy() {
        let bytes = greeting();
        // In two reads: the probe waits for the whole packet.
        let (mut p, start) = probe();
        p.handle_input(start, &bytes[..7]);
        assert!(!p.is_done());
        p.handle_input(start + Duration::from_millis(1), &bytes[7..]);
        assert_eq!(p.verdict(), Some(&Ok("8.0.99-test".to_owned())));
        // A verdict is final: later bytes, EOF or the deadline change nothing.
        p.handle_input(start + TIMEOUT, b"more");
        p.handle_eof(start + TIMEOUT);
        p.handle_timeout(start + TIMEOUT);
        assert_eq!(p.backend(), 0);
        let version = p.into_verdict().unwrap();
        assert_eq!(version, "8.0.99-test");
    }

    #[test]
    fn what_follows_the_greeting_in_the_same_read_changes_nothing() {
        // A greeting and then more than the largest greeting's worth of bytes: the verdict is
        // the greeting's, in one read as in two (bytes past the first packet are never judged).
        let mut bytes = greeting();
        let alone = bytes.len();
        bytes.extend(std::iter::repeat_n(0u8, MAX_GREETING_SIZE + 4));
        assert_eq!(answer(&bytes), Some(Ok("8.0.99-test".to_owned())));
        let (mut p, now) = probe();
        p.handle_input(now, &bytes[..alone]);
        p.handle_input(now, &bytes[alone..]);
        assert_eq!(p.verdict(), Some(&Ok("8.0.99-test".to_owned())));
    }

    #[test]
    fn eof_or_errors_at_the_deadline_are_the_deadline() {
        let timed_out = |f: CheckFailure| {
            assert!(f.reason.starts_with("no greeting within"), "{f}");
            assert!(!f.local && !f.refusing, "{f:?}");
        };
        let (mut p, start) = probe();
        p.handle_eof(start + TIMEOUT);
        timed_out(failure(p.verdict().cloned()));
        let (mut p, start) = probe();
        p.read_failed(
            start + TIMEOUT,
            &io::Error::from(io::ErrorKind::ConnectionReset),
        );
        timed_out(failure(p.verdict().cloned()));
        // Out of descriptors past the deadline: the check timed out, it did not fail locally.
        let (mut p, start) = probe();
        p.connect_failed(start + TIMEOUT, &io::Error::from_raw_os_error(libc::EMFILE));
        timed_out(failure(p.verdict().cloned()));
        // Before it, each is its own failure.
        let (mut p, start) = probe();
        p.handle_eof(start);
        assert_eq!(
            failure(p.verdict().cloned()).reason,
            "closed before the greeting"
        );
    }

    #[test]
    fn a_greeting_read_after_the_deadline_comes_too_late() {
        let bytes = greeting();
        // Just before the deadline it counts.
        let (mut p, start) = probe();
        p.handle_input(start + TIMEOUT - Duration::from_millis(1), &bytes);
        assert_eq!(p.verdict(), Some(&Ok("8.0.99-test".to_owned())));
        // Read at the deadline (the driver's timer had not fired yet), it is a timeout, as if
        // handle_timeout had come first.
        let (mut p, start) = probe();
        p.handle_input(start + TIMEOUT, &bytes);
        let err = failure(p.verdict().cloned());
        assert!(
            err.reason.contains("no greeting within") && !err.refusing,
            "{err}"
        );
        // Half a greeting in time, the rest too late.
        let (mut p, start) = probe();
        p.handle_input(start, &bytes[..7]);
        p.handle_input(start + TIMEOUT + Duration::from_millis(5), &bytes[7..]);
        assert!(failure(p.verdict().cloned())
            .reason
            .contains("no greeting within"));
    }
}
