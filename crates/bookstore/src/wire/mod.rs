//! Requests (client → market) and replies (market → client) as ring messages of up to 14 words.
//! Everything but the title is in the first four words, and the title's first 24 bytes in the
//! next three, so a message whose title is at most 24 bytes (or has none) is seven words: one
//! 64-byte cell of the ring, one cache line. Longer titles take the second cell.
//!
//! Request words: `0` kind | title length << 8 | flags << 16 | qty << 32 · `1` request id ·
//! `2` price cents · `3` timeout ms (buy) · `4..14` title bytes. Kinds: 1 list, 2 buy, 3 cancel,
//! 4 ask (what became of this request? asked by a client that reattached after its market
//! restarted; answered with a receipt or "not seen"). Flags: 1 any title (buy), 2 deadline
//! (buy), 4 title id (list, buy).
//!
//! Reply words: `0` kind | title length << 8 | code << 16 | flags << 24 | a << 32 ·
//! `1` request id · `2` b · `3` price cents · `4..14` title bytes. `a` is a quantity (listed,
//! traded, remaining, unfilled) or a refusal's number; `b` a trade id, a count (sold at once,
//! filled) or a malformed field's value. Flags: 1 done (bought), 2 title id (bought, sold).
//!
//! A title the market's title table holds (see [`crate::titles`]) may travel as its id: the
//! title-id flag set, the length byte zero and word 4 the id, so the message is four words of
//! fields and one of title, whatever the title's length. Each side resolves an id through a
//! [`TitleIds`]: the market from its own copy of the table, a client from the table it reads
//! (every record validated as a title before it is used). An id the table does not hold is a
//! malformed message, like a bad length.
//!
//! A buy that fills at once gets one reply: its last `Bought` carries the `done` flag (there is
//! no separate `Filled`).
//!
//! Decoding validates every field: a message from another process is untrusted input.

use engine::{BuyTarget, Price, Qty, RequestId, Title, MAX_PRICE_CENTS, MAX_QTY, MAX_TITLE_BYTES};

use crate::layout::title_words;
use bookstore_ipc::ring::{Message, MESSAGE_WORDS};

const LIST: u64 = 1;
const BUY: u64 = 2;
const CANCEL: u64 = 3;
const ASK: u64 = 4;
const FLAG_ANY: u64 = 1;
const FLAG_DEADLINE: u64 = 2;
/// A request's flag: the title is an id in word 4.
const FLAG_TITLE_ID: u64 = 4;
/// A reply's flag: this trade completes the buy (no `Filled` follows).
const FLAG_DONE: u64 = 1;
/// A reply's flag: the title is an id in word 4.
const REPLY_FLAG_TITLE_ID: u64 = 2;
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
    /// What became of this client's order `request`? Answered from the market's receipts
    /// (`Reply::Receipt`, or `Reply::NotSeen`: send it again). Changes nothing.
    Ask { request: RequestId },
}

impl Request {
    /// The title the request names, if it names one (a list, a buy of one title).
    pub fn title(&self) -> Option<&Title> {
        match self {
            Request::List { title, .. }
            | Request::Buy {
                target: BuyTarget::Title(title),
                ..
            } => Some(title),
            _ => None,
        }
    }

    /// The engine command this request asks for, from `client`, at `now` on the market's
    /// clock (a buy's timeout becomes a deadline). Not for an `Ask`, which is no command.
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
            Request::Ask { .. } => unreachable!("an Ask is answered from the receipts"),
        }
    }
}

/// A request the market could not decode; the reply names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("kind: {0} is not a request kind (1 list, 2 buy, 3 cancel, 4 ask)")]
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
    #[error("title id: {0} is not in the title table")]
    TitleId(u64),
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
            Malformed::TitleId(v) => (9, v),
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
            9 => Malformed::TitleId(value),
            _ => return None,
        })
    }
}

/// How one side of the wire resolves title ids (see the module docs).
pub trait TitleIds {
    /// The id of `title`, if the table holds it: an encoder sends the id instead of the text.
    fn id_of(&mut self, title: &Title) -> Option<u32>;
    /// The title whose id is `id`, if the table holds one (validated).
    fn title_of(&mut self, id: u32) -> Option<Title>;
}

/// Titles always as text, ids never resolved: for codecs with no title table at hand (tests,
/// fuzzing, a message dump).
pub struct NoTitleIds;

impl TitleIds for NoTitleIds {
    fn id_of(&mut self, _: &Title) -> Option<u32> {
        None
    }

    fn title_of(&mut self, _: u32) -> Option<Title> {
        None
    }
}

fn put_title(words: &mut Message, title: &Title) {
    words[0] |= (title.as_str().len() as u64) << 8;
    title_words::pack(title, &mut words[TITLE_AT..]);
}

/// Puts `title` as its id if it has one (returns whether it did), else as text.
fn put_title_or_id(words: &mut Message, title: &Title, id: Option<u32>) -> bool {
    match id {
        Some(id) => {
            words[TITLE_AT] = id.into();
            true
        }
        None => {
            put_title(words, title);
            false
        }
    }
}

/// The title of a message whose title-id flag is set: the length byte zero, an id in word 4
/// and nothing after it, and the id one `titles` holds. Returns the title and its id.
fn get_title_by_id(words: &Message, titles: &mut impl TitleIds) -> Result<(Title, u32), Malformed> {
    let len = (words[0] >> 8) & 0xff;
    if len != 0 || words[TITLE_AT + 1..].iter().any(|&w| w != 0) {
        return Err(Malformed::TitleLength(len));
    }
    let id = words[TITLE_AT];
    let title = u32::try_from(id).ok().and_then(|id| titles.title_of(id));
    title.map(|t| (t, id as u32)).ok_or(Malformed::TitleId(id))
}

fn get_title(words: &Message) -> Result<Title, Malformed> {
    use title_words::NotATitle;
    // Nothing after the title: the bytes past its length are zero, so a message is exactly
    // as long as its title needs (and a short one is one cell).
    let len = (words[0] >> 8) & 0xff;
    title_words::unpack_title(len, &words[TITLE_AT..]).map_err(|e| match e {
        NotATitle::Length => Malformed::TitleLength(len),
        NotATitle::Utf8 => Malformed::TitleUtf8,
        NotATitle::Content => Malformed::TitleContent,
    })
}

impl Request {
    /// The message, every title as text.
    pub fn encode(&self) -> Message {
        self.encode_with(&mut NoTitleIds)
    }

    /// The message, a title that `titles` has an id for as that id.
    pub fn encode_with(&self, titles: &mut impl TitleIds) -> Message {
        let mut w = [0u64; MESSAGE_WORDS];
        match self {
            Request::List {
                request,
                title,
                price,
                qty,
            } => {
                let by_id = put_title_or_id(&mut w, title, titles.id_of(title));
                let flags = if by_id { FLAG_TITLE_ID } else { 0 };
                w[0] |= LIST | flags << 16 | u64::from(qty.get()) << 32;
                w[1] = request.0;
                w[2] = price.cents();
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
                    BuyTarget::Title(title) => {
                        if put_title_or_id(&mut w, title, titles.id_of(title)) {
                            flags |= FLAG_TITLE_ID;
                        }
                    }
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
            Request::Ask { request } => {
                w[0] = ASK;
                w[1] = request.0;
            }
        }
        w
    }

    /// The request id of any message, valid or not, so a malformed request can be answered.
    pub fn raw_request_id(words: &Message) -> RequestId {
        RequestId(words[1])
    }

    /// The request in `w`, every title as text (an id is malformed here).
    pub fn decode(w: &Message) -> Result<Self, Malformed> {
        Self::decode_with(w, &mut NoTitleIds).map(|(request, _)| request)
    }

    /// The request in `w`, a title id resolved through `titles`; with the id, if the title
    /// came as one.
    pub fn decode_with(
        w: &Message,
        titles: &mut impl TitleIds,
    ) -> Result<(Self, Option<u32>), Malformed> {
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
        let title = |titles: &mut _| -> Result<(Title, Option<u32>), Malformed> {
            if flags & FLAG_TITLE_ID != 0 {
                get_title_by_id(w, titles).map(|(t, id)| (t, Some(id)))
            } else {
                get_title(w).map(|t| (t, None))
            }
        };
        match kind {
            LIST => {
                if flags & !FLAG_TITLE_ID != 0 {
                    return Err(Malformed::Flags(flags));
                }
                if w[3] != 0 {
                    return Err(Malformed::Timeout(w[3]));
                }
                let (title, id) = title(titles)?;
                let list = Request::List {
                    request,
                    title,
                    price: price()?,
                    qty: qty()?,
                };
                Ok((list, id))
            }
            BUY => {
                if flags & !(FLAG_ANY | FLAG_DEADLINE | FLAG_TITLE_ID) != 0
                    || flags & FLAG_ANY != 0 && flags & FLAG_TITLE_ID != 0
                {
                    return Err(Malformed::Flags(flags));
                }
                let (target, id) = if flags & FLAG_ANY != 0 {
                    no_title()?;
                    (BuyTarget::Any, None)
                } else {
                    let (title, id) = title(titles)?;
                    (BuyTarget::Title(title), id)
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
                let buy = Request::Buy {
                    request,
                    target,
                    max_price: price()?,
                    qty: qty()?,
                    timeout_ms,
                };
                Ok((buy, id))
            }
            CANCEL | ASK if flags != 0 => Err(Malformed::Flags(flags)),
            CANCEL => {
                no_title()?;
                Ok((Request::Cancel { request }, None))
            }
            ASK => {
                no_title()?;
                Ok((Request::Ask { request }, None))
            }
            other => Err(Malformed::Kind(other)),
        }
    }
}

mod reply;
pub use reply::{BadReply, Reply};

#[cfg(test)]
mod title_id_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use engine::RejectReason;
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
            id.clone().prop_map(|request| Request::Cancel { request }),
            id.prop_map(|request| Request::Ask { request }),
        ]
    }

    proptest! {
        #[test]
        fn every_request_survives_encode_then_decode(r in request()) {
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn any_nonzero_byte_past_the_title_is_refused_as_its_length(
            title in "[a-zA-Z0-9 ]{1,80}".prop_filter("not blank", |t| !t.trim().is_empty()),
            at in 0usize..80,
            byte in 1u8..,
        ) {
            let request = Request::List {
                request: RequestId(1),
                title: Title::new(&title).unwrap(),
                price: Price::from_cents(100).unwrap(),
                qty: Qty::new(1).unwrap(),
            };
            let mut w = request.encode();
            let at = title.len() + at % (80 - title.len() + 1);
            prop_assume!(at < 80);
            w[TITLE_AT + at / 8] |= u64::from(byte) << (8 * (at % 8));
            prop_assert_eq!(
                Request::decode(&w),
                Err(Malformed::TitleLength(title.len() as u64))
            );
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
            Reply::Receipt(engine::Receipt {
                request: r,
                kind: engine::OrderKind::List,
                qty: 3,
                done: 3,
                spent_cents: 0,
                state: engine::OrderState::Listed { sold_at_once: 2 },
            }),
            Reply::Receipt(engine::Receipt {
                request: r,
                kind: engine::OrderKind::Buy,
                qty: 3,
                done: 1,
                spent_cents: 999,
                state: engine::OrderState::Cancelled,
            }),
            Reply::NotSeen { request: r },
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
