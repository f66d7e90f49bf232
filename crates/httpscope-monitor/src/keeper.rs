//! The StatKeeper: per-endpoint aggregation of transactions.
//!
//! Key: (source, server address, client address or rolled-up client, pid, comm, side, method,
//! route, status). Value: count, latency [`Sketch`], request and response body bytes.
//! Transactions whose content is impossible are counted as `malformed{reason}` and not
//! aggregated; incomplete ones (no response, or no request) are counted; beyond
//! [`KeeperConfig::max_keys`] new keys are counted as `dropped{reason="key_limit"}`.
//!
//! The hot path allocates nothing once warm: the route is quantized into a reused buffer, routes
//! and peers (source, addresses, process, side) are interned to `u32`s, and the key is a
//! 12-byte `Copy` value.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use httpscope_model::telemetry::{DropReason, MalformedReason, ReasonCounts};
use httpscope_model::{Comm, Method, Side, Source, Transaction};
use serde::{Deserialize, Serialize};

use crate::route::{is_printable, Checked, Outcome, Quantizer, RouteBuf, SHORT_PATH};
use crate::sketch::{bin_key, Sketch, MAX_BINS};

/// How clients are kept apart in the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRollup {
    /// One key per client IP address; the (ephemeral) port is dropped.
    #[default]
    Ip,
    /// One key per client address and port (many keys: one per connection).
    Full,
    /// All clients together.
    All,
}

/// Limits and options of a [`StatKeeper`].
#[derive(Clone, Debug)]
pub struct KeeperConfig {
    /// The most keys kept at once (default 100,000).
    pub max_keys: usize,
    /// How clients are kept apart.
    pub client_rollup: ClientRollup,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        KeeperConfig {
            max_keys: 100_000,
            client_rollup: ClientRollup::Ip,
        }
    }
}

/// What an endpoint is, in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Where the transactions were observed.
    pub source: Source,
    /// The server address, when known.
    pub server: Option<SocketAddr>,
    /// The client address (port 0 when rolled up by IP), `None` when unknown or rolled up.
    pub client: Option<SocketAddr>,
    /// The observed process.
    pub pid: Option<u32>,
    /// The observed process's name.
    pub comm: Option<Comm>,
    /// Which end the observed process was.
    pub side: Option<Side>,
    /// The request method.
    pub method: Method,
    /// The quantized route.
    pub route: Arc<str>,
    /// The response status.
    pub status: u16,
}

impl EndpointKey {
    /// Whether the status counts as an error: 5xx, and also 4xx when the observed process was
    /// the client (the OpenTelemetry HTTP conventions' rule for span status).
    pub fn is_error(&self) -> bool {
        is_error(self.status, self.side)
    }
}

impl EndpointKey {
    fn order_key(&self) -> impl Ord + '_ {
        (
            self.source,
            self.server,
            self.client,
            self.pid,
            self.comm.as_ref().map(Comm::as_bytes),
            self.side,
            self.method,
            &self.route,
            self.status,
        )
    }
}

impl PartialOrd for EndpointKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EndpointKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

fn is_error(status: u16, side: Option<Side>) -> bool {
    status >= 500 || (status >= 400 && side == Some(Side::Client))
}

/// Upper bounds (inclusive, bytes) of the body-size histogram buckets: 0, then 64 B × 4^k up
/// to 64 MiB; a last bucket (+Inf) holds the larger bodies. Fixed, so that a key's counts are a
/// small array and exporters give every series the same `le`s.
pub const BODY_SIZE_BOUNDS: [u64; 12] = [
    0,
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
];

/// Body-size buckets: one per bound of [`BODY_SIZE_BOUNDS`] and +Inf.
pub const BODY_SIZE_BUCKETS: usize = BODY_SIZE_BOUNDS.len() + 1;

/// The body-size bucket of `bytes`: the first `i` with `bytes <= BODY_SIZE_BOUNDS[i]`, else
/// the last (+Inf). Without branches or a search: for `bytes >= 1` the bucket follows from the
/// bit length of `bytes - 1` (bucket `k >= 1` ends at `2^(4 + 2k)`).
#[inline]
pub fn body_size_bucket(bytes: u64) -> usize {
    let bits = 64 - bytes.wrapping_sub(1).leading_zeros();
    let k = (1 + (bits.max(6) - 5) / 2).min(BODY_SIZE_BUCKETS as u32 - 1);
    // 0 bytes: bits is 64 (the wrapped `u64::MAX`), masked to bucket 0.
    (k & (u32::from(bytes != 0)).wrapping_neg()) as usize
}

/// The aggregate of one endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointStats {
    /// Transactions.
    pub count: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// Transactions by request body size: bucket `i` counts sizes `<= BODY_SIZE_BOUNDS[i]`
    /// (and above the previous bound); the last, sizes above them all. Not cumulative.
    pub request_sizes: [u64; BODY_SIZE_BUCKETS],
    /// Transactions by response body size, bucketed as `request_sizes`.
    pub response_sizes: [u64; BODY_SIZE_BUCKETS],
    /// Latencies (first request byte to last response byte).
    pub latency: Sketch,
}

impl EndpointStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.count += other.count;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        for (a, b) in self.request_sizes.iter_mut().zip(&other.request_sizes) {
            *a += b;
        }
        for (a, b) in self.response_sizes.iter_mut().zip(&other.response_sizes) {
            *a += b;
        }
        self.latency.merge(&other.latency);
    }
}

/// What the keeper counted about the transactions it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KeeperCounts {
    /// Transactions given to the keeper.
    pub transactions: u64,
    /// Of those, aggregated.
    pub aggregated: u64,
    /// Incomplete (request without response or response without request): counted, not
    /// aggregated.
    pub incomplete: u64,
    /// Not aggregated because impossible, by reason.
    pub malformed: ReasonCounts<MalformedReason>,
    /// Not aggregated because of a cap, by reason.
    pub dropped: ReasonCounts<DropReason>,
    /// Not aggregated because a drop rule matched the path.
    pub filtered: u64,
}

impl KeeperCounts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &KeeperCounts) {
        self.transactions += other.transactions;
        self.aggregated += other.aggregated;
        self.incomplete += other.incomplete;
        self.malformed.merge(&other.malformed);
        self.dropped.merge(&other.dropped);
        self.filtered += other.filtered;
    }
}

/// Who took part in an exchange: everything of the key but method, route and status. Many
/// keys share one peer, so peers are interned to a `u32` and the key proper is 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Peer {
    source: Source,
    side: Option<Side>,
    pid: Option<u32>,
    server: Option<SocketAddr>,
    client: Option<SocketAddr>,
    comm: Option<Comm>,
}

/// A few wide writes instead of the derived field-by-field hash (dozens of small writes
/// through `SocketAddr`'s and `Option`'s impls): the peer is hashed on every transaction whose
/// peer differs from the previous one. Equal peers hash equally: everything hashed is compared
/// by `Eq` (the process name and IPv6 flow and scope ids are left out of the hash only).
impl Hash for Peer {
    fn hash<H: Hasher>(&self, h: &mut H) {
        fn addr(a: &Option<SocketAddr>) -> (u128, u64) {
            match a {
                None => (0, 0),
                Some(SocketAddr::V4(v)) => {
                    (u32::from(*v.ip()).into(), u64::from(v.port()) | 1 << 16)
                }
                Some(SocketAddr::V6(v)) => (u128::from(*v.ip()), u64::from(v.port()) | 2 << 16),
            }
        }
        let (server, sp) = addr(&self.server);
        let (client, cp) = addr(&self.client);
        let side = match self.side {
            None => 0u64,
            Some(Side::Client) => 1,
            Some(Side::Server) => 2,
        };
        let pid = self.pid.map_or(0, |p| u64::from(p) | 1 << 32);
        // Both addresses whole: a combination such as XOR would let a client pick addresses
        // that collide whatever the hasher's seed.
        h.write_u128(server);
        h.write_u128(client);
        h.write_u64(sp | cp << 18 | side << 36 | (self.source as u64) << 40);
        h.write_u64(pid);
    }
}

/// The key of the stats table: small, so the table's entries take few cache lines and hash
/// in a few instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    peer: u32,
    route: u32,
    status: u16,
    method: Method,
}

/// Two wide writes instead of the derived four (each a multiply in the hasher). Equal keys
/// hash equally: every field is in the hash.
impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from(self.peer) | u64::from(self.route) << 32);
        self.method.hash(h);
        h.write_u16(self.status);
    }
}

/// Entries of the peer and route caches (direct-mapped, indexed by a cheap hash, holding
/// ids): most transactions' peer and route were seen recently, and a cache entry is checked
/// with one comparison against the interned value, where the interning tables take a full
/// hash, a probe and a comparison. A miss (or a collision, which an attacker can cause but
/// not make worse than a miss) takes the tables. Since every hit is checked against the
/// table of interned values, a stale id (after the tables are cleared) is only a miss.
const CACHE: usize = 1024;

/// An empty cache entry's id.
const NO_ID: u32 = u32::MAX;

/// A cheap hash of an address for the peer cache's index.
#[inline]
fn addr_bits(a: &Option<SocketAddr>) -> u64 {
    match a {
        None => 0,
        Some(SocketAddr::V4(v)) => u64::from(v.ip().to_bits()) << 16 | u64::from(v.port()),
        Some(SocketAddr::V6(v)) => {
            let ip = v.ip().to_bits();
            (ip as u64 ^ (ip >> 64) as u64) ^ u64::from(v.port())
        }
    }
}

impl Peer {
    /// The peer cache's index.
    #[inline]
    fn cache_index(&self) -> usize {
        let h = addr_bits(&self.server).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ addr_bits(&self.client).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            ^ u64::from(self.pid.unwrap_or(0)).wrapping_mul(0x1656_67b1_9e37_79f9);
        (h >> 54) as usize % CACHE
    }
}

/// A route of up to [`SHORT_PATH`] bytes, zero-padded, as words.
type ShortRoute = [u64; SHORT_PATH / 8];

/// The route cache's index of a zero-padded route ([`RouteBuf::short`]).
#[inline]
fn route_cache_index(r: &ShortRoute) -> usize {
    let w = |i: usize| r[i];
    let h = (w(0) ^ w(4)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (w(1) ^ w(5)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ (w(2) ^ w(6)).wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ (w(3) ^ w(7)).wrapping_mul(0x27d4_eb2f_1656_67c5);
    (h >> 54) as usize % CACHE
}

/// An interned route, hashed as its bytes so that it can be looked up by the bytes the
/// quantizer wrote ([`RouteBytes`]) without checking them for UTF-8 again.
#[derive(Debug, PartialEq, Eq)]
struct RouteKey(Arc<str>);

impl Hash for RouteKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.0.as_bytes());
    }
}

/// A route to look up in the table of [`RouteKey`]s.
struct RouteBytes<'a>(&'a [u8]);

impl Hash for RouteBytes<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.0);
    }
}

impl hashbrown::Equivalent<RouteKey> for RouteBytes<'_> {
    fn equivalent(&self, key: &RouteKey) -> bool {
        self.0 == key.0.as_bytes()
    }
}

/// One key and its aggregate, as the stats table holds them: one cache line, which is what a
/// transaction touches in the table (the previous `(Key, EndpointStats)` took two: a count kept
/// twice, a `u128` sum and a `Vec`'s three words). To fit, the byte sums are `u32`, the sum of
/// latencies a `u64`, the bin counts `u16`, and the count is the sum of the bins: an addition
/// that would overflow any of them, or span more than [`MAX_BINS`] bins, first moves the
/// entry's aggregate into [`StatKeeper::spilled`] (an [`EndpointStats`], which has room) and
/// starts the entry again, so nothing is lost or changed: [`StatKeeper::take`] merges the two.
/// (Rare: a `u32` of body bytes holds 4 GiB, a bin 65,535 samples.)
///
/// The body-size bucket counts live in the bins' allocation, before the latency bins
/// ([`SIZES`] `u16`s: request sizes, then response sizes): no room in the line, and while the
/// entry holds one sample its sizes are the byte sums, so a key's first sample still allocates
/// nothing. They overflow like the bins (a bucket past 65,535 spills the entry).
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    key: Key,
    request_bytes: u32,
    response_bytes: u32,
    /// The key of `bins[0]`.
    offset: i16,
    /// Latency bins in use; 0 while the entry holds one sample (`min_ns`), which takes no
    /// bins.
    len: u16,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    /// [`SIZES`] body-size bucket counts, then dense latency bin counts from `offset` up
    /// (zero past `len`); allocated at the second sample.
    bins: Box<[u16]>,
}

/// `u16`s of body-size bucket counts at the start of [`Slot::bins`]: request, then response.
const SIZES: usize = 2 * BODY_SIZE_BUCKETS;

impl Slot {
    /// An entry with nothing in it yet.
    fn empty(key: Key) -> Slot {
        Slot {
            key,
            request_bytes: 0,
            response_bytes: 0,
            offset: 0,
            len: 0,
            sum_ns: 0,
            min_ns: 0,
            max_ns: 0,
            bins: Box::default(),
        }
    }

    /// Empties the entry (keeping its bins' allocation).
    fn clear(&mut self) {
        if !self.bins.is_empty() {
            self.bins[..SIZES + usize::from(self.len)].fill(0);
        }
        *self = Slot {
            bins: std::mem::take(&mut self.bins),
            ..Slot::empty(self.key)
        };
    }

    /// Adds `p`; false (and nothing changed) when a field would overflow.
    #[inline]
    fn add(&mut self, p: &Pending) -> bool {
        let req = u32::try_from(p.request_bytes)
            .ok()
            .and_then(|n| self.request_bytes.checked_add(n));
        let resp = u32::try_from(p.response_bytes)
            .ok()
            .and_then(|n| self.response_bytes.checked_add(n));
        let (Some(req), Some(resp), Some(sum)) = (req, resp, self.sum_ns.checked_add(p.ns)) else {
            return false;
        };
        if self.sum_ns == 0 {
            // Empty (every latency is at least 1 ns): the first sample is kept without bins.
            self.min_ns = p.ns;
            self.max_ns = p.ns;
        } else {
            if self.len == 0 {
                // The second sample: the first moves into bins (its sizes are the sums).
                if !self.add_bin(bin_key(self.min_ns)) {
                    return false;
                }
                self.bins[body_size_bucket(self.request_bytes.into())] = 1;
                self.bins[BODY_SIZE_BUCKETS + body_size_bucket(self.response_bytes.into())] = 1;
            }
            let rq = usize::from(p.request_size);
            let rs = BODY_SIZE_BUCKETS + usize::from(p.response_size);
            if self.bins[rq] == u16::MAX || self.bins[rs] == u16::MAX || !self.add_bin(p.bin) {
                return false;
            }
            self.bins[rq] += 1;
            self.bins[rs] += 1;
            self.min_ns = self.min_ns.min(p.ns);
            self.max_ns = self.max_ns.max(p.ns);
        }
        self.request_bytes = req;
        self.response_bytes = resp;
        self.sum_ns = sum;
        true
    }

    /// Counts one sample in bin `key`; false (nothing changed) when the bin is full or the
    /// bins would span more than [`MAX_BINS`]. Grows with the slack the sketch's own store
    /// uses (a quarter, at least 8 bins).
    #[inline]
    fn add_bin(&mut self, key: i32) -> bool {
        let len = usize::from(self.len);
        if len == 0 {
            if self.bins.is_empty() {
                self.bins = vec![0; SIZES + 8].into_boxed_slice();
            }
            self.offset = key as i16;
            self.bins[SIZES] = 1;
            self.len = 1;
            return true;
        }
        let offset = i32::from(self.offset);
        if key >= offset {
            let idx = (key - offset) as usize;
            if let Some(c) = self.bins[SIZES..SIZES + len].get_mut(idx) {
                let Some(n) = c.checked_add(1) else {
                    return false;
                };
                *c = n;
                return true;
            }
            if idx >= MAX_BINS {
                return false;
            }
            self.reserve(idx + 1);
            self.bins[SIZES + idx] = 1;
            self.len = (idx + 1) as u16;
            return true;
        }
        let grow = (offset - key) as usize;
        if len + grow > MAX_BINS {
            return false;
        }
        self.reserve(len + grow);
        self.bins.copy_within(SIZES..SIZES + len, SIZES + grow);
        self.bins[SIZES + 1..SIZES + grow].fill(0);
        self.bins[SIZES] = 1;
        self.offset = key as i16;
        self.len = (len + grow) as u16;
        true
    }

    /// Makes room for `n` latency bins (the new ones zero).
    fn reserve(&mut self, n: usize) {
        if SIZES + n > self.bins.len() {
            let want = (n + n / 4).clamp(8, MAX_BINS).max(n);
            let mut bins = vec![0; SIZES + want].into_boxed_slice();
            let used = SIZES + usize::from(self.len);
            bins[..used].copy_from_slice(&self.bins[..used]);
            self.bins = bins;
        }
    }

    /// The aggregate held, as the snapshot's type; `None` when empty.
    fn stats(&self) -> Option<EndpointStats> {
        if self.sum_ns == 0 {
            return None;
        }
        let mut request_sizes = [0; BODY_SIZE_BUCKETS];
        let mut response_sizes = [0; BODY_SIZE_BUCKETS];
        let (count, bins) = if self.len == 0 {
            request_sizes[body_size_bucket(self.request_bytes.into())] = 1;
            response_sizes[body_size_bucket(self.response_bytes.into())] = 1;
            (1, &[][..])
        } else {
            let (sizes, bins) = self.bins[..SIZES + usize::from(self.len)].split_at(SIZES);
            for (i, &c) in sizes.iter().enumerate() {
                if i < BODY_SIZE_BUCKETS {
                    request_sizes[i] = c.into();
                } else {
                    response_sizes[i - BODY_SIZE_BUCKETS] = c.into();
                }
            }
            (bins.iter().map(|&c| u64::from(c)).sum(), bins)
        };
        Some(EndpointStats {
            count,
            request_bytes: self.request_bytes.into(),
            response_bytes: self.response_bytes.into(),
            request_sizes,
            response_sizes,
            latency: Sketch::from_parts(
                count,
                self.sum_ns.into(),
                self.min_ns,
                self.max_ns,
                self.offset.into(),
                bins,
            ),
        })
    }

    fn heap_bytes(&self) -> usize {
        self.bins.len() * 2
    }
}

/// Transactions [`StatKeeper::add_batch`] prepares before it updates their stats.
const CHUNK: usize = 32;

/// How many transactions ahead phase one asks for a transaction's cache lines.
const PREFETCH: usize = 8;

/// A hint to bring `p`'s cache line in; no effect on results (a prefetch never faults).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: `_mm_prefetch` only hints the cache; it reads nothing the program sees and
    // does not fault on any address. SSE is part of the x86_64 baseline (checked by cfg).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = p;
}

/// A transaction that phase one of [`StatKeeper::add_batch`] found fit to aggregate.
#[derive(Clone, Copy, Debug)]
struct Pending {
    key: Key,
    ns: u64,
    /// The latency's sketch bin, computed in phase one (a logarithm) to keep phase two short.
    bin: i32,
    request_bytes: u64,
    response_bytes: u64,
    /// The body sizes' buckets ([`body_size_bucket`]), computed in phase one.
    request_size: u8,
    response_size: u8,
    time_unix_ns: i64,
}

/// Per-endpoint aggregation; see the module docs.
#[derive(Debug)]
pub struct StatKeeper {
    cfg: KeeperConfig,
    quantizer: Quantizer,
    route_ids: HashMap<RouteKey, u32>,
    routes: Vec<Arc<str>>,
    peer_ids: HashMap<Peer, u32>,
    peers: Vec<Peer>,
    /// Ids of recently seen peers, by [`Peer::cache_index`] ([`NO_ID`] when empty); a hit is
    /// checked against `peers`.
    peer_cache: Box<[u32; CACHE]>,
    /// Ids of recently seen routes, by [`route_cache_index`] ([`NO_ID`] when empty); a hit
    /// is checked against `short_routes`.
    route_cache: Box<[u32; CACHE]>,
    /// Each route of `routes` zero-padded, or all `0xff` bytes (which no route matches) when
    /// longer than [`SHORT_PATH`].
    short_routes: Vec<ShortRoute>,
    stats: hashbrown::HashTable<Slot>,
    hasher: hashbrown::DefaultHashBuilder,
    /// What entries of `stats` moved out before a field of theirs would overflow.
    spilled: HashMap<Key, EndpointStats>,
    pending: Vec<Pending>,
    route: RouteBuf,
    counts: KeeperCounts,
    span: Option<(i64, i64)>,
}

/// Why a transaction's content is impossible, if it is.
pub fn validate(tx: &Transaction) -> Result<Method, MalformedReason> {
    let method = tx.method.ok_or(MalformedReason::UnknownMethod)?;
    if tx.path.is_empty() {
        return Err(MalformedReason::EmptyPath);
    }
    if !is_printable(&tx.path) {
        return Err(MalformedReason::NonPrintablePath);
    }
    validate_rest(tx)?;
    Ok(method)
}

/// The checks of [`validate`] after the path's.
#[inline]
fn validate_rest(tx: &Transaction) -> Result<(), MalformedReason> {
    match tx.status {
        Some(100..=599) => {}
        _ => return Err(MalformedReason::StatusOutOfRange),
    }
    if tx.end_ns <= tx.start_ns {
        return Err(MalformedReason::NonPositiveLatency);
    }
    Ok(())
}

impl StatKeeper {
    /// A keeper with the given limits and route quantizer.
    pub fn new(cfg: KeeperConfig, quantizer: Quantizer) -> Self {
        StatKeeper {
            cfg,
            quantizer,
            route_ids: HashMap::new(),
            routes: Vec::new(),
            peer_ids: HashMap::new(),
            peers: Vec::new(),
            peer_cache: Box::new([NO_ID; CACHE]),
            route_cache: Box::new([NO_ID; CACHE]),
            short_routes: Vec::new(),
            stats: hashbrown::HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            spilled: HashMap::new(),
            pending: Vec::new(),
            route: RouteBuf::new(),
            counts: KeeperCounts::default(),
            span: None,
        }
    }

    /// Adds one transaction. [`StatKeeper::add_batch`] is faster for many.
    #[inline]
    pub fn add(&mut self, tx: &Transaction) {
        if let Some(p) = self.prepare(tx) {
            self.commit(&p);
        }
    }

    /// Adds transactions in order, with the same result as [`StatKeeper::add`] on each.
    ///
    /// Why: the stats table and the sketches' bins of thousands of keys do not stay in the
    /// CPU's caches, so finding a key's entry is a cache miss or two. Done one transaction at a
    /// time, each miss waits alone behind the route quantization of the next transaction; here
    /// a chunk of transactions is validated, quantized and interned first (phase one, which
    /// touches only small hot tables), then the stats of the whole chunk are updated (phase
    /// two: short independent updates, so the CPU overlaps their misses).
    pub fn add_batch(&mut self, txs: &[Transaction]) {
        let mut pending = std::mem::take(&mut self.pending);
        for (c, chunk) in txs.chunks(CHUNK).enumerate() {
            pending.clear();
            let ahead = &txs[(c * CHUNK + PREFETCH).min(txs.len())..];
            for (i, tx) in chunk.iter().enumerate() {
                if let Some(next) = ahead.get(i) {
                    let p = (next as *const Transaction).cast::<u8>();
                    prefetch(p);
                    prefetch(p.wrapping_add(64));
                    prefetch(p.wrapping_add(128));
                }
                if let Some(p) = self.prepare(tx) {
                    pending.push(p);
                }
            }
            self.commit_chunk(&pending);
        }
        self.pending = pending;
    }

    /// Phase two for a chunk of at most [`CHUNK`] transactions. First every key's table entry
    /// is found and the bin its latency goes to is read (and discarded): a short loop of
    /// independent lookups, so the CPU has the entries' and the bins' cache misses of many
    /// transactions in flight at once. Then each entry found is updated where it lies; the
    /// rest (new keys, overflows) take [`StatKeeper::commit`]'s general way, and once a key
    /// was inserted (which may move entries) so do all the chunk's remaining transactions.
    #[inline]
    fn commit_chunk(&mut self, pending: &[Pending]) {
        use std::hash::BuildHasher;
        const NONE: usize = usize::MAX;
        let mut found = [NONE; CHUNK];
        for (at, p) in found.iter_mut().zip(pending) {
            let hash = self.hasher.hash_one(p.key);
            if let Some(i) = self.stats.find_bucket_index(hash, |s| s.key == p.key) {
                *at = i;
                if let Some(slot) = self.stats.get_bucket(i) {
                    let idx = (p.bin - i32::from(slot.offset)) as usize;
                    std::hint::black_box(slot.bins.get(SIZES.wrapping_add(idx)).copied());
                }
            }
        }
        let mut moved = false;
        for (&at, p) in found.iter().zip(pending) {
            if !moved && at != NONE {
                if let Some(slot) = self.stats.get_bucket_mut(at) {
                    if slot.add(p) {
                        self.counted(p);
                        continue;
                    }
                }
            }
            let keys = self.stats.len();
            self.commit(p);
            moved |= self.stats.len() != keys;
        }
    }

    /// Phase one: counts the transaction, validates, quantizes and interns it; `None` when it
    /// is not to be aggregated (counted why).
    #[inline]
    fn prepare(&mut self, tx: &Transaction) -> Option<Pending> {
        self.counts.transactions += 1;
        if tx.incomplete {
            self.counts.incomplete += 1;
            return None;
        }
        // `validate`'s checks in its order, the path's done by the quantizer's pass (which
        // reads every byte anyway); drop rules apply to valid transactions only.
        let Some(method) = tx.method else {
            self.counts.malformed.inc(MalformedReason::UnknownMethod);
            return None;
        };
        if tx.path.is_empty() {
            self.counts.malformed.inc(MalformedReason::EmptyPath);
            return None;
        }
        let routed = self.quantizer.route_checked(&tx.path, &mut self.route);
        let checked = if routed == Checked::NonPrintable {
            Err(MalformedReason::NonPrintablePath)
        } else {
            validate_rest(tx)
        };
        if let Err(reason) = checked {
            self.counts.malformed.inc(reason);
            return None;
        }
        if routed == Checked::Dropped {
            self.counts.filtered += 1;
            return None;
        }
        let short = self.route.short().map(|r| (route_cache_index(&r), r));
        let hit = short.and_then(|(i, r)| {
            let id = self.route_cache[i];
            let c = self.short_routes.get(id as usize)?;
            // No early exit: a few vector compares.
            let diff = c.iter().zip(&r).fold(0, |d, (a, b)| d | (a ^ b));
            (diff == 0).then_some(id)
        });
        let route = match hit {
            Some(id) => id,
            None => self.intern_route(short)?,
        };
        let client = match self.cfg.client_rollup {
            ClientRollup::Full => tx.client,
            ClientRollup::Ip => tx.client.map(|c| SocketAddr::new(c.ip(), 0)),
            ClientRollup::All => None,
        };
        let peer = Peer {
            source: tx.source,
            side: tx.side,
            pid: tx.pid,
            server: tx.server,
            client,
            comm: tx.comm,
        };
        let at = peer.cache_index();
        let peer = match self.peer_cache[at] {
            id if self.peers.get(id as usize) == Some(&peer) => id,
            _ => {
                let id = match self.peer_ids.get(&peer) {
                    Some(&id) => id,
                    None => {
                        if self.peers.len() >= self.cfg.max_keys {
                            // Every key needs a peer, so this many peers means the cap is hit.
                            self.counts.dropped.inc(DropReason::KeyLimit);
                            return None;
                        }
                        let id = self.peers.len() as u32;
                        self.peers.push(peer);
                        self.peer_ids.insert(peer, id);
                        id
                    }
                };
                self.peer_cache[at] = id;
                id
            }
        };
        let ns = tx.duration_ns();
        Some(Pending {
            key: Key {
                peer,
                route,
                status: tx.status.unwrap_or(0),
                method,
            },
            ns,
            bin: bin_key(ns),
            request_bytes: tx.request_bytes,
            response_bytes: tx.response_bytes,
            request_size: body_size_bucket(tx.request_bytes) as u8,
            response_size: body_size_bucket(tx.response_bytes) as u8,
            time_unix_ns: tx.time_unix_ns,
        })
    }

    /// The route in [`StatKeeper::route`]'s id, interned if new (`None`: counted as dropped
    /// at the cap); `short` is its route cache index and zero-padded bytes, to fill the cache
    /// entry.
    #[inline(never)]
    fn intern_route(&mut self, short: Option<(usize, ShortRoute)>) -> Option<u32> {
        let id = match self.route_ids.get(&RouteBytes(self.route.as_bytes())) {
            Some(&id) => id,
            None => {
                if self.routes.len() >= self.cfg.max_keys {
                    // Every key needs a route, so this many routes means the key cap is hit.
                    self.counts.dropped.inc(DropReason::KeyLimit);
                    return None;
                }
                let id = self.routes.len() as u32;
                let r: Arc<str> = self.route.as_str().into();
                self.routes.push(r.clone());
                self.short_routes
                    .push(self.route.short().unwrap_or([u64::MAX; SHORT_PATH / 8]));
                self.route_ids.insert(RouteKey(r), id);
                id
            }
        };
        if let Some((i, r)) = short {
            self.route_cache[i] = id;
            // The route may have been interned from a path the short pass did not take.
            self.short_routes[id as usize] = r;
        }
        Some(id)
    }

    /// Phase two: adds a prepared transaction to its key's stats (or counts it dropped at the
    /// key cap).
    #[inline]
    fn commit(&mut self, p: &Pending) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(p.key);
        let slot = match self.stats.find_mut(hash, |s| s.key == p.key) {
            Some(slot) => slot,
            None => {
                if self.stats.len() >= self.cfg.max_keys {
                    self.counts.dropped.inc(DropReason::KeyLimit);
                    return;
                }
                let hasher = &self.hasher;
                self.stats
                    .insert_unique(hash, Slot::empty(p.key), |s| hasher.hash_one(s.key))
                    .into_mut()
            }
        };
        if !slot.add(p) {
            // A field would overflow: the aggregate so far goes aside and the entry starts
            // again with this transaction (or, if even that one does not fit, which takes a
            // body of 4 GiB, it goes aside too).
            let side = self.spilled.entry(p.key).or_default();
            if let Some(held) = slot.stats() {
                side.merge(&held);
            }
            slot.clear();
            if !slot.add(p) {
                let mut alone = EndpointStats {
                    count: 1,
                    request_bytes: p.request_bytes,
                    response_bytes: p.response_bytes,
                    latency: Sketch::new(),
                    ..EndpointStats::default()
                };
                alone.request_sizes[usize::from(p.request_size)] = 1;
                alone.response_sizes[usize::from(p.response_size)] = 1;
                alone.latency.add_binned(p.ns, p.bin);
                side.merge(&alone);
            }
        }
        self.counted(p);
    }

    /// Counts `p` as aggregated and widens the data's time span.
    #[inline]
    fn counted(&mut self, p: &Pending) {
        self.counts.aggregated += 1;
        if p.time_unix_ns > 0 {
            let end = p
                .time_unix_ns
                .saturating_add(p.ns.min(i64::MAX as u64) as i64);
            self.span = Some(match self.span {
                Some((a, b)) => (a.min(p.time_unix_ns), b.max(end)),
                None => (p.time_unix_ns, end),
            });
        }
    }

    /// The wall-clock span (Unix ns) of the aggregated transactions since the last call:
    /// first request byte to last response byte. `None` when no transaction carried a time.
    pub fn take_span(&mut self) -> Option<(i64, i64)> {
        self.span.take()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Counts since the last [`StatKeeper::take`].
    pub fn counts(&self) -> &KeeperCounts {
        &self.counts
    }

    /// Approximate heap bytes held by the keys and their values.
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot>() + 1;
        let routes: usize = self
            .routes
            .iter()
            .map(|r| r.len() + 16 + 8 + 24 + std::mem::size_of::<ShortRoute>())
            .sum::<usize>()
            + 2 * std::mem::size_of::<[u32; CACHE]>();
        let peers = self.peers.capacity() * std::mem::size_of::<Peer>()
            + self.peer_ids.capacity() * (std::mem::size_of::<(Peer, u32)>() + 1);
        let spilled = self.spilled.capacity() * (std::mem::size_of::<(Key, EndpointStats)>() + 1)
            + self
                .spilled
                .values()
                .map(|s| s.latency.heap_bytes())
                .sum::<usize>();
        self.stats.capacity() * slot
            + peers
            + self.stats.iter().map(Slot::heap_bytes).sum::<usize>()
            + spilled
            + routes
    }

    /// Takes everything aggregated since the previous call, leaving the keeper empty (its
    /// allocations are kept for the next interval).
    pub fn take(&mut self) -> (Vec<(EndpointKey, EndpointStats)>, KeeperCounts) {
        let routes = &self.routes;
        let peers = &self.peers;
        let spilled = &mut self.spilled;
        let entries = self
            .stats
            .drain()
            .filter_map(|slot| {
                let k = slot.key;
                let v = match (spilled.remove(&k), slot.stats()) {
                    (Some(mut side), Some(held)) => {
                        side.merge(&held);
                        side
                    }
                    (side, held) => side.or(held)?,
                };
                let p = &peers[k.peer as usize];
                Some((
                    EndpointKey {
                        source: p.source,
                        server: p.server,
                        client: p.client,
                        pid: p.pid,
                        comm: p.comm,
                        side: p.side,
                        method: k.method,
                        route: routes[k.route as usize].clone(),
                        status: k.status,
                    },
                    v,
                ))
            })
            .collect();
        debug_assert!(self.spilled.is_empty());
        // Routes and peers stay interned across intervals (most repeat) unless they fill
        // half the cap.
        if self.routes.len() >= self.cfg.max_keys / 2 {
            self.routes.clear();
            self.route_ids.clear();
            self.route_cache.fill(NO_ID);
            self.short_routes.clear();
        }
        if self.peers.len() >= self.cfg.max_keys / 2 {
            self.peers.clear();
            self.peer_ids.clear();
            self.peer_cache.fill(NO_ID);
        }
        (entries, std::mem::take(&mut self.counts))
    }
}

/// Aggregates a list of transactions the simple way (one `Vec` scan per transaction), for
/// tests that check the [`StatKeeper`] against an obviously correct model.
#[doc(hidden)]
pub fn naive_aggregate(
    txs: &[Transaction],
    quantizer: &Quantizer,
    rollup: ClientRollup,
) -> Vec<(EndpointKey, u64, u64, u64)> {
    let mut out: Vec<(EndpointKey, u64, u64, u64)> = Vec::new();
    let mut route = String::new();
    for tx in txs {
        if tx.incomplete {
            continue;
        }
        let Ok(method) = validate(tx) else { continue };
        if quantizer.route(&tx.path, &mut route) == Outcome::Dropped {
            continue;
        }
        let client = match rollup {
            ClientRollup::Full => tx.client,
            ClientRollup::Ip => tx.client.map(|c| SocketAddr::new(c.ip(), 0)),
            ClientRollup::All => None,
        };
        let key = EndpointKey {
            source: tx.source,
            server: tx.server,
            client,
            pid: tx.pid,
            comm: tx.comm,
            side: tx.side,
            method,
            route: route.as_str().into(),
            status: tx.status.unwrap_or(0),
        };
        match out.iter_mut().find(|(k, ..)| *k == key) {
            Some(e) => {
                e.1 += 1;
                e.2 += tx.request_bytes;
                e.3 += tx.response_bytes;
            }
            None => out.push((key, 1, tx.request_bytes, tx.response_bytes)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(
        method: Option<Method>,
        path: &str,
        status: Option<u16>,
        start: u64,
        end: u64,
    ) -> Transaction {
        Transaction {
            method,
            path: path.into(),
            status,
            start_ns: start,
            end_ns: end,
            request_bytes: 10,
            response_bytes: 100,
            client: Some("10.0.0.9:50123".parse().unwrap()),
            server: Some("10.0.0.1:80".parse().unwrap()),
            ..Transaction::default()
        }
    }

    fn keeper(max_keys: usize) -> StatKeeper {
        StatKeeper::new(
            KeeperConfig {
                max_keys,
                ..KeeperConfig::default()
            },
            Quantizer::heuristic(),
        )
    }

    #[test]
    fn validation_table() {
        let g = Some(Method::Get);
        let cases: [(Transaction, Result<Method, MalformedReason>); 8] = [
            (tx(g, "/a", Some(200), 1, 2), Ok(Method::Get)),
            (
                tx(None, "/a", Some(200), 1, 2),
                Err(MalformedReason::UnknownMethod),
            ),
            (tx(g, "", Some(200), 1, 2), Err(MalformedReason::EmptyPath)),
            (
                tx(g, "/a b", Some(200), 1, 2),
                Err(MalformedReason::NonPrintablePath),
            ),
            (
                tx(g, "/caf\u{e9}", Some(200), 1, 2),
                Err(MalformedReason::NonPrintablePath),
            ),
            (
                tx(g, "/a", Some(99), 1, 2),
                Err(MalformedReason::StatusOutOfRange),
            ),
            (
                tx(g, "/a", Some(600), 1, 2),
                Err(MalformedReason::StatusOutOfRange),
            ),
            (
                tx(g, "/a", Some(200), 2, 2),
                Err(MalformedReason::NonPositiveLatency),
            ),
        ];
        for (t, want) in cases {
            assert_eq!(validate(&t), want, "{t:?}");
        }
        assert_eq!(
            validate(&tx(g, "/a", None, 1, 2)),
            Err(MalformedReason::StatusOutOfRange)
        );
    }

    #[test]
    fn aggregates_by_route_and_counts_the_rest() {
        let mut k = keeper(100);
        let g = Some(Method::Get);
        k.add(&tx(g, "/users/1", Some(200), 0, 1_000_000));
        k.add(&tx(g, "/users/2", Some(200), 0, 3_000_000));
        k.add(&tx(g, "/users/3", Some(500), 0, 2_000_000));
        k.add(&tx(None, "/users/3", Some(500), 0, 2_000_000));
        let mut inc = tx(g, "/users/4", None, 0, 0);
        inc.incomplete = true;
        k.add(&inc);
        assert_eq!(k.len(), 2);
        let (mut entries, counts) = k.take();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(counts.transactions, 5);
        assert_eq!(counts.aggregated, 3);
        assert_eq!(counts.incomplete, 1);
        assert_eq!(counts.malformed.get(MalformedReason::UnknownMethod), 1);
        let (key, st) = &entries[0];
        assert_eq!(&*key.route, "/users/*");
        assert_eq!(key.status, 200);
        assert_eq!(key.client, Some("10.0.0.9:0".parse().unwrap()));
        assert_eq!(st.count, 2);
        assert_eq!(st.request_bytes, 20);
        // 10-byte requests and 100-byte responses: buckets (0, 64] and (64, 256].
        assert_eq!(st.request_sizes[1], 2);
        assert_eq!(st.response_sizes[2], 2);
        assert_eq!(st.request_sizes.iter().sum::<u64>(), 2);
        assert_eq!(entries[1].1.response_sizes[2], 1);
        assert_eq!(st.latency.max_ns(), Some(3_000_000));
        assert!(entries[1].0.is_error());
        assert!(k.is_empty());
        assert_eq!(k.counts().transactions, 0);
    }

    #[test]
    fn key_cap_drops_and_counts() {
        let mut k = keeper(3);
        for i in 0..10u16 {
            k.add(&tx(Some(Method::Get), "/a", Some(200 + i), 0, 5));
        }
        assert_eq!(k.len(), 3);
        assert_eq!(k.counts().dropped.get(DropReason::KeyLimit), 7);
        assert_eq!(k.counts().aggregated, 3);
    }

    #[test]
    fn sides_are_kept_apart() {
        let mut k = keeper(10);
        let mut a = tx(Some(Method::Get), "/x", Some(200), 0, 5);
        a.side = Some(Side::Client);
        let mut b = a.clone();
        b.side = Some(Side::Server);
        k.add(&a);
        k.add(&b);
        let (entries, _) = k.take();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|(_, s)| s.count == 1));
    }

    /// Every key's stats as adding each transaction to an `EndpointStats` of its own makes
    /// them (the pre-compact-entry keeper's way), sorted by key.
    fn reference(txs: &[Transaction]) -> Vec<(EndpointKey, EndpointStats)> {
        let quantizer = Quantizer::heuristic();
        let mut route = String::new();
        let mut out: std::collections::BTreeMap<EndpointKey, EndpointStats> = Default::default();
        for t in txs {
            quantizer.route(&t.path, &mut route);
            let key = EndpointKey {
                source: t.source,
                server: t.server,
                client: t.client.map(|c| SocketAddr::new(c.ip(), 0)),
                pid: t.pid,
                comm: t.comm,
                side: t.side,
                method: t.method.unwrap(),
                route: route.as_str().into(),
                status: t.status.unwrap(),
            };
            let s = out.entry(key).or_default();
            s.count += 1;
            s.request_bytes += t.request_bytes;
            s.response_bytes += t.response_bytes;
            s.request_sizes[linear_bucket(t.request_bytes)] += 1;
            s.response_sizes[linear_bucket(t.response_bytes)] += 1;
            s.latency.add(t.duration_ns());
        }
        out.into_iter().collect()
    }

    /// The body-size bucket by a scan of the bounds.
    fn linear_bucket(bytes: u64) -> usize {
        BODY_SIZE_BOUNDS
            .iter()
            .position(|&b| bytes <= b)
            .unwrap_or(BODY_SIZE_BOUNDS.len())
    }

    #[test]
    fn body_size_bucket_is_the_first_bound_not_below() {
        let mut sizes = vec![0, 1, 2, u64::MAX - 1, u64::MAX];
        for &b in &BODY_SIZE_BOUNDS {
            sizes.extend([b.saturating_sub(1), b, b + 1]);
        }
        for shift in 0..64 {
            let p = 1u64 << shift;
            sizes.extend([p - 1, p, p + 1, p | (p >> 1)]);
        }
        for n in sizes {
            assert_eq!(body_size_bucket(n), linear_bucket(n), "{n}");
        }
        assert_eq!(body_size_bucket(0), 0);
        assert_eq!(body_size_bucket(64), 1);
        assert_eq!(body_size_bucket(65), 2);
        assert_eq!(body_size_bucket((64 << 20) + 1), BODY_SIZE_BUCKETS - 1);
    }

    fn taken(k: &mut StatKeeper) -> Vec<(EndpointKey, EndpointStats)> {
        let (mut e, _) = k.take();
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e
    }

    #[test]
    fn compact_entries_give_the_same_stats_even_past_their_field_sizes() {
        let mut txs = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let path = ["/a/1", "/b/2", "/hot"][(x % 3) as usize];
            let mut t = tx(Some(Method::Get), path, Some(200), 0, 0);
            // `/hot`: one latency, so that one bin passes 65,535; `/a/*`: bodies whose sums
            // pass 4 GiB, and now and then a body over 4 GiB alone; `/b/*`: latencies over six
            // orders of magnitude and a few near `u64::MAX / 4` (the `u64` sum overflows).
            let ns = match path {
                "/hot" => 1_000_000,
                "/b/2" if i % 10_007 == 0 => u64::MAX / 4,
                _ => 1_000 + (x >> 8) % 1_000_000_000,
            };
            t.end_ns = ns;
            if path == "/a/1" {
                t.request_bytes = (x >> 3) % 100_000_000;
                t.response_bytes = if i % 5_003 == 0 { 5 << 30 } else { x % 300_000 };
            }
            txs.push(t);
        }
        let want = reference(&txs);
        let mut one = keeper(100);
        for t in &txs {
            one.add(t);
        }
        assert_eq!(taken(&mut one), want);
        let mut batched = keeper(100);
        for b in txs.chunks(1000) {
            batched.add_batch(b);
        }
        let got = taken(&mut batched);
        assert_eq!(got, want);
        // The cases above did happen.
        let hot = got.iter().find(|(k, _)| &*k.route == "/hot").unwrap();
        assert!(hot.1.count > 65_535);
        assert!(got
            .iter()
            .any(|(_, s)| s.response_bytes > u64::from(u32::MAX)));
        assert!(got
            .iter()
            .any(|(_, s)| s.latency.sum_ns() > u128::from(u64::MAX)));
        assert!(hot.1.request_sizes[1] > 65_535 && hot.1.response_sizes[2] > 65_535);
        let a = got.iter().find(|(k, _)| &*k.route == "/a/*").unwrap();
        assert!(a.1.response_sizes[BODY_SIZE_BUCKETS - 1] > 0);
        assert!(a.1.request_sizes.iter().filter(|&&c| c > 0).count() > 5);
        // And the keeper is empty and reusable afterwards.
        assert!(batched.is_empty() && batched.spilled.is_empty());
        batched.add_batch(&txs[..10]);
        assert_eq!(taken(&mut batched), reference(&txs[..10]));
    }

    #[test]
    fn compact_entries_past_the_bin_span() {
        // 1 ns and 2^63 ns are more than `MAX_BINS` bins apart: the entry starts again and
        // the sketch (which folds its lowest bins) gets both.
        let mut k = keeper(10);
        for (i, ns) in [5, 1u64 << 63, 1, 1 << 40, 7].into_iter().enumerate() {
            k.add(&tx(
                Some(Method::Get),
                "/x",
                Some(200),
                10,
                10 + ns + i as u64 % 2,
            ));
        }
        let e = taken(&mut k);
        assert_eq!(e.len(), 1);
        let s = &e[0].1;
        assert_eq!((s.count, s.latency.count()), (5, 5));
        assert_eq!(s.latency.min_ns(), Some(1));
        assert_eq!(s.latency.max_ns(), Some((1 << 63) + 1));
        assert_eq!(
            s.latency.sum_ns(),
            5 + (1 << 63) + 1 + 1 + (1 << 40) + 1 + 7
        );
        assert_eq!(s.request_bytes, 50);
    }

    /// The peer and route caches against the naive model: many peers (IPv4 and IPv6, with
    /// and without process, so that cache entries collide), short and long paths that
    /// quantize to the same routes, over several intervals of a keeper whose interned routes
    /// and peers are cleared now and then (half the key cap).
    #[test]
    fn caches_agree_with_the_naive_model_across_intervals() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let long = format!("/{}", "segment/".repeat(9));
        let mut k = keeper(2_000);
        let qz = Quantizer::heuristic();
        for interval in 0..6 {
            let mut txs = Vec::new();
            for _ in 0..700 {
                let r = next();
                // Letters only (a name, not an id): routes that differ past 16 bytes.
                let word: String = (0..3)
                    .map(|i| char::from(b'a' + ((r >> (8 + 5 * i)) % 26) as u8))
                    .collect();
                let path = match r % 7 {
                    6 => format!("/api/v1/accounts/settings/{word}"),
                    0 => format!("/users/{}", r % 1000),
                    1 => format!("/v{}/items/{}/x", r % 3, r % 77),
                    2 => format!("{long}{}", r % 5),
                    3 => format!("/users/{}{}", "9".repeat(70), r % 10),
                    4 => format!("/r{}/a", (r >> 8) % (300 * (interval + 1))),
                    _ => "/static/app.js?v=1".to_owned(),
                };
                let mut t = tx(Some(Method::Get), &path, Some(200), 0, 1 + r % 5_000);
                let c = (r >> 16) % 400 + 400 * interval;
                t.client = Some(if c.is_multiple_of(3) {
                    SocketAddr::new(std::net::Ipv6Addr::from(c as u128 * 77).into(), 1)
                } else {
                    SocketAddr::new(std::net::Ipv4Addr::from(c as u32 * 13).into(), 9)
                });
                if c.is_multiple_of(5) {
                    t.pid = Some(c as u32);
                    t.comm = Some(Comm::from_bytes(b"nginx"));
                }
                txs.push(t);
            }
            for b in txs.chunks(100) {
                k.add_batch(b);
            }
            let (mut got, counts) = k.take();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(counts.aggregated, 700);
            let got: Vec<_> = got
                .into_iter()
                .map(|(key, s)| (key, s.count, s.request_bytes, s.response_bytes))
                .collect();
            assert_eq!(
                got,
                naive_aggregate(&txs, &qz, ClientRollup::Ip),
                "{interval}"
            );
        }
        // The caches were emptied with the tables they point into.
        assert!(k.routes.len() < 1_000 && k.peers.len() < 1_000);
    }

    #[test]
    fn a_table_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn client_error_rule() {
        assert!(is_error(404, Some(Side::Client)));
        assert!(!is_error(404, Some(Side::Server)));
        assert!(!is_error(404, None));
        assert!(is_error(503, None));
    }
}
