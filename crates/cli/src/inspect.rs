//! `bookstore inspect`: read the shared object without attaching; never writes to it.

use std::fmt::Write as _;

use serde::Serialize;
use shm::process::ProcessHandle;

use crate::args::InspectArgs;
use crate::exit::Exit;
use crate::watch;
use bookstore::layout::{Region, SlotState};
use bookstore::shared::{OpenStoreError, StoreReader};
use bookstore::stats::StatsSnapshot;
use bookstore::view::{self, SnapshotRow, SnapshotTrade};
use engine::Cents;
use permissions::{explain_permissions, may_attach, rwx};

mod permissions;

#[derive(Serialize)]
struct Report {
    name: String,
    path: String,
    size_bytes: usize,
    mode: String,
    /// The permission table's view of the mode, e.g. `rw-rw----`.
    permissions: String,
    owner_uid: u32,
    owner_name: Option<String>,
    group_gid: u32,
    group_name: Option<String>,
    /// Who the mode lets attach (open the object read-write).
    may_attach: String,
    layout_version: u32,
    state: Option<&'static str>,
    capacity: u32,
    slots: u32,
    market_pid: u32,
    market_running: bool,
    /// The market is parked on its doorbell: nothing to do, and its view is current (it
    /// publishes before it parks).
    market_idle: bool,
    /// The market's thread that guards the clients' doorbells (the kernel wakes a parked
    /// client when it dies), if one does.
    doorbell_guardian_thread: Option<u32>,
    clients: Vec<ClientInfo>,
    books_on_shelf: u64,
    books_listed_total: u64,
    books_sold_total: u64,
    trades_total: u64,
    revenue_cents: u64,
    resting_buys: u64,
    requests_total: u64,
    rejected_total: u64,
    malformed_total: u64,
    /// listed = sold + on shelf, as published.
    balanced: bool,
    shelf: Vec<SnapshotRow>,
    recent_trades: Vec<SnapshotTrade>,
    /// Titles in the title table (requests and replies carry their ids), and how many of its
    /// records are not valid titles (something else wrote into the object).
    title_table_titles: u32,
    title_table_invalid: u32,
    /// What the market measures of itself (service latency since its start, warnings by
    /// kind, per-second totals, journal, clients' counts).
    stats: StatsSnapshot,
}

#[derive(Serialize)]
struct ClientInfo {
    slot: u32,
    /// The first 64 bits of the client's id, as 16 hexadecimal digits.
    client_id: String,
    pid: u32,
    state: &'static str,
    /// What the client said it is when it attached.
    role: &'static str,
    /// Requests the market has served for it.
    requests_served: u64,
    resting_buys: u64,
    requests_in_flight: u32,
    events_in_flight: u32,
    parked: bool,
}

pub fn run(args: InspectArgs) -> Exit {
    let name = &args.store.name;
    if args.hex {
        return hex(name);
    }
    if let Some(every) = args.watch {
        return watch_lines(name, every, args.json);
    }
    let store = match open(name) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let report = match build(&store) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bookstore inspect: {e}");
            return Exit::Error;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", render(&report));
    }
    Exit::Ok
}

/// Opens the store read-only, saying why not (exit 3 if there is none).
fn open(name: &shm::ShmName) -> Result<StoreReader, Exit> {
    StoreReader::open(name).map_err(|e| {
        eprintln!("bookstore inspect: {e}");
        match e {
            OpenStoreError::Open(shm::OpenError::NotFound(_)) => Exit::NoMarket,
            _ => Exit::Error,
        }
    })
}

fn build(store: &StoreReader) -> Result<Report, view::SnapshotError> {
    let stat = store.segment().stat().ok();
    let identity = store.identity();
    let market = store.market();
    let geometry = store.geometry();
    let (snap, stats) = store.view_and_stats()?;
    let (title_table_titles, valid_titles) = store.title_table_counts();
    let clients = (0..geometry.slot_count)
        .map(|i| (i, store.slot(i)))
        .filter(|(_, slot)| slot.state != SlotState::Free)
        .map(|(i, slot)| {
            let counted = stats.client(i, slot.client_id);
            ClientInfo {
                slot: i,
                client_id: format!("{:016x}", slot.client_id),
                pid: slot.pid,
                state: slot.state.name(),
                role: counted.map_or("?", |c| c.role.name()),
                requests_served: counted.map_or(0, |c| c.requests),
                resting_buys: counted.map_or(0, |c| c.resting_buys),
                requests_in_flight: slot.requests_queued,
                events_in_flight: slot.replies_queued,
                parked: slot.client_parked,
            }
        })
        .collect();
    Ok(Report {
        name: store.segment().name().to_string(),
        path: store.segment().name().dev_shm_path().display().to_string(),
        size_bytes: store.segment().len(),
        mode: stat.map_or_else(|| "?".into(), |s| s.mode.to_string()),
        permissions: stat.map_or_else(|| "?".into(), |s| rwx(s.mode.bits())),
        owner_uid: stat.map_or(u32::MAX, |s| s.owner_uid),
        owner_name: stat.and_then(|s| shm::users::user_name(s.owner_uid)),
        group_gid: stat.map_or(u32::MAX, |s| s.group_gid),
        group_name: stat.and_then(|s| shm::users::group_name(s.group_gid)),
        may_attach: stat.map_or_else(|| "?".into(), may_attach),
        layout_version: store.layout_version(),
        state: identity.state().map(|state| state.name()),
        capacity: geometry.capacity,
        slots: geometry.slot_count,
        market_pid: market.pid,
        market_running: ProcessHandle::open(market).is_ok(),
        market_idle: store.market_parked(),
        doorbell_guardian_thread: store.doorbell_guardian(),
        clients,
        balanced: snap.books_listed == snap.books_sold + snap.books_on_shelf,
        books_on_shelf: snap.books_on_shelf,
        books_listed_total: snap.books_listed,
        books_sold_total: snap.books_sold,
        trades_total: snap.trades,
        revenue_cents: snap.revenue_cents,
        resting_buys: snap.resting_buys,
        requests_total: snap.requests,
        rejected_total: snap.rejected,
        malformed_total: snap.malformed,
        shelf: snap.shelf,
        recent_trades: snap.recent_trades,
        title_table_titles,
        title_table_invalid: title_table_titles - valid_titles,
        stats,
    })
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    let state = r.state.unwrap_or("invalid");
    let _ = writeln!(
        s,
        "store {} ({}, {} bytes, mode {}, owner uid {})",
        r.name, r.path, r.size_bytes, r.mode, r.owner_uid
    );
    let named = |id: u32, name: &Option<String>| match name {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    };
    let _ = writeln!(
        s,
        "  permissions {} {} ({}); owner uid {}, group {}",
        r.mode,
        r.permissions,
        explain_permissions(&r.permissions),
        named(r.owner_uid, &r.owner_name),
        named(r.group_gid, &r.group_name)
    );
    let _ = writeln!(s, "  may attach: {}", r.may_attach);
    let _ = writeln!(
        s,
        "  layout version {}, state {state}, capacity {} books, {} client slots",
        r.layout_version, r.capacity, r.slots
    );
    if r.market_running && state == "standby" {
        let _ = writeln!(
            s,
            "  standby pid {} is running: it follows its market's stream and serves once it takes over",
            r.market_pid
        );
    } else if r.market_running {
        let doing = if r.market_idle { "idle" } else { "busy" };
        let _ = writeln!(s, "  market pid {} is running ({doing})", r.market_pid);
        if let Some(thread) = r.doorbell_guardian_thread {
            let _ = writeln!(
                s,
                "  clients' doorbells guarded by its thread {thread} (market-alarm): the kernel wakes a parked client if the market dies"
            );
        }
    } else {
        let _ = writeln!(
            s,
            "  market pid {} is NOT running: this object is stale; below is what it last published",
            r.market_pid
        );
    }
    let _ = writeln!(s, "\nclients ({} attached)", r.clients.len());
    for c in &r.clients {
        let _ = writeln!(
            s,
            "  slot {:>3}  client {}  pid {:>7}  {:<7} {:<8} served {:>6}, resting buys {:>3}, requests queued {:>2}, replies queued {:>2}{}",
            c.slot, c.client_id, c.pid, c.role, c.state, c.requests_served, c.resting_buys,
            c.requests_in_flight, c.events_in_flight,
            if c.parked { ", parked" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "\nshelf ({} books in {} rows)",
        r.books_on_shelf,
        r.shelf.len()
    );
    if !r.shelf.is_empty() {
        let _ = writeln!(s, "  {:<40} {:>10} {:>7}", "title", "price", "copies");
    }
    for row in &r.shelf {
        let _ = writeln!(
            s,
            "  {:<40} {:>10} {:>7}",
            row.title,
            Cents(row.price_cents),
            row.qty
        );
    }
    let _ = writeln!(
        s,
        "\nrecent trades (last {} of {})",
        r.recent_trades.len(),
        r.trades_total
    );
    for t in &r.recent_trades {
        let _ = writeln!(
            s,
            "  #{:<6} {:>3} × {:<32} at {:>9}  seller {} → buyer {}",
            t.trade_id,
            t.qty,
            format!("{:?}", t.title),
            Cents(t.price_cents),
            t.seller,
            t.buyer
        );
    }
    let _ = writeln!(
        s,
        "\ntotals: {} listed = {} sold + {} on the shelf ({}); {} trades, revenue {}; {} resting buys",
        r.books_listed_total,
        r.books_sold_total,
        r.books_on_shelf,
        if r.balanced { "balanced" } else { "NOT BALANCED" },
        r.trades_total,
        Cents(r.revenue_cents),
        r.resting_buys
    );
    let _ = writeln!(
        s,
        "        this market's run: {} requests, {} rejected, {} malformed (the totals above include what its journal replayed)",
        r.requests_total, r.rejected_total, r.malformed_total
    );
    let _ = writeln!(
        s,
        "        title table: {} of {} titles, sent as ids{}",
        r.title_table_titles,
        bookstore::layout::TITLE_TABLE_ENTRIES,
        match r.title_table_invalid {
            0 => String::new(),
            n => format!("; {n} of them NOT valid titles (written by something else)"),
        }
    );
    let st = &r.stats;
    let _ = writeln!(
        s,
        "\nmarket: up {}, journal {} ({}, {} syncs, last {})",
        watch::format_uptime(watch::wall_ms().saturating_sub(st.started_at_ms) / 1000),
        watch::format_bytes(st.journal_bytes),
        st.durability,
        st.journal_syncs,
        watch::format_ago(st.last_sync_at_ms, watch::wall_ms())
    );
    let q = |q| st.latency.quantile(q).map_or("-".into(), watch::format_ns);
    let _ = writeln!(
        s,
        "  service latency (picked up → reply published) since the start: {} requests, p50 {}, p99 {}, max {}",
        st.latency_count,
        q(0.5),
        q(0.99),
        st.latency.max_bound().map_or("-".into(), watch::format_ns)
    );
    let warnings: Vec<String> = st
        .warnings
        .iter()
        .filter(|w| w.count > 0)
        .map(|w| format!("{} {}", w.name, w.count))
        .collect();
    let _ = writeln!(
        s,
        "  warnings: {}",
        if warnings.is_empty() {
            "none".into()
        } else {
            warnings.join(", ")
        }
    );
    s
}

/// `inspect --watch`: a line per period until the market exits or a signal arrives; with
/// `--json`, one JSON object per line.
fn watch_lines(name: &shm::ShmName, every: std::time::Duration, json: bool) -> Exit {
    use std::io::Write as _;
    let store = match open(name) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = match crate::stop_signal::stop_flag(&[SIGINT, SIGTERM]) {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("bookstore inspect: cannot install a signal handler: {e}");
            return Exit::Error;
        }
    };
    let mut watch = watch::Watch::new(store);
    let mut previous: Option<watch::Sample> = None;
    let mut out = std::io::stdout().lock();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let sample = match watch.sample() {
            Ok(s) => s.clone(),
            Err(e) => {
                eprintln!("bookstore inspect: {e}");
                return Exit::Error;
            }
        };
        let line = WatchLine::new(previous.as_ref(), &sample);
        let written = if json {
            writeln!(out, "{}", serde_json::to_string(&line).expect("serializes"))
        } else {
            writeln!(out, "{}", line.render())
        };
        if written.and_then(|()| out.flush()).is_err() {
            // The reader went away (a closed pipe): nothing more to say.
            return Exit::Ok;
        }
        if !sample.market_running {
            eprintln!(
                "bookstore inspect: the market (pid {}) exited; that was its last picture",
                sample.market_pid
            );
            return Exit::Ok;
        }
        previous = Some(sample);
        let until = std::time::Instant::now() + every;
        while std::time::Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            std::thread::sleep(std::time::Duration::from_millis(20).min(every));
        }
    }
    Exit::Ok
}

/// One line of `inspect --watch`: rates and the service latency since the line before.
#[derive(Serialize)]
struct WatchLine {
    unix_ms: u64,
    market_pid: u32,
    market_running: bool,
    books_on_shelf: u64,
    capacity: u32,
    orders_per_sec: f64,
    trades_per_sec: f64,
    service_requests: u64,
    service_p50_ns: Option<u64>,
    service_p99_ns: Option<u64>,
    service_max_ns: Option<u64>,
    clients: usize,
    warnings: u64,
    balanced: bool,
}

impl WatchLine {
    fn new(previous: Option<&watch::Sample>, now: &watch::Sample) -> Self {
        let (rate, latency) = match previous {
            Some(before) => {
                let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
                let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                (
                    (
                        per_sec(now.view.requests, before.view.requests),
                        per_sec(now.view.trades, before.view.trades),
                    ),
                    watch::latency_between(before, now),
                )
            }
            None => ((0.0, 0.0), watch::latency_between(now, now)),
        };
        let v = &now.view;
        WatchLine {
            unix_ms: now.wall_ms,
            market_pid: now.market_pid,
            market_running: now.market_running,
            books_on_shelf: v.books_on_shelf,
            capacity: now.capacity,
            orders_per_sec: rate.0,
            trades_per_sec: rate.1,
            service_requests: latency.requests,
            service_p50_ns: latency.p50_ns,
            service_p99_ns: latency.p99_ns,
            service_max_ns: latency.max_ns,
            clients: now.slots.len(),
            warnings: now.stats.warnings.iter().map(|w| w.count).sum(),
            balanced: v.books_listed == v.books_sold + v.books_on_shelf,
        }
    }

    fn render(&self) -> String {
        let ns = |v: Option<u64>| v.map_or("-".into(), watch::format_ns);
        let secs = self.unix_ms / 1000;
        format!(
            "{:02}:{:02}:{:02}Z  shelf {}/{}  orders/s {}  trades/s {}  service p50 {} p99 {} max {} ({} req)  clients {}  warnings {}{}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            self.books_on_shelf,
            self.capacity,
            watch::format_count(self.orders_per_sec.round() as u64),
            watch::format_count(self.trades_per_sec.round() as u64),
            ns(self.service_p50_ns),
            ns(self.service_p99_ns),
            ns(self.service_max_ns),
            self.service_requests,
            self.clients,
            self.warnings,
            if self.balanced { "" } else { "  NOT BALANCED" }
        )
    }
}

/// An xxd-style dump, region by region. Works on any object, valid or not.
fn hex(name: &shm::ShmName) -> Exit {
    // Any owner: a read-only dump shows what the mode lets us read anyway (as xxd would).
    let segment = match shm::Segment::open_read_only(name, shm::Owner::Anyone, 1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bookstore inspect: {e}");
            return Exit::Error;
        }
    };
    let bytes = segment.snapshot_bytes();
    drop(segment);
    let regions = match StoreReader::open(name) {
        Ok(store) => {
            let in_use = store.view().ok().map(|v| v.shelf.len());
            store.geometry().regions(in_use)
        }
        Err(e) => {
            println!("# header is not valid ({e}); dumping raw bytes");
            vec![Region {
                start: 0,
                end: bytes.len(),
                label: "raw".to_string(),
            }]
        }
    };
    let mut out = String::new();
    for Region { start, end, label } in regions {
        let region = &bytes[start..end.min(bytes.len())];
        if region.iter().all(|&b| b == 0) {
            let _ = writeln!(
                out,
                "# {label} [{start:#x}..{end:#x}): {} bytes, all zero",
                end - start
            );
            continue;
        }
        let _ = writeln!(out, "# {label} [{start:#x}..{end:#x})");
        dump(&mut out, start, region);
    }
    print!("{out}");
    Exit::Ok
}

fn dump(out: &mut String, base: usize, bytes: &[u8]) {
    let mut skipping = false;
    for (n, line) in bytes.chunks(16).enumerate() {
        if line.iter().all(|&b| b == 0) && n > 0 && (n + 1) * 16 < bytes.len() {
            if !skipping {
                out.push_str("*\n");
                skipping = true;
            }
            continue;
        }
        skipping = false;
        let _ = write!(out, "{:08x}: ", base + n * 16);
        for pair in 0..8 {
            match line.get(pair * 2..pair * 2 + 2) {
                Some(p) => {
                    let _ = write!(out, "{:02x}{:02x} ", p[0], p[1]);
                }
                None => out.push_str("     "),
            }
        }
        out.push(' ');
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
}
