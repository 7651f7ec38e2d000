use std::fmt;

/// The longest name Linux accepts for a POSIX shared-memory object (`NAME_MAX`), slash included.
pub const MAX_NAME_LEN: usize = 255;

/// A validated POSIX shared-memory object name: `/` followed by 1..=254 bytes that are
/// neither `/` nor NUL. See [`shm_overview(7)`](https://man7.org/linux/man-pages/man7/shm_overview.7.html).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShmName(String);

/// Why a string is not a valid shared-memory object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name {0:?} must start with '/' (for example /bookstore)")]
    MissingLeadingSlash(String),
    #[error("name {0:?} has nothing after the leading '/'")]
    Empty(String),
    #[error("name {0:?} may contain only one '/', at the start")]
    InnerSlash(String),
    #[error("name {0:?} contains a NUL byte")]
    Nul(String),
    #[error("name {0:?} is a directory entry ('.' or '..'), which shm_open refuses")]
    Dot(String),
    #[error("name is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
}

impl ShmName {
    /// Checks `name` against the rules of `shm_open(3)`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let owned = || name.to_owned();
        let Some(rest) = name.strip_prefix('/') else {
            return Err(NameError::MissingLeadingSlash(owned()));
        };
        if rest.is_empty() {
            return Err(NameError::Empty(owned()));
        }
        if rest.contains('/') {
            return Err(NameError::InnerSlash(owned()));
        }
        if rest.contains('\0') {
            return Err(NameError::Nul(owned()));
        }
        if rest == "." || rest == ".." {
            return Err(NameError::Dot(owned()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: name.len() });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its leading slash: the object's file name under `/dev/shm`, and a
    /// safe file name anywhere else (it holds no other slash).
    pub fn file_name(&self) -> &str {
        &self.as_str()[1..]
    }

    /// Where Linux shows the object: `/dev/shm` plus the name.
    pub fn dev_shm_path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(self.file_name())
    }
}

impl std::str::FromStr for ShmName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_plain_name() {
        assert_eq!(ShmName::new("/bookstore").unwrap().as_str(), "/bookstore");
    }

    #[test]
    fn rejects_names_shm_open_would_refuse() {
        assert!(matches!(
            ShmName::new("bookstore"),
            Err(NameError::MissingLeadingSlash(_))
        ));
        assert!(matches!(ShmName::new("/"), Err(NameError::Empty(_))));
        assert!(matches!(
            ShmName::new("/a/b"),
            Err(NameError::InnerSlash(_))
        ));
        assert!(matches!(ShmName::new("/a\0b"), Err(NameError::Nul(_))));
        assert!(matches!(ShmName::new("/.."), Err(NameError::Dot(_))));
        assert!(matches!(ShmName::new("/."), Err(NameError::Dot(_))));
        assert!(ShmName::new("/...").is_ok());
        let long = format!("/{}", "x".repeat(MAX_NAME_LEN));
        assert!(matches!(
            ShmName::new(&long),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn dev_shm_path_drops_the_slash() {
        let name = ShmName::new("/bookstore").unwrap();
        assert_eq!(
            name.dev_shm_path(),
            std::path::Path::new("/dev/shm/bookstore")
        );
    }
}
