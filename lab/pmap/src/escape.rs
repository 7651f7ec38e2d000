//! The command line in pmap's first line, as libproc2 4.0.2 builds it: `/proc/PID/cmdline`
//! with NULs as spaces and unprintable characters as `?`; or `[comm]` (plus ` <defunct>` for a
//! zombie) when there is no command line.

use procmaps::process::ProcessInfo;

use crate::clib;

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

/// libproc2's `u8charlen`: length of the UTF-8 character at `s[0]`, -1 if invalid, 0 at end.
fn u8charlen(s: &[u8]) -> i32 {
    let size = s.len();
    if size == 0 {
        return 0;
    }
    if s[0] <= 0x7f {
        return 1;
    }
    if size >= 2 && (s[1] & 0xc0) == 0x80 {
        if (0xc2..=0xdf).contains(&s[0]) {
            return 2;
        }
        if size == 3 {
            let x = (u32::from(s[0]) << 16) + (u32::from(s[1]) << 8) + u32::from(s[2]);
            if (0xee8080..=0xefa3bf).contains(&x) {
                return -1;
            }
        }
        if size >= 3 && (s[2] & 0xc0) == 0x80 {
            let x = (u32::from(s[0]) << 6) | u32::from(s[1] & 0x3f);
            if (0x3820..=0x3b5f).contains(&x) || (0x3b80..=0x3bff).contains(&x) {
                return 3;
            }
            if size >= 4 && (s[3] & 0xc0) == 0x80 && (0x3c10..=0x3d0f).contains(&x) {
                return 4;
            }
        }
    }
    -1
}

/// `escape_str`: unprintable characters become `?`.
fn escape_str(src: &[u8], utf8: bool) -> Vec<u8> {
    let mut s = src.to_vec();
    if !utf8 {
        for b in &mut s {
            if !clib::isprint(*b) {
                *b = b'?';
            }
        }
        return s;
    }
    let mut at = 0;
    loop {
        let n = u8charlen(&s[at..]);
        if n == 0 {
            break;
        }
        let c1 = s.get(at + 1).copied().unwrap_or(0);
        let step = if n < 0
            || s[at] < 0x20
            || s[at] == 0x7f
            || (s[at] == 0xc2 && (0x80..=0x9f).contains(&c1))
        {
            s[at] = b'?';
            1
        } else {
            n as usize
        };
        at += step;
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
    fn unprintables_become_question_marks() {
        assert_eq!(
            command(&info(b"a\x01b\xc2\x85c\xff\x00", b"x", b'S'), true),
            b"a?b??c?"
        );
        assert_eq!(
            command(&info("Páramo\0".as_bytes(), b"x", b'S'), true),
            "Páramo".as_bytes()
        );
    }
}
