//! Query parameters and pages, and the merge of per-shard indexes into one
//! page in O(page + log n).
//!
//! An application's commands are indexed per shard in creation order. The
//! global order is `(creationTime, shard, sequence)`. To find page `p`, the
//! dispatcher binary-searches the creation time `t` at which the running
//! count over all shards passes the page's offset (each probe is a binary
//! search per shard), skips the remaining ties at `t` shard by shard, then
//! merges the shards from there, fetching a few entries at a time. Pages are
//! oldest first, so new commands never shift earlier pages.
//!
//! With a [`crate::History`] attached, the stored history is one more
//! participant after the shards: its commands are ordered by
//! `(creationTime, id)`, and within one millisecond after every shard's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::cancel_task::CancelTaskStatus;
use crate::clock::Timestamp;
use crate::command::Command;
use crate::error::InvalidInput;
use crate::id::{DeviceId, TaskId};

/// Largest page.
pub const PAGE_SIZE_MAX: u32 = 1000;

/// Which commands of an application to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandQuery {
    /// Only this device's commands.
    pub device_id: Option<DeviceId>,
    /// Created at or after this instant.
    pub from: Option<Timestamp>,
    /// Created before this instant (exclusive). The HTTP layer maps the API's
    /// second-resolution `endTime` to the end of that second.
    pub to: Option<Timestamp>,
    /// 0-based page number.
    pub page_no: u32,
    /// Page size, 1..=1000.
    pub page_size: u32,
}

impl Default for CommandQuery {
    fn default() -> Self {
        Self {
            device_id: None,
            from: None,
            to: None,
            page_no: 0,
            page_size: PAGE_SIZE_MAX,
        }
    }
}

/// Which cancel tasks of an application to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only this task.
    pub task_id: Option<TaskId>,
    /// Only this device's tasks.
    pub device_id: Option<DeviceId>,
    /// Only tasks in this status.
    pub status: Option<CancelTaskStatus>,
    /// Created at or after this instant.
    pub from: Option<Timestamp>,
    /// Created before this instant (exclusive).
    pub to: Option<Timestamp>,
    /// 0-based page number.
    pub page_no: u32,
    /// Page size, 1..=1000.
    pub page_size: u32,
}

impl Default for TaskQuery {
    fn default() -> Self {
        Self {
            task_id: None,
            device_id: None,
            status: None,
            from: None,
            to: None,
            page_no: 0,
            page_size: PAGE_SIZE_MAX,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// The page number asked for.
    pub page_no: u32,
    /// The page size asked for.
    pub page_size: u32,
    /// The number of matching items over all pages.
    pub total_size: u64,
}

/// Checks page parameters and returns `(from, to, offset)`.
pub(crate) fn window(
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    page_no: u32,
    page_size: u32,
) -> Result<(Timestamp, Timestamp, u64), InvalidInput> {
    if page_size == 0 || page_size > PAGE_SIZE_MAX {
        return Err(InvalidInput::new("pageSize", "must be 1..=1000"));
    }
    let from = from.unwrap_or(Timestamp::from_millis(0));
    let to = to.unwrap_or(Timestamp::NEVER);
    Ok((from, to, u64::from(page_no) * u64::from(page_size)))
}

/// A position in one participant's order: creation time, then a tie
/// breaker unique within the participant (a shard's sequence, a stored
/// command's id).
pub(crate) type Cursor = (Timestamp, u128);

/// The per-participant view the merge needs (the shards, then the history).
pub(crate) trait ShardIndex {
    /// Number of participants.
    fn shards(&self) -> usize;
    /// Commands of shard `s` created in `[from, to)`.
    fn count(&self, s: usize, from: Timestamp, to: Timestamp) -> u64;
    /// Creation times of the first and last commands of shard `s` created in `[from, to)`.
    fn bounds(&self, s: usize, from: Timestamp, to: Timestamp) -> Option<(Timestamp, Timestamp)>;
    /// Cursor of the `skip`-th command of shard `s` created exactly at `t`.
    fn tie_cursor(&self, s: usize, t: Timestamp, skip: u64) -> Option<Cursor>;
    /// Up to `n` commands of shard `s` from `cursor` (inclusive), created before `to`.
    fn fetch(&self, s: usize, cursor: Cursor, to: Timestamp, n: usize) -> Vec<(Cursor, Command)>;
}

/// Selects the commands ranked `offset .. offset + n` in `[from, to)` over all shards.
pub(crate) fn merge_page(
    ix: &dyn ShardIndex,
    from: Timestamp,
    to: Timestamp,
    offset: u64,
    n: usize,
) -> (u64, Vec<Command>) {
    let shards = ix.shards();
    let total: u64 = (0..shards).map(|s| ix.count(s, from, to)).sum();
    if offset >= total || n == 0 || from >= to {
        return (total, Vec::new());
    }
    let count_until = |t: Timestamp| -> u64 { (0..shards).map(|s| ix.count(s, from, t)).sum() };
    // Smallest t in [from, to) with count of [from, t] > offset; it lies
    // between the oldest and the newest command of the window, which keeps
    // the search (each probe counts every participant) short.
    let (mut lo, mut hi) = (0..shards)
        .filter_map(|s| ix.bounds(s, from, to))
        .fold((to.as_millis() - 1, from.as_millis()), |(lo, hi), (first, last)| {
            (lo.min(first.as_millis()), hi.max(last.as_millis()))
        });
    if lo > hi {
        // Counted, yet gone by now (a concurrent sweep): an empty page.
        return (total, Vec::new());
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_until(Timestamp::from_millis(mid + 1)) > offset {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let t = Timestamp::from_millis(lo);
    // Counts read at different moments may disagree when commands move
    // between participants meanwhile (the caller then runs the query again):
    // never below zero.
    let mut skip = offset.saturating_sub(count_until(t));
    let after_t = Timestamp::from_millis(lo.saturating_add(1));
    let mut cursors: Vec<Cursor> = Vec::with_capacity(shards);
    for s in 0..shards {
        let ties = ix.count(s, t, after_t);
        if skip >= ties {
            skip -= ties;
            cursors.push((after_t, 0));
        } else {
            cursors.push(ix.tie_cursor(s, t, skip).unwrap_or((after_t, 0)));
            skip = 0;
        }
    }
    // K-way merge, fetching a few at a time per shard.
    let chunk = n.clamp(1, 64);
    let mut buffers: Vec<std::collections::VecDeque<(Cursor, Command)>> =
        (0..shards).map(|s| ix.fetch(s, cursors[s], to, chunk).into()).collect();
    let mut heap = BinaryHeap::new();
    for (s, b) in buffers.iter().enumerate() {
        if let Some(((c, q), _)) = b.front() {
            heap.push(Reverse((*c, s, *q)));
        }
    }
    let mut page = Vec::with_capacity(n);
    while page.len() < n {
        let Some(Reverse((_, s, _))) = heap.pop() else { break };
        let Some((key, cmd)) = buffers[s].pop_front() else {
            continue;
        };
        page.push(cmd);
        if buffers[s].is_empty() {
            let next = (key.0, key.1.saturating_add(1));
            buffers[s] = ix.fetch(s, next, to, chunk).into();
        }
        if let Some(((c, q), _)) = buffers[s].front() {
            heap.push(Reverse((*c, s, *q)));
        }
    }
    (total, page)
}
