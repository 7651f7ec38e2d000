//! The bookstore's matching engine: commands in, events out.
//!
//! Architecture invariant: no I/O. Nothing here knows about shared memory, clocks, files or
//! processes; time comes in with each command. Same commands, same events, same state, which
//! is what lets a journal replay rebuild the store exactly.
//!
//! Semantics, in brief:
//! - `List` puts copies on the shelf, after first filling resting buys that accept its price;
//!   it is refused whole (`StoreFull`) if the copies left for the shelf would exceed capacity.
//! - `Buy` takes the cheapest copies at or below its limit, oldest first at equal price
//!   (price-time priority); the trade price is the listing's. The rest rests until filled,
//!   cancelled, or past its deadline.
//! - Resting buys meet new listings by best limit first, then oldest.
//! - Invariant: books listed = books sold + books on the shelf.
#![forbid(unsafe_code)]

mod arena;
mod book;
mod engine;
mod levels;
mod receipts;
mod titles;
mod types;

pub use engine::state::{BuyState, EngineState, ListingState, StateError};
pub use engine::{Engine, InvariantViolation, ShelfRow, Stats};
pub use receipts::{
    ClientReceiptsState, Intent, OrderKind, OrderState, Receipt, Receipts, ReceiptsError,
    ReceiptsState, ORPHAN_RESTARTS, RECEIPTS_PER_CLIENT,
};
pub use types::{
    BuyTarget, Cents, ClientId, Command, Event, Millis, PinnedTitle, Price, Qty, RejectReason,
    RequestId, Title, Trade, ValueError, MAX_CAPACITY, MAX_PRICE_CENTS, MAX_QTY, MAX_TITLE_BYTES,
};
