//! The object's mode as the lab's permission table reads it: `rw-rw----`, in words, and who
//! may attach.

/// The nine permission bits as `ls -l` and the lab's permission table write them.
pub(super) fn rwx(bits: u32) -> String {
    (0..9)
        .map(|i| {
            let bit = 1 << (8 - i);
            match (bits & bit != 0, i % 3) {
                (false, _) => '-',
                (true, 0) => 'r',
                (true, 1) => 'w',
                (true, _) => 'x',
            }
        })
        .collect()
}

/// `rw-rw----` → "owner read/write, group read/write, others none".
pub(super) fn explain_permissions(rwx: &str) -> String {
    if rwx.len() != 9 {
        return "unknown".into();
    }
    let class = |chunk: &str| {
        let can: Vec<&str> = [("r", "read"), ("w", "write"), ("x", "execute")]
            .iter()
            .filter(|(flag, _)| chunk.contains(flag))
            .map(|(_, word)| *word)
            .collect();
        if can.is_empty() {
            "none".to_string()
        } else {
            can.join("/")
        }
    };
    format!(
        "owner {}, group {}, others {}",
        class(&rwx[0..3]),
        class(&rwx[3..6]),
        class(&rwx[6..9])
    )
}

/// Who may attach (open the object for reading and writing), from the mode.
pub(super) fn may_attach(stat: shm::Stat) -> String {
    let bits = stat.mode.bits();
    let group = shm::users::group_name(stat.group_gid).map_or_else(
        || format!("gid {}", stat.group_gid),
        |n| format!("group {n}"),
    );
    let owner = if bits & 0o600 == 0o600 {
        "the owner"
    } else {
        "nobody but root"
    };
    if bits & 0o006 == 0o006 {
        "every local user (any of them can also corrupt the store)".into()
    } else if bits & 0o060 == 0o060 {
        format!("{owner} and members of {group}")
    } else {
        owner.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_the_labs_permission_table() {
        assert_eq!(rwx(0o660), "rw-rw----");
        assert_eq!(rwx(0o600), "rw-------");
        assert_eq!(rwx(0o666), "rw-rw-rw-");
        assert_eq!(rwx(0o751), "rwxr-x--x");
        assert_eq!(
            explain_permissions("rw-rw----"),
            "owner read/write, group read/write, others none"
        );
        assert_eq!(
            explain_permissions("rw-r--r--"),
            "owner read/write, group read, others read"
        );
    }
}
