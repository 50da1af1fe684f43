//! `shmipc read NAME [--offset N] [--len N] [--hex | --raw]`

use std::fmt::Write as _;

use shmipc::{Access, Segment};

use super::words;
use crate::cli::ReadArgs;
use crate::output::{self, Error, Result};

/// Bytes copied out of the segment at a time: the whole range is never copied at
/// once, so a large segment costs no large buffer.
const CHUNK: usize = 64 * 1024;
/// Bytes per hex-dump line.
const HEX_LINE: usize = 16;

pub fn run(args: &ReadArgs) -> Result {
    let name = &args.name;
    let segment = Segment::open(name, Access::Read).map_err(|e| {
        words::open_failure("segment", name, "read", &e).map_or_else(|| e.into(), Error::from)
    })?;
    let size = segment.size();
    let offset = args.offset;
    if offset >= size {
        return Err(format!(
            "offset {offset} is past the end of segment `{name}` ({size} bytes): read from an offset below {size}"
        )
        .into());
    }
    let room = size - offset;
    // --len is "at most": a range past the end is cut at the end.
    let len = match args.len {
        None | Some(0) => room,
        Some(len) => len.min(room),
    };
    let range = Range {
        segment: &segment,
        name,
        offset,
        len,
    };
    if args.hex {
        hex_dump(&range, offset)
    } else if args.raw {
        for_each_chunk(&range, |chunk| output::bytes(chunk).map(|()| true))
    } else {
        text(&range, name)
    }
}

/// The bytes to read: copied out with `pread` (`Segment::read_at`), never through
/// a mapping, so a segment truncated by another program meanwhile, or a sparse one
/// on a full /dev/shm, is an error message and not a SIGBUS.
struct Range<'a> {
    segment: &'a Segment,
    name: &'a str,
    offset: u64,
    len: u64,
}

/// Calls `f` with successive chunks of the range until it returns `false`.
fn for_each_chunk(range: &Range, mut f: impl FnMut(&[u8]) -> Result<bool>) -> Result {
    let len = usize::try_from(range.len).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; CHUNK.min(len)];
    let mut at = 0u64;
    while at < range.len {
        let n = usize::try_from((range.len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        let pos = range.offset + at;
        let got = range
            .segment
            .read_at(pos, &mut buf[..n])
            .map_err(|e| format!("cannot read segment `{}`: {e}", range.name))?;
        if got < n {
            return Err(format!(
                "segment `{}` ends at byte {} although it had {} bytes when opened: another program truncated it while it was being read",
                range.name,
                pos + got as u64,
                range.segment.size()
            )
            .into());
        }
        if !f(&buf[..n])? {
            break;
        }
        at += n as u64;
    }
    Ok(())
}

/// The bytes up to the first NUL, as text with a newline (the seed's
/// `cout << pData << endl`).
fn text(range: &Range, name: &str) -> Result {
    let mut text = Vec::new();
    for_each_chunk(range, |chunk| match chunk.iter().position(|&b| b == 0) {
        Some(end) => {
            text.extend_from_slice(&chunk[..end]);
            Ok(false)
        }
        None => {
            text.extend_from_slice(chunk);
            Ok(true)
        }
    })?;
    match String::from_utf8(text) {
        Ok(s) => output::raw_line(s),
        Err(e) => {
            output::raw_line(String::from_utf8_lossy(e.as_bytes()))?;
            output::warn(format!(
                "the text in segment `{name}` is not valid UTF-8 (shown with U+FFFD); use --hex or --raw for the exact bytes"
            ));
            Ok(())
        }
    }
}

/// A `hexdump -C` style dump; offsets count from the start of the segment, and a run
/// of lines equal to the one before is shown as one `*`.
fn hex_dump(range: &Range, base: u64) -> Result {
    let mut pending: Vec<u8> = Vec::with_capacity(HEX_LINE);
    let mut previous: Option<Vec<u8>> = None;
    let mut starred = false;
    let mut at = base;
    let mut out = String::new();
    let mut emit_line = |line: &[u8], at: u64, out: &mut String| {
        if previous.as_deref() == Some(line) {
            if !starred {
                out.push_str("*\n");
                starred = true;
            }
        } else {
            starred = false;
            hex_line(out, at, line);
            previous = Some(line.to_vec());
        }
    };
    for_each_chunk(range, |chunk| {
        for &b in chunk {
            pending.push(b);
            if pending.len() == HEX_LINE {
                emit_line(&pending, at, &mut out);
                at += HEX_LINE as u64;
                pending.clear();
            }
        }
        if out.len() >= CHUNK {
            output::bytes(out.as_bytes())?;
            out.clear();
        }
        Ok(true)
    })?;
    if !pending.is_empty() {
        // A short last line is never equal to a full one.
        hex_line(&mut out, at, &pending);
        at += pending.len() as u64;
    }
    let _ = writeln!(out, "{at:08x}");
    output::bytes(out.as_bytes())
}

/// `00000010  48 65 6c 6c 6f 20 66 72  6f 6d 20 50 72 6f 63 65  |Hello from Proce|`
fn hex_line(out: &mut String, at: u64, line: &[u8]) {
    let _ = write!(out, "{at:08x} ");
    for i in 0..HEX_LINE {
        if i == HEX_LINE / 2 {
            out.push(' ');
        }
        match line.get(i) {
            Some(b) => {
                let _ = write!(out, " {b:02x}");
            }
            None => out.push_str("   "),
        }
    }
    out.push_str("  |");
    out.extend(line.iter().map(|&b| {
        if b.is_ascii_graphic() || b == b' ' {
            char::from(b)
        } else {
            '.'
        }
    }));
    out.push_str("|\n");
}
