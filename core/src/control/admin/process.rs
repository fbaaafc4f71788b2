//! [`ProcessStats`]: the process's CPU time, memory, descriptors and start time, as `/metrics`
//! shows them (the Prometheus client libraries' standard `process_*` families).
//!
//! Reading them is I/O (`/proc/self`, `clock_gettime`, `getrlimit`), which the core never does:
//! the driver reads them when [`wants_process_stats`] says a request shows them and hands them
//! to [`Endpoint::handle_admin_with_process`](crate::control::Endpoint::handle_admin_with_process).
//! The parsing of what it read ([`ProcessStats::with_statm`]) is here, so that drivers only read.

use std::time::Duration;

use super::Request;

/// What a driver read about its process; `None` for what it could not read (that family is
/// then left out of `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// User and system CPU time of the whole process.
    pub cpu: Option<Duration>,
    /// Resident memory in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process (or the embedded proxy) started, since the Unix epoch.
    pub start_time: Option<Duration>,
}

impl ProcessStats {
    /// Fills the memory sizes from the text of Linux's `/proc/self/statm` (sizes in pages of
    /// `page_size` bytes: total, then resident); text it cannot read leaves them as they were.
    pub fn with_statm(mut self, statm: &str, page_size: u64) -> Self {
        let mut pages = statm
            .split_ascii_whitespace()
            .map(|f| f.parse::<u64>().ok());
        if let (Some(Some(size)), Some(Some(resident))) = (pages.next(), pages.next()) {
            self.virtual_memory_bytes = Some(size.saturating_mul(page_size));
            self.resident_memory_bytes = Some(resident.saturating_mul(page_size));
        }
        self
    }
}

/// Does the answer to `request` show process metrics (a driver reads [`ProcessStats`] only
/// then: counting descriptors is not free with many sessions)?
pub fn wants_process_stats(request: &Request) -> bool {
    request.method == "GET" && request.path == "/metrics"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_both_sizes_in_bytes() {
        let p = ProcessStats::default().with_statm("5000 1200 300 100 0 900 0\n", 4096);
        assert_eq!(p.virtual_memory_bytes, Some(5000 * 4096));
        assert_eq!(p.resident_memory_bytes, Some(1200 * 4096));
        // Unreadable text changes nothing.
        for bad in ["", "12", "x 1", "1 y"] {
            assert_eq!(
                ProcessStats::default().with_statm(bad, 4096),
                ProcessStats::default()
            );
        }
    }
}
