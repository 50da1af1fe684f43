//! Property tests for names against the real OS: every name `Name` accepts works
//! end to end (create, open by the same name, remove), and every name it refuses
//! is refused by every operation before anything is made. Portable.
//!
//! Each name starts with a unique prefix, so a random name never collides with a
//! segment of another program (which the clean-up guard would then remove).

mod common;

use common::Cleanup;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shmipc::{Access, CreateError, Name, OpenError, Segment};

fn suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        // Printable, including spaces, punctuation and non-ASCII.
        "[ -~]{0,24}",
        "[a-zA-Z0-9 %*?:;!#$&()+,=@\\[\\]{}|~^'\"<>`-]{0,24}",
        "\\PC{0,12}",
        // Anything at all, control characters and separators included.
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

#[test]
fn accepted_names_work_end_to_end_and_refused_ones_nowhere() {
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&suffix(), |suffix| {
            let base = common::unique_name("prop-name");
            let name = format!("{base}-{suffix}");
            let guard = Cleanup::guard(&name);
            match Name::new(&name) {
                Ok(n) => {
                    prop_assert_eq!(n.as_str(), name.as_str());
                    let seg = match Segment::create(&name, 64) {
                        Ok(seg) => seg,
                        Err(e) => return Err(TestCaseError::fail(format!("create {name:?}: {e}"))),
                    };
                    prop_assert_eq!(seg.name(), Some(name.as_str()));
                    seg.map_all().unwrap().write_at(0, b"named").unwrap();
                    let other = Segment::open(&name, Access::Read);
                    prop_assert!(other.is_ok(), "open {:?}: {:?}", name, other.err());
                    let mut buf = [0u8; 5];
                    other
                        .unwrap()
                        .map_all()
                        .unwrap()
                        .read_at(0, &mut buf)
                        .unwrap();
                    prop_assert_eq!(&buf, b"named");
                    #[cfg(target_os = "linux")]
                    prop_assert!(
                        std::path::Path::new("/dev/shm").join(&name).exists(),
                        "{:?} is not the object /dev/shm/{:?}",
                        name,
                        name
                    );
                    #[cfg(not(windows))]
                    prop_assert!(Segment::remove(&name).is_ok());
                    #[cfg(windows)] // no remove: a name goes with its last handle
                    drop(seg);
                    let gone = matches!(
                        Segment::open(&name, Access::Read),
                        Err(OpenError::NotFound { .. })
                    );
                    prop_assert!(gone, "{:?} still opens after remove", name);
                }
                Err(reason) => {
                    let bad = matches!(
                        Segment::create(&name, 64),
                        Err(CreateError::InvalidName(ref r)) if *r == reason
                    ) && matches!(
                        Segment::open(&name, Access::Read),
                        Err(OpenError::InvalidName(ref r)) if *r == reason
                    );
                    prop_assert!(
                        bad,
                        "{:?} refused by Name ({}) but not by the API",
                        name,
                        reason
                    );
                    // Something refused contains a character no OS name may hold.
                    prop_assert!(
                        suffix
                            .chars()
                            .any(|c| c == '/' || c == '\\' || c.is_control())
                            || name.len() > Name::MAX_LEN,
                        "{:?} refused for no visible reason: {}",
                        name,
                        reason
                    );
                }
            }
            drop(guard);
            Ok(())
        })
        .unwrap();
}
