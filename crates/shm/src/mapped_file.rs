//! A regular file mapped read-write into this process, for a single writer that owns the file
//! (it holds its `flock`) and wants each append to be a memory copy, not a system call: the
//! market's journal.
//!
//! The file is preallocated (`fallocate`) before any of it is mapped, so writing into the
//! mapping never meets a full disk as a `SIGBUS`: a full disk is an error from [`MappedFile::new`]
//! or [`MappedFile::grow`]. What is written reaches the page cache at once, so a crash of the
//! process loses nothing; `fdatasync` on [`MappedFile::file`] makes it durable (Linux writes a
//! file's pages dirtied through a shared mapping back on `fsync`/`fdatasync` of the file, as
//! `msync(MS_SYNC)` would).
//!
//! `unsafe` is allowed here: `mmap`, `mremap` and `munmap` hand out and take back raw memory.
//! Each block says why it holds.
#![allow(unsafe_code)]

use std::fs::File;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::FallocateFlags;
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// A file of `len` bytes mapped `PROT_READ | PROT_WRITE`, `MAP_SHARED`, as one byte slice.
///
/// The slice is `&mut` to this process. That is sound only while no other process writes or
/// truncates the file, which is why it is for files the holder owns and has locked: private
/// (`0600`) and under an exclusive `flock`. A process of the same user that ignores the lock
/// could still change the bytes under us, as it could for any file a program owns; truncating
/// the file would make our next access fault.
pub struct MappedFile {
    file: File,
    ptr: NonNull<u8>,
    len: usize,
    /// Where the mapping is, for [`Populator`]s on other threads: `None` until one is made.
    /// Updated under its lock before the mapping moves or goes away.
    shared: Option<Arc<Mutex<Region>>>,
}

/// Where a mapping lives, as a [`Populator`] sees it: `len` 0 once it is unmapped.
#[derive(Debug)]
struct Region {
    addr: usize,
    len: usize,
}

/// Faults pages of a [`MappedFile`] in from another thread, so that its owner's writes take no
/// page fault (made by [`MappedFile::populator`]).
///
/// It holds no reference into the mapping: under a lock the owner takes before it moves
/// (`grow`) or unmaps it, it hands the kernel the mapping's current address. After the
/// mapping is gone it does nothing.
#[derive(Clone, Debug)]
pub struct Populator {
    region: Arc<Mutex<Region>>,
}

/// Locks a region; a thread that panicked holding it left the addresses consistent (they are
/// updated in one assignment), so a poisoned lock is still used.
fn lock(region: &Mutex<Region>) -> MutexGuard<'_, Region> {
    region
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `madvise(addr + range, MADV_POPULATE_WRITE)`, the range clamped to `len` and widened to
/// whole pages. Returns where the populated range ends.
///
/// # Safety
/// `addr..addr + len` must be a live mapping of ours, writable, for the whole call.
unsafe fn populate(
    addr: usize,
    len: usize,
    range: std::ops::Range<usize>,
) -> std::io::Result<usize> {
    let page = rustix::param::page_size();
    let start = range.start.min(len) / page * page;
    let end = range.end.min(len);
    if start >= end {
        return Ok(end.max(start));
    }
    // SAFETY: `start..end` lies inside the live mapping (clamped; the caller vouches for
    // the mapping) and starts on a page boundary; populating changes no byte's value, only
    // whether its page is resident, so it races with no access of the owner's.
    let advised = unsafe {
        rustix::mm::madvise(
            (addr + start) as *mut std::ffi::c_void,
            end - start,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    };
    match advised {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(end),
        Err(e) => Err(e.into()),
    }
}

impl Populator {
    /// [`MappedFile::populate_for_writing`] from another thread: `madvise(MADV_POPULATE_WRITE)`
    /// over `range` of the mapping as it is now (clamped to it). Returns where the populated
    /// range ends (0 once the mapping is gone). The owner's `grow` and unmapping wait for it.
    pub fn populate_for_writing(&self, range: std::ops::Range<usize>) -> std::io::Result<usize> {
        let region = lock(&self.region);
        // SAFETY: under the lock the region is the live mapping (the owner updates it under
        // this lock before moving or unmapping it; `len` 0 once unmapped populates nothing).
        unsafe { populate(region.addr, region.len, range) }
    }
}

// SAFETY: the mapping is owned memory like a `Box<[u8]>`: moving it to another thread moves the
// only handle to it, and `&MappedFile` hands out only shared slices.
unsafe impl Send for MappedFile {}
// SAFETY: shared references give read-only access (`bytes`); writing needs `&mut self`.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// `fallocate(fd, 0, 0, len)` (the file grows to at least `len` bytes, every block
    /// reserved, new bytes zero), then `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
    /// 0)`. `file` must be open for reading and writing; `len` must not be zero.
    ///
    /// # References
    /// - [fallocate(2)](https://man7.org/linux/man-pages/man2/fallocate.2.html)
    /// - [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)
    pub fn new(file: File, len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Err(std::io::Error::other("cannot map zero bytes"));
        }
        rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, len as u64)?;
        // SAFETY: a fresh shared mapping at an address the kernel picks cannot alias any Rust
        // object; `file` is a regular file of at least `len` bytes (just allocated).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &file,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(Self {
            file,
            ptr,
            len,
            shared: None,
        })
    }

    /// A [`Populator`] for this mapping, to fault its pages in from another thread.
    pub fn populator(&mut self) -> Populator {
        let (addr, len) = (self.ptr.as_ptr() as usize, self.len);
        let region = self
            .shared
            .get_or_insert_with(|| Arc::new(Mutex::new(Region { addr, len })));
        Populator {
            region: region.clone(),
        }
    }

    /// Grows the file and the mapping to `new_len` bytes: `fallocate` the new part, then
    /// `mremap(MREMAP_MAYMOVE)` (the mapping may move; nothing borrowed from it survives the
    /// `&mut self`). A `new_len` not above the current one changes nothing.
    ///
    /// # References
    /// - [mremap(2)](https://man7.org/linux/man-pages/man2/mremap.2.html)
    pub fn grow(&mut self, new_len: usize) -> std::io::Result<()> {
        if new_len <= self.len {
            return Ok(());
        }
        rustix::fs::fallocate(
            &self.file,
            FallocateFlags::empty(),
            self.len as u64,
            (new_len - self.len) as u64,
        )?;
        // Populators wait while it moves, and see where it went.
        let mut region = self.shared.as_deref().map(lock);
        // SAFETY: `ptr..ptr+len` is our live mapping; `&mut self` guarantees no reference into
        // it exists while it moves (a populator holds none, and waits on the lock we hold);
        // the file now has `new_len` bytes behind the new size.
        let ptr = unsafe {
            rustix::mm::mremap(
                self.ptr.as_ptr().cast(),
                self.len,
                new_len,
                MremapFlags::MAYMOVE,
            )?
        };
        self.ptr =
            NonNull::new(ptr.cast()).ok_or_else(|| std::io::Error::other("mremap gave null"))?;
        self.len = new_len;
        if let Some(region) = region.as_mut() {
            **region = Region {
                addr: self.ptr.as_ptr() as usize,
                len: new_len,
            };
        }
        Ok(())
    }

    /// `madvise(MADV_POPULATE_WRITE)` over `range` (clamped to the mapping, widened to whole
    /// pages): faults the pages in writable now, so that the writes that come later take no
    /// page fault. It dirties them, so a sync writes them back (zeros, for preallocated space).
    /// Since Linux 5.14; on an older kernel (`EINVAL`) it does nothing.
    ///
    /// # References
    /// - [madvise(2)](https://man7.org/linux/man-pages/man2/madvise.2.html)
    pub fn populate_for_writing(&mut self, range: std::ops::Range<usize>) -> std::io::Result<()> {
        // SAFETY: `ptr..ptr+len` is our live, writable mapping while `self` lives.
        unsafe { populate(self.ptr.as_ptr() as usize, self.len, range) }.map(|_| ())
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes owned by `self`; see the type's
        // docs for why no other writer changes them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, to write.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and `&mut self` makes this the only reference into the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file, for `fdatasync` and `fstat`. Changing its length is for
    /// [`unmap_and_truncate`](Self::unmap_and_truncate) only.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Unmaps the file and cuts it to `len` bytes (dropping the preallocated space after the
    /// data); returns the file, still open (and so still locked).
    pub fn unmap_and_truncate(self, len: u64) -> std::io::Result<File> {
        let this = std::mem::ManuallyDrop::new(self);
        this.unmap();
        // SAFETY: `this` is never used or dropped again; its file and its populators' region
        // are moved out exactly once.
        let (file, shared) = unsafe { (std::ptr::read(&this.file), std::ptr::read(&this.shared)) };
        drop(shared);
        file.set_len(len)?;
        Ok(file)
    }

    fn unmap(&self) {
        // Populators wait for the unmapping, then find nothing to populate.
        let mut region = self.shared.as_deref().map(lock);
        if let Some(region) = region.as_mut() {
            region.len = 0;
        }
        // SAFETY: `ptr..ptr+len` is our mapping; it is unmapped once (by `Drop`, or by
        // `unmap_and_truncate`, which suppresses the `Drop`), and no slice borrowed from it can
        // outlive `self`. Failure would mean a bad range, which we never pass.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        self.unmap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn scratch() -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "shm-mapped-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn writes_through_the_mapping_are_in_the_file_and_survive_a_grow() {
        let (path, file) = scratch();
        let mut map = MappedFile::new(file, 4096).unwrap();
        assert!(map.bytes().iter().all(|&b| b == 0), "new space reads zero");
        map.bytes_mut()[..5].copy_from_slice(b"hello");
        map.grow(3 * 4096 + 7).unwrap();
        assert_eq!(map.len(), 3 * 4096 + 7);
        assert_eq!(&map.bytes()[..5], b"hello");
        map.bytes_mut()[3 * 4096..3 * 4096 + 5].copy_from_slice(b"world");
        let mut file = map.unmap_and_truncate(3 * 4096 + 5).unwrap();
        let mut all = Vec::new();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 3 * 4096 + 5);
        assert_eq!(&all[..5], b"hello");
        assert_eq!(&all[3 * 4096..], b"world");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_populator_on_another_thread_follows_a_grow_and_stops_at_the_unmapping() {
        let (path, file) = scratch();
        let mut map = MappedFile::new(file, 4096).unwrap();
        let populator = map.populator();
        assert_eq!(
            populator.populate_for_writing(0..1 << 20).unwrap(),
            4096,
            "clamped"
        );
        map.grow(64 * 4096).unwrap();
        let theirs = populator.clone();
        let populated = std::thread::spawn(move || theirs.populate_for_writing(4096..64 * 4096))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(populated, 64 * 4096, "it sees the grown mapping");
        map.bytes_mut()[63 * 4096] = 7;
        assert_eq!(map.bytes()[63 * 4096], 7, "populating changed no byte");
        drop(map);
        assert_eq!(
            populator.populate_for_writing(0..4096).unwrap(),
            0,
            "nothing to populate once unmapped"
        );
        std::fs::remove_file(path).unwrap();
    }
}
