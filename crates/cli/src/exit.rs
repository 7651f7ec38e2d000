//! Exit codes: one enum and one table. Every `--help` prints the table, the README shows it,
//! and a test checks that the two agree.

/// Exit codes of every subcommand. What each means, for users, is [`Exit::meaning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Usage = 2,
    NoMarket = 3,
    TimedOut = 4,
    Partial = 5,
    Refused = 6,
    AlreadyRunning = 7,
    Journal = 8,
}

impl Exit {
    pub const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::Error,
        Exit::Usage,
        Exit::NoMarket,
        Exit::TimedOut,
        Exit::Partial,
        Exit::Refused,
        Exit::AlreadyRunning,
        Exit::Journal,
    ];

    /// What the code tells the user: the one text for `--help` and the README's table.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success",
            Exit::Error => "unexpected error (I/O, corrupt object, broken invariant)",
            Exit::Usage => "bad command-line value (the message names the field)",
            Exit::NoMarket => {
                "no market to serve us: none running, `--wait` elapsed, it exited or stopped answering, or all its client slots are taken"
            }
            Exit::TimedOut => {
                "timed out: the store stayed full (seller) / nothing bought (buyer)"
            }
            Exit::Partial => "timed out with the buy only partly filled",
            Exit::Refused => "refused by the market (larger than the store, malformed)",
            Exit::AlreadyRunning => {
                "a market already runs on this name (its pid is printed), or the name is another user's, or its journal is in use, or another market holds its replicated stream's lease"
            }
            Exit::Journal => {
                "the journal cannot be read, replayed or written (corrupt before its last record, another user's, disk full), or its replicated stream was taken over by another writer"
            }
        }
    }

    /// `Ok` for a run that worked; otherwise says why as `bookstore PROGRAM: error` and is
    /// [`Exit::Error`]: for the subcommands whose every failure is unexpected.
    pub fn of_run<E: std::fmt::Display>(program: &str, run: Result<(), E>) -> Exit {
        match run {
            Ok(()) => Exit::Ok,
            Err(e) => {
                eprintln!("bookstore {program}: {e}");
                Exit::Error
            }
        }
    }

    /// For sessions of several commands: keeps the first failure, else takes `next`.
    pub fn keep_first_failure(self, next: Exit) -> Exit {
        if self == Exit::Ok {
            next
        } else {
            self
        }
    }
}

impl From<&bookstore::server::StartError> for Exit {
    fn from(e: &bookstore::server::StartError) -> Self {
        use bookstore::server::StartError::*;
        match e {
            NameTaken(bookstore::server::NameLockError::Held { .. }) | OwnedByOther { .. } => {
                Exit::AlreadyRunning
            }
            Capacity(_) | Slots(_) => Exit::Usage,
            NameTaken(_) | Foreign { .. } | Create(_) | Group { .. } | Identity(_) => Exit::Error,
        }
    }
}

impl From<&bookstore::journal::OpenJournalError> for Exit {
    fn from(e: &bookstore::journal::OpenJournalError) -> Self {
        use bookstore::journal::OpenJournalError::*;
        match e {
            // Another market holds it: most likely one already serves this name.
            Locked { .. } => Exit::AlreadyRunning,
            CapacityMismatch { .. } => Exit::Usage,
            Io { .. }
            | WrongOwner { .. }
            | NotAFile { .. }
            | Corrupt { .. }
            | Chain(_)
            | Unreplicated { .. }
            | Inconsistent { .. } => Exit::Journal,
        }
    }
}

/// The exit codes, as `--help` and the man pages give them (without the Markdown backticks the
/// README's table keeps).
pub fn exit_codes() -> cli_docs::ExitCodes {
    cli_docs::ExitCodes {
        codes: Exit::ALL
            .iter()
            .map(|&code| (code as u8, code.meaning().replace('`', "")))
            .collect(),
    }
}

/// The exit-code table under every `--help`.
pub fn help_table() -> String {
    exit_codes().help_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_exit_code_table_is_the_programs() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("### Exit codes")
            .nth(1)
            .expect("README has an Exit codes section");
        let rows: Vec<(u8, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| 0 "))
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].parse().unwrap(), cells[2].to_owned())
            })
            .collect();
        let ours: Vec<(u8, String)> = Exit::ALL
            .iter()
            .map(|&e| (e as u8, e.meaning().to_owned()))
            .collect();
        assert_eq!(rows, ours);
    }

    #[test]
    fn every_code_is_its_position_in_the_table() {
        for (i, code) in Exit::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
        assert!(help_table().contains("\n  7  a market already runs"));
    }
}
