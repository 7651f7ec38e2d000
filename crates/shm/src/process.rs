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
    /// This process (its start time from `/proc/self/stat`: an error if `/proc` is missing).
    pub fn current() -> Result<Self, ProcessError> {
        let pid = std::process::id();
        let start_time = start_time(pid).map_err(|source| ProcessError::Os {
            op: "read /proc/PID/stat",
            pid,
            source,
        })?;
        Ok(Self { pid, start_time })
    }
}

/// Whether a process with this pid exists now (any process: pids are reused). For the brief
/// window where only a pid is known; prefer [`ProcessHandle::open`] with a start time.
pub fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// CPU time (user + system) of this process and of its reaped children, from fields 14–17 of
/// `/proc/self/stat` (`utime`, `stime`, `cutime`, `cstime`, in clock ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTime {
    pub own: Duration,
    pub children: Duration,
}

/// This process's [`CpuTime`] now.
pub fn cpu_time() -> std::io::Result<CpuTime> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed /proc/self/stat");
    let mut ticks = [0u64; 4];
    for (field, tick) in (14..=17).zip(&mut ticks) {
        *tick = stat_field(&stat, field).ok_or_else(bad)?;
    }
    let per_second = rustix::param::clock_ticks_per_second();
    let time = |t: u64| Duration::from_secs_f64(t as f64 / per_second as f64);
    Ok(CpuTime {
        own: time(ticks[0] + ticks[1]),
        children: time(ticks[2] + ticks[3]),
    })
}

/// The start time of `pid`, field 22 of `/proc/PID/stat` (see
/// [`proc_pid_stat(5)`](https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html)).
pub fn start_time(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed /proc/PID/stat")
    })
}

fn parse_start_time(stat: &str) -> Option<u64> {
    stat_field(stat, 22)
}

/// Numeric field `n` (1-based, as proc_pid_stat(5) numbers them, `n >= 3`) of a
/// `/proc/PID/stat` line. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`: field 3 is the first after it.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm
        .split_ascii_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
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
        let found = start_time(id.pid).map_err(|e| match e.kind() {
            // ESRCH (it exited between the two calls) reads as "not found".
            std::io::ErrorKind::NotFound => ProcessError::Gone { pid: id.pid },
            _ if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
                ProcessError::Gone { pid: id.pid }
            }
            _ => ProcessError::Os {
                op: "read /proc/PID/stat",
                pid: id.pid,
                source: e,
            },
        })?;
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
    /// exits (zombies count as exited). If `poll` fails (it cannot for a valid pidfd and no
    /// timeout), the answer is "not exited": a live process is never given up for dead.
    pub fn has_exited(&self) -> bool {
        self.wait_exit(Duration::ZERO).unwrap_or(false)
    }

    /// `poll(2)` on the pidfd: waits up to `timeout` for the process to exit; true if it has.
    /// A signal that interrupts the wait (`EINTR`) does not end it: it goes on for the rest of
    /// `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Result<bool, ProcessError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(ProcessError::Os {
                        op: "poll(pidfd)",
                        pid: self.id.pid,
                        source: e.into(),
                    })
                }
            }
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

/// `kill(pid, signal)` on a child process we spawned and have not reaped yet. Until it is
/// reaped (`wait`), its pid cannot be reused, so the signal cannot reach another process.
///
/// # References
/// - [kill(2)](https://man7.org/linux/man-pages/man2/kill.2.html)
pub fn signal_child(child: &std::process::Child, signal: ProcessSignal) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_child(child);
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// `setpriority(PRIO_PROCESS, gettid(), 19)`: this thread runs at the lowest priority, using
/// the CPU only when nothing else on it wants it (Linux schedules threads, and its
/// `PRIO_PROCESS` on a thread id sets that thread's nice value alone).
///
/// For background work that may lag under load (a market's snapshots), so it does not take
/// a core from the processes serving clients on a small machine.
///
/// # References
/// - [setpriority(2)](https://man7.org/linux/man-pages/man2/setpriority.2.html), BUGS (on
///   Linux the nice value is a per-thread attribute), and
///   [gettid(2)](https://man7.org/linux/man-pages/man2/gettid.2.html)
pub fn run_this_thread_in_the_background() -> std::io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19).map_err(Into::into)
}

/// `sched_getaffinity(0)`: the CPUs this thread may run on, in increasing order.
///
/// # References
/// - [sched_getaffinity(2)](https://man7.org/linux/man-pages/man2/sched_getaffinity.2.html)
pub fn this_thread_cpus() -> std::io::Result<Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect())
}

/// `sched_setaffinity(0, cpus)`: this thread runs only on `cpus` from now on, and so does
/// every process it spawns (a child inherits the spawning thread's set) and every thread
/// those start.
///
/// For measurements that must not depend on where the scheduler happens to put two
/// processes (the bench's sleeping ping-pongs: on one CPU or on two is twice the time on a
/// virtual machine).
///
/// # References
/// - [sched_setaffinity(2)](https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html)
pub fn run_this_thread_on(cpus: &[usize]) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &cpu in cpus {
        if cpu >= rustix::thread::CpuSet::MAX_CPU {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is past the largest a CPU set holds"),
            ));
        }
        set.set(cpu);
    }
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// `prctl(PR_SET_PDEATHSIG, SIGTERM)`, then `getppid()`: this process is sent SIGTERM when
/// its parent (the thread that spawned it) exits. Returns false if the parent is no longer
/// `parent` (it exited before the call, so no signal will come): the caller should stop now.
///
/// For helper processes that must not outlive the program that started them (a bench's
/// markets and peers, which spin); install the SIGTERM handler first, so the signal stops
/// the process cleanly instead of killing it.
///
/// # References
/// - [prctl(2)](https://man7.org/linux/man-pages/man2/prctl.2.html), `PR_SET_PDEATHSIG`
/// - [getppid(2)](https://man7.org/linux/man-pages/man2/getppid.2.html)
pub fn stop_with_parent(parent: u32) -> std::io::Result<bool> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    Ok(rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() as u32 == parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_one_of_its_cpus_runs_only_there_and_can_be_let_go_again() {
        // On a thread of its own, so the test harness's threads keep their CPUs.
        std::thread::spawn(|| {
            let all = this_thread_cpus().unwrap();
            assert!(!all.is_empty());
            let last = *all.last().unwrap();
            run_this_thread_on(&[last]).unwrap();
            assert_eq!(this_thread_cpus().unwrap(), vec![last]);
            run_this_thread_on(&all).unwrap();
            assert_eq!(this_thread_cpus().unwrap(), all);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn start_time_counts_fields_after_a_command_with_spaces_and_parens() {
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start_time(stat), Some(777));
    }

    #[test]
    fn this_process_is_alive_and_a_child_is_seen_to_exit() {
        let me = ProcessHandle::open(ProcessId::current().unwrap()).unwrap();
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
        assert!(handle.wait_exit(Duration::from_secs(5)).unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time().unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_time().unwrap().own > before.own);
    }

    #[test]
    fn a_wrong_start_time_is_a_reused_pid() {
        let mut id = ProcessId::current().unwrap();
        id.start_time += 1;
        assert!(matches!(
            ProcessHandle::open(id),
            Err(ProcessError::Reused { .. })
        ));
    }
}
