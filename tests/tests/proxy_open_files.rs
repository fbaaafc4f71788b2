//! The real proxy program, for every driver, against its open-file limit (started through
//! util-linux's `prlimit`):
//!
//! - a low soft limit is raised towards what `max-connections` needs, up to the hard limit, and
//!   a hard limit too low for `max-connections` is reported in the log;
//! - when descriptors run out, clients already waiting in the accept backlog are served as soon
//!   as descriptors free up, without a new connection arriving to wake the listener (mio is
//!   edge-triggered), and ferry keeps serving: its own shortage of descriptors does not mark the
//!   backend down (health checks and backend connections that fail for it say nothing about the
//!   backend).
//!
//! Every wait is bounded.

mod proxy_common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry_tests::{driver_tests, Driver, FerryProcess};
use mysql::prelude::Queryable;
use proxy_common::{backend, metric, mysql_opts, PASSWORD, USER};

driver_tests!(
    a_low_soft_open_file_limit_is_raised,
    clients_waiting_while_descriptors_ran_out_are_served_when_they_free,
);

/// The open-file limits of process `pid` as `/proc/PID/limits` gives them: (soft, hard).
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file line in:\n{limits}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn a_low_soft_open_file_limit_is_raised(driver: Driver) {
    let db = backend(1);
    // max-connections is 10,000 by default: 20,096 descriptors would be needed (2 per session,
    // 64 + 32 admin connections in reserve); 4,096 leave room for 2,000 sessions.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .open_files(256, 4096)
        .start();
    let pid = ferry.pid().expect("ferry runs");
    assert_eq!(open_files_limits(pid), (4096, 4096), "soft raised to hard");
    let log = ferry.log();
    assert!(
        log.contains("open-file limit is below what max-connections needs")
            && log.contains("sessions=2000"),
        "{}",
        ferry.log_tail(20)
    );
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD)).unwrap();
    let one: u32 = conn.query_first("select 1").unwrap().unwrap();
    assert_eq!(one, 1);
}

/// What the server's first packet on `stream` is: `Some(payload[0])` (0x0A a greeting, 0xFF an
/// ERR), or `None` if nothing came within the stream's read timeout.
fn first_packet_kind(stream: &mut TcpStream) -> Option<u8> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) => panic!("closed after {got} bytes"),
            Ok(n) => got += n,
            Err(e)
                if got == 0 && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return None
            }
            Err(e) => panic!("reading the first packet: {e}"),
        }
    }
    Some(head[4])
}

fn clients_waiting_while_descriptors_ran_out_are_served_when_they_free(driver: Driver) {
    let db = backend(1);
    // Room for a handful of clients only: the proxy's own descriptors take most of these.
    let ferry = FerryProcess::builder(driver)
        .backend("db1", db.addr())
        .open_files(48, 48)
        .start();

    // Clients that only connect and read the greeting, held open, until one gets nothing: the
    // kernel completed its connection, but ferry could not accept it.
    let mut greeted = Vec::new();
    let mut waiting = None;
    for _ in 0..64 {
        let mut stream = TcpStream::connect(ferry.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        match first_packet_kind(&mut stream) {
            Some(0x0A) => greeted.push(stream),
            // An ERR: accepted, but no descriptor left for its backend. Closed: frees one.
            Some(_) => {}
            None => {
                waiting = Some(stream);
                break;
            }
        }
    }
    let mut waiting = waiting.unwrap_or_else(|| {
        panic!(
            "64 clients and none waiting: is the limit applied?\n{}",
            ferry.log_tail(20)
        )
    });
    assert!(!greeted.is_empty(), "{}", ferry.log_tail(20));
    assert!(
        metric(&ferry, "ferry_errors_total{kind=\"accept\"}") >= 1.0,
        "{}",
        ferry.log_tail(20)
    );

    // Descriptors free up; no new connection arrives to wake the listener.
    drop(greeted);
    let freed = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        first_packet_kind(&mut waiting),
        Some(0x0A),
        "the waiting client got no greeting after descriptors freed:\n{}",
        ferry.log_tail(20)
    );
    assert!(
        freed.elapsed() < Duration::from_secs(5),
        "{:?}",
        freed.elapsed()
    );
    drop(waiting);

    // Serving goes on at once: running out of descriptors is ferry's own trouble, so neither
    // the health checks nor the sessions that failed for it marked the backend down.
    let mut conn = mysql::Conn::new(mysql_opts(&ferry, USER, PASSWORD))
        .unwrap_or_else(|e| panic!("login after descriptors freed: {e}\n{}", ferry.log_tail(20)));
    let one: u32 = conn.query_first("select 1").unwrap().unwrap();
    assert_eq!(one, 1);
    let log = ferry.log();
    assert!(log.contains("accepting again"), "{}", ferry.log_tail(20));
    assert!(
        !log.contains("backend unhealthy") && !log.contains("backend unreachable"),
        "{}",
        ferry.log_tail(40)
    );
    assert!(
        log.matches("accept failed; clients wait in the backlog")
            .count()
            <= 2,
        "one warning per episode (per worker):\n{}",
        ferry.log_tail(20)
    );
    assert!(!log.contains("panicked"), "{}", ferry.log_tail(40));
}
