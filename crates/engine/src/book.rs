//! The engine's two books, each a named structure that keeps its own indexes in step: the
//! [`Shelf`] (listings in price-time order, by title) and the [`BuyBook`] (resting buys by
//! limit-time order, by title or "any", by request and by deadline). Every insertion and
//! removal goes through one method per book, and `check` cross-checks every index against the
//! orders themselves (exchange-core's `validateInternalState`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::types::{BuyTarget, ClientId, Millis, Price, RequestId, Title};
use crate::InvariantViolation;

/// Arrival order: a global sequence number, so "oldest first" is well defined across titles.
pub(crate) type Seq = u64;

/// Where a listing stands on the shelf: cheapest first, then oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ShelfKey {
    pub(crate) price: Price,
    pub(crate) seq: Seq,
}

/// Where a resting buy stands: highest limit first, then oldest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BidKey {
    pub(crate) limit: Reverse<Price>,
    pub(crate) seq: Seq,
}

impl BidKey {
    pub(crate) fn accepts(&self, price: Price) -> bool {
        self.limit.0 >= price
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) title: Title,
    pub(crate) seller: ClientId,
    pub(crate) request: RequestId,
    pub(crate) qty: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct RestingBuy {
    pub(crate) client: ClientId,
    pub(crate) request: RequestId,
    pub(crate) target: BuyTarget,
    pub(crate) max_price: Price,
    pub(crate) filled: u32,
    pub(crate) remaining: u32,
    pub(crate) deadline: Option<Millis>,
}

impl RestingBuy {
    fn key(&self, seq: Seq) -> BidKey {
        BidKey {
            limit: Reverse(self.max_price),
            seq,
        }
    }
}

/// The listings on the shelf.
#[derive(Debug, Default)]
pub(crate) struct Shelf {
    listings: BTreeMap<ShelfKey, Listing>,
    by_title: HashMap<Title, BTreeSet<ShelfKey>>,
}

impl Shelf {
    pub(crate) fn insert(&mut self, key: ShelfKey, listing: Listing) {
        self.by_title
            .entry(listing.title.clone())
            .or_default()
            .insert(key);
        self.listings.insert(key, listing);
    }

    /// Takes up to `qty` copies from the listing at `key`; returns the listing as it was and
    /// how many were taken. An emptied listing leaves the shelf and its index.
    pub(crate) fn take(&mut self, key: ShelfKey, qty: u32) -> (Listing, u32) {
        let listing = self.listings.get_mut(&key).expect("indexed listing exists");
        let taken = qty.min(listing.qty);
        let before = listing.clone();
        listing.qty -= taken;
        if listing.qty == 0 {
            self.listings.remove(&key);
            remove_from_index(&mut self.by_title, &before.title, &key);
        }
        (before, taken)
    }

    /// The cheapest, then oldest, listing a buy may take.
    pub(crate) fn best_for(&self, target: &BuyTarget, max_price: Price) -> Option<ShelfKey> {
        let best = match target {
            BuyTarget::Title(t) => self.by_title.get(t)?.first().copied(),
            BuyTarget::Any => self.listings.keys().next().copied(),
        }?;
        (best.price <= max_price).then_some(best)
    }

    pub(crate) fn listings(&self) -> impl Iterator<Item = (&ShelfKey, &Listing)> {
        self.listings.iter()
    }

    /// Every index agrees with the listings, and no listing is empty.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        if let Some((key, _)) = self.listings.iter().find(|(_, l)| l.qty == 0) {
            return Err(InvariantViolation::EmptyListing { seq: key.seq });
        }
        let mut expected: HashMap<&Title, BTreeSet<ShelfKey>> = HashMap::new();
        for (key, listing) in &self.listings {
            expected.entry(&listing.title).or_default().insert(*key);
        }
        let indexed: HashMap<&Title, BTreeSet<ShelfKey>> =
            self.by_title.iter().map(|(t, s)| (t, s.clone())).collect();
        if expected != indexed {
            return Err(InvariantViolation::IndexDisagrees {
                index: "shelf by title",
            });
        }
        Ok(())
    }
}

/// The resting buys.
#[derive(Debug, Default)]
pub(crate) struct BuyBook {
    orders: HashMap<Seq, RestingBuy>,
    by_title: HashMap<Title, BTreeSet<BidKey>>,
    any: BTreeSet<BidKey>,
    by_request: BTreeMap<(ClientId, RequestId), Seq>,
    deadlines: BTreeSet<(Millis, Seq)>,
}

impl BuyBook {
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    pub(crate) fn insert(&mut self, seq: Seq, buy: RestingBuy) {
        let key = buy.key(seq);
        match &buy.target {
            BuyTarget::Title(t) => {
                self.by_title.entry(t.clone()).or_default().insert(key);
            }
            BuyTarget::Any => {
                self.any.insert(key);
            }
        }
        if let Some(d) = buy.deadline {
            self.deadlines.insert((d, seq));
        }
        self.by_request.insert((buy.client, buy.request), seq);
        self.orders.insert(seq, buy);
    }

    pub(crate) fn remove(&mut self, seq: Seq) -> RestingBuy {
        let buy = self.orders.remove(&seq).expect("bid exists");
        let key = buy.key(seq);
        match &buy.target {
            BuyTarget::Title(t) => remove_from_index(&mut self.by_title, t, &key),
            BuyTarget::Any => {
                self.any.remove(&key);
            }
        }
        if let Some(d) = buy.deadline {
            self.deadlines.remove(&(d, seq));
        }
        self.by_request.remove(&(buy.client, buy.request));
        buy
    }

    pub(crate) fn get_mut(&mut self, seq: Seq) -> &mut RestingBuy {
        self.orders.get_mut(&seq).expect("indexed bid exists")
    }

    pub(crate) fn seq_of(&self, client: ClientId, request: RequestId) -> Option<Seq> {
        self.by_request.get(&(client, request)).copied()
    }

    /// The buys of one client, oldest first.
    pub(crate) fn of_client(&self, client: ClientId) -> Vec<Seq> {
        let range = (client, RequestId(0))..=(client, RequestId(u64::MAX));
        let mut seqs: Vec<Seq> = self.by_request.range(range).map(|(_, &s)| s).collect();
        seqs.sort_unstable();
        seqs
    }

    /// How many buys one client has resting.
    pub(crate) fn count_of_client(&self, client: ClientId) -> usize {
        let range = (client, RequestId(0))..=(client, RequestId(u64::MAX));
        self.by_request.range(range).count()
    }

    /// Clients that have at least one resting buy, in id order.
    pub(crate) fn clients(&self) -> Vec<ClientId> {
        let mut clients: Vec<ClientId> = self.by_request.keys().map(|&(c, _)| c).collect();
        clients.dedup();
        clients
    }

    /// The buy whose deadline is earliest, if it is at or before `now`.
    pub(crate) fn first_due(&self, now: Millis) -> Option<Seq> {
        let &(deadline, seq) = self.deadlines.first()?;
        (deadline <= now).then_some(seq)
    }

    /// The resting buy a new listing at `price` fills first: highest limit, then oldest,
    /// among buys of this title and buys of any title.
    pub(crate) fn best_for(&self, title: &Title, price: Price) -> Option<Seq> {
        let for_title = self.by_title.get(title).and_then(|s| s.first());
        let best = match (for_title, self.any.first()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        best.accepts(price).then_some(best.seq)
    }

    /// How many of `qty` new copies at `price` resting buys would take at once.
    pub(crate) fn matchable(&self, title: &Title, price: Price, qty: u32) -> u32 {
        let accepts = |k: &&BidKey| k.accepts(price);
        let titled = self
            .by_title
            .get(title)
            .into_iter()
            .flatten()
            .take_while(accepts);
        let any = self.any.iter().take_while(accepts);
        let mut total = 0u32;
        for key in titled.chain(any) {
            total = total.saturating_add(self.orders[&key.seq].remaining);
            if total >= qty {
                return qty;
            }
        }
        total
    }

    /// Every index holds exactly the keys the orders imply, and no order is empty.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        let disagrees = |index| Err(InvariantViolation::IndexDisagrees { index });
        let mut by_title: HashMap<&Title, BTreeSet<BidKey>> = HashMap::new();
        let mut any = BTreeSet::new();
        let mut by_request = BTreeMap::new();
        let mut deadlines = BTreeSet::new();
        for (&seq, buy) in &self.orders {
            if buy.remaining == 0 {
                return Err(InvariantViolation::EmptyBuy { seq });
            }
            match &buy.target {
                BuyTarget::Title(t) => {
                    by_title.entry(t).or_default().insert(buy.key(seq));
                }
                BuyTarget::Any => {
                    any.insert(buy.key(seq));
                }
            }
            by_request.insert((buy.client, buy.request), seq);
            if let Some(d) = buy.deadline {
                deadlines.insert((d, seq));
            }
        }
        let indexed: HashMap<&Title, BTreeSet<BidKey>> =
            self.by_title.iter().map(|(t, s)| (t, s.clone())).collect();
        if by_title != indexed {
            return disagrees("resting buys by title");
        }
        if any != self.any {
            return disagrees("resting buys of any title");
        }
        if by_request != self.by_request {
            return disagrees("resting buys by request");
        }
        if deadlines != self.deadlines {
            return disagrees("resting buys by deadline");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn title(t: &str) -> Title {
        Title::new(t).unwrap()
    }

    fn buy(target: BuyTarget, deadline: Option<Millis>) -> RestingBuy {
        RestingBuy {
            client: ClientId(1),
            request: RequestId(7),
            target,
            max_price: Price::from_cents(500).unwrap(),
            filled: 0,
            remaining: 2,
            deadline,
        }
    }

    #[test]
    fn a_consistent_book_passes_and_each_broken_index_is_named() {
        let mut book = BuyBook::default();
        book.insert(1, buy(BuyTarget::Title(title("Dune")), Some(10)));
        assert_eq!(book.check(), Ok(()));

        let mut lost_title = BuyBook::default();
        lost_title.insert(1, buy(BuyTarget::Title(title("Dune")), None));
        lost_title.by_title.clear();
        assert_eq!(
            lost_title.check(),
            Err(InvariantViolation::IndexDisagrees {
                index: "resting buys by title"
            })
        );

        let mut lost_deadline = BuyBook::default();
        lost_deadline.insert(1, buy(BuyTarget::Any, Some(10)));
        lost_deadline.deadlines.clear();
        assert_eq!(
            lost_deadline.check(),
            Err(InvariantViolation::IndexDisagrees {
                index: "resting buys by deadline"
            })
        );

        let mut stale_request = BuyBook::default();
        stale_request.insert(1, buy(BuyTarget::Any, None));
        stale_request.orders.clear();
        stale_request.any.clear();
        assert_eq!(
            stale_request.check(),
            Err(InvariantViolation::IndexDisagrees {
                index: "resting buys by request"
            })
        );
    }

    #[test]
    fn a_listing_missing_from_the_title_index_is_caught() {
        let mut shelf = Shelf::default();
        let key = ShelfKey {
            price: Price::from_cents(300).unwrap(),
            seq: 1,
        };
        let listing = Listing {
            title: title("Emma"),
            seller: ClientId(2),
            request: RequestId(1),
            qty: 3,
        };
        shelf.insert(key, listing);
        assert_eq!(shelf.check(), Ok(()));
        assert_eq!(shelf.take(key, 1).1, 1);
        assert_eq!(shelf.check(), Ok(()));
        shelf.by_title.clear();
        assert_eq!(
            shelf.check(),
            Err(InvariantViolation::IndexDisagrees {
                index: "shelf by title"
            })
        );
    }
}
