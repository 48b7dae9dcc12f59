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
//! - every frame other than a header block passes through byte for byte, in order;
//! - if the client's first header block needs no rewrite (it decodes, every `:authority` in
//!   it is valid), h2 gets that block's HPACK bytes as the client sent them and everything
//!   after it byte for byte;
//! - otherwise what goes to h2 is the client's stream with header blocks replaced: every
//!   header block decodes with a fresh HPACK decoder (nothing enters h2's dynamic table) and
//!   its `:authority` is one h2 accepts.
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

    match (first_block(&sent), first_block(&passed)) {
        (Some(client), Some(relayed)) if needs_no_rewrite(&client.hpack) => {
            assert_eq!(
                relayed.hpack, client.hpack,
                "the first block as the client sent it"
            );
            assert_eq!(
                &whole.output[PREFACE.len() + relayed.end..],
                &input[PREFACE.len() + client.end..],
                "the rest untouched"
            );
            return;
        }
        _ => {}
    }

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

/// The first complete header block of a stream's frames: its HPACK bytes (padding and
/// priority fields removed) and where its last frame ends, counted after the preface.
struct FirstBlock {
    hpack: Vec<u8>,
    end: usize,
}

fn first_block(frames: &[Frame<'_>]) -> Option<FirstBlock> {
    let mut hpack = Vec::new();
    let mut end = 0;
    for (&(kind, flags, _, payload), in_block) in frames.iter().zip(header_parts(frames)) {
        end += 9 + payload.len();
        if !in_block {
            continue;
        }
        if kind == HEADERS {
            let padding = if flags & PADDED != 0 {
                usize::from(*payload.first()?)
            } else {
                0
            };
            let start =
                usize::from(flags & PADDED != 0) + if flags & PRIORITY != 0 { 5 } else { 0 };
            hpack.extend_from_slice(payload.get(start..payload.len().checked_sub(padding)?)?);
        } else {
            hpack.extend_from_slice(payload);
        }
        if flags & END_HEADERS != 0 {
            return Some(FirstBlock { hpack, end });
        }
    }
    None
}

/// Whether a block decodes (with a fresh table, as a connection's first block does) and
/// every `:authority` in it is valid.
fn needs_no_rewrite(hpack: &[u8]) -> bool {
    loona_hpack::Decoder::new()
        .decode(hpack)
        .is_ok_and(|headers| {
            headers.iter().all(|(name, value)| {
                name != b":authority" || http::uri::Authority::try_from(&value[..]).is_ok()
            })
        })
}

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
