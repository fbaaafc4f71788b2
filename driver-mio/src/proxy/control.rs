//! The control thread: runs the endpoint's timers (health rounds every `health.interval`, the
//! balancer every `migration.rebalance-interval`) and the sockets of its health probes.
//!
//! Each probe is the core's [`HealthProbe`] state machine; this file only connects, writes what
//! it sends (with a monitor account: the login, COM_PING, COM_QUIT), reads and reports (blocking
//! sockets, one short-lived thread per backend so that a silent backend does not delay the
//! others). What a verdict means is the endpoint's.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::control::HealthProbe;

use super::resolver::connect_within;
use super::shared::Shared;

/// The longest the thread sleeps without looking at the endpoint's timers.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Runs the endpoint's due timers and the health probes they start; the next deadline.
pub(crate) fn run_timers(shared: &Shared) -> Option<Instant> {
    let now = Instant::now();
    let probes: Vec<HealthProbe> = shared.with_endpoint(|ep| {
        ep.handle_timeout(now);
        std::iter::from_fn(|| ep.poll_probe()).collect()
    });
    if !probes.is_empty() {
        let done: Vec<HealthProbe> = std::thread::scope(|scope| {
            let handles: Vec<_> = probes
                .into_iter()
                .map(|p| scope.spawn(move || run_probe(p)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let now = Instant::now();
        shared.with_endpoint(|ep| {
            for probe in done {
                ep.probe_finished(now, probe);
            }
        });
    }
    shared.endpoint().poll_timeout()
}

/// The least time a write gets (the final COM_QUIT may be written right at the deadline).
const MIN_WRITE_TIME: Duration = Duration::from_millis(50);

/// One probe's socket: connect within its timeout, then write what the probe has to send (a
/// monitor login) and read, until it has a verdict and nothing left to write.
fn run_probe(mut probe: HealthProbe) -> HealthProbe {
    let mut stream = match connect_within(probe.addr(), probe.timeout()) {
        Ok(s) => s,
        Err(e) => {
            probe.connect_failed(Instant::now(), &e);
            return probe;
        }
    };
    let mut chunk = [0u8; 1024];
    loop {
        while let Some(bytes) = probe.poll_transmit() {
            let remaining = probe.deadline().saturating_duration_since(Instant::now());
            let written = stream
                .set_write_timeout(Some(remaining.max(MIN_WRITE_TIME)))
                .and_then(|()| stream.write_all(&bytes));
            if let Err(e) = written {
                probe.write_failed(Instant::now(), &e);
            }
        }
        if probe.is_done() {
            break;
        }
        let remaining = probe.deadline().saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            probe.handle_timeout(Instant::now());
            break;
        }
        if let Err(e) = stream.set_read_timeout(Some(remaining)) {
            probe.read_failed(Instant::now(), &e);
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => probe.handle_eof(Instant::now()),
            Ok(n) => probe.handle_input(Instant::now(), &chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => probe.read_failed(Instant::now(), &e),
        }
    }
    probe
}

/// What the control thread is told.
#[derive(Debug)]
enum Signal {
    /// The endpoint's next deadline may have moved earlier (shutdown began): look again.
    Nudge,
    Stop,
}

/// The running control thread; [`ControlThread::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct ControlThread {
    signals: Option<Sender<Signal>>,
    thread: Option<JoinHandle<()>>,
}

impl ControlThread {
    /// Starts it (the caller ran the first round already).
    pub(crate) fn start(shared: Arc<Shared>, mut next: Option<Instant>) -> io::Result<Self> {
        let (signals, received) = mpsc::channel::<Signal>();
        let thread = std::thread::Builder::new()
            .name("ferry-control".into())
            .spawn(move || loop {
                let wait = next
                    .map_or(MAX_SLEEP, |at| at.saturating_duration_since(Instant::now()))
                    .min(MAX_SLEEP);
                match received.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) | Ok(Signal::Nudge) => {
                        next = run_timers(&shared)
                    }
                    // Stop asked, or the proxy is gone.
                    Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(Self {
            signals: Some(signals),
            thread: Some(thread),
        })
    }

    /// Runs the endpoint's timers now and sleeps until its next deadline from then on (call it
    /// after a change that moved the deadline earlier).
    pub(crate) fn nudge(&self) {
        if let Some(signals) = &self.signals {
            let _ = signals.send(Signal::Nudge);
        }
    }

    /// Stops the thread and waits for it (at most one health check's timeout).
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(signals) = self.signals.take() {
            let _ = signals.send(Signal::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
