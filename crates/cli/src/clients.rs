//! `bookstore seller` and `bookstore buyer`: one order from the command line, or a session of
//! orders read line by line from stdin (a prompt when stdin is a terminal).

use std::time::{Duration, Instant};

use engine::{BuyTarget, Cents, ClientId, Price, Qty, RejectReason, Title};

use crate::args::{
    parse_price, parse_qty, parse_seconds, parse_title, BuyerAction, BuyerArgs, ClientArgs,
    SellerAction, SellerArgs, BUY_TIMEOUT_SECS, SELL_TIMEOUT_SECS,
};
use crate::exit::Exit;
use crate::session::{session, Role};
use bookstore::client::{
    new_client_id, open_any_store, Client, ClientError, ClientRole, ConnectError,
};
use bookstore::trading::{self, BuyEnd, ListOutcome, Progress};
use bookstore::wire::Reply;

pub const SELLER_HELP: &str = "commands: sell TITLE PRICE [QTY] [TIMEOUT_SECS]   e.g.  sell \"Dune\" 9.99 2\n          list (the shelf), help, quit";
pub const BUYER_HELP: &str = "commands: buy TITLE|--any MAX_PRICE [QTY] [TIMEOUT_SECS]   e.g.  buy \"Dune\" 10 2,  buy --any 15\n          list (the shelf), help, quit";

/// Opens the store and attaches under `id` as `role` (`who` in messages), within `--wait`
/// counted from now, and runs `with` on the client. `reconnecting`: after its market went
/// away (no announcement; a stale object is waited past). A market that dies between the open
/// and the attach (a restart in progress) is waited out within the same `--wait`. The one way
/// the one-order commands and the sessions (re)connect.
pub(crate) fn attached<T>(
    args: &ClientArgs,
    who: &str,
    role: ClientRole,
    id: ClientId,
    mut reconnecting: bool,
    with: impl FnOnce(&mut Client<'_>) -> T,
) -> Result<T, ConnectError> {
    let since = Instant::now();
    loop {
        let left = args.wait.saturating_sub(since.elapsed());
        let store = if reconnecting {
            open_any_store(&market_names(args), left)?
        } else {
            open_announcing(args, who)?
        };
        let left = args.wait.saturating_sub(since.elapsed());
        let attach = Client::attach_waiting(&store, role, spin(args), left, id);
        match attach {
            Ok(mut client) => return Ok(with(&mut client)),
            Err(ConnectError::MarketGone { .. }) if !left.is_zero() => {
                std::thread::sleep(Duration::from_millis(20));
                reconnecting = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one order to its end, across market restarts: attaches under one client id, and if
/// the market goes away mid-order, waits up to `--wait` for the next one, reattaches under the
/// same id and runs `order` again with the same progress (which asks the new market about the
/// request in flight first, so nothing is applied twice). A connection failure is reported
/// and ends it with its exit code.
fn run_order(
    args: &ClientArgs,
    role: ClientRole,
    mut order: impl FnMut(&mut Client<'_>, &mut Progress) -> OrderEnd,
) -> Exit {
    let name = role.name();
    let id = match new_client_id() {
        Ok(id) => id,
        Err(e) => return connect_failed(name, e),
    };
    let mut progress = Progress::new().with_reply_grace(args.wait);
    let mut reconnecting = false;
    loop {
        let end = attached(args, name, role, id, reconnecting, |client| {
            order(client, &mut progress)
        });
        match end {
            Ok(OrderEnd::Done(exit)) => return exit,
            Ok(OrderEnd::MarketGone) if !args.wait.is_zero() => {
                let what = match progress.in_flight() {
                    Some(_) => "; the order in flight will be asked about",
                    None => "",
                };
                eprintln!(
                    "bookstore {name}: waiting up to {:.0?} for a market on {} to resume{what}",
                    args.wait, args.store.name
                );
                reconnecting = true;
            }
            Ok(OrderEnd::MarketGone) => {
                if progress.in_flight().is_some() {
                    eprintln!("bookstore {name}: the order's outcome is unknown (pass --wait to ask the next market)");
                }
                return Exit::NoMarket;
            }
            Err(e) => {
                if progress.in_flight().is_some() {
                    eprintln!("bookstore {name}: the order's outcome is unknown");
                }
                return connect_failed(name, e);
            }
        }
    }
}

/// The market's name, then its standbys' (`--standby`): where this client may be served.
fn market_names(args: &ClientArgs) -> Vec<shm::ShmName> {
    std::iter::once(args.store.name.clone())
        .chain(args.standbys.iter().cloned())
        .collect()
}

/// [`open_any_store`] of the market's and its standbys' names, saying at once when there is no
/// market yet (or only the store of one that died, which the next market replaces) and it
/// will wait for one.
pub(crate) fn open_announcing(
    args: &ClientArgs,
    role: &str,
) -> Result<bookstore::shared::SharedStore, ConnectError> {
    let names = market_names(args);
    match open_any_store(&names, Duration::ZERO) {
        Err(
            ConnectError::NoMarket { .. }
            | ConnectError::MarketGone { .. }
            | ConnectError::StandbyOnly { .. },
        ) if !args.wait.is_zero() => {
            if !args.quiet {
                eprintln!(
                    "bookstore {role}: waiting up to {:.0?} for a market on {}…",
                    args.wait, args.store.name
                );
            }
            open_any_store(&names, args.wait)
        }
        other => other,
    }
}

pub(crate) fn spin(args: &ClientArgs) -> Duration {
    Duration::from_micros(args.spin_us)
}

pub(crate) fn connect_failed(role: &str, e: ConnectError) -> Exit {
    eprintln!("bookstore {role}: {e}");
    match e {
        ConnectError::NoMarket { .. }
        | ConnectError::MarketGone { .. }
        | ConnectError::StandbyOnly { .. }
        | ConnectError::SlotsFull { .. } => Exit::NoMarket,
        ConnectError::Open(_) | ConnectError::Identity(_) | ConnectError::Random(_) => Exit::Error,
    }
}

/// How one order ended, for a one-order command or a session line.
pub(crate) enum OrderEnd {
    /// Finished, successfully or not, with its exit code.
    Done(Exit),
    /// The market exited or is closing before the order finished: its `Progress` says what
    /// is in flight, for the next market to be asked.
    MarketGone,
}

/// Reports a client error and says how the order ended: the typed error decides, never an
/// exit code read back.
fn client_failed(role: &str, e: ClientError) -> OrderEnd {
    eprintln!("bookstore {role}: {e}");
    match e {
        ClientError::MarketGone { .. } | ClientError::MarketClosing { .. } => OrderEnd::MarketGone,
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
    // The timeout covers the whole wait for room, across market restarts (the progress's).
    run_order(&args.client, ClientRole::Seller, |client, progress| {
        sell(client, title, *price, *qty, *timeout, quiet, progress)
    })
}

/// The seller's stdin session: `sell` lines.
fn seller_session(args: &SellerArgs) -> Exit {
    let quiet = args.client.quiet;
    let role = Role {
        name: "seller",
        help: SELLER_HELP,
        notice: &print_sold,
    };
    session(&args.client, &role, |client, words, progress| {
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
            progress,
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
    progress: &mut Progress,
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
    let exit = match trading::list(client, &order, &mut voice, progress) {
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
                "bookstore seller: the market (pid {pid}) exited while the store was full; {:?} is not listed yet",
                title.as_str()
            );
            return OrderEnd::MarketGone;
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
    run_order(&args.client, ClientRole::Buyer, |client, progress| {
        buy(
            client,
            target.clone(),
            *max_price,
            *qty,
            *timeout,
            quiet,
            progress,
        )
    })
}

/// The buyer's stdin session: `buy` lines.
fn buyer_session(args: &BuyerArgs) -> Exit {
    let quiet = args.client.quiet;
    let role = Role {
        name: "buyer",
        help: BUYER_HELP,
        notice: &|_, _| {},
    };
    session(&args.client, &role, |client, words, progress| {
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
            progress,
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
    progress: &mut Progress,
) -> OrderEnd {
    let order = trading::BuyOrder {
        target,
        max_price,
        qty,
        timeout,
    };
    let outcome = match trading::buy(client, &order, &mut BuyerVoice { quiet }, progress) {
        Ok(o) => o,
        Err(e) => return client_failed("buyer", e),
    };
    let (got, wanted) = (outcome.filled(), outcome.wanted);
    if outcome.unseen.copies > 0 && !quiet {
        println!(
            "bought {} more while the market restarted, for {} in all",
            outcome.unseen.copies,
            Cents(outcome.unseen.cents)
        );
    }
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
