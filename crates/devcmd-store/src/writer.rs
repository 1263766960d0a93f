//! The group-commit writer: one thread gathers the mutations that many
//! threads submit, writes them as one fjall batch, syncs it to disk
//! (`PersistMode::SyncData`, passed explicitly: fjall's default does not
//! sync), then completes every waiter. While one batch syncs the next one
//! gathers, so batches grow with the load and no one waits for a timer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use devcmd_core::{AppId, Commit, CommitSignal, Mutation, StoreError};
use fjall::{Database, PersistMode};

use crate::Keyspaces;
use crate::codec;
use crate::history::HistoryCounts;
use crate::keys;

/// Which keyspace an entry goes to.
#[derive(Debug, Clone, Copy)]
enum Ks {
    Apps,
    Devices,
    Commands,
    ByApp,
    ByDevice,
    Tasks,
    Outbox,
    History,
    Ended,
}

/// One encoded write: a key and its new value, or `None` to remove it.
pub(crate) struct Entry {
    ks: Ks,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// A change of one history counter: +1 when a command is archived, -1 when
/// the history sweep deletes it. Each happens once per command: the core
/// archives a command once (the batch that archives it also removes it from
/// what recovery loads), and sweeps are serialised and delete only what
/// they read.
pub(crate) struct CountDelta {
    pub(crate) app: AppId,
    pub(crate) bucket: u64,
    pub(crate) add: bool,
}

/// A group of submissions that complete together: their encoded writes
/// (encoded on the submitting threads, so the writer thread only builds the
/// batch and syncs) and the one signal all their commits wait on. One signal
/// per group rather than per submission: a create costs no allocation of its
/// own here, and the writer completes one signal per group.
struct Group {
    entries: Vec<Entry>,
    counts: Vec<CountDelta>,
    mutations: usize,
    submissions: usize,
    signal: Arc<CommitSignal>,
}

impl Group {
    fn new() -> Self {
        Self {
            entries: Vec::new(),
            counts: Vec::new(),
            mutations: 0,
            submissions: 0,
            signal: CommitSignal::new(),
        }
    }
}

impl Drop for Group {
    /// A group dropped before it was committed (the store closed) fails rather
    /// than leaving its waiters hanging; after a commit this changes nothing.
    fn drop(&mut self) {
        self.signal.complete(Err(StoreError::Closed));
    }
}

/// What waits for the writer.
struct Queue {
    /// Groups that reached `batch_max`, oldest first.
    sealed: VecDeque<Group>,
    /// The group new submissions join.
    open: Group,
    /// Mutations in `sealed` and `open`.
    queued: usize,
    closing: bool,
    /// The writer is waiting for work (a submitter wakes it; otherwise no wake-up is needed).
    writer_idle: bool,
}

struct Shared {
    queue: parking_lot::Mutex<Queue>,
    /// The writer waits here for work.
    work: parking_lot::Condvar,
    /// Submitters wait here while the queue is full.
    space: parking_lot::Condvar,
    /// `Queue::queued`, readable without the lock (`is_backlogged` is asked
    /// before every API write).
    queued: AtomicUsize,
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches committed and synced.
    pub batches: AtomicU64,
    /// Mutations committed.
    pub mutations: AtomicU64,
    /// Nanoseconds spent in commit + sync, summed.
    pub commit_nanos: AtomicU64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    cfg: GroupCommit,
    poisoned: Arc<AtomicBool>,
    handle: parking_lot::Mutex<Option<JoinHandle<()>>>,
    pub(crate) stats: Arc<WriterStats>,
}

/// Bounds of group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Most mutations in one group of submissions that complete together;
    /// the writer commits every group waiting in one fjall batch.
    pub batch_max: usize,
    /// How long the writer waits for more after the first submission (0: take
    /// what is queued and go; batches still grow while a sync is running).
    pub linger: Duration,
    /// Mutations that may wait for the writer; past it, submitters block.
    pub queue_max: usize,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            batch_max: 4096,
            linger: Duration::ZERO,
            queue_max: 65_536,
        }
    }
}

impl Writer {
    pub(crate) fn start(
        db: Database,
        ks: Arc<Keyspaces>,
        counts: Arc<HistoryCounts>,
        cfg: GroupCommit,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: parking_lot::Mutex::new(Queue {
                sealed: VecDeque::new(),
                open: Group::new(),
                queued: 0,
                closing: false,
                writer_idle: false,
            }),
            work: parking_lot::Condvar::new(),
            space: parking_lot::Condvar::new(),
            queued: AtomicUsize::new(0),
        });
        let poisoned = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let handle = {
            let (shared, poisoned, stats, counts) = (
                Arc::clone(&shared),
                Arc::clone(&poisoned),
                Arc::clone(&stats),
                Arc::clone(&counts),
            );
            std::thread::Builder::new()
                .name("devcmd-store-writer".into())
                .spawn(move || run(&db, &ks, &counts, &shared, cfg, &poisoned, &stats))?
        };
        Ok(Self {
            shared,
            cfg,
            poisoned,
            handle: parking_lot::Mutex::new(Some(handle)),
            stats,
        })
    }

    pub(crate) fn submit(&self, mutations: Vec<Mutation>) -> Commit {
        let (entries, counts) = encode(&mutations);
        self.submit_entries(entries, counts, mutations.len())
    }

    /// Submits writes already encoded (the history sweep's deletions).
    pub(crate) fn submit_entries(&self, entries: Vec<Entry>, counts: Vec<CountDelta>, mutations: usize) -> Commit {
        if self.poisoned.load(Ordering::Acquire) {
            return Commit::failed(StoreError::Poisoned);
        }
        let mut q = self.shared.queue.lock();
        // Backpressure: wait while the queue is full (callers that can refuse
        // work check `is_backlogged` first).
        while q.queued >= self.cfg.queue_max.max(1) && !q.closing {
            self.shared.space.wait(&mut q);
        }
        if q.closing {
            return Commit::failed(StoreError::Closed);
        }
        let open = &mut q.open;
        if open.entries.is_empty() {
            open.entries = entries;
        } else {
            open.entries.extend(entries);
        }
        open.counts.extend(counts);
        open.mutations += mutations;
        open.submissions += 1;
        let signal = Arc::clone(&open.signal);
        q.queued += mutations;
        self.shared.queued.store(q.queued, Ordering::Relaxed);
        if q.open.mutations >= self.cfg.batch_max {
            let full = std::mem::replace(&mut q.open, Group::new());
            q.sealed.push_back(full);
        }
        let wake = std::mem::take(&mut q.writer_idle);
        drop(q);
        if wake {
            self.shared.work.notify_one();
        }
        Commit::pending(signal)
    }

    /// Seven eighths of the queue are taken.
    pub(crate) fn is_backlogged(&self) -> bool {
        let cap = self.cfg.queue_max.max(1);
        self.shared.queued.load(Ordering::Relaxed) >= cap - cap / 8
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Stops taking submissions, commits what is queued, and waits for the thread.
    pub(crate) fn close(&self) {
        {
            let mut q = self.shared.queue.lock();
            if q.closing {
                return;
            }
            q.closing = true;
        }
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        if let Some(h) = self.handle.lock().take()
            && h.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for work and takes every group waiting; `None` once closing and
/// nothing is left.
fn take_work(shared: &Shared, cfg: GroupCommit) -> Option<Vec<Group>> {
    let mut q = shared.queue.lock();
    loop {
        if !q.sealed.is_empty() || q.open.submissions > 0 {
            break;
        }
        if q.closing {
            return None;
        }
        q.writer_idle = true;
        shared.work.wait(&mut q);
    }
    if !cfg.linger.is_zero() && q.sealed.is_empty() && !q.closing {
        // Let more join the group before it is written.
        let _ = shared.work.wait_for(&mut q, cfg.linger);
    }
    let mut groups: Vec<Group> = q.sealed.drain(..).collect();
    if q.open.submissions > 0 {
        groups.push(std::mem::replace(&mut q.open, Group::new()));
    }
    q.queued = 0;
    shared.queued.store(0, Ordering::Relaxed);
    q.writer_idle = false;
    drop(q);
    shared.space.notify_all();
    Some(groups)
}

fn run(
    db: &Database,
    ks: &Keyspaces,
    counts: &HistoryCounts,
    shared: &Shared,
    cfg: GroupCommit,
    poisoned: &AtomicBool,
    stats: &WriterStats,
) {
    while let Some(mut groups) = take_work(shared, cfg) {
        let count: usize = groups.iter().map(|g| g.mutations).sum();
        let result = if poisoned.load(Ordering::Acquire) {
            Err(StoreError::Poisoned)
        } else {
            let started = Instant::now();
            let r = commit(db, ks, counts, &mut groups);
            let took = started.elapsed();
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            stats.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
            metrics::histogram!(devcmd_metrics::names::STORE_COMMIT_SECONDS).record(took.as_secs_f64());
            metrics::histogram!(devcmd_metrics::names::STORE_BATCH_MUTATIONS).record(count as f64);
            r.map_err(|e| {
                // fjall's advice: after a failed write or sync nothing is certain; stop.
                poisoned.store(true, Ordering::Release);
                tracing::error!(error = %e, "store commit failed: the store is poisoned and accepts nothing more");
                StoreError::Io(e.to_string())
            })
        };
        if result.is_ok() {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats.mutations.fetch_add(count as u64, Ordering::Relaxed);
        }
        for g in groups {
            g.signal.complete(result.clone());
        }
    }
    let _ = db.persist(PersistMode::SyncData);
}

fn encode(mutations: &[Mutation]) -> (Vec<Entry>, Vec<CountDelta>) {
    let put = |ks, key: Vec<u8>, value: Vec<u8>| Entry {
        ks,
        key,
        value: Some(value),
    };
    let mut out = Vec::with_capacity(mutations.len());
    let mut counts = Vec::new();
    for m in mutations {
        match m {
            Mutation::PutApp(a) => out.push(put(Ks::Apps, a.id.as_str().as_bytes().to_vec(), codec::encode_app(a))),
            Mutation::RemoveApp(id) => out.push(Entry {
                ks: Ks::Apps,
                key: id.as_str().as_bytes().to_vec(),
                value: None,
            }),
            Mutation::PutDevice(d) => {
                out.push(put(Ks::Devices, d.id.to_string().into_bytes(), codec::encode_device(d)))
            }
            Mutation::RemoveDevice(id) => out.push(Entry {
                ks: Ks::Devices,
                key: id.to_string().into_bytes(),
                value: None,
            }),
            // Commands in memory are all in `commands` (recovery loads every
            // one), so a durable create costs one key; the history indexes
            // are written once, when the command moves to the history.
            Mutation::CreateCommand(c) | Mutation::PutCommand(c) => {
                out.push(put(
                    Ks::Commands,
                    keys::command_key(c.id).to_vec(),
                    codec::encode_command(c),
                ));
            }
            Mutation::ArchiveCommand(c) => {
                let key = keys::command_key(c.id).to_vec();
                out.push(Entry {
                    ks: Ks::Commands,
                    key: key.clone(),
                    value: None,
                });
                out.push(put(Ks::History, key, codec::encode_command(c)));
                out.push(put(
                    Ks::ByApp,
                    keys::by_app_key(&c.app_id, c.creation_time, c.id),
                    Vec::new(),
                ));
                out.push(put(
                    Ks::ByDevice,
                    keys::by_device_key(&c.device_id, c.creation_time, c.id),
                    Vec::new(),
                ));
                let ended = c.terminal_time.unwrap_or(c.creation_time);
                out.push(put(
                    Ks::Ended,
                    keys::ended_key(ended, c.id).to_vec(),
                    keys::ended_value(&c.app_id, &c.device_id, c.creation_time),
                ));
                counts.push(CountDelta {
                    app: c.app_id.clone(),
                    bucket: c.creation_time.as_millis() / keys::COUNT_BUCKET_MS,
                    add: true,
                });
            }
            Mutation::PutCancelTask(t) => {
                out.push(put(
                    Ks::Tasks,
                    t.id.to_u128().to_be_bytes().to_vec(),
                    codec::encode_task(t),
                ));
            }
            Mutation::ForgetCommand {
                id,
                app_id,
                device_id,
                creation_time,
            } => {
                let gone = |ks, key| Entry { ks, key, value: None };
                out.push(gone(Ks::Commands, keys::command_key(*id).to_vec()));
                out.push(gone(Ks::ByApp, keys::by_app_key(app_id, *creation_time, *id)));
                out.push(gone(Ks::ByDevice, keys::by_device_key(device_id, *creation_time, *id)));
            }
            Mutation::ForgetCancelTask(id) => {
                out.push(Entry {
                    ks: Ks::Tasks,
                    key: id.to_u128().to_be_bytes().to_vec(),
                    value: None,
                });
            }
            Mutation::PutOutbox { key, value } => out.push(put(Ks::Outbox, key.clone(), value.clone())),
            Mutation::RemoveOutbox { key } => out.push(Entry {
                ks: Ks::Outbox,
                key: key.clone(),
                value: None,
            }),
        }
    }
    (out, counts)
}

/// A removal, for the history sweep.
pub(crate) fn removal(ks: HistoryKs, key: Vec<u8>) -> Entry {
    let ks = match ks {
        HistoryKs::Record => Ks::History,
        HistoryKs::ByApp => Ks::ByApp,
        HistoryKs::ByDevice => Ks::ByDevice,
        HistoryKs::Ended => Ks::Ended,
    };
    Entry { ks, key, value: None }
}

/// The keyspaces of the history, named for [`removal`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum HistoryKs {
    Record,
    ByApp,
    ByDevice,
    Ended,
}

fn commit(db: &Database, ks: &Keyspaces, counts: &HistoryCounts, jobs: &mut [Group]) -> fjall::Result<()> {
    // Explicit: fjall's default batch durability does not sync.
    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
    // The counters this batch changes, from their values in memory (only this
    // thread changes them).
    let mut touched: HashMap<(AppId, u64), u64> = HashMap::new();
    for d in jobs.iter_mut().flat_map(|j| j.counts.drain(..)) {
        let key = (d.app, d.bucket);
        let n = touched.entry(key.clone()).or_insert_with(|| counts.get(&key.0, key.1));
        *n = if d.add { *n + 1 } else { n.saturating_sub(1) };
    }
    for ((app, bucket), n) in &touched {
        let key = keys::count_key(app, *bucket);
        if *n == 0 {
            batch.remove(&ks.counts, key);
        } else {
            batch.insert(&ks.counts, key, n.to_be_bytes().to_vec());
        }
    }
    for e in jobs.iter_mut().flat_map(|j| j.entries.drain(..)) {
        let keyspace = match e.ks {
            Ks::Apps => &ks.apps,
            Ks::Devices => &ks.devices,
            Ks::Commands => &ks.commands,
            Ks::ByApp => &ks.by_app,
            Ks::ByDevice => &ks.by_device,
            Ks::Tasks => &ks.tasks,
            Ks::Outbox => &ks.outbox,
            Ks::History => &ks.history,
            Ks::Ended => &ks.ended,
        };
        match e.value {
            Some(v) => batch.insert(keyspace, e.key, v),
            None => batch.remove(keyspace, e.key),
        }
    }
    batch.commit()?;
    counts.set(touched);
    Ok(())
}
