//! Process identity that survives pid reuse: a pid together with its start time, held
//! through a pidfd.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

/// A process as other processes can name it: pid plus start time (clock ticks since boot, field
/// 22 of `/proc/PID/stat`). Two processes never share both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

/// Why a process could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {pid} has exited")]
    Gone { pid: u32 },
    #[error("pid {pid} now belongs to another process (started at {found}, expected {expected})")]
    Reused { pid: u32, expected: u64, found: u64 },
    #[error("{op} for pid {pid} failed: {source}")]
    Os {
        op: &'static str,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        let start_time = start_time(pid).expect("/proc/self/stat is readable");
        Self { pid, start_time }
    }
}

/// The start time of `pid`, field 22 of `/proc/PID/stat` (see
/// [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)).
pub fn start_time(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed /proc/PID/stat")
    })
}

/// The command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`: field 3 is the first after it, so field 22 is the 20th.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// A live handle on one process: a pidfd, checked against the expected start time when opened.
#[derive(Debug)]
pub struct ProcessHandle {
    id: ProcessId,
    pidfd: OwnedFd,
}

impl ProcessHandle {
    /// `pidfd_open(2)` on `id.pid`, then a check that the process behind it started at
    /// `id.start_time`. Once open, the handle keeps referring to that process even if its pid
    /// is later reused. See [`pidfd_open(2)`](https://man7.org/linux/man-pages/man2/pidfd_open.2.html).
    pub fn open(id: ProcessId) -> Result<Self, ProcessError> {
        let pid = Pid::from_raw(id.pid as i32).ok_or(ProcessError::Gone { pid: id.pid })?;
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(|e| match e {
            rustix::io::Errno::SRCH => ProcessError::Gone { pid: id.pid },
            e => ProcessError::Os {
                op: "pidfd_open",
                pid: id.pid,
                source: e.into(),
            },
        })?;
        // The pidfd pins the process: if the start time matches now, the pidfd is that process.
        let found = start_time(id.pid).map_err(|_| ProcessError::Gone { pid: id.pid })?;
        if found != id.start_time {
            return Err(ProcessError::Reused {
                pid: id.pid,
                expected: id.start_time,
                found,
            });
        }
        let handle = Self { id, pidfd };
        if handle.has_exited() {
            return Err(ProcessError::Gone { pid: id.pid });
        }
        Ok(handle)
    }

    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// `poll(2)` on the pidfd with a zero timeout: a pidfd becomes readable when its process
    /// exits (zombies count as exited).
    pub fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO)
    }

    /// Waits up to `timeout` for the process to exit; true if it has.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) => n > 0,
            Err(_) => false,
        }
    }

    /// `pidfd_send_signal(2)`: signals exactly this process, never a successor with its pid.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        rustix::process::pidfd_send_signal(self.pidfd.as_fd(), signal).map_err(|e| match e {
            rustix::io::Errno::SRCH => ProcessError::Gone { pid: self.id.pid },
            e => ProcessError::Os {
                op: "pidfd_send_signal",
                pid: self.id.pid,
                source: e.into(),
            },
        })
    }
}

pub use rustix::process::Signal as ProcessSignal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_counts_fields_after_a_command_with_spaces_and_parens() {
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start_time(stat), Some(777));
    }

    #[test]
    fn this_process_is_alive_and_a_child_is_seen_to_exit() {
        let me = ProcessHandle::open(ProcessId::current()).unwrap();
        assert!(!me.has_exited());
        let mut child = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .unwrap();
        let id = ProcessId {
            pid: child.id(),
            start_time: start_time(child.id()).unwrap(),
        };
        let handle = ProcessHandle::open(id).unwrap();
        assert!(handle.wait_exit(Duration::from_secs(5)));
        child.wait().unwrap();
    }

    #[test]
    fn a_wrong_start_time_is_a_reused_pid() {
        let mut id = ProcessId::current();
        id.start_time += 1;
        assert!(matches!(
            ProcessHandle::open(id),
            Err(ProcessError::Reused { .. })
        ));
    }
}
