//! A single-producer single-consumer ring of fixed-size messages, laid out to live in shared
//! memory between two processes that do not trust each other.
//!
//! Each index is written by one side only: `tail` by the producer, `head` by the consumer.
//! Indices run freely (wrapping `u32`) and are reduced modulo `N` to pick a cell, so
//! `tail - head` is the number of messages in flight. Because the other side may be buggy or
//! hostile, every index read from the shared memory is checked: `tail - head > N` is reported
//! as [`RingError::Corrupt`], never trusted.
//!
//! Messages are 16 words copied in and out with relaxed atomic loads and stores: the index
//! stores (release) and loads (acquire) order them, and using atomics for the words means a
//! scribbling peer causes garbage values, which the decoder rejects, rather than a data race.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Words in one message: 128 bytes, two cache lines.
pub const MESSAGE_WORDS: usize = 16;
/// A message as plain words, copied out of (or into) a ring cell.
pub type Message = [u64; MESSAGE_WORDS];

/// Pads its contents to a cache line so the two indices do not share one.
#[repr(C, align(64))]
pub struct CacheLine<T>(pub T);

/// One message's worth of atomic words, cache-line aligned: a ring cell, and any other
/// 128-byte record in shared memory (the store's view rows). Its loads and stores are relaxed:
/// whoever uses a cell orders them (a ring index, a sequence lock).
#[repr(C, align(64))]
pub struct Cell([AtomicU64; MESSAGE_WORDS]);

impl Cell {
    /// A zeroed cell, for models and tests. In shared memory a cell is zeroed bytes.
    pub fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Copies the words in. Relaxed: the caller's release store publishes them.
    pub fn store(&self, message: &Message) {
        for (slot, word) in self.0.iter().zip(message) {
            slot.store(*word, Ordering::Relaxed);
        }
    }

    /// Copies the words out. Relaxed: the caller's acquire load (or fence) orders them.
    pub fn load(&self) -> Message {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

impl Default for Cell {
    fn default() -> Self {
        Self::new()
    }
}

/// The ring's shared state. `N` must be a power of two.
#[repr(C)]
pub struct Ring<const N: usize> {
    /// Next cell to read. Written only by the consumer, read by the producer.
    head: CacheLine<AtomicU32>,
    /// Next cell to write. Written only by the producer, read by the consumer.
    tail: CacheLine<AtomicU32>,
    cells: [Cell; N],
}

/// What went wrong with a ring operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring is full")]
    Full,
    #[error("ring indices are corrupt (head {head}, tail {tail}, capacity {capacity})")]
    Corrupt { head: u32, tail: u32, capacity: u32 },
}

impl<const N: usize> Ring<N> {
    const CHECK: () = assert!(N.is_power_of_two() && N <= 1 << 30);

    /// A fresh ring on the heap, for tests and models. In shared memory a ring is zeroed bytes.
    pub fn new_boxed() -> Box<Self> {
        let () = Self::CHECK;
        Box::new(Self {
            head: CacheLine(AtomicU32::new(0)),
            tail: CacheLine(AtomicU32::new(0)),
            cells: std::array::from_fn(|_| Cell::new()),
        })
    }

    /// Empties the ring. Only while no producer or consumer is using it (the market calls it
    /// on a slot no client holds).
    pub fn reset(&self) {
        self.head.0.store(0, Ordering::Relaxed);
        self.tail.0.store(0, Ordering::Relaxed);
    }

    /// Messages in flight, as an observer sees them (for `inspect`; may be stale).
    pub fn len_hint(&self) -> u32 {
        let tail = self.tail.0.load(Ordering::Relaxed);
        tail.wrapping_sub(self.head.0.load(Ordering::Relaxed))
    }

    /// Whether the consumer has something to read. Acquire, so that a `true` here makes the
    /// message visible to the pop that follows (the pop re-reads `tail` anyway).
    pub fn has_messages(&self) -> bool {
        self.tail.0.load(Ordering::Acquire) != self.head.0.load(Ordering::Relaxed)
    }

    fn corrupt(head: u32, tail: u32) -> RingError {
        RingError::Corrupt {
            head,
            tail,
            capacity: N as u32,
        }
    }
}

/// The producing end, held by exactly one thread of one process.
///
/// Nothing here stops a second producer: exclusivity comes from whoever hands the ring out.
/// In the store that is the slot protocol ([`crate::slot`]): only the client that won a slot's
/// claim makes its request ring's producer, only the market its consumer, and the reply ring
/// the other way round. A second producer would corrupt only the rings of its own slot, and
/// the consumer's index checks report that as `Corrupt`.
///
/// Messages can be pushed one by one ([`try_push`](Self::try_push)) or written in a batch and
/// made visible together by one [`publish`](Self::publish): one release store of `tail`, so the
/// consumer gets the whole batch with one acquire load.
pub struct Producer<'a, const N: usize> {
    ring: &'a Ring<N>,
    /// Next cell to write. Nobody else writes `tail`, so our copy is always current.
    tail: u32,
    /// The value of `tail` last stored to the ring; `published..tail` are written, not visible.
    published: u32,
    /// The last `head` we read; free space is at least `N - (tail - head_seen)`.
    head_seen: u32,
}

impl<'a, const N: usize> Producer<'a, N> {
    /// Takes the producing end. Our own `tail` is read relaxed: the handover of the ring
    /// itself (slot claim) already synchronised with whoever used it before.
    pub fn new(ring: &'a Ring<N>) -> Self {
        let () = Ring::<N>::CHECK;
        let tail = ring.tail.0.load(Ordering::Relaxed);
        Self {
            ring,
            tail,
            published: tail,
            // Not a relaxed load of `head`: "full" makes the first write acquire `head`, so the
            // consumer's reads of a cell happen before we overwrite it.
            head_seen: tail.wrapping_sub(N as u32),
        }
    }

    /// Writes and publishes one message.
    pub fn try_push(&mut self, message: &Message) -> Result<(), RingError> {
        self.try_write(message)?;
        self.publish();
        Ok(())
    }

    /// Writes a message into the next free cell without making it visible yet.
    pub fn try_write(&mut self, message: &Message) -> Result<(), RingError> {
        if self.tail.wrapping_sub(self.head_seen) as usize >= N {
            // Looks full: refresh `head`. Acquire pairs with the consumer's release store of
            // `head`, so its reads of the cell we are about to overwrite are finished.
            self.head_seen = self.ring.head.0.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(self.head_seen) as usize;
            if used > N {
                return Err(Ring::<N>::corrupt(self.head_seen, self.tail));
            }
            if used == N {
                return Err(RingError::Full);
            }
        }
        // Relaxed word stores: the release store of `tail` in `publish` publishes them.
        self.ring.cells[self.tail as usize % N].store(message);
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Makes every written message visible to the consumer. Returns whether there were any.
    pub fn publish(&mut self) -> bool {
        if self.published == self.tail {
            return false;
        }
        // Release: publishes the written cells' words to the consumer's acquire load of `tail`.
        self.ring.tail.0.store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }
}

/// The consuming end, held by exactly one thread of one process.
pub struct Consumer<'a, const N: usize> {
    ring: &'a Ring<N>,
    /// Our own `head`.
    head: u32,
    /// The last `tail` we read; at least `tail_seen - head` messages are ready.
    tail_seen: u32,
}

impl<'a, const N: usize> Consumer<'a, N> {
    pub fn new(ring: &'a Ring<N>) -> Self {
        let () = Ring::<N>::CHECK;
        let head = ring.head.0.load(Ordering::Relaxed);
        Self {
            ring,
            head,
            // Not a relaxed load of `tail`: a producer may have published already, and a
            // `tail` read without acquire would let us read its cells unsynchronised (loom
            // found this: `a_freed_slot_is_claimed_with_reset_rings_…`). "Empty" makes the
            // first pop acquire `tail`.
            tail_seen: head,
        }
    }

    /// The ring this end reads, for a sleeper's "is there work?" check.
    pub fn shared(&self) -> &'a Ring<N> {
        self.ring
    }

    pub fn try_pop(&mut self) -> Result<Option<Message>, RingError> {
        if self.head == self.tail_seen {
            // Looks empty: refresh `tail`. Acquire pairs with the producer's release store of
            // `tail`, making the cell's words visible to the loads below.
            self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_seen {
                return Ok(None);
            }
        }
        if self.tail_seen.wrapping_sub(self.head) as usize > N {
            return Err(Ring::<N>::corrupt(self.head, self.tail_seen));
        }
        // Relaxed word loads: ordered after the acquire load of `tail` above.
        let message = self.ring.cells[self.head as usize % N].load();
        self.head = self.head.wrapping_add(1);
        // Release: our loads of the cell happen before the producer, acquiring `head`, reuses it.
        self.ring.head.0.store(self.head, Ordering::Release);
        Ok(Some(message))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn msg(n: u64) -> Message {
        let mut m = [0; MESSAGE_WORDS];
        m[0] = n;
        m[15] = !n;
        m
    }

    #[test]
    fn messages_come_out_in_order_and_a_full_ring_says_so() {
        let ring = Ring::<4>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        for round in 0..3u64 {
            for i in 0..4 {
                p.try_push(&msg(round * 10 + i)).unwrap();
            }
            assert_eq!(p.try_push(&msg(99)), Err(RingError::Full));
            for i in 0..4 {
                assert_eq!(c.try_pop().unwrap(), Some(msg(round * 10 + i)));
            }
            assert_eq!(c.try_pop().unwrap(), None);
        }
    }

    #[test]
    fn a_scribbled_tail_is_reported_as_corrupt_not_trusted() {
        let ring = Ring::<4>::new_boxed();
        ring.tail.0.store(1000, Ordering::Relaxed);
        let mut c = Consumer::new(&ring);
        assert!(matches!(
            c.try_pop(),
            Err(RingError::Corrupt { tail: 1000, .. })
        ));
    }

    #[test]
    fn indices_wrap_around_u32() {
        let ring = Ring::<4>::new_boxed();
        ring.head.0.store(u32::MAX - 1, Ordering::Relaxed);
        ring.tail.0.store(u32::MAX - 1, Ordering::Relaxed);
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        for i in 0..8 {
            p.try_push(&msg(i)).unwrap();
            assert_eq!(c.try_pop().unwrap(), Some(msg(i)));
        }
    }
}
