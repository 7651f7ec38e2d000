//! The command line in pmap's first line, as libproc2 4.0.2 builds it: `/proc/PID/cmdline`
//! with NULs as spaces and unprintable characters escaped (`?`, or `.` for control characters
//! outside a UTF-8 locale); or `[comm]` (plus ` <defunct>` for a zombie) when there is no
//! command line.

use procmaps::process::ProcessInfo;

/// libproc2's buffer for a command line.
const MAX_BUFSZ: usize = 1024 * 64 * 2;

/// `read_unvectored(…, ' ')`: the bytes as read, and the C string libproc2 makes of them.
fn unvectored(raw: &[u8]) -> (usize, Vec<u8>) {
    let n = raw.len().min(MAX_BUFSZ - 1);
    if n == 0 {
        return (0, vec![]);
    }
    let mut dst = raw[..n].to_vec();
    let mut i = n;
    while i > 0 && dst[i - 1] == 0 {
        i -= 1;
    }
    for b in &mut dst[..i] {
        if *b == b'\n' || *b == 0 {
            *b = b' ';
        }
    }
    if dst[n - 1] == b' ' {
        dst[n - 1] = 0;
    }
    let len = dst.iter().position(|&b| b == 0).unwrap_or(n);
    dst.truncate(len);
    (n, dst)
}

/// libproc2 4.0.2's `UTF_tab`: the length of the UTF-8 sequence a byte starts, -1 for a byte
/// that cannot start one (a continuation byte, 0xC0, 0xC1, 0xF5..).
fn utf8_length(first: u8) -> i32 {
    match first {
        0x00..=0x7f => 1,
        0x80..=0xc1 => -1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        0xf5..=0xff => -1,
    }
}

/// libproc2 4.0.2's `ESC_tab`, outside a UTF-8 locale (or for a corrupt UTF-8 string): control
/// characters and DEL become `.`, bytes from 0x80 up `?`, the rest stays.
fn escape_byte(b: u8) -> u8 {
    match b {
        0x01..=0x1f | 0x7f => b'.',
        0x80..=0xff => b'?',
        other => other,
    }
}

/// `escape_str` of libproc2 4.0.2. Outside a UTF-8 locale every byte goes through
/// [`escape_byte`]. In a UTF-8 locale, control characters and DEL become `?`, multibyte
/// sequences are kept (their continuation bytes are not checked, and U+0080..U+009F are kept),
/// and from the first byte that cannot start a sequence, or a sequence cut off by the end, the
/// rest of the string goes through [`escape_byte`].
fn escape_str(src: &[u8], utf8: bool) -> Vec<u8> {
    let mut s = src.to_vec();
    if !utf8 {
        s.iter_mut().for_each(|b| *b = escape_byte(*b));
        return s;
    }
    let mut at = 0;
    while at < s.len() {
        let n = utf8_length(s[at]);
        if n < 0 || at + n as usize > s.len() {
            s[at..].iter_mut().for_each(|b| *b = escape_byte(*b));
            break;
        }
        if s[at] < 0x20 || s[at] == 0x7f {
            s[at] = b'?';
        }
        at += n as usize;
    }
    s
}

/// The text after `PID:   ` in pmap's first line.
pub fn command(info: &ProcessInfo, utf8: bool) -> Vec<u8> {
    let (read, cmdline) = unvectored(&info.cmdline);
    if read > 0 {
        return escape_str(&cmdline, utf8);
    }
    let mut out = vec![b'['];
    let comm_end = info
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.comm.len());
    out.extend(escape_str(&info.comm[..comm_end], utf8));
    out.push(b']');
    if info.state == b'Z' {
        out.extend_from_slice(b" <defunct>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cmdline: &[u8], comm: &[u8], state: u8) -> ProcessInfo {
        ProcessInfo {
            tgid: 1,
            comm: comm.to_vec(),
            state,
            start_stack: 0,
            cmdline: cmdline.to_vec(),
        }
    }

    #[test]
    fn arguments_are_joined_with_spaces() {
        assert_eq!(
            command(&info(b"sleep\x0030\x00", b"sleep", b'S'), true),
            b"sleep 30"
        );
        assert_eq!(command(&info(b"a\nb\x00", b"a", b'S'), true), b"a b");
    }

    #[test]
    fn kernel_threads_and_zombies_show_their_comm_in_brackets() {
        assert_eq!(command(&info(b"", b"kthreadd", b'S'), true), b"[kthreadd]");
        assert_eq!(
            command(&info(b"", b"python3", b'Z'), true),
            b"[python3] <defunct>"
        );
    }

    #[test]
    fn unprintables_are_escaped_as_libproc2_4_0_2_does() {
        // UTF-8 locale: controls become '?', U+0085 is kept, and from an invalid byte on the
        // rest of the string is escaped byte by byte ('.' for controls, '?' from 0x80 up).
        assert_eq!(
            command(&info(b"a\x01b\xc2\x85c\xffd\te\x00", b"x", b'S'), true),
            b"a?b\xc2\x85c?d.e"
        );
        // C locale: controls and DEL become '.', bytes from 0x80 up '?'.
        assert_eq!(
            command(&info(b"a\tb\x1bc\x7fd\re \xc3\xa9\x00", b"x", b'S'), false),
            b"a.b.c.d.e ??"
        );
        assert_eq!(
            command(&info("Páramo\0".as_bytes(), b"x", b'S'), true),
            "Páramo".as_bytes()
        );
    }
}
