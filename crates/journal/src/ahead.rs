//! Room ahead of the records, made off the hot path: the next segment when the live one is
//! full, more preallocated file when its free space is short, and pages faulted in before the
//! loop writes them.

use shm::MappedFile;

use crate::{
    format, map_len_for, pretouch, segments, Durability, Journal, MAX_AHEAD, MIN_AHEAD, MIN_FREE,
};

/// The least window faulted in ahead of the records with durability `none`: 16 MiB, 80 ms of
/// the fastest writing measured (about 200 MB/s of records).
const PRETOUCHED_AHEAD: u64 = 16 << 20;

impl Journal {
    /// Makes room ahead of the records, off the hot path (the market calls it when it idles
    /// and at housekeeping): rolls to a new segment when the live one is full, grows the file
    /// when the free space is short, so staging rarely does; and with durability `none` has the
    /// next pages faulted in writable, so staging takes no page fault (one per 4 KiB page
    /// otherwise: the bench's p99 fell from 5.3 to 2.0 µs). The first window after opening or
    /// a roll is faulted in here; from then on the pretoucher thread keeps it ahead (see
    /// [`pretouch`](crate::pretouch)), or, if it could not start, this call does. With a
    /// syncing durability nothing is faulted in: each `fdatasync` would write the zeros back
    /// and leave the pages write-protected again. A failure to grow is reported by the next
    /// commit; a failure to fault in costs only speed.
    pub fn prepare_ahead(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if self.sealer.as_ref().is_some_and(Sealer::is_finished) {
            let sealer = self.sealer.take().expect("checked");
            if let Err(failure) = sealer.finish() {
                self.failure = Some(failure);
                return;
            }
        }
        if self.committed >= self.segment_bytes.max(self.retry_roll_at)
            && self.end == self.committed
        {
            if let Err(error) = self.roll() {
                self.retry_roll_at = self.committed + self.segment_bytes;
                self.roll_failure = Some(error);
            }
        }
        // With a pretoucher the window starts wide: the thread may wait for a CPU (both busy
        // with spinning processes) for a scheduler tick or more, and the loop must not catch
        // up with it meanwhile.
        let least = match self.durability {
            Durability::None => PRETOUCHED_AHEAD,
            _ => MIN_AHEAD,
        };
        let ahead = (2 * (self.end - self.end_at_last_prepare)).clamp(least, MAX_AHEAD);
        self.end_at_last_prepare = self.end;
        let want = self.end + ahead;
        let grew = want > self.map().len() as u64;
        if grew {
            if let Err(error) = self.map().grow(map_len_for(want + MIN_FREE)) {
                self.failure = Some(("preallocate more space for", error));
                return;
            }
        }
        if self.durability != Durability::None {
            return;
        }
        if self.first_window_due {
            // Nothing ahead yet (just opened or rolled): the first stretch, here and now. Once
            // only: with a pretoucher, `populated` is not advanced past it (the thread keeps
            // its own count), and checking it against `end` instead made the loop fault in
            // another MiB itself at every housekeeping (0.1-0.2 ms every 50 ms, seen with
            // `perf trace`).
            self.first_window_due = false;
            let (from, first) = (self.end, self.end + MIN_AHEAD);
            if self
                .map()
                .populate_for_writing(from as usize..first as usize)
                .is_ok()
            {
                self.populated = first;
                self.populated_here += first - from;
            }
        }
        if self.pretoucher.is_none() {
            let populator = self.map().populator();
            self.pretoucher =
                pretouch::Pretoucher::start(populator, self.populated, self.end, ahead).ok();
        }
        match &mut self.pretoucher {
            Some(pretoucher) => pretoucher.want_ahead(ahead, grew),
            // Topped up only when less than half the distance is left, so a market that parks
            // after every request does not make a system call for a page each time.
            None if self.populated < self.end + ahead / 2 => {
                let from = self.populated.max(self.end);
                if self
                    .map()
                    .populate_for_writing(from as usize..want as usize)
                    .is_ok()
                {
                    self.populated = want;
                    self.populated_here += want.saturating_sub(from);
                }
            }
            None => {}
        }
    }

    /// Why the last roll to a new segment failed, once (the market warns and goes on in the
    /// live segment, which grows past its size; the roll is tried again a segment later).
    pub fn take_roll_failure(&mut self) -> Option<std::io::Error> {
        self.roll_failure.take()
    }

    /// Seals the live segment and starts the next (see [`segments`] for the steps and what
    /// a crash between them leaves). Called with nothing staged; everything committed is made
    /// durable first, so a sealed segment is whole on disk before its successor is used. The
    /// steps after the swap that concern only the old segment (unmap, cut, sealed name) run
    /// on a [`Sealer`] thread.
    fn roll(&mut self) -> std::io::Result<()> {
        // The last roll's sealing first: it renames `PATH.next` away, the name this roll
        // builds the next segment under.
        if let Some(sealer) = self.sealer.take() {
            if let Err(failure) = sealer.finish() {
                self.failure = Some(failure);
                return Ok(());
            }
        }
        if self.durability != Durability::None {
            // Everything staged, durable now (the syncing thread keeps running until the swap:
            // if the roll fails before it, nothing changes).
            self.commit().map_err(|e| e.source)?;
        }
        let next = segments::next_path(&self.path);
        let header = format::FileHeader::new(self.capacity, self.records);
        // A leftover of a crashed roll is ours to replace (the live lock is held).
        let _ = std::fs::remove_file(&next);
        let mut file = shm::file::open_private(&next, shm::file::IfMissing::Create)?
            .expect("created if missing");
        std::io::Write::write_all(&mut file, &header.encode())?;
        file.sync_all()?;
        if !shm::file::try_lock_exclusive(&file)? {
            return Err(std::io::Error::other(
                "the new segment is locked by another process",
            ));
        }
        let mapped = MappedFile::new(file, map_len_for(header.len as u64 + MIN_FREE))?;
        // From here the live name is the new segment's (both files stay locked), and records
        // go to it whatever happens next: a failure from here on is the next commit's, so
        // nothing in the new segment is acknowledged before its name is durable.
        shm::file::exchange(&next, &self.path)?;
        let old = self.map.replace(mapped).expect("mapped until dropped");
        let Self {
            map, pretoucher, ..
        } = self;
        if let (Some(pretoucher), Some(map)) = (pretoucher, map) {
            pretoucher.retarget(map.populator(), header.len as u64);
        }
        let (sealed_first, sealed_end) = (self.first, self.committed);
        // The old segment's syncing thread is done (everything was synced above): stopped.
        if let Some(mut syncer) = self.syncer.take() {
            syncer.stop();
            self.syncs += syncer.syncs();
        }
        self.base += self.committed;
        self.first = self.records;
        let start = header.len as u64;
        (self.committed, self.end, self.synced_inline) = (start, start, start);
        (self.populated, self.end_at_last_prepare) = (start, start);
        self.first_window_due = true;
        // The new live name durable before anything in the new segment is acknowledged; then
        // its syncing thread. Both on this thread: a directory sync and a thread start.
        let finish = segments::sync_dir(&self.path)
            .map_err(|e| ("sync the directory of", e))
            .and_then(|()| {
                self.start_syncer()
                    .map_err(|e| ("start the syncing thread for", e.source))
            });
        if let Err(failure) = finish {
            self.failure = Some(failure);
            return Ok(());
        }
        // The old segment, durable and named `PATH.next` since the exchange, is cut to its
        // records and given its sealed name by a thread of its own: unmapping 32 MiB and
        // truncating the file took 7 ms here, a stall of the loop at every roll. A crash
        // before that thread is done leaves `PATH.next` holding a sealed segment, which
        // opening settles (`segments::settle_leftover_next`), as it did when this ran here.
        let sealed = segments::sealed_path(&self.path, sealed_first);
        match Sealer::start(old, sealed_end, next, sealed, self.path.clone()) {
            Ok(sealer) => self.sealer = Some(sealer),
            Err(error) => self.failure = Some(("start the sealing thread for", error)),
        }
        Ok(())
    }
}

/// A thread that seals the segment a roll set aside: unmaps it, cuts the file to its records
/// (zeros after them would read the same; cutting keeps the file its size), renames it from
/// `PATH.next` to its sealed name and syncs the directory. The next roll, a failure check at
/// housekeeping, and closing the journal wait for it.
pub(crate) struct Sealer {
    thread: std::thread::JoinHandle<Result<(), (&'static str, std::io::Error)>>,
}

impl Sealer {
    fn start(
        old: MappedFile,
        records_end: u64,
        next: std::path::PathBuf,
        sealed: std::path::PathBuf,
        journal: std::path::PathBuf,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("journal-seal".into())
            .spawn(move || {
                let _ = old.unmap_and_truncate(records_end);
                std::fs::rename(&next, &sealed)
                    .and_then(|()| segments::sync_dir(&journal))
                    .map_err(|e| ("name the sealed segment of", e))
            })?;
        Ok(Self { thread })
    }

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the sealing; what could not be done, if anything.
    pub(crate) fn finish(self) -> Result<(), (&'static str, std::io::Error)> {
        self.thread.join().unwrap_or_else(|_| {
            Err((
                "seal a segment of",
                std::io::Error::other("the sealing thread panicked"),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CapacityChoice, JournalOptions, Start, MIN_SEGMENT_BYTES};
    use engine::{ClientId, Command, Price, Qty, RequestId, Title};

    fn options() -> JournalOptions {
        JournalOptions {
            durability: Durability::Batch,
            capacity: CapacityChoice::Exactly(engine::MAX_CAPACITY),
            start: Start::Continue,
            segment_bytes: MIN_SEGMENT_BYTES,
        }
    }

    /// Commits listings until the live segment is full, then makes room ahead (which rolls);
    /// returns how many were written.
    fn fill_a_segment(journal: &mut Journal, from: u64) -> u64 {
        let mut i = from;
        while journal.committed < MIN_SEGMENT_BYTES {
            let list = Command::List {
                client: ClientId(1),
                request: RequestId(i),
                title: Title::new("A title long enough to fill a segment soon").unwrap(),
                price: Price::from_cents(100).unwrap(),
                qty: Qty::new(1).unwrap(),
            };
            journal.stage(i, &list);
            journal.commit().unwrap();
            i += 1;
        }
        journal.prepare_ahead();
        i - from
    }

    #[test]
    fn a_rolled_segment_is_sealed_off_the_loop_and_every_record_replays_after_a_crash_or_a_close() {
        let dir = std::env::temp_dir().join(format!("journal-sealer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("j");
        let (mut journal, _) = Journal::open(&path, &options()).unwrap();
        let mut written = fill_a_segment(&mut journal, 0);
        assert!(
            journal.sealer.is_some(),
            "the roll handed the old segment on"
        );
        // The second roll waits for the first sealing: it needs the `PATH.next` name.
        written += fill_a_segment(&mut journal, written);
        // A crash now (the second sealing perhaps not done): opening settles `PATH.next`.
        drop(journal.map.take());
        drop(journal);
        let (mut journal, recovery) = Journal::open(&path, &options()).unwrap();
        assert_eq!(recovery.replayed, written);
        assert_eq!(segments::list_sealed(&path).unwrap().len(), 2);
        written += fill_a_segment(&mut journal, written);
        // A clean close waits for the sealing: the third sealed name is there, nothing mid-roll.
        drop(journal);
        assert_eq!(segments::list_sealed(&path).unwrap().len(), 3);
        assert!(!segments::next_path(&path).exists());
        let (_, recovery) = Journal::open(&path, &options()).unwrap();
        // Every listing, and the `Restart` record the second open wrote.
        assert_eq!(recovery.replayed, written + 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
