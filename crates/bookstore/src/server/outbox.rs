//! One client's replies on their way out: written into its reply ring, or queued behind it when
//! the ring is full, and shown only once the journal is durable past the command each answers.
//!
//! Every reply carries the journal offset it waits for ("durable at"): the end of everything
//! staged when it was made, so a reply is never shown before the records that decided it (its
//! own command's, and every earlier one: a refusal for a full store depends on the listings
//! before it) are on disk. Offsets only grow, so the replies of one outbox wait for offsets in
//! the order they are queued, and showing every reply up to the newest durable one is a
//! prefix of the ring: one `publish_up_to`.
//!
//! A reply that did not fit in the ring keeps its offset in the backlog. When the client makes
//! room, it is moved into the ring and, if its offset is already durable, shown in the same
//! step: a client with many orders in flight is answered as fast as the disk syncs, not one
//! ring's worth per sync (which would let the ring's size, not the disk, bound the durable
//! throughput).

use std::collections::VecDeque;

use bookstore_ipc::ring::{Message, Producer, RingError};

use crate::layout::REPLY_RING_CAPACITY;

/// Where a reply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// Into the reply ring (not shown yet).
    Ring,
    /// Behind the ring, which is full; the backlog now has this many replies.
    Backlog(usize),
}

/// What [`Outbox::show_durable`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Shown {
    /// Replies moved from the backlog into the ring.
    pub(super) moved: usize,
    /// Whether replies became visible: the client's doorbell should ring.
    pub(super) published: bool,
}

pub(super) struct Outbox<'s> {
    ring: Producer<'s, REPLY_RING_CAPACITY>,
    /// Replies that did not fit in the ring yet, oldest first, each with its durable-at offset.
    backlog: VecDeque<(Message, u64)>,
    /// Replies written into the ring and not shown: (durable-at offset, the ring's written mark
    /// just after the last reply waiting for that offset), both increasing from front to back.
    held: VecDeque<(u64, u64)>,
}

impl<'s> Outbox<'s> {
    pub(super) fn new(ring: Producer<'s, REPLY_RING_CAPACITY>) -> Self {
        Self {
            ring,
            backlog: VecDeque::new(),
            held: VecDeque::new(),
        }
    }

    /// Queues a reply that may be shown once the journal is durable up to `durable_at`.
    /// `durable_at` is never less than the previous reply's.
    pub(super) fn send(&mut self, message: Message, durable_at: u64) -> Result<Queued, RingError> {
        if self.backlog.is_empty() {
            match self.ring.try_write(&message) {
                Ok(()) => {
                    self.hold(durable_at);
                    return Ok(Queued::Ring);
                }
                Err(RingError::Full) => {}
                Err(e) => return Err(e),
            }
        }
        self.backlog.push_back((message, durable_at));
        Ok(Queued::Backlog(self.backlog.len()))
    }

    /// Moves what fits from the backlog into the ring, then shows every reply in the ring whose
    /// offset is at most `durable` (the journal is on disk up to there).
    pub(super) fn show_durable(&mut self, durable: u64) -> Result<Shown, RingError> {
        let mut shown = Shown::default();
        while let Some((message, durable_at)) = self.backlog.front() {
            match self.ring.try_write(message) {
                Ok(()) => {
                    let durable_at = *durable_at;
                    self.backlog.pop_front();
                    self.hold(durable_at);
                    shown.moved += 1;
                }
                Err(RingError::Full) => break,
                Err(e) => return Err(e),
            }
        }
        let mut mark = None;
        while let Some(&(durable_at, end)) = self.held.front() {
            if durable_at > durable {
                break;
            }
            mark = Some(end);
            self.held.pop_front();
        }
        if let Some(mark) = mark {
            shown.published = self.ring.publish_up_to(mark);
        }
        Ok(shown)
    }

    /// Notes that the reply just written waits for `durable_at`: it extends the newest held
    /// entry when that waits for the same offset (the replies of one batch: one entry).
    fn hold(&mut self, durable_at: u64) {
        let mark = self.ring.written_mark();
        match self.held.back_mut() {
            Some((at, end)) if *at == durable_at => *end = mark,
            _ => self.held.push_back((durable_at, mark)),
        }
    }

    /// Replies queued behind the ring.
    pub(super) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Drops the backlog (a client no longer served); returns how many replies it held.
    pub(super) fn clear_backlog(&mut self) -> usize {
        let n = self.backlog.len();
        self.backlog.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bookstore_ipc::ring::{Consumer, Ring};

    fn message(n: u64) -> Message {
        let mut m = [0; bookstore_ipc::ring::MESSAGE_WORDS];
        m[0] = n;
        m
    }

    fn drain(consumer: &mut Consumer<'_, REPLY_RING_CAPACITY>) -> Vec<u64> {
        let mut seen = Vec::new();
        while let Some(m) = consumer.try_pop().unwrap() {
            seen.push(m[0]);
        }
        seen
    }

    #[test]
    fn a_reply_is_shown_only_once_its_offset_is_durable() {
        let ring = Ring::<REPLY_RING_CAPACITY>::new_boxed();
        let (mut outbox, mut consumer) = (Outbox::new(Producer::new(&ring)), Consumer::new(&ring));
        assert_eq!(outbox.send(message(1), 10).unwrap(), Queued::Ring);
        assert_eq!(outbox.send(message(2), 20).unwrap(), Queued::Ring);
        assert!(!outbox.show_durable(9).unwrap().published);
        assert!(
            drain(&mut consumer).is_empty(),
            "nothing before offset 10 is durable"
        );
        assert!(outbox.show_durable(15).unwrap().published);
        assert_eq!(drain(&mut consumer), [1], "the second waits for 20");
        assert!(outbox.show_durable(20).unwrap().published);
        assert_eq!(drain(&mut consumer), [2]);
    }

    #[test]
    fn a_backlogged_reply_whose_offset_is_durable_is_shown_as_soon_as_it_fits() {
        let ring = Ring::<REPLY_RING_CAPACITY>::new_boxed();
        let (mut outbox, mut consumer) = (Outbox::new(Producer::new(&ring)), Consumer::new(&ring));
        let total = REPLY_RING_CAPACITY as u64 + 3;
        for n in 0..total {
            outbox.send(message(n), 100).unwrap();
        }
        assert_eq!(outbox.backlog_len(), 3);
        assert_eq!(
            outbox.send(message(total), 200).unwrap(),
            Queued::Backlog(4)
        );
        let shown = outbox.show_durable(100).unwrap();
        assert_eq!(
            (shown.moved, shown.published),
            (0, true),
            "the ring is full"
        );
        assert_eq!(drain(&mut consumer).len(), REPLY_RING_CAPACITY);
        // The client made room: the three replies that wait for 100 are shown in the same step
        // that moves them; the one waiting for 200 is moved but held.
        let shown = outbox.show_durable(100).unwrap();
        assert_eq!((shown.moved, shown.published), (4, true));
        let tail: Vec<u64> = (REPLY_RING_CAPACITY as u64..total).collect();
        assert_eq!(drain(&mut consumer), tail);
        assert!(outbox.show_durable(200).unwrap().published);
        assert_eq!(drain(&mut consumer), [total]);
        assert_eq!(outbox.backlog_len(), 0);
    }
}
