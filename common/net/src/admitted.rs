//! [`Admitted`]: a connection a listener let in, with what handlers learn about its peer and
//! its place in the listener's budgets (given back when it is dropped). Every listener's
//! connections are one of these: plain TCP, Unix sockets, TLS (`identity::listener`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::Slot;
use crate::server::Accepted;

/// A stream `S` whose peer is `I`, holding its place in its listener's budgets.
#[derive(Debug)]
pub struct Admitted<S, I> {
    stream: S,
    info: I,
    _slot: Slot,
}

impl<S, I> Admitted<S, I> {
    /// `stream` from the peer `info`, in `slot`.
    pub fn new(stream: S, info: I, slot: Slot) -> Self {
        Admitted {
            stream,
            info,
            _slot: slot,
        }
    }

    /// Who the peer is.
    pub fn info(&self) -> &I {
        &self.info
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S, I> Accepted for Admitted<S, I>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    I: Clone + Send + Sync + Unpin + 'static,
{
    type Info = I;

    fn info(&self) -> I {
        self.info.clone()
    }
}

impl<S: AsyncRead + Unpin, I: Unpin> AsyncRead for Admitted<S, I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, I: Unpin> AsyncWrite for Admitted<S, I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts from `accept` until one connection is admitted by `admit`, backing off after an
/// accept error (out of file descriptors and similar) instead of spinning.
pub(crate) async fn accept_until<T, A, F, C>(
    listener: &'static str,
    mut accept: A,
    mut admit: impl FnMut(T) -> Option<C>,
) -> C
where
    A: FnMut() -> F,
    F: std::future::Future<Output = io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => {
                if let Some(conn) = admit(accepted) {
                    return conn;
                }
            }
            Err(error) => {
                tracing::warn!(listener, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
