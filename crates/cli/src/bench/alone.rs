//! The "market alone" row: the market's own work per request, with no other core in it.
//!
//! A real market (its store, its journal with durability `none`, its snapshot thread) and a
//! real client run on this one thread: the client pushes a buy that fills, the market makes
//! one pass ([`Market::serve_pass`]), the client pops the reply. Nothing crosses between cores,
//! so what is left is what the market does per request (decode, engine, journal record,
//! reply) plus the client's encoding and decoding: the part of a spin-mode round trip that
//! is work rather than cache-line transfers, and far steadier on a shared machine than the
//! round trip itself.

use std::time::{Duration, Instant};

use engine::{BuyTarget, Price, Qty, Title};
use hdrhistogram::Histogram;

use super::{histogram, unique_name, BenchResult, WARMUP};
use crate::scratch::ScratchJournal;
use bookstore::client::{Client, ClientRole};
use bookstore::journal::{CapacityChoice, Durability, Journal, JournalOptions, Start};
use bookstore::layout::Geometry;
use bookstore::server::{LoopConfig, Market, StoreGuard};
use bookstore::shared::SharedStore;
use bookstore::wire::{Reply, Request};

const CAPACITY: u32 = 100_000;

/// Times `n` buys that fill (after the warm-up), each pushed, served by one market pass and
/// answered, all on this thread.
pub(super) fn market_alone(n: u32) -> BenchResult<Histogram<u64>> {
    let name = unique_name("alone");
    let scratch = ScratchJournal::for_store(&name)?;
    let options = JournalOptions {
        durability: Durability::None,
        capacity: CapacityChoice::Exactly(CAPACITY),
        start: Start::Fresh,
        segment_bytes: bookstore::journal::DEFAULT_SEGMENT_BYTES,
    };
    let (journal, recovery) = Journal::open(scratch.path(), &options)?;
    let geometry = Geometry {
        capacity: CAPACITY,
        slot_count: 4,
    };
    let me = shm::process::ProcessId::current()?;
    let store = SharedStore::create(&name, geometry, shm::Mode::OWNER_ONLY, me)?;
    let _guard = StoreGuard::new(&store);
    let config = LoopConfig {
        spin: Duration::ZERO,
        snapshot_every: bookstore::journal::DEFAULT_SNAPSHOT_EVERY,
        keep_journal: false,
    };
    let mut market = Market::new(&store, config, journal, recovery);
    market.open_for_clients();
    let mut client = Client::attach(&store, ClientRole::Bench, Duration::ZERO)?;
    // The market accepts the client in its next pass.
    market.serve_pass();
    let title = Title::new("Benchmark")?;
    let price = Price::from_cents(1000)?;
    let answer = |client: &mut Client<'_>, market: &mut Market<'_>, request: &Request| {
        client.send(request)?;
        market.serve_pass();
        match client.try_recv()? {
            Some(reply) if reply.is_final() => Ok(reply),
            other => Err(format!("the market's pass left {other:?} for {request:?}").into()),
        }
    };
    let mut stocked = 0u32;
    let mut h = histogram();
    for i in 0..WARMUP + n {
        if stocked == 0 {
            // Untimed: 1000 copies on the shelf for the next 1000 buys.
            let list = Request::List {
                request: client.next_request_id(),
                title: title.clone(),
                price,
                qty: Qty::new(1000)?,
            };
            let reply: BenchResult<Reply> = answer(&mut client, &mut market, &list);
            if !matches!(reply?, Reply::Listed { .. }) {
                return Err("the market did not list the benchmark's books".into());
            }
            stocked = 1000;
        }
        let buy = Request::Buy {
            request: client.next_request_id(),
            target: BuyTarget::Title(title.clone()),
            max_price: price,
            qty: Qty::new(1)?,
            timeout_ms: None,
        };
        let t = Instant::now();
        let reply: BenchResult<Reply> = answer(&mut client, &mut market, &buy);
        let ns = t.elapsed().as_nanos() as u64;
        if !matches!(reply?, Reply::Bought { .. } | Reply::Filled { .. }) {
            return Err("the benchmark's buy did not fill".into());
        }
        stocked -= 1;
        if i >= WARMUP {
            h.record(ns.max(1))?;
        }
    }
    Ok(h)
}
