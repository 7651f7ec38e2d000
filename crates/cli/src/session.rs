//! The stdin sessions of `seller` and `buyer`: one command per line, sales announced as they
//! happen, and a market restart waited out.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::args::ClientArgs;
use crate::clients::{attached, connect_failed, OrderEnd};
use crate::exit::Exit;
use bookstore::client::{new_client_id, Client, ClientRole};
use bookstore::trading::Progress;
use bookstore::wire::Reply;
use engine::Cents;

/// How often an idle session looks for notices (a sale of one of a seller's books).
const NOTICE_POLL: Duration = Duration::from_millis(50);
/// How often an idle session checks that its market is still there.
const LIVENESS_EVERY: Duration = Duration::from_millis(500);

/// What a session needs to know of its role.
pub struct Role<'a> {
    pub name: &'a str,
    pub help: &'a str,
    /// Prints a reply that arrived between commands (a seller's sale notice).
    pub notice: &'a dyn Fn(&Reply, bool),
}

/// Reads commands line by line. A bad line is reported and skipped (it is not an order, so it
/// does not change the exit code); the session ends at EOF or `quit`, with the first failed
/// order's exit code, or 0.
///
/// If the market exits mid-session, the session waits up to `--wait` for the next market on
/// the same name (which recovers the store from its journal), reattaches under the same client
/// id and carries on. An order the market went away in the middle of is run again with its
/// progress, which asks the new market what became of it first (applied: its result; never
/// seen: sent again), so nothing is ordered twice; a command read after the market was seen
/// to be gone is simply run on the next market.
pub fn session(
    args: &ClientArgs,
    role: &Role<'_>,
    mut command: impl FnMut(&mut Client<'_>, &[String], &mut Progress) -> Result<OrderEnd, String>,
) -> Exit {
    let interactive = std::io::stdin().is_terminal();
    let lines = read_lines_in_background();
    let mut exit = Exit::Ok;
    let mut reconnecting = false;
    let id = match new_client_id() {
        Ok(id) => id,
        Err(e) => return connect_failed(role.name, e),
    };
    // A command not finished when the market was found gone (not sent yet, or in flight, as
    // its progress says): run it on the next market.
    let mut pending: Option<(Vec<String>, Progress)> = None;
    loop {
        let run = |client: &mut Client<'_>| {
            if interactive || (reconnecting && !args.quiet) {
                eprintln!(
                    "{} attached to the market (pid {}, slot {}). {}",
                    role.name,
                    client.market_pid(),
                    client.slot(),
                    role.help
                );
            }
            let style = Style {
                role,
                quiet: args.quiet,
                interactive,
                wait: args.wait,
            };
            let end = session_lines(client, &lines, &style, &mut pending, &mut command);
            (end, client.market_pid())
        };
        let (end, market_pid) =
            match attached(args, role.name, ClientRole::Session, id, reconnecting, run) {
                Ok(ended) => ended,
                Err(e) => return exit.keep_first_failure(connect_failed(role.name, e)),
            };
        let gone = match end {
            SessionEnd::Done(code) => return exit.keep_first_failure(code),
            SessionEnd::MarketGone { code, in_flight } => {
                exit = exit.keep_first_failure(code);
                in_flight
            }
        };
        if args.wait.is_zero() {
            eprintln!(
                "bookstore {}: the market (pid {market_pid}) is gone",
                role.name
            );
            return exit.keep_first_failure(Exit::NoMarket);
        }
        let what = if gone {
            "the market went away mid-order (the next one will be asked what became of it)"
        } else {
            "the market stopped (no order was in flight)"
        };
        eprintln!(
            "bookstore {}: {what}; waiting up to {:.0?} for a market on {} to resume",
            role.name, args.wait, args.store.name
        );
        reconnecting = true;
    }
}

enum SessionEnd {
    /// EOF, `quit`, or a failure that ends the session, with its exit code.
    Done(Exit),
    /// The market went away; `in_flight`: an order had been sent to it and not answered.
    MarketGone { code: Exit, in_flight: bool },
}

struct Style<'a> {
    role: &'a Role<'a>,
    quiet: bool,
    interactive: bool,
    /// `--wait`: also how long a live market may take to answer (see `Progress::with_reply_grace`).
    wait: std::time::Duration,
}

/// Stdin's lines, read by a thread of their own so the session can announce sales while it
/// waits for the next command. The channel closes at EOF.
fn read_lines_in_background() -> Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Whether the idle session saw a line, the end of stdin, or its market go.
enum Waited {
    Line(std::io::Result<String>),
    End,
    MarketGone,
}

/// Waits for the next line, announcing notices as they arrive and watching the market.
fn next_line(
    client: &mut Client<'_>,
    lines: &Receiver<std::io::Result<String>>,
    style: &Style<'_>,
) -> Waited {
    let mut last_check = Instant::now();
    loop {
        match lines.recv_timeout(NOTICE_POLL) {
            Ok(line) => return Waited::Line(line),
            Err(RecvTimeoutError::Disconnected) => return Waited::End,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while let Ok(Some(reply)) = client.try_recv() {
            (style.role.notice)(&reply, style.quiet);
        }
        if last_check.elapsed() >= LIVENESS_EVERY {
            last_check = Instant::now();
            if client.check_market().is_err() {
                return Waited::MarketGone;
            }
        }
    }
}

fn session_lines(
    client: &mut Client<'_>,
    lines: &Receiver<std::io::Result<String>>,
    style: &Style<'_>,
    pending: &mut Option<(Vec<String>, Progress)>,
    command: &mut impl FnMut(&mut Client<'_>, &[String], &mut Progress) -> Result<OrderEnd, String>,
) -> SessionEnd {
    let role = style.role.name;
    let mut exit = Exit::Ok;
    loop {
        let (words, mut progress) = match pending.take() {
            Some(unfinished) => unfinished,
            None => {
                if style.interactive {
                    print!("{role}> ");
                    let _ = std::io::stdout().flush();
                }
                let line = match next_line(client, lines, style) {
                    Waited::Line(Ok(line)) => line,
                    Waited::Line(Err(e)) => {
                        eprintln!("bookstore {role}: reading stdin: {e}");
                        return SessionEnd::Done(exit.keep_first_failure(Exit::Error));
                    }
                    Waited::End => return SessionEnd::Done(exit),
                    Waited::MarketGone => {
                        return SessionEnd::MarketGone {
                            code: exit,
                            in_flight: false,
                        }
                    }
                };
                let Some(words) = shlex::split(&line) else {
                    report(style, &format!("unbalanced quotes in {line:?}"));
                    continue;
                };
                (words, Progress::new().with_reply_grace(style.wait))
            }
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("quit" | "exit") => return SessionEnd::Done(exit),
            Some("help") => {
                println!("{}", style.role.help);
                continue;
            }
            Some("list") => {
                print_shelf(client);
                continue;
            }
            _ => {}
        }
        // A market already gone gets nothing: run this command on the next one instead.
        if client.check_market().is_err() {
            let in_flight = progress.in_flight().is_some();
            *pending = Some((words, progress));
            return SessionEnd::MarketGone {
                code: exit,
                in_flight,
            };
        }
        match command(client, &words, &mut progress) {
            Ok(OrderEnd::MarketGone) => {
                let in_flight = progress.in_flight().is_some();
                *pending = Some((words, progress));
                return SessionEnd::MarketGone {
                    code: exit,
                    in_flight,
                };
            }
            Ok(OrderEnd::Done(code)) => exit = exit.keep_first_failure(code),
            Err(message) => report(style, &message),
        }
    }
}

/// Reports a bad line and carries on.
fn report(style: &Style<'_>, message: &str) {
    eprintln!("bookstore {}: {message} (line skipped)", style.role.name);
    if !style.interactive && !style.quiet {
        eprintln!("{}", style.role.help);
    }
}

/// `list`: the shelf as the market last published it, and how full the store is.
fn print_shelf(client: &Client<'_>) {
    let store = client.store();
    match store.settled_view(Duration::from_millis(200)) {
        Ok(view) => {
            println!(
                "shelf {}/{} books",
                view.books_on_shelf,
                store.geometry().capacity
            );
            for row in &view.shelf {
                println!(
                    "  {:<40} {:>10} × {}",
                    row.title,
                    Cents(row.price_cents).to_string(),
                    row.qty
                );
            }
        }
        Err(e) => eprintln!("list: {e}"),
    }
}
