//! Capture files: pcap (both byte orders, micro- and nanosecond, the "modified" variant) and
//! pcapng (sections, interfaces with their own time resolution and offset, enhanced and
//! simple packet blocks), parsed by `pcap-parser` out of one large reused read buffer.
//!
//! The buffer is filled by big sequential reads (4 MiB), so memory stays constant whatever
//! the file size, the page cache does the read-ahead, and nothing is mapped: a mapping of a
//! large file counts against the resident size as it is touched. A record larger than the
//! buffer grows it up to [`MAX_RECORD`]; anything larger is treated as damage. A damaged or
//! truncated file is read up to the last whole record, and where it stopped is reported.

use std::io::{self, Read};

use pcap_parser::nom;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::PcapError;

use super::wire::Link;

/// The read buffer's size once a capture proves large (it starts at 64 KiB, so that small
/// inputs cost little, and doubles on each refill up to this).
const BUFFER: usize = 4 << 20;
/// The largest record (pcap record or pcapng block) accepted; larger ones mean damage.
pub(crate) const MAX_RECORD: usize = 16 << 20;

/// Why a capture could not be read at all.
#[derive(Debug)]
pub(crate) enum OpenError {
    Io(io::Error),
    NotACapture,
    UnsupportedLinkType(i32),
}

/// How reading a capture ended, when it got going.
#[derive(Debug, Default)]
pub(crate) struct ReadEnd {
    /// Bytes consumed as whole records.
    pub bytes: u64,
    /// Why reading stopped before the end of the input, if it did.
    pub stopped: Option<String>,
    /// Packets on interfaces whose link type we do not decode.
    pub unsupported_link: u64,
    /// Packets whose interface was never described (damaged pcapng).
    pub unknown_interface: u64,
    /// The first link type met that we do not decode.
    pub unsupported_linktype: Option<i32>,
}

/// One interface of a pcapng section.
#[derive(Clone, Copy, Debug)]
struct Iface {
    link: Option<Link>,
    /// Timestamp units per second.
    units: u64,
    /// Seconds to add to every timestamp.
    offset_s: i64,
}

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        modified: bool,
        link: Link,
    },
    PcapNg {
        big_endian: bool,
        ifaces: Vec<Iface>,
    },
}

struct Buffer<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Input offset of `buf[start]`.
    offset: u64,
}

impl<R: Read> Buffer<R> {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Reads more input, moving what is left to the front and growing the buffer if a record
    /// needs it. Returns false at the end of the input or when a record would pass
    /// [`MAX_RECORD`].
    fn refill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < BUFFER {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        } else if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RECORD {
                return Ok(false);
            }
            let len = (self.buf.len() * 2).min(MAX_RECORD);
            self.buf.resize(len, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes at least `n` bytes available if the input has them.
    fn want(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if !self.refill()? {
                return Ok(self.end - self.start >= n);
            }
        }
        Ok(true)
    }
}

/// Reads a whole capture from `reader`, calling `on_packet(ts_ns, link, frame)` for each
/// packet (which returns false to stop reading) and `on_progress(bytes_consumed_so_far)`
/// every few megabytes.
pub(crate) fn read_capture<R: Read>(
    reader: R,
    mut on_packet: impl FnMut(u64, Link, &[u8]) -> bool,
    mut on_progress: impl FnMut(u64),
) -> Result<ReadEnd, OpenError> {
    let mut b = Buffer {
        reader,
        buf: vec![0; 64 << 10],
        start: 0,
        end: 0,
        eof: false,
        offset: 0,
    };
    if !b.want(4).map_err(OpenError::Io)? {
        return Err(OpenError::NotACapture);
    }
    let magic = [b.data()[0], b.data()[1], b.data()[2], b.data()[3]];
    let mut format = match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => Format::PcapNg {
            big_endian: false,
            ifaces: Vec::new(),
        },
        _ => {
            let m = u32::from_le_bytes(magic);
            if !matches!(
                m,
                0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1
            ) {
                return Err(OpenError::NotACapture);
            }
            if !b.want(24).map_err(OpenError::Io)? {
                return Err(OpenError::NotACapture);
            }
            let header = match pcap_parser::parse_pcap_header(b.data()) {
                Ok((_, h)) => h,
                Err(_) => return Err(OpenError::NotACapture),
            };
            let link = Link::from_linktype(header.network.0)
                .ok_or(OpenError::UnsupportedLinkType(header.network.0))?;
            b.consume(24);
            Format::Pcap {
                big_endian: header.is_bigendian(),
                nanos: header.is_nanosecond_precision(),
                modified: header.is_modified_format(),
                link,
            }
        }
    };

    let mut end = ReadEnd::default();
    let mut last_progress = 0u64;
    let mut last_ts = 0u64;
    let mut go_on = true;
    while go_on {
        if b.offset - last_progress >= 4 << 20 {
            last_progress = b.offset;
            on_progress(b.offset);
        }
        let data = b.data();
        let parsed = match &mut format {
            Format::Pcap {
                big_endian,
                nanos,
                modified,
                link,
            } => {
                let r = if *modified {
                    pcap_parser::parse_pcap_frame_modified(data)
                } else if *big_endian {
                    pcap_parser::parse_pcap_frame_be(data)
                } else {
                    pcap_parser::parse_pcap_frame(data)
                };
                match r {
                    Ok((rest, rec)) => {
                        let frac = u64::from(rec.ts_usec);
                        let frac_ns = if *nanos { frac } else { frac * 1000 };
                        last_ts = u64::from(rec.ts_sec) * 1_000_000_000 + frac_ns;
                        go_on = on_packet(last_ts, *link, rec.data);
                        Ok(data.len() - rest.len())
                    }
                    Err(e) => Err(e),
                }
            }
            Format::PcapNg { big_endian, ifaces } => {
                let r = if *big_endian {
                    pcap_parser::parse_block_be(data)
                } else {
                    pcap_parser::parse_block_le(data)
                };
                match r {
                    Ok((rest, block)) => {
                        match block {
                            Block::SectionHeader(shb) => {
                                *big_endian = shb.big_endian();
                                ifaces.clear();
                            }
                            Block::InterfaceDescription(idb) => {
                                if ifaces.len() < 65_536 {
                                    ifaces.push(Iface {
                                        link: Link::from_linktype(idb.linktype.0),
                                        units: idb.ts_resolution().unwrap_or(1_000_000),
                                        offset_s: idb.ts_offset(),
                                    });
                                }
                                if Link::from_linktype(idb.linktype.0).is_none() {
                                    end.unsupported_linktype.get_or_insert(idb.linktype.0);
                                }
                            }
                            Block::EnhancedPacket(epb) => match ifaces.get(epb.if_id as usize) {
                                Some(Iface {
                                    link: Some(link),
                                    units,
                                    offset_s,
                                }) => {
                                    let raw =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let ns = u128::from(raw) * 1_000_000_000
                                        / u128::from((*units).max(1));
                                    let ns = (ns as i128 + i128::from(*offset_s) * 1_000_000_000)
                                        .clamp(0, i128::from(u64::MAX));
                                    last_ts = ns as u64;
                                    go_on = on_packet(last_ts, *link, epb.packet_data());
                                }
                                Some(_) => end.unsupported_link += 1,
                                None => end.unknown_interface += 1,
                            },
                            Block::SimplePacket(spb) => match ifaces.first() {
                                // A simple packet block has no timestamp: it inherits the
                                // previous packet's.
                                Some(Iface {
                                    link: Some(link), ..
                                }) => go_on = on_packet(last_ts, *link, spb.packet_data()),
                                Some(_) => end.unsupported_link += 1,
                                None => end.unknown_interface += 1,
                            },
                            _ => {}
                        }
                        Ok(data.len() - rest.len())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match parsed {
            Ok(n) => b.consume(n),
            Err(nom::Err::Incomplete(_)) => {
                let had = b.end - b.start;
                match b.refill() {
                    Ok(true) => continue,
                    Ok(false) if had == 0 && b.eof => break,
                    Ok(false) if b.eof => {
                        end.stopped = Some(format!(
                            "truncated: the last record at byte {} is cut short ({} bytes left)",
                            b.offset, had
                        ));
                        break;
                    }
                    Ok(false) => {
                        end.stopped = Some(format!(
                            "damaged: the record at byte {} claims more than {} MiB",
                            b.offset,
                            MAX_RECORD >> 20
                        ));
                        break;
                    }
                    Err(e) => {
                        end.stopped = Some(format!("read error at byte {}: {e}", b.offset));
                        break;
                    }
                }
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                let what = match e {
                    PcapError::HeaderNotRecognized => "unrecognised block",
                    _ => "damaged record",
                };
                end.stopped = Some(format!("{what} at byte {}", b.offset));
                break;
            }
        }
    }
    end.bytes = b.offset;
    on_progress(b.offset);
    if let Format::PcapNg { ifaces, .. } = &format {
        // Every described interface has a link type we do not decode: say so rather than
        // report an empty result.
        if !ifaces.is_empty() && ifaces.iter().all(|i| i.link.is_none()) {
            return Err(OpenError::UnsupportedLinkType(
                end.unsupported_linktype.unwrap_or(-1),
            ));
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::synth::{Format, Writer};

    fn frames() -> Vec<(u64, Vec<u8>)> {
        (0..5u64)
            .map(|i| {
                (
                    1_700_000_000_123_456_789 + i * 1_001_001,
                    vec![i as u8; 60 + i as usize],
                )
            })
            .collect()
    }

    fn read(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, ReadEnd) {
        let mut got = Vec::new();
        let end = read_capture(
            bytes,
            |ts, link, f| {
                assert_eq!(link, Link::Ethernet);
                got.push((ts, f.to_vec()));
                true
            },
            |_| {},
        )
        .unwrap();
        (got, end)
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for (nanos, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut w = Writer::new(Format::Pcap { nanos, big_endian });
            for (ts, f) in frames() {
                w.frame(ts, &f);
            }
            let (got, end) = read(w.bytes());
            assert_eq!(end.bytes, w.bytes().len() as u64);
            assert!(end.stopped.is_none());
            let want: Vec<_> = frames()
                .into_iter()
                .map(|(ts, f)| (if nanos { ts } else { ts / 1000 * 1000 }, f))
                .collect();
            assert_eq!(got, want, "nanos={nanos} big_endian={big_endian}");
        }
    }

    #[test]
    fn pcapng_interfaces_with_their_own_resolution() {
        let mut w = Writer::new(Format::PcapNg {
            tsresol: [6, 9],
            interfaces: 2,
        });
        for (ts, f) in frames() {
            w.frame(ts, &f);
        }
        let (got, end) = read(w.bytes());
        assert!(end.stopped.is_none());
        // Packets alternate: interface 1 (count 1, 3, 5 -> odd) in microseconds... the writer
        // puts packet n on interface n % 2, counting from 1.
        for (i, ((ts, f), (wts, wf))) in got.iter().zip(frames()).enumerate() {
            assert_eq!(f, &wf);
            let on_iface1 = (i + 1) % 2 == 1;
            let want = if on_iface1 { wts } else { wts / 1000 * 1000 };
            assert_eq!(*ts, want, "packet {i}");
        }
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn truncated_file_reports_where_it_stopped() {
        let mut w = Writer::new(Format::Pcap {
            nanos: true,
            big_endian: false,
        });
        for (ts, f) in frames() {
            w.frame(ts, &f);
        }
        let bytes = w.into_bytes();
        let cut = &bytes[..bytes.len() - 10];
        let (got, end) = read(cut);
        assert_eq!(got.len(), 4);
        let why = end.stopped.unwrap();
        let last_start = bytes.len() - (16 + 64);
        assert!(why.contains(&format!("byte {last_start}")), "{why}");
        // Every possible cut is handled without panic, with whole records before it.
        for n in 0..bytes.len() {
            let r = read_capture(&bytes[..n], |_, _, _| true, |_| {});
            if n < 24 {
                assert!(matches!(r, Err(OpenError::NotACapture)), "cut at {n}");
            } else {
                assert!(r.is_ok());
            }
        }
    }

    #[test]
    fn not_a_capture_and_unsupported_link_types() {
        assert!(matches!(
            read_capture(&b""[..], |_, _, _| true, |_| {}),
            Err(OpenError::NotACapture)
        ));
        let text = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
        assert!(matches!(
            read_capture(&text[..], |_, _, _| true, |_| {}),
            Err(OpenError::NotACapture)
        ));
        let mut w = Writer::new(Format::Pcap {
            nanos: false,
            big_endian: false,
        });
        w.frame(0, &[0; 20]);
        let mut bytes = w.into_bytes();
        bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
        assert!(matches!(
            read_capture(&bytes[..], |_, _, _| true, |_| {}),
            Err(OpenError::UnsupportedLinkType(147))
        ));
        let mut w = Writer::new(Format::PcapNg {
            tsresol: [6, 6],
            interfaces: 1,
        });
        w.frame(0, &[0; 20]);
        let mut bytes = w.into_bytes();
        // The IDB's link type is right after the 28-byte SHB and the IDB's 8-byte header.
        bytes[36..38].copy_from_slice(&147u16.to_le_bytes());
        assert!(matches!(
            read_capture(&bytes[..], |_, _, _| true, |_| {}),
            Err(OpenError::UnsupportedLinkType(147))
        ));
    }

    #[test]
    fn damaged_record_length_stops_with_a_warning() {
        let mut w = Writer::new(Format::Pcap {
            nanos: false,
            big_endian: false,
        });
        for (ts, f) in frames() {
            w.frame(ts, &f);
        }
        let mut bytes = w.into_bytes();
        // The third record claims 3 GB.
        let third = 24 + (16 + 60) + (16 + 61);
        bytes[third + 8..third + 12].copy_from_slice(&3_000_000_000u32.to_le_bytes());
        let (got, end) = read(&bytes);
        assert_eq!(got.len(), 2);
        assert!(end.stopped.unwrap().contains(&format!("byte {third}")));
    }
}
