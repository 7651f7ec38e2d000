//! Opening a journal: lock it, read its live segment, settle what a crash left, choose a
//! snapshot, read the segments after it and replay them into the store the market starts
//! with. Every refusal comes before the first change to the files.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use engine::{Command, Engine, Millis, Receipts};
use shm::MappedFile;

use crate::file::{move_aside, open_locked, read_and_check, reconcile_capacity, repair};
use crate::replay::Replica;
use crate::segments::{self, ChainError, SegmentScan};
use crate::{
    format, io_error, map_len_for, snapshot, syncer, Durability, Journal, JournalOptions,
    OpenJournalError, Recovery, Start, WriteJournalError, MIN_FREE, MIN_SEGMENT_BYTES,
};

impl Journal {
    /// Opens (or creates) the journal at `path`, cuts a torn tail, and replays it: lock →
    /// read and scan the live segment → reconcile the capacity → repair the file → choose a
    /// snapshot → read the segments after it → recover the engine. Every refusal comes before
    /// the first change to the files.
    pub fn open(
        path: &Path,
        options: &JournalOptions,
    ) -> Result<(Journal, Recovery), OpenJournalError> {
        Self::open_with(path, options, None::<fn(u32)>, &mut None)
    }

    /// [`open`](Self::open), running `beside` on a thread of its own while the journal is
    /// replayed, given the store's capacity (known by then). The replay keeps one CPU busy for
    /// most of a restart's time (~40 ms at the default snapshot interval); a market creates its
    /// shared object beside it (~10 ms: the object's pages reserved and the store laid out)
    /// instead of after it.
    ///
    /// What `beside` returned comes back whether the open succeeded or not (`None` if it
    /// failed before the replay, so `beside` never ran): a caller that made something there
    /// undoes it when the journal cannot be opened.
    pub fn open_beside<T: Send>(
        path: &Path,
        options: &JournalOptions,
        beside: impl FnOnce(u32) -> T + Send,
    ) -> (Result<(Journal, Recovery), OpenJournalError>, Option<T>) {
        let mut made = None;
        let opened = Self::open_with(path, options, Some(beside), &mut made);
        (opened, made)
    }

    /// [`open`](Self::open), with `beside` (if any) run during the replay and its result put
    /// in `made`.
    fn open_with<T: Send>(
        path: &Path,
        options: &JournalOptions,
        beside: Option<impl FnOnce(u32) -> T + Send>,
        made: &mut Option<T>,
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
        if options.start == Start::Fresh {
            // Renamed while we hold its lock: no other market is using it. Its sealed
            // segments and snapshots go aside with it: they describe its store.
            if file.metadata().map_err(io("stat"))?.len() > 0 {
                set_aside = Some(move_aside(path).map_err(io("move the old journal aside"))?);
                file = open_locked(path)?;
            }
            let sealed = segments::list_sealed(path).map_err(io("list the segments of"))?;
            let snapshots = snapshot::list(path).map_err(io("list the snapshots of"))?;
            for (_, old) in sealed.iter().chain(&snapshots) {
                move_aside(old).map_err(io("move an old segment or snapshot aside"))?;
            }
            let next = segments::next_path(path);
            if next.exists() {
                move_aside(&next).map_err(io("move an old segment aside"))?;
            }
        }
        // The live segment is read and checked on a thread of its own while this one loads
        // the newest snapshot (the two halves of a restart's time that do not depend on each
        // other: see `Preloaded`).
        let (checked, preloaded) = std::thread::scope(|scope| {
            let reading = scope.spawn(|| read_and_check(&mut file, path));
            let preloaded = Preloaded::load(path, options);
            let checked = reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (checked, preloaded)
        });
        let (bytes, mut scan) = checked?;
        if let Start::Follow { stream_end } = options.start {
            cut_unreplicated(path, &bytes, &mut scan, stream_end)?;
        }
        let mut notes = Vec::new();
        notes.extend(
            segments::settle_leftover_next(path, scan.header)
                .map_err(io("settle an interrupted roll of"))?,
        );
        if scan.header.is_none() {
            if let Some((first, sealed)) = segments::list_sealed(path)
                .map_err(io("list the segments of"))?
                .pop()
            {
                return Err(ChainError::Broken {
                    path: path.into(),
                    problem: format!(
                        "the live segment is empty, but sealed segments exist (the newest, {}, starts at command {first}): the records after them are lost",
                        sealed.display()
                    ),
                }
                .into());
            }
        }
        let capacity = reconcile_capacity(path, scan.header, options.capacity)?;
        repair(&mut file, path, &scan, capacity)?;
        let header = scan
            .header
            .unwrap_or_else(|| format::FileHeader::new(capacity, 0));
        let records_end = scan.valid_len.max(header.len as u64);
        let map = MappedFile::new(file, map_len_for(records_end + MIN_FREE))
            .map_err(io("preallocate and map"))?;
        let mut journal = Journal {
            map: Some(map),
            path: path.into(),
            durability: options.durability,
            capacity,
            first: header.first,
            base: 0,
            segment_bytes: options.segment_bytes.max(MIN_SEGMENT_BYTES),
            committed: records_end,
            end: records_end,
            records: header.first + scan.records(),
            pending: Vec::new(),
            scratch: Vec::with_capacity(format::RECORD_HEADER_LEN + format::MAX_PAYLOAD),
            failure: None,
            populated: records_end,
            first_window_due: true,
            populated_here: 0,
            pretoucher: None,
            sealer: None,
            end_at_last_prepare: records_end,
            syncs: 0,
            synced_inline: records_end,
            syncer: None,
            stall: syncer::test_stall(),
            roll_failure: None,
            retry_roll_at: 0,
            opened_at: (records_end, header.first + scan.records()),
        };
        let live = SegmentScan {
            path: path.into(),
            first: header.first,
            size: records_end,
            scan,
            bytes,
            live: true,
        };
        let start = options.start;
        let recovered = match beside {
            None => journal.recover(live, capacity, set_aside, start, preloaded),
            Some(beside) => std::thread::scope(|scope| {
                let thread = scope.spawn(move || beside(capacity));
                let recovered = journal.recover(live, capacity, set_aside, start, preloaded);
                *made = Some(
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
                recovered
            }),
        };
        let mut recovery = recovered?;
        recovery.notes.extend(notes);
        journal.prepare_ahead();
        journal.start_syncer()?;
        Ok((journal, recovery))
    }

    /// With durability `batch`, starts the thread that syncs the live segment behind the loop.
    pub(crate) fn start_syncer(&mut self) -> Result<(), WriteJournalError> {
        if self.durability == Durability::Batch {
            let file = self.map().file().try_clone();
            let file = file.map_err(|e| self.write_error("duplicate", e))?;
            let syncer = syncer::Syncer::start(file, self.base + self.committed, self.stall);
            let syncer = syncer.map_err(|e| self.write_error("start the syncing thread for", e))?;
            self.syncer = Some(syncer);
        }
        Ok(())
    }

    /// Chooses the snapshot to start from, reads the segments after it, replays them,
    /// cancels the previous market's clients' resting buys, and checks the result. Every
    /// segment was checked when read; records are decoded as they are applied, from the
    /// snapshot's command on. (A payload refused then comes after a torn tail was cut: the one
    /// change that may precede a refusal, and one any open would make.)
    fn recover(
        &mut self,
        live: SegmentScan,
        capacity: u32,
        set_aside: Option<PathBuf>,
        start: Start,
        preloaded: Option<Preloaded>,
    ) -> Result<Recovery, OpenJournalError> {
        let io = |action| io_error(&self.path, action);
        let sealed = segments::list_sealed(&self.path).map_err(io("list the segments of"))?;
        let earliest = sealed.first().map_or(live.first, |s| s.0);
        let available = earliest..=live.end();
        let (base, skipped_snapshots) = match start {
            Start::Fresh => (None, Vec::new()),
            Start::Continue | Start::Follow { .. } => match preloaded {
                Some(preloaded) if preloaded.fits(capacity, &available) => {
                    (preloaded.base, preloaded.skipped)
                }
                // None loaded (no header to read the capacity from), or one chosen without
                // knowing where the records end, and wrongly: choose now, knowing.
                _ => {
                    let mut skipped = Vec::new();
                    let base =
                        snapshot::newest_usable(&self.path, capacity, available, &mut skipped);
                    (base, skipped)
                }
            },
        };
        // Where the replay starts: the snapshot's store, or an empty one.
        let mut replica = match base {
            Some((snapshot, engine, receipts, path)) => {
                Replica::from_snapshot(snapshot, engine, receipts, path)
            }
            None => Replica::empty(capacity),
        };
        let from = replica.from.as_ref().map_or(0, |s| s.commands);
        let torn = live.scan.torn.clone();
        let no_snapshot = replica.from.is_none();
        let chain = segments::read_chain(&self.path, live, from, false).map_err(|e| match e {
            ChainError::Missing {
                path,
                from: gap,
                to,
                ..
            } if no_snapshot => ChainError::Missing {
                path,
                from: gap,
                to,
                why: ", and no usable snapshot covers them",
            },
            other => other,
        })?;
        let mut replayed = 0;
        for segment in &chain {
            let skip = from.saturating_sub(segment.first);
            for entry in format::records(&segment.bytes, &segment.scan, skip) {
                let entry = entry.map_err(|error| OpenJournalError::Corrupt {
                    path: segment.path.clone(),
                    error,
                })?;
                replica.apply(&entry);
                replayed += 1;
            }
        }
        let segments_read = chain.len();
        drop(chain);
        let Replica {
            mut engine,
            mut receipts,
            recent_trades,
            last_now,
            from: from_snapshot,
            ..
        } = replica;
        let orphaned_buys = match start {
            Start::Follow { .. } => 0,
            Start::Continue | Start::Fresh => self.restart(&mut engine, &mut receipts, last_now)?,
        };
        engine
            .check_invariants()
            .map_err(|problem| OpenJournalError::Inconsistent {
                path: self.path.clone(),
                problem,
            })?;
        Ok(Recovery {
            engine,
            capacity,
            replayed,
            from_snapshot,
            skipped_snapshots,
            recent_trades: recent_trades.into(),
            receipts,
            last_now,
            torn,
            set_aside,
            orphaned_buys,
            segments_read,
            notes: Vec::new(),
        })
    }

    /// Journals and applies a `Restart`: the previous market's clients are gone with it, so
    /// their resting buys are cancelled (the next replay does not revive them either), and
    /// their receipts wait one restart for them to come back and ask. Left out when it would
    /// change nothing (no buy rests, no receipt is kept). Returns how many buys were cancelled.
    fn restart(
        &mut self,
        engine: &mut Engine,
        receipts: &mut Receipts,
        now: Millis,
    ) -> Result<u64, WriteJournalError> {
        if engine.stats().resting_buys == 0 && receipts.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::new();
        let command = Command::Restart;
        self.stage(now, &command);
        let intent = Receipts::intent(&command);
        engine.apply(now, &command, &mut events);
        receipts.record(intent, &events);
        self.commit()?;
        Ok(events.len() as u64)
    }
}

/// The newest usable snapshot, chosen while the live segment is still being read: with the
/// capacity its header names (read on its own first), and without knowing where its records
/// end, so any command number is taken as available. [`recover`](Journal::recover) keeps the
/// choice if it fits what the read found (the same capacity, a command number within the
/// segments), else chooses again; the choice is the same as choosing after the read whenever
/// the newest snapshot that decodes is within the segments, which is every restart but one
/// whose journal lost records a snapshot had (a machine crash under `--durability none`).
/// On this machine's restart row the two take ~30 ms (the snapshot) and ~14 ms (the segment)
/// on their own.
struct Preloaded {
    base: Option<(snapshot::Snapshot, Engine, Receipts, PathBuf)>,
    capacity: u32,
    skipped: Vec<(PathBuf, String)>,
}

impl Preloaded {
    /// `None` if nothing is to be chosen (a fresh start) or the capacity is not known yet
    /// (no header, or one that disagrees with the options: the open reports that itself).
    fn load(journal: &Path, options: &JournalOptions) -> Option<Self> {
        if options.start == Start::Fresh {
            return None;
        }
        let mut head = [0u8; format::FILE_HEADER_LEN];
        let file = shm::file::open_regular_for_reading(journal).ok()?;
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).ok()?;
        let header = format::decode_file_header(&head[..n]).ok()?;
        let capacity = reconcile_capacity(journal, Some(header), options.capacity).ok()?;
        let mut skipped = Vec::new();
        let base = snapshot::newest_usable(journal, capacity, 0..=u64::MAX, &mut skipped);
        Some(Self {
            base,
            capacity,
            skipped,
        })
    }

    /// Whether the choice stands once the live segment is read: the same capacity, and the
    /// chosen snapshot (or, with none, every one skipped for a reason of its own) within the
    /// commands the segments hold.
    fn fits(&self, capacity: u32, available: &std::ops::RangeInclusive<u64>) -> bool {
        self.capacity == capacity
            && self
                .base
                .as_ref()
                .is_none_or(|(snapshot, ..)| available.contains(&snapshot.commands))
    }
}

/// Marks the live segment's records from command `stream_end` on as a tail to cut (as a torn
/// one is: `repair` cuts it and says so), when a replicated stream ends there: they were never
/// acknowledged. Refused, changing nothing, if the stream ends before the live segment starts.
fn cut_unreplicated(
    path: &Path,
    bytes: &[u8],
    scan: &mut format::Scan,
    stream_end: u64,
) -> Result<(), OpenJournalError> {
    let Some(header) = scan.header else {
        return Ok(());
    };
    let records = header.first + scan.records();
    if records <= stream_end {
        return Ok(());
    }
    if stream_end < header.first {
        return Err(OpenJournalError::Unreplicated {
            path: path.into(),
            stream_end,
            live_first: header.first,
        });
    }
    let kept = (stream_end - header.first) as usize;
    let spans = format::split_records(&bytes[header.len..scan.valid_len as usize]);
    let offset = header.len as u64 + spans[..kept].iter().map(|r| r.len() as u64).sum::<u64>();
    scan.torn = Some(format::TornTail {
        offset,
        bytes: scan.valid_len - offset,
        why: format!(
            "commands {stream_end} to {} were never acknowledged by the replicated stream",
            records - 1
        ),
    });
    scan.valid_len = offset;
    scan.skipped = stream_end - header.first;
    Ok(())
}
