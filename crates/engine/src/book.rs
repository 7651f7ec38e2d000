//! The engine's two books, each a named structure that keeps its own indexes in step: the
//! [`Shelf`] (listings by price then arrival, per title and across titles) and the [`BuyBook`]
//! (resting buys by limit then arrival, per title and for "any title", by request, by deadline
//! and by client). Orders live in arenas and sit on flat price levels ([`Levels`]); titles are
//! interned ids ([`Titles`]). Every insertion and removal goes through one method per book,
//! and `check` cross-checks every index against the orders themselves (exchange-core's
//! `validateInternalState`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::arena::{Arena, Idx};
use crate::levels::{Chain, Levels, Links, Priced, Side};
use crate::titles::{TitleId, Titles};
use crate::types::{ClientId, Millis, Price, RequestId};
use crate::InvariantViolation;

/// Arrival order: a global sequence number, so "oldest first" is well defined across titles.
pub(crate) type Seq = u64;

/// Which listings a buy may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    Title(TitleId),
    Any,
}

#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) title: TitleId,
    pub(crate) seller: ClientId,
    pub(crate) request: RequestId,
    pub(crate) price: Price,
    pub(crate) seq: Seq,
    pub(crate) qty: u32,
    /// Among the listings of its title at its price.
    in_title: Links,
    /// Among the listings of every title at its price.
    in_all: Links,
}

impl Listing {
    pub(crate) fn new(
        title: TitleId,
        seller: ClientId,
        request: RequestId,
        price: Price,
        seq: Seq,
        qty: u32,
    ) -> Self {
        Self {
            title,
            seller,
            request,
            price,
            seq,
            qty,
            in_title: Links::NONE,
            in_all: Links::NONE,
        }
    }
}

impl Priced for Listing {
    fn price(&self) -> Price {
        self.price
    }
    fn open_qty(&self) -> u32 {
        self.qty
    }
}

/// The side of one title's listings.
#[derive(Debug, Clone)]
pub(crate) struct InTitle;
/// The side of every title's listings (what a buy of any title takes from).
#[derive(Debug, Clone)]
pub(crate) struct InAll;

impl Chain for InTitle {
    type Order = Listing;
    fn links(l: &Listing) -> Links {
        l.in_title
    }
    fn links_mut(l: &mut Listing) -> &mut Links {
        &mut l.in_title
    }
}

impl Chain for InAll {
    type Order = Listing;
    fn links(l: &Listing) -> Links {
        l.in_all
    }
    fn links_mut(l: &mut Listing) -> &mut Links {
        &mut l.in_all
    }
}

/// What one take from a listing gave.
pub(crate) struct Taken {
    pub(crate) title: TitleId,
    pub(crate) seller: ClientId,
    pub(crate) request: RequestId,
    pub(crate) price: Price,
    pub(crate) qty: u32,
}

/// The listings on the shelf.
#[derive(Debug, Clone)]
pub(crate) struct Shelf {
    listings: Arena<Listing>,
    /// Per title, indexed by its id (grown as ids are handed out).
    by_title: Vec<Levels<InTitle>>,
    all: Levels<InAll>,
}

impl Default for Shelf {
    fn default() -> Self {
        Self {
            listings: Arena::default(),
            by_title: Vec::new(),
            all: Levels::new(Side::Asks),
        }
    }
}

impl Shelf {
    pub(crate) fn insert(&mut self, titles: &mut Titles, listing: Listing) {
        let title = listing.title;
        titles.retain(title);
        let idx = self.listings.insert(listing);
        side_of(&mut self.by_title, title, titles, Side::Asks).push(&mut self.listings, idx);
        self.all.push(&mut self.listings, idx);
    }

    /// Every listing, in no particular order (for a snapshot, which sorts them by arrival).
    pub(crate) fn listings(&self) -> impl Iterator<Item = &Listing> {
        self.listings.iter().map(|(_, l)| l)
    }

    /// Takes up to `qty` copies from the listing at `idx`. An emptied listing leaves the shelf.
    pub(crate) fn take(&mut self, titles: &mut Titles, idx: Idx, qty: u32) -> Taken {
        let listing = self.listings.get(idx);
        let taken = Taken {
            title: listing.title,
            seller: listing.seller,
            request: listing.request,
            price: listing.price,
            qty: qty.min(listing.qty),
        };
        let by_title = &mut self.by_title[taken.title as usize];
        if taken.qty == listing.qty {
            by_title.unlink(&mut self.listings, idx);
            self.all.unlink(&mut self.listings, idx);
            self.listings.remove(idx);
            titles.release(taken.title);
        } else {
            by_title.reduce(taken.price, taken.qty);
            self.all.reduce(taken.price, taken.qty);
            self.listings.get_mut(idx).qty -= taken.qty;
        }
        taken
    }

    /// The cheapest, then oldest, listing a buy may take.
    pub(crate) fn best_for(&self, wanted: Wanted, max_price: Price) -> Option<Idx> {
        let best = match wanted {
            Wanted::Title(t) => self.by_title.get(t as usize)?.best(),
            Wanted::Any => self.all.best(),
        }?;
        (self.listings.get(best).price <= max_price).then_some(best)
    }

    /// Every title's copies at each price, cheapest first, without looking at the listings.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (TitleId, Price, u64)> + '_ {
        self.by_title.iter().enumerate().flat_map(|(id, side)| {
            side.best_first()
                .map(move |(price, qty)| (id as TitleId, price, qty))
        })
    }

    /// Copies on the shelf, counted listing by listing.
    pub(crate) fn copies(&self) -> u64 {
        self.listings.iter().map(|(_, l)| u64::from(l.qty)).sum()
    }

    /// How many listings refer to each title id.
    pub(crate) fn count_titles(&self, counted: &mut Vec<u32>) {
        for (_, listing) in self.listings.iter() {
            bump(counted, listing.title);
        }
    }

    /// Every side agrees with the listings, and no listing is empty.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        if let Some((_, l)) = self.listings.iter().find(|(_, l)| l.qty == 0) {
            return Err(InvariantViolation::EmptyListing { seq: l.seq });
        }
        let disagrees = |index| InvariantViolation::IndexDisagrees { index };
        let mut met = 0usize;
        for (id, side) in self.by_title.iter().enumerate() {
            let mut wrong_title = false;
            side.check(&self.listings, |_, l| {
                met += 1;
                wrong_title |= l.title as usize != id;
            })
            .map_err(|()| disagrees("shelf by title"))?;
            if wrong_title {
                return Err(disagrees("shelf by title"));
            }
        }
        if met != self.listings.len() {
            return Err(disagrees("shelf by title"));
        }
        let mut met = 0usize;
        let mut oldest_first = true;
        let mut last: Option<(Price, Seq)> = None;
        self.all
            .check(&self.listings, |_, l| {
                met += 1;
                oldest_first &= last.is_none_or(|(p, s)| p != l.price || s < l.seq);
                last = Some((l.price, l.seq));
            })
            .map_err(|()| disagrees("shelf by price"))?;
        if met != self.listings.len() || !oldest_first {
            return Err(disagrees("shelf by price"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RestingBuy {
    pub(crate) client: ClientId,
    pub(crate) request: RequestId,
    pub(crate) wanted: Wanted,
    pub(crate) max_price: Price,
    pub(crate) filled: u32,
    pub(crate) remaining: u32,
    pub(crate) deadline: Option<Millis>,
    pub(crate) seq: Seq,
    links: Links,
}

impl RestingBuy {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: ClientId,
        request: RequestId,
        wanted: Wanted,
        max_price: Price,
        filled: u32,
        remaining: u32,
        deadline: Option<Millis>,
        seq: Seq,
    ) -> Self {
        Self {
            client,
            request,
            wanted,
            max_price,
            filled,
            remaining,
            deadline,
            seq,
            links: Links::NONE,
        }
    }
}

impl Priced for RestingBuy {
    fn price(&self) -> Price {
        self.max_price
    }
    fn open_qty(&self) -> u32 {
        self.remaining
    }
}

/// The side of resting buys (of one title, or of any title).
#[derive(Debug, Clone)]
pub(crate) struct Bids;

impl Chain for Bids {
    type Order = RestingBuy;
    fn links(b: &RestingBuy) -> Links {
        b.links
    }
    fn links_mut(b: &mut RestingBuy) -> &mut Links {
        &mut b.links
    }
}

/// The resting buys.
#[derive(Debug, Clone)]
pub(crate) struct BuyBook {
    orders: Arena<RestingBuy>,
    /// Buys of one title, indexed by its id.
    by_title: Vec<Levels<Bids>>,
    any: Levels<Bids>,
    /// foldhash, as the title table: only looked up, never iterated for a decision.
    by_request: HashMap<(ClientId, RequestId), Idx, foldhash::fast::RandomState>,
    /// Resting buys per client, for the view and for a client that leaves.
    per_client: BTreeMap<ClientId, u32>,
    deadlines: BTreeSet<(Millis, Seq, Idx)>,
}

impl Default for BuyBook {
    fn default() -> Self {
        Self {
            orders: Arena::default(),
            by_title: Vec::new(),
            any: Levels::new(Side::Bids),
            by_request: HashMap::default(),
            per_client: BTreeMap::new(),
            deadlines: BTreeSet::new(),
        }
    }
}

impl BuyBook {
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    fn side_mut(&mut self, wanted: Wanted) -> &mut Levels<Bids> {
        match wanted {
            Wanted::Title(t) => &mut self.by_title[t as usize],
            Wanted::Any => &mut self.any,
        }
    }

    pub(crate) fn insert(&mut self, titles: &mut Titles, buy: RestingBuy) {
        let (wanted, client, request, deadline, seq) =
            (buy.wanted, buy.client, buy.request, buy.deadline, buy.seq);
        let idx = self.orders.insert(buy);
        match wanted {
            Wanted::Title(t) => {
                titles.retain(t);
                side_of(&mut self.by_title, t, titles, Side::Bids).push(&mut self.orders, idx);
            }
            Wanted::Any => self.any.push(&mut self.orders, idx),
        }
        if let Some(d) = deadline {
            self.deadlines.insert((d, seq, idx));
        }
        self.by_request.insert((client, request), idx);
        *self.per_client.entry(client).or_default() += 1;
    }

    pub(crate) fn remove(&mut self, titles: &mut Titles, idx: Idx) -> RestingBuy {
        let wanted = self.orders.get(idx).wanted;
        match wanted {
            Wanted::Title(t) => self.by_title[t as usize].unlink(&mut self.orders, idx),
            Wanted::Any => self.any.unlink(&mut self.orders, idx),
        }
        let buy = self.orders.remove(idx);
        if let Wanted::Title(t) = wanted {
            titles.release(t);
        }
        if let Some(d) = buy.deadline {
            self.deadlines.remove(&(d, buy.seq, idx));
        }
        self.by_request.remove(&(buy.client, buy.request));
        let count = self.per_client.get_mut(&buy.client).expect("counted");
        *count -= 1;
        if *count == 0 {
            self.per_client.remove(&buy.client);
        }
        buy
    }

    /// Every resting buy, in no particular order (for a snapshot, which sorts them by arrival).
    pub(crate) fn buys(&self) -> impl Iterator<Item = &RestingBuy> {
        self.orders.iter().map(|(_, b)| b)
    }

    pub(crate) fn get(&self, idx: Idx) -> &RestingBuy {
        self.orders.get(idx)
    }

    /// `qty` copies went to the buy at `idx`, which stays resting (or is removed next).
    pub(crate) fn fill(&mut self, idx: Idx, qty: u32) {
        let (wanted, price) = {
            let buy = self.orders.get_mut(idx);
            buy.remaining -= qty;
            buy.filled += qty;
            (buy.wanted, buy.max_price)
        };
        self.side_mut(wanted).reduce(price, qty);
    }

    pub(crate) fn idx_of(&self, client: ClientId, request: RequestId) -> Option<Idx> {
        self.by_request.get(&(client, request)).copied()
    }

    /// The buys of one client, oldest first. A scan: clients leave far less often than they
    /// trade.
    pub(crate) fn of_client(&self, client: ClientId) -> Vec<Idx> {
        if !self.per_client.contains_key(&client) {
            return Vec::new();
        }
        let mut buys: Vec<(Seq, Idx)> = self
            .orders
            .iter()
            .filter(|(_, b)| b.client == client)
            .map(|(idx, b)| (b.seq, idx))
            .collect();
        buys.sort_unstable();
        buys.into_iter().map(|(_, idx)| idx).collect()
    }

    /// How many buys one client has resting.
    pub(crate) fn count_of_client(&self, client: ClientId) -> usize {
        self.per_client.get(&client).map_or(0, |&n| n as usize)
    }

    /// Clients that have at least one resting buy, in id order.
    pub(crate) fn clients(&self) -> Vec<ClientId> {
        self.per_client.keys().copied().collect()
    }

    /// The buy whose deadline is earliest, if it is at or before `now`.
    pub(crate) fn first_due(&self, now: Millis) -> Option<Idx> {
        let &(deadline, _, idx) = self.deadlines.first()?;
        (deadline <= now).then_some(idx)
    }

    /// The resting buy a new listing of `title` at `price` fills first: highest limit, then
    /// oldest, among buys of this title and buys of any title.
    pub(crate) fn best_for(&self, title: TitleId, price: Price) -> Option<Idx> {
        let rank = |idx: Idx| {
            let b = self.orders.get(idx);
            (std::cmp::Reverse(b.max_price), b.seq)
        };
        let for_title = self.by_title.get(title as usize).and_then(Levels::best);
        let best = match (for_title, self.any.best()) {
            (Some(a), Some(b)) => {
                if rank(a) < rank(b) {
                    a
                } else {
                    b
                }
            }
            (a, b) => a.or(b)?,
        };
        (self.orders.get(best).max_price >= price).then_some(best)
    }

    /// How many of `qty` new copies of `title` at `price` resting buys would take at once:
    /// the open quantities of the levels that accept the price, summed level by level.
    pub(crate) fn matchable(&self, title: TitleId, price: Price, qty: u32) -> u32 {
        let titled = self.by_title.get(title as usize).into_iter();
        let mut total = 0u64;
        for side in titled.chain(std::iter::once(&self.any)) {
            for (limit, open) in side.best_first() {
                if limit < price {
                    break;
                }
                total += open;
                if total >= u64::from(qty) {
                    return qty;
                }
            }
        }
        total as u32
    }

    /// How many resting buys refer to each title id.
    pub(crate) fn count_titles(&self, counted: &mut Vec<u32>) {
        for (_, buy) in self.orders.iter() {
            if let Wanted::Title(t) = buy.wanted {
                bump(counted, t);
            }
        }
    }

    /// Every index holds exactly what the orders imply, and no order is empty.
    pub(crate) fn check(&self) -> Result<(), InvariantViolation> {
        let disagrees = |index| Err(InvariantViolation::IndexDisagrees { index });
        let mut by_request = HashMap::new();
        let mut per_client = BTreeMap::new();
        let mut deadlines = BTreeSet::new();
        for (idx, buy) in self.orders.iter() {
            if buy.remaining == 0 {
                return Err(InvariantViolation::EmptyBuy { seq: buy.seq });
            }
            by_request.insert((buy.client, buy.request), idx);
            *per_client.entry(buy.client).or_insert(0u32) += 1;
            if let Some(d) = buy.deadline {
                deadlines.insert((d, buy.seq, idx));
            }
        }
        let mut met_titled = 0usize;
        for (id, side) in self.by_title.iter().enumerate() {
            let mut wrong = false;
            let walked = side.check(&self.orders, |_, b| {
                met_titled += 1;
                wrong |= b.wanted != Wanted::Title(id as TitleId);
            });
            if walked.is_err() || wrong {
                return disagrees("resting buys by title");
            }
        }
        let titled = self
            .orders
            .iter()
            .filter(|(_, b)| b.wanted != Wanted::Any)
            .count();
        if met_titled != titled {
            return disagrees("resting buys by title");
        }
        let mut met_any = 0usize;
        let mut wrong = false;
        let walked = self.any.check(&self.orders, |_, b| {
            met_any += 1;
            wrong |= b.wanted != Wanted::Any;
        });
        if walked.is_err() || wrong || met_any != self.orders.len() - titled {
            return disagrees("resting buys of any title");
        }
        let indexed: HashMap<_, _> = self.by_request.iter().map(|(k, v)| (*k, *v)).collect();
        if by_request != indexed {
            return disagrees("resting buys by request");
        }
        if per_client != self.per_client {
            return disagrees("resting buys by client");
        }
        if deadlines != self.deadlines {
            return disagrees("resting buys by deadline");
        }
        Ok(())
    }
}

/// The side of title `id` in a per-title table, growing the table to every id handed out so
/// far if `id` is new to it.
#[inline]
fn side_of<'a, C: Chain>(
    by_title: &'a mut Vec<Levels<C>>,
    id: TitleId,
    titles: &Titles,
    side: Side,
) -> &'a mut Levels<C> {
    let at = id as usize;
    if by_title.len() <= at {
        by_title.resize_with(titles.capacity().max(at + 1), || Levels::new(side));
    }
    &mut by_title[at]
}

fn bump(counted: &mut Vec<u32>, id: TitleId) {
    let id = id as usize;
    if counted.len() <= id {
        counted.resize(id + 1, 0);
    }
    counted[id] += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Title;

    fn buy(wanted: Wanted, deadline: Option<Millis>, seq: Seq) -> RestingBuy {
        RestingBuy::new(
            ClientId(1),
            RequestId(seq),
            wanted,
            Price::from_cents(500).unwrap(),
            0,
            2,
            deadline,
            seq,
        )
    }

    #[test]
    fn a_consistent_book_passes_and_each_broken_index_is_named() {
        let mut titles = Titles::default();
        let dune = titles.intern(&Title::new("Dune").unwrap());
        let mut book = BuyBook::default();
        book.insert(&mut titles, buy(Wanted::Title(dune), Some(10), 1));
        book.insert(&mut titles, buy(Wanted::Any, None, 2));
        assert_eq!(book.check(), Ok(()));

        let mut lost_title = std::mem::take(&mut book.by_title);
        lost_title.clear();
        let err = |index| Err(InvariantViolation::IndexDisagrees { index });
        assert_eq!(book.check(), err("resting buys by title"));
        book.by_title = Vec::new();
        book.by_title
            .resize_with(titles.capacity(), || Levels::new(Side::Bids));
        let idx = book.idx_of(ClientId(1), RequestId(1)).unwrap();
        book.by_title[dune as usize].push(&mut book.orders, idx);
        assert_eq!(book.check(), Ok(()));

        let deadlines = std::mem::take(&mut book.deadlines);
        assert_eq!(book.check(), err("resting buys by deadline"));
        book.deadlines = deadlines;

        let stale = book.by_request.insert((ClientId(9), RequestId(9)), 0);
        assert_eq!(stale, None);
        assert_eq!(book.check(), err("resting buys by request"));
        book.by_request.remove(&(ClientId(9), RequestId(9)));

        *book.per_client.get_mut(&ClientId(1)).unwrap() += 1;
        assert_eq!(book.check(), err("resting buys by client"));
    }

    #[test]
    fn a_listing_missing_from_a_side_is_caught() {
        let mut titles = Titles::default();
        let emma = titles.intern(&Title::new("Emma").unwrap());
        let mut shelf = Shelf::default();
        let price = Price::from_cents(300).unwrap();
        shelf.insert(
            &mut titles,
            Listing::new(emma, ClientId(2), RequestId(1), price, 1, 3),
        );
        assert_eq!(shelf.check(), Ok(()));
        let best = shelf.best_for(Wanted::Any, price).unwrap();
        assert_eq!(shelf.take(&mut titles, best, 1).qty, 1);
        assert_eq!(shelf.check(), Ok(()));
        shelf.by_title[emma as usize] = Levels::new(Side::Asks);
        assert_eq!(
            shelf.check(),
            Err(InvariantViolation::IndexDisagrees {
                index: "shelf by title"
            })
        );
    }
}
