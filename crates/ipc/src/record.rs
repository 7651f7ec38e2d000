//! Fixed-size records of atomic words for shared memory, and padding that keeps lines written
//! by different processes apart.

use crate::sync::{AtomicU64, Ordering};

/// Pads its contents to one 64-byte cache line.
#[repr(C, align(64))]
pub struct CacheLine<T>(pub T);

/// Pads its contents to 128 bytes: two cache lines, the unit the spatial prefetcher of x86-64
/// parts moves together (crossbeam's `CachePadded` uses 128 there for the same reason). Words
/// written by different processes are kept at least this far apart, so one side's stores never
/// drag the other's line along.
#[repr(C, align(128))]
pub struct LinePair<T>(pub T);

/// Words in one [`Record`]: 128 bytes.
pub const RECORD_WORDS: usize = 16;
/// A record's words as plain values, copied out of (or into) a [`Record`].
pub type RecordWords = [u64; RECORD_WORDS];

/// A 128-byte record of atomic words, cache-line aligned: the store's view rows (shelf rows,
/// recent trades). Its loads and stores are relaxed: whoever uses a record orders them (the
/// view's sequence lock).
#[repr(C, align(64))]
pub struct Record([AtomicU64; RECORD_WORDS]);

impl Record {
    /// A zeroed record, for models and tests. In shared memory a record is zeroed bytes.
    pub fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Copies the words in. Relaxed: the caller's release store (or fence) publishes them.
    pub fn store(&self, words: &RecordWords) {
        for (slot, word) in self.0.iter().zip(words) {
            slot.store(*word, Ordering::Relaxed);
        }
    }

    /// Copies the words out. Relaxed: the caller's acquire load (or fence) orders them.
    pub fn load(&self) -> RecordWords {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}
