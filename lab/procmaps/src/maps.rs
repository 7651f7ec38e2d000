//! `/proc/PID/maps`: one line per mapping, `start-end perms offset major:minor inode  path`.
//! See [`proc_pid_maps(5)`](https://man7.org/linux/man-pages/man5/proc_pid_maps.5.html).

use std::fmt;

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `rwxs` as the kernel prints them.
    pub perms: [u8; 4],
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The path or pseudo-name (`[heap]`, `[stack]`, `/memfd:x (deleted)`, …), as raw bytes:
    /// file names need not be UTF-8. Empty for an anonymous mapping.
    pub pathname: Vec<u8>,
}

/// A line that is not a maps line, or a file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("line {line}: {field} is missing or malformed in {text:?}")]
    Malformed {
        line: usize,
        field: &'static str,
        text: String,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Mapping {
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    pub fn contains(&self, address: u64) -> bool {
        (self.start..self.end).contains(&address)
    }

    pub fn is_private(&self) -> bool {
        self.perms[3] == b'p'
    }

    /// No file behind it: `[heap]`, `[stack]`, plain anonymous memory and the like.
    pub fn is_anonymous(&self) -> bool {
        self.inode == 0
    }

    pub fn pathname_lossy(&self) -> String {
        String::from_utf8_lossy(&self.pathname).into_owned()
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {}",
            self.start,
            self.end,
            String::from_utf8_lossy(&self.perms),
            if self.pathname.is_empty() {
                "[anonymous]".into()
            } else {
                self.pathname_lossy()
            }
        )
    }
}

/// Parses one line (with or without its `\n`). `line_no` is for the error message.
pub fn parse_line(line: &[u8], line_no: usize) -> Result<Mapping, MapsError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let bad = |field| MapsError::Malformed {
        line: line_no,
        field,
        text: String::from_utf8_lossy(line).into_owned(),
    };
    let mut rest = line;
    let mut token = |field| -> Result<&[u8], MapsError> {
        let start = rest
            .iter()
            .position(|&b| b != b' ')
            .ok_or_else(|| bad(field))?;
        let len = rest[start..]
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(rest.len() - start);
        let t = &rest[start..start + len];
        rest = &rest[start + len..];
        Ok(t)
    };
    let hex = |t: &[u8], field| {
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad(field))
    };
    let range = token("address range")?;
    let dash = range
        .iter()
        .position(|&b| b == b'-')
        .ok_or_else(|| bad("address range"))?;
    let start = hex(&range[..dash], "start address")?;
    let end = hex(&range[dash + 1..], "end address")?;
    let perms: [u8; 4] = token("perms")?.try_into().map_err(|_| bad("perms"))?;
    let offset = hex(token("offset")?, "offset")?;
    let dev = token("device")?;
    let colon = dev
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("device"))?;
    let dev_major = hex(&dev[..colon], "device major")? as u32;
    let dev_minor = hex(&dev[colon + 1..], "device minor")? as u32;
    let inode = std::str::from_utf8(token("inode")?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("inode"))?;
    let path_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if start > end {
        return Err(bad("address range"));
    }
    Ok(Mapping {
        start,
        end,
        perms,
        offset,
        dev_major,
        dev_minor,
        inode,
        pathname: rest[path_start..].to_vec(),
    })
}

/// Parses a whole maps file.
pub fn parse(bytes: &[u8]) -> Result<Vec<Mapping>, MapsError> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| parse_line(line, i + 1))
        .collect()
}

/// Reads `/proc/PID/<file>` whole (`self` for this process), naming the path in the error.
pub(crate) fn read_proc_file(pid: &str, file: &str) -> Result<Vec<u8>, MapsError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read(&path).map_err(|source| MapsError::Read { path, source })
}

/// Reads and parses `/proc/PID/maps` (`self` for this process).
pub fn read(pid: &str) -> Result<Vec<Mapping>, MapsError> {
    parse(&read_proc_file(pid, "maps")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_anonymous_mappings() {
        let m = parse_line(
            b"55ad361d9000-55ad361db000 r--p 00002000 fe:00 247774    /usr/bin/sleep\n",
            1,
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.size()),
            (0x55ad361d9000, 0x55ad361db000, 0x2000)
        );
        assert_eq!(
            (&m.perms, m.offset, m.dev_major, m.dev_minor, m.inode),
            (b"r--p", 0x2000, 0xfe, 0, 247774)
        );
        assert_eq!(m.pathname, b"/usr/bin/sleep");
        let anon = parse_line(b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n", 2).unwrap();
        assert!(anon.pathname.is_empty() && anon.is_anonymous());
    }

    #[test]
    fn keeps_spaces_and_odd_bytes_in_names() {
        let m = parse_line(
            b"1000-2000 rw-s 00000000 00:01 5  /tmp/a b\xff (deleted)\n",
            1,
        )
        .unwrap();
        assert_eq!(m.pathname, b"/tmp/a b\xff (deleted)");
    }

    #[test]
    fn malformed_lines_say_which_field() {
        let e = parse_line(b"zzzz-1000 rw-p 0 00:00 0", 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("start address"), "{e}");
    }

    #[test]
    fn reads_this_process() {
        let maps = read("self").unwrap();
        let here = parses_file_and_anonymous_mappings as fn() as usize as u64;
        assert!(maps.iter().any(|m| m.contains(here) && m.perms[2] == b'x'));
    }
}
