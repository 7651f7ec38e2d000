//! The ledger: the engine (the store's truth), its receipts (what became of each client's
//! recent orders) and the journal that makes both durable, kept in step. Every command that
//! changes either is staged in the journal as it is applied; a batch is committed before
//! anything that depends on it is shown.

use std::time::Instant;

use engine::{
    ClientId, Command, Engine, Event, Millis, PinnedTitle, Receipt, Receipts, RequestId, Stats,
    Title,
};

use crate::journal::{Durability, Journal, WriteJournalError};
use crate::stats::{durability_code, JournalFacts};

use super::replication::{OutgoingBatch, Replication};

pub(super) struct Ledger {
    engine: Engine,
    receipts: Receipts,
    journal: Journal,
    /// With `--durability replicated`: the stream every committed batch is published to, and
    /// how far the journal has been handed to it (offset, and records).
    replication: Option<(Box<dyn Replication>, u64, u64)>,
    /// Set when the journal could not be written: nothing more may be acknowledged.
    failed: Option<WriteJournalError>,
    /// When the journal last reached stable storage (for watchers).
    last_sync: Option<Instant>,
    /// The journal's sync count when last looked at.
    syncs_seen: u64,
}

impl Ledger {
    pub(super) fn new(engine: Engine, receipts: Receipts, journal: Journal) -> Self {
        Self {
            engine,
            receipts,
            replication: None,
            journal,
            failed: None,
            last_sync: None,
            syncs_seen: 0,
        }
    }

    /// Applies a command to the engine and its receipts and stages its journal record, if it
    /// changed anything. The engine reports every change as an event, and a refusal
    /// (`Rejected`) changes nothing, so a command with no other event is left out (an idle
    /// market's `Expire` every 50 ms, a seller retrying on a full store) unless it changed the
    /// receipts alone (a client with receipts left).
    /// `pin` is the pin of the command's title, if the caller holds one (see
    /// [`Engine::apply_pinned`]).
    pub(super) fn apply(
        &mut self,
        now: Millis,
        command: Command,
        pin: Option<PinnedTitle>,
        events: &mut Vec<Event>,
    ) {
        let mark = self.journal.stage_mark();
        self.journal.stage(now, &command);
        let first = events.len();
        let intent = Receipts::intent(&command);
        self.engine.apply_pinned(now, &command, pin, events);
        let receipts_only = self.receipts.record(intent, &events[first..]);
        let changed = receipts_only
            || events[first..]
                .iter()
                .any(|e| !matches!(e, Event::Rejected { .. }));
        if !changed {
            self.journal.unstage(mark);
        } else if self.journal.durability() == Durability::Always {
            self.commit();
        }
    }

    /// Ends the batch without waiting for the disk: returns the batch's end in the journal, to
    /// be compared with [`durable`](Self::durable) before its replies are shown; `None` if the
    /// journal failed (nothing more may be shown).
    pub(super) fn commit_in_background(&mut self) -> Option<u64> {
        if self.failed.is_some() {
            return None;
        }
        match self.journal.commit_in_background() {
            Ok(end) => {
                self.replicate();
                Some(end)
            }
            Err(error) => {
                tracing::error!(%error, "stopping: the journal cannot be written");
                self.failed = Some(error);
                None
            }
        }
    }

    /// The journal's end after everything staged so far: a reply that depends on what was
    /// applied may be shown once [`durable`](Self::durable) reaches it.
    pub(super) fn staged_end(&self) -> u64 {
        self.journal.stage_mark()
    }

    /// Records committed to the journal: the command number of the next one.
    pub(super) fn committed_records(&self) -> u64 {
        self.journal.committed_records()
    }

    /// The committed records from journal-wide offset `from` (a [`staged_end`] of this
    /// ledger's, in the live segment) on, as the journal holds them.
    ///
    /// [`staged_end`]: Self::staged_end
    pub(super) fn committed_bytes_since(&self, from: u64) -> &[u8] {
        self.journal.committed_bytes_since(from)
    }

    /// Has the syncing thread make the ended batches durable while the loop works on the next
    /// (see `Journal::sync_in_background`).
    pub(super) fn sync_in_background(&mut self) {
        if self.failed.is_none() {
            self.journal.sync_in_background();
        }
    }

    /// Whether the syncing thread is at work (see `Journal::is_syncing`), or the stream has
    /// batches to acknowledge.
    pub(super) fn is_syncing(&self) -> bool {
        self.journal.is_syncing() || self.replication.as_ref().is_some_and(|r| r.0.is_behind())
    }

    /// How far the journal is durable (see `Journal::durable`), and with replication, also
    /// acknowledged by the stream.
    pub(super) fn durable(&mut self) -> u64 {
        self.note_syncs();
        let local = self.journal.durable();
        match &mut self.replication {
            None => local,
            Some((replication, ..)) => {
                if let Some(why) = replication.take_failure() {
                    let error = WriteJournalError {
                        path: self.journal.path().to_owned(),
                        action: "replicate",
                        source: std::io::Error::other(why),
                    };
                    tracing::error!(%error, "stopping: the journal cannot be replicated");
                    self.failed = Some(error);
                }
                local.min(replication.acked())
            }
        }
    }

    /// Publishes every batch from now on to `replication`, starting with the records after
    /// `handed` (a journal-wide end and its record count: where the stream ends).
    pub(super) fn replicate_to(&mut self, replication: Box<dyn Replication>, handed: (u64, u64)) {
        self.replication = Some((replication, handed.0, handed.1));
        self.replicate();
    }

    /// Hands the batches committed since the last call to the stream.
    fn replicate(&mut self) {
        let Some((replication, handed_end, handed_records)) = &mut self.replication else {
            return;
        };
        let (end, records) = (self.journal.stage_mark(), self.journal.committed_records());
        if records > *handed_records {
            let bytes = self.journal.committed_bytes_since(*handed_end).to_vec();
            replication.publish(OutgoingBatch {
                first_command: *handed_records,
                commands: records - *handed_records,
                end,
                bytes,
            });
            (*handed_end, *handed_records) = (end, records);
        }
    }

    /// Notes when the journal last reached stable storage, if an fdatasync (the loop's or the
    /// syncing thread's) completed since the last look: a clock read per fdatasync, which
    /// costs far more.
    fn note_syncs(&mut self) {
        let syncs = self.journal.syncs();
        if syncs != self.syncs_seen {
            self.syncs_seen = syncs;
            self.last_sync = Some(Instant::now());
        }
    }

    /// Writes the staged records and waits until they are durable. True if everything
    /// applied so far is in the journal, so replies and the view may show it.
    pub(super) fn commit(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.journal.commit() {
            Ok(()) => {
                self.replicate();
                self.note_syncs();
                self.wait_briefly_for_the_stream();
                true
            }
            Err(error) => {
                tracing::error!(%error, "stopping: the journal cannot be written");
                self.failed = Some(error);
                false
            }
        }
    }

    /// With replication behind, waits up to a millisecond for its acknowledgement: the loop
    /// calls `commit` when it has nothing but replies to show, and would spin on it otherwise.
    fn wait_briefly_for_the_stream(&self) {
        if let Some((replication, ..)) = &self.replication {
            let started = Instant::now();
            while replication.is_behind() && started.elapsed() < std::time::Duration::from_millis(1)
            {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    /// The journal as watchers see it; `wall_ms_at` turns the last sync's instant into Unix
    /// milliseconds.
    pub(super) fn journal_facts(&self, wall_ms_at: impl Fn(Instant) -> u64) -> JournalFacts {
        JournalFacts {
            durability: match self.replication {
                Some(_) => crate::stats::REPLICATED_DURABILITY,
                None => durability_code(self.journal.durability()),
            },
            bytes: self.journal.len_bytes(),
            syncs: self.journal.syncs(),
            last_sync_at_ms: self.last_sync.map_or(0, wall_ms_at),
        }
    }

    /// Makes room in the journal ahead of the next records (see `Journal::prepare_ahead`):
    /// for the loop's quiet moments.
    pub(super) fn prepare_ahead(&mut self) {
        self.journal.prepare_ahead();
        if let Some(error) = self.journal.take_roll_failure() {
            tracing::warn!(%error, path = %self.journal.path().display(), "cannot start a new journal segment; the live one grows on (tried again later)");
        }
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    pub(super) fn take_failure(&mut self) -> Option<WriteJournalError> {
        self.failed.take()
    }

    /// The command number of a snapshot taken now, `None` while records are staged and not
    /// committed (see `Journal::snapshot_point`).
    pub(super) fn snapshot_point(&self) -> Option<u64> {
        self.journal.snapshot_point()
    }

    /// Pins `title` in the engine (see [`Engine::pin_title`]): for the title table's titles.
    pub(super) fn pin_title(&mut self, title: &Title) -> PinnedTitle {
        self.engine.pin_title(title)
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What became of `client`'s order `request`, if the market applied it and remembers.
    pub(super) fn receipt(&self, client: ClientId, request: RequestId) -> Option<Receipt> {
        self.receipts.get(client, request)
    }

    pub(super) fn stats(&self) -> Stats {
        self.engine.stats()
    }
}
