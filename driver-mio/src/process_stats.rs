//! Reads the process's CPU time, memory and descriptors for `/metrics` (Linux `/proc/self`;
//! elsewhere what cannot be read is left out). Only reading: the core formats them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_core::control::ProcessStats;

/// What the process uses now; `started` is when the proxy started.
pub fn read(started: SystemTime) -> ProcessStats {
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let cpu = Duration::new(
        u64::try_from(cpu.tv_sec).unwrap_or(0),
        u32::try_from(cpu.tv_nsec).unwrap_or(0),
    );
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    ProcessStats {
        cpu: Some(cpu),
        // Counting the entries opens one more descriptor, as every Prometheus client does.
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        start_time: started.duration_since(UNIX_EPOCH).ok(),
        ..ProcessStats::default()
    }
    .with_statm(&statm, rustix::param::page_size() as u64)
}
