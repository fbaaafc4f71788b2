//! Failed logins: why a login failed ([`FailedLogin`], the `reason` of
//! `ferry_login_failures_total` and of the log line), and [`AuthFailures`], client addresses
//! blocked after repeated failed logins, as MaxScale's `max_auth_errors_until_block` does (off
//! unless `[proxy] max-auth-failures` is set).
//!
//! A login fails when the session closes before it is authenticated because of the client:
//!
//! | reason | what happened |
//! |---|---|
//! | `access_denied` | ERR 1045: unknown user or wrong password (ferry's user table or the backend's) |
//! | `refused` | another ERR of the backend's for the login: unknown database, account locked, host not allowed... |
//! | `tls_required` | ERR 3159: a plaintext client while `[tls] require = true` |
//! | `bad_handshake` | another ERR of ferry's before login: a malformed or pre-4.1 handshake, an oversized packet |
//! | `tls_failed` | the TLS handshake failed |
//! | `handshake_timeout` | the client did not finish the handshake in time (ERR 1043) |
//!
//! Not login failures: a client that leaves before logging in (a load balancer's TCP check), no
//! backend reachable (ferry's side: `ferry_errors_total{kind="backend_connect"}`), shutdown.
//!
//! Blocking:
//!
//! - Only logins refused with "access denied" (ERR 1045: unknown user or wrong password, from
//!   ferry's user table or from the backend) count: they are what a password guesser causes.
//!   A successful login does not reset the count (a guesser who knows one account must not).
//! - `max-auth-failures` of them from one IP address within `auth-failure-window` (a window
//!   that starts at the first failure) block that address for `auth-block-duration`: its new
//!   connections get ERR 1129 in place of the greeting, before any handshake, until the block
//!   expires; then its count starts again from zero.
//! - Memory is bounded: at most [`MAX_TRACKED_ADDRESSES`] addresses. When the table is full,
//!   expired entries are dropped (at most once per [`PRUNE_EVERY`]); if it is still full, a new
//!   address is not tracked (its failures are counted in the metrics, not toward a block), and
//!   blocked addresses stay blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::frontend;
use crate::session::CloseReason;
use crate::ProtocolError;

use super::config::ProxyConfig;

/// Every `reason` label, for metrics that show each one from the start.
pub(crate) const LOGIN_FAILURE_REASONS: [&str; 6] = [
    ACCESS_DENIED,
    "refused",
    "tls_required",
    "bad_handshake",
    "tls_failed",
    "handshake_timeout",
];

/// The reason that counts toward a block.
pub(crate) const ACCESS_DENIED: &str = "access_denied";

/// A login that failed because of the client (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedLogin {
    /// One of [`LOGIN_FAILURE_REASONS`].
    pub(crate) reason: &'static str,
    /// The ERR the client got, if any.
    pub(crate) error: Option<ProtocolError>,
}

impl FailedLogin {
    /// The failure a session closed `reason` before it was authenticated means, if any.
    pub(crate) fn from_close(reason: &CloseReason) -> Option<Self> {
        let (reason, error) = match reason {
            CloseReason::LoginRefused(e) if e.code == 1045 => (ACCESS_DENIED, e),
            CloseReason::LoginRefused(e) => ("refused", e),
            CloseReason::Frontend(frontend::CloseReason::Error(e)) => match e.code {
                1045 => (ACCESS_DENIED, e),
                3159 => ("tls_required", e),
                _ => ("bad_handshake", e),
            },
            CloseReason::Frontend(frontend::CloseReason::HandshakeTimeout) => {
                return Some(Self {
                    reason: "handshake_timeout",
                    error: None,
                })
            }
            CloseReason::Frontend(frontend::CloseReason::Tls(_)) => {
                return Some(Self {
                    reason: "tls_failed",
                    error: None,
                })
            }
            _ => return None,
        };
        Some(Self {
            reason,
            error: Some(error.clone()),
        })
    }

    /// It counts toward blocking its address.
    pub(crate) fn counts_toward_block(&self) -> bool {
        self.reason == ACCESS_DENIED
    }
}

/// Addresses tracked at most (an entry is a few dozen bytes).
pub(crate) const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// How often a full table may be searched for expired entries.
pub(crate) const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One address's failures.
#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// What [`AuthFailures::record`] did with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Counted; the address is not blocked by it (or blocking is off).
    Counted,
    /// This failure blocked the address until then.
    Blocked {
        /// When the block expires.
        until: Instant,
    },
    /// The table is full: the address is not tracked.
    Untracked,
}

/// The failed-login table; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct AuthFailures {
    max_failures: u32,
    window: Duration,
    block: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
    next_prune: Option<Instant>,
}

impl AuthFailures {
    /// The table `[proxy]` asks for (off when `max-auth-failures` is 0).
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        Self::with_capacity(config, MAX_TRACKED_ADDRESSES)
    }

    pub(crate) fn with_capacity(config: &ProxyConfig, capacity: usize) -> Self {
        Self {
            max_failures: config.max_auth_failures,
            window: config.auth_failure_window,
            block: config.auth_block_duration,
            capacity,
            entries: HashMap::new(),
            next_prune: None,
        }
    }

    /// Addresses tracked now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Until when `ip` is blocked, if it is at `now` (an expired block is forgotten).
    pub(crate) fn blocked_until(&mut self, now: Instant, ip: IpAddr) -> Option<Instant> {
        if self.max_failures == 0 {
            return None;
        }
        let ip = ip.to_canonical();
        let until = self.entries.get(&ip)?.blocked_until?;
        if until > now {
            return Some(until);
        }
        self.entries.remove(&ip);
        None
    }

    /// Counts a failed login (access denied) from `ip` at `now`.
    pub(crate) fn record(&mut self, now: Instant, ip: IpAddr) -> Recorded {
        if self.max_failures == 0 {
            return Recorded::Counted;
        }
        let ip = ip.to_canonical();
        if !self.entries.contains_key(&ip) && !self.make_room(now) {
            return Recorded::Untracked;
        }
        let window = self.window;
        let e = self.entries.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        match e.blocked_until {
            // A session that began before the block failed now: the block stands as it is.
            Some(until) if until > now => return Recorded::Counted,
            Some(_) => *e = fresh(now),
            None if now.saturating_duration_since(e.window_start) >= window => *e = fresh(now),
            None => {}
        }
        e.failures += 1;
        if e.failures < self.max_failures {
            return Recorded::Counted;
        }
        let until = now + self.block;
        e.blocked_until = Some(until);
        Recorded::Blocked { until }
    }

    /// Room for one more address: true if there is (after dropping expired entries).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.entries.len() < self.capacity {
            return true;
        }
        if self.next_prune.is_some_and(|at| now < at) {
            return false;
        }
        self.next_prune = Some(now + PRUNE_EVERY);
        let window = self.window;
        self.entries.retain(|_, e| match e.blocked_until {
            Some(until) => until > now,
            None => now.saturating_duration_since(e.window_start) < window,
        });
        self.entries.len() < self.capacity
    }
}

fn fresh(now: Instant) -> Entry {
    Entry {
        window_start: now,
        failures: 0,
        blocked_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::control::config::units::ConfigDuration;
    use crate::control::config::{BackendSection, Config, ConfigFile};

    /// `max` failures in 60 s block for 30 s.
    fn table(max: u32, capacity: usize) -> AuthFailures {
        let mut file = ConfigFile {
            backends: vec![BackendSection {
                name: "db1".into(),
                addr: "127.0.0.1:3306".into(),
                proxy_protocol: false,
            }],
            ..ConfigFile::default()
        };
        file.proxy.max_auth_failures = Some(max);
        file.proxy.auth_block_duration = Some(ConfigDuration(Duration::from_secs(30)));
        let config = Config::from_file(&file).unwrap();
        assert_eq!(config.proxy.auth_failure_window, Duration::from_secs(60));
        AuthFailures::with_capacity(&config.proxy, capacity)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn closes_before_login_are_classified() {
        let err = |code| ProtocolError::new(code, "28000", "x");
        let reason = |close: CloseReason| FailedLogin::from_close(&close).map(|f| f.reason);
        assert_eq!(
            reason(CloseReason::LoginRefused(err(1045))),
            Some(ACCESS_DENIED)
        );
        assert_eq!(
            reason(CloseReason::LoginRefused(err(1049))),
            Some("refused")
        );
        let frontend = |e| CloseReason::Frontend(frontend::CloseReason::Error(e));
        assert_eq!(reason(frontend(err(1045))), Some(ACCESS_DENIED));
        assert_eq!(reason(frontend(err(3159))), Some("tls_required"));
        assert_eq!(reason(frontend(err(1043))), Some("bad_handshake"));
        assert_eq!(
            reason(CloseReason::Frontend(
                frontend::CloseReason::HandshakeTimeout
            )),
            Some("handshake_timeout")
        );
        for not_a_failure in [
            CloseReason::ClientGone,
            CloseReason::Quit,
            CloseReason::Shutdown,
            CloseReason::Frontend(frontend::CloseReason::Local),
        ] {
            assert_eq!(reason(not_a_failure), None);
        }
        let denied = FailedLogin::from_close(&CloseReason::LoginRefused(err(1045))).unwrap();
        assert!(denied.counts_toward_block());
        assert_eq!(denied.error, Some(err(1045)));
        let refused = FailedLogin::from_close(&CloseReason::LoginRefused(err(1049))).unwrap();
        assert!(!refused.counts_toward_block());
        assert!(LOGIN_FAILURE_REASONS.contains(&refused.reason));
    }

    #[test]
    fn the_nth_failure_in_the_window_blocks_until_the_block_expires() {
        let mut t = table(3, 100);
        let now = Instant::now();
        assert_eq!(t.record(now, ip(1)), Recorded::Counted);
        assert_eq!(t.record(now, ip(1)), Recorded::Counted);
        assert_eq!(t.blocked_until(now, ip(1)), None);
        let at = now + Duration::from_secs(59);
        let until = at + Duration::from_secs(30);
        assert_eq!(t.record(at, ip(1)), Recorded::Blocked { until });
        assert_eq!(t.blocked_until(at, ip(1)), Some(until));
        assert_eq!(t.blocked_until(at, ip(2)), None, "other addresses are not");
        // A failure of a session that began before the block does not extend it.
        assert_eq!(t.record(at, ip(1)), Recorded::Counted);
        assert_eq!(
            t.blocked_until(until - Duration::from_millis(1), ip(1)),
            Some(until)
        );
        // Expired: forgotten, and counting starts again.
        assert_eq!(t.blocked_until(until, ip(1)), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.record(until, ip(1)), Recorded::Counted);
    }

    #[test]
    fn failures_outside_the_window_start_a_new_one() {
        let mut t = table(2, 100);
        let now = Instant::now();
        assert_eq!(t.record(now, ip(1)), Recorded::Counted);
        let later = now + Duration::from_secs(60);
        assert_eq!(t.record(later, ip(1)), Recorded::Counted);
        assert!(matches!(t.record(later, ip(1)), Recorded::Blocked { .. }));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let mut t = table(1, 100);
        let now = Instant::now();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(matches!(t.record(now, mapped), Recorded::Blocked { .. }));
        assert!(t.blocked_until(now, ip(1)).is_some());
    }

    #[test]
    fn off_blocks_nothing_and_keeps_nothing() {
        let mut t = table(0, 100);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.record(now, ip(1)), Recorded::Counted);
        }
        assert_eq!(t.blocked_until(now, ip(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_table_drops_expired_entries_and_otherwise_tracks_no_new_address() {
        let mut t = table(2, 2);
        let now = Instant::now();
        t.record(now, ip(1));
        t.record(now, ip(2));
        t.record(now, ip(2)); // blocked until now + 30 s
                              // Full of live entries: a new address is not tracked, known ones still are.
        assert_eq!(t.record(now, ip(3)), Recorded::Untracked);
        assert!(matches!(t.record(now, ip(1)), Recorded::Blocked { .. }));
        // Within PRUNE_EVERY of the last search, no new search (even once entries expired).
        let expired = now + Duration::from_secs(31);
        assert_eq!(t.record(now + PRUNE_EVERY / 2, ip(4)), Recorded::Untracked);
        assert_eq!(t.len(), 2);
        // Later, expired blocks make room.
        assert_eq!(t.record(expired, ip(3)), Recorded::Counted);
        assert_eq!(t.len(), 1);
    }
}
