//! A journal is a chain of segment files, so the part a snapshot covers can be deleted.
//!
//! ```text
//! PATH                          the live segment: the one the market appends to
//! PATH.seg.00000000000000000000 sealed segments, named by their first command (20 digits,
//! PATH.seg.00000000000000412000   so names sort by it), each exactly its records
//! PATH.next                     a new segment being put in place (only during a roll)
//! ```
//!
//! Every segment's header holds the command number of its first record (`first`), so the
//! chain is checked link by link: a segment ends (its first plus its records) where the next
//! one starts. A segment missing in the middle shows as a gap, and is refused by name.
//!
//! A roll seals the live segment and starts the next: the new file is created beside it
//! (`PATH.next`, header written and synced, locked), swapped with the live one in one step
//! (`renameat2(RENAME_EXCHANGE)`: `PATH` never goes missing and stays locked), the directory
//! is synced, and the old one is cut to its records and renamed to its sealed name, the
//! directory synced again, by a thread of the journal's (off the market's loop). A crash at any step leaves a state
//! [`settle_leftover_next`] finishes or undoes on the next open.
//!
//! Segments wholly covered by the oldest snapshot kept are deleted ([`delete_covered`]): a
//! replay never needs them, even when the newest snapshot is damaged and the one before it is
//! used.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::format::{self, FileHeader, FormatError, Scan};

/// The name of the sealed segment of `journal` whose first record is command `first`.
pub fn sealed_path(journal: &Path, first: u64) -> PathBuf {
    with_suffix(journal, &format!(".seg.{first:020}"))
}

/// Where a roll builds the next segment before swapping it in.
pub(crate) fn next_path(journal: &Path) -> PathBuf {
    with_suffix(journal, ".next")
}

fn with_suffix(journal: &Path, suffix: &str) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The sealed segments of `journal`, oldest (smallest first command) first. Files whose names
/// do not parse are not segments and are left alone.
pub fn list_sealed(journal: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = numbered_siblings(journal, ".seg.")?;
    found.sort_unstable_by_key(|f| f.0);
    Ok(found)
}

/// Files beside `journal` named `JOURNAL{infix}NNNNNNNNNNNNNNNNNNNN` (20 digits), with their
/// numbers, in no order.
pub(crate) fn numbered_siblings(
    journal: &Path,
    infix: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let (Some(dir), Some(stem)) = (journal.parent(), journal.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}{infix}", stem.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if number.len() == 20 && number.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = number.parse() {
                found.push((n, dir.join(&name)));
            }
        }
    }
    Ok(found)
}

/// One segment file as read: its records and where they sit in the chain.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    pub path: PathBuf,
    /// The command number of its first record (from its header; 0 before it has one).
    pub first: u64,
    pub scan: Scan,
    /// The file's bytes, for decoding records `scan` only checked ([`format::records`]).
    pub bytes: Vec<u8>,
    /// The file's length in bytes.
    pub size: u64,
    /// Whether it is the live segment (`PATH` itself) rather than a sealed one.
    pub live: bool,
}

impl SegmentScan {
    /// The command number after its last record: where the next segment starts.
    pub fn end(&self) -> u64 {
        self.first + self.scan.records()
    }
}

/// Why the chain of segments cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("journal segment {path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("journal segment {path}: {error}")]
    Corrupt { path: PathBuf, error: FormatError },
    #[error("journal segment {path} is missing: commands {from} to {to} are in no segment{why}", to = to - 1)]
    Missing {
        /// The file that should hold them.
        path: PathBuf,
        from: u64,
        to: u64,
        /// Why they were needed, when it is not plain (", and no usable snapshot covers them").
        why: &'static str,
    },
    #[error("journal segment {path}: {problem}")]
    Broken { path: PathBuf, problem: String },
}

impl ChainError {
    /// The file the problem is in (or, when one is missing, the file that should be there).
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Corrupt { path, .. }
            | Self::Missing { path, .. }
            | Self::Broken { path, .. } => path,
        }
    }
}

/// Reads and checks the sealed segments of `journal` that hold commands from `from` on, and
/// returns them followed by `live` (already read, by its opener): a chain whose links meet.
/// Sealed segments wholly before `from` are not read. With `decode`, the records from `from`
/// on are decoded into each scan's entries (for a reader that wants them all at hand); without
/// it every record is only checked, and a replay decodes them from `bytes` as it goes. A sealed segment with a torn tail, a
/// header that disagrees with its name or with the live segment's capacity, or a gap or an
/// overlap between two segments is refused, naming the file.
pub fn read_chain(
    journal: &Path,
    live: SegmentScan,
    from: u64,
    decode: bool,
) -> Result<Vec<SegmentScan>, ChainError> {
    let io = |path: &Path, action| {
        let path = path.to_owned();
        move |source| ChainError::Io {
            path,
            action,
            source,
        }
    };
    let sealed = list_sealed(journal).map_err(io(journal, "list the segments of"))?;
    // The first command after each sealed segment, as the chain promises it: the next one's
    // first (checked below against what each holds).
    let ends: Vec<u64> = sealed
        .iter()
        .skip(1)
        .map(|s| s.0)
        .chain(std::iter::once(live.first))
        .collect();
    let needed = sealed
        .iter()
        .zip(&ends)
        .filter(|(_, &end)| end > from)
        .map(|(s, _)| s);
    let mut chain = Vec::new();
    for (named, path) in needed {
        let bytes = read_whole(path).map_err(io(path, "read"))?;
        let size = bytes.len();
        let skip = if decode {
            from.saturating_sub(*named)
        } else {
            u64::MAX
        };
        let scan = format::scan_from(&bytes, skip);
        let scan = scan.map_err(|error| ChainError::Corrupt {
            path: path.clone(),
            error,
        })?;
        let broken = |problem: String| ChainError::Broken {
            path: path.clone(),
            problem,
        };
        let Some(header) = scan.header else {
            return Err(broken("it has no header".into()));
        };
        if header.first != *named {
            return Err(broken(format!(
                "its header says its first command is {}, its name says {named}",
                header.first
            )));
        }
        if let Some(torn) = &scan.torn {
            return Err(broken(format!(
                "a sealed segment is damaged at byte {} ({}): records after it are in later segments",
                torn.offset, torn.why
            )));
        }
        if live
            .scan
            .header
            .is_some_and(|h| h.capacity != header.capacity)
        {
            return Err(broken(format!(
                "it holds a store of capacity {}, the live segment {}",
                header.capacity,
                live.scan.header.map_or(0, |h| h.capacity)
            )));
        }
        chain.push(SegmentScan {
            path: path.clone(),
            first: header.first,
            scan,
            bytes,
            size: size as u64,
            live: false,
        });
    }
    chain.push(live);
    // The chain must start at or before `from`, and each link end where the next starts.
    let start = chain[0].first;
    if start > from {
        return Err(ChainError::Missing {
            path: sealed_path(journal, from),
            from,
            to: start,
            why: "",
        });
    }
    for pair in chain.windows(2) {
        let (this, next) = (&pair[0], &pair[1]);
        if this.end() < next.first {
            return Err(ChainError::Missing {
                path: sealed_path(journal, this.end()),
                from: this.end(),
                to: next.first,
                why: "",
            });
        }
        if this.end() > next.first {
            return Err(ChainError::Broken {
                path: this.path.clone(),
                problem: format!(
                    "it holds commands {} to {}, but {} starts at {}",
                    this.first,
                    this.end() - 1,
                    next.path.display(),
                    next.first
                ),
            });
        }
    }
    Ok(chain)
}

/// The whole of the regular file at `path`, read in one allocation.
pub fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = shm::file::open_regular_for_reading(path)?;
    let mut bytes = Vec::with_capacity(file.metadata()?.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Finishes or undoes a roll a crash interrupted, from what `PATH.next` holds (the caller
/// holds the live segment's lock, so no roll is under way):
/// - a segment whose first command is before the live one's: the old live segment, swapped
///   out but not yet renamed: it gets its sealed name;
/// - anything else (a new segment not swapped in yet, or a file cut short at creation): no
///   record was ever written to it, and it is removed.
///
/// Returns what was done, for the caller to report.
pub(crate) fn settle_leftover_next(
    journal: &Path,
    live: Option<FileHeader>,
) -> std::io::Result<Option<String>> {
    let next = next_path(journal);
    let mut bytes = Vec::new();
    match shm::file::open_regular_for_reading(&next) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let header = format::decode_file_header(&bytes).ok();
    match (header, live) {
        (Some(old), Some(live)) if old.first < live.first => {
            let sealed = sealed_path(journal, old.first);
            std::fs::rename(&next, &sealed)?;
            sync_dir(journal)?;
            Ok(Some(format!(
                "finished sealing segment {} (a roll was interrupted)",
                sealed.display()
            )))
        }
        (Some(header), _)
            if bytes.len() > header.len && bytes[header.len..].iter().any(|&b| b != 0) =>
        {
            // Records in a segment the live one does not follow from: only a machine crash
            // before the swap was durable leaves this, and nothing in it was acknowledged
            // as durable. Kept aside, not deleted.
            let aside = crate::file::move_aside(&next)?;
            sync_dir(journal)?;
            Ok(Some(format!(
                "moved {} aside to {}: a segment whose roll did not complete",
                next.display(),
                aside.display()
            )))
        }
        _ => {
            std::fs::remove_file(&next)?;
            sync_dir(journal)?;
            Ok(Some(format!(
                "removed {}, a segment a roll had not put in place",
                next.display()
            )))
        }
    }
}

/// Deletes the sealed segments of `journal` whose every record is before command `covered`
/// (the oldest snapshot kept): a replay starts at a snapshot, so it never reads them. The
/// live segment is never deleted. Returns the files deleted.
pub fn delete_covered(journal: &Path, covered: u64) -> std::io::Result<Vec<PathBuf>> {
    let sealed = list_sealed(journal)?;
    // Each sealed segment ends where the next one starts; the last one where the live one
    // does. Mid-roll the live header may already be the next segment's, whose first is past
    // the true end: deleting only what ends at or before it stays on the safe side.
    let live_first = live_header(journal).map(|h| h.first);
    let ends = sealed.iter().skip(1).map(|s| Some(s.0)).chain([live_first]);
    let mut deleted = Vec::new();
    for ((_, path), end) in sealed.iter().zip(ends) {
        if end.is_some_and(|end| end <= covered) {
            std::fs::remove_file(path)?;
            deleted.push(path.clone());
        }
    }
    if !deleted.is_empty() {
        sync_dir(journal)?;
    }
    Ok(deleted)
}

/// The live segment's header, if it reads as one.
pub fn live_header(journal: &Path) -> Option<FileHeader> {
    let mut bytes = [0; format::FILE_HEADER_LEN];
    let mut file = shm::file::open_regular_for_reading(journal).ok()?;
    let n = file.read(&mut bytes).ok()?;
    format::decode_file_header(&bytes[..n]).ok()
}

/// `fsync` of the directory holding `journal`: makes renames, creations and removals in it
/// durable.
pub(crate) fn sync_dir(journal: &Path) -> std::io::Result<()> {
    match journal.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}
