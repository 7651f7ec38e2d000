//! Snapshots: the engine's whole state at one point of the journal, so a restart replays only
//! the records after it.
//!
//! A snapshot file is `JOURNAL.snap.NNNNNNNNNNNNNNNNNNNN` (the number of journal records it
//! covers, zero-padded so names sort by it) beside the journal:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `BKSNAPSH` |
//! | 4 | format version (2) |
//! | 4 | zero |
//! | 8 | body length |
//! | body | records covered, offset after them in their segment, last clock value, the engine's state, the recent trades, the receipts |
//! | 4 | CRC-32 of everything before it |
//!
//! Written crash-safe: a temporary file, `fsync`, `rename` over the final name, `fsync` of the
//! directory. A crash at any step leaves the previous snapshots as they were and at most a
//! temporary file, which the next writer replaces. Read distrustfully: a file that is short,
//! fails its checksum, or holds a value the engine would not accept is refused with the field
//! named, and the opener falls back to the snapshot before it.
//!
//! Version 2 has 128-bit client ids and the receipts (`engine::Receipts`); version 1 had a
//! next-client counter instead. An older snapshot is skipped with a warning, like a damaged one.

use std::fs::File;
use std::io::Write;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use engine::{
    BuyState, BuyTarget, ClientReceiptsState, Engine, EngineState, ListingState, Millis, OrderKind,
    OrderState, Receipt, Receipts, ReceiptsState, RequestId, Stats, Title, Trade,
    RECEIPTS_PER_CLIENT,
};

use crate::fields::{put_ids, put_title, Reader};
use crate::format::FormatError;

pub const MAGIC: [u8; 8] = *b"BKSNAPSH";
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 4;
/// Far more than any valid snapshot (100,000 orders of at most ~130 bytes each): a length
/// word past it is damage, not a reason to allocate.
const MAX_BODY: u64 = 1 << 30;

/// The store at one point of its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Journal records applied to reach this state (the command number it was taken at).
    pub commands: u64,
    /// Where the record after it starts in the segment file it was read from (for people
    /// reading a snapshot; opening checks the chain by command numbers).
    pub journal_offset: u64,
    /// The largest clock value applied; a market started from it runs its clock after this.
    pub last_now: Millis,
    pub engine: EngineState,
    /// The last trades, oldest first, for the published view.
    pub recent_trades: Vec<Trade>,
    /// What became of each client's recent orders.
    pub receipts: ReceiptsState,
}

/// Why a snapshot file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a bookstore snapshot (the first 8 bytes are not \"BKSNAPSH\")")]
    NotASnapshot,
    #[error(
        "snapshot format version {found} is not supported (this build reads version {VERSION})"
    )]
    Version { found: u32 },
    #[error("the file is {len} bytes, but its header says {expected}: cut short or grown")]
    Length { len: u64, expected: u64 },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("at byte {offset}: {field}: {problem}")]
    Field {
        offset: u64,
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    State(#[from] engine::StateError),
}

impl From<FormatError> for SnapshotError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Payload {
                offset,
                field,
                problem,
            } => SnapshotError::Field {
                offset,
                field,
                problem,
            },
            other => SnapshotError::Field {
                offset: other.offset().unwrap_or(0),
                field: "body",
                problem: other.to_string(),
            },
        }
    }
}

/// The file of the snapshot that covers `commands` records of `journal`.
pub fn path_for(journal: &Path, commands: u64) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(format!(".snap.{commands:020}"));
    PathBuf::from(name)
}

/// The snapshots of `journal`, newest (most records covered) first. Files whose names do not
/// parse are not snapshots and are left alone.
pub fn list(journal: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = crate::segments::numbered_siblings(journal, ".snap.")?;
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// A step of [`write`] at which the test-only fault point
/// `BOOKSTORE_TEST_SNAPSHOT_CRASH=before-write|after-write|after-file-sync|after-rename|after-dir-sync`
/// aborts the process, so tests can kill the writer at each step: nothing written; written
/// but not synced; synced but not renamed; renamed but the directory not synced; all done.
fn crash_point(step: &str) {
    if std::env::var("BOOKSTORE_TEST_SNAPSHOT_CRASH").is_ok_and(|s| s == step) {
        std::process::abort();
    }
}

/// Writes `bytes` (an encoded snapshot covering `commands` records) crash-safe beside
/// `journal`; returns its path. Durable when this returns.
pub fn write(journal: &Path, commands: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = path_for(journal, commands);
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    crash_point("before-write");
    {
        // A leftover of a crashed writer is ours to replace.
        let _ = std::fs::remove_file(&temp);
        let mut file = shm::file::open_private(&temp, shm::file::IfMissing::Create)?
            .expect("created if missing");
        file.write_all(bytes)?;
        crash_point("after-write");
        file.sync_all()?;
    }
    crash_point("after-file-sync");
    std::fs::rename(&temp, &path)?;
    // The moment after the rename is the moment before the directory's fsync.
    crash_point("after-rename");
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    crash_point("after-dir-sync");
    Ok(path)
}

/// Snapshots kept beside a journal: the newest, and the one a damaged newest falls back to.
pub const KEEP: usize = 2;

/// What [`store`] did.
#[derive(Debug)]
pub struct Stored {
    pub path: PathBuf,
    /// Journal segments deleted because the snapshots kept cover them.
    pub deleted_segments: Vec<PathBuf>,
}

/// Writes `snapshot` beside `journal` (crash-safe, see [`write`]), keeps the newest [`KEEP`],
/// and, if `delete_covered`, deletes the journal segments the older of those covers: neither
/// snapshot needs them. With one snapshot only, no segment is deleted: if it were damaged,
/// the journal is what is left to start from.
pub fn store(journal: &Path, snapshot: &Snapshot, delete_covered: bool) -> std::io::Result<Stored> {
    let path = write(journal, snapshot.commands, &encode(snapshot))?;
    prune(journal, KEEP)?;
    let mut deleted_segments = Vec::new();
    if delete_covered {
        if let Some((covered, _)) = list(journal)?.get(KEEP - 1) {
            deleted_segments = crate::segments::delete_covered(journal, *covered)?;
        }
    }
    Ok(Stored {
        path,
        deleted_segments,
    })
}

/// Removes all but the newest `keep` snapshots of `journal` (an older one is what a damaged
/// newest falls back to); returns how many it removed.
pub fn prune(journal: &Path, keep: usize) -> std::io::Result<usize> {
    let all = list(journal)?;
    let mut removed = 0;
    for (_, path) in all.iter().skip(keep) {
        std::fs::remove_file(path)?;
        removed += 1;
    }
    Ok(removed)
}

/// The snapshot as bytes, checksum included.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HEADER_LEN + 128 + 64 * (s.engine.listings.len() + s.engine.buys.len()));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // body length, filled in below
    for word in [s.commands, s.journal_offset, s.last_now] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let e = &s.engine;
    out.extend_from_slice(&e.capacity.to_le_bytes());
    out.extend_from_slice(&e.next_seq.to_le_bytes());
    out.extend_from_slice(&e.next_trade_id.to_le_bytes());
    let st = &e.stats;
    for word in [st.books_listed, st.books_sold, st.trades, st.revenue_cents] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&st.books_on_shelf.to_le_bytes());
    out.extend_from_slice(&st.resting_buys.to_le_bytes());
    out.extend_from_slice(&(e.listings.len() as u32).to_le_bytes());
    for l in &e.listings {
        out.extend_from_slice(&l.seq.to_le_bytes());
        put_ids(&mut out, l.seller, l.request);
        out.extend_from_slice(&l.price.cents().to_le_bytes());
        out.extend_from_slice(&l.qty.to_le_bytes());
        put_title(&mut out, Some(&l.title));
    }
    out.extend_from_slice(&(e.buys.len() as u32).to_le_bytes());
    for b in &e.buys {
        out.extend_from_slice(&b.seq.to_le_bytes());
        put_ids(&mut out, b.client, b.request);
        out.extend_from_slice(&b.max_price.cents().to_le_bytes());
        out.extend_from_slice(&b.filled.to_le_bytes());
        out.extend_from_slice(&b.remaining.to_le_bytes());
        out.push(u8::from(b.deadline.is_some()));
        out.extend_from_slice(&b.deadline.unwrap_or(0).to_le_bytes());
        put_title(
            &mut out,
            match &b.target {
                BuyTarget::Title(t) => Some(t),
                BuyTarget::Any => None,
            },
        );
    }
    out.extend_from_slice(&(s.recent_trades.len() as u32).to_le_bytes());
    for t in &s.recent_trades {
        out.extend_from_slice(&t.trade_id.to_le_bytes());
        out.extend_from_slice(&t.price.cents().to_le_bytes());
        out.extend_from_slice(&t.qty.to_le_bytes());
        put_ids(&mut out, t.seller, t.list_request);
        put_ids(&mut out, t.buyer, t.buy_request);
        put_title(&mut out, Some(&t.title));
    }
    put_receipts(&mut out, &s.receipts);
    let body_len = (out.len() - HEADER_LEN) as u64;
    out[16..24].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a snapshot, checking its frame, its checksum and every field (the engine state is
/// checked again, whole, by `Engine::from_state`).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN || bytes[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let body_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let expected = (HEADER_LEN + TRAILER_LEN) as u64 + body_len.min(MAX_BODY);
    if body_len > MAX_BODY || bytes.len() as u64 != expected {
        return Err(SnapshotError::Length {
            len: bytes.len() as u64,
            expected,
        });
    }
    let (framed, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(framed);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let mut r = Reader {
        bytes: &framed[HEADER_LEN..],
        offset: HEADER_LEN as u64,
    };
    let snapshot = read_body(&mut r)?;
    if !r.bytes.is_empty() {
        return Err(SnapshotError::Field {
            offset: (framed.len() - r.bytes.len()) as u64,
            field: "body",
            problem: format!("{} bytes after the last trade", r.bytes.len()),
        });
    }
    Ok(snapshot)
}

fn read_body(r: &mut Reader<'_>) -> Result<Snapshot, SnapshotError> {
    let commands = r.u64("commands")?;
    let journal_offset = r.u64("journal_offset")?;
    let last_now = r.u64("last_now")?;
    let capacity = r.u32("capacity")?;
    let next_seq = r.u64("next_seq")?;
    let next_trade_id = r.u64("next_trade_id")?;
    let books_listed = r.u64("books_listed")?;
    let books_sold = r.u64("books_sold")?;
    let trades = r.u64("trades")?;
    let revenue_cents = r.u64("revenue_cents")?;
    let books_on_shelf = r.u32("books_on_shelf")?;
    let resting_buys = r.u32("resting_buys")?;
    let count = counted(r, "listings", 1 << 17)?;
    let mut listings = Vec::with_capacity(count);
    for _ in 0..count {
        let seq = r.u64("listing seq")?;
        let (seller, request) = r.ids()?;
        let price = r.price("listing price")?;
        let qty = r.u32("listing qty")?;
        let title = needed_title(r, "listing title")?;
        listings.push(ListingState {
            seq,
            title,
            seller,
            request,
            price,
            qty,
        });
    }
    let count = counted(r, "buys", 1 << 24)?;
    let mut buys = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let seq = r.u64("buy seq")?;
        let (client, request) = r.ids()?;
        let max_price = r.price("buy max_price")?;
        let filled = r.u32("buy filled")?;
        let remaining = r.u32("buy remaining")?;
        let deadline = match r.u8("buy has_deadline")? {
            0 => {
                r.u64("buy deadline")?;
                None
            }
            1 => Some(r.u64("buy deadline")?),
            other => {
                return Err(r
                    .bad("buy has_deadline", &format!("{other} is not 0 or 1"))
                    .into())
            }
        };
        let target = r.title()?.map_or(BuyTarget::Any, BuyTarget::Title);
        buys.push(BuyState {
            seq,
            client,
            request,
            target,
            max_price,
            filled,
            remaining,
            deadline,
        });
    }
    let count = counted(r, "recent_trades", 1024)?;
    let mut recent_trades = Vec::with_capacity(count);
    for _ in 0..count {
        let trade_id = r.u64("trade id")?;
        let price = r.price("trade price")?;
        let qty = r.u32("trade qty")?;
        let (seller, list_request) = r.ids()?;
        let (buyer, buy_request) = r.ids()?;
        let title = needed_title(r, "trade title")?;
        recent_trades.push(Trade {
            trade_id,
            title,
            price,
            qty,
            seller,
            buyer,
            buy_request,
            list_request,
            pinned: None,
        });
    }
    let receipts = read_receipts(r)?;
    Ok(Snapshot {
        commands,
        journal_offset,
        last_now,
        receipts,
        engine: EngineState {
            capacity,
            next_seq,
            next_trade_id,
            stats: Stats {
                capacity,
                books_listed,
                books_sold,
                books_on_shelf,
                trades,
                revenue_cents,
                resting_buys,
            },
            listings,
            buys,
        },
        recent_trades,
    })
}

fn put_receipts(out: &mut Vec<u8>, receipts: &ReceiptsState) {
    out.extend_from_slice(&receipts.restarts.to_le_bytes());
    out.extend_from_slice(&(receipts.clients.len() as u32).to_le_bytes());
    for c in &receipts.clients {
        out.extend_from_slice(&c.client.0.to_le_bytes());
        out.extend_from_slice(&c.orphaned_at.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(c.receipts.len() as u32).to_le_bytes());
        for r in &c.receipts {
            out.extend_from_slice(&r.request.0.to_le_bytes());
            out.push(r.kind.code());
            let (state, sold_at_once) = r.state.code();
            out.push(state);
            out.extend_from_slice(&sold_at_once.to_le_bytes());
            out.extend_from_slice(&r.qty.to_le_bytes());
            out.extend_from_slice(&r.done.to_le_bytes());
            out.extend_from_slice(&r.spent_cents.to_le_bytes());
        }
    }
}

/// The receipts' fields; their rules are checked by `Receipts::from_state`.
fn read_receipts(r: &mut Reader<'_>) -> Result<ReceiptsState, SnapshotError> {
    let restarts = r.u64("receipts restarts")?;
    let count = counted(r, "receipts clients", 1 << 20)?;
    let mut clients = Vec::with_capacity(count.min(1 << 12));
    for _ in 0..count {
        let client = r.client()?;
        let orphaned_at = Some(r.u64("receipts orphaned_at")?).filter(|&n| n != 0);
        let n = counted(r, "receipts count", RECEIPTS_PER_CLIENT as u32)?;
        let mut receipts = Vec::with_capacity(n);
        for _ in 0..n {
            let request = RequestId(r.u64("receipt request")?);
            let kind = r.u8("receipt kind")?;
            let kind = OrderKind::from_code(kind)
                .ok_or_else(|| r.bad("receipt kind", &format!("{kind} is not 1 or 2")))?;
            let (code, sold_at_once) = (r.u8("receipt state")?, r.u32("receipt sold_at_once")?);
            let state = OrderState::from_code(kind, code, sold_at_once).ok_or_else(|| {
                let problem = format!(
                    "{code} (sold at once {sold_at_once}) is not a state of a {kind:?} order"
                );
                r.bad("receipt state", &problem)
            })?;
            receipts.push(Receipt {
                request,
                kind,
                state,
                qty: r.u32("receipt qty")?,
                done: r.u32("receipt done")?,
                spent_cents: r.u64("receipt spent_cents")?,
            });
        }
        clients.push(ClientReceiptsState {
            client,
            orphaned_at,
            receipts,
        });
    }
    Ok(ReceiptsState { restarts, clients })
}

/// A count word, refused past `max` before anything is allocated for it.
fn counted(r: &mut Reader<'_>, field: &'static str, max: u32) -> Result<usize, SnapshotError> {
    let n = r.u32(field)?;
    if n > max {
        return Err(r
            .bad(field, &format!("{n} is over the {max} a store can hold"))
            .into());
    }
    Ok(n as usize)
}

fn needed_title(r: &mut Reader<'_>, field: &'static str) -> Result<Title, SnapshotError> {
    r.title()?.ok_or_else(|| r.bad(field, "empty").into())
}

/// The newest snapshot of `journal` that is whole, fits this journal (the capacity agrees,
/// and its command number is within `available`: from the first command the segments hold to
/// the last) and rebuilds into a valid engine; each newer one that is not goes into `skipped`
/// with why.
pub(crate) fn newest_usable(
    journal: &Path,
    capacity: u32,
    available: RangeInclusive<u64>,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Option<(Snapshot, Engine, Receipts, PathBuf)> {
    let found = match list(journal) {
        Ok(found) => found,
        Err(e) => {
            skipped.push((
                journal.to_owned(),
                format!("cannot list its snapshots: {e}"),
            ));
            return None;
        }
    };
    for (_, path) in found {
        match usable_snapshot(&path, capacity, &available) {
            Ok((snapshot, engine, receipts)) => return Some((snapshot, engine, receipts, path)),
            Err(why) => skipped.push((path, why)),
        }
    }
    None
}

/// Whether the snapshot at `path` could start a replay of a journal of `capacity` whose
/// segments hold the commands in `available` (what `Journal::open` checks): it reads whole,
/// fits this journal and rebuilds a valid engine and receipts. `Err` says why not. For
/// `bookstore journal`, which reports every snapshot.
pub fn examine(
    path: &Path,
    capacity: u32,
    available: RangeInclusive<u64>,
) -> Result<Snapshot, String> {
    usable_snapshot(path, capacity, &available).map(|(snapshot, _, _)| snapshot)
}

fn usable_snapshot(
    path: &Path,
    capacity: u32,
    available: &RangeInclusive<u64>,
) -> Result<(Snapshot, Engine, Receipts), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let snapshot = decode(&bytes).map_err(|e| e.to_string())?;
    if snapshot.engine.capacity != capacity {
        return Err(format!(
            "it is of a store of capacity {}, the journal's is {capacity}",
            snapshot.engine.capacity
        ));
    }
    if !available.contains(&snapshot.commands) {
        return Err(format!(
            "it is at command {}, but the journal's segments hold commands {} to {}",
            snapshot.commands,
            available.start(),
            available.end()
        ));
    }
    let engine = Engine::from_state(&snapshot.engine).map_err(|e| e.to_string())?;
    let receipts = Receipts::from_state(&snapshot.receipts).map_err(|e| e.to_string())?;
    Ok((snapshot, engine, receipts))
}
