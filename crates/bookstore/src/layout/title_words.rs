//! Titles in cells: the byte length in one word, the bytes packed little-endian into the
//! following words.

use engine::{Title, MAX_TITLE_BYTES};

pub const WORDS: usize = MAX_TITLE_BYTES.div_ceil(8);

/// Writes `title` into the first `WORDS` words of `out`, zero after its end.
pub fn pack(title: &Title, out: &mut [u64]) {
    // One copy into a zeroed buffer, then whole words: a per-word slice of the title,
    // clamped at its end, cost more than the rest of encoding a message.
    let title = title.as_str().as_bytes();
    let mut bytes = [0u8; WORDS * 8];
    bytes[..title.len()].copy_from_slice(title);
    for (w, chunk) in out[..WORDS].iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
}

/// Why packed words are not a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotATitle {
    /// The length is 0 or over the limit, or a byte past it is not zero.
    Length,
    /// The bytes are not UTF-8.
    Utf8,
    /// Blank, or a control character.
    Content,
}

/// The title of `len` bytes packed in the first `WORDS` words of `words`, checked as a
/// title is anywhere it is read from shared memory: a length of 1..=80, nothing after its
/// end (the bits above it in its last word, and every word after that, so the packing is
/// the one [`pack`] writes), UTF-8, not blank, no control character. Unpacked on the
/// stack, only as far as the title goes: this runs for every request a client sends as
/// text, and for every title record a client reads.
pub fn unpack_title(len: u64, words: &[u64]) -> Result<Title, NotATitle> {
    let n = usize::try_from(len).map_err(|_| NotATitle::Length)?;
    if n == 0 || n > MAX_TITLE_BYTES {
        return Err(NotATitle::Length);
    }
    let words = &words[..WORDS];
    let (full, rest) = (n / 8, n % 8);
    let last = if rest == 0 { full } else { full + 1 };
    let past_end_in_last = match rest {
        0 => 0,
        r => words[full] >> (8 * r),
    };
    if past_end_in_last != 0 || words[last..].iter().any(|&w| w != 0) {
        return Err(NotATitle::Length);
    }
    let mut bytes = [0u8; WORDS * 8];
    for (chunk, word) in bytes[..last * 8].chunks_exact_mut(8).zip(&words[..last]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let text = std::str::from_utf8(&bytes[..n]).map_err(|_| NotATitle::Utf8)?;
    Title::new(text).map_err(|_| NotATitle::Content)
}

/// The first `len` bytes of the packed words; `None` if `len` is over the limit.
pub fn unpack(len: u64, words: &[u64]) -> Option<Vec<u8>> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_TITLE_BYTES)?;
    let mut bytes: Vec<u8> = words[..WORDS]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    bytes.truncate(len);
    Some(bytes)
}
