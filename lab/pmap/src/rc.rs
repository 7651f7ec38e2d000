//! The rc file of `-c`/`-C` (which columns `-X`-style output shows, and `ShowPath`) and of
//! `-n`/`-N` (a commented template), as procps 4.0.2 reads and writes it.

use std::io::Write;

use crate::args::{errx, Exit, Options};
use crate::Pmap;

const MAX_LINE: usize = 1024;

fn warnx(err: &mut Vec<u8>, message: &str) {
    err.extend_from_slice(format!("pmap: {message}\n").as_bytes());
}

fn default_file(program: &[u8], err: &mut Vec<u8>) -> Option<Vec<u8>> {
    let Some(home) = std::env::var_os("HOME") else {
        warnx(err, "HOME variable undefined");
        return None;
    };
    let mut path = std::os::unix::ffi::OsStrExt::as_bytes(home.as_os_str()).to_vec();
    path.extend_from_slice(b"/.");
    path.extend_from_slice(program);
    path.extend_from_slice(b"rc");
    Some(path)
}

fn os_path(bytes: &[u8]) -> &std::path::Path {
    std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes))
}

const TEMPLATE: &str = "# pmap's Config File

# All the entries are case sensitive.
# Unsupported entries are ignored!

[Fields Display]

# To enable a field uncomment its entry

#Perm
#Offset
#Device
#Inode
#Size
#Rss
#Pss
#Shared_Clean
#Shared_Dirty
#Private_Clean
#Private_Dirty
#Referenced
#Anonymous
#AnonHugePages
#Swap
#KernelPageSize
#MMUPageSize
#Locked
#VmFlags
#Mapping


[Mapping]

# to show paths in the mapping column uncomment the following line
#ShowPath

";

/// Writes the template unless the file exists. `Err` messages are warnings already given.
fn write_template(path: &[u8], err: &mut Vec<u8>) -> bool {
    if std::fs::File::open(os_path(path)).is_ok() {
        warnx(err, "the file already exists - delete or rename it first");
        return false;
    }
    match std::fs::File::create(os_path(path)) {
        Ok(mut f) => f.write_all(TEMPLATE.as_bytes()).is_ok(),
        Err(_) => false,
    }
}

/// `-n` / `-N FILE`.
pub fn create(o: &Options, program: &[u8]) -> Exit {
    let mut err = Vec::new();
    let name = String::from_utf8_lossy(program).into_owned();
    if let Some(path) = &o.create_rc_to {
        if write_template(path, &mut err) {
            warnx(
                &mut err,
                "rc file successfully created, feel free to edit the content",
            );
            return Exit {
                code: 0,
                stdout: vec![],
                stderr: err,
            };
        }
        err.extend(errx("couldn't create the rc file").stderr);
        return Exit {
            code: 1,
            stdout: vec![],
            stderr: err,
        };
    }
    let Some(path) = default_file(program, &mut err) else {
        return Exit {
            code: 1,
            stdout: vec![],
            stderr: err,
        };
    };
    if write_template(&path, &mut err) {
        warnx(
            &mut err,
            &format!("~/.{name}rc file successfully created, feel free to edit the content"),
        );
        Exit {
            code: 0,
            stdout: vec![],
            stderr: err,
        }
    } else {
        err.extend(errx(&format!("couldn't create ~/.{name}rc")).stderr);
        Exit {
            code: 1,
            stdout: vec![],
            stderr: err,
        }
    }
}

/// `-c` / `-C FILE`: fills the enabled fields and toggles `ShowPath`.
pub fn read(p: &mut Pmap, program: &[u8]) -> Result<(), Exit> {
    let name = String::from_utf8_lossy(program).into_owned();
    let path = match &p.o.read_rc_from {
        Some(path) => path.clone(),
        None => match default_file(program, &mut p.err) {
            Some(path) => path,
            None => {
                return Err(Exit {
                    code: 1,
                    stdout: vec![],
                    stderr: vec![],
                })
            }
        },
    };
    let Ok(text) = std::fs::read(os_path(&path)) else {
        if p.o.read_rc_from.is_some() {
            return Err(errx("couldn't read the rc file"));
        }
        warnx(&mut p.err, &format!("couldn't read ~/.{name}rc"));
        return Err(Exit {
            code: 1,
            stdout: vec![],
            stderr: vec![],
        });
    };
    #[derive(PartialEq)]
    enum Section {
        None,
        Unsupported,
        Fields,
        Mapping,
    }
    let mut section = Section::None;
    let mut pieces = procmaps::cscan::fgets_pieces(&text, MAX_LINE + 1);
    let mut line_no = 0;
    while let Some(piece) = pieces.next() {
        line_no += 1;
        let mut line = piece.to_vec();
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() == MAX_LINE {
            warnx(
                &mut p.err,
                &format!("config line too long - line {line_no}"),
            );
            for tail in pieces.by_ref() {
                if tail.last() == Some(&b'\n') || tail.is_empty() {
                    break;
                }
            }
        }
        let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
        let mut t = line
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .map_or(&line[line.len()..], |i| &line[i..]);
        if t.is_empty() || t[0] == b'#' {
            continue;
        }
        if t[0] == b'[' {
            if let Some(rest) = t.strip_prefix(b"[Fields Display]") {
                t = rest;
                section = Section::Fields;
            } else if let Some(rest) = t.strip_prefix(b"[Mapping]") {
                t = rest;
                section = Section::Mapping;
            } else {
                match t.iter().position(|&b| b == b']') {
                    Some(close) => {
                        section = Section::Unsupported;
                        warnx(
                            &mut p.err,
                            &format!("unsupported section found in the config - line {line_no}"),
                        );
                        t = &t[close + 1..];
                    }
                    None => {
                        warnx(
                            &mut p.err,
                            &format!("syntax error found in the config - line {line_no}"),
                        );
                        t = &t[t.len()..];
                    }
                }
            }
            let after = t
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .map_or(&t[t.len()..], |i| &t[i..]);
            if after.is_empty() || after[0] == b'#' {
                continue;
            }
            warnx(
                &mut p.err,
                &format!("syntax error found in the config - line {line_no}"),
            );
            t = after;
        }
        let mut tokens = t
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        match section {
            Section::Fields | Section::Mapping => {
                if let Some(token) = tokens.next() {
                    if tokens.next().is_some_and(|tail| tail[0] != b'#') {
                        warnx(
                            &mut p.err,
                            &format!("syntax error found in the config - line {line_no}"),
                        );
                    }
                    if section == Section::Fields {
                        p.rc_fields.push(token.iter().copied().take(31).collect());
                    } else if token == b"ShowPath" {
                        p.o.show_path = !p.o.show_path;
                    }
                }
            }
            Section::Unsupported => {}
            Section::None => warnx(
                &mut p.err,
                &format!("syntax error found in the config - line {line_no}"),
            ),
        }
    }
    Ok(())
}
