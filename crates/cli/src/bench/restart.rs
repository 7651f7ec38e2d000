//! The restart row: how long a market takes to serve again after a crash, over a long history.
//!
//! The history is written the way a market writes it, through the journal crate: commands
//! staged and committed in batches, the live segment rolled as it fills, a snapshot at the
//! market's default interval taken by a follower and stored with the covered segments
//! deleted. It stops one command short of the next snapshot (the worst case a crash leaves:
//! an interval less one to replay), and a real `bookstore market` process is then started over it and
//! timed from `spawn` until its store is ready (what a restarting user waits for: the
//! process starting, the snapshot read, the replay, the store created).

use std::path::Path;
use std::time::{Duration, Instant};

use engine::{BuyTarget, ClientId, Command as EngineCommand, Engine, Price, Qty, RequestId, Title};
use serde::Serialize;

use super::{spawn_market, stop_market, unique_name, BenchResult};
use crate::scratch::ScratchJournal;
use bookstore::journal::{
    snapshot, CapacityChoice, Durability, FollowerStart, Journal, JournalOptions, Start,
    DEFAULT_SEGMENT_BYTES,
};

/// The market's default `--snapshot-every`.
const SNAPSHOT_EVERY: u64 = bookstore::journal::DEFAULT_SNAPSHOT_EVERY;
const CAPACITY: u32 = 100_000;
/// Books put on the shelf before trading starts: the snapshots hold a full-sized store.
const SHELF: u64 = 50_000;

#[derive(Serialize, Clone, Copy)]
pub(super) struct RestartFigures {
    /// Commands in the journal's history.
    pub history_commands: u64,
    /// The snapshot the market started from, and the commands it replayed after it.
    pub from_snapshot: u64,
    pub replayed_commands: u64,
    /// From spawning the market to its store being ready.
    pub ms: f64,
    /// What was on disk for it to read: segment files and their bytes.
    pub segments_on_disk: usize,
    pub journal_bytes_on_disk: u64,
}

/// Writes `history` commands (a snapshot every `SNAPSHOT_EVERY`), then times a market
/// restarting over them.
pub(super) fn restart_after_history(history: u64) -> BenchResult<RestartFigures> {
    // One short of a snapshot: the most a crash leaves to replay.
    let history = history.next_multiple_of(SNAPSHOT_EVERY).max(SNAPSHOT_EVERY) - 1;
    let name = unique_name("restart");
    let scratch = ScratchJournal::for_store(&name)?;
    let from_snapshot = write_history(scratch.path(), history)?;
    let (segments_on_disk, journal_bytes_on_disk) = on_disk(scratch.path())?;
    // The history's pages written back first, so the disk's catching up does not land in
    // the timing (a market restarting after a crash finds its journal in the page cache too).
    for (_, path) in bookstore::journal::segments::list_sealed(scratch.path())? {
        std::fs::File::open(path)?.sync_all()?;
    }
    std::fs::File::open(scratch.path())?.sync_all()?;
    let started = Instant::now();
    let market = spawn_market(&name, 0, "none", scratch, &[])?;
    // Polled every 100 µs (`open_store`'s own wait polls every 20 ms, too coarse here).
    let ready = loop {
        match bookstore::client::open_store(&name, Duration::ZERO) {
            Ok(store) => break Ok(store),
            Err(_) if started.elapsed() < Duration::from_secs(120) => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(error) => break Err(error),
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(ready?);
    stop_market(market)?;
    Ok(RestartFigures {
        history_commands: history,
        from_snapshot,
        replayed_commands: history - from_snapshot,
        ms,
        segments_on_disk,
        journal_bytes_on_disk,
    })
}

/// The journal of a steady trade: `SHELF` listings, then a listing and a buy that takes a
/// book, by turns. Returns the command number of the last snapshot.
fn write_history(path: &Path, history: u64) -> BenchResult<u64> {
    let options = JournalOptions {
        durability: Durability::None,
        capacity: CapacityChoice::Exactly(CAPACITY),
        start: Start::Fresh,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };
    let (mut journal, _) = Journal::open(path, &options)?;
    let start = FollowerStart {
        engine: Engine::new(CAPACITY),
        receipts: Default::default(),
        recent_trades: Vec::new(),
        last_now: 0,
    };
    let mut follower = journal.follower(start).expect("nothing staged")?;
    let titles: Vec<Title> = (0..1000)
        .map(|t| Title::new(&format!("Title {t}")))
        .collect::<Result<_, _>>()?;
    let mut last_snapshot = 0;
    for i in 0..history {
        journal.stage(i, &command(i, &titles)?);
        let done = i + 1;
        if done % 1000 == 0 || done == history {
            journal.commit()?;
            journal.prepare_ahead();
        }
        if done % SNAPSHOT_EVERY == 0 && done < history {
            follower.catch_up(done)?;
            snapshot::store(path, &follower.snapshot(), true)?;
            last_snapshot = done;
        }
    }
    Ok(last_snapshot)
}

fn command(i: u64, titles: &[Title]) -> BenchResult<EngineCommand> {
    // A buy takes the title the listing before it put on the shelf.
    let title = titles[((i & !1) % titles.len() as u64) as usize].clone();
    Ok(if i < SHELF || i % 2 == 0 {
        EngineCommand::List {
            client: ClientId(1 << 64),
            request: RequestId(i),
            title,
            price: Price::from_cents(1000 + i % 500)?,
            qty: Qty::new(1)?,
        }
    } else {
        EngineCommand::Buy {
            client: ClientId(2 << 64),
            request: RequestId(i),
            target: BuyTarget::Title(title),
            max_price: Price::from_cents(2000)?,
            qty: Qty::new(1)?,
            deadline: None,
        }
    })
}

/// The journal's segment files beside `journal` (the live one included) and their bytes.
fn on_disk(journal: &Path) -> BenchResult<(usize, u64)> {
    let sealed = bookstore::journal::segments::list_sealed(journal)?;
    let mut bytes = std::fs::metadata(journal)?.len();
    for (_, path) in &sealed {
        bytes += std::fs::metadata(path)?.len();
    }
    Ok((sealed.len() + 1, bytes))
}
