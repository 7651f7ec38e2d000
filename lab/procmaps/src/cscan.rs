//! C's `fgets` and `sscanf`, for the few formats procps uses on `/proc` files.
//!
//! A drop-in for a C tool must see input the way the tool does: `fgets(buf, 1024, f)` hands out
//! at most 1023 bytes at a time, so a long line arrives in pieces; `sscanf` assigns conversions
//! left to right and stops at the first mismatch, leaving later variables untouched. Both are
//! reproduced here, with glibc's rules for white space, integer prefixes, signs and overflow.

/// Pieces as `fgets(buf, size, f)` returns them: up to `size - 1` bytes, ending after a `\n`
/// if one comes first.
pub fn fgets_pieces(input: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let max = size.saturating_sub(1).max(1);
    let mut rest = input;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let limit = rest.len().min(max);
        let end = rest[..limit]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(limit, |i| i + 1);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// One converted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn int(&self) -> u64 {
        match self {
            Value::Int(v) => *v,
            Value::Bytes(_) => 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Value::Bytes(b) => b,
            Value::Int(_) => &[],
        }
    }
}

/// What `sscanf` returned, and the values it assigned, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// `sscanf`'s return value: the number of assignments, or -1 (EOF) if the input ran out
    /// before the first conversion.
    pub count: i32,
    pub values: Vec<Value>,
}

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `sscanf(input, format, ...)` for the conversions `%x`, `%u` (with `l`/`ll`), `%s`, `%[...]`
/// and `%c`, with optional widths. The input ends at its first NUL, as a C string does.
pub fn sscanf(input: &[u8], format: &str) -> Scanned {
    let input = &input[..input.iter().position(|&b| b == 0).unwrap_or(input.len())];
    let fmt = format.as_bytes();
    let (mut i, mut f) = (0usize, 0usize);
    let mut values = Vec::new();
    let finish = |values: Vec<Value>, input_failure: bool| {
        let count = if values.is_empty() && input_failure {
            -1
        } else {
            values.len() as i32
        };
        Scanned { count, values }
    };
    while f < fmt.len() {
        let c = fmt[f];
        if is_space(c) {
            while i < input.len() && is_space(input[i]) {
                i += 1;
            }
            f += 1;
            continue;
        }
        if c != b'%' {
            if i >= input.len() {
                return finish(values, true);
            }
            if input[i] != c {
                return finish(values, false);
            }
            i += 1;
            f += 1;
            continue;
        }
        f += 1;
        let mut width = 0usize;
        while f < fmt.len() && fmt[f].is_ascii_digit() {
            width = width * 10 + usize::from(fmt[f] - b'0');
            f += 1;
        }
        while f < fmt.len() && fmt[f] == b'l' {
            f += 1;
        }
        let conv = fmt[f];
        f += 1;
        match conv {
            b'x' | b'u' => {
                while i < input.len() && is_space(input[i]) {
                    i += 1;
                }
                if i >= input.len() {
                    return finish(values, true);
                }
                let limit = if width == 0 {
                    input.len()
                } else {
                    (i + width).min(input.len())
                };
                match strtoul(&input[i..limit], if conv == b'x' { 16 } else { 10 }) {
                    Some((value, used)) => {
                        values.push(Value::Int(value));
                        i += used;
                    }
                    None => return finish(values, false),
                }
            }
            b's' => {
                while i < input.len() && is_space(input[i]) {
                    i += 1;
                }
                if i >= input.len() {
                    return finish(values, true);
                }
                let start = i;
                while i < input.len() && !is_space(input[i]) && (width == 0 || i - start < width) {
                    i += 1;
                }
                values.push(Value::Bytes(input[start..i].to_vec()));
            }
            b'c' => {
                if i >= input.len() {
                    return finish(values, true);
                }
                values.push(Value::Bytes(vec![input[i]]));
                i += 1;
            }
            b'[' => {
                let (set, next) = parse_set(fmt, f);
                f = next;
                if i >= input.len() {
                    return finish(values, true);
                }
                let start = i;
                while i < input.len() && set(input[i]) && (width == 0 || i - start < width) {
                    i += 1;
                }
                if i == start {
                    return finish(values, false);
                }
                values.push(Value::Bytes(input[start..i].to_vec()));
            }
            other => panic!("cscan: unsupported conversion %{}", other as char),
        }
    }
    finish(values, false)
}

/// `strtoul(s, &end, base)` for base 0, 8, 10 or 16: leading white space, an optional sign,
/// an optional `0x` (base 16, or base 0 where it also selects hexadecimal; a leading `0` selects
/// octal), then digits. Saturates on overflow and negates (wrapping) after a `-`, as C does.
/// Returns the value and the bytes used, or `None` if no digit was read (C's `end == s`).
pub fn strtoul(s: &[u8], base: u32) -> Option<(u64, usize)> {
    let lead = s.iter().take_while(|&&b| is_space(b)).count();
    let t = &s[lead..];
    let (negative, sign) = match t.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = &t[sign..];
    let hex_prefix = digits.len() > 2
        && digits[0] == b'0'
        && matches!(digits[1], b'x' | b'X')
        && digits[2].is_ascii_hexdigit();
    let (base, skip) = match base {
        0 if hex_prefix => (16, 2),
        0 if digits.first() == Some(&b'0') => (8, 0),
        0 => (10, 0),
        16 if hex_prefix => (16, 2),
        b => (b, 0),
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut n = 0;
    while let Some(d) = digits
        .get(skip + n)
        .and_then(|&b| (b as char).to_digit(base))
    {
        match value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let value = if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some((value, lead + sign + skip + n))
}

/// The byte test for a `%[...]` set starting at `fmt[f]` (after the `[`), and where the format
/// continues after the closing `]`.
fn parse_set(fmt: &[u8], mut f: usize) -> (impl Fn(u8) -> bool, usize) {
    let negate = fmt.get(f) == Some(&b'^');
    if negate {
        f += 1;
    }
    let mut members = [false; 256];
    let mut first = true;
    while f < fmt.len() && (fmt[f] != b']' || first) {
        let lo = fmt[f];
        if fmt.get(f + 1) == Some(&b'-') && fmt.get(f + 2).is_some_and(|&b| b != b']') {
            for b in lo..=fmt[f + 2] {
                members[usize::from(b)] = true;
            }
            f += 3;
        } else {
            members[usize::from(lo)] = true;
            f += 1;
        }
        first = false;
    }
    (move |b: u8| members[usize::from(b)] != negate, f + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_scans_like_sscanf() {
        let line = b"55ad361d9000-55ad361db000 r--p 00002000 fe:00 247774   /usr/bin/sleep\n";
        let s = sscanf(line, "%lx-%lx %31s %llx %x:%x %llu");
        assert_eq!(s.count, 7);
        assert_eq!(s.values[0], Value::Int(0x55ad361d9000));
        assert_eq!(s.values[2], Value::Bytes(b"r--p".to_vec()));
        assert_eq!(s.values[4], Value::Int(0xfe));
        assert_eq!(s.values[6], Value::Int(247774));
    }

    #[test]
    fn scanning_stops_at_the_first_mismatch_and_counts_what_was_assigned() {
        assert_eq!(sscanf(b"abc/def", "%lx-%lx").count, 1);
        assert_eq!(sscanf(b"ib/foo", "%lx-%lx").count, 0);
        assert_eq!(sscanf(b"", "%lx-%lx").count, -1);
        assert_eq!(sscanf(b"   ", "%lx").count, -1);
    }

    #[test]
    fn smaps_detail_lines_give_two_fields() {
        let s = sscanf(b"Size:                  8 kB\n", "%31[^:]: %20[0-9] kB %c");
        assert_eq!(s.count, 2);
        assert_eq!(s.values[1], Value::Bytes(b"8".to_vec()));
        assert_eq!(
            sscanf(b"THPeligible:    0\n", "%31[^:]: %20[0-9] kB %c").count,
            2
        );
        assert_eq!(
            sscanf(b"VmFlags: rd ex mr\n", "%31[^:]: %20[0-9] kB %c").count,
            1
        );
        let v = sscanf(b"VmFlags: rd ex mr \n", "VmFlags: %127[a-z ]");
        assert_eq!(v.values[0], Value::Bytes(b"rd ex mr ".to_vec()));
    }

    #[test]
    fn integers_follow_strtoul() {
        assert_eq!(strtoul(b"0x1f", 16), Some((0x1f, 4)));
        assert_eq!(strtoul(b"-1", 10), Some((u64::MAX, 2)));
        assert_eq!(
            strtoul(b"99999999999999999999999", 10),
            Some((u64::MAX, 23))
        );
        assert_eq!(strtoul(b"zz", 16), None);
    }

    #[test]
    fn strtoul_bases() {
        assert_eq!(strtoul(b"0x10", 0), Some((16, 4)));
        assert_eq!(strtoul(b"010", 0), Some((8, 3)));
        assert_eq!(strtoul(b"08", 0), Some((0, 1)));
        assert_eq!(strtoul(b"ff", 16), Some((255, 2)));
        assert_eq!(strtoul(b"zz", 16), None);
    }

    #[test]
    fn fgets_hands_out_long_lines_in_pieces() {
        let mut input = vec![b'a'; 2000];
        input.push(b'\n');
        input.extend_from_slice(b"short\n");
        let pieces: Vec<&[u8]> = fgets_pieces(&input, 1024).collect();
        assert_eq!(
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![1023, 978, 6]
        );
    }
}
