//! Kernel events to per-socket byte streams to the HTTP parser.
//!
//! A stream is keyed by the socket cookie, which the kernel never reuses during a boot, so a
//! port or descriptor reused by a new connection always starts a new stream. Each stream owns
//! one [`Connection`] whose tuple is (local, remote): what the process sends is
//! [`Direction::Forward`], what it receives is [`Direction::Reverse`], and the observer owns
//! `tuple.src`. The table is bounded (`max_connections`), idle streams expire, and streams
//! whose socket closed are closed after a short linger (events of the last syscalls may still
//! be in the ring buffer behind the close).

use std::collections::hash_map::Entry;
use std::time::Duration;

use httpscope_http::{Config, ConnMeta, Connection, Direction, Endpoint, Output};
use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::{ConnTuple, Source, Tags};
use rustc_hash::FxHashMap;

use super::event::{Dir, Event, Kind, FLAG_FROM_START};

struct Stream {
    conn: Connection,
    last_ns: u64,
    closed_at: Option<u64>,
}

/// The per-socket streams of one capture.
pub struct Streams {
    map: FxHashMap<u64, Stream>,
    cfg: Config,
    max_connections: usize,
    idle_ns: u64,
    linger_ns: u64,
    wall_offset_ns: i64,
    source: Source,
    tags: Tags,
    /// Streams opened so far.
    pub opened: u64,
}

impl Streams {
    /// An empty table.
    pub fn new(
        cfg: Config,
        max_connections: usize,
        idle: Duration,
        linger: Duration,
        wall_offset_ns: i64,
    ) -> Self {
        Streams {
            map: FxHashMap::default(),
            cfg,
            max_connections: max_connections.max(1),
            idle_ns: idle.as_nanos() as u64,
            linger_ns: linger.as_nanos() as u64,
            wall_offset_ns,
            source: Source::Ebpf,
            tags: Tags::default(),
            opened: 0,
        }
    }

    /// The source and tags given to every connection of this table (default: `ebpf`, no
    /// tags). The TLS source keeps one table per library, with `source` `tls` and its
    /// `tls_library` tag, and reuses everything else.
    pub fn labelled(mut self, source: Source, tags: Tags) -> Self {
        self.source = source;
        self.tags = tags;
        self
    }

    /// Streams currently open.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Feeds one validated event.
    pub fn event<T: AsRef<[u8]>>(
        &mut self,
        ev: &Event<T>,
        out: &mut Output,
        stats: &mut SourceStats,
    ) {
        let cookie = ev.cookie();
        let ts = ev.ts_ns();
        if ev.kind() == Kind::Close {
            if let Some(s) = self.map.get_mut(&cookie) {
                s.closed_at = Some(ts);
            }
            return;
        }
        stats.bytes += ev.payload().len() as u64;
        // One hash lookup per event (entry), not contains_key + insert + get_mut.
        let full = self.map.len() >= self.max_connections;
        let s = match self.map.entry(cookie) {
            // The kernel flags only the first event after a socket became established
            // (inet_sock_set_state): the socket was connected again (connect after a close,
            // e.g. connect(AF_UNSPEC) then connect; the cookie stays). The old stream ends
            // where it was and a new one starts with this event's addresses; fed into the
            // old one, the new connection's bytes followed the old one's and went with it
            // when its close lingered out.
            Entry::Occupied(mut o) if ev.has_socket() && ev.flags() & FLAG_FROM_START != 0 => {
                let old = o.get_mut();
                old.conn
                    .close(old.closed_at.unwrap_or(0).max(old.last_ns), out);
                self.opened += 1;
                o.insert(Stream {
                    conn: Connection::new(
                        ConnTuple::new(ev.local(), ev.remote()),
                        meta(self.source, &self.tags, self.wall_offset_ns, ev),
                        &self.cfg,
                    ),
                    last_ns: ts,
                    closed_at: None,
                });
                o.into_mut()
            }
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                // A short event cannot open a stream (no addresses, no process): the kernel
                // sends a full one first and again every half idle timeout, so this is a
                // socket whose stream was not kept (the connection limit).
                if full || !ev.has_socket() {
                    stats.dropped.inc(DropReason::ConnectionLimit);
                    return;
                }
                let meta = meta(self.source, &self.tags, self.wall_offset_ns, ev);
                let tuple = ConnTuple::new(ev.local(), ev.remote());
                self.opened += 1;
                v.insert(Stream {
                    conn: Connection::new(tuple, meta, &self.cfg),
                    last_ns: ts,
                    closed_at: None,
                })
            }
        };
        s.last_ns = s.last_ns.max(ts);
        let dir = match ev.dir() {
            Dir::Send => Direction::Forward,
            Dir::Recv => Direction::Reverse,
        };
        // Bytes of this direction whose events the kernel's ring buffer had no room for come
        // first: without the gap a lost body chunk made the next request head count as body.
        // The parser counts it (parse.gaps, parse.gap_bytes) as it does the packet source's
        // holes; the lost events themselves are counted from the kernel's ringbuf_lost.
        let lost = ev.lost();
        if lost > 0 {
            s.conn.gap(dir, ts, u64::from(lost), out);
        }
        let payload = ev.payload();
        if !payload.is_empty() {
            s.conn.feed(dir, ts, payload, out);
        }
        let missing = u64::from(ev.len()).saturating_sub(payload.len() as u64);
        if missing > 0 {
            s.conn.gap(dir, ts, missing, out);
        }
    }

    /// Closes streams whose socket closed more than the linger ago, and streams idle for
    /// longer than the idle timeout (counted as expired). `now_ns` is on the kernel's clock.
    pub fn sweep(&mut self, now_ns: u64, out: &mut Output, stats: &mut SourceStats) {
        let (idle, linger) = (self.idle_ns, self.linger_ns);
        self.map.retain(|_, s| {
            if let Some(at) = s.closed_at {
                if now_ns.saturating_sub(at) >= linger {
                    s.conn.close(at.max(s.last_ns), out);
                    return false;
                }
                return true;
            }
            if now_ns.saturating_sub(s.last_ns) >= idle {
                s.conn.close(s.last_ns, out);
                stats.dropped.inc(DropReason::Expired);
                return false;
            }
            true
        });
    }

    /// Closes every stream (end of capture).
    pub fn close_all(&mut self, out: &mut Output) {
        for (_, mut s) in self.map.drain() {
            let at = s.closed_at.unwrap_or(s.last_ns).max(s.last_ns);
            s.conn.close(at, out);
        }
    }
}

/// The connection metadata of a stream opened by the full event `ev`.
fn meta<T: AsRef<[u8]>>(
    source: Source,
    tags: &Tags,
    wall_offset_ns: i64,
    ev: &Event<T>,
) -> ConnMeta {
    ConnMeta {
        source,
        pid: Some(ev.tgid()),
        comm: Some(ev.comm()),
        observer: Some(Endpoint::Src),
        wall_offset_ns,
        from_start: ev.flags() & FLAG_FROM_START != 0,
        tags: tags.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use httpscope_model::{Side, Transaction};

    use super::*;
    use crate::ebpf::event::{RawEvent, EVENT_SIZE};

    /// One ring-buffer record as the kernel writes it.
    fn record(
        cookie: u64,
        ts: u64,
        local: &str,
        remote: &str,
        dir: u8,
        payload: &[u8],
        len: u32,
    ) -> Vec<u8> {
        let (l, r): (SocketAddr, SocketAddr) = (local.parse().unwrap(), remote.parse().unwrap());
        let v4 = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&ip.octets());
                b
            }
            std::net::IpAddr::V6(ip) => ip.octets(),
        };
        let raw = RawEvent {
            ts_ns: ts,
            cookie,
            tgid: 7,
            tid: 7,
            len,
            captured: payload.len() as u32,
            family: if l.is_ipv4() { 2 } else { 10 },
            lport: l.port(),
            rport: r.port(),
            kind: if len == 0 && payload.is_empty() { 2 } else { 1 },
            direction: dir,
            syscall: 1,
            flags: 1,
            laddr: v4(l),
            raddr: v4(r),
            comm: *b"srv\0\0\0\0\0\0\0\0\0\0\0\0\0",
            ..RawEvent::default()
        };
        // SAFETY: RawEvent is repr(C) plain data without padding bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(&raw as *const RawEvent as *const u8, EVENT_SIZE) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// The record as a socket's later full event (the kernel flags only the first one).
    fn later(rec: &[u8]) -> Vec<u8> {
        let mut v = rec.to_vec();
        v[41] &= !FLAG_FROM_START;
        v
    }

    /// Streams for up to 16 sockets idle for at most 60 s, closed ones kept `linger`.
    fn streams(linger: Duration) -> Streams {
        Streams::new(Config::default(), 16, Duration::from_secs(60), linger, 0)
    }

    fn feed(s: &mut Streams, rec: &[u8], out: &mut Output, st: &mut SourceStats) {
        s.event(&Event::new_checked(rec).unwrap(), out, st);
    }

    const REQ: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    const RESP_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";

    #[test]
    fn reused_tuple_with_a_new_cookie_is_a_new_connection_and_lengths_fill_bodies() {
        let mut s = streams(Duration::ZERO);
        let (mut out, mut st) = (Output::default(), SourceStats::default());
        let (srv, cli) = ("127.0.0.1:80", "127.0.0.1:40000");
        // Connection 1 (cookie 1): request received, head + 100 body bytes captured of 1040 sent.
        feed(
            &mut s,
            &record(1, 10, srv, cli, 1, REQ, REQ.len() as u32),
            &mut out,
            &mut st,
        );
        let mut first = RESP_HEAD.to_vec();
        first.extend_from_slice(&[b'x'; 100]);
        feed(
            &mut s,
            &later(&record(
                1,
                20,
                srv,
                cli,
                0,
                &first,
                RESP_HEAD.len() as u32 + 1000,
            )),
            &mut out,
            &mut st,
        );
        // Connection 2 reuses the same ports but is another socket (cookie 2): its request
        // must not be paired with anything of connection 1.
        feed(
            &mut s,
            &record(2, 30, srv, cli, 1, REQ, REQ.len() as u32),
            &mut out,
            &mut st,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(out.transactions.len(), 1, "{:?}", out.transactions);
        let t = &out.transactions[0];
        assert_eq!(
            (t.status, t.response_bytes, t.side, t.pid),
            (Some(200), 1000, Some(Side::Server), Some(7))
        );
        assert_eq!(t.server, Some(srv.parse().unwrap()));
        // Close of cookie 2, then sweep: its request becomes incomplete.
        feed(
            &mut s,
            &record(2, 40, srv, cli, 0, b"", 0),
            &mut out,
            &mut st,
        );
        s.sweep(50, &mut out, &mut st);
        assert_eq!(s.len(), 1);
        assert_eq!(out.transactions.len(), 2);
        assert!(out.transactions[1].incomplete);
    }

    /// The record with the kernel's short header (no addresses, no comm).
    fn short(rec: &[u8]) -> Vec<u8> {
        use crate::ebpf::event::{KIND_DATA_SHORT, SHORT_EVENT_SIZE};
        let mut v = rec[..SHORT_EVENT_SIZE].to_vec();
        v[38] = KIND_DATA_SHORT;
        v[32..38].fill(0);
        v.extend_from_slice(&rec[EVENT_SIZE..]);
        v
    }

    #[test]
    fn short_events_continue_a_known_socket_and_cannot_open_one() {
        let mut s = streams(Duration::ZERO);
        let (mut out, mut st) = (Output::default(), SourceStats::default());
        let (srv, cli) = ("127.0.0.1:80", "127.0.0.1:40000");
        // A short event of a socket never seen is dropped and counted.
        let lone = short(&record(9, 5, srv, cli, 1, REQ, REQ.len() as u32));
        feed(&mut s, &lone, &mut out, &mut st);
        assert!(s.is_empty());
        assert_eq!(st.dropped.get(DropReason::ConnectionLimit), 1);
        // Full first event, then short ones: one transaction with the full event's
        // addresses and process, the body counted from the short events' lengths.
        feed(
            &mut s,
            &record(1, 10, srv, cli, 1, REQ, REQ.len() as u32),
            &mut out,
            &mut st,
        );
        let head = short(&record(
            1,
            20,
            srv,
            cli,
            0,
            RESP_HEAD,
            RESP_HEAD.len() as u32,
        ));
        feed(&mut s, &head, &mut out, &mut st);
        let body = short(&record(1, 30, srv, cli, 0, b"", 1000));
        feed(&mut s, &body, &mut out, &mut st);
        assert_eq!(out.transactions.len(), 1, "{:?}", out.transactions);
        let t = &out.transactions[0];
        assert_eq!(
            (t.status, t.response_bytes, t.side, t.pid),
            (Some(200), 1000, Some(Side::Server), Some(7))
        );
        assert_eq!(t.server, Some(srv.parse().unwrap()));
        assert_eq!(t.comm.map(|c| c.to_string()).as_deref(), Some("srv"));
    }

    #[test]
    fn connection_limit_and_idle_expiry_are_counted() {
        let mut s = Streams::new(
            Config::default(),
            1,
            Duration::from_nanos(100),
            Duration::ZERO,
            0,
        );
        let (mut out, mut st) = (Output::default(), SourceStats::default());
        feed(
            &mut s,
            &record(1, 10, "[::1]:80", "[::1]:5000", 1, REQ, REQ.len() as u32),
            &mut out,
            &mut st,
        );
        feed(
            &mut s,
            &record(2, 10, "[::1]:80", "[::1]:5001", 1, REQ, REQ.len() as u32),
            &mut out,
            &mut st,
        );
        assert_eq!(st.dropped.get(DropReason::ConnectionLimit), 1);
        s.sweep(1_000, &mut out, &mut st);
        assert_eq!(st.dropped.get(DropReason::Expired), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn a_socket_connected_again_under_the_same_cookie_is_a_new_connection() {
        let mut s = streams(Duration::from_nanos(100));
        let (mut out, mut st) = (Output::default(), SourceStats::default());
        let (cli, srv1, srv2) = ("127.0.0.1:40000", "127.0.0.1:81", "127.0.0.1:82");
        let (ok, missing) = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        );
        for rec in [
            // A client socket: request to server 1, its response, then the socket closes.
            record(1, 10, cli, srv1, 0, REQ, REQ.len() as u32),
            short(&record(1, 20, cli, srv1, 1, ok, ok.len() as u32)),
            record(1, 30, cli, srv1, 0, b"", 0),
            // The same socket (same cookie) connects to server 2: the kernel starts it over,
            // its first event full and flagged from the start, the next ones short.
            record(1, 50, cli, srv2, 0, REQ, REQ.len() as u32),
            short(&record(1, 60, cli, srv2, 1, missing, missing.len() as u32)),
        ] {
            feed(&mut s, &rec, &mut out, &mut st);
        }
        // Past the first connection's linger the second one is still followed.
        s.sweep(1_000, &mut out, &mut st);
        assert_eq!(s.len(), 1, "the second connection's stream is kept");
        feed(
            &mut s,
            &short(&record(1, 1_100, cli, srv2, 0, REQ, REQ.len() as u32)),
            &mut out,
            &mut st,
        );
        s.close_all(&mut out);
        let got: Vec<_> = out
            .transactions
            .iter()
            .map(|t| (t.server, t.status, t.incomplete))
            .collect();
        let (a1, a2) = (Some(srv1.parse().unwrap()), Some(srv2.parse().unwrap()));
        assert_eq!(
            got,
            [
                (a1, Some(200), false),
                (a2, Some(404), false),
                (a2, None, true)
            ],
            "{:#?}",
            out.transactions
        );
        assert_eq!(s.opened, 2);
    }

    /// The record carrying `lost` bytes the ring buffer had no room for before it.
    fn with_lost(rec: &[u8], lost: u32) -> Vec<u8> {
        let mut v = rec.to_vec();
        v[44..48].copy_from_slice(&lost.to_ne_bytes());
        v
    }

    /// A keep-alive connection seen from the server: a POST whose 100-byte body came in two
    /// reads, the second read's event lost in the kernel (its 60 bytes told by the socket's
    /// next received event, `lost`), then a GET. Returns the transactions and parse stats.
    fn lost_body_chunk(lost: u32, short_header: bool) -> (Vec<Transaction>, SourceStats) {
        let mut s = streams(Duration::ZERO);
        let (mut out, mut st) = (Output::default(), SourceStats::default());
        let (srv, cli) = ("127.0.0.1:80", "127.0.0.1:40000");
        let mut post = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".to_vec();
        post.extend_from_slice(&[b'b'; 40]);
        let first = record(1, 10, srv, cli, 1, &post, post.len() as u32);
        feed(&mut s, &first, &mut out, &mut st);
        // ts 20: the read of the body's last 60 bytes; its event was lost.
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let resp = |ts| {
            let r = later(&record(1, ts, srv, cli, 0, OK, OK.len() as u32));
            if short_header {
                short(&r)
            } else {
                r
            }
        };
        feed(&mut s, &resp(30), &mut out, &mut st);
        const GET: &[u8] = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut get = later(&record(1, 40, srv, cli, 1, GET, GET.len() as u32));
        if short_header {
            get = short(&get);
        }
        feed(&mut s, &with_lost(&get, lost), &mut out, &mut st);
        feed(&mut s, &resp(50), &mut out, &mut st);
        s.close_all(&mut out);
        st.parse.merge(&out.stats);
        (out.transactions, st)
    }

    #[test]
    fn bytes_the_kernel_lost_are_a_gap_before_the_next_event_of_their_direction() {
        for short_header in [false, true] {
            let (txs, st) = lost_body_chunk(60, short_header);
            let got: Vec<_> = txs
                .iter()
                .map(|t| {
                    (
                        t.method.as_ref().map(|m| m.to_string()),
                        t.path.to_string(),
                        t.status,
                        t.request_bytes,
                        t.incomplete,
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (Some("POST".into()), "/up".into(), Some(200), 100, false),
                    (Some("GET".into()), "/next".into(), Some(200), 0, false),
                ],
                "short header: {short_header}"
            );
            assert_eq!((st.parse.gaps, st.parse.gap_bytes), (1, 60));
            assert_eq!(st.parse.resyncs, 0);
        }
        // Without the lost count (what user space got before) the GET's head is taken as the
        // POST's missing body: the GET is never seen.
        let (txs, st) = lost_body_chunk(0, false);
        assert!(
            txs.iter().all(|t| t.path != "/next"),
            "the scenario no longer shows the mis-framing: {txs:?}"
        );
        assert_eq!(st.parse.gaps, 0);
    }
}
