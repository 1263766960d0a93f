//! # devcmd-callback
//!
//! The callback outbox: every status change of a command with a
//! `callbackUrl` becomes a POST of
//! `{"deviceId","commandId","result":{"resultCode","resultDetail"}}` to that
//! URL, as the platform sends it.
//!
//! - **Durable first.** [`OutboxSink`] is the core's event sink. For each
//!   change it owes a push for, it adds an outbox record to the *same* store
//!   batch as the change ([`devcmd_core::EventSink::records`]), and it hands
//!   the push on only after that batch is synced. A push is removed from the
//!   outbox after a 2xx answer; after a restart, [`Callbacks::resume`] pushes
//!   what was left.
//! - **Ordered.** Pushes to one address run in lanes: a command always uses
//!   the same lane, and a lane retries its oldest push until it succeeds
//!   before it sends the next, so each command's notifications arrive in
//!   transition order.
//! - **Retried, then suspended.** A connection error, a timeout (15 s) or a
//!   non-2xx answer is retried with jittered exponential backoff. After 10
//!   consecutive failures at one address the address is suspended for
//!   3 minutes (the platform's rule), then one push probes it; a success
//!   resumes every lane.
//! - **Isolated.** Dispatch only appends to an unbounded hand-off queue
//!   (nothing blocks a shard); each address has its own lanes, so a dead or
//!   slow receiver delays nobody else. A lane past
//!   [`CallbackConfig::lane_queue_max`] coalesces: it drops the oldest
//!   waiting intermediate notification (SENT, DELIVERED) of a command whose
//!   later notification is queued (counted, `coalesced`); terminal ones are
//!   never dropped. At 64 times that bound a lane parks new notifications:
//!   they stay in the outbox only (counted, `parked`) and are pushed after the
//!   next start. Memory per address is bounded; nothing durable is lost.
//! - **Time** for backoff and suspension comes from the core's [`Clock`], so
//!   tests step it; the per-push timeout is real time.
//!
//! Choice where the platform is silent: delivery is at least once. A receiver
//! that answered 2xx too late (after our timeout) sees the push again.

mod address;
mod lane;
mod notification;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use devcmd_core::{Clock, CommandStore, Commit, EventSink, Mutation, StatusChange};
use parking_lot::Mutex;
use tokio::sync::mpsc;

pub use address::{BadUrl, address_of};
pub use notification::{DecodeError, Notification, OUTBOX_VERSION};

use crate::address::Health;
use crate::lane::Lane;

/// Settings of the callback outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// Longest wait for an answer to one push (the platform's 15 s).
    pub push_timeout: Duration,
    /// Consecutive failures after which an address is suspended (10).
    pub suspend_after_failures: u32,
    /// How long a suspension lasts (3 minutes).
    pub suspend_for: Duration,
    /// First retry delay (doubling, jittered ±50 %).
    pub backoff_first: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Lanes (concurrent pushes) per address.
    pub lanes_per_address: usize,
    /// Notifications one lane holds before it coalesces intermediate ones
    /// (it parks new ones at 64 times this).
    pub lane_queue_max: usize,
    /// Also push EXPIRED and CANCELED (the platform does not).
    pub notify_expired_and_canceled: bool,
    /// How often a waiting lane looks at the clock.
    pub poll_step: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            push_timeout: Duration::from_secs(15),
            suspend_after_failures: 10,
            suspend_for: Duration::from_secs(180),
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            lanes_per_address: 32,
            lane_queue_max: 1024,
            notify_expired_and_canceled: false,
            poll_step: Duration::from_millis(20),
        }
    }
}

/// Counters of the outbox (read them through [`Callbacks::stats`]).
#[derive(Debug, Default)]
pub struct CallbackStats {
    /// Pushes answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Times an address was suspended.
    pub suspensions: AtomicU64,
    /// Times a suspended address answered again.
    pub resumed: AtomicU64,
    /// Intermediate notifications dropped because a lane was full.
    pub coalesced: AtomicU64,
    /// Notifications never pushed because their store batch failed.
    pub dropped: AtomicU64,
    /// Notifications waiting in lanes now.
    pub queued: AtomicU64,
    /// Notifications left in the outbox only because a lane was at its hard
    /// bound; pushed after the next start.
    pub parked: AtomicU64,
    /// Outbox entries that could not be read back at resume.
    pub corrupt: AtomicU64,
}

/// A snapshot of [`CallbackStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Pushes answered 2xx.
    pub delivered: u64,
    /// Attempts that failed.
    pub failed_attempts: u64,
    /// Suspensions.
    pub suspensions: u64,
    /// Resumptions.
    pub resumed: u64,
    /// Coalesced intermediate notifications.
    pub coalesced: u64,
    /// Dropped because their batch failed.
    pub dropped: u64,
    /// Waiting now.
    pub queued: u64,
    /// Parked in the outbox until the next start.
    pub parked: u64,
    /// Unreadable outbox entries at resume.
    pub corrupt: u64,
    /// Addresses suspended now.
    pub suspended_addresses: u64,
}

struct Batch {
    notifications: Vec<Notification>,
    commit: Commit,
}

/// The core's event sink that feeds the outbox. Give it to
/// [`devcmd_core::DispatcherBuilder::events`].
pub struct OutboxSink {
    tx: mpsc::UnboundedSender<Batch>,
    extra: bool,
}

impl OutboxSink {
    fn owed<'a>(&self, changes: &'a [StatusChange]) -> impl Iterator<Item = Notification> + 'a {
        let extra = self.extra;
        changes.iter().filter_map(move |c| Notification::for_change(c, extra))
    }
}

impl EventSink for OutboxSink {
    fn publish(&self, changes: &[StatusChange]) {
        self.publish_committed(changes, Commit::done());
    }

    fn records(&self, changes: &[StatusChange], out: &mut Vec<Mutation>) {
        out.extend(self.owed(changes).map(|n| Mutation::PutOutbox {
            key: n.key(),
            value: n.encode_value(),
        }));
    }

    fn publish_committed(&self, changes: &[StatusChange], commit: Commit) {
        let notifications: Vec<Notification> = self.owed(changes).collect();
        if !notifications.is_empty() {
            // Fails only after shutdown: the entries stay in the outbox.
            let _ = self.tx.send(Batch { notifications, commit });
        }
    }
}

/// Everything a lane needs, shared.
pub(crate) struct Shared {
    pub(crate) config: CallbackConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) store: Option<Arc<dyn CommandStore>>,
    pub(crate) client: reqwest::Client,
    pub(crate) stats: CallbackStats,
    /// Outbox removals of delivered (or dropped) pushes, written in batches.
    pub(crate) removals: Mutex<Vec<Mutation>>,
}

struct Address {
    health: Arc<Health>,
    lanes: Vec<Arc<Lane>>,
}

/// The running outbox: lanes per address on a tokio runtime.
pub struct Callbacks {
    shared: Arc<Shared>,
    addresses: Arc<Mutex<HashMap<String, Address>>>,
    runtime: tokio::runtime::Handle,
    intake: Mutex<Option<tokio::task::JoinHandle<()>>>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why the outbox could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for callbacks: {0}")]
pub struct StartError(String);

impl Callbacks {
    /// Starts the outbox on `runtime`. `store` receives the removal of each
    /// delivered entry (the same store the dispatcher uses; `None` for a pure
    /// in-memory model). Returns the sink to give the dispatcher.
    pub fn start(
        config: CallbackConfig,
        clock: Arc<dyn Clock>,
        store: Option<Arc<dyn CommandStore>>,
        runtime: tokio::runtime::Handle,
    ) -> Result<(Arc<Self>, Arc<OutboxSink>), StartError> {
        let client = reqwest::Client::builder()
            .timeout(config.push_timeout)
            .pool_max_idle_per_host(config.lanes_per_address.max(1))
            .build()
            .map_err(|e| StartError(e.to_string()))?;
        let extra = config.notify_expired_and_canceled;
        let shared = Arc::new(Shared {
            config,
            clock,
            store,
            client,
            stats: CallbackStats::default(),
            removals: Mutex::new(Vec::new()),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        let this = Arc::new(Self {
            shared,
            addresses: Arc::new(Mutex::new(HashMap::new())),
            runtime: runtime.clone(),
            intake: Mutex::new(None),
            flusher: Mutex::new(None),
        });
        let me = Arc::clone(&this);
        let intake = runtime.spawn(async move {
            // Batches arrive in submission order and their commits complete in
            // that order, so waiting for each in turn delays nothing.
            while let Some(batch) = rx.recv().await {
                match batch.commit.await {
                    Ok(()) => batch.notifications.into_iter().for_each(|n| me.route(n)),
                    Err(e) => {
                        let n = batch.notifications.len() as u64;
                        me.shared.stats.dropped.fetch_add(n, Ordering::Relaxed);
                        tracing::error!(error = %e, notifications = n, "store batch failed: its pushes are not sent");
                    }
                }
            }
        });
        // Removals leave in batches: at REMOVALS_BATCH, or every 10 ms.
        let flusher = {
            let shared = Arc::clone(&this.shared);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(10));
                loop {
                    every.tick().await;
                    lane::flush_removals(&shared);
                }
            })
        };
        *this.intake.lock() = Some(intake);
        *this.flusher.lock() = Some(flusher);
        Ok((this, Arc::new(OutboxSink { tx, extra })))
    }

    /// Queues what a store's outbox kept from before a restart (entries in
    /// key order). Call it before [`devcmd_core::Dispatcher::restore`], so
    /// pushes owed from before come before those the restore causes.
    /// Returns how many entries were queued; unreadable ones are counted.
    pub fn resume(&self, outbox: &[(Vec<u8>, Vec<u8>)]) -> usize {
        let mut queued = 0;
        for (k, v) in outbox {
            match Notification::decode(k, v) {
                Ok(n) => {
                    self.route(n);
                    queued += 1;
                }
                Err(e) => {
                    self.shared.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, key = ?k, "unreadable callback outbox entry left in place");
                }
            }
        }
        queued
    }

    fn route(&self, n: Notification) {
        let Ok(addr) = address_of(&n.url) else {
            // Refused at creation; only damaged data gets here. Drop it from the outbox.
            tracing::error!(url = %n.url, "callback URL no longer valid; notification dropped");
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            lane::forget(&self.shared, &n);
            return;
        };
        let lane = {
            let mut addresses = self.addresses.lock();
            let a = addresses.entry(addr).or_insert_with(|| {
                let health = Arc::new(Health::default());
                let lanes = (0..self.shared.config.lanes_per_address.max(1))
                    .map(|_| Lane::spawn(Arc::clone(&self.shared), Arc::clone(&health), &self.runtime))
                    .collect();
                Address { health, lanes }
            });
            // The same command always takes the same lane.
            let i = (n.command_id.to_u128() % a.lanes.len() as u128) as usize;
            Arc::clone(&a.lanes[i])
        };
        lane.push(n, &self.shared);
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        let suspended = self
            .addresses
            .lock()
            .values()
            .filter(|a| a.health.is_suspended())
            .count() as u64;
        StatsSnapshot {
            delivered: s.delivered.load(Ordering::Relaxed),
            failed_attempts: s.failed_attempts.load(Ordering::Relaxed),
            suspensions: s.suspensions.load(Ordering::Relaxed),
            resumed: s.resumed.load(Ordering::Relaxed),
            coalesced: s.coalesced.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            parked: s.parked.load(Ordering::Relaxed),
            corrupt: s.corrupt.load(Ordering::Relaxed),
            suspended_addresses: suspended,
        }
    }

    /// Stops every lane. What was not delivered stays in the outbox for the
    /// next start.
    pub fn shutdown(&self) {
        if let Some(t) = self.intake.lock().take() {
            t.abort();
        }
        if let Some(t) = self.flusher.lock().take() {
            t.abort();
        }
        for a in self.addresses.lock().values() {
            for l in &a.lanes {
                l.stop();
            }
        }
        lane::flush_removals(&self.shared);
    }
}
