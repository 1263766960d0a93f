//! # devcmd-store
//!
//! Durable storage for devcmd: the core's [`CommandStore`] on
//! [fjall](https://crates.io/crates/fjall), an embedded log-structured
//! key-value store, and the loading of everything back after a restart.
//!
//! **When is a change durable?** When the [`Commit`] that
//! [`CommandStore::submit`] returned completes with `Ok`: its mutations were
//! written in one fjall batch together with whatever else was queued (group
//! commit) and that batch was synced to disk with `PersistMode::SyncData`
//! (`fdatasync`). "201 means synced." If a write or sync fails, the store is
//! poisoned: that batch and every later one complete with an error, and
//! nothing is reported durable that was not.
//!
//! One process per data directory: fjall locks it, and a second
//! [`FjallStore::open`] of the same directory gets [`OpenError::Open`].
//!
//! **What is where.** `apps`, `devices`, `cancel_tasks` and `commands` (every
//! command still in the dispatcher's memory: live ones and terminal ones in
//! their grace period) are what recovery loads. Terminal commands past their
//! grace move to the history ([`devcmd_core::Mutation::ArchiveCommand`]):
//! `history` (the records), `commands_by_app` and `commands_by_device`
//! (application or device, creation time, id), `history_by_end` (for the
//! retention sweep, [`FjallStore::sweep_history`]) and `history_counts`
//! (per application and second, for `totalSize`); recovery reads none of
//! them. Cancel tasks are few (one per cancel-all call) and stay in memory
//! until their retention, where queries filter them; the store keeps them
//! by id only, since nothing would read an index of them. `callback_outbox`
//! holds the pushes owed (see `devcmd-callback`).
//!
//! ```
//! use devcmd_core::*;
//! use devcmd_store::{FjallStore, StoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let (store, recovered) = FjallStore::open(dir.path(), StoreConfig::default())?;
//! assert!(recovered.state.commands.is_empty());
//! let core = Dispatcher::builder(CoreConfig::default()).store(store.clone()).build()?;
//! let report = core.restore(recovered.state);
//! let app = AppId::new("a")?;
//! core.add_app(App { id: app.clone(), secret_hash: String::new(), quota: None, authorized_apps: vec![] })?
//!     .durable()?; // synced to disk
//! drop(core);
//! store.close();
//!
//! let (_store, again) = FjallStore::open(dir.path(), StoreConfig::default())?;
//! assert_eq!(again.state.apps.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
mod history;
mod keys;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devcmd_core::{CommandStore, Commit, Mutation, RecoveredState};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

pub use codec::{
    DecodeError, RECORD_VERSION, decode_app, decode_command, decode_device, decode_task, encode_app, encode_command,
    encode_device, encode_task,
};
pub use keys::{
    COUNT_BUCKET_MS, KEY_VERSION, app_prefix, by_app_key, by_device_key, command_key, count_key, decode_by_app_key,
    decode_count_key, decode_ended_key, decode_ended_value, decode_index_tail, device_prefix, ended_key, ended_value,
};
pub use writer::{GroupCommit, WriterStats};

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./devcmd-data";

/// Settings of a [`FjallStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Group-commit bounds.
    pub group_commit: GroupCommit,
    /// Memory the write buffer (memtable) of `commands`, which every create
    /// and status change writes, may hold before fjall flushes it to disk
    /// (fjall's default, 64 MiB: at 16 MiB durable creates were 20-25 %
    /// slower and their p99 twice as long, from the extra flushes).
    pub memtable_bytes: u64,
    /// The same for each of the nine other keyspaces (history, indexes,
    /// outbox, registry), which see far fewer or smaller writes: 16 MiB, so
    /// the ten together stay near 200 MiB rather than 640.
    pub other_memtable_bytes: u64,
    /// fjall's block cache for reads (history queries).
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            group_commit: GroupCommit::default(),
            memtable_bytes: 64 * 1024 * 1024,
            other_memtable_bytes: 16 * 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// fjall could not open the directory (in use by another process, not
    /// writable, or its files are damaged).
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// fjall's explanation.
        reason: String,
    },
    /// The writer thread could not be started.
    #[error("cannot start the store writer: {0}")]
    Writer(#[from] std::io::Error),
}

/// A record that could not be decoded during recovery: reported, not dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The keyspace it lives in.
    pub keyspace: &'static str,
    /// Its key, in hex.
    pub key_hex: String,
    /// What is wrong with it.
    pub error: String,
}

/// What [`FjallStore::open`] loaded.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Time fjall took to open the directory (replaying its journal).
    pub opened_in: Duration,
    /// Everything the dispatcher needs back ([`devcmd_core::Dispatcher::restore`]).
    pub state: RecoveredState,
    /// Entries of the callback outbox, in key order, for the callback crate to resume.
    pub outbox: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records that could not be decoded.
    pub corrupt: Vec<CorruptRecord>,
    /// Time taken to load.
    pub took: Duration,
}

pub(crate) struct Keyspaces {
    apps: Keyspace,
    devices: Keyspace,
    commands: Keyspace,
    by_app: Keyspace,
    by_device: Keyspace,
    tasks: Keyspace,
    outbox: Keyspace,
    history: Keyspace,
    ended: Keyspace,
    counts: Keyspace,
}

/// The durable store on fjall.
pub struct FjallStore {
    path: PathBuf,
    /// The keyspaces history reads use; let go at close, so that closing
    /// releases the directory's lock.
    ks: parking_lot::RwLock<Option<Arc<Keyspaces>>>,
    counts: Arc<history::HistoryCounts>,
    sweeping: parking_lot::Mutex<()>,
    writer: writer::Writer,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FjallStore {
    /// Opens (or creates) the store in `dir` and loads everything it holds.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<(Arc<Self>, Recovered), OpenError> {
        let path = dir.as_ref().to_path_buf();
        let open_err = |e: fjall::Error| OpenError::Open {
            path: path.clone(),
            reason: e.to_string(),
        };
        let started = Instant::now();
        let db = Database::builder(&path)
            .cache_size(config.cache_bytes)
            .open()
            .map_err(open_err)?;
        let sized = |name: &str, bytes: u64| {
            let bytes = bytes.max(1024 * 1024);
            db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(bytes))
                .map_err(open_err)
        };
        let ks = |name: &str| sized(name, config.other_memtable_bytes);
        let keyspaces = Keyspaces {
            apps: ks("apps")?,
            devices: ks("devices")?,
            commands: sized("commands", config.memtable_bytes)?,
            by_app: ks("commands_by_app")?,
            by_device: ks("commands_by_device")?,
            tasks: ks("cancel_tasks")?,
            outbox: ks("callback_outbox")?,
            history: ks("history")?,
            ended: ks("history_by_end")?,
            counts: ks("history_counts")?,
        };
        let opened = started.elapsed();
        let mut recovered = Recovered::default();
        load(
            &keyspaces.apps,
            "apps",
            codec::decode_app,
            &mut recovered.state.apps,
            &mut recovered.corrupt,
        );
        load(
            &keyspaces.devices,
            "devices",
            codec::decode_device,
            &mut recovered.state.devices,
            &mut recovered.corrupt,
        );
        load(
            &keyspaces.commands,
            "commands",
            codec::decode_command,
            &mut recovered.state.commands,
            &mut recovered.corrupt,
        );
        load(
            &keyspaces.tasks,
            "cancel_tasks",
            codec::decode_task,
            &mut recovered.state.tasks,
            &mut recovered.corrupt,
        );
        for guard in keyspaces.outbox.iter() {
            match guard.into_inner() {
                Ok((k, v)) => recovered.outbox.push((k.to_vec(), v.to_vec())),
                Err(e) => recovered.corrupt.push(CorruptRecord {
                    keyspace: "callback_outbox",
                    key_hex: String::new(),
                    error: e.to_string(),
                }),
            }
        }
        let counts = Arc::new(history::HistoryCounts::load(&keyspaces.counts, &mut recovered.corrupt));
        recovered.opened_in = opened;
        recovered.took = started.elapsed();
        let live = recovered
            .state
            .commands
            .iter()
            .filter(|c| !c.status.is_terminal())
            .count();
        tracing::info!(
            path = %path.display(),
            apps = recovered.state.apps.len(),
            devices = recovered.state.devices.len(),
            commands = recovered.state.commands.len(),
            live_commands = live,
            cancel_tasks = recovered.state.tasks.len(),
            corrupt = recovered.corrupt.len(),
            took_ms = recovered.took.as_millis() as u64,
            journal_and_open_ms = opened.as_millis() as u64,
            "store loaded"
        );
        for c in &recovered.corrupt {
            tracing::error!(keyspace = c.keyspace, key = %c.key_hex, error = %c.error, "corrupt record in the store");
        }
        let ks = Arc::new(keyspaces);
        let writer = writer::Writer::start(db, Arc::clone(&ks), Arc::clone(&counts), config.group_commit)?;
        let stats = Arc::clone(&writer.stats);
        Ok((
            Arc::new(Self {
                path,
                ks: parking_lot::RwLock::new(Some(ks)),
                counts,
                sweeping: parking_lot::Mutex::new(()),
                writer,
                stats,
            }),
            recovered,
        ))
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an earlier write failed (the store then accepts nothing more).
    pub fn is_poisoned(&self) -> bool {
        self.writer.is_poisoned()
    }

    /// Batches, mutations and time spent committing so far.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Commits what is queued and stops the writer; later submissions and
    /// history reads fail with `Closed`, and the directory is free again.
    pub fn close(&self) {
        self.writer.close();
        self.ks.write().take();
    }

    fn keyspaces(&self) -> Result<Arc<Keyspaces>, devcmd_core::StoreError> {
        self.ks.read().clone().ok_or(devcmd_core::StoreError::Closed)
    }
}

impl CommandStore for FjallStore {
    fn submit(&self, batch: Vec<Mutation>) -> Commit {
        self.writer.submit(batch)
    }

    fn is_backlogged(&self) -> bool {
        self.writer.is_backlogged()
    }
}

/// Loads and decodes a whole keyspace: one thread reads, the others decode
/// chunks of records in parallel.
fn load<T: Send>(
    ks: &Keyspace,
    name: &'static str,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
    out: &mut Vec<T>,
    corrupt: &mut Vec<CorruptRecord>,
) {
    const CHUNK: usize = 4096;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(fjall::UserKey, fjall::UserValue)>>(workers * 2);
    let decoded: Vec<(Vec<T>, Vec<CorruptRecord>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                scope.spawn(move || {
                    let (mut ok, mut bad) = (Vec::new(), Vec::new());
                    for chunk in rx {
                        for (k, v) in chunk {
                            match decode(&v) {
                                Ok(record) => ok.push(record),
                                Err(e) => bad.push(CorruptRecord {
                                    keyspace: name,
                                    key_hex: hex(&k),
                                    error: e.to_string(),
                                }),
                            }
                        }
                    }
                    (ok, bad)
                })
            })
            .collect();
        drop(rx);
        let mut chunk = Vec::with_capacity(CHUNK);
        for guard in ks.iter() {
            match guard.into_inner() {
                Ok(kv) => chunk.push(kv),
                Err(e) => corrupt.push(CorruptRecord {
                    keyspace: name,
                    key_hex: String::new(),
                    error: e.to_string(),
                }),
            }
            if chunk.len() == CHUNK {
                // The decoders only stop when the channel closes, so this send succeeds.
                let _ = tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
            }
        }
        let _ = tx.send(chunk);
        drop(tx);
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    let bad = CorruptRecord {
                        keyspace: name,
                        key_hex: String::new(),
                        error: "a decoder panicked".into(),
                    };
                    (Vec::new(), vec![bad])
                })
            })
            .collect()
    });
    for (ok, bad) in decoded {
        out.extend(ok);
        corrupt.extend(bad);
    }
}
