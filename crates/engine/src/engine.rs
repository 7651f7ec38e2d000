use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::types::*;

/// Arrival order: a global sequence number, so "oldest first" is well defined across titles.
type Seq = u64;
/// Shelf order: cheapest first, then oldest.
type AskKey = (Price, Seq);
/// Resting-buy order: highest limit first, then oldest.
type BidKey = (Reverse<Price>, Seq);

#[derive(Debug, Clone)]
struct Listing {
    title: Title,
    seller: ClientId,
    request: RequestId,
    qty: u32,
}

#[derive(Debug, Clone)]
struct RestingBuy {
    client: ClientId,
    request: RequestId,
    target: BuyTarget,
    max_price: Price,
    filled: u32,
    remaining: u32,
    deadline: Option<Millis>,
}

/// Totals since the store opened. `books_listed == books_sold + books_on_shelf` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub capacity: u32,
    pub books_listed: u64,
    pub books_sold: u64,
    pub books_on_shelf: u32,
    pub trades: u64,
    pub revenue_cents: u64,
    pub resting_buys: u32,
}

/// Copies of one title at one price, as the published view shows the shelf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShelfRow {
    pub title: Title,
    pub price: Price,
    pub qty: u32,
}

/// The store's authoritative state. See the crate docs for the semantics.
#[derive(Debug)]
pub struct Engine {
    capacity: u32,
    next_seq: Seq,
    next_trade_id: u64,
    asks: BTreeMap<AskKey, Listing>,
    asks_by_title: HashMap<Title, BTreeSet<AskKey>>,
    bids: HashMap<Seq, RestingBuy>,
    bids_by_title: HashMap<Title, BTreeSet<BidKey>>,
    bids_any: BTreeSet<BidKey>,
    bid_by_request: BTreeMap<(ClientId, RequestId), Seq>,
    deadlines: BTreeSet<(Millis, Seq)>,
    stats: Stats,
}

impl Engine {
    /// An empty store that holds at most `capacity` books.
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            next_seq: 1,
            next_trade_id: 1,
            asks: BTreeMap::new(),
            asks_by_title: HashMap::new(),
            bids: HashMap::new(),
            bids_by_title: HashMap::new(),
            bids_any: BTreeSet::new(),
            bid_by_request: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            stats: Stats {
                capacity,
                ..Stats::default()
            },
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Clients that have at least one resting buy, in id order.
    pub fn clients_with_resting_buys(&self) -> Vec<ClientId> {
        let mut clients: Vec<ClientId> = self.bid_by_request.keys().map(|&(c, _)| c).collect();
        clients.dedup();
        clients
    }

    /// The id the next trade will get.
    pub fn next_trade_id(&self) -> u64 {
        self.next_trade_id
    }

    /// Applies one command at time `now`, appending what happened to `out`.
    pub fn apply(&mut self, now: Millis, command: Command, out: &mut Vec<Event>) {
        match command {
            Command::List {
                client,
                request,
                title,
                price,
                qty,
            } => self.list(client, request, title, price, qty.get(), out),
            Command::Buy {
                client,
                request,
                target,
                max_price,
                qty,
                deadline,
            } => self.buy(
                now,
                client,
                request,
                target,
                max_price,
                qty.get(),
                deadline,
                out,
            ),
            Command::Cancel { client, request } => {
                match self.bid_by_request.get(&(client, request)) {
                    Some(&seq) => {
                        let bid = self.remove_bid(seq);
                        out.push(Event::Cancelled {
                            client,
                            request,
                            filled: bid.filled,
                            unfilled: bid.remaining,
                        });
                    }
                    None => out.push(Event::Rejected {
                        client,
                        request,
                        reason: RejectReason::UnknownOrder,
                    }),
                }
            }
            Command::Expire => {
                while let Some(&(deadline, seq)) = self.deadlines.first() {
                    if deadline > now {
                        break;
                    }
                    let bid = self.remove_bid(seq);
                    out.push(Event::Expired {
                        client: bid.client,
                        request: bid.request,
                        filled: bid.filled,
                        unfilled: bid.remaining,
                    });
                }
            }
            Command::ClientGone { client } => {
                let range = (client, RequestId(0))..=(client, RequestId(u64::MAX));
                let mut seqs: Vec<Seq> =
                    self.bid_by_request.range(range).map(|(_, &s)| s).collect();
                seqs.sort_unstable();
                for seq in seqs {
                    let bid = self.remove_bid(seq);
                    out.push(Event::Cancelled {
                        client,
                        request: bid.request,
                        filled: bid.filled,
                        unfilled: bid.remaining,
                    });
                }
            }
        }
    }

    fn list(
        &mut self,
        client: ClientId,
        request: RequestId,
        title: Title,
        price: Price,
        qty: u32,
        out: &mut Vec<Event>,
    ) {
        // Decide acceptance before changing anything: a listing is taken whole or not at all.
        let sold_at_once = self.matchable_for_listing(&title, price, qty);
        let to_shelf = qty - sold_at_once;
        if to_shelf > self.capacity {
            let reason = RejectReason::LargerThanStore {
                capacity: self.capacity,
            };
            return out.push(Event::Rejected {
                client,
                request,
                reason,
            });
        }
        let free = self.capacity - self.stats.books_on_shelf;
        if to_shelf > free {
            return out.push(Event::Rejected {
                client,
                request,
                reason: RejectReason::StoreFull { free },
            });
        }
        let seq = self.take_seq();
        self.stats.books_listed += u64::from(qty);
        let mut remaining = qty;
        while remaining > 0 {
            let Some(bid_seq) = self.best_bid_for(&title, price) else {
                break;
            };
            let bid = self.bids.get_mut(&bid_seq).expect("indexed bid exists");
            let take = remaining.min(bid.remaining);
            bid.remaining -= take;
            bid.filled += take;
            remaining -= take;
            let (buyer, buy_request, bid_done, filled) =
                (bid.client, bid.request, bid.remaining == 0, bid.filled);
            self.record_trade(
                &title,
                price,
                take,
                client,
                request,
                buyer,
                buy_request,
                out,
            );
            if bid_done {
                self.remove_bid(bid_seq);
                out.push(Event::Filled {
                    client: buyer,
                    request: buy_request,
                    qty: filled,
                });
            }
        }
        debug_assert_eq!(qty - remaining, sold_at_once);
        if remaining > 0 {
            self.asks.insert(
                (price, seq),
                Listing {
                    title: title.clone(),
                    seller: client,
                    request,
                    qty: remaining,
                },
            );
            self.asks_by_title
                .entry(title.clone())
                .or_default()
                .insert((price, seq));
            self.stats.books_on_shelf += remaining;
        }
        out.push(Event::Listed {
            client,
            request,
            title,
            price,
            qty,
            sold_at_once,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn buy(
        &mut self,
        now: Millis,
        client: ClientId,
        request: RequestId,
        target: BuyTarget,
        max_price: Price,
        qty: u32,
        deadline: Option<Millis>,
        out: &mut Vec<Event>,
    ) {
        if self.bid_by_request.contains_key(&(client, request)) {
            let reason = RejectReason::DuplicateRequest;
            return out.push(Event::Rejected {
                client,
                request,
                reason,
            });
        }
        let mut filled = 0;
        while filled < qty {
            let Some(key) = self.best_ask_for(&target, max_price) else {
                break;
            };
            let listing = self.asks.get_mut(&key).expect("indexed listing exists");
            let take = (qty - filled).min(listing.qty);
            listing.qty -= take;
            filled += take;
            let (title, seller, list_request, empty) = (
                listing.title.clone(),
                listing.seller,
                listing.request,
                listing.qty == 0,
            );
            if empty {
                self.asks.remove(&key);
                remove_from_index(&mut self.asks_by_title, &title, &key);
            }
            self.stats.books_on_shelf -= take;
            self.record_trade(
                &title,
                key.0,
                take,
                seller,
                list_request,
                client,
                request,
                out,
            );
        }
        let remaining = qty - filled;
        if remaining == 0 {
            out.push(Event::Filled {
                client,
                request,
                qty,
            });
        } else if deadline.is_some_and(|d| d <= now) {
            out.push(Event::Expired {
                client,
                request,
                filled,
                unfilled: remaining,
            });
        } else {
            let seq = self.take_seq();
            let key = (Reverse(max_price), seq);
            match &target {
                BuyTarget::Title(t) => {
                    self.bids_by_title.entry(t.clone()).or_default().insert(key);
                }
                BuyTarget::Any => {
                    self.bids_any.insert(key);
                }
            }
            if let Some(d) = deadline {
                self.deadlines.insert((d, seq));
            }
            self.bid_by_request.insert((client, request), seq);
            self.bids.insert(
                seq,
                RestingBuy {
                    client,
                    request,
                    target,
                    max_price,
                    filled,
                    remaining,
                    deadline,
                },
            );
            self.stats.resting_buys += 1;
            out.push(Event::Rested {
                client,
                request,
                filled,
                remaining,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_trade(
        &mut self,
        title: &Title,
        price: Price,
        qty: u32,
        seller: ClientId,
        list_request: RequestId,
        buyer: ClientId,
        buy_request: RequestId,
        out: &mut Vec<Event>,
    ) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        self.stats.trades += 1;
        self.stats.books_sold += u64::from(qty);
        self.stats.revenue_cents += price.cents() * u64::from(qty);
        out.push(Event::Traded(Trade {
            trade_id,
            title: title.clone(),
            price,
            qty,
            seller,
            buyer,
            buy_request,
            list_request,
        }));
    }

    /// The cheapest, then oldest, listing a buy may take.
    fn best_ask_for(&self, target: &BuyTarget, max_price: Price) -> Option<AskKey> {
        let best = match target {
            BuyTarget::Title(t) => self.asks_by_title.get(t)?.first().copied(),
            BuyTarget::Any => self.asks.keys().next().copied(),
        }?;
        (best.0 <= max_price).then_some(best)
    }

    /// The resting buy a new listing at `price` fills first: highest limit, then oldest,
    /// among buys of this title and buys of any title.
    fn best_bid_for(&self, title: &Title, price: Price) -> Option<Seq> {
        let for_title = self.bids_by_title.get(title).and_then(|s| s.first());
        let best = match (for_title, self.bids_any.first()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        (best.0 .0 >= price).then_some(best.1)
    }

    /// How many of `qty` new copies at `price` resting buys would take at once.
    fn matchable_for_listing(&self, title: &Title, price: Price, qty: u32) -> u32 {
        let accepts = |k: &&BidKey| k.0 .0 >= price;
        let titled = self
            .bids_by_title
            .get(title)
            .into_iter()
            .flatten()
            .take_while(accepts);
        let any = self.bids_any.iter().take_while(accepts);
        let mut total = 0u32;
        for key in titled.chain(any) {
            total = total.saturating_add(self.bids[&key.1].remaining);
            if total >= qty {
                return qty;
            }
        }
        total
    }

    fn remove_bid(&mut self, seq: Seq) -> RestingBuy {
        let bid = self.bids.remove(&seq).expect("bid exists");
        let key = (Reverse(bid.max_price), seq);
        match &bid.target {
            BuyTarget::Title(t) => remove_from_index(&mut self.bids_by_title, t, &key),
            BuyTarget::Any => {
                self.bids_any.remove(&key);
            }
        }
        if let Some(d) = bid.deadline {
            self.deadlines.remove(&(d, seq));
        }
        self.bid_by_request.remove(&(bid.client, bid.request));
        self.stats.resting_buys -= 1;
        bid
    }

    fn take_seq(&mut self) -> Seq {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The shelf grouped by title and price, sorted by title then price.
    pub fn shelf(&self) -> Vec<ShelfRow> {
        let mut rows: BTreeMap<(&Title, Price), u32> = BTreeMap::new();
        for listing_key in self.asks.keys() {
            let listing = &self.asks[listing_key];
            *rows.entry((&listing.title, listing_key.0)).or_default() += listing.qty;
        }
        rows.into_iter()
            .map(|((title, price), qty)| ShelfRow {
                title: title.clone(),
                price,
                qty,
            })
            .collect()
    }

    /// Checks the engine's internal consistency; tests call it after every command.
    pub fn check_invariants(&self) -> Result<(), String> {
        let s = &self.stats;
        if s.books_listed != s.books_sold + u64::from(s.books_on_shelf) {
            return Err(format!(
                "balance: listed {} != sold {} + shelf {}",
                s.books_listed, s.books_sold, s.books_on_shelf
            ));
        }
        let shelf: u64 = self.asks.values().map(|l| u64::from(l.qty)).sum();
        if shelf != u64::from(s.books_on_shelf) {
            return Err(format!(
                "shelf count {} != listings {}",
                s.books_on_shelf, shelf
            ));
        }
        if s.books_on_shelf > self.capacity {
            return Err(format!(
                "shelf {} over capacity {}",
                s.books_on_shelf, self.capacity
            ));
        }
        if self.asks.values().any(|l| l.qty == 0) || self.bids.values().any(|b| b.remaining == 0) {
            return Err("an empty order is still indexed".into());
        }
        if self.bids.len() != s.resting_buys as usize
            || self.bid_by_request.len() != self.bids.len()
        {
            return Err("resting-buy indexes disagree".into());
        }
        Ok(())
    }
}

fn remove_from_index<K: Ord>(index: &mut HashMap<Title, BTreeSet<K>>, title: &Title, key: &K) {
    if let Some(set) = index.get_mut(title) {
        set.remove(key);
        if set.is_empty() {
            index.remove(title);
        }
    }
}
