//! Somewhere besides the local journal that makes the market's batches durable: a replicated
//! stream (`--durability replicated`). The market hands it every committed batch and shows a
//! reply only once it acknowledged the batch too; the store's crates know it only through this
//! trait (the CLI plugs in the NATS JetStream replicator).

/// A committed batch of journal records, to be made durable elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingBatch {
    /// The command number of its first record.
    pub first_command: u64,
    /// Records in it.
    pub commands: u64,
    /// Where it ends in the journal (journal-wide, as `Journal::durable` counts).
    pub end: u64,
    /// The records, as the journal holds them.
    pub bytes: Vec<u8>,
}

/// What the market needs of a replicator.
pub trait Replication {
    /// Hands a batch over; returns at once. Batches come in journal order.
    fn publish(&mut self, batch: OutgoingBatch);
    /// The journal offset up to which every batch handed over is acknowledged.
    fn acked(&self) -> u64;
    /// Whether batches handed over wait for their acknowledgement.
    fn is_behind(&self) -> bool;
    /// Why it stopped for good (another writer took the stream over), once; after it nothing
    /// more is acknowledged, and the market stops.
    fn take_failure(&mut self) -> Option<String>;
}
