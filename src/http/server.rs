//! The HTTP server loop: accepts connections and serves the router over HTTP/1.1 and HTTP/2, with
//! a deadline for reading a request's headers (a client trickling its headers byte by byte cannot
//! hold a connection and a task forever), a lingering close, and graceful shutdown.
//!
//! Lingering close: a request refused before its body is read (413 for a body over the limit) ends
//! its connection with the client still sending. Closing a socket with unread data makes the
//! kernel answer with a reset, and a client that writes its whole body before reading (Python's
//! urllib, curl with a large upload) then sees a broken pipe instead of the 413. So a finished
//! connection first sends its FIN, then reads and discards what the client still sends, bounded in
//! bytes and time, and only then closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// How long a client has to send a request's headers, from the moment the server starts
    /// reading them (also an idle keep-alive connection's lifetime). Past it the connection is
    /// closed.
    pub header_read_timeout: Duration,
}

/// Most a closing connection reads and discards of what its client still sends: a client that
/// sent up to this much in one go (a body refused with 413, whatever the body limit) is read to
/// its end and sees the answer; one that keeps sending past it is cut off, with a reset.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// Longest a closing connection lingers, however steadily its client sends.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// A closing connection whose client sends nothing for this long is closed: a client that has
/// finished sending reads the answer and closes, which ends the linger at once.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Pause after an accept error (file descriptors exhausted, for instance) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting and waits for the
/// open connections to finish their in-flight requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Answers are small and written whole: no reason to wait for more bytes to send.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (stream, returned) = HandedBack::new(stream);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection closed with an error");
            }
            // The connection has let go of its socket by now (or an upgrade holds it, and hands it
            // back when done).
            if let Ok(stream) = returned.await {
                linger(stream).await;
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Closes a finished connection's socket gently: FIN first, then reads and discards what the
/// client still sends until it closes, goes quiet for [`LINGER_IDLE`], or [`LINGER_BYTES`] or
/// [`LINGER_TIME`] are used up.
async fn linger(mut stream: TcpStream) {
    // Fails when the peer is already gone; the reads below then end at once too.
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER_TIME;
    let mut discard = vec![0u8; 64 * 1024];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let quiet_by = deadline.min(Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(quiet_by, stream.read(&mut discard)).await {
            Ok(Ok(read)) if read > 0 => {
                left = left.saturating_sub(u64::try_from(read).unwrap_or(u64::MAX));
            }
            // End of stream, a reset, quiet for too long, or past the deadline.
            _ => return,
        }
    }
}

/// A connection's socket as hyper holds it; when hyper drops it (the connection is over), the
/// socket goes back to the connection's task instead of closing, so that it can [`linger`].
struct HandedBack {
    stream: Option<TcpStream>,
    back: Option<oneshot::Sender<TcpStream>>,
}

impl HandedBack {
    fn new(stream: TcpStream) -> (Self, oneshot::Receiver<TcpStream>) {
        let (back, returned) = oneshot::channel();
        let handed = Self {
            stream: Some(stream),
            back: Some(back),
        };
        (handed, returned)
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        // Only `drop` takes the stream out, so it is always here while hyper can call.
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Drop for HandedBack {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            // The task is gone only if it panicked; the socket then closes here.
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for HandedBack {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}

impl AsyncWrite for HandedBack {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
