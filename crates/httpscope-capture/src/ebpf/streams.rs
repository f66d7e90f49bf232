//! Kernel events to per-socket byte streams to the HTTP parser.
//!
//! A stream is keyed by the socket cookie, which the kernel never reuses during a boot, so a
//! port or descriptor reused by a new connection always starts a new stream. Each stream owns
//! one [`Connection`] whose tuple is (local, remote): what the process sends is
//! [`Direction::Forward`], what it receives is [`Direction::Reverse`], and the observer owns
//! `tuple.src`. The table is bounded (`max_connections`), idle streams expire, and streams
//! whose socket closed are closed after a short linger (events of the last syscalls may still
//! be in the ring buffer behind the close).

use std::time::Duration;

use httpscope_http::{Config, ConnMeta, Connection, Direction, Endpoint, Output};
use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::{ConnTuple, Source};
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
            opened: 0,
        }
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
        if !self.map.contains_key(&cookie) {
            if self.map.len() >= self.max_connections {
                stats.dropped.inc(DropReason::ConnectionLimit);
                return;
            }
            let meta = ConnMeta {
                source: Source::Ebpf,
                pid: Some(ev.tgid()),
                comm: Some(ev.comm()),
                observer: Some(Endpoint::Src),
                wall_offset_ns: self.wall_offset_ns,
                from_start: ev.flags() & FLAG_FROM_START != 0,
                ..ConnMeta::default()
            };
            let tuple = ConnTuple::new(ev.local(), ev.remote());
            let conn = Connection::new(tuple, meta, &self.cfg);
            self.map.insert(
                cookie,
                Stream {
                    conn,
                    last_ns: ts,
                    closed_at: None,
                },
            );
            self.opened += 1;
        }
        let Some(s) = self.map.get_mut(&cookie) else {
            return;
        };
        s.last_ns = s.last_ns.max(ts);
        let dir = match ev.dir() {
            Dir::Send => Direction::Forward,
            Dir::Recv => Direction::Reverse,
        };
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
