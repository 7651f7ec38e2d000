//! Park and wake across processes without losing a wake-up, and without a system call when
//! the sleeper is awake.
//!
//! One side (the *sleeper*: the market for its requests, a client for its events) waits for
//! work; any number of *ringers* publish work and then call [`Doorbell::notify`]. The word is
//! `AWAKE` or `PARKED`. The handshake is a Dekker-style pair of SeqCst fences:
//!
//! ```text
//! sleeper                              ringer
//! swap(word, PARKED)                   publish work (ring tail, release)
//! fence(SeqCst)                        fence(SeqCst)
//! if work visible: swap(word, AWAKE)   if word == PARKED and swap(AWAKE) == PARKED:
//! else futex_wait(word, PARKED)            futex_wake(word)
//! ```
//!
//! The fences are totally ordered, so either the ringer sees `PARKED` (and wakes, or leaves
//! `AWAKE` behind so that `futex_wait` returns at once), or the sleeper's re-check sees the
//! work. A ringer that sees `AWAKE` pays one fence and one load: no system call.
//!
//! The sleeper writes the word with read-modify-writes, not plain stores. An RMW always reads
//! the latest value in the word's modification order, so the sleeper's `PARKED` cannot end up
//! ordered before a ringer's earlier `swap(AWAKE)`. The loom model with plain stores found a
//! lost wake-up across two rounds (ringer swaps late, sleeper re-parks, ringer's next load
//! reads the swapped value); with RMWs it finds none. They cost a locked instruction on the
//! park path only, which is about to make a system call anyway.

use std::time::Duration;

use crate::sync::{fence, futex, AtomicU32, Ordering};

pub const AWAKE: u32 = 0;
pub const PARKED: u32 = 1;

/// A futex word on its own 128 bytes (a pair of cache lines: see [`crate::record::LinePair`]),
/// since the sleeper and the ringers are different processes.
#[repr(C, align(128))]
pub struct Doorbell {
    word: AtomicU32,
    #[cfg(loom)]
    emulation: futex::Emulation,
}

impl Default for Doorbell {
    fn default() -> Self {
        Self {
            word: AtomicU32::new(AWAKE),
            #[cfg(loom)]
            emulation: Default::default(),
        }
    }
}

impl Doorbell {
    /// After publishing work: wakes the sleeper if (and only if) it is parked.
    /// Returns whether a wake-up (a system call) was sent.
    pub fn notify(&self) -> bool {
        // SeqCst fence: orders our publication of the work before the load of the word,
        // against the sleeper's store of PARKED before its re-check (see the module docs).
        fence(Ordering::SeqCst);
        if self.word.load(Ordering::Relaxed) != PARKED {
            return false;
        }
        // Only one ringer wins the swap and pays for the system call.
        if self.word.swap(AWAKE, Ordering::Relaxed) == PARKED {
            self.wake();
            return true;
        }
        false
    }

    /// Wakes the sleeper whatever the word reads: sets it `AWAKE` and makes the system call
    /// even if it did not read `PARKED`. For a ringer with nothing to publish but the time (the
    /// market's alarm), whose ring must also wake a sleeper whose word another process
    /// scribbled on after it went to sleep: the kernel then sleeps on, since no one wakes it,
    /// and [`notify`](Self::notify), which reads the word first, would not. A system call
    /// every time, so not for the hot path.
    pub fn wake_regardless(&self) {
        // SeqCst fence, as in `notify`: orders what the caller published (the alarm's flag)
        // before the swap, against the sleeper's fence after announcing its park. Either the
        // sleeper's re-check sees the publication, or its `PARKED` comes first in the word's
        // order and this swap replaces it, so its `futex_wait(PARKED)` returns at once or is
        // woken by the call below.
        fence(Ordering::SeqCst);
        self.word.swap(AWAKE, Ordering::Relaxed);
        self.wake();
    }

    /// Sleeps until rung or `timeout` passes, unless `has_work` (checked after announcing the
    /// park) already sees work. The caller re-checks for work either way.
    pub fn park(&self, has_work: impl FnOnce() -> bool, timeout: Option<Duration>) {
        // Announce the park. The SeqCst fence orders this write before the re-check's loads,
        // against the ringer's fence (see the module docs); Relaxed suffices for the swap itself.
        self.word.swap(PARKED, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            // Returns at once if a ringer already swapped the word back to AWAKE.
            self.wait(PARKED, timeout);
        }
        // Woken, timed out or found work: either way we are awake now. Relaxed: the word
        // carries no data; work is read through its own acquire loads.
        self.word.swap(AWAKE, Ordering::Relaxed);
    }

    /// Whether the sleeper has announced it is parked (for `inspect`).
    pub fn is_parked(&self) -> bool {
        self.word.load(Ordering::Relaxed) == PARKED
    }

    #[cfg(not(loom))]
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        futex::wait(&self.word, expected, timeout);
    }

    #[cfg(not(loom))]
    fn wake(&self) {
        futex::wake(&self.word);
    }

    #[cfg(loom)]
    fn wait(&self, expected: u32, timeout: Option<Duration>) {
        self.emulation.wait(&self.word, expected, timeout);
    }

    #[cfg(loom)]
    fn wake(&self) {
        self.emulation.wake();
    }
}
