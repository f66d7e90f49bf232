//! Synthesized captures: TCP conversations built segment by segment and written as pcap or
//! pcapng, for tests, benchmarks and fuzz seeds that need an exact ground truth.
//!
//! A [`Conversation`] plays both ends of one TCP connection (handshake, data split at an
//! MSS, FIN or RST) and yields [`TcpSegment`]s; a test may reorder, drop or duplicate them
//! before a [`Writer`] encodes each as Ethernet + IPv4/IPv6 + TCP in a capture file.
//!
//! ```
//! use httpscope_capture::packet::synth::{Conversation, Format, Writer};
//!
//! let (client, server) = ("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
//! let mut c = Conversation::new(client, server);
//! c.handshake();
//! c.client(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
//! c.server(b"HTTP/1.1 204 No Content\r\n\r\n");
//! c.close();
//! let mut w = Writer::new(Format::Pcap { nanos: true, big_endian: false });
//! w.segments(&c.segments);
//! assert!(w.bytes().len() > 24);
//! ```

use std::net::{IpAddr, SocketAddr};

/// One TCP segment of a synthesized conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    /// Capture timestamp, wall-clock nanoseconds.
    pub ts_ns: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (the ACK flag is set on every segment but the first SYN).
    pub ack: u32,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// TCP flag bits for [`TcpSegment::flags`].
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Both ends of one TCP connection, producing segments as the test tells it to talk.
#[derive(Clone, Debug)]
pub struct Conversation {
    /// The connecting end.
    pub client: SocketAddr,
    /// The listening end.
    pub server: SocketAddr,
    /// Next sequence number of the client and of the server.
    pub seq: [u32; 2],
    /// The clock: each segment advances it by `step_ns`.
    pub ts_ns: u64,
    /// Clock step between segments (default 10 µs).
    pub step_ns: u64,
    /// Largest payload per segment (default 1448).
    pub mss: usize,
    /// The segments so far.
    pub segments: Vec<TcpSegment>,
}

impl Conversation {
    /// A conversation starting at 2024-01-01T00:00:00Z with fixed initial sequence numbers.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        Conversation {
            client,
            server,
            seq: [1_000_000, 3_000_000_000],
            ts_ns: 1_704_067_200_000_000_000,
            step_ns: 10_000,
            mss: 1448,
            segments: Vec::new(),
        }
    }

    fn push(&mut self, from_client: bool, flags: u8, payload: &[u8]) {
        let (i, src, dst) = if from_client {
            (0, self.client, self.server)
        } else {
            (1, self.server, self.client)
        };
        self.ts_ns += self.step_ns;
        let seg = TcpSegment {
            ts_ns: self.ts_ns,
            src,
            dst,
            seq: self.seq[i],
            ack: if flags == tcp_flags::SYN {
                0
            } else {
                self.seq[1 - i]
            },
            flags,
            payload: payload.to_vec(),
        };
        let mut len = payload.len() as u32;
        if flags & (tcp_flags::SYN | tcp_flags::FIN) != 0 {
            len += 1;
        }
        self.seq[i] = self.seq[i].wrapping_add(len);
        self.segments.push(seg);
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) {
        self.push(true, tcp_flags::SYN, &[]);
        self.push(false, tcp_flags::SYN | tcp_flags::ACK, &[]);
        self.push(true, tcp_flags::ACK, &[]);
    }

    fn send(&mut self, from_client: bool, data: &[u8]) {
        for chunk in data.chunks(self.mss.max(1)) {
            self.push(from_client, tcp_flags::ACK | tcp_flags::PSH, chunk);
        }
        // The peer acknowledges.
        self.push(!from_client, tcp_flags::ACK, &[]);
    }

    /// The client sends `data` (split at the MSS), and the server acknowledges it.
    pub fn client(&mut self, data: &[u8]) {
        self.send(true, data);
    }

    /// The server sends `data` (split at the MSS), and the client acknowledges it.
    pub fn server(&mut self, data: &[u8]) {
        self.send(false, data);
    }

    /// Client FIN, server FIN, final ACK.
    pub fn close(&mut self) {
        self.push(true, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(false, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(true, tcp_flags::ACK, &[]);
    }

    /// The server closes first (a close-delimited body), then the client.
    pub fn server_close(&mut self) {
        self.push(false, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(true, tcp_flags::FIN | tcp_flags::ACK, &[]);
        self.push(false, tcp_flags::ACK, &[]);
    }

    /// One end resets the connection.
    pub fn reset(&mut self, by_client: bool) {
        self.push(by_client, tcp_flags::RST | tcp_flags::ACK, &[]);
    }
}

/// The capture format a [`Writer`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps (magic `a1b23c4d`) instead of microseconds.
        nanos: bool,
        /// Big-endian headers.
        big_endian: bool,
    },
    /// pcapng with one Ethernet interface per entry, each with its own `if_tsresol` (a
    /// power of ten, 0 to 9: 6 = microseconds, 9 = nanoseconds); packets go round-robin
    /// across interfaces.
    PcapNg {
        /// The time resolution of interface 0 and of interface 1.
        tsresol: [u8; 2],
        /// Interfaces in use (1 or 2).
        interfaces: u8,
    },
}

/// Writes Ethernet frames into an in-memory pcap or pcapng file.
#[derive(Clone, Debug)]
pub struct Writer {
    out: Vec<u8>,
    format: Format,
    count: u64,
}

impl Writer {
    /// A capture with its file header already written.
    pub fn new(format: Format) -> Self {
        let mut w = Writer {
            out: Vec::new(),
            format,
            count: 0,
        };
        match format {
            Format::Pcap { nanos, big_endian } => {
                let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
                w.u32(magic, big_endian);
                w.u16(2, big_endian);
                w.u16(4, big_endian);
                w.u32(0, big_endian);
                w.u32(0, big_endian);
                w.u32(262_144, big_endian);
                w.u32(1, big_endian);
            }
            Format::PcapNg {
                tsresol,
                interfaces,
            } => {
                // Section header block: no options.
                w.block(0x0a0d_0d0a, &{
                    let mut b = Vec::new();
                    b.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
                    b.extend_from_slice(&1u16.to_le_bytes());
                    b.extend_from_slice(&0u16.to_le_bytes());
                    b.extend_from_slice(&u64::MAX.to_le_bytes());
                    b
                });
                for resol in tsresol.iter().take(usize::from(interfaces.clamp(1, 2))) {
                    let mut b = Vec::new();
                    b.extend_from_slice(&1u16.to_le_bytes()); // Ethernet
                    b.extend_from_slice(&0u16.to_le_bytes());
                    b.extend_from_slice(&262_144u32.to_le_bytes());
                    // if_tsresol option (code 9, length 1, padded to 4), then opt_endofopt.
                    b.extend_from_slice(&9u16.to_le_bytes());
                    b.extend_from_slice(&1u16.to_le_bytes());
                    b.extend_from_slice(&[(*resol).min(9), 0, 0, 0]);
                    b.extend_from_slice(&[0, 0, 0, 0]);
                    w.block(1, &b);
                }
            }
        }
        w
    }

    fn u16(&mut self, v: u16, be: bool) {
        self.out
            .extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn u32(&mut self, v: u32, be: bool) {
        self.out
            .extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        self.out.extend_from_slice(&kind.to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(body);
        self.out.extend_from_slice(&[0; 3][..pad]);
        self.out.extend_from_slice(&len.to_le_bytes());
    }

    /// Appends one Ethernet frame captured at `ts_ns`.
    pub fn frame(&mut self, ts_ns: u64, frame: &[u8]) {
        self.count += 1;
        match self.format {
            Format::Pcap { nanos, big_endian } => {
                let sec = (ts_ns / 1_000_000_000) as u32;
                let frac = ts_ns % 1_000_000_000;
                let frac = if nanos { frac } else { frac / 1000 } as u32;
                self.u32(sec, big_endian);
                self.u32(frac, big_endian);
                self.u32(frame.len() as u32, big_endian);
                self.u32(frame.len() as u32, big_endian);
                self.out.extend_from_slice(frame);
            }
            Format::PcapNg {
                tsresol,
                interfaces,
            } => {
                let iface = (self.count % u64::from(interfaces.clamp(1, 2))) as usize;
                let per_second = 10u128.pow(u32::from(tsresol[iface].min(9)));
                let units = ts_ns as u128 * per_second / 1_000_000_000;
                let mut b = Vec::with_capacity(20 + frame.len());
                b.extend_from_slice(&(iface as u32).to_le_bytes());
                b.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
                b.extend_from_slice(&(units as u32).to_le_bytes());
                b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                b.extend_from_slice(frame);
                self.block(6, &b);
            }
        }
    }

    /// Appends each segment as an Ethernet/IP/TCP frame.
    pub fn segments(&mut self, segments: &[TcpSegment]) {
        for s in segments {
            self.frame(s.ts_ns, &ethernet_frame(s));
        }
    }

    /// The capture so far.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// The capture.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Encodes a segment as Ethernet + IPv4 or IPv6 + TCP (checksums left zero, as loopback
/// captures often have them).
pub fn ethernet_frame(s: &TcpSegment) -> Vec<u8> {
    let mut f = Vec::with_capacity(74 + s.payload.len());
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    let mut tcp = Vec::with_capacity(20 + s.payload.len());
    tcp.extend_from_slice(&s.src.port().to_be_bytes());
    tcp.extend_from_slice(&s.dst.port().to_be_bytes());
    tcp.extend_from_slice(&s.seq.to_be_bytes());
    tcp.extend_from_slice(&s.ack.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, s.flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(&s.payload);
    match (s.src.ip(), s.dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + tcp.len()) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            f.extend_from_slice(&a.octets());
            f.extend_from_slice(&b.octets());
        }
        (a, b) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V6(v) => v.octets(),
                IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            };
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&v6(a));
            f.extend_from_slice(&v6(b));
        }
    }
    f.extend_from_slice(&tcp);
    f
}
