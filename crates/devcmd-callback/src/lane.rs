//! One lane of an address: a FIFO of notifications pushed one at a time,
//! the oldest retried until it is delivered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use devcmd_core::{Clock, CommandId, Mutation, Timestamp};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::Shared;
use crate::address::Health;
use crate::notification::Notification;

/// The hard bound of a lane, in multiples of `lane_queue_max`.
pub(crate) const PARK_FACTOR: usize = 64;

/// A lane's queue with, per command, how many of its notifications wait
/// (so finding one to coalesce costs nothing while every command has one).
#[derive(Default)]
struct Queue {
    q: VecDeque<Notification>,
    per_command: hashbrown::HashMap<CommandId, u32>,
    /// Commands with two or more notifications queued.
    multi: usize,
}

impl Queue {
    fn push_back(&mut self, n: Notification) {
        let c = self.per_command.entry(n.command_id).or_insert(0);
        *c += 1;
        if *c == 2 {
            self.multi += 1;
        }
        self.q.push_back(n);
    }

    fn take(&mut self, i: usize) -> Option<Notification> {
        let n = self.q.remove(i)?;
        if let Some(c) = self.per_command.get_mut(&n.command_id) {
            *c -= 1;
            if *c == 1 {
                self.multi -= 1;
            }
            if *c == 0 {
                self.per_command.remove(&n.command_id);
            }
        }
        Some(n)
    }

    /// The oldest intermediate notification (after the head, which is in
    /// flight) of a command with a later notification queued or `incoming`.
    fn oldest_superseded(&self, incoming: &Notification) -> Option<usize> {
        let incoming_has_queued = self.per_command.contains_key(&incoming.command_id);
        if !incoming_has_queued && self.multi == 0 {
            return None;
        }
        self.q.iter().enumerate().skip(1).find_map(|(i, m)| {
            let superseded = !m.is_terminal()
                && (m.command_id == incoming.command_id
                    || self.per_command.get(&m.command_id).is_some_and(|&c| c >= 2));
            superseded.then_some(i)
        })
    }
}

pub(crate) struct Lane {
    queue: Mutex<Queue>,
    wake: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Removes a notification's outbox entry (delivered, coalesced or dropped).
/// Removals gathered before they are submitted as one store batch.
pub(crate) const REMOVALS_BATCH: usize = 1024;

pub(crate) fn forget(shared: &Shared, n: &Notification) {
    if shared.store.is_none() {
        return;
    }
    let full = {
        let mut r = shared.removals.lock();
        r.push(Mutation::RemoveOutbox { key: n.key() });
        r.len() >= REMOVALS_BATCH
    };
    if full {
        flush_removals(shared);
    }
}

/// Submits the gathered removals as one batch. Nobody waits for it: a
/// removal lost in a crash means one more push (delivery is at least once).
pub(crate) fn flush_removals(shared: &Shared) {
    let batch = std::mem::take(&mut *shared.removals.lock());
    if let (Some(store), false) = (&shared.store, batch.is_empty()) {
        drop(store.submit(batch));
    }
}

impl Lane {
    pub(crate) fn spawn(shared: Arc<Shared>, health: Arc<Health>, rt: &tokio::runtime::Handle) -> Arc<Self> {
        let lane = Arc::new(Self {
            queue: Mutex::new(Queue::default()),
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

    /// Queues a notification. A lane at its bound first coalesces: it drops
    /// its oldest waiting intermediate notification (SENT, DELIVERED) of a
    /// command that has a later one queued or arriving (never the one in
    /// flight, never a terminal one). A lane at its hard bound parks the
    /// notification: it stays in the outbox only and is pushed after the next
    /// start.
    pub(crate) fn push(&self, n: Notification, shared: &Shared) {
        let soft = shared.config.lane_queue_max.max(1);
        let mut q = self.queue.lock();
        if q.q.len() >= soft
            && let Some(i) = q.oldest_superseded(&n)
            && let Some(old) = q.take(i)
        {
            forget(shared, &old);
            shared.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        if q.q.len() >= soft.saturating_mul(PARK_FACTOR) {
            shared.stats.parked.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(n);
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>, shared: Arc<Shared>, health: Arc<Health>) {
        let step = shared.config.poll_step;
        loop {
            let head = self.queue.lock().q.front().cloned();
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
                        tracing::debug!(url = %n.url, command = %n.command_id, %reason, attempt, "callback push failed");
                        let now = shared.clock.now();
                        let c = &shared.config;
                        health.failed(pass, now, c.suspend_after_failures, c.suspend_for, &shared.stats);
                        let wait = backoff(c.backoff_first, c.backoff_max, attempt, n.command_id.to_u128());
                        // Counted once the retry time is fixed, so whoever
                        // watches the count and then moves the clock moves it
                        // past this retry.
                        shared.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        sleep_until(shared.clock.as_ref(), now.saturating_add(wait), step).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
            self.queue.lock().take(0);
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
