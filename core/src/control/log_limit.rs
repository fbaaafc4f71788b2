//! [`LogLimiter`]: a cap on the log lines that clients can cause. A connection flood, a password
//! guesser or a blocked address repeating itself must not flood the log (or the disk under
//! it); the metrics count every event, the log shows a sample and how much it left out.
//!
//! Per kind of line, at most [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the first line logged
//! after some were held back carries their number (`suppressed = n`).

use std::time::{Duration, Instant};

/// Lines of one kind logged per window.
pub(crate) const LINES_PER_WINDOW: u32 = 5;

/// How long a window lasts, from its first line.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// The kinds of rate-limited lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    /// A client refused at `max-connections`.
    MaxConnections,
    /// A client refused because its address is blocked.
    BlockedHost,
    /// A failed login.
    LoginFailed,
    /// An address blocked after its failed logins.
    HostBlocked,
    /// The table of failed logins is full: an address is not tracked.
    FailureTableFull,
    /// ferry itself cannot open a backend connection (out of descriptors...).
    BackendConnectLocal,
}

const KINDS: usize = LogKind::BackendConnectLocal as usize + 1;

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: Option<Instant>,
    lines: u32,
    /// Lines held back since the last one logged.
    suppressed: u64,
}

/// Per-kind windows; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    windows: [Window; KINDS],
}

impl LogLimiter {
    /// Whether a line of `kind` may be logged at `now`: `Some(n)`, with `n` lines of that kind
    /// held back since the last one logged, or `None` (held back, and counted).
    pub(crate) fn allow(&mut self, now: Instant, kind: LogKind) -> Option<u64> {
        let w = &mut self.windows[kind as usize];
        if w.start
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            w.start = Some(now);
            w.lines = 0;
        }
        if w.lines >= LINES_PER_WINDOW {
            w.suppressed += 1;
            return None;
        }
        w.lines += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_and_the_next_window_reports_what_was_held_back() {
        let mut l = LogLimiter::default();
        let now = Instant::now();
        let allowed: Vec<Option<u64>> = (0..8)
            .map(|_| l.allow(now, LogKind::MaxConnections))
            .collect();
        assert_eq!(allowed[..5], [Some(0); 5]);
        assert_eq!(allowed[5..], [None; 3]);
        // Other kinds have their own windows.
        assert_eq!(l.allow(now, LogKind::LoginFailed), Some(0));
        // Still the same window just before it ends.
        let almost = now + WINDOW - Duration::from_millis(1);
        assert_eq!(l.allow(almost, LogKind::MaxConnections), None);
        // The next window's first line says how many were left out.
        assert_eq!(l.allow(now + WINDOW, LogKind::MaxConnections), Some(4));
        assert_eq!(l.allow(now + WINDOW, LogKind::MaxConnections), Some(0));
    }
}
