//! `bookstore journal`: read a market's journal without a market: what it holds, whether its
//! tail is torn, its snapshots and whether each could start a replay, and what replaying it
//! (all of it, or up to a command) gives. Never writes to it (and takes no lock, so it can
//! look at the journal of a running market; a record being written shows as a torn tail).

use serde::Serialize;

use engine::{BuyTarget, Cents, Command};

use std::ops::RangeInclusive;
use std::path::Path;

use crate::args::JournalArgs;
use crate::exit::Exit;
use bookstore::journal::{self, format, segments};

#[derive(Serialize, Default)]
struct Report {
    /// The live segment (the journal's path), whose bytes the next four fields describe.
    path: String,
    size_bytes: u64,
    /// Where the live segment's records end (and the torn tail, if any, starts).
    records_end_bytes: u64,
    /// Zeros after the records (and the torn tail): space the market preallocated.
    preallocated_bytes: u64,
    capacity: Option<u32>,
    /// The first command the segments still hold (after segments covered by snapshots were
    /// deleted, not 0).
    first_command: u64,
    /// Records in every segment present.
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
    /// The command number the figures above are at (`--upto`, or the last record's).
    replayed_commands: u64,
    /// The snapshot the replay started from, when the segments no longer start at command 0.
    replayed_from_snapshot: Option<u64>,
    /// The segment files, oldest first; the last is the live one.
    segments: Vec<SegmentReport>,
    /// The snapshots beside the journal, newest first.
    snapshots: Vec<SnapshotReport>,
}

#[derive(Serialize)]
struct SegmentReport {
    path: String,
    /// The command number of its first record.
    first: u64,
    records: u64,
    size_bytes: u64,
    live: bool,
}

impl SegmentReport {
    fn of(segment: &segments::SegmentScan) -> Self {
        Self {
            path: segment.path.display().to_string(),
            first: segment.first,
            records: segment.scan.records(),
            size_bytes: segment.size,
            live: segment.live,
        }
    }
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
    // The store the replay starts from (a snapshot, once the journal's first segments are
    // deleted) is found with the chain, so that a running market's rolls and snapshots
    // between the two reads are read again too (see `read_segments`).
    let start_of = |chain: &[segments::SegmentScan]| {
        let (capacity, upto) = (capacity_of(chain), replay_end(chain, args.upto));
        replay_start(&path, capacity, chain[0].first, upto)
    };
    let read = match &args.stream {
        Some(stream) => read_stream(&args.nats, stream).and_then(|chain| {
            let start = start_of(&chain)?;
            Ok((chain, start))
        }),
        None => read_segments(&path, start_of),
    };
    let (chain, (mut engine, from)) = match read {
        Ok(read) => read,
        Err(message) => {
            eprintln!("bookstore journal: {message}");
            return Exit::Journal;
        }
    };
    let live = chain.last().expect("the live segment ends the chain");
    let scan = &live.scan;
    let mut report = Report {
        path: path.display().to_string(),
        size_bytes: live.size,
        records_end_bytes: scan.valid_len,
        preallocated_bytes: live.size - scan.valid_len - scan.torn.as_ref().map_or(0, |t| t.bytes),
        capacity: scan.header.map(|h| h.capacity),
        torn_tail: scan.torn.clone(),
        first_command: chain[0].first,
        segments: chain.iter().map(SegmentReport::of).collect(),
        ..Report::default()
    };
    let (earliest, total) = (chain[0].first, live.end());
    if let Some(n) = args.upto.filter(|&n| n > total) {
        eprintln!("bookstore journal: upto: {n} is past the {total} commands; replaying them all");
    }
    let (capacity, upto) = (capacity_of(&chain), replay_end(&chain, args.upto));
    if args.stream.is_none() {
        report.snapshots = snapshots_of(&path, capacity, earliest..=total);
    }
    for segment in &chain {
        if args.records && !args.json {
            println!(
                "segment {} (commands {} to {})",
                segment.path.display(),
                segment.first,
                segment.end().saturating_sub(1)
            );
        }
        for entry in &segment.scan.entries {
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
    }
    report.replayed_from_snapshot = (from > 0).then_some(from);
    let mut events = Vec::new();
    for segment in &chain {
        let skip = from.saturating_sub(segment.first);
        let take = upto.saturating_sub(segment.first.max(from));
        for entry in segment
            .scan
            .entries
            .iter()
            .skip(skip as usize)
            .take(take as usize)
        {
            engine.apply(entry.now, &entry.command, &mut events);
            events.clear();
        }
    }
    report.replayed_commands = upto;
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
            let plural =
                |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
            println!(
                "verify: every checksum holds ({} records in {}, {})",
                report.records,
                plural(report.segments.len(), "segment"),
                plural(report.snapshots.len(), "snapshot")
            );
        }
    }
    if report.balanced {
        Exit::Ok
    } else {
        Exit::Error
    }
}

/// The store's capacity, as the live segment's header has it (1 for a headerless one: it has
/// no records to replay).
fn capacity_of(chain: &[segments::SegmentScan]) -> u32 {
    let live = chain.last().expect("the live segment ends the chain");
    live.scan.header.map_or(1, |h| h.capacity)
}

/// The command a replay stops before: `--upto`, at most the chain's end.
fn replay_end(chain: &[segments::SegmentScan], upto: Option<u64>) -> u64 {
    let total = chain.last().expect("the live segment ends the chain").end();
    upto.map_or(total, |n| n.min(total))
}

/// The live segment at `path` and every sealed one present before it, each scanned (every
/// record's checksum checked) and their chain checked, with what `then` makes of the chain
/// (the replay's start); or what is wrong, naming the file.
fn read_segments<T>(
    path: &Path,
    then: impl Fn(&[segments::SegmentScan]) -> Result<T, String>,
) -> Result<(Vec<segments::SegmentScan>, T), String> {
    // A running market may roll (the live segment sealed, a new one live), snapshot, and
    // delete the segments and the older snapshot a new one covers while the chain is read,
    // which then seems to overlap or to miss a segment, or to lack the snapshot its first
    // segment needs: a read refused while the files changed under us is read again.
    let files = || {
        let live = segments::live_header(path).map(|h| h.first);
        let sealed = segments::list_sealed(path).unwrap_or_default();
        let snapshots = journal::snapshot::list(path).unwrap_or_default();
        (live, sealed, snapshots)
    };
    let mut attempts = 0;
    loop {
        let before = files();
        let read = read_segments_once(path).and_then(|chain| {
            let made = then(&chain)?;
            Ok((chain, made))
        });
        attempts += 1;
        match read {
            Err(error) if attempts < 3 && files() != before => {
                tracing::debug!(%error, "the journal changed while it was read; reading again");
            }
            other => return other,
        }
    }
}

/// The chain as read once, or why not.
fn read_segments_once(path: &Path) -> Result<Vec<segments::SegmentScan>, String> {
    // A regular file only, checked before the first read: a FIFO would block, a device such
    // as /dev/zero would be read until memory runs out.
    let bytes =
        segments::read_whole(path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    let scan = format::scan(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let live = segments::SegmentScan {
        path: path.to_owned(),
        first: scan.header.map_or(0, |h| h.first),
        size: bytes.len() as u64,
        scan,
        bytes,
        live: true,
    };
    let sealed = segments::list_sealed(path)
        .map_err(|e| format!("journal {}: cannot list its segments: {e}", path.display()))?;
    let earliest = sealed.first().map_or(live.first, |s| s.0);
    segments::read_chain(path, live, earliest, true).map_err(|e| e.to_string())
}

/// The records of the replicated stream `stream` (`--durability replicated`) as one segment:
/// every message's records checked and decoded, each message starting where the one before
/// ended, every one of the same capacity; or what is wrong, naming the message.
fn read_stream(servers: &[String], stream: &str) -> Result<Vec<segments::SegmentScan>, String> {
    use bookstore_replication::{read_stream, StreamConfig};
    if servers.is_empty() {
        return Err("--stream needs --nats URL[,URL…]".into());
    }
    let config = StreamConfig {
        servers: servers.to_vec(),
        stream: stream.to_owned(),
        replicas: 1,
        capacity: 0,
    };
    let messages =
        read_stream(&config, std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let capacity = messages.first().map_or(1, |m| m.capacity);
    let mut entries = Vec::new();
    let mut size = 0;
    for message in &messages {
        let at =
            |problem: String| format!("stream {stream}, message {}: {problem}", message.sequence);
        if message.first_command != entries.len() as u64 {
            return Err(at(format!(
                "starts at command {}, the messages before end at {}",
                message.first_command,
                entries.len()
            )));
        }
        if message.capacity != capacity {
            return Err(at(format!("capacity {}, not {capacity}", message.capacity)));
        }
        let records = format::batch_records(
            capacity,
            message.first_command,
            &message.bytes,
            message.commands,
        )
        .map_err(at)?;
        entries.extend(records);
        size += message.bytes.len() as u64;
    }
    let valid_len = size;
    Ok(vec![segments::SegmentScan {
        path: format!("stream {stream} ({} messages)", messages.len()).into(),
        first: 0,
        scan: format::Scan {
            header: Some(format::FileHeader::new(capacity, 0)),
            skipped: 0,
            entries,
            valid_len,
            torn: None,
        },
        bytes: Vec::new(),
        size,
        live: true,
    }])
}

/// The store a replay up to command `upto` starts from, and its command number: empty at 0
/// while the journal still starts there, else the newest usable snapshot at or before `upto`
/// that the segments reach.
fn replay_start(
    path: &Path,
    capacity: u32,
    earliest: u64,
    upto: u64,
) -> Result<(engine::Engine, u64), String> {
    if earliest == 0 {
        return Ok((engine::Engine::new(capacity), 0));
    }
    let found = journal::snapshot::list(path).unwrap_or_default();
    for (commands, file) in found.iter().filter(|s| (earliest..=upto).contains(&s.0)) {
        if let Ok(snapshot) = journal::snapshot::examine(file, capacity, earliest..=upto) {
            let engine =
                engine::Engine::from_state(&snapshot.engine).expect("examine rebuilt it already");
            return Ok((engine, *commands));
        }
    }
    Err(format!(
        "replay: commands 0 to {} are deleted (covered by snapshots), and no usable snapshot is at or before command {upto} (start the market with --keep-journal to keep every segment)",
        earliest - 1
    ))
}

/// Every snapshot beside the journal at `path`, newest first, each examined as a market's
/// start would (a damaged one names what is wrong and where).
fn snapshots_of(path: &Path, capacity: u32, available: RangeInclusive<u64>) -> Vec<SnapshotReport> {
    let Ok(found) = journal::snapshot::list(path) else {
        return Vec::new();
    };
    found
        .into_iter()
        .map(|(commands, file)| SnapshotReport {
            path: file.display().to_string(),
            commands,
            size_bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
            problem: journal::snapshot::examine(&file, capacity, available.clone()).err(),
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
    for seg in &r.segments {
        let what = if seg.live {
            "live segment"
        } else {
            "sealed segment"
        };
        println!(
            "  {what}: commands {} to {} ({} records, {} bytes), {}",
            seg.first,
            (seg.first + seg.records).saturating_sub(1),
            seg.records,
            seg.size_bytes,
            seg.path
        );
    }
    let from = if r.first_command > 0 {
        format!(
            " (commands {} on; those before are covered by snapshots and deleted)",
            r.first_command
        )
    } else {
        String::new()
    };
    println!(
        "  {} records{from}: {} list, {} buy, {} cancel, {} expire, {} client gone, {} restart",
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
    let total = r.first_command + r.records;
    let mut upto = if r.replayed_commands < total {
        format!(" up to command {}", r.replayed_commands)
    } else {
        String::new()
    };
    if let Some(at) = r.replayed_from_snapshot {
        upto.push_str(&format!(" from the snapshot at command {at}"));
    }
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
