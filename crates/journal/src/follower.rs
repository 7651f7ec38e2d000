//! A second copy of the store kept by reading the journal: snapshots are taken from it, so
//! the market's loop never pauses to copy its state out.
//!
//! The follower starts equal to the market's store at the journal's committed end (one copy,
//! at start). When a snapshot is due the loop sends it only a command number whose records
//! are committed; the follower reads those records from the segment files and applies them to
//! its own engine and receipts, exactly as a replay would, and its state is then the journal's
//! first N commands: what the snapshot must hold. The loop's cost is one message; the
//! follower's is one engine apply per command, on another thread.
//!
//! Why reading the files sees the records: the market writes them into a shared mapping of
//! the file, whose pages are the page cache `pread` reads; and it tells the follower a command
//! number only after writing them (the channel orders the two). Records past that number may
//! be half written or not there yet: the follower never decodes past it, and drops what it
//! read ahead before it catches up again. Every byte is checked as on open.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use engine::{Engine, Millis, Receipts, Trade};

use crate::format::{self, Next};
use crate::replay::Replica;
use crate::segments::{next_path, sealed_path};
use crate::snapshot::Snapshot;

/// Bytes read from a segment at a time.
const CHUNK: usize = 1 << 20;

/// The store as of some command number, and where in the journal the next record is.
pub struct Follower {
    journal: PathBuf,
    store: Replica,
    /// Commands applied: the command number of the next record.
    commands: u64,
    segment: Segment,
    /// Bytes of the segment from `buf_at`, read ahead.
    buf: Vec<u8>,
    buf_at: u64,
    /// The next record starts at `buf[pos]` (file offset `buf_at + pos`).
    pos: usize,
}

/// The segment file being read.
struct Segment {
    file: File,
    path: PathBuf,
}

/// The store a follower starts from, equal to the market's at the journal's committed end.
pub struct FollowerStart {
    pub engine: Engine,
    pub receipts: Receipts,
    pub recent_trades: Vec<Trade>,
    pub last_now: Millis,
}

/// Why the follower could not read on; it stops (no more snapshots), the market does not.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("journal segment {path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("journal segment {path}: {error}")]
    Corrupt {
        path: PathBuf,
        error: format::FormatError,
    },
    #[error("no journal segment starts at command {commands} (looked for {tried})")]
    NoSegment { commands: u64, tried: String },
}

impl Follower {
    /// A follower at command `commands`, whose next record is at byte `offset` of the live
    /// segment `journal`, opened here: the caller makes sure no roll happens in between.
    pub(crate) fn new(
        journal: &Path,
        start: FollowerStart,
        commands: u64,
        offset: u64,
    ) -> Result<Self, FollowError> {
        let file =
            shm::file::open_regular_for_reading(journal).map_err(|source| FollowError::Io {
                path: journal.into(),
                action: "open",
                source,
            })?;
        Ok(Self {
            journal: journal.into(),
            store: Replica::new(
                start.engine,
                start.receipts,
                start.recent_trades,
                start.last_now,
            ),
            commands,
            segment: Segment {
                file,
                path: journal.into(),
            },
            buf: Vec::new(),
            buf_at: offset,
            pos: 0,
        })
    }

    /// Reads and applies the records up to command `target` (which the market has
    /// committed), moving on to the next segment where one ends.
    pub fn catch_up(&mut self, target: u64) -> Result<(), FollowError> {
        // What was read ahead last time may have been free space then, or a record half
        // written: read again from the next record.
        self.buf_at += self.pos as u64;
        self.buf.clear();
        self.pos = 0;
        while self.commands < target {
            match format::next_record(&self.buf[self.pos..], self.buf_at + self.pos as u64) {
                Next::Record(entry, len) => {
                    self.store.apply(&entry);
                    self.pos += len;
                    self.commands += 1;
                }
                Next::Checked(_) => unreachable!("next_record decodes every record"),
                Next::Short(_) => {
                    if !self.read_more()? {
                        self.next_segment()?;
                    }
                }
                Next::Damaged(error) if error.is_blank() => self.next_segment()?,
                Next::Damaged(error) => {
                    return Err(FollowError::Corrupt {
                        path: self.segment.path.clone(),
                        error,
                    })
                }
            }
        }
        Ok(())
    }

    /// The store as a snapshot at [`commands`](Self::commands).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            commands: self.commands,
            journal_offset: self.buf_at + self.pos as u64,
            last_now: self.store.last_now,
            engine: self.store.engine.state(),
            recent_trades: self.store.recent_trades.iter().cloned().collect(),
            receipts: self.store.receipts.state(),
        }
    }

    /// Reads the next chunk after what is buffered; `false` at the end of the file (with
    /// nothing but zeros, if anything, left unread: else the segment is cut short).
    fn read_more(&mut self) -> Result<bool, FollowError> {
        self.buf.drain(..self.pos);
        self.buf_at += self.pos as u64;
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(have + CHUNK, 0);
        let at = self.buf_at + have as u64;
        let read = self.segment.file.read_at(&mut self.buf[have..], at);
        let n = read.map_err(|source| FollowError::Io {
            path: self.segment.path.clone(),
            action: "read",
            source,
        })?;
        self.buf.truncate(have + n);
        if n > 0 {
            return Ok(true);
        }
        if self.buf.iter().any(|&b| b != 0) {
            return Err(FollowError::Corrupt {
                path: self.segment.path.clone(),
                error: format::FormatError::Length {
                    offset: self.buf_at,
                    len: 0,
                    not_len: 0,
                },
            });
        }
        Ok(false)
    }

    /// Opens the segment whose first record is the next command, wherever it is now (see
    /// [`open_segment`]).
    fn next_segment(&mut self) -> Result<(), FollowError> {
        let (file, path, header) = open_segment(&self.journal, self.commands)?;
        self.segment = Segment { file, path };
        self.buf.clear();
        self.buf_at = header.len as u64;
        self.pos = 0;
        Ok(())
    }
}

/// Opens the segment of `journal` whose first record is command `first`, and checks its
/// header says so. A segment the market has written records into moves through three names,
/// always forward: live (`PATH`), set aside by the next roll (`PATH.next`, from the exchange
/// until the sealing thread renames it), sealed (`PATH.seg.N`). Looked for in that order, it is
/// found wherever it moves meanwhile: if it has left a name by the time that name is tried, it
/// is under a later one. (Looked for in the other order, sealed first, a roll and its sealing
/// between two looks hid it: a follower descheduled on a loaded machine stopped taking
/// snapshots for good, "no journal segment starts at command 527927".)
fn open_segment(
    journal: &Path,
    first: u64,
) -> Result<(File, PathBuf, format::FileHeader), FollowError> {
    let places = [
        journal.to_owned(),
        next_path(journal),
        sealed_path(journal, first),
    ];
    for path in &places {
        let Ok(file) = shm::file::open_regular_for_reading(path) else {
            continue;
        };
        let mut header = [0; format::FILE_HEADER_LEN];
        let n = file.read_at(&mut header, 0).unwrap_or(0);
        let Ok(header) = format::decode_file_header(&header[..n]) else {
            continue;
        };
        if header.first == first {
            return Ok((file, path.clone(), header));
        }
    }
    Err(FollowError::NoSegment {
        commands: first,
        tried: places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments rolled one after another, each moved through its three names as a roll and
    /// its sealing thread move one, while another thread looks for the segment it last saw
    /// live: every look finds it. (With the old order, sealed name first, this failed within
    /// a few hundred rolls.)
    #[test]
    fn a_segment_is_found_while_rolls_move_it_from_live_to_sealed() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        const ROLLS: u64 = 2000;
        let dir = std::env::temp_dir().join(format!("follower-moves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("j");
        let write = |path: &Path, first: u64| {
            std::fs::write(path, format::FileHeader::new(100, first).encode()).unwrap()
        };
        write(&journal, 1);
        // The first command of the segment that was live last; Relaxed is enough: the file
        // system orders the renames, and a stale value names a segment that exists too.
        let live = Arc::new(AtomicU64::new(1));
        let roller = {
            let (journal, live) = (journal.clone(), live.clone());
            std::thread::spawn(move || {
                for first in 1..ROLLS {
                    let next = next_path(&journal);
                    std::fs::rename(&journal, &next).unwrap();
                    write(&journal, first + 1);
                    live.store(first + 1, Ordering::Relaxed);
                    std::fs::rename(&next, sealed_path(&journal, first)).unwrap();
                }
            })
        };
        let mut looks = 0u64;
        while !roller.is_finished() {
            let first = live.load(Ordering::Relaxed);
            let (_, _, header) =
                open_segment(&journal, first).unwrap_or_else(|e| panic!("look {looks}: {e}"));
            assert_eq!(header.first, first);
            looks += 1;
        }
        roller.join().unwrap();
        assert!(looks > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
