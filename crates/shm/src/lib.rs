//! The operating-system layer under bookstore: POSIX shared-memory objects, futexes and
//! process handles.
//!
//! Architecture invariant: this crate knows nothing of books, markets or the segment's layout.
//! It creates, opens, checks and maps named objects; it waits on and wakes futex words; it
//! tells whether a process is the same one that was seen before. Every `unsafe` block of the
//! workspace that touches the OS lives here.

pub mod futex;
mod name;
pub mod process;
mod segment;

pub use name::{NameError, ShmName};
pub use segment::{effective_uid, unlink, CreateError, Mode, OpenError, Segment, Stat};
