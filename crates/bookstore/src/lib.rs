//! bookstore: a single-writer book market over one POSIX shared-memory object.
//!
//! This crate is the store's API. Below it: `shm` (the OS), `engine` (the rules),
//! `bookstore_ipc` (rings, doorbells, slots) and `bookstore_journal` (the command log). Above
//! it: the `bookstore` command (`crates/cli`). Here, bottom up:
//! - [`layout`], [`shared`], [`view`], [`wire`]: the object's bytes, the published view and the
//!   messages, all validated on read; [`stats`] and [`latency`]: what the market measures of
//!   itself, published beside the view;
//! - [`journal`]: the journal crate, plus where a store's journal lives;
//! - [`server`], [`client`], [`trading`]: the market's event loop, the client API, and whole
//!   orders on top of it.
//!
//! Architecture invariant: this crate knows no command line, exit code or terminal. It prints
//! nothing for users (diagnostics go to `tracing`); it returns typed outcomes and events, and
//! the CLI decides what to say.

pub mod client;
#[doc(hidden)]
pub mod fuzzing;
pub mod journal;
pub mod latency;
pub mod layout;
pub mod lesson;
pub mod server;
pub mod shared;
pub mod stats;
pub mod titles;
pub mod trading;
pub mod view;
pub mod wire;
