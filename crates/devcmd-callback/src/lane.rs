//! One lane of an address: a FIFO of notifications pushed one at a time,
//! the oldest retried until it is delivered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use devcmd_core::{Clock, Mutation, Timestamp};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::Shared;
use crate::address::Health;
use crate::notification::Notification;

pub(crate) struct Lane {
    queue: Mutex<VecDeque<Notification>>,
    wake: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Removes a notification's outbox entry (delivered, coalesced or dropped).
pub(crate) fn forget(shared: &Shared, n: &Notification) {
    if let Some(store) = &shared.store {
        // Nobody waits for this: a removal lost in a crash means one more push.
        drop(store.submit(vec![Mutation::RemoveOutbox { key: n.key() }]));
    }
}

impl Lane {
    pub(crate) fn spawn(shared: Arc<Shared>, health: Arc<Health>, rt: &tokio::runtime::Handle) -> Arc<Self> {
        let lane = Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            task: Mutex::new(None),
        });
        let me = Arc::clone(&lane);
        let task = rt.spawn(async move { me.run(shared, health).await });
        *lane.task.lock() = Some(task);
        lane
    }

    pub(crate) fn stop(&self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }

    /// Queues a notification; a full lane first drops its oldest waiting
    /// intermediate notification (never the one in flight, never a terminal one).
    pub(crate) fn push(&self, n: Notification, shared: &Shared) {
        let mut q = self.queue.lock();
        if q.len() >= shared.config.lane_queue_max.max(1) {
            // Index 0 is in flight.
            if let Some(i) = q.iter().skip(1).position(|m| !m.is_terminal()).map(|i| i + 1)
                && let Some(old) = q.remove(i)
            {
                forget(shared, &old);
                shared.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            }
        }
        q.push_back(n);
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>, shared: Arc<Shared>, health: Arc<Health>) {
        let step = shared.config.poll_step;
        loop {
            let head = self.queue.lock().front().cloned();
            let Some(n) = head else {
                self.wake.notified().await;
                continue;
            };
            let body = n.body();
            let mut attempt: u32 = 0;
            loop {
                let pass = health.pass(shared.clock.as_ref(), step).await;
                match push(&shared.client, &n.url, body.clone()).await {
                    Ok(()) => {
                        health.succeeded(&shared.stats);
                        shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        forget(&shared, &n);
                        break;
                    }
                    Err(reason) => {
                        shared.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(url = %n.url, command = %n.command_id, %reason, attempt, "callback push failed");
                        let now = shared.clock.now();
                        let c = &shared.config;
                        health.failed(pass, now, c.suspend_after_failures, c.suspend_for, &shared.stats);
                        let wait = backoff(c.backoff_first, c.backoff_max, attempt, n.command_id.to_u128());
                        sleep_until(shared.clock.as_ref(), now.saturating_add(wait), step).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
            self.queue.lock().pop_front();
            shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

async fn push(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), String> {
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}

/// `first · 2^attempt`, capped, times a factor in [0.5, 1.5) drawn from the
/// command and the attempt (spreads retries of many commands apart).
pub(crate) fn backoff(first: Duration, max: Duration, attempt: u32, seed: u128) -> Duration {
    let base = first.saturating_mul(1u32 << attempt.min(20)).min(max);
    let mut x = (seed as u64) ^ ((seed >> 64) as u64) ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let factor = 0.5 + (x % 1000) as f64 / 1000.0;
    base.mul_f64(factor)
}

/// Sleeps until the clock reads `deadline`, looking every `step`.
pub(crate) async fn sleep_until(clock: &dyn Clock, deadline: Timestamp, step: Duration) {
    loop {
        let now = clock.now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(deadline.saturating_since(now).min(step)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_the_jitter_and_stays_capped() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for attempt in 0..30 {
            for seed in [0u128, 1, 0xdead_beef, u128::MAX] {
                let d = backoff(first, max, attempt, seed);
                let base = first.saturating_mul(1 << attempt.min(20)).min(max);
                assert!(
                    d >= base.mul_f64(0.5) && d < base.mul_f64(1.5),
                    "{attempt} {seed} {d:?}"
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..50u128).map(|s| backoff(first, max, 3, s)).collect();
        assert!(spread.len() > 25, "jitter spreads retries");
    }
}
