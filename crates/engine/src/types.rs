use arrayvec::ArrayString;
use std::fmt;

use serde::Serialize;

/// Longest title, in UTF-8 bytes. It fits a fixed-size ring message with room to spare.
pub const MAX_TITLE_BYTES: usize = 80;
/// Highest price accepted: one million currency units, in cents.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;
/// Most copies in one request.
pub const MAX_QTY: u32 = 1_000_000;
/// Largest store: most books on the shelf at once. The shared layout, the journal and the
/// command line all take their limit from here.
pub const MAX_CAPACITY: u32 = 100_000;

/// Milliseconds on the market's clock. The engine never reads a clock; callers pass `now`.
pub type Millis = u64;

/// A value that is out of range, naming the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("title: {0}")]
    Title(&'static str),
    #[error("price: {cents} cents is {problem}")]
    Price { cents: u64, problem: &'static str },
    #[error("qty: {qty} is {problem}")]
    Qty { qty: u64, problem: &'static str },
}

/// A book title: 1..=80 bytes of UTF-8, no control characters, not only spaces.
/// Held inline (84 bytes, no heap): a clone is a copy, with no allocation and no atomic
/// reference count, and decoding one from a ring message or a journal record allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Title(ArrayString<MAX_TITLE_BYTES>);

impl Title {
    pub fn new(title: &str) -> Result<Self, ValueError> {
        let bytes = title.as_bytes();
        // Printable ASCII (most titles, and every one the bench sends), checked a byte at a
        // time in a loop the compiler vectorises: such a title has no control character, and
        // is blank only if it is all spaces (the one ASCII white space that is not a control
        // character). Decoding it a `char` at a time cost ~20 ns a request.
        if bytes.iter().all(|&b| (b' '..=b'~').contains(&b)) {
            if bytes.iter().all(|&b| b == b' ') {
                return Err(ValueError::Title("must not be empty"));
            }
            return match ArrayString::from(title) {
                Ok(inline) => Ok(Self(inline)),
                Err(_) => Err(ValueError::Title("longer than 80 bytes")),
            };
        }
        if title.trim().is_empty() {
            return Err(ValueError::Title("must not be empty"));
        }
        if title.len() > MAX_TITLE_BYTES {
            return Err(ValueError::Title("longer than 80 bytes"));
        }
        if title.chars().any(char::is_control) {
            return Err(ValueError::Title("contains a control character"));
        }
        let inline = ArrayString::from(title).expect("checked: at most MAX_TITLE_BYTES bytes");
        Ok(Self(inline))
    }

    /// Validates raw bytes (from a ring message or a journal record) as a title.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ValueError> {
        let s = std::str::from_utf8(bytes).map_err(|_| ValueError::Title("is not valid UTF-8"))?;
        Self::new(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Looked up by `&str` in hash maps: `Title`'s `Hash` and `Eq` are the string's.
impl std::borrow::Borrow<str> for Title {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Title {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A price in integer cents, 1..=[`MAX_PRICE_CENTS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Price(u64);

impl Price {
    pub fn from_cents(cents: u64) -> Result<Self, ValueError> {
        match cents {
            0 => Err(ValueError::Price {
                cents,
                problem: "zero; a book costs at least 1 cent",
            }),
            c if c > MAX_PRICE_CENTS => Err(ValueError::Price {
                cents,
                problem: "above the limit of 1000000.00",
            }),
            c => Ok(Self(c)),
        }
    }

    pub fn cents(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Cents(self.0))
    }
}

/// An amount of money in cents, shown as units and two decimals (`1250` → `12.50`): prices,
/// revenue, any total. The one money formatter; it honours width and alignment (`{:>10}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub u64);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}.{:02}", self.0 / 100, self.0 % 100))
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A number of copies, 1..=[`MAX_QTY`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct Qty(u32);

impl Qty {
    pub fn new(qty: u64) -> Result<Self, ValueError> {
        match qty {
            0 => Err(ValueError::Qty {
                qty,
                problem: "zero; ask for at least one copy",
            }),
            q if q > u64::from(MAX_QTY) => Err(ValueError::Qty {
                qty,
                problem: "above the limit of 1000000 copies",
            }),
            q => Ok(Self(q as u32)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Who sent a command: 128 bits the client chose at random when it started, so that it keeps
/// its id when the market restarts and asks about its orders under it (see `Receipts`). Not a
/// secret: anyone who may open a store may write any slot's ring anyway. 0 is no client.
///
/// Written and shown as 32 hexadecimal digits (JSON too: a 128-bit number is not safe there).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ClientId(pub u128);

impl ClientId {
    /// The id's first 64 bits, where 64 bits is all there is room for (the published
    /// per-client statistics); shown as 16 hexadecimal digits.
    pub fn short(self) -> u64 {
        (self.0 >> 64) as u64
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A client's own number for a request, echoed in every event about it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// A title an engine keeps interned for as long as it lives (see [`Engine::pin_title`]): a
/// caller that holds one passes it with a command on that title ([`Engine::apply_pinned`]) so
/// the engine need not look the title up.
///
/// [`Engine::pin_title`]: crate::Engine::pin_title
/// [`Engine::apply_pinned`]: crate::Engine::apply_pinned
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct PinnedTitle(pub(crate) u32);

impl PinnedTitle {
    /// A small dense number (the engine's own id of the title), for a caller's tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a buy is for: one title, or the cheapest copy of any title.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuyTarget {
    Title(Title),
    Any,
}

/// Everything that can change the engine's state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    List {
        client: ClientId,
        request: RequestId,
        title: Title,
        price: Price,
        qty: Qty,
    },
    /// `deadline: None` rests until filled or cancelled; a deadline at or before `now` takes
    /// what it can at once and expires the rest.
    Buy {
        client: ClientId,
        request: RequestId,
        target: BuyTarget,
        max_price: Price,
        qty: Qty,
        deadline: Option<Millis>,
    },
    Cancel {
        client: ClientId,
        request: RequestId,
    },
    /// Expires every resting buy whose deadline is at or before `now`.
    Expire,
    /// The client is gone: its resting buys are cancelled. Its listings stay on the shelf.
    ClientGone { client: ClientId },
    /// The market restarted: every client of the one before is gone with it, so every resting
    /// buy is cancelled (clients in id order, each one's buys oldest first). Journaled once per
    /// start, so `Receipts` can tell a client that left from one that may come back.
    Restart,
}

impl Command {
    /// The client the command is from or about; `None` for the market's own `Expire` and
    /// `Restart`.
    pub fn client(&self) -> Option<ClientId> {
        match self {
            Command::List { client, .. }
            | Command::Buy { client, .. }
            | Command::Cancel { client, .. }
            | Command::ClientGone { client } => Some(*client),
            Command::Expire | Command::Restart => None,
        }
    }
}

/// Why a request was refused. Nothing changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum RejectReason {
    /// The copies would not fit on the shelf now; retry after some sell.
    StoreFull { free: u32 },
    /// The copies could never fit, even in an empty store.
    LargerThanStore { capacity: u32 },
    /// `Cancel` named no resting buy of this client.
    UnknownOrder,
    /// A resting buy of this client already has this request id.
    DuplicateRequest,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StoreFull { free } => write!(f, "the store is full ({free} free places)"),
            Self::LargerThanStore { capacity } => {
                write!(f, "more copies than the store holds ({capacity} books)")
            }
            Self::UnknownOrder => write!(f, "no resting buy has that request id"),
            Self::DuplicateRequest => write!(f, "a resting buy already has that request id"),
        }
    }
}

/// One sale: `qty` copies of `title` at the listing's `price`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Trade {
    pub trade_id: u64,
    pub title: Title,
    pub price: Price,
    pub qty: u32,
    pub seller: ClientId,
    pub buyer: ClientId,
    /// The buyer's request this trade fills.
    pub buy_request: RequestId,
    /// The seller's request that listed the copies.
    pub list_request: RequestId,
    /// The title's pin, if it is pinned (see [`PinnedTitle`]).
    #[serde(skip)]
    pub pinned: Option<PinnedTitle>,
}

/// What happened. Each event names the client (and request) it is about.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// The listing was accepted: `sold_at_once` copies went straight to resting buys (see the
    /// `Traded` events before this one), the rest are on the shelf.
    /// Without the title: its seller sent it, and the trades name it; carrying it cost an
    /// 84-byte copy a listing.
    Listed {
        client: ClientId,
        request: RequestId,
        price: Price,
        qty: u32,
        sold_at_once: u32,
    },
    Traded(Trade),
    /// The buy is partly filled (or not at all) and waits for more copies.
    Rested {
        client: ClientId,
        request: RequestId,
        filled: u32,
        remaining: u32,
    },
    Filled {
        client: ClientId,
        request: RequestId,
        qty: u32,
    },
    Expired {
        client: ClientId,
        request: RequestId,
        filled: u32,
        unfilled: u32,
    },
    Cancelled {
        client: ClientId,
        request: RequestId,
        filled: u32,
        unfilled: u32,
    },
    Rejected {
        client: ClientId,
        request: RequestId,
        reason: RejectReason,
    },
}

impl Event {
    /// The clients this event concerns (a trade concerns its buyer and its seller).
    pub fn recipients(&self) -> (ClientId, Option<ClientId>) {
        match self {
            Event::Traded(t) => (t.buyer, (t.seller != t.buyer).then_some(t.seller)),
            Event::Listed { client, .. }
            | Event::Rested { client, .. }
            | Event::Filled { client, .. }
            | Event::Expired { client, .. }
            | Event::Cancelled { client, .. }
            | Event::Rejected { client, .. } => (*client, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A title's rule as written: 1..=80 bytes, not blank, no control character.
    fn is_valid_title(s: &str) -> bool {
        !s.trim().is_empty() && s.len() <= MAX_TITLE_BYTES && !s.chars().any(char::is_control)
    }

    proptest! {
        #[test]
        fn a_title_is_accepted_exactly_when_the_rule_says_so(
            s in prop_oneof![
                // Mostly ASCII, controls and white space included (the fast path and its edges).
                "[\\x00-\\x7f]{0,90}",
                "[ \\t\\n]{0,5}",
                // Any characters: the general path.
                any::<String>(),
            ]
        ) {
            let accepted = Title::new(&s);
            prop_assert_eq!(accepted.is_ok(), is_valid_title(&s), "{:?}: {:?}", s, accepted);
            if let Ok(title) = accepted {
                prop_assert_eq!(title.as_str(), s.as_str());
            }
        }
    }

    #[test]
    fn an_all_space_title_is_refused_as_empty_and_a_long_one_as_long() {
        assert_eq!(
            Title::new("   ").unwrap_err(),
            ValueError::Title("must not be empty")
        );
        assert_eq!(
            Title::new(&"a".repeat(81)).unwrap_err(),
            ValueError::Title("longer than 80 bytes")
        );
        assert_eq!(
            Title::new("a\u{7f}").unwrap_err(),
            ValueError::Title("contains a control character")
        );
    }
}
