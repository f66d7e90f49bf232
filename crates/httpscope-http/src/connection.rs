use httpscope_model::ConnTuple;

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

/// One TCP connection's protocol state: detection, then the HTTP/1 parser.
#[derive(Debug)]
pub struct Connection {
    tuple: ConnTuple,
    meta: ConnMeta,
    cfg: Config,
}

impl Connection {
    /// A connection between the two ends of `tuple`, described by `meta`.
    pub fn new(tuple: ConnTuple, meta: ConnMeta, cfg: &Config) -> Self {
        Connection { tuple, meta, cfg: cfg.clone() }
    }

    /// Feeds the next chunk of one direction, received at `ts_ns` on the source's clock.
    pub fn feed(&mut self, dir: Direction, ts_ns: u64, data: &[u8], out: &mut Output) {
        let _ = (dir, ts_ns, data, out, &self.meta, &self.cfg);
    }

    /// Tells the parser that `len` bytes of one direction were lost before the next chunk.
    pub fn gap(&mut self, dir: Direction, ts_ns: u64, len: u64, out: &mut Output) {
        let _ = (dir, ts_ns, len, out);
    }

    /// Ends the connection at `ts_ns`: a close-delimited response completes, and requests
    /// still waiting (or a response without request) become incomplete transactions.
    pub fn close(&mut self, ts_ns: u64, out: &mut Output) {
        let _ = (ts_ns, out);
    }

    /// What the connection carries, as far as it has been decided.
    pub fn protocol(&self) -> Protocol {
        Protocol::Unknown
    }

    /// Whether further bytes will be ignored (not HTTP, HTTP/2 or upgraded), so the source
    /// may stop buffering or copying them; it should still call [`Connection::close`].
    pub fn is_ignoring(&self) -> bool {
        matches!(self.protocol(), Protocol::NotHttp | Protocol::Http2 | Protocol::Upgraded)
    }

    /// The connection's tuple.
    pub fn tuple(&self) -> ConnTuple {
        self.tuple
    }
}
