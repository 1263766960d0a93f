//! `Chunks<T>`: a growable array in fixed-size chunks. Growing never moves
//! what is stored (no reallocation copies of millions of entries, no
//! doubling spikes of memory), and indexing is two shifts and a load.
//! Chunks are allocated when a slot in them is first filled, so a slot far
//! beyond the others (restored from damaged data) costs a pointer per
//! skipped chunk, not the chunks themselves.

/// Entries per chunk (a power of two).
const CHUNK: usize = 4096;

/// A growable array stored in chunks of [`CHUNK`] entries.
#[derive(Debug)]
pub(crate) struct Chunks<T> {
    chunks: Vec<Option<Box<[Option<T>]>>>,
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
        let i = self.len;
        self.grow_to(i + 1);
        self.chunk_mut(i);
        i
    }

    /// Makes slots up to `len` (exclusive) exist, empty, without allocating
    /// their chunks.
    pub(crate) fn grow_to(&mut self, len: usize) {
        if len > self.len {
            self.len = len;
            self.chunks.resize_with(len.div_ceil(CHUNK), || None);
        }
    }

    /// The chunk of slot `i` (which exists), allocated if it was not.
    fn chunk_mut(&mut self, i: usize) -> &mut [Option<T>] {
        self.chunks[i / CHUNK].get_or_insert_with(|| (0..CHUNK).map(|_| None).collect())
    }

    /// The slot at `i`, if it exists and is filled.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        self.chunks[i / CHUNK].as_ref()?[i % CHUNK].as_ref()
    }

    /// The slot at `i` mutably, if it exists and is filled.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        self.chunks[i / CHUNK].as_mut()?[i % CHUNK].as_mut()
    }

    /// Fills (or empties) slot `i`, which must exist; returns what was there.
    pub(crate) fn set(&mut self, i: usize, value: Option<T>) -> Option<T> {
        if i >= self.len {
            return None;
        }
        if value.is_none() && self.chunks[i / CHUNK].is_none() {
            return None;
        }
        std::mem::replace(&mut self.chunk_mut(i)[i % CHUNK], value)
    }

    /// Every filled slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten().flat_map(|c| c.iter()).flatten()
    }

    /// The empty slots of allocated chunks, in ascending order (slots of
    /// chunks never allocated are left unused).
    pub(crate) fn empty_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .flat_map(move |(c, chunk)| {
                chunk.iter().flat_map(move |slots| {
                    slots
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| v.is_none())
                        .map(move |(i, _)| c * CHUNK + i)
                })
            })
            .filter(move |&i| i < self.len)
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

    #[test]
    fn a_far_slot_allocates_only_its_own_chunk() {
        let mut c: Chunks<u64> = Chunks::default();
        c.push_empty();
        c.set(0, Some(1));
        let far = (1 << 30) - 1;
        c.grow_to(far + 1);
        c.set(far, Some(2));
        assert_eq!(c.chunks.iter().filter(|ch| ch.is_some()).count(), 2);
        assert_eq!((c.get(far), c.get(far - 1), c.get(5000)), (Some(&2), None, None));
        assert_eq!(c.set(5000, None), None, "emptying a slot allocates nothing");
        assert_eq!(c.chunks.iter().filter(|ch| ch.is_some()).count(), 2);
        assert_eq!(c.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
        let empty: Vec<usize> = c.empty_slots().collect();
        assert_eq!(empty.len(), 2 * CHUNK - 2);
        assert_eq!((empty[0], *empty.last().unwrap()), (1, far - 1));
        assert_eq!(c.push_empty(), far + 1, "new slots continue after the far one");
    }
}
