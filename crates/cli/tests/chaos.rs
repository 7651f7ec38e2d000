//! Chaos: sellers and buyers trading in loops while clients and the market are SIGKILLed at
//! random moments. Afterwards the books must balance, in the market's view and in its journal.
//!
//! Bounded for CI (about 15 s). A longer soak, by hand:
//!
//! ```text
//! BOOKSTORE_CHAOS_SECS=600 BOOKSTORE_CHAOS_CLIENTS=8 BOOKSTORE_CHAOS_MARKET_KILLS=20 \
//!     cargo test --release -p bookstore --test chaos -- --nocapture
//! ```
//! `BOOKSTORE_CHAOS_SEED` replays one run's choices (the seed is printed).

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// A seller or buyer session process, fed an endless script from a thread.
struct Trader {
    role: &'static str,
    child: Child,
    feeder: JoinHandle<()>,
    /// The session's stderr, shown if it misbehaves.
    log: std::path::PathBuf,
}

fn spawn_trader(market: &Market, role: &'static str, stop: &Arc<AtomicBool>, seed: u64) -> Trader {
    let log = state_home().join(format!("{}-{role}-{seed}.log", &market.name[1..]));
    std::fs::create_dir_all(state_home()).unwrap();
    let mut child = bookstore(&[role, "--name", &market.name, "--quiet", "--wait", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("client starts");
    let mut stdin = child.stdin.take().expect("piped");
    let stop = stop.clone();
    let feeder = std::thread::spawn(move || {
        let mut n = seed;
        // Ends when told to (dropping stdin: EOF ends the session) or when the client dies.
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            if stdin.write_all(order_line(role, n).as_bytes()).is_err() {
                return;
            }
        }
    });
    Trader {
        role,
        child,
        feeder,
        log,
    }
}

fn totals(v: &serde_json::Value) -> (u64, u64, u64) {
    (
        v["books_listed_total"].as_u64().unwrap(),
        v["books_sold_total"].as_u64().unwrap(),
        v["books_on_shelf"].as_u64().unwrap(),
    )
}

#[test]
fn traders_and_market_killed_at_random_lose_no_book() {
    let secs: f64 = env_or("BOOKSTORE_CHAOS_SECS", 12.0);
    let clients: usize = env_or("BOOKSTORE_CHAOS_CLIENTS", 4);
    let market_kills: u32 = env_or("BOOKSTORE_CHAOS_MARKET_KILLS", 2);
    let seed: u64 = env_or("BOOKSTORE_CHAOS_SEED", fastrand::u64(..));
    println!("chaos: {secs} s, {clients} sellers + {clients} buyers, {market_kills} market kills, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let market_args = ["--capacity", "40", "--slots", "16"];
    let mut market = Market::start("chaos", &market_args);
    let stop = Arc::new(AtomicBool::new(false));
    let mut traders: Vec<Trader> = (0..clients)
        .flat_map(|i| ["seller", "buyer"].map(|r| (i, r)))
        .map(|(i, role)| spawn_trader(&market, role, &stop, i as u64 * 1000))
        .collect();

    let run_for = Duration::from_secs_f64(secs);
    let kill_market_at: Vec<Duration> = (1..=market_kills)
        .map(|k| run_for.mul_f64(f64::from(k) / f64::from(market_kills + 1)))
        .collect();
    let started = Instant::now();
    let (mut client_kills, mut market_restarts) = (0u32, 0u32);
    while started.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(rng.u64(50..250)));
        if kill_market_at
            .get(market_restarts as usize)
            .is_some_and(|&at| started.elapsed() >= at)
        {
            market.kill();
            // The stale object is left behind; waiting clients notice within a second.
            std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
            market.restart(&market_args);
            market.assert_balanced();
            market_restarts += 1;
            continue;
        }
        let victim = rng.usize(..traders.len());
        let role = traders[victim].role;
        let mut old = std::mem::replace(
            &mut traders[victim],
            spawn_trader(&market, role, &stop, rng.u64(..1 << 40)),
        );
        old.child.kill().expect("SIGKILL delivered");
        old.child.wait().unwrap();
        old.feeder.join().unwrap();
        let _ = std::fs::remove_file(&old.log);
        client_kills += 1;
    }

    // Every session is still running: none gave up when the market died under it (they
    // reconnect with --wait). Then the last round of kills.
    // (All checked before any is told to stop: a stopped feeder closes stdin, ending its
    // session normally.)
    for t in &mut traders {
        let status = t.child.try_wait().unwrap();
        assert!(
            status.is_none(),
            "a {} session exited on its own: {status:?}; its stderr:\n{}",
            t.role,
            std::fs::read_to_string(&t.log).unwrap_or_default()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for mut t in traders {
        t.child.kill().expect("SIGKILL delivered");
        t.child.wait().unwrap();
        t.feeder.join().unwrap();
        let _ = std::fs::remove_file(&t.log);
        client_kills += 1;
    }
    // Every slot is reclaimed; nothing rests for clients that are gone.
    let settled = eventually(Duration::from_millis(1500), || {
        let v = market.inspect();
        v["clients"].as_array().is_some_and(|c| c.is_empty()) && v["resting_buys"] == 0
    });
    assert!(settled, "slots reclaimed: {:#}", market.inspect());
    let view = market.assert_balanced();
    let (listed, sold, on_shelf) = totals(&view);
    println!(
        "chaos: {client_kills} client kills, {market_restarts} market restarts; {listed} listed = {sold} sold + {on_shelf} on the shelf"
    );
    assert_eq!(market_restarts, market_kills);
    assert!(sold > 0, "some books were sold: {view:#}");

    let journal = market.stop_keeping_journal();

    // The journal alone rebuilds the same books.
    let bytes = std::fs::read(&journal).expect("the journal exists");
    let scan = bookstore::journal::format::scan(&bytes).expect("the journal reads cleanly");
    assert_eq!(scan.torn, None, "a clean shutdown leaves no torn tail");
    let capacity = scan.header.expect("the journal has a header").capacity;
    assert_eq!(capacity, 40);
    let engine = bookstore::journal::replay(capacity, &scan.entries);
    engine
        .check_invariants()
        .expect("replayed engine is consistent");
    let s = engine.stats();
    assert_eq!(
        (s.books_listed, s.books_sold, u64::from(s.books_on_shelf)),
        (listed, sold, on_shelf),
        "the journal's replay matches the market's last view"
    );
    remove_journal_at(&journal);
}

/// What a session prints when its market died under an order and it carries the order on.
const RESUMED: &str = "went away mid-order";

/// Exactly once: four sessions each run a script of orders while the market is SIGKILLed
/// again and again (no client is killed, so every order is a session's to account for). Each
/// session reattaches under its id and asks what became of its order in flight; at the end,
/// the copies the sellers were told were listed are exactly the copies the store listed, and
/// the copies the buyers were told they bought exactly those it sold: nothing acknowledged
/// lost, nothing applied twice, nothing applied unacknowledged. Every session exits by itself.
#[test]
fn across_market_kills_every_order_is_acknowledged_exactly_as_applied() {
    let orders: u64 = env_or("BOOKSTORE_CHAOS_ORDERS", 40);
    let market_kills: u32 = env_or("BOOKSTORE_CHAOS_MARKET_KILLS", 3);
    let seed: u64 = env_or("BOOKSTORE_CHAOS_SEED", fastrand::u64(..));
    println!("exactly once: 2 sellers + 2 buyers, {orders} orders each, {market_kills} market kills, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let market_args = ["--capacity", "40"];
    let mut market = Market::start("once-chaos", &market_args);
    let mut sessions: Vec<ScriptedSession> = (0..2u64)
        .flat_map(|i| ["seller", "buyer"].map(|r| (i, r)))
        .map(|(i, role)| ScriptedSession::spawn(&market.name, role, &[], i * 1000, orders))
        .collect();
    // The kills asked for, then more (up to MORE_KILLS) while sessions still run and none has
    // yet resumed an order: a kill between two orders resumes none, and three such in a row
    // (about one run in ten) left the scenario unexercised and the test failing on it.
    const MORE_KILLS: u32 = 12;
    let mut kills = 0;
    loop {
        let exercised = sessions.iter().any(|s| s.has_said(RESUMED));
        let running = sessions.iter_mut().any(|s| s.is_running());
        if kills >= market_kills && (exercised || !running || kills >= market_kills + MORE_KILLS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.u64(500..1500)));
        market.kill();
        std::thread::sleep(Duration::from_millis(rng.u64(0..300)));
        market.restart(&market_args);
        kills += 1;
    }
    let (mut listed_told, mut bought_told, mut resumed) = (0, 0, 0);
    for session in sessions {
        let told = session.finish(Duration::from_secs(120));
        resumed += told.log.matches(RESUMED).count();
        listed_told += told.listed;
        bought_told += told.bought;
    }
    let view = market.assert_balanced();
    let (listed, sold, _) = totals(&view);
    println!("exactly once: {kills} market kills, {resumed} orders resumed on a next market; told listed {listed_told}, bought {bought_told}; the store listed {listed}, sold {sold}");
    assert!(sold > 0, "some books were sold: {view:#}");
    assert!(
        resumed > 0,
        "a market was killed under an order at least once"
    );
    assert_eq!(listed_told, listed, "listings acknowledged = applied");
    assert_eq!(bought_told, sold, "copies acknowledged bought = sold");
    market.stop();
}
