//! Validated, portable names for segments and synchronization objects.
//!
//! A name such as `demo` is the POSIX shared-memory object `/demo` on Unix and the
//! kernel object `Local\demo` on Windows, so programs that call the OS API directly
//! (the seed's C++ processes, Python's `multiprocessing.shared_memory`) share objects
//! with shmipc. One leading `/` is accepted and dropped, as `shm_open` does.

use std::fmt;

/// Prefix of the names shmipc uses internally (temporary objects during creation).
/// Users cannot create names with this prefix.
pub(crate) const RESERVED_PREFIX: &str = ".shmipc-";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty (or only `/`).
    #[error("the name is empty: give a name such as `demo`")]
    Empty,
    /// The name is longer than this OS allows.
    #[error("the name `{name}` is {len} bytes long, but this OS allows at most {max}: use a shorter name")]
    TooLong {
        /// The refused name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit on this OS.
        max: usize,
    },
    /// The name contains a character that cannot appear in an object name.
    #[error("the name `{name}` contains {what}, which shmipc does not take in an object name (an OS refuses it, or it cannot be printed safely): use letters, digits, `-`, `_` or `.`")]
    BadChar {
        /// The refused name (with NUL shown as `\0`).
        name: String,
        /// Description of the offending character.
        what: &'static str,
    },
    /// The name is `.` or `..`.
    #[error(
        "the name `{name}` is a directory reference, not an object name: use a name such as `demo`"
    )]
    Dots {
        /// The refused name.
        name: String,
    },
    /// The name starts with the prefix shmipc reserves for itself.
    #[error("the name `{name}` starts with `{RESERVED_PREFIX}`, which shmipc reserves for itself: choose another name")]
    Reserved {
        /// The refused name.
        name: String,
    },
}

/// A validated object name, without the leading `/`.
///
/// ```
/// use shmipc::Name;
/// assert_eq!(Name::new("/demo")?.as_str(), "demo");
/// assert!(Name::new("../etc/passwd").is_err());
/// # Ok::<(), shmipc::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates `name` against the rules of every supported OS and this OS's length
    /// limit ([`Name::MAX_LEN`]).
    ///
    /// # Errors
    /// [`NameError`] says which rule the name breaks.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        validate(bare, Self::MAX_LEN)?;
        Ok(Self(bare.to_owned()))
    }

    /// The longest name, in bytes, that this OS accepts (each shared-memory backend
    /// in `sys/shm/` says why, and checks at compile time that this is its limit).
    pub const MAX_LEN: usize = if cfg!(windows) {
        239
    } else if cfg!(target_os = "macos") {
        30
    } else {
        255
    };

    /// The name without a leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The checks, separate from the OS limit so they can be tested for every OS.
pub(crate) fn validate(bare: &str, max: usize) -> Result<(), NameError> {
    let shown = || bare.replace('\0', "\\0");
    if bare.is_empty() {
        return Err(NameError::Empty);
    }
    if bare.len() > max {
        return Err(NameError::TooLong {
            name: shown(),
            len: bare.len(),
            max,
        });
    }
    for c in bare.chars() {
        let what = match c {
            '/' => "a `/`",
            '\\' => "a `\\`",
            '\0' => "a NUL byte",
            c if c.is_control() => "a control character",
            _ => continue,
        };
        return Err(NameError::BadChar {
            name: shown(),
            what,
        });
    }
    if bare == "." || bare == ".." {
        return Err(NameError::Dots {
            name: bare.to_owned(),
        });
    }
    if bare.starts_with(RESERVED_PREFIX) {
        return Err(NameError::Reserved {
            name: bare.to_owned(),
        });
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_and_slash_prefixed() {
        assert_eq!(Name::new("demo").unwrap().as_str(), "demo");
        assert_eq!(Name::new("/demo").unwrap().as_str(), "demo");
        assert_eq!(Name::new("psm_1a2b").unwrap().as_str(), "psm_1a2b");
        assert_eq!(Name::new("a.b-c_d").unwrap().as_str(), "a.b-c_d");
    }

    #[test]
    fn refuses_each_bad_kind() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new("/"), Err(NameError::Empty));
        assert!(matches!(Name::new(".."), Err(NameError::Dots { .. })));
        assert!(matches!(Name::new("/.."), Err(NameError::Dots { .. })));
        assert!(matches!(Name::new("."), Err(NameError::Dots { .. })));
        assert!(matches!(Name::new("a/b"), Err(NameError::BadChar { .. })));
        assert!(matches!(Name::new("//a"), Err(NameError::BadChar { .. })));
        assert!(matches!(Name::new("a\\b"), Err(NameError::BadChar { .. })));
        assert!(matches!(Name::new("a\0b"), Err(NameError::BadChar { .. })));
        assert!(matches!(Name::new("a\nb"), Err(NameError::BadChar { .. })));
        assert!(matches!(
            Name::new(".shmipc-x"),
            Err(NameError::Reserved { .. })
        ));
        let long = "x".repeat(Name::MAX_LEN + 1);
        assert!(matches!(Name::new(&long), Err(NameError::TooLong { .. })));
        assert!(Name::new(&"x".repeat(Name::MAX_LEN)).is_ok());
    }

    #[test]
    fn errors_say_what_to_do() {
        let msg = Name::new("a/b").unwrap_err().to_string();
        assert!(msg.contains("a/b") && msg.contains("use"), "{msg}");
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(s in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}") {
            let n = Name::new(&s).unwrap();
            prop_assert_eq!(n.as_str(), s.as_str());
            let slashed = format!("/{s}");
            prop_assert_eq!(Name::new(&slashed).unwrap(), n);
        }

        #[test]
        fn never_panics_and_accepted_names_are_safe(s in any::<String>()) {
            if let Ok(n) = Name::new(&s) {
                let b = n.as_str();
                prop_assert!(!b.is_empty() && b.len() <= Name::MAX_LEN);
                prop_assert!(!b.contains('/') && !b.contains('\\') && !b.contains('\0'));
                prop_assert!(b != "." && b != "..");
            }
        }

        #[test]
        fn any_separator_is_refused(a in "[a-z]{1,8}", b in "[a-z]{1,8}", sep in prop::sample::select(vec!['/', '\\', '\0'])) {
            let s = format!("{a}{sep}{b}");
            prop_assert!(
                matches!(Name::new(&s), Err(NameError::BadChar { .. })),
                "separator was accepted"
            );
        }
    }
}
