//! The `bookstore` command: parses the command line and runs one subcommand.
//!
//! Architecture invariant: this crate is the only one that knows clap, exit codes, terminal
//! output, progress bars, signals and the bench harness. Each subcommand module is thin over
//! the `bookstore` library, which returns typed outcomes; what the user reads is decided here.

mod args;
mod bench;
mod bench_plot;
mod clients;
mod demo;
mod exit;
mod inspect;
mod journal_cmd;
mod log;
mod market_cmd;
mod peers;
mod replicated;
mod scratch;
mod session;
mod standby_cmd;
mod stop_signal;
mod threads;
mod top;
mod watch;

use args::{Cli, Command};
use exit::Exit;

fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    let format = match log::LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bookstore: {e}");
            return std::process::ExitCode::from(Exit::Usage as u8);
        }
    };
    log::init(format, cli.command.program());
    let exit = run(cli);
    log::flush();
    std::process::ExitCode::from(exit as u8)
}

/// `bookstore man DIR`: the pages, with the exit codes as their EXIT STATUS.
fn man(dir: &std::path::Path) -> Exit {
    use clap::CommandFactory;
    if cli_docs::man_command(Cli::command(), dir, &exit::exit_codes(), "bookstore") {
        Exit::Ok
    } else {
        Exit::Error
    }
}

fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Market(args) => market_cmd::run(args),
        Command::Standby(args) => standby_cmd::run(args),
        Command::Seller(args) => clients::seller(args),
        Command::Buyer(args) => clients::buyer(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Top(args) => top::run(args),
        Command::Journal(args) => journal_cmd::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Completions(args) => {
            use clap::CommandFactory;
            cli_docs::write_completions(Cli::command(), args.shell, &mut std::io::stdout());
            Exit::Ok
        }
        Command::Man(args) => man(&args.dir),
        Command::BenchPeer(args) => bench::peer(args),
        Command::Threads(args) => threads::run(args),
        Command::ThreadsPeer(args) => threads::peer(args),
    }
}
