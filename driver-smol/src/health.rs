//! Health checks on smol: every `health.interval`, each backend is checked with the mio driver's
//! [`check_backend`] (connect, read the greeting, let the core's `probe_greeting` judge it) on
//! smol's blocking pool, all backends at once, and the mio driver's [`record_verdict`]
//! records the verdicts.

use std::convert::Infallible;
use std::sync::Arc;

use ferry_mio::proxy::health::{check_backend, record_verdict};
use smol::channel::Receiver;

use crate::shared::Inner;
use crate::tick::{or_stopped, sleep};

/// Checks every backend once and records the verdicts (logging changes).
pub(crate) async fn check_all(inner: &Inner) {
    let timeout = inner.limits.health_timeout;
    let checks: Vec<_> = inner
        .registry
        .backends()
        .iter()
        .map(|b| {
            let addr = b.addr;
            smol::unblock(move || check_backend(addr, timeout))
        })
        .collect();
    let mut any_change = false;
    for (index, check) in checks.into_iter().enumerate() {
        any_change |= record_verdict(&inner.registry, index, &check.await);
    }
    if any_change {
        // A backend that came back takes sessions, one that fails loses them (migration on).
        inner.nudge_balancer();
    }
}

/// Checks every interval until `stop` closes (the first round is the caller's).
pub(crate) async fn run(inner: Arc<Inner>, stop: Receiver<Infallible>) {
    while !or_stopped(sleep(inner.limits.health_interval), &stop).await {
        check_all(&inner).await;
    }
}
