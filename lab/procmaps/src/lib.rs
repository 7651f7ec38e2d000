//! `/proc/PID/maps` and `/proc/PID/smaps`, parsed.
//!
//! Two levels:
//! - [`maps`] and [`smaps`]: a clean parser into typed records, for programs that want the
//!   facts (memlab's `allocate` finds which mapping holds an address with it);
//! - [`cscan`]: `fgets`/`sscanf` with C's exact semantics, for a drop-in that must print what a
//!   C tool prints byte for byte, quirks included (procps reads these files 1023 bytes at a time
//!   and scans each piece with `sscanf`).
//!
//! [`process`] reads the per-process facts such tools print next to the mappings.
//!
//! Architecture invariant: this crate reads `/proc` and parses; it formats nothing.

pub mod cscan;
pub mod maps;
pub mod process;
pub mod smaps;

pub use maps::{Mapping, MapsError};
pub use smaps::SmapsEntry;
