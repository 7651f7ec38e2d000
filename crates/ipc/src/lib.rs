//! Lock-free building blocks for processes that share memory but not trust: an SPSC ring of
//! messages of one or two cache lines, each committed by a stamp in its own line; a futex
//! doorbell that never loses a wake-up; an append-only table of records; a sequence lock for a published view; a mailbox of
//! requests between two threads; and the protocol by which a client owns a slot and a server
//! announces itself.
//!
//! Architecture invariant: this crate knows nothing of books, of the store's layout (offsets,
//! sizes, versions), of processes beyond a pid number, or of any command line. Every type here
//! is made of atomics only, so it can live in a shared mapping that another process scribbles
//! on; each index or stamp read from the other side is checked before it is trusted.
//!
//! Architecture invariant: every lock-free protocol here has a loom model (`tests/loom.rs`),
//! and the whole crate builds under `RUSTFLAGS="--cfg loom"` with nothing switched off: the
//! [`sync`] shim swaps in loom's atomics and a futex emulation.

pub mod append_only;
pub mod doorbell;
pub mod mailbox;
pub mod pingpong;
pub mod record;
pub mod ring;
pub mod seqlock;
pub mod slot;
pub mod sync;

pub use append_only::{AppendOnly, Appender};
pub use doorbell::Doorbell;
pub use mailbox::Mailbox;
pub use record::{CacheLine, LinePair, Record, RecordWords, RECORD_WORDS};
pub use ring::{Consumer, Message, Producer, Ring, RingError, CELL_WORDS, MESSAGE_WORDS};
pub use seqlock::SeqLock;
pub use slot::{IdentitySeen, MarketIdentity, ServerState, SlotControl, SlotState};
