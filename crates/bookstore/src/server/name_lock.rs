//! Who owns a store's name: the market that holds an exclusive lock on the name's lock file
//! for its whole life, taken before it looks at the object.
//!
//! The lock file lives in a private runtime directory (`$XDG_RUNTIME_DIR/bookstore`, else
//! `/run/bookstore` for root, else `/tmp/bookstore-UID`; 0700, ours, never a symlink), so only
//! this user can lock it or write it. The holder writes its pid and start time into it. Then:
//! - only the lock holder creates, replaces or removes the object: an object whose lock is free
//!   is stale, whatever its header says (a header is writable by anyone the mode lets in);
//! - a loser knows the winner: the lock is held, and the file names it;
//! - `market --stop` signals only the process that holds the lock, as the file names it and a
//!   pidfd with its start time confirms; never a pid read from the object.
//!
//! The file is removed by its holder on a clean exit, while still locked. A contender that
//! opened the old file and then gets its lock checks that the path still names the file it
//! locked, and starts over if not; so removal never lets two holders coexist. A crashed
//! market leaves its file behind, unlocked: the next market takes it over.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shm::file::IfMissing;
use shm::process::ProcessId;
use shm::ShmName;

/// How long a loser waits for the winner to write its identity into the lock file.
const HOLDER_WRITE_GRACE: Duration = Duration::from_secs(1);

/// Why the name could not be locked (or its holder read).
#[derive(Debug, thiserror::Error)]
pub enum NameLockError {
    /// Another market holds the name.
    #[error("a market is already running on {name} ({})", describe(.holder))]
    Held {
        name: ShmName,
        holder: Option<ProcessId>,
    },
    #[error("runtime directory {path}: {problem}; set XDG_RUNTIME_DIR to a private directory")]
    RuntimeDir { path: PathBuf, problem: String },
    #[error("lock file {path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

fn describe(holder: &Option<ProcessId>) -> String {
    match holder {
        Some(id) => format!("pid {}", id.pid),
        None => "its pid is not written yet".into(),
    }
}

/// The held lock on one name. Dropping it removes the lock file, then releases the lock.
#[derive(Debug)]
pub struct NameLock {
    file: File,
    path: PathBuf,
}

impl NameLock {
    /// Takes the name for this process, or says who holds it.
    pub fn acquire(name: &ShmName, me: ProcessId) -> Result<Self, NameLockError> {
        let path = lock_path(name)?;
        loop {
            let file = open_lock_file(&path, IfMissing::Create)?.expect("created if missing");
            if !lock(&file, &path)? {
                return Err(NameLockError::Held {
                    name: name.clone(),
                    holder: wait_for_holder(&file),
                });
            }
            // The previous holder may have removed the file after we opened it: then we hold
            // the lock of a file nobody else will look at. Start over with the file the path
            // names now.
            if !still_named_by(&file, &path) {
                continue;
            }
            let mut lock = Self { file, path };
            lock.write_holder(me)?;
            return Ok(lock);
        }
    }

    /// The process holding `name`'s lock now, as its lock file names it; `None` when nobody
    /// holds it. Never takes the lock for long: a free lock is released at once.
    pub fn holder(name: &ShmName) -> Result<Option<ProcessId>, NameLockError> {
        let path = lock_path(name)?;
        let Some(file) = open_lock_file(&path, IfMissing::Skip)? else {
            return Ok(None);
        };
        if lock(&file, &path)? {
            // Free: nobody holds the name. Dropping `file` releases our brief lock.
            return Ok(None);
        }
        Ok(wait_for_holder(&file))
    }

    /// Replaces the file's contents with our identity. The file is open for appending, so after
    /// the truncation the write lands at offset 0.
    fn write_holder(&mut self, me: ProcessId) -> Result<(), NameLockError> {
        let io = |action| io_error(&self.path, action);
        self.file.set_len(0).map_err(io("truncate"))?;
        self.file
            .write_all(format!("{} {}\n", me.pid, me.start_time).as_bytes())
            .map_err(io("write"))
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Removed while locked; the lock goes with the file descriptor just after.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The lock file of `name` in this user's runtime directory (created if need be).
pub fn lock_path(name: &ShmName) -> Result<PathBuf, NameLockError> {
    Ok(runtime_dir()?.join(format!("{}.lock", name.file_name())))
}

/// This user's private runtime directory for lock files, created 0700 if missing, and refused
/// unless it is a real directory (not a symlink) owned by us that nobody else can enter.
fn runtime_dir() -> Result<PathBuf, NameLockError> {
    let uid = shm::effective_uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_absolute()) {
        Some(base) => PathBuf::from(base).join("bookstore"),
        None if uid == 0 => PathBuf::from("/run/bookstore"),
        None => std::env::temp_dir().join(format!("bookstore-{uid}")),
    };
    let problem = |problem: String| NameLockError::RuntimeDir {
        path: dir.clone(),
        problem,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(problem(format!("cannot create it: {e}"))),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| problem(e.to_string()))?;
    if !meta.is_dir() {
        return Err(problem("is not a directory (a symlink?)".into()));
    }
    if meta.uid() != uid {
        return Err(problem(format!(
            "belongs to uid {}, not to you",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(problem(format!(
            "has mode {:04o}; others must not enter it",
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

fn open_lock_file(path: &Path, if_missing: IfMissing) -> Result<Option<File>, NameLockError> {
    shm::file::open_private(path, if_missing).map_err(io_error(path, "open"))
}

fn lock(file: &File, path: &Path) -> Result<bool, NameLockError> {
    shm::file::try_lock_exclusive(file).map_err(io_error(path, "lock"))
}

/// Whether `path` still names the file `file` is open on.
fn still_named_by(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The identity the holder wrote, waiting briefly for a holder that has just taken the lock.
/// Until it writes, the file still names the holder before it (a killed market leaves its
/// identity behind): an identity is taken only if that process is alive.
fn wait_for_holder(file: &File) -> Option<ProcessId> {
    let started = Instant::now();
    loop {
        let mut text = String::new();
        let mut reader = file;
        let read = reader
            .rewind()
            .and_then(|()| reader.read_to_string(&mut text));
        let alive = |id: &ProcessId| shm::process::ProcessHandle::open(*id).is_ok();
        if let Some(id) = read.ok().and_then(|_| parse_holder(&text)).filter(alive) {
            return Some(id);
        }
        if started.elapsed() >= HOLDER_WRITE_GRACE {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn parse_holder(text: &str) -> Option<ProcessId> {
    let line = text.strip_suffix('\n')?;
    let (pid, start_time) = line.split_once(' ')?;
    Some(ProcessId {
        pid: pid.parse().ok()?,
        start_time: start_time.parse().ok()?,
    })
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> NameLockError {
    let path = path.to_path_buf();
    move |source| NameLockError::Io {
        path,
        action,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> ShmName {
        ShmName::new(&format!(
            "/bookstore-lock-test-{}-{tag}",
            std::process::id()
        ))
        .unwrap()
    }

    #[test]
    fn a_held_name_names_its_holder_and_a_released_one_is_free() {
        let name = name("held");
        let me = ProcessId::current().unwrap();
        let lock = NameLock::acquire(&name, me).unwrap();
        assert_eq!(NameLock::holder(&name).unwrap(), Some(me));
        match NameLock::acquire(&name, me) {
            Err(NameLockError::Held { holder, .. }) => assert_eq!(holder, Some(me)),
            other => panic!("second acquire: {other:?}"),
        }
        let path = lock_path(&name).unwrap();
        assert!(path.exists());
        drop(lock);
        assert!(!path.exists(), "the holder removes its lock file");
        assert_eq!(NameLock::holder(&name).unwrap(), None);
        drop(NameLock::acquire(&name, me).unwrap());
    }

    #[test]
    fn a_lock_file_left_by_a_crash_is_taken_over() {
        let name = name("crash");
        let path = lock_path(&name).unwrap();
        std::fs::write(&path, "1 2\n").unwrap();
        assert_eq!(NameLock::holder(&name).unwrap(), None, "unlocked: nobody");
        let me = ProcessId::current().unwrap();
        let lock = NameLock::acquire(&name, me).unwrap();
        assert_eq!(NameLock::holder(&name).unwrap(), Some(me));
        drop(lock);
    }

    #[test]
    fn holder_lines_parse_only_when_whole() {
        assert_eq!(
            parse_holder("12 34\n"),
            Some(ProcessId {
                pid: 12,
                start_time: 34
            })
        );
        for partial in ["", "12", "12 3", "12 x\n", " 34\n"] {
            assert_eq!(parse_holder(partial), None, "{partial:?}");
        }
    }
}
