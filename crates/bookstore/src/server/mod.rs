//! The market: the only writer of the store's state. One thread runs one loop: accept clients,
//! drain their request rings, apply each request to the ledger, route the events back, publish
//! the view, and park on the doorbell when there is nothing to do.
//!
//! The parts, each with one job: [`store`] makes and guards the shared object; `sessions` is
//! the slot table and the per-client outboxes; `ledger` keeps the engine and the journal in
//! step; `publish` schedules the view. [`Market`] composes them; the parts never call each
//! other (sessions report what they saw, the loop applies it), so each pass reads top to
//! bottom: drain → apply → route → commit → publish.

mod alarm;
mod clock;
mod ledger;
pub mod name_lock;
mod outbox;
mod publish;
mod replication;
mod route;
mod sessions;
mod snapshots;
mod standby;
pub mod store;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{ClientId, Command, Event, Trade};

use crate::journal::{Recovery, WriteJournalError};
use crate::layout::{StoreState, REQUEST_RING_CAPACITY};
use crate::shared::SharedStore;
use crate::stats::{StatsRecorder, WarningKind};
use crate::titles::MarketTitles;
use crate::wire::{Reply, Request};
use clock::Clock;
use ledger::Ledger;
use publish::ViewSchedule;
use sessions::{Popped, Sessions, SlotChange};

pub use name_lock::{NameLock, NameLockError};
pub use replication::{OutgoingBatch, Replication};
pub use standby::{FollowError, Followed, TakenOver, Upstream, UpstreamBatch, UpstreamEvent};
pub use store::{
    checked_geometry, create_store, live_market, NoLiveMarket, StartError, StoreGuard, StoreSpec,
};

/// How the loop runs (the store's own sizes are in [`StoreSpec`]).
#[derive(Debug, Clone, Copy)]
pub struct LoopConfig {
    /// How long to spin looking for work before parking on the futex.
    pub spin: Duration,
    /// Take a snapshot every this many journal records (0: only on a clean stop).
    pub snapshot_every: u64,
    /// Keep the journal segments snapshots cover, instead of deleting them.
    pub keep_journal: bool,
}

/// What the market did that a user may want to see; the CLI decides whether and how to say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    Traded(Trade),
    /// A listing was refused because the store is full: its seller waits for room.
    StoreFull {
        client: ClientId,
    },
    Attached {
        client: ClientId,
        pid: u32,
        slot: u32,
    },
    Left {
        client: ClientId,
        why: &'static str,
    },
    /// The market is about to park: a good moment to flush buffered output.
    Idle,
}

/// What the market did, for its exit line: this run's work, and the store's totals (which
/// include what the journal replayed).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests this run served.
    pub requests: u64,
    /// Trades this run made.
    pub trades_this_run: u64,
    /// Clients this run served.
    pub clients_served: u64,
    /// Trades in all, since the store's journal began.
    pub trades: u64,
    pub books_on_shelf: u32,
}

/// Requests taken from one client before moving to the next: fairness between clients.
const BATCH_PER_CLIENT: usize = 64;
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(50);
/// While spinning with nothing to do, how many times the loop looks for work (a few loads and
/// a pause each, tens of nanoseconds) between two whole passes. A whole pass reads the clock
/// (for the spin's end, housekeeping, the view's schedule) and shows replies moved out of a
/// backlog when a client made room, so those wait at most this many looks: about a
/// microsecond.
const IDLE_CHECKS_PER_PASS: u32 = 32;

/// The market's state and loop. Borrows the store so that ring handles can borrow it too.
pub struct Market<'s> {
    store: &'s SharedStore,
    config: LoopConfig,
    sessions: Sessions<'s>,
    ledger: Ledger,
    view: ViewSchedule,
    /// What the market measures of itself, published with the view.
    stats: StatsRecorder,
    clock: Clock,
    last_housekeeping: Instant,
    /// Scratch for the engine's events, reused by every command.
    events: Vec<Event>,
    /// Trades the journal replayed, so the summary can tell this run's from the store's.
    trades_at_start: u64,
    snapshots: snapshots::Snapshots,
    observer: Option<Box<dyn FnMut(MarketEvent) + 's>>,
    /// A standby's: the largest clock value of the commands it followed.
    followed_now: engine::Millis,
    /// The title table's writer, and the market's own copy of it.
    titles: MarketTitles,
    /// Wakes the parked market for its housekeeping while [`run`](Self::run) runs.
    alarm: Arc<alarm::Alarm>,
}

impl<'s> Market<'s> {
    /// A market over `store`, carrying on from what the journal held (`recovery`).
    pub fn new(
        store: &'s SharedStore,
        config: LoopConfig,
        journal: crate::journal::Journal,
        recovery: Recovery,
    ) -> Self {
        let clock = Clock::after(recovery.last_now);
        let trades_at_start = recovery.engine.stats().trades;
        let plan = snapshots::SnapshotPlan {
            journal: journal.path().to_owned(),
            every: config.snapshot_every,
            last_at: recovery.from_snapshot.as_ref().map_or(0, |s| s.commands),
            keep_journal: config.keep_journal,
        };
        let ledger = Ledger::new(
            recovery.engine,
            recovery.receipts,
            recovery.last_now,
            journal,
        );
        // The snapshot thread's follower starts from a copy of the recovered store; without
        // one (the journal cannot be opened again) the market goes on, taking no snapshots.
        let follower = match ledger.follower_from_copy(recovery.recent_trades.clone()) {
            Some(Ok(follower)) => Some(follower),
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot follow the journal; no snapshots");
                None
            }
            None => None,
        };
        let snapshots = snapshots::Snapshots::new(plan, follower);
        Self {
            store,
            config,
            sessions: Sessions::new(store),
            ledger,
            view: ViewSchedule::new(clock.now, recovery.recent_trades),
            stats: StatsRecorder::new(clock.wall_base_ms, store.slot_count()),
            last_housekeeping: clock.now,
            followed_now: recovery.last_now,
            clock,
            events: Vec::with_capacity(256),
            trades_at_start,
            snapshots,
            observer: None,
            titles: MarketTitles::new(),
            alarm: Arc::new(alarm::Alarm::new()),
        }
    }

    /// Shows no reply before `replication` acknowledged its batch too (`--durability
    /// replicated`); the stream ends at `handed` (a journal-wide end and its record count, as
    /// the journal gives them: `Journal::opened_at` or its committed end), and the records
    /// after it are published first.
    pub fn replicate_to(mut self, replication: Box<dyn Replication>, handed: (u64, u64)) -> Self {
        self.ledger.replicate_to(replication, handed);
        self
    }

    /// Calls `observer` with each [`MarketEvent`]. Without one, trades are not even copied.
    pub fn observe(mut self, observer: impl FnMut(MarketEvent) + 's) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    fn tell(&mut self, event: impl FnOnce() -> MarketEvent) {
        if let Some(observer) = self.observer.as_mut() {
            observer(event());
        }
    }

    /// Serves until `stop` is set (by SIGINT/SIGTERM), then publishes the final view. Stops
    /// early, acknowledging nothing more, if the journal cannot be written.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Summary, WriteJournalError> {
        let (store, alarm) = (self.store, Arc::clone(&self.alarm));
        let doorbell = &store.header().doorbell;
        let clients = alarm::client_doorbells(store);
        alarm.ringing(doorbell, &clients, HOUSEKEEPING_EVERY, |rings| {
            self.serve(stop, rings)
        })
    }

    /// [`run`](Self::run)'s loop; parks untimed if the alarm `rings` for its housekeeping.
    fn serve(&mut self, stop: &AtomicBool, rings: bool) -> Result<Summary, WriteJournalError> {
        self.open_for_clients();
        let mut idle_since: Option<Instant> = None;
        // Relaxed: the flag carries no data; the signal handler only asks us to stop.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && !self.ledger.has_failed() {
            let worked = self.poll_once();
            self.housekeeping_if_due();
            if worked {
                self.snapshot_if_due();
                idle_since = None;
                continue;
            }
            let idle = *idle_since.get_or_insert(self.clock.now);
            let spinning = self.clock.now.duration_since(idle) < self.config.spin;
            if self.sessions.has_replies_waiting_for_disk() {
                if spinning && self.ledger.is_syncing() {
                    // Replies wait for the disk and the syncing thread is at it: keep
                    // polling, so what clients send meanwhile is applied at once (and goes
                    // into the next sync), and ask it to go on to what this loop ended since.
                    // Blocking in an fdatasync of our own here would stall every client for
                    // a whole sync (0.3 to 0.4 ms on this machine's disk).
                    self.ledger.sync_in_background();
                    std::hint::spin_loop();
                } else {
                    // The syncing thread is idle (or we do not spin: park mode): wait for the
                    // disk here, which needs no thread to be woken and scheduled (measured
                    // faster with few orders in flight); an fdatasync of our own returns when
                    // the syncing thread's write-back is done too.
                    self.commit_and_show_replies();
                }
                continue;
            }
            if spinning {
                // Nothing came in: watch only what a client writes (its request ring's next
                // cell, the attach epoch) for a while before the next whole pass, so a request
                // is picked up within a load or two of landing instead of after a pass's clock
                // read and bookkeeping (a quarter of a round trip, measured).
                self.sessions.wait_for_work(IDLE_CHECKS_PER_PASS);
                continue;
            }
            if self.view.is_dirty() {
                self.publish();
            }
            self.ledger.prepare_ahead();
            self.tell(|| MarketEvent::Idle);
            let sessions = &self.sessions;
            self.store.header().doorbell.park(
                || sessions.has_work(),
                (!rings).then_some(HOUSEKEEPING_EVERY),
            );
            // `idle_since` stays: a park that ends with no work (the alarm's ring, or the
            // timeout without it, for the housekeeping) is followed by another park, not by
            // another spin. Only a pass that works starts the spin over (a market told to spin
            // for a second used to spin a second after every 50 ms park: a busy core with
            // nobody attached).
        }
        self.publish();
        self.tell(|| MarketEvent::Idle);
        if let Some(error) = self.ledger.take_failure() {
            return Err(error);
        }
        // A clean stop: everything is committed, so the next start replays nothing.
        if let Some(records) = self.ledger.snapshot_point() {
            let copy = self.copy_for_snapshot();
            self.snapshots.finish(records, copy);
        }
        let stats = self.ledger.stats();
        Ok(Summary {
            requests: self.view.counters.requests,
            trades_this_run: stats.trades - self.trades_at_start,
            clients_served: self.sessions.clients_served(),
            trades: stats.trades,
            books_on_shelf: stats.books_on_shelf,
        })
    }

    /// Publishes the first view, then marks the store ready: what [`run`](Self::run) does
    /// first, for a caller that drives the market pass by pass with
    /// [`serve_pass`](Self::serve_pass).
    pub fn open_for_clients(&mut self) {
        self.publish();
        // Clients see Ready (and the first view) before they claim a slot.
        self.store.header().identity().set_state(StoreState::Ready);
    }

    /// One pass of the loop as [`run`](Self::run) makes them, without its waiting: takes in
    /// new clients, serves every waiting request, shows the replies the journal allows, and
    /// does the housekeeping when due. True if it did anything. For measuring the market's own
    /// work with its clients on the same thread (`bookstore bench`'s "market alone" row), so
    /// no transfer between cores is in the figure; a market that serves real clients calls
    /// `run`.
    pub fn serve_pass(&mut self) -> bool {
        let worked = self.poll_once();
        self.housekeeping_if_due();
        worked
    }

    /// One pass over everything; true if anything was done. The pass reads the clock once,
    /// and once more at its end if it served requests (their service latency).
    fn poll_once(&mut self) -> bool {
        self.clock.tick();
        if self.sessions.epoch_moved() {
            self.scan_slots();
        }
        let mut worked = false;
        let mut served = 0;
        for i in 0..self.sessions.attached_count() {
            let index = self.sessions.attached_slot(i);
            if served == 0
                && self.sessions.has_replies_waiting_for_disk()
                && self.sessions.has_request(index)
            {
                // A new batch while the last one waits for the disk: let the syncing thread
                // make that one durable while we apply this one (pipelined group commit).
                self.ledger.sync_in_background();
            }
            let n = self.drain(index, BATCH_PER_CLIENT);
            served += n;
            worked |= n > 0;
        }
        self.settle_dropped();
        worked |= self.publish_replies();
        if served > 0 {
            // Picked up → reply published, for every request of the pass: measured from the
            // pass's start, so a request served late in a busy pass counts the ones before it.
            let (ns, wall_ms) = self.clock.since_tick();
            self.stats.record_latency(ns, served as u64, wall_ms);
        }
        if self.view.due_while_busy(self.clock.now) {
            self.publish();
        }
        worked
    }

    /// Serves up to `limit` requests of one slot; returns how many.
    fn drain(&mut self, index: u32, limit: usize) -> usize {
        let mut taken = 0;
        while taken < limit {
            let Popped::Request(client, message) = self.sessions.pop_request(index) else {
                break;
            };
            taken += 1;
            self.handle(index, client, &message);
        }
        taken
    }

    fn handle(&mut self, index: u32, client: ClientId, message: &crate::layout::Message) {
        self.stats.client_request(index, self.clock.wall_ms());
        let (request, title_id) = match Request::decode_with(message, &mut self.titles) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.view.counters.malformed += 1;
                self.stats.warn(WarningKind::MalformedRequest);
                tracing::warn!(%client, %error, "malformed request");
                let request = Request::raw_request_id(message);
                let durable_at = self.ledger.staged_end();
                self.sessions
                    .send_to_slot(index, Reply::Malformed { request, error }, durable_at);
                return;
            }
        };
        self.view.counters.requests += 1;
        if let Request::Ask { request } = request {
            // Answered from what the ledger applied: shown, like any reply, once that is
            // durable.
            self.settle();
            let reply = match self.ledger.receipt(client, request) {
                Some(receipt) => Reply::Receipt(receipt),
                None => Reply::NotSeen { request },
            };
            let durable_at = self.ledger.staged_end();
            self.sessions.send_to_slot(index, reply, durable_at);
            return;
        }
        let ledger = &mut self.ledger;
        let pin = self.titles.pin_of(
            request.title(),
            title_id,
            |t| ledger.pin_title(t),
            self.store.title_table(),
        );
        let command = request.into_command(client, self.clock.now_ms());
        self.apply_pinned(command, pin);
    }

    /// Applies `ClientGone` for every client the sessions dropped (which may drop more), and
    /// counts the sessions' warnings.
    fn settle_dropped(&mut self) {
        for kind in self.sessions.take_warnings() {
            self.stats.warn(kind);
        }
        loop {
            let dropped = self.sessions.take_dropped();
            if dropped.is_empty() {
                return;
            }
            for client in dropped {
                self.apply(Command::ClientGone { client });
            }
        }
    }

    /// Acts on what a scan of the slot table found.
    fn scan_slots(&mut self) {
        for change in self.sessions.scan() {
            match change {
                SlotChange::Joined {
                    client,
                    pid,
                    slot,
                    role,
                } => {
                    let now = self.clock.wall_ms();
                    self.stats.client_attached(slot, client, role, pid, now);
                    self.tell(|| MarketEvent::Attached { client, pid, slot })
                }
                SlotChange::Leaving { slot } => {
                    // A LEAVING client pushes nothing more, so its ring holds at most one
                    // ring's worth: serve exactly that, whatever a misbehaving client does.
                    self.drain(slot, REQUEST_RING_CAPACITY);
                    self.release(slot, "detached");
                }
                SlotChange::ClaimantGone { slot } => self.release(slot, "claimant exited"),
            }
        }
        self.settle_dropped();
    }

    /// Releases a slot, forgetting its client in the ledger (its resting buys are cancelled).
    fn release(&mut self, index: u32, why: &'static str) {
        self.stats.client_left(index);
        if let Some(released) = self.sessions.release(index) {
            if released.needs_gone {
                self.apply(Command::ClientGone {
                    client: released.client,
                });
            }
            let client = released.client;
            self.tell(|| MarketEvent::Left { client, why });
        }
    }

    fn housekeeping_if_due(&mut self) {
        // The pass's clock read: no second read of the clock in one pass.
        let now = self.clock.now;
        // Due by the clock, or woken by the alarm (whose flag is cleared either way, so a busy
        // market does not do it twice an interval).
        let rang = self.alarm.take();
        if now.duration_since(self.last_housekeeping) < HOUSEKEEPING_EVERY && !rang {
            return;
        }
        self.last_housekeeping = now;
        self.ledger.prepare_ahead();
        // One that came due while the last was still being taken, and no work since.
        self.snapshot_if_due();
        self.apply(Command::Expire);
        for index in self.sessions.exited() {
            self.release(index, "process exited");
        }
        self.scan_slots();
        self.settle_dropped();
        self.publish_replies();
        if self.view.due_for_healing(now) {
            self.publish();
        }
    }

    /// Asks for a snapshot if one is due and the journal holds exactly the engine's state.
    fn snapshot_if_due(&mut self) {
        if let Some(records) = self.ledger.snapshot_point() {
            if self.snapshots.due(records) {
                let copy = self.copy_for_snapshot();
                self.snapshots.take(records, copy);
            }
        }
    }

    /// A follower made from a copy of the store as of the committed end, for the snapshot
    /// thread to take the snapshot from instead of catching up, if the store is small enough
    /// (see [`snapshots::COPY_AT_MOST`]); `None` if not, or if the journal cannot be opened
    /// again (said as a warning: the thread then catches up, as it would anyway).
    fn copy_for_snapshot(&mut self) -> Option<crate::journal::Follower> {
        // The view keeps as many recent trades as a replay does: its copy is the replay's.
        const _: () = assert!(crate::journal::RECENT_TRADES == crate::layout::RECENT_TRADES);
        let stats = self.ledger.stats();
        let orders = u64::from(stats.books_on_shelf) + u64::from(stats.resting_buys);
        if orders > snapshots::COPY_AT_MOST {
            return None;
        }
        // The last command's receipts and trades recorded, as a replay would have them.
        self.settle();
        match self.ledger.follower_from_copy(self.view.recent_trades())? {
            Ok(follower) => Some(follower),
            Err(error) => {
                tracing::warn!(%error, "cannot open the journal again for a snapshot; catching up instead");
                None
            }
        }
    }

    /// Ends the pass's batch in the journal and shows every reply whose records are durable:
    /// with `--durability none` all of them at once; with `batch` once an fdatasync covered
    /// them, the loop's own when it has nothing else to do, or the syncing thread's while the
    /// loop applies the next batch (pipelined group commit). Nothing is shown that is not
    /// durable. Returns whether backlogged replies moved into rings with room (work done).
    fn publish_replies(&mut self) -> bool {
        if self.ledger.commit_in_background().is_none() {
            return false;
        }
        let durable = self.ledger.durable();
        let moved = self.sessions.show_durable(durable);
        self.settle();
        moved
    }

    /// Commits the journal and waits for the disk, then shows every reply. False if the
    /// journal failed (nothing is shown).
    fn commit_and_show_replies(&mut self) -> bool {
        if !self.ledger.commit() {
            return false;
        }
        let durable = self.ledger.durable();
        self.sessions.show_durable(durable);
        self.settle();
        true
    }

    /// Commits the journal and waits for it (so every reply may be shown), then writes the
    /// view: the view never shows what is not durable.
    fn publish(&mut self) {
        if !self.commit_and_show_replies() {
            return;
        }
        let journal = self.ledger.journal_facts(|at| self.clock.wall_ms_at(at));
        self.view.publish(
            self.store,
            self.ledger.engine(),
            &mut self.stats,
            journal,
            &self.clock,
        );
    }
}
