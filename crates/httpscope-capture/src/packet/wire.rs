//! Zero-copy views of the link, IP and TCP headers the packet source needs.
//!
//! In the manner of smoltcp's `wire` module: byte ranges live in a private `field` module,
//! every view is built by a checked constructor that validates lengths once, and the
//! accessors after it cannot panic. We write these few views ourselves instead of using
//! `etherparse` because we need exactly one path (link -> IP -> TCP, no allocation, no
//! checksum verification, which loopback captures fail) at about a gigabyte per second, and
//! because Linux cooked capture v2 (SLL2) and BSD null/loop framing are not covered there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A capture's link-layer header type (the pcap `LINKTYPE_*` values we decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// `LINKTYPE_ETHERNET` (1), with any number (up to four) of 802.1Q/802.1ad tags.
    Ethernet,
    /// `LINKTYPE_NULL` (0, 4-byte family in the capturing host's byte order) and
    /// `LINKTYPE_LOOP` (108, network byte order): BSD loopback.
    Null,
    /// `LINKTYPE_RAW` (101, also DLT 12 and 14), `LINKTYPE_IPV4` (228), `LINKTYPE_IPV6` (229).
    Raw,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1, 16-byte header.
    Sll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2, 20-byte header.
    Sll2,
}

impl Link {
    /// The link type for a pcap/pcapng `LINKTYPE_*` value, if we decode it.
    pub(crate) fn from_linktype(v: i32) -> Option<Link> {
        Some(match v {
            1 => Link::Ethernet,
            0 | 108 => Link::Null,
            101 | 12 | 14 | 228 | 229 => Link::Raw,
            113 => Link::Sll,
            276 => Link::Sll2,
            _ => return None,
        })
    }
}

mod field {
    pub type Field = std::ops::Range<usize>;
    pub const ETH_TYPE: Field = 12..14;
    pub const ETH_HEADER: usize = 14;
    pub const VLAN_TAG: usize = 4;
    pub const SLL_PROTOCOL: Field = 14..16;
    pub const SLL_HEADER: usize = 16;
    pub const SLL2_PROTOCOL: Field = 0..2;
    pub const SLL2_HEADER: usize = 20;
    pub const NULL_HEADER: usize = 4;

    pub const IPV4_MIN_HEADER: usize = 20;
    pub const IPV4_TOTAL_LEN: Field = 2..4;
    pub const IPV4_FRAG: Field = 6..8;
    pub const IPV4_PROTOCOL: usize = 9;
    pub const IPV4_SRC: Field = 12..16;
    pub const IPV4_DST: Field = 16..20;

    pub const IPV6_HEADER: usize = 40;
    pub const IPV6_PAYLOAD_LEN: Field = 4..6;
    pub const IPV6_NEXT_HEADER: usize = 6;
    pub const IPV6_SRC: Field = 8..24;
    pub const IPV6_DST: Field = 24..40;

    pub const TCP_MIN_HEADER: usize = 20;
    pub const TCP_SRC_PORT: Field = 0..2;
    pub const TCP_DST_PORT: Field = 2..4;
    pub const TCP_SEQ: Field = 4..8;
    pub const TCP_ACK: Field = 8..12;
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const IPPROTO_TCP: u8 = 6;

/// TCP flag bits (byte 13 of the header).
pub(crate) mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Why a frame yielded no TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Not IP, or IP but not TCP: ignored, counted apart from errors.
    NotTcp,
    /// An IP fragment: counted and skipped (fragments are not reassembled; HTTP over TCP
    /// practically never fragments because TCP sizes segments to the path MTU).
    Fragment,
    /// Headers that contradict themselves or are cut short: counted as undecodable.
    Malformed,
}

/// One decoded TCP segment, borrowing its payload from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// Payload bytes the IP header announces but the capture cut off (snap length).
    pub missing: u32,
}

impl Segment<'_> {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

#[inline]
fn be16(b: &[u8], r: field::Field) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

#[inline]
fn be32(b: &[u8], r: field::Field) -> u32 {
    u32::from_be_bytes([b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3]])
}

/// Decodes one captured frame of link type `link` down to its TCP segment.
pub(crate) fn decode(link: Link, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let ip = match link {
        Link::Ethernet => ethernet_payload(frame)?,
        Link::Null => frame.get(field::NULL_HEADER..).ok_or(Skip::Malformed)?,
        Link::Raw => frame,
        Link::Sll => {
            if frame.len() < field::SLL_HEADER {
                return Err(Skip::Malformed);
            }
            by_ethertype(
                be16(frame, field::SLL_PROTOCOL),
                &frame[field::SLL_HEADER..],
            )?
        }
        Link::Sll2 => {
            if frame.len() < field::SLL2_HEADER {
                return Err(Skip::Malformed);
            }
            by_ethertype(
                be16(frame, field::SLL2_PROTOCOL),
                &frame[field::SLL2_HEADER..],
            )?
        }
    };
    // Null/loop and raw framings carry the family in a header whose byte order depends on the
    // capturing host; the IP version nibble says the same thing unambiguously.
    decode_ip(ip)
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Result<&[u8], Skip> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(rest),
        _ => Err(Skip::NotTcp),
    }
}

fn ethernet_payload(frame: &[u8]) -> Result<&[u8], Skip> {
    if frame.len() < field::ETH_HEADER {
        return Err(Skip::Malformed);
    }
    let mut ethertype = be16(frame, field::ETH_TYPE);
    let mut at = field::ETH_HEADER;
    let mut tags = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        tags += 1;
        if tags > 4 || frame.len() < at + field::VLAN_TAG {
            return Err(Skip::Malformed);
        }
        ethertype = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
        at += field::VLAN_TAG;
    }
    by_ethertype(ethertype, &frame[at..])
}

/// Decodes an IPv4 or IPv6 packet (chosen by its version nibble) down to TCP.
pub(crate) fn decode_ip(ip: &[u8]) -> Result<Segment<'_>, Skip> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => decode_ipv4(ip),
        Some(6) => decode_ipv6(ip),
        Some(_) => Err(Skip::NotTcp),
        None => Err(Skip::Malformed),
    }
}

fn decode_ipv4(ip: &[u8]) -> Result<Segment<'_>, Skip> {
    if ip.len() < field::IPV4_MIN_HEADER {
        return Err(Skip::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    // A total length of 0 happens with TSO on the capturing host: trust the capture then.
    let total = match usize::from(be16(ip, field::IPV4_TOTAL_LEN)) {
        0 => ip.len(),
        n => n,
    };
    if ihl < field::IPV4_MIN_HEADER || total < ihl || ip.len() < ihl {
        return Err(Skip::Malformed);
    }
    let frag = be16(ip, field::IPV4_FRAG);
    if frag & 0x3fff != 0 {
        // More-fragments set, or a non-zero offset.
        return Err(Skip::Fragment);
    }
    if ip[field::IPV4_PROTOCOL] != IPPROTO_TCP {
        return Err(Skip::NotTcp);
    }
    let src = Ipv4Addr::from(be32(ip, field::IPV4_SRC));
    let dst = Ipv4Addr::from(be32(ip, field::IPV4_DST));
    // `total` may exceed what was captured (snap length); Ethernet padding may follow it.
    let end = total.min(ip.len());
    let missing = total - end;
    decode_tcp(IpAddr::V4(src), IpAddr::V4(dst), &ip[ihl..end], missing)
}

fn decode_ipv6(ip: &[u8]) -> Result<Segment<'_>, Skip> {
    if ip.len() < field::IPV6_HEADER {
        return Err(Skip::Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[field::IPV6_SRC]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[field::IPV6_DST]);
    let payload_len = usize::from(be16(ip, field::IPV6_PAYLOAD_LEN));
    let total = match payload_len {
        // Jumbogram or TSO: the capture is all we know.
        0 => ip.len(),
        n => field::IPV6_HEADER + n,
    };
    let end = total.min(ip.len());
    let missing = total - end;
    let mut next = ip[field::IPV6_NEXT_HEADER];
    let mut at = field::IPV6_HEADER;
    for _ in 0..8 {
        match next {
            IPPROTO_TCP => {
                return decode_tcp(
                    IpAddr::V6(Ipv6Addr::from(src)),
                    IpAddr::V6(Ipv6Addr::from(dst)),
                    &ip[at..end],
                    missing,
                );
            }
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let h = ip.get(at..at + 2).ok_or(Skip::Malformed)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            // Fragment header: an unfragmented "atomic fragment" is decoded, others skipped.
            44 => {
                let h = ip.get(at..at + 8).ok_or(Skip::Malformed)?;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff9 != 0 {
                    return Err(Skip::Fragment);
                }
                next = h[0];
                at += 8;
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let h = ip.get(at..at + 2).ok_or(Skip::Malformed)?;
                next = h[0];
                at += (usize::from(h[1]) + 2) * 4;
            }
            _ => return Err(Skip::NotTcp),
        }
        if at > end {
            return Err(Skip::Malformed);
        }
    }
    Err(Skip::Malformed)
}

fn decode_tcp(src: IpAddr, dst: IpAddr, tcp: &[u8], missing: usize) -> Result<Segment<'_>, Skip> {
    if tcp.len() < field::TCP_MIN_HEADER {
        return Err(Skip::Malformed);
    }
    let hlen = usize::from(tcp[field::TCP_DATA_OFFSET] >> 4) * 4;
    if hlen < field::TCP_MIN_HEADER || hlen > tcp.len() {
        return Err(Skip::Malformed);
    }
    Ok(Segment {
        src,
        dst,
        sport: be16(tcp, field::TCP_SRC_PORT),
        dport: be16(tcp, field::TCP_DST_PORT),
        seq: be32(tcp, field::TCP_SEQ),
        ack: be32(tcp, field::TCP_ACK),
        flags: tcp[field::TCP_FLAGS],
        payload: &tcp[hlen..],
        missing: u32::try_from(missing).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[8..12].copy_from_slice(&7u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags::ACK;
        t.extend_from_slice(payload);
        t
    }

    fn ipv4(payload: &[u8], frag: u16) -> Vec<u8> {
        let mut ip = vec![
            0x45,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_TCP,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(payload);
        ip
    }

    fn ipv6(ext: &[u8], first_next: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
        ip.push(first_next);
        ip.push(64);
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(ext);
        ip.extend_from_slice(payload);
        ip
    }

    fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 5]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ethernet_ipv4_tcp_whole() {
        let f = eth(&[], ETHERTYPE_IPV4, &ipv4(&tcp(b"GET /"), 0x4000));
        let s = decode(Link::Ethernet, &f).unwrap();
        assert_eq!((s.sport, s.dport, s.seq, s.ack), (40000, 80, 1000, 7));
        assert_eq!(s.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(s.payload, b"GET /");
        assert_eq!(s.missing, 0);
        assert!(s.has(flags::ACK) && !s.has(flags::SYN));
    }

    #[test]
    fn vlan_and_qinq_tags_are_skipped() {
        let ip = ipv4(&tcp(b"x"), 0);
        for tags in [&[ETHERTYPE_VLAN][..], &[ETHERTYPE_QINQ, ETHERTYPE_VLAN]] {
            let f = eth(tags, ETHERTYPE_IPV4, &ip);
            assert_eq!(decode(Link::Ethernet, &f).unwrap().payload, b"x");
        }
        let f = eth(&[ETHERTYPE_VLAN; 5], ETHERTYPE_IPV4, &ip);
        assert_eq!(decode(Link::Ethernet, &f), Err(Skip::Malformed));
    }

    #[test]
    fn ethernet_padding_is_cut_by_ip_length() {
        let mut f = eth(&[], ETHERTYPE_IPV4, &ipv4(&tcp(b""), 0));
        f.extend_from_slice(&[0; 6]);
        assert_eq!(decode(Link::Ethernet, &f).unwrap().payload, b"");
    }

    #[test]
    fn snap_length_cut_is_reported_as_missing() {
        let mut f = eth(&[], ETHERTYPE_IPV4, &ipv4(&tcp(b"0123456789"), 0));
        f.truncate(f.len() - 4);
        let s = decode(Link::Ethernet, &f).unwrap();
        assert_eq!((s.payload, s.missing), (&b"012345"[..], 4));
    }

    #[test]
    fn fragments_and_other_protocols_are_skipped() {
        let f = eth(&[], ETHERTYPE_IPV4, &ipv4(&tcp(b"x"), 0x2000));
        assert_eq!(decode(Link::Ethernet, &f), Err(Skip::Fragment));
        let f = eth(&[], ETHERTYPE_IPV4, &ipv4(&tcp(b"x"), 0x0010));
        assert_eq!(decode(Link::Ethernet, &f), Err(Skip::Fragment));
        let f = eth(&[], 0x0806, &[0; 28]);
        assert_eq!(decode(Link::Ethernet, &f), Err(Skip::NotTcp));
        let mut ip = ipv4(&tcp(b"x"), 0);
        ip[9] = 17;
        assert_eq!(decode(Link::Raw, &ip), Err(Skip::NotTcp));
    }

    #[test]
    fn ipv6_with_extension_headers() {
        // Hop-by-hop (8 bytes) then destination options (16 bytes) then TCP.
        let mut ext = vec![60, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[IPPROTO_TCP, 1]);
        ext.extend_from_slice(&[0; 14]);
        let ip = ipv6(&ext, 0, &tcp(b"hello"));
        let s = decode(Link::Raw, &ip).unwrap();
        assert_eq!(s.payload, b"hello");
        assert_eq!(s.dst, IpAddr::V6(Ipv6Addr::LOCALHOST));
        // A real fragment.
        let frag = [IPPROTO_TCP, 0, 0, 0x09, 0, 0, 0, 1];
        assert_eq!(
            decode(Link::Raw, &ipv6(&frag, 44, &tcp(b"x"))),
            Err(Skip::Fragment)
        );
        // An atomic fragment (offset 0, no more fragments) is whole.
        let frag = [IPPROTO_TCP, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            decode(Link::Raw, &ipv6(&frag, 44, &tcp(b"x")))
                .unwrap()
                .payload,
            b"x"
        );
        // An extension header running past the packet.
        let ip = ipv6(&[IPPROTO_TCP, 200], 0, &[]);
        assert_eq!(decode(Link::Raw, &ip), Err(Skip::Malformed));
    }

    #[test]
    fn cooked_and_null_framings() {
        let ip = ipv4(&tcp(b"sll"), 0);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        assert_eq!(decode(Link::Sll, &sll).unwrap().payload, b"sll");
        let mut sll2 = ETHERTYPE_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(decode(Link::Sll2, &sll2).unwrap().payload, b"sll");
        for family in [2u32.to_le_bytes(), 2u32.to_be_bytes()] {
            let mut null = family.to_vec();
            null.extend_from_slice(&ip);
            assert_eq!(decode(Link::Null, &null).unwrap().payload, b"sll");
        }
    }

    #[test]
    fn truncated_headers_never_panic() {
        let f = eth(
            &[ETHERTYPE_VLAN],
            ETHERTYPE_IPV6,
            &ipv6(&[], IPPROTO_TCP, &tcp(b"abc")),
        );
        for n in 0..f.len() {
            let _ = decode(Link::Ethernet, &f[..n]);
            let _ = decode(Link::Raw, &f[n..]);
            let _ = decode(Link::Sll, &f[..n]);
            let _ = decode(Link::Sll2, &f[..n]);
            let _ = decode(Link::Null, &f[..n]);
        }
        // A TCP data offset below 5 or past the end.
        let mut t = tcp(b"");
        t[12] = 4 << 4;
        assert_eq!(decode(Link::Raw, &ipv4(&t, 0)), Err(Skip::Malformed));
        t[12] = 15 << 4;
        assert_eq!(decode(Link::Raw, &ipv4(&t, 0)), Err(Skip::Malformed));
    }

    #[test]
    fn link_types() {
        assert_eq!(Link::from_linktype(1), Some(Link::Ethernet));
        assert_eq!(Link::from_linktype(276), Some(Link::Sll2));
        assert_eq!(Link::from_linktype(105), None);
    }
}
