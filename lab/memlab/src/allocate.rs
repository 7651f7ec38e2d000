//! The lab's AllocateMemory: blocks of growing size, each written to page by page so that it is
//! resident, and after each one: where it landed, the process's RSS and heap size.
//!
//! With glibc, a block is carved out of `[heap]` (which `malloc` grows with `brk`) while the
//! heap's free top has room for it; a block at or above the mmap threshold (`M_MMAP_THRESHOLD`,
//! 128 KiB by default) that does not fit there gets its own anonymous mapping from `mmap`. The
//! kernel merges neighbouring anonymous mappings, so several such blocks can show as one line
//! of `pmap`.

use procmaps::Mapping;
use serde::Serialize;

use crate::size::human;

/// Where a block landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// Inside `[heap]`, the brk area.
    Heap,
    /// An anonymous mapping outside `[heap]`: glibc's mmap path.
    Mmap,
    /// A mapping with a file behind it (not expected for malloc).
    Other,
}

impl Region {
    pub fn describe(self) -> &'static str {
        match self {
            Region::Heap => "[heap] (grown by brk)",
            Region::Mmap => "an anonymous mapping (mmap)",
            Region::Other => "a file mapping (unexpected)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub size: usize,
    pub address: u64,
    pub region: Region,
    pub mapping_start: u64,
    pub mapping_end: u64,
    pub mapping_name: String,
    pub rss_kib: u64,
    pub heap_kib: u64,
}

/// The sizes the lab walks through: `from`, `from × factor`, … up to `to`.
pub fn sizes(from: usize, to: usize, factor: usize) -> Vec<usize> {
    let mut v = vec![];
    let mut s = from;
    while s <= to {
        v.push(s);
        match s.checked_mul(factor) {
            Some(next) if next > s => s = next,
            _ => break,
        }
    }
    v
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn classify(mapping: &Mapping) -> Region {
    if mapping.pathname == b"[heap]" {
        Region::Heap
    } else if mapping.is_anonymous() {
        Region::Mmap
    } else {
        Region::Other
    }
}

/// This machine's memory (`MemTotal` in `/proc/meminfo`), in bytes.
pub fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// This process's address-space limit (`RLIMIT_AS`, as `/proc/self/limits` shows it).
fn address_space_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max address space"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .map_or_else(
            || "unknown".into(),
            |soft| match soft.parse::<usize>() {
                Ok(bytes) => human(bytes),
                Err(_) => soft,
            },
        )
}

/// Allocates one block, writes every byte (so every page is resident), and describes it. The
/// block is returned so the caller keeps it alive: the lab's RSS grows step by step. A failed
/// allocation is an error naming the size and the address-space limit, not an abort.
pub fn step(size: usize) -> Result<(Vec<u8>, Step), String> {
    let mut block = Vec::new();
    block.try_reserve_exact(size).map_err(|_| {
        format!(
            "allocating {} failed: out of memory (address-space limit: {})",
            human(size),
            address_space_limit()
        )
    })?;
    // Filling with 1s is malloc + memset; zeros could come from calloc, whose fresh mmap pages
    // are never touched and so never become resident.
    block.resize(size, 1u8);
    let address = block.as_ptr() as u64;
    let maps = procmaps::maps::read("self").map_err(|e| e.to_string())?;
    let mapping = maps
        .iter()
        .find(|m| m.contains(address))
        .ok_or("no mapping holds the block")?;
    let heap = maps
        .iter()
        .find(|m| m.pathname == b"[heap]")
        .map_or(0, |m| m.size() / 1024);
    let step = Step {
        size,
        address,
        region: classify(mapping),
        mapping_start: mapping.start,
        mapping_end: mapping.end,
        mapping_name: if mapping.pathname.is_empty() {
            "[anonymous]".into()
        } else {
            mapping.pathname_lossy()
        },
        rss_kib: rss_kib(),
        heap_kib: heap,
    };
    Ok((block, step))
}

/// Where the switch from heap to own mappings happened: the last heap block and the first
/// block with a mapping of its own after it.
pub fn switch(steps: &[Step]) -> Option<(usize, usize)> {
    steps.windows(2).find_map(|w| {
        (w[0].region == Region::Heap && w[1].region == Region::Mmap)
            .then_some((w[0].size, w[1].size))
    })
}

pub fn table_header() -> String {
    format!(
        "{:>4}  {:>9}  {:>18}  {:<34} {:<36} {:>10}  {:>10}",
        "step", "size", "address", "landed in", "mapping", "RSS", "heap"
    )
}

pub fn table_row(n: usize, s: &Step) -> String {
    let mapping = format!(
        "{:x}-{:x} ({})",
        s.mapping_start,
        s.mapping_end,
        human((s.mapping_end - s.mapping_start) as usize)
    );
    format!(
        "{:>4}  {:>9}  {:>#18x}  {:<34} {:<36} {:>10}  {:>10}",
        n,
        human(s.size),
        s.address,
        s.region.describe(),
        mapping,
        human(s.rss_kib as usize * 1024),
        human(s.heap_kib as usize * 1024)
    )
}

pub fn summary(steps: &[Step]) -> String {
    match switch(steps) {
        Some((heap, own)) => format!(
            "Blocks up to {} came from [heap], which malloc grows with brk; from {} on, each block came from \
             mmap, an anonymous mapping of its own. glibc takes a block from the heap's free top while it fits; \
             one at or above its mmap threshold (M_MMAP_THRESHOLD, 128 KiB by default) that does not fit is \
             mapped on its own. (The kernel merges neighbouring anonymous mappings, so several blocks may share \
             one line of pmap.) Run `pmap -x {}` with --pause or --hold to see both kinds.",
            human(heap),
            human(own),
            std::process::id()
        ),
        None if steps.iter().all(|s| s.region == Region::Heap) => {
            "Every block landed in [heap]: none reached glibc's mmap threshold (128 KiB by default); try a larger --to.".into()
        }
        None => "No switch from [heap] to own mappings was seen in this range; try --from 1K.".into(),
    }
}

/// Why the heap column can grow on a step whose block did not land there.
pub const HEAP_NOTE: &str = "(The heap column also counts memlab's own bookkeeping: each step reads /proc/self/maps into \
the heap and keeps the step's row, so [heap] can grow a little on a step whose block went to its own mapping.)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_double_up_to_the_limit() {
        assert_eq!(sizes(1024, 8192, 2), vec![1024, 2048, 4096, 8192]);
        assert_eq!(sizes(1024, 1000, 2), Vec::<usize>::new());
        assert_eq!(sizes(usize::MAX / 2 + 1, usize::MAX, 2).len(), 1);
    }
}
