//! A drop-in for procps-ng 4.0.2's `pmap`: for the same process and arguments it prints the
//! same bytes and exits with the same code.
//!
//! Byte-identical means identical in the odd cases too, so this follows procps's own control
//! flow over the same kind of buffer: lines are read with `fgets` into 1024 bytes (a longer
//! line is handled in pieces, as procps does), fields are scanned with `sscanf` semantics
//! ([`procmaps::cscan`]), and in `-x` mode the mapping name is taken from the line buffer at
//! the moment procps prints it. Process facts come from [`procmaps::process`]; locale-dependent
//! decisions are glibc's own ([`clib`]).

pub mod args;
mod clib;
mod escape;
mod extended;
mod rc;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use procmaps::cscan::{fgets_pieces, sscanf, Value};
use procmaps::process::{self, ProcessInfo};

use args::{errx, Exit, Options};

const MAPBUF: usize = 1024;

/// A heading of the `-x` or `-d` table: its text, its minimum width, whether right-aligned.
type Column = (&'static [u8], usize, bool);

const X_COLUMNS: [Column; 5] = [
    (b"Address", 16, false),
    (b"Kbytes", 7, true),
    (b"RSS", 7, true),
    (b"Dirty", 7, true),
    (b"Mode", 5, false),
];
const D_COLUMNS: [Column; 5] = [
    (b"Address", 16, false),
    (b"Kbytes", 7, true),
    (b"Mode", 5, false),
    (b"Offset", 16, false),
    (b"Device", 9, false),
];

/// Where a mapping's name comes from when it is printed.
#[derive(Clone)]
enum Name {
    Fixed(Vec<u8>),
    /// An offset into the line buffer: read when printed, as procps does with its pointer.
    InBuffer(usize),
}

/// One `-X` column; procps keeps the list (and its widths) across all PIDs of one run.
pub(crate) struct DetailColumn {
    desc: Vec<u8>,
    value_str: Vec<u8>,
    total: u64,
    max_width: usize,
}

pub(crate) struct Pmap {
    o: Options,
    out: Vec<u8>,
    err: Vec<u8>,
    mapbuf: [u8; MAPBUF],
    /// procps's `start_To_Avoid_Warning` is a static: it survives from one PID to the next.
    start: u64,
    columns: Vec<DetailColumn>,
    rc_fields: Vec<Vec<u8>>,
    shm_minor: u32,
    utf8: bool,
}

/// Runs pmap with these arguments (`args[0]` is the program name); returns the exit code.
/// Output goes to the process's stdout and stderr.
///
/// Call it from `main` before the program starts any other thread: it adopts the
/// environment's locale (`setlocale`), which C does not make safe against other threads.
pub fn main_with(args: Vec<OsString>) -> i32 {
    clib::adopt_environment_locale();
    let Finished(code, stdout, stderr) = run(&args);
    let _ = std::io::stderr().write_all(&stderr);
    let mut out = std::io::stdout().lock();
    if out.write_all(&stdout).and_then(|()| out.flush()).is_err() {
        let _ = std::io::stderr().write_all(b"pmap: write error\n");
        return 1;
    }
    code
}

/// Exit code, stdout and stderr of a run that ends with `exit`, after the warnings in `err`.
fn finish(exit: Exit, mut err: Vec<u8>) -> Finished {
    err.extend(exit.stderr);
    Finished(exit.code, exit.stdout, err)
}

struct Finished(i32, Vec<u8>, Vec<u8>);

impl Finished {
    /// Puts `printed` (the output so far) before the exit's own stdout.
    fn with_stdout(mut self, mut printed: Vec<u8>) -> Finished {
        printed.append(&mut self.1);
        self.1 = printed;
        self
    }
}

fn run(args: &[OsString]) -> Finished {
    let mut warnings = Vec::new();
    let o = match args::parse(args, &mut warnings) {
        Ok(o) => o,
        Err(exit) => return finish(exit, warnings),
    };
    let program = args
        .first()
        .and_then(|a| {
            std::path::Path::new(a)
                .file_name()
                .map(|n| n.as_bytes().to_vec())
        })
        .unwrap_or_else(|| b"pmap".to_vec());
    let exclusive = [
        o.read_rc,
        o.read_rc_from.is_some(),
        o.device,
        o.create_rc,
        o.create_rc_to.is_some(),
        o.extended,
        o.more_details > 0,
    ];
    if exclusive.iter().filter(|&&b| b).count() > 1 {
        return finish(
            errx("options -c, -C, -d, -n, -N, -x, -X are mutually exclusive"),
            warnings,
        );
    }
    let creating = o.create_rc || o.create_rc_to.is_some();
    if creating && (o.quiet || o.show_path) {
        return finish(
            errx("options -p, -q are mutually exclusive with -n, -N"),
            warnings,
        );
    }
    if creating && !o.operands.is_empty() {
        return finish(errx("too many arguments"), warnings);
    }
    if creating {
        return finish(rc::create(&o, &program), warnings);
    }
    if o.operands.is_empty() {
        return finish(errx("argument missing"), warnings);
    }
    let mut pmap = Pmap {
        o,
        out: Vec::new(),
        err: warnings,
        mapbuf: [0; MAPBUF],
        start: 0,
        columns: Vec::new(),
        rc_fields: Vec::new(),
        shm_minor: u32::MAX,
        utf8: clib::codeset_is_utf8(),
    };
    if pmap.o.read_rc_from.is_some() {
        pmap.o.read_rc = true;
    }
    if pmap.o.read_rc {
        if let Err(exit) = rc::read(&mut pmap, &program) {
            return finish(exit, std::mem::take(&mut pmap.err));
        }
    }
    let mut pids = Vec::new();
    for operand in &pmap.o.operands {
        let mut walk: &[u8] = operand;
        if let Some(rest) = walk.strip_prefix(b"/proc/") {
            walk = rest;
            // `pmap /proc/self` and the like are skipped, not refused.
            if !walk.first().is_some_and(u8::is_ascii_digit) {
                continue;
            }
        }
        // procps: a digit first, then strtoul(…, 0) must use it all and give 1..=0x7fffffff.
        let valid = walk
            .first()
            .is_some_and(u8::is_ascii_digit)
            .then(|| procmaps::cscan::strtoul(walk, 0));
        let Some(Some((pid, used))) = valid else {
            return finish(args::usage_error(vec![]), pmap.err);
        };
        if !(1..=0x7fff_ffff).contains(&pid) || used != walk.len() {
            return finish(args::usage_error(vec![]), pmap.err);
        }
        pids.push(pid as u32);
    }
    if pids.is_empty() {
        // libproc2 refuses to select nothing (every operand was a skipped /proc/NAME).
        return finish(errx("library failed pids statistics"), pmap.err);
    }
    pmap.discover_shm_minor();
    let found: Vec<ProcessInfo> = pids
        .iter()
        .filter_map(|&pid| process::read(pid).ok())
        .collect();
    let mut code = 0;
    for info in &found {
        match pmap.one_proc(info) {
            Ok(c) => code |= c,
            // errx: what was printed so far still reaches stdout.
            Err(exit) => return finish(exit, std::mem::take(&mut pmap.err)).with_stdout(pmap.out),
        }
    }
    if found.len() < pids.len() {
        code |= 42;
    }
    Finished(code, pmap.out, pmap.err)
}

/// Reads `/proc/PID/<what>` whole; `None` if it cannot be opened.
fn read_proc(pid: u32, what: &str) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/{what}")).ok()
}

fn cstr(buf: &[u8]) -> &[u8] {
    &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())]
}

/// `printf("%*.*s ")`-style column: `s` padded to `width` (at least its own length), then a
/// space; `width < 1` prints `s` and a newline, as procps's `justify_print` does with `puts`.
pub(crate) fn justify(out: &mut Vec<u8>, s: &[u8], width: usize, right: bool) -> usize {
    if width < 1 {
        out.extend_from_slice(s);
        out.push(b'\n');
        return width;
    }
    let width = width.max(s.len());
    let pad = width - s.len();
    if right {
        out.extend(std::iter::repeat_n(b' ', pad));
        out.extend_from_slice(s);
    } else {
        out.extend_from_slice(s);
        out.extend(std::iter::repeat_n(b' ', pad));
    }
    out.push(b' ');
    width
}

impl Pmap {
    /// Copies one `fgets` piece into the line buffer, NUL-terminated; bytes past it stay.
    fn load(&mut self, piece: &[u8]) {
        self.mapbuf[..piece.len()].copy_from_slice(piece);
        self.mapbuf[piece.len()] = 0;
    }

    fn line(&self) -> &[u8] {
        cstr(&self.mapbuf)
    }

    /// procps creates a SysV segment to learn the device minor the kernel gives them.
    fn discover_shm_minor(&mut self) {
        // Attach first, then read: /proc files are generated when read.
        let Some(probe) = clib::SysvProbe::attach() else {
            return;
        };
        let Ok(maps) = std::fs::read("/proc/self/maps") else {
            return;
        };
        for piece in fgets_pieces(&maps, 256) {
            let s = sscanf(piece, "%lx-%lx %31s %llx %x:%x %llu");
            if s.count < 6 {
                continue;
            }
            let start = s.values[0].int();
            let perms = s.values[2].bytes();
            if start > probe.address() || s.values[4].int() != 0 || perms.get(3) != Some(&b's') {
                continue;
            }
            if contains(piece, b"/SYSV") {
                self.shm_minor = s.values[5].int() as u32;
                break;
            }
        }
    }

    /// procps's `mapping_name`, over the cleaned line in the buffer.
    fn mapping_name(
        &self,
        info: &ProcessInfo,
        addr: u64,
        len: u64,
        dev: (u32, u32),
        inode: u64,
    ) -> Name {
        let line = self.line();
        if dev.0 == 0 && dev.1 == self.shm_minor && contains(line, b"/SYSV") {
            return Name::Fixed(format!("  [ shmid=0x{inode:x} ]").into_bytes());
        }
        if let Some(last) = line.iter().rposition(|&b| b == b'/') {
            if self.o.show_path {
                return Name::InBuffer(line.iter().position(|&b| b == b'/').expect("has a slash"));
            }
            return Name::InBuffer(if last + 1 < line.len() {
                last + 1
            } else {
                last
            });
        }
        let stack = info.start_stack;
        if stack >= addr && stack <= addr.wrapping_add(len) {
            Name::Fixed(b"  [ stack ]".to_vec())
        } else {
            Name::Fixed(b"  [ anon ]".to_vec())
        }
    }

    fn name_bytes(&self, name: &Name) -> Vec<u8> {
        match name {
            Name::Fixed(b) => b.clone(),
            Name::InBuffer(at) => cstr(&self.mapbuf[*at..]).to_vec(),
        }
    }

    /// Strips the newline and turns every byte that is not printable in the current locale
    /// into `?`, in place. (4.0.2 does this byte by byte: `Páramo` prints as `P??ramo` even in
    /// a UTF-8 locale; later procps versions keep valid multibyte characters.)
    fn clean_line(&mut self) {
        let len = self.line().len();
        if let Some(nl) = self.mapbuf[..len].iter().position(|&b| b == b'\n') {
            self.mapbuf[nl] = 0;
        }
        let len = self.line().len();
        for b in &mut self.mapbuf[..len] {
            if !clib::isprint(*b) {
                *b = b'?';
            }
        }
    }

    /// One process; `Err` for a malformed smaps file, which ends pmap as `errx` does.
    fn one_proc(&mut self, info: &ProcessInfo) -> Result<i32, Exit> {
        let header = escape::command(info, self.utf8);
        self.out
            .extend_from_slice(format!("{}:   ", info.tgid).as_bytes());
        self.out.extend_from_slice(&header);
        self.out.push(b'\n');
        let o = &self.o;
        let detailed = o.extended || o.more_details > 0 || o.read_rc;
        let Some(data) = read_proc(info.tgid, if detailed { "smaps" } else { "maps" }) else {
            return Ok(1);
        };
        if self.o.more_details > 0 || self.o.read_rc {
            self.print_extended(&data)?;
        } else {
            self.print_simple(info, &data);
        }
        Ok(0)
    }

    /// The default, `-x` and `-d` formats.
    fn print_simple(&mut self, info: &ProcessInfo, data: &[u8]) {
        let (x, d, q) = (self.o.extended, self.o.device, self.o.quiet);
        let columns = match (x, d) {
            (true, _) => Some(&X_COLUMNS),
            (_, true) => Some(&D_COLUMNS),
            _ => None,
        };
        let mut widths = [0usize; 5];
        if let Some(columns) = columns {
            for (width, &(heading, min, right)) in widths.iter_mut().zip(columns) {
                *width = if q {
                    min
                } else {
                    justify(&mut self.out, heading, min, right)
                };
            }
            if !q {
                justify(&mut self.out, b"Mapping", 0, false);
            }
        }
        let [w1, w2, w3, w4, w5] = widths;
        let (mut total_shared, mut total_private_readonly, mut total_private_writeable) =
            (0u64, 0u64, 0u64);
        let (mut diff, mut end) = (0u64, 0u64);
        let mut perms = [0u8; 32];
        let mut cp2: Option<Name> = None;
        let (mut rss, mut private_dirty, mut shared_dirty) = (0u64, 0u64, 0u64);
        let (mut total_rss, mut total_private_dirty, mut total_shared_dirty) = (0u64, 0u64, 0u64);
        let (mut file_offset, mut dev_major, mut dev_minor, mut inode) = (0u64, 0u32, 0u32, 0u64);
        for piece in fgets_pieces(data, MAPBUF) {
            self.load(piece);
            if self.mapbuf[0].is_ascii_uppercase() {
                let s = sscanf(self.line(), "%20[^:]: %llu");
                if s.count == 2 {
                    let value = s.values[1].int();
                    match s.values[0].bytes() {
                        b"Rss" => {
                            rss = value;
                            total_rss = total_rss.wrapping_add(value);
                        }
                        b"Shared_Dirty" => {
                            shared_dirty = value;
                            total_shared_dirty = total_shared_dirty.wrapping_add(value);
                        }
                        b"Private_Dirty" => {
                            private_dirty = value;
                            total_private_dirty = total_private_dirty.wrapping_add(value);
                        }
                        b"Swap" => {
                            if let Some(name) = cp2.take() {
                                let name = self.name_bytes(&name);
                                let line = format!(
                                    "{:0w1$x} {:>w2$} {:>w3$} {:>w4$} {:>w5$} ",
                                    self.start,
                                    diff >> 10,
                                    rss,
                                    private_dirty.wrapping_add(shared_dirty),
                                    String::from_utf8_lossy(cstr(&perms)),
                                );
                                self.out.extend_from_slice(line.as_bytes());
                                self.out.extend_from_slice(&name);
                                self.out.push(b'\n');
                            }
                            (rss, shared_dirty, private_dirty) = (0, 0, 0);
                            (diff, end) = (0, 0);
                            perms[0] = 0;
                        }
                        _ => {}
                    }
                }
                continue;
            }
            let s = sscanf(self.line(), "%lx-%lx %31s %llx %x:%x %llu");
            for (k, v) in s.values.iter().enumerate() {
                match (k, v) {
                    (0, v) => self.start = v.int(),
                    (1, v) => end = v.int(),
                    (2, Value::Bytes(b)) => {
                        perms[..b.len()].copy_from_slice(b);
                        perms[b.len()] = 0;
                    }
                    (3, v) => file_offset = v.int(),
                    (4, v) => dev_major = v.int() as u32,
                    (5, v) => dev_minor = v.int() as u32,
                    (6, v) => inode = v.int(),
                    _ => {}
                }
            }
            if end.wrapping_sub(1) < self.o.range_low {
                continue;
            }
            if self.o.range_high < self.start {
                break;
            }
            self.clean_line();
            diff = end.wrapping_sub(self.start);
            if perms[3] == b's' {
                total_shared = total_shared.wrapping_add(diff);
            }
            if perms[3] == b'p' {
                perms[3] = b'-';
                if perms[1] == b'w' {
                    total_private_writeable = total_private_writeable.wrapping_add(diff);
                } else {
                    total_private_readonly = total_private_readonly.wrapping_add(diff);
                }
            }
            perms[4] = b'-';
            perms[5] = 0;
            let name = self.mapping_name(info, self.start, diff, (dev_major, dev_minor), inode);
            if x {
                cp2 = Some(name);
                continue;
            }
            let name = self.name_bytes(&name);
            let perms_text = String::from_utf8_lossy(cstr(&perms)).into_owned();
            let line = if d {
                format!(
                    "{:0w1$x} {:>w2$} {:>w3$} {:0w4$x} {}{:03x}:{:05x} ",
                    self.start,
                    diff >> 10,
                    perms_text,
                    file_offset,
                    " ".repeat(w5.saturating_sub(9)),
                    dev_major,
                    dev_minor,
                )
            } else {
                format!("{:016x} {:>6}K {} ", self.start, diff >> 10, perms_text)
            };
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(&name);
            self.out.push(b'\n');
        }
        if q {
            return;
        }
        let mapped = total_shared
            .wrapping_add(total_private_writeable)
            .wrapping_add(total_private_readonly)
            >> 10;
        if x {
            let out = &mut self.out;
            justify(out, b"----------------", w1, false);
            justify(out, b"-------", w2, true);
            justify(out, b"-------", w3, true);
            justify(out, b"-------", w4, true);
            out.push(b'\n');
            let total_dirty = total_shared_dirty.wrapping_add(total_private_dirty);
            let line = format!(
                "{:<w1$} {:>w2$} {:>w3$} {:>w4$}\n",
                "total kB", mapped as i64, total_rss, total_dirty
            );
            out.extend_from_slice(line.as_bytes());
        }
        if d {
            let line = format!(
                "mapped: {}K    writeable/private: {}K    shared: {}K\n",
                mapped as i64,
                (total_private_writeable >> 10) as i64,
                (total_shared >> 10) as i64
            );
            self.out.extend_from_slice(line.as_bytes());
        }
        if !x && !d {
            self.out
                .extend_from_slice(format!(" total {:>16}K\n", mapped as i64).as_bytes());
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
