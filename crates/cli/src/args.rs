//! The `bookstore` command line: subcommands, their options, and the parsers that turn each
//! value into the library's validated types (naming the field when one is wrong).

use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use engine::{Price, Qty, Title};
use shm::{Mode, ShmName};

use crate::exit::help_table;

/// A client's `--help` footer: the stdin session's commands, then the exit codes.
fn session_help(commands: &str) -> String {
    format!(
        "Without a subcommand, reads one command per line from stdin (a bad line is reported and skipped;\nsales of your books are announced as they happen):\n  {}\n\n{}",
        commands.replace('\n', "\n  "),
        help_table()
    )
}

/// A listing's default `--timeout` (also a stdin session's `sell` line without one).
pub const SELL_TIMEOUT_SECS: &str = "10";
/// A buy's default `--timeout` (also a stdin session's `buy` line without one).
pub const BUY_TIMEOUT_SECS: &str = "5";
#[derive(Parser, Debug)]
#[command(
    name = "bookstore",
    version,
    propagate_version = true,
    about = "A book market over POSIX shared memory: one market process, any number of sellers and buyers",
    after_help = help_table(),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the store and serve sellers and buyers until SIGINT/SIGTERM.
    #[command(after_help = help_table())]
    Market(MarketArgs),
    /// Follow a replicated market's stream (NATS JetStream) into a store of its own, and take over when the market's lease lapses.
    #[command(after_help = help_table())]
    Standby(StandbyArgs),
    /// List books for sale (one command, or line by line from stdin).
    #[command(after_help = session_help(crate::clients::SELLER_HELP))]
    Seller(SellerArgs),
    /// Buy books (one command, or line by line from stdin).
    #[command(after_help = session_help(crate::clients::BUYER_HELP))]
    Buyer(BuyerArgs),
    /// Decode the store's shared object without attaching as a client.
    #[command(after_help = help_table())]
    Inspect(InspectArgs),
    /// A live full-screen view of a market: shelf, activity, service latency, clients, warnings.
    #[command(after_help = top_help())]
    Top(TopArgs),
    /// Read a market's journal: its records, a torn tail, and the books it replays to.
    #[command(after_help = help_table())]
    Journal(JournalArgs),
    /// Run a market, two sellers and two buyers as separate processes, and check the books.
    #[command(after_help = help_table())]
    Demo(DemoArgs),
    /// Measure round-trip latency and throughput against same-machine baselines.
    ///
    /// The rows whose ratios are targets (the floor and the market in spin mode, iceoryx2, the
    /// futex floor and the market in park mode) are measured in four rounds taken in turn and
    /// merged, so a phase of noise on a shared machine falls on both rows of a ratio alike;
    /// the end-to-end throughput is measured three times each way, unsynced and fsynced by
    /// turns, and the medians are shown. The futex floor and park mode are measured twice, pinned: each process on a CPU of its
    /// own, and both on one CPU (where the scheduler puts them changes these rows twofold).
    ///
    /// A bench first removes what a bench killed with SIGKILL left (its shared object in
    /// /dev/shm, its markets' scratch journals in the temporary directory): only the current
    /// user's, and only of a bench whose process is gone.
    #[command(after_help = help_table())]
    Bench(BenchArgs),
    /// The threads lesson: one workload run four ways (a mutex, a market thread, shards, processes), compared and explained.
    #[command(after_help = help_table())]
    Threads(ThreadsArgs),
    /// Print a shell completion script (e.g. `bookstore completions bash > ~/.local/share/bash-completion/completions/bookstore`).
    Completions(CompletionsArgs),
    /// Write man pages into DIR: bookstore.1 and one page per subcommand (bookstore-market.1, …).
    Man(ManArgs),
    /// Internal: the peer process of a bench baseline.
    #[command(hide = true)]
    BenchPeer(crate::bench::PeerArgs),
    /// Internal: a trader process of the threads lesson's processes row.
    #[command(hide = true)]
    ThreadsPeer(crate::threads::PeerArgs),
}

impl Command {
    /// The name the program's lines go by (`market: warning: …`).
    pub fn program(&self) -> &'static str {
        match self {
            Command::Market(_) => "market",
            Command::Standby(_) => "standby",
            Command::Seller(_) => "seller",
            Command::Buyer(_) => "buyer",
            Command::Inspect(_) => "inspect",
            Command::Top(_) => "top",
            Command::Journal(_) => "journal",
            Command::Demo(_) => "demo",
            Command::Bench(_) | Command::BenchPeer(_) => "bench",
            Command::Threads(_) | Command::ThreadsPeer(_) => "threads",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct StoreName {
    /// The store's shared-memory object name (shows as /dev/shm/NAME without the slash).
    #[arg(long, env = "BOOKSTORE_NAME", default_value = "/bookstore", value_parser = parse_name)]
    pub name: ShmName,
}

#[derive(Args, Debug)]
pub struct MarketArgs {
    #[command(flatten)]
    pub store: StoreName,
    /// Most books the store holds at once [default: the journal's, or 100 for a new store].
    #[arg(long, allow_negative_numbers = true)]
    pub capacity: Option<u32>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Stop the market running on this name (SIGTERM through a pidfd) and wait for it to exit.
    #[arg(long)]
    pub stop: bool,
    /// When the journal reaches the disk: `batch` fsyncs once per loop pass, before replies; `replicated` waits instead for a NATS JetStream stream (--nats) to acknowledge each batch.
    #[arg(long, value_enum, default_value = "batch")]
    pub durability: DurabilityArg,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Start with an empty store: the old journal is renamed aside (PATH.UNIXTIME.old), not deleted.
    #[arg(long)]
    pub fresh: bool,
}

/// How a market (or a standby once it takes over) serves its store and keeps its journal.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Stop (as on SIGTERM) when process PID, which started this market, exits: for the
    /// markets `bookstore bench` starts. Hidden: not for users.
    #[arg(long, value_name = "PID", hide = true)]
    pub stop_with_parent: Option<u32>,
    /// Client slots: how many sellers and buyers can be attached at once.
    #[arg(long, default_value_t = 64)]
    pub slots: u32,
    /// Permission bits of the object (octal): 0600 only you, 0660 you and --group, 0666 every local user (who can then also corrupt the store).
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub mode: Mode,
    /// The object's group, for --mode 0660 [default: your own primary group].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Microseconds to spin looking for work before parking (0: park at once; large: a dedicated core).
    #[arg(long, default_value_t = 50)]
    pub spin_us: u64,
    /// Snapshot the store every N journal records, so a restart replays at most N (about 35 ms at the default); 0: only on a clean stop.
    #[arg(long, value_name = "N", default_value_t = bookstore::journal::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// Start a new journal segment when the live one passes this size (KiB, MiB or GiB; at least 64KiB). Segments the snapshots cover are deleted.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_size)]
    pub journal_segment: Size,
    /// Keep the journal segments the snapshots cover instead of deleting them (for `bookstore journal` to replay from command 0).
    #[arg(long)]
    pub keep_journal: bool,
    /// Do not print a line per trade and per client.
    #[arg(long, short)]
    pub quiet: bool,
    /// The journal file [default: $XDG_STATE_HOME/bookstore/NAME.journal, or ~/.local/state/…].
    #[arg(long, value_name = "PATH")]
    pub journal: Option<std::path::PathBuf>,
}

/// The replicated stream of `--durability replicated` and of a standby, and its lease.
#[derive(Args, Debug)]
pub struct StreamArgs {
    /// NATS servers of the replicated stream (comma-separated URLs, any of the cluster's): for a market with --durability replicated, and a standby.
    #[arg(long, value_name = "URL[,URL…]", value_delimiter = ',')]
    pub nats: Vec<String>,
    /// The JetStream stream [default for a market: its store's name without the slash; a standby names its market's].
    #[arg(long, value_name = "NAME", value_parser = parse_stream_name)]
    pub stream: Option<String>,
    /// Copies of a stream this creates (an existing stream keeps its own), and of its lease.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Seconds the stream's lease lasts unrenewed: a standby takes over this long after its writer stopped renewing (the writer renews every third of it). The first market or standby to use the stream sets it.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_lease_ttl)]
    pub lease_ttl: Duration,
}

#[derive(Args, Debug)]
pub struct StandbyArgs {
    /// The standby's own store: where it publishes what it follows (`inspect` reads it), and where it serves once it takes over.
    #[command(flatten)]
    pub store: StoreName,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Set the standby's journal aside (PATH.UNIXTIME.old) and follow the stream from its start.
    #[arg(long)]
    pub fresh: bool,
}

/// A JetStream stream name as this program uses it: it also names the lease's bucket, so
/// letters, digits, `-` and `_` only, at most 64.
pub fn parse_stream_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "stream: {s:?} is not a name of 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// A lease TTL: 0.5 to 60 seconds (shorter would lapse under a busy machine's scheduling).
pub fn parse_lease_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_seconds(s)?;
    if !(Duration::from_millis(500)..=Duration::from_secs(60)).contains(&ttl) {
        return Err(format!("lease-ttl: {s} seconds is outside 0.5..=60"));
    }
    Ok(ttl)
}

/// `--durability`: when the journal reaches the disk (the journal's own `Durability`, as a
/// command-line value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Written once per batch, never fsynced: survives the market's crash, not the machine's.
    None,
    /// Written and fsynced once per batch, before the batch's replies are visible.
    Batch,
    /// Written and fsynced after every command: slowest, for comparison.
    Always,
    /// Written locally once per batch (not fsynced) and published to a NATS JetStream stream; replies wait for the stream to acknowledge (a majority of its servers stored it).
    Replicated,
}

impl From<DurabilityArg> for bookstore::journal::Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::None => Self::None,
            DurabilityArg::Batch => Self::Batch,
            DurabilityArg::Always => Self::Always,
            // The stream makes it durable; the local journal is for fast restarts.
            DurabilityArg::Replicated => Self::None,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub store: StoreName,
    /// Seconds to wait for a market to come up before giving up, and for a reply a live market holds back (a replicated stream without its quorum; at least 5).
    #[arg(long, default_value = "5", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub wait: Duration,
    /// The store of a standby (`bookstore standby --name NAME`) to go on with when the market is gone: while waiting, the first of the names to serve is used (repeatable).
    #[arg(long = "standby", value_name = "NAME", value_parser = parse_name)]
    pub standbys: Vec<ShmName>,
    /// Microseconds to spin for a reply before parking.
    #[arg(long, default_value_t = 50)]
    pub spin_us: u64,
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SellerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: Option<SellerAction>,
}

#[derive(Subcommand, Debug)]
pub enum SellerAction {
    /// List copies of a title at a price; waits while the store is full.
    Sell {
        #[arg(value_parser = parse_title)]
        title: Title,
        /// Price per copy, e.g. 12.50.
        #[arg(long, value_parser = parse_price, allow_negative_numbers = true)]
        price: Price,
        #[arg(long, default_value = "1", value_parser = parse_qty, allow_negative_numbers = true)]
        qty: Qty,
        /// Seconds to keep retrying while the store is full.
        #[arg(long, default_value = SELL_TIMEOUT_SECS, value_parser = parse_seconds, allow_negative_numbers = true)]
        timeout: Duration,
    },
}

#[derive(Args, Debug)]
pub struct BuyerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub action: Option<BuyerAction>,
}

#[derive(Subcommand, Debug)]
pub enum BuyerAction {
    /// Buy copies of a title (or of any title with --any) at up to a price.
    Buy {
        #[arg(value_parser = parse_title, required_unless_present = "any", conflicts_with = "any")]
        title: Option<Title>,
        /// Buy the cheapest copies of any title.
        #[arg(long)]
        any: bool,
        /// Highest price per copy, e.g. 10 or 9.99.
        #[arg(long, value_parser = parse_price, allow_negative_numbers = true)]
        max_price: Price,
        #[arg(long, default_value = "1", value_parser = parse_qty, allow_negative_numbers = true)]
        qty: Qty,
        /// Seconds to wait for copies to be listed before giving up on the rest.
        #[arg(long, default_value = BUY_TIMEOUT_SECS, value_parser = parse_seconds, allow_negative_numbers = true)]
        timeout: Duration,
    },
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub store: StoreName,
    /// Print one JSON object.
    #[arg(long, conflicts_with = "hex")]
    pub json: bool,
    /// Print an xxd-style dump of the raw bytes, regions labelled.
    #[arg(long, conflicts_with = "watch")]
    pub hex: bool,
    /// Print a line every SECS seconds (orders/s, trades/s, service latency, shelf, clients, warnings) until the market exits or Ctrl-C: `top` for pipes and logs.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1", value_parser = parse_watch_secs)]
    pub watch: Option<Duration>,
}

/// `--watch SECS`: 0.1 to 3600 seconds.
fn parse_watch_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("--watch: `{s}` is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("--watch: {secs} s is outside 0.1..=3600"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn top_help() -> String {
    format!(
        "Keys: q, Esc or Ctrl-C quit (the terminal is restored); p pauses; s changes the order of the clients.\nIt only reads the store (a read-only mapping); the market does not know it is watched.\nWhen standard output is not a terminal it refuses: use `bookstore inspect --watch` instead.\n\n{}",
        help_table()
    )
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: cli_docs::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing), e.g. ~/.local/share/man/man1.
    pub dir: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    pub store: StoreName,
}

#[derive(Args, Debug)]
pub struct JournalArgs {
    #[command(flatten)]
    pub store: StoreName,
    /// The journal file [default: the market's default for --name].
    #[arg(long, value_name = "PATH")]
    pub journal: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long, conflicts_with = "records")]
    pub json: bool,
    /// Print every record (offset, market clock, command) before the summary.
    #[arg(long)]
    pub records: bool,
    /// Check every record's and every snapshot's checksum and fit; exit 8 naming the file
    /// and what is wrong if any is damaged.
    #[arg(long)]
    pub verify: bool,
    /// Replay only the first N records: the store as it was after command N.
    #[arg(long, value_name = "N")]
    pub upto: Option<u64>,
    /// Read the replicated stream NAME (of `market --durability replicated`) instead of the journal file: every message checked, in order.
    #[arg(long, value_name = "NAME", requires = "nats")]
    pub stream: Option<String>,
    /// NATS servers for --stream (comma-separated URLs).
    #[arg(long, value_name = "URL[,URL…]", value_delimiter = ',')]
    pub nats: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seller processes.
    #[arg(long, default_value_t = 2)]
    pub sellers: u32,
    /// Buyer processes.
    #[arg(long, default_value_t = 2)]
    pub buyers: u32,
    /// Books each seller lists (one listing per book).
    #[arg(long, default_value_t = 10_000)]
    pub books: u32,
    /// The store's capacity (small, so sellers meet a full store).
    #[arg(long, default_value_t = 100)]
    pub capacity: u32,
}

#[derive(Args, Debug)]
pub struct ThreadsArgs {
    /// Seller threads (and processes, in the processes row).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub sellers: usize,
    /// Buyer threads; between them they buy every book listed.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub buyers: usize,
    /// Books each seller lists, one order each.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    pub orders: usize,
    /// The store's capacity (small, so sellers meet a full store).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub capacity: u32,
    /// Microseconds market and trader threads (and processes) spin for work before parking [default: 0 when there are more threads than cores, else 50].
    #[arg(long)]
    pub spin_us: Option<u64>,
    /// Internal (tests): one seller's titles by index, e.g. "0 3 3"; replaces the standard workload.
    #[arg(long, hide = true)]
    pub seller_orders: Vec<String>,
    /// Internal (tests): one buyer's wants, e.g. "any 3" (title indices or `any`).
    #[arg(long, hide = true)]
    pub buyer_orders: Vec<String>,
    /// Market threads of the sharded row [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub shards: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Round trips measured per latency row.
    #[arg(long, default_value_t = 100_000)]
    pub round_trips: u32,
    /// Orders sent by the seller and by the buyer in the throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: u32,
    /// Also draw the results as an SVG picture: the latency distribution of every round-trip row (log scale, p50 and p99 marked, the floor dashed) and the throughput bars.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Also time iceoryx2's request-response on the same 64-byte payload, with this build of the peer in `peers/iceoryx2` (`peers/compare` builds it and passes it here), and print how many times faster the market is.
    #[arg(long, value_name = "PEER_BINARY")]
    pub iceoryx2: Option<std::path::PathBuf>,
    /// Commands of history behind the restart row: written with a snapshot at the market's default interval, the last one an interval less one command back (the worst a crash leaves), then a market started over it and timed until it serves. 0 skips the row.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub restart_history: u64,
}

pub fn parse_name(s: &str) -> Result<ShmName, String> {
    ShmName::new(s).map_err(|e| format!("name: {e}"))
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse::<Mode>().map_err(|e| format!("mode: {e}"))
}

/// A size in bytes, given with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// Parses `64KiB`, `32MiB`, `1GiB` (also `K`, `M`, `G`, any case): the journal segment's size,
/// from 64 KiB to 64 GiB.
pub fn parse_size(s: &str) -> Result<Size, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
                "journal-segment: {s:?} is not a size such as 64KiB, 32MiB or 1GiB"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("journal-segment: {s:?} does not start with a whole number"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .unwrap_or(u64::MAX);
    let (min, max) = (bookstore::journal::MIN_SEGMENT_BYTES, 64 << 30);
    if !(min..=max).contains(&bytes) {
        return Err(format!("journal-segment: {s} is outside 64KiB..=64GiB"));
    }
    Ok(Size(bytes))
}

pub fn parse_title(s: &str) -> Result<Title, String> {
    Title::new(s).map_err(|e| e.to_string())
}

pub fn parse_qty(s: &str) -> Result<Qty, String> {
    let n: u64 = s
        .parse()
        .map_err(|_| format!("qty: {s:?} is not a whole number of copies"))?;
    Qty::new(n).map_err(|e| e.to_string())
}

pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s} seconds is outside 0..=86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an amount such as `12`, `12.5` or `12.50` into cents: digits, at most two decimals.
pub fn parse_price(s: &str) -> Result<Price, String> {
    let bad = || {
        format!("price: {s:?} is not an amount like 12.50 (digits, at most 2 decimals, no sign)")
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || frac.len() > 2 {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let cents = whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or_else(bad)?;
    Price::from_cents(cents).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_to_cents_and_bad_ones_name_the_field() {
        assert_eq!(parse_price("12.50").unwrap().cents(), 1250);
        assert_eq!(parse_price("12.5").unwrap().cents(), 1250);
        assert_eq!(parse_price("9").unwrap().cents(), 900);
        assert_eq!(parse_price(".99").unwrap().cents(), 99);
        for bad in ["-1", "1.234", "abc", "", ".", "1e3", "99999999999999999999"] {
            assert!(parse_price(bad).unwrap_err().starts_with("price:"), "{bad}");
        }
        assert!(parse_price("0").unwrap_err().starts_with("price:"));
        assert!(parse_price("1000000.01").unwrap_err().starts_with("price:"));
    }

    #[test]
    fn segment_sizes_take_binary_units_and_bad_ones_name_the_field() {
        assert_eq!(parse_size("64KiB").unwrap(), Size(64 << 10));
        assert_eq!(parse_size("32MiB").unwrap(), Size(32 << 20));
        assert_eq!(parse_size("2g").unwrap(), Size(2 << 30));
        for bad in [
            "",
            "MiB",
            "32",
            "32MB",
            "-1MiB",
            "1KiB",
            "65GiB",
            "99999999999999999999G",
        ] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.starts_with("journal-segment:"), "{bad}: {error}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
