//! Whole orders on top of [`Client`]: a listing retried while the store is full, a buy waited
//! on until filled, expired or refused. Shared by the CLI, the demo, the bench and the tests.

use std::time::{Duration, Instant};

use engine::{BuyTarget, Price, Qty, RejectReason, RequestId, Title};

use crate::client::{Client, ClientError};
use crate::wire::{Malformed, Reply, Request, MAX_TIMEOUT_MS};

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

/// Lists `order.qty` copies, retrying while the store is full until `order.timeout` has
/// passed.
pub fn list(
    client: &mut Client<'_>,
    order: &ListOrder,
    observer: &mut impl TradingObserver,
) -> Result<ListOutcome, ClientError> {
    let ListOrder {
        title,
        price,
        qty,
        timeout,
    } = order;
    let (price, qty, timeout) = (*price, *qty, *timeout);
    let started = Instant::now();
    let mut told = false;
    let mut pause = FULL_RETRY_FIRST;
    loop {
        let request = client.next_request_id();
        client.send(&Request::List {
            request,
            title: title.clone(),
            price,
            qty,
        })?;
        let reply = wait_for(
            client,
            request,
            Some(Instant::now() + REPLY_GRACE),
            |r| !matches!(r, Reply::Sold { .. }),
            observer,
        )?;
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
    pub trades: Vec<Bought>,
    pub end: BuyEnd,
}

impl BuyOutcome {
    pub fn filled(&self) -> u32 {
        self.trades.iter().map(|t| t.qty).sum()
    }

    pub fn spent_cents(&self) -> u64 {
        self.trades
            .iter()
            .map(|t| t.price.cents() * u64::from(t.qty))
            .sum()
    }
}

/// Buys up to `order.qty` copies at `order.max_price` or less, waiting up to `order.timeout`
/// for copies to be listed; the market expires what is unfilled at the deadline.
pub fn buy(
    client: &mut Client<'_>,
    order: &BuyOrder,
    observer: &mut impl TradingObserver,
) -> Result<BuyOutcome, ClientError> {
    let qty = order.qty;
    let timeout_ms = order.timeout.as_millis().min(u128::from(MAX_TIMEOUT_MS)) as u32;
    let request = client.next_request_id();
    client.send(&Request::Buy {
        request,
        target: order.target.clone(),
        max_price: order.max_price,
        qty,
        timeout_ms: Some(timeout_ms),
    })?;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.into()) + REPLY_GRACE;
    let mut outcome = BuyOutcome {
        wanted: qty.get(),
        trades: Vec::new(),
        end: BuyEnd::Filled,
    };
    loop {
        match wait_for(client, request, Some(deadline), |_| true, observer)? {
            Reply::Bought {
                trade_id,
                title,
                price,
                qty,
                done,
                ..
            } => {
                let b = Bought {
                    trade_id,
                    title,
                    price,
                    qty,
                };
                observer.bought(&b);
                outcome.trades.push(b);
                if done {
                    return Ok(outcome);
                }
            }
            Reply::Rested { .. } => {}
            Reply::Filled { .. } => return Ok(outcome),
            Reply::Expired { unfilled, .. } => {
                outcome.end = BuyEnd::Expired { unfilled };
                return Ok(outcome);
            }
            Reply::Cancelled { unfilled, .. } => {
                outcome.end = BuyEnd::Cancelled { unfilled };
                return Ok(outcome);
            }
            Reply::Rejected { reason, .. } => {
                outcome.end = BuyEnd::Refused(reason);
                return Ok(outcome);
            }
            Reply::Malformed { error, .. } => {
                outcome.end = BuyEnd::Malformed(error);
                return Ok(outcome);
            }
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
