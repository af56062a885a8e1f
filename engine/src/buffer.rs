//! Large buffers that are reused from flush to flush.
//!
//! A flush builds lists and records of tens of MB. Grown by doubling, each step copied the
//! whole allocation (the allocator's `realloc` copies its capacity, not the vector's
//! length) into fresh pages the kernel had to zero; on the sparse stream that was a sixth
//! of the node's CPU samples. So these buffers are kept, and grown in one step with some
//! headroom, without copying when they are empty.

/// Makes room for `extra` more elements in `v`: nothing when it has it; a new allocation
/// (nothing to copy) when `v` is empty; else one `reserve` with a quarter more.
pub fn room<T>(v: &mut Vec<T>, extra: usize) {
    if v.capacity() - v.len() >= extra {
        return;
    }
    let want = extra + extra / 4;
    if v.is_empty() {
        *v = Vec::with_capacity(want);
    } else {
        v.reserve(want);
    }
}

/// Emptied buffers of one kind kept for reuse: at most [`Spares::KEEP`], so that what is
/// held beyond the live data stays bounded (a flush needs only a few at once). The caller
/// empties a buffer before it keeps it.
#[derive(Debug)]
pub struct Spares<T> {
    kept: Vec<T>,
}

impl<T> Default for Spares<T> {
    fn default() -> Spares<T> {
        Spares { kept: Vec::new() }
    }
}

impl<T> Spares<T> {
    pub const KEEP: usize = 2;

    /// Keeps `buffer` when fewer than [`Spares::KEEP`] are kept; drops it otherwise.
    pub fn keep(&mut self, buffer: T) {
        if self.kept.len() < Self::KEEP {
            self.kept.push(buffer);
        }
    }

    pub fn take(&mut self) -> Option<T> {
        self.kept.pop()
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.kept.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::{Spares, room};

    #[test]
    fn spares_are_bounded() {
        let mut s: Spares<Vec<u8>> = Spares::default();
        for n in 1..=5 {
            s.keep(Vec::with_capacity(n));
        }
        assert_eq!(s.len(), Spares::<Vec<u8>>::KEEP);
        assert_eq!(s.take().map(|v| v.capacity() >= 2), Some(true));
        assert!(s.take().is_some());
        assert!(s.take().is_none() && s.is_empty());
    }

    #[test]
    fn grows_once_with_headroom_and_keeps_what_it_holds() {
        let mut v: Vec<u64> = Vec::with_capacity(8);
        room(&mut v, 4);
        assert_eq!(v.capacity(), 8, "already room: unchanged");
        room(&mut v, 100);
        assert!(v.capacity() >= 125, "empty: a new allocation with a quarter more");
        v.extend(0..10);
        let cap = v.capacity();
        room(&mut v, cap);
        assert!(v.capacity() >= 10 + cap + cap / 4);
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    }
}
