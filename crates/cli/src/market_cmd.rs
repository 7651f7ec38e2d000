//! `bookstore market`: create the store, serve, remove it on the way out.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::ClientId;

use shm::process::{ProcessId, ProcessSignal};
use shm::ShmName;

use crate::args::{DurabilityArg, MarketArgs};
use crate::exit::Exit;
use crate::log;
use bookstore::journal::{
    self, CapacityChoice, Journal, JournalOptions, OpenJournalError, Recovery, Start,
};
use bookstore::server::{
    checked_geometry, create_store, live_market, LoopConfig, Market, MarketEvent, NameLock,
    StartError, StoreGuard, StoreSpec,
};

/// Capacity of a new store when `--capacity` is not given.
const DEFAULT_CAPACITY: u32 = 100;

pub fn run(args: MarketArgs) -> Exit {
    let name = args.store.name;
    if args.stop {
        return stop(&name);
    }
    if args.mode.is_world_accessible() {
        eprintln!(
            "warning: --mode {} lets ANY local user read the store, corrupt it and pose as its clients; \
             use 0600 (only you) or 0660 (your group) unless you really mean it",
            args.mode
        );
    }
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = match crate::stop_signal::stop_flag(&[SIGINT, SIGTERM]) {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("bookstore market: cannot install a signal handler: {e}");
            return Exit::Error;
        }
    };
    let journal_path = match journal::chosen_path(args.journal.as_deref(), &name) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("bookstore market: {e}");
            return Exit::Usage;
        }
    };
    let group = match &args.group {
        None => None,
        Some(group) => match shm::users::group_id(group) {
            Some(gid) => Some(gid),
            None => {
                eprintln!("bookstore market: group: no group named {group:?} in /etc/group");
                return Exit::Usage;
            }
        },
    };
    // Every value is checked before anything (lock, journal or store) is touched.
    // (A journal's own capacity is checked when it is read.)
    if let Err(e) = checked_geometry(args.capacity.unwrap_or(DEFAULT_CAPACITY), args.slots) {
        eprintln!("bookstore market: {e}");
        return Exit::from(&e);
    }
    let me = match ProcessId::current() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("bookstore market: cannot read this process's identity: {e}");
            return Exit::Error;
        }
    };
    // The name first: only its holder may look at, create, replace or remove the object.
    let lock = match NameLock::acquire(&name, me) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("bookstore market: {e}");
            return Exit::from(&StartError::from(e));
        }
    };
    test_pause("after-lock");
    let options = JournalOptions {
        durability: args.durability.into(),
        capacity: args.capacity.map_or(
            CapacityChoice::JournalsOr(DEFAULT_CAPACITY),
            CapacityChoice::Exactly,
        ),
        start: if args.fresh {
            Start::Fresh
        } else {
            Start::Continue
        },
        segment_bytes: args.journal_segment.0,
    };
    let (journal, recovery) = match Journal::open(&journal_path, &options) {
        Ok(opened) => opened,
        Err(e @ OpenJournalError::Locked { .. }) => {
            // We hold our name, so the journal's holder serves another name with it.
            eprintln!(
                "bookstore market: {e} (one serving another name with the same --journal); give each store its own journal"
            );
            return Exit::from(&e);
        }
        Err(e) => {
            eprintln!("bookstore market: {e}");
            return Exit::from(&e);
        }
    };
    test_pause("after-journal");
    if !args.quiet {
        report_recovery(&recovery, journal.path());
    }
    // Before the store exists: a market that cannot replicate serves nobody.
    let replication = match args.durability {
        DurabilityArg::Replicated => {
            let config = bookstore_replication::StreamConfig {
                servers: args.nats.clone(),
                stream: args
                    .stream
                    .clone()
                    .unwrap_or_else(|| name.file_name().to_owned()),
                replicas: args.replicas.into(),
                capacity: recovery.capacity,
            };
            match crate::replicated::start(&config, &journal) {
                Ok((replication, handed)) => {
                    if !args.quiet {
                        let held = match handed.1 {
                            0 => "empty".to_owned(),
                            n => format!("commands 0 to {}", n - 1),
                        };
                        tracing::info!(
                            target: log::TARGET,
                            "market: replicating to stream {} on {} (it holds {held}); replies wait for its acknowledgements",
                            config.stream,
                            config.servers.join(","),
                        );
                    }
                    Some((replication, handed))
                }
                Err(e) => {
                    eprintln!("bookstore market: {e}");
                    return if matches!(e, crate::replicated::StartReplicationError::NoServers) {
                        Exit::Usage
                    } else {
                        Exit::Error
                    };
                }
            }
        }
        _ => None,
    };
    // The journal's capacity wins (it was checked against --capacity when opened).
    let geometry = match checked_geometry(recovery.capacity, args.slots) {
        Ok(geometry) => geometry,
        Err(e) => {
            eprintln!("bookstore market: {e}");
            return Exit::from(&e);
        }
    };
    let spec = StoreSpec {
        name: name.clone(),
        geometry,
        mode: args.mode,
        group,
    };
    let store = match create_store(&spec, &lock, me) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("bookstore market: {e}");
            return Exit::from(&e);
        }
    };
    // Removes the object on every way out of this function, panics included.
    let guard = StoreGuard::new(&store);
    test_pause("after-create");
    if !args.quiet {
        tracing::info!(
            target: log::TARGET,
            name = %name,
            bytes = store.segment().len(),
            mode = %args.mode,
            pid = std::process::id(),
            capacity = geometry.capacity,
            slots = geometry.slot_count,
            "market: serving {name} (/dev/shm/{}, {} bytes, mode {}) as pid {}: capacity {} books, {} client slots",
            name.file_name(),
            store.segment().len(),
            args.mode,
            std::process::id(),
            geometry.capacity,
            geometry.slot_count,
        );
        tracing::info!(
            target: log::TARGET,
            "market: stop with Ctrl-C or `bookstore market --stop --name {name}`"
        );
    }
    let config = LoopConfig {
        spin: Duration::from_micros(args.spin_us),
        snapshot_every: args.snapshot_every,
        keep_journal: args.keep_journal,
    };
    let mut full_told: HashMap<ClientId, Instant> = HashMap::new();
    let mut market = Market::new(&store, config, journal, recovery);
    if let Some((replication, handed)) = replication {
        market = market.replicate_to(Box::new(replication), handed);
    }
    if !args.quiet {
        market = market.observe(|event| say(&mut full_told, event));
    }
    let summary = market.run(&stop);
    drop(market);
    drop(guard);
    // The object is gone; now the name is free again.
    drop(lock);
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("bookstore market: stopped, acknowledging nothing more: {e}");
            return Exit::Journal;
        }
    };
    if !args.quiet {
        tracing::info!(
            target: log::TARGET,
            requests = summary.requests,
            clients = summary.clients_served,
            trades_this_run = summary.trades_this_run,
            trades = summary.trades,
            books_on_shelf = summary.books_on_shelf,
            "market: stopped. This run: {} requests from {} clients, {} trades. The store in all (journal included): {} trades, {} books on the shelf. {name} removed",
            summary.requests,
            summary.clients_served,
            summary.trades_this_run,
            summary.trades,
            summary.books_on_shelf
        );
    }
    Exit::Ok
}

/// How often the market says that one seller is waiting for room.
const FULL_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// One line per trade and per client arriving or leaving, and (at most once a second per
/// seller) that a seller waits for room; flushed when the market idles.
/// A client id as people read it in a log line: its first 64 bits in hexadecimal (the
/// structured fields carry all 128).
struct Short(ClientId);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0.short())
    }
}

fn say(full_told: &mut HashMap<ClientId, Instant>, event: MarketEvent) {
    match event {
        MarketEvent::StoreFull { client } => {
            let now = Instant::now();
            let due = full_told
                .get(&client)
                .is_none_or(|told| now.duration_since(*told) >= FULL_NOTICE_EVERY);
            if !due {
                return;
            }
            full_told.insert(client, now);
            tracing::info!(
                target: log::TARGET,
                event = "store_full",
                client = %client,
                "store full: seller {} waiting for room",
                Short(client)
            );
        }
        MarketEvent::Traded(t) => tracing::info!(
            target: log::TARGET,
            event = "trade",
            trade_id = t.trade_id,
            qty = t.qty,
            title = t.title.as_str(),
            price_cents = t.price.cents(),
            seller = %t.seller,
            buyer = %t.buyer,
            "trade #{}: {} × {:?} at {} (seller {}, buyer {})",
            t.trade_id,
            t.qty,
            t.title.as_str(),
            t.price,
            Short(t.seller),
            Short(t.buyer)
        ),
        MarketEvent::Attached { client, pid, slot } => tracing::info!(
            target: log::TARGET,
            event = "attached",
            client = %client,
            pid,
            slot,
            "client {} attached (pid {pid}, slot {slot})",
            Short(client)
        ),
        MarketEvent::Left { client, why } => {
            full_told.remove(&client);
            tracing::info!(
                target: log::TARGET,
                event = "left",
                client = %client,
                why,
                "client {} left ({why})",
                Short(client)
            );
        }
        MarketEvent::Idle => log::flush(),
    }
}

/// Tells the learner what the journal held and what was done with it.
fn report_recovery(recovery: &Recovery, path: &Path) {
    if let Some(aside) = &recovery.set_aside {
        tracing::info!(
            target: log::TARGET,
            kept_as = %aside.display(),
            "market: --fresh: the previous journal is kept as {}",
            aside.display()
        );
    }
    if let Some(torn) = &recovery.torn {
        tracing::info!(
            target: log::TARGET,
            offset = torn.offset,
            bytes = torn.bytes,
            "market: journal: cut off a torn last record at offset {} ({} bytes: {}); it was never acknowledged",
            torn.offset, torn.bytes, torn.why
        );
    }
    for note in &recovery.notes {
        tracing::info!(target: log::TARGET, "market: journal: {note}");
    }
    for (snapshot, why) in &recovery.skipped_snapshots {
        tracing::warn!(
            target: log::TARGET,
            "snapshot {} is not usable ({why}); using the one before it, or the journal",
            snapshot.display()
        );
    }
    let from = recovery
        .from_snapshot
        .as_ref()
        .map(|s| format!(" from the snapshot at command {}", s.commands))
        .unwrap_or_default();
    let segments = match recovery.segments_read {
        0 | 1 => String::new(),
        n => format!(" in {n} segments"),
    };
    if recovery.replayed == 0 && recovery.from_snapshot.is_none() {
        tracing::info!(
            target: log::TARGET,
            journal = %path.display(),
            replayed = 0,
            "market: journal {}: new, empty store",
            path.display()
        );
        return;
    }
    let stats = recovery.engine.stats();
    tracing::info!(
        target: log::TARGET,
        journal = %path.display(),
        replayed = recovery.replayed,
        "market: journal {}: replayed {} commands{from}{segments}: {} books on the shelf, {} trades, next trade #{}",
        path.display(),
        recovery.replayed,
        stats.books_on_shelf,
        stats.trades,
        recovery.engine.next_trade_id(),
    );
    if recovery.orphaned_buys > 0 {
        tracing::info!(
            target: log::TARGET,
            cancelled = recovery.orphaned_buys,
            "market: the restart cancelled {} resting buys of the previous market's clients (a buyer that comes back asks what it bought and buys the rest)",
            recovery.orphaned_buys
        );
    }
}

/// A test hook: `BOOKSTORE_TEST_PAUSE=STEP:MILLIS` sleeps that long at that step of the start
/// (`after-lock`, `after-journal`, `after-create`), so a test can race a second market
/// against a slow first one at each step. Unset, it does nothing.
fn test_pause(step: &str) {
    let Some(value) = std::env::var_os("BOOKSTORE_TEST_PAUSE") else {
        return;
    };
    let value = value.to_string_lossy();
    if let Some(millis) = value
        .strip_prefix(step)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(millis));
    }
}

/// Sends SIGTERM to the market of `name` through a pidfd and waits for it to exit.
fn stop(name: &ShmName) -> Exit {
    let market = match live_market(name) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("bookstore market --stop: {why}");
            return Exit::NoMarket;
        }
    };
    if let Err(e) = market.signal(ProcessSignal::TERM) {
        eprintln!("bookstore market --stop: {e}");
        return Exit::Error;
    }
    if market
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|e| {
            eprintln!("bookstore market --stop: {e}");
            false
        })
    {
        println!("stopped the market of {name} (pid {})", market.id().pid);
        Exit::Ok
    } else {
        eprintln!(
            "bookstore market --stop: pid {} did not exit within 10 s",
            market.id().pid
        );
        Exit::Error
    }
}
