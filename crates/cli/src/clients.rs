//! `bookstore seller` and `bookstore buyer`: one order from the command line, or a session of
//! orders read line by line from stdin (a prompt when stdin is a terminal).

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use engine::{BuyTarget, Cents, Price, Qty, RejectReason, Title};

use crate::args::{
    parse_price, parse_qty, parse_seconds, parse_title, BuyerAction, BuyerArgs, ClientArgs,
    SellerAction, SellerArgs, BUY_TIMEOUT_SECS, SELL_TIMEOUT_SECS,
};
use crate::exit::Exit;
use bookstore::client::{open_store, Client, ClientError, ConnectError};
use bookstore::trading::{self, BuyEnd, ListOutcome};
use bookstore::wire::Reply;

const SELLER_HELP: &str = "commands: sell TITLE PRICE [QTY] [TIMEOUT_SECS]   e.g.  sell \"Dune\" 9.99 2\n          help, quit";
const BUYER_HELP: &str = "commands: buy TITLE|--any MAX_PRICE [QTY] [TIMEOUT_SECS]   e.g.  buy \"Dune\" 10 2,  buy --any 15\n          help, quit";

/// Attaches (waiting up to `--wait` for a market and for a free slot) and runs one order. A
/// connection failure is reported and becomes `Err` with its exit code.
fn with_client<T>(
    args: &ClientArgs,
    role: &str,
    order: impl FnOnce(&mut Client<'_>) -> T,
) -> Result<T, Exit> {
    let store = open_store(&args.store.name, args.wait).map_err(|e| connect_failed(role, e))?;
    let mut client = Client::attach_waiting(&store, spin(args), args.wait)
        .map_err(|e| connect_failed(role, e))?;
    Ok(order(&mut client))
}

fn spin(args: &ClientArgs) -> Duration {
    Duration::from_micros(args.spin_us)
}

fn connect_failed(role: &str, e: ConnectError) -> Exit {
    eprintln!("bookstore {role}: {e}");
    match e {
        ConnectError::NoMarket { .. }
        | ConnectError::MarketGone { .. }
        | ConnectError::SlotsFull { .. } => Exit::NoMarket,
        ConnectError::Open(_) | ConnectError::Identity(_) => Exit::Error,
    }
}

/// How one order ended, for a one-order command or a session line.
enum OrderEnd {
    /// Finished, successfully or not, with its exit code.
    Done(Exit),
    /// The market exited or is closing. `nothing_in_flight`: every attempt had been answered
    /// (a listing waiting for room), so trying again on the next market cannot order twice.
    MarketGone { nothing_in_flight: bool },
}

/// Reports a client error and says how the order ended: the typed error decides, never an
/// exit code read back.
fn client_failed(role: &str, e: ClientError) -> OrderEnd {
    eprintln!("bookstore {role}: {e}");
    match e {
        ClientError::MarketGone { .. } | ClientError::MarketClosing { .. } => {
            OrderEnd::MarketGone {
                nothing_in_flight: false,
            }
        }
        // A live market that stopped answering: no market serves us, but it has not gone.
        ClientError::NoReply(_) => OrderEnd::Done(Exit::NoMarket),
        ClientError::BadReply(_) | ClientError::Corrupt(_) => OrderEnd::Done(Exit::Error),
    }
}

/// What a seller hears while its listing runs.
struct SellerVoice {
    quiet: bool,
    qty: u32,
    timeout: Duration,
}

impl trading::TradingObserver for SellerVoice {
    fn store_full(&mut self, free: u32) {
        if !self.quiet {
            eprintln!(
                "store is full ({free} free places for {} copies); waiting up to {:.0?} for room…",
                self.qty, self.timeout
            );
        }
    }

    fn other_reply(&mut self, reply: &Reply) {
        print_sold(reply, self.quiet);
    }
}

/// What a buyer hears while its buy runs.
struct BuyerVoice {
    quiet: bool,
}

impl trading::TradingObserver for BuyerVoice {
    fn bought(&mut self, b: &trading::Bought) {
        if !self.quiet {
            println!(
                "bought {} × {:?} at {} (trade #{})",
                b.qty,
                b.title.as_str(),
                b.price,
                b.trade_id
            );
        }
    }
}

fn print_sold(reply: &Reply, quiet: bool) {
    if let (
        Reply::Sold {
            trade_id,
            title,
            price,
            qty,
            ..
        },
        false,
    ) = (reply, quiet)
    {
        println!(
            "sold {qty} × {:?} at {price} (trade #{trade_id})",
            title.as_str()
        );
    }
}

pub fn seller(args: SellerArgs) -> Exit {
    let quiet = args.client.quiet;
    let Some(SellerAction::Sell {
        title,
        price,
        qty,
        timeout,
    }) = &args.action
    else {
        return seller_session(&args);
    };
    // The timeout covers the whole wait for room, across market restarts.
    let started = Instant::now();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        let end = match with_client(&args.client, "seller", |client| {
            sell(client, title, *price, *qty, left, quiet)
        }) {
            Ok(end) => end,
            Err(exit) => return exit,
        };
        match end {
            OrderEnd::Done(exit) => return exit,
            OrderEnd::MarketGone {
                nothing_in_flight: true,
            } if !args.client.wait.is_zero() && !left.is_zero() => {
                eprintln!(
                    "bookstore seller: waiting up to {:.0?} for a market on {} to resume",
                    args.client.wait, args.client.store.name
                );
            }
            OrderEnd::MarketGone { .. } => return Exit::NoMarket,
        }
    }
}

/// The seller's stdin session: `sell` lines.
fn seller_session(args: &SellerArgs) -> Exit {
    let quiet = args.client.quiet;
    session(&args.client, "seller", SELLER_HELP, |client, words| {
        let [verb, rest @ ..] = words else {
            return Ok(OrderEnd::Done(Exit::Ok));
        };
        if verb != "sell" {
            return Err(format!("unknown command {verb:?}"));
        }
        let (title, price, qty, timeout) = match rest {
            [t, p] => (t, p, "1", SELL_TIMEOUT_SECS),
            [t, p, q] => (t, p, q.as_str(), SELL_TIMEOUT_SECS),
            [t, p, q, s] => (t, p, q.as_str(), s.as_str()),
            _ => return Err("usage: sell TITLE PRICE [QTY] [TIMEOUT_SECS]".into()),
        };
        Ok(sell(
            client,
            &parse_title(title)?,
            parse_price(price)?,
            parse_qty(qty)?,
            parse_seconds(timeout)?,
            quiet,
        ))
    })
}

fn sell(
    client: &mut Client<'_>,
    title: &Title,
    price: Price,
    qty: Qty,
    timeout: Duration,
    quiet: bool,
) -> OrderEnd {
    let order = trading::ListOrder {
        title: title.clone(),
        price,
        qty,
        timeout,
    };
    let mut voice = SellerVoice {
        quiet,
        qty: qty.get(),
        timeout,
    };
    let exit = match trading::list(client, &order, &mut voice) {
        Ok(ListOutcome::Listed { qty, sold_at_once }) => {
            if !quiet {
                let sold = if sold_at_once > 0 {
                    format!(" ({sold_at_once} sold at once to waiting buyers)")
                } else {
                    String::new()
                };
                println!("listed {qty} × {:?} at {price}{sold}", title.as_str());
            }
            Exit::Ok
        }
        Ok(ListOutcome::StoreStayedFull { waited }) => {
            eprintln!(
                "bookstore seller: the store stayed full for {waited:.1?}; {:?} was not listed",
                title.as_str()
            );
            Exit::TimedOut
        }
        Ok(ListOutcome::Refused(RejectReason::LargerThanStore { capacity })) => {
            eprintln!(
                "bookstore seller: qty: {} copies can never fit in a store of {capacity} books",
                qty.get()
            );
            Exit::Refused
        }
        Ok(ListOutcome::Refused(reason)) => {
            eprintln!("bookstore seller: refused: {reason}");
            Exit::Refused
        }
        Ok(ListOutcome::Malformed(e)) => {
            eprintln!("bookstore seller: the market rejected the request: {e}");
            Exit::Refused
        }
        Ok(ListOutcome::MarketGoneWhileFull { pid }) => {
            eprintln!(
                "bookstore seller: the market (pid {pid}) exited while the store was full; {:?} was not listed",
                title.as_str()
            );
            return OrderEnd::MarketGone {
                nothing_in_flight: true,
            };
        }
        Err(e) => return client_failed("seller", e),
    };
    OrderEnd::Done(exit)
}

pub fn buyer(args: BuyerArgs) -> Exit {
    let quiet = args.client.quiet;
    let Some(BuyerAction::Buy {
        title,
        any: _,
        max_price,
        qty,
        timeout,
    }) = &args.action
    else {
        return buyer_session(&args);
    };
    let target = title.clone().map_or(BuyTarget::Any, BuyTarget::Title);
    match with_client(&args.client, "buyer", |client| {
        buy(client, target, *max_price, *qty, *timeout, quiet)
    }) {
        Ok(OrderEnd::Done(exit)) | Err(exit) => exit,
        Ok(OrderEnd::MarketGone { .. }) => Exit::NoMarket,
    }
}

/// The buyer's stdin session: `buy` lines.
fn buyer_session(args: &BuyerArgs) -> Exit {
    let quiet = args.client.quiet;
    session(&args.client, "buyer", BUYER_HELP, |client, words| {
        let [verb, rest @ ..] = words else {
            return Ok(OrderEnd::Done(Exit::Ok));
        };
        if verb != "buy" {
            return Err(format!("unknown command {verb:?}"));
        }
        let (target, rest) = match rest {
            [flag, rest @ ..] if flag == "--any" => (BuyTarget::Any, rest),
            [title, rest @ ..] => (BuyTarget::Title(parse_title(title)?), rest),
            [] => return Err("usage: buy TITLE|--any MAX_PRICE [QTY] [TIMEOUT_SECS]".into()),
        };
        let (price, qty, timeout) = match rest {
            [p] => (p, "1", BUY_TIMEOUT_SECS),
            [p, q] => (p, q.as_str(), BUY_TIMEOUT_SECS),
            [p, q, s] => (p, q.as_str(), s.as_str()),
            _ => return Err("usage: buy TITLE|--any MAX_PRICE [QTY] [TIMEOUT_SECS]".into()),
        };
        Ok(buy(
            client,
            target,
            parse_price(price)?,
            parse_qty(qty)?,
            parse_seconds(timeout)?,
            quiet,
        ))
    })
}

fn buy(
    client: &mut Client<'_>,
    target: BuyTarget,
    max_price: Price,
    qty: Qty,
    timeout: Duration,
    quiet: bool,
) -> OrderEnd {
    let order = trading::BuyOrder {
        target,
        max_price,
        qty,
        timeout,
    };
    let outcome = match trading::buy(client, &order, &mut BuyerVoice { quiet }) {
        Ok(o) => o,
        Err(e) => return client_failed("buyer", e),
    };
    let (got, wanted) = (outcome.filled(), outcome.wanted);
    OrderEnd::Done(match outcome.end {
        BuyEnd::Filled => {
            if !quiet {
                let spent = outcome.spent_cents();
                println!("filled: {got} of {wanted}, spent {}", Cents(spent));
            }
            Exit::Ok
        }
        BuyEnd::Expired { unfilled } if got == 0 => {
            eprintln!("bookstore buyer: timed out after {timeout:.1?}: nothing at or below {max_price} ({unfilled} wanted)");
            Exit::TimedOut
        }
        BuyEnd::Expired { .. } => {
            eprintln!(
                "bookstore buyer: timed out after {timeout:.1?} with {got} of {wanted} copies"
            );
            Exit::Partial
        }
        BuyEnd::Cancelled { unfilled } => {
            eprintln!(
                "bookstore buyer: the market cancelled the buy with {got} of {wanted} copies ({unfilled} unfilled)"
            );
            if got == 0 {
                Exit::TimedOut
            } else {
                Exit::Partial
            }
        }
        BuyEnd::Refused(reason) => {
            eprintln!("bookstore buyer: refused: {reason}");
            Exit::Refused
        }
        BuyEnd::Malformed(e) => {
            eprintln!("bookstore buyer: the market rejected the request: {e}");
            Exit::Refused
        }
    })
}

/// Reads commands line by line. A bad line is reported (exit code 2 at the end) and skipped;
/// the session ends at EOF or `quit`, with the first failure's exit code.
///
/// If the market exits mid-session, the session waits up to `--wait` for the next market on
/// the same name (which recovers the store from its journal) and carries on with the next
/// line. The order that was in flight is reported as unknown: the market may have journaled it
/// before it died, or not.
fn session(
    args: &ClientArgs,
    role: &str,
    help: &str,
    mut command: impl FnMut(&mut Client<'_>, &[String]) -> Result<OrderEnd, String>,
) -> Exit {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut lines = stdin.lock().lines();
    let mut exit = Exit::Ok;
    let mut reconnecting = false;
    // When the current attempt to connect began: `--wait` bounds each reconnection as a whole.
    let mut connecting_since: Option<Instant> = None;
    loop {
        let since = *connecting_since.get_or_insert_with(Instant::now);
        let left = args.wait.saturating_sub(since.elapsed());
        let store = match open_store(&args.store.name, left) {
            Ok(s) => s,
            Err(e) => return exit.keep_first_failure(connect_failed(role, e)),
        };
        let left = args.wait.saturating_sub(since.elapsed());
        let mut client = match Client::attach_waiting(&store, spin(args), left) {
            Ok(c) => c,
            // That market died between our open and our attach (a restart in progress): the
            // next one is worth waiting for, within the same --wait.
            Err(ConnectError::MarketGone { .. }) if !left.is_zero() => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return exit.keep_first_failure(connect_failed(role, e)),
        };
        connecting_since = None;
        if interactive || (reconnecting && !args.quiet) {
            eprintln!(
                "{role} attached to the market (pid {}, slot {}). {help}",
                client.market_pid(),
                client.slot()
            );
        }
        let how = SessionStyle {
            role,
            help,
            quiet: args.quiet,
            interactive,
        };
        match session_lines(&mut client, &mut lines, &how, &mut command) {
            SessionEnd::Done(code) => return exit.keep_first_failure(code),
            SessionEnd::MarketGone(code) if args.wait > Duration::ZERO => {
                exit = exit.keep_first_failure(code);
                eprintln!(
                    "bookstore {role}: the order in flight may or may not have been recorded; waiting up to {:.0?} for a market on {} to resume",
                    args.wait, args.store.name
                );
                reconnecting = true;
            }
            SessionEnd::MarketGone(code) => return exit.keep_first_failure(code),
        }
    }
}

enum SessionEnd {
    /// EOF, `quit`, or a failure that ends the session, with its exit code.
    Done(Exit),
    /// The market went away mid-command; the exit code so far.
    MarketGone(Exit),
}

/// How a session talks: who it is, its help text, and whether a person is typing.
struct SessionStyle<'a> {
    role: &'a str,
    help: &'a str,
    quiet: bool,
    interactive: bool,
}

fn session_lines(
    client: &mut Client<'_>,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    how: &SessionStyle<'_>,
    command: &mut impl FnMut(&mut Client<'_>, &[String]) -> Result<OrderEnd, String>,
) -> SessionEnd {
    let &SessionStyle {
        role,
        help,
        quiet,
        interactive,
    } = how;
    let mut exit = Exit::Ok;
    loop {
        if interactive {
            print!("{role}> ");
            let _ = std::io::stdout().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bookstore {role}: reading stdin: {e}");
                return SessionEnd::Done(exit.keep_first_failure(Exit::Error));
            }
        };
        let Some(words) = shlex::split(&line) else {
            eprintln!("bookstore {role}: unbalanced quotes in {line:?}");
            exit = exit.keep_first_failure(Exit::Usage);
            continue;
        };
        match words.first().map(String::as_str) {
            None => continue,
            Some("quit" | "exit") => break,
            Some("help") => {
                println!("{help}");
                continue;
            }
            _ => {}
        }
        match command(client, &words) {
            // A session reconnects when its market is gone, whatever was in flight.
            Ok(OrderEnd::MarketGone { .. }) => {
                return SessionEnd::MarketGone(exit.keep_first_failure(Exit::NoMarket))
            }
            Ok(OrderEnd::Done(code)) => exit = exit.keep_first_failure(code),
            Err(message) => {
                eprintln!("bookstore {role}: {message}");
                if !interactive && !quiet {
                    eprintln!("{help}");
                }
                exit = exit.keep_first_failure(Exit::Usage);
            }
        }
    }
    SessionEnd::Done(exit)
}
