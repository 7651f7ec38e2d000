//! `bookstore journal`: read a market's journal without a market: what it holds, whether its
//! tail is torn, its snapshots and whether each could start a replay, and what replaying it
//! (all of it, or up to a command) gives. Never writes to it (and takes no lock, so it can
//! look at the journal of a running market; a record being written shows as a torn tail).

use serde::Serialize;

use engine::{BuyTarget, Cents, Command};

use crate::args::JournalArgs;
use crate::exit::Exit;
use bookstore::journal::{self, format};

#[derive(Serialize, Default)]
struct Report {
    path: String,
    size_bytes: u64,
    /// Where the records end (and the torn tail, if any, starts).
    records_end_bytes: u64,
    /// Zeros after the records (and the torn tail): space the market preallocated.
    preallocated_bytes: u64,
    capacity: Option<u32>,
    records: u64,
    lists: u64,
    buys: u64,
    cancels: u64,
    expires: u64,
    clients_gone: u64,
    restarts: u64,
    first_ms: Option<u64>,
    last_ms: Option<u64>,
    torn_tail: Option<format::TornTail>,
    books_listed_total: u64,
    books_sold_total: u64,
    books_on_shelf: u64,
    trades_total: u64,
    next_trade_id: u64,
    resting_buys: u64,
    revenue_cents: u64,
    /// listed = sold + on shelf, after replay.
    balanced: bool,
    /// The commands replayed for the figures above (`--upto`, or every record).
    replayed_commands: u64,
    /// The snapshots beside the journal, newest first.
    snapshots: Vec<SnapshotReport>,
}

#[derive(Serialize)]
struct SnapshotReport {
    path: String,
    /// Journal records it covers (the command number it was taken at).
    commands: u64,
    size_bytes: u64,
    /// Why it could not start a replay of this journal, if it could not.
    problem: Option<String>,
}

pub fn run(args: JournalArgs) -> Exit {
    let path = match journal::chosen_path(args.journal.as_deref(), &args.store.name) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("bookstore journal: {e}");
            return Exit::Usage;
        }
    };
    // A regular file only, checked before the first read: a FIFO would block, a device such
    // as /dev/zero would be read until memory runs out.
    let read = shm::file::open_regular_for_reading(&path).and_then(|mut file| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes)
    });
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bookstore journal: journal {}: {e}", path.display());
            return Exit::Journal;
        }
    };
    let scan = match format::scan(&bytes) {
        Ok(scan) => scan,
        Err(e) => {
            eprintln!("bookstore journal: {}: {e}", path.display());
            return Exit::Journal;
        }
    };
    let mut report = Report {
        path: path.display().to_string(),
        size_bytes: bytes.len() as u64,
        records_end_bytes: scan.valid_len,
        preallocated_bytes: bytes.len() as u64
            - scan.valid_len
            - scan.torn.as_ref().map_or(0, |t| t.bytes),
        capacity: scan.header.map(|h| h.capacity),
        torn_tail: scan.torn.clone(),
        ..Report::default()
    };
    let records = scan.entries.len() as u64;
    if let Some(n) = args.upto.filter(|&n| n > records) {
        eprintln!("bookstore journal: upto: {n} is past the {records} records; replaying them all");
    }
    let upto = args.upto.map_or(records, |n| n.min(records)) as usize;
    report.snapshots = snapshots_of(&path, &scan, report.capacity);
    for entry in &scan.entries {
        if args.records && !args.json {
            println!(
                "{:>10}  {:>10} ms  {}",
                entry.offset,
                entry.now,
                describe(&entry.command)
            );
        }
        count(&mut report, entry);
    }
    report.replayed_commands = upto as u64;
    let engine = journal::replay(report.capacity.unwrap_or(1), &scan.entries[..upto]);
    let stats = engine.stats();
    report.books_listed_total = stats.books_listed;
    report.books_sold_total = stats.books_sold;
    report.books_on_shelf = stats.books_on_shelf.into();
    report.trades_total = stats.trades;
    report.next_trade_id = engine.next_trade_id();
    report.resting_buys = stats.resting_buys.into();
    report.revenue_cents = stats.revenue_cents;
    report.balanced = engine.check_invariants().is_ok();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("bookstore journal: {e}");
                return Exit::Error;
            }
        }
    } else {
        print_summary(&report);
    }
    if args.verify {
        if let Some(bad) = report.snapshots.iter().find(|s| s.problem.is_some()) {
            eprintln!(
                "bookstore journal: verify: snapshot {}: {}",
                bad.path,
                bad.problem.as_deref().unwrap_or_default()
            );
            return Exit::Journal;
        }
        if !args.json {
            println!(
                "verify: every checksum holds ({} records, {} snapshots)",
                report.records,
                report.snapshots.len()
            );
        }
    }
    if report.balanced {
        Exit::Ok
    } else {
        Exit::Error
    }
}

/// Every snapshot beside the journal at `path`, newest first, each examined as a market's
/// start would (a damaged one names what is wrong and where).
fn snapshots_of(
    path: &std::path::Path,
    scan: &format::Scan,
    capacity: Option<u32>,
) -> Vec<SnapshotReport> {
    let Ok(found) = journal::snapshot::list(path) else {
        return Vec::new();
    };
    found
        .into_iter()
        .map(|(commands, file)| SnapshotReport {
            path: file.display().to_string(),
            commands,
            size_bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
            problem: journal::snapshot::examine(&file, scan, capacity.unwrap_or(0)).err(),
        })
        .collect()
}

fn count(report: &mut Report, entry: &format::Entry) {
    report.records += 1;
    report.first_ms.get_or_insert(entry.now);
    report.last_ms = Some(entry.now);
    match entry.command {
        Command::List { .. } => report.lists += 1,
        Command::Buy { .. } => report.buys += 1,
        Command::Cancel { .. } => report.cancels += 1,
        Command::Expire => report.expires += 1,
        Command::ClientGone { .. } => report.clients_gone += 1,
        Command::Restart => report.restarts += 1,
    }
}

fn describe(command: &Command) -> String {
    match command {
        Command::List {
            client,
            request,
            title,
            price,
            qty,
        } => format!(
            "list    client {client} request {}: {} × {:?} at {price}",
            request.0,
            qty.get(),
            title.as_str()
        ),
        Command::Buy {
            client,
            request,
            target,
            max_price,
            qty,
            deadline,
        } => {
            let what = match target {
                BuyTarget::Title(t) => format!("{:?}", t.as_str()),
                BuyTarget::Any => "any title".to_owned(),
            };
            let until = deadline.map_or("until filled".to_owned(), |d| format!("until {d} ms"));
            format!(
                "buy     client {client} request {}: {} × {what} at up to {max_price}, {until}",
                request.0,
                qty.get()
            )
        }
        Command::Cancel { client, request } => {
            format!("cancel  client {client} request {}", request.0)
        }
        Command::Expire => "expire  resting buys past their deadline".to_owned(),
        Command::ClientGone { client } => {
            format!("gone    client {client}: its resting buys are cancelled")
        }
        Command::Restart => {
            "restart the market restarted: every resting buy is cancelled".to_owned()
        }
    }
}

fn print_summary(r: &Report) {
    let capacity = r.capacity.map_or("none yet".to_owned(), |c| c.to_string());
    println!(
        "journal {} ({} bytes, format {}, capacity {capacity})",
        r.path,
        r.size_bytes,
        format::VERSION
    );
    if r.preallocated_bytes > 0 {
        println!(
            "  records end at offset {}; {} bytes after them are preallocated (zeros: a running market's, or one that crashed)",
            r.records_end_bytes, r.preallocated_bytes
        );
    }
    println!(
        "  {} records: {} list, {} buy, {} cancel, {} expire, {} client gone, {} restart",
        r.records, r.lists, r.buys, r.cancels, r.expires, r.clients_gone, r.restarts
    );
    if let (Some(first), Some(last)) = (r.first_ms, r.last_ms) {
        println!("  market clock: {first} ms .. {last} ms");
    }
    for snap in &r.snapshots {
        match &snap.problem {
            None => println!(
                "  snapshot at command {} ({} bytes): usable, {}",
                snap.commands, snap.size_bytes, snap.path
            ),
            Some(why) => println!(
                "  snapshot at command {} ({} bytes): NOT usable ({why}), {}",
                snap.commands, snap.size_bytes, snap.path
            ),
        }
    }
    match &r.torn_tail {
        None => println!("  tail: clean"),
        Some(t) => println!(
            "  tail: {} torn bytes at offset {} ({}); a market starting now cuts them off (or one is writing it right now)",
            t.bytes, t.offset, t.why
        ),
    }
    let upto = if r.replayed_commands < r.records {
        format!(" up to command {}", r.replayed_commands)
    } else {
        String::new()
    };
    println!(
        "  replayed{upto}: {} listed = {} sold + {} on the shelf ({}); {} trades, revenue {}; next trade #{}; {} resting buys",
        r.books_listed_total,
        r.books_sold_total,
        r.books_on_shelf,
        if r.balanced { "balanced" } else { "NOT BALANCED" },
        r.trades_total,
        Cents(r.revenue_cents),
        r.next_trade_id,
        r.resting_buys
    );
}
