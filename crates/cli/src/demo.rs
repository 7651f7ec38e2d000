//! `bookstore demo`: the lab's three terminals in one command. A market, sellers and buyers run
//! as separate processes of this same binary; the demo feeds them orders through their stdin
//! mode, follows the published view, then checks the books balance and that the object is gone.

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use engine::Cents;
use indicatif::{ProgressBar, ProgressStyle};
use shm::ShmName;

use crate::args::DemoArgs;
use crate::exit::Exit;
use crate::scratch::ScratchJournal;
use bookstore::client::open_store;
use bookstore::shared::SharedStore;
use bookstore::view::Snapshot;

/// Titles and prices (cents) the sellers list.
const CATALOG: [(&str, u64); 8] = [
    ("Dune", 999),
    ("Emma", 650),
    ("Ulysses", 1450),
    ("Middlemarch", 1200),
    ("The Trial", 875),
    ("Beloved", 1099),
    ("Things Fall Apart", 790),
    ("Pedro Páramo", 925),
];
/// Buyers pay up to this, so every listing finds a buyer.
const BUYER_LIMIT: &str = "50.00";
/// Seconds any one order may wait (store full / nothing listed yet).
const ORDER_TIMEOUT: &str = "60";

pub fn run(args: DemoArgs) -> Exit {
    match demo(&args) {
        Ok(true) => Exit::Ok,
        Ok(false) => Exit::Error,
        Err(e) => {
            eprintln!("bookstore demo: {e}");
            Exit::Error
        }
    }
}

fn seller_script(seller: u32, books: u32) -> String {
    (0..books)
        .map(|n| {
            let (title, cents) = CATALOG[((seller + n) as usize) % CATALOG.len()];
            format!("sell {title:?} {} 1 {ORDER_TIMEOUT}\n", Cents(cents))
        })
        .collect()
}

/// Buys of 1 to 3 copies of anything, adding up to exactly `books`.
fn buyer_script(buyer: u32, books: u32) -> String {
    let mut left = books;
    let mut script = String::new();
    let mut n = buyer;
    while left > 0 {
        let qty = (n % 3 + 1).min(left);
        script.push_str(&format!("buy --any {BUYER_LIMIT} {qty} {ORDER_TIMEOUT}\n"));
        left -= qty;
        n += 1;
    }
    script
}

fn spawn_client(
    exe: &std::path::Path,
    role: &str,
    name: &ShmName,
    script: String,
) -> std::io::Result<Child> {
    let mut child = Command::new(exe)
        .args([role, "--name", name.as_str(), "--quiet", "--wait", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A thread per child: a long script would fill the pipe before the child reads it.
    std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    Ok(child)
}

fn demo(args: &DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let name = ShmName::new(&format!("/bookstore-demo-{}", std::process::id()))?;
    let total = u64::from(args.sellers) * u64::from(args.books);
    let buyers = args.buyers.max(1);
    println!(
        "demo: a market on {name} (capacity {}), {} sellers listing {} books each, {} buyers buying them all",
        args.capacity, args.sellers, args.books, buyers
    );
    // The market journals every command and fsyncs once per batch, as it does by default.
    let journal = ScratchJournal::for_store(&name)?;
    let mut market = Command::new(&exe)
        .args([
            "market",
            "--name",
            name.as_str(),
            "--capacity",
            &args.capacity.to_string(),
            "--quiet",
            "--fresh",
            "--journal",
        ])
        .arg(journal.arg())
        .spawn()?;
    let store = match open_store(&name, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => {
            let _ = market.kill();
            let _ = market.wait();
            return Err(e.into());
        }
    };
    println!(
        "demo: market pid {} is ready; it journals every order to {} and fsyncs once per batch before replying",
        market.id(),
        journal.path().display()
    );
    println!(
        "demo: starting the sellers (each its own process); the buyers come once the store is full"
    );
    let started = Instant::now();
    let mut clients: Vec<(String, Child)> = Vec::new();
    for s in 0..args.sellers {
        clients.push((
            format!("seller {s}"),
            spawn_client(&exe, "seller", &name, seller_script(s, args.books))?,
        ));
    }
    // The lab's point: the store holds at most `capacity` books. Sellers alone fill it, then
    // wait for room (each refused listing is retried); the buyers make that room.
    let full = wait_until_full(&store, &mut clients, args.capacity)?;
    println!(
        "demo: {}; starting the buyers",
        if full {
            format!(
                "the store is full ({0}/{0} books): sellers now wait for room",
                args.capacity
            )
        } else {
            "the sellers finished before the store filled".into()
        }
    );
    for b in 0..buyers {
        let share = total / u64::from(buyers) + u64::from(u64::from(b) < total % u64::from(buyers));
        clients.push((
            format!("buyer {b}"),
            spawn_client(&exe, "buyer", &name, buyer_script(b, share as u32))?,
        ));
    }

    let (statuses, snap) = watch(&store, &mut clients, total)?;
    let elapsed = started.elapsed();

    shm::process::signal_child(&market, shm::process::ProcessSignal::TERM)?;
    let market_status = market.wait()?;
    drop(store);
    let left_behind = name.dev_shm_path().exists();

    let mut ok = true;
    for ((who, _), status) in clients.iter().zip(&statuses) {
        if !status.success() {
            println!("demo: {who} failed ({status})");
            ok = false;
        }
    }
    print_summary(&snap, elapsed);
    let balanced = snap.books_listed == snap.books_sold + snap.books_on_shelf;
    let checks = [
        ("listed = sold + on the shelf", balanced),
        (
            "every book listed was sold",
            snap.books_listed == total && snap.books_sold == total,
        ),
        ("the market exited cleanly", market_status.success()),
        ("nothing left in /dev/shm", !left_behind),
    ];
    for (what, passed) in checks {
        println!(
            "  check: {what:<32} {}",
            if passed { "ok" } else { "FAILED" }
        );
        ok &= passed;
    }
    if left_behind {
        let _ = shm::unlink(&name);
    }
    Ok(ok)
}

/// Waits until the published view shows a full store (true), or every seller has exited
/// (false).
fn wait_until_full(
    store: &SharedStore,
    sellers: &mut [(String, Child)],
    capacity: u32,
) -> Result<bool, Box<dyn std::error::Error>> {
    loop {
        if store
            .view()
            .is_ok_and(|v| v.books_on_shelf >= u64::from(capacity))
        {
            return Ok(true);
        }
        let mut running = false;
        for (_, child) in sellers.iter_mut() {
            running |= child.try_wait()?.is_none();
        }
        if !running {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Shows a progress bar from the published view until every client has exited; returns their
/// exit statuses and the final view.
fn watch(
    store: &SharedStore,
    clients: &mut [(String, Child)],
    total: u64,
) -> Result<(Vec<ExitStatus>, Snapshot), Box<dyn std::error::Error>> {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} books sold  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; clients.len()];
    while statuses.iter().any(Option::is_none) {
        for (status, (_, child)) in statuses.iter_mut().zip(clients.iter_mut()) {
            if status.is_none() {
                *status = child.try_wait()?;
            }
        }
        if let Ok(snap) = store.view() {
            bar.set_position(snap.books_sold);
            bar.set_message(format!(
                "{} on the shelf, {} trades",
                snap.books_on_shelf, snap.trades
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Clients have exited; the view shows their last trades once the market settles.
    let snap = store.settled_view(Duration::from_secs(2))?;
    bar.set_position(snap.books_sold);
    bar.finish();
    Ok((statuses.into_iter().flatten().collect(), snap))
}

fn print_summary(snap: &Snapshot, elapsed: Duration) {
    let orders = snap.requests;
    println!("\nsummary");
    println!("  books listed      {}", snap.books_listed);
    println!("  books sold        {}", snap.books_sold);
    println!("  on the shelf      {}", snap.books_on_shelf);
    println!("  trades            {}", snap.trades);
    println!("  revenue           {}", Cents(snap.revenue_cents));
    println!("  orders            {orders}");
    println!(
        "  store full        {} times: sellers waited for room and retried",
        snap.rejected
    );
    println!("  time              {elapsed:.2?}");
    println!(
        "  orders/s          {:.0}",
        orders as f64 / elapsed.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buyer_scripts_add_up_to_their_share() {
        for share in [0, 1, 2, 7, 100] {
            let bought: u32 = buyer_script(1, share)
                .lines()
                .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u32>().unwrap())
                .sum();
            assert_eq!(bought, share);
        }
    }
}
