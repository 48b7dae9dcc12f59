//! Lets gRPC clients that send their Unix socket path as the HTTP/2 `:authority` reach the
//! Workload API.
//!
//! On a `unix:` channel, gRPC C-core (grpcio ≥ 1.57, which py-spiffe uses; grpc/grpc#38142)
//! sends the percent-encoded socket path as `:authority` (grpcio 1.85 on
//! `unix:/tmp/x/api.sock` sends `tmp%2Fx%2Fapi.sock`), and grpc-java and others send the raw
//! path (`/tmp/x/api.sock`). Neither is an RFC 3986 authority: `http::uri::Authority` refuses
//! a `%` in a host and a `/` anywhere. The `h2` crate, under hyper and tonic, builds the
//! request's `http::Uri` with `Authority::from_maybe_shared` and, when that fails, resets the
//! stream with `PROTOCOL_ERROR` (`h2::server`, "malformed headers: malformed authority")
//! before hyper, tonic or any tower layer sees a request. h2 has no setting to relax this
//! (hyperium/h2#487 is still open); SPIRE's Go server accepts such requests.
//!
//! So the fix sits below h2: [`AuthorityFix`] wraps each accepted connection and rewrites what
//! the client sends. It splits the client's byte stream into HTTP/2 frames and passes every
//! frame through untouched except header blocks (HEADERS + CONTINUATION), which it decodes with
//! HPACK (tracking the client's dynamic table), gives `:authority: localhost` (what grpc-go
//! sends on Unix sockets) when the client's value is not a valid authority, and re-encodes as
//! literals that never enter the dynamic table, so h2's decoder table stays empty and always
//! in step. On a Unix socket `:authority` means nothing: the caller is identified by its
//! socket credentials. The server-to-client direction is not touched.
//!
//! A client sends the same `:authority` on every call of a channel, so the first header block
//! decides: if it needs no rewrite, it goes to h2 with its HPACK bytes as the client encoded
//! them (h2's table then holds what the client's does) and the rest of the connection passes
//! through untouched, with no decoding at all (the `spiffe` crate, tonic, grpc-go). A later
//! block with an invalid authority on such a connection is refused by h2, as it would be
//! without the rewriter. Otherwise every block of the connection is rewritten.
//!
//! # Memory
//!
//! What a connection can make the rewriter hold is bounded by the limits h2 enforces itself,
//! [`MAX_FRAME_SIZE`] and [`MAX_HEADER_LIST_SIZE`] (hyper's defaults, which the Workload API
//! server keeps): at most one frame of 16 KiB, one header block of 16 KiB and its decoded
//! header list of 16 KiB. A frame declaring more than `SETTINGS_MAX_FRAME_SIZE` is a
//! FRAME_SIZE_ERROR (RFC 9113 §4.2): the rewriter does not wait for it but hands the rest of
//! the stream to h2 as it is, which answers GOAWAY(FRAME_SIZE_ERROR) and closes. A header
//! block or a decoded header list over the limit (an HPACK "bomb" of references to a large
//! table entry) ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Largest frame payload a client may send, and the largest we emit: the initial
/// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2), which the Workload API server (hyper's h2)
/// keeps and every HTTP/2 peer must accept.
pub const MAX_FRAME_SIZE: usize = 16_384;
/// Largest header list (the sum of name + value + 32 octets per field, RFC 9113 §6.5.2) we
/// decode, and the largest header block we buffer: hyper's default
/// SETTINGS_MAX_HEADER_LIST_SIZE, which the Workload API server keeps. gRPC metadata is far
/// smaller.
pub const MAX_HEADER_LIST_SIZE: usize = 16_384;
/// What the header list size counts per field besides its name and value (RFC 7541 §4.1).
const FIELD_OVERHEAD: usize = 32;
/// The dynamic table size h2 advertises (the protocol default), so the most a client may use.
const MAX_HPACK_TABLE: usize = 4096;
/// What a Unix-socket `:authority` becomes.
const LOCALHOST: &[u8] = b"localhost";

/// A connection whose incoming header blocks get a valid `:authority`.
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    input: BytesMut,
    output: BytesMut,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::new(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S: common_net::Accepted> common_net::Accepted for AuthorityFix<S> {
    type Info = S::Info;

    fn info(&self) -> S::Info {
        self.inner.info()
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.output.is_empty() && this.input.is_empty() && this.rewriter.passing_through() {
                // Nothing held and nothing left to rewrite: the client's bytes go straight to h2.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client is done; whatever partial frame is left goes on as it is.
                this.eof = true;
                this.output.extend_from_slice(&this.input.split());
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.rewriter.process(&mut this.input, &mut this.output)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

enum State {
    /// Waiting for the connection preface.
    Preface,
    /// Reading frames.
    Frames,
    /// Nothing (more) to rewrite: not HTTP/2 with prior knowledge (h2 rejects it), a frame
    /// over the size limit (h2 refuses it), or a connection whose first header block needed
    /// no rewrite.
    Passthrough,
}

/// A header block whose CONTINUATION frames are still coming.
struct Pending {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The byte-level rewriter, separate from I/O so it can be tested on its own.
struct Rewriter {
    state: State,
    decoder: loona_hpack::Decoder<'static>,
    pending: Option<Pending>,
    /// Whether a header block was emitted yet: the first one decides whether the
    /// connection is rewritten at all.
    emitted: bool,
}

fn protocol_error(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2: {message}"))
}

impl Rewriter {
    fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_HPACK_TABLE);
        Rewriter {
            state: State::Preface,
            decoder,
            pending: None,
            emitted: false,
        }
    }

    /// Whether everything from now on passes through untouched.
    fn passing_through(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// Moves every complete unit (preface, frame) from `input` to `output`, rewritten.
    fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            match self.state {
                State::Passthrough => {
                    output.extend_from_slice(&input.split());
                    return Ok(());
                }
                State::Preface => {
                    let n = input.len().min(PREFACE.len());
                    if input[..n] != PREFACE[..n] {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    output.extend_from_slice(&input.split_to(PREFACE.len()));
                    self.state = State::Frames;
                }
                State::Frames => {
                    if input.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let len = (usize::from(input[0]) << 16)
                        | (usize::from(input[1]) << 8)
                        | usize::from(input[2]);
                    if len > MAX_FRAME_SIZE {
                        // RFC 9113 §4.2: a FRAME_SIZE_ERROR. Not buffered: h2 reads the
                        // header, answers GOAWAY and closes.
                        tracing::debug!(len, "frame over SETTINGS_MAX_FRAME_SIZE; h2 refuses it");
                        self.state = State::Passthrough;
                        continue;
                    }
                    if input.len() < FRAME_HEADER_LEN + len {
                        return Ok(());
                    }
                    let frame = input.split_to(FRAME_HEADER_LEN + len);
                    self.frame(&frame, output)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8], output: &mut BytesMut) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.pending.as_mut()) {
            (HEADERS, None) => {
                let (priority, fragment) = headers_payload(flags, payload)?;
                self.pending = Some(Pending {
                    stream_id,
                    flags,
                    priority,
                    block: fragment.to_vec(),
                });
            }
            (CONTINUATION, Some(pending)) if pending.stream_id == stream_id => {
                if pending.block.len() + payload.len() > MAX_HEADER_LIST_SIZE {
                    return Err(protocol_error(&format!(
                        "header block over {MAX_HEADER_LIST_SIZE} bytes"
                    )));
                }
                pending.block.extend_from_slice(payload);
                pending.flags |= flags & END_HEADERS;
            }
            // RFC 9113 §6.10: nothing may interleave with a header block.
            (_, Some(_)) => return Err(protocol_error("frame inside a header block")),
            (_, None) => {
                output.extend_from_slice(frame);
                return Ok(());
            }
        }
        if let Some(pending) = self.pending.take_if(|p| p.flags & END_HEADERS != 0) {
            self.emit(pending, output)?;
        }
        Ok(())
    }

    /// Decodes a complete header block and writes it out as HEADERS (+ CONTINUATION) frames:
    /// rewritten, or as the client encoded it if it is the connection's first and needs no
    /// rewrite (the connection then passes through untouched).
    fn emit(&mut self, pending: Pending, output: &mut BytesMut) -> io::Result<()> {
        let first_block = !self.emitted;
        self.emitted = true;
        let mut block = Vec::with_capacity(pending.block.len() + 64);
        let mut failed = None;
        let mut replaced = false;
        let mut list_size = 0usize;
        self.decoder
            .decode_with_cb(&pending.block, |name, value| {
                if failed.is_some() {
                    return;
                }
                // A few bytes may reference a large dynamic-table entry many times over: the
                // decoded list is bounded, not only the block.
                list_size += name.len() + value.len() + FIELD_OVERHEAD;
                if list_size > MAX_HEADER_LIST_SIZE {
                    failed = Some(protocol_error(&format!(
                        "header list over {MAX_HEADER_LIST_SIZE} bytes"
                    )));
                    return;
                }
                let value: &[u8] = if name.as_ref() == b":authority" && !valid_authority(&value) {
                    replaced = true;
                    tracing::trace!(
                        authority = %String::from_utf8_lossy(&value),
                        "replacing an :authority h2 would reject with localhost"
                    );
                    LOCALHOST
                } else {
                    &value
                };
                if let Err(e) = literal_without_indexing(&mut block, &name, value) {
                    failed = Some(e);
                }
            })
            .map_err(|e| protocol_error(&format!("invalid HPACK header block: {e:?}")))?;
        if let Some(e) = failed {
            return Err(e);
        }
        if first_block && !replaced {
            // h2 decodes the client's own bytes, so its table follows the client's from here
            // on, and nothing later needs decoding.
            block = pending.block;
            self.state = State::Passthrough;
        }

        // Rewritten, literals cost less than the list's 32 octets per field, so the block fits
        // one frame; a client's own block of up to MAX_HEADER_LIST_SIZE may not.
        let mut chunks = block.chunks(MAX_FRAME_SIZE - 5).peekable();
        let first = chunks.next().unwrap_or_default();
        let mut flags = pending.flags & END_STREAM;
        if pending.priority.is_some() {
            flags |= PRIORITY;
        }
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        let priority = pending.priority.as_ref().map_or(&[][..], |p| &p[..]);
        write_frame(
            output,
            HEADERS,
            flags,
            pending.stream_id,
            &[priority, first],
        );
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            write_frame(output, CONTINUATION, flags, pending.stream_id, &[chunk]);
        }
        Ok(())
    }
}

/// The priority fields and header block fragment of a HEADERS payload (padding removed).
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&pad, tail) = rest
            .split_first()
            .ok_or_else(|| protocol_error("HEADERS frame too short"))?;
        padding = usize::from(pad);
        rest = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, tail) = rest
            .split_first_chunk::<5>()
            .ok_or_else(|| protocol_error("HEADERS frame too short"))?;
        priority = Some(*fields);
        rest = tail;
    }
    let end = rest
        .len()
        .checked_sub(padding)
        .ok_or_else(|| protocol_error("HEADERS padding longer than the frame"))?;
    Ok((priority, &rest[..end]))
}

/// Whether h2 accepts `value` as a request authority (the check it applies itself).
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// RFC 7541 §6.2.2: literal header field without indexing, new name, no Huffman coding.
fn literal_without_indexing(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> io::Result<()> {
    out.push(0);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out)?;
        out.extend_from_slice(s);
    }
    Ok(())
}

fn write_frame(out: &mut BytesMut, kind: u8, flags: u8, stream_id: u32, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Every caller keeps `len` within MAX_FRAME_SIZE, far below 2^24.
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The rewriter without I/O, for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    use super::Rewriter;

    /// What [`rewrite`] saw.
    pub struct Outcome {
        /// Everything passed on to h2, the unfinished tail included (as at end of stream).
        pub output: Vec<u8>,
        /// `Err` if the rewriter ended the connection.
        pub result: std::io::Result<()>,
        /// The most bytes the rewriter held between two reads: unprocessed input and the
        /// header block being collected.
        pub max_held: usize,
    }

    /// Feeds `input` to a fresh rewriter `step` bytes at a time (`step` of 0 means 1), as
    /// [`super::AuthorityFix`] does with what it reads, then ends the stream.
    pub fn rewrite(input: &[u8], step: usize) -> Outcome {
        let mut rewriter = Rewriter::new();
        let (mut buffered, mut output) = (BytesMut::new(), BytesMut::new());
        let mut max_held = 0;
        for chunk in input.chunks(step.max(1)) {
            buffered.extend_from_slice(chunk);
            if let Err(e) = rewriter.process(&mut buffered, &mut output) {
                return Outcome {
                    output: output.to_vec(),
                    result: Err(e),
                    max_held,
                };
            }
            let pending = rewriter.pending.as_ref().map_or(0, |p| p.block.len());
            max_held = max_held.max(buffered.len() + pending);
        }
        output.extend_from_slice(&buffered);
        Outcome {
            output: output.to_vec(),
            result: Ok(()),
            max_held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HPACK-encodes `headers` as a client would (its encoder indexes into the dynamic table).
    fn encode(encoder: &mut loona_hpack::Encoder<'_>, headers: &[(&str, &str)]) -> Vec<u8> {
        encoder.encode(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
    }

    fn request(encoder: &mut loona_hpack::Encoder<'_>, authority: &str, path: &str) -> Vec<u8> {
        encode(
            encoder,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", authority),
                ("content-type", "application/grpc"),
                ("workload.spiffe.io", "true"),
            ],
        )
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_frame(&mut out, kind, flags, stream_id, &[payload]);
        out.to_vec()
    }

    /// Runs `input` through a rewriter `step` bytes at a time.
    fn rewrite(input: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut rewriter = Rewriter::new();
        let (mut buffered, mut output) = (BytesMut::new(), BytesMut::new());
        for chunk in input.chunks(step) {
            buffered.extend_from_slice(chunk);
            rewriter.process(&mut buffered, &mut output)?;
        }
        assert!(buffered.is_empty(), "everything complete was consumed");
        Ok(output.to_vec())
    }

    /// Splits rewritten output into (kind, flags, stream, payload) after the preface.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        bytes = bytes.strip_prefix(PREFACE).expect("preface first");
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]);
            let id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], id, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    #[test]
    fn socket_path_authorities_become_localhost_and_the_rest_is_kept() {
        let mut client = loona_hpack::Encoder::new();
        let first = request(
            &mut client,
            "tmp%2Fx%2Fapi.sock",
            "/SpiffeWorkloadAPI/FetchX509SVID",
        );
        // The second request refers to the dynamic table the first one filled.
        let second = request(
            &mut client,
            "/tmp/x/api.sock",
            "/SpiffeWorkloadAPI/FetchJWTSVID",
        );
        let settings = frame(0x4, 0, 0, &[]);
        let mut padded = vec![3u8, 0, 0, 0, 3, 16]; // pad length 3, priority fields
        padded.extend_from_slice(&second[..4]);
        padded.extend_from_slice(&[0, 0, 0]); // the padding
        let mut input = PREFACE.to_vec();
        input.extend(settings.clone());
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        input.extend(frame(0x0, END_STREAM, 1, b"body"));
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, &second[4..]));

        for step in [1, 7, input.len()] {
            let out = frames(&rewrite(&input, step).expect("rewrite"));
            assert_eq!(out.len(), 4, "settings, headers, data, headers");
            assert_eq!(out[0], (0x4, 0, 0, vec![]));
            assert_eq!(out[2], (0x0, END_STREAM, 1, b"body".to_vec()));
            let mut server = loona_hpack::Decoder::new();
            for ((kind, flags, id, block), path) in
                [(&out[1], "FetchX509SVID"), (&out[3], "FetchJWTSVID")]
            {
                assert_eq!(*kind, HEADERS);
                assert_eq!(flags & END_HEADERS, END_HEADERS);
                let block = if flags & PRIORITY != 0 {
                    assert_eq!(*id, 3);
                    assert_eq!(flags & END_STREAM, END_STREAM);
                    assert_eq!(&block[..5], &[0, 0, 0, 3, 16]);
                    &block[5..]
                } else {
                    &block[..]
                };
                let headers = server.decode(block).expect("h2 can decode it");
                let get = |n: &[u8]| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                assert_eq!(get(b":authority").as_deref(), Some(LOCALHOST));
                assert_eq!(
                    get(b":path"),
                    Some(format!("/SpiffeWorkloadAPI/{path}").into_bytes())
                );
                assert_eq!(get(b"workload.spiffe.io").as_deref(), Some(&b"true"[..]));
                assert_eq!(headers.len(), 6);
            }
        }
    }

    #[test]
    fn a_connection_whose_first_authority_is_valid_passes_through_untouched() {
        // What tonic and the `spiffe` crate send: a valid authority, then blocks that refer
        // to the dynamic table the first one filled.
        let mut client = loona_hpack::Encoder::new();
        let first = request(&mut client, "localhost", "/SpiffeWorkloadAPI/FetchX509SVID");
        let second = request(&mut client, "localhost", "/SpiffeWorkloadAPI/FetchJWTSVID");
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        input.extend(frame(0x0, END_STREAM, 1, b"body"));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));
        // A third block h2 will refuse is h2's to refuse: it is no longer looked at.
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            5,
            &[0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        for step in [1, 7, input.len()] {
            assert_eq!(
                rewrite(&input, step).expect("passed on"),
                input,
                "step {step}"
            );
        }
        let mut server = loona_hpack::Decoder::new();
        for block in [&first, &second] {
            let headers = server
                .decode(block)
                .expect("h2's table follows the client's");
            assert!(headers.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        }

        // Split over CONTINUATION frames and padded, the first block reaches h2 with the
        // client's bytes in one frame, and what follows passes as it came.
        let mut padded = vec![2u8];
        padded.extend_from_slice(&first[..5]);
        padded.extend_from_slice(&[0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED, 1, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &first[5..]));
        let rest = frame(HEADERS, END_HEADERS | END_STREAM, 3, &second);
        input.extend(rest.clone());
        let out = rewrite(&input, 3).expect("passed on");
        let mut expected = PREFACE.to_vec();
        expected.extend(frame(HEADERS, END_HEADERS, 1, &first));
        expected.extend(rest);
        assert_eq!(out, expected);
    }

    #[test]
    fn what_grpc_sends_on_unix_sockets_is_not_an_authority() {
        assert!(!valid_authority(b"tmp%2Fx%2Fapi.sock"), "grpcio 1.85");
        assert!(!valid_authority(b"/tmp/x/api.sock"), "grpc-java");
        assert!(valid_authority(b"localhost"));
        assert!(valid_authority(b"127.0.0.1:8081"));
    }

    #[test]
    fn valid_authorities_are_kept_across_continuation_frames() {
        let mut client = loona_hpack::Encoder::new();
        let big = "x".repeat(12_000);
        let block = encode(
            &mut client,
            &[
                (":method", "POST"),
                (":authority", "localhost:1234"),
                ("big", &big),
            ],
        );
        let mut input = PREFACE.to_vec();
        let (head, tail) = block.split_at(10_000);
        input.extend(frame(HEADERS, 0, 1, head));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        let out = frames(&rewrite(&input, 4096).expect("rewrite"));
        assert_eq!(out.len(), 1, "one header block, as one frame");
        assert!(out[0].3.len() <= MAX_FRAME_SIZE);
        assert_eq!(out[0].1 & END_HEADERS, END_HEADERS);
        let decoded = loona_hpack::Decoder::new()
            .decode(&out[0].3)
            .expect("decode");
        assert_eq!(
            decoded[1],
            (b":authority".to_vec(), b"localhost:1234".to_vec())
        );
        assert_eq!(decoded[2].1.len(), 12_000);
    }

    #[test]
    fn a_frame_over_the_maximum_size_goes_to_h2_unbuffered() {
        // Issue 14: a HEADERS frame declaring 16 MiB, of which 2 MiB are sent, was buffered
        // whole. Now nothing is held: the header and what follows go on for h2 to refuse.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0xff, 0xff, 0xff, HEADERS, END_HEADERS, 0, 0, 0, 1]);
        input.extend(std::iter::repeat_n(0u8, 100_000));
        let mut rewriter = Rewriter::new();
        let (mut buffered, mut output) = (BytesMut::new(), BytesMut::new());
        for chunk in input.chunks(8192) {
            buffered.extend_from_slice(chunk);
            rewriter
                .process(&mut buffered, &mut output)
                .expect("passed on");
            assert!(buffered.is_empty(), "nothing is held back");
        }
        assert_eq!(output.to_vec(), input);
        // One byte over the limit is enough; at the limit the frame is read as usual.
        let mut at_limit = PREFACE.to_vec();
        at_limit.extend(frame(0x0, 0, 1, &vec![7u8; MAX_FRAME_SIZE]));
        assert_eq!(rewrite(&at_limit, 1000).expect("a full frame"), at_limit);
    }

    #[test]
    fn header_blocks_and_lists_over_the_limit_end_the_connection() {
        // A header block that grows past the limit through CONTINUATION frames.
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        for _ in 0..2 {
            input.extend(frame(CONTINUATION, 0, 1, &vec![0x82; 10_000]));
        }
        assert!(rewrite(&input, input.len()).is_err());

        // A small block that decodes into a large list: 4,000 bytes put in the client's
        // dynamic table, then referenced ten times at one byte each.
        let mut client = loona_hpack::Encoder::new();
        let large = "v".repeat(4_000);
        // The first block needs a rewrite, so the connection's blocks are all decoded.
        let first = encode(
            &mut client,
            &[
                (":method", "POST"),
                (":authority", "/tmp/x/api.sock"),
                ("x-large", &large),
            ],
        );
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &first));
        let rewritten = rewrite(&input, input.len()).expect("one large header is fine");
        assert!(!rewritten.is_empty());
        let first_dynamic_entry = 0x80 | 62; // RFC 7541 §6.1, index 62: the newest entry
        let bomb = vec![first_dynamic_entry; 10];
        input.extend(frame(HEADERS, END_HEADERS, 3, &bomb));
        let error = rewrite(&input, input.len()).expect_err("40,000 decoded bytes");
        assert!(error.to_string().contains("header list"), "{error}");
    }

    #[test]
    fn interleaved_frames_and_garbage_are_refused() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        input.extend(frame(0x0, 0, 1, b"x"));
        assert!(rewrite(&input, input.len()).is_err());

        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff, 0xff],
        ));
        assert!(
            rewrite(&input, input.len()).is_err(),
            "bad HPACK closes the connection"
        );

        let http1 = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(rewrite(http1, 3).expect("passthrough"), http1.to_vec());
    }
}
