//! Waiting for the next round of a periodic task (health checks, the balancer) unless the proxy
//! stops first.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use smol::channel::Receiver;
use smol::future;
use smol::Timer;

/// Waits for `wait` (`true`: stop) or for `stop` to close (nothing is ever sent on it), whichever
/// comes first; `true` if the task should stop.
pub(crate) async fn or_stopped(
    wait: impl Future<Output = bool>,
    stop: &Receiver<Infallible>,
) -> bool {
    future::or(wait, async {
        let _ = stop.recv().await;
        true
    })
    .await
}

/// Sleeps for `interval`; `false` (do not stop), for [`or_stopped`].
pub(crate) async fn sleep(interval: Duration) -> bool {
    Timer::after(interval).await;
    false
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_wait_ends_the_round_and_a_closed_stop_ends_the_task() {
        smol::block_on(async {
            let (stopper, stop) = smol::channel::bounded::<Infallible>(1);
            assert!(!or_stopped(sleep(Duration::from_millis(10)), &stop).await);
            // A wait asking to stop stops.
            assert!(or_stopped(async { true }, &stop).await);
            drop(stopper);
            let start = Instant::now();
            assert!(or_stopped(sleep(Duration::from_secs(30)), &stop).await);
            assert!(start.elapsed() < Duration::from_secs(10));
        });
    }
}
