//! The client: builder, request flow (pool checkout, queue, dial, send, retry), and the
//! response body that gives the connection back.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, EXPECT, HOST};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as _, Frame};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::connection::{Connection, Gate, ReqBody, Stream, Tap, Tapped};
use crate::error::HttpError;
use crate::observer::{
    ev, ConnOrigin, ConnectionId, ContinueOutcome, Ids, Noop, Observer, QueueOutcome, RequestId,
    Summary, Timeline,
};
use crate::pool::{
    is_dead_connection, Checkout, Handoff, Origin, Pool, PoolConfig, PoolStats, Reuse, Waiting,
};
use crate::resolve::{Resolve, SystemResolver};
use crate::Error;

/// Attempts per request: the first, and one retry on a reused connection found dead.
const MAX_ATTEMPTS: u32 = 2;

/// The installed observer and the interest it declared when the client was built.
pub(crate) struct Hooks<O> {
    pub(crate) observer: O,
    enabled: bool,
    informational: bool,
}

impl<O: Observer> Hooks<O> {
    pub(crate) fn new(observer: O, interest: crate::Interest) -> Self {
        Hooks {
            observer,
            enabled: O::ENABLED && interest.is_enabled(),
            informational: O::ENABLED && interest.wants_informational(),
        }
    }

    /// Whether events are emitted: a constant `false` for [`Noop`].
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        O::ENABLED && self.enabled
    }

    #[inline(always)]
    fn now(&self) -> Option<Instant> {
        self.on().then(Instant::now)
    }
}

/// Builds a [`Client`].
pub struct Builder<O = Noop> {
    observer: O,
    pool: PoolConfig,
    resolver: Arc<dyn Resolve>,
    tls: Option<Arc<rustls::ClientConfig>>,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    expect_continue_timeout: Duration,
    retry: bool,
}

impl Default for Builder<Noop> {
    fn default() -> Self {
        Builder {
            observer: Noop,
            pool: PoolConfig::default(),
            resolver: Arc::new(SystemResolver),
            tls: None,
            roots: Vec::new(),
            connect_timeout: Some(Duration::from_secs(10)),
            timeout: None,
            expect_continue_timeout: Duration::from_secs(1),
            retry: true,
        }
    }
}

impl<O: Observer> Builder<O> {
    /// Installs `observer` (replacing the current one; use a pair to keep both).
    pub fn observer<P: Observer>(self, observer: P) -> Builder<P> {
        Builder {
            observer,
            pool: self.pool,
            resolver: self.resolver,
            tls: self.tls,
            roots: self.roots,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            expect_continue_timeout: self.expect_continue_timeout,
            retry: self.retry,
        }
    }

    /// Connections per host, open or being dialled (default: unlimited). Requests beyond it
    /// queue.
    pub fn max_connections_per_host(mut self, n: u32) -> Self {
        self.pool.max_per_host = n.max(1);
        self
    }

    /// Connections in total, open or being dialled (default: unlimited). Requests beyond it
    /// queue, unless an idle connection of another host can be evicted.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.pool.max_total = n.max(1);
        self
    }

    /// Dials in progress per host (default: unlimited).
    pub fn max_dials_per_host(mut self, n: u32) -> Self {
        self.pool.max_dials_per_host = n.max(1);
        self
    }

    /// Idle connections kept per host (default 32).
    pub fn max_idle_per_host(mut self, n: u32) -> Self {
        self.pool.max_idle_per_host = n;
        self
    }

    /// Idle connections kept in total (default 256).
    pub fn max_idle(mut self, n: u32) -> Self {
        self.pool.max_idle = n;
        self
    }

    /// How long a connection may stay idle (default 90 s; `None`: forever). Expired
    /// connections are closed when the pool next looks at their host.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.pool.idle_timeout = d;
        self
    }

    /// How long a connection may live (default: forever).
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.pool.max_lifetime = d;
        self
    }

    /// Time allowed for each TCP connect (default 10 s).
    pub fn connect_timeout(mut self, d: Option<Duration>) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Default deadline of every request, from its start to its response head (default:
    /// none). [`Client::send_with_deadline`] overrides it.
    pub fn timeout(mut self, d: Option<Duration>) -> Self {
        self.timeout = d;
        self
    }

    /// How long a request with `Expect: 100-continue` (and a body) holds its body back
    /// waiting for `100 Continue` before sending it anyway (default 1 s, as curl).
    pub fn expect_continue_timeout(mut self, d: Duration) -> Self {
        self.expect_continue_timeout = d;
        self
    }

    /// Whether an idempotent request that failed on a reused connection before any response
    /// arrived is sent once more on another connection (default true).
    pub fn retry_on_dead_connection(mut self, yes: bool) -> Self {
        self.retry = yes;
        self
    }

    /// The resolver (default: the system's).
    pub fn resolver(mut self, resolver: impl Resolve) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// The whole TLS configuration (ALPN should offer `http/1.1` only).
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts one more root certificate (DER), besides the webpki roots.
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.roots
            .push(rustls::pki_types::CertificateDer::from(der));
        self
    }

    /// Builds the client; the observer's interest is asked here, once.
    pub fn build(self) -> Result<Client<O>, Error> {
        let interest = if O::ENABLED {
            self.observer.interest()
        } else {
            crate::Interest::NEVER
        };
        let tls = match self.tls {
            Some(c) => c,
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for der in self.roots {
                    roots.add(der).map_err(|e| {
                        Error::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                    })?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Tls(std::io::Error::other(e)))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Arc::new(config)
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                hooks: Arc::new(Hooks::new(self.observer, interest)),
                pool: Pool::new(self.pool),
                resolver: self.resolver,
                tls: tokio_rustls::TlsConnector::from(tls),
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                expect_continue_timeout: self.expect_continue_timeout,
                retry: self.retry,
                next_request: AtomicU64::new(0),
                next_connection: AtomicU64::new(0),
            }),
        })
    }
}

/// An HTTP/1.1 client with its own pool, whose every step is reported to `O`.
///
/// Cloning is cheap and shares the pool. Requests need a tokio runtime (with the `time`
/// driver). The pool is closed when the last clone and the last response body are gone, or
/// by [`Client::close`].
pub struct Client<O: Observer = Noop> {
    inner: Arc<Inner<O>>,
}

impl<O: Observer> Clone for Client<O> {
    fn clone(&self) -> Self {
        Client {
            inner: self.inner.clone(),
        }
    }
}

impl<O: Observer> std::fmt::Debug for Client<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pool", &self.inner.pool.stats())
            .finish()
    }
}

struct Inner<O: Observer> {
    /// Shared with the taps of observed connections (which must not own the pool).
    hooks: Arc<Hooks<O>>,
    pool: Pool,
    resolver: Arc<dyn Resolve>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    expect_continue_timeout: Duration,
    retry: bool,
    next_request: AtomicU64,
    next_connection: AtomicU64,
}

impl<O: Observer> Drop for Inner<O> {
    fn drop(&mut self) {
        self.pool.close(&self.hooks);
    }
}

impl Client<Noop> {
    /// A client with default settings and no observer.
    pub fn new() -> Client<Noop> {
        Builder::default()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder with default settings and no observer.
    pub fn builder() -> Builder<Noop> {
        Builder::default()
    }
}

impl Default for Client<Noop> {
    fn default() -> Self {
        Client::new()
    }
}

/// What the client knows about one request; created at `request_start`, moved into the
/// response [`Body`], and reported in `request_end` / `request_failed`.
struct ReqCtx {
    id: RequestId,
    attempt: u32,
    conn: Option<ConnectionId>,
    method: Method,
    uri: Uri,
    origin: Origin,
    deadline: Option<Instant>,
    timeline: Timeline,
    status: Option<StatusCode>,
    version: Option<Version>,
    request_bytes: u64,
    response_bytes: u64,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    reused: bool,
    /// `Expect: 100-continue` with a body: the body waits behind a [`Gate`].
    expect_continue: bool,
    /// The first `get_conn` has not happened yet: it shares `request_start`'s clock read
    /// (nothing but building the request head happens between them).
    first_checkout: bool,
}

impl ReqCtx {
    fn ids(&self) -> Ids {
        Ids {
            request: self.id,
            connection: self.conn,
            attempt: self.attempt,
        }
    }

    fn summary(&self) -> Summary<'_> {
        Summary {
            origin: &self.origin,
            method: &self.method,
            uri: &self.uri,
            timeline: &self.timeline,
            status: self.status,
            version: self.version,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            local: self.local,
            peer: self.peer,
            reused: self.reused,
        }
    }
}

/// `Cancelled`, or `DeadlineExceeded` when the deadline has passed: why a future was dropped.
fn drop_error(deadline: Option<Instant>) -> Error {
    match deadline {
        Some(d) if Instant::now() >= d => Error::DeadlineExceeded,
        _ => Error::Cancelled,
    }
}

/// Runs a closure when dropped unless defused: the `_end` of a span whose future may be
/// dropped half-way.
struct OnDrop<F: FnMut()>(Option<F>);

impl<F: FnMut()> OnDrop<F> {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = &mut self.0 {
            f()
        }
    }
}

/// The request of one client call; reports `request_failed` if dropped before handing its
/// context to the response body.
struct Active<'a, O: Observer> {
    inner: &'a Inner<O>,
    ctx: Option<ReqCtx>,
}

impl<O: Observer> Drop for Active<'_, O> {
    fn drop(&mut self) {
        if let Some(ctx) = &mut self.ctx {
            if self.inner.hooks.on() {
                let error = drop_error(ctx.deadline);
                let at = Instant::now();
                ctx.timeline.end = Some(at);
                self.inner
                    .hooks
                    .observer
                    .request_failed(&ev!(RequestFailed {
                        at,
                        ids: ctx.ids(),
                        error: &error,
                        summary: ctx.summary(),
                    }));
            }
        }
    }
}

/// Holds a connection during the send; gives it back as not reusable if dropped.
struct Lease<'a, O: Observer> {
    inner: &'a Inner<O>,
    origin: &'a Origin,
    conn: Option<Connection>,
}

impl<O: Observer> Lease<'_, O> {
    fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("leased")
    }

    fn take(mut self) -> Connection {
        self.conn.take().expect("leased")
    }

    fn give_back(mut self, reuse: Reuse) {
        let conn = self.conn.take().expect("leased");
        self.inner
            .pool
            .release(&self.inner.hooks, self.origin, conn, reuse, None);
    }
}

impl<O: Observer> Drop for Lease<'_, O> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.inner
                .pool
                .release(&self.inner.hooks, self.origin, conn, Reuse::No, None);
        }
    }
}

/// An attempt handed to its connection: the tap reports for it until disarmed, and a wait
/// for `100 Continue` ends. Dropped half-way (the request future dropped), it disarms the
/// tap, so no event of the attempt follows, and ends the wait as cancelled.
struct Armed<'a, O: Observer> {
    hooks: &'a Hooks<O>,
    tap: Option<Arc<Tap>>,
    gate: Option<Arc<Gate>>,
    ids: Ids,
}

impl<O: Observer> Armed<'_, O> {
    fn disarm(mut self) -> (crate::connection::Moments, Option<Arc<Tap>>) {
        self.gate = None;
        let tap = self.tap.take();
        (tap.as_ref().map(|t| t.disarm()).unwrap_or_default(), tap)
    }
}

impl<O: Observer> Drop for Armed<'_, O> {
    fn drop(&mut self) {
        if let Some(tap) = self.tap.take() {
            tap.disarm();
        }
        if let Some(gate) = self.gate.take() {
            gate.open(self.hooks, self.ids, ContinueOutcome::Cancelled);
        }
    }
}

/// A place in the pool's queue; leaves it (and reports `queue_exit`) if dropped.
struct Queued<'a, O: Observer> {
    inner: &'a Inner<O>,
    origin: &'a Origin,
    ids: Ids,
    deadline: Option<Instant>,
    waiting: Option<Waiting>,
}

impl<O: Observer> Queued<'_, O> {
    fn exit(&mut self, outcome: QueueOutcome) {
        if let Some(w) = self.waiting.take() {
            let waited = self
                .inner
                .pool
                .cancel_wait(&self.inner.hooks, self.origin, w);
            self.report(outcome, waited);
        }
    }

    fn report(&self, outcome: QueueOutcome, waited: Duration) {
        if self.inner.hooks.on() {
            self.inner.hooks.observer.queue_exit(&ev!(QueueExit {
                at: Instant::now(),
                ids: self.ids,
                origin: self.origin,
                outcome,
                waited,
            }));
        }
    }

    async fn wait(&mut self) -> Result<Handoff, Error> {
        let w = self.waiting.as_mut().expect("queued");
        let got = match self.deadline {
            Some(d) => {
                tokio::select! {
                    biased;
                    got = &mut w.rx => got,
                    _ = tokio::time::sleep_until(d.into()) => {
                        self.exit(QueueOutcome::DeadlineExceeded);
                        return Err(Error::DeadlineExceeded);
                    }
                }
            }
            None => (&mut w.rx).await,
        };
        let since = self.waiting.take().expect("queued").since;
        match got {
            Ok(Handoff::Failed(error)) => {
                self.report(QueueOutcome::ConnectError, since.elapsed());
                Err(error)
            }
            Ok(h) => {
                let outcome = match h {
                    Handoff::Conn(_) => QueueOutcome::IdleConnection,
                    _ => QueueOutcome::NewConnection,
                };
                self.report(outcome, since.elapsed());
                Ok(h)
            }
            Err(_) => {
                self.report(QueueOutcome::PoolClosed, since.elapsed());
                Err(Error::PoolClosed)
            }
        }
    }
}

impl<O: Observer> Drop for Queued<'_, O> {
    fn drop(&mut self) {
        if self.waiting.is_some() {
            let outcome = match drop_error(self.deadline) {
                Error::DeadlineExceeded => QueueOutcome::DeadlineExceeded,
                _ => QueueOutcome::Cancelled,
            };
            self.exit(outcome);
        }
    }
}

/// A dial slot counted by the pool; freed if the dial fails or is dropped.
struct DialSlot<'a, O: Observer> {
    inner: &'a Inner<O>,
    origin: &'a Origin,
    armed: bool,
}

impl<O: Observer> DialSlot<'_, O> {
    fn succeeded(mut self) {
        self.armed = false;
        self.inner
            .pool
            .dial_finished(&self.inner.hooks, self.origin, true);
    }

    /// The dial failed with `error`: requests queued behind it may fail with it too.
    fn failed(mut self, error: &Error) {
        self.armed = false;
        self.inner
            .pool
            .dial_failed(&self.inner.hooks, self.origin, error);
    }
}

impl<O: Observer> Drop for DialSlot<'_, O> {
    fn drop(&mut self) {
        if self.armed {
            self.inner
                .pool
                .dial_finished(&self.inner.hooks, self.origin, false);
        }
    }
}

fn origin_of(uri: &Uri) -> Result<Origin, Error> {
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(_) => return Err(Error::InvalidUri("scheme must be http or https")),
        None => return Err(Error::InvalidUri("uri must be absolute")),
    };
    let authority = uri
        .authority()
        .ok_or(Error::InvalidUri("uri has no host"))?
        .clone();
    if authority.host().is_empty() {
        return Err(Error::InvalidUri("uri has no host"));
    }
    Ok(Origin::new(https, authority))
}

/// Whether the exchange leaves the connection open for another request.
fn keeps_alive(req_close: bool, res: &Response<Incoming>) -> bool {
    let close = |v: &HeaderValue| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    };
    let keep_alive = |v: &HeaderValue| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
        })
    };
    let conn = res.headers().get(CONNECTION);
    !req_close
        && !conn.is_some_and(close)
        && (res.version() != Version::HTTP_10 || conn.is_some_and(keep_alive))
}

fn clone_request(req: &Request<ReqBody>, body: &Bytes) -> Request<ReqBody> {
    let mut r = Request::new(ReqBody::new(body.clone()));
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

impl<O: Observer> Client<O> {
    /// A GET of `uri`.
    pub async fn get(&self, uri: Uri) -> Result<Response<Body>, Error> {
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = uri;
        self.send(req).await
    }

    /// Sends a request (absolute URI) with the client's default deadline, and returns the
    /// response once its head has arrived; read the [`Body`] to finish the request.
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<Body>, Error> {
        self.send_with_deadline(req, None).await
    }

    /// Like [`send`](Self::send), with an explicit deadline for getting the response head
    /// (`None`: the client's default timeout, if any).
    pub async fn send_with_deadline(
        &self,
        req: Request<Bytes>,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, Error> {
        let inner = &*self.inner;
        let (mut parts, body) = req.into_parts();
        let origin = origin_of(&parts.uri)?;
        let deadline = deadline.or_else(|| inner.timeout.map(|t| Instant::now() + t));
        let id = RequestId(inner.next_request.fetch_add(1, Ordering::Relaxed) + 1);
        let start = inner.hooks.now();
        if let Some(at) = start {
            inner.hooks.observer.request_start(&ev!(RequestStart {
                at,
                ids: Ids {
                    request: id,
                    connection: None,
                    attempt: 1
                },
                origin: &origin,
                method: &parts.method,
                uri: &parts.uri,
            }));
        }
        // The request goes out in origin form; the absolute URI stays in the context.
        let origin_form = match parts.uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        let uri = std::mem::replace(&mut parts.uri, origin_form);
        if !parts.headers.contains_key(HOST) {
            match HeaderValue::from_str(origin.authority().as_str()) {
                Ok(v) => {
                    parts.headers.insert(HOST, v);
                }
                Err(_) => return Err(Error::InvalidUri("host is not a valid header value")),
            }
        }
        let expect_continue = !body.is_empty()
            && parts
                .headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let mut active = Active {
            inner,
            ctx: Some(ReqCtx {
                id,
                attempt: 1,
                conn: None,
                method: parts.method.clone(),
                uri,
                origin,
                deadline,
                timeline: Timeline {
                    start,
                    ..Timeline::default()
                },
                status: None,
                version: None,
                request_bytes: body.len() as u64,
                response_bytes: 0,
                local: None,
                peer: None,
                reused: false,
                expect_continue,
                first_checkout: true,
            }),
        };
        let req = Request::from_parts(parts, ReqBody::new(body.clone()));
        let ctx = active.ctx.as_mut().expect("set above");
        let result = match deadline {
            Some(d) => {
                match tokio::time::timeout_at(d.into(), self.exchange(ctx, req, &body)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::DeadlineExceeded),
                }
            }
            None => self.exchange(ctx, req, &body).await,
        };
        let mut ctx = active.ctx.take().expect("set above");
        match result {
            Ok((res, conn, reusable)) => {
                let (head, incoming) = res.into_parts();
                let mut body = Body {
                    inner: incoming,
                    state: Some(Finish {
                        client: self.inner.clone(),
                        conn,
                        ctx,
                        reusable,
                    }),
                };
                if http_body::Body::is_end_stream(&body.inner) {
                    body.finish(None);
                }
                Ok(Response::from_parts(head, body))
            }
            Err(error) => {
                if let Some(at) = inner.hooks.now() {
                    ctx.timeline.end = Some(at);
                    inner.hooks.observer.request_failed(&ev!(RequestFailed {
                        at,
                        ids: ctx.ids(),
                        error: &error,
                        summary: ctx.summary(),
                    }));
                }
                Err(error)
            }
        }
    }

    /// Gets a connection and sends, retrying once on a reused connection found dead.
    async fn exchange(
        &self,
        ctx: &mut ReqCtx,
        mut req: Request<ReqBody>,
        body: &Bytes,
    ) -> Result<(Response<Incoming>, Connection, bool), Error> {
        let inner = &*self.inner;
        let hooks = &inner.hooks;
        let req_close = req
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let origin = ctx.origin.clone();
        // Dead idle connections found at `ready` are skipped; bounded by the idle list.
        let mut stale_skips = 0u32;
        loop {
            ctx.conn = None;
            let mut lease = Lease {
                inner,
                origin: &origin,
                conn: Some(self.acquire(ctx).await?),
            };
            ctx.conn = Some(lease.conn().id);
            ctx.local = Some(lease.conn().local);
            ctx.peer = Some(lease.conn().peer);
            let reused = lease.conn().requests > 0;
            ctx.reused = reused;
            if let Err(e) = lease.conn().tx.ready().await {
                lease.give_back(Reuse::Dead);
                stale_skips += 1;
                if reused && stale_skips <= 16 {
                    continue;
                }
                return Err(Error::Http(HttpError(e)));
            }
            let conn = lease.conn();
            conn.requests += 1;
            let copy =
                (inner.retry && reused && ctx.attempt < MAX_ATTEMPTS && ctx.method.is_idempotent())
                    .then(|| clone_request(&req, body));
            let ids = ctx.ids();
            // One allocation, only for requests that wait for `100 Continue`.
            let gate = ctx.expect_continue.then(|| Arc::new(Gate::default()));
            // The body tells the tap when hyper took it (a bodiless request is armed as such).
            let body_tap = if req.body().len() > 0 {
                conn.tap.clone()
            } else {
                None
            };
            req.body_mut().attach(body_tap, gate.clone());
            if hooks.informational || gate.is_some() {
                let hooks = inner.hooks.clone();
                let gate = gate.clone();
                hyper::ext::on_informational(&mut req, move |res| {
                    if hooks.informational {
                        hooks.observer.informational(&ev!(Informational {
                            at: Instant::now(),
                            ids,
                            status: res.status(),
                        }));
                    }
                    if let (Some(gate), StatusCode::CONTINUE) = (&gate, res.status()) {
                        gate.open(&hooks, ids, ContinueOutcome::Continue);
                    }
                });
            }
            // The tap moves to the attempt (no reference count touched) and comes back when
            // it is disarmed; a connection whose attempt is dropped is closed anyway.
            let armed = Armed {
                hooks,
                tap: conn.tap.take(),
                gate: gate.clone(),
                ids,
            };
            if let Some(tap) = &armed.tap {
                tap.arm(ids, req.body().len(), gate.clone());
            }
            let send = conn.tx.try_send_request(req);
            let sent = match &gate {
                None => send.await,
                Some(g) => {
                    tokio::pin!(send);
                    let timer = tokio::time::sleep(inner.expect_continue_timeout);
                    tokio::pin!(timer);
                    tokio::select! {
                        biased;
                        r = &mut send => r,
                        _ = &mut timer => {
                            g.open(hooks, ids, ContinueOutcome::Timeout);
                            send.await
                        }
                    }
                }
            };
            let (moments, tap) = armed.disarm();
            lease.conn().tap = tap;
            ctx.timeline.headers_written = moments.headers_written;
            ctx.timeline.body_written = moments.body_written;
            ctx.timeline.first_byte = moments.first_byte;
            match sent {
                Ok(res) => {
                    let mut reusable = keeps_alive(req_close, &res);
                    // A final answer before `100 Continue`: the body still goes (hyper's state
                    // stays consistent), but the connection is not trusted again.
                    if gate
                        .as_ref()
                        .is_some_and(|g| g.open(hooks, ids, ContinueOutcome::FinalResponse))
                    {
                        reusable = false;
                    }
                    if let Some(at) = hooks.now() {
                        ctx.timeline.response_headers = Some(at);
                        hooks.observer.response_headers(&ev!(ResponseHeaders {
                            at,
                            ids,
                            status: res.status(),
                            version: res.version(),
                        }));
                    }
                    ctx.status = Some(res.status());
                    ctx.version = Some(res.version());
                    return Ok((res, lease.take(), reusable));
                }
                Err(mut e) => {
                    if let Some(g) = &gate {
                        g.open(hooks, ids, ContinueOutcome::Failed);
                    }
                    let unsent = e.take_message();
                    let err = e.into_error();
                    let dead = unsent.is_some() || is_dead_connection(&err);
                    lease.give_back(if dead { Reuse::Dead } else { Reuse::No });
                    let again = if reused && dead && ctx.attempt < MAX_ATTEMPTS && inner.retry {
                        unsent.or(copy)
                    } else {
                        None
                    };
                    let error = Error::Http(HttpError(err));
                    match again {
                        Some(r) => {
                            if hooks.on() {
                                hooks.observer.request_retry(&ev!(RequestRetry {
                                    at: Instant::now(),
                                    ids: ctx.ids(),
                                    error: &error,
                                }));
                            }
                            ctx.attempt += 1;
                            req = r;
                        }
                        None => return Err(error),
                    }
                }
            }
        }
    }

    /// Takes a connection from the pool: idle, handed over after queueing, or dialled.
    async fn acquire(&self, ctx: &mut ReqCtx) -> Result<Connection, Error> {
        let inner = &*self.inner;
        let hooks = &inner.hooks;
        let origin = &ctx.origin.clone();
        let asked = if std::mem::take(&mut ctx.first_checkout) {
            ctx.timeline.start
        } else {
            hooks.now()
        };
        if let Some(at) = asked {
            hooks.observer.get_conn(&ev!(GetConn {
                at,
                ids: ctx.ids(),
                origin
            }));
        }
        let (conn, how, idle_time) = match inner.pool.checkout(hooks, origin, ctx.ids(), asked) {
            Checkout::Closed => return Err(Error::PoolClosed),
            Checkout::Idle(conn, idle_time) => (conn, ConnOrigin::Idle, idle_time),
            Checkout::Dial => (
                self.dial(
                    ctx,
                    DialSlot {
                        inner,
                        origin,
                        armed: true,
                    },
                )
                .await?,
                ConnOrigin::Dialled,
                None,
            ),
            Checkout::Wait(waiting) => {
                let since = hooks.now();
                let mut q = Queued {
                    inner,
                    origin,
                    ids: ctx.ids(),
                    deadline: ctx.deadline,
                    waiting: Some(waiting),
                };
                let handoff = q.wait().await;
                if let (Some(s), Some(e)) = (since, hooks.now()) {
                    ctx.timeline.queue = Some((s, e));
                }
                match handoff? {
                    Handoff::Conn(conn) => (conn, ConnOrigin::HandedOver, None),
                    Handoff::Failed(e) => return Err(e),
                    Handoff::Slot => (
                        self.dial(
                            ctx,
                            DialSlot {
                                inner,
                                origin,
                                armed: true,
                            },
                        )
                        .await?,
                        ConnOrigin::Dialled,
                        None,
                    ),
                }
            }
        };
        // Taken from the idle list, the connection was in hand at the moment of the checkout.
        let got = if how == ConnOrigin::Idle {
            asked
        } else {
            hooks.now()
        };
        if let Some(at) = got {
            ctx.timeline.got_conn = Some(at);
            hooks.observer.got_conn(&ev!(GotConn {
                at,
                ids: Ids {
                    connection: Some(conn.id),
                    ..ctx.ids()
                },
                reused: conn.requests > 0,
                was_idle: how == ConnOrigin::Idle,
                idle_time,
                origin: how,
                local: conn.local,
                peer: conn.peer,
            }));
        }
        Ok(conn)
    }

    /// Dials under `slot`, and tells the pool how it went.
    async fn dial(&self, ctx: &mut ReqCtx, slot: DialSlot<'_, O>) -> Result<Connection, Error> {
        match self.open(ctx).await {
            Ok(conn) => {
                slot.succeeded();
                let hooks = &self.inner.hooks;
                if hooks.on() {
                    hooks.observer.connection_open(&ev!(ConnectionOpen {
                        at: conn.opened,
                        connection: conn.id,
                        request: ctx.id,
                        origin: &ctx.origin,
                        local: conn.local,
                        peer: conn.peer,
                    }));
                }
                Ok(conn)
            }
            Err(e) => {
                slot.failed(&e);
                Err(e)
            }
        }
    }

    /// Resolves, connects (each address in turn), runs TLS, and starts the connection task.
    async fn open(&self, ctx: &mut ReqCtx) -> Result<Connection, Error> {
        let inner = &*self.inner;
        let hooks = &inner.hooks;
        let ids = ctx.ids();
        let deadline = ctx.deadline;
        let origin = &ctx.origin;
        let host = origin.host();
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, origin.port())],
            Err(_) => {
                let start = hooks.now();
                if let Some(at) = start {
                    hooks.observer.dns_start(&ev!(DnsStart { at, ids, host }));
                }
                let guard = OnDrop(Some(|| {
                    if hooks.on() {
                        let e = drop_error(deadline);
                        hooks.observer.dns_done(&ev!(DnsDone {
                            at: Instant::now(),
                            ids,
                            addrs: &[],
                            error: Some(&e)
                        }));
                    }
                }));
                let r = inner.resolver.resolve(host, origin.port()).await;
                guard.defuse();
                let r = r.and_then(|a| {
                    if a.is_empty() {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no addresses",
                        ))
                    } else {
                        Ok(a)
                    }
                });
                if let Some(at) = hooks.now() {
                    ctx.timeline.dns = start.map(|s| (s, at));
                    let (addrs, error) = match &r {
                        Ok(a) => (&a[..], None),
                        Err(e) => (
                            &[][..],
                            Some(Error::Dns(std::io::Error::new(e.kind(), e.to_string()))),
                        ),
                    };
                    hooks.observer.dns_done(&ev!(DnsDone {
                        at,
                        ids,
                        addrs,
                        error: error.as_ref()
                    }));
                }
                r.map_err(Error::Dns)?
            }
        };
        let mut last_err = None;
        let mut stream = None;
        let mut first_start = None;
        for addr in addrs {
            let start = hooks.now();
            first_start = first_start.or(start);
            if let Some(at) = start {
                hooks
                    .observer
                    .connect_start(&ev!(ConnectStart { at, ids, addr }));
            }
            let guard = OnDrop(Some(|| {
                if hooks.on() {
                    let e = drop_error(deadline);
                    hooks.observer.connect_done(&ev!(ConnectDone {
                        at: Instant::now(),
                        ids,
                        addr,
                        local: None,
                        error: Some(&e),
                    }));
                }
            }));
            let r = match inner.connect_timeout {
                Some(t) => match tokio::time::timeout(t, TcpStream::connect(addr)).await {
                    Ok(r) => r.map_err(Error::Connect),
                    Err(_) => Err(Error::ConnectTimeout),
                },
                None => TcpStream::connect(addr).await.map_err(Error::Connect),
            };
            guard.defuse();
            let r = r.and_then(|s| {
                let _ = s.set_nodelay(true);
                let local = s.local_addr().map_err(Error::Connect)?;
                Ok((s, local))
            });
            if let Some(at) = hooks.now() {
                let (local, error) = match &r {
                    Ok((_, l)) => (Some(*l), None),
                    Err(e) => (None, Some(e)),
                };
                hooks.observer.connect_done(&ev!(ConnectDone {
                    at,
                    ids,
                    addr,
                    local,
                    error
                }));
                if r.is_ok() {
                    ctx.timeline.connect = first_start.map(|s| (s, at));
                }
            }
            match r {
                Ok((s, local)) => {
                    stream = Some((s, local, addr));
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((tcp, local, peer)) = stream else {
            return Err(last_err.unwrap_or(Error::Connect(std::io::Error::other(
                "no address to connect to",
            ))));
        };
        let stream = if origin.is_https() {
            let start = hooks.now();
            if let Some(at) = start {
                hooks.observer.tls_start(&ev!(TlsStart {
                    at,
                    ids,
                    server_name: host
                }));
            }
            let guard = OnDrop(Some(|| {
                if hooks.on() {
                    let e = drop_error(deadline);
                    hooks.observer.tls_done(&ev!(TlsDone {
                        at: Instant::now(),
                        ids,
                        version: None,
                        alpn: None,
                        cipher: None,
                        error: Some(&e),
                    }));
                }
            }));
            let r = match rustls::pki_types::ServerName::try_from(host.to_owned()) {
                Ok(name) => inner.tls.connect(name, tcp).await.map_err(Error::Tls),
                Err(e) => Err(Error::Tls(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e,
                ))),
            };
            guard.defuse();
            if let Some(at) = hooks.now() {
                ctx.timeline.tls = start.map(|s| (s, at));
                let session = r.as_ref().ok().map(|s| s.get_ref().1);
                hooks.observer.tls_done(&ev!(TlsDone {
                    at,
                    ids,
                    version: session
                        .and_then(|s| s.protocol_version())
                        .and_then(|v| v.as_str()),
                    alpn: session.and_then(|s| s.alpn_protocol()),
                    cipher: session
                        .and_then(|s| s.negotiated_cipher_suite())
                        .and_then(|c| c.suite().as_str()),
                    error: r.as_ref().err(),
                }));
            }
            Stream::Tls(Box::new(r?))
        } else {
            Stream::Plain(tcp)
        };
        let id = ConnectionId(inner.next_connection.fetch_add(1, Ordering::Relaxed) + 1);
        let weak: Weak<Inner<O>> = Arc::downgrade(&self.inner);
        let key = origin.clone();
        let gone = move || {
            if let Some(inner) = weak.upgrade() {
                inner.pool.connection_gone(&inner.hooks, &key, id);
            }
        };
        // Only an observing client wraps the socket; `O::ENABLED` is a constant, so a `Noop`
        // client does not even compile the wrapper in.
        let (tx, tap) = if O::ENABLED && hooks.on() {
            let tap = Arc::new(Tap::new(Instant::now()));
            let io = Tapped::new(stream, tap.clone(), Arc::downgrade(hooks));
            let (tx, driver) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| Error::Http(HttpError(e)))?;
            tokio::spawn(async move {
                let _ = driver.await;
                gone();
            });
            (tx, Some(tap))
        } else {
            let (tx, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| Error::Http(HttpError(e)))?;
            tokio::spawn(async move {
                let _ = driver.await;
                gone();
            });
            (tx, None)
        };
        Ok(Connection {
            id,
            tx,
            tap,
            opened: Instant::now(),
            requests: 0,
            local,
            peer,
            idle_since: None,
        })
    }

    /// Counts of the pool now, per host and in total, with cumulative waits and closes.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Closes the pool now: idle connections close, queued requests fail with
    /// [`Error::PoolClosed`], new requests too, and connections in use close when released.
    pub fn close(&self) {
        self.inner.pool.close(&self.inner.hooks);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.pool.is_closed()
    }

    /// The installed observer.
    pub fn observer(&self) -> &O {
        &self.inner.hooks.observer
    }
}

/// What the response body needs to finish the request.
struct Finish {
    client: Arc<dyn Finisher>,
    conn: Connection,
    ctx: ReqCtx,
    reusable: bool,
}

/// The client, type-erased, as the response body sees it.
trait Finisher: Send + Sync {
    fn finish(&self, conn: Connection, ctx: ReqCtx, reusable: bool, error: Option<&Error>);
}

impl<O: Observer> Finisher for Inner<O> {
    fn finish(&self, conn: Connection, mut ctx: ReqCtx, reusable: bool, error: Option<&Error>) {
        let hooks = &self.hooks;
        // Body end, the connection's return and the request's end are one instant: one read.
        let end = hooks.now();
        if let Some(at) = end {
            ctx.timeline.end = Some(at);
            hooks.observer.response_body_end(&ev!(ResponseBodyEnd {
                at,
                ids: ctx.ids(),
                bytes: ctx.response_bytes,
                error,
            }));
        }
        self.pool.release(
            hooks,
            &ctx.origin,
            conn,
            if reusable && error.is_none() {
                Reuse::Yes
            } else {
                Reuse::No
            },
            end,
        );
        if let Some(at) = end {
            match error {
                None => hooks.observer.request_end(&ev!(RequestEnd {
                    at,
                    ids: ctx.ids(),
                    summary: ctx.summary()
                })),
                Some(error) => hooks.observer.request_failed(&ev!(RequestFailed {
                    at,
                    ids: ctx.ids(),
                    error,
                    summary: ctx.summary(),
                })),
            }
        }
    }
}

/// A response body. The request ends (`request_end`) when it has been read to its end; if
/// it is dropped before, the request fails as cancelled and its connection is closed.
pub struct Body {
    inner: Incoming,
    state: Option<Finish>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("done", &self.state.is_none())
            .finish()
    }
}

impl Body {
    fn finish(&mut self, error: Option<&Error>) {
        if let Some(f) = self.state.take() {
            f.client.finish(f.conn, f.ctx, f.reusable, error);
        }
    }

    /// Reads the whole body.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut first: Option<Bytes> = None;
        let mut rest: Option<bytes::BytesMut> = None;
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut self).poll_frame_inner(cx)).await {
            if let Ok(data) = frame?.into_data() {
                match (&mut first, &mut rest) {
                    (None, _) => first = Some(data),
                    (Some(f), None) => {
                        let mut b = bytes::BytesMut::from(&f[..]);
                        b.extend_from_slice(&data);
                        rest = Some(b);
                    }
                    (_, Some(b)) => b.extend_from_slice(&data),
                }
            }
        }
        Ok(match rest {
            Some(b) => b.freeze(),
            None => first.unwrap_or_default(),
        })
    }

    fn poll_frame_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.state.is_none() && http_body::Body::is_end_stream(&self.inner) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), &mut self.state) {
                    f.ctx.response_bytes += data.len() as u64;
                }
                if http_body::Body::is_end_stream(&self.inner) {
                    self.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let error = Error::Http(HttpError(e));
                self.finish(Some(&error));
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.finish(None);
                Poll::Ready(None)
            }
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.get_mut().poll_frame_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.state.is_some() {
            let error = if http_body::Body::is_end_stream(&self.inner) {
                None
            } else {
                Some(Error::Cancelled)
            };
            self.finish(error.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_need_absolute_http_uris() {
        assert!(origin_of(&"/x".parse().unwrap()).is_err());
        assert!(origin_of(&"ftp://h/".parse().unwrap()).is_err());
        let o = origin_of(&"https://h:8443/x?q".parse().unwrap()).unwrap();
        assert_eq!((o.host(), o.port(), o.is_https()), ("h", 8443, true));
    }
}
