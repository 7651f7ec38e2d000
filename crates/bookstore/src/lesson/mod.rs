//! The threads lesson: one workload of sellers and buyers, run against the store in several
//! ways, so a learner can compare what is shared and how it is synchronised.
//!
//! Every way implements [`Exchange`] (one order at a time, for one trader) and runs the same
//! trader loops ([`run_seller`], [`run_buyer`]): a seller lists its books one by one, waiting
//! while the store is full; a buyer buys its share one book at a time, waiting while there is
//! nothing to buy. What differs is only what sits behind `Exchange`:
//! - [`mutex`]: one engine behind a `Mutex`, `Condvar`s for "not full" and "not empty";
//! - [`rings`]: market threads that alone own their engines, reached through the SPSC rings and
//!   futex doorbells of the shared object, in process memory (one market thread, or K shards);
//! - [`shared_object`]: the real market process over the shared object.

pub mod mutex;
pub mod rings;
pub mod shared_object;

use std::time::{Duration, Instant};

use engine::{BuyTarget, Price, Title};

/// Titles the workload's books cycle through.
pub const TITLES: [&str; 8] = [
    "Dune",
    "Emma",
    "Ulysses",
    "Beloved",
    "Middlemarch",
    "Pedro Páramo",
    "The Trial",
    "Ficciones",
];

/// The price of title `t` (same for every copy: a buyer's limit never refuses it).
pub fn price_of(t: usize) -> Price {
    Price::from_cents(500 + 100 * t as u64).expect("a valid price")
}

/// The highest price in the workload: a buyer's limit.
pub fn max_price() -> Price {
    price_of(TITLES.len() - 1)
}

pub fn title(t: usize) -> Title {
    Title::new(TITLES[t % TITLES.len()]).expect("a valid title")
}

/// What one trader does: the titles a seller lists, one copy each, in order; or what a buyer
/// buys, one copy per entry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orders {
    Sell(Vec<usize>),
    Buy(Vec<Want>),
}

/// One copy a buyer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The cheapest copy of any title, oldest first.
    Any,
    /// A copy of title `t`.
    Title(usize),
}

/// Who trades what, and the store they trade in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub sellers: Vec<Vec<usize>>,
    pub buyers: Vec<Vec<Want>>,
    pub capacity: u32,
}

impl Workload {
    /// `sellers` sellers listing `orders` books each (titles in turn), and `buyers` buyers
    /// buying them all between them (`Any`), in a store of `capacity` books.
    pub fn standard(sellers: usize, buyers: usize, orders: usize, capacity: u32) -> Self {
        let seller_orders = (0..sellers)
            .map(|s| {
                (0..orders)
                    .map(|i| (s * orders + i) % TITLES.len())
                    .collect()
            })
            .collect();
        let total = sellers * orders;
        let buyer_orders = (0..buyers)
            .map(|b| vec![Want::Any; total / buyers + usize::from(b < total % buyers)])
            .collect();
        Self {
            sellers: seller_orders,
            buyers: buyer_orders,
            capacity,
        }
    }

    /// Every order of the run: listings plus buys.
    pub fn orders(&self) -> usize {
        self.sellers.iter().map(Vec::len).sum::<usize>()
            + self.buyers.iter().map(Vec::len).sum::<usize>()
    }

    /// The traders in a fixed order: sellers first (client ids 1..), then buyers.
    pub fn traders(&self) -> Vec<Orders> {
        let sellers = self.sellers.iter().cloned().map(Orders::Sell);
        let buyers = self.buyers.iter().cloned().map(Orders::Buy);
        sellers.chain(buyers).collect()
    }
}

/// How one attempt at an order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Done,
    /// A listing refused: the store is full.
    Full,
    /// A buy that found nothing to buy.
    Empty,
}

/// One trader's way to the store: an order at a time, and a way to wait when refused.
pub trait Exchange {
    /// Lists one copy of `title` at `price`.
    fn list(&mut self, title: &Title, price: Price) -> Attempt;
    /// Buys one copy (`target`) at up to `max_price`, now or not at all.
    fn buy(&mut self, target: &BuyTarget, max_price: Price) -> Attempt;
    /// Waits after the `consecutive`th refusal in a row (`Full` or `Empty`) before the next
    /// attempt. By default: yield a few times, then back off (2^n µs, at most 1 ms), so a
    /// waiting trader does not take the CPU from the traders that would end its wait.
    fn wait_after(&mut self, refused: Attempt, consecutive: u32) {
        let _ = refused;
        back_off(consecutive);
    }
}

/// What one trader measured.
#[derive(Debug, Clone, Default)]
pub struct TraderRun {
    /// Nanoseconds from an order's first attempt to its success, one per order.
    pub latencies_ns: Vec<u64>,
    /// Attempts refused (store full, nothing to buy), each followed by a wait.
    pub refusals: u64,
}

/// A seller's loop: each listing until it is accepted.
pub fn run_seller(exchange: &mut impl Exchange, titles: &[usize]) -> TraderRun {
    let mut run = TraderRun::with_capacity(titles.len());
    for &t in titles {
        let (title, price) = (title(t), price_of(t));
        run.until_done(exchange, |e| e.list(&title, price));
    }
    run
}

/// A buyer's loop: each buy until it gets its copy.
pub fn run_buyer(exchange: &mut impl Exchange, wants: &[Want]) -> TraderRun {
    let mut run = TraderRun::with_capacity(wants.len());
    let max = max_price();
    for want in wants {
        let target = match want {
            Want::Any => BuyTarget::Any,
            Want::Title(t) => BuyTarget::Title(title(*t)),
        };
        run.until_done(exchange, |e| e.buy(&target, max));
    }
    run
}

impl TraderRun {
    fn with_capacity(orders: usize) -> Self {
        Self {
            latencies_ns: Vec::with_capacity(orders),
            refusals: 0,
        }
    }

    /// One order: attempts until one is done, waiting after each refusal; records its latency.
    fn until_done<E: Exchange>(
        &mut self,
        exchange: &mut E,
        mut attempt: impl FnMut(&mut E) -> Attempt,
    ) {
        let started = Instant::now();
        let mut consecutive = 0;
        loop {
            match attempt(exchange) {
                Attempt::Done => break,
                refused => {
                    self.refusals += 1;
                    consecutive += 1;
                    exchange.wait_after(refused, consecutive);
                }
            }
        }
        self.latencies_ns.push(nanos(started.elapsed()));
    }
}

/// Yield for the first few refusals in a row, then sleep 2^n µs, at most 1 ms.
pub fn back_off(consecutive: u32) {
    if consecutive < 4 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(1 << consecutive.min(10)));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The books at the end of a run, as the lesson checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    pub listed: u64,
    pub sold: u64,
    pub on_shelf: u64,
    /// The shelf: (title, price in cents, copies), sorted.
    pub shelf: Vec<(String, u64, u64)>,
}

impl Books {
    pub fn balanced(&self) -> bool {
        self.listed == self.sold + self.on_shelf
    }

    fn of_engines<'e>(engines: impl IntoIterator<Item = &'e engine::Engine>) -> Self {
        let mut books = Books {
            listed: 0,
            sold: 0,
            on_shelf: 0,
            shelf: Vec::new(),
        };
        for engine in engines {
            let stats = engine.stats();
            books.listed += stats.books_listed;
            books.sold += stats.books_sold;
            books.on_shelf += u64::from(stats.books_on_shelf);
            books.shelf.extend(engine.shelf().into_iter().map(|r| {
                (
                    r.title.as_str().to_owned(),
                    r.price.cents(),
                    u64::from(r.qty),
                )
            }));
        }
        books.shelf.sort();
        books
    }
}

/// Synchronisation the run needed, as far as the variant can count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contention {
    /// Lock acquisitions that found the mutex held and had to wait.
    pub lock_waits: Option<u64>,
    /// Waits on a condition variable (store full, nothing to buy).
    pub condvar_waits: Option<u64>,
    /// `futex_wake` system calls made to wake a parked thread.
    pub futex_wakes: Option<u64>,
}

/// A whole run of one variant.
#[derive(Debug, Clone)]
pub struct VariantRun {
    pub wall: Duration,
    pub traders: Vec<TraderRun>,
    pub books: Books,
    pub contention: Contention,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPIN: Duration = Duration::from_micros(5);

    fn all_in_process(workload: &Workload) -> Vec<(&'static str, VariantRun)> {
        vec![
            ("mutex", mutex::run(workload)),
            ("market-thread", rings::run(workload, 1, SPIN)),
            ("sharded", rings::run(workload, 3, SPIN)),
        ]
    }

    #[test]
    fn every_in_process_variant_balances_and_sells_every_book_through_a_small_store() {
        // A store of 4 books for 2 × 300 listings: sellers wait for room again and again.
        let workload = Workload::standard(2, 3, 300, 4);
        for (name, run) in all_in_process(&workload) {
            assert!(run.books.balanced(), "{name}: {:?}", run.books);
            assert_eq!((run.books.listed, run.books.sold), (600, 600), "{name}");
            let orders: usize = run.traders.iter().map(|t| t.latencies_ns.len()).sum();
            assert_eq!(orders, workload.orders(), "{name}: one latency per order");
        }
    }

    fn one_seller_one_buyer() -> impl Strategy<Value = Workload> {
        prop::collection::vec(0..TITLES.len(), 1..40).prop_flat_map(|titles| {
            let n = titles.len();
            (Just(titles), prop::collection::vec(any::<bool>(), n)).prop_map(|(titles, keep)| {
                // The buyer wants some of the listed copies, in its own (shuffled) order.
                let mut wants: Vec<Want> = titles
                    .iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(t, _)| Want::Title(*t))
                    .collect();
                wants.reverse();
                Workload {
                    // Room for every copy in every shard: unbought copies stay on the shelf,
                    // and a shard holds only its share of the capacity.
                    capacity: 4 * titles.len() as u32,
                    sellers: vec![titles],
                    buyers: vec![wants],
                }
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn every_in_process_variant_ends_with_the_same_shelf(workload in one_seller_one_buyer()) {
            let runs = all_in_process(&workload);
            for (name, run) in &runs {
                prop_assert!(run.books.balanced(), "{}: {:?}", name, run.books);
                prop_assert_eq!(&run.books.shelf, &runs[0].1.books.shelf, "{} vs mutex", name);
            }
        }
    }
}
