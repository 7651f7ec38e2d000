//! Shell completions and man pages for a clap command, so that every binary of the project
//! offers them the same way (`completions SHELL`, `man DIR`).
//!
//! Completions are `clap_complete`'s. Man pages are `clap_mangen`'s sections, rendered one by
//! one so that the text after the options (clap's `after_help`) becomes NOTES and the exit
//! codes an EXIT STATUS section of their own, as man pages have them.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};

/// What a program's exit codes mean: the table under its `--help` and its man pages' EXIT
/// STATUS section, from one list.
pub struct ExitCodes {
    pub codes: Vec<(u8, String)>,
}

impl ExitCodes {
    /// The table as `--help` prints it (`after_help`); the man pages cut it from NOTES, since
    /// EXIT STATUS says it already.
    pub fn help_text(&self) -> String {
        let mut text = String::from("Exit codes:");
        for (code, meaning) in &self.codes {
            text.push_str(&format!("\n  {code}  {meaning}"));
        }
        text
    }
}

/// Writes the completion script of `cmd` for `shell` to `out`.
pub fn write_completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes `NAME.1` for `cmd` and `NAME-SUB.1` for each visible subcommand (recursively) into
/// `dir`, created if missing. Returns the files written, in order.
pub fn write_man_pages(
    cmd: clap::Command,
    dir: &Path,
    exit: &ExitCodes,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_tree(&cmd, dir, &exit.codes, &exit.help_text(), &mut written)?;
    Ok(written)
}

/// The `man DIR` subcommand of `program`: writes the pages and lists them on stdout, or says
/// why not on stderr. True if every page was written.
pub fn man_command(cmd: clap::Command, dir: &Path, exit: &ExitCodes, program: &str) -> bool {
    match write_man_pages(cmd, dir, exit) {
        Ok(pages) => {
            for page in pages {
                println!("{}", page.display());
            }
            true
        }
        Err(e) => {
            eprintln!("{program} man: cannot write into {}: {e}", dir.display());
            false
        }
    }
}

fn write_tree(
    cmd: &clap::Command,
    dir: &Path,
    codes: &[(u8, String)],
    help_text: &str,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&page)?);
    render(cmd, codes, help_text, &mut file)?;
    file.flush()?;
    written.push(page);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, codes, help_text, written)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections, then NOTES (`after_help` less `help_text`) and EXIT
/// STATUS (`codes`).
fn render(
    cmd: &clap::Command,
    codes: &[(u8, String)],
    help_text: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::default();
    let after = cmd
        .get_after_long_help()
        .or(cmd.get_after_help())
        .map(|text| text.to_string())
        .unwrap_or_default();
    let notes = after.replace(help_text, "");
    let notes = notes.trim();
    if !notes.is_empty() {
        roff.control("SH", ["NOTES"]);
        for paragraph in notes.split("\n\n") {
            roff.control("PP", []);
            for line in paragraph.lines() {
                roff.text([roman(line)]);
                roff.control("br", []);
            }
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in codes {
        roff.control("TP", []);
        roff.text([roman(code.to_string())]);
        roff.text([roman(meaning.as_str())]);
    }
    roff.to_writer(out)?;
    if cmd.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("demo")
            .version("1.0")
            .about("A demo")
            .after_help("Some notes.\n\nExit codes:\n  0  ok\n  3  no market")
            .arg(clap::Arg::new("name").long("name").help("The name"))
            .subcommand(clap::Command::new("run").about("Run it"))
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn a_page_per_visible_command_with_notes_and_exit_status() {
        let dir = std::env::temp_dir().join(format!("cli-docs-test-{}", std::process::id()));
        let exit = ExitCodes {
            codes: vec![(0, "ok".to_string()), (3, "no market".to_string())],
        };
        let pages = write_man_pages(command(), &dir, &exit).unwrap();
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["demo.1", "demo-run.1"],
            "hidden commands get no page"
        );
        let top = std::fs::read_to_string(&pages[0]).unwrap();
        for part in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH NOTES",
            "Some notes.",
            "EXIT STATUS",
            "no market",
        ] {
            assert!(top.contains(part), "{part} missing:\n{top}");
        }
        assert!(
            !top.contains("Exit codes:"),
            "the printed table is not repeated in NOTES:\n{top}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        write_completions(command(), Shell::Bash, &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("demo") && script.contains("run"));
    }
}
