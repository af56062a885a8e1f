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

#[cfg(test)]
mod tests {
    use super::room;

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
