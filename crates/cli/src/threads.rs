//! `bookstore threads`: the threads lesson. One workload run four ways, side by side, with
//! what each shared and how it synchronised.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use shm::ShmName;

use crate::args::ThreadsArgs;
use crate::exit::Exit;
use crate::peers::{self, Reaped};
use crate::scratch::ScratchJournal;
use bookstore::client::{open_store, Client, ClientRole};
use bookstore::lesson::{
    self, mutex, rings, shared_object::ClientExchange, Books, Contention, Orders, TraderRun,
    VariantRun, Want, Workload,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One row of the lesson's table.
#[derive(Serialize)]
struct Row {
    name: String,
    orders_per_sec: f64,
    p50_ns: u64,
    p99_ns: u64,
    cpu_s: f64,
    balanced: bool,
    all_sold: bool,
    lock_waits: Option<u64>,
    condvar_waits: Option<u64>,
    futex_wakes: Option<u64>,
    refusals: u64,
    /// The shelf at the end: (title, price in cents, copies), sorted.
    shelf: Vec<(String, u64, u64)>,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    sellers: usize,
    buyers: usize,
    orders_per_seller: usize,
    capacity: u32,
    shards: usize,
    spin_us: u64,
    variants: Vec<Row>,
}

pub fn run(args: ThreadsArgs) -> Exit {
    match lesson_run(&args) {
        Ok(ok) if ok => Exit::Ok,
        Ok(_) => Exit::Error,
        Err(e) => {
            eprintln!("bookstore threads: {e}");
            Exit::Error
        }
    }
}

fn lesson_run(args: &ThreadsArgs) -> Result<bool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = args.shards.unwrap_or(cores).max(1);
    let workload = if args.seller_orders.is_empty() && args.buyer_orders.is_empty() {
        Workload::standard(args.sellers, args.buyers, args.orders, args.capacity)
    } else {
        custom_workload(args)?
    };
    let say = |what: &str| {
        if !args.json {
            eprintln!("running {what}…");
        }
    };
    // Spinning pays only when every spinning thread has a core (`client::spin_for`).
    let threads = workload.sellers.len() + workload.buyers.len() + shards;
    let spin = args.spin_us.map_or_else(
        || bookstore::client::spin_for(threads),
        Duration::from_micros,
    );
    let mut variants = Vec::new();
    say("mutex: threads sharing one engine behind a lock");
    variants.push(row(
        "mutex",
        &workload,
        measure(|| Ok(mutex::run(&workload)))?,
    ));
    say("market-thread: one market thread, rings and doorbells in process memory");
    variants.push(row(
        "market-thread",
        &workload,
        measure(|| Ok(rings::run(&workload, 1, spin)))?,
    ));
    say(&format!(
        "sharded: {shards} market threads, each owning its titles"
    ));
    variants.push(row(
        &format!("sharded ({shards})"),
        &workload,
        measure(|| Ok(rings::run(&workload, shards, spin)))?,
    ));
    say("processes: the real market and trader processes over the shared object");
    variants.push(row(
        "processes",
        &workload,
        measure(|| processes(&workload, spin))?,
    ));
    let report = Report {
        cores,
        sellers: args.sellers,
        buyers: args.buyers,
        orders_per_seller: args.orders,
        capacity: args.capacity,
        shards,
        spin_us: spin.as_micros() as u64,
        variants,
    };
    let ok = report.variants.iter().all(|v| v.balanced);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ok)
}

/// The workload of `--seller-orders` / `--buyer-orders` (one trader each).
fn custom_workload(args: &ThreadsArgs) -> Result<Workload> {
    let mut workload = Workload {
        sellers: Vec::new(),
        buyers: Vec::new(),
        capacity: args.capacity,
    };
    for text in &args.seller_orders {
        match parse_orders(&format!("sell {text}"))? {
            Orders::Sell(titles) => workload.sellers.push(titles),
            Orders::Buy(_) => unreachable!("parsed as sell"),
        }
    }
    for text in &args.buyer_orders {
        match parse_orders(&format!("buy {text}"))? {
            Orders::Buy(wants) => workload.buyers.push(wants),
            Orders::Sell(_) => unreachable!("parsed as buy"),
        }
    }
    Ok(workload)
}

/// Runs one variant and adds the CPU time it took (this process's and its children's).
fn measure(variant: impl FnOnce() -> Result<VariantRun>) -> Result<(VariantRun, Duration)> {
    let before = shm::process::cpu_time()?;
    let run = variant()?;
    let after = shm::process::cpu_time()?;
    let cpu = (after.own + after.children).saturating_sub(before.own + before.children);
    Ok((run, cpu))
}

fn row(name: &str, workload: &Workload, (run, cpu): (VariantRun, Duration)) -> Row {
    // 1 ns to 10 minutes, 3 significant digits.
    const MAX_NS: u64 = 600_000_000_000;
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds");
    for trader in &run.traders {
        for &ns in &trader.latencies_ns {
            histogram
                .record(ns.clamp(1, MAX_NS))
                .expect("a value within the bounds");
        }
    }
    let listed: usize = workload.sellers.iter().map(Vec::len).sum();
    let Contention {
        lock_waits,
        condvar_waits,
        futex_wakes,
    } = run.contention;
    Row {
        name: name.into(),
        orders_per_sec: workload.orders() as f64 / run.wall.as_secs_f64(),
        p50_ns: histogram.value_at_quantile(0.50),
        p99_ns: histogram.value_at_quantile(0.99),
        cpu_s: cpu.as_secs_f64(),
        balanced: run.books.balanced(),
        all_sold: run.books.sold == listed as u64,
        lock_waits,
        condvar_waits,
        futex_wakes,
        refusals: run.traders.iter().map(|t| t.refusals).sum(),
        shelf: run.books.shelf,
    }
}

fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let total = r.sellers * r.orders_per_seller;
    let _ = writeln!(
        s,
        "threads lesson: {} seller threads × {} books, {} buyer threads buying them all, {} titles, a store of {} books; {} cores, threads spin {} µs before parking\n",
        r.sellers,
        r.orders_per_seller,
        r.buyers,
        lesson::TITLES.len(),
        r.capacity,
        r.cores,
        r.spin_us
    );
    let _ = writeln!(
        s,
        "{:<14} {:>10} {:>9} {:>9} {:>7}  {:<36} books",
        "variant", "orders/s", "p50", "p99", "cpu s", "contention"
    );
    for v in &r.variants {
        let contention = [
            v.lock_waits.map(|n| format!("{n} lock waits")),
            v.condvar_waits.map(|n| format!("{n} condvar waits")),
            v.futex_wakes.map(|n| format!("{n} futex wakes")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let contention = if contention.is_empty() {
            "(not counted across processes)".to_string()
        } else {
            contention
        };
        let books = match (v.balanced, v.all_sold) {
            (true, true) => format!("balanced, all {total} sold"),
            (true, false) => "balanced, NOT all sold".into(),
            _ => "NOT BALANCED".into(),
        };
        let _ = writeln!(
            s,
            "{:<14} {:>10.0} {:>9} {:>9} {:>7.2}  {:<36} {}",
            v.name,
            v.orders_per_sec,
            human_ns(v.p50_ns),
            human_ns(v.p99_ns),
            v.cpu_s,
            contention,
            books
        );
    }
    let _ = writeln!(s, "\n(an order's latency runs from its first attempt to its success, waits for room or books included; refusals: {})",
        r.variants.iter().map(|v| format!("{} {}", v.name, v.refusals)).collect::<Vec<_>>().join(", "));
    s.push_str(&explain(r));
    s
}

fn human_ns(ns: u64) -> String {
    match ns {
        n if n < 10_000 => format!("{n} ns"),
        n if n < 10_000_000 => format!("{} µs", n / 1_000),
        n => format!("{} ms", n / 1_000_000),
    }
}

/// What each row shared and how it synchronised, and why the numbers differ.
fn explain(r: &Report) -> String {
    let threads = r.sellers + r.buyers;
    let mut s = format!(
        "
What each row shares, and how:
- mutex: all {threads} trader threads share one engine behind one Mutex; a seller that finds the
  store full waits on a Condvar until a buyer signals room, a buyer that finds nothing waits for a
  seller. Every order takes the lock, so orders run one at a time, and the lock's cache line
  travels between cores with every acquisition; waiting threads sleep in the kernel.
- market-thread: nothing is shared that two threads write. Each trader owns the producing end of
  a request ring and the consuming end of a reply ring; one market thread owns the engine and
  the other ends. Indices are published with release stores and read with acquire loads; a
  futex doorbell wakes a parked thread only when it is parked. This is the market process's
  design, inside one process: orders still go one at a time through one engine.
- sharded ({k}): {k} market threads, each the single writer of the titles that hash to it and of
  1/{k} of the store's capacity. Orders for different shards proceed in parallel. A buy of any
  title has no single shelf to look at any more: it is tried shard by shard, so it buys the first
  shard's cheapest, not the store's.
- processes: the real `bookstore market` and one process per trader, through the shared object:
  the same rings and doorbells as market-thread, across address spaces (journal written, not
  synced).
",
        k = r.shards
    );
    let scaling = format!(
        "
Why the numbers differ: {cores} cores for {threads} trader threads plus the market thread(s), and
threads spin {spin} µs before they park. The mutex row hands nothing to another thread: a trader
takes the lock, runs the engine, and goes on; when the lock is taken it usually waits briefly in
the kernel. Each single-writer row hands every order to a market thread and back, and whenever
the other side is parked that hand-off is a futex wake (count them: about two per order when
threads park at once). With more threads than cores those wakes, not the engine, set the pace,
and spinning longer only takes the core from the thread being waited for (try --spin-us 200).
The sharded row splits the work between {shards} engines, but it can run no more engines at once
than there are cores left over from the traders. Give every thread its own core and a hand-off
costs a cache-line transfer instead (about a microsecond; see `bookstore bench`), while the
mutex's lock line still moves between all the traders on every order: there the single-writer
designs can pull ahead and sharding can scale. {verdict}
",
        cores = r.cores,
        spin = r.spin_us,
        shards = r.shards,
        verdict = if threads + r.shards > r.cores {
            "This machine has too few cores to show it."
        } else {
            "This machine has a core for every thread: compare the rows above."
        }
    );
    s.push_str(&scaling);
    s
}

/// Hidden arguments of a trader process of the processes row.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(long, value_parser = crate::args::parse_name)]
    name: ShmName,
    #[arg(long, default_value_t = 20)]
    spin_us: u64,
    /// `sell T T …` (title indices) or `buy any|T …`.
    #[arg(long, allow_hyphen_values = true)]
    orders: String,
}

/// A trader process: attach, say "ready", wait for "go", trade, print the latencies.
pub fn peer(args: PeerArgs) -> Exit {
    Exit::of_run("threads-peer", run_peer(&args))
}

fn run_peer(args: &PeerArgs) -> Result<()> {
    let orders = parse_orders(&args.orders)?;
    let store = open_store(&args.name, Duration::from_secs(10))?;
    let mut client = Client::attach(
        &store,
        ClientRole::Trader,
        Duration::from_micros(args.spin_us),
    )?;
    peers::ready_then_wait_for_go()?;
    let mut exchange = ClientExchange::new(&mut client);
    let run = match &orders {
        Orders::Sell(titles) => lesson::run_seller(&mut exchange, titles),
        Orders::Buy(wants) => lesson::run_buyer(&mut exchange, wants),
    };
    if let Some(error) = exchange.failure() {
        return Err(error.into());
    }
    let latencies: Vec<String> = run.latencies_ns.iter().map(u64::to_string).collect();
    println!("{} {}", run.refusals, latencies.join(" "));
    Ok(())
}

fn format_orders(orders: &Orders) -> String {
    match orders {
        Orders::Sell(titles) => std::iter::once("sell".to_string())
            .chain(titles.iter().map(usize::to_string))
            .collect::<Vec<_>>()
            .join(" "),
        Orders::Buy(wants) => std::iter::once("buy".to_string())
            .chain(wants.iter().map(|w| match w {
                Want::Any => "any".to_string(),
                Want::Title(t) => t.to_string(),
            }))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn parse_orders(text: &str) -> Result<Orders> {
    let mut words = text.split_ascii_whitespace();
    let title = |w: &str| -> Result<usize> {
        let t: usize = w
            .parse()
            .map_err(|_| format!("orders: {w:?} is not a title index"))?;
        if t >= lesson::TITLES.len() {
            return Err(format!("orders: title {t} is outside 0..{}", lesson::TITLES.len()).into());
        }
        Ok(t)
    };
    match words.next() {
        Some("sell") => Ok(Orders::Sell(words.map(title).collect::<Result<_>>()?)),
        Some("buy") => Ok(Orders::Buy(
            words
                .map(|w| {
                    if w == "any" {
                        Ok(Want::Any)
                    } else {
                        title(w).map(Want::Title)
                    }
                })
                .collect::<Result<_>>()?,
        )),
        _ => Err("orders: expected `sell …` or `buy …`".into()),
    }
}

/// The processes row: the real market and one process per trader.
pub fn processes(workload: &Workload, spin: Duration) -> Result<VariantRun> {
    let exe = std::env::current_exe()?;
    let name = ShmName::new(&format!("/bookstore-threads-{}", std::process::id()))?;
    let journal = ScratchJournal::for_store(&name)?;
    let traders = workload.traders();
    let slots = (traders.len() + 1).to_string();
    let capacity = workload.capacity.to_string();
    let spin_us = spin.as_micros().to_string();
    let mut market = Reaped(
        Command::new(&exe)
            .args(["market", "--name", name.as_str(), "--quiet", "--fresh"])
            .args([
                "--capacity",
                &capacity,
                "--slots",
                &slots,
                "--spin-us",
                &spin_us,
            ])
            .args(["--durability", "none", "--journal"])
            .arg(journal.arg())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let result = (|| -> Result<VariantRun> {
        let store = open_store(&name, Duration::from_secs(10))?;
        let commands = traders.iter().map(|orders| {
            let mut c = Command::new(&exe);
            c.args([
                "threads-peer",
                "--name",
                name.as_str(),
                "--spin-us",
                &spin_us,
            ])
            .arg("--orders")
            .arg(format_orders(orders));
            c
        });
        let mut peers = peers::start_together(commands, "a trader process")?;
        let started = Instant::now();
        let mut runs = Vec::new();
        for peer in &mut peers {
            let mut line = String::new();
            peer.output.read_line(&mut line)?;
            runs.push(parse_trader_run(&line)?);
        }
        let wall = started.elapsed();
        for mut peer in peers {
            peer.process.0.wait()?;
        }
        let view = store.settled_view(Duration::from_secs(2))?;
        let mut shelf: Vec<(String, u64, u64)> = view
            .shelf
            .iter()
            .map(|r| (r.title.clone(), r.price_cents, r.qty))
            .collect();
        shelf.sort();
        Ok(VariantRun {
            wall,
            traders: runs,
            books: Books {
                listed: view.books_listed,
                sold: view.books_sold,
                on_shelf: view.books_on_shelf,
                shelf,
            },
            contention: Contention::default(),
        })
    })();
    shm::process::signal_child(&market.0, shm::process::ProcessSignal::TERM)?;
    market.0.wait()?;
    result
}

fn parse_trader_run(line: &str) -> Result<TraderRun> {
    let mut words = line.split_ascii_whitespace();
    let refusals = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("a trader process failed: {line:?}"))?;
    let latencies_ns = words
        .map(|w| {
            w.parse()
                .map_err(|_| format!("a trader process printed {w:?}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(TraderRun {
        latencies_ns,
        refusals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trader_orders_survive_their_command_line_form() {
        for orders in [
            Orders::Sell(vec![0, 7, 3]),
            Orders::Buy(vec![Want::Any, Want::Title(5)]),
            Orders::Sell(vec![]),
        ] {
            assert_eq!(parse_orders(&format_orders(&orders)).unwrap(), orders);
        }
        assert!(parse_orders("sell 8").is_err());
        assert!(parse_orders("rent 1").is_err());
    }
}
