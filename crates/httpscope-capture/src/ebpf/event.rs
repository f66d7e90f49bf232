//! The ring-buffer event of `bpf/httpscope.h`: its `#[repr(C)]` mirror (sizes checked at
//! compile time against the C side's `HS_EVENT_SIZE`) and a zero-copy wire view that validates
//! a record once, so that no accessor can panic on whatever the ring buffer hands us.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use httpscope_model::Comm;

/// `HS_MAX_CAPTURE`: the most payload bytes one event can carry.
pub const MAX_CAPTURE: u32 = 4096;

/// The C `struct http_event`, field for field. Only used for its layout: decoding goes through
/// [`Event`], which reads the same offsets from a byte slice.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Socket cookie.
    pub cookie: u64,
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Bytes the syscall transferred.
    pub len: u32,
    /// Payload bytes following the header.
    pub captured: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Local port, host order.
    pub lport: u16,
    /// Remote port, host order.
    pub rport: u16,
    /// `HS_KIND_*`.
    pub kind: u8,
    /// `HS_DIR_*`.
    pub direction: u8,
    /// `HS_SYS_*`.
    pub syscall: u8,
    /// `HS_FLAG_*`.
    pub flags: u8,
    /// Zero; the TLS programs put their library in `pad[0]`.
    pub pad: [u8; 2],
    /// Data events: bytes of this socket in this direction whose events the ring buffer had
    /// no room for since its previous event of this direction (saturating).
    pub lost: u32,
    /// Local address.
    pub laddr: [u8; 16],
    /// Remote address.
    pub raddr: [u8; 16],
    /// Process name.
    pub comm: [u8; 16],
}

/// `HS_EVENT_SIZE` in `bpf/httpscope.h`.
pub const EVENT_SIZE: usize = 96;
/// `HS_EVENT_SHORT_SIZE`: the header of a short event (the full one up to the addresses).
pub const SHORT_EVENT_SIZE: usize = 48;
/// `HS_KIND_DATA_SHORT`: data with the short header.
pub const KIND_DATA_SHORT: u8 = 3;
const _: () = assert!(std::mem::size_of::<RawEvent>() == EVENT_SIZE);

/// The C `struct http_stats` (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawStats {
    /// Events written to the ring buffer.
    pub events: u64,
    /// Events the ring buffer had no room for.
    pub ringbuf_lost: u64,
    /// Chunks skipped by the in-kernel pre-check.
    pub skipped_not_http: u64,
    /// Events of HTTP sockets sent without payload (sendfile, splice...).
    pub length_only: u64,
    /// User memory reads that failed.
    pub read_faults: u64,
    /// Reserved.
    pub reserved: [u64; 3],
}

/// `HS_STATS_SIZE` in `bpf/httpscope.h`.
pub const STATS_SIZE: usize = 64;
const _: () = assert!(std::mem::size_of::<RawStats>() == STATS_SIZE);

// SAFETY: plain integers, no padding, every bit pattern valid.
unsafe impl aya::Pod for RawStats {}

impl RawStats {
    /// Adds `other` field by field.
    pub fn add(&mut self, other: &RawStats) {
        self.events += other.events;
        self.ringbuf_lost += other.ringbuf_lost;
        self.skipped_not_http += other.skipped_not_http;
        self.length_only += other.length_only;
        self.read_faults += other.read_faults;
    }
}

mod field {
    use std::mem::offset_of;

    use super::RawEvent;

    pub type Field = std::ops::Range<usize>;

    pub const TS: Field = 0..8;
    pub const COOKIE: Field = 8..16;
    pub const TGID: Field = 16..20;
    pub const TID: Field = 20..24;
    pub const LEN: Field = 24..28;
    pub const CAPTURED: Field = 28..32;
    pub const FAMILY: Field = 32..34;
    pub const LPORT: Field = 34..36;
    pub const RPORT: Field = 36..38;
    pub const KIND: usize = 38;
    pub const DIRECTION: usize = 39;
    pub const SYSCALL: usize = 40;
    pub const FLAGS: usize = 41;
    pub const LOST: Field = 44..48;
    pub const LADDR: Field = 48..64;
    pub const RADDR: Field = 64..80;
    pub const COMM: Field = 80..96;
    pub const PAYLOAD: usize = 96;
    /// Where the payload of a short event (`HS_KIND_DATA_SHORT`) starts.
    pub const SHORT_PAYLOAD: usize = 48;

    // The byte ranges above are the C layout; check them against the mirror.
    const _: () = {
        assert!(offset_of!(RawEvent, ts_ns) == TS.start);
        assert!(offset_of!(RawEvent, cookie) == COOKIE.start);
        assert!(offset_of!(RawEvent, tgid) == TGID.start);
        assert!(offset_of!(RawEvent, tid) == TID.start);
        assert!(offset_of!(RawEvent, len) == LEN.start);
        assert!(offset_of!(RawEvent, captured) == CAPTURED.start);
        assert!(offset_of!(RawEvent, family) == FAMILY.start);
        assert!(offset_of!(RawEvent, lport) == LPORT.start);
        assert!(offset_of!(RawEvent, rport) == RPORT.start);
        assert!(offset_of!(RawEvent, kind) == KIND);
        assert!(offset_of!(RawEvent, direction) == DIRECTION);
        assert!(offset_of!(RawEvent, syscall) == SYSCALL);
        assert!(offset_of!(RawEvent, flags) == FLAGS);
        assert!(offset_of!(RawEvent, lost) == LOST.start);
        assert!(LOST.end <= SHORT_PAYLOAD);
        assert!(offset_of!(RawEvent, laddr) == LADDR.start);
        assert!(offset_of!(RawEvent, raddr) == RADDR.start);
        assert!(offset_of!(RawEvent, comm) == COMM.start);
        assert!(std::mem::size_of::<RawEvent>() == PAYLOAD);
    };
}

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bytes sent or received.
    Data,
    /// The socket reached TCP_CLOSE.
    Close,
}

/// Which way the bytes went, seen from the observed process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Sent by the process.
    Send,
    /// Received by the process.
    Recv,
}

/// The syscall that moved the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Syscall {
    Unknown,
    Read,
    Write,
    Readv,
    Writev,
    Sendto,
    Recvfrom,
    Sendmsg,
    Recvmsg,
    Sendfile,
    Splice,
}

impl Syscall {
    fn from_u8(v: u8) -> Option<Syscall> {
        use Syscall::*;
        Some(match v {
            0 => Unknown,
            1 => Read,
            2 => Write,
            3 => Readv,
            4 => Writev,
            5 => Sendto,
            6 => Recvfrom,
            7 => Sendmsg,
            8 => Recvmsg,
            9 => Sendfile,
            10 => Splice,
            _ => return None,
        })
    }
}

/// `HS_FLAG_FROM_START`.
pub const FLAG_FROM_START: u8 = 1;
/// `HS_FLAG_TRUNCATED`.
pub const FLAG_TRUNCATED: u8 = 2;
/// `HS_FLAG_NO_BUFFER`.
pub const FLAG_NO_BUFFER: u8 = 4;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Why a record is not a valid event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// Shorter than the header.
    Truncated,
    /// `captured` is larger than the cap or than the bytes present.
    BadCaptured,
    /// `captured` larger than `len`.
    CapturedOverLen,
    /// Unknown kind, direction or syscall.
    BadEnum,
    /// Neither AF_INET nor AF_INET6.
    BadFamily,
}

/// A validated view of one ring-buffer record.
#[derive(Clone, Copy, Debug)]
pub struct Event<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Event<T> {
    /// Checks lengths and enumerations once; after that no accessor can fail or panic.
    pub fn new_checked(buf: T) -> Result<Self, EventError> {
        let b = buf.as_ref();
        if b.len() < field::SHORT_PAYLOAD {
            return Err(EventError::Truncated);
        }
        let kind = b[field::KIND];
        let header = match kind {
            1 | 2 => field::PAYLOAD,
            KIND_DATA_SHORT => field::SHORT_PAYLOAD,
            _ => return Err(EventError::BadEnum),
        };
        if b.len() < header {
            return Err(EventError::Truncated);
        }
        let ev = Event { buf };
        let captured = ev.u32_at(field::CAPTURED) as usize;
        if captured > MAX_CAPTURE as usize || header + captured > ev.buf.as_ref().len() {
            return Err(EventError::BadCaptured);
        }
        if captured as u64 > u64::from(ev.len()) {
            return Err(EventError::CapturedOverLen);
        }
        let b = ev.buf.as_ref();
        if b[field::DIRECTION] > 1 || Syscall::from_u8(b[field::SYSCALL]).is_none() {
            return Err(EventError::BadEnum);
        }
        let family = ev.u16_at(field::FAMILY);
        if kind == 1 && family != AF_INET && family != AF_INET6 {
            return Err(EventError::BadFamily);
        }
        Ok(ev)
    }

    /// Whether the event has the full header (addresses, ports, process name); a short
    /// data event has not, and [`local`](Self::local), [`remote`](Self::remote) and
    /// [`comm`](Self::comm) give unspecified addresses and an empty name for it.
    pub fn has_socket(&self) -> bool {
        self.buf.as_ref()[field::KIND] != KIND_DATA_SHORT
    }

    fn payload_at(&self) -> usize {
        if self.has_socket() {
            field::PAYLOAD
        } else {
            field::SHORT_PAYLOAD
        }
    }

    fn u64_at(&self, f: field::Field) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buf.as_ref()[f]);
        u64::from_ne_bytes(a)
    }

    fn u32_at(&self, f: field::Field) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.buf.as_ref()[f]);
        u32::from_ne_bytes(a)
    }

    fn u16_at(&self, f: field::Field) -> u16 {
        let mut a = [0u8; 2];
        a.copy_from_slice(&self.buf.as_ref()[f]);
        u16::from_ne_bytes(a)
    }

    /// Kernel monotonic timestamp, ns.
    pub fn ts_ns(&self) -> u64 {
        self.u64_at(field::TS)
    }

    /// Socket cookie.
    pub fn cookie(&self) -> u64 {
        self.u64_at(field::COOKIE)
    }

    /// Process id.
    pub fn tgid(&self) -> u32 {
        self.u32_at(field::TGID)
    }

    /// Thread id.
    pub fn tid(&self) -> u32 {
        self.u32_at(field::TID)
    }

    /// Bytes the syscall transferred.
    pub fn len(&self) -> u32 {
        self.u32_at(field::LEN)
    }

    /// Bytes of this socket in this direction lost before this event (the kernel's ring
    /// buffer had no room for their events), to be treated as a gap before its payload.
    /// Carried by the short header too; 0 for close and TLS events.
    pub fn lost(&self) -> u32 {
        self.u32_at(field::LOST)
    }

    /// Whether the syscall transferred nothing (close events).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event kind.
    pub fn kind(&self) -> Kind {
        if self.buf.as_ref()[field::KIND] == 2 {
            Kind::Close
        } else {
            Kind::Data
        }
    }

    /// Direction.
    pub fn dir(&self) -> Dir {
        if self.buf.as_ref()[field::DIRECTION] == 1 {
            Dir::Recv
        } else {
            Dir::Send
        }
    }

    /// Syscall.
    pub fn syscall(&self) -> Syscall {
        Syscall::from_u8(self.buf.as_ref()[field::SYSCALL]).unwrap_or(Syscall::Unknown)
    }

    /// `FLAG_*` bits.
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[field::FLAGS]
    }

    fn addr(&self, f: field::Field, port: field::Field) -> SocketAddr {
        if !self.has_socket() {
            return SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        }
        let b = &self.buf.as_ref()[f];
        let ip = if self.u16_at(field::FAMILY) == AF_INET6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let v6 = Ipv6Addr::from(a);
            // Dual-stack sockets talking IPv4 show it as ::ffff:a.b.c.d.
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        };
        SocketAddr::new(ip, self.u16_at(port))
    }

    /// Local socket address.
    pub fn local(&self) -> SocketAddr {
        self.addr(field::LADDR, field::LPORT)
    }

    /// Remote socket address.
    pub fn remote(&self) -> SocketAddr {
        self.addr(field::RADDR, field::RPORT)
    }

    /// Process name.
    pub fn comm(&self) -> Comm {
        if !self.has_socket() {
            return Comm::default();
        }
        Comm::from_bytes(&self.buf.as_ref()[field::COMM])
    }

    /// The captured payload (at most `len` bytes).
    pub fn payload(&self) -> &[u8] {
        let n = self.u32_at(field::CAPTURED) as usize;
        let at = self.payload_at();
        &self.buf.as_ref()[at..at + n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(captured: u32, len: u32, payload: &[u8]) -> Vec<u8> {
        let raw = RawEvent {
            ts_ns: 1_000,
            cookie: 77,
            tgid: 42,
            tid: 43,
            len,
            captured,
            family: AF_INET6,
            lport: 8080,
            rport: 50_000,
            kind: 1,
            direction: 1,
            syscall: 1,
            flags: FLAG_FROM_START,
            laddr: Ipv6Addr::LOCALHOST.octets(),
            raddr: Ipv6Addr::LOCALHOST.octets(),
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            ..RawEvent::default()
        };
        // SAFETY: RawEvent is repr(C) plain data without padding bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(&raw as *const RawEvent as *const u8, EVENT_SIZE) };
        let mut v = bytes.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn whole_event_decodes() {
        let b = fixture(4, 10, b"GET ");
        let ev = Event::new_checked(&b[..]).unwrap();
        assert_eq!(ev.ts_ns(), 1_000);
        assert_eq!(ev.cookie(), 77);
        assert_eq!((ev.tgid(), ev.tid(), ev.len()), (42, 43, 10));
        assert_eq!(ev.kind(), Kind::Data);
        assert_eq!(ev.dir(), Dir::Recv);
        assert_eq!(ev.syscall(), Syscall::Read);
        assert_eq!(ev.local(), "[::1]:8080".parse().unwrap());
        assert_eq!(ev.remote(), "[::1]:50000".parse().unwrap());
        assert_eq!(ev.comm().as_bytes(), b"curl");
        assert_eq!(ev.payload(), b"GET ");
        assert_eq!(ev.flags() & FLAG_FROM_START, FLAG_FROM_START);
    }

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let mut b = fixture(0, 1, b"");
        b[48..64].copy_from_slice(&Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets());
        let ev = Event::new_checked(&b[..]).unwrap();
        assert_eq!(ev.local(), "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn truncated_and_impossible_events_are_rejected() {
        let b = fixture(4, 10, b"GET ");
        assert_eq!(
            Event::new_checked(&b[..50]).unwrap_err(),
            EventError::Truncated
        );
        assert_eq!(
            Event::new_checked(&b[..98]).unwrap_err(),
            EventError::BadCaptured
        );
        let b = fixture(4, 2, b"GET ");
        assert_eq!(
            Event::new_checked(&b[..]).unwrap_err(),
            EventError::CapturedOverLen
        );
        let b = fixture(5000, 6000, &[0; 5000]);
        assert_eq!(
            Event::new_checked(&b[..]).unwrap_err(),
            EventError::BadCaptured
        );
        let mut b = fixture(0, 1, b"");
        b[38] = 9;
        assert_eq!(Event::new_checked(&b[..]).unwrap_err(), EventError::BadEnum);
        let mut b = fixture(0, 1, b"");
        b[32] = 1;
        assert_eq!(
            Event::new_checked(&b[..]).unwrap_err(),
            EventError::BadFamily
        );
    }

    /// The same event with the short header.
    fn short(full: &[u8]) -> Vec<u8> {
        let mut v = full[..SHORT_EVENT_SIZE].to_vec();
        v[38] = KIND_DATA_SHORT;
        v[32..38].fill(0);
        v.extend_from_slice(&full[EVENT_SIZE..]);
        v
    }

    #[test]
    fn short_event_decodes_without_socket_fields() {
        let b = short(&fixture(4, 10, b"GET "));
        assert_eq!(b.len(), SHORT_EVENT_SIZE + 4);
        let ev = Event::new_checked(&b[..]).unwrap();
        assert!(!ev.has_socket());
        assert_eq!(ev.kind(), Kind::Data);
        assert_eq!((ev.cookie(), ev.tgid(), ev.len()), (77, 42, 10));
        assert_eq!(ev.payload(), b"GET ");
        assert_eq!(ev.local().port(), 0);
        assert!(ev.comm().as_bytes().is_empty());
        assert_eq!(
            Event::new_checked(&b[..SHORT_EVENT_SIZE + 3]).unwrap_err(),
            EventError::BadCaptured
        );
        assert_eq!(
            Event::new_checked(&b[..40]).unwrap_err(),
            EventError::Truncated
        );
        // A full kind with only a short header's bytes is truncated.
        let mut f = b.clone();
        f[38] = 1;
        assert_eq!(
            Event::new_checked(&f[..]).unwrap_err(),
            EventError::Truncated
        );
        assert!(Event::new_checked(&fixture(4, 10, b"GET ")[..])
            .unwrap()
            .has_socket());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        for base in [fixture(4, 10, b"GET "), short(&fixture(4, 10, b"GET "))] {
            never_panics_on(base);
        }
    }

    fn never_panics_on(base: Vec<u8>) {
        for i in 0..base.len() {
            for v in [0u8, 1, 2, 3, 0x7f, 0xff] {
                let mut b = base.clone();
                b[i] = v;
                if let Ok(ev) = Event::new_checked(&b[..]) {
                    let _ = (
                        ev.payload(),
                        ev.local(),
                        ev.remote(),
                        ev.comm(),
                        ev.syscall(),
                    );
                }
            }
        }
    }
}
