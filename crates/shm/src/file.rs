//! Files whose contents decide something (locks, journals): opened only as regular files,
//! never through a symlink, and locked with advisory whole-file locks (one holder at a time,
//! released when the file is closed or the holder dies).

use std::fs::File;

/// `flock(fd, LOCK_EX | LOCK_NB)`: takes an exclusive lock on `file` without waiting.
///
/// Returns `Ok(false)` when another open file description holds it. The lock lives as long as
/// `file` (and its duplicates) stays open, and the kernel drops it if the process dies.
///
/// # References
/// - [flock(2)](https://man7.org/linux/man-pages/man2/flock.2.html)
pub fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What [`open_private`] does when the file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create it, mode 0600.
    Create,
    /// Return `Ok(None)`.
    Skip,
}

/// `open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC [| O_CREAT], 0600)`, then `fstat`:
/// a regular file owned by this user, never reached through a symlink. Writes append.
///
/// A symlink is refused (`ELOOP`), and so is anything but a regular file of ours, before it is
/// read or written: for files whose contents decide something (locks, journals).
///
/// # References
/// - [open(2)](https://man7.org/linux/man-pages/man2/open.2.html), `O_NOFOLLOW`
pub fn open_private(
    path: &std::path::Path,
    if_missing: IfMissing,
) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(if_missing == IfMissing::Create)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && if_missing == IfMissing::Skip => {
            return Ok(None)
        }
        Err(e) => return Err(explain_open_error(e)),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if meta.uid() != crate::effective_uid() {
        return Err(std::io::Error::other(format!(
            "it belongs to uid {}, not to you",
            meta.uid()
        )));
    }
    Ok(Some(file))
}

/// `open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)`, then `fstat`: a regular file
/// to read, refused before any read if it is anything else. `O_NONBLOCK` makes a FIFO fail the
/// check instead of blocking the open; a device such as `/dev/zero` fails it too, so it is
/// never read until memory runs out.
pub fn open_regular_for_reading(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(explain_open_error)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(file)
}

/// Names the two refusals a user can act on.
fn explain_open_error(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
            std::io::Error::other("it is a symbolic link (refused: give the real path)")
        }
        Some(code) if code == rustix::io::Errno::NOENT.raw_os_error() => {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
        }
        _ => e,
    }
}

/// `renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)`: swaps the names `a` and `b` in one
/// step, so each name always refers to one of the two files (neither ever goes missing).
///
/// Both must exist. Used to put a new journal segment in the live segment's place while both
/// stay locked, with no moment in which the live name is free for another process to take.
///
/// # References
/// - [rename(2)](https://man7.org/linux/man-pages/man2/rename.2.html), `RENAME_EXCHANGE`
pub fn exchange(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_fifos_and_devices_are_refused_before_any_read() {
        let dir = std::env::temp_dir().join(format!("shm-file-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target");
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_private(&link, IfMissing::Create).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            !target.exists(),
            "a dangling symlink's target is not created"
        );
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = open_regular_for_reading(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = open_regular_for_reading(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let file = open_private(&dir.join("plain"), IfMissing::Create).unwrap();
        assert!(file.is_some());
        assert!(open_private(&dir.join("absent"), IfMissing::Skip)
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
