//! A standby's market: instead of serving clients it follows another market's replicated
//! stream, applying each batch to its store exactly as the writer did. Each batch is
//! journaled (so its snapshots and restarts work as a market's do), and the view is
//! published with the store in state `Standby`: `inspect` shows it, clients wait. Once the
//! standby holds the stream's lease and has applied all of it, it takes over
//! ([`Market::take_over`]) and serves ([`Market::run`]).
//!
//! Every batch is checked before it is applied (it starts where the store ends, the store's
//! capacity, every record whole and valid, as many as its header says), and after: the
//! journal records applying it wrote must be the writer's bytes exactly. The engine is
//! deterministic, so anything else means this store is not the writer's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::Command;

use crate::journal::{format, WriteJournalError};
use crate::layout::StoreState;

use super::{Clock, Market, HOUSEKEEPING_EVERY};

/// A batch of another market's journal records, as its stream carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamBatch {
    /// The command number of its first record.
    pub first_command: u64,
    /// Records in it (0 for a writer's fence).
    pub commands: u64,
    /// The store's capacity, as the writer said.
    pub capacity: u32,
    /// The records, as the writer's journal holds them.
    pub bytes: Vec<u8>,
}

/// What the stream a standby follows brought.
#[derive(Debug)]
pub enum UpstreamEvent {
    Batch(UpstreamBatch),
    /// Nothing new within the wait.
    Quiet,
    /// This standby holds the lease and has applied the whole stream: it takes over.
    TakeOver,
    /// The stream cannot be followed any more, and why.
    Failed(String),
}

/// Where a standby's batches come from (the CLI plugs in the NATS JetStream follower).
pub trait Upstream {
    /// The next event, waiting up to `wait` for one.
    fn next(&mut self, wait: Duration) -> UpstreamEvent;
}

/// How [`Market::follow`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Asked to stop (SIGINT, SIGTERM).
    Stopped,
    /// Its upstream said to take over.
    TakeOver,
}

/// Why a standby stopped following.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the stream's batch at command {first_command}: {problem}")]
    BadBatch { first_command: u64, problem: String },
    #[error("applying the stream's commands {first_command} to {last_command} wrote other journal records than the stream holds: this store and the stream's writer disagree (another capacity or build, or a store that is not the writer's); start the standby with --fresh")]
    Diverged {
        first_command: u64,
        last_command: u64,
    },
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Journal(#[from] WriteJournalError),
}

/// What taking over did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenOver {
    /// Where the stream ends in this store's journal (journal-wide end, records): the
    /// records after it are this market's own, published from there.
    pub handed: (u64, u64),
    /// Resting buys of the previous market's clients, cancelled by the takeover's `Restart`.
    pub cancelled_buys: u64,
}

impl Market<'_> {
    /// Follows `upstream` until it says to take over or `stop` is set: applies, journals and
    /// publishes each batch, snapshots as a market does. Clients see the store in state
    /// `Standby` and wait.
    pub fn follow(
        &mut self,
        stop: &AtomicBool,
        upstream: &mut dyn Upstream,
    ) -> Result<Followed, FollowError> {
        self.store
            .header()
            .identity()
            .set_state(StoreState::Standby);
        self.publish();
        // Relaxed: the flag carries no data; the signal handler only asks us to stop.
        while !stop.load(Ordering::Relaxed) {
            match upstream.next(HOUSEKEEPING_EVERY) {
                UpstreamEvent::Batch(batch) => self.apply_upstream(batch)?,
                UpstreamEvent::Quiet => self.tell(|| super::MarketEvent::Idle),
                UpstreamEvent::TakeOver => {
                    self.publish();
                    return Ok(Followed::TakeOver);
                }
                UpstreamEvent::Failed(why) => return Err(FollowError::Upstream(why)),
            }
            self.clock.tick();
            if self.view.due_while_busy(self.clock.now) || self.view.due_for_healing(self.clock.now)
            {
                self.publish();
            }
            self.ledger.prepare_ahead();
            self.snapshot_if_due();
        }
        self.publish();
        if let Some(records) = self.ledger.snapshot_point() {
            let copy = self.copy_for_snapshot();
            self.snapshots.finish(records, copy);
        }
        Ok(Followed::Stopped)
    }

    /// Where the journal ends (journal-wide end, records): where a standby taking over
    /// stands in the stream.
    pub fn journal_end(&self) -> (u64, u64) {
        (self.ledger.staged_end(), self.ledger.committed_records())
    }

    /// Checks `batch`, applies the records this store lacks, commits them to the journal and
    /// checks they are the writer's bytes.
    fn apply_upstream(&mut self, batch: UpstreamBatch) -> Result<(), FollowError> {
        let bad = |problem: String| FollowError::BadBatch {
            first_command: batch.first_command,
            problem,
        };
        let have = self.ledger.committed_records();
        if batch.first_command > have {
            return Err(bad(format!(
                "this store has commands 0 to {have} only: the commands between are missing"
            )));
        }
        let capacity = self.ledger.stats().capacity;
        if batch.capacity != capacity {
            return Err(bad(format!(
                "it is for a store of {} books, this one holds {capacity}",
                batch.capacity
            )));
        }
        let entries =
            format::batch_records(capacity, batch.first_command, &batch.bytes, batch.commands)
                .map_err(bad)?;
        // Records this store applied already (a batch straddling where it started).
        let skip = (have - batch.first_command) as usize;
        let Some(first_new) = entries.get(skip) else {
            return Ok(());
        };
        let header = format::FILE_HEADER_LEN as u64;
        let expected = &batch.bytes[(first_new.offset - header) as usize..];
        let start = self.ledger.staged_end();
        self.settle();
        let mut events = std::mem::take(&mut self.events);
        for entry in entries.into_iter().skip(skip) {
            self.followed_now = self.followed_now.max(entry.now);
            self.ledger
                .apply(entry.now, entry.command, None, &mut events);
            // No replies to show first: a standby's store has no clients.
            self.ledger.record_receipts(&events);
            for event in &events {
                self.view.record(event);
            }
            events.clear();
        }
        self.events = events;
        if !self.ledger.commit() {
            let error = self
                .ledger
                .take_failure()
                .expect("a failed commit says why");
            return Err(error.into());
        }
        if self.ledger.committed_bytes_since(start) != expected {
            return Err(FollowError::Diverged {
                first_command: have,
                last_command: batch.first_command + batch.commands - 1,
            });
        }
        Ok(())
    }

    /// Ends following: the market's clock continues after the last command applied, and a
    /// `Restart` (journaled, to be published first) cancels the previous market's clients'
    /// resting buys, as a restart of that market would. Then [`replicate_to`] from
    /// [`TakenOver::handed`] and [`run`](Self::run).
    ///
    /// [`replicate_to`]: Self::replicate_to
    pub fn take_over(&mut self) -> TakenOver {
        let handed = self.journal_end();
        self.clock = Clock::after(self.followed_now.max(self.clock.now_ms()));
        let mut events = std::mem::take(&mut self.events);
        self.ledger
            .apply(self.clock.now_ms(), Command::Restart, None, &mut events);
        let cancelled_buys = events.len() as u64;
        self.trades_at_start = self.ledger.stats().trades;
        for event in &events {
            self.view.record(event);
        }
        events.clear();
        self.events = events;
        TakenOver {
            handed,
            cancelled_buys,
        }
    }
}
