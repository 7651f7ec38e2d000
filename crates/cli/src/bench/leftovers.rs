//! What a bench killed with SIGKILL left behind, removed by the next bench.
//!
//! A bench stopped any other way removes its own objects and scratch journals (and its markets
//! and peers stop with it: `--stop-with-parent`). SIGKILL runs no code, so a killed bench
//! leaves the shared object of the row it was in (`/dev/shm/bookstore-bench-PID-floor`, or a
//! market's, `…-spin`) and its markets' scratch journal directories
//! (`$TMPDIR/bookstore-bookstore-bench-PID-…`). The next bench removes those whose bench is
//! gone: the pid in the name runs no more, and the current user owns the entry. A pid reused
//! by another process keeps its bench's leftovers until that process exits: nothing that may
//! be in use is touched.

use std::fs::FileType;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::NAME_PREFIX as OBJECT_PREFIX;
use crate::scratch::DIR_PREFIX;

/// Removes the leftovers of killed benches; returns what it removed.
pub(super) fn remove_leftovers_of_killed_benches() -> Vec<PathBuf> {
    let me = shm::effective_uid();
    let mut removed = Vec::new();
    for path in leftovers(Path::new("/dev/shm"), OBJECT_PREFIX, me, FileType::is_file) {
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    // A scratch journal's directory is named after its store: `DIR_PREFIX` + the object's name.
    let scratch_prefix = format!("{DIR_PREFIX}{OBJECT_PREFIX}");
    for path in leftovers(&std::env::temp_dir(), &scratch_prefix, me, FileType::is_dir) {
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Entries of `dir` named `PREFIX` + a pid + `-…`, of a pid that no longer runs (so never this
/// bench's own), owned by `uid`, and of the kind `is_kind` accepts (never a symbolic link).
fn leftovers(dir: &Path, prefix: &str, uid: u32, is_kind: fn(&FileType) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| bench_pid(n, prefix)) else {
                return false;
            };
            // `symlink_metadata`: a link is never followed, nor removed.
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                return false;
            };
            is_kind(&meta.file_type()) && meta.uid() == uid && !shm::process::pid_exists(pid)
        })
        .map(|entry| entry.path())
        .collect()
}

/// The bench's pid in a leftover's name: `PREFIX` + decimal pid + `-`.
fn bench_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_names_its_bench_pid_and_nothing_else_does() {
        assert_eq!(
            bench_pid("bookstore-bench-4242-floor", OBJECT_PREFIX),
            Some(4242)
        );
        assert_eq!(
            bench_pid(
                "bookstore-bookstore-bench-17-spin-99-1a2b-0",
                &format!("{DIR_PREFIX}{OBJECT_PREFIX}")
            ),
            Some(17)
        );
        for other in [
            "bookstore",
            "bookstore-bench-",
            "bookstore-bench-floor",
            "bookstore-bench-12",
            "bookstore-bench--12-floor",
            "bookstore-bench-+12-floor",
            "bookstore-bench-0-floor",
            "bookstore-bench-99999999999-floor",
            "bookstore-test-12-floor",
        ] {
            assert_eq!(bench_pid(other, OBJECT_PREFIX), None, "{other}");
        }
    }

    #[test]
    fn only_a_dead_bench_s_own_entries_of_the_right_kind_are_leftovers() {
        let dir = std::env::temp_dir().join(format!("leftovers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A pid that runs no more: a child that exited and was reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = child.id();
        let alive = std::process::id();
        let me = shm::effective_uid();
        let file = |name: String| {
            std::fs::write(dir.join(&name), b"").unwrap();
            dir.join(name)
        };
        let gone = file(format!("{OBJECT_PREFIX}{dead}-floor"));
        file(format!("{OBJECT_PREFIX}{alive}-floor"));
        std::fs::create_dir(dir.join(format!("{OBJECT_PREFIX}{dead}-spin"))).unwrap();
        std::os::unix::fs::symlink(&gone, dir.join(format!("{OBJECT_PREFIX}{dead}-link"))).unwrap();
        assert_eq!(
            leftovers(&dir, OBJECT_PREFIX, me, FileType::is_file),
            vec![gone]
        );
        assert!(
            leftovers(&dir, OBJECT_PREFIX, me + 1, FileType::is_file).is_empty(),
            "another user's"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
