//! The "previous multithreaded program": every trader thread locks one engine behind a
//! `Mutex`. A seller that finds the store full waits on the `not_full` condition variable; a
//! buyer that finds nothing waits on `not_empty`. Whoever changes the shelf signals the other
//! side. Correct and simple; every order serialises on one lock, and the lock's cache line
//! moves between cores with every acquisition.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use engine::{
    BuyTarget, ClientId, Command, Engine, Event, Price, Qty, RejectReason, RequestId, Title,
};

use super::{
    run_buyer, run_seller, Attempt, Books, Contention, Exchange, Orders, VariantRun, Workload,
};

/// What every trader thread shares.
struct Shared {
    engine: Mutex<Engine>,
    not_full: Condvar,
    not_empty: Condvar,
    // Statistics only: relaxed counters, read after every thread has been joined.
    lock_waits: AtomicU64,
    condvar_waits: AtomicU64,
}

/// One trader's handle.
struct Trader<'s> {
    shared: &'s Shared,
    client: ClientId,
    next_request: u64,
    events: Vec<Event>,
}

/// How long a waiter sleeps on a condition variable before it looks again by itself (a
/// notification is never lost, since the change happens under the same lock; this only bounds
/// a wait whose condition another waiter's order satisfied and consumed).
const WAIT_SLICE: Duration = Duration::from_millis(5);

/// Takes the lock, counting the acquisitions that had to wait for it.
fn lock(shared: &Shared) -> MutexGuard<'_, Engine> {
    match shared.engine.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::WouldBlock) => {
            shared.lock_waits.fetch_add(1, Relaxed);
            shared
                .engine
                .lock()
                .expect("no trader panics holding the lock")
        }
        Err(TryLockError::Poisoned(_)) => panic!("a trader panicked holding the lock"),
    }
}

impl Trader<'_> {
    fn apply(&mut self, engine: &mut Engine, command: Command) -> Attempt {
        self.events.clear();
        engine.apply(0, &command, &mut self.events);
        let mut attempt = Attempt::Done;
        for event in &self.events {
            match event {
                Event::Rejected {
                    reason: RejectReason::StoreFull { .. },
                    ..
                } => attempt = Attempt::Full,
                Event::Expired { .. } => attempt = Attempt::Empty,
                _ => {}
            }
        }
        attempt
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }
}

impl Exchange for Trader<'_> {
    fn list(&mut self, title: &Title, price: Price) -> Attempt {
        let command = Command::List {
            client: self.client,
            request: self.request(),
            title: title.clone(),
            price,
            qty: Qty::new(1).expect("1 copy"),
        };
        let shared = self.shared;
        let mut engine = lock(shared);
        let attempt = self.apply(&mut engine, command);
        if attempt == Attempt::Done {
            shared.not_empty.notify_all();
            return attempt;
        }
        // Full: wait (releasing the lock) until a buyer makes room, then the caller retries.
        shared.condvar_waits.fetch_add(1, Relaxed);
        let _unlocked = shared
            .not_full
            .wait_timeout_while(engine, WAIT_SLICE, |e| {
                e.stats().books_on_shelf >= e.stats().capacity
            })
            .expect("no trader panics holding the lock");
        Attempt::Full
    }

    fn buy(&mut self, target: &BuyTarget, max_price: Price) -> Attempt {
        let command = Command::Buy {
            client: self.client,
            request: self.request(),
            target: target.clone(),
            max_price,
            qty: Qty::new(1).expect("1 copy"),
            // Now or never: the engine expires an unfilled buy whose deadline has come.
            deadline: Some(0),
        };
        let shared = self.shared;
        let mut engine = lock(shared);
        let attempt = self.apply(&mut engine, command);
        if attempt == Attempt::Done {
            shared.not_full.notify_all();
            return attempt;
        }
        shared.condvar_waits.fetch_add(1, Relaxed);
        let _unlocked = shared
            .not_empty
            .wait_timeout(engine, WAIT_SLICE)
            .expect("no trader panics holding the lock");
        Attempt::Empty
    }

    fn wait_after(&mut self, _refused: Attempt, _consecutive: u32) {
        // Already waited, on the condition variable, in `list` or `buy`.
    }
}

/// Runs the workload with one thread per trader around one locked engine.
pub fn run(workload: &Workload) -> VariantRun {
    let shared = Shared {
        engine: Mutex::new(Engine::new(workload.capacity)),
        not_full: Condvar::new(),
        not_empty: Condvar::new(),
        lock_waits: AtomicU64::new(0),
        condvar_waits: AtomicU64::new(0),
    };
    let started = Instant::now();
    let traders = std::thread::scope(|scope| {
        let handles: Vec<_> = workload
            .traders()
            .into_iter()
            .enumerate()
            .map(|(i, orders)| {
                let shared = &shared;
                scope.spawn(move || {
                    let mut trader = Trader {
                        shared,
                        client: ClientId(i as u128 + 1),
                        next_request: 0,
                        events: Vec::with_capacity(8),
                    };
                    match orders {
                        Orders::Sell(titles) => run_seller(&mut trader, &titles),
                        Orders::Buy(wants) => run_buyer(&mut trader, &wants),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a trader thread panicked"))
            .collect()
    });
    let wall = started.elapsed();
    let engine = shared.engine.into_inner().expect("no trader panicked");
    VariantRun {
        wall,
        traders,
        books: Books::of_engines([&engine]),
        contention: Contention {
            lock_waits: Some(shared.lock_waits.into_inner()),
            condvar_waits: Some(shared.condvar_waits.into_inner()),
            futex_wakes: None,
        },
    }
}
