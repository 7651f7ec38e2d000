//! The market's journal, as the store uses it: the journal crate's file and format, and where
//! a store's journal lives by default.

use std::path::{Path, PathBuf};

pub use bookstore_journal::*;

// A restart's recent trades come from the journal's recovery: it must keep at least as many
// as the view shows (the view keeps the last of them).
const _: () = assert!(bookstore_journal::RECENT_TRADES >= crate::layout::RECENT_TRADES);

/// The default journal path for a store: `$XDG_STATE_HOME/bookstore/NAME.journal`, else
/// `$HOME/.local/state/bookstore/NAME.journal`. `None` when neither variable holds an absolute
/// path: a journal relative to the current directory would be silently lost by a restart
/// from elsewhere.
pub fn default_path(name: &shm::ShmName) -> Option<PathBuf> {
    let absolute = |var| std::env::var_os(var).filter(|v| Path::new(v).is_absolute());
    let base = match absolute("XDG_STATE_HOME") {
        Some(state) => PathBuf::from(state),
        None => PathBuf::from(absolute("HOME")?).join(".local/state"),
    };
    Some(path_in(&base, name))
}

/// The journal path a user gave or the default, made absolute (a relative `--journal` is
/// taken from the current directory, once, at start), or why there is none.
pub fn chosen_path(given: Option<&Path>, name: &shm::ShmName) -> Result<PathBuf, NoJournalPath> {
    match given {
        Some(path) => std::path::absolute(path).map_err(|_| NoJournalPath::Unresolvable),
        None => default_path(name).ok_or(NoJournalPath::NoStateDir),
    }
}

/// Why no journal path could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoJournalPath {
    #[error("journal: neither XDG_STATE_HOME nor HOME is an absolute path; set one, or pass --journal PATH")]
    NoStateDir,
    #[error("journal: the path given cannot be made absolute (is the current directory gone?)")]
    Unresolvable,
}

/// The journal of store `name` under the state directory `state_home`.
pub fn path_in(state_home: &Path, name: &shm::ShmName) -> PathBuf {
    state_home
        .join("bookstore")
        .join(format!("{}.journal", name.file_name()))
}
