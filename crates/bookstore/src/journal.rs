//! The market's journal, as the store uses it: the journal crate's file and format, and where
//! a store's journal lives by default.

use std::path::{Path, PathBuf};

pub use bookstore_journal::*;

/// The default journal path for a store: `$XDG_STATE_HOME/bookstore/NAME.journal`, else
/// `~/.local/state/bookstore/NAME.journal`.
pub fn default_path(name: &shm::ShmName) -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(state) => PathBuf::from(state),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(path_in(&base, name))
}

/// The journal of store `name` under the state directory `state_home`.
pub fn path_in(state_home: &Path, name: &shm::ShmName) -> PathBuf {
    state_home
        .join("bookstore")
        .join(format!("{}.journal", name.file_name()))
}
