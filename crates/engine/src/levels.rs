//! Price levels: one side of one book, each price with its orders oldest first (a doubly
//! linked list threaded through the orders' arena) and their total quantity.
//!
//! The best level is held apart from the others, which are in a `BTreeMap`: taking from the
//! best price (every fill), adding at it, and opening or emptying the only level (a listing
//! that a buy takes at once) touch no tree. Any other price costs one tree operation,
//! O(log levels), so no pattern of prices a hostile client sends makes a level expensive (a
//! sorted array was as fast on the common path but moved up to the whole array, 50 µs at
//! 100,000 levels, when each listing opened a new worst price).

use std::collections::BTreeMap;
use std::marker::PhantomData;

use crate::arena::{Arena, Idx, NIL};
use crate::types::Price;

/// An order's neighbours at its price: the one that arrived just before it and just after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Links {
    pub(crate) older: Idx,
    pub(crate) newer: Idx,
}

impl Links {
    pub(crate) const NONE: Links = Links {
        older: NIL,
        newer: NIL,
    };
}

/// What a side sorts and sums of an order: its price and the quantity still open.
pub(crate) trait Priced {
    fn price(&self) -> Price;
    fn open_qty(&self) -> u32;
}

/// Which of an order's link pairs a side threads through (a listing is on two sides: its
/// title's and every title's).
pub(crate) trait Chain {
    type Order: Priced;
    fn links(order: &Self::Order) -> Links;
    fn links_mut(order: &mut Self::Order) -> &mut Links;
}

/// Which price is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Listings: the cheapest first.
    Asks,
    /// Buys: the highest limit first.
    Bids,
}

impl Side {
    fn key(self, price: Price) -> u64 {
        match self {
            Side::Asks => u64::MAX - price.cents(),
            Side::Bids => price.cents(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    price: Price,
    /// The open quantity of every order at this price.
    total: u64,
    oldest: Idx,
    newest: Idx,
}

/// One side of a book.
#[derive(Debug, Clone)]
pub(crate) struct Levels<C> {
    side: Side,
    /// The best level; `None` only when the side is empty.
    best: Option<Level>,
    /// Every other level by key (see [`Levels::key`]): all below the best's.
    rest: BTreeMap<u64, Level>,
    chain: PhantomData<C>,
}

impl<C: Chain> Levels<C> {
    pub(crate) fn new(side: Side) -> Self {
        Self {
            side,
            best: None,
            rest: BTreeMap::new(),
            chain: PhantomData,
        }
    }

    /// The sort key: the better the price, the larger.
    fn key(&self, price: Price) -> u64 {
        self.side.key(price)
    }

    fn level_mut(&mut self, price: Price) -> &mut Level {
        let key = self.key(price);
        match &mut self.best {
            Some(best) if best.price == price => best,
            _ => self.rest.get_mut(&key).expect("the order's level exists"),
        }
    }

    /// Adds the order at `idx` as the newest at its price.
    pub(crate) fn push(&mut self, arena: &mut Arena<C::Order>, idx: Idx) {
        let order = arena.get(idx);
        let (price, qty) = (order.price(), u64::from(order.open_qty()));
        let side = self.side;
        let key = side.key(price);
        let fresh = Level {
            price,
            total: qty,
            oldest: idx,
            newest: idx,
        };
        let level = match &mut self.best {
            None => {
                self.best = Some(fresh);
                None
            }
            Some(best) if best.price == price => Some(best),
            Some(best) if side.key(best.price) < key => {
                let old = std::mem::replace(best, fresh);
                self.rest.insert(side.key(old.price), old);
                None
            }
            Some(_) => match self.rest.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => Some(e.into_mut()),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(fresh);
                    None
                }
            },
        };
        match level {
            None => *C::links_mut(arena.get_mut(idx)) = Links::NONE,
            Some(level) => {
                let newest = level.newest;
                C::links_mut(arena.get_mut(newest)).newer = idx;
                *C::links_mut(arena.get_mut(idx)) = Links {
                    older: newest,
                    newer: NIL,
                };
                level.newest = idx;
                level.total += qty;
            }
        }
    }

    /// The oldest order at the best price.
    pub(crate) fn best(&self) -> Option<Idx> {
        self.best.map(|l| l.oldest)
    }

    /// `qty` was taken from an order at `price` that stays on this side (its open quantity is
    /// already lower, or about to be).
    pub(crate) fn reduce(&mut self, price: Price, qty: u32) {
        self.level_mut(price).total -= u64::from(qty);
    }

    /// Takes the order at `idx` off this side, with the open quantity it still has.
    pub(crate) fn unlink(&mut self, arena: &mut Arena<C::Order>, idx: Idx) {
        let order = arena.get(idx);
        let (price, qty, links) = (order.price(), order.open_qty(), C::links(order));
        let level = self.level_mut(price);
        match links.older {
            NIL => level.oldest = links.newer,
            older => C::links_mut(arena.get_mut(older)).newer = links.newer,
        }
        match links.newer {
            NIL => level.newest = links.older,
            newer => C::links_mut(arena.get_mut(newer)).older = links.older,
        }
        level.total -= u64::from(qty);
        if level.oldest == NIL {
            if self.best.is_some_and(|b| b.price == price) {
                // The next best is the highest of the rest. A side often holds one price (one
                // title's copies at one price, the engine row's), and checking for that first
                // spares a call into the tree: 32 of 805 instructions a list-and-buy pair.
                self.best = if self.rest.is_empty() {
                    None
                } else {
                    self.rest.pop_last().map(|(_, l)| l)
                };
            } else {
                let key = self.key(price);
                self.rest.remove(&key);
            }
        }
    }

    /// Each price and its open quantity, the best first.
    pub(crate) fn best_first(&self) -> impl Iterator<Item = (Price, u64)> + '_ {
        let levels = self.best.iter().chain(self.rest.values().rev());
        levels.map(|l| (l.price, l.total))
    }

    /// Checks this side against its orders: the best level above the rest and each level under its own price's key, every list linked both
    /// ways and ending where its level says, every order at its level's price, every total the
    /// sum of its orders, no empty level. Calls `each` with every order, best price first and
    /// oldest first; the caller checks that the orders met are exactly the ones that should be.
    pub(crate) fn check(
        &self,
        arena: &Arena<C::Order>,
        mut each: impl FnMut(Idx, &C::Order),
    ) -> Result<(), ()> {
        let below_best = match &self.best {
            None => self.rest.is_empty(),
            Some(best) => self
                .rest
                .last_key_value()
                .is_none_or(|(&k, _)| k < self.key(best.price)),
        };
        if !below_best {
            return Err(());
        }
        let keyed = self.rest.iter().all(|(&k, l)| k == self.key(l.price));
        if !keyed {
            return Err(());
        }
        for level in self.best.iter().chain(self.rest.values().rev()) {
            if level.oldest == NIL {
                return Err(());
            }
            let (mut at, mut previous, mut total) = (level.oldest, NIL, 0u64);
            // A list longer than the arena is a cycle: stop rather than loop.
            let mut steps = 0usize;
            while at != NIL {
                steps += 1;
                if steps > arena.len() {
                    return Err(());
                }
                let order = arena.get(at);
                let links = C::links(order);
                if links.older != previous || order.price() != level.price {
                    return Err(());
                }
                total += u64::from(order.open_qty());
                each(at, order);
                (previous, at) = (at, links.newer);
            }
            if previous != level.newest || total != level.total {
                return Err(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A bare order: its price, open quantity and links.
    #[derive(Debug)]
    struct Order {
        price: Price,
        qty: u32,
        links: Links,
    }

    struct Only;

    impl Priced for Order {
        fn price(&self) -> Price {
            self.price
        }
        fn open_qty(&self) -> u32 {
            self.qty
        }
    }

    impl Chain for Only {
        type Order = Order;
        fn links(o: &Order) -> Links {
            o.links
        }
        fn links_mut(o: &mut Order) -> &mut Links {
            &mut o.links
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push {
            cents: u64,
            qty: u32,
        },
        /// Takes the n-th live order (modulo how many there are) off the side.
        Unlink(usize),
        /// Takes one copy from the best order, or all of it if it has one left.
        TakeOneFromBest,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..12u64, 1..4u32).prop_map(|(cents, qty)| Op::Push { cents, qty }),
            any::<usize>().prop_map(Op::Unlink),
            Just(Op::TakeOneFromBest),
        ]
    }

    proptest! {
        #[test]
        fn a_side_always_offers_the_best_price_then_the_oldest_order(
            asks in any::<bool>(),
            ops in prop::collection::vec(op(), 1..80),
        ) {
            let side = if asks { Side::Asks } else { Side::Bids };
            let mut levels = Levels::<Only>::new(side);
            let mut arena = Arena::default();
            // The model: live orders as (arrival, idx), in arrival order.
            let mut live: Vec<(usize, Idx)> = Vec::new();
            for (arrival, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push { cents, qty } => {
                        let price = Price::from_cents(cents).unwrap();
                        let idx = arena.insert(Order { price, qty, links: Links::NONE });
                        levels.push(&mut arena, idx);
                        live.push((arrival, idx));
                    }
                    Op::Unlink(n) if !live.is_empty() => {
                        let (_, idx) = live.remove(n % live.len());
                        levels.unlink(&mut arena, idx);
                        arena.remove(idx);
                    }
                    Op::TakeOneFromBest => {
                        if let Some(idx) = levels.best() {
                            let order = arena.get_mut(idx);
                            if order.qty == 1 {
                                levels.unlink(&mut arena, idx);
                                arena.remove(idx);
                                live.retain(|&(_, i)| i != idx);
                            } else {
                                order.qty -= 1;
                                let price = order.price;
                                levels.reduce(price, 1);
                            }
                        }
                    }
                    Op::Unlink(_) => {}
                }
                let expected = live
                    .iter()
                    .min_by_key(|&&(arrival, idx)| (std::cmp::Reverse(side.key(arena.get(idx).price)), arrival))
                    .map(|&(_, idx)| idx);
                prop_assert_eq!(levels.best(), expected);
                let mut walked = 0;
                prop_assert_eq!(levels.check(&arena, |_, _| walked += 1), Ok(()));
                prop_assert_eq!(walked, live.len());
                let total: u64 = live.iter().map(|&(_, i)| u64::from(arena.get(i).qty)).sum();
                prop_assert_eq!(levels.best_first().map(|(_, t)| t).sum::<u64>(), total);
            }
        }
    }
}
