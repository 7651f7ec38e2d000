//! Market threads that alone own their engines. Each trader thread talks to each market thread
//! through a port: a request ring, a reply ring and the trader's doorbell, exactly the SPSC
//! rings and futex doorbells of the shared object's slots, here in process memory. No state is
//! written by two threads: a ring index has one writer, an engine has one thread.
//!
//! With one market thread that is the market process's design inside one process. With K
//! market threads (shards), each owns the titles that hash to it and a K-th of the store's
//! capacity: the engines work in parallel, but a buy of "any title" no longer has one shelf to
//! look at. It is tried shard by shard, from the trader's own, so it is "any title of the first
//! shard that has one", not the store's cheapest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bookstore_ipc::doorbell::Doorbell;
use bookstore_ipc::ring::{Consumer, Producer, Ring};
use engine::{BuyTarget, ClientId, Engine, Price, Qty, RejectReason, RequestId, Title};

use super::{
    run_buyer, run_seller, Attempt, Books, Contention, Exchange, Orders, VariantRun, Workload,
};
use crate::layout::{REPLY_RING_CAPACITY, REQUEST_RING_CAPACITY};
use crate::wire::{Reply, Request};

/// How long a parked thread sleeps before it looks again by itself (the doorbell wakes it
/// sooner; this bounds the wait for the end of the run).
const PARK_TIMEOUT: Duration = Duration::from_millis(10);

/// One trader's way to one market thread.
struct Port {
    requests: Box<Ring<REQUEST_RING_CAPACITY>>,
    replies: Box<Ring<REPLY_RING_CAPACITY>>,
    /// The trader parks here waiting for a reply; the market thread rings it.
    trader_bell: Doorbell,
}

/// One market thread's side: a port per trader, and the doorbell it parks on.
struct Shard {
    ports: Vec<Port>,
    market_bell: Doorbell,
    capacity: u32,
}

/// Counters every thread adds to (statistics only: relaxed, read after the joins).
#[derive(Default)]
struct Counters {
    futex_wakes: AtomicU64,
}

fn notify(bell: &Doorbell, counters: &Counters) {
    if bell.notify() {
        counters.futex_wakes.fetch_add(1, Relaxed);
    }
}

/// The shard that owns `title`: a stable hash of its bytes (FNV-1a), modulo the shard count.
fn shard_of(title: &Title, shards: usize) -> usize {
    let hash = title
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % shards as u64) as usize
}

/// A market thread: drains every trader's requests, applies them, answers, parks when idle.
fn serve(shard: &Shard, done: &AtomicBool, counters: &Counters, spin: Duration) -> Engine {
    let mut engine = Engine::new(shard.capacity);
    let mut requests: Vec<Consumer<'_, REQUEST_RING_CAPACITY>> = shard
        .ports
        .iter()
        .map(|p| Consumer::new(&p.requests))
        .collect();
    let mut replies: Vec<Producer<'_, REPLY_RING_CAPACITY>> = shard
        .ports
        .iter()
        .map(|p| Producer::new(&p.replies))
        .collect();
    let mut events = Vec::with_capacity(8);
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut worked = false;
        for (i, consumer) in requests.iter_mut().enumerate() {
            while let Some(message) = consumer
                .try_pop()
                .expect("rings in process memory are sound")
            {
                worked = true;
                let client = ClientId(i as u128 + 1);
                let request = Request::decode(&message).expect("traders send valid requests");
                events.clear();
                // The clock stands still at 0: a buy's deadline of "now" expires it at once.
                engine.apply(0, &request.into_command(client, 0), &mut events);
                for event in &events {
                    let (first, second) = event.recipients();
                    for to in std::iter::once(first).chain(second) {
                        // A seller is not told of later sales of its books here (the real
                        // market does, with a backlog for slow readers): what remains is the
                        // answer to the one request each trader has in flight, at most two
                        // replies (`Bought`, `Filled`), so a 64-message ring never fills.
                        let reply = Reply::for_client(event, to)
                            .filter(|r| !matches!(r, Reply::Sold { .. }));
                        if let Some(reply) = reply {
                            replies[to.0 as usize - 1]
                                .try_write(&reply.encode())
                                .expect("a reply ring has room");
                        }
                    }
                }
            }
        }
        for (port, producer) in shard.ports.iter().zip(&mut replies) {
            if producer.publish() {
                notify(&port.trader_bell, counters);
            }
        }
        if worked {
            idle_since = None;
            continue;
        }
        // Relaxed: the flag carries no data; the traders' last requests were all answered.
        if done.load(Relaxed) {
            return engine;
        }
        let idle = *idle_since.get_or_insert_with(Instant::now);
        if idle.elapsed() < spin {
            std::hint::spin_loop();
            continue;
        }
        let has_work =
            || shard.ports.iter().any(|p| p.requests.has_messages()) || done.load(Relaxed);
        shard.market_bell.park(has_work, Some(PARK_TIMEOUT));
        idle_since = None;
    }
}

/// One trader's handle: its ends of its port on every shard.
struct Trader<'s> {
    shards: &'s [Shard],
    counters: &'s Counters,
    requests: Vec<Producer<'s, REQUEST_RING_CAPACITY>>,
    replies: Vec<Consumer<'s, REPLY_RING_CAPACITY>>,
    index: usize,
    next_request: u64,
    spin: Duration,
}

impl Trader<'_> {
    /// Sends one request to shard `k` and waits for its final reply.
    fn order(&mut self, k: usize, request: Request) -> Attempt {
        self.requests[k]
            .try_push(&request.encode())
            .expect("one request in flight never fills a ring");
        notify(&self.shards[k].market_bell, self.counters);
        let port = &self.shards[k].ports[self.index];
        let mut spin_until: Option<Instant> = None;
        loop {
            if let Some(message) = self.replies[k]
                .try_pop()
                .expect("rings in process memory are sound")
            {
                match Reply::decode(&message).expect("the market thread sends valid replies") {
                    Reply::Listed { .. }
                    | Reply::Filled { .. }
                    | Reply::Bought { done: true, .. } => return Attempt::Done,
                    Reply::Rejected {
                        reason: RejectReason::StoreFull { .. },
                        ..
                    } => return Attempt::Full,
                    Reply::Expired { .. } => return Attempt::Empty,
                    Reply::Bought { .. } | Reply::Sold { .. } | Reply::Rested { .. } => continue,
                    other => panic!("unexpected reply in the lesson: {other:?}"),
                }
            }
            let until = *spin_until.get_or_insert_with(|| Instant::now() + self.spin);
            if Instant::now() < until {
                std::hint::spin_loop();
                continue;
            }
            let replies = self.replies[k].shared();
            port.trader_bell
                .park(|| replies.has_messages(), Some(PARK_TIMEOUT));
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn buy_in(&mut self, k: usize, target: &BuyTarget, max_price: Price) -> Attempt {
        let request = Request::Buy {
            request: self.request_id(),
            target: target.clone(),
            max_price,
            qty: Qty::new(1).expect("1 copy"),
            timeout_ms: Some(0),
        };
        self.order(k, request)
    }
}

impl Exchange for Trader<'_> {
    fn list(&mut self, title: &Title, price: Price) -> Attempt {
        let k = shard_of(title, self.shards.len());
        let request = Request::List {
            request: self.request_id(),
            title: title.clone(),
            price,
            qty: Qty::new(1).expect("1 copy"),
        };
        self.order(k, request)
    }

    fn buy(&mut self, target: &BuyTarget, max_price: Price) -> Attempt {
        match target {
            BuyTarget::Title(title) => {
                self.buy_in(shard_of(title, self.shards.len()), target, max_price)
            }
            // No one shelf to look at: each shard's own "any", from this trader's own shard on.
            BuyTarget::Any => {
                let k = self.shards.len();
                for step in 0..k {
                    if self.buy_in((self.index + step) % k, target, max_price) == Attempt::Done {
                        return Attempt::Done;
                    }
                }
                Attempt::Empty
            }
        }
    }
}

/// Runs the workload with `shards` market threads (1: the market-thread design) and one
/// thread per trader. Market threads spin `spin` before parking; traders spin `spin` for a
/// reply before parking.
pub fn run(workload: &Workload, shards: usize, spin: Duration) -> VariantRun {
    let traders_orders = workload.traders();
    let capacity_of = |k: usize| {
        workload.capacity / shards as u32
            + u32::from((k as u32) < workload.capacity % shards as u32)
    };
    let shard_list: Vec<Shard> = (0..shards)
        .map(|k| Shard {
            ports: (0..traders_orders.len())
                .map(|_| Port {
                    requests: Ring::new_boxed(),
                    replies: Ring::new_boxed(),
                    trader_bell: Doorbell::default(),
                })
                .collect(),
            market_bell: Doorbell::default(),
            capacity: capacity_of(k).max(1),
        })
        .collect();
    let counters = Counters::default();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let (traders, engines) = std::thread::scope(|scope| {
        let markets: Vec<_> = shard_list
            .iter()
            .map(|shard| {
                let (done, counters) = (&done, &counters);
                scope.spawn(move || serve(shard, done, counters, spin))
            })
            .collect();
        let handles: Vec<_> = traders_orders
            .into_iter()
            .enumerate()
            .map(|(index, orders)| {
                let (shards, counters) = (&shard_list[..], &counters);
                scope.spawn(move || {
                    let mut trader = Trader {
                        shards,
                        counters,
                        requests: shards
                            .iter()
                            .map(|s| Producer::new(&s.ports[index].requests))
                            .collect(),
                        replies: shards
                            .iter()
                            .map(|s| Consumer::new(&s.ports[index].replies))
                            .collect(),
                        index,
                        next_request: 0,
                        spin,
                    };
                    match orders {
                        Orders::Sell(titles) => run_seller(&mut trader, &titles),
                        Orders::Buy(wants) => run_buyer(&mut trader, &wants),
                    }
                })
            })
            .collect();
        let traders: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("a trader thread panicked"))
            .collect();
        // Relaxed: nothing is published with the flag; the doorbells wake the markets to see it.
        done.store(true, Relaxed);
        for shard in &shard_list {
            notify(&shard.market_bell, &counters);
        }
        let engines: Vec<Engine> = markets
            .into_iter()
            .map(|h| h.join().expect("a market thread panicked"))
            .collect();
        (traders, engines)
    });
    let wall = started.elapsed();
    VariantRun {
        wall,
        traders,
        books: Books::of_engines(&engines),
        contention: Contention {
            lock_waits: None,
            condvar_waits: None,
            futex_wakes: Some(counters.futex_wakes.into_inner()),
        },
    }
}
