//! The published view: totals, the shelf and recent trades, written only by the market under
//! a seqlock so that `inspect` (and anyone else) reads a consistent snapshot without locks and
//! without being able to disturb the market.
//!
//! Writer (market): `seq += 1` (odd) · release fence · relaxed stores · `seq += 1` (release).
//! Reader: `s1 = seq` (acquire) · relaxed loads · acquire fence · `s2 = seq`; the snapshot is
//! good if `s1 == s2` and even. The fences order the data loads between the two reads of `seq`.

use engine::{ShelfRow, Stats, Trade};
use serde::Serialize;

use crate::layout::{title_words, Cell, RECENT_TRADES};
use crate::shared::SharedStore;
use bookstore_ipc::sync::{fence, Ordering::*};

/// Totals the market keeps besides the engine's.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub rejected: u64,
    pub malformed: u64,
}

/// A consistent copy of the view.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub books_listed: u64,
    pub books_sold: u64,
    pub books_on_shelf: u64,
    pub trades: u64,
    pub revenue_cents: u64,
    pub resting_buys: u64,
    pub requests: u64,
    pub rejected: u64,
    pub malformed: u64,
    pub published_at_ms: u64,
    pub shelf: Vec<SnapshotRow>,
    pub recent_trades: Vec<SnapshotTrade>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SnapshotRow {
    pub title: String,
    pub price_cents: u64,
    pub qty: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SnapshotTrade {
    pub trade_id: u64,
    pub title: String,
    pub price_cents: u64,
    pub qty: u64,
    pub seller: u64,
    pub buyer: u64,
}

/// Why no snapshot could be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the view kept changing (or its seqlock is stuck odd at {seq}); is the market wedged?"
    )]
    Unstable { seq: u64 },
    #[error("the view is corrupt: {field} {problem}")]
    Corrupt {
        field: &'static str,
        problem: String,
    },
}

/// The market's writer of the view.
pub struct Publisher {
    trades_recorded: u64,
    /// The last `RECENT_TRADES` trades, oldest first: every publish rewrites all their cells,
    /// so a view scribbled on by a buggy client is whole again after the next publish.
    recent: std::collections::VecDeque<Trade>,
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            trades_recorded: 0,
            recent: std::collections::VecDeque::with_capacity(RECENT_TRADES),
        }
    }

    /// Writes the whole view: totals, the shelf, and the trades since the last publish.
    pub fn publish(
        &mut self,
        store: &SharedStore,
        stats: &Stats,
        counters: &Counters,
        shelf: &[ShelfRow],
        new_trades: &[Trade],
        now_ms: u64,
    ) {
        let v = store.view_header();
        // We are the only writer, so our own last value of `seq` is current.
        let seq = v.seq.load(Relaxed);
        v.seq.store(seq.wrapping_add(1) | 1, Relaxed);
        // Release fence: a reader that sees any store below also sees the odd `seq`.
        fence(Release);
        v.books_listed.store(stats.books_listed, Relaxed);
        v.books_sold.store(stats.books_sold, Relaxed);
        v.books_on_shelf.store(stats.books_on_shelf.into(), Relaxed);
        v.trades.store(stats.trades, Relaxed);
        v.revenue_cents.store(stats.revenue_cents, Relaxed);
        v.resting_buys.store(stats.resting_buys.into(), Relaxed);
        v.requests.store(counters.requests, Relaxed);
        v.rejected.store(counters.rejected, Relaxed);
        v.malformed.store(counters.malformed, Relaxed);
        v.published_at_ms.store(now_ms, Relaxed);
        let rows = shelf.len().min(store.geometry().shelf_rows());
        for (i, row) in shelf[..rows].iter().enumerate() {
            let mut words = [0u64; 16];
            words[0] = row.title.as_str().len() as u64;
            words[1] = row.price.cents();
            words[2] = row.qty.into();
            title_words::pack(row.title.as_str(), &mut words[3..]);
            store_cell(store.shelf_row(i), &words);
        }
        v.shelf_rows.store(rows as u64, Relaxed);
        // Only the last RECENT_TRADES of this batch can survive in the ring.
        for t in new_trades {
            if self.recent.len() == RECENT_TRADES {
                self.recent.pop_front();
            }
            self.recent.push_back(t.clone());
        }
        self.trades_recorded += new_trades.len() as u64;
        let first = self.trades_recorded - self.recent.len() as u64;
        for (n, t) in (first..).zip(&self.recent) {
            let mut words = [0u64; 16];
            words[0] = t.trade_id;
            words[1] = t.price.cents();
            words[2] = t.qty.into();
            words[3] = t.seller.0;
            words[4] = t.buyer.0;
            words[5] = t.title.as_str().len() as u64;
            title_words::pack(t.title.as_str(), &mut words[6..]);
            store_cell(store.recent_trade(n as usize), &words);
        }
        v.trades_recorded.store(self.trades_recorded, Relaxed);
        // Release: the data stores above happen before a reader's acquire of the even `seq`.
        v.seq.store(seq.wrapping_add(2) & !1, Release);
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

fn store_cell(cell: &Cell, words: &[u64; 16]) {
    for (c, w) in cell.0.iter().zip(words) {
        c.store(*w, Relaxed);
    }
}

/// Takes a consistent snapshot, retrying while the market is mid-write.
pub fn snapshot(store: &SharedStore) -> Result<Snapshot, SnapshotError> {
    let v = store.view_header();
    let mut last_seq = 0;
    for attempt in 0..10_000 {
        let s1 = v.seq.load(Acquire);
        last_seq = s1;
        if s1 & 1 == 1 {
            if attempt > 100 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            std::hint::spin_loop();
            continue;
        }
        let read = read_unchecked(store);
        // Acquire fence: the loads above happen before the re-read of `seq`.
        fence(Acquire);
        if v.seq.load(Relaxed) == s1 {
            return read;
        }
    }
    Err(SnapshotError::Unstable { seq: last_seq })
}

fn read_unchecked(store: &SharedStore) -> Result<Snapshot, SnapshotError> {
    let v = store.view_header();
    let corrupt = |field, problem: String| SnapshotError::Corrupt { field, problem };
    let rows = v.shelf_rows.load(Relaxed);
    let max_rows = store.geometry().shelf_rows() as u64;
    if rows > max_rows {
        return Err(corrupt(
            "shelf_rows",
            format!("is {rows}, above the capacity {max_rows}"),
        ));
    }
    let title = |len: u64, words: &[u64], field| -> Result<String, SnapshotError> {
        let bytes = title_words::unpack(len, words)
            .ok_or_else(|| corrupt(field, format!("has length {len}")))?;
        String::from_utf8(bytes).map_err(|_| corrupt(field, "is not UTF-8".into()))
    };
    let mut shelf = Vec::with_capacity(rows as usize);
    for i in 0..rows as usize {
        let w = title_words::load(&store.shelf_row(i).0);
        shelf.push(SnapshotRow {
            title: title(w[0], &w[3..], "shelf row title")?,
            price_cents: w[1],
            qty: w[2],
        });
    }
    let recorded = v.trades_recorded.load(Relaxed);
    let first = recorded.saturating_sub(RECENT_TRADES as u64);
    let mut recent_trades = Vec::new();
    for n in first..recorded {
        let w = title_words::load(&store.recent_trade(n as usize).0);
        recent_trades.push(SnapshotTrade {
            trade_id: w[0],
            price_cents: w[1],
            qty: w[2],
            seller: w[3],
            buyer: w[4],
            title: title(w[5], &w[6..], "recent trade title")?,
        });
    }
    Ok(Snapshot {
        books_listed: v.books_listed.load(Relaxed),
        books_sold: v.books_sold.load(Relaxed),
        books_on_shelf: v.books_on_shelf.load(Relaxed),
        trades: v.trades.load(Relaxed),
        revenue_cents: v.revenue_cents.load(Relaxed),
        resting_buys: v.resting_buys.load(Relaxed),
        requests: v.requests.load(Relaxed),
        rejected: v.rejected.load(Relaxed),
        malformed: v.malformed.load(Relaxed),
        published_at_ms: v.published_at_ms.load(Relaxed),
        shelf,
        recent_trades,
    })
}
