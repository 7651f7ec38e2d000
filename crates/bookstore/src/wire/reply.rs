//! Replies (market → client): the codec of the words the market writes into a reply ring.
//! The layout is in the parent module's docs.

use engine::{
    ClientId, Event, OrderKind, OrderState, Price, Receipt, RejectReason, RequestId, Title,
};

use super::{
    get_title, get_title_by_id, put_title_or_id, Malformed, NoTitleIds, TitleIds, FLAG_DONE,
    REPLY_FLAG_TITLE_ID,
};
use bookstore_ipc::ring::{Message, MESSAGE_WORDS};

/// What the market tells one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Listed {
        request: RequestId,
        qty: u32,
        sold_at_once: u32,
    },
    /// A trade for a buy; `done` when it completes the buy (then no `Filled` follows).
    Bought {
        request: RequestId,
        trade_id: u64,
        title: Title,
        price: Price,
        qty: u32,
        done: bool,
    },
    Sold {
        request: RequestId,
        trade_id: u64,
        title: Title,
        price: Price,
        qty: u32,
    },
    Rested {
        request: RequestId,
        filled: u32,
        remaining: u32,
    },
    Filled {
        request: RequestId,
        qty: u32,
    },
    Expired {
        request: RequestId,
        filled: u32,
        unfilled: u32,
    },
    Cancelled {
        request: RequestId,
        filled: u32,
        unfilled: u32,
    },
    Rejected {
        request: RequestId,
        reason: RejectReason,
    },
    Malformed {
        request: RequestId,
        error: Malformed,
    },
    /// The answer to an `Ask`: what became of the order (its request id is the receipt's).
    Receipt(Receipt),
    /// The answer to an `Ask` about an order the market never applied (it never arrived, or
    /// was refused, which changed nothing): sending it again cannot apply it twice.
    NotSeen {
        request: RequestId,
    },
}

/// A reply the client could not decode: the market (or something in its place) is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reply from the market is malformed: {field} is {value:#x}")]
pub struct BadReply {
    /// The field that is wrong.
    pub field: &'static str,
    /// The word found in it.
    pub value: u64,
}

fn bad(field: &'static str, value: u64) -> BadReply {
    BadReply { field, value }
}

/// A refusal's reason on the wire: a code and an auxiliary number. Encode and decode side by
/// side, so the table is written once.
mod reject_code {
    use engine::RejectReason;

    pub(super) fn encode(reason: &RejectReason) -> (u64, u32) {
        match reason {
            RejectReason::StoreFull { free } => (1, *free),
            RejectReason::LargerThanStore { capacity } => (2, *capacity),
            RejectReason::UnknownOrder => (3, 0),
            RejectReason::DuplicateRequest => (4, 0),
        }
    }

    pub(super) fn decode(code: u64, aux: u32) -> Option<RejectReason> {
        Some(match code {
            1 => RejectReason::StoreFull { free: aux },
            2 => RejectReason::LargerThanStore { capacity: aux },
            3 => RejectReason::UnknownOrder,
            4 => RejectReason::DuplicateRequest,
            _ => return None,
        })
    }
}

mod reply_kind {
    pub const LISTED: u64 = 1;
    pub const BOUGHT: u64 = 2;
    pub const SOLD: u64 = 3;
    pub const RESTED: u64 = 4;
    pub const FILLED: u64 = 5;
    pub const EXPIRED: u64 = 6;
    pub const CANCELLED: u64 = 7;
    pub const REJECTED: u64 = 8;
    pub const MALFORMED: u64 = 9;
    pub const RECEIPT: u64 = 10;
    pub const NOT_SEEN: u64 = 11;
}

impl Reply {
    /// The engine's event as `client` sees it, if it concerns that client.
    pub fn for_client(event: &Event, client: ClientId) -> Option<Reply> {
        Some(match event {
            Event::Listed {
                client: c,
                request,
                qty,
                sold_at_once,
                ..
            } if *c == client => Reply::Listed {
                request: *request,
                qty: *qty,
                sold_at_once: *sold_at_once,
            },
            Event::Traded(t) if t.buyer == client => Reply::Bought {
                request: t.buy_request,
                trade_id: t.trade_id,
                title: t.title.clone(),
                price: t.price,
                qty: t.qty,
                done: false,
            },
            Event::Traded(t) if t.seller == client => Reply::Sold {
                request: t.list_request,
                trade_id: t.trade_id,
                title: t.title.clone(),
                price: t.price,
                qty: t.qty,
            },
            Event::Rested {
                client: c,
                request,
                filled,
                remaining,
            } if *c == client => Reply::Rested {
                request: *request,
                filled: *filled,
                remaining: *remaining,
            },
            Event::Filled {
                client: c,
                request,
                qty,
            } if *c == client => Reply::Filled {
                request: *request,
                qty: *qty,
            },
            Event::Expired {
                client: c,
                request,
                filled,
                unfilled,
            } if *c == client => Reply::Expired {
                request: *request,
                filled: *filled,
                unfilled: *unfilled,
            },
            Event::Cancelled {
                client: c,
                request,
                filled,
                unfilled,
            } if *c == client => Reply::Cancelled {
                request: *request,
                filled: *filled,
                unfilled: *unfilled,
            },
            Event::Rejected {
                client: c,
                request,
                reason,
            } if *c == client => Reply::Rejected {
                request: *request,
                reason: *reason,
            },
            _ => return None,
        })
    }

    pub fn request_id(&self) -> RequestId {
        match self {
            Reply::Listed { request, .. }
            | Reply::Bought { request, .. }
            | Reply::Sold { request, .. }
            | Reply::Rested { request, .. }
            | Reply::Filled { request, .. }
            | Reply::Expired { request, .. }
            | Reply::Cancelled { request, .. }
            | Reply::Rejected { request, .. }
            | Reply::Malformed { request, .. }
            | Reply::NotSeen { request } => *request,
            Reply::Receipt(r) => r.request,
        }
    }

    /// Whether this reply ends its request: nothing more comes about it.
    pub fn is_final(&self) -> bool {
        match self {
            Reply::Bought { done, .. } => *done,
            Reply::Sold { .. } | Reply::Rested { .. } => false,
            Reply::Listed { .. }
            | Reply::Filled { .. }
            | Reply::Expired { .. }
            | Reply::Cancelled { .. }
            | Reply::Rejected { .. }
            | Reply::Malformed { .. }
            | Reply::Receipt(_)
            | Reply::NotSeen { .. } => true,
        }
    }

    /// The message, a title as text.
    pub fn encode(&self) -> Message {
        self.encode_with(None)
    }

    /// The message, with `title_id` (the id of a trade's title in the title table, if it has
    /// one) in place of the title's text.
    pub fn encode_with(&self, title_id: Option<u32>) -> Message {
        use reply_kind::*;
        let mut w = [0u64; MESSAGE_WORDS];
        // Word 0: kind | code << 16 | flags << 24 | a << 32 (the title length goes in with the
        // title); word 2: b.
        let head = |kind: u64, code: u64, flags: u64, a: u32| {
            kind | code << 16 | flags << 24 | u64::from(a) << 32
        };
        match self {
            Reply::Listed {
                qty, sold_at_once, ..
            } => {
                w[0] = head(LISTED, 0, 0, *qty);
                w[2] = (*sold_at_once).into();
            }
            Reply::Bought {
                trade_id,
                title,
                price,
                qty,
                ..
            }
            | Reply::Sold {
                trade_id,
                title,
                price,
                qty,
                ..
            } => {
                let (kind, mut flags) = match self {
                    Reply::Bought { done: true, .. } => (BOUGHT, FLAG_DONE),
                    Reply::Bought { .. } => (BOUGHT, 0),
                    _ => (SOLD, 0),
                };
                if put_title_or_id(&mut w, title, title_id) {
                    flags |= REPLY_FLAG_TITLE_ID;
                }
                w[0] |= head(kind, 0, flags, *qty);
                w[2] = *trade_id;
                w[3] = price.cents();
            }
            Reply::Rested {
                filled, remaining, ..
            } => {
                w[0] = head(RESTED, 0, 0, *remaining);
                w[2] = (*filled).into();
            }
            Reply::Filled { qty, .. } => w[0] = head(FILLED, 0, 0, *qty),
            Reply::Expired {
                filled, unfilled, ..
            }
            | Reply::Cancelled {
                filled, unfilled, ..
            } => {
                let kind = if matches!(self, Reply::Expired { .. }) {
                    EXPIRED
                } else {
                    CANCELLED
                };
                w[0] = head(kind, 0, 0, *unfilled);
                w[2] = (*filled).into();
            }
            Reply::Rejected { reason, .. } => {
                let (code, aux) = reject_code::encode(reason);
                w[0] = head(REJECTED, code, 0, aux);
            }
            Reply::Malformed { error, .. } => {
                let (code, value) = error.code();
                w[0] = head(MALFORMED, code, 0, 0);
                w[2] = value;
            }
            Reply::Receipt(r) => {
                // The code is the order's kind << 4 | its state.
                let (state, sold_at_once) = r.state.code();
                let code = u64::from(r.kind.code()) << 4 | u64::from(state);
                w[0] = head(RECEIPT, code, 0, r.done);
                w[2] = r.spent_cents;
                w[3] = u64::from(r.qty) | u64::from(sold_at_once) << 32;
            }
            Reply::NotSeen { .. } => w[0] = head(NOT_SEEN, 0, 0, 0),
        }
        w[1] = self.request_id().0;
        w
    }

    /// The reply in `w`, a title as text (an id is malformed here).
    pub fn decode(w: &Message) -> Result<Self, BadReply> {
        Self::decode_with(w, &mut NoTitleIds)
    }

    /// The reply in `w`, a title id resolved through `titles`.
    pub fn decode_with(w: &Message, titles: &mut impl TitleIds) -> Result<Self, BadReply> {
        use reply_kind::*;
        let request = RequestId(w[1]);
        let code = (w[0] >> 16) & 0xff;
        let flags = (w[0] >> 24) & 0xff;
        let a = (w[0] >> 32) as u32;
        let b32 = |field| u32::try_from(w[2]).map_err(|_| bad(field, w[2]));
        let trade = |titles: &mut _| -> Result<(Title, Price), BadReply> {
            let title = if flags & REPLY_FLAG_TITLE_ID != 0 {
                get_title_by_id(w, titles)
                    .map(|(t, _)| t)
                    .map_err(|_| bad("title id (no valid title in the table under it)", w[4]))?
            } else {
                get_title(w).map_err(|_| bad("title (length byte)", (w[0] >> 8) & 0xff))?
            };
            let price = Price::from_cents(w[3]).map_err(|_| bad("price", w[3]))?;
            Ok((title, price))
        };
        let kind = w[0] & 0xff;
        let allowed = match kind {
            BOUGHT => FLAG_DONE | REPLY_FLAG_TITLE_ID,
            SOLD => REPLY_FLAG_TITLE_ID,
            _ => 0,
        };
        if flags & !allowed != 0 {
            return Err(bad("flags", flags));
        }
        Ok(match kind {
            LISTED => Reply::Listed {
                request,
                qty: a,
                sold_at_once: b32("sold at once")?,
            },
            BOUGHT => {
                let (title, price) = trade(titles)?;
                Reply::Bought {
                    request,
                    trade_id: w[2],
                    title,
                    price,
                    qty: a,
                    done: flags & FLAG_DONE != 0,
                }
            }
            SOLD => {
                let (title, price) = trade(titles)?;
                Reply::Sold {
                    request,
                    trade_id: w[2],
                    title,
                    price,
                    qty: a,
                }
            }
            RESTED => Reply::Rested {
                request,
                filled: b32("filled")?,
                remaining: a,
            },
            FILLED => Reply::Filled { request, qty: a },
            EXPIRED => Reply::Expired {
                request,
                filled: b32("filled")?,
                unfilled: a,
            },
            CANCELLED => Reply::Cancelled {
                request,
                filled: b32("filled")?,
                unfilled: a,
            },
            REJECTED => Reply::Rejected {
                request,
                reason: reject_code::decode(code, a).ok_or(bad("reject reason", code))?,
            },
            MALFORMED => Reply::Malformed {
                request,
                error: Malformed::from_code(code, w[2]).ok_or(bad("malformed code", code))?,
            },
            RECEIPT => {
                let (qty, sold_at_once) = (w[3] as u32, (w[3] >> 32) as u32);
                let kind = OrderKind::from_code((code >> 4) as u8);
                let state = kind.and_then(|k| {
                    OrderState::from_code(k, (code & 0xf) as u8, sold_at_once).map(|s| (k, s))
                });
                let (kind, state) =
                    state.ok_or(bad("receipt code", code | u64::from(sold_at_once) << 8))?;
                let receipt = Receipt {
                    request,
                    kind,
                    qty,
                    done: a,
                    spent_cents: w[2],
                    state,
                };
                if qty == 0 || a > qty || sold_at_once > qty {
                    return Err(bad("receipt qty", w[3]));
                }
                if kind == OrderKind::List && (a != qty || w[2] != 0) {
                    return Err(bad("receipt done", a.into()));
                }
                if state == OrderState::Filled && a != qty {
                    return Err(bad("receipt done", a.into()));
                }
                Reply::Receipt(receipt)
            }
            NOT_SEEN => Reply::NotSeen { request },
            kind => return Err(bad("kind", kind)),
        })
    }
}
