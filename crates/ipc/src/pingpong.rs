//! The floor: two processes bouncing one word on one cache line, each spinning. Nothing moves
//! faster between two cores, so the bench measures every other round trip against it.
//!
//! The word counts up: the initiator stores an odd value (ping), the responder answers with the
//! next even one (pong). Each store is a release and each wait an acquire load, the same
//! orderings a real message needs, so the floor costs what a minimal message would.

use crate::sync::{AtomicU64, Ordering::*};

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
