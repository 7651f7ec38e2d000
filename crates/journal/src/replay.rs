//! Replaying journal records into a store: the engine, its receipts, the recent trades and
//! the clock, from an empty store or from a snapshot's. The opener, the follower and the
//! journal tool's replay all apply records through [`Replica::apply`].

use std::collections::VecDeque;
use std::path::PathBuf;

use engine::{Engine, Event, Millis, Receipts, Trade};

use crate::snapshot::Snapshot;
use crate::{format, SnapshotUsed, RECENT_TRADES};

/// A store rebuilt from the journal, and where it came from.
pub(crate) struct Replica {
    pub(crate) engine: Engine,
    pub(crate) receipts: Receipts,
    /// The last [`RECENT_TRADES`] trades, oldest first.
    pub(crate) recent_trades: VecDeque<Trade>,
    /// The largest clock value applied.
    pub(crate) last_now: Millis,
    pub(crate) from: Option<SnapshotUsed>,
    /// Scratch for the engine's events, reused by every record.
    events: Vec<Event>,
}

impl Replica {
    pub(crate) fn empty(capacity: u32) -> Self {
        Self::new(Engine::new(capacity), Receipts::new(), Vec::new(), 0)
    }

    pub(crate) fn new(
        engine: Engine,
        receipts: Receipts,
        recent_trades: Vec<Trade>,
        last_now: Millis,
    ) -> Self {
        Self {
            engine,
            receipts,
            recent_trades: recent_trades.into(),
            last_now,
            from: None,
            events: Vec::with_capacity(16),
        }
    }

    /// The store of `snapshot` (read from `path`), already rebuilt into `engine` and
    /// `receipts`.
    pub(crate) fn from_snapshot(
        snapshot: Snapshot,
        engine: Engine,
        receipts: Receipts,
        path: PathBuf,
    ) -> Self {
        let mut replica = Self::new(engine, receipts, snapshot.recent_trades, snapshot.last_now);
        replica.from = Some(SnapshotUsed {
            commands: snapshot.commands,
            path,
        });
        replica
    }

    /// Applies one journal record.
    pub(crate) fn apply(&mut self, entry: &format::Entry) {
        let intent = Receipts::intent(&entry.command);
        self.engine
            .apply(entry.now, &entry.command, &mut self.events);
        self.receipts.record(intent, &self.events);
        for event in self.events.drain(..) {
            if let Event::Traded(trade) = event {
                if self.recent_trades.len() == RECENT_TRADES {
                    self.recent_trades.pop_front();
                }
                self.recent_trades.push_back(trade);
            }
        }
        self.last_now = self.last_now.max(entry.now);
    }
}

/// The engine that `entries` build, from an empty store of `capacity` books: the replay that
/// the fuzz target and the chaos test rely on.
pub fn replay(capacity: u32, entries: &[format::Entry]) -> Engine {
    let mut replica = Replica::empty(capacity);
    for entry in entries {
        replica.apply(entry);
    }
    replica.engine
}
