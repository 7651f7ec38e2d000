//! bookstore: a single-writer book market over one POSIX shared-memory object.
//!
//! Layers, bottom up (see ARCHITECTURE.md):
//! - [`sync`], [`ring`], [`doorbell`], [`slot`]: the lock-free building blocks and handshakes
//!   (model-checked with loom);
//! - [`layout`], [`shared`], [`view`], [`wire`]: the object's bytes, the published view and the
//!   messages, all validated on read;
//! - [`journal`]: the market's append-only command log, replayed on start;
//! - [`server`], [`client`]: the market's event loop and the client API;
//! - [`cli`]: the `bookstore` command's subcommands, thin over the above.

pub mod doorbell;
pub mod ring;
pub mod slot;
pub mod sync;

#[cfg(not(loom))]
pub mod cli;
#[cfg(not(loom))]
pub mod client;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
pub mod journal;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
pub mod server;
#[cfg(not(loom))]
pub mod shared;
#[cfg(not(loom))]
pub mod trading;
#[cfg(not(loom))]
pub mod view;
#[cfg(not(loom))]
pub mod wire;
