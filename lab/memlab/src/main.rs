//! `memlab`: the memory lab. `allocate` shows where blocks of growing size land;
//! `access-freed` reads a freed array and explains what it finds.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use memlab::{access_freed, allocate, size};

/// memlab's exit codes: (code, meaning), for `--help` and the man pages.
const EXIT_CODES: [(u8, &str); 3] = [
    (0, "success"),
    (
        1,
        "the system refused (an allocation, a signal handler, reading /proc, writing the plot)",
    ),
    (2, "bad command-line value (the message names the field)"),
];

fn exit_codes() -> cli_docs::ExitCodes {
    cli_docs::ExitCodes {
        codes: EXIT_CODES
            .iter()
            .map(|&(code, meaning)| (code, meaning.to_string()))
            .collect(),
    }
}

fn exit_table() -> String {
    exit_codes().help_text()
}

#[derive(Parser)]
#[command(
    name = "memlab",
    version,
    propagate_version = true,
    about = "The memory lab: where allocations land, and what freed memory holds",
    after_help = exit_table(),
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Allocate blocks of growing size, write every page, and show where each landed.
    Allocate(AllocateArgs),
    /// Read an array after freeing it, and explain the values that changed.
    AccessFreed {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `memlab completions bash`).
    Completions {
        #[arg(value_enum)]
        shell: cli_docs::Shell,
    },
    /// Write man pages into DIR: memlab.1 and one page per subcommand.
    Man {
        /// The directory to write the pages into (created if missing).
        dir: std::path::PathBuf,
    },
}

/// Set by SIGINT or SIGTERM (once the handlers are installed) while memlab holds its blocks.
fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether the run goes on after a pause, or was asked to stop.
#[derive(PartialEq, Eq)]
enum Held {
    GoOn,
    Stopped,
}

/// Waits for a line on stdin (Enter, or a script's newline). If stdin ends first (`</dev/null`,
/// a script that runs `memlab … &`), holds until SIGINT or SIGTERM instead, and says so.
fn wait_for_enter(what: &str) -> Held {
    eprintln!(
        "{what}: run `pmap -x {}` in another terminal, then press Enter",
        std::process::id()
    );
    match std::io::stdin().lock().lines().next() {
        Some(Ok(_)) => Held::GoOn,
        _ => {
            eprintln!("{what}: stdin has ended, so holding until SIGINT or SIGTERM");
            hold_until(None)
        }
    }
}

/// Holds until SIGINT or SIGTERM, or until `limit` has passed.
fn hold_until(limit: Option<Duration>) -> Held {
    let started = Instant::now();
    // Relaxed: the flag carries no data; the handler only asks us to stop.
    while !stop_flag().load(Ordering::Relaxed) {
        if limit.is_some_and(|l| started.elapsed() >= l) {
            return Held::GoOn;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Held::Stopped
}

/// `memlab allocate`'s options.
#[derive(Args)]
struct AllocateArgs {
    /// First block size (1024, 1K, 64M, 1G).
    #[arg(long, default_value = "1K", value_parser = |s: &str| size::parse("from", s))]
    from: usize,
    /// Last block size.
    #[arg(long, default_value = "1G", value_parser = |s: &str| size::parse("to", s))]
    to: usize,
    /// Each block is this many times the previous one.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=1024))]
    factor: u32,
    /// Stop after each step until Enter is pressed (to run pmap from another terminal).
    #[arg(long)]
    pause: bool,
    /// Stop at the end until Enter is pressed (or, when stdin is not a terminal and ends, until SIGINT or SIGTERM).
    #[arg(long)]
    hold: bool,
    /// Hold at the end for this many seconds, without reading stdin (for scripts that run `pmap` meanwhile).
    #[arg(long, value_name = "SECS", conflicts_with = "hold")]
    hold_secs: Option<u64>,
    /// Allocate even if the blocks add up to more than this machine's memory.
    #[arg(long)]
    force: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw RSS and heap size against the step as an SVG picture, the switch from heap to mmap marked.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Allocate(args) => run_allocate(&args),
        Command::AccessFreed { json } => {
            let e = access_freed::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&e).expect("serializes"));
            } else {
                print!("{}", access_freed::report(&e));
            }
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            cli_docs::write_completions(Cli::command(), shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(&dir),
    }
}

/// `memlab man DIR`.
fn man(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    if cli_docs::man_command(Cli::command(), dir, &exit_codes(), "memlab") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `memlab allocate`: the blocks one by one (each kept until the end), a row per step, then a
/// summary (or one JSON object).
fn run_allocate(args: &AllocateArgs) -> ExitCode {
    let AllocateArgs {
        from,
        to,
        factor,
        pause,
        hold,
        hold_secs,
        force,
        json,
        ref plot,
    } = *args;
    if to < from {
        eprintln!(
            "memlab allocate: to: {} is smaller than --from {}",
            size::human(to),
            size::human(from)
        );
        return ExitCode::from(2);
    }
    let sizes = allocate::sizes(from, to, factor as usize);
    let total: usize = sizes.iter().sum();
    if let Some(memory) = allocate::machine_memory() {
        if total > memory && !force {
            eprintln!(
                "memlab allocate: to: the blocks add up to {}, more than this machine's {} of memory; pass --force to try anyway",
                size::human(total),
                size::human(memory)
            );
            return ExitCode::from(2);
        }
    }
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(stop_flag())) {
            eprintln!("memlab allocate: cannot install a signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !json {
        println!(
            "memlab allocate: pid {}, {} blocks from {} to {}, every page written\n",
            std::process::id(),
            sizes.len(),
            size::human(from),
            size::human(to)
        );
        println!("{}", allocate::table_header());
    }
    let mut blocks = Vec::new();
    let mut steps = Vec::new();
    for (n, &s) in sizes.iter().enumerate() {
        let (block, step) = match allocate::step(s) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("memlab allocate: {e}");
                return ExitCode::FAILURE;
            }
        };
        if !json {
            println!("{}", allocate::table_row(n + 1, &step));
        }
        blocks.push(block);
        steps.push(step);
        if pause && wait_for_enter(&format!("paused after step {}", n + 1)) == Held::Stopped {
            eprintln!("memlab allocate: stopped by a signal after step {}", n + 1);
            return ExitCode::SUCCESS;
        }
    }
    if json {
        let switch = allocate::switch(&steps)
            .map(|(h, m)| serde_json::json!({"last_heap_block": h, "first_own_mapping_block": m}));
        let out = serde_json::json!({"pid": std::process::id(), "steps": steps, "switch": switch});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializes")
        );
    } else {
        println!("\n{}\n{}", allocate::summary(&steps), allocate::HEAP_NOTE);
    }
    if let Some(path) = plot {
        if let Err(e) = memlab::plot::allocation(path, &steps, std::process::id()) {
            eprintln!("memlab allocate: --plot {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        if !json {
            println!("\nwrote {}", path.display());
        }
    }
    if hold && wait_for_enter("holding all blocks") == Held::Stopped {
        eprintln!("memlab allocate: stopped by a signal");
    }
    if let Some(secs) = hold_secs {
        eprintln!(
            "holding all blocks for {secs} s (or until SIGINT or SIGTERM): run `pmap -x {}` now",
            std::process::id()
        );
        hold_until(Some(Duration::from_secs(secs)));
    }
    drop(blocks);
    ExitCode::SUCCESS
}
