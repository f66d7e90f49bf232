//! The observer: what a [`Client`](crate::Client) reports about every step of every request.
//!
//! Modelled on tracing-core's `Subscriber` and OkHttp's `EventListener`: every method of
//! [`Observer`] defaults to doing nothing, the client's default observer is the zero-sized
//! [`Noop`] whose [`Observer::ENABLED`] is `false`, and interest is asked once, when the
//! client is built ([`Observer::interest`]). A client without an observer therefore pays one
//! branch on a constant per event, which the compiler removes: no clock read, no allocation.
//!
//! Observers compose: a pair `(A, B)` is an observer that calls `A` then `B`.
//!
//! Event names come in `_start` / `_end` (or `_done`) / `_failed` sets, and every start gets
//! exactly one end, also when the request future or the response body is dropped half-way
//! (the end then carries [`Error::Cancelled`] or [`Error::DeadlineExceeded`]).
//!
//! Methods run inline on the task that drives the request, except `headers_written`,
//! `body_written`, `first_response_byte`, `continue_wait_*` and `informational`, which run on
//! the connection's task at the moment the socket sees them; pool events run while the
//! pool's lock is held (so their snapshots are exact). Keep them short, and never call back
//! into the client from inside one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode, Uri, Version};

use crate::pool::Origin;
use crate::Error;

/// Identifies one request of one client (counted from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Identifies one connection of one client (counted from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Which request, which attempt and (once known) which connection an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    /// The request.
    pub request: RequestId,
    /// The connection, once the attempt has one.
    pub connection: Option<ConnectionId>,
    /// The attempt, from 1; a retry on a new connection increments it.
    pub attempt: u32,
}

/// What an observer wants, asked once when the client is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    events: bool,
    informational: bool,
}

impl Interest {
    /// No events at all: the client behaves as with [`Noop`].
    pub const NEVER: Interest = Interest {
        events: false,
        informational: false,
    };
    /// Every event except [`Observer::informational`].
    pub const ALWAYS: Interest = Interest {
        events: true,
        informational: false,
    };

    /// Also 1xx responses. This costs one allocation per request (hyper's
    /// `on_informational` callback is an `Arc`), so it is opt-in.
    pub const fn with_informational(self) -> Interest {
        Interest {
            events: true,
            informational: true,
        }
    }

    /// Whether any event is wanted.
    pub const fn is_enabled(self) -> bool {
        self.events
    }

    /// Whether 1xx responses are wanted.
    pub const fn wants_informational(self) -> bool {
        self.informational
    }

    /// Both interests together.
    pub const fn or(self, other: Interest) -> Interest {
        Interest {
            events: self.events || other.events,
            informational: self.informational || other.informational,
        }
    }
}

/// Why a request waits for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueReason {
    /// The host has `max_connections_per_host` connections open or being dialled.
    PerHostLimit,
    /// The client has `max_connections` open or being dialled, none of them idle.
    TotalLimit,
    /// The host has `max_dials_per_host` dials in progress.
    DialInProgress,
}

/// How a wait in the queue ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueOutcome {
    /// Another request handed over its connection.
    IdleConnection,
    /// A slot was freed: the request dials a new connection.
    NewConnection,
    /// The request future was dropped.
    Cancelled,
    /// The request's deadline passed.
    DeadlineExceeded,
    /// The pool was closed (the client was dropped).
    PoolClosed,
    /// The dial this request waited behind failed to connect (DNS, TCP or TLS) and the host
    /// has no other connection open or being dialled: the request fails with that error
    /// instead of dialling again itself.
    ConnectError,
}

/// How a wait for `100 Continue` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContinueOutcome {
    /// `100 Continue` arrived: the body is sent.
    Continue,
    /// The server said nothing within `expect_continue_timeout`: the body is sent anyway
    /// (as curl does).
    Timeout,
    /// A final response arrived first: the body is still sent (so the connection stays in a
    /// known state) but the connection is not reused.
    FinalResponse,
    /// The exchange failed before either.
    Failed,
    /// The request future was dropped (or its deadline passed) while waiting.
    Cancelled,
}

/// Where a connection given to a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnOrigin {
    /// Dialled for this request.
    Dialled,
    /// Taken from the idle list.
    Idle,
    /// Handed over by the request that used it before, while this one was queued.
    HandedOver,
}

/// Why a connection left the idle list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdleOutReason {
    /// Taken by a request.
    Reused,
    /// Idle longer than `idle_timeout`, or older than `max_lifetime`.
    Expired,
    /// Closed to make room for a connection to another host under `max_connections`.
    Evicted,
    /// The server closed it while it was idle.
    ClosedByPeer,
    /// The pool was closed.
    PoolClosed,
}

/// Why a connection was not put back on the idle list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutIdleRefusal {
    /// The host already has `max_idle_per_host` idle connections.
    MaxIdlePerHost,
    /// The client already has `max_idle` idle connections.
    MaxIdle,
    /// The exchange left the connection unusable (`Connection: close`, a response body not
    /// read to its end, an error).
    NotReusable,
    /// Older than `max_lifetime`.
    Expired,
}

/// Which pool limit was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// `max_connections_per_host`.
    ConnectionsPerHost,
    /// `max_connections`.
    Connections,
    /// `max_dials_per_host`.
    DialsPerHost,
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server closed it (seen while idle, or when the next request failed on it).
    ClosedByPeer,
    /// Idle longer than `idle_timeout`.
    IdleTimeout,
    /// Older than `max_lifetime`.
    MaxLifetime,
    /// The exchange left it unusable (see [`PutIdleRefusal::NotReusable`]).
    NotReusable,
    /// Closed to make room under `max_connections`.
    Evicted,
    /// The idle lists were full.
    IdleFull,
    /// The pool was closed.
    PoolClosed,
}

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 7] = [
        CloseReason::ClosedByPeer,
        CloseReason::IdleTimeout,
        CloseReason::MaxLifetime,
        CloseReason::NotReusable,
        CloseReason::Evicted,
        CloseReason::IdleFull,
        CloseReason::PoolClosed,
    ];

    /// A dense index, for arrays of counters.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClosedByPeer => "closed_by_peer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::NotReusable => "not_reusable",
            CloseReason::Evicted => "evicted",
            CloseReason::IdleFull => "idle_full",
            CloseReason::PoolClosed => "pool_closed",
        }
    }
}

/// Connections, by state, for one host or for the whole client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections carrying a request.
    pub active: u32,
    /// Connections on the idle list.
    pub idle: u32,
    /// Connections being dialled.
    pub connecting: u32,
    /// Requests queued for a connection.
    pub waiting: u32,
}

/// The pool's counts at the moment of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// The event's host.
    pub host: Counts,
    /// All hosts.
    pub total: Counts,
}

/// The moments of one request, filled in as it goes (only while an observer is enabled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// `request_start`.
    pub start: Option<Instant>,
    /// The queue was entered / left (the last wait if several).
    pub queue: Option<(Instant, Instant)>,
    /// Name resolution started / finished.
    pub dns: Option<(Instant, Instant)>,
    /// The first TCP connect started / the successful one finished.
    pub connect: Option<(Instant, Instant)>,
    /// The TLS handshake started / finished.
    pub tls: Option<(Instant, Instant)>,
    /// A connection was in hand.
    pub got_conn: Option<Instant>,
    /// The first write of the request head returned.
    pub headers_written: Option<Instant>,
    /// The whole request was written.
    pub body_written: Option<Instant>,
    /// The first read of the response returned bytes.
    pub first_byte: Option<Instant>,
    /// The response head was parsed.
    pub response_headers: Option<Instant>,
    /// The response body ended (or failed).
    pub end: Option<Instant>,
}

/// Facts about the request that `request_end` / `request_failed` pass along, so that an
/// observer needs no state of its own to report a whole exchange.
#[derive(Clone, Copy, Debug)]
pub struct Summary<'a> {
    /// The scheme, host and port.
    pub origin: &'a Origin,
    /// The method.
    pub method: &'a Method,
    /// The absolute URI as given (observers must not export its query without being asked).
    pub uri: &'a Uri,
    /// The moments of the request.
    pub timeline: &'a Timeline,
    /// The response status, when a response head arrived.
    pub status: Option<StatusCode>,
    /// The response's HTTP version, when a response head arrived.
    pub version: Option<Version>,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes read.
    pub response_bytes: u64,
    /// The connection's local address, when it had one.
    pub local: Option<SocketAddr>,
    /// The connection's peer address, when it had one.
    pub peer: Option<SocketAddr>,
    /// Whether the connection had carried a request before.
    pub reused: bool,
}

macro_rules! events {
    ($( $(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            $(#[$m])*
            #[derive(Clone, Copy, Debug)]
            #[non_exhaustive]
            pub struct $name<'a> {
                /// When it happened.
                pub at: Instant,
                $( $(#[$fm])* pub $field: $ty, )*
                #[doc(hidden)]
                pub _life: std::marker::PhantomData<&'a ()>,
            }
        )*
    };
}

events! {
    /// A request started (the future was first polled).
    RequestStart { /// Ids.
        ids: Ids, /// The scheme, host and port.
        origin: &'a Origin, /// The method.
        method: &'a Method, /// The absolute URI.
        uri: &'a Uri }
    /// A request ended: the response body was read to its end.
    RequestEnd { /// Ids.
        ids: Ids, /// The whole exchange.
        summary: Summary<'a> }
    /// A request failed, was cancelled or ran out of time.
    RequestFailed { /// Ids.
        ids: Ids, /// What went wrong.
        error: &'a Error, /// What was done so far.
        summary: Summary<'a> }
    /// An attempt failed on a reused connection and the request is retried on another one.
    RequestRetry { /// Ids of the failed attempt (the next one is `attempt + 1`).
        ids: Ids, /// The failure.
        error: &'a Error }
    /// The first write of the request head to the socket returned (emitted then, from the
    /// connection's task).
    HeadersWritten { /// Ids.
        ids: Ids }
    /// The whole request, body included, has been written to the socket (emitted then, from
    /// the connection's task; for a request without body, right after `headers_written`).
    BodyWritten { /// Ids.
        ids: Ids, /// Body bytes.
        bytes: u64 }
    /// The head of a request with `Expect: 100-continue` was written and its body is held
    /// back until `100 Continue` arrives or `expect_continue_timeout` passes.
    ContinueWaitStart { /// Ids.
        ids: Ids }
    /// The wait for `100 Continue` ended (exactly once per [`ContinueWaitStart`]).
    ContinueWaitEnd { /// Ids.
        ids: Ids, /// How.
        outcome: ContinueOutcome, /// Time spent waiting.
        waited: Duration }
    /// A 1xx response arrived (only with [`Interest::with_informational`]).
    Informational { /// Ids.
        ids: Ids, /// Its status.
        status: StatusCode }
    /// The first response bytes (of a 1xx or of the final response) were read from the
    /// socket (emitted then, from the connection's task).
    FirstResponseByte { /// Ids.
        ids: Ids }
    /// The response head was parsed.
    ResponseHeaders { /// Ids.
        ids: Ids, /// Status.
        status: StatusCode, /// Version.
        version: Version }
    /// The response body ended, was dropped, or failed.
    ResponseBodyEnd { /// Ids.
        ids: Ids, /// Bytes read.
        bytes: u64, /// Why it ended early.
        error: Option<&'a Error> }
    /// The attempt asks the pool for a connection.
    GetConn { /// Ids.
        ids: Ids, /// The host.
        origin: &'a Origin }
    /// The attempt queues for a connection.
    QueueEnter { /// Ids.
        ids: Ids, /// The host.
        origin: &'a Origin, /// Why.
        reason: QueueReason, /// The pool at that moment (including this request).
        snapshot: PoolSnapshot }
    /// The attempt leaves the queue.
    QueueExit { /// Ids.
        ids: Ids, /// The host.
        origin: &'a Origin, /// How.
        outcome: QueueOutcome, /// Time spent in the queue.
        waited: Duration }
    /// The attempt has a connection.
    GotConn { /// Ids (with the connection).
        ids: Ids, /// Whether the connection had carried a request before.
        reused: bool, /// Whether it came from the idle list.
        was_idle: bool, /// How long it was idle.
        idle_time: Option<Duration>, /// Where it came from.
        origin: ConnOrigin, /// Local address.
        local: SocketAddr, /// Peer address.
        peer: SocketAddr }
    /// Name resolution starts (not for IP literals).
    DnsStart { /// Ids.
        ids: Ids, /// The name.
        host: &'a str }
    /// Name resolution finished.
    DnsDone { /// Ids.
        ids: Ids, /// The addresses found.
        addrs: &'a [SocketAddr], /// The failure.
        error: Option<&'a Error> }
    /// A TCP connect to one address starts.
    ConnectStart { /// Ids.
        ids: Ids, /// The address.
        addr: SocketAddr }
    /// A TCP connect to one address finished.
    ConnectDone { /// Ids.
        ids: Ids, /// The address.
        addr: SocketAddr, /// The local address on success.
        local: Option<SocketAddr>, /// The failure.
        error: Option<&'a Error> }
    /// A TLS handshake starts.
    TlsStart { /// Ids.
        ids: Ids, /// The server name sent.
        server_name: &'a str }
    /// A TLS handshake finished.
    TlsDone { /// Ids.
        ids: Ids, /// Protocol version (`"TLSv1_3"`).
        version: Option<&'static str>, /// ALPN protocol agreed.
        alpn: Option<&'a [u8]>, /// Cipher suite.
        cipher: Option<&'static str>, /// The failure.
        error: Option<&'a Error> }
    /// A new connection is ready to carry requests.
    ConnectionOpen { /// The connection.
        connection: ConnectionId, /// The request that dialled it.
        request: RequestId, /// The host.
        origin: &'a Origin, /// Local address.
        local: SocketAddr, /// Peer address.
        peer: SocketAddr }
    /// A connection was put on the idle list.
    IdleIn { /// The connection.
        connection: ConnectionId, /// The host.
        origin: &'a Origin, /// The pool after it.
        snapshot: PoolSnapshot }
    /// A connection left the idle list.
    IdleOut { /// The connection.
        connection: ConnectionId, /// The request that took it, for [`IdleOutReason::Reused`].
        request: Option<RequestId>, /// The host.
        origin: &'a Origin, /// Why.
        reason: IdleOutReason, /// How long it was idle.
        idle_time: Duration }
    /// A connection could not be put on the idle list (it is closed next).
    PutIdleRefused { /// The connection.
        connection: ConnectionId, /// The host.
        origin: &'a Origin, /// Why.
        reason: PutIdleRefusal }
    /// A request hit a pool limit (it queues next).
    LimitHit { /// Ids.
        ids: Ids, /// The host.
        origin: &'a Origin, /// Which limit.
        limit: Limit, /// The pool at that moment.
        snapshot: PoolSnapshot }
    /// A connection was closed by the pool or found closed.
    ConnectionClosed { /// The connection.
        connection: ConnectionId, /// The host.
        origin: &'a Origin, /// Why.
        reason: CloseReason, /// Time since it was opened.
        lifetime: Duration, /// Requests it carried.
        requests: u64 }
}

macro_rules! observer_trait {
    ($( $(#[$m:meta])* $method:ident($ev:ident); )*) => {
        /// Receives the events of a [`Client`](crate::Client). Every method does nothing
        /// unless overridden.
        pub trait Observer: Send + Sync + 'static {
            /// `false` only for observers that never want anything ([`Noop`]): the client then
            /// compiles every event away.
            const ENABLED: bool = true;

            /// What this observer wants; asked once, when the client is built.
            fn interest(&self) -> Interest {
                Interest::ALWAYS
            }

            $( $(#[$m])* #[inline] fn $method(&self, event: &$ev<'_>) { let _ = event; } )*
        }

        impl<A: Observer, B: Observer> Observer for (A, B) {
            const ENABLED: bool = A::ENABLED || B::ENABLED;

            fn interest(&self) -> Interest {
                let a = if A::ENABLED { self.0.interest() } else { Interest::NEVER };
                let b = if B::ENABLED { self.1.interest() } else { Interest::NEVER };
                a.or(b)
            }

            $( #[inline] fn $method(&self, event: &$ev<'_>) {
                if A::ENABLED { self.0.$method(event) }
                if B::ENABLED { self.1.$method(event) }
            } )*
        }

        impl<T: Observer> Observer for std::sync::Arc<T> {
            const ENABLED: bool = T::ENABLED;

            fn interest(&self) -> Interest {
                (**self).interest()
            }

            $( #[inline] fn $method(&self, event: &$ev<'_>) { (**self).$method(event) } )*
        }
    };
}

observer_trait! {
    /// See [`RequestStart`].
    request_start(RequestStart);
    /// See [`RequestEnd`].
    request_end(RequestEnd);
    /// See [`RequestFailed`].
    request_failed(RequestFailed);
    /// See [`RequestRetry`].
    request_retry(RequestRetry);
    /// See [`HeadersWritten`].
    headers_written(HeadersWritten);
    /// See [`BodyWritten`].
    body_written(BodyWritten);
    /// See [`ContinueWaitStart`].
    continue_wait_start(ContinueWaitStart);
    /// See [`ContinueWaitEnd`].
    continue_wait_end(ContinueWaitEnd);
    /// See [`Informational`].
    informational(Informational);
    /// See [`FirstResponseByte`].
    first_response_byte(FirstResponseByte);
    /// See [`ResponseHeaders`].
    response_headers(ResponseHeaders);
    /// See [`ResponseBodyEnd`].
    response_body_end(ResponseBodyEnd);
    /// See [`GetConn`].
    get_conn(GetConn);
    /// See [`QueueEnter`].
    queue_enter(QueueEnter);
    /// See [`QueueExit`].
    queue_exit(QueueExit);
    /// See [`GotConn`].
    got_conn(GotConn);
    /// See [`DnsStart`].
    dns_start(DnsStart);
    /// See [`DnsDone`].
    dns_done(DnsDone);
    /// See [`ConnectStart`].
    connect_start(ConnectStart);
    /// See [`ConnectDone`].
    connect_done(ConnectDone);
    /// See [`TlsStart`].
    tls_start(TlsStart);
    /// See [`TlsDone`].
    tls_done(TlsDone);
    /// See [`ConnectionOpen`].
    connection_open(ConnectionOpen);
    /// See [`IdleIn`].
    idle_in(IdleIn);
    /// See [`IdleOut`].
    idle_out(IdleOut);
    /// See [`PutIdleRefused`].
    put_idle_refused(PutIdleRefused);
    /// See [`LimitHit`].
    limit_hit(LimitHit);
    /// See [`ConnectionClosed`].
    connection_closed(ConnectionClosed);
}

/// The observer that observes nothing: zero-sized, and the client's default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl Observer for Noop {
    const ENABLED: bool = false;

    fn interest(&self) -> Interest {
        Interest::NEVER
    }
}

/// Builds an event struct with `at` and a phantom lifetime (crate-internal shorthand).
macro_rules! ev {
    ($name:ident { $($field:ident $(: $val:expr)?),* $(,)? }) => {
        $crate::observer::$name { $($field $(: $val)?,)* _life: std::marker::PhantomData }
    };
}
pub(crate) use ev;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct Count(AtomicU32);
    impl Observer for Count {
        fn headers_written(&self, _: &HeadersWritten<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn noop_is_zero_sized_and_disabled() {
        assert_eq!(std::mem::size_of::<Noop>(), 0);
        const { assert!(!Noop::ENABLED) };
        assert!(!Noop.interest().is_enabled());
        const { assert!(!<(Noop, Noop)>::ENABLED) };
        const { assert!(<(Noop, Count)>::ENABLED) };
    }

    #[test]
    fn a_pair_calls_both_and_merges_interest() {
        let pair = (Count::default(), Count::default());
        let ids = Ids {
            request: RequestId(1),
            connection: None,
            attempt: 1,
        };
        pair.headers_written(&ev!(HeadersWritten {
            at: Instant::now(),
            ids
        }));
        assert_eq!(pair.0 .0.load(Ordering::Relaxed), 1);
        assert_eq!(pair.1 .0.load(Ordering::Relaxed), 1);
        assert!(pair.interest().is_enabled());
        assert!(!pair.interest().wants_informational());
        assert!((Noop, Count::default()).interest().is_enabled());
        assert!(!(Noop, Noop).interest().is_enabled());
    }
}
