//! Records carried outside a journal file: a replicated stream's messages hold a batch of
//! records with no file header. Read through [`crate::format`].

use crate::format::{next_record_in, scan, Entry, FileHeader, Next, FILE_HEADER_LEN};

/// The records of a batch carried outside a journal file (a replicated stream's message, for
/// a store of `capacity` books, its first record command number `first`): every one whole and
/// valid, and `commands` of them. Anything else is refused, saying what is wrong.
pub fn batch_records(
    capacity: u32,
    first: u64,
    bytes: &[u8],
    commands: u64,
) -> Result<Vec<Entry>, String> {
    let mut image = FileHeader::new(capacity, first).encode().to_vec();
    image.extend_from_slice(bytes);
    let scan = scan(&image).map_err(|e| e.to_string())?;
    if let Some(torn) = &scan.torn {
        return Err(format!(
            "a damaged record at byte {}: {}",
            torn.offset - FILE_HEADER_LEN as u64,
            torn.why
        ));
    }
    if scan.entries.len() as u64 != commands {
        return Err(format!(
            "holds {} whole records, its header says {commands}",
            scan.entries.len()
        ));
    }
    Ok(scan.entries)
}

/// The records at the start of `bytes` (records only, no file header), each as its bytes, up
/// to the first thing that is not a whole valid record (checksums checked, payloads not
/// decoded): for comparing two journals' records byte for byte.
pub fn split_records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Next::Checked(len) = next_record_in(&bytes[at..], at as u64, false) {
        records.push(&bytes[at..at + len]);
        at += len;
    }
    records
}
