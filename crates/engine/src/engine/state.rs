//! The engine's state as plain data, and an engine rebuilt from it: what a snapshot holds.
//!
//! Everything the engine decides by is in here: the orders with their arrival numbers (price
//! then arrival is the priority on both books), the counters that number what comes next, and
//! the totals. What is left out is how the engine happens to store it (arena slots, title ids,
//! index structures): [`Engine::from_state`] rebuilds those by inserting the orders oldest
//! first, so the rebuilt engine answers every later command as the original would.
//!
//! A state may come from a file, so [`Engine::from_state`] trusts nothing in it: every value
//! is checked against the rules the engine keeps, and the message names the order and field.

use super::{Engine, Stats};
use crate::book::{Listing, RestingBuy, Seq, Wanted};
use crate::types::{BuyTarget, ClientId, Millis, Price, RequestId, Title, MAX_CAPACITY, MAX_QTY};

/// The whole state of an [`Engine`], orders oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineState {
    pub capacity: u32,
    /// The arrival number the next order that stays on a book gets.
    pub next_seq: u64,
    pub next_trade_id: u64,
    pub stats: Stats,
    /// The shelf, by arrival.
    pub listings: Vec<ListingState>,
    /// The resting buys, by arrival.
    pub buys: Vec<BuyState>,
}

/// One listing on the shelf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingState {
    pub seq: u64,
    pub title: Title,
    pub seller: ClientId,
    pub request: RequestId,
    pub price: Price,
    /// Copies left on the shelf.
    pub qty: u32,
}

/// One resting buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyState {
    pub seq: u64,
    pub client: ClientId,
    pub request: RequestId,
    pub target: BuyTarget,
    pub max_price: Price,
    pub filled: u32,
    pub remaining: u32,
    pub deadline: Option<Millis>,
}

/// Why a state cannot be an engine's: the first rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("capacity: {0} is outside 1..={MAX_CAPACITY}")]
    Capacity(u32),
    #[error("{book} #{index}: {field}: {problem}")]
    Order {
        book: &'static str,
        index: usize,
        field: &'static str,
        problem: String,
    },
    #[error("totals: {0}")]
    Totals(String),
    #[error("the rebuilt engine breaks an invariant: {0}")]
    Invariant(#[from] super::InvariantViolation),
}

impl Engine {
    /// The engine's state, orders oldest first.
    pub fn state(&self) -> EngineState {
        let mut listings: Vec<ListingState> = self
            .shelf
            .listings()
            .map(|l| ListingState {
                seq: l.seq,
                title: self.titles.title(l.title).clone(),
                seller: l.seller,
                request: l.request,
                price: l.price,
                qty: l.qty,
            })
            .collect();
        listings.sort_unstable_by_key(|l| l.seq);
        let mut buys: Vec<BuyState> = self
            .buys
            .buys()
            .map(|b| BuyState {
                seq: b.seq,
                client: b.client,
                request: b.request,
                target: match b.wanted {
                    Wanted::Title(id) => BuyTarget::Title(self.titles.title(id).clone()),
                    Wanted::Any => BuyTarget::Any,
                },
                max_price: b.max_price,
                filled: b.filled,
                remaining: b.remaining,
                deadline: b.deadline,
            })
            .collect();
        buys.sort_unstable_by_key(|b| b.seq);
        EngineState {
            capacity: self.capacity,
            next_seq: self.next_seq,
            next_trade_id: self.next_trade_id,
            stats: self.stats,
            listings,
            buys,
        }
    }

    /// Rebuilds an engine from `state`, after checking every rule the engine keeps: arrival
    /// numbers increasing and below `next_seq`, quantities within bounds, no request resting
    /// twice, and totals that agree with the orders.
    pub fn from_state(state: &EngineState) -> Result<Engine, StateError> {
        check_state(state)?;
        let mut engine = Engine::new(state.capacity);
        for l in &state.listings {
            let id = engine.titles.intern(&l.title);
            let listing = Listing::new(id, l.seller, l.request, l.price, l.seq, l.qty);
            engine.shelf.insert(&mut engine.titles, listing);
        }
        for b in &state.buys {
            let wanted = match &b.target {
                BuyTarget::Title(t) => Wanted::Title(engine.titles.intern(t)),
                BuyTarget::Any => Wanted::Any,
            };
            let buy = RestingBuy::new(
                b.client,
                b.request,
                wanted,
                b.max_price,
                b.filled,
                b.remaining,
                b.deadline,
                b.seq,
            );
            engine.buys.insert(&mut engine.titles, buy);
        }
        engine.next_seq = state.next_seq;
        engine.next_trade_id = state.next_trade_id;
        engine.stats = state.stats;
        engine.check_invariants()?;
        Ok(engine)
    }
}

/// The rules of a state that the rebuilt engine's own invariant check would not name as
/// clearly (or at all: arrival order, bounds, duplicates).
fn check_state(state: &EngineState) -> Result<(), StateError> {
    if state.capacity == 0 || state.capacity > MAX_CAPACITY {
        return Err(StateError::Capacity(state.capacity));
    }
    let mut last = 0;
    for (i, l) in state.listings.iter().enumerate() {
        let order = OrderFields::new("listing", i, l.seq, state.next_seq);
        order.check(&mut last, ("qty", l.qty), ("seller", l.seller))?;
    }
    // Arrival numbers increase within each book, so a number used twice is one of each.
    let listing_seqs: Vec<Seq> = state.listings.iter().map(|l| l.seq).collect();
    last = 0;
    let mut requests = std::collections::HashSet::new();
    for (i, b) in state.buys.iter().enumerate() {
        let order = OrderFields::new("buy", i, b.seq, state.next_seq);
        order.check(&mut last, ("remaining", b.remaining), ("client", b.client))?;
        if listing_seqs.binary_search(&b.seq).is_ok() {
            return Err(order.bad("seq", format!("{} is a listing's too", b.seq)));
        }
        if u64::from(b.filled) + u64::from(b.remaining) > u64::from(MAX_QTY) {
            let problem = format!(
                "{} filled + {} remaining is over {MAX_QTY}",
                b.filled, b.remaining
            );
            return Err(order.bad("filled", problem));
        }
        if !requests.insert((b.client, b.request)) {
            let problem = format!(
                "request {} of client {} rests twice",
                b.request.0, b.client.0
            );
            return Err(order.bad("request", problem));
        }
    }
    let s = &state.stats;
    let on_shelf: u64 = state.listings.iter().map(|l| u64::from(l.qty)).sum();
    let disagree = if s.capacity != state.capacity {
        format!(
            "capacity {} in the totals is not the store's {}",
            s.capacity, state.capacity
        )
    } else if u64::from(s.books_on_shelf) != on_shelf {
        format!(
            "books_on_shelf {} but the listings hold {on_shelf}",
            s.books_on_shelf
        )
    } else if s.resting_buys as usize != state.buys.len() {
        format!(
            "resting_buys {} but there are {} buys",
            s.resting_buys,
            state.buys.len()
        )
    } else if state.next_trade_id == 0 || s.trades != state.next_trade_id - 1 {
        format!(
            "trades {} but the next trade id is {}",
            s.trades, state.next_trade_id
        )
    } else {
        return Ok(());
    };
    Err(StateError::Totals(disagree))
}

/// One order of a state, for naming it in an error.
struct OrderFields {
    book: &'static str,
    index: usize,
    seq: Seq,
    next_seq: Seq,
}

impl OrderFields {
    fn new(book: &'static str, index: usize, seq: Seq, next_seq: Seq) -> Self {
        Self {
            book,
            index,
            seq,
            next_seq,
        }
    }

    fn bad(&self, field: &'static str, problem: String) -> StateError {
        StateError::Order {
            book: self.book,
            index: self.index,
            field,
            problem,
        }
    }

    /// What listings and buys share: an arrival number after the previous order's (`last`,
    /// moved on) and below `next_seq`, an open quantity within bounds, a real client.
    fn check(
        &self,
        last: &mut Seq,
        (qty_field, qty): (&'static str, u32),
        (client_field, client): (&'static str, ClientId),
    ) -> Result<(), StateError> {
        if self.seq <= *last || self.seq >= self.next_seq {
            let problem = format!("{} is not after {last} and below next_seq", self.seq);
            return Err(self.bad("seq", problem));
        }
        *last = self.seq;
        if !(1..=MAX_QTY).contains(&qty) {
            return Err(self.bad(qty_field, format!("{qty} is outside 1..={MAX_QTY}")));
        }
        if client.0 == 0 {
            return Err(self.bad(client_field, "0 is not a client id".into()));
        }
        Ok(())
    }
}
