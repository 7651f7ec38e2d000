//! The market's append-only journal: every command that changed (or asked to change) the
//! engine, written before any reply or view update that depends on it, and replayed on start.
//!
//! The engine is deterministic, so the journal needs only the commands and the market's clock:
//! replaying them rebuilds the same shelf and the same next trade id. The file is preallocated
//! and mapped ([`shm::MappedFile`]): staging a record is a memory copy into the page cache, with
//! no system call, so a crash of the market loses nothing it staged. A batch is committed
//! (`fdatasync`ed, unless `--durability none`) before its replies become visible: a group
//! commit. The space after the records reads zero; a clean close cuts the file to its records.
//! One market at a time holds the file (`flock`).
//!
//! The journal is a chain of segment files ([`segments`]): the live one at the journal's path,
//! sealed ones beside it, deleted once snapshots ([`snapshot`]) cover them. Snapshots are
//! taken from a [`Follower`], a second copy of the store that reads the committed records.
//!
//! Architecture invariant: the journal knows commands and bytes, not slots, rings or clients'
//! processes; the market decides what to record and when to commit.

mod ahead;
mod batch;
mod fields;
mod file;
mod follower;
pub mod format;
mod open;
mod pretouch;
mod replay;
pub mod segments;
pub mod snapshot;
mod syncer;

pub use follower::{FollowError, Follower, FollowerStart};
pub use replay::replay;
use segments::ChainError;

use shm::MappedFile;
use std::path::{Path, PathBuf};

use engine::{Command, Engine, Millis, Receipts};

pub use format::{FormatError, TornTail};

/// When the journal is flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Never `fdatasync`ed: in the page cache as staged, so it survives the market's crash,
    /// not the machine's.
    None,
    /// `fdatasync`ed once per batch, before the batch's replies are visible (by the loop, or by
    /// the syncing thread while the loop applies the next batch).
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
    #[error("journal {path}: its live segment starts at command {live_first}, past the replicated stream's end ({stream_end}): the commands between, in sealed segments, were never acknowledged by the stream; nothing was changed")]
    Unreplicated {
        path: PathBuf,
        stream_end: u64,
        live_first: u64,
    },
    /// A segment of the chain is missing, damaged or out of place: refused before any change.
    #[error("{0}; nothing was changed: restore the file, or start with --fresh")]
    Chain(#[from] ChainError),
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
    /// The engine with every journaled command applied, and then a `Restart` (the previous
    /// market's clients are gone with it: their resting buys are cancelled).
    pub engine: Engine,
    /// What became of the clients' recent orders, for those that come back and ask.
    pub receipts: Receipts,
    pub capacity: u32,
    pub replayed: u64,
    /// The largest clock value in the journal; the new market's clock starts after it.
    pub last_now: Millis,
    pub torn: Option<TornTail>,
    /// Where `--fresh` moved the previous journal.
    pub set_aside: Option<PathBuf>,
    /// Resting buys of the previous market's clients, cancelled by the restart.
    pub orphaned_buys: u64,
    /// The snapshot the replay started from, if one was usable.
    pub from_snapshot: Option<SnapshotUsed>,
    /// Newer snapshots that could not be used, and why (each a warning for the user).
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// The last trades (at most [`RECENT_TRADES`]), oldest first: the snapshot's and the
    /// replay's.
    pub recent_trades: Vec<engine::Trade>,
    /// Segment files the replay read (sealed ones, then the live one).
    pub segments_read: usize,
    /// What opening repaired besides a torn tail (an interrupted roll finished or undone).
    pub notes: Vec<String>,
}

/// The snapshot a recovery started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUsed {
    /// Journal records it covers: the replay went on from the record after these.
    pub commands: u64,
    pub path: PathBuf,
}

/// Trades a recovery and a snapshot keep for the published view (at least as many as it
/// shows: the store crate checks that at compile time).
pub const RECENT_TRADES: usize = 32;

/// How to open a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    pub durability: Durability,
    pub capacity: CapacityChoice,
    pub start: Start,
    /// Seal the live segment and start the next once it holds this many bytes (checked when
    /// the market makes room ahead, so a segment may run a little past it).
    pub segment_bytes: u64,
}

/// The default [`JournalOptions::segment_bytes`]: about 470,000 commands of a steady trade;
/// a restart reads the live segment and at most the one before it.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;
/// The market's default snapshot interval, in commands: a restart replays at most this many
/// (about 35 ms of replay on the machines this was measured on; see the README's restart row).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100_000;
/// The smallest segment allowed (smaller would roll all the time).
pub const MIN_SEGMENT_BYTES: u64 = 64 << 10;

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
    /// Replay the existing journal, if any, and add nothing to it: a replicated store's
    /// journal holds exactly what its stream holds (no `Restart` of its own until it writes).
    /// Records from command `stream_end` on (where the stream ends) were never acknowledged
    /// by the stream: they are cut off first, as a torn tail is.
    Follow { stream_end: u64 },
}

/// The file is preallocated and mapped in whole steps of this size.
const MAP_STEP: u64 = 4 << 20;
/// Free space a market starts with after the records it found.
const MIN_FREE: u64 = 1 << 20;
/// The most one growth adds (below it, the mapping doubles).
const MAX_GROWTH: u64 = 1 << 30;
/// How far ahead of the records [`Journal::prepare_ahead`] makes room: twice what was written
/// since it last ran, within these bounds.
const MIN_AHEAD: u64 = 1 << 20;
const MAX_AHEAD: u64 = 64 << 20;

/// An open, locked, mapped journal positioned at the end of its records.
pub struct Journal {
    /// `None` only while dropping.
    map: Option<MappedFile>,
    path: PathBuf,
    durability: Durability,
    capacity: u32,
    /// The command number of the live segment's first record.
    first: u64,
    /// Journal-wide offsets are this plus offsets in the live segment: they only grow, across
    /// rolls, so a batch's end compares with [`durable`](Self::durable) whichever segment
    /// each is in.
    base: u64,
    segment_bytes: u64,
    /// End of the committed records in the live segment: what the journal is known to hold.
    committed: u64,
    /// End of the staged records (`>= committed`); the next record goes here.
    end: u64,
    /// Records up to `committed`, in every segment: the command number a snapshot taken now
    /// is at.
    records: u64,
    /// Where each staged, uncommitted record starts (so `unstage` knows how many it drops).
    pending: Vec<u64>,
    /// One record, encoded before it is copied into the mapping.
    scratch: Vec<u8>,
    /// The mapping could not grow for a record, or a roll failed after the new segment took
    /// the live name: what could not be done, reported by the next commit, which fails.
    failure: Option<(&'static str, std::io::Error)>,
    /// Pages up to here were faulted in writable ahead of the records by this thread
    /// (durability `none`).
    populated: u64,
    /// The live segment was just opened or rolled to: its first window of pages is still to
    /// be faulted in by this thread (the pretoucher keeps the later ones).
    first_window_due: bool,
    /// Bytes of pages this thread faulted in (the loop's stalls for pages; tests watch it).
    populated_here: u64,
    /// `end` when [`prepare_ahead`](Self::prepare_ahead) last ran: how fast records come.
    end_at_last_prepare: u64,
    /// Batches made durable (`fdatasync`) by this process, on the loop's thread (and by
    /// syncing threads of segments sealed since).
    syncs: u64,
    /// End of the records the loop's own `fdatasync`s made durable.
    synced_inline: u64,
    /// With durability `none`: the thread that faults pages in ahead of the records.
    pretoucher: Option<pretouch::Pretoucher>,
    /// With durability `batch`: the thread that syncs behind the loop (pipelined commit).
    syncer: Option<syncer::Syncer>,
    /// The thread sealing the segment the last roll set aside (see `ahead::Sealer`).
    sealer: Option<ahead::Sealer>,
    /// The test-only fault point that holds every `fdatasync` back (`syncer::test_stall`).
    stall: Option<std::time::Duration>,
    /// A roll that failed (the market goes on in the live segment; it is reported once and
    /// tried again a segment's length later).
    roll_failure: Option<std::io::Error>,
    retry_roll_at: u64,
    /// The end and the record count as opening found them, before its `Restart` record.
    opened_at: (u64, u64),
}

impl Journal {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The live segment's length in bytes up to its last committed record (the file itself
    /// is longer while open: preallocated space).
    pub fn len_bytes(&self) -> u64 {
        self.committed
    }

    /// The command number of the live segment's first record.
    pub fn live_segment_first(&self) -> u64 {
        self.first
    }

    /// How many batches this process has made durable with `fdatasync`.
    pub fn syncs(&self) -> u64 {
        self.syncs + self.syncer.as_ref().map_or(0, syncer::Syncer::syncs)
    }

    /// Offset up to which the journal's records are durable as its durability promises: the
    /// committed end with `none` (the page cache holds it), else what `fdatasync` covered. A
    /// reply may be shown once its batch's end is at most this.
    /// (Offsets are journal-wide: they only grow, across segments.)
    pub fn durable(&self) -> u64 {
        match (self.durability, &self.syncer) {
            (Durability::None, _) => self.base + self.committed,
            (_, Some(syncer)) => syncer.durable().max(self.base + self.synced_inline),
            (_, None) => self.base + self.synced_inline,
        }
    }

    /// The journal-wide end and the record count as opening found them, before the `Restart`
    /// record it may have added: where a replica that has every record found starts.
    pub fn opened_at(&self) -> (u64, u64) {
        self.opened_at
    }

    /// Records committed, in every segment: the command number of the next committed record.
    pub fn committed_records(&self) -> u64 {
        self.records
    }

    /// The committed records from journal-wide offset `from` (a batch end this journal gave)
    /// to the committed end, as the file holds them. Records before the live segment (`from`
    /// before a roll) are not included: the caller hands batches on as they are committed, and
    /// a roll needs every batch committed first.
    pub fn committed_bytes_since(&self, from: u64) -> &[u8] {
        let header = format::FILE_HEADER_LEN as u64;
        let local = from
            .saturating_sub(self.base)
            .max(header)
            .min(self.committed);
        let map = self.map.as_ref().expect("mapped until dropped");
        &map.bytes()[local as usize..self.committed as usize]
    }

    /// The command number a snapshot taken now would be at: `None` while records are staged
    /// and not committed (the engine is ahead of the committed journal).
    pub fn snapshot_point(&self) -> Option<u64> {
        (self.end == self.committed).then_some(self.records)
    }

    /// A [`Follower`] starting from `start`, which must be the store as of the committed end
    /// (see [`snapshot_point`](Self::snapshot_point)): it reads on from there in another
    /// thread. `None` while records are staged.
    pub fn follower(&self, start: FollowerStart) -> Option<Result<Follower, FollowError>> {
        let records = self.snapshot_point()?;
        Some(Follower::new(&self.path, start, records, self.committed))
    }

    /// Where the next staged record goes, journal-wide: a mark for [`unstage`](Self::unstage),
    /// and the end a reply waits for [`durable`](Self::durable) to reach (so it compares with
    /// `durable` across rolls: both are journal-wide).
    pub fn stage_mark(&self) -> u64 {
        self.base + self.end
    }

    fn map(&mut self) -> &mut MappedFile {
        self.map.as_mut().expect("mapped until dropped")
    }

    /// Adds a record to the batch: a copy into the mapped file, so a crash of the market keeps
    /// it, but the batch counts as written only once [`commit`](Self::commit) says so. If the
    /// file cannot grow to take it, the record is dropped and the next commit fails.
    pub fn stage(&mut self, now: Millis, command: &Command) {
        if self.failure.is_some() {
            return;
        }
        self.scratch.clear();
        format::encode_record(now, command, &mut self.scratch);
        let start = self.end as usize;
        self.pending.push(self.end);
        let stop = start + self.scratch.len();
        if stop > self.map().len() {
            let len = map_len_for(stop as u64 + (self.map().len() as u64).min(MAX_GROWTH));
            if let Err(error) = self.map().grow(len) {
                self.failure = Some(("preallocate more space for", error));
                return;
            }
        }
        let Self { map, scratch, .. } = self;
        map.as_mut().expect("mapped until dropped").bytes_mut()[start..stop]
            .copy_from_slice(scratch);
        self.end = stop as u64;
    }

    /// Drops records staged after `mark` (a command that turned out to change nothing): their
    /// bytes are zeroed again, so the file ends where the records do.
    pub fn unstage(&mut self, mark: u64) {
        // Marks are journal-wide; no roll comes between a mark and its unstage (a roll needs
        // nothing staged), so the mark is in the live segment.
        let local = mark.saturating_sub(self.base);
        let (from, to) = (local.max(self.committed) as usize, self.end as usize);
        if from < to {
            self.map().bytes_mut()[from..to].fill(0);
            self.end = from as u64;
            while self.pending.last().is_some_and(|&at| at >= self.end) {
                self.pending.pop();
            }
        }
    }

    /// Ends the batch: the staged records are part of the journal and, unless durability is
    /// `None`, are on stable storage when this returns (`fdatasync` of the mapped file, on this
    /// thread). On error the batch must not be acknowledged.
    pub fn commit(&mut self) -> Result<(), WriteJournalError> {
        self.seal()?;
        if self.durability != Durability::None && self.synced_inline < self.committed {
            if let Some(stall) = self.stall {
                std::thread::sleep(stall);
            }
            let file = self.map.as_ref().expect("mapped until dropped").file();
            file.sync_data()
                .map_err(|e| self.write_error("fdatasync", e))?;
            self.syncs += 1;
            self.synced_inline = self.committed;
        }
        Ok(())
    }

    /// Ends the batch without waiting for it: returns its end, which becomes durable when
    /// [`durable`](Self::durable) reaches it, after [`sync_in_background`](Self::sync_in_background)
    /// or [`commit`](Self::commit). With `none` it is durable at once; `always` syncs here, as
    /// `commit` does.
    pub fn commit_in_background(&mut self) -> Result<u64, WriteJournalError> {
        if self.syncer.is_none() {
            self.commit()?;
        } else {
            self.seal()?;
        }
        Ok(self.base + self.committed)
    }

    /// Whether the syncing thread is making an ended batch durable (`batch` durability):
    /// [`durable`](Self::durable) will move without the caller doing anything.
    pub fn is_syncing(&self) -> bool {
        self.syncer.as_ref().is_some_and(syncer::Syncer::is_busy)
    }

    /// Asks the syncing thread (durability `batch`) to make every ended batch durable while
    /// the caller goes on with the next one (pipelined group commit), or spins waiting for
    /// [`durable`](Self::durable) to move. Cheap to call on every pass: a request for no more
    /// than was asked returns at once. A caller that would rather sleep until the disk is done
    /// calls [`commit`](Self::commit), which needs no thread to be scheduled.
    pub fn sync_in_background(&mut self) {
        let durable = self.durable();
        let committed = self.base + self.committed;
        if let Some(syncer) = &mut self.syncer {
            if durable < committed {
                syncer.request(committed);
            }
        }
    }

    /// The staged records become committed; reports a failure to grow or to sync.
    fn seal(&mut self) -> Result<(), WriteJournalError> {
        if let Some((action, error)) = self.failure.take() {
            return Err(self.write_error(action, error));
        }
        if let Some(error) = self.syncer.as_ref().and_then(syncer::Syncer::take_failure) {
            return Err(self.write_error("fdatasync", error));
        }
        self.committed = self.end;
        self.records += self.pending.len() as u64;
        self.pending.clear();
        if let Some(pretoucher) = &mut self.pretoucher {
            pretoucher.note_end(self.end);
        }
        Ok(())
    }

    fn write_error(&self, action: &'static str, source: std::io::Error) -> WriteJournalError {
        WriteJournalError {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

impl Drop for Journal {
    /// Unmaps the file and cuts the preallocated space after the committed records, so a
    /// closed journal is exactly its records. Best effort: a journal left long (a crash, or a
    /// failure here) reads the same, as zeros after the records are free space.
    fn drop(&mut self) {
        // The syncing thread first: it finishes what it was asked, on the file still mapped.
        drop(self.syncer.take());
        drop(self.pretoucher.take());
        // A clean close leaves the last sealed segment under its sealed name.
        if let Some(sealer) = self.sealer.take() {
            let _ = sealer.finish();
        }
        if let Some(map) = self.map.take() {
            let _ = map.unmap_and_truncate(self.committed);
        }
    }
}

/// The mapped length for at least `bytes`: a whole number of steps.
fn map_len_for(bytes: u64) -> usize {
    (bytes.div_ceil(MAP_STEP) * MAP_STEP) as usize
}

/// Maps an I/O error of `action` on the journal at `path`.
pub(crate) fn io_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> OpenJournalError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ClientId, Price, Qty, RequestId, Title};

    fn options(start: Start) -> JournalOptions {
        JournalOptions {
            durability: Durability::None,
            capacity: CapacityChoice::Exactly(engine::MAX_CAPACITY),
            start,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }

    fn list(i: u64) -> Command {
        Command::List {
            client: ClientId(1),
            request: RequestId(i),
            title: Title::new("A title long enough to fill the map sooner").unwrap(),
            price: Price::from_cents(100).unwrap(),
            qty: Qty::new(1).unwrap(),
        }
    }

    /// Closes the journal as a killed market would: unmapped and unlocked, never truncated.
    fn crash(mut journal: Journal) {
        drop(journal.map.take());
    }

    fn scratch_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("journal-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_past_the_first_mapping_survive_a_crash_and_a_clean_close_cuts_the_zeros() {
        let dir = scratch_dir("grow");
        let path = dir.join("j");
        let (mut journal, _) = Journal::open(&path, &options(Start::Continue)).unwrap();
        // Enough records to grow the mapping past its first step, in batches.
        let n = 2 * MAP_STEP / 80;
        for i in 0..n {
            journal.stage(i, &list(i));
            if i % 100 == 99 {
                journal.commit().unwrap();
            }
        }
        journal.commit().unwrap();
        let records = journal.len_bytes();
        assert!(records > MAP_STEP, "{records} bytes grew the map");
        // A crash: the mapping is gone without the clean close; the file keeps its zeros.
        crash(journal);
        assert!(std::fs::metadata(&path).unwrap().len() > records);
        let (journal, recovery) = Journal::open(&path, &options(Start::Continue)).unwrap();
        assert_eq!(recovery.replayed, n);
        assert_eq!(recovery.torn, None);
        // The open journals one `Restart` after them (client 1 has receipts to keep).
        let restart = (format::RECORD_HEADER_LEN + 9) as u64;
        assert_eq!(journal.len_bytes(), records + restart);
        drop(journal);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), records + restart);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn with_a_pretoucher_the_loop_faults_in_only_the_first_window_of_a_segment() {
        let dir = scratch_dir("first-window");
        let path = dir.join("j");
        let (mut journal, _) = Journal::open(&path, &options(Start::Continue)).unwrap();
        assert!(
            journal.pretoucher.is_some(),
            "the pretoucher started at open"
        );
        let first_window = journal.populated_here;
        assert!(first_window >= MIN_AHEAD, "{first_window} bytes at open");
        // Records well past the first window, with housekeeping's prepare between batches.
        let mut i = 0;
        while journal.len_bytes() < 4 * MIN_AHEAD {
            journal.stage(i, &list(i));
            i += 1;
            if i % 100 == 0 {
                journal.commit().unwrap();
                journal.prepare_ahead();
            }
        }
        assert_eq!(
            journal.populated_here, first_window,
            "the pretoucher keeps the window; the loop faulted nothing more in"
        );
        drop(journal);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unstaged_record_leaves_no_trace_in_the_file() {
        let dir = scratch_dir("unstage");
        let path = dir.join("j");
        let (mut journal, _) = Journal::open(&path, &options(Start::Continue)).unwrap();
        journal.stage(1, &list(1));
        let mark = journal.stage_mark();
        journal.stage(2, &list(2));
        journal.unstage(mark);
        journal.commit().unwrap();
        let end = journal.len_bytes() as usize;
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "zeros after the records"
        );
        crash(journal);
        let (_, recovery) = Journal::open(&path, &options(Start::Continue)).unwrap();
        assert_eq!(recovery.replayed, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn following_a_stream_cuts_what_it_never_acknowledged_and_adds_nothing() {
        let dir = scratch_dir("follow");
        let path = dir.join("j");
        let (mut journal, _) = Journal::open(&path, &options(Start::Continue)).unwrap();
        for i in 0..10 {
            journal.stage(i, &list(i));
        }
        journal.commit().unwrap();
        let bytes_of_seven = {
            let all = std::fs::read(&path).unwrap();
            let records = format::split_records(&all[format::FILE_HEADER_LEN..]);
            records[..7].iter().map(|r| r.len()).sum::<usize>() as u64
        };
        crash(journal);
        // The stream holds 7 of the 10: the last 3 are cut, and no `Restart` is added.
        let (journal, recovery) =
            Journal::open(&path, &options(Start::Follow { stream_end: 7 })).unwrap();
        assert_eq!((recovery.replayed, journal.committed_records()), (7, 7));
        let torn = recovery.torn.expect("the cut is reported");
        assert!(
            torn.why.contains("commands 7 to 9 were never acknowledged"),
            "{}",
            torn.why
        );
        assert_eq!(
            journal.len_bytes(),
            format::FILE_HEADER_LEN as u64 + bytes_of_seven
        );
        crash(journal);
        // A stream that ends past the journal cuts nothing.
        let (journal, recovery) =
            Journal::open(&path, &options(Start::Follow { stream_end: 100 })).unwrap();
        assert_eq!((recovery.replayed, recovery.torn), (7, None));
        drop(journal);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
