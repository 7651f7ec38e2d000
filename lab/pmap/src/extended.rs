//! `-X`, `-XX` and `-c`: every (or every chosen) smaps detail as a column, widths measured in a
//! first pass over the file and the table printed in a second, as procps 4.0.2 does. As in
//! 4.0.2, `-A` does not limit this format.

use procmaps::cscan::{fgets_pieces, sscanf};

use crate::args::{errx, Exit};
use crate::{cstr, justify, DetailColumn, Pmap, MAPBUF};

/// Details `-X` leaves out (`-XX` shows them).
fn is_unimportant(s: &[u8]) -> bool {
    matches!(
        s,
        b"AnonHugePages"
            | b"KernelPageSize"
            | b"MMUPageSize"
            | b"Shared_Dirty"
            | b"Private_Dirty"
            | b"Shared_Clean"
            | b"Private_Clean"
            | b"VmFlags"
    )
}

fn integer_width(mut n: u64) -> usize {
    let mut width = usize::from(n == 0);
    while n > 0 {
        width += 1;
        n /= 10;
    }
    width
}

impl Pmap {
    fn is_enabled(&self, s: &[u8]) -> bool {
        if self.o.more_details == 1 {
            return !is_unimportant(s);
        }
        if self.o.read_rc {
            return self.rc_fields.iter().any(|f| f == s);
        }
        true
    }

    /// procps's `print_extended_maps`; `Err` for a malformed file.
    pub(crate) fn print_extended(&mut self, data: &[u8]) -> Result<(), Exit> {
        let q = self.o.quiet;
        let (mut w1, mut w2, mut w3, mut w4, mut w5, mut wv) =
            (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
        let mut has_vmflags = false;
        let mut vmflags: Vec<u8> = Vec::new();
        let mut pieces = fgets_pieces(data, MAPBUF);
        let next = |p: &mut Pmap, pieces: &mut dyn Iterator<Item = &[u8]>| -> bool {
            match pieces.next() {
                Some(piece) => {
                    p.load(piece);
                    true
                }
                None => false,
            }
        };
        let mut first_mapping = 2;
        let mut ret = next(self, &mut pieces);
        while ret {
            let s = sscanf(
                self.line(),
                "%20[0-9a-f]-%20[0-9a-f] %31s %20[0-9a-f] %63[0-9a-f:] %20s %127[^\n]",
            );
            if s.count < 6 {
                return Err(errx("Unknown format in smaps file!"));
            }
            let field = |k: usize| s.values[k].bytes().to_vec();
            let (start, perms, offset, dev, inode) =
                (field(0), field(2), field(3), field(4), field(5));
            let map_desc = if s.count >= 7 { field(6) } else { vec![] };
            // A line longer than the buffer: skip the rest of it.
            while self.line().last() != Some(&b'\n') {
                if !next(self, &mut pieces) {
                    break;
                }
            }
            w1 = w1.max(start.len());
            w2 = w2.max(perms.len());
            w3 = w3.max(offset.len());
            w4 = w4.max(dev.len());
            w5 = w5.max(inode.len());

            ret = next(self, &mut pieces);
            let mut detail = if ret {
                sscanf(self.line(), "%31[^:]: %20[0-9] kB %c")
            } else {
                sscanf(b"", "%c")
            };
            let mut column = 0usize;
            while ret && detail.count == 2 {
                let desc = detail.values[0].bytes().to_vec();
                if self.is_enabled(&desc) {
                    let value_str = detail.values[1].bytes().to_vec();
                    if column == self.columns.len() {
                        let max_width = if q { 0 } else { desc.len() };
                        self.columns.push(DetailColumn {
                            desc,
                            value_str: vec![],
                            total: 0,
                            max_width,
                        });
                    } else if self.columns[column].desc != desc {
                        let line = String::from_utf8_lossy(self.line()).into_owned();
                        return Err(errx(&format!(
                            "ERROR: inconsistent detail field in smaps file, line:\n {line}"
                        )));
                    }
                    let c = &mut self.columns[column];
                    let value: u64 = std::str::from_utf8(&value_str)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    c.value_str = value_str;
                    if first_mapping == 2 {
                        c.total = c.total.wrapping_add(value);
                        if q {
                            c.max_width = c.max_width.max(c.value_str.len());
                        }
                    }
                    column += 1;
                }
                ret = next(self, &mut pieces);
                detail = if ret {
                    sscanf(self.line(), "%31[^:]: %20[0-9] kB %c")
                } else {
                    sscanf(b"", "%c")
                };
            }
            if ret {
                let flags = sscanf(self.line(), "VmFlags: %127[a-z ]");
                if flags.count == 1 {
                    vmflags = flags.values[0].bytes().to_vec();
                    if vmflags.last() == Some(&b' ') {
                        vmflags.pop();
                    }
                    wv = wv.max(vmflags.len());
                    has_vmflags = true;
                    ret = next(self, &mut pieces);
                }
            }
            if first_mapping == 2 {
                if !ret {
                    first_mapping = 1;
                    pieces = fgets_pieces(data, MAPBUF);
                    ret = next(self, &mut pieces);
                    if !q {
                        for c in &mut self.columns {
                            c.max_width = c.max_width.max(integer_width(c.total));
                        }
                    }
                }
                continue;
            }
            if first_mapping == 1 && !q {
                let mut out = std::mem::take(&mut self.out);
                w1 = justify(&mut out, b"Address", w1, true);
                if self.is_enabled(b"Perm") {
                    w2 = justify(&mut out, b"Perm", w2, true);
                }
                if self.is_enabled(b"Offset") {
                    w3 = justify(&mut out, b"Offset", w3, true);
                }
                if self.is_enabled(b"Device") {
                    w4 = justify(&mut out, b"Device", w4, true);
                }
                if self.is_enabled(b"Inode") {
                    w5 = justify(&mut out, b"Inode", w5, true);
                }
                for c in &self.columns {
                    justify(&mut out, &c.desc, c.max_width, true);
                }
                if has_vmflags && self.is_enabled(b"VmFlags") {
                    wv = justify(&mut out, b"VmFlags", wv, true);
                }
                if self.is_enabled(b"Mapping") {
                    justify(&mut out, b"Mapping", 0, false);
                } else {
                    out.push(b'\n');
                }
                self.out = out;
            }
            let mut row = Vec::new();
            pad_right(&mut row, &start, w1);
            for (name, value, width) in [
                (&b"Perm"[..], &perms, w2),
                (b"Offset", &offset, w3),
                (b"Device", &dev, w4),
                (b"Inode", &inode, w5),
            ] {
                if self.is_enabled(name) {
                    row.push(b' ');
                    pad_right(&mut row, value, width);
                }
            }
            for c in &self.columns {
                row.push(b' ');
                pad_right(&mut row, &c.value_str, c.max_width);
            }
            if has_vmflags && self.is_enabled(b"VmFlags") {
                row.push(b' ');
                pad_right(&mut row, &vmflags, wv);
            }
            if self.is_enabled(b"Mapping") {
                row.push(b' ');
                let desc = cstr(&map_desc);
                let shown = match (self.o.show_path, desc.iter().rposition(|&b| b == b'/')) {
                    (false, Some(slash)) => &desc[slash + 1..],
                    _ => desc,
                };
                row.extend_from_slice(shown);
            }
            row.push(b'\n');
            self.out.extend(row);
            first_mapping = 0;
        }
        if !q && !self.columns.is_empty() {
            let mut gap = w1 + 1;
            for (name, width) in [
                (&b"Perm"[..], w2),
                (b"Offset", w3),
                (b"Device", w4),
                (b"Inode", w5),
            ] {
                if self.is_enabled(name) {
                    gap += width + 1;
                }
            }
            let out = &mut self.out;
            out.extend(std::iter::repeat_n(b' ', gap));
            for c in &self.columns {
                out.extend(std::iter::repeat_n(b'=', c.max_width));
                out.push(b' ');
            }
            out.push(b'\n');
            out.extend(std::iter::repeat_n(b' ', gap));
            // 4.0.2 does not reset the totals: a second PID's footer includes the first's.
            for c in &self.columns {
                out.extend_from_slice(format!("{:>w$} ", c.total, w = c.max_width).as_bytes());
            }
            out.extend_from_slice(b"KB \n");
        }
        Ok(())
    }
}

/// `printf("%*s", width, s)`.
fn pad_right(out: &mut Vec<u8>, s: &[u8], width: usize) {
    out.extend(std::iter::repeat_n(b' ', width.saturating_sub(s.len())));
    out.extend_from_slice(s);
}
