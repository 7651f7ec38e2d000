//! The ledger: the engine (the store's truth), its receipts (what became of each client's
//! recent orders) and the journal that makes both durable, kept in step. Every command that
//! changes either is staged in the journal as it is applied; a batch is committed before
//! anything that depends on it is shown.

use std::time::Instant;

use engine::{
    ClientId, Command, Engine, Event, Intent, Millis, PinnedTitle, Receipt, Receipts, RequestId,
    Stats, Title, Trade,
};

use crate::journal::{
    Durability, FollowError, Follower, FollowerStart, Journal, WriteJournalError,
};
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
    /// The receipts of the last command applied, not recorded yet: see
    /// [`record_receipts`](Self::record_receipts).
    unrecorded: Option<Intent>,
    /// The largest clock value of a journaled command: what a replay of the journal ends
    /// with, and so a snapshot's `last_now`.
    journaled_now: Millis,
}

impl Ledger {
    /// A ledger over the store a journal's replay left: `engine` and `receipts`, and the
    /// largest clock value it applied (`last_now`).
    pub(super) fn new(
        engine: Engine,
        receipts: Receipts,
        last_now: Millis,
        journal: Journal,
    ) -> Self {
        Self {
            engine,
            receipts,
            replication: None,
            journal,
            failed: None,
            last_sync: None,
            syncs_seen: 0,
            unrecorded: None,
            journaled_now: last_now,
        }
    }

    /// Applies a command to the engine and its receipts and stages its journal record, if it
    /// changed anything. The engine reports every change as an event, and a refusal
    /// (`Rejected`) changes nothing, so a command with no other event is left out (an idle
    /// market's `Expire` every 50 ms, a seller retrying on a full store) unless it changed the
    /// receipts alone (a client with receipts left).
    /// `pin` is the pin of the command's title, if the caller holds one (see
    /// [`Engine::apply_pinned`]).
    ///
    /// The receipts of a list, buy, cancel or expiry the engine acted on are not recorded
    /// here: the caller shows the command's replies first and then hands its events (exactly
    /// those, and unchanged) to [`record_receipts`](Self::record_receipts), before the next
    /// command and before reading a receipt. No reply depends on them (receipts answer a
    /// later `Ask`), so in spin mode their hash lookups come after the reply, off the round
    /// trip. A `ClientGone` or `Restart`, or a command the engine refused, is recorded here:
    /// whether it is journaled depends on it.
    pub(super) fn apply(
        &mut self,
        now: Millis,
        command: Command,
        pin: Option<PinnedTitle>,
        events: &mut Vec<Event>,
    ) {
        debug_assert!(
            self.unrecorded.is_none(),
            "the last command's receipts are recorded first"
        );
        let mark = self.journal.stage_mark();
        self.journal.stage(now, &command);
        let first = events.len();
        let intent = Receipts::intent(&command);
        self.engine.apply_pinned(now, &command, pin, events);
        let acted = events[first..]
            .iter()
            .any(|e| !matches!(e, Event::Rejected { .. }));
        let changed = if acted && !intent.may_change_receipts_alone() {
            // Journaled for its events: its receipts may wait (see above).
            self.unrecorded = Some(intent);
            true
        } else {
            self.receipts.record(intent, &events[first..]) || acted
        };
        if !changed {
            self.journal.unstage(mark);
            return;
        }
        self.journaled_now = self.journaled_now.max(now);
        if self.journal.durability() == Durability::Always {
            self.commit();
        }
    }

    /// Records the receipts [`apply`](Self::apply) left to the caller, if it left any:
    /// `events` are exactly the events of the command it applied last.
    pub(super) fn record_receipts(&mut self, events: &[Event]) {
        if let Some(intent) = self.unrecorded.take() {
            self.receipts.record(intent, events);
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

    /// A follower of the journal starting from a copy of this store, as of the committed end
    /// (the store a replay of the journal builds: `recent_trades` are the last trades, as the
    /// view keeps them). `None` while records are staged; an error if the journal's file cannot
    /// be opened again to follow it.
    pub(super) fn follower_from_copy(
        &self,
        recent_trades: Vec<Trade>,
    ) -> Option<Result<Follower, FollowError>> {
        debug_assert!(self.unrecorded.is_none(), "every receipt is recorded first");
        let start = FollowerStart {
            engine: self.engine.clone(),
            receipts: self.receipts.clone(),
            recent_trades,
            last_now: self.journaled_now,
        };
        self.journal.follower(start)
    }

    /// What became of `client`'s order `request`, if the market applied it and remembers.
    pub(super) fn receipt(&self, client: ClientId, request: RequestId) -> Option<Receipt> {
        debug_assert!(self.unrecorded.is_none(), "every receipt is recorded first");
        self.receipts.get(client, request)
    }

    pub(super) fn stats(&self) -> Stats {
        self.engine.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{CapacityChoice, JournalOptions, Start, DEFAULT_SEGMENT_BYTES};
    use engine::{BuyTarget, Price, Qty, Title};
    use proptest::prelude::*;

    /// A command of three clients over two titles in a store of four books: listings, buys
    /// (some fill, some rest, some with deadlines), cancels, expiries, clients leaving,
    /// restarts, and listings refused for a full store.
    fn command() -> impl Strategy<Value = Command> {
        let client = (1u128..=3).prop_map(ClientId);
        let request = (0u64..8).prop_map(RequestId);
        let title = prop_oneof![Just("Dune"), Just("Emma")].prop_map(|t| Title::new(t).unwrap());
        let price = (1u64..=3).prop_map(|p| Price::from_cents(p * 100).unwrap());
        let qty = (1u64..=3).prop_map(|q| Qty::new(q).unwrap());
        prop_oneof![
            4 => (client.clone(), request.clone(), title.clone(), price.clone(), qty.clone())
                .prop_map(|(client, request, title, price, qty)| Command::List { client, request, title, price, qty }),
            4 => (client.clone(), request.clone(), proptest::option::of(title), price, qty, proptest::option::of(0u64..20))
                .prop_map(|(client, request, title, max_price, qty, deadline)| Command::Buy {
                    client,
                    request,
                    target: title.map_or(BuyTarget::Any, BuyTarget::Title),
                    max_price,
                    qty,
                    deadline,
                }),
            1 => (client.clone(), request).prop_map(|(client, request)| Command::Cancel { client, request }),
            1 => Just(Command::Expire),
            1 => client.prop_map(|client| Command::ClientGone { client }),
            1 => Just(Command::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The loop records a command's receipts after showing its replies; what it ends with,
        /// and what it journals, is what recording each at once (before this change) gave.
        #[test]
        fn receipts_recorded_after_the_replies_are_those_recorded_at_once(
            commands in proptest::collection::vec(command(), 1..60),
        ) {
            let (dir, journal, recovery) = fresh_journal();
            let mut ledger = Ledger::new(recovery.engine.clone(), recovery.receipts.clone(), recovery.last_now, journal);
            let before = ledger.committed_records();
            let (mut engine, mut receipts) = (recovery.engine, recovery.receipts);
            let (mut events, mut theirs) = (Vec::new(), Vec::new());
            let mut journaled = 0u64;
            for (now, command) in commands.into_iter().enumerate() {
                let now = now as u64;
                // The loop's order: the last command's receipts, then the next command.
                ledger.record_receipts(&events);
                events.clear();
                ledger.apply(now, command.clone(), None, &mut events);
                // At once, as `apply` did before.
                let intent = Receipts::intent(&command);
                theirs.clear();
                engine.apply(now, &command, &mut theirs);
                let acted = theirs.iter().any(|e| !matches!(e, Event::Rejected { .. }));
                journaled += u64::from(receipts.record(intent, &theirs) || acted);
                prop_assert_eq!(&events, &theirs);
            }
            ledger.record_receipts(&events);
            prop_assert!(ledger.commit());
            prop_assert_eq!(ledger.receipts.state(), receipts.state());
            prop_assert_eq!(ledger.committed_records() - before, journaled);
            drop(ledger);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A snapshot taken from a copy of the ledger's store (what the loop hands the snapshot
        /// thread when the store is small) is the one a follower catching up through the
        /// journal takes at the same command: the same store, clock, recent trades, receipts
        /// and place in the journal.
        #[test]
        fn a_snapshot_from_a_copy_of_the_store_is_the_one_a_replay_of_the_journal_takes(
            commands in proptest::collection::vec(command(), 1..80),
        ) {
            let (dir, journal, recovery) = fresh_journal();
            let mut ledger = Ledger::new(recovery.engine, recovery.receipts, recovery.last_now, journal);
            // Made at the start, so it replays every command below.
            let mut replaying = ledger.follower_from_copy(Vec::new()).unwrap().unwrap();
            let (mut events, mut recent) = (Vec::new(), Vec::new());
            for (now, command) in commands.into_iter().enumerate() {
                ledger.apply(now as u64 * 7, command, None, &mut events);
                ledger.record_receipts(&events);
                // The view's way: every trade, the last RECENT_TRADES kept.
                for event in events.drain(..) {
                    if let Event::Traded(trade) = event {
                        recent.push(trade);
                    }
                }
                let keep = recent.len().saturating_sub(crate::journal::RECENT_TRADES);
                recent.drain(..keep);
            }
            prop_assert!(ledger.commit());
            let at = ledger.snapshot_point().unwrap();
            let copied = ledger.follower_from_copy(recent).unwrap().unwrap();
            replaying.catch_up(at).unwrap();
            prop_assert_eq!(copied.snapshot(), replaying.snapshot());
            drop((ledger, copied, replaying));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// A new journal of a four-book store (unsynced) in a directory of its own, and what its
    /// open recovered (an empty store).
    fn fresh_journal() -> (std::path::PathBuf, Journal, crate::journal::Recovery) {
        let dir = std::env::temp_dir().join(format!(
            "bookstore-ledger-test-{}-{}",
            std::process::id(),
            next_dir_number()
        ));
        let options = JournalOptions {
            durability: Durability::None,
            capacity: CapacityChoice::Exactly(4),
            start: Start::Fresh,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        };
        let (journal, recovery) = Journal::open(&dir.join("journal"), &options).unwrap();
        (dir, journal, recovery)
    }

    fn next_dir_number() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
