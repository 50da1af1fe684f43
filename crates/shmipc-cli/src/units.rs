//! Parsing and printing of the quantities users type: sizes, durations, modes.
//!
//! * **Sizes** (`--size`, `--offset`, `--len`): a whole number of bytes, optionally
//!   with a binary suffix, case-insensitive: `K`/`KiB` = 1024, `M`/`MiB` = 1024²,
//!   `G`/`GiB`, `T`/`TiB`, `P`/`PiB`; `B` alone means bytes. A fraction is allowed
//!   when the result is a whole number of bytes (`1.5M` = 1572864; `1.3K` is refused).
//!   `0x` hexadecimal is accepted without a suffix (`0x1000`). `KB`, `MB`, … are
//!   refused as ambiguous (1000 or 1024?): write `K` or `KiB`.
//! * **Durations** (`--timeout`): a number with a unit, `ns`, `us`, `ms`, `s`, `m`,
//!   `h`, fraction allowed (`500ms`, `2s`, `1.5m`). A bare number is refused: say
//!   which unit.
//! * **Modes** (`--mode`): octal permission bits, `600`, `0600` or `0o600`, using only
//!   read and write bits (`0o666`): execute bits mean nothing for shared memory.

use std::time::Duration;

/// The binary size suffixes, lower-case, with their multipliers.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("p", 1 << 50),
    ("pib", 1 << 50),
];

/// The duration units with their length in nanoseconds.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Most fraction digits accepted (more would only overflow the arithmetic).
const MAX_FRACTION_DIGITS: u32 = 12;

/// A number split into its integer digits, fraction digits and suffix.
struct Number<'a> {
    int: &'a str,
    frac: &'a str,
    suffix: &'a str,
}

fn split_number(s: &str) -> Option<Number<'_>> {
    let end_int = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(end_int);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r.split_at(end)
        }
        None => ("", rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    Some(Number {
        int,
        frac,
        suffix: rest.trim_start(),
    })
}

/// `(int.frac) * unit`, exactly, as long as it fits in a `u128`; `None` on overflow.
/// Returns the product scaled by `10^frac.len()` and that scale.
fn scaled(n: &Number<'_>, unit: u128) -> Option<(u128, u128)> {
    let digits = u32::try_from(n.frac.len()).ok()?;
    let scale = 10u128.checked_pow(digits)?;
    let int: u128 = if n.int.is_empty() {
        0
    } else {
        n.int.parse().ok()?
    };
    let frac: u128 = if n.frac.is_empty() {
        0
    } else {
        n.frac.parse().ok()?
    };
    let value = int.checked_mul(scale)?.checked_add(frac)?;
    Some((value.checked_mul(unit)?, scale))
}

/// Parses a size such as `4096`, `64K`, `1MiB`, `1.5G` or `0x1000` (see the module doc).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u64::from_str_radix(hex, 16).map_err(|_| {
                format!(
                    "`{text}` is too large: the largest size is {} bytes (0x{:x})",
                    u64::MAX,
                    u64::MAX
                )
            });
        }
        return Err(format!(
            "`{text}` is not a hexadecimal size: write digits 0-9, a-f after `0x`, with no suffix"
        ));
    }
    let Some(n) = split_number(s) else {
        return Err(format!(
            "`{text}` is not a size: write a number of bytes such as 4096, 64K, 1M or 1GiB"
        ));
    };
    if u32::try_from(n.frac.len()).map_or(true, |d| d > MAX_FRACTION_DIGITS) {
        return Err(format!(
            "`{text}` has too many decimal places: use at most {MAX_FRACTION_DIGITS}"
        ));
    }
    let suffix = n.suffix.to_ascii_lowercase();
    let Some(&(_, unit)) = SIZE_UNITS.iter().find(|(u, _)| *u == suffix) else {
        if matches!(suffix.as_str(), "kb" | "mb" | "gb" | "tb" | "pb") {
            return Err(format!(
                "`{text}` is ambiguous (1000 or 1024?): shmipc sizes are binary, write `{}{}` or `{}{}iB`",
                &s[..s.len() - n.suffix.len()],
                &n.suffix[..1],
                &s[..s.len() - n.suffix.len()],
                &n.suffix[..1]
            ));
        }
        return Err(format!(
            "`{text}` has an unknown unit `{}`: use K, M, G, T or P (or KiB, MiB, …), powers of 1024",
            n.suffix
        ));
    };
    let too_large = || {
        format!(
            "`{text}` is too large: the largest size is {} bytes",
            u64::MAX
        )
    };
    let (value, scale) = scaled(&n, u128::from(unit)).ok_or_else(too_large)?;
    if value % scale != 0 {
        return Err(format!(
            "`{text}` is not a whole number of bytes: give a size in bytes (or a fraction that comes out whole)"
        ));
    }
    u64::try_from(value / scale).map_err(|_| too_large())
}

/// A count of things (messages, slots, subscribers): a plain whole number.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a count: write a whole number such as 0, 16 or 1000"
        ));
    }
    s.parse()
        .map_err(|_| format!("`{text}` is too large: the largest count is {}", u64::MAX))
}

/// [`parse_count`], for a 32-bit count (a semaphore's units).
pub fn parse_count_u32(text: &str) -> Result<u32, String> {
    let n = parse_count(text)?;
    u32::try_from(n)
        .map_err(|_| format!("`{text}` is too large: the largest count is {}", u32::MAX))
}

/// [`parse_count`], for counts that size memory on this machine.
pub fn parse_count_usize(text: &str) -> Result<usize, String> {
    let n = parse_count(text)?;
    usize::try_from(n)
        .map_err(|_| format!("`{text}` is too large: the largest count is {}", usize::MAX))
}

/// Parses a duration such as `500ms`, `2s`, `1.5m` (see the module doc).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let Some(n) = split_number(s) else {
        return Err(format!(
            "`{text}` is not a duration: write a number with a unit, such as 500ms, 2s or 1m"
        ));
    };
    if n.suffix.is_empty() {
        return Err(format!(
            "`{text}` has no unit: write e.g. `{s}s` for seconds or `{s}ms` for milliseconds"
        ));
    }
    if u32::try_from(n.frac.len()).map_or(true, |d| d > MAX_FRACTION_DIGITS) {
        return Err(format!(
            "`{text}` has too many decimal places: use at most {MAX_FRACTION_DIGITS}"
        ));
    }
    let Some(&(_, unit)) = DURATION_UNITS.iter().find(|(u, _)| *u == n.suffix) else {
        return Err(format!(
            "`{text}` has an unknown unit `{}`: use ns, us, ms, s, m or h",
            n.suffix
        ));
    };
    let too_long = || format!("`{text}` is too long a duration");
    let (value, scale) = scaled(&n, unit).ok_or_else(too_long)?;
    let nanos = value / scale;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_long())?;
    let d = Duration::new(secs, sub);
    if d > MAX_DURATION {
        // Longer would not fit a deadline (`Instant::now() + d`) everywhere.
        return Err(format!(
            "`{text}` is too long a duration: the longest is 876000h (100 years)"
        ));
    }
    Ok(d)
}

/// The longest duration an option takes: 100 years (a deadline this far ahead fits
/// every OS's clock).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses octal permission bits such as `600`, `0600` or `0o660` (read/write bits only).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let s = text.trim();
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && !digits.starts_with('+'))
        .ok_or_else(|| {
            format!("`{text}` is not an octal mode: write permission bits such as 600 or 660")
        })?;
    if mode > 0o777 {
        return Err(format!(
            "`{text}` has bits beyond rwxrwxrwx: give read/write permission bits such as 600 or 660"
        ));
    }
    if mode & 0o111 != 0 {
        return Err(format!(
            "`{text}` has execute bits, which mean nothing for shared memory: use read/write bits such as {:o}",
            mode & 0o666
        ));
    }
    Ok(mode)
}

/// A size for people: `1 KiB`, `1.5 MiB`, `100 B`.
pub fn human_size(bytes: u64) -> String {
    const NAMES: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < NAMES.len() && bytes >= 1u64 << (10 * (unit + 1)) {
        unit += 1;
    }
    let base = 1u64 << (10 * unit);
    if bytes % base == 0 {
        format!("{} {}", bytes / base, NAMES[unit])
    } else {
        // Display only; the exact figure is printed beside it.
        #[allow(clippy::cast_precision_loss)]
        let value = bytes as f64 / base as f64;
        format!("{value:.1} {}", NAMES[unit])
    }
}

/// `1 byte`, `100 bytes`, `4096 bytes (4 KiB)`: the exact count, and the size for
/// people where it differs.
pub fn bytes(n: u64) -> String {
    match n {
        1 => "1 byte".to_owned(),
        0..1024 => format!("{n} bytes"),
        _ => format!("{n} bytes ({})", human_size(n)),
    }
}

/// A duration for people: `10s`, `500ms`.
pub fn human_duration(d: Duration) -> String {
    // Exactly: in the largest unit that holds it whole (500µs was "0ms", and
    // 1500µs "1ms").
    let nanos = d.as_nanos();
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if nanos % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else if nanos % 1_000 == 0 {
        format!("{}µs", d.as_micros())
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count(" 16 "), Ok(16));
        assert_eq!(parse_count("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "-1", "+1", "1.5", "1e3", "16K", "x"] {
            let e = parse_count(bad).unwrap_err();
            assert!(e.contains("is not a count"), "{bad:?}: {e}");
        }
        assert!(parse_count("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes() {
        let ok = [
            ("4096", 4096),
            ("0", 0),
            ("64K", 65536),
            ("64k", 65536),
            ("64 KiB", 65536),
            ("1M", 1 << 20),
            ("1mib", 1 << 20),
            ("1GiB", 1 << 30),
            ("2T", 2 << 40),
            ("1.5M", 3 << 19),
            ("1.5MiB", 3 << 19),
            (".5K", 512),
            ("10B", 10),
            ("0x1000", 4096),
            ("16383P", 16383 << 50),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "K",
            "-1",
            "1.3K",
            "1.5",
            "12Q",
            "64KB",
            "1mb",
            "16384P",
            "99999999999999999999",
            "1e3",
            "0x",
            "0xZZ",
            "1..5K",
            "0.0000000000001K",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        assert!(parse_size("64KB").unwrap_err().contains("`64K` or `64KiB`"));
        // Too many hex digits is too large, not "not hexadecimal"; a sign is no digit.
        assert_eq!(parse_size("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_size("0x10000000000000000")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("0x+10")
            .unwrap_err()
            .contains("not a hexadecimal"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("876000h"), Ok(MAX_DURATION));
        for long in ["876001h", "18446744073709551615s", "99999999999999999h"] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("too long a duration"), "{long}: {e}");
        }
        for bad in ["", "5", "5x", "ms", "-1s", "999999999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("0o660"), Ok(0o660));
        assert_eq!(parse_mode("0"), Ok(0));
        for bad in ["", "abc", "800", "755", "7777", "+600", "0o", "-600"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human() {
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(u64::MAX), "16384.0 PiB");
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(bytes(4096), "4096 bytes (4 KiB)");
        assert_eq!(human_duration(Duration::from_secs(10)), "10s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human_duration(Duration::from_micros(500)), "500µs");
        assert_eq!(human_duration(Duration::from_micros(1500)), "1500µs");
        assert_eq!(human_duration(Duration::from_nanos(1)), "1ns");
        assert_eq!(
            human_duration(Duration::from_nanos(1_000_000_001)),
            "1000000001ns"
        );
        assert_eq!(human_duration(Duration::ZERO), "0s");
    }
}
