//! The agent's HTTP/2 `:authority` rewrite on the Workload API socket
//! (`spire_agent::workload::authority`): HPACK-decodes every header block a local process
//! sends and re-encodes it before h2 sees it.
//!
//! Input: one byte for the read size (1 to 256 bytes at a time), then the client's bytes.
//!
//! Properties:
//! - memory stays bounded: the rewriter never holds more than one frame and one header
//!   block of the limits h2 enforces (16 KiB each, plus a frame header);
//! - the outcome does not depend on how the stream is cut into reads;
//! - what goes to h2 is the client's stream with header blocks replaced: every header block
//!   decodes with a fresh HPACK decoder (nothing enters h2's dynamic table), its `:authority`
//!   is one h2 accepts, and every other frame passes through byte for byte, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spire_agent::workload::authority::fuzzing::rewrite;
use spire_agent::workload::authority::{MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Frames (kind, flags, stream, payload) after the preface, up to the first frame over the
/// size limit or an unfinished tail (both passed through as they are).
fn frames(bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut rest = &bytes[PREFACE.len().min(bytes.len())..];
    let mut out = Vec::new();
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if len > MAX_FRAME_SIZE || rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], rest[4], stream, &rest[9..9 + len]));
        rest = &rest[9 + len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(stream);
    let cut = rewrite(&input, usize::from(step) + 1);
    let whole = rewrite(&input, input.len());
    assert!(
        cut.max_held <= 9 + MAX_FRAME_SIZE + MAX_HEADER_LIST_SIZE,
        "held {} bytes",
        cut.max_held
    );
    assert_eq!(
        cut.result.is_ok(),
        whole.result.is_ok(),
        "reads change the outcome"
    );
    if whole.result.is_err() {
        return;
    }
    assert_eq!(cut.output, whole.output, "reads change the output");

    let (sent, passed) = (frames(&input), frames(&whole.output));
    let (sent_others, passed_others) = (others(&sent), others(&passed));
    assert!(passed_others.len() <= sent_others.len());
    assert_eq!(
        passed_others[..],
        sent_others[..passed_others.len()],
        "frames other than headers pass untouched"
    );

    let mut block = Vec::new();
    for (frame, in_block) in passed.iter().zip(header_parts(&passed)) {
        let &(kind, flags, _, payload) = frame;
        if !in_block {
            continue;
        }
        let fragment = if kind == HEADERS {
            assert_eq!(flags & PADDED, 0, "the rewriter never pads");
            let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
            &payload[skip..]
        } else {
            payload
        };
        block.extend_from_slice(fragment);
        if flags & END_HEADERS == 0 {
            continue;
        }
        let headers = loona_hpack::Decoder::new()
            .decode(&block)
            .expect("a rewritten block decodes on its own");
        for (name, value) in headers {
            if name == b":authority" {
                assert!(http::uri::Authority::try_from(&value[..]).is_ok());
            }
        }
        block.clear();
    }
});

type Frame<'a> = (u8, u8, u32, &'a [u8]);

/// Which frames belong to a header block: HEADERS, and CONTINUATION after a HEADERS or
/// CONTINUATION without END_HEADERS. A stray CONTINUATION is not rewritten but passed on for
/// h2 to refuse.
fn header_parts(frames: &[Frame<'_>]) -> Vec<bool> {
    let mut in_block = false;
    frames
        .iter()
        .map(|&(kind, flags, _, _)| {
            let part = kind == HEADERS || (kind == CONTINUATION && in_block);
            if part {
                in_block = flags & END_HEADERS == 0;
            }
            part
        })
        .collect()
}

/// The frames that are not part of a header block.
fn others(frames: &[Frame<'_>]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    frames
        .iter()
        .zip(header_parts(frames))
        .filter(|(_, part)| !part)
        .map(|(f, _)| (f.0, f.1, f.2, f.3.to_vec()))
        .collect()
}
