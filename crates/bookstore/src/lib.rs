//! bookstore: a single-writer book market over one POSIX shared-memory object.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! - [`sync`], [`ring`], [`doorbell`]: the lock-free building blocks (model-checked with loom);
//! - `layout`, `wire`: the segment's bytes and the messages' encoding, both validated on read;
//! - `server`, `client`: the market's event loop and the client API;
//! - `cli`: the `bookstore` command's subcommands, thin over the above.

pub mod doorbell;
pub mod ring;
pub mod sync;
