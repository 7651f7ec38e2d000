//! The journal's bytes: a file header, then records, each `length | !length | crc32 | payload`.
//!
//! Pure functions over byte slices (no file I/O), so the reader can be fuzzed and unit-tested.
//!
//! ```text
//! file header (32 bytes)  "BKJOURNL" | version u32 | capacity u32 | first u64 | crc32 of the 24 bytes before | 0u32
//! record                  len u32 | !len u32 | crc32(payload) u32 | payload (len bytes, ≤ 256)
//! payload                 now u64 | tag u8 | fields (little-endian)
//!   1 List        client u128, request u64, price u64, qty u32, title_len u8, title
//!   2 Buy         client u128, request u64, max_price u64, qty u32, deadline_flag u8,
//!                 deadline u64, title_len u8 (0 = any title), title
//!   3 Cancel      client u128, request u64
//!   4 Expire
//!   5 ClientGone  client u128
//!   6 Restart
//! ```
//!
//! A journal is a chain of segment files (see `segments`): `first` is the command number of
//! the segment's first record, so a missing segment shows as a gap between one segment's end
//! and the next one's first.
//!
//! Version 3 added `first` (and the header grew to 32 bytes). Version 2 files are still read,
//! as a segment whose first record is command 0 (their 24-byte header has no `first`): a
//! version 2 journal carries on as the first segment of a version 3 chain. Version 2 widened
//! client ids to the 128 bits a client chooses (version 1's were the market's 64-bit counter)
//! and added `Restart`. A version 1 journal is refused by name; its store can be started
//! afresh with `--fresh`, which keeps the old file aside.
//!
//! The length is stored twice (`len` and its complement) so that a damaged length is told apart
//! from a blank: zeros where a record would start disagree (`!0 != 0`).
//!
//! The writer preallocates the file and writes records into a mapping of it, so a file may end
//! in zeros: the records end where only zeros follow. A crash of the writer leaves a *prefix*
//! of its last record followed by those zeros; so a damaged record followed by nothing but
//! zeros is a torn tail (cut off on open), and damage with data after it is an error naming its
//! offset. The zero-filled end is why a record's length words are never both zero.

pub use crate::batch::{batch_records, split_records};
use engine::{BuyTarget, Command, Millis};

use crate::fields::{put_ids, put_title, Reader};

pub const MAGIC: [u8; 8] = *b"BKJOURNL";
pub const VERSION: u32 = 3;
/// The oldest version still read (as a first segment; see the module docs).
pub const OLDEST_VERSION: u32 = 2;
/// The length of a version 3 file header.
pub const FILE_HEADER_LEN: usize = 32;
/// The length of a version 2 file header.
const V2_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 12;
/// Largest payload a valid record has (a buy with an 80-byte title is 132 bytes).
pub const MAX_PAYLOAD: usize = 256;

const TAG_LIST: u8 = 1;
const TAG_BUY: u8 = 2;
const TAG_CANCEL: u8 = 3;
const TAG_EXPIRE: u8 = 4;
const TAG_CLIENT_GONE: u8 = 5;
const TAG_RESTART: u8 = 6;

/// A segment file's header: which format, the capacity of the store it describes (replaying
/// under another capacity would decide `StoreFull` differently), and the command number of its
/// first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub capacity: u32,
    /// The command number of the segment's first record (0 for the first segment).
    pub first: u64,
    /// The header's length in the file: [`FILE_HEADER_LEN`], or 24 for a version 2 file.
    pub len: usize,
}

impl FileHeader {
    /// The header of a new (version 3) segment.
    pub fn new(capacity: u32, first: u64) -> Self {
        Self {
            capacity,
            first,
            len: FILE_HEADER_LEN,
        }
    }

    /// The header as a version 3 file starts (whatever `len` says: files are written in the
    /// current version only).
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.capacity.to_le_bytes());
        b[16..24].copy_from_slice(&self.first.to_le_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// One command as the journal holds it, with the market's clock when it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where its record starts in the file.
    pub offset: u64,
    pub now: Millis,
    pub command: Command,
}

/// Why a journal cannot be read past some point. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a bookstore journal (the first 8 bytes are not \"BKJOURNL\")")]
    NotAJournal,
    #[error(
        "journal format version {found} is not supported (this build reads versions {OLDEST_VERSION} to {VERSION}; `bookstore market --fresh` sets the file aside and starts an empty store)"
    )]
    Version { found: u32 },
    #[error("the file header's checksum does not match")]
    HeaderChecksum,
    #[error("the file header's reserved bytes are not zero")]
    HeaderPadding,
    #[error("capacity in the file header is {0}, outside 1..={max}", max = engine::MAX_CAPACITY)]
    Capacity(u32),
    #[error("record at offset {offset}: its length words disagree ({len} vs !{not_len})")]
    Length { offset: u64, len: u32, not_len: u32 },
    #[error("record at offset {offset}: length {len} is over the {MAX_PAYLOAD}-byte maximum")]
    TooLong { offset: u64, len: u32 },
    #[error("record at offset {offset}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("record at offset {offset}: {field}: {problem}")]
    Payload {
        offset: u64,
        field: &'static str,
        problem: String,
    },
}

impl FormatError {
    /// Whether this is free space (zeros) where a record would start, not damage: where a
    /// reader that knows how many records there are has reached the end of a file's.
    pub fn is_blank(&self) -> bool {
        matches!(
            self,
            Self::Length {
                len: 0,
                not_len: 0,
                ..
            }
        )
    }

    /// The file offset where the damage starts, for record-level errors.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Length { offset, .. }
            | Self::TooLong { offset, .. }
            | Self::Checksum { offset, .. }
            | Self::Payload { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// An incomplete or damaged last record, cut off at `offset` (the end of the last good one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TornTail {
    pub offset: u64,
    pub bytes: u64,
    pub why: String,
}

/// What a whole journal file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// `None` for an empty file (or one cut short inside its header by a crash at creation).
    pub header: Option<FileHeader>,
    /// Records before `entries`: their lengths and checksums checked, their payloads not
    /// decoded ([`scan_from`]; 0 from [`scan`]).
    pub skipped: u64,
    pub entries: Vec<Entry>,
    /// Bytes from the start that are a valid journal; the rest is the torn tail, if any.
    pub valid_len: u64,
    pub torn: Option<TornTail>,
}

impl Scan {
    /// Every record the file holds, decoded or not.
    pub fn records(&self) -> u64 {
        self.skipped + self.entries.len() as u64
    }
}

/// Reads a journal image. A damaged *last* record is a torn tail (reported, to be cut off);
/// damage before the last record is an error naming its offset: nothing is silently skipped.
pub fn scan(bytes: &[u8]) -> Result<Scan, FormatError> {
    scan_from(bytes, 0)
}

/// [`scan`], decoding only the records from the `skip`th on: those before are checked (length
/// words, length, checksum) and counted, not decoded (a replay that starts from a snapshot
/// does not need them, and decoding is most of a scan's time). `u64::MAX` decodes none.
pub fn scan_from(bytes: &[u8], skip: u64) -> Result<Scan, FormatError> {
    if bytes.len() < header_len_of(bytes) {
        // A crash while creating the file: only a prefix of the header made it to disk.
        let prefix = bytes.len().min(MAGIC.len());
        if bytes[..prefix] != MAGIC[..prefix] {
            return Err(FormatError::NotAJournal);
        }
        return Ok(Scan {
            header: None,
            skipped: 0,
            entries: Vec::new(),
            valid_len: 0,
            torn: (!bytes.is_empty()).then(|| TornTail {
                offset: 0,
                bytes: bytes.len() as u64,
                why: "the file header is incomplete".into(),
            }),
        });
    }
    let header = decode_file_header(bytes)?;
    let mut entries = Vec::new();
    let mut skipped = 0;
    let mut at = header.len;
    // Past the last non-zero byte there are only zeros: the space the writer preallocated.
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let torn = loop {
        // Only zeros from here on (or nothing): the end of the records.
        if data_end <= at {
            break None;
        }
        let rest = &bytes[at..];
        let last_nonzero = data_end - 1 - at;
        let offset = at as u64;
        let tail = |why: String| TornTail {
            offset,
            bytes: last_nonzero as u64 + 1,
            why,
        };
        // Whether this record, if it spans `extent` bytes, is followed by zeros only: then it
        // is the last one written, and damage in it is a write cut short, not corruption.
        let last_if_spanning = |extent: usize| last_nonzero < extent;
        match next_record_in(rest, offset, skipped >= skip) {
            Next::Record(entry, len) => {
                entries.push(entry);
                at += len;
            }
            Next::Checked(len) => {
                skipped += 1;
                at += len;
            }
            Next::Short(why) => break Some(tail(why)),
            Next::Damaged(FormatError::Length { len, not_len, .. })
                if last_if_spanning(RECORD_HEADER_LEN + MAX_PAYLOAD) =>
            {
                break Some(tail(format!(
                    "a record header cut short (length words {len} and {not_len})"
                )));
            }
            Next::Damaged(FormatError::Checksum {
                stored, computed, ..
            }) if last_if_spanning(RECORD_HEADER_LEN + le_u32(rest) as usize) => {
                break Some(tail(format!(
                    "last record's checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
                )));
            }
            Next::Damaged(error) => return Err(error),
        }
    };
    Ok(Scan {
        header: Some(header),
        skipped,
        entries,
        valid_len: at as u64,
        torn,
    })
}

/// What [`next_record`] found where a record would start.
#[derive(Debug)]
pub enum Next {
    /// A whole, valid record, and the bytes it spans.
    Record(Entry, usize),
    /// A whole record whose checksum holds, not decoded (asked not to be), and its bytes.
    Checked(usize),
    /// The bytes end inside a record (or its header); the reason, in words.
    Short(String),
    /// Damage where a record should be. Zeros there (free space after the last record) read
    /// as `Length { len: 0, not_len: 0 }`: see [`is_blank`](FormatError::is_blank).
    Damaged(FormatError),
}

/// Reads the record at the start of `rest`, which starts at byte `offset` of its file: checks
/// its length words, its length, its checksum and every field of its payload.
pub fn next_record(rest: &[u8], offset: u64) -> Next {
    next_record_in(rest, offset, true)
}

/// [`next_record`], decoding the payload only if `decode`.
pub(crate) fn next_record_in(rest: &[u8], offset: u64, decode: bool) -> Next {
    if rest.len() < RECORD_HEADER_LEN {
        return Next::Short(format!(
            "{} bytes, shorter than a record header",
            rest.len()
        ));
    }
    let len = le_u32(&rest[0..4]);
    let not_len = le_u32(&rest[4..8]);
    let stored = le_u32(&rest[8..12]);
    if len != !not_len {
        return Next::Damaged(FormatError::Length {
            offset,
            len,
            not_len,
        });
    }
    if len as usize > MAX_PAYLOAD {
        return Next::Damaged(FormatError::TooLong { offset, len });
    }
    let end = RECORD_HEADER_LEN + len as usize;
    if rest.len() < end {
        return Next::Short(format!(
            "record of {len} bytes with only {} present",
            rest.len() - RECORD_HEADER_LEN
        ));
    }
    let payload = &rest[RECORD_HEADER_LEN..end];
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Next::Damaged(FormatError::Checksum {
            offset,
            stored,
            computed,
        });
    }
    if !decode {
        return Next::Checked(end);
    }
    match decode_payload(payload, offset) {
        Ok(entry) => Next::Record(entry, end),
        Err(error) => Next::Damaged(error),
    }
}

/// The records of a segment image `scan` has checked, decoded from the `skip`th on, in order.
/// Yields an error only for a record whose payload does not decode (its checksum held).
///
/// The scan checked every record's length words and checksum, so here they are only read: a
/// record is found by its length and its payload decoded, and the ones before `skip` are
/// stepped over. (Checking them again cost a second CRC of every record a restart read: of the
/// whole segment a snapshot lies in, most of it before the snapshot.)
pub fn records<'a>(
    bytes: &'a [u8],
    scan: &Scan,
    skip: u64,
) -> impl Iterator<Item = Result<Entry, FormatError>> + 'a {
    let mut at = scan.header.map_or(0, |h| h.len);
    let end = (scan.valid_len as usize).min(bytes.len());
    let mut index = 0u64;
    std::iter::from_fn(move || {
        while at < end {
            let offset = at as u64;
            let Some((len, payload)) = checked_record(&bytes[at..end]) else {
                at = end;
                return Some(Err(FormatError::Payload {
                    offset,
                    field: "record",
                    problem: "is not where the scan of this image found one".into(),
                }));
            };
            at += len;
            index += 1;
            if index > skip {
                return Some(decode_payload(payload, offset));
            }
        }
        None
    })
}

/// The length and the payload of the record at the start of `rest`, which a scan of this
/// image has checked: its length is read, not checked again. `None` if `rest` cannot hold it
/// (the image is not the one scanned).
fn checked_record(rest: &[u8]) -> Option<(usize, &[u8])> {
    let len = le_u32(rest.get(..4)?) as usize;
    let end = RECORD_HEADER_LEN.checked_add(len)?;
    Some((end, rest.get(RECORD_HEADER_LEN..end)?))
}

/// How long the header of the file starting with `bytes` is: a version 2 file's is shorter.
/// (Whether it is a valid header is [`decode_file_header`]'s to say.)
fn header_len_of(bytes: &[u8]) -> usize {
    match bytes.get(8..12).map(le_u32) {
        Some(2) => V2_HEADER_LEN,
        _ => FILE_HEADER_LEN,
    }
}

/// Checks a file header at the start of `bytes`: magic, version, checksum, capacity.
pub fn decode_file_header(bytes: &[u8]) -> Result<FileHeader, FormatError> {
    if bytes.len() < 12 || bytes[..8] != MAGIC {
        return Err(FormatError::NotAJournal);
    }
    let version = le_u32(&bytes[8..12]);
    let len = match version {
        VERSION => FILE_HEADER_LEN,
        2 => V2_HEADER_LEN,
        found => return Err(FormatError::Version { found }),
    };
    let Some(bytes) = bytes.get(..len) else {
        return Err(FormatError::NotAJournal);
    };
    // The checksum covers everything before it; a zero word ends the header.
    let crc_at = len - 8;
    if crc32fast::hash(&bytes[..crc_at]) != le_u32(&bytes[crc_at..crc_at + 4]) {
        return Err(FormatError::HeaderChecksum);
    }
    if le_u32(&bytes[crc_at + 4..len]) != 0 {
        return Err(FormatError::HeaderPadding);
    }
    let capacity = le_u32(&bytes[12..16]);
    if capacity == 0 || capacity > engine::MAX_CAPACITY {
        return Err(FormatError::Capacity(capacity));
    }
    let first = if version == VERSION {
        u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"))
    } else {
        0
    };
    Ok(FileHeader {
        capacity,
        first,
        len,
    })
}

/// Appends one record (header and payload) for `entry` to `out`.
pub fn encode_record(now: Millis, command: &Command, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.extend_from_slice(&now.to_le_bytes());
    match command {
        Command::List {
            client,
            request,
            title,
            price,
            qty,
        } => {
            out.push(TAG_LIST);
            put_ids(out, *client, *request);
            out.extend_from_slice(&price.cents().to_le_bytes());
            out.extend_from_slice(&qty.get().to_le_bytes());
            put_title(out, Some(title));
        }
        Command::Buy {
            client,
            request,
            target,
            max_price,
            qty,
            deadline,
        } => {
            out.push(TAG_BUY);
            put_ids(out, *client, *request);
            out.extend_from_slice(&max_price.cents().to_le_bytes());
            out.extend_from_slice(&qty.get().to_le_bytes());
            out.push(u8::from(deadline.is_some()));
            out.extend_from_slice(&deadline.unwrap_or(0).to_le_bytes());
            put_title(
                out,
                match target {
                    BuyTarget::Title(t) => Some(t),
                    BuyTarget::Any => None,
                },
            );
        }
        Command::Cancel { client, request } => {
            out.push(TAG_CANCEL);
            put_ids(out, *client, *request);
        }
        Command::Expire => out.push(TAG_EXPIRE),
        Command::ClientGone { client } => {
            out.push(TAG_CLIENT_GONE);
            out.extend_from_slice(&client.0.to_le_bytes());
        }
        Command::Restart => out.push(TAG_RESTART),
    }
    let len = (out.len() - start - RECORD_HEADER_LEN) as u32;
    debug_assert!(len as usize <= MAX_PAYLOAD);
    let crc = crc32fast::hash(&out[start + RECORD_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(!len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes and validates one payload; every field goes through the engine's own constructors.
fn decode_payload(payload: &[u8], offset: u64) -> Result<Entry, FormatError> {
    let mut r = Reader {
        bytes: payload,
        offset,
    };
    let now = r.u64("now")?;
    let command = match r.u8("tag")? {
        TAG_LIST => {
            let (client, request) = r.ids()?;
            let price = r.price("price")?;
            let qty = r.qty()?;
            let title = r.title()?.ok_or_else(|| r.bad("title", "is empty"))?;
            Command::List {
                client,
                request,
                title,
                price,
                qty,
            }
        }
        TAG_BUY => {
            let (client, request) = r.ids()?;
            let max_price = r.price("max_price")?;
            let qty = r.qty()?;
            let has_deadline = match r.u8("deadline_flag")? {
                0 => false,
                1 => true,
                other => return Err(r.bad("deadline_flag", &format!("{other} is not 0 or 1"))),
            };
            let deadline = r.u64("deadline")?;
            if !has_deadline && deadline != 0 {
                return Err(r.bad("deadline", "is set but its flag is 0"));
            }
            let target = r.title()?.map_or(BuyTarget::Any, BuyTarget::Title);
            Command::Buy {
                client,
                request,
                target,
                max_price,
                qty,
                deadline: has_deadline.then_some(deadline),
            }
        }
        TAG_CANCEL => {
            let (client, request) = r.ids()?;
            Command::Cancel { client, request }
        }
        TAG_EXPIRE => Command::Expire,
        TAG_CLIENT_GONE => Command::ClientGone {
            client: r.client()?,
        },
        TAG_RESTART => Command::Restart,
        other => return Err(r.bad("tag", &format!("{other} is not a known command"))),
    };
    if !r.bytes.is_empty() {
        return Err(r.bad("payload", &format!("{} bytes left over", r.bytes.len())));
    }
    Ok(Entry {
        offset,
        now,
        command,
    })
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ClientId, Price, Qty, RequestId, Title};

    fn title(s: &str) -> Title {
        Title::new(s).unwrap()
    }

    /// Sample commands as the reader returns them, offsets included.
    fn sample() -> Vec<Entry> {
        let commands = vec![
            (
                1,
                Command::List {
                    client: ClientId(1),
                    request: RequestId(7),
                    title: title("Dune"),
                    price: Price::from_cents(1250).unwrap(),
                    qty: Qty::new(3).unwrap(),
                },
            ),
            (
                2,
                Command::Buy {
                    client: ClientId(2),
                    request: RequestId(1),
                    target: BuyTarget::Any,
                    max_price: Price::from_cents(99).unwrap(),
                    qty: Qty::new(1).unwrap(),
                    deadline: Some(5002),
                },
            ),
            (
                3,
                Command::Buy {
                    client: ClientId(2),
                    request: RequestId(2),
                    target: BuyTarget::Title(title(&"é".repeat(40))),
                    max_price: Price::from_cents(100_000_000).unwrap(),
                    qty: Qty::new(1_000_000).unwrap(),
                    deadline: None,
                },
            ),
            (
                4,
                Command::Cancel {
                    client: ClientId(2),
                    request: RequestId(2),
                },
            ),
            (5, Command::Expire),
            (
                6,
                Command::ClientGone {
                    client: ClientId(2),
                },
            ),
        ];
        let mut offset = FILE_HEADER_LEN as u64;
        commands
            .into_iter()
            .map(|(now, command)| {
                let mut record = Vec::new();
                encode_record(now, &command, &mut record);
                let entry = Entry {
                    offset,
                    now,
                    command,
                };
                offset += record.len() as u64;
                entry
            })
            .collect()
    }

    fn image(entries: &[Entry]) -> Vec<u8> {
        let mut bytes = FileHeader::new(100, 0).encode().to_vec();
        for e in entries {
            encode_record(e.now, &e.command, &mut bytes);
        }
        bytes
    }

    /// Where the sample's second record starts.
    fn second_record_offset() -> usize {
        let mut b = FileHeader::new(100, 0).encode().to_vec();
        encode_record(sample()[0].now, &sample()[0].command, &mut b);
        b.len()
    }

    #[test]
    fn every_command_round_trips() {
        let bytes = image(&sample());
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.header, Some(FileHeader::new(100, 0)));
        assert_eq!(scan.entries, sample());
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.torn, None);
    }

    #[test]
    fn every_prefix_of_a_journal_is_a_shorter_journal_with_a_torn_tail() {
        let bytes = image(&sample());
        let ends: Vec<u64> = {
            let mut v = vec![FILE_HEADER_LEN as u64];
            let mut b = FileHeader::new(100, 0).encode().to_vec();
            for e in sample() {
                encode_record(e.now, &e.command, &mut b);
                v.push(b.len() as u64);
            }
            v
        };
        for cut in 0..bytes.len() {
            let s = scan(&bytes[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let whole = ends.iter().filter(|&&e| e <= cut as u64).count();
            assert_eq!(s.entries.len(), whole.saturating_sub(1), "cut at {cut}");
            // The torn tail runs to its last non-zero byte; only zeros follow it.
            let torn_end = s.valid_len + s.torn.map_or(0, |t| t.bytes);
            assert!(torn_end <= cut as u64, "cut at {cut}");
            assert!(bytes[torn_end as usize..cut].iter().all(|&b| b == 0));
            // The same prefix in a preallocated file (zeros after it) reads the same records,
            // or one more when the bytes the cut left out were zeros anyway (then the zeros
            // complete that record, checksum and all).
            let mut padded = bytes[..cut].to_vec();
            padded.resize(cut + 4096, 0);
            if cut >= FILE_HEADER_LEN {
                let p = scan(&padded).unwrap_or_else(|e| panic!("padded cut at {cut}: {e}"));
                let n = p.entries.len();
                assert!(
                    n == s.entries.len() || n == s.entries.len() + 1,
                    "cut at {cut}"
                );
                assert_eq!(p.entries, sample()[..n], "padded cut at {cut}");
            }
        }
    }

    #[test]
    fn zeros_after_the_records_are_free_space_not_a_torn_tail() {
        let mut bytes = image(&sample());
        let len = bytes.len() as u64;
        bytes.resize(bytes.len() + (1 << 16), 0);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.entries, sample());
        assert_eq!((s.valid_len, s.torn), (len, None));
    }

    #[test]
    fn a_record_header_cut_short_before_the_zeros_is_a_torn_tail() {
        let mut bytes = image(&sample());
        let len = bytes.len();
        // A crash after the first length word was copied, before its complement.
        bytes.extend_from_slice(&40u32.to_le_bytes());
        bytes.resize(len + 4096, 0);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.entries, sample());
        let torn = s.torn.unwrap();
        assert_eq!((torn.offset, torn.bytes), (len as u64, 1));
        assert!(torn.why.contains("cut short"), "{}", torn.why);
    }

    #[test]
    fn damage_with_records_after_it_is_an_error_even_in_a_preallocated_file() {
        let mut bytes = image(&sample());
        let second = second_record_offset();
        bytes[second + RECORD_HEADER_LEN + 3] ^= 0x40;
        bytes.resize(bytes.len() + 4096, 0);
        assert_eq!(scan(&bytes).unwrap_err().offset(), Some(second as u64));
        // A blank (zeroed) record in the middle, with records after it, too.
        let mut bytes = image(&sample());
        let next = second + RECORD_HEADER_LEN + 4;
        bytes[second..next].fill(0);
        assert!(matches!(
            scan(&bytes),
            Err(FormatError::Length { offset, .. }) if offset == second as u64
        ));
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_is_a_torn_tail() {
        let mut bytes = image(&sample());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let s = scan(&bytes).unwrap();
        assert_eq!(s.entries.len(), sample().len() - 1);
        assert!(s.torn.unwrap().why.contains("checksum"));
    }

    #[test]
    fn a_flipped_bit_in_a_middle_record_is_an_error_naming_its_offset() {
        let mut bytes = image(&sample());
        let second = second_record_offset();
        bytes[second + RECORD_HEADER_LEN + 3] ^= 0x40;
        let err = scan(&bytes).unwrap_err();
        assert_eq!(err.offset(), Some(second as u64), "{err}");
        assert!(err.to_string().contains(&format!("offset {second}")));
        // A damaged length word in the middle is an error too, not a torn tail.
        let mut bytes = image(&sample());
        bytes[second] ^= 0x01;
        assert!(matches!(
            scan(&bytes),
            Err(FormatError::Length { offset, .. }) if offset == second as u64
        ));
    }

    #[test]
    fn a_valid_checksum_over_invalid_values_is_refused() {
        let mut bytes = FileHeader::new(100, 0).encode().to_vec();
        encode_record(
            0,
            &Command::ClientGone {
                client: ClientId(1),
            },
            &mut bytes,
        );
        // Turn the tag into an unknown one and fix up the checksum.
        let payload_at = FILE_HEADER_LEN + RECORD_HEADER_LEN;
        bytes[payload_at + 8] = 99;
        let crc = crc32fast::hash(&bytes[payload_at..]);
        bytes[FILE_HEADER_LEN + 8..payload_at].copy_from_slice(&crc.to_le_bytes());
        let err = scan(&bytes).unwrap_err();
        assert!(err.to_string().contains("tag: 99"), "{err}");
    }

    #[test]
    fn foreign_files_are_not_journals() {
        assert_eq!(
            scan(b"hello world, this is not it"),
            Err(FormatError::NotAJournal)
        );
        assert_eq!(scan(b"hello"), Err(FormatError::NotAJournal));
        let mut bytes = image(&[]);
        bytes[8] = 1;
        assert!(matches!(
            scan(&bytes),
            Err(FormatError::Version { found: 1 })
        ));
    }
}
