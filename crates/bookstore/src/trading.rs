//! Whole orders on top of [`Client`]: a listing retried while the store is full, a buy waited
//! on until filled, expired or refused. Shared by the CLI, the demo, the bench and the tests.
//!
//! An order survives its market's restart: its [`Progress`] remembers the request in flight,
//! and the same call on a client reattached under the same id first asks the new market what
//! became of it (`Request::Ask`), then carries on: a listing applied is done, one never seen
//! is sent again; a buy gets what it bought counted and, if the restart cancelled the rest
//! while time remains, a new buy for the rest. Nothing is applied twice.

use std::time::{Duration, Instant};

use engine::{
    BuyTarget, OrderKind, OrderState, Price, Qty, Receipt, RejectReason, RequestId, Title,
};

use crate::client::{Client, ClientError};
use crate::wire::{BadReply, Malformed, Reply, Request, MAX_TIMEOUT_MS};

/// Extra time given to the market to answer past a request's own deadline.
const REPLY_GRACE: Duration = Duration::from_secs(5);
/// Pauses between retries of a listing refused because the store is full: from the first,
/// doubling up to the last, so a long wait costs the market a few requests a second.
const FULL_RETRY_FIRST: Duration = Duration::from_millis(1);
const FULL_RETRY_MAX: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOutcome {
    Listed {
        qty: u32,
        sold_at_once: u32,
    },
    /// The store stayed full for the whole timeout.
    StoreStayedFull {
        waited: Duration,
    },
    /// The market exited while the listing waited for room. Every attempt had been answered
    /// (refused: store full), so nothing was listed and trying again cannot list twice.
    MarketGoneWhileFull {
        pid: u32,
    },
    Refused(RejectReason),
    Malformed(Malformed),
}

/// A listing: `qty` copies of `title` at `price`, retried while the store is full for up to
/// `timeout`.
#[derive(Debug, Clone)]
pub struct ListOrder {
    pub title: Title,
    pub price: Price,
    pub qty: Qty,
    pub timeout: Duration,
}

/// A buy: up to `qty` copies (of a title or any) at `max_price` or less, waiting up to
/// `timeout` for copies to be listed.
#[derive(Debug, Clone)]
pub struct BuyOrder {
    pub target: BuyTarget,
    pub max_price: Price,
    pub qty: Qty,
    pub timeout: Duration,
}

/// What a caller may want to hear while an order runs. Every method does nothing by default.
pub trait TradingObserver {
    /// The store was found full (`free` places), the first time only: the listing now waits.
    fn store_full(&mut self, _free: u32) {}
    /// A trade of the buy in progress.
    fn bought(&mut self, _trade: &Bought) {}
    /// A reply about another of this client's requests (say, a copy of an earlier listing
    /// sold while this order waits).
    fn other_reply(&mut self, _reply: &Reply) {}
}

/// An observer that wants to hear nothing.
pub struct Quietly;

impl TradingObserver for Quietly {}

/// What an order's caller keeps across market restarts, so the order finishes exactly once:
/// pass the same one to every call for the order, on each client reattached under the same id.
#[derive(Debug, Clone)]
pub struct Progress {
    started: Instant,
    /// The request sent and not answered for good when the market went away.
    in_flight: Option<RequestId>,
    /// A buy's trades seen so far, over all its requests; those of the request in flight
    /// start at `in_flight_from` (what a receipt adds to them was never seen).
    trades: Vec<Bought>,
    in_flight_from: usize,
    /// Copies bought, and their cost, whose trades the client never saw (the market went
    /// away before telling them); known from a receipt.
    unseen: Tally,
    /// How long past a request's own deadline a live market may take to answer.
    reply_grace: Duration,
}

impl Progress {
    /// A new order, whose timeout runs from now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: None,
            trades: Vec::new(),
            in_flight_from: 0,
            unseen: Tally::default(),
            reply_grace: REPLY_GRACE,
        }
    }

    /// Gives a live market up to `grace` (at least 5 s) past a request's own deadline to
    /// answer: a market whose replies wait for a replicated stream that lost its quorum is
    /// alive but slow to answer, and a client with `--wait` waits for it that long.
    pub fn with_reply_grace(mut self, grace: Duration) -> Self {
        self.reply_grace = grace.max(REPLY_GRACE);
        self
    }

    /// Whether a request of the order went to a market that went away before answering it
    /// for good (the next call asks the next market about it).
    pub fn in_flight(&self) -> Option<RequestId> {
        self.in_flight
    }

    /// The buy as it stands, ending with `end`.
    fn outcome(&self, wanted: u32, end: BuyEnd) -> BuyOutcome {
        BuyOutcome {
            wanted,
            trades: self.trades.clone(),
            unseen: self.unseen,
            end,
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies and what they cost, in cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub copies: u32,
    pub cents: u64,
}

/// Asks the market what became of `request` (sent to a market before this one, under this
/// client's id): its receipt, or `None` if it never applied it.
pub fn ask(
    client: &mut Client<'_>,
    request: RequestId,
    grace: Duration,
    observer: &mut impl TradingObserver,
) -> Result<Option<Receipt>, ClientError> {
    client.continue_requests_from(RequestId(request.0 + 1));
    client.send(&Request::Ask { request })?;
    let reply = wait_for(
        client,
        request,
        Some(Instant::now() + grace),
        |r| matches!(r, Reply::Receipt(_) | Reply::NotSeen { .. }),
        observer,
    )?;
    Ok(match reply {
        Reply::Receipt(receipt) => Some(receipt),
        _ => None,
    })
}

/// The receipt's kind was not the order's: the market (or something in its place) is wrong.
fn wrong_kind(receipt: &Receipt) -> ClientError {
    ClientError::BadReply(BadReply {
        field: "receipt kind",
        value: receipt.kind.code().into(),
    })
}

/// Lists `order.qty` copies, retrying while the store is full until `order.timeout` has
/// passed (counted from when `progress` was made). With a request of the order in flight
/// (`progress`, after its market went away), asks this market about it first.
pub fn list(
    client: &mut Client<'_>,
    order: &ListOrder,
    observer: &mut impl TradingObserver,
    progress: &mut Progress,
) -> Result<ListOutcome, ClientError> {
    let ListOrder {
        title,
        price,
        qty,
        timeout,
    } = order;
    let (price, qty, timeout) = (*price, *qty, *timeout);
    if let Some(request) = progress.in_flight {
        match ask(client, request, progress.reply_grace, observer)? {
            Some(Receipt {
                kind: OrderKind::List,
                done,
                state: OrderState::Listed { sold_at_once },
                ..
            }) => {
                progress.in_flight = None;
                return Ok(ListOutcome::Listed {
                    qty: done,
                    sold_at_once,
                });
            }
            Some(other) => return Err(wrong_kind(&other)),
            // Never applied: list it now.
            None => progress.in_flight = None,
        }
    }
    let started = progress.started;
    let mut told = false;
    let mut pause = FULL_RETRY_FIRST;
    loop {
        let request = client.next_request_id();
        progress.in_flight = Some(request);
        client.send(&Request::List {
            request,
            title: title.clone(),
            price,
            qty,
        })?;
        let reply = wait_for(
            client,
            request,
            Some(Instant::now() + progress.reply_grace),
            |r| !matches!(r, Reply::Sold { .. }),
            observer,
        )?;
        // Answered for good: a refusal changed nothing, so nothing is in flight either way.
        progress.in_flight = None;
        match reply {
            Reply::Listed {
                qty, sold_at_once, ..
            } => return Ok(ListOutcome::Listed { qty, sold_at_once }),
            Reply::Rejected {
                reason: RejectReason::StoreFull { free },
                ..
            } => {
                if started.elapsed() >= timeout {
                    return Ok(ListOutcome::StoreStayedFull {
                        waited: started.elapsed(),
                    });
                }
                if !told {
                    observer.store_full(free);
                    told = true;
                }
                std::thread::sleep(pause.min(timeout.saturating_sub(started.elapsed())));
                pause = (pause * 2).min(FULL_RETRY_MAX);
                match client.check_market() {
                    Ok(()) => {}
                    Err(ClientError::MarketGone { pid } | ClientError::MarketClosing { pid }) => {
                        return Ok(ListOutcome::MarketGoneWhileFull { pid })
                    }
                    Err(e) => return Err(e),
                }
            }
            Reply::Rejected { reason, .. } => return Ok(ListOutcome::Refused(reason)),
            Reply::Malformed { error, .. } => return Ok(ListOutcome::Malformed(error)),
            other => unreachable!("wait_for filters replies: {other:?}"),
        }
    }
}

/// One trade of a buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bought {
    pub trade_id: u64,
    pub title: Title,
    pub price: Price,
    pub qty: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyEnd {
    Filled,
    /// The deadline passed with `unfilled` copies still wanted.
    Expired {
        unfilled: u32,
    },
    /// The market cancelled the rest (`unfilled` copies): it dropped this client, or a
    /// restarted market cancelled the buys of clients it cannot reach.
    Cancelled {
        unfilled: u32,
    },
    Refused(RejectReason),
    Malformed(Malformed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyOutcome {
    pub wanted: u32,
    /// The trades the client was told of.
    pub trades: Vec<Bought>,
    /// Copies bought that the client was not told of one by one (a market went away first).
    pub unseen: Tally,
    pub end: BuyEnd,
}

impl BuyOutcome {
    pub fn filled(&self) -> u32 {
        Self::count(&self.trades).copies + self.unseen.copies
    }

    pub fn spent_cents(&self) -> u64 {
        Self::count(&self.trades).cents + self.unseen.cents
    }

    /// Copies and cents in `trades`.
    fn count(trades: &[Bought]) -> Tally {
        trades.iter().fold(Tally::default(), |sum, t| Tally {
            copies: sum.copies + t.qty,
            cents: sum.cents + t.price.cents() * u64::from(t.qty),
        })
    }
}

/// Buys up to `order.qty` copies at `order.max_price` or less, waiting up to `order.timeout`
/// (counted from when `progress` was made) for copies to be listed; the market expires what
/// is unfilled at the deadline. With a request of the order in flight (`progress`, after its
/// market went away), asks this market about it first and buys only what is still wanted.
pub fn buy(
    client: &mut Client<'_>,
    order: &BuyOrder,
    observer: &mut impl TradingObserver,
    progress: &mut Progress,
) -> Result<BuyOutcome, ClientError> {
    let wanted = order.qty.get();
    if let Some(request) = progress.in_flight {
        let receipt = ask(client, request, progress.reply_grace, observer)?;
        progress.in_flight = None;
        if let Some(r) = receipt {
            if r.kind != OrderKind::Buy {
                return Err(wrong_kind(&r));
            }
            // What the receipt counts beyond the trades of that request seen here was bought
            // without our hearing of it.
            let seen = BuyOutcome::count(&progress.trades[progress.in_flight_from..]);
            progress.unseen.copies += r.done.saturating_sub(seen.copies);
            progress.unseen.cents += r.spent_cents.saturating_sub(seen.cents);
            let unfilled = r.qty - r.done;
            match r.state {
                OrderState::Filled => return Ok(progress.outcome(wanted, BuyEnd::Filled)),
                OrderState::Expired => {
                    return Ok(progress.outcome(wanted, BuyEnd::Expired { unfilled }))
                }
                // A live market still holds it: wait for the rest of it.
                OrderState::Resting => {
                    return follow_buy(client, order, observer, progress, request)
                }
                // Cancelled by the restart: buy the rest below, while time remains.
                OrderState::Cancelled | OrderState::Listed { .. } => {}
            }
        }
    }
    let bought = BuyOutcome::count(&progress.trades).copies + progress.unseen.copies;
    let left = order.timeout.saturating_sub(progress.started.elapsed());
    if bought >= wanted {
        return Ok(progress.outcome(wanted, BuyEnd::Filled));
    }
    if bought > 0 && left.is_zero() {
        // The restart cancelled the rest, and the time for it is up too.
        let unfilled = wanted - bought;
        return Ok(progress.outcome(wanted, BuyEnd::Expired { unfilled }));
    }
    let qty = Qty::new(u64::from(wanted - bought)).expect("fewer than wanted, more than 0");
    let timeout_ms = left.as_millis().min(u128::from(MAX_TIMEOUT_MS)) as u32;
    let request = client.next_request_id();
    progress.in_flight = Some(request);
    progress.in_flight_from = progress.trades.len();
    client.send(&Request::Buy {
        request,
        target: order.target.clone(),
        max_price: order.max_price,
        qty,
        timeout_ms: Some(timeout_ms),
    })?;
    follow_buy(client, order, observer, progress, request)
}

/// Follows the buy `request` to its end.
fn follow_buy(
    client: &mut Client<'_>,
    order: &BuyOrder,
    observer: &mut impl TradingObserver,
    progress: &mut Progress,
    request: RequestId,
) -> Result<BuyOutcome, ClientError> {
    progress.in_flight = Some(request);
    let deadline = progress.started + order.timeout + progress.reply_grace;
    let wanted = order.qty.get();
    let done = |progress: &mut Progress, end| {
        progress.in_flight = None;
        Ok(progress.outcome(wanted, end))
    };
    loop {
        match wait_for(client, request, Some(deadline), |_| true, observer)? {
            Reply::Bought {
                trade_id,
                title,
                price,
                qty,
                done: last,
                ..
            } => {
                let b = Bought {
                    trade_id,
                    title,
                    price,
                    qty,
                };
                observer.bought(&b);
                progress.trades.push(b);
                if last {
                    return done(progress, BuyEnd::Filled);
                }
            }
            Reply::Rested { .. } => {}
            Reply::Filled { .. } => return done(progress, BuyEnd::Filled),
            Reply::Expired { unfilled, .. } => return done(progress, BuyEnd::Expired { unfilled }),
            Reply::Cancelled { unfilled, .. } => {
                return done(progress, BuyEnd::Cancelled { unfilled })
            }
            Reply::Rejected { reason, .. } => return done(progress, BuyEnd::Refused(reason)),
            Reply::Malformed { error, .. } => return done(progress, BuyEnd::Malformed(error)),
            other => observer.other_reply(&other),
        }
    }
}

/// The next reply about `request` that `wanted` accepts; other replies go to `on_other`.
fn wait_for(
    client: &mut Client<'_>,
    request: RequestId,
    deadline: Option<Instant>,
    wanted: impl Fn(&Reply) -> bool,
    observer: &mut impl TradingObserver,
) -> Result<Reply, ClientError> {
    let started = Instant::now();
    loop {
        match client.recv(deadline)? {
            Some(reply) if reply.request_id() == request && wanted(&reply) => return Ok(reply),
            Some(other) => observer.other_reply(&other),
            None => return Err(ClientError::NoReply(started.elapsed())),
        }
    }
}
