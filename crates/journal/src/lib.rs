//! The market's append-only journal: every command that changed (or asked to change) the
//! engine, written before any reply or view update that depends on it, and replayed on start.
//!
//! The engine is deterministic, so the journal needs only the commands and the market's clock:
//! replaying them rebuilds the same shelf and the same next trade id. Records are staged in
//! memory while the loop applies a batch and written (and `fdatasync`ed, unless
//! `--durability none`) once per batch: a group commit, before the batch's replies become
//! visible. One market at a time holds the file (`flock`).
//!
//! Architecture invariant: the journal knows commands and bytes, not slots, rings or clients'
//! processes; the market decides what to record and when to commit.

pub mod format;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use engine::{Command, Engine, Millis};

pub use format::{FormatError, TornTail};

/// When the journal is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written once per batch, never `fdatasync`ed: survives the market's crash, not the machine's.
    None,
    /// Written and `fdatasync`ed once per batch, before the batch's replies are visible.
    Batch,
    /// Written and `fdatasync`ed after every command: slowest, for comparison.
    Always,
}

/// Why the journal could not be opened and replayed. Nothing on disk was changed unless said.
#[derive(Debug, thiserror::Error)]
pub enum OpenJournalError {
    #[error("journal {path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("journal {path} is in use by another market")]
    Locked { path: PathBuf },
    #[error("journal {path} belongs to uid {owner}, not to you; refusing to replay it")]
    WrongOwner { path: PathBuf, owner: u32 },
    #[error("journal {path} is not a regular file (a symlink, FIFO, device or directory); give the path of a regular file, or a new one")]
    NotAFile { path: PathBuf },
    #[error(
        "journal {path}: {error}; nothing was changed: move the file aside or start with --fresh"
    )]
    Corrupt { path: PathBuf, error: FormatError },
    #[error("capacity: the journal {path} holds a store of capacity {journal}, not {asked}; start with --capacity {journal}, or --fresh")]
    CapacityMismatch {
        path: PathBuf,
        journal: u32,
        asked: u32,
    },
    #[error("journal {path}: replaying it breaks the store's invariants ({problem}); please report this")]
    Inconsistent {
        path: PathBuf,
        problem: engine::InvariantViolation,
    },
}

/// A failed write or flush: the market stops without acknowledging the batch.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: cannot {action}: {source}")]
pub struct WriteJournalError {
    pub path: PathBuf,
    pub action: &'static str,
    pub source: std::io::Error,
}

/// What opening the journal found and did.
#[derive(Debug)]
pub struct Recovery {
    /// The engine with every journaled command applied, and the clients of the previous
    /// market's resting buys cancelled (they cannot be attached any more).
    pub engine: Engine,
    pub capacity: u32,
    pub replayed: u64,
    /// The largest clock value in the journal; the new market's clock starts after it.
    pub last_now: Millis,
    /// The first client id not used in the journal.
    pub next_client: u64,
    pub torn: Option<TornTail>,
    /// Where `--fresh` moved the previous journal.
    pub set_aside: Option<PathBuf>,
    /// Resting buys of the previous market's clients, cancelled after replay.
    pub orphaned_buys: u64,
}

/// How to open a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    pub durability: Durability,
    pub capacity: CapacityChoice,
    pub start: Start,
}

/// The store's capacity, as the opener asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityChoice {
    /// This capacity; an existing journal of another capacity is refused.
    Exactly(u32),
    /// An existing journal's capacity, or this one for a new journal.
    JournalsOr(u32),
}

/// Whether to carry on from an existing journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Replay the existing journal, if any.
    Continue,
    /// Rename an existing journal aside (`PATH.UNIXTIME.old`) and start empty.
    Fresh,
}

/// An open, locked journal positioned at its end.
pub struct Journal {
    file: File,
    path: PathBuf,
    durability: Durability,
    staged: Vec<u8>,
    /// The file's length: what was there at open plus every committed batch.
    bytes: u64,
    /// Batches made durable (`fdatasync`) by this process.
    syncs: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, cuts a torn tail, and replays it: lock →
    /// read and scan → reconcile the capacity → repair the file → recover the engine. Every
    /// refusal comes before the first change to the file.
    pub fn open(
        path: &Path,
        options: &JournalOptions,
    ) -> Result<(Journal, Recovery), OpenJournalError> {
        let io = |action| io_error(path, action);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create its directory"))?;
        }
        let mut file = open_locked(path)?;
        let mut set_aside = None;
        if options.start == Start::Fresh && file.metadata().map_err(io("stat"))?.len() > 0 {
            // Renamed while we hold its lock: no other market is using it.
            set_aside = Some(move_aside(path).map_err(io("move the old journal aside"))?);
            file = open_locked(path)?;
        }
        let scan = read_and_scan(&mut file, path)?;
        let capacity = reconcile_capacity(path, scan.header, options.capacity)?;
        repair(&mut file, path, &scan, capacity)?;
        let mut journal = Journal {
            file,
            path: path.into(),
            durability: options.durability,
            staged: Vec::new(),
            bytes: 0,
            syncs: 0,
        };
        let recovery = journal.recover(&scan, capacity, set_aside)?;
        journal.bytes = journal.file.metadata().map_err(io("stat"))?.len();
        Ok((journal, recovery))
    }

    /// Replays the scanned entries, cancels the previous market's clients' resting buys, and
    /// checks the result.
    fn recover(
        &mut self,
        scan: &format::Scan,
        capacity: u32,
        set_aside: Option<PathBuf>,
    ) -> Result<Recovery, OpenJournalError> {
        let mut engine = replay(capacity, &scan.entries);
        let last_now = scan.entries.iter().map(|e| e.now).max().unwrap_or(0);
        let last_client = scan
            .entries
            .iter()
            .filter_map(|e| e.command.client())
            .map(|c| c.0)
            .max()
            .unwrap_or(0);
        let orphaned_buys = self.cancel_orphaned_buys(&mut engine, last_now)?;
        engine
            .check_invariants()
            .map_err(|problem| OpenJournalError::Inconsistent {
                path: self.path.clone(),
                problem,
            })?;
        Ok(Recovery {
            engine,
            capacity,
            replayed: scan.entries.len() as u64,
            last_now,
            next_client: last_client + 1,
            torn: scan.torn.clone(),
            set_aside,
            orphaned_buys,
        })
    }

    /// Cancels the resting buys of the previous market's clients (they are gone with it) and
    /// journals that, so the next replay does not revive them either. Returns how many.
    fn cancel_orphaned_buys(
        &mut self,
        engine: &mut Engine,
        now: Millis,
    ) -> Result<u64, WriteJournalError> {
        let mut events = Vec::new();
        for client in engine.clients_with_resting_buys() {
            let command = Command::ClientGone { client };
            self.stage(now, &command);
            engine.apply(now, command, &mut events);
        }
        self.commit()?;
        Ok(events.len() as u64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The journal file's length in bytes, committed batches included.
    pub fn len_bytes(&self) -> u64 {
        self.bytes
    }

    /// How many batches this process has made durable with `fdatasync`.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Bytes staged and not yet written: a mark for [`unstage`](Self::unstage).
    pub fn staged_len(&self) -> usize {
        self.staged.len()
    }

    /// Adds a record to the batch. Nothing reaches the file before [`commit`](Self::commit).
    pub fn stage(&mut self, now: Millis, command: &Command) {
        format::encode_record(now, command, &mut self.staged);
    }

    /// Drops records staged after `mark` (a command that turned out to change nothing).
    pub fn unstage(&mut self, mark: usize) {
        self.staged.truncate(mark);
    }

    /// Writes the staged records and, unless durability is `None`, waits for them to reach
    /// stable storage. On error the batch must not be acknowledged.
    pub fn commit(&mut self) -> Result<(), WriteJournalError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let err = |action: &'static str, source| WriteJournalError {
            path: self.path.clone(),
            action,
            source,
        };
        self.file
            .write_all(&self.staged)
            .map_err(|e| err("append", e))?;
        self.bytes += self.staged.len() as u64;
        self.staged.clear();
        if self.durability != Durability::None {
            self.file.sync_data().map_err(|e| err("fdatasync", e))?;
            self.syncs += 1;
        }
        Ok(())
    }
}

/// Opens (creating if need be) the journal file, checks it is ours, and takes its lock.
fn open_locked(path: &Path) -> Result<File, OpenJournalError> {
    let io = |action| io_error(path, action);
    // Refused before anything is read or written: a symlink (a dangling one would be created,
    // one to another file written into), or anything but a regular file of ours.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() || !meta.is_file() {
            return Err(OpenJournalError::NotAFile { path: path.into() });
        }
        if meta.uid() != shm::effective_uid() {
            return Err(OpenJournalError::WrongOwner {
                path: path.into(),
                owner: meta.uid(),
            });
        }
    }
    let file = shm::file::open_private(path, shm::file::IfMissing::Create)
        .map_err(io("open"))?
        .expect("created if missing");
    match shm::file::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(OpenJournalError::Locked { path: path.into() }),
        Err(e) => Err(io("lock")(e)),
    }
}

/// Reads the whole file and scans it into entries (a torn tail reported, not yet cut).
fn read_and_scan(file: &mut File, path: &Path) -> Result<format::Scan, OpenJournalError> {
    let io = |action| io_error(path, action);
    let meta = file.metadata().map_err(io("stat"))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io("read"))?;
    format::scan(&bytes).map_err(|error| OpenJournalError::Corrupt {
        path: path.into(),
        error,
    })
}

/// The store's capacity: the journal's if it has a header (and then `asked` must match),
/// else what was asked for.
fn reconcile_capacity(
    path: &Path,
    header: Option<format::FileHeader>,
    asked: CapacityChoice,
) -> Result<u32, OpenJournalError> {
    match (header, asked) {
        (Some(h), CapacityChoice::Exactly(asked)) if h.capacity != asked => {
            Err(OpenJournalError::CapacityMismatch {
                path: path.into(),
                journal: h.capacity,
                asked,
            })
        }
        (Some(h), _) => Ok(h.capacity),
        (None, CapacityChoice::Exactly(asked) | CapacityChoice::JournalsOr(asked)) => Ok(asked),
    }
}

/// Cuts a torn tail, writes the header of a new journal, and makes both durable (the file
/// and, for a new file, its directory entry).
fn repair(
    file: &mut File,
    path: &Path,
    scan: &format::Scan,
    capacity: u32,
) -> Result<(), OpenJournalError> {
    let io = |action| io_error(path, action);
    if scan.torn.is_some() {
        file.set_len(scan.valid_len)
            .map_err(io("cut off the torn tail"))?;
    }
    if scan.header.is_none() {
        file.write_all(&format::FileHeader { capacity }.encode())
            .map_err(io("write the header"))?;
    }
    if scan.header.is_none() || scan.torn.is_some() {
        file.sync_all().map_err(io("sync"))?;
        if let Some(dir) = path.parent() {
            // The new file's directory entry must be durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync its directory"))?;
        }
    }
    Ok(())
}

/// Maps an I/O error of `action` on the journal at `path`.
fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> OpenJournalError {
    let path = path.to_path_buf();
    move |source| OpenJournalError::Io {
        path,
        action,
        source,
    }
}

impl From<WriteJournalError> for OpenJournalError {
    fn from(e: WriteJournalError) -> Self {
        OpenJournalError::Io {
            path: e.path,
            action: e.action,
            source: e.source,
        }
    }
}

/// The engine that `entries` build, from an empty store of `capacity` books: the replay that
/// the market, `bookstore journal`, the fuzz target and the chaos test all rely on.
pub fn replay(capacity: u32, entries: &[format::Entry]) -> Engine {
    let mut engine = Engine::new(capacity);
    let mut events = Vec::new();
    for entry in entries {
        engine.apply(entry.now, entry.command.clone(), &mut events);
        events.clear();
    }
    engine
}

/// Renames `path` to `path.UNIXTIME.old` (or `.UNIXTIME.N.old` if that exists) and returns it.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut n = 0;
    loop {
        let suffix = if n == 0 {
            format!("{secs}.old")
        } else {
            format!("{secs}.{n}.old")
        };
        let mut aside = path.as_os_str().to_owned();
        aside.push(".");
        aside.push(suffix);
        let aside = PathBuf::from(aside);
        if !aside.exists() {
            std::fs::rename(path, &aside)?;
            return Ok(aside);
        }
        n += 1;
    }
}
