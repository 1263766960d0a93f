//! The simulator's event queue: events by (time, sequence), earliest first.
//!
//! A calendar of one-second buckets over a window (about 2.3 h) with a
//! binary heap for events beyond it. Most events fall within the window, so
//! a push is an append and a pop is a pop from a bucket sorted once when it
//! becomes the earliest. The order is exactly that of a binary heap on
//! (time, sequence): determinism does not depend on the structure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

const WIDTH_MS: u64 = 1_000;
const SLOTS: u64 = 8_192;

/// An entry: time in ms, sequence number (unique), payload.
pub(crate) type Entry<E> = (u64, u64, E);

pub(crate) struct Agenda<E: Ord> {
    /// Slot `b % SLOTS` holds the entries of bucket `b` (one bucket per slot at a time).
    slots: Vec<Vec<Entry<E>>>,
    /// The bucket of the last popped entry: nothing earlier remains.
    cur: u64,
    /// The bucket whose slot is sorted (descending, so the earliest is last).
    sorted: Option<u64>,
    in_slots: usize,
    far: BinaryHeap<Reverse<Entry<E>>>,
}

impl<E: Ord + Copy> Agenda<E> {
    pub(crate) fn new(start_ms: u64) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cur: start_ms / WIDTH_MS,
            sorted: None,
            in_slots: 0,
            far: BinaryHeap::new(),
        }
    }

    pub(crate) fn push(&mut self, e: Entry<E>) {
        let b = (e.0 / WIDTH_MS).max(self.cur);
        if b >= self.cur + SLOTS {
            self.far.push(Reverse(e));
            return;
        }
        let slot = &mut self.slots[(b % SLOTS) as usize];
        if self.sorted == Some(b) {
            // Keep it sorted descending: insert after every larger entry.
            let at = slot.partition_point(|x| (x.0, x.1) > (e.0, e.1));
            slot.insert(at, e);
        } else {
            slot.push(e);
        }
        self.in_slots += 1;
    }

    /// The earliest bucket with entries, its slot sorted.
    fn first_bucket(&mut self) -> Option<u64> {
        if self.in_slots == 0 {
            return None;
        }
        let mut b = self.cur;
        while self.slots[(b % SLOTS) as usize].is_empty() {
            b += 1;
        }
        if self.sorted != Some(b) {
            self.slots[(b % SLOTS) as usize].sort_unstable_by_key(|x| Reverse((x.0, x.1)));
            self.sorted = Some(b);
        }
        Some(b)
    }

    pub(crate) fn peek_time(&mut self) -> Option<u64> {
        let near = self
            .first_bucket()
            .and_then(|b| self.slots[(b % SLOTS) as usize].last().map(|e| (e.0, e.1)));
        let far = self.far.peek().map(|Reverse(e)| (e.0, e.1));
        match (near, far) {
            (Some(n), Some(f)) => Some(n.min(f).0),
            (n, f) => n.or(f).map(|x| x.0),
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Entry<E>> {
        let near_bucket = self.first_bucket();
        let near = near_bucket.and_then(|b| self.slots[(b % SLOTS) as usize].last().map(|e| (e.0, e.1)));
        let far = self.far.peek().map(|Reverse(e)| (e.0, e.1));
        let take_far = match (near, far) {
            (Some(n), Some(f)) => f < n,
            (None, Some(_)) => true,
            _ => false,
        };
        let e = if take_far {
            self.far.pop().map(|Reverse(e)| e)?
        } else {
            let b = near_bucket?;
            let e = self.slots[(b % SLOTS) as usize].pop()?;
            self.in_slots -= 1;
            e
        };
        self.cur = self.cur.max(e.0 / WIDTH_MS);
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    #[test]
    fn pops_in_the_order_of_a_binary_heap() {
        let mut rng = Rng::new(3);
        let mut agenda = Agenda::new(1_000_000);
        let mut heap = BinaryHeap::new();
        let mut now = 1_000_000u64;
        let mut seq = 0;
        for round in 0..20_000u64 {
            // Mostly near, sometimes far (beyond the window), sometimes now.
            for _ in 0..rng.between(0, 3) {
                seq += 1;
                let dt = match rng.below(10) {
                    0 => rng.below(20_000_000),
                    1 => 0,
                    _ => rng.below(5_000),
                };
                let e = (now + dt, seq, round);
                agenda.push(e);
                heap.push(Reverse(e));
            }
            if rng.chance(0.6) {
                assert_eq!(agenda.peek_time(), heap.peek().map(|Reverse(e)| e.0));
                let got = agenda.pop();
                assert_eq!(got, heap.pop().map(|Reverse(e)| e));
                if let Some(e) = got {
                    now = e.0;
                }
            }
        }
        while let Some(Reverse(e)) = heap.pop() {
            assert_eq!(agenda.pop(), Some(e));
        }
        assert_eq!(agenda.pop(), None);
        assert_eq!(agenda.peek_time(), None);
    }
}
