//! `memlab`: the memory lab. `allocate` shows where blocks of growing size land;
//! `access-freed` reads a freed array and explains what it finds.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use memlab::{access_freed, allocate, size};

#[derive(Parser)]
#[command(
    name = "memlab",
    version,
    about = "The memory lab: where allocations land, and what freed memory holds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Allocate blocks of growing size, write every page, and show where each landed.
    Allocate {
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
        /// Stop at the end until Enter is pressed.
        #[arg(long)]
        hold: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Read an array after freeing it, and explain the values that changed.
    AccessFreed {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn wait_for_enter(what: &str) {
    eprintln!(
        "{what}: run `pmap -x {}` in another terminal, then press Enter",
        std::process::id()
    );
    let _ = std::io::stdin().lock().lines().next();
}

/// How `allocate` runs, from its options.
struct AllocateRun {
    from: usize,
    to: usize,
    factor: u32,
    pause: bool,
    hold: bool,
    json: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Allocate {
            from,
            to,
            factor,
            pause,
            hold,
            json,
        } => run_allocate(&AllocateRun {
            from,
            to,
            factor,
            pause,
            hold,
            json,
        }),
        Command::AccessFreed { json } => {
            let e = access_freed::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&e).expect("serializes"));
            } else {
                print!("{}", access_freed::report(&e));
            }
            ExitCode::SUCCESS
        }
    }
}

/// `memlab allocate`: the blocks one by one (each kept until the end), a row per step, then a
/// summary (or one JSON object).
fn run_allocate(run: &AllocateRun) -> ExitCode {
    let &AllocateRun {
        from,
        to,
        factor,
        pause,
        hold,
        json,
    } = run;
    if to < from {
        eprintln!(
            "memlab allocate: to: {} is smaller than --from {}",
            size::human(to),
            size::human(from)
        );
        return ExitCode::from(2);
    }
    let sizes = allocate::sizes(from, to, factor as usize);
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
        if pause {
            wait_for_enter(&format!("paused after step {}", n + 1));
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
        println!("\n{}", allocate::summary(&steps));
    }
    if hold {
        wait_for_enter("holding all blocks");
    }
    drop(blocks);
    ExitCode::SUCCESS
}
