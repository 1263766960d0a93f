//! Per-shard deadlines: a binary heap with lazy cancellation.
//!
//! Each timed object (command, cancel task, the shard's sweep) holds a
//! generation number; arming pushes `(deadline, target, generation)` and
//! bumps the object's generation, so an earlier entry becomes stale and is
//! skipped when it surfaces. Arm and cancel are O(log n) and O(1). Stale
//! entries are bounded: when they outnumber live ones the heap is rebuilt
//! from the live ones (amortised O(1) per cancel). Entries with the same
//! deadline fire in the order they were armed, so runs are reproducible.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::clock::Timestamp;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerTarget {
    /// A command slot.
    Command(u32),
    /// A cancel task slot.
    Task(u32),
    /// The shard's retention sweep.
    Sweep,
}

/// Largest slot a timer can name: the top two bits of an entry's target say its kind.
pub(crate) const TIMER_SLOT_MAX: u32 = (1 << 30) - 1;

impl TimerTarget {
    fn encode(self) -> u32 {
        match self {
            Self::Command(s) => s & TIMER_SLOT_MAX,
            Self::Task(s) => (1 << 30) | (s & TIMER_SLOT_MAX),
            Self::Sweep => 2 << 30,
        }
    }

    fn decode(bits: u32) -> Self {
        match bits >> 30 {
            0 => Self::Command(bits & TIMER_SLOT_MAX),
            1 => Self::Task(bits & TIMER_SLOT_MAX),
            _ => Self::Sweep,
        }
    }
}

/// 24 bytes: ten million armed deadlines take 240 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Timestamp,
    seq: u64,
    target: u32,
    generation: u32,
}

/// A due entry: the target and the generation it was armed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) target: TimerTarget,
    pub(crate) generation: u32,
    pub(crate) at: Timestamp,
}

/// The deadlines of one shard.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// Below this many entries the heap is never compacted.
const COMPACT_FLOOR: usize = 4096;

impl TimerHeap {
    /// Arms `target` at `at` with `generation` (the caller has already bumped it).
    pub(crate) fn arm(&mut self, at: Timestamp, target: TimerTarget, generation: u32) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            target: target.encode(),
            generation,
        }));
    }

    /// Removes and returns the earliest entry due at `now`, stale or not.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<Due> {
        let Reverse(top) = self.heap.peek()?;
        if top.at > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        Some(Due {
            target: TimerTarget::decode(e.target),
            generation: e.generation,
            at: e.at,
        })
    }

    /// The earliest deadline, possibly of a stale entry (a lower bound).
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops stale entries when they outnumber the `live` ones; `is_live`
    /// tells whether an entry's generation is still its target's.
    pub(crate) fn compact_if_needed(&mut self, live: usize, is_live: impl Fn(TimerTarget, u32) -> bool) {
        if self.heap.len() <= COMPACT_FLOOR || self.heap.len() <= live.saturating_mul(2) {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse(e)| is_live(TimerTarget::decode(e.target), e.generation))
            .collect::<Vec<_>>()
            .into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn pops_in_deadline_then_arming_order() {
        let mut h = TimerHeap::default();
        h.arm(t(20), TimerTarget::Command(1), 1);
        h.arm(t(10), TimerTarget::Command(2), 1);
        h.arm(t(10), TimerTarget::Task(3), 1);
        assert_eq!(h.next_deadline(), Some(t(10)));
        assert_eq!(h.pop_due(t(5)), None);
        assert_eq!(h.pop_due(t(10)).map(|d| d.target), Some(TimerTarget::Command(2)));
        assert_eq!(h.pop_due(t(10)).map(|d| d.target), Some(TimerTarget::Task(3)));
        assert_eq!(h.pop_due(t(10)), None);
        assert_eq!(h.pop_due(t(30)).map(|d| d.target), Some(TimerTarget::Command(1)));
    }

    #[test]
    fn targets_round_trip_through_their_encoding() {
        for t in [
            TimerTarget::Command(0),
            TimerTarget::Command(TIMER_SLOT_MAX),
            TimerTarget::Task(7),
            TimerTarget::Sweep,
        ] {
            assert_eq!(TimerTarget::decode(t.encode()), t);
        }
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn compaction_keeps_only_live_entries() {
        let mut h = TimerHeap::default();
        for i in 0..10_000u32 {
            h.arm(t(u64::from(i)), TimerTarget::Command(i), 1);
        }
        // Only even slots still hold generation 1.
        h.compact_if_needed(
            5_000,
            |target, g| matches!(target, TimerTarget::Command(s) if s % 2 == 0 && g == 1),
        );
        assert_eq!(
            h.len(),
            10_000,
            "not compacted while stale entries do not outnumber live ones"
        );
        h.compact_if_needed(
            100,
            |target, g| matches!(target, TimerTarget::Command(s) if s % 2 == 0 && g == 1),
        );
        assert_eq!(h.len(), 5_000);
        let first = h.pop_due(t(u64::MAX)).unwrap();
        assert_eq!(first.target, TimerTarget::Command(0));
    }
}
