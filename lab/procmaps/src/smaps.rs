//! `/proc/PID/smaps`: each mapping's line followed by `Name:  value kB` lines and `VmFlags:`.

use crate::maps::{self, Mapping, MapsError};

/// One mapping and its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    pub mapping: Mapping,
    /// Details in the kernel's order, values as printed (kB for sizes).
    pub fields: Vec<(String, u64)>,
    pub vm_flags: Vec<String>,
}

impl SmapsEntry {
    /// A detail by name (`Rss`, `Pss`, `Private_Dirty`, …).
    pub fn field(&self, name: &str) -> Option<u64> {
        self.fields.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
}

/// A line starts a mapping if its first word is `hex-hex`.
fn is_mapping_line(line: &[u8]) -> bool {
    let word = line.split(|&b| b == b' ').next().unwrap_or(&[]);
    let mut halves = word.split(|&b| b == b'-');
    let hex =
        |h: Option<&[u8]>| h.is_some_and(|h| !h.is_empty() && h.iter().all(u8::is_ascii_hexdigit));
    hex(halves.next()) && hex(halves.next()) && halves.next().is_none()
}

pub fn parse(bytes: &[u8]) -> Result<Vec<SmapsEntry>, MapsError> {
    let mut entries: Vec<SmapsEntry> = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if is_mapping_line(text) {
            entries.push(SmapsEntry {
                mapping: maps::parse_line(text, i + 1)?,
                fields: vec![],
                vm_flags: vec![],
            });
            continue;
        }
        let bad = || MapsError::Malformed {
            line: i + 1,
            field: "detail",
            text: String::from_utf8_lossy(text).into_owned(),
        };
        let entry = entries.last_mut().ok_or_else(bad)?;
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let (name, value) = text.split_once(':').ok_or_else(bad)?;
        if name == "VmFlags" {
            entry.vm_flags = value.split_whitespace().map(str::to_owned).collect();
            continue;
        }
        let number = value.trim().trim_end_matches("kB").trim();
        entry
            .fields
            .push((name.to_owned(), number.parse().map_err(|_| bad())?));
    }
    Ok(entries)
}

/// Reads and parses `/proc/PID/smaps` (`self` for this process).
pub fn read(pid: &str) -> Result<Vec<SmapsEntry>, MapsError> {
    parse(&maps::read_proc_file(pid, "smaps")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_details_and_flags() {
        let text = b"5000-6000 rw-p 00000000 00:00 0          [heap]\nSize:                  4 kB\nRss:                   4 kB\nTHPeligible:    0\nVmFlags: rd wr mr mw me ac \n";
        let e = &parse(text).unwrap()[0];
        assert_eq!(e.mapping.pathname, b"[heap]");
        assert_eq!(
            (e.field("Size"), e.field("Rss"), e.field("THPeligible")),
            (Some(4), Some(4), Some(0))
        );
        assert_eq!(e.vm_flags, ["rd", "wr", "mr", "mw", "me", "ac"]);
    }

    #[test]
    fn reads_this_process_with_rss() {
        let entries = read("self").unwrap();
        assert!(entries.iter().any(|e| e.field("Rss").unwrap_or(0) > 0));
    }
}
