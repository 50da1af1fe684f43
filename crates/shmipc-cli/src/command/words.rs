//! The library's create and open failures in words for the command at hand: the
//! library speaks of the segment under every object, and offers remedies a program
//! has (open it read-only); the CLI names what the user asked for (a mutex, a
//! semaphore, a topic…) and the remedies a user of this command has.

use shmipc::{CreateError, OpenError};

/// One line for a failed create of the `kind` called `name` where the library's
/// words do not fit it (`None`: they do, or the library's line says more).
pub fn create_failure(kind: &str, name: &str, e: &CreateError) -> Option<String> {
    Some(match e {
        CreateError::AlreadyExists { .. } => format!(
            "cannot create {kind} `{name}`: the name already exists (`{info}` shows what it is): use it, choose another name, or `{rm}` first", rm = crate::output::suggest("rm", name), info = crate::output::suggest("info", name)),
        CreateError::NoSpace {
            size,
            available,
            store,
            ..
        } => format!(
            "{kind} `{name}` needs {size} bytes, and only {available} bytes are free in {store}: free space there (`shmipc ls --all` shows what uses it, `shmipc gc` removes stale objects)"
        ),
        CreateError::TooManyObjects { store, .. } => format!(
            "cannot create {kind} `{name}`: {store} has no room for another object (its limit of files is reached, though bytes may be free): remove objects there (`shmipc ls --all` lists them, `shmipc gc` removes stale ones), or raise its limit"
        ),
        CreateError::QuotaExceeded { store, .. } => format!(
            "cannot create {kind} `{name}`: the disk quota of this user on {store} is used up: free space that this user holds there (`shmipc ls --all` shows what uses it), or ask for a larger quota"
        ),
        CreateError::PermissionDenied { .. } => format!(
            "cannot create {kind} `{name}`: permission denied (by /dev/shm's mode, or a security policy): use another place or user"
        ),
        CreateError::Os { op, source, .. } => {
            format!("cannot create {kind} `{name}`: {op} failed: {source}")
        }
        _ => return None,
    })
}

/// One line for a failed open of the `kind` called `name` by a command that needs
/// to `use` it ("read", "write to", "use"), where the library's words do not fit.
pub fn open_failure(kind: &str, name: &str, verb: &str, e: &OpenError) -> Option<String> {
    Some(match e {
        OpenError::PermissionDenied { .. } => format!(
            "{kind} `{name}`: permission denied: its owner and mode do not let this user {verb} it (`{info}` shows them): ask its owner, or run as a user it allows", info = crate::output::suggest("info", name)),
        OpenError::Busy { .. } => format!(
            "{kind} `{name}` stayed locked by another process past the deadline (it is being created or removed): retry, or see `{info}`", info = crate::output::suggest("info", name)),
        OpenError::Os { op, source, .. } => format!("{kind} `{name}`: {op} failed: {source}"),
        _ => return None,
    })
}

/// `a` or `an`, for `word`.
pub fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::create_failure;
    use shmipc::CreateError;

    /// A used-up disk quota (`EDQUOT`, which no store of the test machines can
    /// be made to report: their kernels have no tmpfs or ext4 quotas) names the
    /// object, the store and what to do, as a full store does.
    #[test]
    fn a_used_up_quota_names_the_object_and_the_remedy() {
        let e = CreateError::QuotaExceeded {
            name: "jobs".into(),
            store: "/dev/shm".into(),
            source: std::io::Error::from_raw_os_error(122),
        };
        let line = create_failure("semaphore", "jobs", &e).unwrap();
        assert!(
            line.contains("semaphore `jobs`")
                && line.contains("quota")
                && line.contains("/dev/shm")
                && line.contains("free space"),
            "{line}"
        );
        // The library's own words (`shmipc create`) say the same.
        let line = e.to_string();
        assert!(
            line.contains("segment `jobs`")
                && line.contains("quota")
                && line.contains("free space"),
            "{line}"
        );
    }
}
