//! pmap's command line, parsed the way glibc's `getopt_long` does for procps: options and
//! PIDs in any order, clustered short options (`-xq`), `--long=value` or `--long value`,
//! unique prefixes of long options, `--` to end options, and glibc's exact messages.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use procmaps::cscan::strtoul;

/// What to do, once the options have been read.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub extended: bool,
    /// `-X` once: more details; twice: everything the kernel provides.
    pub more_details: u32,
    pub device: bool,
    pub quiet: bool,
    pub show_path: bool,
    pub read_rc: bool,
    pub read_rc_from: Option<Vec<u8>>,
    pub create_rc: bool,
    pub create_rc_to: Option<Vec<u8>>,
    pub range_low: u64,
    pub range_high: u64,
    /// The non-option arguments, in order.
    pub operands: Vec<Vec<u8>>,
}

/// How parsing ended early: the process must exit with this code after the given output.
#[derive(Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub const USAGE: &str = "
Usage:
 pmap [options] PID [PID ...]

Options:
 -x, --extended              show details
 -X                          show even more details
            WARNING: format changes according to /proc/PID/smaps
 -XX                         show everything the kernel provides
 -c, --read-rc               read the default rc
 -C, --read-rc-from=<file>   read the rc from file
 -n, --create-rc             create new default rc
 -N, --create-rc-to=<file>   create new rc to file
            NOTE: pid arguments are not allowed with -n, -N
 -d, --device                show the device format
 -q, --quiet                 do not display header and footer
 -p, --show-path             show path in the mapping
 -A, --range=<low>[,<high>]  limit results to the given range

 -h, --help     display this help and exit
 -V, --version  output version information and exit

For more details see pmap(1).
";

/// What `--help` adds after procps's text, so it says what this program is.
pub const ABOUT: &str =
    "\nThis pmap is bookstore's Rust drop-in for procps-ng 4.0.2's: same output, same exit codes.\n";

pub const VERSION: &str = concat!(
    "pmap (bookstore) ",
    env!("CARGO_PKG_VERSION"),
    ", a drop-in for pmap from procps-ng 4.0.2\n"
);

struct LongOption {
    name: &'static str,
    takes_argument: bool,
    short: u8,
}

const LONG_OPTIONS: &[LongOption] = &[
    LongOption {
        name: "extended",
        takes_argument: false,
        short: b'x',
    },
    LongOption {
        name: "device",
        takes_argument: false,
        short: b'd',
    },
    LongOption {
        name: "quiet",
        takes_argument: false,
        short: b'q',
    },
    LongOption {
        name: "range",
        takes_argument: true,
        short: b'A',
    },
    LongOption {
        name: "help",
        takes_argument: false,
        short: b'h',
    },
    LongOption {
        name: "version",
        takes_argument: false,
        short: b'V',
    },
    LongOption {
        name: "read-rc",
        takes_argument: false,
        short: b'c',
    },
    LongOption {
        name: "read-rc-from",
        takes_argument: true,
        short: b'C',
    },
    LongOption {
        name: "create-rc",
        takes_argument: false,
        short: b'n',
    },
    LongOption {
        name: "create-rc-to",
        takes_argument: true,
        short: b'N',
    },
    LongOption {
        name: "show-path",
        takes_argument: false,
        short: b'p',
    },
];

/// Short options, and whether each takes an argument (`xXrdqA:hVcC:nN:p`).
fn short_takes_argument(c: u8) -> Option<bool> {
    match c {
        b'x' | b'X' | b'r' | b'd' | b'q' | b'h' | b'V' | b'c' | b'n' | b'p' => Some(false),
        b'A' | b'C' | b'N' => Some(true),
        _ => None,
    }
}

/// procps's `usage(stderr)`: `stderr` (a getopt message, or nothing), the usage text, exit 1.
pub fn usage_error(stderr: Vec<u8>) -> Exit {
    let mut stderr = stderr;
    stderr.extend_from_slice(USAGE.as_bytes());
    Exit {
        code: 1,
        stdout: vec![],
        stderr,
    }
}

/// `errx(EXIT_FAILURE, ...)`.
pub fn errx(message: &str) -> Exit {
    Exit {
        code: 1,
        stdout: vec![],
        stderr: format!("pmap: {message}\n").into_bytes(),
    }
}

/// Parses the arguments (`args[0]` is the program name, used in getopt's messages as glibc
/// does). Warnings that do not stop the program are appended to `warnings`.
pub fn parse(args: &[OsString], warnings: &mut Vec<u8>) -> Result<Options, Exit> {
    let prog = args
        .first()
        .map(|a| a.as_bytes().to_vec())
        .unwrap_or_else(|| b"pmap".to_vec());
    let prog = String::from_utf8_lossy(&prog).into_owned();
    if args.len() < 2 {
        return Err(usage_error(vec![]));
    }
    let mut o = Options {
        range_high: u64::MAX,
        ..Options::default()
    };
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].as_bytes();
        i += 1;
        if arg == b"--" {
            o.operands
                .extend(args[i..].iter().map(|a| a.clone().into_vec()));
            break;
        }
        if let Some(long) = arg.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(long[eq + 1..].to_vec())),
                None => (long, None),
            };
            let shown = String::from_utf8_lossy(name).into_owned();
            let exact = LONG_OPTIONS.iter().find(|l| l.name.as_bytes() == name);
            let option = match exact {
                Some(l) => l,
                None => {
                    let candidates: Vec<&LongOption> = LONG_OPTIONS
                        .iter()
                        .filter(|l| l.name.as_bytes().starts_with(name))
                        .collect();
                    match candidates.as_slice() {
                        [] => {
                            return Err(usage_error(
                                format!("{prog}: unrecognized option '--{shown}'\n").into_bytes(),
                            ))
                        }
                        [one] => *one,
                        many => {
                            let list: String =
                                many.iter().map(|l| format!(" '--{}'", l.name)).collect();
                            return Err(usage_error(
                                format!("{prog}: option '--{shown}' is ambiguous; possibilities:{list}\n").into_bytes(),
                            ));
                        }
                    }
                }
            };
            let value = if option.takes_argument {
                match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].as_bytes().to_vec())
                    }
                    None => {
                        return Err(usage_error(
                            format!("{prog}: option '--{}' requires an argument\n", option.name)
                                .into_bytes(),
                        ))
                    }
                }
            } else {
                if inline.is_some() {
                    return Err(usage_error(
                        format!(
                            "{prog}: option '--{}' doesn't allow an argument\n",
                            option.name
                        )
                        .into_bytes(),
                    ));
                }
                None
            };
            apply(&mut o, option.short, value, warnings)?;
            continue;
        }
        if arg.len() > 1 && arg[0] == b'-' {
            let mut k = 1;
            while k < arg.len() {
                let c = arg[k];
                k += 1;
                let Some(takes) = short_takes_argument(c) else {
                    return Err(usage_error(
                        format!("{prog}: invalid option -- '{}'\n", c as char).into_bytes(),
                    ));
                };
                let value = if takes {
                    if k < arg.len() {
                        let v = arg[k..].to_vec();
                        k = arg.len();
                        Some(v)
                    } else if i < args.len() {
                        i += 1;
                        Some(args[i - 1].as_bytes().to_vec())
                    } else {
                        return Err(usage_error(
                            format!("{prog}: option requires an argument -- '{}'\n", c as char)
                                .into_bytes(),
                        ));
                    }
                } else {
                    None
                };
                apply(&mut o, c, value, warnings)?;
            }
            continue;
        }
        o.operands.push(arg.to_vec());
    }
    Ok(o)
}

fn apply(
    o: &mut Options,
    c: u8,
    value: Option<Vec<u8>>,
    warnings: &mut Vec<u8>,
) -> Result<(), Exit> {
    match c {
        b'x' => o.extended = true,
        b'X' => o.more_details += 1,
        b'r' => warnings.extend_from_slice(b"pmap: option -r is ignored as SunOS compatibility\n"),
        b'd' => o.device = true,
        b'q' => o.quiet = true,
        b'A' => range_arguments(o, &value.unwrap_or_default())?,
        b'h' => {
            let mut stdout = USAGE.as_bytes().to_vec();
            stdout.extend_from_slice(ABOUT.as_bytes());
            return Err(Exit {
                code: 0,
                stdout,
                stderr: vec![],
            });
        }
        b'V' => {
            return Err(Exit {
                code: 0,
                stdout: VERSION.as_bytes().to_vec(),
                stderr: vec![],
            })
        }
        b'c' => o.read_rc = true,
        b'C' => o.read_rc_from = value,
        b'n' => o.create_rc = true,
        b'N' => o.create_rc_to = value,
        b'p' => o.show_path = true,
        _ => unreachable!("only known options reach apply"),
    }
    Ok(())
}

/// `-A low[,high]`: hexadecimal addresses; one value is both ends.
fn range_arguments(o: &mut Options, arg: &[u8]) -> Result<(), Exit> {
    let (first, second) = match arg.iter().position(|&b| b == b',') {
        Some(comma) => (&arg[..comma], &arg[comma + 1..]),
        None => (arg, arg),
    };
    let mut ok = true;
    for (part, target) in [(first, &mut o.range_low), (second, &mut o.range_high)] {
        if !part.is_empty() {
            let (value, used) = strtoul(part, 16).unwrap_or((0, 0));
            *target = value;
            ok &= used == part.len();
        }
    }
    if ok {
        Ok(())
    } else {
        Err(errx(&format!(
            "failed to parse argument: '{}'",
            String::from_utf8_lossy(arg)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_documents_every_long_option() {
        let page = include_str!("../doc/pmap.1");
        for option in LONG_OPTIONS {
            let escaped = format!("\\-\\-{}", option.name.replace('-', "\\-"));
            assert!(page.contains(&escaped), "pmap.1 lacks --{}", option.name);
            let short = format!("\\-{}", option.short as char);
            assert!(
                page.contains(&short),
                "pmap.1 lacks -{}",
                option.short as char
            );
        }
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("pmap")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn options_and_pids_mix_in_any_order() {
        let o = parse(
            &args(&["1", "-xq", "--range=10,20", "2", "--", "-3"]),
            &mut vec![],
        )
        .unwrap();
        assert!(o.extended && o.quiet);
        assert_eq!((o.range_low, o.range_high), (0x10, 0x20));
        assert_eq!(
            o.operands,
            vec![b"1".to_vec(), b"2".to_vec(), b"-3".to_vec()]
        );
    }

    #[test]
    fn long_options_take_unique_prefixes() {
        assert!(parse(&args(&["--ext", "1"]), &mut vec![]).unwrap().extended);
        let e = parse(&args(&["--read", "1"]), &mut vec![]).unwrap_err();
        assert!(
            String::from_utf8_lossy(&e.stderr).starts_with("pmap: option '--read' is ambiguous")
        );
    }

    #[test]
    fn errors_match_glibc() {
        let e = parse(&args(&["-k"]), &mut vec![]).unwrap_err();
        assert!(e
            .stderr
            .starts_with(b"pmap: invalid option -- 'k'\n\nUsage:"));
        let e = parse(&args(&["-A"]), &mut vec![]).unwrap_err();
        assert!(e
            .stderr
            .starts_with(b"pmap: option requires an argument -- 'A'\n"));
        let e = parse(&args(&["-A", "zz", "1"]), &mut vec![]).unwrap_err();
        assert_eq!(e.stderr, b"pmap: failed to parse argument: 'zz'\n");
    }
}
