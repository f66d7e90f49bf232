//! Stitching HttpService events into transactions.
//!
//! HTTP.sys reports one request as several events. A connection starts with **21 ConnConnect**
//! (its ActivityID identifies the connection). **1 RecvReq** carries the connection's ActivityID
//! and, as RelatedActivityID, a new ActivityID that every later event of that request carries.
//! Five flows end a request, each giving exactly one [`Transaction`]:
//!
//! | flow | events | ends at |
//! |---|---|---|
//! | fast response | 1 → 2 Parse → 3 Deliver → 8 FastResp → 12 FastSend | 12 |
//! | response | 1 → 2 → 3 → 4 RecvResp → 10 SendComplete | 10 |
//! | rejected | 1 → 2 → 64 RequestRejected → 10 | 10 |
//! | cached now | 1 → 2 → 3 → 4 (cache policy) → [25 AddedCacheEntry] → 16 SrvdFrmCache → 11 CachedAndSend | 11 |
//! | from cache | 1 → 2 → 16 (or 17 CachedNotModified) | 16 / 17 |
//!
//! A request served from the kernel cache (last flow) has no Deliver and no response event: its
//! status and body size come from the cache entry that 25 announced for the same URL, its site
//! from 16 itself, and its application pool from the request that filled the entry (or from
//! `applicationHost.config`).
//!
//! **The ConnClose trap**: 23 ConnClose can arrive before the last send event of a request on
//! that connection, so it only marks the connection closed; requests keep their own copy of
//! the addresses and still complete. **24 ConnCleanup** is final: requests still open on the
//! connection are emitted then (incomplete when no status was seen).
//!
//! Events of one request may arrive out of order (ETW delivers per-CPU buffers): any request
//! event creates the request's entry, and the transaction is emitted once its end event, its
//! RecvReq and its URL (from Parse, or Deliver when Parse was lost) have all been seen. A
//! request whose RecvReq never comes cannot be tied to a connection and expires (counted).
//!
//! Every map is bounded in count and in age (measured on the events' own clock, so replays are
//! deterministic); whatever is evicted, expired, duplicated, undecodable or unattributable is
//! counted in [`EtwCounters`] and in the [`SourceStats`] sent with each batch.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;

use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::{Method, Side, Source, Tags, Transaction};
use rustc_hash::FxHasher;

use super::guid::Guid;
use super::iis::IisConfig;
use super::wire::{self, Event, SendKind};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// 100 ns ticks per second (FILETIME resolution).
pub const TICKS_PER_SEC: u64 = 10_000_000;
/// FILETIME of the Unix epoch (1970-01-01 in 100 ns ticks since 1601-01-01).
pub const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;

/// Converts a FILETIME (100 ns since 1601) to nanoseconds since the Unix epoch (0 before it).
pub fn filetime_to_unix_ns(ft: u64) -> u64 {
    ft.saturating_sub(FILETIME_UNIX_EPOCH).saturating_mul(100)
}

/// One raw HttpService event, from any source (live ETW, replay file, event XML).
#[derive(Clone, Copy, Debug)]
pub struct RawEvent<'a> {
    /// The event id (`EVENT_DESCRIPTOR.Id`).
    pub event_id: u16,
    /// The event version.
    pub version: u8,
    /// `EVENT_HEADER.TimeStamp`: FILETIME, 100 ns since 1601-01-01 UTC.
    pub timestamp: u64,
    /// `EVENT_HEADER.ActivityId`.
    pub activity_id: Guid,
    /// The related activity id (extended data item), when present.
    pub related_activity_id: Option<Guid>,
    /// The user data.
    pub user_data: &'a [u8],
}

/// Limits of the correlator.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most connections tracked at once.
    pub max_connections: usize,
    /// Most requests in flight at once.
    pub max_requests: usize,
    /// Most kernel cache entries remembered.
    pub max_cache_entries: usize,
    /// A connection without events for this long (100 ns ticks) is forgotten.
    pub connection_idle: u64,
    /// A request not finished after this long (100 ns ticks) is dropped.
    pub request_max_age: u64,
    /// A cache entry older than this (100 ns ticks) is forgotten.
    pub cache_max_age: u64,
    /// Keep the query string in `path` (off by default: privacy).
    pub keep_query: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 65_536,
            max_requests: 65_536,
            max_cache_entries: 4_096,
            connection_idle: 600 * TICKS_PER_SEC,
            request_max_age: 120 * TICKS_PER_SEC,
            cache_max_age: 3_600 * TICKS_PER_SEC,
            keep_query: false,
        }
    }
}

/// What the correlator counted, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EtwCounters {
    /// Events handed to the correlator.
    pub events: u64,
    /// Events whose user data could not be decoded (truncated, bad address...).
    pub undecodable: u64,
    /// Events of ids the correlator does not use.
    pub ignored: u64,
    /// Connections opened (21).
    pub connections: u64,
    /// ConnClose events (23).
    pub connection_closes: u64,
    /// ConnCleanup events (24).
    pub connection_cleanups: u64,
    /// SslConnEvent events (34).
    pub tls_connections: u64,
    /// Requests started (1).
    pub requests: u64,
    /// Transactions emitted.
    pub transactions: u64,
    /// Of those, without a status (emitted at ConnCleanup before any response).
    pub incomplete: u64,
    /// Of those, emitted at ConnCleanup because no send event had come.
    pub ended_by_cleanup: u64,
    /// Of those, served from the kernel cache (16/17 flow).
    pub served_from_cache: u64,
    /// Of those, rejected by HTTP.sys (64).
    pub rejected: u64,
    /// Cache entries added (25).
    pub cache_added: u64,
    /// Cache entries flushed (27).
    pub cache_flushed: u64,
    /// Cache-served requests whose URL had no known cache entry (status unknown).
    pub cache_misses: u64,
    /// RecvReq events without a RelatedActivityID (cannot be correlated).
    pub missing_related_activity: u64,
    /// RecvReq events on a connection whose ConnConnect was not seen (still used).
    pub unknown_connection: u64,
    /// RecvReq events whose client address is in no known layout (the connection's is used).
    pub unparsed_addresses: u64,
    /// Events for a request that is not tracked (finished already, or begun before the trace).
    pub unknown_request: u64,
    /// Events seen twice for the same request or connection (the first is kept).
    pub duplicates: u64,
    /// Connections forgotten because the connection map was full.
    pub evicted_connections: u64,
    /// Requests dropped because the request map was full.
    pub evicted_requests: u64,
    /// Cache entries forgotten because the cache map was full.
    pub evicted_cache_entries: u64,
    /// Connections forgotten after `connection_idle` without events.
    pub expired_connections: u64,
    /// Requests dropped after `request_max_age` unfinished.
    pub expired_requests: u64,
    /// Cache entries forgotten after `cache_max_age`.
    pub expired_cache_entries: u64,
}

struct Conn {
    local: SocketAddr,
    remote: SocketAddr,
    last: u64,
    closed: bool,
    tls: bool,
    /// Requests open on this connection (HTTP/1.x: at most one; HTTP/2: a few).
    pending: Vec<Guid>,
}

/// The most open requests remembered per connection for ConnCleanup; more are still tracked
/// (and bounded) in the request map, and end by their own events or by age.
const MAX_PENDING_PER_CONN: usize = 256;

// Which events of a request were seen (duplicate detection and completion).
const SEEN_RECV: u16 = 1 << 0;
const SEEN_PARSE: u16 = 1 << 1;
const SEEN_DELIVER: u16 = 1 << 2;
const SEEN_RESPONSE: u16 = 1 << 3;
const SEEN_REJECTED: u16 = 1 << 4;
const SEEN_CACHE_SEND: u16 = 1 << 5;
const SEEN_DONE: u16 = 1 << 6;

#[derive(Default)]
struct Request {
    conn: Guid,
    client: Option<SocketAddr>,
    server: Option<SocketAddr>,
    start: u64,
    end: u64,
    seen: u16,
    method: Option<Method>,
    /// The URL as HTTP.sys reported it (scheme, host, path, query).
    url: String,
    site_id: Option<u32>,
    app_pool: Option<Box<str>>,
    status: Option<u16>,
    response_bytes: u64,
    from_cache: bool,
    rejected: bool,
}

struct CacheLine {
    status: u16,
    content_length: u32,
    added: u64,
    /// Site and pool of the request whose response filled the entry.
    site_id: Option<u32>,
    app_pool: Option<Box<str>>,
}

/// The correlator: feed it [`RawEvent`]s, collect completed transactions.
pub struct Correlator {
    config: Config,
    conns: FxMap<Guid, Conn>,
    requests: FxMap<Guid, Request>,
    cache: HashMap<String, CacheLine>,
    iis: Option<IisConfig>,
    now: u64,
    last_sweep: u64,
    counters: EtwCounters,
    stats: SourceStats,
    scratch: String,
}

impl Correlator {
    /// A correlator with `config`'s limits.
    pub fn new(config: Config) -> Self {
        Correlator {
            config,
            conns: FxMap::default(),
            requests: FxMap::default(),
            cache: HashMap::new(),
            iis: None,
            now: 0,
            last_sweep: 0,
            counters: EtwCounters::default(),
            stats: SourceStats::default(),
            scratch: String::new(),
        }
    }

    /// Uses `iis` for site names (and app pools of cache-served requests).
    pub fn set_iis_config(&mut self, iis: Option<IisConfig>) {
        self.iis = iis;
    }

    /// Cumulative counts.
    pub fn counters(&self) -> &EtwCounters {
        &self.counters
    }

    /// The telemetry counted since the previous call, for the next batch.
    pub fn take_stats(&mut self) -> SourceStats {
        std::mem::take(&mut self.stats)
    }

    /// Connections, requests and cache entries currently held.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.conns.len(), self.requests.len(), self.cache.len())
    }

    /// Processes one event; completed transactions are appended to `out`.
    pub fn process(&mut self, ev: &RawEvent<'_>, out: &mut Vec<Transaction>) {
        self.counters.events += 1;
        self.stats.events += 1;
        self.stats.bytes += ev.user_data.len() as u64;
        if ev.timestamp > self.now {
            self.now = ev.timestamp;
        }
        if self.now.saturating_sub(self.last_sweep) >= TICKS_PER_SEC {
            self.sweep();
        }
        let decoded = match wire::decode(ev.event_id, ev.version, ev.user_data) {
            Ok(d) => d,
            Err(_) => {
                self.counters.undecodable += 1;
                self.stats.undecodable += 1;
                return;
            }
        };
        let ts = ev.timestamp;
        let id = ev.activity_id;
        match decoded {
            Event::ConnConnect(v) => self.on_connect(id, ts, v.local(), v.remote()),
            Event::ConnClose(_) => {
                self.counters.connection_closes += 1;
                if let Some(c) = self.conns.get_mut(&id) {
                    c.closed = true;
                    c.last = ts;
                }
            }
            Event::ConnCleanup(_) => {
                self.counters.connection_cleanups += 1;
                self.on_cleanup(id, ts, out);
            }
            Event::SslConnEvent(_) => {
                self.counters.tls_connections += 1;
                if let Some(c) = self.conns.get_mut(&id) {
                    c.tls = true;
                    c.last = ts;
                }
            }
            Event::RecvReq(v) => {
                let Some(req_id) = ev.related_activity_id else {
                    self.counters.missing_related_activity += 1;
                    return;
                };
                let remote = v.remote();
                if remote.is_none() {
                    self.counters.unparsed_addresses += 1;
                }
                self.on_recv_req(id, req_id, ts, remote, out);
            }
            Event::Parse(v) => {
                let mut url = std::mem::take(&mut self.scratch);
                url.clear();
                wire::utf16_to_string(v.url_utf16(), &mut url);
                let method = wire::http_verb(v.http_verb());
                if let Some(r) = self.request(id, ts, SEEN_PARSE) {
                    r.method = r.method.or(method);
                    std::mem::swap(&mut r.url, &mut url);
                }
                self.scratch = url;
                self.try_complete(id, out);
            }
            Event::Deliver(v) => {
                let mut pool = std::mem::take(&mut self.scratch);
                pool.clear();
                wire::utf16_to_string(v.request_queue_utf16(), &mut pool);
                if let Some(r) = self.request(id, ts, SEEN_DELIVER) {
                    r.site_id = Some(v.site_id());
                    if r.app_pool.as_deref() != Some(pool.as_str()) {
                        r.app_pool = Some(pool.as_str().into());
                    }
                    if r.url.is_empty() {
                        wire::utf16_to_string(v.url_utf16(), &mut r.url);
                    }
                }
                self.scratch = pool;
            }
            Event::Response { view, .. } => {
                if let Some(r) = self.request(id, ts, SEEN_RESPONSE) {
                    r.status = Some(view.status_code());
                    if r.method.is_none() {
                        r.method = Method::from_bytes(view.verb());
                    }
                }
            }
            Event::RequestRejected(v) => {
                let mut pool = String::new();
                wire::utf16_to_string(v.request_queue_utf16(), &mut pool);
                if let Some(r) = self.request(id, ts, SEEN_REJECTED) {
                    r.rejected = true;
                    if !pool.is_empty() {
                        r.app_pool = Some(pool.into_boxed_str());
                    }
                }
            }
            Event::Send { kind, view } => {
                if let Some(r) = self.request(id, ts, SEEN_DONE) {
                    let s = view.http_status();
                    if s != 0 || r.status.is_none() {
                        r.status = Some(s).filter(|&s| s != 0).or(r.status);
                    }
                    if kind == SendKind::CachedAndSend {
                        r.from_cache = true;
                    }
                    r.end = ts;
                }
                self.try_complete(id, out);
            }
            Event::ServedFromCache { not_modified, view } => {
                self.on_served_from_cache(id, ts, not_modified, view.site_id(), out)
            }
            Event::CacheEntry { flushed, view } => {
                let mut uri = String::new();
                wire::utf16_to_string(view.uri_utf16(), &mut uri);
                if flushed {
                    self.counters.cache_flushed += 1;
                    self.cache.remove(&uri);
                } else {
                    self.counters.cache_added += 1;
                    self.add_cache_entry(uri, view.status_code(), view.content_length(), ts);
                }
            }
            Event::Other(_) => self.counters.ignored += 1,
        }
    }

    fn on_connect(&mut self, id: Guid, ts: u64, local: SocketAddr, remote: SocketAddr) {
        if let Some(c) = self.conns.get_mut(&id) {
            self.counters.duplicates += 1;
            c.last = ts;
            return;
        }
        self.counters.connections += 1;
        if self.conns.len() >= self.config.max_connections {
            self.sweep();
            if self.conns.len() >= self.config.max_connections {
                self.evict_connections();
            }
        }
        self.conns.insert(
            id,
            Conn {
                local,
                remote,
                last: ts,
                closed: false,
                tls: false,
                pending: Vec::new(),
            },
        );
    }

    fn on_cleanup(&mut self, id: Guid, ts: u64, out: &mut Vec<Transaction>) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for req_id in conn.pending {
            if let Some(mut r) = self.requests.remove(&req_id) {
                if r.seen & SEEN_RECV == 0 {
                    continue;
                }
                r.end = ts;
                self.counters.ended_by_cleanup += 1;
                let (local, remote) = (conn.local, conn.remote);
                self.emit(r, Some((local, remote)), out);
            }
        }
    }

    fn on_recv_req(
        &mut self,
        conn_id: Guid,
        req_id: Guid,
        ts: u64,
        remote: Option<SocketAddr>,
        out: &mut Vec<Transaction>,
    ) {
        let (server, client) = match self.conns.get_mut(&conn_id) {
            Some(c) => {
                c.last = ts;
                if c.pending.len() < MAX_PENDING_PER_CONN && !c.pending.contains(&req_id) {
                    c.pending.push(req_id);
                }
                (Some(c.local), Some(c.remote))
            }
            None => {
                self.counters.unknown_connection += 1;
                (None, remote)
            }
        };
        if self
            .requests
            .get(&req_id)
            .is_some_and(|r| r.seen & SEEN_RECV != 0)
        {
            self.counters.duplicates += 1;
            return;
        }
        self.counters.requests += 1;
        let Some(r) = self.request_entry(req_id, ts) else {
            return;
        };
        if r.seen == 0 {
            r.start = ts;
        }
        r.seen |= SEEN_RECV;
        r.conn = conn_id;
        r.client = client;
        r.server = server;
        r.start = r.start.min(ts);
        self.try_complete(req_id, out);
    }

    fn on_served_from_cache(
        &mut self,
        id: Guid,
        ts: u64,
        not_modified: bool,
        site_id: u32,
        out: &mut Vec<Transaction>,
    ) {
        let Some(r) = self.request(id, ts, SEEN_CACHE_SEND) else {
            return;
        };
        r.site_id = r.site_id.or(Some(site_id));
        r.from_cache = true;
        if r.seen & SEEN_RESPONSE != 0 {
            // "Cached now": this request's response fills the cache entry; it ends with 11.
            let (site, pool) = (r.site_id, r.app_pool.clone());
            let url = std::mem::take(&mut r.url);
            if let Some(line) = self.cache.get_mut(url.as_str()) {
                line.site_id = site;
                line.app_pool = pool;
            }
            if let Some(r) = self.requests.get_mut(&id) {
                r.url = url;
            }
            return;
        }
        // Served from the kernel cache: this event ends the request.
        r.seen |= SEEN_DONE;
        r.end = ts;
        if not_modified {
            r.status = Some(304);
        }
        self.try_complete(id, out);
    }

    fn add_cache_entry(&mut self, uri: String, status: u16, content_length: u32, ts: u64) {
        if !self.cache.contains_key(&uri) && self.cache.len() >= self.config.max_cache_entries {
            self.sweep();
            if self.cache.len() >= self.config.max_cache_entries {
                let n = evict_oldest(&mut self.cache, |l| l.added);
                self.counters.evicted_cache_entries += n;
                self.stats.dropped.add(DropReason::CacheLimit, n);
            }
        }
        self.cache.insert(
            uri,
            CacheLine {
                status,
                content_length,
                added: ts,
                site_id: None,
                app_pool: None,
            },
        );
    }

    /// The entry of request `id`, created if needed (events may come before RecvReq), marked
    /// with `flag`; `None` (and counted) for a duplicate event.
    fn request(&mut self, id: Guid, ts: u64, flag: u16) -> Option<&mut Request> {
        if self.requests.contains_key(&id) {
            let r = self.requests.get_mut(&id)?;
            if r.seen & flag != 0 {
                self.counters.duplicates += 1;
                return None;
            }
            r.seen |= flag;
            return Some(r);
        }
        // An event of a request whose RecvReq was not seen (yet): keep it for a while, RecvReq
        // may still come (reordering); otherwise it expires and is counted.
        self.counters.unknown_request += 1;
        let r = self.request_entry(id, ts)?;
        r.start = ts;
        r.seen |= flag;
        Some(r)
    }

    fn request_entry(&mut self, id: Guid, ts: u64) -> Option<&mut Request> {
        if !self.requests.contains_key(&id) && self.requests.len() >= self.config.max_requests {
            self.sweep();
            if self.requests.len() >= self.config.max_requests {
                let n = evict_oldest(&mut self.requests, |r| r.start);
                self.counters.evicted_requests += n;
                self.stats.dropped.add(DropReason::RequestLimit, n);
            }
        }
        Some(self.requests.entry(id).or_insert_with(|| Request {
            start: ts,
            ..Request::default()
        }))
    }

    /// Emits request `id` if its end, its RecvReq and its URL have all been seen.
    fn try_complete(&mut self, id: Guid, out: &mut Vec<Transaction>) {
        let ready = match self.requests.get(&id) {
            Some(r) => r.seen & SEEN_DONE != 0 && r.seen & SEEN_RECV != 0 && !r.url.is_empty(),
            None => false,
        };
        if !ready {
            return;
        }
        let Some(mut r) = self.requests.remove(&id) else {
            return;
        };
        let conn = match self.conns.get_mut(&r.conn) {
            Some(c) => {
                if let Some(i) = c.pending.iter().position(|p| *p == id) {
                    c.pending.swap_remove(i);
                }
                Some((c.local, c.remote))
            }
            None => None,
        };
        if r.from_cache && r.seen & SEEN_RESPONSE == 0 {
            // Served from the kernel cache: status, size and pool from the cache entry.
            self.counters.served_from_cache += 1;
            match self.cache.get(r.url.as_str()) {
                Some(line) => {
                    if r.status.is_none() {
                        r.status = Some(line.status);
                    }
                    if r.status != Some(304) {
                        r.response_bytes = u64::from(line.content_length);
                    }
                    if r.app_pool.is_none() {
                        r.app_pool = line.app_pool.clone();
                    }
                    if r.site_id.is_none() {
                        r.site_id = line.site_id;
                    }
                }
                None => self.counters.cache_misses += 1,
            }
        }
        self.emit(r, conn, out);
    }

    fn emit(
        &mut self,
        r: Request,
        conn: Option<(SocketAddr, SocketAddr)>,
        out: &mut Vec<Transaction>,
    ) {
        if r.rejected {
            self.counters.rejected += 1;
        }
        // No URL seen (Parse and Deliver lost): an empty path, as for a response without request.
        let path = if r.url.is_empty() {
            String::new()
        } else {
            wire::url_path(&r.url, self.config.keep_query).to_owned()
        };
        let mut tags = Tags::default();
        let mut app_pool = r.app_pool;
        if let Some(site) = r.site_id {
            tags.insert("site_id", site.to_string());
            if let Some(iis) = &self.iis {
                if let Some(name) = iis.site_name(site) {
                    tags.insert("site_name", name);
                }
                if app_pool.is_none() {
                    app_pool = iis.app_pool(site, &path).map(Into::into);
                }
            }
        }
        if let Some(pool) = app_pool {
            tags.insert("app_pool", pool);
        }
        let server = r.server.or(conn.map(|c| c.0));
        let client = r.client.or(conn.map(|c| c.1));
        let start = filetime_to_unix_ns(r.start);
        let end = filetime_to_unix_ns(r.end.max(r.start));
        let incomplete = r.status.is_none();
        if incomplete {
            self.counters.incomplete += 1;
            self.stats.parse.incomplete += 1;
        }
        self.counters.transactions += 1;
        self.stats.parse.requests += 1;
        self.stats.parse.transactions += 1;
        if r.status.is_some() {
            self.stats.parse.responses += 1;
        }
        out.push(Transaction {
            time_unix_ns: start as i64,
            start_ns: start,
            end_ns: end,
            method: r.method,
            path: path.into(),
            status: r.status,
            request_bytes: 0,
            response_bytes: r.response_bytes,
            client,
            server,
            pid: None,
            comm: None,
            side: Some(Side::Server),
            source: Source::Etw,
            version: None,
            tags,
            incomplete,
        });
    }

    /// Forgets whatever is older than its age limit (on the events' clock).
    pub fn sweep(&mut self) {
        self.last_sweep = self.now;
        let now = self.now;
        let (ci, ra, ca) = (
            self.config.connection_idle,
            self.config.request_max_age,
            self.config.cache_max_age,
        );
        let before = self.conns.len();
        self.conns.retain(|_, c| now.saturating_sub(c.last) < ci);
        let n = (before - self.conns.len()) as u64;
        self.counters.expired_connections += n;
        let before = self.requests.len();
        self.requests
            .retain(|_, r| now.saturating_sub(r.start) < ra);
        let n = (before - self.requests.len()) as u64;
        self.counters.expired_requests += n;
        self.stats.dropped.add(DropReason::Expired, n);
        let before = self.cache.len();
        self.cache.retain(|_, l| now.saturating_sub(l.added) < ca);
        self.counters.expired_cache_entries += (before - self.cache.len()) as u64;
    }

    fn evict_connections(&mut self) {
        let n = evict_oldest(&mut self.conns, |c| c.last);
        self.counters.evicted_connections += n;
    }

    /// Drops every request and connection still open (end of a replay), counting the
    /// requests as expired. Returns how many requests were dropped.
    pub fn finish(&mut self) -> u64 {
        let n = self.requests.len() as u64;
        self.counters.expired_requests += n;
        self.stats.dropped.add(DropReason::Expired, n);
        self.requests.clear();
        self.conns.clear();
        self.cache.clear();
        n
    }
}

/// Removes the oldest eighth (at least one) of `map` by `age`; returns how many.
fn evict_oldest<K: Clone + Eq + std::hash::Hash, V, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, V, S>,
    age: impl Fn(&V) -> u64,
) -> u64 {
    if map.is_empty() {
        return 0;
    }
    let mut ages: Vec<u64> = map.values().map(&age).collect();
    let k = (ages.len() / 8).max(1) - 1;
    let (_, cutoff, _) = ages.select_nth_unstable(k);
    let cutoff = *cutoff;
    let before = map.len();
    let mut budget = k + 1;
    map.retain(|_, v| {
        if budget > 0 && age(v) <= cutoff {
            budget -= 1;
            false
        } else {
            true
        }
    });
    (before - map.len()) as u64
}
