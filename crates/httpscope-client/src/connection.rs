//! One HTTP/1.1 connection: the socket (plain or TLS), the hyper `SendRequest` that drives
//! it, and what the pool needs to know about it. The pool sits on top (see `pool.rs`), like
//! hyper's `client::conn::http1` under hyper-util's pool.
//!
//! When the client observes, the socket is wrapped in [`Tapped`], which reports
//! `headers_written`, `body_written` and `first_response_byte` from inside the connection
//! task at the moment they happen. A client with the `Noop` observer never builds the
//! wrapper: its connections run on the bare [`Stream`].

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client::Hooks;
use crate::observer::{ev, ConnectionId, ContinueOutcome, Ids, Observer};

/// A request body: the whole body in memory (so that a retry can resend it without copying),
/// held back by a [`Gate`] while the request waits for `100 Continue`.
#[derive(Debug, Default)]
pub(crate) struct ReqBody {
    data: Option<Bytes>,
    /// The connection's tap, told when the body has been handed to hyper (observed clients).
    tap: Option<Arc<Tap>>,
    /// Present for a request with `Expect: 100-continue` and a body.
    gate: Option<Arc<Gate>>,
}

impl ReqBody {
    pub(crate) fn new(data: Bytes) -> Self {
        ReqBody {
            data: if data.is_empty() { None } else { Some(data) },
            tap: None,
            gate: None,
        }
    }

    /// Body bytes.
    pub(crate) fn len(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.len() as u64)
    }

    /// Attaches the attempt's tap and gate.
    pub(crate) fn attach(&mut self, tap: Option<Arc<Tap>>, gate: Option<Arc<Gate>>) {
        self.tap = tap;
        self.gate = gate;
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(gate) = &self.gate {
            if !gate.poll_open(cx) {
                return Poll::Pending;
            }
        }
        let data = self.data.take();
        if let Some(tap) = &self.tap {
            tap.body_handed();
        }
        Poll::Ready(data.map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// Holds a request body back until `100 Continue` arrives, a timeout passes, or the
/// exchange ends otherwise; its wait is the `continue_wait_start` / `continue_wait_end` span.
///
/// The span starts when the head has been written (reported by [`Tapped`]) and ends
/// exactly once, under the gate's lock, whichever of the 1xx callback, the request task's
/// timer or its drop gets there first.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    /// When the wait started (the head was written), if it was reported.
    since: Option<Instant>,
    waker: Option<Waker>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> bool {
        let mut st = self.lock();
        if !st.open {
            match &mut st.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => st.waker = Some(cx.waker().clone()),
            }
        }
        st.open
    }

    /// Whether the body may go.
    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.lock().open
    }

    /// The head was written: the wait starts (unless the gate is already open).
    fn start<O: Observer>(&self, hooks: &Hooks<O>, ids: Ids, at: Instant) {
        let mut st = self.lock();
        if !st.open && st.since.is_none() {
            st.since = Some(at);
            if hooks.on() {
                hooks
                    .observer
                    .continue_wait_start(&ev!(ContinueWaitStart { at, ids }));
            }
        }
    }

    /// Opens the gate (the body goes, if hyper still wants it) and ends the wait span if it
    /// started. Returns false if it was already open.
    pub(crate) fn open<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        ids: Ids,
        outcome: ContinueOutcome,
    ) -> bool {
        let mut st = self.lock();
        if st.open {
            return false;
        }
        st.open = true;
        if let (Some(since), true) = (st.since, hooks.on()) {
            let at = Instant::now();
            hooks.observer.continue_wait_end(&ev!(ContinueWaitEnd {
                at,
                ids,
                outcome,
                waited: at.saturating_duration_since(since),
            }));
        }
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        true
    }
}

/// The socket under a connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! with_stream {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
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

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        with_stream!(self.get_mut(), s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        with_stream!(self.get_mut(), s => s.poll_write(cx, buf))
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        with_stream!(self.get_mut(), s => s.poll_write_vectored(cx, bufs))
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_stream!(self.get_mut(), s => s.poll_flush(cx))
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_stream!(self.get_mut(), s => s.poll_shutdown(cx))
    }
}

/// `Tap::flags` bits.
const ARMED: u8 = 1;
const HEAD: u8 = 2;
const HANDED: u8 = 4;
const BODY: u8 = 8;
const FIRST_BYTE: u8 = 16;
/// A write after the head's: the body's moment needs a clock read of its own.
const WROTE_AGAIN: u8 = 32;

/// What one observed connection knows about the request it carries, shared between the
/// request's task (which arms and disarms it) and the connection task (whose socket calls
/// report the moments). The socket path reads one atomic; the lock is taken only for the
/// three moments of a request and to arm / disarm, so no event can follow a disarm.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    flags: AtomicU8,
    state: Mutex<TapState>,
}

#[derive(Debug)]
struct TapState {
    ids: Ids,
    body_bytes: u64,
    gate: Option<Arc<Gate>>,
    moments: Moments,
    /// The body had been handed to hyper when the head's write returned.
    head_carried_body: bool,
}

impl Default for TapState {
    fn default() -> Self {
        TapState {
            ids: Ids {
                request: crate::observer::RequestId(0),
                connection: None,
                attempt: 0,
            },
            body_bytes: 0,
            gate: None,
            moments: Moments::default(),
            head_carried_body: false,
        }
    }
}

/// The moments a tap saw for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moments {
    pub(crate) headers_written: Option<Instant>,
    pub(crate) body_written: Option<Instant>,
    pub(crate) first_byte: Option<Instant>,
}

impl Tap {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts reporting for one request (whose body, if any, has not been handed yet).
    pub(crate) fn arm(&self, ids: Ids, body_bytes: u64, gate: Option<Arc<Gate>>) {
        let mut st = self.lock();
        st.ids = ids;
        st.body_bytes = body_bytes;
        st.gate = gate;
        st.moments = Moments::default();
        let handed = if body_bytes == 0 { HANDED } else { 0 };
        self.flags.store(ARMED | handed, Ordering::Release);
    }

    /// Stops reporting; returns what was seen.
    pub(crate) fn disarm(&self) -> Moments {
        let mut st = self.lock();
        self.flags.store(0, Ordering::Release);
        st.gate = None;
        st.moments
    }

    fn body_handed(&self) {
        self.flags.fetch_or(HANDED, Ordering::AcqRel);
    }

    /// Runs `f` under the lock if the tap is armed and `bit` not yet set, then sets `bit`.
    #[inline]
    fn once(&self, bit: u8, need: u8, f: impl FnOnce(&mut TapState, u8)) {
        let flags = self.flags.load(Ordering::Acquire);
        if flags & (ARMED | need | bit) != ARMED | need {
            return;
        }
        self.once_slow(bit, need, f)
    }

    #[cold]
    fn once_slow(&self, bit: u8, need: u8, f: impl FnOnce(&mut TapState, u8)) {
        let mut st = self.lock();
        let flags = self.flags.load(Ordering::Acquire);
        if flags & (ARMED | need | bit) != ARMED | need {
            return;
        }
        self.flags.fetch_or(bit, Ordering::AcqRel);
        f(&mut st, flags);
    }
}

/// The socket of an observed connection: reports the first write of a request (its head),
/// the flush that follows the handing over of its body, and the first read of its response.
pub(crate) struct Tapped<O> {
    pub(crate) stream: Stream,
    pub(crate) tap: Arc<Tap>,
    /// Weak: the observer goes when the client goes, not when its last connection task ends
    /// (upgraded only for the three moments of a request, not on every socket call).
    pub(crate) hooks: Weak<Hooks<O>>,
}

impl<O: Observer> Tapped<O> {
    #[inline]
    fn wrote(&self) {
        let hooks = &self.hooks;
        let flags = self.tap.flags.load(Ordering::Relaxed);
        if flags & (ARMED | HEAD | BODY | WROTE_AGAIN) == ARMED | HEAD {
            self.tap.flags.fetch_or(WROTE_AGAIN, Ordering::AcqRel);
            return;
        }
        self.tap.once(HEAD, 0, |st, flags| {
            let at = Instant::now();
            st.moments.headers_written = Some(at);
            st.head_carried_body = flags & HANDED != 0;
            let ids = st.ids;
            let Some(hooks) = hooks.upgrade() else { return };
            hooks
                .observer
                .headers_written(&ev!(HeadersWritten { at, ids }));
            if let Some(gate) = &st.gate {
                gate.start(&hooks, ids, at);
            }
        });
    }

    #[inline]
    fn flushed(&self) {
        let hooks = &self.hooks;
        self.tap.once(BODY, HEAD | HANDED, |st, flags| {
            // hyper flushes only once its buffer is written out: if the head's write was the
            // only one and the body was already in the buffer, that write carried it all.
            let at = match st.moments.headers_written {
                Some(head) if st.head_carried_body && flags & WROTE_AGAIN == 0 => head,
                _ => Instant::now(),
            };
            st.moments.body_written = Some(at);
            let Some(hooks) = hooks.upgrade() else { return };
            hooks.observer.body_written(&ev!(BodyWritten {
                at,
                ids: st.ids,
                bytes: st.body_bytes
            }));
        });
    }

    #[inline]
    fn read(&self) {
        let hooks = &self.hooks;
        self.tap.once(FIRST_BYTE, 0, |st, _| {
            let at = Instant::now();
            st.moments.first_byte = Some(at);
            let Some(hooks) = hooks.upgrade() else { return };
            hooks
                .observer
                .first_response_byte(&ev!(FirstResponseByte { at, ids: st.ids }));
        });
    }
}

impl<O: Observer> AsyncRead for Tapped<O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.read();
        }
        r
    }
}

impl<O: Observer> AsyncWrite for Tapped<O> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes its socket after writing out everything it buffered, so the first
        // flush after the body was handed over is the moment the body left.
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.flushed();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One open connection, owned either by the request using it or by the pool's idle list.
pub(crate) struct Connection {
    pub(crate) id: ConnectionId,
    pub(crate) tx: hyper::client::conn::http1::SendRequest<ReqBody>,
    /// Present when the client observes.
    pub(crate) tap: Option<Arc<Tap>>,
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
    use crate::observer::{
        BodyWritten, ContinueWaitEnd, ContinueWaitStart, HeadersWritten, RequestId,
    };
    use crate::Interest;

    #[derive(Default)]
    struct Names(Mutex<Vec<String>>);
    impl Observer for Names {
        fn headers_written(&self, _: &HeadersWritten<'_>) {
            self.0.lock().unwrap().push("head".into());
        }
        fn body_written(&self, e: &BodyWritten<'_>) {
            self.0.lock().unwrap().push(format!("body({})", e.bytes));
        }
        fn continue_wait_start(&self, _: &ContinueWaitStart<'_>) {
            self.0.lock().unwrap().push("wait".into());
        }
        fn continue_wait_end(&self, e: &ContinueWaitEnd<'_>) {
            self.0.lock().unwrap().push(format!("end({:?})", e.outcome));
        }
    }

    fn ids() -> Ids {
        Ids {
            request: RequestId(1),
            connection: None,
            attempt: 1,
        }
    }

    /// The tap's moments through its socket-side calls, without a socket.
    fn tapped(hooks: &Arc<Hooks<Names>>, tap: &Arc<Tap>) -> Tapped<Names> {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tcp = rt.block_on(TcpStream::connect(addr)).unwrap();
        Tapped {
            stream: Stream::Plain(tcp),
            tap: tap.clone(),
            hooks: Arc::downgrade(hooks),
        }
    }

    #[test]
    fn a_tap_reports_each_moment_once_and_nothing_once_disarmed() {
        let hooks = Arc::new(Hooks::new(Names::default(), Interest::ALWAYS));
        let tap = Arc::new(Tap::default());
        let io = tapped(&hooks, &tap);
        io.wrote();
        io.flushed();
        assert!(hooks.observer.0.lock().unwrap().is_empty(), "not armed");
        tap.arm(ids(), 3, None);
        io.flushed(); // nothing written yet, body not handed
        io.wrote();
        io.wrote();
        io.flushed(); // body not handed yet
        tap.body_handed();
        io.flushed();
        io.flushed();
        io.read();
        let m = tap.disarm();
        assert!(m.headers_written.is_some() && m.body_written >= m.headers_written);
        assert!(m.first_byte >= m.body_written);
        io.wrote();
        assert_eq!(*hooks.observer.0.lock().unwrap(), ["head", "body(3)"]);
        // A bodiless request whose head went out in one write: the body's moment is the
        // head's (no second clock read); with another write in between, it is its own.
        tap.arm(ids(), 0, None);
        io.wrote();
        io.flushed();
        let m = tap.disarm();
        assert_eq!(m.body_written, m.headers_written);
        tap.arm(ids(), 0, None);
        io.wrote();
        std::thread::sleep(std::time::Duration::from_millis(2));
        io.wrote();
        io.flushed();
        let m = tap.disarm();
        assert!(m.body_written > m.headers_written);
    }

    #[test]
    fn a_gate_pairs_its_wait_and_opens_once() {
        let hooks = Hooks::new(Names::default(), Interest::ALWAYS);
        let gate = Gate::default();
        // Opened before the head was written: no span at all.
        assert!(gate.open(&hooks, ids(), ContinueOutcome::Continue));
        gate.start(&hooks, ids(), Instant::now());
        assert!(hooks.observer.0.lock().unwrap().is_empty());
        let gate = Gate::default();
        gate.start(&hooks, ids(), Instant::now());
        gate.start(&hooks, ids(), Instant::now());
        assert!(!gate.is_open());
        assert!(gate.open(&hooks, ids(), ContinueOutcome::Timeout));
        assert!(!gate.open(&hooks, ids(), ContinueOutcome::Cancelled));
        assert!(gate.is_open());
        assert_eq!(*hooks.observer.0.lock().unwrap(), ["wait", "end(Timeout)"]);
    }

    #[test]
    fn request_body_is_one_frame() {
        let b = ReqBody::new(Bytes::from_static(b"abc"));
        assert_eq!(b.size_hint().exact(), Some(3));
        assert!(!b.is_end_stream());
        assert!(ReqBody::new(Bytes::new()).is_end_stream());
    }
}
