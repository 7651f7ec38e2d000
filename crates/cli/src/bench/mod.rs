//! `bookstore bench`: round-trip latency and throughput, each figure next to baselines measured
//! by the same harness in the same run (the machine is shared and noisy; ratios travel better
//! than absolute times).
//!
//! Every latency row times one round trip per sample with `Instant::now()` on both sides of it,
//! so the clock's own cost (~20-40 ns through the vDSO) is in every row alike.

use bookstore_ipc::pingpong::{FutexPinger, Pinger};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::{BuyTarget, ClientId, Command as EngineCommand, Engine, Price, Qty, RequestId, Title};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shm::{Mode, Segment, ShmName};

use crate::args::BenchArgs;
use crate::exit::Exit;
use crate::peers::Reaped;
use crate::scratch::ScratchJournal;
use bookstore::client::{open_store, Client, ClientRole};
use bookstore::wire::{Reply, Request};
use placement::{Pinned, Placement};

const WARMUP: u32 = 2_000;

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Percentiles {
    p50: u64,
    p99: u64,
    p999: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }

    /// Each percentile's median over `rounds` (a row whose histograms are not ours to merge:
    /// the iceoryx2 peer reports percentiles).
    fn median_of(rounds: &[Percentiles]) -> Self {
        let median = |pick: fn(&Percentiles) -> u64| median(rounds.iter().map(pick).collect());
        Self {
            p50: median(|p| p.p50),
            p99: median(|p| p.p99),
            p999: median(|p| p.p999),
        }
    }
}

/// The middle value of some rounds (the upper of the two middle ones for an even number).
fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

#[derive(Serialize)]
struct Report {
    machine: String,
    round_trips: u32,
    floor_rtt_ns: Percentiles,
    /// The futex floor with each process on a CPU of its own (see `placement.rs`).
    futex_rtt_ns: Percentiles,
    /// The futex floor with both processes on one CPU.
    futex_one_cpu_rtt_ns: Percentiles,
    pipe_rtt_ns: Percentiles,
    uds_rtt_ns: Percentiles,
    market_spin_rtt_ns: Percentiles,
    /// Park mode with the market and the client each on a CPU of its own.
    market_park_rtt_ns: Percentiles,
    /// Park mode with the market (all its threads) and the client on one CPU.
    market_park_one_cpu_rtt_ns: Percentiles,
    /// A buy that fills with the client and one market pass on one thread: the market's own
    /// work, no core-to-core transfer (see `alone.rs`).
    market_alone_ns: Percentiles,
    /// iceoryx2's request-response on the same payload, when `--iceoryx2` names its peer.
    iceoryx2_rtt_ns: Option<Percentiles>,
    orders_per_sec: f64,
    orders_per_sec_fsync: f64,
    engine_ops_per_sec: f64,
    /// A restart after a long history (`--restart-history`; absent with 0).
    restart: Option<restart::RestartFigures>,
    /// `--durability replicated` against a 3-node JetStream cluster on loopback (absent
    /// without a `nats-server`).
    replicated: Option<replicated::ReplicatedFigures>,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Runs `round_trip` `n` times after a warm-up, timing each.
fn time_round_trips(
    n: u32,
    mut round_trip: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Histogram<u64>> {
    let mut h = histogram();
    for i in 0..WARMUP + n {
        let t = Instant::now();
        round_trip()?;
        let ns = t.elapsed().as_nanos() as u64;
        if i >= WARMUP {
            h.record(ns.max(1))?;
        }
    }
    Ok(h)
}

/// How every shared object of a bench begins (after the slash): then its pid, a dash and the
/// row (`leftovers` finds a killed bench's by it).
const NAME_PREFIX: &str = "bookstore-bench-";

fn unique_name(what: &str) -> ShmName {
    ShmName::new(&format!("/{NAME_PREFIX}{}-{what}", std::process::id())).expect("valid name")
}

fn peer_command(kind: &str) -> BenchResult<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["bench-peer", kind]);
    // A peer spins or waits for the bench: it must not outlive a bench that was killed.
    c.args(["--stop-with-parent", &std::process::id().to_string()]);
    Ok(c)
}

/// Which floor: both sides spinning on the word, or both sleeping on it.
#[derive(Clone, Copy)]
enum Floor {
    Spin,
    Futex,
}

/// A ping-pong on one word of a fresh shared object, against a `bench-peer` process, the two
/// placed as `placement` says (or where the scheduler puts them).
fn floor(n: u32, how: Floor, placement: Option<Placement>) -> BenchResult<Histogram<u64>> {
    let (what, peer) = match how {
        Floor::Spin => ("floor", "floor"),
        Floor::Futex => ("futex", "futex"),
    };
    let name = unique_name(what);
    let segment = Segment::create(&name, 4096, Mode::OWNER_ONLY)?;
    let result = (|| {
        let pinned = placement.map(Pinned::for_spawn).transpose()?;
        let _peer = Reaped(
            peer_command(peer)?
                .args([
                    "--name",
                    name.as_str(),
                    "--count",
                    &(WARMUP + n).to_string(),
                ])
                .spawn()?,
        );
        pinned.as_ref().map(Pinned::settle).transpose()?;
        match how {
            Floor::Spin => {
                let mut pinger = Pinger::new(segment.atomic_u64(0));
                time_round_trips(n, || {
                    pinger.round_trip();
                    Ok(())
                })
            }
            Floor::Futex => {
                let mut pinger = FutexPinger::new(segment.atomic_u32(0));
                time_round_trips(n, || {
                    pinger.round_trip();
                    Ok(())
                })
            }
        }
    })();
    let _ = shm::unlink(&name);
    result
}

fn echo_over(stream: &mut (impl Read + Write), n: u32) -> BenchResult<Histogram<u64>> {
    let mut byte = [0u8; 1];
    time_round_trips(n, || {
        stream.write_all(&[7])?;
        stream.read_exact(&mut byte)?;
        Ok(())
    })
}

fn pipe(n: u32) -> BenchResult<Histogram<u64>> {
    let mut child = Reaped(
        peer_command("pipe")?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdin = child.0.stdin.take().expect("piped");
    let stdout = child.0.stdout.take().expect("piped");
    struct Duplex(std::process::ChildStdin, std::process::ChildStdout);
    impl Read for Duplex {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            self.1.read(b)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    echo_over(&mut Duplex(stdin, stdout), n)
}

fn uds(n: u32) -> BenchResult<Histogram<u64>> {
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let theirs: OwnedFd = theirs.into();
    let _child = Reaped(peer_command("uds")?.stdin(Stdio::from(theirs)).spawn()?);
    echo_over(&mut ours, n)
}

/// iceoryx2's request-response round trips: the peer in `peers/iceoryx2` measures them with
/// the same warm-up, clock and histogram as these rows, and prints its percentiles as JSON.
fn iceoryx2_rtt(peer: &std::path::Path, n: u32) -> BenchResult<Percentiles> {
    let what = || format!("--iceoryx2 {}", peer.display());
    let output = Command::new(peer)
        .args(["--round-trips", &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: cannot run it: {e}", what()))?;
    if !output.status.success() {
        return Err(format!("{}: the peer failed ({})", what(), output.status).into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "{}: expected {{\"p50\", \"p99\", \"p999\"}} in nanoseconds, got {:?} ({e})",
            what(),
            text.trim()
        )
        .into()
    })
}

/// A market for one measurement, with a journal in the temp directory removed afterwards.
struct BenchMarket {
    process: Reaped,
    _journal: ScratchJournal,
}

/// A fresh market journaling with `durability` (and `extra` arguments, such as `--nats`).
fn start_market(
    name: &ShmName,
    spin_us: u64,
    durability: &str,
    extra: &[&str],
) -> BenchResult<BenchMarket> {
    let journal = ScratchJournal::for_store(name)?;
    spawn_market(
        name,
        spin_us,
        durability,
        journal,
        &[&["--fresh"], extra].concat(),
    )
}

/// A market of capacity 100,000 over `journal` (removed when the market is dropped).
fn spawn_market(
    name: &ShmName,
    spin_us: u64,
    durability: &str,
    journal: ScratchJournal,
    extra: &[&str],
) -> BenchResult<BenchMarket> {
    let market = Command::new(std::env::current_exe()?)
        .args([
            "market",
            "--name",
            name.as_str(),
            "--quiet",
            "--capacity",
            "100000",
            "--durability",
            durability,
            "--journal",
        ])
        .arg(journal.arg())
        .args(["--spin-us", &spin_us.to_string()])
        // Stopped cleanly (its object removed) if the bench is killed before it stops it.
        .args(["--stop-with-parent", &std::process::id().to_string()])
        .args(extra)
        .spawn()?;
    Ok(BenchMarket {
        process: Reaped(market),
        _journal: journal,
    })
}

fn stop_market(mut market: BenchMarket) -> BenchResult<()> {
    shm::process::signal_child(&market.process.0, shm::process::ProcessSignal::TERM)?;
    market.process.0.wait()?;
    Ok(())
}

/// Buy-that-fills round trips against a market in spin (`spin_us` large) or park (`0`) mode,
/// journaling with `durability` (`none` for the IPC rows: they measure the IPC path, not the
/// disk) and `extra` arguments, the market and this thread placed as `placement` says.
fn market_rtt(
    n: u32,
    spin_us: u64,
    durability: &str,
    extra: &[&str],
    placement: Option<Placement>,
) -> BenchResult<Histogram<u64>> {
    let name = unique_name(if spin_us == 0 { "park" } else { "spin" });
    let pinned = placement.map(Pinned::for_spawn).transpose()?;
    let market = start_market(&name, spin_us, durability, extra)?;
    pinned.as_ref().map(Pinned::settle).transpose()?;
    let result = (|| {
        let store = open_store(&name, Duration::from_secs(10))?;
        let mut client = Client::attach(&store, ClientRole::Bench, Duration::from_micros(spin_us))?;
        let title = Title::new("Benchmark")?;
        let price = Price::from_cents(1000)?;
        let one = Qty::new(1)?;
        let mut stocked = 0u32;
        let mut h = histogram();
        for i in 0..WARMUP + n {
            if stocked == 0 {
                // Untimed: put 1000 copies on the shelf for the next 1000 buys.
                let request = client.next_request_id();
                client.send(&Request::List {
                    request,
                    title: title.clone(),
                    price,
                    qty: Qty::new(1000)?,
                })?;
                while !matches!(client.recv(None)?, Some(Reply::Listed { .. })) {}
                stocked = 1000;
            }
            let request = client.next_request_id();
            let buy = Request::Buy {
                request,
                target: BuyTarget::Title(title.clone()),
                max_price: price,
                qty: one,
                timeout_ms: None,
            };
            let t = Instant::now();
            client.send(&buy)?;
            loop {
                match client.recv(None)? {
                    Some(reply @ (Reply::Filled { .. } | Reply::Bought { .. })) => {
                        if reply.is_final() {
                            break;
                        }
                    }
                    other => return Err(format!("unexpected reply {other:?}").into()),
                }
            }
            let ns = t.elapsed().as_nanos() as u64;
            stocked -= 1;
            if i >= WARMUP {
                h.record(ns.max(1))?;
            }
        }
        Ok(h)
    })();
    stop_market(market)?;
    result
}

fn engine_ops_per_sec(pairs: u32) -> BenchResult<f64> {
    let mut engine = Engine::new(100_000);
    let title = Title::new("Benchmark")?;
    let price = Price::from_cents(1000)?;
    let one = Qty::new(1)?;
    let mut events = Vec::with_capacity(8);
    // Pinned, as the market pins the titles of its title table and passes the pin with each
    // command on one (a title a client sends as its id).
    let pin = Some(engine.pin_title(&title));
    let t = Instant::now();
    for i in 0..u64::from(pairs) {
        let list = EngineCommand::List {
            client: ClientId(1),
            request: RequestId(i),
            title: title.clone(),
            price,
            qty: one,
        };
        engine.apply_pinned(i, &list, pin, &mut events);
        let buy = EngineCommand::Buy {
            client: ClientId(2),
            request: RequestId(i),
            target: BuyTarget::Any,
            max_price: price,
            qty: one,
            deadline: None,
        };
        engine.apply(i, &buy, &mut events);
        events.clear();
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(engine.stats());
    Ok(2.0 * f64::from(pairs) / secs)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

pub fn run(args: BenchArgs) -> Exit {
    Exit::of_run("bench", bench(&args))
}

fn bench(args: &BenchArgs) -> BenchResult<()> {
    let n = args.round_trips;
    if let Some(peer) = &args.iceoryx2 {
        // Checked before minutes of measuring, not after.
        if !peer.is_file() {
            return Err(format!(
                "--iceoryx2 {}: no such file (peers/compare builds the peer and passes it)",
                peer.display()
            )
            .into());
        }
    }
    let progress = |what: &str| {
        if !args.json {
            eprintln!("measuring {what}…");
        }
    };
    for path in leftovers::remove_leftovers_of_killed_benches() {
        eprintln!(
            "bench: removed {}, left by a bench that was killed",
            path.display()
        );
    }
    let rounds = rounds::measure(n, args.iceoryx2.as_deref(), &progress)?;
    progress("pipe ping-pong");
    let pipe_h = pipe(n)?;
    progress("Unix-socket ping-pong");
    let uds_h = uds(n)?;
    progress("the market alone (client and market passes on one thread)");
    let alone_h = alone::market_alone(n)?;
    let (orders_per_sec, orders_per_sec_fsync) = throughput::by_turns(args.orders, &progress)?;
    progress("the engine alone");
    let engine_ops_per_sec = engine_ops_per_sec(args.orders)?;
    let restart = match args.restart_history {
        0 => None,
        n => {
            progress(&format!(
                "a restart after {n} commands of history (writing the history first)"
            ));
            Some(restart::restart_after_history(n)?)
        }
    };
    let replicated = replicated::measure(n, args.orders, &progress)?;
    let report = Report {
        machine: machine(),
        round_trips: n,
        floor_rtt_ns: Percentiles::of(&rounds.floor),
        futex_rtt_ns: Percentiles::of(&rounds.futex),
        futex_one_cpu_rtt_ns: Percentiles::of(&rounds.futex_one_cpu),
        pipe_rtt_ns: Percentiles::of(&pipe_h),
        uds_rtt_ns: Percentiles::of(&uds_h),
        market_spin_rtt_ns: Percentiles::of(&rounds.spin),
        market_park_rtt_ns: Percentiles::of(&rounds.park),
        market_park_one_cpu_rtt_ns: Percentiles::of(&rounds.park_one_cpu),
        market_alone_ns: Percentiles::of(&alone_h),
        iceoryx2_rtt_ns: rounds.iceoryx2,
        orders_per_sec,
        orders_per_sec_fsync,
        engine_ops_per_sec,
        restart,
        replicated,
    };
    if let Some(path) = &args.plot {
        use crate::bench_plot::{LatencyRow, Throughput};
        let rows = [
            ("floor", &rounds.floor),
            ("futex floor, two CPUs", &rounds.futex),
            ("futex floor, one CPU", &rounds.futex_one_cpu),
            ("pipe", &pipe_h),
            ("Unix socket", &uds_h),
            ("market, spin", &rounds.spin),
            ("market alone, one thread", &alone_h),
            ("market, park, two CPUs", &rounds.park),
            ("market, park, one CPU", &rounds.park_one_cpu),
        ]
        .map(|(name, histogram)| LatencyRow { name, histogram });
        let throughput = [
            ("orders/s end to end, unsynced", orders_per_sec),
            ("orders/s end to end, fsync per batch", orders_per_sec_fsync),
            ("engine alone, ops/s", engine_ops_per_sec),
        ]
        .map(|(name, per_sec)| Throughput { name, per_sec });
        let title = format!(
            "bookstore bench: {n} round trips per row, {}",
            report.machine
        );
        crate::bench_plot::draw(path, &title, &rows, report.floor_rtt_ns.p50, &throughput)
            .map_err(|e| format!("--plot {}: {e}", path.display()))?;
        if !args.json {
            eprintln!("wrote {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table::table(&report));
    }
    Ok(())
}

mod alone;
mod leftovers;
mod peer;
mod placement;
mod replicated;
mod restart;
mod rounds;
mod table;
mod throughput;
pub use peer::{peer, PeerArgs};
