//! The lab's AccessMemory: an array of 20 integers (0, 2, …, 38) is allocated, printed,
//! freed, and read again through the dangling pointer, on purpose, in one `unsafe` block.
//!
//! With glibc 2.32 or later, `free` puts a small block into this thread's tcache, a per-size
//! singly linked list, and writes two words into the block itself:
//! - word 0, `next`: the next free block of this size, stored *mangled* by safe-linking:
//!   `stored = (address_of_the_field >> 12) XOR next`, so it looks like garbage;
//! - word 1, `key`: glibc's tcache key, one random number per process, used by `free` to catch
//!   a double free.
//!
//! The rest of the block keeps its old values. A later `malloc` of the same size takes the
//! block back (last freed, first reused) and clears `key`.
//!
//! `unsafe` is allowed here (the crate's only module with it) for the lesson itself: reading
//! a block after `free` is undefined behaviour that safe Rust refuses to compile, and the lab
//! asks us to do it once, in one block, and explain what we see.
#![allow(unsafe_code)]

use std::alloc::{alloc, dealloc, Layout};

use serde::Serialize;

pub const COUNT: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub glibc: Option<String>,
    pub address: u64,
    /// The integers as written.
    pub before: [i32; COUNT],
    /// The same memory read after `free`.
    pub after_free: [i32; COUNT],
    /// Word 0 after free, as stored and decoded.
    pub next_stored: u64,
    pub next_decoded: u64,
    /// Word 1 after free.
    pub key: u64,
    /// A second block of the same size, freed after the first: its `next` decodes to the first.
    pub second_address: u64,
    pub second_next_decoded: u64,
    pub second_key: u64,
    /// The next two allocations of this size, and the first block's words once it is reused.
    pub reused_first: u64,
    pub reused_second: u64,
    pub after_reuse: [i32; COUNT],
}

fn word(ints: &[i32; COUNT], index: usize) -> u64 {
    u64::from(ints[2 * index] as u32) | (u64::from(ints[2 * index + 1] as u32) << 32)
}

/// safe-linking's `REVEAL_PTR`: the field's own address, shifted, XORed back out.
pub fn reveal(stored: u64, field_address: u64) -> u64 {
    stored ^ (field_address >> 12)
}

fn glibc_version() -> Option<String> {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    v.to_str().ok().map(str::to_owned)
}

/// Reads `COUNT` ints at `p` with volatile reads.
///
/// # Safety
/// `p` must point to `COUNT` readable ints. The experiment calls it on freed blocks too, which
/// breaks that contract on purpose: see its block's comment.
unsafe fn read_ints(p: *const i32) -> [i32; COUNT] {
    // SAFETY: the caller's contract (above).
    std::array::from_fn(|i| unsafe { p.add(i).read_volatile() })
}

/// Runs the experiment once.
pub fn run() -> Experiment {
    let layout = Layout::array::<i32>(COUNT).expect("20 ints fit a layout");
    // SAFETY: none: this block is NOT sound, on purpose; it is the lesson. Everything below that
    // touches `first` or `second` after `dealloc` is a use-after-free: undefined behaviour in
    // Rust as in C. It is here because
    // the lab is about what a C program sees when it does this. Volatile reads keep the
    // compiler from reasoning about the freed memory (it cannot assume the reads away), and
    // the memory stays mapped (a small freed block stays in the process's heap), so on glibc
    // the reads return whatever `free` left there. Safe Rust rejects this program: see the
    // crate docs' compile_fail examples.
    unsafe {
        let first = alloc(layout).cast::<i32>();
        let second = alloc(layout).cast::<i32>();
        assert!(!first.is_null() && !second.is_null(), "allocation failed");
        for i in 0..COUNT {
            first.add(i).write_volatile(2 * i as i32);
        }
        let before = read_ints(first);
        dealloc(first.cast(), layout);
        let after_free = read_ints(first);
        dealloc(second.cast(), layout);
        let second_words = read_ints(second);
        let reused_first = alloc(layout);
        let reused_second = alloc(layout);
        let after_reuse = read_ints(first);
        dealloc(reused_first, layout);
        dealloc(reused_second, layout);
        let address = first as u64;
        Experiment {
            glibc: glibc_version(),
            address,
            before,
            after_free,
            next_stored: word(&after_free, 0),
            next_decoded: reveal(word(&after_free, 0), address),
            key: word(&after_free, 1),
            second_address: second as u64,
            second_next_decoded: reveal(word(&second_words, 0), second as u64),
            second_key: word(&second_words, 1),
            reused_first: reused_first as u64,
            reused_second: reused_second as u64,
            after_reuse,
        }
    }
}

/// The experiment told as the lab's output.
pub fn report(e: &Experiment) -> String {
    let mut s = String::new();
    let glibc = e.glibc.as_deref().unwrap_or("unknown");
    s += &format!(
        "allocated 20 ints (80 bytes) at {:#x}, glibc {glibc}\n",
        e.address
    );
    s += &format!("before free: {:?}\n", e.before);
    s += &format!("after free:  {:?}\n\n", e.after_free);
    s += "what changed, and why:\n";
    for i in 0..COUNT {
        let changed = e.before[i] != e.after_free[i];
        let note = match i {
            0 => format!(
                "word 0 (ints 0-1) is tcache's `next`, stored mangled: {:#018x} = (address >> 12) XOR next, so next = {:#x}{}",
                e.next_stored,
                e.next_decoded,
                if e.next_decoded == 0 { " (end of list: no other free block of this size was waiting)".to_string() } else { " (another free block of this size, freed earlier)".to_string() }
            ),
            1 => "  (upper half of `next`)".into(),
            2 => format!(
                "word 1 (ints 2-3) is tcache's `key`: {:#018x}, this process's random tcache key{}",
                e.key,
                if e.key == e.second_key { " (the second freed block has the same one); free() checks it to catch a double free" } else { "" }
            ),
            3 => "  (upper half of `key`)".into(),
            _ if !changed => "unchanged: free() leaves the rest of the block as it was".into(),
            _ => "changed (not by tcache: something else reused this memory)".into(),
        };
        if i <= 4 || changed {
            s += &format!(
                "  int {i:>2}: {:>11} -> {:>11}  {note}\n",
                e.before[i], e.after_free[i]
            );
        }
    }
    if e.before[5..] == e.after_free[5..] {
        s += "  ints 5-19: unchanged (10 … 38 as written)\n";
    }
    s.push('\n');
    s += &format!(
        "a second block of 80 bytes at {:#x}, freed after the first: its `next` decodes to {:#x}{}\n",
        e.second_address,
        e.second_next_decoded,
        if e.second_next_decoded == e.address { ", the first block: the free list links them, newest first" } else { "" }
    );
    s += &format!(
        "two new allocations of 80 bytes got {:#x} and {:#x}: {}\n",
        e.reused_first,
        e.reused_second,
        if e.reused_first == e.second_address && e.reused_second == e.address {
            "the two freed blocks again, last freed first"
        } else {
            "not simply the freed blocks (other allocations of this size came between)"
        }
    );
    s += &format!(
        "the first block, handed out again: {:?}\n  malloc cleared `key` (now {:#x}); `next` is left as it was; nothing else was reset\n",
        e.after_reuse,
        word(&e.after_reuse, 1)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_undoes_safe_linking() {
        let field = 0x5555_5555_a2a0u64;
        let next = 0x5555_5555_a300u64;
        assert_eq!(reveal((field >> 12) ^ next, field), next);
    }
}
