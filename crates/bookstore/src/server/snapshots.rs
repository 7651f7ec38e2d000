//! When the market takes snapshots, and the thread that writes them.
//!
//! A snapshot is taken between passes, when every staged record is committed (so its state is
//! exactly the journal's first N records): the loop copies the engine's state out (its whole
//! pause: see the README for what it costs), and a thread encodes it, writes the file
//! crash-safe and prunes all but the newest two. One write at a time: a snapshot that comes
//! due while the last is still being written waits for the next pass.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::journal::snapshot::{self, Snapshot};

/// Snapshots kept: the newest, and the one a damaged newest falls back to.
const KEEP: usize = 2;

pub(super) struct Snapshots {
    journal: PathBuf,
    /// Take one when this many records were committed since the last (0: only on a clean stop).
    every: u64,
    /// The command number of the last snapshot taken (or started from).
    last_at: u64,
    writer: Option<JoinHandle<std::io::Result<PathBuf>>>,
}

impl Snapshots {
    pub(super) fn new(journal: &Path, every: u64, last_at: u64) -> Self {
        Self {
            journal: journal.to_owned(),
            every,
            last_at,
            writer: None,
        }
    }

    /// Whether a snapshot at command `records` is due (and the last one's writer is done).
    pub(super) fn due(&mut self, records: u64) -> bool {
        if self.every == 0 || records < self.last_at + self.every {
            return false;
        }
        if self.writer.as_ref().is_some_and(|w| !w.is_finished()) {
            return false;
        }
        self.reap();
        true
    }

    /// Encodes and writes `snapshot` on a thread of its own.
    pub(super) fn write_in_background(&mut self, snapshot: Snapshot) {
        let journal = self.journal.clone();
        self.last_at = snapshot.commands;
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || write_and_prune(&journal, &snapshot));
        match spawned {
            Ok(writer) => self.writer = Some(writer),
            Err(error) => tracing::warn!(%error, "cannot start the snapshot thread; no snapshot"),
        }
    }

    /// Writes `snapshot` and waits for it (a clean stop); a failure is reported, not fatal:
    /// the journal still holds everything.
    pub(super) fn write_now(&mut self, snapshot: &Snapshot) -> Option<PathBuf> {
        self.reap();
        self.last_at = snapshot.commands;
        match write_and_prune(&self.journal, snapshot) {
            Ok(path) => Some(path),
            Err(error) => {
                tracing::warn!(%error, "cannot write the snapshot; the next start replays the journal");
                None
            }
        }
    }

    /// Waits for the last background write and reports how it went.
    fn reap(&mut self) {
        if let Some(writer) = self.writer.take() {
            match writer.join() {
                Ok(Ok(path)) => tracing::debug!(path = %path.display(), "snapshot written"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot write a snapshot"),
                Err(_) => tracing::warn!("the snapshot thread panicked"),
            }
        }
    }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        self.reap();
    }
}

fn write_and_prune(journal: &Path, snapshot: &Snapshot) -> std::io::Result<PathBuf> {
    let path = snapshot::write(journal, snapshot.commands, &snapshot::encode(snapshot))?;
    snapshot::prune(journal, KEEP)?;
    Ok(path)
}
