//! Lingering close, as nginx does it: when the server ends a connection whose client may
//! still be sending (a 413 answered from the headers while an 8 MiB body is on its way),
//! closing at once makes the kernel answer the unread bytes with a reset, and the client
//! (Python's urllib and requests, which send the whole body before reading) loses the answer
//! with it. So the write side is shut first and what still arrives is read and discarded,
//! for at most `linger_time` and `linger_bytes`, before the socket is closed.
//!
//! hyper hands a connection's I/O back only through `into_parts`, which the HTTP/1-or-2
//! server does not offer, so the I/O is wrapped: when hyper drops it, an armed [`Linger`]
//! moves the inner stream into a task that drains it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A connection's I/O that lingers when dropped, if armed.
pub(crate) struct Linger<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    io: Option<IO>,
    armed: Arc<AtomicBool>,
    time: Duration,
    bytes: usize,
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Linger<IO> {
    /// Wraps `io`; it lingers when dropped after `armed` was set.
    pub(crate) fn new(io: IO, armed: Arc<AtomicBool>, time: Duration, bytes: usize) -> Self {
        Linger {
            io: Some(io),
            armed,
            time,
            bytes,
        }
    }

    fn io(&mut self) -> io::Result<&mut IO> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
    }
}

/// Shuts the write side, then reads and discards until the client closes, `bytes` were read
/// or `time` has passed.
async fn drain<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, time: Duration, bytes: usize) {
    let deadline = tokio::time::Instant::now() + time;
    let _ = tokio::time::timeout_at(deadline, io.shutdown()).await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut read = 0;
    while read < bytes {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Linger<IO> {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else {
            return;
        };
        if !self.armed.load(Ordering::Acquire) || self.time.is_zero() {
            return;
        }
        // Without a runtime (the process is exiting) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(io, self.time, self.bytes));
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Linger<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Linger<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(IO::is_write_vectored)
    }
}
