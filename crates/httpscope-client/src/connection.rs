//! One HTTP/1.1 connection: the socket (plain or TLS), the hyper `SendRequest` that drives
//! it, and what the pool needs to know about it. The pool sits on top (see `pool.rs`), like
//! hyper's `client::conn::http1` under hyper-util's pool.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::observer::ConnectionId;

/// A request body: the whole body in memory (so that a retry can resend it without copying).
#[derive(Debug, Default)]
pub(crate) struct ReqBody(Option<Bytes>);

impl ReqBody {
    pub(crate) fn new(data: Bytes) -> Self {
        ReqBody(if data.is_empty() { None } else { Some(data) })
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Moments seen at the socket, for `headers_written`, `body_written` and
/// `first_response_byte`. Written only while `armed` (set by an observed request), so an
/// unobserved client never reads the clock here.
#[derive(Debug)]
pub(crate) struct Stamps {
    base: Instant,
    armed: AtomicBool,
    first_write: AtomicU64,
    last_write: AtomicU64,
    first_read: AtomicU64,
}

impl Stamps {
    pub(crate) fn new(base: Instant) -> Self {
        Stamps {
            base,
            armed: AtomicBool::new(false),
            first_write: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            first_read: AtomicU64::new(0),
        }
    }

    /// Starts recording for one request.
    pub(crate) fn arm(&self) {
        self.first_write.store(0, Ordering::Relaxed);
        self.last_write.store(0, Ordering::Relaxed);
        self.first_read.store(0, Ordering::Relaxed);
        self.armed.store(true, Ordering::Release);
    }

    /// Stops recording and returns (first write, last write, first read).
    pub(crate) fn disarm(&self) -> (Option<Instant>, Option<Instant>, Option<Instant>) {
        self.armed.store(false, Ordering::Release);
        let at = |v: &AtomicU64| match v.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        };
        (
            at(&self.first_write),
            at(&self.last_write),
            at(&self.first_read),
        )
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    #[inline]
    fn wrote(&self) {
        if self.armed.load(Ordering::Relaxed) {
            let now = self.now_ns();
            let _ = self
                .first_write
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.last_write.store(now, Ordering::Relaxed);
        }
    }

    #[inline]
    fn read(&self) {
        if self.armed.load(Ordering::Relaxed) && self.first_read.load(Ordering::Relaxed) == 0 {
            self.first_read.store(self.now_ns(), Ordering::Relaxed);
        }
    }
}

/// The socket under a connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The socket, with the timing taps of [`Stamps`].
pub(crate) struct ObservedIo {
    pub(crate) stream: Stream,
    pub(crate) stamps: Option<Arc<Stamps>>,
}

macro_rules! with_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.stream {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for ObservedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = with_stream!(this, s => s.poll_read(cx, buf));
        if let (Poll::Ready(Ok(())), Some(st)) = (&r, &this.stamps) {
            if buf.filled().len() > before {
                st.read();
            }
        }
        r
    }
}

impl AsyncWrite for ObservedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = with_stream!(this, s => s.poll_write(cx, buf));
        if let (Poll::Ready(Ok(n)), Some(st)) = (&r, &this.stamps) {
            if *n > 0 {
                st.wrote();
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = with_stream!(this, s => s.poll_write_vectored(cx, bufs));
        if let (Poll::Ready(Ok(n)), Some(st)) = (&r, &this.stamps) {
            if *n > 0 {
                st.wrote();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        with_stream!(this, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        with_stream!(this, s => s.poll_shutdown(cx))
    }
}

/// One open connection, owned either by the request using it or by the pool's idle list.
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) tx: hyper::client::conn::http1::SendRequest<ReqBody>,
    /// Present when the client observes.
    pub(crate) stamps: Option<Arc<Stamps>>,
    pub(crate) opened: Instant,
    pub(crate) requests: u64,
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    /// When it was put on the idle list.
    pub(crate) idle_since: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("requests", &self.requests)
            .field("peer", &self.peer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_record_only_while_armed() {
        let st = Stamps::new(Instant::now());
        st.wrote();
        st.read();
        assert_eq!(st.disarm(), (None, None, None));
        st.arm();
        st.wrote();
        st.wrote();
        st.read();
        let (fw, lw, fr) = st.disarm();
        assert!(fw.is_some() && lw >= fw && fr >= lw);
        st.wrote();
        assert_eq!(st.disarm().0, fw, "no writes recorded once disarmed");
    }

    #[test]
    fn request_body_is_one_frame() {
        let b = ReqBody::new(Bytes::from_static(b"abc"));
        assert_eq!(b.size_hint().exact(), Some(3));
        assert!(!b.is_end_stream());
        assert!(ReqBody::new(Bytes::new()).is_end_stream());
    }
}
