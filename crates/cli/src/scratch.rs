//! A journal for a short-lived market (demo, bench): in a private directory of its own, removed
//! with it.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use shm::ShmName;

/// How a scratch journal's directory is named: this, then the store's file name, the pid, and
/// what makes it unique.
pub const DIR_PREFIX: &str = "bookstore-";

/// A fresh 0700 directory under the temp directory holding one journal path (and its segments
/// and snapshots); all are removed on drop. The directory is created new (never an existing one, so never someone else's
/// symlink), which makes the journal's path private whatever the temp directory allows.
pub struct ScratchJournal {
    dir: PathBuf,
    path: PathBuf,
}

impl ScratchJournal {
    pub fn for_store(name: &ShmName) -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0u32;
        let dir = loop {
            let dir = base.join(format!(
                "{DIR_PREFIX}{}-{}-{nanos:x}-{attempt}",
                name.file_name(),
                std::process::id()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let path = dir.join(format!("{}.journal", name.file_name()));
        Ok(Self { dir, path })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn arg(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for ScratchJournal {
    /// Removes the directory with everything in it: the journal's segments and snapshots too
    /// (the directory was created new, and only our markets wrote in it).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
