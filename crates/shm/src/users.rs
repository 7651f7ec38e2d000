//! Users and groups by name and number, read from `/etc/passwd` and `/etc/group` (what
//! `getpwnam(3)` and `getgrnam(3)` read on a system without NSS modules: enough to name the
//! owner of an object and to resolve `--group`).

/// The gid of group `name`, from `/etc/group`.
pub fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    find(&groups, |fields| {
        (fields[0] == name)
            .then(|| fields[2].parse().ok())
            .flatten()
    })
}

/// The name of group `gid`, from `/etc/group`.
pub fn group_name(gid: u32) -> Option<String> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    find(&groups, |fields| {
        (fields[2].parse::<u32>().ok() == Some(gid)).then(|| fields[0].to_owned())
    })
}

/// The name of user `uid`, from `/etc/passwd`.
pub fn user_name(uid: u32) -> Option<String> {
    let users = std::fs::read_to_string("/etc/passwd").ok()?;
    find(&users, |fields| {
        (fields[2].parse::<u32>().ok() == Some(uid)).then(|| fields[0].to_owned())
    })
}

/// The effective uid of process `pid`, from `/proc/PID/status` (`Uid:` real, effective, …).
pub fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The first answer `pick` gives for a line's `:`-separated fields (lines with at least three).
fn find<T>(file: &str, pick: impl Fn(&[&str]) -> Option<T>) -> Option<T> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 3)
        .find_map(|fields| pick(&fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_named_and_this_process_has_its_ids() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_name(0).as_deref(), Some("root"));
        let me = std::process::id();
        assert_eq!(process_uid(me), Some(crate::effective_uid()));
    }
}
