//! A sequence lock for one writer and any number of readers that must not disturb it (they
//! may not even be able to write: a read-only mapping).
//!
//! ```text
//! writer                                   reader
//! seq = s + 1 (odd)       relaxed          s1 = seq                relaxed
//! fence(Release)                           fence(Acquire)
//! data stores             relaxed          if s1 odd: retry
//! seq = s + 2 (even)      release          data loads              relaxed
//!                                          fence(Acquire)
//!                                          s2 = seq                relaxed; good if s1 == s2
//! ```
//! A reader whose data loads saw any store of a write also sees that write's odd `seq` in its
//! second read (release fence before the data stores, acquire fence after the loads), so it
//! retries; a reader whose first read saw the even `seq` of a write sees all that write's data
//! (release store, acquire fence). The data are atomics read relaxed, so a torn read is a
//! wrong value that the retry throws away, never a data race.
//!
//! Readers use only relaxed loads and fences: sound on a read-only mapping, where Rust allows
//! relaxed atomic loads only.

use crate::sync::{fence, AtomicU64, Ordering::*};

/// The sequence word. Even: the data are whole; odd: the writer is writing.
#[repr(C)]
pub struct SeqLock {
    seq: AtomicU64,
}

/// Why a read gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the data kept changing (or the sequence word is stuck odd at {seq})")]
pub struct Unstable {
    /// The last sequence value seen.
    pub seq: u64,
}

impl SeqLock {
    /// An unlocked word, for models and tests. In shared memory it is zeroed bytes.
    pub fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
        }
    }

    /// Writer (exactly one): runs `write`, whose relaxed stores readers then see whole.
    pub fn write<R>(&self, write: impl FnOnce() -> R) -> R {
        // We are the only writer, so our own last value is current. Relaxed: it publishes
        // nothing by itself; the fence below orders it before the data stores.
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1) | 1, Relaxed);
        // Release fence: a reader that sees any data store below also sees the odd `seq`.
        fence(Release);
        let result = write();
        // Release: the data stores happen before a reader's acquire (fence) of the even `seq`.
        self.seq.store(seq.wrapping_add(2) & !1, Release);
        result
    }

    /// Reader: runs `read` until it ran entirely between two writes, at most `attempts` times.
    pub fn read<R>(&self, attempts: u32, mut read: impl FnMut() -> R) -> Result<R, Unstable> {
        let mut last = 0;
        for attempt in 0..attempts {
            let s1 = self.seq.load(Relaxed);
            // Acquire fence: pairs with the writer's release store of an even `seq`, so the
            // data loads below see at least that write.
            fence(Acquire);
            last = s1;
            if s1 & 1 == 1 {
                crate::sync::back_off(attempt);
                continue;
            }
            let result = read();
            // Acquire fence: the data loads above happen before the re-read of `seq`; with the
            // writer's release fence, a load that saw a later write makes us see its odd `seq`.
            fence(Acquire);
            if self.seq.load(Relaxed) == s1 {
                return Ok(result);
            }
        }
        Err(Unstable { seq: last })
    }
}

impl Default for SeqLock {
    fn default() -> Self {
        Self::new()
    }
}
