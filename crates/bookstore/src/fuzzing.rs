//! The properties the fuzz targets check, as plain functions: `fuzz/` calls them with
//! libFuzzer's inputs, and `tests/fuzz_corpora.rs` replays the saved corpora through them in
//! every test run. Each panics (so the fuzzer reports a crash) if a property fails.

use crate::wire::{Reply, Request, TitleIds};
use bookstore_ipc::ring::{Message, MESSAGE_WORDS};
use engine::Title;

/// A title table of four titles (ids 0..4, "Dune" is 0), so the decoders' title-id paths are
/// fuzzed too; the seed inputs are written with it.
pub struct FourTitles;

const FOUR_TITLES: [&str; 4] = [
    "Dune",
    "Emma",
    "A title of more than twenty-four bytes",
    "é",
];

impl TitleIds for FourTitles {
    fn id_of(&mut self, title: &Title) -> Option<u32> {
        FOUR_TITLES
            .iter()
            .position(|t| *t == title.as_str())
            .map(|i| i as u32)
    }

    fn title_of(&mut self, id: u32) -> Option<Title> {
        FOUR_TITLES
            .get(id as usize)
            .map(|t| Title::new(t).expect("a valid title"))
    }
}

/// Bytes as a ring message: 16 little-endian words, zero-padded.
fn message(data: &[u8]) -> Message {
    let mut words = [0u64; MESSAGE_WORDS];
    for (word, chunk) in words.iter_mut().zip(data.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_le_bytes(b);
    }
    words
}

/// Any 128 bytes from a client: the market's decoder returns a request or an error, never
/// panics, and a request it accepts encodes back to one that decodes the same, with titles as
/// text and as ids of a title table. Same for the client's reply decoder.
pub fn request_decoder(data: &[u8]) {
    let m = message(data);
    if let Ok(request) = Request::decode(&m) {
        assert_eq!(Request::decode(&request.encode()), Ok(request));
    }
    if let Ok((request, id)) = Request::decode_with(&m, &mut FourTitles) {
        let again = Request::decode_with(&request.encode_with(&mut FourTitles), &mut FourTitles);
        let (again, again_id) = again.expect("an encoded request decodes");
        assert_eq!(again, request);
        // A title the table holds goes as its id, whichever way it came.
        assert!(id.is_none() || again_id == id);
    }
    // The id the market echoes in a `Malformed` reply is the request's, accepted or not.
    let id = Request::raw_request_id(&m);
    if let Ok(
        Request::List { request, .. }
        | Request::Buy { request, .. }
        | Request::Cancel { request }
        | Request::Ask { request },
    ) = Request::decode(&m)
    {
        assert_eq!(id, request);
    }
    if let Ok(reply) = Reply::decode(&m) {
        assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
    }
    if let Ok(reply) = Reply::decode_with(&m, &mut FourTitles) {
        let title_id = match &reply {
            Reply::Bought { title, .. } | Reply::Sold { title, .. } => FourTitles.id_of(title),
            _ => None,
        };
        let encoded = reply.encode_with(title_id);
        assert_eq!(Reply::decode_with(&encoded, &mut FourTitles), Ok(reply));
    }
}

/// Any header bytes and mapping length: the validator accepts or refuses, never panics, and
/// what it accepts describes a layout that fits the mapping.
pub fn header_validator(data: &[u8]) {
    let (len_bytes, header) = data.split_at(data.len().min(8));
    let mut b = [0u8; 8];
    b[..len_bytes.len()].copy_from_slice(len_bytes);
    // Mostly plausible lengths, sometimes absurd ones.
    let mapped_len = (u64::from_le_bytes(b) % (1 << 34)) as usize;
    if let Ok(geometry) = crate::shared::validate_header_bytes(header, mapped_len) {
        assert_eq!(geometry.total_size(), mapped_len);
        assert!(geometry.view_offset() > geometry.slots_offset());
        assert!(geometry.shelf_offset() < geometry.total_size());
        assert!(geometry.stats_offset() > geometry.shelf_offset());
        let clients_end = geometry.client_stats_offset()
            + geometry.slot_count as usize * crate::layout::CLIENT_STATS_SIZE;
        assert!(clients_end <= geometry.titles_offset());
        assert!(
            geometry.titles_offset() + crate::layout::TITLE_TABLE_SIZE <= geometry.total_size()
        );
    }
}

/// Any journal file: the reader returns entries and maybe a torn tail (and zeros after it), or
/// an error naming an offset inside the file; never panics. What it accepts replays into a consistent engine,
/// and re-encodes into a journal that reads back the same.
pub fn journal_reader(data: &[u8]) {
    use crate::journal::format;
    let scan = match format::scan(data) {
        Ok(scan) => scan,
        Err(e) => {
            if let Some(offset) = e.offset() {
                assert!(offset < data.len() as u64, "{e}");
            }
            return;
        }
    };
    // The records, then the torn tail if any, then only zeros (preallocated space).
    let torn_end = scan.valid_len + scan.torn.as_ref().map_or(0, |t| t.bytes);
    assert!(torn_end <= data.len() as u64);
    assert!(data[torn_end as usize..].iter().all(|&b| b == 0));
    let Some(header) = scan.header else {
        assert!(scan.entries.is_empty());
        return;
    };
    crate::journal::replay(header.capacity, &scan.entries)
        .check_invariants()
        .unwrap();
    // Checking without decoding finds the same records and the same end; decoding from the
    // k-th gives the same entries from there.
    let skip = scan.entries.len() as u64 / 2;
    let partly = format::scan_from(data, skip).expect("the same bytes scan");
    assert_eq!(partly.records(), scan.records());
    assert_eq!(
        (partly.valid_len, &partly.torn),
        (scan.valid_len, &scan.torn)
    );
    assert_eq!(partly.entries, scan.entries[skip as usize..]);
    let decoded: Vec<_> = format::records(data, &partly, 0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(decoded, scan.entries);
    // A current-version header re-encodes as it was read (a version 2 one is kept as is).
    if header.len == format::FILE_HEADER_LEN {
        assert_eq!(header.encode().as_slice(), &data[..header.len]);
    }
    let mut again = data[..header.len].to_vec();
    for entry in &scan.entries {
        format::encode_record(entry.now, &entry.command, &mut again);
    }
    assert_eq!(again.as_slice(), &data[..scan.valid_len as usize]);
}

/// Any snapshot file: the reader returns a snapshot or an error, never panics. A snapshot it
/// accepts re-encodes to the same bytes; if its engine state and receipts pass their rules,
/// they rebuild into a consistent engine that gives back the same state.
pub fn snapshot_reader(data: &[u8]) {
    use crate::journal::snapshot;
    let Ok(decoded) = snapshot::decode(data) else {
        return;
    };
    assert_eq!(snapshot::encode(&decoded), data);
    if let Ok(engine) = engine::Engine::from_state(&decoded.engine) {
        engine.check_invariants().unwrap();
        assert_eq!(engine.state(), decoded.engine);
    }
    if let Ok(receipts) = engine::Receipts::from_state(&decoded.receipts) {
        assert_eq!(receipts.state(), decoded.receipts);
    }
}
