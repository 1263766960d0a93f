//! The history: commands that left memory ([`Mutation::ArchiveCommand`]),
//! kept until their retention ends, read back through the core's
//! [`History`] trait.
//!
//! Keyspaces: `history` (id → command record, the codec of `commands`),
//! `commands_by_app` and `commands_by_device` (prefix, creation time, id;
//! written at archive time), `history_by_end` (end instant, id: what the
//! retention sweep reads in order) and `history_counts` (application and
//! second of creation → number of archived commands), so that `totalSize`
//! of a long window adds counters instead of scanning the index: a count
//! adds per-minute sums (kept in memory), the seconds of the partial
//! minutes at its ends, and scans at most the two partial seconds.
//!
//! [`Mutation::ArchiveCommand`]: devcmd_core::Mutation::ArchiveCommand

use std::collections::{BTreeMap, HashMap};

use devcmd_core::{AppId, Command, CommandId, History, HistoryScope, StoreError, Timestamp};
use fjall::Keyspace;
use parking_lot::Mutex;

use crate::codec;
use crate::keys::{self, COUNT_BUCKET_MS};
use crate::writer::{CountDelta, HistoryKs, removal};
use crate::{CorruptRecord, FjallStore, Keyspaces, hex};

/// The history counters in memory (the writer thread changes them after
/// each commit; readers add them up).
#[derive(Debug, Default)]
pub(crate) struct HistoryCounts {
    by_app: Mutex<HashMap<AppId, AppCounts>>,
}

/// One application's counters: per second (stored) and per minute (their sums).
#[derive(Debug, Default)]
struct AppCounts {
    secs: BTreeMap<u64, u64>,
    mins: BTreeMap<u64, u64>,
}

impl AppCounts {
    fn set(&mut self, sec: u64, n: u64) {
        let old = if n == 0 {
            self.secs.remove(&sec).unwrap_or(0)
        } else {
            self.secs.insert(sec, n).unwrap_or(0)
        };
        let m = self.mins.entry(sec / 60).or_insert(0);
        *m = (*m + n).saturating_sub(old);
        if *m == 0 {
            self.mins.remove(&(sec / 60));
        }
    }

    /// Sum of the seconds `[first, end)`.
    fn sum(&self, first: u64, end: u64) -> u64 {
        let secs = |a: u64, b: u64| -> u64 {
            if a >= b {
                0
            } else {
                self.secs.range(a..b).map(|(_, n)| n).sum()
            }
        };
        let (first_min, end_min) = (first.div_ceil(60), end / 60);
        if first_min >= end_min {
            return secs(first, end);
        }
        secs(first, first_min * 60)
            + self.mins.range(first_min..end_min).map(|(_, n)| n).sum::<u64>()
            + secs(end_min * 60, end)
    }
}

impl HistoryCounts {
    /// Loads the counters stored in `ks`; undecodable entries are reported.
    pub(crate) fn load(ks: &Keyspace, corrupt: &mut Vec<CorruptRecord>) -> Self {
        let mut by_app: HashMap<AppId, AppCounts> = HashMap::new();
        for guard in ks.iter() {
            let decoded = guard
                .into_inner()
                .map_err(|e| (Vec::new(), e.to_string()))
                .and_then(|(k, v)| {
                    let (app, bucket) = keys::decode_count_key(&k).map_err(|e| (k.to_vec(), e.to_string()))?;
                    let n: [u8; 8] = v[..]
                        .try_into()
                        .map_err(|_| (k.to_vec(), "counter is not 8 bytes".into()))?;
                    Ok((app, bucket, u64::from_be_bytes(n)))
                });
            match decoded {
                Ok((app, bucket, n)) => by_app.entry(app).or_default().set(bucket, n),
                Err((key, error)) => corrupt.push(CorruptRecord {
                    keyspace: "history_counts",
                    key_hex: hex(&key),
                    error,
                }),
            }
        }
        Self {
            by_app: Mutex::new(by_app),
        }
    }

    pub(crate) fn get(&self, app: &AppId, bucket: u64) -> u64 {
        self.by_app
            .lock()
            .get(app)
            .and_then(|m| m.secs.get(&bucket).copied())
            .unwrap_or(0)
    }

    /// Sets counters after their batch committed.
    pub(crate) fn set(&self, values: HashMap<(AppId, u64), u64>) {
        if values.is_empty() {
            return;
        }
        let mut by_app = self.by_app.lock();
        for ((app, bucket), n) in values {
            by_app.entry(app).or_default().set(bucket, n);
        }
    }

    /// Sum of the buckets `[first, end)` of `app`.
    fn sum(&self, app: &AppId, first: u64, end: u64) -> u64 {
        if first >= end {
            return 0;
        }
        self.by_app.lock().get(app).map_or(0, |m| m.sum(first, end))
    }
}

fn io(e: fjall::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn corrupt(e: codec::DecodeError) -> StoreError {
    StoreError::Io(format!("corrupt history entry: {e}"))
}

/// The index keyspace of a scope, and the scope's key prefix.
fn scope_index<'k>(ks: &'k Keyspaces, scope: HistoryScope<'_>) -> (&'k Keyspace, Vec<u8>) {
    match scope {
        HistoryScope::App(a) => (&ks.by_app, keys::app_prefix(a)),
        HistoryScope::Device(d) => (&ks.by_device, keys::device_prefix(d)),
    }
}

impl FjallStore {
    /// Index entries of `scope` created in `[from, to)`, counted one by one.
    fn scan_count(&self, ks: &Keyspaces, scope: HistoryScope<'_>, from: u64, to: u64) -> Result<u64, StoreError> {
        if from >= to {
            return Ok(0);
        }
        let (ks, prefix) = scope_index(ks, scope);
        let bound = |t: u64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&t.to_be_bytes());
            k
        };
        let mut n = 0u64;
        for guard in ks.range(bound(from)..bound(to)) {
            guard.key().map_err(io)?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes up to `max` history entries of commands that ended before
    /// `ended_before` (oldest first) in one batch, and waits for it; returns
    /// how many went. The server calls it every few seconds with `now -
    /// retention`; an embedder that attaches the store as its history must
    /// call it too, or the history grows without bound.
    pub fn sweep_history(&self, ended_before: Timestamp, max: usize) -> Result<usize, StoreError> {
        // One sweep at a time: a second would read the same entries and count them twice.
        let _one = self.sweeping.lock();
        let ks = self.keyspaces()?;
        let end = keys::ended_key(ended_before, CommandId::from_u128(0));
        let mut entries = Vec::new();
        let mut counts = Vec::new();
        let mut n = 0;
        for guard in ks.ended.range(&[keys::KEY_VERSION][..]..&end[..]).take(max) {
            let (key, value) = guard.into_inner().map_err(io)?;
            n += 1;
            entries.push(removal(HistoryKs::Ended, key.to_vec()));
            let Ok((_, id)) = keys::decode_ended_key(&key) else {
                continue;
            };
            let record_key = keys::command_key(id).to_vec();
            // The entry names the index keys; an entry that cannot (damaged)
            // falls back to the record.
            let named = match keys::decode_ended_value(&value) {
                Ok(v) => Some(v),
                Err(_) => ks
                    .history
                    .get(&record_key)
                    .map_err(io)?
                    .and_then(|v| codec::decode_command(&v).ok())
                    .map(|c| (c.app_id, c.device_id, c.creation_time)),
            };
            if let Some((app, device, created)) = named {
                entries.push(removal(HistoryKs::ByApp, keys::by_app_key(&app, created, id)));
                entries.push(removal(HistoryKs::ByDevice, keys::by_device_key(&device, created, id)));
                counts.push(CountDelta {
                    app,
                    bucket: created.as_millis() / COUNT_BUCKET_MS,
                    add: false,
                });
            }
            entries.push(removal(HistoryKs::Record, record_key));
        }
        if n == 0 {
            return Ok(0);
        }
        self.writer.submit_entries(entries, counts, n).wait()?;
        Ok(n)
    }
}

impl History for FjallStore {
    fn count(&self, scope: HistoryScope<'_>, from: Timestamp, to: Timestamp) -> Result<u64, StoreError> {
        let (f, t) = (from.as_millis(), to.as_millis());
        if f >= t {
            return Ok(0);
        }
        let ks = self.keyspaces()?;
        let HistoryScope::App(app) = scope else {
            // A device's commands are few: scanned.
            return self.scan_count(&ks, scope, f, t);
        };
        // Whole buckets inside the window come from the counters.
        let first = f.div_ceil(COUNT_BUCKET_MS);
        let end = t / COUNT_BUCKET_MS;
        if first >= end {
            return self.scan_count(&ks, scope, f, t);
        }
        Ok(self.scan_count(&ks, scope, f, first * COUNT_BUCKET_MS)?
            + self.counts.sum(app, first, end)
            + self.scan_count(&ks, scope, end * COUNT_BUCKET_MS, t)?)
    }

    fn bounds(
        &self,
        scope: HistoryScope<'_>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StoreError> {
        if from >= to {
            return Ok(None);
        }
        let keyspaces = self.keyspaces()?;
        let (ks, prefix) = scope_index(&keyspaces, scope);
        let bound = |t: Timestamp| {
            let mut k = prefix.clone();
            k.extend_from_slice(&t.as_millis().to_be_bytes());
            k
        };
        let mut range = ks.range(bound(from)..bound(to));
        let created = |g: Option<fjall::Guard>| -> Result<Option<Timestamp>, StoreError> {
            match g {
                None => Ok(None),
                Some(g) => Ok(Some(keys::decode_index_tail(&g.key().map_err(io)?).map_err(corrupt)?.0)),
            }
        };
        let first = created(range.next())?;
        let last = created(range.next_back())?.or(first);
        Ok(first.zip(last))
    }

    fn tie(&self, scope: HistoryScope<'_>, t: Timestamp, skip: u64) -> Result<Option<CommandId>, StoreError> {
        let ks = self.keyspaces()?;
        let (ks, mut prefix) = scope_index(&ks, scope);
        prefix.extend_from_slice(&t.as_millis().to_be_bytes());
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        match ks.prefix(&prefix).nth(skip) {
            None => Ok(None),
            Some(guard) => {
                let key = guard.key().map_err(io)?;
                Ok(Some(keys::decode_index_tail(&key).map_err(corrupt)?.1))
            }
        }
    }

    fn fetch(
        &self,
        scope: HistoryScope<'_>,
        from: (Timestamp, CommandId),
        to: Timestamp,
        n: usize,
    ) -> Result<Vec<Command>, StoreError> {
        if from.0 >= to || n == 0 {
            return Ok(Vec::new());
        }
        let keyspaces = self.keyspaces()?;
        let (ks, prefix) = scope_index(&keyspaces, scope);
        let mut start = prefix.clone();
        start.extend_from_slice(&from.0.as_millis().to_be_bytes());
        start.extend_from_slice(&from.1.to_u128().to_be_bytes());
        let mut end = prefix;
        end.extend_from_slice(&to.as_millis().to_be_bytes());
        let mut out = Vec::with_capacity(n.min(1024));
        for guard in ks.range(start..end).take(n) {
            let key = guard.key().map_err(io)?;
            let (_, id) = keys::decode_index_tail(&key).map_err(corrupt)?;
            // An index entry whose record is gone (a sweep between the two
            // reads) is skipped; the record decides.
            if let Some(c) = self.command(id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        match self.keyspaces()?.history.get(keys::command_key(id)).map_err(io)? {
            None => Ok(None),
            Some(v) => codec::decode_command(&v).map(Some).map_err(corrupt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_seconds_and_minutes_match_adding_every_second() {
        let mut c = AppCounts::default();
        let mut plain = BTreeMap::new();
        // A deterministic scatter over ~3 hours, with overwrites and zeroes.
        let mut x = 7u64;
        for _ in 0..5_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let sec = (x >> 20) % 10_800;
            let n = (x >> 50) % 4;
            c.set(sec, n);
            plain.insert(sec, n);
        }
        for (a, b) in [
            (0, 10_800),
            (59, 61),
            (60, 120),
            (61, 7_261),
            (3_599, 3_600),
            (5, 5),
            (100, 50),
        ] {
            let want: u64 = plain.range(a..b.max(a)).map(|(_, n)| n).sum();
            assert_eq!(c.sum(a, b), want, "[{a}, {b})");
        }
        assert!(c.mins.values().all(|&n| n > 0), "empty minutes are dropped");
    }
}
