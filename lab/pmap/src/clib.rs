//! The C library calls whose behaviour the output depends on. procps's pmap is a glibc
//! program: what counts as printable, or as UTF-8, is whatever the user's locale says through
//! glibc. Calling glibc here makes our answers the same by
//! construction.
//!
//! `unsafe` is allowed here (the crate's only module with it): these are foreign C functions,
//! which Rust cannot check; each call says why its arguments and timing are sound.
#![allow(unsafe_code)]

use std::ffi::CStr;

/// `setlocale(LC_ALL, "")`: adopt the locale from the environment, as pmap does at start.
/// At most once per process (later calls do nothing). See
/// [`setlocale(3)`](https://man7.org/linux/man-pages/man3/setlocale.3.html).
pub fn adopt_environment_locale() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setlocale races with other threads' locale-dependent calls. `Once` makes
        // this the only call; its one caller, `main_with`, is documented to run before the
        // program starts any thread (pmap's `main` calls it first thing, and pmap never
        // starts one). The empty string is a valid NUL-terminated C string.
        unsafe {
            libc::setlocale(libc::LC_ALL, c"".as_ptr());
        }
    });
}

/// `nl_langinfo(CODESET)` is `UTF-8` (compared case-insensitively, as libproc2 does).
/// See [`nl_langinfo(3)`](https://man7.org/linux/man-pages/man3/nl_langinfo.3.html).
pub fn codeset_is_utf8() -> bool {
    // SAFETY: nl_langinfo returns a pointer to a NUL-terminated string owned by the C library,
    // valid until the next setlocale; we copy out of it at once.
    let codeset = unsafe { CStr::from_ptr(libc::nl_langinfo(libc::CODESET)) };
    codeset.to_bytes().eq_ignore_ascii_case(b"UTF-8")
}

/// `isprint(c)` in the current locale.
pub fn isprint(c: u8) -> bool {
    // SAFETY: isprint is defined for every unsigned char value.
    unsafe { libc::isprint(i32::from(c)) != 0 }
}

/// A System V shared-memory segment, created, attached and removed: only to learn which device
/// minor the kernel gives SysV segments (procps names such mappings `[ shmid=0x… ]`).
pub struct SysvProbe {
    id: i32,
    address: *mut libc::c_void,
}

impl SysvProbe {
    /// `shmget(IPC_PRIVATE, 42, IPC_CREAT | 0666)` then `shmat(id, NULL, SHM_RDONLY)`.
    /// See [`shmget(2)`](https://man7.org/linux/man-pages/man2/shmget.2.html).
    pub fn attach() -> Option<Self> {
        // SAFETY: plain system calls with valid arguments; no memory is passed in.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 42, libc::IPC_CREAT | 0o666) };
        if id == -1 {
            return None;
        }
        // SAFETY: a null address lets the kernel choose; the segment is read-only for us.
        let address = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
        let probe = Self { id, address };
        (address as isize != -1).then_some(probe)
    }

    pub fn address(&self) -> u64 {
        self.address as u64
    }
}

impl Drop for SysvProbe {
    /// `shmdt` and `shmctl(IPC_RMID)`: nothing is left behind.
    fn drop(&mut self) {
        // SAFETY: detaching the address shmat returned (or nothing if it failed) and removing
        // the segment we created; no Rust reference points into it.
        unsafe {
            if self.address as isize != -1 {
                libc::shmdt(self.address);
            }
            libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}
