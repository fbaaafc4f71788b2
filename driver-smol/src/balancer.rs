//! The balancer task (only when migration is on): every `migration.rebalance-interval`, and at
//! once when nudged (a drain, an undrain, a health change), it plans with the same pure function
//! as the mio driver ([`plan_migrations`]: drain moves, then the core's rebalancing plan) and
//! sends each move to the session's task as a migration request. It never touches a session.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::balance::RebalancePolicy;
use ferry_mio::proxy::rebalance::{plan_migrations, BackendView};
use smol::channel::Receiver;
use smol::future;

use crate::shared::{Command, Inner};
use crate::tick::{or_stopped, sleep};

/// Plans every `interval` or nudge until `stop` closes.
pub(crate) async fn run(
    inner: Arc<Inner>,
    interval: Duration,
    policy: RebalancePolicy,
    stop: Receiver<Infallible>,
) {
    let nudges = inner.nudge.1.clone();
    loop {
        let next = future::or(sleep(interval), async {
            // A closed channel cannot happen (the proxy holds the sender); stop then.
            nudges.recv().await.is_err()
        });
        if or_stopped(next, &stop).await {
            return;
        }
        tick(&inner, &policy, Instant::now());
    }
}

/// One plan, executed by requests to the sessions.
pub(crate) fn tick(inner: &Inner, policy: &RebalancePolicy, now: Instant) {
    if inner.stopping.load(Ordering::SeqCst) {
        return;
    }
    let backends: Vec<BackendView> = inner
        .registry
        .infos()
        .iter()
        .map(|b| BackendView {
            healthy: b.healthy,
            draining: b.draining,
        })
        .collect();
    let moves = plan_migrations(&backends, &inner.session_views(), now, policy);
    if moves.is_empty() {
        return;
    }
    tracing::info!(moves = moves.len(), "migrating sessions");
    for m in moves {
        let (Some(from), Some(to)) = (inner.registry.get(m.from), inner.registry.get(m.to)) else {
            continue;
        };
        tracing::debug!(session = m.session, from = %from.name, to = %to.name, "migration requested");
        let Some(commands) = inner.commands_of(m.session) else {
            continue;
        };
        // Counted on its target at once, so that the next plan sees the move.
        if let Some(entry) = inner.sessions().get_mut(&m.session) {
            entry.target = Some(to.name.clone());
        }
        let _ = commands.try_send(Command::Migrate {
            to: to.name.clone(),
            reply: None,
        });
    }
}
