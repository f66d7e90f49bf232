use httpscope_model::ConnTuple;

use crate::http1::{Ctx, Exit, Http1};
use crate::scan::{is_h2_preface, message_start, Kind, Start};
use crate::{Config, ConnMeta, Direction, Output};

/// What a connection turned out to carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Not decided yet: too few bytes seen.
    Unknown,
    /// HTTP/1.0 or 1.1: parsed.
    Http1,
    /// HTTP/2 (prior-knowledge preface or `Upgrade: h2c`): counted, not parsed yet.
    Http2,
    /// Something else (TLS records, a database protocol...): counted and ignored.
    NotHttp,
    /// Was HTTP/1 until a 101 Switching Protocols or a CONNECT tunnel; the rest is ignored.
    Upgraded,
}

/// The longest prefix needed to tell HTTP/1, HTTP/2 and other protocols apart: the HTTP/2
/// preface (RFC 9113 §3.4) is 24 bytes.
const DETECT_LEN: usize = 24;

#[derive(Debug)]
enum State {
    /// Seen from the start, no decision yet; holds the first bytes (all from `dir`).
    Detect {
        dir: Direction,
        ts: u64,
        len: u8,
        buf: [u8; DETECT_LEN],
    },
    Http1(Box<Http1>),
    /// Not parsed any further.
    Ignore(Protocol),
    Closed,
}

/// One TCP connection's protocol layer: it decides from the first bytes whether the
/// connection carries HTTP/1.x, HTTP/2 or something else, then hands HTTP/1.x to the parser.
///
/// HTTP/2 is recognised (prior-knowledge preface, `Upgrade: h2c`) and counted; its parser
/// will sit here beside HTTP/1 without changing the sources' calls.
#[derive(Debug)]
pub struct Connection {
    ends: Ends,
    state: State,
}

/// What the parser reads on every call, kept apart from the state it changes.
#[derive(Debug)]
struct Ends {
    tuple: ConnTuple,
    meta: ConnMeta,
    cfg: Config,
}

impl Ends {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            tuple: &self.tuple,
            meta: &self.meta,
            cfg: &self.cfg,
        }
    }
}

impl Connection {
    /// A connection between the two ends of `tuple`, described by `meta`.
    pub fn new(tuple: ConnTuple, meta: ConnMeta, cfg: &Config) -> Self {
        let state = if meta.from_start {
            State::Detect {
                dir: Direction::Forward,
                ts: 0,
                len: 0,
                buf: [0; DETECT_LEN],
            }
        } else {
            State::Http1(Box::new(Http1::mid_stream()))
        };
        Connection {
            ends: Ends {
                tuple,
                meta,
                cfg: cfg.clone(),
            },
            state,
        }
    }

    /// Feeds the next chunk of one direction, received at `ts_ns` on the source's clock.
    /// Chunks of one direction must come in stream order; the two directions interleave in
    /// the order they were observed.
    pub fn feed(&mut self, dir: Direction, ts_ns: u64, data: &[u8], out: &mut Output) {
        if data.is_empty() {
            return;
        }
        match &mut self.state {
            State::Http1(h) => {
                let ctx = self.ends.ctx();
                h.feed(dir, ts_ns, data, &ctx, out);
                self.check_exit(out);
            }
            State::Detect {
                dir: first_dir,
                ts,
                len,
                buf,
            } => {
                let kept = usize::from(*len);
                if kept > 0 && *first_dir != dir {
                    // The other side spoke before the first one said anything decisive: not
                    // an HTTP exchange.
                    self.ignore(Protocol::NotHttp, out);
                    return;
                }
                let mut joined = *buf;
                let extra = data.len().min(DETECT_LEN - kept);
                joined[kept..kept + extra].copy_from_slice(&data[..extra]);
                // A client may send a stray line end before its first request (RFC 9112
                // §2.2); decide on what follows it.
                let lead = joined[..kept + extra]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                let head = &joined[lead..kept + extra];
                match (is_h2_preface(head), message_start(head, None)) {
                    (Some(true), _) => self.ignore(Protocol::Http2, out),
                    (_, Start::Yes(kind)) => {
                        let (start_ts, held) = if kept > 0 {
                            (*ts, Some((*buf, kept)))
                        } else {
                            (ts_ns, None)
                        };
                        self.start_http1(dir, kind, start_ts, held, ts_ns, data, out);
                    }
                    (None, _) | (_, Start::More) if kept + extra < DETECT_LEN => {
                        if kept == 0 {
                            *first_dir = dir;
                            *ts = ts_ns;
                        }
                        buf[kept..kept + extra].copy_from_slice(&data[..extra]);
                        *len += extra as u8;
                    }
                    _ => self.ignore(Protocol::NotHttp, out),
                }
            }
            State::Ignore(_) | State::Closed => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_http1(
        &mut self,
        dir: Direction,
        kind: Kind,
        start_ts: u64,
        held: Option<([u8; DETECT_LEN], usize)>,
        ts_ns: u64,
        data: &[u8],
        out: &mut Output,
    ) {
        out.stats.http1_connections += 1;
        let mut h = Box::new(Http1::at_start(dir, kind));
        let ctx = self.ends.ctx();
        if let Some((buf, len)) = held {
            h.feed(dir, start_ts, &buf[..len], &ctx, out);
        }
        h.feed(dir, ts_ns, data, &ctx, out);
        self.state = State::Http1(h);
        self.check_exit(out);
    }

    fn check_exit(&mut self, out: &mut Output) {
        if let State::Http1(h) = &self.state {
            if h.exit().is_some() {
                // The parser is dropped below: what it still holds leaves the budget.
                self.ends.cfg.head_budget.give_back(h.held());
            }
            match h.exit() {
                None => {}
                Some(Exit::Upgraded) => self.state = State::Ignore(Protocol::Upgraded),
                Some(Exit::Http2) => self.ignore(Protocol::Http2, out),
                Some(Exit::NotHttp) => self.ignore(Protocol::NotHttp, out),
            }
        }
    }

    fn ignore(&mut self, protocol: Protocol, out: &mut Output) {
        match protocol {
            Protocol::Http2 => out.stats.http2_connections += 1,
            Protocol::NotHttp => out.stats.non_http_connections += 1,
            _ => {}
        }
        self.state = State::Ignore(protocol);
    }

    /// Tells the parser that `len` bytes of one direction were lost before the next chunk.
    /// Inside a body they are counted through; elsewhere the direction resynchronises.
    pub fn gap(&mut self, dir: Direction, ts_ns: u64, len: u64, out: &mut Output) {
        if len == 0 {
            return;
        }
        match &mut self.state {
            State::Http1(h) => {
                let ctx = self.ends.ctx();
                h.gap(dir, ts_ns, len, &ctx, out);
                self.check_exit(out);
            }
            State::Detect { .. } => {
                // The first bytes are gone: search as if joined mid-stream.
                out.stats.gaps += 1;
                out.stats.gap_bytes += len;
                self.state = State::Http1(Box::new(Http1::mid_stream()));
            }
            State::Ignore(_) | State::Closed => {}
        }
    }

    /// Ends the connection at `ts_ns`: a close-delimited response completes, and requests
    /// still waiting (or a response without request) become incomplete transactions. Later
    /// calls are ignored.
    pub fn close(&mut self, ts_ns: u64, out: &mut Output) {
        if let State::Http1(h) = &mut self.state {
            let ctx = self.ends.ctx();
            h.close(ts_ns, &ctx, out);
            self.ends.cfg.head_budget.give_back(h.held());
        }
        self.state = State::Closed;
    }

    /// What the connection carries, as far as it has been decided.
    pub fn protocol(&self) -> Protocol {
        match &self.state {
            State::Detect { .. } => Protocol::Unknown,
            State::Http1(_) => Protocol::Http1,
            State::Ignore(p) => *p,
            State::Closed => Protocol::Unknown,
        }
    }

    /// Whether further bytes will be ignored (not HTTP, HTTP/2, upgraded or closed), so the
    /// source may stop buffering or copying them.
    pub fn is_ignoring(&self) -> bool {
        matches!(self.state, State::Ignore(_) | State::Closed)
    }

    /// The connection's tuple.
    pub fn tuple(&self) -> ConnTuple {
        self.ends.tuple
    }

    /// The source-supplied description of the connection.
    pub fn meta(&self) -> &ConnMeta {
        &self.ends.meta
    }
}

impl Drop for Connection {
    /// A connection dropped without [`Connection::close`] still gives its partial heads'
    /// bytes back to the shared budget.
    fn drop(&mut self) {
        if let State::Http1(h) = &self.state {
            self.ends.cfg.head_budget.give_back(h.held());
        }
    }
}
