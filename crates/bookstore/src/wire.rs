//! Requests (client → market) and replies (market → client) as ring messages of up to 14 words.
//! Everything but the title is in the first four words, and the title's first 24 bytes in the
//! next three, so a message whose title is at most 24 bytes (or has none) is seven words: one
//! 64-byte cell of the ring, one cache line. Longer titles take the second cell.
//!
//! Request words: `0` kind | title length << 8 | flags << 16 | qty << 32 · `1` request id ·
//! `2` price cents · `3` timeout ms (buy) · `4..14` title bytes.
//!
//! Reply words: `0` kind | title length << 8 | code << 16 | flags << 24 | a << 32 ·
//! `1` request id · `2` b · `3` price cents · `4..14` title bytes. `a` is a quantity (listed,
//! traded, remaining, unfilled) or a refusal's number; `b` a trade id, a count (sold at once,
//! filled) or a malformed field's value.
//!
//! A buy that fills at once gets one reply: its last `Bought` carries the `done` flag (there is
//! no separate `Filled`).
//!
//! Decoding validates every field: a message from another process is untrusted input.

use engine::{
    BuyTarget, ClientId, Event, Price, Qty, RejectReason, RequestId, Title, MAX_PRICE_CENTS,
    MAX_QTY, MAX_TITLE_BYTES,
};

use crate::layout::title_words;
use bookstore_ipc::ring::{Message, MESSAGE_WORDS};

const LIST: u64 = 1;
const BUY: u64 = 2;
const CANCEL: u64 = 3;
const FLAG_ANY: u64 = 1;
const FLAG_DEADLINE: u64 = 2;
/// A reply's flag: this trade completes the buy (no `Filled` follows).
const FLAG_DONE: u64 = 1;
const TITLE_AT: usize = 4;
/// The longest deadline a buy may ask for: one day.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// What a client asks of the market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List {
        request: RequestId,
        title: Title,
        price: Price,
        qty: Qty,
    },
    /// `timeout_ms: None` rests until filled or cancelled.
    Buy {
        request: RequestId,
        target: BuyTarget,
        max_price: Price,
        qty: Qty,
        timeout_ms: Option<u32>,
    },
    /// Cancels the resting buy with this request id.
    Cancel { request: RequestId },
}

impl Request {
    /// The engine command this request asks for, from `client`, at `now` on the market's
    /// clock (a buy's timeout becomes a deadline).
    pub fn into_command(self, client: engine::ClientId, now: engine::Millis) -> engine::Command {
        use engine::Command;
        match self {
            Request::List {
                request,
                title,
                price,
                qty,
            } => Command::List {
                client,
                request,
                title,
                price,
                qty,
            },
            Request::Buy {
                request,
                target,
                max_price,
                qty,
                timeout_ms,
            } => Command::Buy {
                client,
                request,
                target,
                max_price,
                qty,
                deadline: timeout_ms.map(|t| now + u64::from(t)),
            },
            Request::Cancel { request } => Command::Cancel { client, request },
        }
    }
}

/// A request the market could not decode; the reply names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("kind: {0} is not a request kind (1 list, 2 buy, 3 cancel)")]
    Kind(u64),
    #[error("flags: {0:#x} has bits this kind does not use")]
    Flags(u64),
    #[error("title: length {0} is 0 or over {MAX_TITLE_BYTES} bytes")]
    TitleLength(u64),
    #[error("title: not valid UTF-8")]
    TitleUtf8,
    #[error("title: blank or contains control characters")]
    TitleContent,
    #[error("price: {0} cents is outside 1..={MAX_PRICE_CENTS}")]
    Price(u64),
    #[error("qty: {0} is outside 1..={MAX_QTY}")]
    Qty(u64),
    #[error("timeout: {0} ms is over the limit of {MAX_TIMEOUT_MS} ms")]
    Timeout(u64),
}

impl Malformed {
    fn code(self) -> (u64, u64) {
        match self {
            Malformed::Kind(v) => (1, v),
            Malformed::Flags(v) => (2, v),
            Malformed::TitleLength(v) => (3, v),
            Malformed::TitleUtf8 => (4, 0),
            Malformed::TitleContent => (5, 0),
            Malformed::Price(v) => (6, v),
            Malformed::Qty(v) => (7, v),
            Malformed::Timeout(v) => (8, v),
        }
    }

    fn from_code(code: u64, value: u64) -> Option<Self> {
        Some(match code {
            1 => Malformed::Kind(value),
            2 => Malformed::Flags(value),
            3 => Malformed::TitleLength(value),
            4 => Malformed::TitleUtf8,
            5 => Malformed::TitleContent,
            6 => Malformed::Price(value),
            7 => Malformed::Qty(value),
            8 => Malformed::Timeout(value),
            _ => return None,
        })
    }
}

fn put_title(words: &mut Message, title: &str) {
    words[0] |= (title.len() as u64) << 8;
    title_words::pack(title, &mut words[TITLE_AT..]);
}

fn get_title(words: &Message) -> Result<Title, Malformed> {
    let len = (words[0] >> 8) & 0xff;
    let n = len as usize;
    if n == 0 || n > MAX_TITLE_BYTES {
        return Err(Malformed::TitleLength(len));
    }
    // Unpacked on the stack: this runs for every request.
    let mut bytes = [0u8; title_words::WORDS * 8];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(&words[TITLE_AT..]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    // Nothing after the title: the bytes past its length are zero, so a message is exactly
    // as long as its title needs (and a short one is one cell).
    if bytes[n..].iter().any(|&b| b != 0) {
        return Err(Malformed::TitleLength(len));
    }
    let text = std::str::from_utf8(&bytes[..n]).map_err(|_| Malformed::TitleUtf8)?;
    Title::new(text).map_err(|_| Malformed::TitleContent)
}

impl Request {
    pub fn encode(&self) -> Message {
        let mut w = [0u64; MESSAGE_WORDS];
        match self {
            Request::List {
                request,
                title,
                price,
                qty,
            } => {
                w[0] = LIST | u64::from(qty.get()) << 32;
                w[1] = request.0;
                w[2] = price.cents();
                put_title(&mut w, title.as_str());
            }
            Request::Buy {
                request,
                target,
                max_price,
                qty,
                timeout_ms,
            } => {
                let mut flags = 0;
                if let Some(t) = timeout_ms {
                    flags |= FLAG_DEADLINE;
                    w[3] = (*t).into();
                }
                match target {
                    BuyTarget::Title(title) => put_title(&mut w, title.as_str()),
                    BuyTarget::Any => flags |= FLAG_ANY,
                }
                w[0] |= BUY | flags << 16 | u64::from(qty.get()) << 32;
                w[1] = request.0;
                w[2] = max_price.cents();
            }
            Request::Cancel { request } => {
                w[0] = CANCEL;
                w[1] = request.0;
            }
        }
        w
    }

    /// The request id of any message, valid or not, so a malformed request can be answered.
    pub fn raw_request_id(words: &Message) -> RequestId {
        RequestId(words[1])
    }

    pub fn decode(w: &Message) -> Result<Self, Malformed> {
        let kind = w[0] & 0xff;
        let flags = (w[0] >> 16) & 0xffff;
        let request = RequestId(w[1]);
        let price = || Price::from_cents(w[2]).map_err(|_| Malformed::Price(w[2]));
        let qty = || Qty::new(w[0] >> 32).map_err(|_| Malformed::Qty(w[0] >> 32));
        let no_title = || {
            if (w[0] >> 8) & 0xff != 0 || w[TITLE_AT..].iter().any(|&x| x != 0) {
                return Err(Malformed::TitleLength((w[0] >> 8) & 0xff));
            }
            Ok(())
        };
        match kind {
            LIST => {
                if flags != 0 {
                    return Err(Malformed::Flags(flags));
                }
                if w[3] != 0 {
                    return Err(Malformed::Timeout(w[3]));
                }
                Ok(Request::List {
                    request,
                    title: get_title(w)?,
                    price: price()?,
                    qty: qty()?,
                })
            }
            BUY => {
                if flags & !(FLAG_ANY | FLAG_DEADLINE) != 0 {
                    return Err(Malformed::Flags(flags));
                }
                let target = if flags & FLAG_ANY != 0 {
                    no_title()?;
                    BuyTarget::Any
                } else {
                    BuyTarget::Title(get_title(w)?)
                };
                let timeout_ms = if flags & FLAG_DEADLINE != 0 {
                    if w[3] > MAX_TIMEOUT_MS {
                        return Err(Malformed::Timeout(w[3]));
                    }
                    Some(w[3] as u32)
                } else if w[3] != 0 {
                    return Err(Malformed::Timeout(w[3]));
                } else {
                    None
                };
                Ok(Request::Buy {
                    request,
                    target,
                    max_price: price()?,
                    qty: qty()?,
                    timeout_ms,
                })
            }
            CANCEL if flags != 0 => Err(Malformed::Flags(flags)),
            CANCEL => {
                no_title()?;
                Ok(Request::Cancel { request })
            }
            other => Err(Malformed::Kind(other)),
        }
    }
}

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
            | Reply::Malformed { request, .. } => *request,
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
            | Reply::Malformed { .. } => true,
        }
    }

    pub fn encode(&self) -> Message {
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
                let (kind, flags) = match self {
                    Reply::Bought { done: true, .. } => (BOUGHT, FLAG_DONE),
                    Reply::Bought { .. } => (BOUGHT, 0),
                    _ => (SOLD, 0),
                };
                w[0] = head(kind, 0, flags, *qty);
                w[2] = *trade_id;
                w[3] = price.cents();
                put_title(&mut w, title.as_str());
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
        }
        w[1] = self.request_id().0;
        w
    }

    pub fn decode(w: &Message) -> Result<Self, BadReply> {
        use reply_kind::*;
        let request = RequestId(w[1]);
        let code = (w[0] >> 16) & 0xff;
        let flags = (w[0] >> 24) & 0xff;
        let a = (w[0] >> 32) as u32;
        let b32 = |field| u32::try_from(w[2]).map_err(|_| bad(field, w[2]));
        let trade = || -> Result<(Title, Price), BadReply> {
            let title = get_title(w).map_err(|_| bad("title (length byte)", (w[0] >> 8) & 0xff))?;
            let price = Price::from_cents(w[3]).map_err(|_| bad("price", w[3]))?;
            Ok((title, price))
        };
        let kind = w[0] & 0xff;
        if flags & !FLAG_DONE != 0 || (flags != 0 && kind != BOUGHT) {
            return Err(bad("flags", flags));
        }
        Ok(match kind {
            LISTED => Reply::Listed {
                request,
                qty: a,
                sold_at_once: b32("sold at once")?,
            },
            BOUGHT => {
                let (title, price) = trade()?;
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
                let (title, price) = trade()?;
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
            kind => return Err(bad("kind", kind)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn title() -> impl Strategy<Value = Title> {
        "[a-zA-Z0-9 éü’]{1,40}".prop_filter_map("valid title", |s| Title::new(&s).ok())
    }

    fn request() -> impl Strategy<Value = Request> {
        let id = any::<u64>().prop_map(RequestId);
        let price = (1..=MAX_PRICE_CENTS).prop_map(|c| Price::from_cents(c).unwrap());
        let qty = (1..=u64::from(MAX_QTY)).prop_map(|q| Qty::new(q).unwrap());
        prop_oneof![
            (id.clone(), title(), price.clone(), qty.clone()).prop_map(
                |(request, title, price, qty)| Request::List {
                    request,
                    title,
                    price,
                    qty
                }
            ),
            (
                id.clone(),
                prop::option::of(title()),
                price,
                qty,
                prop::option::of(0..=MAX_TIMEOUT_MS as u32)
            )
                .prop_map(|(request, t, max_price, qty, timeout_ms)| Request::Buy {
                    request,
                    target: t.map_or(BuyTarget::Any, BuyTarget::Title),
                    max_price,
                    qty,
                    timeout_ms,
                }),
            id.prop_map(|request| Request::Cancel { request }),
        ]
    }

    proptest! {
        #[test]
        fn every_request_survives_encode_then_decode(r in request()) {
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decoding_arbitrary_words_never_panics(words in prop::array::uniform14(any::<u64>())) {
            let _ = Request::decode(&words);
            let _ = Reply::decode(&words);
        }
    }

    #[test]
    fn a_request_with_bad_fields_names_the_field() {
        let good = Request::List {
            request: RequestId(1),
            title: Title::new("Dune").unwrap(),
            price: Price::from_cents(100).unwrap(),
            qty: Qty::new(1).unwrap(),
        }
        .encode();
        let mut w = good;
        w[2] = 0;
        assert_eq!(Request::decode(&w), Err(Malformed::Price(0)));
        let mut w = good;
        w[0] = (w[0] & 0xffff_ffff) | u64::from(u32::MAX) << 32;
        assert_eq!(Request::decode(&w), Err(Malformed::Qty(u32::MAX.into())));
        let mut w = good;
        w[TITLE_AT + 5] = 1;
        assert_eq!(
            Request::decode(&w),
            Err(Malformed::TitleLength(4)),
            "bytes after the title"
        );
        let mut w = good;
        w[0] = LIST | 200 << 8;
        assert_eq!(Request::decode(&w), Err(Malformed::TitleLength(200)));
        let mut w = good;
        w[TITLE_AT] = 0xffff_ffff;
        assert_eq!(Request::decode(&w), Err(Malformed::TitleUtf8));
        let mut w = good;
        w[0] = 77;
        assert_eq!(Request::decode(&w), Err(Malformed::Kind(77)));
        assert!(Malformed::Price(0).to_string().starts_with("price:"));
    }

    #[test]
    fn every_reply_survives_encode_then_decode() {
        let t = Title::new("Dune").unwrap();
        let p = Price::from_cents(999).unwrap();
        let r = RequestId(9);
        for reply in [
            Reply::Listed {
                request: r,
                qty: 3,
                sold_at_once: 1,
            },
            Reply::Bought {
                request: r,
                trade_id: 5,
                title: t.clone(),
                price: p,
                qty: 2,
                done: false,
            },
            Reply::Bought {
                request: r,
                trade_id: 5,
                title: Title::new("A title of more than twenty-four bytes").unwrap(),
                price: p,
                qty: 2,
                done: true,
            },
            Reply::Sold {
                request: r,
                trade_id: 6,
                title: t,
                price: p,
                qty: 1,
            },
            Reply::Rested {
                request: r,
                filled: 1,
                remaining: 2,
            },
            Reply::Filled { request: r, qty: 3 },
            Reply::Expired {
                request: r,
                filled: 1,
                unfilled: 2,
            },
            Reply::Cancelled {
                request: r,
                filled: 0,
                unfilled: 2,
            },
            Reply::Rejected {
                request: r,
                reason: RejectReason::StoreFull { free: 4 },
            },
            Reply::Rejected {
                request: r,
                reason: RejectReason::LargerThanStore { capacity: 100 },
            },
            Reply::Malformed {
                request: r,
                error: Malformed::Qty(0),
            },
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
    }

    #[test]
    fn a_message_with_a_short_title_fits_one_cell_and_a_long_one_takes_two() {
        use bookstore_ipc::ring::CELL_WORDS;
        let buy = |title: &str| Request::Buy {
            request: RequestId(u64::MAX),
            target: BuyTarget::Title(Title::new(title).unwrap()),
            max_price: Price::from_cents(MAX_PRICE_CENTS).unwrap(),
            qty: Qty::new(MAX_QTY.into()).unwrap(),
            timeout_ms: Some(MAX_TIMEOUT_MS as u32),
        };
        let one_cell = |w: &Message| w[CELL_WORDS..].iter().all(|&x| x == 0);
        assert!(one_cell(&buy("Twenty-four bytes, exact").encode()));
        assert!(!one_cell(&buy("Twenty-five bytes, exactly").encode()));
        let bought = Reply::Bought {
            request: RequestId(1),
            trade_id: u64::MAX,
            title: Title::new("The Left Hand of Darkness").unwrap(),
            price: Price::from_cents(1).unwrap(),
            qty: 1,
            done: true,
        };
        assert!(!one_cell(&bought.encode()));
        let filled = Reply::Filled {
            request: RequestId(1),
            qty: 1,
        };
        assert!(one_cell(&filled.encode()));
    }
}
