//! The facts about a process that tools print beside its mappings.

/// What `/proc/PID/{stat,status,cmdline}` say about one process (or thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The thread-group id: the process a thread id belongs to.
    pub tgid: u32,
    /// The command name (field 2 of `stat`, without the parentheses).
    pub comm: Vec<u8>,
    /// The state letter (`R`, `S`, `Z`, …).
    pub state: u8,
    /// Where the main stack starts (field 28 of `stat`); 0 for kernel threads.
    pub start_stack: u64,
    /// `/proc/PID/cmdline` as it is: arguments separated by NULs; empty for kernel threads and
    /// zombies.
    pub cmdline: Vec<u8>,
}

/// Reads `/proc/PID/…`; fails if the process does not exist (or went away meanwhile).
pub fn read(pid: u32) -> std::io::Result<ProcessInfo> {
    let dir = format!("/proc/{pid}");
    let stat = std::fs::read(format!("{dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let cmdline = std::fs::read(format!("{dir}/cmdline"))?;
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{dir}: malformed {what}"),
        )
    };
    let open = stat
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| bad("stat"))?;
    let close = stat
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| bad("stat"))?;
    let comm = stat[open + 1..close].to_vec();
    let rest = String::from_utf8_lossy(&stat[close + 1..]).into_owned();
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the command: field 3 (state) is fields[0], so field 28 (startstack) is fields[25].
    let state = fields
        .first()
        .and_then(|s| s.bytes().next())
        .ok_or_else(|| bad("stat state"))?;
    let start_stack = fields
        .get(25)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("stat startstack"))?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad("status Tgid"))?;
    Ok(ProcessInfo {
        tgid,
        comm,
        state,
        start_stack,
        cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_group_with_a_stack_and_a_command_line() {
        let me = read(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id());
        assert!(me.start_stack > 0);
        assert!(!me.cmdline.is_empty());
        assert!(matches!(me.state, b'R' | b'S'));
    }
}
