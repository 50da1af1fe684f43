//! Property tests for `map`'s offset arithmetic against a real segment: a range is
//! accepted exactly when it lies inside the segment, and the bytes a view reads at
//! an offset are the bytes written there through a full view. Portable.

mod common;

use common::{pattern, Cleanup};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shmipc::{MapError, Segment};

/// Not a multiple of any page size, and spanning a few pages.
const SIZE: u64 = 3 * 4096 + 1234;

fn range_strategy() -> impl Strategy<Value = (u64, usize)> {
    let near = 0..SIZE + 300;
    prop_oneof![
        // Mostly small segments' worth of offsets and lengths, ends included.
        (near.clone(), 0usize..SIZE as usize + 300),
        (near.clone(), Just(0usize)),
        ((SIZE - 20)..SIZE + 20, 0usize..40),
        // Huge values that must be refused without overflow.
        (any::<u64>(), any::<usize>()),
        (u64::MAX - 5000..=u64::MAX, 0usize..10_000),
        (near, (usize::MAX - 5000)..=usize::MAX),
    ]
}

#[test]
fn map_accepts_exactly_the_ranges_inside_and_reads_what_was_written() {
    let guard = Cleanup::new("prop-map");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let data = pattern(7, SIZE as usize);
    seg.map_all().unwrap().write_at(0, &data).unwrap();

    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&range_strategy(), |(offset, len)| {
            let resolved = if len == 0 {
                SIZE.saturating_sub(offset)
            } else {
                len as u64
            };
            let overflows = offset.checked_add(resolved).is_none();
            let inside = !overflows && resolved > 0 && offset + resolved <= SIZE;
            match seg.map(offset, len) {
                Ok(view) => {
                    prop_assert!(inside, "accepted {offset}+{len} outside {SIZE}");
                    prop_assert_eq!(view.offset(), offset);
                    prop_assert_eq!(view.len() as u64, resolved);
                    let mut got = vec![0u8; view.len()];
                    view.read_at(0, &mut got).unwrap();
                    let at = offset as usize;
                    prop_assert!(got == data[at..at + view.len()], "wrong bytes at {offset}");
                    // Writing through the view lands at the same place in a full view.
                    let mark = [offset as u8 ^ 0x5A];
                    view.write_at(0, &mark).unwrap();
                    let mut back = [0u8];
                    seg.map_all().unwrap().read_at(at, &mut back).unwrap();
                    prop_assert_eq!(back, mark);
                    view.write_at(0, &data[at..at + 1]).unwrap();
                }
                Err(MapError::Overflow { .. }) => {
                    prop_assert!(overflows, "overflow reported for {offset}+{len}");
                }
                Err(MapError::OutOfRange { len: l, size, .. }) => {
                    prop_assert!(!inside, "refused {offset}+{len} inside {SIZE}");
                    prop_assert_eq!(size, SIZE);
                    prop_assert_eq!(l, resolved);
                }
                Err(e) => prop_assert!(false, "map({offset}, {len}) failed: {e}"),
            }
            Ok(())
        })
        .unwrap();
}

/// Two views over overlapping ranges at unrelated offsets see each other's writes
/// at the matching segment offsets.
#[test]
fn overlapping_views_agree() {
    let guard = Cleanup::new("prop-overlap");
    let seg = Segment::create(guard.name(), SIZE).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..SIZE, 0..SIZE, any::<u64>(), any::<u8>()),
            |(a, b, k, byte)| {
                let va = seg.map(a, 0).unwrap();
                let vb = seg.map(b, 0).unwrap();
                // A byte both views cover.
                let lo = a.max(b);
                let at = lo + k % (SIZE - lo);
                va.write_at((at - a) as usize, &[byte]).unwrap();
                let mut got = [0u8];
                vb.read_at((at - b) as usize, &mut got).unwrap();
                prop_assert_eq!(got[0], byte);
                Ok(())
            },
        )
        .unwrap();
}
