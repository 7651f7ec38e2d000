//! The memory lab: `allocate` shows where blocks of growing size land, `access_freed` shows
//! what a freed block holds afterwards and why.
//!
//! Both use the system allocator (glibc's malloc on Linux) and read `/proc/self/maps` through
//! [`procmaps`].
//!
//! The use-after-free that `access-freed` commits on purpose in an `unsafe` block cannot be
//! written in safe Rust. The same program, safely, does not compile:
//!
//! ```compile_fail,E0382
//! let numbers: Vec<i32> = (0..20).map(|i| i * 2).collect();
//! println!("{numbers:?}");
//! drop(numbers); // "free"
//! println!("{}", numbers[0]); // error[E0382]: borrow of moved value: `numbers`
//! ```
//!
//! and neither does keeping a reference past the free:
//!
//! ```compile_fail,E0505
//! let numbers: Vec<i32> = (0..20).map(|i| i * 2).collect();
//! let first = &numbers[0];
//! drop(numbers); // error[E0505]: cannot move out of `numbers` because it is borrowed
//! println!("{first}");
//! ```

pub mod access_freed;
pub mod allocate;
pub mod plot;
pub mod size;
