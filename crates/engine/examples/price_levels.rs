//! How much a listing costs when every listing opens a new price level: the pattern a hostile
//! seller would choose against a book of sorted arrays. `cargo run --release -p
//! bookstore-engine --example price_levels` lists 100,000 single copies of one title at
//! 100,000 distinct prices, cheapest last (each a new best: the path that moves nothing) and
//! cheapest first (each a new worst level), and prints the time per listing for each.

use engine::{ClientId, Command, Engine, Price, Qty, RequestId, Title};
use std::time::Instant;

const LISTINGS: u64 = 100_000;

fn main() {
    let title = Title::new("Benchmark").expect("a valid title");
    let one = Qty::new(1).expect("a valid quantity");
    for (order, cents_of) in [
        (
            "each a new best price",
            (|i| LISTINGS - i) as fn(u64) -> u64,
        ),
        ("each a new worst price", |i| 1 + i),
    ] {
        let mut engine = Engine::new(LISTINGS as u32);
        let mut events = Vec::with_capacity(4);
        let started = Instant::now();
        for i in 0..LISTINGS {
            let list = Command::List {
                client: ClientId(1),
                request: RequestId(i),
                title: title.clone(),
                price: Price::from_cents(cents_of(i)).expect("a valid price"),
                qty: one,
            };
            engine.apply(0, &list, &mut events);
            events.clear();
        }
        let ns = started.elapsed().as_nanos() as f64 / LISTINGS as f64;
        assert_eq!(engine.stats().books_on_shelf, LISTINGS as u32);
        println!("{LISTINGS} listings, {order}: {ns:.0} ns per listing");
    }
}
