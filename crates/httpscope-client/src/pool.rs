//! The connection pool: limits, the queue of requests waiting for a connection, idle lists,
//! expiry and the statistics of [`Client::pool_stats`](crate::Client::pool_stats).
//!
//! The pool owns counts, idle connections and waiters; a connection in use belongs to the
//! request using it, which gives it back with [`Pool::release`]. Every state change happens
//! under one mutex, and pool events are emitted under it so that their snapshots are exact.

use std::collections::VecDeque;

use hashbrown::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::sync::oneshot;

use crate::client::Hooks;
use crate::connection::Connection;
use crate::observer::{
    ev, CloseReason, Counts, IdleOutReason, Ids, Limit, Observer, PoolSnapshot, PutIdleRefusal,
    QueueReason,
};

/// A scheme, host and port: the unit connections are pooled by.
#[derive(Clone)]
pub struct Origin {
    https: bool,
    authority: Authority,
    port: u16,
    /// FNV-1a of the lowercased authority and the scheme, computed once: maps keyed by
    /// origins (the pool's, a metrics recorder's) then hash one word instead of feeding the
    /// authority to their hasher byte by byte, as `Authority`'s own `Hash` does.
    digest: u64,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.authority.as_str(), other.authority.as_str());
        self.digest == other.digest
            && self.https == other.https
            && self.port == other.port
            // Origins of requests made from one parsed URI share its bytes: skip the
            // case-insensitive comparison then.
            && ((a.as_ptr() == b.as_ptr() && a.len() == b.len()) || self.authority == other.authority)
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

impl From<&Origin> for Origin {
    fn from(o: &Origin) -> Self {
        o.clone()
    }
}

impl Origin {
    pub(crate) fn new(https: bool, authority: Authority) -> Self {
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(https);
        for b in authority.as_str().bytes() {
            digest = (digest ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
        }
        Origin {
            https,
            authority,
            port,
            digest,
        }
    }

    /// `"http"` or `"https"`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Whether connections use TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, without brackets for IPv6.
    pub fn host(&self) -> &str {
        let h = self.authority.host();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The port (the scheme's default when the URI has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The authority as written in the URI (`host[:port]`), for the `Host` header.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority)
    }
}

/// The pool's limits.
#[derive(Clone, Debug)]
pub(crate) struct PoolConfig {
    pub(crate) max_per_host: u32,
    pub(crate) max_total: u32,
    pub(crate) max_dials_per_host: u32,
    pub(crate) max_idle_per_host: u32,
    pub(crate) max_idle: u32,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_per_host: u32::MAX,
            max_total: u32::MAX,
            max_dials_per_host: u32::MAX,
            max_idle_per_host: 32,
            max_idle: 256,
            idle_timeout: Some(Duration::from_secs(90)),
            max_lifetime: None,
        }
    }
}

/// Counts and cumulative figures of one host or of the whole pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Connections and waiters now.
    pub now: Counts,
    /// Requests that had to queue, so far.
    pub waits: u64,
    /// Their total time in the queue.
    pub wait_time: Duration,
    /// Connections closed so far, indexed by [`CloseReason::index`].
    pub closes: [u64; CloseReason::ALL.len()],
}

impl HostStats {
    /// Connections closed for `reason` so far.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }
}

/// A snapshot of the pool, from [`Client::pool_stats`](crate::Client::pool_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Hosts that have connections or waiters now (a host with neither is forgotten, its
    /// cumulative figures staying in `total`).
    pub hosts: Vec<(Origin, HostStats)>,
    /// All hosts, including forgotten ones.
    pub total: HostStats,
}

impl PoolStats {
    /// The figures of one host, if it is known now.
    pub fn host(&self, origin: &Origin) -> Option<&HostStats> {
        self.hosts.iter().find(|(o, _)| o == origin).map(|(_, s)| s)
    }
}

/// What a request's end says about its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// The exchange completed and the connection may carry another request.
    Yes,
    /// The exchange left the connection in an unknown state.
    No,
    /// The connection died under the request.
    Dead,
}

/// What a waiting request is given.
pub(crate) enum Handoff {
    /// A connection, already counted as active for the waiter.
    Conn(Connection),
    /// A dial slot, already counted as connecting for the waiter.
    Slot,
    /// The dial the waiter was queued behind failed, and nothing else can serve the host.
    Failed(crate::Error),
}

/// The answer to [`Pool::checkout`].
pub(crate) enum Checkout {
    /// An idle connection (already counted as active) and how long it was idle.
    Idle(Connection, Option<Duration>),
    /// Dial a new connection (already counted as connecting).
    Dial,
    /// Wait for a [`Handoff`].
    Wait(Waiting),
    /// The pool is closed.
    Closed,
}

/// A place in the queue.
pub(crate) struct Waiting {
    pub(crate) id: u64,
    pub(crate) rx: oneshot::Receiver<Handoff>,
    pub(crate) since: Instant,
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<Handoff>,
    since: Instant,
}

#[derive(Default)]
struct Host {
    stats: HostStats,
    /// Oldest first; taken from the back (most recently used first).
    idle: Vec<Connection>,
    waiters: VecDeque<Waiter>,
}

impl Host {
    fn is_unused(&self) -> bool {
        self.stats.now == Counts::default()
    }
}

#[derive(Default)]
struct State {
    hosts: HashMap<Origin, Host>,
    total: HostStats,
    closed: bool,
    next_waiter: u64,
}

fn open(c: &Counts) -> u32 {
    c.active + c.idle + c.connecting
}

impl State {
    fn snapshot(&self, origin: &Origin) -> PoolSnapshot {
        PoolSnapshot {
            host: self
                .hosts
                .get(origin)
                .map(|h| h.stats.now)
                .unwrap_or_default(),
            total: self.total.now,
        }
    }

    fn host(&mut self, origin: &Origin) -> &mut Host {
        // One lookup; the key is cloned (a refcount) only when the host is new.
        self.hosts.entry_ref(origin).or_default()
    }

    fn forget_if_unused(&mut self, origin: &Origin) {
        if self.hosts.get(origin).is_some_and(Host::is_unused) {
            self.hosts.remove(origin);
        }
    }

    /// Applies `f` to the counts of `origin` and of the total.
    fn count(&mut self, origin: &Origin, f: impl Fn(&mut Counts)) {
        f(&mut self.host(origin).stats.now);
        f(&mut self.total.now);
    }
}

/// The pool of one client.
pub(crate) struct Pool {
    config: PoolConfig,
    state: Mutex<State>,
}

impl Pool {
    pub(crate) fn new(config: PoolConfig) -> Self {
        Pool {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in an observer while the lock was held leaves counts that are still
        // consistent (every change is made before events are emitted), so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the pool needs the time for expiry.
    fn needs_clock(&self) -> bool {
        self.config.idle_timeout.is_some() || self.config.max_lifetime.is_some()
    }

    fn now<O: Observer>(&self, hooks: &Hooks<O>) -> Option<Instant> {
        (hooks.on() || self.needs_clock()).then(Instant::now)
    }

    fn too_old(&self, conn: &Connection, now: Option<Instant>) -> bool {
        match (self.config.max_lifetime, now) {
            (Some(max), Some(now)) => now.saturating_duration_since(conn.opened) >= max,
            _ => false,
        }
    }

    /// Finds a connection for a request: an idle one, a permit to dial, or a place in the
    /// queue.
    pub(crate) fn checkout<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        origin: &Origin,
        ids: Ids,
        at: Option<Instant>,
    ) -> Checkout {
        let mut st = self.lock();
        if st.closed {
            return Checkout::Closed;
        }
        // The caller's clock read, when it just made one, serves here too.
        let now = at.or_else(|| self.now(hooks));
        while let Some(mut conn) = st.host(origin).idle.pop() {
            st.count(origin, |c| c.idle -= 1);
            let idle_time = match (now, conn.idle_since) {
                (Some(now), Some(since)) => Some(now.saturating_duration_since(since)),
                _ => None,
            };
            let (out, close) = if conn.tx.is_closed() {
                (IdleOutReason::ClosedByPeer, Some(CloseReason::ClosedByPeer))
            } else if self
                .config
                .idle_timeout
                .zip(idle_time)
                .is_some_and(|(max, t)| t >= max)
            {
                (IdleOutReason::Expired, Some(CloseReason::IdleTimeout))
            } else if self.too_old(&conn, now) {
                (IdleOutReason::Expired, Some(CloseReason::MaxLifetime))
            } else {
                (IdleOutReason::Reused, None)
            };
            if hooks.on() {
                let request = close.is_none().then_some(ids.request);
                hooks.observer.idle_out(&ev!(IdleOut {
                    at: now.unwrap_or_else(Instant::now),
                    connection: conn.id,
                    request,
                    origin,
                    reason: out,
                    idle_time: idle_time.unwrap_or_default(),
                }));
            }
            match close {
                Some(reason) => self.closed(&mut st, hooks, origin, conn, reason, now),
                None => {
                    conn.idle_since = None;
                    st.count(origin, |c| c.active += 1);
                    return Checkout::Idle(conn, idle_time);
                }
            }
        }
        match self.reserve_dial(&mut st, hooks, origin, now) {
            Ok(()) => Checkout::Dial,
            Err(limit) => {
                let since = now.unwrap_or_else(Instant::now);
                if hooks.on() {
                    hooks.observer.limit_hit(&ev!(LimitHit {
                        at: since,
                        ids,
                        origin,
                        limit,
                        snapshot: st.snapshot(origin),
                    }));
                }
                let (tx, rx) = oneshot::channel();
                st.next_waiter += 1;
                let id = st.next_waiter;
                st.host(origin).waiters.push_back(Waiter { id, tx, since });
                st.count(origin, |c| c.waiting += 1);
                if hooks.on() {
                    let reason = match limit {
                        Limit::ConnectionsPerHost => QueueReason::PerHostLimit,
                        Limit::Connections => QueueReason::TotalLimit,
                        Limit::DialsPerHost => QueueReason::DialInProgress,
                    };
                    hooks.observer.queue_enter(&ev!(QueueEnter {
                        at: since,
                        ids,
                        origin,
                        reason,
                        snapshot: st.snapshot(origin),
                    }));
                }
                Checkout::Wait(Waiting { id, rx, since })
            }
        }
    }

    /// Counts a new dial for `origin` if the limits allow it, evicting an idle connection of
    /// another host when only the total limit is in the way.
    fn reserve_dial<O: Observer>(
        &self,
        st: &mut State,
        hooks: &Hooks<O>,
        origin: &Origin,
        now: Option<Instant>,
    ) -> Result<(), Limit> {
        let host = st.host(origin).stats.now;
        if host.active + host.connecting >= self.config.max_per_host {
            return Err(Limit::ConnectionsPerHost);
        }
        if host.connecting >= self.config.max_dials_per_host {
            return Err(Limit::DialsPerHost);
        }
        if open(&st.total.now) >= self.config.max_total && !self.evict_one(st, hooks, now) {
            return Err(Limit::Connections);
        }
        st.count(origin, |c| c.connecting += 1);
        Ok(())
    }

    /// Closes the longest-idle connection of any host; false if there is none.
    fn evict_one<O: Observer>(
        &self,
        st: &mut State,
        hooks: &Hooks<O>,
        now: Option<Instant>,
    ) -> bool {
        let victim = st
            .hosts
            .iter()
            .filter_map(|(o, h)| h.idle.first().map(|c| (o, c.idle_since)))
            .min_by_key(|(_, since)| *since)
            .map(|(o, _)| o.clone());
        let Some(origin) = victim else { return false };
        let conn = st.host(&origin).idle.remove(0);
        st.count(&origin, |c| c.idle -= 1);
        if hooks.on() {
            let at = now.unwrap_or_else(Instant::now);
            hooks.observer.idle_out(&ev!(IdleOut {
                at,
                connection: conn.id,
                request: None,
                origin: &origin,
                reason: IdleOutReason::Evicted,
                idle_time: conn
                    .idle_since
                    .map(|s| at.saturating_duration_since(s))
                    .unwrap_or_default(),
            }));
        }
        self.closed(st, hooks, &origin, conn, CloseReason::Evicted, now);
        st.forget_if_unused(&origin);
        true
    }

    /// Records the close of a connection that is no longer counted anywhere, and drops it.
    fn closed<O: Observer>(
        &self,
        st: &mut State,
        hooks: &Hooks<O>,
        origin: &Origin,
        conn: Connection,
        reason: CloseReason,
        now: Option<Instant>,
    ) {
        st.host(origin).stats.closes[reason.index()] += 1;
        st.total.closes[reason.index()] += 1;
        if hooks.on() {
            let at = now.unwrap_or_else(Instant::now);
            hooks.observer.connection_closed(&ev!(ConnectionClosed {
                at,
                connection: conn.id,
                origin,
                reason,
                lifetime: at.saturating_duration_since(conn.opened),
                requests: conn.requests,
            }));
        }
        drop(conn);
    }

    /// A dial finished: `Some` with the new connection (now active), `None` when it failed
    /// or was abandoned (its slot is freed).
    pub(crate) fn dial_finished<O: Observer>(&self, hooks: &Hooks<O>, origin: &Origin, ok: bool) {
        let mut st = self.lock();
        st.count(origin, |c| {
            c.connecting -= 1;
            if ok {
                c.active += 1;
            }
        });
        self.dispatch(&mut st, hooks, origin);
        st.forget_if_unused(origin);
    }

    /// A dial failed with `error`. If it was a connect failure (DNS, TCP, TLS) and the host
    /// has nothing else open or being dialled, every request queued for the host fails with
    /// a copy of it (rather than each dialling the unreachable host in turn, one connect
    /// timeout after the other); otherwise the freed slot goes to the next waiter.
    pub(crate) fn dial_failed<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        origin: &Origin,
        error: &crate::Error,
    ) {
        let mut st = self.lock();
        st.count(origin, |c| c.connecting -= 1);
        let host = st.host(origin).stats.now;
        if host.active + host.connecting == 0 && error.dial_failure_copy().is_some() {
            let now = self.now(hooks);
            while let Some(w) = st.host(origin).waiters.pop_front() {
                st.count(origin, |c| c.waiting -= 1);
                let copy = error.dial_failure_copy().expect("a dial failure");
                if w.tx.send(Handoff::Failed(copy)).is_ok() {
                    Self::record_wait(&mut st, origin, w.since, now);
                }
            }
        }
        self.dispatch(&mut st, hooks, origin);
        st.forget_if_unused(origin);
    }

    /// Gives back a connection after a request. `reusable` is false when the exchange left
    /// it in an unknown state.
    pub(crate) fn release<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        origin: &Origin,
        mut conn: Connection,
        reuse: Reuse,
        at: Option<Instant>,
    ) {
        let mut st = self.lock();
        st.count(origin, |c| c.active -= 1);
        let now = at.or_else(|| self.now(hooks));
        let refusal = if st.closed {
            Some((None, CloseReason::PoolClosed))
        } else if reuse == Reuse::Dead {
            Some((None, CloseReason::ClosedByPeer))
        } else if reuse == Reuse::No || conn.tx.is_closed() {
            Some((Some(PutIdleRefusal::NotReusable), CloseReason::NotReusable))
        } else if self.too_old(&conn, now) {
            Some((Some(PutIdleRefusal::Expired), CloseReason::MaxLifetime))
        } else {
            None
        };
        if let Some((refusal, reason)) = refusal {
            if let (true, Some(refusal)) = (hooks.on(), refusal) {
                hooks.observer.put_idle_refused(&ev!(PutIdleRefused {
                    at: now.unwrap_or_else(Instant::now),
                    connection: conn.id,
                    origin,
                    reason: refusal,
                }));
            }
            self.closed(&mut st, hooks, origin, conn, reason, now);
            self.dispatch(&mut st, hooks, origin);
            st.forget_if_unused(origin);
            return;
        }
        // Hand it straight to the oldest waiter of this host.
        while let Some(w) = st.host(origin).waiters.pop_front() {
            st.count(origin, |c| {
                c.waiting -= 1;
                c.active += 1;
            });
            match w.tx.send(Handoff::Conn(conn)) {
                Ok(()) => {
                    Self::record_wait(&mut st, origin, w.since, now);
                    return;
                }
                Err(Handoff::Conn(back)) => {
                    // The waiter is gone (its drop is waiting for the lock): next one.
                    conn = back;
                    st.count(origin, |c| c.active -= 1);
                }
                Err(_) => unreachable!("sent a connection"),
            }
        }
        let refusal = if st.host(origin).stats.now.idle >= self.config.max_idle_per_host {
            Some(PutIdleRefusal::MaxIdlePerHost)
        } else if st.total.now.idle >= self.config.max_idle {
            Some(PutIdleRefusal::MaxIdle)
        } else {
            None
        };
        if let Some(reason) = refusal {
            if hooks.on() {
                hooks.observer.put_idle_refused(&ev!(PutIdleRefused {
                    at: now.unwrap_or_else(Instant::now),
                    connection: conn.id,
                    origin,
                    reason,
                }));
            }
            self.closed(&mut st, hooks, origin, conn, CloseReason::IdleFull, now);
            self.dispatch(&mut st, hooks, origin);
            st.forget_if_unused(origin);
            return;
        }
        conn.idle_since = now;
        let id = conn.id;
        st.host(origin).idle.push(conn);
        st.count(origin, |c| c.idle += 1);
        if hooks.on() {
            hooks.observer.idle_in(&ev!(IdleIn {
                at: now.unwrap_or_else(Instant::now),
                connection: id,
                origin,
                snapshot: st.snapshot(origin),
            }));
        }
        // Requests of other hosts queued on the total limit may now evict it.
        if st.total.now.waiting > 0 {
            self.dispatch(&mut st, hooks, origin);
        }
    }

    fn record_wait(st: &mut State, origin: &Origin, since: Instant, now: Option<Instant>) {
        let waited = now
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(since);
        let host = &mut st.host(origin).stats;
        host.waits += 1;
        host.wait_time += waited;
        st.total.waits += 1;
        st.total.wait_time += waited;
    }

    /// After a slot was freed: gives dial slots to waiters, of `origin` first, then of any
    /// host, while the limits allow.
    fn dispatch<O: Observer>(&self, st: &mut State, hooks: &Hooks<O>, origin: &Origin) {
        if st.total.now.waiting == 0 {
            return;
        }
        let mut order: Vec<Origin> = Vec::with_capacity(1);
        order.push(origin.clone());
        order.extend(
            st.hosts
                .iter()
                .filter(|(o, h)| *o != origin && !h.waiters.is_empty())
                .map(|(o, _)| o.clone()),
        );
        let now = self.now(hooks);
        for o in &order {
            while st.hosts.get(o).is_some_and(|h| !h.waiters.is_empty()) {
                if self.reserve_dial(st, hooks, o, now).is_err() {
                    break;
                }
                let mut given = false;
                while let Some(w) = st.host(o).waiters.pop_front() {
                    st.count(o, |c| c.waiting -= 1);
                    if w.tx.send(Handoff::Slot).is_ok() {
                        Self::record_wait(st, o, w.since, now);
                        given = true;
                        break;
                    }
                }
                if !given {
                    st.count(o, |c| c.connecting -= 1);
                }
            }
        }
    }

    /// A waiter gives up (cancelled, deadline, or done): removes it from the queue, or takes
    /// back what was handed to it. Returns how long it waited.
    pub(crate) fn cancel_wait<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        origin: &Origin,
        mut waiting: Waiting,
    ) -> Duration {
        let mut st = self.lock();
        let host = st.host(origin);
        if let Some(i) = host.waiters.iter().position(|w| w.id == waiting.id) {
            host.waiters.remove(i);
            st.count(origin, |c| c.waiting -= 1);
            st.forget_if_unused(origin);
        } else {
            match waiting.rx.try_recv() {
                Ok(Handoff::Conn(conn)) => {
                    drop(st);
                    self.release(hooks, origin, conn, Reuse::Yes, None);
                }
                Ok(Handoff::Slot) => {
                    st.count(origin, |c| c.connecting -= 1);
                    self.dispatch(&mut st, hooks, origin);
                    st.forget_if_unused(origin);
                }
                Ok(Handoff::Failed(_)) | Err(_) => {}
            }
        }
        waiting.since.elapsed()
    }

    /// The connection driver of `id` ended (the peer or an error closed it). If it was idle,
    /// it leaves the idle list now.
    pub(crate) fn connection_gone<O: Observer>(
        &self,
        hooks: &Hooks<O>,
        origin: &Origin,
        id: crate::observer::ConnectionId,
    ) {
        let mut st = self.lock();
        let Some(host) = st.hosts.get_mut(origin) else {
            return;
        };
        let Some(i) = host.idle.iter().position(|c| c.id == id) else {
            return;
        };
        let conn = host.idle.remove(i);
        st.count(origin, |c| c.idle -= 1);
        let now = self.now(hooks);
        if hooks.on() {
            let at = now.unwrap_or_else(Instant::now);
            hooks.observer.idle_out(&ev!(IdleOut {
                at,
                connection: conn.id,
                request: None,
                origin,
                reason: IdleOutReason::ClosedByPeer,
                idle_time: conn
                    .idle_since
                    .map(|s| at.saturating_duration_since(s))
                    .unwrap_or_default(),
            }));
        }
        self.closed(&mut st, hooks, origin, conn, CloseReason::ClosedByPeer, now);
        self.dispatch(&mut st, hooks, origin);
        st.forget_if_unused(origin);
    }

    /// Closes the pool: idle connections are closed, waiters are told, later releases close.
    pub(crate) fn close<O: Observer>(&self, hooks: &Hooks<O>) {
        let mut st = self.lock();
        st.closed = true;
        let now = self.now(hooks);
        let origins: Vec<Origin> = st.hosts.keys().cloned().collect();
        for origin in &origins {
            let idle = std::mem::take(&mut st.host(origin).idle);
            for conn in idle {
                st.count(origin, |c| c.idle -= 1);
                if hooks.on() {
                    let at = now.unwrap_or_else(Instant::now);
                    hooks.observer.idle_out(&ev!(IdleOut {
                        at,
                        connection: conn.id,
                        request: None,
                        origin,
                        reason: IdleOutReason::PoolClosed,
                        idle_time: conn
                            .idle_since
                            .map(|s| at.saturating_duration_since(s))
                            .unwrap_or_default(),
                    }));
                }
                self.closed(&mut st, hooks, origin, conn, CloseReason::PoolClosed, now);
            }
            // Dropping the senders tells every waiter.
            let waiters = std::mem::take(&mut st.host(origin).waiters);
            let n = waiters.len() as u32;
            st.count(origin, |c| c.waiting -= n);
            st.forget_if_unused(origin);
        }
    }

    /// Whether the pool was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let st = self.lock();
        let mut hosts: Vec<(Origin, HostStats)> =
            st.hosts.iter().map(|(o, h)| (o.clone(), h.stats)).collect();
        hosts.sort_by_key(|h| h.0.to_string());
        PoolStats {
            hosts,
            total: st.total,
        }
    }
}

/// Whether a hyper error means the connection died under a request that may be sent again
/// on another connection (nothing of the response arrived).
pub(crate) fn is_dead_connection(err: &hyper::Error) -> bool {
    err.is_incomplete_message() || err.is_canceled() || err.is_closed() || {
        let mut src = std::error::Error::source(err);
        let mut io = false;
        while let Some(e) = src {
            if let Some(e) = e.downcast_ref::<std::io::Error>() {
                io = matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                );
                break;
            }
            src = e.source();
        }
        io
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_defaults_ports_and_strips_brackets() {
        let o = Origin::new(true, "example.com".parse().unwrap());
        assert_eq!(
            (o.scheme(), o.host(), o.port()),
            ("https", "example.com", 443)
        );
        let o = Origin::new(false, "[::1]:8080".parse().unwrap());
        assert_eq!((o.host(), o.port()), ("::1", 8080));
        assert_eq!(o.to_string(), "http://[::1]:8080");
        let a = Origin::new(false, "Example.COM".parse().unwrap());
        let b = Origin::new(false, "example.com".parse().unwrap());
        assert_eq!(a, b, "hosts compare without case");
    }
}
