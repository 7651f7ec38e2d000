//! The engine itself: commands in, events out.

pub mod state;

use serde::Serialize;

use crate::arena::Idx;
use crate::book::{BuyBook, Listing, RestingBuy, Seq, Shelf, Wanted};
use crate::titles::Titles;
use crate::types::*;

/// A buy as the engine handles it: the command's fields, with the quantity as a number.
struct BuyOrder<'c> {
    client: ClientId,
    request: RequestId,
    target: &'c BuyTarget,
    max_price: Price,
    qty: u32,
    deadline: Option<Millis>,
}

/// One side of a trade: who, and which of their requests.
#[derive(Clone, Copy)]
struct Party {
    client: ClientId,
    request: RequestId,
}

/// A trade about to be recorded. Its title by value: copied once, into the trade (from the
/// command for a listing's trades, from the title table for a buy's).
struct Fill {
    title: Title,
    title_id: crate::titles::TitleId,
    price: Price,
    qty: u32,
    seller: Party,
    buyer: Party,
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
#[derive(Debug, Clone)]
pub struct Engine {
    capacity: u32,
    next_seq: Seq,
    next_trade_id: u64,
    titles: Titles,
    shelf: Shelf,
    buys: BuyBook,
    stats: Stats,
}

/// A broken internal invariant: a bug in the engine (or a journal that replays into one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantViolation {
    #[error("balance: listed {listed} != sold {sold} + shelf {shelf}")]
    Unbalanced { listed: u64, sold: u64, shelf: u32 },
    #[error("shelf count {counted} != listings {listed}")]
    ShelfCount { counted: u32, listed: u64 },
    #[error("shelf {shelf} over capacity {capacity}")]
    OverCapacity { shelf: u32, capacity: u32 },
    #[error("listing #{seq} is empty but still on the shelf")]
    EmptyListing { seq: u64 },
    #[error("resting buy #{seq} is empty but still indexed")]
    EmptyBuy { seq: u64 },
    #[error("resting-buy count {counted} != resting buys {indexed}")]
    RestingCount { counted: u32, indexed: usize },
    #[error("the title table disagrees with the orders at {title:?}")]
    TitlesDisagree { title: String },
    #[error("the index of {index} disagrees with the orders")]
    IndexDisagrees { index: &'static str },
}

impl Engine {
    /// An empty store that holds at most `capacity` books.
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            next_seq: 1,
            next_trade_id: 1,
            titles: Titles::default(),
            shelf: Shelf::default(),
            buys: BuyBook::default(),
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
        self.buys.clients()
    }

    /// How many buys `client` has resting.
    pub fn resting_buys_of(&self, client: ClientId) -> usize {
        self.buys.count_of_client(client)
    }

    /// The id the next trade will get.
    pub fn next_trade_id(&self) -> u64 {
        self.next_trade_id
    }

    /// Pins `title`: the engine keeps it interned for as long as it lives, under an id never
    /// reused, which [`apply_pinned`](Self::apply_pinned) takes instead of looking the title
    /// up. Pinning the same title again returns the same pin. Each pin holds one table entry
    /// for good, so a caller pins a bounded set (the market: the entries of its shared title
    /// table).
    pub fn pin_title(&mut self, title: &Title) -> PinnedTitle {
        let id = self.titles.intern(title);
        self.titles.pin(id);
        PinnedTitle(id)
    }

    /// Applies one command at time `now`, appending what happened to `out`. The command is
    /// only read (a caller that journals it keeps it).
    pub fn apply(&mut self, now: Millis, command: &Command, out: &mut Vec<Event>) {
        self.apply_pinned(now, command, None, out);
    }

    /// [`apply`](Self::apply), with the pin of the command's title (a list's, or a title
    /// buy's) if the caller holds one: the engine then checks the pin against the title (a
    /// length and a short compare) instead of looking the title up (hashing it). A pin that is
    /// not this engine's pin of that title is ignored, so the outcome is `apply`'s either way.
    pub fn apply_pinned(
        &mut self,
        now: Millis,
        command: &Command,
        pin: Option<PinnedTitle>,
        out: &mut Vec<Event>,
    ) {
        // Matched by reference: a command's title is 84 bytes inline, and moving it out of the
        // command (and on into the call below) copied it twice a command.
        match command {
            &Command::List {
                client,
                request,
                ref title,
                price,
                qty,
            } => {
                let pinned = self.titles.pinned_to(pin, title.as_str());
                let id = pinned.unwrap_or_else(|| self.titles.intern(title));
                self.list(Party { client, request }, id, title, price, qty.get(), out)
            }
            &Command::Buy {
                client,
                request,
                ref target,
                max_price,
                qty,
                deadline,
            } => {
                let order = BuyOrder {
                    client,
                    request,
                    target,
                    max_price,
                    qty: qty.get(),
                    deadline,
                };
                self.buy(now, order, pin, out)
            }
            &Command::Cancel { client, request } => match self.buys.idx_of(client, request) {
                Some(idx) => {
                    let bid = self.remove_bid(idx);
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
            },
            Command::Expire => {
                while let Some(idx) = self.buys.first_due(now) {
                    let bid = self.remove_bid(idx);
                    out.push(Event::Expired {
                        client: bid.client,
                        request: bid.request,
                        filled: bid.filled,
                        unfilled: bid.remaining,
                    });
                }
            }
            &Command::ClientGone { client } => self.cancel_buys_of(client, out),
            Command::Restart => {
                for client in self.buys.clients() {
                    self.cancel_buys_of(client, out);
                }
            }
        }
    }

    /// Cancels every resting buy of `client`, oldest first.
    fn cancel_buys_of(&mut self, client: ClientId, out: &mut Vec<Event>) {
        for idx in self.buys.of_client(client) {
            let bid = self.remove_bid(idx);
            out.push(Event::Cancelled {
                client,
                request: bid.request,
                filled: bid.filled,
                unfilled: bid.remaining,
            });
        }
    }

    /// Lists `qty` copies of `title`, interned as `id`.
    fn list(
        &mut self,
        seller: Party,
        id: crate::titles::TitleId,
        title: &Title,
        price: Price,
        qty: u32,
        out: &mut Vec<Event>,
    ) {
        let Party { client, request } = seller;
        // Decide acceptance before changing anything: a listing is taken whole or not at all.
        let sold_at_once = self.buys.matchable(id, price, qty);
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
            let Some(bid_idx) = self.buys.best_for(id, price) else {
                break;
            };
            let take = remaining.min(self.buys.get(bid_idx).remaining);
            self.buys.fill(bid_idx, take);
            remaining -= take;
            let bid = self.buys.get(bid_idx);
            let buyer = Party {
                client: bid.client,
                request: bid.request,
            };
            let (bid_done, filled) = (bid.remaining == 0, bid.filled);
            self.record_trade(
                Fill {
                    title: title.clone(),
                    title_id: id,
                    price,
                    qty: take,
                    seller,
                    buyer,
                },
                out,
            );
            if bid_done {
                self.remove_bid(bid_idx);
                out.push(Event::Filled {
                    client: buyer.client,
                    request: buyer.request,
                    qty: filled,
                });
            }
        }
        debug_assert_eq!(qty - remaining, sold_at_once);
        if remaining > 0 {
            let listing = Listing::new(id, client, request, price, seq, remaining);
            self.shelf.insert(&mut self.titles, listing);
            self.stats.books_on_shelf += remaining;
        }
        out.push(Event::Listed {
            client,
            request,
            price,
            qty,
            sold_at_once,
        });
    }

    fn buy(
        &mut self,
        now: Millis,
        order: BuyOrder<'_>,
        pin: Option<PinnedTitle>,
        out: &mut Vec<Event>,
    ) {
        let BuyOrder {
            client,
            request,
            target,
            max_price,
            qty,
            deadline,
        } = order;
        if self.buys.idx_of(client, request).is_some() {
            let reason = RejectReason::DuplicateRequest;
            return out.push(Event::Rejected {
                client,
                request,
                reason,
            });
        }
        let buyer = Party { client, request };
        // A title never interned has no listings (and needs no id unless the buy rests).
        let wanted = match &target {
            BuyTarget::Title(t) => self
                .titles
                .pinned_to(pin, t.as_str())
                .or_else(|| self.titles.get(t.as_str()))
                .map(Wanted::Title),
            BuyTarget::Any => Some(Wanted::Any),
        };
        let mut filled = 0;
        while filled < qty {
            let Some(idx) = wanted.and_then(|w| self.shelf.best_for(w, max_price)) else {
                break;
            };
            let taken = self.shelf.take(&mut self.titles, idx, qty - filled);
            filled += taken.qty;
            self.stats.books_on_shelf -= taken.qty;
            let seller = Party {
                client: taken.seller,
                request: taken.request,
            };
            self.record_trade(
                Fill {
                    // Copied out of the table: recording the trade needs the engine mutably.
                    title: self.titles.title(taken.title).clone(),
                    title_id: taken.title,
                    price: taken.price,
                    qty: taken.qty,
                    seller,
                    buyer,
                },
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
            let wanted = match (wanted, &target) {
                (Some(wanted), _) => wanted,
                (None, BuyTarget::Title(t)) => Wanted::Title(self.titles.intern(t)),
                (None, BuyTarget::Any) => Wanted::Any,
            };
            let buy = RestingBuy::new(
                client, request, wanted, max_price, filled, remaining, deadline, seq,
            );
            self.buys.insert(&mut self.titles, buy);
            self.stats.resting_buys += 1;
            out.push(Event::Rested {
                client,
                request,
                filled,
                remaining,
            });
        }
    }

    fn record_trade(&mut self, fill: Fill, out: &mut Vec<Event>) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        self.stats.trades += 1;
        self.stats.books_sold += u64::from(fill.qty);
        // At most 1e8 cents × 1e6 copies = 1e14 a trade: u64 holds 1.8e5 such trades. The
        // total saturates at u64::MAX cents (1.8e17 currency units) rather than wrap.
        let amount = fill.price.cents().saturating_mul(u64::from(fill.qty));
        self.stats.revenue_cents = self.stats.revenue_cents.saturating_add(amount);
        out.push(Event::Traded(Trade {
            trade_id,
            title: fill.title,
            price: fill.price,
            qty: fill.qty,
            seller: fill.seller.client,
            buyer: fill.buyer.client,
            buy_request: fill.buyer.request,
            list_request: fill.seller.request,
            pinned: self
                .titles
                .is_pinned(fill.title_id)
                .then_some(PinnedTitle(fill.title_id)),
        }));
    }

    fn remove_bid(&mut self, idx: Idx) -> RestingBuy {
        let bid = self.buys.remove(&mut self.titles, idx);
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
        let mut rows: Vec<ShelfRow> = self
            .shelf
            .rows()
            .map(|(id, price, qty)| ShelfRow {
                title: self.titles.title(id).clone(),
                price,
                // A side's total at one price is at most the shelf's capacity.
                qty: qty as u32,
            })
            .collect();
        rows.sort_unstable_by(|a, b| (&a.title, a.price).cmp(&(&b.title, b.price)));
        rows
    }

    /// Checks the engine's internal consistency: the totals balance, and every index of both
    /// books holds exactly what the orders imply. Tests call it after every command.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let s = &self.stats;
        if s.books_listed != s.books_sold + u64::from(s.books_on_shelf) {
            return Err(InvariantViolation::Unbalanced {
                listed: s.books_listed,
                sold: s.books_sold,
                shelf: s.books_on_shelf,
            });
        }
        let listed = self.shelf.copies();
        if listed != u64::from(s.books_on_shelf) {
            return Err(InvariantViolation::ShelfCount {
                counted: s.books_on_shelf,
                listed,
            });
        }
        if s.books_on_shelf > self.capacity {
            return Err(InvariantViolation::OverCapacity {
                shelf: s.books_on_shelf,
                capacity: self.capacity,
            });
        }
        if self.buys.len() != s.resting_buys as usize {
            return Err(InvariantViolation::RestingCount {
                counted: s.resting_buys,
                indexed: self.buys.len(),
            });
        }
        self.shelf.check()?;
        self.buys.check()?;
        let mut counted = Vec::new();
        self.shelf.count_titles(&mut counted);
        self.buys.count_titles(&mut counted);
        self.titles
            .check(&counted)
            .map_err(|title| InvariantViolation::TitlesDisagree { title })
    }
}
