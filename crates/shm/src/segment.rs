//! Named POSIX shared-memory objects, mapped into this process.
//!
//! `unsafe` is allowed here, and only here among the market's OS wrappers: `mmap` and
//! `munmap` hand out and take back raw memory, and the mapping is read by raw pointer (typed
//! views in `bookstore::shared`, volatile byte copies for dumps). Each block says why it holds.
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FallocateFlags, Mode as RawMode};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm::OFlags;

use crate::ShmName;

/// Permission bits of a new object (`0600`, `0660`, ...): only the nine `rwx` bits are allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(u32);

impl Mode {
    /// Owner read/write only: the default for a store.
    pub const OWNER_ONLY: Mode = Mode(0o600);

    pub fn new(bits: u32) -> Option<Self> {
        (bits & !0o777 == 0).then_some(Self(bits))
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// True when users other than the owner and its group may read or write.
    pub fn is_world_accessible(self) -> bool {
        self.0 & 0o007 != 0
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// Parses an octal mode such as `0600` or `660`.
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let bits = u32::from_str_radix(digits, 8)
            .map_err(|_| format!("{s:?} is not an octal mode such as 0600"))?;
        Mode::new(bits).ok_or_else(|| format!("{s:?} has bits outside 0777"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why [`Segment::create`] failed. On every error, nothing is left in `/dev/shm`.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("shared-memory object {0} already exists")]
    AlreadyExists(ShmName),
    #[error("not enough room in /dev/shm for {size} bytes (is the tmpfs full or limited?)")]
    NoSpace { size: usize },
    #[error("permission denied creating {0}")]
    PermissionDenied(ShmName),
    #[error("{op} failed: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Why [`Segment::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no shared-memory object named {0}")]
    NotFound(ShmName),
    #[error("permission denied opening {0}")]
    PermissionDenied(ShmName),
    #[error("{name} belongs to uid {owner}, not to uid {expected}: refusing to trust it")]
    WrongOwner {
        name: ShmName,
        owner: u32,
        expected: u32,
    },
    #[error("{name} is {size} bytes, smaller than the {min} bytes a valid object has")]
    TooSmall {
        name: ShmName,
        size: usize,
        min: usize,
    },
    #[error("{op} failed: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Ownership and permissions of an object, as `fstat(2)` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub owner_uid: u32,
    pub group_gid: u32,
    pub mode: Mode,
    pub size: usize,
}

/// Whose object an open accepts. An object of another user is refused before it is mapped
/// unless the caller asks for `Anyone`, and then must decide itself whether to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Only an object owned by this uid.
    Is(u32),
    /// Any owner (the kernel's permission check still applies).
    Anyone,
}

/// How an object is opened and mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    ReadWrite,
}

/// A named shared-memory object mapped read-write (or read-only) into this process.
///
/// The mapping lives as long as the value; dropping it unmaps but does not unlink.
pub struct Segment {
    name: ShmName,
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the segment is a plain region of shared memory; all access from other threads goes
// through raw pointers that callers must use with atomics, exactly as with other processes.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out the base pointer and length.
unsafe impl Sync for Segment {}

impl Segment {
    /// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, mode)`, then `fchmod`, `ftruncate`,
    /// `fallocate` and `mmap(MAP_SHARED)`.
    ///
    /// The object is created exclusively: an existing one is never adopted. `fchmod` sets the
    /// exact `mode` whatever the umask is. `fallocate` reserves every page now, so a full
    /// `/dev/shm` is an error here rather than a `SIGBUS` later. The new memory is zeroed.
    ///
    /// See [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html).
    pub fn create(name: &ShmName, size: usize, mode: Mode) -> Result<Self, CreateError> {
        let fd = rustix::shm::open(
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            RawMode::from_raw_mode(mode.bits()),
        )
        .map_err(|e| match e {
            Errno::EXIST => CreateError::AlreadyExists(name.clone()),
            Errno::ACCESS | Errno::PERM => CreateError::PermissionDenied(name.clone()),
            e => CreateError::Os {
                op: "shm_open",
                source: e.into(),
            },
        })?;
        // From here on the name exists: remove it again if anything below fails.
        let unlink_on_error = |err: CreateError| {
            let _ = rustix::shm::unlink(name.as_str());
            err
        };
        let setup = || -> Result<(), CreateError> {
            rustix::fs::fchmod(&fd, RawMode::from_raw_mode(mode.bits())).map_err(|e| {
                CreateError::Os {
                    op: "fchmod",
                    source: e.into(),
                }
            })?;
            rustix::fs::ftruncate(&fd, size as u64).map_err(|e| CreateError::Os {
                op: "ftruncate",
                source: e.into(),
            })?;
            rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, size as u64).map_err(|e| match e
            {
                Errno::NOSPC => CreateError::NoSpace { size },
                e => CreateError::Os {
                    op: "fallocate",
                    source: e.into(),
                },
            })
        };
        setup().map_err(unlink_on_error)?;
        let ptr = map(&fd, size, Access::ReadWrite).map_err(|e| {
            unlink_on_error(CreateError::Os {
                op: "mmap",
                source: e.into(),
            })
        })?;
        Ok(Self {
            name: name.clone(),
            fd,
            ptr,
            len: size,
            writable: true,
        })
    }

    /// `shm_open(name, O_RDWR)`, `fstat`, then `mmap(PROT_READ | PROT_WRITE, MAP_SHARED)` of the
    /// whole object.
    ///
    /// Refuses an object not owned as `owner` requires, or smaller than `min_size`, before mapping
    /// it: a client must not trust memory that someone else could have prepared.
    ///
    /// # References
    /// - [shm_open(3)](https://man7.org/linux/man-pages/man3/shm_open.3.html)
    /// - [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)
    pub fn open_read_write(
        name: &ShmName,
        owner: Owner,
        min_size: usize,
    ) -> Result<Self, OpenError> {
        Self::open(name, Access::ReadWrite, owner, min_size)
    }

    /// `shm_open(name, O_RDONLY)`, `fstat`, then `mmap(PROT_READ, MAP_SHARED)` of the whole
    /// object: for observers that must never write (`inspect`, a market examining a name).
    ///
    /// The same checks as [`open_read_write`](Self::open_read_write). Memory mapped this way
    /// may only be read with relaxed atomic loads (Rust's atomics docs, "Atomic accesses to
    /// read-only memory"); an acquire load is a relaxed load followed by `fence(Acquire)`.
    pub fn open_read_only(
        name: &ShmName,
        owner: Owner,
        min_size: usize,
    ) -> Result<Self, OpenError> {
        Self::open(name, Access::ReadOnly, owner, min_size)
    }

    fn open(
        name: &ShmName,
        access: Access,
        owner: Owner,
        min_size: usize,
    ) -> Result<Self, OpenError> {
        let flags = match access {
            Access::ReadWrite => OFlags::RDWR,
            Access::ReadOnly => OFlags::RDONLY,
        };
        let fd =
            rustix::shm::open(name.as_str(), flags, RawMode::empty()).map_err(|e| match e {
                Errno::NOENT => OpenError::NotFound(name.clone()),
                Errno::ACCESS | Errno::PERM => OpenError::PermissionDenied(name.clone()),
                e => OpenError::Os {
                    op: "shm_open",
                    source: e.into(),
                },
            })?;
        let stat = stat_fd(&fd).map_err(|e| OpenError::Os {
            op: "fstat",
            source: e.into(),
        })?;
        if let Owner::Is(expected) = owner {
            if stat.owner_uid != expected {
                return Err(OpenError::WrongOwner {
                    name: name.clone(),
                    owner: stat.owner_uid,
                    expected,
                });
            }
        }
        if stat.size < min_size {
            return Err(OpenError::TooSmall {
                name: name.clone(),
                size: stat.size,
                min: min_size,
            });
        }
        let ptr = map(&fd, stat.size, access).map_err(|e| OpenError::Os {
            op: "mmap",
            source: e.into(),
        })?;
        Ok(Self {
            name: name.clone(),
            fd,
            ptr,
            len: stat.size,
            writable: access == Access::ReadWrite,
        })
    }

    pub fn name(&self) -> &ShmName {
        &self.name
    }

    /// The first byte of the mapping; valid for [`len`](Self::len) bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `fchown(fd, -1, gid)`: gives the object to group `gid` (the owner stays), so that a
    /// mode such as `0660` shares it with that group. The caller must be the owner and, unless
    /// root, a member of the group.
    ///
    /// # References
    /// - [fchown(2)](https://man7.org/linux/man-pages/man2/fchown.2.html)
    pub fn set_group(&self, gid: u32) -> std::io::Result<()> {
        let gid = rustix::process::Gid::from_raw(gid);
        Ok(rustix::fs::fchown(&self.fd, None, Some(gid))?)
    }

    /// `fstat(2)` on the object: owner, permission bits and size as they are now.
    pub fn stat(&self) -> std::io::Result<Stat> {
        stat_fd(&self.fd).map_err(Into::into)
    }

    /// The 8-byte word at `offset` as an atomic, for protocols between processes that use
    /// nothing else of the object (benchmarks, tests). Panics if `offset` is out of bounds or
    /// not 8-aligned.
    pub fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.word_at(offset)
    }

    /// The 4-byte word at `offset` as an atomic (a futex word), as [`atomic_u64`](Self::atomic_u64).
    pub fn atomic_u32(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        self.word_at(offset)
    }

    /// The word of type `W` (an atomic integer) at `offset`.
    fn word_at<W: AtomicWord>(&self, offset: usize) -> &W {
        let size = std::mem::size_of::<W>();
        assert!(self.writable, "a shared word needs a read-write mapping");
        assert!(
            offset + size <= self.len && offset % size == 0,
            "offset {offset} in bounds and aligned"
        );
        // SAFETY: in bounds and aligned to the word's size, which is its alignment (asserted;
        // the mapping is page-aligned). An atomic integer is valid for any bit pattern and
        // other processes can only change it atomically or through the same kind of reference.
        // The reference borrows `self`, so it cannot outlive the mapping.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<W>() }
    }

    /// The object's bytes copied out with volatile reads, for dumps of memory that other
    /// processes may be changing.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        (0..self.len)
            // SAFETY: `i < len`, so the pointer stays inside the live mapping; a volatile byte
            // read of shared memory cannot tear and tolerates concurrent writers.
            .map(|i| unsafe { self.ptr.as_ptr().add(i).read_volatile() })
            .collect()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned, and nothing borrowed from the
        // mapping outlives `self` (callers borrow through `&self`).
        unsafe {
            let _ = rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.len)
            .finish()
    }
}

/// `shm_unlink(3)`: removes the name; mappings stay valid until unmapped.
pub fn unlink(name: &ShmName) -> std::io::Result<()> {
    rustix::shm::unlink(name.as_str()).map_err(Into::into)
}

/// The effective uid of this process (`geteuid(2)`), the owner a client expects by default.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn stat_fd(fd: impl AsFd) -> Result<Stat, Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok(Stat {
        owner_uid: st.st_uid,
        group_gid: st.st_gid,
        mode: Mode(st.st_mode & 0o777),
        size: usize::try_from(st.st_size).unwrap_or(0),
    })
}

fn map(fd: &OwnedFd, len: usize, access: Access) -> Result<NonNull<u8>, Errno> {
    if len == 0 {
        return Err(Errno::INVAL);
    }
    let prot = match access {
        Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        Access::ReadOnly => ProtFlags::READ,
    };
    // SAFETY: a fresh shared mapping at an address the kernel picks cannot alias any Rust
    // object; `fd` is a valid shared-memory descriptor of at least `len` bytes.
    let ptr =
        unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0)? };
    NonNull::new(ptr.cast()).ok_or(Errno::INVAL)
}

/// Atomic integers [`Segment::word_at`] may hand out: valid for any bit pattern, aligned to
/// their size.
trait AtomicWord {}
impl AtomicWord for std::sync::atomic::AtomicU32 {}
impl AtomicWord for std::sync::atomic::AtomicU64 {}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> ShmName {
        ShmName::new(&format!("/shm-test-{tag}-{}", std::process::id())).unwrap()
    }

    #[test]
    fn create_is_exclusive_and_open_sees_the_same_bytes() {
        let name = unique("excl");
        let a = Segment::create(&name, 4096, Mode::OWNER_ONLY).unwrap();
        assert!(matches!(
            Segment::create(&name, 4096, Mode::OWNER_ONLY),
            Err(CreateError::AlreadyExists(_))
        ));
        // SAFETY: test-only write inside the 4096-byte mapping.
        unsafe { a.as_ptr().add(10).write_volatile(42) };
        let b = Segment::open_read_only(&name, Owner::Is(effective_uid()), 4096).unwrap();
        assert_eq!(b.snapshot_bytes()[10], 42);
        unlink(&name).unwrap();
    }

    #[test]
    fn create_sets_the_exact_mode_whatever_the_umask() {
        let name = unique("mode");
        let seg = Segment::create(&name, 4096, Mode::new(0o640).unwrap()).unwrap();
        assert_eq!(seg.stat().unwrap().mode, Mode::new(0o640).unwrap());
        unlink(&name).unwrap();
    }

    #[test]
    fn open_refuses_an_object_that_is_too_small_or_owned_by_someone_else() {
        let name = unique("small");
        let _seg = Segment::create(&name, 4096, Mode::OWNER_ONLY).unwrap();
        assert!(matches!(
            Segment::open_read_only(&name, Owner::Is(effective_uid()), 8192),
            Err(OpenError::TooSmall { size: 4096, .. })
        ));
        assert!(matches!(
            Segment::open_read_only(&name, Owner::Is(effective_uid() + 1), 0),
            Err(OpenError::WrongOwner { .. })
        ));
        unlink(&name).unwrap();
    }

    #[test]
    fn mode_parses_octal_and_rejects_extra_bits() {
        assert_eq!("0600".parse::<Mode>().unwrap().bits(), 0o600);
        assert_eq!("660".parse::<Mode>().unwrap().bits(), 0o660);
        assert!("4777".parse::<Mode>().is_err());
        assert!("rw".parse::<Mode>().is_err());
        assert!("0666".parse::<Mode>().unwrap().is_world_accessible());
    }
}
