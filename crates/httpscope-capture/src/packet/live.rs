//! Live capture through an AF_PACKET socket (Linux).
//!
//! One `SOCK_RAW` packet socket, bound to one interface or to all of them (`"any"`), read
//! with `recvfrom` so that each frame comes with its interface's hardware type and its
//! packet type. On a loopback interface the kernel shows every packet twice, once outgoing
//! and once incoming: the outgoing copy is dropped. A receive timeout lets the loop see the
//! stop flag and send batches on time even when nothing arrives. Kernel-side drops (socket
//! buffer full) are read with `PACKET_STATISTICS` and reported as `kernel_lost`.
//!
//! A `recvfrom` per frame costs a system call each; a `PACKET_MMAP` ring would cost less at
//! very high packet rates, and is the next step if a monitored host needs it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use httpscope_model::batch::BatchSender;

use super::flows::Tracker;
use super::wire::Link;
use super::{FrameCounts, PacketConfig, PacketError};

/// How often a batch is sent even when it is not full.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The receive buffer: big enough for a 64 KiB GSO frame on loopback plus headers.
const FRAME_BUFFER: usize = 256 * 1024;
/// The socket's kernel receive buffer.
const SOCKET_BUFFER: libc::c_int = 16 << 20;

const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_NONE: u16 = 0xfffe;
const PACKET_OUTGOING: u8 = 4;

/// What a live capture did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveReport {
    /// Frames received (the outgoing loopback copies not counted).
    pub packets: u64,
    /// Of those, TCP segments looked at.
    pub tcp_segments: u64,
    /// Frames whose headers could not be decoded.
    pub undecodable: u64,
    /// Frames from interfaces whose hardware type is not decoded.
    pub unsupported_link: u64,
    /// Frames the kernel dropped because the socket buffer was full.
    pub kernel_drops: u64,
    /// TCP connections seen.
    pub connections: u64,
    /// Transactions produced (some may have been dropped by a full channel, which the
    /// channel counts).
    pub transactions: u64,
}

struct Socket(libc::c_int);

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open(interface: &str) -> Result<Socket, PacketError> {
    let live_err = |source| PacketError::Live {
        interface: interface.to_owned(),
        source,
    };
    let ifindex = if interface == "any" {
        0
    } else {
        let name = std::ffi::CString::new(interface)
            .map_err(|_| PacketError::NoSuchInterface(interface.to_owned()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if i == 0 {
            return Err(PacketError::NoSuchInterface(interface.to_owned()));
        }
        i as libc::c_int
    };
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto.into(),
        )
    };
    if fd < 0 {
        return Err(live_err(io::Error::last_os_error()));
    }
    let sock = Socket(fd);
    if ifindex != 0 {
        // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(live_err(io::Error::last_os_error()));
        }
    }
    // Root may exceed rmem_max; others fall back to the ordinary limit.
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &SOCKET_BUFFER);
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv).map_err(live_err)?;
    Ok(sock)
}

/// Drops the kernel counted since the previous call (reading resets them).
fn kernel_drops(fd: libc::c_int) -> u64 {
    // SAFETY: tpacket_stats is plain data; getsockopt writes at most `len` bytes.
    unsafe {
        let mut st: libc::tpacket_stats = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        );
        if r == 0 {
            u64::from(st.tp_drops)
        } else {
            0
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Captures on `interface` (a name such as `eth0` or `lo`, or `"any"` for all interfaces)
/// until `stop` is set, sending batches with [`BatchSender::send`], which never blocks: when
/// the monitor falls behind, batches are dropped and the channel counts them. Needs
/// `CAP_NET_RAW`. Returns within about 100 ms of `stop` being set, after closing every
/// connection and sending the last batch.
pub fn capture_live(
    interface: &str,
    cfg: &PacketConfig,
    tx: &BatchSender,
    stop: &AtomicBool,
) -> Result<LiveReport, PacketError> {
    let sock = open(interface)?;
    let fd = sock.0;
    let _ = kernel_drops(fd); // reset the counters
    let mut tracker = Tracker::new(cfg);
    let mut counts = FrameCounts::default();
    let mut report = LiveReport::default();
    let mut buf = vec![0u8; FRAME_BUFFER];
    let mut last_flush = Instant::now();
    let batch_size = cfg.batch_size.max(1);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: sockaddr_ll is plain data; recvfrom writes at most the lengths passed.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                _ => {
                    return Err(PacketError::Live {
                        interface: interface.to_owned(),
                        source: e,
                    })
                }
            }
        } else {
            let frame = &buf[..n as usize];
            let link = match from.sll_hatype {
                ARPHRD_LOOPBACK if from.sll_pkttype == PACKET_OUTGOING => None,
                ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(Link::Ethernet),
                ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_PPP => Some(Link::Raw),
                _ => {
                    report.unsupported_link += 1;
                    None
                }
            };
            if let Some(link) = link {
                counts.frame(&mut tracker, now_ns(), link, frame);
            }
        }
        if tracker.pending() >= batch_size || last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            tracker.tick(now_ns());
            let drops = kernel_drops(fd);
            report.kernel_drops += drops;
            tracker.stats().kernel_lost += drops;
            let batch = tracker.take_batch();
            if !batch.is_empty() {
                tx.send(batch)?;
            }
        }
    }
    let drops = kernel_drops(fd);
    report.kernel_drops += drops;
    tracker.stats().kernel_lost += drops;
    let last = tracker.finish();
    if !last.is_empty() {
        tx.send(last)?;
    }
    report.packets = counts.packets;
    report.tcp_segments = counts.tcp_segments;
    report.undecodable = counts.undecodable;
    report.connections = tracker.totals.connections;
    report.transactions = tracker.totals.transactions;
    Ok(report)
}
