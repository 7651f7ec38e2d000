//! When the market publishes the view: at most every 20 ms while busy, whenever it goes idle,
//! and at least once a second. A publish writes what changed since the last (the new trades'
//! cells, the rows of attached clients); at least once a second one writes everything, so a
//! view scribbled on by a buggy client heals by itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use engine::{Engine, Event, Trade};

use super::Clock;
use crate::layout::RECENT_TRADES;
use crate::shared::SharedStore;
use crate::stats::{JournalFacts, StatsRecorder};
use crate::view::{Counters, Publisher};

const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// The view is republished at least this often even when nothing changed.
const REPUBLISH_EVERY: Duration = Duration::from_secs(1);

pub(super) struct ViewSchedule {
    publisher: Publisher,
    pub(super) counters: Counters,
    /// The last [`RECENT_TRADES`] trades since the last publish (the view shows no more), and
    /// how many there were in all: kept bounded, since a busy market makes tens of thousands
    /// between two publishes (measured: a vector of them all took a page fault every 26 round
    /// trips as it grew, 3 µs each).
    unpublished_trades: VecDeque<Trade>,
    trades_since_publish: u64,
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
            unpublished_trades: VecDeque::with_capacity(RECENT_TRADES),
            trades_since_publish: 0,
            dirty: true,
            last_publish: now,
            last_full_publish: None,
        }
    }

    /// Notes what an event changes in the view.
    pub(super) fn record(&mut self, event: &Event) {
        match event {
            Event::Traded(t) => {
                if self.unpublished_trades.len() == RECENT_TRADES {
                    self.unpublished_trades.pop_front();
                }
                self.unpublished_trades.push_back(t.clone());
                self.trades_since_publish += 1;
            }
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
            self.unpublished_trades.make_contiguous(),
            self.trades_since_publish,
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
        self.unpublished_trades.clear();
        self.trades_since_publish = 0;
        self.dirty = false;
        self.last_publish = clock.now;
        if full {
            self.last_full_publish = Some(clock.now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ClientId, Price, RequestId, Title};

    fn trade(trade_id: u64) -> Event {
        Event::Traded(Trade {
            trade_id,
            title: Title::new("Dune").unwrap(),
            price: Price::from_cents(500).unwrap(),
            qty: 1,
            seller: ClientId(1),
            buyer: ClientId(2),
            buy_request: RequestId(trade_id),
            list_request: RequestId(0),
            pinned: None,
        })
    }

    #[test]
    fn between_publishes_only_the_trades_the_view_can_show_are_kept_and_all_are_counted() {
        let mut view = ViewSchedule::new(Instant::now(), Vec::new());
        for id in 1..=1000 {
            view.record(&trade(id));
        }
        assert_eq!(view.trades_since_publish, 1000);
        let kept: Vec<u64> = view.unpublished_trades.iter().map(|t| t.trade_id).collect();
        let last: Vec<u64> = (1000 - RECENT_TRADES as u64 + 1..=1000).collect();
        assert_eq!(kept, last, "the newest RECENT_TRADES, oldest first");
    }
}
