//! Replaying journal records into an engine and its receipts, from an empty store or from a
//! snapshot's.

use std::collections::VecDeque;
use std::path::PathBuf;

use engine::{Engine, Event, Millis, Receipts, Trade};

use crate::snapshot::Snapshot;
use crate::{format, SnapshotUsed, RECENT_TRADES};

/// What a replay starts from: an empty store, or a snapshot's.
pub(crate) struct Base {
    pub(crate) engine: Engine,
    pub(crate) receipts: Receipts,
    pub(crate) recent_trades: VecDeque<Trade>,
    pub(crate) last_now: Millis,
    pub(crate) from: Option<SnapshotUsed>,
}

impl Base {
    pub(crate) fn empty(capacity: u32) -> Self {
        Self {
            engine: Engine::new(capacity),
            receipts: Receipts::new(),
            recent_trades: VecDeque::new(),
            last_now: 0,
            from: None,
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
        Self {
            engine,
            receipts,
            recent_trades: snapshot.recent_trades.into(),
            last_now: snapshot.last_now,
            from: Some(SnapshotUsed {
                commands: snapshot.commands,
                path,
            }),
        }
    }
}

/// The engine that `entries` build, from an empty store of `capacity` books: the replay that
/// `bookstore journal`, the fuzz target and the chaos test rely on.
pub fn replay(capacity: u32, entries: &[format::Entry]) -> Engine {
    let mut engine = Engine::new(capacity);
    replay_onto(
        &mut engine,
        &mut Receipts::new(),
        entries,
        &mut VecDeque::new(),
    );
    engine
}

/// Applies `entries` to `engine` and `receipts`, keeping the last [`RECENT_TRADES`] trades
/// in `recent`.
pub(crate) fn replay_onto(
    engine: &mut Engine,
    receipts: &mut Receipts,
    entries: &[format::Entry],
    recent: &mut VecDeque<Trade>,
) {
    let mut events = Vec::new();
    for entry in entries {
        let intent = Receipts::intent(&entry.command);
        engine.apply(entry.now, entry.command.clone(), &mut events);
        receipts.record(intent, &events);
        for event in events.drain(..) {
            if let Event::Traded(trade) = event {
                if recent.len() == RECENT_TRADES {
                    recent.pop_front();
                }
                recent.push_back(trade);
            }
        }
    }
}
