//! When the market publishes the view: at most every 20 ms while busy, whenever it goes idle,
//! and at least once a second. A publish writes what changed since the last (the new trades'
//! cells, the rows of attached clients); at least once a second one writes everything, so a
//! view scribbled on by a buggy client heals by itself.

use std::time::{Duration, Instant};

use engine::{Engine, Event, Trade};

use super::Clock;
use crate::shared::SharedStore;
use crate::stats::{JournalFacts, StatsRecorder};
use crate::view::{Counters, Publisher};

const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// The view is republished at least this often even when nothing changed.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);

pub(super) struct ViewSchedule {
    publisher: Publisher,
    pub(super) counters: Counters,
    dirty: bool,
    last_publish: Instant,
    /// When every cell was last written; `None` before the first publish.
    last_full_publish: Option<Instant>,
}

impl ViewSchedule {
    pub(super) fn new(now: Instant, recent: Vec<Trade>) -> Self {
        Self {
            publisher: Publisher::new(recent),
            counters: Counters::default(),
            dirty: true,
            last_publish: now,
            last_full_publish: None,
        }
    }

    /// Notes what an event changes in the view.
    /// The last trades, oldest first, as the journal's replay keeps them (the same number).
    pub(super) fn recent_trades(&self) -> Vec<Trade> {
        self.publisher.recent_trades()
    }

    pub(super) fn record(&mut self, event: &Event) {
        match event {
            Event::Traded(t) => self.publisher.record(t),
            Event::Rejected { .. } => self.counters.rejected += 1,
            _ => {}
        }
        self.dirty = true;
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether a busy market should publish now.
    pub(super) fn due_while_busy(&self, now: Instant) -> bool {
        self.dirty && now.duration_since(self.last_publish) >= PUBLISH_EVERY
    }

    /// Whether the view should be rewritten whole even if nothing changed (healing).
    pub(super) fn due_for_healing(&self, now: Instant) -> bool {
        self.last_full_publish
            .is_none_or(|at| now.duration_since(at) >= REPUBLISH_EVERY)
    }

    /// Writes the view, and the market's statistics with it, at the pass's clock read: what
    /// changed since the last publish, or every cell when healing is due. The caller has
    /// committed the journal: nothing shown here is less durable than what the journal holds.
    pub(super) fn publish(
        &mut self,
        store: &SharedStore,
        engine: &Engine,
        recorder: &mut StatsRecorder,
        journal: JournalFacts,
        clock: &Clock,
    ) {
        let stats = engine.stats();
        let shelf = engine.shelf();
        let totals = (self.counters.requests, stats.trades);
        let full = self.due_for_healing(clock.now);
        self.publisher.publish(
            store,
            &stats,
            &self.counters,
            &shelf,
            clock.now_ms(),
            full,
            |map| {
                recorder.write(
                    map,
                    journal,
                    totals,
                    |client| engine.resting_buys_of(client) as u64,
                    clock.wall_ms(),
                    full,
                )
            },
        );
        self.dirty = false;
        self.last_publish = clock.now;
        if full {
            self.last_full_publish = Some(clock.now);
        }
    }
}
