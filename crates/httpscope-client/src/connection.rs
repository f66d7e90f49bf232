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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
const ARMED: u32 = 1;
const HEAD: u32 = 2;
const HANDED: u32 = 4;
const BODY: u32 = 8;
const FIRST_BYTE: u32 = 16;
/// A write after the head's: the body's moment needs a clock read of its own.
const WROTE_AGAIN: u32 = 32;
/// The request waits behind a [`Gate`] (kept in `Tap::gate`).
const EXPECT: u32 = 64;
/// The connection task is emitting one of the moments: a disarm waits for it to finish.
const BUSY: u32 = 128;
/// The body had been handed to hyper when the head's write returned.
const CARRIED: u32 = 256;

/// What one observed connection knows about the request it carries, shared between the
/// request's task (which arms and disarms it) and the connection task (whose socket calls
/// report the moments).
///
/// Lock-free, because it is on the path of every observed request: arming is plain stores
/// then one release store of the flags; each moment is claimed by one compare-and-swap that
/// also sets `BUSY` while its event is emitted; disarming swaps the flags to zero once no
/// emission is in progress, so no event of a request can follow its disarm. Only the
/// connection task sets `BUSY`, and only it changes the flags while `BUSY` is set; `BUSY` is
/// cleared also when the observer panics (else the disarm would wait forever).
///
/// The tap holds no observer: the connection task's [`Tapped`] does (see there), so the tap
/// needs no `unsafe` and no reference count changes hands at arm or disarm.
#[derive(Debug)]
pub(crate) struct Tap {
    flags: AtomicU32,
    /// Moments are stored as nanoseconds since `base`, plus one (zero: not seen).
    base: Instant,
    request: AtomicU64,
    connection: AtomicU64,
    attempt: AtomicU32,
    body_bytes: AtomicU64,
    head: AtomicU64,
    body: AtomicU64,
    first_byte: AtomicU64,
    /// Touched only for requests that wait for `100 Continue`.
    gate: Mutex<Option<Arc<Gate>>>,
}

/// The moments a tap saw for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moments {
    pub(crate) headers_written: Option<Instant>,
    pub(crate) body_written: Option<Instant>,
    pub(crate) first_byte: Option<Instant>,
}

impl Tap {
    /// A tap for one connection; moments are stored relative to `base`.
    pub(crate) fn new(base: Instant) -> Self {
        Tap {
            flags: AtomicU32::new(0),
            base,
            request: AtomicU64::new(0),
            connection: AtomicU64::new(0),
            attempt: AtomicU32::new(0),
            body_bytes: AtomicU64::new(0),
            head: AtomicU64::new(0),
            body: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            gate: Mutex::new(None),
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Option<Arc<Gate>>> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn encode(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64 + 1
    }

    fn decode(&self, v: &AtomicU64) -> Option<Instant> {
        match v.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.base + std::time::Duration::from_nanos(ns - 1)),
        }
    }

    fn ids(&self) -> Ids {
        Ids {
            request: crate::observer::RequestId(self.request.load(Ordering::Relaxed)),
            connection: match self.connection.load(Ordering::Relaxed) {
                0 => None,
                c => Some(ConnectionId(c)),
            },
            attempt: self.attempt.load(Ordering::Relaxed),
        }
    }

    /// Starts reporting for one request (whose body, if any, has not been handed yet). The
    /// tap is disarmed (a connection carries one request at a time).
    pub(crate) fn arm(&self, ids: Ids, body_bytes: u64, gate: Option<Arc<Gate>>) {
        self.request.store(ids.request.0, Ordering::Relaxed);
        self.connection
            .store(ids.connection.map_or(0, |c| c.0), Ordering::Relaxed);
        self.attempt.store(ids.attempt, Ordering::Relaxed);
        self.body_bytes.store(body_bytes, Ordering::Relaxed);
        for m in [&self.head, &self.body, &self.first_byte] {
            m.store(0, Ordering::Relaxed);
        }
        let mut flags = ARMED;
        if body_bytes == 0 {
            flags |= HANDED;
        }
        if gate.is_some() {
            *self.gate() = gate;
            flags |= EXPECT;
        }
        self.flags.store(flags, Ordering::Release);
    }

    /// Stops reporting (waiting for an emission in progress); returns what was seen.
    pub(crate) fn disarm(&self) -> Moments {
        let mut spins = 0u32;
        let was = loop {
            let f = self.flags.load(Ordering::Acquire);
            if f & BUSY != 0 {
                // Only on a multi-threaded runtime, while the connection task runs an
                // observer method.
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if self
                .flags
                .compare_exchange_weak(f, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break f;
            }
        };
        if was & EXPECT != 0 {
            *self.gate() = None;
        }
        Moments {
            headers_written: self.decode(&self.head),
            body_written: self.decode(&self.body),
            first_byte: self.decode(&self.first_byte),
        }
    }

    fn body_handed(&self) {
        self.flags.fetch_or(HANDED, Ordering::AcqRel);
    }

    /// Runs `f` if the tap is armed, has the `need` bits and not yet `bit`, then sets `bit`
    /// and the bits `f` returns.
    #[inline]
    fn once(&self, bit: u32, need: u32, f: impl FnOnce(&Tap, u32) -> u32) {
        let flags = self.flags.load(Ordering::Acquire);
        if flags & (ARMED | need | bit) != ARMED | need {
            return;
        }
        self.once_slow(flags, bit, need, f)
    }

    #[cold]
    fn once_slow(&self, mut flags: u32, bit: u32, need: u32, f: impl FnOnce(&Tap, u32) -> u32) {
        loop {
            if flags & (ARMED | need | bit) != ARMED | need {
                return;
            }
            match self.flags.compare_exchange_weak(
                flags,
                flags | bit | BUSY,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => flags = now,
            }
        }
        // Nobody else changes the flags while BUSY is set. The claim clears it also if `f`
        // unwinds (an observer's panic), so a disarm never waits for an emission that ended.
        let mut claim = Claim {
            flags: &self.flags,
            value: flags | bit,
        };
        claim.value |= f(self, flags);
    }
}

/// Ends a claimed emission: stores the flags without `BUSY`, also on unwind.
struct Claim<'a> {
    flags: &'a AtomicU32,
    value: u32,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.flags.store(self.value, Ordering::Release);
    }
}

/// The socket of an observed connection: reports the first write of a request (its head),
/// the flush that follows the handing over of its body, and the first read of its response.
pub(crate) struct Tapped<O> {
    pub(crate) stream: Stream,
    pub(crate) tap: Arc<Tap>,
    /// Weak, so that the observer goes with its client, not with its last connection task.
    pub(crate) hooks: Weak<Hooks<O>>,
    /// The hooks upgraded at a request's first moment and kept (in this task only, no
    /// sharing) until its last, the first response byte: one upgrade and one release per
    /// request. Also let go when a socket call finds the tap disarmed (a request dropped
    /// half-way), so the observer does not wait for the connection to end.
    pub(crate) held: Option<Arc<Hooks<O>>>,
}

impl<O: Observer> Tapped<O> {
    /// A tap's socket reporting to `hooks`.
    pub(crate) fn new(stream: Stream, tap: Arc<Tap>, hooks: Weak<Hooks<O>>) -> Self {
        Tapped {
            stream,
            tap,
            hooks,
            held: None,
        }
    }
}

/// The hooks for an emission: those held, else upgraded and held. `None` only if the client
/// is gone, which an armed tap rules out (its request holds the client); then nothing is
/// reported.
#[inline]
fn hooks_of<'h, O>(
    weak: &Weak<Hooks<O>>,
    held: &'h mut Option<Arc<Hooks<O>>>,
) -> Option<&'h Hooks<O>> {
    if held.is_none() {
        *held = weak.upgrade();
    }
    held.as_deref()
}

impl<O: Observer> Tapped<O> {
    #[inline]
    fn wrote(&mut self) {
        let (tap, weak, held) = (&*self.tap, &self.hooks, &mut self.held);
        let flags = tap.flags.load(Ordering::Relaxed);
        if flags & (ARMED | HEAD | BODY | WROTE_AGAIN) == ARMED | HEAD {
            tap.flags.fetch_or(WROTE_AGAIN, Ordering::AcqRel);
            return;
        }
        tap.once(HEAD, 0, |tap, flags| {
            let at = Instant::now();
            tap.head.store(tap.encode(at), Ordering::Relaxed);
            let carried = if flags & HANDED != 0 { CARRIED } else { 0 };
            let Some(hooks) = hooks_of(weak, held) else {
                return carried;
            };
            let ids = tap.ids();
            hooks
                .observer
                .headers_written(&ev!(HeadersWritten { at, ids }));
            if flags & EXPECT != 0 {
                if let Some(gate) = &*tap.gate() {
                    gate.start(hooks, ids, at);
                }
            }
            carried
        });
    }

    #[inline]
    fn flushed(&mut self) {
        let (weak, held) = (&self.hooks, &mut self.held);
        let mut last = false;
        self.tap.once(BODY, HEAD | HANDED, |tap, flags| {
            // An early response: its first byte came before the body left.
            last = flags & FIRST_BYTE != 0;
            // hyper flushes only once its buffer is written out: if the head's write was the
            // only one and the body had been handed over before it returned, that write
            // carried it all.
            let head = tap.head.load(Ordering::Relaxed);
            let (at, v) = if flags & (WROTE_AGAIN | CARRIED) == CARRIED && head != 0 {
                (tap.decode(&tap.head).unwrap_or_else(Instant::now), head)
            } else {
                let at = Instant::now();
                (at, tap.encode(at))
            };
            tap.body.store(v, Ordering::Relaxed);
            if let Some(hooks) = hooks_of(weak, held) {
                hooks.observer.body_written(&ev!(BodyWritten {
                    at,
                    ids: tap.ids(),
                    bytes: tap.body_bytes.load(Ordering::Relaxed)
                }));
            }
            0
        });
        if last {
            self.held = None;
        }
    }

    #[inline]
    fn read(&mut self) {
        let (weak, held) = (&self.hooks, &mut self.held);
        self.tap.once(FIRST_BYTE, 0, |tap, _| {
            let at = Instant::now();
            tap.first_byte.store(tap.encode(at), Ordering::Relaxed);
            if let Some(hooks) = hooks_of(weak, held) {
                hooks
                    .observer
                    .first_response_byte(&ev!(FirstResponseByte { at, ids: tap.ids() }));
            }
            0
        });
        // The request's last moment (unless its body is still going out): let go.
        if self.held.is_some() && self.tap.flags.load(Ordering::Relaxed) & (ARMED | BODY) != ARMED {
            self.held = None;
        }
    }

    /// Lets the hooks go if the tap was disarmed while they were held (a request dropped
    /// half-way): one branch per socket call otherwise.
    #[inline]
    fn let_go_if_disarmed(&mut self) {
        if self.held.is_some() && self.tap.flags.load(Ordering::Relaxed) & ARMED == 0 {
            self.held = None;
        }
    }
}

impl<O: Observer> AsyncRead for Tapped<O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.let_go_if_disarmed();
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
        let this = self.get_mut();
        this.let_go_if_disarmed();
        Pin::new(&mut this.stream).poll_shutdown(cx)
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
    fn tapped(tap: &Arc<Tap>, hooks: &Arc<Hooks<Names>>) -> Tapped<Names> {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tcp = rt.block_on(TcpStream::connect(addr)).unwrap();
        Tapped::new(Stream::Plain(tcp), tap.clone(), Arc::downgrade(hooks))
    }

    #[test]
    fn a_tap_reports_each_moment_once_and_nothing_once_disarmed() {
        let hooks = Arc::new(Hooks::new(Names::default(), Interest::ALWAYS));
        let tap = Arc::new(Tap::new(Instant::now()));
        let mut io = tapped(&tap, &hooks);
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

    /// Each event with its request id, and each disarm, in one order.
    #[derive(Default)]
    struct Order(Mutex<Vec<(u64, bool)>>);
    impl Observer for Order {
        fn headers_written(&self, e: &HeadersWritten<'_>) {
            self.0.lock().unwrap().push((e.ids.request.0, false));
        }
        fn body_written(&self, e: &BodyWritten<'_>) {
            self.0.lock().unwrap().push((e.ids.request.0, false));
        }
        fn first_response_byte(&self, e: &crate::observer::FirstResponseByte<'_>) {
            self.0.lock().unwrap().push((e.ids.request.0, false));
        }
    }

    #[test]
    fn no_event_follows_a_disarm_across_threads() {
        // Stress in the manner of loom: the socket side hammers the moments on one thread
        // while the request side arms and disarms on another; after a request's disarm,
        // none of its events may appear, and the hooks are let go.
        let hooks = Arc::new(Hooks::new(Order::default(), Interest::ALWAYS));
        let tap = Arc::new(Tap::new(Instant::now()));
        let mut io = {
            let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = std.local_addr().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let tcp = rt.block_on(TcpStream::connect(addr)).unwrap();
            Tapped::new(Stream::Plain(tcp), tap.clone(), Arc::downgrade(&hooks))
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let socket = {
            let (tap, stop) = (tap.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match i % 5 {
                        0 | 1 => io.wrote(),
                        2 => tap.body_handed(),
                        3 => io.flushed(),
                        _ => io.read(),
                    }
                    io.let_go_if_disarmed();
                    i = i.wrapping_add(1);
                }
                io.let_go_if_disarmed();
                io.held.is_none()
            })
        };
        let rounds = 20_000u64;
        for r in 1..=rounds {
            let ids = Ids {
                request: RequestId(r),
                connection: None,
                attempt: 1,
            };
            tap.arm(ids, r % 2, None);
            for _ in 0..(r % 7) * 10 {
                std::hint::spin_loop();
            }
            tap.disarm();
            hooks.observer.0.lock().unwrap().push((r, true));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(socket.join().unwrap(), "hooks let go once disarmed");
        let log = hooks.observer.0.lock().unwrap();
        let mut disarmed = 0u64;
        let mut events = 0;
        for &(r, disarm) in log.iter() {
            if disarm {
                assert_eq!(r, disarmed + 1);
                disarmed = r;
            } else {
                assert!(r > disarmed, "an event of request {r} after its disarm");
                events += 1;
            }
        }
        assert!(events > 0, "the socket side reported some moments");
        drop(log);
        assert_eq!(Arc::strong_count(&hooks), 1);
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
