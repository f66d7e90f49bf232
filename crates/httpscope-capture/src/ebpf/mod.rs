//! Linux kernel capture through eBPF: socket payload with its process, for every program on
//! the host, without touching them.
//!
//! The kernel side is `bpf/http.bpf.c` (tp_btf programs on `sock_send_length` /
//! `sock_recv_length`, which find the syscall's user buffer in its saved registers, and
//! `inet_sock_set_state`; see its header comment).
//! It writes [`event`]s into one BPF ring buffer per CPU (read back in timestamp order by
//! `ring`): the socket cookie, 4-tuple, process, direction, syscall, length and up to
//! [`EbpfConfig::capture_bytes`] of payload, only for sockets whose bytes look like HTTP (the
//! 4-tuple and process only in a socket's first event, and again every half idle timeout). This module loads and attaches the programs with `aya`, turns events
//! into per-socket streams ([`streams`]) for [`httpscope_http::Connection`], and sends
//! [`Batch`]es of transactions plus telemetry (kernel losses included) without ever blocking.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use httpscope_capture::ebpf::{self, EbpfConfig};
//! use httpscope_model::{batch, Source};
//!
//! if let Err(why) = ebpf::probe() {
//!     eprintln!("eBPF unavailable: {why}");
//!     return;
//! }
//! let (tx, rx) = batch::channel(Source::Ebpf, 64);
//! let stop = AtomicBool::new(false);
//! let report = ebpf::capture(&EbpfConfig::default(), &tx, &stop).unwrap();
//! println!("{} events", report.stats.events);
//! # drop(rx);
//! ```

pub mod cgroup;
pub mod event;
mod ring;
pub mod streams;

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use httpscope_http::Output;
use httpscope_model::batch::{Batch, BatchSender};
use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::Source;

use event::{Event, RawStats, MAX_CAPTURE};
use streams::Streams;

/// The compiled programs (committed; rebuilt by build.rs when the C changes and clang exists).
static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/http.bpf.o"));

/// Program name in the object, and the tracepoint it attaches to, in attach order (socket
/// states first, so sockets established from now on are known to be seen from the start).
const PROGRAMS: &[(&str, &str)] = &[
    ("hs_sock_state", "inet_sock_set_state"),
    ("hs_sock_send", "sock_send_length"),
    ("hs_sock_recv", "sock_recv_length"),
];

/// How the eBPF source captures.
#[derive(Clone, Debug)]
pub struct EbpfConfig {
    /// Payload bytes copied per send/receive (default 512, at most 4096). Set at load time.
    pub capture_bytes: u32,
    /// Only sockets whose local or remote port is one of these (empty: all).
    pub ports: Vec<u16>,
    /// Only these processes (empty: all).
    pub pids: Vec<u32>,
    /// Only processes in this cgroup v2 directory or below it (absolute, or relative to the
    /// cgroup v2 mount, e.g. `system.slice/nginx.service`; default: all).
    pub cgroup: Option<std::path::PathBuf>,
    /// Ring buffer bytes in all (default 8 MiB), shared out between one ring per online CPU:
    /// each gets this divided by their number, rounded up to a power of two >= 4096.
    pub ring_buffer_bytes: u32,
    /// The HTTP parser's limits.
    pub http: httpscope_http::Config,
    /// The most sockets followed at once (default 65,536); events of more are dropped and
    /// counted as `dropped{connection_limit}`.
    pub max_connections: usize,
    /// A socket without events for this long is closed and counted as expired (default 60 s).
    pub idle_timeout: Duration,
    /// How often a batch is sent (default 100 ms), when there is something to send.
    pub flush_interval: Duration,
    /// How long the reader sleeps when the rings are empty (default 20 ms, at most the flush
    /// interval): the programs do not wake it per event, only when a quarter of a ring waits.
    pub poll_interval: Duration,
    /// Also capture this process's own sockets (default false: a monitor that serves its own
    /// metrics over HTTP should not watch itself).
    pub include_self: bool,
    /// Set to true once every program is attached (and back to false once detached), for
    /// callers that must not start traffic before the capture sees it.
    pub attached: Option<Arc<AtomicBool>>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            capture_bytes: 512,
            ports: Vec::new(),
            pids: Vec::new(),
            cgroup: None,
            ring_buffer_bytes: 8 * 1024 * 1024,
            http: httpscope_http::Config::default(),
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(60),
            flush_interval: Duration::from_millis(100),
            poll_interval: Duration::from_millis(20),
            include_self: false,
            attached: None,
        }
    }
}

/// Why the eBPF source cannot run on this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbpfUnavailable {
    /// Loading BPF programs needs root (CAP_BPF and CAP_PERFMON).
    #[error("not running as root (loading eBPF programs needs CAP_BPF and CAP_PERFMON)")]
    NotRoot,
    /// The kernel exposes no BTF (`/sys/kernel/btf/vmlinux`).
    #[error("the kernel has no BTF (/sys/kernel/btf/vmlinux): {0}")]
    NoBtf(String),
    /// A tracepoint the programs need is missing (kernel older than 6.3 for the socket ones).
    #[error(
        "the kernel has no tracepoint {0} (sock_send_length/sock_recv_length need Linux >= 6.3)"
    )]
    NoTracepoint(&'static str),
    /// The kernel refused the programs or maps.
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    /// The cgroup filter names no cgroup v2 directory.
    #[error("cgroup filter: {0}")]
    Cgroup(String),
}

/// What went wrong during a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbpfError {
    /// The source cannot run here.
    #[error(transparent)]
    Unavailable(#[from] EbpfUnavailable),
    /// Attaching a program failed.
    #[error("attaching {program} failed: {reason}")]
    Attach {
        /// Program name.
        program: &'static str,
        /// The kernel's or loader's message.
        reason: String,
    },
    /// A map could not be opened or used.
    #[error("eBPF map {map}: {reason}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The loader's message.
        reason: String,
    },
    /// Waiting for the ring buffer failed.
    #[error("polling the ring buffer failed: {0}")]
    Poll(std::io::Error),
}

/// What a capture did, returned when it stops.
#[derive(Clone, Debug, Default)]
pub struct EbpfReport {
    /// Everything sent in batches, summed (events, bytes, kernel losses, drops, parse stats).
    pub stats: SourceStats,
    /// Transactions sent.
    pub transactions: u64,
    /// Sockets followed.
    pub connections: u64,
    /// The kernel side's own counts, summed over CPUs.
    pub kernel: KernelCounts,
    /// Ids of the programs this capture loaded (all gone once it returned).
    pub program_ids: Vec<u32>,
    /// Ids of the maps this capture created (all gone once it returned).
    pub map_ids: Vec<u32>,
    /// How long the programs were attached.
    pub attached_for: Duration,
}

/// Counts kept in the kernel, per CPU, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Events written to the ring buffer.
    pub events: u64,
    /// Events lost because the ring buffer was full.
    pub ringbuf_lost: u64,
    /// Socket chunks skipped by the in-kernel HTTP pre-check.
    pub skipped_not_http: u64,
    /// Events of HTTP sockets sent without payload (sendfile, splice, unknown syscalls).
    pub length_only: u64,
    /// User memory the programs could not read.
    pub read_faults: u64,
}

impl From<RawStats> for KernelCounts {
    fn from(r: RawStats) -> Self {
        KernelCounts {
            events: r.events,
            ringbuf_lost: r.ringbuf_lost,
            skipped_not_http: r.skipped_not_http,
            length_only: r.length_only,
            read_faults: r.read_faults,
        }
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn btf() -> Result<Btf, EbpfUnavailable> {
    Btf::from_sys_fs().map_err(|e| EbpfUnavailable::NoBtf(e.to_string()))
}

/// Checks that the eBPF source can run here: root, BTF, the tracepoints, and that the kernel
/// accepts the programs (they are loaded, not attached, then unloaded).
pub fn probe() -> Result<(), EbpfUnavailable> {
    if !is_root() {
        return Err(EbpfUnavailable::NotRoot);
    }
    let btf = btf()?;
    let (loaded, _) = load(&EbpfConfig::default(), &btf)?;
    drop(loaded);
    Ok(())
}

/// Loads the object with the settings of `cfg` and loads (not attaches) every program.
fn load(cfg: &EbpfConfig, btf: &Btf) -> Result<(Loaded, Vec<u32>), EbpfUnavailable> {
    let capture_len = cfg.capture_bytes.min(MAX_CAPTURE);
    // tgid 0 is the idle task, which never sends on a socket: "exclude nobody".
    let self_tgid = if cfg.include_self {
        0
    } else {
        std::process::id()
    };
    let pids_on = u32::from(!cfg.pids.is_empty());
    let ports_on = u32::from(!cfg.ports.is_empty());
    let cg = match &cfg.cgroup {
        Some(path) => Some(cgroup::resolve(path).map_err(EbpfUnavailable::Cgroup)?),
        None => None,
    };
    let cgroup_on = u32::from(cg.is_some());
    let cgroup_level = cg.map_or(0, |c| c.level);
    let cgroup_id = cg.map_or(0, |c| c.id);
    let cpus = aya::util::nr_cpus()
        .map_err(|(path, e)| EbpfUnavailable::Load(format!("{path}: {e}")))?
        .max(1) as u32;
    // One ring per online CPU (a VM may declare many more possible CPUs than it runs); the
    // slots of the others share those rings, so a CPU brought online later still has one.
    let online = aya::util::online_cpus().unwrap_or_default();
    let online: Vec<u32> = if online.is_empty() {
        (0..cpus).collect()
    } else {
        online
    };
    let ring = ring_size(cfg.ring_buffer_bytes, online.len() as u32);
    let wakeup = u64::from(ring / 4);
    // Full event headers at least every half idle timeout: a stream is only dropped for
    // idleness after a whole one, so a short event always finds its socket's stream.
    let full_every =
        (cfg.idle_timeout.as_nanos() / 2).clamp(1_000_000, u128::from(u64::MAX)) as u64;
    let mut bpf = EbpfLoader::new()
        .btf(Some(btf))
        .override_global("CAPTURE_LEN", &capture_len, true)
        .override_global("SELF_TGID", &self_tgid, true)
        .override_global("FILTER_PIDS_ON", &pids_on, true)
        .override_global("FILTER_PORTS_ON", &ports_on, true)
        .override_global("FILTER_CGROUP_ON", &cgroup_on, true)
        .override_global("FILTER_CGROUP_LEVEL", &cgroup_level, true)
        .override_global("FILTER_CGROUP_ID", &cgroup_id, true)
        .override_global("WAKEUP_BYTES", &wakeup, true)
        .override_global("FULL_EVERY_NS", &full_every, true)
        .map_max_entries("HS_RINGS", cpus)
        .load(OBJECT)
        .map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
    {
        let map = bpf
            .map_mut("HS_FPIDS")
            .ok_or(EbpfUnavailable::Load("no map HS_FPIDS".into()))?;
        let mut pids: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        for &p in cfg.pids.iter().take(1024) {
            pids.insert(p, 1, 0)
                .map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        }
    }
    {
        let map = bpf
            .map_mut("HS_FPORTS")
            .ok_or(EbpfUnavailable::Load("no map HS_FPORTS".into()))?;
        let mut ports: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(map).map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        for &p in cfg.ports.iter().take(1024) {
            ports
                .insert(p, 1, 0)
                .map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        }
    }
    let rings = {
        let map = bpf
            .map_mut("HS_RINGS")
            .ok_or(EbpfUnavailable::Load("no map HS_RINGS".into()))?;
        let mut outer: ArrayOfMaps<_, MapData> =
            ArrayOfMaps::try_from(map).map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        let mut rings = Vec::with_capacity(online.len());
        for _ in &online {
            let fd = ring::create_ringbuf(ring)
                .map_err(|e| EbpfUnavailable::Load(format!("creating a ring buffer: {e}")))?;
            rings.push(MapData::from_fd(fd).map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?);
        }
        for cpu in 0..cpus {
            let k = online
                .iter()
                .position(|&c| c == cpu)
                .unwrap_or(cpu as usize % rings.len());
            outer
                .set(cpu, &rings[k], 0)
                .map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        }
        rings
    };
    let mut ids = Vec::new();
    for &(name, tp) in PROGRAMS {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .ok_or_else(|| EbpfUnavailable::Load(format!("no program {name} in the object")))?
            .try_into()
            .map_err(|e| EbpfUnavailable::Load(error_chain(&e)))?;
        prog.load(tp, btf).map_err(|e| match e {
            // The tracepoint's `btf_trace_<name>` typedef is not in the kernel's BTF.
            aya::programs::ProgramError::Btf(_) => EbpfUnavailable::NoTracepoint(tp),
            e => EbpfUnavailable::Load(format!("{name}: {}", error_chain(&e))),
        })?;
        if let Ok(info) = prog.info() {
            ids.push(info.id());
        }
    }
    Ok((
        Loaded {
            bpf,
            rings,
            ring_bytes: ring,
        },
        ids,
    ))
}

/// The loaded object, and the per-CPU ring buffers it writes into (`HS_RINGS`' values).
struct Loaded {
    bpf: Ebpf,
    rings: Vec<MapData>,
    ring_bytes: u32,
}

/// Each CPU's ring size: the total shared out, a power of two of at least one page.
fn ring_size(total: u32, cpus: u32) -> u32 {
    (total / cpus.max(1))
        .max(4096)
        .checked_next_power_of_two()
        .unwrap_or(1 << 30)
}

/// The kernel id of a map of one of the kinds the object uses.
pub(crate) fn map_id(m: &aya::maps::Map) -> Option<u32> {
    use aya::maps::Map;
    let data = match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d)
        | Map::Unsupported(d) => d,
        _ => return None,
    };
    data.info().ok().map(|i| i.id())
}

/// An error and its sources, one line (the verifier log included when there is one).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(crate) fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The kernel's `bpf_ktime_get_ns` clock.
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Per-CPU counters of a kernel side (the socket path's and the TLS probes').
pub(crate) trait CpuCounters: aya::Pod + Default {
    /// Adds `other` field by field.
    fn add_up(&mut self, other: &Self);
}

impl CpuCounters for RawStats {
    fn add_up(&mut self, other: &Self) {
        self.add(other);
    }
}

/// The counters of every CPU added up (zeros if the map cannot be read).
pub(crate) fn read_kernel_stats<T: CpuCounters>(map: &PerCpuArray<MapData, T>) -> T {
    let mut sum = T::default();
    if let Ok(values) = map.get(&0, 0) {
        for v in values.iter() {
            sum.add_up(v);
        }
    }
    sum
}

/// Waits up to `ms` milliseconds for a ring buffer's fd to have data (the programs do not
/// wake the reader per event); an interrupted wait is not an error.
pub(crate) fn wait_readable(fd: std::os::fd::RawFd, ms: libc::c_int) -> std::io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

/// What is pending (transactions, the parser's counts folded into `pending`) as one batch of
/// `source`; `pending` starts again from zero.
/// The most transactions a new batch reserves room for up front.
const MAX_BATCH_RESERVE: usize = 1 << 16;

pub(crate) fn take_batch(source: Source, out: &mut Output, pending: &mut SourceStats) -> Batch {
    let (transactions, parse) = out.take();
    // The next batch starts with room for as many as this one (capped): growing the vector
    // from empty by doubling, moving every transaction each time, was ~6% of the capture's
    // CPU under load (perf of the nginx benchmark).
    out.transactions
        .reserve(transactions.len().min(MAX_BATCH_RESERVE));
    pending.parse.merge(&parse);
    let mut batch = Batch::new(source);
    batch.transactions = transactions;
    batch.stats = std::mem::take(pending);
    batch
}

/// Loads and attaches the programs, then reads events until `stop` is set (checked at least
/// every 50 ms), sending batches through `tx` at `cfg.flush_interval` without ever blocking.
/// On return every program is detached and every map freed (also on error).
pub fn capture(
    cfg: &EbpfConfig,
    tx: &BatchSender,
    stop: &AtomicBool,
) -> Result<EbpfReport, EbpfError> {
    if !is_root() {
        return Err(EbpfUnavailable::NotRoot.into());
    }
    let btf = btf()?;
    let (loaded, program_ids) = load(cfg, &btf)?;
    let Loaded {
        mut bpf,
        rings: ring_maps,
        ring_bytes,
    } = loaded;
    let mut map_ids: Vec<u32> = bpf.maps().filter_map(|(_, m)| map_id(m)).collect();
    map_ids.extend(
        ring_maps
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.id())),
    );
    let mut report = EbpfReport {
        program_ids,
        map_ids,
        ..EbpfReport::default()
    };

    let mut rings = Vec::with_capacity(ring_maps.len());
    for m in &ring_maps {
        rings.push(
            ring::Ring::new(m.fd().as_fd(), ring_bytes).map_err(|e| EbpfError::Map {
                map: "HS_RINGS",
                reason: e.to_string(),
            })?,
        );
    }
    let mut rings = ring::Rings::new(rings);
    let stats_map = bpf.take_map("HS_STATS").ok_or(EbpfError::Map {
        map: "HS_STATS",
        reason: "missing".into(),
    })?;
    let stats_map: PerCpuArray<MapData, RawStats> =
        PerCpuArray::try_from(stats_map).map_err(|e| EbpfError::Map {
            map: "HS_STATS",
            reason: error_chain(&e),
        })?;

    let mut links = Vec::with_capacity(PROGRAMS.len());
    for &(name, _) in PROGRAMS {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(EbpfError::Attach {
                program: name,
                reason: "not in the object".into(),
            })?;
        let link = prog.attach().map_err(|e| EbpfError::Attach {
            program: name,
            reason: error_chain(&e),
        })?;
        links.push((name, link));
    }
    let attached_at = Instant::now();
    if let Some(flag) = &cfg.attached {
        flag.store(true, Ordering::SeqCst);
    }

    let wall_offset_ns = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    let mut streams = Streams::new(
        cfg.http.clone(),
        cfg.max_connections,
        cfg.idle_timeout,
        Duration::from_millis(200),
        wall_offset_ns,
    );
    let mut out = Output::default();
    let mut pending = SourceStats::default();
    let mut kernel_seen = RawStats::default();
    let mut last_flush = Instant::now();
    // The programs do not wake us per event (see output() in http.bpf.c): poll on a timer.
    let poll_ms = cfg
        .poll_interval
        .min(cfg.flush_interval)
        .as_millis()
        .clamp(1, 1000) as libc::c_int;

    // Events are handed out in timestamp order across the per-CPU rings (ring.rs).
    let result = loop {
        // Keep batches bounded under a flood.
        let drained = rings.drain(true, 65_536, |rec| {
            feed_record(&mut streams, rec, &mut out, &mut pending)
        });
        let stopping = stop.load(Ordering::Relaxed);
        if stopping || last_flush.elapsed() >= cfg.flush_interval {
            last_flush = Instant::now();
            if stopping {
                // Detach first, then read the rings to the end: from here on nothing is
                // added, so every event the kernel wrote (and counted in HS_STATS) is read,
                // and the counts told to the monitor add up. Draining while still attached
                // left the events of the last moments unread and uncounted.
                detach(&mut bpf, &mut links);
                rings.drain(false, usize::MAX, |rec| {
                    feed_record(&mut streams, rec, &mut out, &mut pending)
                });
            }
            streams.sweep(monotonic_ns(), &mut out, &mut pending);
            if stopping {
                streams.close_all(&mut out);
            }
            let k = read_kernel_stats(&stats_map);
            let lost = k.ringbuf_lost.saturating_sub(kernel_seen.ringbuf_lost);
            pending.kernel_skipped += k
                .skipped_not_http
                .saturating_sub(kernel_seen.skipped_not_http);
            kernel_seen = k;
            pending.kernel_lost += lost;
            pending.dropped.add(DropReason::KernelBufferFull, lost);
            let disconnected = flush(tx, &mut out, &mut pending, &mut report).is_err();
            if stopping || disconnected {
                break Ok(());
            }
        }
        if drained == 0 {
            if let Err(e) = rings.wait(poll_ms) {
                break Err(EbpfError::Poll(e));
            }
        }
    };
    report.kernel = kernel_seen.into();
    report.connections = streams.opened;
    report.attached_for = attached_at.elapsed();
    drop(rings);
    drop(stats_map);
    drop(bpf); // detaches every link and closes every fd
    drop(ring_maps);
    if let Some(flag) = &cfg.attached {
        flag.store(false, Ordering::SeqCst);
    }
    result.map(|()| report)
}

/// Detaches the programs (their maps stay), then waits for programs already running on
/// other CPUs to finish their writes: unregistering a tracepoint does not wait for them, and
/// a record still reserved (busy) would stop the final drain at it.
fn detach(
    bpf: &mut Ebpf,
    links: &mut Vec<(&'static str, aya::programs::tp_btf::BtfTracePointLinkId)>,
) {
    for (name, link) in links.drain(..) {
        let prog: Option<&mut BtfTracePoint> =
            bpf.program_mut(name).and_then(|p| p.try_into().ok());
        if let Some(prog) = prog {
            // An error leaves the link to be dropped with `bpf`, as before.
            let _ = prog.detach(link);
        }
    }
    // A program runs for microseconds; this is the end of a capture, once.
    std::thread::sleep(Duration::from_millis(5));
}

/// Decodes one ring-buffer record and feeds it to its socket's stream.
fn feed_record(streams: &mut Streams, rec: &[u8], out: &mut Output, pending: &mut SourceStats) {
    pending.events += 1;
    match Event::new_checked(rec) {
        Ok(ev) => streams.event(&ev, out, pending),
        Err(_) => {
            pending.undecodable += 1;
            pending.dropped.inc(DropReason::Undecodable);
        }
    }
}

/// Sends what is pending as one batch (if anything); `Err` when the monitor is gone.
fn flush(
    tx: &BatchSender,
    out: &mut Output,
    pending: &mut SourceStats,
    report: &mut EbpfReport,
) -> Result<(), httpscope_model::batch::Disconnected> {
    let batch = take_batch(Source::Ebpf, out, pending);
    if batch.is_empty() {
        return Ok(());
    }
    report.transactions += batch.transactions.len() as u64;
    report.stats.merge(&batch.stats);
    tx.send(batch)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// Pins the calling thread to the CPU it runs on (so its events all go to one ring).
    fn pin_here() {
        // SAFETY: sched_getcpu has no preconditions; the cpu set is a plain value.
        unsafe {
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    /// The socket programs attached with one-page rings (one per CPU), filtered on the port
    /// of a listener of their own; `None` (after saying why) when they cannot be loaded here.
    /// Fields drop in order: the ring mappings before the maps they map.
    struct TinyRings {
        rings: ring::Rings,
        stats_map: PerCpuArray<MapData, RawStats>,
        _bpf: Ebpf,
        _ring_maps: Vec<MapData>,
        listener: TcpListener,
    }

    impl TinyRings {
        fn attach() -> Option<TinyRings> {
            if !is_root() {
                eprintln!("skipped: loading eBPF programs needs root");
                return None;
            }
            let btf = btf().map_err(|why| eprintln!("skipped: {why}")).ok()?;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let cfg = EbpfConfig {
                ports: vec![listener.local_addr().unwrap().port()],
                ring_buffer_bytes: 4096,
                include_self: true,
                ..EbpfConfig::default()
            };
            let (loaded, _) = match load(&cfg, &btf) {
                Ok(l) => l,
                Err(EbpfUnavailable::NoTracepoint(tp)) => {
                    eprintln!("skipped: no tracepoint {tp}");
                    return None;
                }
                Err(e) => panic!("{e}"),
            };
            let Loaded {
                mut bpf,
                rings: ring_maps,
                ring_bytes,
            } = loaded;
            for &(name, _) in PROGRAMS {
                let prog: &mut BtfTracePoint = bpf.program_mut(name).unwrap().try_into().unwrap();
                prog.attach().unwrap();
            }
            let stats_map = PerCpuArray::try_from(bpf.take_map("HS_STATS").unwrap()).unwrap();
            let rings = ring::Rings::new(
                ring_maps
                    .iter()
                    .map(|m| ring::Ring::new(m.fd().as_fd(), ring_bytes).unwrap())
                    .collect(),
            );
            Some(TinyRings {
                rings,
                stats_map,
                _bpf: bpf,
                _ring_maps: ring_maps,
                listener,
            })
        }

        /// Events the rings had no room for, all CPUs.
        fn lost(&self) -> u64 {
            read_kernel_stats(&self.stats_map).ringbuf_lost
        }

        /// A connection to the listener: (client end, accepted end).
        fn connect(&self) -> (TcpStream, TcpStream) {
            let c = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
            (c, self.listener.accept().unwrap().0)
        }

        /// Every record in the rings now, in order (and the rings emptied).
        fn records(&mut self) -> Vec<Vec<u8>> {
            let mut got = Vec::new();
            self.rings
                .drain(false, usize::MAX, |rec| got.push(rec.to_vec()));
            got
        }

        /// Fills this CPU's ring (nobody reads it) with sends on `filler` until it refuses
        /// an event; returns the losses so far.
        fn fill(&self, filler: &mut TcpStream) -> u64 {
            let mut chunk = b"POST /fill HTTP/1.1\r\n".to_vec();
            chunk.resize(100, b'a');
            for _ in 0..200 {
                filler.write_all(&chunk).unwrap();
                if self.lost() > 0 {
                    break;
                }
            }
            let lost = self.lost();
            assert!(lost > 0, "a one-page ring filled up");
            lost
        }
    }

    /// A socket's first event is lost to a full ring; its next event must carry the full
    /// header again, or user space cannot attribute it (a short event cannot open a stream).
    #[test]
    fn a_full_event_the_ring_had_no_room_for_is_sent_full_again() {
        let Some(mut t) = TinyRings::attach() else {
            return;
        };
        pin_here();
        // The accepted ends are never read: only the sends make events.
        let (mut filler, _f) = t.connect();
        let (mut x, _x) = t.connect();
        let before = t.fill(&mut filler);
        // x's first event (larger than the room left) is lost.
        let mut req = b"GET /x HTTP/1.1\r\n".to_vec();
        req.resize(200, b'a');
        x.write_all(&req).unwrap();
        assert_eq!(t.lost(), before + 1, "x's first event was lost");
        // The reader catches up; x's next event must say which socket it is.
        t.records();
        x.write_all(b"more bytes").unwrap();
        let got = t.records();
        assert_eq!(got.len(), 1, "x's second send only");
        let ev = Event::new_checked(&got[0][..]).unwrap();
        assert!(ev.has_socket(), "x's next event has the full header");
        assert_eq!(
            (ev.local(), ev.remote(), ev.payload()),
            (
                x.local_addr().unwrap(),
                x.peer_addr().unwrap(),
                &b"more bytes"[..]
            )
        );
        assert_eq!(ev.flags() & event::FLAG_FROM_START, 0, "bytes were lost");
        assert_eq!(ev.lost(), 200, "it carries the lost event's bytes");
    }

    /// Short events lost to a full ring: their bytes are summed in the socket's state and
    /// carried by its next event of that direction (then reset); the other direction's
    /// events carry none.
    #[test]
    fn bytes_of_lost_events_are_carried_by_the_next_event_of_their_direction() {
        let Some(mut t) = TinyRings::attach() else {
            return;
        };
        pin_here();
        let (mut filler, _f) = t.connect();
        let (mut x, mut server_x) = t.connect();
        // x's first event goes through: the socket is known, its later events are short.
        let mut req = b"GET /x HTTP/1.1\r\n".to_vec();
        req.resize(200, b'a');
        x.write_all(&req).unwrap();
        let got = t.records();
        assert_eq!(got.len(), 1, "x's first send only");
        let first = Event::new_checked(&got[0][..]).unwrap();
        assert!(first.has_socket());
        assert_eq!(first.lost(), 0);
        let cookie = first.cookie();
        let before = t.fill(&mut filler);
        // Two sends of x, each larger than the room left, are lost.
        x.write_all(&[b'b'; 300]).unwrap();
        x.write_all(&[b'c'; 250]).unwrap();
        assert_eq!(t.lost(), before + 2, "x's two sends were lost");
        // The reader catches up. x receives (the other direction), then sends twice.
        t.records();
        const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        server_x.write_all(RESP).unwrap();
        let mut back = [0u8; RESP.len()];
        x.read_exact(&mut back).unwrap();
        x.write_all(b"more bytes").unwrap();
        x.write_all(b"again").unwrap();
        let got = t.records();
        let evs: Vec<(event::Dir, u32, Vec<u8>)> = got
            .iter()
            .map(|r| Event::new_checked(&r[..]).unwrap())
            .filter(|e| e.cookie() == cookie)
            .map(|e| (e.dir(), e.lost(), e.payload().to_vec()))
            .collect();
        assert_eq!(
            evs,
            [
                (event::Dir::Recv, 0, RESP.to_vec()),
                (event::Dir::Send, 550, b"more bytes".to_vec()),
                (event::Dir::Send, 0, b"again".to_vec()),
            ],
            "the lost bytes go with x's next send only, once"
        );
    }
}
