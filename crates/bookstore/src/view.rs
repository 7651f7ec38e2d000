//! The published view: totals, the shelf and recent trades, written only by the market under
//! a seqlock so that `inspect` (and anyone else) reads a consistent snapshot without locks and
//! without being able to disturb the market.
//!
//! The protocol is `bookstore_ipc::seqlock` (loom-checked): the market writes inside
//! `SeqLock::write`, readers copy inside `SeqLock::read` with relaxed loads only, so a reader
//! on a read-only mapping is sound. Each row's words are written and read by one codec
//! ([`ShelfRowRecord`], [`TradeRecord`]), so the format is stated once.

use engine::{ShelfRow, Stats, Trade};
use serde::Serialize;

use crate::layout::{title_words, RecordWords, RECENT_TRADES, RECORD_WORDS};
use crate::shared::{Mapping, SharedStore};
use bookstore_ipc::sync::Ordering::Relaxed;

/// Tries a reader makes before it reports the view as unstable.
pub(crate) const READ_ATTEMPTS: u32 = 10_000;

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

/// A shelf row in a record: `[title length, price cents, qty, title words…]`.
pub struct ShelfRowRecord;

impl ShelfRowRecord {
    pub fn encode(row: &ShelfRow) -> RecordWords {
        let mut words = [0u64; RECORD_WORDS];
        words[0] = row.title.as_str().len() as u64;
        words[1] = row.price.cents();
        words[2] = row.qty.into();
        title_words::pack(&row.title, &mut words[3..]);
        words
    }

    pub fn decode(words: &RecordWords) -> Result<SnapshotRow, SnapshotError> {
        Ok(SnapshotRow {
            title: title(words[0], &words[3..], "shelf row title")?,
            price_cents: words[1],
            qty: words[2],
        })
    }
}

/// A recent trade in a record: `[trade id, price cents, qty, seller, buyer (the first 64 bits of
/// their ids), title length, title words…]`.
pub struct TradeRecord;

impl TradeRecord {
    pub fn encode(t: &Trade) -> RecordWords {
        let mut words = [0u64; RECORD_WORDS];
        words[0] = t.trade_id;
        words[1] = t.price.cents();
        words[2] = t.qty.into();
        words[3] = t.seller.short();
        words[4] = t.buyer.short();
        words[5] = t.title.as_str().len() as u64;
        title_words::pack(&t.title, &mut words[6..]);
        words
    }

    pub fn decode(words: &RecordWords) -> Result<SnapshotTrade, SnapshotError> {
        Ok(SnapshotTrade {
            trade_id: words[0],
            price_cents: words[1],
            qty: words[2],
            seller: words[3],
            buyer: words[4],
            title: title(words[5], &words[6..], "recent trade title")?,
        })
    }
}

fn title(len: u64, words: &[u64], field: &'static str) -> Result<String, SnapshotError> {
    let corrupt = |problem: String| SnapshotError::Corrupt { field, problem };
    let bytes =
        title_words::unpack(len, words).ok_or_else(|| corrupt(format!("has length {len}")))?;
    String::from_utf8(bytes).map_err(|_| corrupt("is not UTF-8".into()))
}

/// The market's writer of the view.
pub(crate) struct Publisher {
    /// Trades made so far: the number of the next one's cell in the ring of recent trades.
    trades_recorded: u64,
    /// The last `RECENT_TRADES` trades, oldest first (the view shows no more): fed as they are
    /// made, so a busy market that makes tens of thousands between two publishes keeps only
    /// these. A full publish rewrites all their cells, so a view scribbled on by a buggy
    /// client is whole again after the next full publish.
    recent: std::collections::VecDeque<Trade>,
    /// How many trades were made since the last publish (their cells are not written yet).
    unwritten: u64,
}

impl Publisher {
    /// A writer whose recent trades start as `recent` (oldest first; the last
    /// `RECENT_TRADES` are kept): what a snapshot and the journal's replay left. A first
    /// publish writes them all.
    pub fn new(recent: Vec<Trade>) -> Self {
        let skip = recent.len().saturating_sub(RECENT_TRADES);
        let mut kept = std::collections::VecDeque::with_capacity(RECENT_TRADES);
        kept.extend(recent.into_iter().skip(skip));
        Self {
            trades_recorded: kept.len() as u64,
            unwritten: kept.len() as u64,
            recent: kept,
        }
    }

    /// The last `RECENT_TRADES` trades, oldest first: what a snapshot taken now keeps.
    pub fn recent_trades(&self) -> Vec<Trade> {
        self.recent.iter().cloned().collect()
    }

    /// Notes a trade for the next publish.
    pub fn record(&mut self, trade: &Trade) {
        if self.recent.len() == RECENT_TRADES {
            self.recent.pop_front();
        }
        self.recent.push_back(trade.clone());
        self.trades_recorded += 1;
        self.unwritten += 1;
    }

    /// Writes the view: totals, the shelf, and the cells of the trades recorded since the last
    /// publish (of those, the ones the ring of recent trades still shows); then `also` writes
    /// what else must be published with it (the market's statistics), inside the same seqlock
    /// write. With `full` every recent trade's cell is written, not only the new ones' (the
    /// cells of older trades hold them already, unless a buggy client scribbled on them: a
    /// full publish heals that).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &mut self,
        store: &SharedStore,
        stats: &Stats,
        counters: &Counters,
        shelf: &[ShelfRow],
        now_ms: u64,
        full: bool,
        also: impl FnOnce(&Mapping),
    ) {
        let map = store.mapping();
        let v = map.view_header();
        // Relaxed stores inside the write: the sequence lock publishes them whole.
        v.seq.write(|| {
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
            let rows = shelf.len().min(map.geometry().shelf_rows());
            for (i, row) in shelf[..rows].iter().enumerate() {
                map.shelf_row(i).store(&ShelfRowRecord::encode(row));
            }
            v.shelf_rows.store(rows as u64, Relaxed);
            // Only the new trades' cells: in park mode the market publishes each time it goes
            // idle, once a request, and re-encoding all 32 (a title each) every time, with the
            // statistics reading all 64 client rows, cost 0.5 µs of a one-CPU round trip.
            let to_write = if full {
                self.recent.len()
            } else {
                self.unwritten.min(self.recent.len() as u64) as usize
            };
            let skip = self.recent.len() - to_write;
            let first = self.trades_recorded - to_write as u64;
            for (n, t) in (first..).zip(self.recent.iter().skip(skip)) {
                map.recent_trade(n as usize).store(&TradeRecord::encode(t));
            }
            v.trades_recorded.store(self.trades_recorded, Relaxed);
            also(map);
        });
        self.unwritten = 0;
    }
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// A snapshot once the market has settled: it publishes its view before it parks, so once it is
/// parked the view includes every reply it has sent (a client holds its reply a moment before
/// the view shows it). Waits at most `within` for that, then takes the view as it is.
pub(crate) fn settled_snapshot(
    map: &Mapping,
    within: std::time::Duration,
) -> Result<Snapshot, SnapshotError> {
    let deadline = std::time::Instant::now() + within;
    while !map.header().doorbell.is_parked() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    snapshot(map)
}

/// Takes a consistent snapshot, retrying while the market is mid-write.
pub(crate) fn snapshot(map: &Mapping) -> Result<Snapshot, SnapshotError> {
    map.view_header()
        .seq
        .read(READ_ATTEMPTS, || read_unchecked(map))
        .map_err(|unstable| SnapshotError::Unstable { seq: unstable.seq })?
}

/// Reads the view with relaxed loads; only a read the sequence lock confirms is kept.
pub(crate) fn read_unchecked(map: &Mapping) -> Result<Snapshot, SnapshotError> {
    let v = map.view_header();
    let rows = v.shelf_rows.load(Relaxed);
    let max_rows = map.geometry().shelf_rows() as u64;
    if rows > max_rows {
        return Err(SnapshotError::Corrupt {
            field: "shelf_rows",
            problem: format!("is {rows}, above the capacity {max_rows}"),
        });
    }
    let shelf = (0..rows as usize)
        .map(|i| ShelfRowRecord::decode(&map.shelf_row(i).load()))
        .collect::<Result<Vec<_>, _>>()?;
    let recorded = v.trades_recorded.load(Relaxed);
    let first = recorded.saturating_sub(RECENT_TRADES as u64);
    let recent_trades = (first..recorded)
        .map(|n| TradeRecord::decode(&map.recent_trade(n as usize).load()))
        .collect::<Result<Vec<_>, _>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ClientId, Price, Qty, RequestId, Title};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shelf_rows_and_trades_round_trip_through_their_cells(
            title in "\\PC{1,20}", cents in 1u64..=engine::MAX_PRICE_CENTS, qty in 1u32..=engine::MAX_QTY,
            trade_id in any::<u64>(), seller in any::<u128>(), buyer in any::<u128>(),
        ) {
            let Ok(title) = Title::new(&title) else { return Ok(()) };
            let price = Price::from_cents(cents).unwrap();
            let qty = Qty::new(qty.into()).unwrap();
            let row = ShelfRow { title: title.clone(), price, qty: qty.get() };
            let back = ShelfRowRecord::decode(&ShelfRowRecord::encode(&row)).unwrap();
            prop_assert_eq!(back, SnapshotRow { title: title.as_str().into(), price_cents: cents, qty: qty.get().into() });
            let trade = Trade { trade_id, title: title.clone(), price, qty: qty.get(), seller: ClientId(seller), buyer: ClientId(buyer), buy_request: RequestId(1), list_request: RequestId(2), pinned: None };
            let back = TradeRecord::decode(&TradeRecord::encode(&trade)).unwrap();
            prop_assert_eq!(back, SnapshotTrade { trade_id, title: title.as_str().into(), price_cents: cents, qty: qty.get().into(), seller: (seller >> 64) as u64, buyer: (buyer >> 64) as u64 });
        }
    }

    #[test]
    fn between_publishes_only_the_trades_the_view_can_show_are_kept_and_all_are_counted() {
        let mut publisher = Publisher::default();
        for trade_id in 1..=1000 {
            publisher.record(&Trade {
                trade_id,
                title: Title::new("Dune").unwrap(),
                price: Price::from_cents(500).unwrap(),
                qty: 1,
                seller: ClientId(1),
                buyer: ClientId(2),
                buy_request: RequestId(trade_id),
                list_request: RequestId(0),
                pinned: None,
            });
        }
        assert_eq!(
            (publisher.trades_recorded, publisher.unwritten),
            (1000, 1000)
        );
        let kept: Vec<u64> = publisher.recent.iter().map(|t| t.trade_id).collect();
        let last: Vec<u64> = (1000 - RECENT_TRADES as u64 + 1..=1000).collect();
        assert_eq!(kept, last, "the newest RECENT_TRADES, oldest first");
    }
}
