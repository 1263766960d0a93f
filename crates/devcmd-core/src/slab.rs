//! `Chunks<T>`: a growable array in fixed-size chunks. Growing never moves
//! what is stored (no reallocation copies of millions of entries, no
//! doubling spikes of memory), and indexing is two shifts and a load.

/// Entries per chunk (a power of two).
const CHUNK: usize = 4096;

/// A growable array stored in chunks of [`CHUNK`] entries.
#[derive(Debug)]
pub(crate) struct Chunks<T> {
    chunks: Vec<Box<[Option<T>]>>,
    len: usize,
}

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunks<T> {
    /// Number of slots (filled or not).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends an empty slot and returns its index.
    pub(crate) fn push_empty(&mut self) -> usize {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        self.len += 1;
        self.len - 1
    }

    /// The slot at `i`, if it exists and is filled.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        self.chunks[i / CHUNK][i % CHUNK].as_ref()
    }

    /// The slot at `i` mutably, if it exists and is filled.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        self.chunks[i / CHUNK][i % CHUNK].as_mut()
    }

    /// Fills (or empties) slot `i`, which must exist; returns what was there.
    pub(crate) fn set(&mut self, i: usize, value: Option<T>) -> Option<T> {
        if i >= self.len {
            return None;
        }
        std::mem::replace(&mut self.chunks[i / CHUNK][i % CHUNK], value)
    }

    /// Every filled slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_across_chunks_without_moving() {
        let mut c: Chunks<u64> = Chunks::default();
        for i in 0..(CHUNK * 2 + 5) {
            let slot = c.push_empty();
            assert_eq!(slot, i);
            c.set(slot, Some(i as u64));
        }
        let first = c.get(0).map(|v| v as *const u64);
        for _ in 0..CHUNK {
            c.push_empty();
        }
        assert_eq!(c.get(0).map(|v| v as *const u64), first, "entries never move");
        assert_eq!(c.get(CHUNK + 1), Some(&(CHUNK as u64 + 1)));
        assert_eq!(c.get(c.len() - 1), None, "pushed empty");
        assert_eq!(c.get(usize::MAX), None);
        assert_eq!(c.set(3, None), Some(3));
        assert_eq!(c.iter().count(), CHUNK * 2 + 4);
    }
}
