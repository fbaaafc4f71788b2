//! The balancer thread (only when migration is on): every `migration.rebalance-interval`, and at
//! once when nudged (a drain, an undrain, a health change), it plans with
//! [`plan_migrations`](super::rebalance::plan_migrations) and hands each move to the worker that
//! owns the session. It never touches a session itself.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_core::balance::RebalancePolicy;

use super::rebalance::{plan_migrations, BackendView};
use super::shared::{BalancerMsg, Shared};

/// The running balancer; [`Balancer::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct Balancer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Balancer {
    /// Starts the thread and registers its channel in `shared` (for nudges).
    pub(crate) fn start(
        shared: Arc<Shared>,
        interval: Duration,
        policy: RebalancePolicy,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        // Set once: a proxy starts one balancer.
        let _ = shared.balancer.set(tx);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ferry-balance".into())
            .spawn(move || loop {
                match rx.recv_timeout(interval) {
                    Ok(BalancerMsg::Nudge) | Err(RecvTimeoutError::Timeout) => {
                        // Nudges that came meanwhile are served by this one plan.
                        let mut stop = false;
                        while let Ok(msg) = rx.try_recv() {
                            stop |= msg == BalancerMsg::Stop;
                        }
                        if stop {
                            return;
                        }
                        tick(&thread_shared, &policy, Instant::now());
                    }
                    Ok(BalancerMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.shared.balancer.get() {
            let _ = tx.send(BalancerMsg::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One plan, executed by requests to the workers.
pub(crate) fn tick(shared: &Shared, policy: &RebalancePolicy, now: Instant) {
    if shared
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    let registry = &shared.registry;
    let backends: Vec<BackendView> = registry
        .backends()
        .iter()
        .map(|b| BackendView {
            healthy: b.healthy(),
            draining: b.draining(),
        })
        .collect();
    let sessions = shared.session_views();
    let moves = plan_migrations(&backends, &sessions, now, policy);
    if moves.is_empty() {
        return;
    }
    tracing::info!(moves = moves.len(), "migrating sessions");
    for m in moves {
        let (Some(from), Some(to)) = (registry.get(m.from), registry.get(m.to)) else {
            continue;
        };
        tracing::debug!(session = m.session, from = %from.name, to = %to.name, "migration requested");
        shared.request_migration(m.session, &to.name);
    }
}
