//! The floors: two processes bouncing one word on one cache line. Spinning ([`Pinger`],
//! [`respond`]), nothing moves faster between two cores, so the bench measures every round trip
//! against it. Sleeping in the kernel between turns ([`FutexPinger`], [`respond_futex`]), it is
//! the least a round trip can cost when neither side spins: the baseline of the market's park
//! mode.
//!
//! The word counts up: the initiator stores an odd value (ping), the responder answers with the
//! next even one (pong). Each store is a release and each wait an acquire load, the same
//! orderings a real message needs, so the floor costs what a minimal message would.

use crate::sync::{futex, AtomicU32, AtomicU64, Ordering::*};

/// The initiating side.
pub struct Pinger<'a> {
    word: &'a AtomicU64,
    value: u64,
}

impl<'a> Pinger<'a> {
    /// Takes a word that reads 0 and that the responder watches.
    pub fn new(word: &'a AtomicU64) -> Self {
        Self { word, value: 0 }
    }

    /// One round trip: ping, then spin until the pong.
    pub fn round_trip(&mut self) {
        // Release: the ping publishes nothing but itself; the pair keeps the measurement
        // honest (the orderings a real message would need).
        self.word.store(self.value + 1, Release);
        // Acquire: pairs with the responder's release store of the pong.
        while self.word.load(Acquire) != self.value + 2 {
            crate::sync::spin();
        }
        self.value += 2;
    }
}

/// The responding side: answers `count` pings, then returns.
pub fn respond(word: &AtomicU64, count: u64) {
    let mut expected = 1u64;
    for _ in 0..count {
        // Acquire: pairs with the pinger's release store of the ping.
        while word.load(Acquire) != expected {
            crate::sync::spin();
        }
        // Release: pairs with the pinger's acquire load of the pong.
        word.store(expected + 1, Release);
        expected += 2;
    }
}

/// The initiating side of the futex floor: each turn stores the word, wakes the peer with
/// `futex_wake` and sleeps with `futex_wait` until the answer: two system calls per side per
/// round trip and a sleep, nothing spins. The word is 32 bits (a futex word) and counts up as
/// in [`Pinger`], wrapping.
pub struct FutexPinger<'a> {
    word: &'a AtomicU32,
    value: u32,
}

impl<'a> FutexPinger<'a> {
    /// Takes a word that reads 0 and that [`respond_futex`] watches.
    pub fn new(word: &'a AtomicU32) -> Self {
        Self { word, value: 0 }
    }

    /// One round trip: ping and wake, then sleep until the pong.
    pub fn round_trip(&mut self) {
        let ping = self.value.wrapping_add(1);
        let pong = self.value.wrapping_add(2);
        // Release, as in `Pinger`. The store comes before the wake, so the responder's
        // `futex_wait(word, old)` either sees the new value (and returns at once) or is asleep
        // and gets the wake-up: the kernel compares and sleeps atomically.
        self.word.store(ping, Release);
        futex::wake(self.word);
        // Acquire: pairs with the responder's release store of the pong. Sleeps only while the
        // word still holds our ping.
        while self.word.load(Acquire) != pong {
            futex::wait(self.word, ping, None);
        }
        self.value = pong;
    }
}

/// The responding side of the futex floor: answers `count` pings, then returns.
pub fn respond_futex(word: &AtomicU32, count: u64) {
    let mut last = 0u32;
    for _ in 0..count {
        let ping = last.wrapping_add(1);
        // Acquire: pairs with the pinger's release store of the ping. Sleeps only while the
        // word still holds the last pong.
        while word.load(Acquire) != ping {
            futex::wait(word, last, None);
        }
        last = ping.wrapping_add(1);
        // Release: pairs with the pinger's acquire load of the pong; then wake it (it may be
        // asleep, or about to find the pong without sleeping).
        word.store(last, Release);
        futex::wake(word);
    }
}
