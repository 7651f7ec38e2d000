//! The operating-system layer under bookstore: POSIX shared-memory objects, futexes, process
//! handles, file locks, memory-mapped files and random identities.
//!
//! Architecture invariant: this crate knows nothing of books, markets or the segment's layout.
//! It creates, opens, checks and maps named objects; it waits on and wakes futex words; it
//! tells whether a process is the same one that was seen before; it locks files. Every system
//! call of the market's crates goes through here; the only `unsafe` is in the modules of
//! [`Segment`] and [`MappedFile`] (the mappings themselves) and [`robust`] (the lists of
//! futex words the kernel marks when a thread dies), which opt in to it.

pub mod file;
pub mod futex;
mod mapped_file;
mod name;
pub mod process;
pub mod random;
pub mod robust;
mod segment;
pub mod users;

pub use mapped_file::{MappedFile, Populator};
pub use name::{NameError, ShmName};
pub use segment::{effective_uid, unlink, CreateError, Mode, OpenError, Owner, Segment, Stat};
