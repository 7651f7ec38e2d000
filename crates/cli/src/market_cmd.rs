//! `bookstore market`: create the store, serve, remove it on the way out.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::ClientId;

use shm::process::{ProcessId, ProcessSignal};
use shm::ShmName;

use crate::args::{DurabilityArg, MarketArgs, ServeArgs};
use crate::exit::Exit;
use crate::log;
use bookstore::journal::{
    self, CapacityChoice, Journal, JournalOptions, OpenJournalError, Recovery,
};
use bookstore::server::{
    checked_geometry, create_store, live_market, LoopConfig, Market, MarketEvent, NameLock,
    StartError, StoreGuard, StoreSpec, Summary,
};

/// Capacity of a new store when `--capacity` is not given.
const DEFAULT_CAPACITY: u32 = 100;

pub fn run(args: MarketArgs) -> Exit {
    let name = args.store.name.clone();
    if args.stop {
        return stop(&name);
    }
    match serve(args) {
        Ok(exit) | Err(exit) => exit,
    }
}

/// The market's life: start, serve, stop. `Err` is a start that failed (it said why).
fn serve(args: MarketArgs) -> Result<Exit, Exit> {
    const PROGRAM: &str = "market";
    let name = args.store.name.clone();
    // Every value is checked before anything (lock, journal or store) is touched.
    // (A journal's own capacity is checked when it is read.)
    if let Err(e) = checked_geometry(args.capacity.unwrap_or(DEFAULT_CAPACITY), args.serve.slots) {
        eprintln!("bookstore market: {e}");
        return Err(Exit::from(&e));
    }
    if args.durability == DurabilityArg::Replicated {
        return crate::replicated::run(crate::replicated::Replicated {
            role: crate::replicated::Role::Market {
                capacity: args.capacity,
                default_capacity: DEFAULT_CAPACITY,
            },
            program: PROGRAM,
            name: &name,
            serve: &args.serve,
            stream: &args.stream,
            fresh: args.fresh,
        });
    }
    let start = Start::prepare(PROGRAM, &name, &args.serve)?;
    let lock = start.lock_name()?;
    test_pause("after-lock");
    let options = JournalOptions {
        durability: args.durability.into(),
        capacity: args.capacity.map_or(
            CapacityChoice::JournalsOr(DEFAULT_CAPACITY),
            CapacityChoice::Exactly,
        ),
        start: if args.fresh {
            journal::Start::Fresh
        } else {
            journal::Start::Continue
        },
        segment_bytes: args.serve.journal_segment.0,
    };
    // The store is created while the journal replays (on the CPU the replay leaves free), but
    // said after it: a journal that cannot be opened is the refusal, and removes the store.
    let (opened, made) = Journal::open_beside(&start.journal_path, &options, |capacity| {
        start.make_store(&lock, capacity)
    });
    let (journal, recovery) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            if let Some(Ok(store)) = made {
                drop(StoreGuard::new(&store));
            }
            return Err(journal_refused(PROGRAM, &e));
        }
    };
    test_pause("after-journal");
    if !args.serve.quiet {
        report_recovery(PROGRAM, &recovery, journal.path());
    }
    let store = match made {
        Some(made) => made.map_err(|e| start.refused(&e))?,
        // Not made beside the replay: the open never got that far without failing.
        None => start
            .make_store(&lock, recovery.capacity)
            .map_err(|e| start.refused(&e))?,
    };
    start.say_serving(&store);
    // Removes the object on every way out of this function, panics included.
    let guard = StoreGuard::new(&store);
    test_pause("after-create");
    let mut full_told: HashMap<ClientId, Instant> = HashMap::new();
    let mut market = Market::new(&store, loop_config(&args.serve), journal, recovery);
    if !args.serve.quiet {
        market = market.observe(|event| say(&mut full_told, event));
    }
    let summary = market.run(&start.stop);
    drop(market);
    drop(guard);
    // The object is gone; now the name is free again.
    drop(lock);
    Ok(finish(PROGRAM, &name, summary, args.serve.quiet))
}

/// What a market and a standby check and hold before they open their journal.
pub(crate) struct Start<'a> {
    /// `market` or `standby`, for messages.
    pub program: &'static str,
    name: &'a ShmName,
    pub serve: &'a ServeArgs,
    /// Set by SIGINT and SIGTERM.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub journal_path: std::path::PathBuf,
    group: Option<u32>,
    me: ProcessId,
}

impl<'a> Start<'a> {
    /// Warns of a world-accessible mode, installs the stop signals, and checks the journal
    /// path and the group.
    pub(crate) fn prepare(
        program: &'static str,
        name: &'a ShmName,
        serve: &'a ServeArgs,
    ) -> Result<Self, Exit> {
        if serve.mode.is_world_accessible() {
            eprintln!(
                "warning: --mode {} lets ANY local user read the store, corrupt it and pose as its clients; \
                 use 0600 (only you) or 0660 (your group) unless you really mean it",
                serve.mode
            );
        }
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = crate::stop_signal::stop_flag(&[SIGINT, SIGTERM]).map_err(|e| {
            eprintln!("bookstore {program}: cannot install a signal handler: {e}");
            Exit::Error
        })?;
        // After the handler: the parent's death stops us the way SIGTERM does.
        if let Some(parent) = serve.stop_with_parent {
            match shm::process::stop_with_parent(parent) {
                Ok(true) => {}
                Ok(false) => {
                    eprintln!("bookstore {program}: --stop-with-parent {parent}: that process has exited already");
                    return Err(Exit::Error);
                }
                Err(e) => {
                    eprintln!("bookstore {program}: --stop-with-parent {parent}: {e}");
                    return Err(Exit::Error);
                }
            }
        }
        let journal_path = journal::chosen_path(serve.journal.as_deref(), name).map_err(|e| {
            eprintln!("bookstore {program}: {e}");
            Exit::Usage
        })?;
        let group = match &serve.group {
            None => None,
            Some(group) => match shm::users::group_id(group) {
                Some(gid) => Some(gid),
                None => {
                    eprintln!("bookstore {program}: group: no group named {group:?} in /etc/group");
                    return Err(Exit::Usage);
                }
            },
        };
        let me = ProcessId::current().map_err(|e| {
            eprintln!("bookstore {program}: cannot read this process's identity: {e}");
            Exit::Error
        })?;
        Ok(Self {
            program,
            name,
            serve,
            stop,
            journal_path,
            group,
            me,
        })
    }

    /// The name first: only its holder may look at, create, replace or remove the object.
    pub(crate) fn lock_name(&self) -> Result<NameLock, Exit> {
        NameLock::acquire(self.name, self.me).map_err(|e| {
            eprintln!("bookstore {}: {e}", self.program);
            Exit::from(&StartError::from(e))
        })
    }

    /// Creates the store of `capacity` books (the journal's) and says so.
    pub(crate) fn create_store(
        &self,
        lock: &NameLock,
        capacity: u32,
    ) -> Result<bookstore::shared::SharedStore, Exit> {
        let store = self
            .make_store(lock, capacity)
            .map_err(|e| self.refused(&e))?;
        self.say_serving(&store);
        Ok(store)
    }

    /// Creates the store of `capacity` books without a word (it may run beside the journal's
    /// replay, whose refusal is said first).
    fn make_store(
        &self,
        lock: &NameLock,
        capacity: u32,
    ) -> Result<bookstore::shared::SharedStore, StartError> {
        let spec = StoreSpec {
            name: self.name.clone(),
            geometry: checked_geometry(capacity, self.serve.slots)?,
            mode: self.serve.mode,
            group: self.group,
        };
        create_store(&spec, lock, self.me)
    }

    /// Says why the store could not be created; the exit code to leave with.
    fn refused(&self, e: &StartError) -> Exit {
        eprintln!("bookstore {}: {e}", self.program);
        Exit::from(e)
    }

    /// The lines that say the store serves (unless `--quiet`).
    fn say_serving(&self, store: &bookstore::shared::SharedStore) {
        let (program, name, serve) = (self.program, self.name, self.serve);
        if serve.quiet {
            return;
        }
        let geometry = store.geometry();
        tracing::info!(
            target: log::TARGET,
            name = %name,
            bytes = store.segment().len(),
            mode = %serve.mode,
            pid = std::process::id(),
            capacity = geometry.capacity,
            slots = geometry.slot_count,
            "{program}: {} {name} (/dev/shm/{}, {} bytes, mode {}) as pid {}: capacity {} books, {} client slots",
            if program == "market" { "serving" } else { "publishing what it follows in" },
            name.file_name(),
            store.segment().len(),
            serve.mode,
            std::process::id(),
            geometry.capacity,
            geometry.slot_count,
        );
        tracing::info!(
            target: log::TARGET,
            "{program}: stop with Ctrl-C or `bookstore market --stop --name {name}`"
        );
    }
}

/// Opens the journal, saying why it cannot be.
pub(crate) fn open_journal(
    program: &str,
    path: &Path,
    options: &JournalOptions,
) -> Result<(Journal, Recovery), Exit> {
    Journal::open(path, options).map_err(|e| journal_refused(program, &e))
}

/// Says why the journal cannot be opened; the exit code to leave with.
fn journal_refused(program: &str, e: &OpenJournalError) -> Exit {
    match e {
        // We hold our name, so the journal's holder serves another name with it.
        OpenJournalError::Locked { .. } => eprintln!(
            "bookstore {program}: {e} (one serving another name with the same --journal); give each store its own journal"
        ),
        _ => eprintln!("bookstore {program}: {e}"),
    }
    Exit::from(e)
}

pub(crate) fn loop_config(serve: &ServeArgs) -> LoopConfig {
    LoopConfig {
        spin: Duration::from_micros(serve.spin_us),
        snapshot_every: serve.snapshot_every,
        keep_journal: serve.keep_journal,
    }
}

/// The exit line of a market (or a standby that took over) that stopped.
pub(crate) fn finish(
    program: &str,
    name: &ShmName,
    summary: Result<Summary, bookstore::journal::WriteJournalError>,
    quiet: bool,
) -> Exit {
    let summary = match summary {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("bookstore {program}: stopped, acknowledging nothing more: {e}");
            return Exit::Journal;
        }
    };
    if !quiet {
        tracing::info!(
            target: log::TARGET,
            requests = summary.requests,
            clients = summary.clients_served,
            trades_this_run = summary.trades_this_run,
            trades = summary.trades,
            books_on_shelf = summary.books_on_shelf,
            "{program}: stopped. This run: {} requests from {} clients, {} trades. The store in all (journal included): {} trades, {} books on the shelf. {name} removed",
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

pub(crate) fn say(full_told: &mut HashMap<ClientId, Instant>, event: MarketEvent) {
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
pub(crate) fn report_recovery(program: &str, recovery: &Recovery, path: &Path) {
    if let Some(aside) = &recovery.set_aside {
        tracing::info!(
            target: log::TARGET,
            kept_as = %aside.display(),
            "{program}: --fresh: the previous journal is kept as {}",
            aside.display()
        );
    }
    if let Some(torn) = &recovery.torn {
        tracing::info!(
            target: log::TARGET,
            offset = torn.offset,
            bytes = torn.bytes,
            "{program}: journal: cut off a torn last record at offset {} ({} bytes: {}); it was never acknowledged",
            torn.offset, torn.bytes, torn.why
        );
    }
    for note in &recovery.notes {
        tracing::info!(target: log::TARGET, "{program}: journal: {note}");
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
            "{program}: journal {}: new, empty store",
            path.display()
        );
        return;
    }
    let stats = recovery.engine.stats();
    tracing::info!(
        target: log::TARGET,
        journal = %path.display(),
        replayed = recovery.replayed,
        "{program}: journal {}: replayed {} commands{from}{segments}: {} books on the shelf, {} trades, next trade #{}",
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
            "{program}: the restart cancelled {} resting buys of the previous market's clients (a buyer that comes back asks what it bought and buys the rest)",
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
