//! `bookstore bench-peer`: the other process of each bench row (hidden; the bench starts it).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use engine::{BuyTarget, Price, Qty, Title};
use shm::{Segment, ShmName};

use super::BenchResult;
use crate::exit::Exit;
use crate::peers;
use bookstore::client::{open_store, Client, ClientRole};
use bookstore::wire::{Reply, Request};
use bookstore_ipc::pingpong;

/// Orders a throughput peer keeps in flight: four reply rings' worth (the market keeps what
/// does not fit in a ring in its backlog). With `--durability batch` a reply is shown only once
/// its record is on disk, so by Little's law the orders in flight bound the rate at about
/// `window / (2 x sync time)`: while one batch syncs the next fills. A window of 48 let each
/// client finish at most 48 orders per sync (0.1-0.2x of the unsynced rate); one ring (1024)
/// left the syncs at ~1000 orders for both clients, 0.42-0.54x; four rings, measured in turn
/// with one and with eight on this machine (three times each, 2 M orders a peer), took the
/// fsynced runs from 5.2-5.4 s to 3.7-4.7 s, with the unsynced ones unchanged (2.2-2.9 s; eight
/// rings: no faster fsynced, slower unsynced, a larger working set).
const WINDOW: usize = 4 * bookstore::layout::REPLY_RING_CAPACITY;

/// Most of its books a seller peer keeps listed and unsold. Without a bound the seller, whose
/// listings never wait for the buyer, runs ahead until the store is full and then retries
/// refused listings; with a bound of one window (its order done only when sold) the buyer
/// often finds the shelf empty, and each such buy costs a resting order and a second reply
/// (measured: 0.85 against 2.0 M orders/s unsynced with a window of 48).
const SHELF_LIMIT: i64 = 2 * WINDOW as i64;

#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(value_enum)]
    kind: PeerKind,
    #[arg(long, value_parser = crate::args::parse_name)]
    name: Option<ShmName>,
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// The bench's pid: the peer stops when it exits (see `shm::process::stop_with_parent`).
    #[arg(long, value_name = "PID")]
    stop_with_parent: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PeerKind {
    /// Spin on a shared cache line, answering each ping.
    Floor,
    /// Sleep on a shared futex word, answering each ping with a wake-up.
    Futex,
    /// Echo bytes from stdin to stdout.
    Pipe,
    /// Echo bytes on the socket passed as fd 0.
    Uds,
    /// List `count` books, pipelined.
    Seller,
    /// Buy `count` books, pipelined.
    Buyer,
}

pub fn peer(args: PeerArgs) -> Exit {
    Exit::of_run("bench-peer", run_peer(&args))
}

fn run_peer(args: &PeerArgs) -> BenchResult<()> {
    // A peer has no SIGTERM handler: the signal ends it at once, which is all it needs.
    if let Some(parent) = args.stop_with_parent {
        if !shm::process::stop_with_parent(parent)? {
            return Err(
                format!("--stop-with-parent {parent}: the bench has exited already").into(),
            );
        }
    }
    match args.kind {
        PeerKind::Floor | PeerKind::Futex => {
            let name = args.name.as_ref().ok_or("--name is required")?;
            let segment = Segment::open_read_write(name, shm::Owner::Is(shm::effective_uid()), 8)?;
            if matches!(args.kind, PeerKind::Floor) {
                pingpong::respond(segment.atomic_u64(0), args.count);
            } else {
                pingpong::respond_futex(segment.atomic_u32(0), args.count);
            }
            Ok(())
        }
        PeerKind::Pipe => {
            let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
            echo(&mut input, &mut output)
        }
        PeerKind::Uds => {
            let mut socket = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
            let mut reply = socket.try_clone()?;
            echo(&mut socket, &mut reply)
        }
        PeerKind::Seller | PeerKind::Buyer => throughput_peer(args),
    }
}

fn echo(input: &mut impl Read, output: &mut impl Write) -> BenchResult<()> {
    let mut byte = [0u8; 1];
    while input.read(&mut byte)? == 1 {
        output.write_all(&byte)?;
        output.flush()?;
    }
    Ok(())
}

/// Sends `count` orders with up to WINDOW in flight; prints "ready", waits for "go", then
/// prints the seconds it took.
fn throughput_peer(args: &PeerArgs) -> BenchResult<()> {
    let name = args.name.as_ref().ok_or("--name is required")?;
    let store = open_store(name, Duration::from_secs(10))?;
    // Three spinners: the market, the seller and the buyer. On two CPUs parking at once measured
    // 1.83-2.67 M orders/s end to end against 1.29-2.14 M with 50 µs of spinning (README,
    // "Performance").
    let spin = bookstore::client::spin_for(3);
    let mut client = Client::attach(&store, ClientRole::Bench, spin)?;
    let seller = matches!(args.kind, PeerKind::Seller);
    let title = Title::new("Benchmark")?;
    let price = Price::from_cents(1000)?;
    let one = Qty::new(1)?;
    let order = |request| {
        if seller {
            Request::List {
                request,
                title: title.clone(),
                price,
                qty: one,
            }
        } else {
            Request::Buy {
                request,
                target: BuyTarget::Any,
                max_price: price,
                qty: one,
                timeout_ms: None,
            }
        }
    };
    peers::ready_then_wait_for_go()?;
    let t = Instant::now();
    // `in_flight`: sent and not yet answered with a final reply. A refused listing (store full)
    // is simply sent again by the next pass.
    // `unsold`: a seller's books listed and not yet sold. Signed: a listing that a resting buy
    // takes at once is told `Sold` before `Listed`, so the count dips below zero for a moment.
    let (mut done, mut in_flight, mut unsold) = (0u64, 0u64, 0i64);
    while done < args.count {
        let mut pushed = false;
        while in_flight < WINDOW as u64
            && done + in_flight < args.count
            && unsold + (in_flight as i64) < SHELF_LIMIT
        {
            let request = client.next_request_id();
            client.push(&order(request))?;
            in_flight += 1;
            pushed = true;
        }
        if pushed {
            client.notify_market();
        }
        match client.recv(Some(Instant::now() + Duration::from_secs(30)))? {
            Some(Reply::Listed { .. }) => {
                done += 1;
                in_flight -= 1;
                unsold += 1;
            }
            Some(Reply::Sold { .. }) => unsold -= 1,
            Some(Reply::Filled { .. } | Reply::Bought { done: true, .. }) => {
                done += 1;
                in_flight -= 1;
            }
            Some(Reply::Rejected { .. }) => in_flight -= 1,
            Some(Reply::Bought { done: false, .. } | Reply::Rested { .. }) => {}
            Some(other) => return Err(format!("unexpected reply {other:?}").into()),
            None => return Err("no reply within 30 s".into()),
        }
    }
    println!("{}", t.elapsed().as_secs_f64());
    Ok(())
}
