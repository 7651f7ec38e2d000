//! The journal file itself, on opening: refuse what is not ours, take the lock, read and
//! scan it, settle the capacity, repair a torn tail or a missing header, or move an old
//! journal aside for a fresh start. Every refusal comes before the first change to the file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{format, io_error, CapacityChoice, OpenJournalError};

/// Opens (creating if need be) the journal file, checks it is ours, and takes its lock.
pub(crate) fn open_locked(path: &Path) -> Result<File, OpenJournalError> {
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

/// Reads the whole file and checks its records (a torn tail reported, not yet cut), decoding
/// none: which to decode is known once a snapshot is chosen. Returns the bytes too, for that.
pub(crate) fn read_and_check(
    file: &mut File,
    path: &Path,
) -> Result<(Vec<u8>, format::Scan), OpenJournalError> {
    let io = |action| io_error(path, action);
    let meta = file.metadata().map_err(io("stat"))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(io("read"))?;
    let scan = format::scan_from(&bytes, u64::MAX).map_err(|error| OpenJournalError::Corrupt {
        path: path.into(),
        error,
    })?;
    Ok((bytes, scan))
}

/// The store's capacity: the journal's if it has a header (and then `asked` must match),
/// else what was asked for.
pub(crate) fn reconcile_capacity(
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
pub(crate) fn repair(
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
        file.write_all(&format::FileHeader::new(capacity, 0).encode())
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

/// Renames `path` to `path.UNIXTIME.old` (or `.UNIXTIME.N.old` if that exists) and returns it.
pub(crate) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
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
