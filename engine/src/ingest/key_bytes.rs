//! [`KeyBytes`]: an encoded group key (see `ingest::key`) as the flush path holds it, with
//! its hash computed once.
//!
//! Speed: every flush hashes each (key, second) it took into the node's memory of its open
//! seconds, the second duration's accrual and the pending rows. With a shared `Arc<[u8]>`
//! per key, that was a hash of the bytes per map and a compare through two pointers per
//! hit, plus an allocation per key per flush when the workers handed their groups over and
//! a free when the flush was confirmed: at 100 K keys, hashing and comparing keys was a
//! quarter of the flush thread, and the frees another seventh. Here a key of up to
//! [`INLINE`] bytes (one or two numbers, a short string: most keys) is kept in place,
//! without an allocation, longer ones in an `Arc`, and the hash travels with the key, so a
//! map hashes a `u64` and compares the hash before the bytes.

use foldhash::fast::FixedState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// The longest key kept inline.
pub const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    /// Length, then the bytes, zero-padded: equal keys have equal arrays.
    Inline(u8, [u8; INLINE]),
    Heap(Arc<[u8]>),
}

/// A group key in its encoded form: cheap to clone (a copy, or a reference count), hashed
/// once.
#[derive(Clone)]
pub struct KeyBytes {
    hash: u64,
    repr: Repr,
}

impl KeyBytes {
    pub fn new(bytes: &[u8]) -> KeyBytes {
        let hash = FixedState::default().hash_one(bytes);
        let repr = if bytes.len() <= INLINE {
            let mut a = [0u8; INLINE];
            a[..bytes.len()].copy_from_slice(bytes);
            Repr::Inline(bytes.len() as u8, a)
        } else {
            Repr::Heap(Arc::from(bytes))
        };
        KeyBytes { hash, repr }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline(n, a) => &a[..*n as usize],
            Repr::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for KeyBytes {
    fn from(bytes: &[u8]) -> KeyBytes {
        KeyBytes::new(bytes)
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for KeyBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for KeyBytes {
    #[inline]
    fn eq(&self, other: &KeyBytes) -> bool {
        if self.hash != other.hash {
            return false;
        }
        // A key is inline exactly when it is short enough, so equal keys have the same
        // form; inline ones compare as fixed arrays (no call to memcmp).
        match (&self.repr, &other.repr) {
            (Repr::Inline(n, a), Repr::Inline(m, b)) => n == m && a == b,
            (Repr::Heap(a), Repr::Heap(b)) => Arc::ptr_eq(a, b) || a[..] == b[..],
            _ => false,
        }
    }
}

impl Eq for KeyBytes {}

impl Hash for KeyBytes {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyBytes").field(&self.as_bytes()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn equal_bytes_are_equal_keys_in_either_form() {
        let mut seen = HashSet::new();
        let lens = [1usize, 7, 8, 15, 16, INLINE - 1, INLINE, INLINE + 1, 40, 300];
        for &n in &lens {
            for fill in [0u8, 1, 0xff] {
                let bytes = vec![fill; n];
                let (a, b) = (KeyBytes::new(&bytes), KeyBytes::from(&bytes[..]));
                assert_eq!(a, b);
                assert_eq!(a.as_bytes(), &bytes[..]);
                assert_eq!(&*b.clone(), &bytes[..]);
                assert!(seen.insert(a.clone()), "{n} bytes of {fill} equal to an earlier key");
                assert!(!seen.insert(b));
            }
        }
        assert_eq!(seen.len(), lens.len() * 3);
        assert!(seen.insert(KeyBytes::new(b"")));
        // Zero padding does not make a key equal to a shorter or longer one.
        assert_ne!(KeyBytes::new(b"ab"), KeyBytes::new(b"ab\0"));
        assert_ne!(KeyBytes::new(b""), KeyBytes::new(b"\0"));
        let long = KeyBytes::new(&[7u8; 50]);
        assert_ne!(long, KeyBytes::new(&[7u8; 49]));
        assert_eq!(format!("{:?}", KeyBytes::new(b"\x01a")), "KeyBytes([1, 97])");
    }
}
