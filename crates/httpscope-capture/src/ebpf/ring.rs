//! Per-CPU BPF ring buffers, read in timestamp order, with the consumer position published
//! once per drain.
//!
//! Why not `aya::maps::RingBuf`: it stores the consumer position after every record, and
//! the kernel reads that position at every reserve and commit, so with the reader on one CPU
//! and the traced programs on another each event paid a cache-line transfer in the kernel.
//! And why several rings: one ring shared by every CPU makes its spinlock and producer
//! position move between the CPUs at every event (measured ~150 ns per event on two vCPUs,
//! BENCHMARKS.md); the programs now write into the ring of the CPU they run on
//! (`HS_RINGS`, an array of ring buffers indexed by CPU).
//!
//! Order. Events of one socket can land in different rings (a process migrates between
//! syscalls), so records are merged by their timestamp (the first 8 bytes of every record,
//! `bpf_ktime_get_ns`). A drain takes the time `cutoff` first, then snapshots every ring's
//! producer position, and hands out, in timestamp order, only records stamped before
//! `cutoff`. That is enough for the events of one thread: an event stamped before `cutoff`
//! was produced by a syscall that began after every earlier syscall of the thread had
//! committed its record, so all those records are inside the snapshot and are handed out
//! first. Records stamped at or after `cutoff` wait for the next drain.
//!
//! The kernel's layout (`kernel/bpf/ringbuf.c`): page 0 holds the consumer position (ours to
//! write), page 1 the producer position, then the data pages mapped twice in a row so that a
//! record that wraps around is contiguous. Each record is an 8-byte header (length with a
//! busy and a discard bit, page offset) and its data, rounded up to 8 bytes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SIZE: u64 = 8;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// One mapped ring buffer.
pub(crate) struct Ring {
    fd: RawFd,
    consumer: *mut u8,
    producer: *mut u8,
    page: usize,
    data_len: usize,
    mask: u64,
    /// Our consumer position (what we have read), published at the end of a drain.
    pos: u64,
    published: u64,
    /// The producer position as of the last snapshot.
    limit: u64,
    /// The producer position as of the snapshot before: the records before it were
    /// committed before the last drain's snapshot, so stamped before this drain began,
    /// whatever their timestamp says.
    prev_limit: u64,
    /// The record at `pos` once looked at: its data offset, length and timestamp.
    head: Option<(u64, u32, u64)>,
    /// Whether the memory is our mmap (unmapped on drop).
    mapped: bool,
}

// SAFETY: the mappings belong to this value alone; the kernel is the only other party.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring buffer map `fd` of `size` bytes (a power of two, a multiple of the
    /// page size). The map must outlive the `Ring`.
    pub(crate) fn new(fd: BorrowedFd<'_>, size: u32) -> io::Result<Ring> {
        let page = page_size();
        let data_len = size as usize;
        if data_len == 0 || !data_len.is_power_of_two() || !data_len.is_multiple_of(page) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring buffer size {size} is not a power-of-two multiple of the page size"),
            ));
        }
        let raw = fd.as_raw_fd();
        // SAFETY: mapping a ring buffer map's consumer page read-write, as the kernel allows.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the producer page and the data pages twice, read-only.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * data_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                raw,
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping what was mapped above.
            unsafe { libc::munmap(consumer, page) };
            return Err(err);
        }
        // SAFETY: the two mappings just made, with the kernel's layout.
        Ok(unsafe { Ring::from_raw(raw, consumer.cast(), producer.cast(), page, data_len, true) })
    }

    /// A ring over memory laid out as the kernel's mapping: `consumer` one page, `producer`
    /// one page then the data twice. `mapped`: unmap both on drop.
    ///
    /// # Safety
    /// The memory must stay valid and laid out so for the life of the ring.
    unsafe fn from_raw(
        fd: RawFd,
        consumer: *mut u8,
        producer: *mut u8,
        page: usize,
        data_len: usize,
        mapped: bool,
    ) -> Ring {
        let mut ring = Ring {
            fd,
            consumer,
            producer,
            page,
            data_len,
            mask: data_len as u64 - 1,
            pos: 0,
            published: 0,
            limit: 0,
            prev_limit: 0,
            head: None,
            mapped,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        ring.published = ring.pos;
        ring.limit = ring.pos;
        ring.prev_limit = ring.pos;
        ring
    }

    /// The ring buffer's fd (for poll).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page is mapped, page-aligned, and its first 8 bytes are the
        // consumer position (an unsigned long the kernel reads with acquire semantics).
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    /// Takes the producer position: records up to it may be read (if committed).
    fn snapshot(&mut self) {
        // SAFETY: the producer page is mapped and its first 8 bytes are the producer
        // position, written by the kernel with release semantics.
        let p = unsafe { &*self.producer.cast::<AtomicU64>() };
        self.prev_limit = self.limit;
        self.limit = p.load(Ordering::Acquire);
    }

    /// The timestamp of the next committed record within the snapshot (discarded records
    /// are skipped), or None when there is none yet.
    fn peek(&mut self) -> Option<u64> {
        if let Some((_, _, ts)) = self.head {
            return Some(ts);
        }
        while self.pos < self.limit {
            let off = (self.pos & self.mask) as usize;
            // SAFETY: off < data_len, and the header (8 bytes, 8-aligned) lies inside the
            // data pages, which start one page into the producer mapping.
            let hdr = unsafe { &*self.producer.add(self.page + off).cast::<AtomicU32>() };
            let len = hdr.load(Ordering::Acquire);
            if len & BUSY_BIT != 0 {
                return None;
            }
            let size = len & !(BUSY_BIT | DISCARD_BIT);
            let total = (u64::from(size) + HDR_SIZE + 7) & !7;
            if len & DISCARD_BIT != 0 || u64::from(size) > self.mask {
                // A discarded record, or a length no record can have: step over it (the
                // latter cannot come from the kernel; never read past the mapping).
                self.pos += total.min(self.limit - self.pos);
                continue;
            }
            let data = off as u64 + HDR_SIZE;
            let ts = if size >= 8 {
                // SAFETY: data + 8 <= off + 8 + size <= 2 * data_len: inside the double
                // mapping.
                unsafe {
                    std::ptr::read_unaligned(self.producer.add(self.page + data as usize).cast())
                }
            } else {
                0
            };
            self.head = Some((data, size, ts));
            return Some(ts);
        }
        None
    }

    /// The record `peek` looked at.
    fn record(&self) -> &[u8] {
        match self.head {
            // SAFETY: the record lies inside the double mapping (size <= mask, off < len),
            // and the kernel does not touch committed data before we move past it.
            Some((data, size, _)) => unsafe {
                std::slice::from_raw_parts(
                    self.producer.add(self.page + data as usize),
                    size as usize,
                )
            },
            None => &[],
        }
    }

    /// Moves past the record `peek` looked at.
    fn consume(&mut self) {
        if let Some((_, size, _)) = self.head.take() {
            self.pos += (u64::from(size) + HDR_SIZE + 7) & !7;
        }
    }

    /// Tells the kernel how far we have read (frees the space), if that moved.
    fn publish(&mut self) {
        if self.pos != self.published {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if !self.mapped {
            return;
        }
        // SAFETY: unmapping exactly what new() mapped.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.data_len);
        }
    }
}

/// Several rings read as one stream in timestamp order (see the module doc).
pub(crate) struct Rings {
    rings: Vec<Ring>,
    active: Vec<usize>,
    pollfds: Vec<libc::pollfd>,
}

impl Rings {
    pub(crate) fn new(rings: Vec<Ring>) -> Rings {
        let pollfds = rings
            .iter()
            .map(|r| libc::pollfd {
                fd: r.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Rings {
            rings,
            active: Vec::new(),
            pollfds,
        }
    }

    /// Hands out up to `max` records in timestamp order, each to `f`; with `ordered`, only
    /// records stamped before now (taken before the producer positions are), so that a
    /// record still on its way into another ring cannot be overtaken. Without it (the final
    /// drain, or a single ring), everything committed. Returns how many were handed out.
    pub(crate) fn drain(&mut self, ordered: bool, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        // None: hand out everything committed, whatever its timestamp. Nor is a record held
        // back twice (see `prev_limit`): a timestamp that never falls below a cutoff cannot
        // come from the kernel, and must not block its ring for good.
        let cutoff = if ordered && self.rings.len() > 1 {
            Some(super::monotonic_ns())
        } else {
            None
        };
        self.active.clear();
        for (i, r) in self.rings.iter_mut().enumerate() {
            r.snapshot();
            if r.pos < r.limit {
                self.active.push(i);
            }
        }
        let mut n = 0;
        while n < max {
            let mut best: Option<(usize, u64)> = None;
            let mut k = 0;
            while k < self.active.len() {
                let i = self.active[k];
                let r = &mut self.rings[i];
                match r.peek() {
                    Some(ts) => {
                        let due = cutoff.is_none_or(|c| ts < c) || r.pos < r.prev_limit;
                        if due && best.is_none_or(|(_, b)| ts < b) {
                            best = Some((i, ts));
                        }
                        k += 1;
                    }
                    // Nothing more in this ring for this drain.
                    None => {
                        self.active.swap_remove(k);
                    }
                }
            }
            let Some((i, _)) = best else { break };
            let r = &mut self.rings[i];
            f(r.record());
            r.consume();
            n += 1;
        }
        for r in &mut self.rings {
            r.publish();
        }
        n
    }

    /// Waits up to `ms` milliseconds for any ring to have data; an interrupted wait is not
    /// an error.
    pub(crate) fn wait(&mut self, ms: libc::c_int) -> io::Result<()> {
        // SAFETY: a valid array of pollfds of the given length.
        let r = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ms,
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(())
    }
}

/// Creates a BPF ring buffer map of `size` bytes (the inner maps of `HS_RINGS`).
pub(crate) fn create_ringbuf(size: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries,
    // map_flags, then fields we leave zero (the kernel wants unused bytes zero).
    let mut attr = [0u32; 32];
    attr[0] = 27; // BPF_MAP_TYPE_RINGBUF
    attr[3] = size;
    // map_name (offset 28, 16 bytes): "hs_ring"
    let name = b"hs_ring\0";
    // SAFETY: writing 8 bytes inside the 128-byte attr array at byte offset 28.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            attr.as_mut_ptr().cast::<u8>().add(28),
            name.len(),
        );
    }
    // SAFETY: BPF_MAP_CREATE (0) with a valid attr of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;
    const LEN: usize = 4096;

    /// A fake ring: the consumer page and the producer page + data (twice), as u64 words.
    struct Fake {
        consumer: Vec<u64>,
        producer: Vec<u64>,
        prod: u64,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                consumer: vec![0; PAGE / 8],
                producer: vec![0; (PAGE + 2 * LEN) / 8],
                prod: 0,
            }
        }

        /// Appends a record (ts, then `extra` bytes) with the given header flag bits,
        /// written in both copies of the data.
        fn push(&mut self, ts: u64, extra: usize, bits: u32) {
            let size = 8 + extra;
            let total = (size + 8 + 7) & !7;
            let bytes: &mut [u8] = bytemuck_bytes(&mut self.producer);
            for copy in [0, LEN] {
                let off = PAGE + copy + (self.prod as usize % LEN);
                bytes[off..off + 4].copy_from_slice(&(size as u32 | bits).to_ne_bytes());
                bytes[off + 8..off + 16].copy_from_slice(&ts.to_ne_bytes());
            }
            self.prod += total as u64;
            bytes[..8].copy_from_slice(&self.prod.to_ne_bytes());
        }

        fn ring(&mut self) -> Ring {
            // SAFETY: the vectors outlive the ring in each test and have the layout.
            unsafe {
                Ring::from_raw(
                    -1,
                    self.consumer.as_mut_ptr().cast(),
                    self.producer.as_mut_ptr().cast(),
                    PAGE,
                    LEN,
                    false,
                )
            }
        }
    }

    fn bytemuck_bytes(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: u64 words viewed as their bytes.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len() * 8) }
    }

    fn ts_of(rec: &[u8]) -> u64 {
        u64::from_ne_bytes(rec[..8].try_into().unwrap())
    }

    #[test]
    fn records_of_two_rings_come_out_in_timestamp_order_and_stop_at_a_busy_record() {
        let (mut a, mut b) = (Fake::new(), Fake::new());
        a.push(10, 0, 0);
        a.push(30, 5, 0);
        a.push(35, 3, DISCARD_BIT);
        a.push(50, 100, 0);
        b.push(20, 1, 0);
        b.push(40, 0, 0);
        b.push(45, 0, BUSY_BIT);
        b.push(60, 0, 0);
        let mut rings = Rings::new(vec![a.ring(), b.ring()]);
        let mut seen = Vec::new();
        let n = rings.drain(false, usize::MAX, |r| seen.push(ts_of(r)));
        assert_eq!(n, 5);
        assert_eq!(seen, [10, 20, 30, 40, 50]);
        // Published once per drain: all of ring a, ring b up to its busy record.
        assert_eq!(a.consumer[0], a.prod);
        assert_eq!(b.consumer[0], 24 + 16);
        // At most `max` per drain, and what is left comes next time.
        drop(rings);
        let (mut c, mut d) = (Fake::new(), Fake::new());
        for t in [1, 3, 5] {
            c.push(t, 0, 0);
        }
        for t in [2, 4] {
            d.push(t, 0, 0);
        }
        let mut rings = Rings::new(vec![c.ring(), d.ring()]);
        let mut seen = Vec::new();
        assert_eq!(rings.drain(false, 2, |r| seen.push(ts_of(r))), 2);
        assert_eq!(rings.drain(false, 10, |r| seen.push(ts_of(r))), 3);
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert_eq!(rings.drain(false, 10, |_| ()), 0);
    }

    #[test]
    fn an_ordered_drain_holds_back_records_stamped_after_it_began() {
        let (mut a, mut b) = (Fake::new(), Fake::new());
        a.push(1, 0, 0);
        a.push(u64::MAX - 1, 0, 0);
        b.push(2, 0, 0);
        let mut rings = Rings::new(vec![a.ring(), b.ring()]);
        let mut seen = Vec::new();
        assert_eq!(rings.drain(true, usize::MAX, |r| seen.push(ts_of(r))), 2);
        assert_eq!(seen, [1, 2]);
        assert_eq!(rings.drain(false, usize::MAX, |r| seen.push(ts_of(r))), 1);
        assert_eq!(seen, [1, 2, u64::MAX - 1]);
    }

    #[test]
    fn no_timestamp_blocks_its_ring_for_good() {
        // Kernel records are untrusted input: one stamped u64::MAX must not stay at the
        // head of its ring (blocking every record behind it).
        // Unordered (one ring): handed out at once.
        let mut a = Fake::new();
        a.push(u64::MAX, 0, 0);
        a.push(3, 0, 0);
        let mut rings = Rings::new(vec![a.ring()]);
        let mut seen = Vec::new();
        assert_eq!(rings.drain(true, usize::MAX, |r| seen.push(ts_of(r))), 2);
        assert_eq!(seen, [u64::MAX, 3]);
        assert_eq!(a.consumer[0], a.prod);
        drop(rings);
        // Ordered (two rings): held back by one drain, not by the next (every record of a
        // drain's snapshot was stamped before the next drain began).
        let (mut a, mut b) = (Fake::new(), Fake::new());
        a.push(u64::MAX, 0, 0);
        a.push(3, 0, 0);
        b.push(1, 0, 0);
        let mut rings = Rings::new(vec![a.ring(), b.ring()]);
        let mut seen = Vec::new();
        assert_eq!(rings.drain(true, usize::MAX, |r| seen.push(ts_of(r))), 1);
        b.push(2, 0, 0);
        assert_eq!(rings.drain(true, usize::MAX, |r| seen.push(ts_of(r))), 3);
        assert_eq!(seen, [1, 2, u64::MAX, 3]);
        assert_eq!(a.consumer[0], a.prod);
    }

    #[test]
    fn a_record_that_wraps_around_is_read_whole() {
        let mut a = Fake::new();
        // Fill up to 16 bytes before the end, consume, then a 40-byte record wraps.
        a.push(1, LEN - 16 - 16, 0);
        let mut rings = Rings::new(vec![a.ring()]);
        assert_eq!(rings.drain(false, usize::MAX, |_| ()), 1);
        a.push(7, 24, 0);
        let mut got = Vec::new();
        rings.drain(false, usize::MAX, |r| got.push((ts_of(r), r.len())));
        assert_eq!(got, [(7, 32)]);
    }
}
