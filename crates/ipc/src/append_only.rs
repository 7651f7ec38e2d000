//! An append-only table of records in shared memory: one writer appends records one at a time
//! and never rewrites one; any number of readers, in other processes, read the records
//! published so far. The market's title table (a title's id is its record's index) is one.
//!
//! The protocol is one release/acquire pair. The writer stores record `i`'s words (relaxed),
//! then stores `published = i + 1` with release; a reader loads `published` with acquire and
//! reads only records below it, whose words that acquire orders after the writer's stores.
//! Since an honest writer never touches a published record again, a reader may copy one once
//! and keep its copy: it never goes stale.
//!
//! The writer keeps its own count ([`Appender`]) and never reads `published` back, so a
//! process scribbling on the table cannot make the writer overwrite a record or write past
//! the end. A reader clamps what it loads to the table's length; what a record *holds* is the
//! reader's to validate, like every other word of shared memory.

use crate::record::{LinePair, Record, RecordWords};
use crate::sync::{AtomicU64, Ordering};

/// `N` records and the count of those published, on a line of its own (128 bytes) so the
/// writer's one store to it per append never moves a record's line.
#[repr(C)]
pub struct AppendOnly<const N: usize> {
    /// Records published: `0..published` are written whole and never change.
    published: LinePair<AtomicU64>,
    records: [Record; N],
}

impl<const N: usize> AppendOnly<N> {
    /// An empty table, for models and tests. In shared memory a table is zeroed bytes, which
    /// is an empty table.
    pub fn new_boxed() -> Box<Self> {
        Box::new(Self {
            published: LinePair(AtomicU64::new(0)),
            records: std::array::from_fn(|_| Record::new()),
        })
    }

    /// How many records a reader may read: the published count, acquired (every record below
    /// it is whole for this thread from here on), and clamped to `N` (the count is shared
    /// memory: a scribbler may have written anything there).
    pub fn published(&self) -> u32 {
        let published = self.published.0.load(Ordering::Acquire);
        published.min(N as u64) as u32
    }

    /// Record `index`, if it is below `published` (a count this thread acquired from
    /// [`published`](Self::published)). Relaxed loads: that acquire orders them.
    pub fn get(&self, index: u32, published: u32) -> Option<RecordWords> {
        if index >= published.min(N as u32) {
            return None;
        }
        Some(self.records[index as usize].load())
    }
}

/// The writer's end of an [`AppendOnly`] table: its own count of what it appended. There must
/// be one per table (the market's), as for a ring's producer.
#[derive(Debug)]
pub struct Appender {
    next: u32,
}

impl Appender {
    /// The writer of an empty table.
    pub fn new() -> Self {
        Self { next: 0 }
    }

    /// Records appended so far (the writer's own count, never read from the table).
    pub fn len(&self) -> u32 {
        self.next
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Appends `words` as the next record and publishes it; returns its index, or `None` if
    /// the table is full.
    pub fn append<const N: usize>(
        &mut self,
        table: &AppendOnly<N>,
        words: &RecordWords,
    ) -> Option<u32> {
        let index = self.next;
        let record = table.records.get(index as usize)?;
        // The words first, relaxed: nobody reads record `index` before `published` passes it.
        record.store(words);
        // Publish: release orders the words above before the new count, so a reader that
        // acquires a count above `index` reads the whole record.
        table
            .published
            .0
            .store(u64::from(index) + 1, Ordering::Release);
        self.next = index + 1;
        Some(index)
    }
}

impl Default for Appender {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::RECORD_WORDS;

    fn words(n: u64) -> RecordWords {
        [n; RECORD_WORDS]
    }

    #[test]
    fn records_are_read_as_appended_and_none_past_the_published_count_or_the_end() {
        let table = AppendOnly::<2>::new_boxed();
        let mut appender = Appender::new();
        assert_eq!(table.published(), 0);
        assert_eq!(table.get(0, 0), None);
        assert_eq!(appender.append(&table, &words(7)), Some(0));
        assert_eq!(appender.append(&table, &words(8)), Some(1));
        assert_eq!(appender.append(&table, &words(9)), None, "full");
        let published = table.published();
        assert_eq!(published, 2);
        assert_eq!(table.get(1, published), Some(words(8)));
        assert_eq!(table.get(2, published), None);
        assert_eq!(appender.len(), 2);
    }

    #[test]
    fn a_scribbled_count_is_clamped_to_the_table_and_the_writer_keeps_its_own() {
        let table = AppendOnly::<2>::new_boxed();
        let mut appender = Appender::new();
        table.published.0.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(table.published(), 2, "clamped");
        assert_eq!(table.get(5, u32::MAX), None);
        assert_eq!(appender.append(&table, &words(1)), Some(0), "not misled");
    }
}
