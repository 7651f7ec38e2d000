//! A single-producer single-consumer ring of messages in shared memory between two processes
//! that do not trust each other, where a message costs one cache line when it fits in one.
//!
//! The ring is a run of 64-byte cells, each a *stamp* word and seven payload words. A message
//! is one cell, or two when its words do not fit in seven (its last seven words are not all
//! zero). Cells are numbered by a running 64-bit position; the cell at position `p` lives in
//! slot `p % N`. The commit marker is in the cell itself, as in the Disruptor's per-slot
//! sequence or Aeron's frame length: the producer writes a cell's payload, then its stamp
//! `(p + 1) << 1 | more`, where `more` says that the message goes on in the next cell. The
//! consumer polls the stamp of the cell at its `head`: `p + 1` means the message is there, so
//! a message moves from producer to consumer in the one line that holds it; there is no
//! separate tail index to publish and fetch.
//!
//! ```text
//! producer                                      consumer
//! payload words of each cell      relaxed       s = stamp of cell[head]          acquire
//! stamps, last cell first         release       if s >> 1 == head + 1: the message is there
//!                                               payload words (and the second cell's) relaxed
//!                                               head += cells                    release
//! (when the ring looks full) head  acquire
//! ```
//! A batch of messages is stamped from its last cell to its first, so the consumer, which
//! looks at the first cell of the batch before any other, sees either nothing of it or all of
//! it; in particular a two-cell message's second stamp is always there when its first is.
//!
//! The only index is `head`, written by the consumer (on its own 128-byte pair of lines, apart
//! from the cells the producer writes) and read by the producer only when the ring looks full.
//!
//! Because the other side may be buggy or hostile, everything read from the shared memory is
//! checked: a stamp that is neither this lap's nor the previous lap's (zero on the first lap),
//! a second cell without its stamp, or a `head` outside the producer's window is
//! [`RingError::Corrupt`], never trusted. Payload words are atomics, so a scribbling peer
//! makes garbage values, which the decoder rejects, never a data race.

use crate::record::LinePair;
use crate::sync::{AtomicU64, Ordering};

/// Payload words in one cell.
pub const CELL_WORDS: usize = 7;
/// Cells one message may span.
pub const MAX_CELLS: usize = 2;
/// Words in the largest message: two cells' payload.
pub const MESSAGE_WORDS: usize = CELL_WORDS * MAX_CELLS;
/// A message as plain words. Words past the seventh that are all zero are not sent (the
/// message takes one cell); the consumer gets them back as zeros.
pub type Message = [u64; MESSAGE_WORDS];

/// The stamp bit saying that the message goes on in the next cell.
const MORE: u64 = 1;

/// The stamp of the cell at `position`.
fn stamp(position: u64, more: bool) -> u64 {
    (position.wrapping_add(1) << 1) | u64::from(more)
}

/// How many cells `message` takes.
fn cells_for(message: &Message) -> u64 {
    if message[CELL_WORDS..].iter().all(|&w| w == 0) {
        1
    } else {
        2
    }
}

/// One cell: its stamp, then its payload; one cache line. (Cells of 128 bytes, one per pair
/// of lines, measured no faster: the neighbour a reader's prefetcher pulls in is written by
/// the same producer.)
#[repr(C, align(64))]
struct Cell {
    stamp: AtomicU64,
    words: [AtomicU64; CELL_WORDS],
}

impl Cell {
    fn new() -> Self {
        Self {
            stamp: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Relaxed: the stamp's release store publishes them.
    fn store_words(&self, words: &[u64]) {
        for (slot, word) in self.words.iter().zip(words) {
            slot.store(*word, Ordering::Relaxed);
        }
    }

    /// Relaxed: ordered after the acquire load of the stamp.
    fn load_words(&self, into: &mut [u64]) {
        for (word, slot) in into.iter_mut().zip(&self.words) {
            *word = slot.load(Ordering::Relaxed);
        }
    }
}

/// The ring's shared state. `N` must be a power of two, at least [`MAX_CELLS`].
#[repr(C)]
pub struct Ring<const N: usize> {
    /// Position of the next cell to read. Written only by the consumer (release, after it has
    /// read the cells before it), read by the producer (acquire) when the ring looks full.
    head: LinePair<AtomicU64>,
    cells: [Cell; N],
}

/// What went wrong with a ring operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring is full")]
    Full,
    #[error("ring is corrupt: {what} (position {position}, value {value:#x})")]
    Corrupt {
        what: &'static str,
        position: u64,
        value: u64,
    },
}

impl<const N: usize> Ring<N> {
    const CHECK: () = assert!(N.is_power_of_two() && N >= MAX_CELLS && N <= 1 << 30);

    /// A fresh ring on the heap, for tests and models. In shared memory a ring is zeroed bytes.
    pub fn new_boxed() -> Box<Self> {
        let () = Self::CHECK;
        Box::new(Self {
            head: LinePair(AtomicU64::new(0)),
            cells: std::array::from_fn(|_| Cell::new()),
        })
    }

    fn cell(&self, position: u64) -> &Cell {
        &self.cells[(position % N as u64) as usize]
    }

    /// Empties the ring: `head` and every stamp back to zero. Only while no producer or
    /// consumer is using it (the market calls it on a slot no client holds, before the release
    /// store that frees the slot).
    pub fn reset(&self) {
        self.head.0.store(0, Ordering::Relaxed);
        for cell in &self.cells {
            cell.stamp.store(0, Ordering::Relaxed);
        }
    }

    /// Messages ready to read, as an observer sees them (for `inspect`; may be stale). Relaxed
    /// loads only, so it works on a read-only mapping.
    pub fn len_hint(&self) -> u32 {
        let mut position = self.head.0.load(Ordering::Relaxed);
        let mut messages = 0;
        for _ in 0..N {
            let s = self.cell(position).stamp.load(Ordering::Relaxed);
            if s >> 1 != position.wrapping_add(1) {
                break;
            }
            messages += 1;
            position = position.wrapping_add(1 + (s & MORE));
        }
        messages
    }

    /// Whether the consumer has something to read: for its own "is there work?" check before
    /// it sleeps. Acquire, so that a `true` here makes the message visible to the pop that
    /// follows (which loads the stamp again anyway).
    pub fn has_messages(&self) -> bool {
        // Relaxed: `head` is the caller's own index (the consumer wrote it last).
        let head = self.head.0.load(Ordering::Relaxed);
        self.cell(head).stamp.load(Ordering::Acquire) >> 1 == head.wrapping_add(1)
    }
}

/// The producing end, held by exactly one thread of one process.
///
/// Nothing here stops a second producer: exclusivity comes from whoever hands the ring out.
/// In the store that is the slot protocol ([`crate::slot`]): only the client that won a slot's
/// claim makes its request ring's producer, only the market its consumer, and the reply ring
/// the other way round. A second producer would corrupt only the rings of its own slot, and
/// the consumer's checks report that as `Corrupt`.
///
/// Messages can be pushed one by one ([`try_push`](Self::try_push)) or written in a batch and
/// made visible together by one [`publish`](Self::publish).
pub struct Producer<'a, const N: usize> {
    ring: &'a Ring<N>,
    /// Position of the next cell to write. Nobody else writes cells, so ours is current.
    tail: u64,
    /// Cells before this position are stamped; `published..tail` are written, not visible.
    published: u64,
    /// Stamps of the written, unpublished cells, in order. Grows to the largest batch once.
    pending: Vec<u64>,
    /// The last `head` we read; free space is at least `N - (tail - head_seen)`.
    head_seen: u64,
}

impl<'a, const N: usize> Producer<'a, N> {
    /// Takes the producing end of a ring that is empty (fresh, or reset): it starts where the
    /// consumer is. Relaxed: the handover of the ring itself (the slot claim) already
    /// synchronised with whoever used it before.
    pub fn new(ring: &'a Ring<N>) -> Self {
        let () = Ring::<N>::CHECK;
        let tail = ring.head.0.load(Ordering::Relaxed);
        Self {
            ring,
            tail,
            published: tail,
            pending: Vec::new(),
            // Not our relaxed load of `head`: "full" makes the first write acquire `head`, so
            // the consumer's reads of a cell happen before we overwrite it.
            head_seen: tail.wrapping_sub(N as u64),
        }
    }

    /// Writes and publishes one message.
    pub fn try_push(&mut self, message: &Message) -> Result<(), RingError> {
        self.try_write(message)?;
        self.publish();
        Ok(())
    }

    /// Writes a message into the next free cell(s) without making it visible yet.
    pub fn try_write(&mut self, message: &Message) -> Result<(), RingError> {
        let cells = cells_for(message);
        if self.tail.wrapping_sub(self.head_seen) + cells > N as u64 {
            // Looks full: refresh `head`. Acquire pairs with the consumer's release store of
            // `head`, so its reads of the cells we are about to overwrite are finished.
            self.head_seen = self.ring.head.0.load(Ordering::Acquire);
            let used = self.tail.wrapping_sub(self.head_seen);
            if used > N as u64 {
                return Err(RingError::Corrupt {
                    what: "the consumer's head is outside the producer's window",
                    position: self.tail,
                    value: self.head_seen,
                });
            }
            if used + cells > N as u64 {
                return Err(RingError::Full);
            }
        }
        for (i, words) in message.chunks(CELL_WORDS).take(cells as usize).enumerate() {
            let position = self.tail.wrapping_add(i as u64);
            self.ring.cell(position).store_words(words);
            self.pending.push(stamp(position, i + 1 < cells as usize));
        }
        self.tail = self.tail.wrapping_add(cells);
        Ok(())
    }

    /// Makes every written message visible to the consumer. Returns whether there were any.
    pub fn publish(&mut self) -> bool {
        self.publish_up_to(self.tail)
    }

    /// Whether messages are written and not yet published.
    pub fn has_unpublished(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Where the next message will be written: a mark for [`publish_up_to`](Self::publish_up_to)
    /// that covers every message written so far.
    pub fn written_mark(&self) -> u64 {
        self.tail
    }

    /// Makes the messages written before `mark` (a [`written_mark`](Self::written_mark))
    /// visible, and not the ones after it: for a batch whose messages may be shown only once
    /// something else happened (the journal reached the disk). Returns whether there were any.
    pub fn publish_up_to(&mut self, mark: u64) -> bool {
        let count = mark.wrapping_sub(self.published);
        if count == 0 || count > self.pending.len() as u64 {
            return false;
        }
        // Last cell first: the batch's first stamp is stored last, so the consumer, which
        // polls it first, sees all of the batch or none of it. Release: publishes each cell's
        // payload words (and, for the first, every store of the batch before it) to the
        // consumer's acquire load of the stamp.
        for (i, s) in self.pending[..count as usize].iter().enumerate().rev() {
            let position = self.published.wrapping_add(i as u64);
            self.ring.cell(position).stamp.store(*s, Ordering::Release);
        }
        self.pending.drain(..count as usize);
        self.published = mark;
        true
    }
}

/// The consuming end, held by exactly one thread of one process.
pub struct Consumer<'a, const N: usize> {
    ring: &'a Ring<N>,
    /// Our own `head`.
    head: u64,
}

impl<'a, const N: usize> Consumer<'a, N> {
    /// Takes the consuming end. Relaxed: our own index, handed over with the slot.
    pub fn new(ring: &'a Ring<N>) -> Self {
        let () = Ring::<N>::CHECK;
        let head = ring.head.0.load(Ordering::Relaxed);
        Self { ring, head }
    }

    /// The ring this end reads, for a sleeper's "is there work?" check.
    pub fn shared(&self) -> &'a Ring<N> {
        self.ring
    }

    pub fn try_pop(&mut self) -> Result<Option<Message>, RingError> {
        let first = self.ring.cell(self.head);
        // Acquire: pairs with the producer's release store of this stamp, making the cell's
        // words (and the whole batch's) visible to the loads below.
        let s = first.stamp.load(Ordering::Acquire);
        if s >> 1 != self.head.wrapping_add(1) {
            // Not there yet: the cell still holds the previous lap's stamp (zero on the first
            // lap). Anything else was not written by a producer of this ring.
            let previous = if self.head < N as u64 {
                s == 0
            } else {
                s >> 1 == self.head.wrapping_add(1).wrapping_sub(N as u64)
            };
            if previous {
                return Ok(None);
            }
            return Err(RingError::Corrupt {
                what: "a stamp neither of this lap nor of the last",
                position: self.head,
                value: s,
            });
        }
        let mut message = [0; MESSAGE_WORDS];
        first.load_words(&mut message[..CELL_WORDS]);
        let mut cells = 1;
        if s & MORE != 0 {
            let position = self.head.wrapping_add(1);
            let second = self.ring.cell(position);
            // Acquire, though the first stamp already ordered it: the producer stamps the
            // second cell before the first, so anything but its stamp is corruption.
            let s2 = second.stamp.load(Ordering::Acquire);
            if s2 != stamp(position, false) {
                return Err(RingError::Corrupt {
                    what: "a message's second cell without its stamp",
                    position,
                    value: s2,
                });
            }
            second.load_words(&mut message[CELL_WORDS..]);
            cells = 2;
        }
        self.head = self.head.wrapping_add(cells);
        // Release: our loads of the cells happen before the producer, acquiring `head`,
        // reuses them.
        self.ring.head.0.store(self.head, Ordering::Release);
        Ok(Some(message))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A message of one cell (`long` false) or two.
    fn msg(n: u64, long: bool) -> Message {
        let mut m = [0; MESSAGE_WORDS];
        m[0] = n;
        m[CELL_WORDS - 1] = !n;
        if long {
            m[MESSAGE_WORDS - 1] = n * 3;
        }
        m
    }

    #[test]
    fn messages_come_out_in_order_and_a_full_ring_says_so() {
        let ring = Ring::<4>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        for round in 0..3u64 {
            for i in 0..4 {
                p.try_push(&msg(round * 10 + i, false)).unwrap();
            }
            assert_eq!(p.try_push(&msg(99, false)), Err(RingError::Full));
            for i in 0..4 {
                assert_eq!(c.try_pop().unwrap(), Some(msg(round * 10 + i, false)));
            }
            assert_eq!(c.try_pop().unwrap(), None);
        }
    }

    #[test]
    fn a_short_message_takes_one_cell_and_a_long_one_two() {
        let ring = Ring::<4>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        p.try_push(&msg(1, true)).unwrap();
        p.try_push(&msg(2, false)).unwrap();
        assert_eq!(ring.len_hint(), 2);
        // Three cells used: a long message no longer fits, a short one does.
        assert_eq!(p.try_push(&msg(3, true)), Err(RingError::Full));
        p.try_push(&msg(3, false)).unwrap();
        for (n, long) in [(1, true), (2, false), (3, false)] {
            assert_eq!(c.try_pop().unwrap(), Some(msg(n, long)));
        }
        // Wrapping around with long messages that straddle the end of the cells.
        for n in 10..20 {
            p.try_push(&msg(n, true)).unwrap();
            assert_eq!(c.try_pop().unwrap(), Some(msg(n, true)));
        }
    }

    #[test]
    fn a_written_message_is_invisible_until_published() {
        let ring = Ring::<4>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        p.try_write(&msg(1, false)).unwrap();
        p.try_write(&msg(2, true)).unwrap();
        assert!(!ring.has_messages());
        assert_eq!(c.try_pop().unwrap(), None);
        assert!(p.publish());
        assert!(!p.publish(), "nothing more to publish");
        assert!(ring.has_messages());
        assert_eq!(c.try_pop().unwrap(), Some(msg(1, false)));
        assert_eq!(c.try_pop().unwrap(), Some(msg(2, true)));
    }

    #[test]
    fn publishing_up_to_a_mark_shows_the_messages_before_it_only() {
        let ring = Ring::<8>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        p.try_write(&msg(1, true)).unwrap();
        let mark = p.written_mark();
        p.try_write(&msg(2, false)).unwrap();
        assert!(p.publish_up_to(mark));
        assert_eq!(c.try_pop().unwrap(), Some(msg(1, true)));
        assert_eq!(c.try_pop().unwrap(), None, "the second waits for its mark");
        assert!(!p.publish_up_to(mark), "already shown");
        assert!(p.publish());
        assert_eq!(c.try_pop().unwrap(), Some(msg(2, false)));
    }

    #[test]
    fn a_scribbled_stamp_is_reported_as_corrupt_not_trusted() {
        let ring = Ring::<4>::new_boxed();
        ring.cells[0].stamp.store(1000, Ordering::Relaxed);
        let mut c = Consumer::new(&ring);
        assert!(matches!(
            c.try_pop(),
            Err(RingError::Corrupt {
                position: 0,
                value: 1000,
                ..
            })
        ));
        // A first cell that says "more" over a second cell that was never stamped.
        let ring = Ring::<4>::new_boxed();
        ring.cells[0].stamp.store(stamp(0, true), Ordering::Relaxed);
        assert!(matches!(
            Consumer::new(&ring).try_pop(),
            Err(RingError::Corrupt {
                position: 1,
                value: 0,
                ..
            })
        ));
    }

    #[test]
    fn a_scribbled_head_is_reported_as_corrupt_by_the_producer() {
        let ring = Ring::<4>::new_boxed();
        let mut p = Producer::new(&ring);
        ring.head.0.store(1000, Ordering::Relaxed);
        assert!(matches!(
            p.try_push(&msg(1, false)),
            Err(RingError::Corrupt { value: 1000, .. })
        ));
    }

    #[test]
    fn a_reset_ring_starts_over() {
        let ring = Ring::<4>::new_boxed();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        for n in 0..7 {
            p.try_push(&msg(n, false)).unwrap();
            c.try_pop().unwrap();
        }
        ring.reset();
        let (mut p, mut c) = (Producer::new(&ring), Consumer::new(&ring));
        p.try_push(&msg(42, true)).unwrap();
        assert_eq!(c.try_pop().unwrap(), Some(msg(42, true)));
    }
}
