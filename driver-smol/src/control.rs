//! The control task: runs the endpoint's timers (health rounds every `health.interval`, the
//! balancer every `migration.rebalance-interval`) and the sockets of its health probes.
//!
//! Each probe is the core's [`HealthProbe`] state machine, run as a task of its own so that a
//! silent backend does not delay the others; this file only connects, writes what it sends (with
//! a monitor account: the login, COM_PING, COM_QUIT), reads and reports. What a
//! verdict means (health, the advertised server version, the balancer's reaction) is the
//! endpoint's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::control::HealthProbe;
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Timer;

use crate::proxy::{spawn, Spawner};
use crate::resolve::{connect_any, resolve};
use crate::shared::Inner;

/// Runs the endpoint's due timers and starts the health probes they ask for (each as a task
/// that reports its verdict when done); the tasks, and the endpoint's next deadline.
fn run_timers(inner: &Arc<Inner>, executor: &Spawner) -> (Vec<smol::Task<()>>, Option<Instant>) {
    let now = Instant::now();
    let (probes, next) = {
        let mut control = inner.control();
        control.endpoint.handle_timeout(now);
        let probes: Vec<HealthProbe> =
            std::iter::from_fn(|| control.endpoint.poll_probe()).collect();
        control.deliver();
        (probes, control.endpoint.poll_timeout())
    };
    let tasks = probes
        .into_iter()
        .map(|probe| spawn(executor, check(Arc::clone(inner), probe)))
        .collect();
    (tasks, next)
}

/// The first health round, run to completion (it is due at once): the first clients find their
/// backends, and the server version advertised to them is the backends' own.
pub(crate) async fn first_round(inner: &Arc<Inner>, executor: &Spawner) {
    let (tasks, _) = run_timers(inner, executor);
    for task in tasks {
        task.await;
    }
}

/// The endpoint's timers until the proxy stops (the caller ran the first round).
pub(crate) async fn run(inner: Arc<Inner>, executor: Spawner) {
    let stop = inner.stop.1.clone();
    let nudges = inner.nudge.1.clone();
    loop {
        let (tasks, next) = run_timers(&inner, &executor);
        for task in tasks {
            task.detach();
        }
        // Until the next deadline, or a probe finishing (the next round counts from the end of
        // this one), or the stop.
        let wait = async {
            let nudged = async {
                let _ = nudges.recv().await;
            };
            match next {
                Some(at) => {
                    future::or(nudged, async {
                        Timer::at(at).await;
                    })
                    .await
                }
                None => nudged.await,
            }
            false
        };
        let stopped = future::or(wait, async {
            let _ = stop.recv().await;
            true
        })
        .await;
        if stopped {
            return;
        }
    }
}

/// Runs one probe and reports its verdict to the endpoint.
async fn check(inner: Arc<Inner>, mut probe: HealthProbe) {
    let deadline = probe.deadline();
    // A host name is looked up first, within the check's time (a lookup still running at the
    // deadline is the verdict's reason, not a missing greeting).
    let addr = probe.addr().clone();
    let lookup = future::or(async { Some(resolve(&addr).await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await;
    let addrs = match lookup {
        Some(Ok(addrs)) => addrs,
        Some(Err(e)) => {
            probe.connect_failed(Instant::now(), &e);
            return finish(&inner, probe);
        }
        None => {
            let e = addr.resolve_timed_out(probe.timeout());
            probe.connect_failed(Instant::now(), &e);
            return finish(&inner, probe);
        }
    };
    let timed_out = future::or(
        async {
            probe_io(&mut probe, addrs).await;
            false
        },
        async {
            Timer::at(deadline).await;
            true
        },
    )
    .await;
    if timed_out {
        probe.handle_timeout(Instant::now().max(deadline));
    }
    finish(&inner, probe);
}

/// Hands a finished probe to the endpoint.
fn finish(inner: &Arc<Inner>, probe: HealthProbe) {
    let mut control = inner.control();
    control.endpoint.probe_finished(Instant::now(), probe);
    control.deliver();
    drop(control);
    inner.nudge();
}

/// One probe's socket: connect (to `addrs` in order), then write what the probe has to send (a
/// monitor login) and read, until it has a verdict and nothing left to write (the caller
/// enforces the deadline).
async fn probe_io(probe: &mut HealthProbe, addrs: Vec<SocketAddr>) {
    let mut stream = match connect_any(addrs).await {
        Ok(s) => s,
        Err(e) => return probe.connect_failed(Instant::now(), &e),
    };
    let mut chunk = [0u8; 1024];
    loop {
        while let Some(bytes) = probe.poll_transmit() {
            if let Err(e) = stream.write_all(&bytes).await {
                probe.write_failed(Instant::now(), &e);
            }
        }
        if probe.is_done() {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => probe.handle_eof(Instant::now()),
            Ok(n) => probe.handle_input(Instant::now(), &chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => probe.read_failed(Instant::now(), &e),
        }
    }
}
