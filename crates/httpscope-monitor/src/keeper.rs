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

use crate::route::{Outcome, Quantizer};
use crate::sketch::{bin_key, Sketch};

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

/// The aggregate of one endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointStats {
    /// Transactions.
    pub count: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// Latencies (first request byte to last response byte).
    pub latency: Sketch,
}

impl EndpointStats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &EndpointStats) {
        self.count += other.count;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    peer: u32,
    route: u32,
    status: u16,
    method: Method,
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
    time_unix_ns: i64,
}

/// Per-endpoint aggregation; see the module docs.
#[derive(Debug)]
pub struct StatKeeper {
    cfg: KeeperConfig,
    quantizer: Quantizer,
    route_ids: HashMap<Arc<str>, u32>,
    routes: Vec<Arc<str>>,
    peer_ids: HashMap<Peer, u32>,
    peers: Vec<Peer>,
    /// The last peer seen and its id: the transactions of one connection usually come one
    /// after another in a batch, so most lookups of the peer table are skipped.
    last_peer: Option<(Peer, u32)>,
    stats: HashMap<Key, EndpointStats>,
    pending: Vec<Pending>,
    scratch: String,
    counts: KeeperCounts,
    span: Option<(i64, i64)>,
}

/// Why a transaction's content is impossible, if it is.
pub fn validate(tx: &Transaction) -> Result<Method, MalformedReason> {
    let method = tx.method.ok_or(MalformedReason::UnknownMethod)?;
    if tx.path.is_empty() {
        return Err(MalformedReason::EmptyPath);
    }
    // `fold` rather than `all`: no early exit, so the loop is vectorized (valid paths, the
    // common case, are scanned to the end either way).
    if !tx
        .path
        .bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x21) < 0x5e))
    {
        return Err(MalformedReason::NonPrintablePath);
    }
    match tx.status {
        Some(100..=599) => {}
        _ => return Err(MalformedReason::StatusOutOfRange),
    }
    if tx.end_ns <= tx.start_ns {
        return Err(MalformedReason::NonPositiveLatency);
    }
    Ok(method)
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
            last_peer: None,
            stats: HashMap::new(),
            pending: Vec::new(),
            scratch: String::with_capacity(64),
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
        const CHUNK: usize = 32;
        let mut pending = std::mem::take(&mut self.pending);
        for chunk in txs.chunks(CHUNK) {
            pending.clear();
            pending.extend(chunk.iter().filter_map(|tx| self.prepare(tx)));
            for p in &pending {
                self.commit(p);
            }
        }
        self.pending = pending;
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
        let method = match validate(tx) {
            Ok(m) => m,
            Err(reason) => {
                self.counts.malformed.inc(reason);
                return None;
            }
        };
        if self.quantizer.route(&tx.path, &mut self.scratch) == Outcome::Dropped {
            self.counts.filtered += 1;
            return None;
        }
        let route = match self.route_ids.get(self.scratch.as_str()) {
            Some(&id) => id,
            None => {
                if self.routes.len() >= self.cfg.max_keys {
                    // Every key needs a route, so this many routes means the key cap is hit.
                    self.counts.dropped.inc(DropReason::KeyLimit);
                    return None;
                }
                let id = self.routes.len() as u32;
                let r: Arc<str> = self.scratch.as_str().into();
                self.routes.push(r.clone());
                self.route_ids.insert(r, id);
                id
            }
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
        let peer = match self.last_peer {
            Some((p, id)) if p == peer => id,
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
                self.last_peer = Some((peer, id));
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
            time_unix_ns: tx.time_unix_ns,
        })
    }

    /// Phase two: adds a prepared transaction to its key's stats (or counts it dropped at the
    /// key cap).
    #[inline]
    fn commit(&mut self, p: &Pending) {
        let len = self.stats.len();
        let stats = match self.stats.entry(p.key) {
            hashbrown::hash_map::Entry::Occupied(e) => e.into_mut(),
            hashbrown::hash_map::Entry::Vacant(e) => {
                if len >= self.cfg.max_keys {
                    self.counts.dropped.inc(DropReason::KeyLimit);
                    return;
                }
                e.insert(EndpointStats::default())
            }
        };
        stats.count += 1;
        stats.request_bytes += p.request_bytes;
        stats.response_bytes += p.response_bytes;
        stats.latency.add_binned(p.ns, p.bin);
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
        let slot = std::mem::size_of::<(Key, EndpointStats)>() + 1;
        let routes: usize = self.routes.iter().map(|r| r.len() + 16 + 8 + 24).sum();
        let peers = self.peers.capacity() * std::mem::size_of::<Peer>()
            + self.peer_ids.capacity() * (std::mem::size_of::<(Peer, u32)>() + 1);
        self.stats.capacity() * slot
            + peers
            + self
                .stats
                .values()
                .map(|s| s.latency.heap_bytes())
                .sum::<usize>()
            + routes
    }

    /// Takes everything aggregated since the previous call, leaving the keeper empty (its
    /// allocations are kept for the next interval).
    pub fn take(&mut self) -> (Vec<(EndpointKey, EndpointStats)>, KeeperCounts) {
        let routes = &self.routes;
        let peers = &self.peers;
        let entries = self
            .stats
            .drain()
            .map(|(k, v)| {
                let p = &peers[k.peer as usize];
                (
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
                )
            })
            .collect();
        // Routes and peers stay interned across intervals (most repeat) unless they fill
        // half the cap.
        if self.routes.len() >= self.cfg.max_keys / 2 {
            self.routes.clear();
            self.route_ids.clear();
        }
        if self.peers.len() >= self.cfg.max_keys / 2 {
            self.peers.clear();
            self.peer_ids.clear();
            self.last_peer = None;
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

    #[test]
    fn client_error_rule() {
        assert!(is_error(404, Some(Side::Client)));
        assert!(!is_error(404, Some(Side::Server)));
        assert!(!is_error(404, None));
        assert!(is_error(503, None));
    }
}
