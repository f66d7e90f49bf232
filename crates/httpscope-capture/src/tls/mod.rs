//! Linux TLS plaintext through uprobes on OpenSSL and GnuTLS: what a process hands to its TLS
//! library before encryption and gets back after decryption, with its pid and process name.
//!
//! The kernel side is `bpf/tls.bpf.c` (see its header comment): uprobes and uretprobes on
//! `SSL_write`, `SSL_read`, `SSL_write_ex`, `SSL_read_ex`, `gnutls_record_send` and
//! `gnutls_record_recv` copy up to [`TlsConfig::capture_bytes`] of plaintext into events of
//! the socket path's shape ([`crate::ebpf::event`]); `tp_btf/sock_send_length` and
//! `sock_recv_length` programs tie each TLS object to the socket its calls read and write on
//! the same thread; `tp_btf/sched_process_exec` tells this module a program started.
//!
//! This module finds the library files ([`libs`]: every process's maps, the usual library
//! directories, programs that start later, a periodic rescan) and attaches once per file
//! (device and inode), never per process. Events go through the socket path's
//! [`Streams`](crate::ebpf::streams::Streams) and HTTP parser, one table per library, and come
//! out as transactions with `source` `tls` and the tag `tls_library` (`openssl`, `gnutls`).
//! The same connection's encrypted bytes fail the socket path's HTTP pre-check, so they are
//! counted there as not HTTP and never become transactions.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use httpscope_capture::tls::{self, TlsConfig};
//! use httpscope_model::{batch, Source};
//!
//! if let Err(why) = tls::probe() {
//!     eprintln!("TLS capture unavailable: {why}");
//!     return;
//! }
//! let (tx, rx) = batch::channel(Source::Tls, 64);
//! let stop = AtomicBool::new(false);
//! let report = tls::capture(&TlsConfig::default(), &tx, &stop).unwrap();
//! for lib in &report.libraries {
//!     println!("{} {}", lib.library, lib.path.display());
//! }
//! # drop(rx);
//! ```

pub mod event;
pub mod hooks;
pub mod libs;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::programs::{BtfTracePoint, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};
use httpscope_http::Output;
use httpscope_model::batch::BatchSender;
use httpscope_model::telemetry::{DropReason, SourceStats};
use httpscope_model::{Source, Tags, Transaction};

use crate::ebpf::event::{Event, MAX_CAPTURE};
use crate::ebpf::streams::Streams;
use crate::ebpf::{
    clock_ns, error_chain, is_root, map_id, monotonic_ns, read_kernel_stats, take_batch,
    wait_readable,
};
use event::{Library, TlsRawStats};
use libs::Candidate;

/// The compiled programs (committed; rebuilt by build.rs when the C changes and clang exists).
static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/tls.bpf.o"));

/// tp_btf programs and their tracepoints, in attach order.
const TRACEPOINTS: &[(&str, &str)] = &[
    ("hs_tls_sock_send", "sock_send_length"),
    ("hs_tls_sock_recv", "sock_recv_length"),
    ("hs_tls_exec", "sched_process_exec"),
];

/// The return program, attached to every hooked function.
const RETURN_PROGRAM: &str = "hs_ssl_ret";

/// How the TLS source captures.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Plaintext bytes copied per TLS call (default 512, at most 4096). Set at load time.
    pub capture_bytes: u32,
    /// Only connections whose local or remote port is one of these (empty: all). A TLS object
    /// whose socket is not known yet does not match.
    pub ports: Vec<u16>,
    /// Only these processes (empty: all).
    pub pids: Vec<u32>,
    /// Ring buffer size in bytes (default 8 MiB); rounded up to a power of two >= 4096.
    pub ring_buffer_bytes: u32,
    /// The HTTP parser's limits.
    pub http: httpscope_http::Config,
    /// The most connections followed at once, per library (default 65,536).
    pub max_connections: usize,
    /// A connection without events for this long is closed and counted as expired (60 s).
    pub idle_timeout: Duration,
    /// How often a batch is sent (default 100 ms), when there is something to send.
    pub flush_interval: Duration,
    /// How often every process's maps are searched again for new library files (default
    /// 30 s; programs that start are looked at as they start, whatever this is).
    pub rescan_interval: Duration,
    /// Directories searched at start for library files no process maps yet.
    pub library_dirs: Vec<PathBuf>,
    /// The most library files attached (default 256); more are counted and skipped.
    pub max_libraries: usize,
    /// Hook the functions that the public ones call when they can be found (OpenSSL's internal
    /// read/write functions, GnuTLS's `gnutls_record_send2`; default true: much cheaper on
    /// virtual machines, see [`hooks`]); false hooks the public functions.
    pub openssl_internal: bool,
    /// Also capture this process's own TLS calls (default false).
    pub include_self: bool,
    /// Only processes in this cgroup v2 directory or below it (absolute, or relative to the
    /// cgroup v2 mount; default: all), as [`crate::ebpf::EbpfConfig::cgroup`].
    pub cgroup: Option<PathBuf>,
    /// Set to true once the first libraries are attached (and back to false once detached).
    pub attached: Option<Arc<AtomicBool>>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            capture_bytes: 512,
            ports: Vec::new(),
            pids: Vec::new(),
            ring_buffer_bytes: 8 * 1024 * 1024,
            http: httpscope_http::Config::default(),
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(60),
            flush_interval: Duration::from_millis(100),
            rescan_interval: Duration::from_secs(30),
            library_dirs: libs::LIBRARY_DIRS.iter().map(PathBuf::from).collect(),
            max_libraries: 256,
            openssl_internal: true,
            include_self: false,
            cgroup: None,
            attached: None,
        }
    }
}

/// Why the TLS source cannot run on this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsUnavailable {
    /// Loading BPF programs needs root.
    #[error("not running as root (uprobes and eBPF programs need CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)")]
    NotRoot,
    /// The kernel exposes no BTF.
    #[error("the kernel has no BTF (/sys/kernel/btf/vmlinux): {0}")]
    NoBtf(String),
    /// The kernel was built without uprobes.
    #[error("the kernel has no uprobe support (/sys/bus/event_source/devices/uprobe is missing)")]
    NoUprobes,
    /// A tracepoint the programs need is missing.
    #[error(
        "the kernel has no tracepoint {0} (sock_send_length/sock_recv_length need Linux >= 6.3)"
    )]
    NoTracepoint(&'static str),
    /// The kernel refused the programs or maps.
    #[error("loading the TLS eBPF programs failed: {0}")]
    Load(String),
    /// The cgroup filter names no cgroup v2 directory.
    #[error("cgroup filter: {0}")]
    Cgroup(String),
}

/// What went wrong during a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The source cannot run here.
    #[error(transparent)]
    Unavailable(#[from] TlsUnavailable),
    /// Attaching a tracepoint program failed.
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

/// A library file the capture attached to (or tried to).
#[derive(Clone, Debug)]
pub struct AttachedLibrary {
    /// Which library.
    pub library: Library,
    /// The path it was attached through.
    pub path: PathBuf,
    /// Device and inode.
    pub file: (u64, u64),
    /// The functions whose calls are seen (entry and return).
    pub symbols: Vec<&'static str>,
    /// Some probes sit on functions that the public ones call (cheaper, see [`hooks`]):
    /// OpenSSL's internal read/write functions, GnuTLS's `gnutls_record_send2`.
    pub internal: bool,
    /// Why some functions could not be hooked (missing symbols, ...), one line each.
    pub errors: Vec<String>,
}

/// Counts kept in the kernel, per CPU, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    /// Events written to the ring buffer.
    pub events: u64,
    /// Events lost because the ring buffer was full.
    pub ringbuf_lost: u64,
    /// Events of TLS objects with no known socket (reported without addresses).
    pub no_socket: u64,
    /// User memory the programs could not read.
    pub read_faults: u64,
    /// TLS calls not followed because no per-thread storage could be allocated.
    pub calls_lost: u64,
    /// Exec notices lost.
    pub execs_lost: u64,
}

impl From<TlsRawStats> for KernelCounts {
    fn from(r: TlsRawStats) -> Self {
        KernelCounts {
            events: r.events,
            ringbuf_lost: r.ringbuf_lost,
            no_socket: r.no_socket,
            read_faults: r.read_faults,
            calls_lost: r.calls_lost,
            execs_lost: r.execs_lost,
        }
    }
}

/// What a capture did, returned when it stops.
#[derive(Clone, Debug, Default)]
pub struct TlsReport {
    /// Everything sent in batches, summed.
    pub stats: SourceStats,
    /// Transactions sent.
    pub transactions: u64,
    /// Connections followed.
    pub connections: u64,
    /// The kernel side's own counts, summed over CPUs.
    pub kernel: KernelCounts,
    /// Every library file attached to (or tried).
    pub libraries: Vec<AttachedLibrary>,
    /// Library files not attached because `max_libraries` was reached.
    pub libraries_skipped: u64,
    /// Started programs looked at for new libraries.
    pub execs_seen: u64,
    /// Looks at started programs skipped (too many starts at once; the rescan covers them).
    pub exec_checks_skipped: u64,
    /// Ids of the programs this capture loaded (all gone once it returned).
    pub program_ids: Vec<u32>,
    /// Ids of the maps this capture created (all gone once it returned).
    pub map_ids: Vec<u32>,
    /// How long the programs were attached.
    pub attached_for: Duration,
}

fn btf() -> Result<Btf, TlsUnavailable> {
    Btf::from_sys_fs().map_err(|e| TlsUnavailable::NoBtf(e.to_string()))
}

fn check_host() -> Result<Btf, TlsUnavailable> {
    if !is_root() {
        return Err(TlsUnavailable::NotRoot);
    }
    if !std::path::Path::new("/sys/bus/event_source/devices/uprobe/type").exists() {
        return Err(TlsUnavailable::NoUprobes);
    }
    btf()
}

/// Checks that the TLS source can run here: root, uprobes, BTF, the tracepoints, and that the
/// kernel accepts the programs (they are loaded, not attached, then unloaded).
pub fn probe() -> Result<(), TlsUnavailable> {
    let btf = check_host()?;
    let (bpf, _) = load(&TlsConfig::default(), &btf)?;
    drop(bpf);
    Ok(())
}

fn load_err(e: &dyn std::error::Error) -> TlsUnavailable {
    TlsUnavailable::Load(error_chain(e))
}

/// Loads the object with the settings of `cfg` and loads (not attaches) every program.
fn load(cfg: &TlsConfig, btf: &Btf) -> Result<(Ebpf, Vec<u32>), TlsUnavailable> {
    let capture_len = cfg.capture_bytes.min(MAX_CAPTURE);
    let self_tgid = if cfg.include_self {
        0
    } else {
        std::process::id()
    };
    let pids_on = u32::from(!cfg.pids.is_empty());
    let ports_on = u32::from(!cfg.ports.is_empty());
    let cg = match &cfg.cgroup {
        Some(path) => Some(crate::ebpf::cgroup::resolve(path).map_err(TlsUnavailable::Cgroup)?),
        None => None,
    };
    let cgroup_on = u32::from(cg.is_some());
    let cgroup_level = cg.map_or(0, |c| c.level);
    let cgroup_id = cg.map_or(0, |c| c.id);
    let ring = cfg
        .ring_buffer_bytes
        .max(4096)
        .checked_next_power_of_two()
        .unwrap_or(1 << 30);
    let wakeup = u64::from(ring / 4);
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
        .map_max_entries("HS_TLS_EVENTS", ring)
        // HS_TLS_CALLS is task storage, which aya creates but has no typed view of (none is
        // needed: only the BPF programs use it).
        .allow_unsupported_maps()
        .load(OBJECT)
        .map_err(|e| load_err(&e))?;
    {
        let map = bpf
            .map_mut("HS_TLS_FPIDS")
            .ok_or(TlsUnavailable::Load("no map HS_TLS_FPIDS".into()))?;
        let mut pids: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|e| load_err(&e))?;
        for &p in cfg.pids.iter().take(1024) {
            pids.insert(p, 1, 0).map_err(|e| load_err(&e))?;
        }
    }
    {
        let map = bpf
            .map_mut("HS_TLS_FPORTS")
            .ok_or(TlsUnavailable::Load("no map HS_TLS_FPORTS".into()))?;
        let mut ports: BpfHashMap<_, u16, u8> =
            BpfHashMap::try_from(map).map_err(|e| load_err(&e))?;
        for &p in cfg.ports.iter().take(1024) {
            ports.insert(p, 1, 0).map_err(|e| load_err(&e))?;
        }
    }
    let mut ids = Vec::new();
    for &(name, tp) in TRACEPOINTS {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .ok_or_else(|| TlsUnavailable::Load(format!("no program {name} in the object")))?
            .try_into()
            .map_err(|e| load_err(&e))?;
        prog.load(tp, btf).map_err(|e| match e {
            aya::programs::ProgramError::Btf(_) => TlsUnavailable::NoTracepoint(tp),
            e => TlsUnavailable::Load(format!("{name}: {}", error_chain(&e))),
        })?;
        if let Ok(info) = prog.info() {
            ids.push(info.id());
        }
    }
    let uprobes = Library::ALL
        .iter()
        .flat_map(|l| l.symbols().iter().map(|&(_, p)| p))
        .chain([RETURN_PROGRAM]);
    for name in uprobes {
        let prog: &mut UProbe = bpf
            .program_mut(name)
            .ok_or_else(|| TlsUnavailable::Load(format!("no program {name} in the object")))?
            .try_into()
            .map_err(|e| load_err(&e))?;
        prog.load()
            .map_err(|e| TlsUnavailable::Load(format!("{name}: {}", error_chain(&e))))?;
        if let Ok(info) = prog.info() {
            ids.push(info.id());
        }
    }
    Ok((bpf, ids))
}

/// Attaches the probes to library files, once per file.
struct Attacher {
    known: HashSet<(u64, u64)>,
    openssl_internal: bool,
    max: usize,
    libraries: Vec<AttachedLibrary>,
    skipped: u64,
}

impl Attacher {
    fn attach_all(&mut self, bpf: &mut Ebpf, found: Vec<Candidate>) -> usize {
        let mut n = 0;
        for c in found {
            if self.known.contains(&c.file) {
                continue;
            }
            if self.known.len() >= self.max {
                self.skipped += 1;
                continue;
            }
            self.known.insert(c.file);
            let lib = attach_library(bpf, &c, self.openssl_internal);
            if !lib.symbols.is_empty() {
                n += 1;
            }
            self.libraries.push(lib);
        }
        n
    }
}

fn uprobe<'a>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, String> {
    bpf.program_mut(name)
        .ok_or_else(|| format!("no program {name}"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| error_chain(&e))
}

/// Attaches the return program, then `entry`, at one place of `path` (return first, so that
/// a call whose entry is seen always has its return seen too; the return is detached again
/// when the entry cannot be attached).
fn attach_point(
    bpf: &mut Ebpf,
    path: &std::path::Path,
    at: impl Fn() -> UProbeAttachLocation<'static>,
    entry: &str,
) -> Result<(UProbeLinkId, UProbeLinkId), String> {
    let ret = uprobe(bpf, RETURN_PROGRAM)?
        .attach(at(), path, UProbeScope::AllProcesses)
        .map_err(|e| error_chain(&e))?;
    let entered = uprobe(bpf, entry).and_then(|p| {
        p.attach(at(), path, UProbeScope::AllProcesses)
            .map_err(|e| error_chain(&e))
    });
    match entered {
        Ok(id) => Ok((ret, id)),
        Err(e) => {
            if let Ok(p) = uprobe(bpf, RETURN_PROGRAM) {
                let _ = p.detach(ret);
            }
            Err(e)
        }
    }
}

/// Detaches what [`attach_point`] attached.
fn detach_point(bpf: &mut Ebpf, entry: &str, (ret, id): (UProbeLinkId, UProbeLinkId)) {
    if let Ok(p) = uprobe(bpf, entry) {
        let _ = p.detach(id);
    }
    if let Ok(p) = uprobe(bpf, RETURN_PROGRAM) {
        let _ = p.detach(ret);
    }
}

/// Hooks every function of `c`; a function that cannot be hooked is noted and skipped.
fn attach_library(bpf: &mut Ebpf, c: &Candidate, openssl_internal: bool) -> AttachedLibrary {
    let mut lib = AttachedLibrary {
        library: c.library,
        path: c.path.clone(),
        file: c.file,
        symbols: Vec::new(),
        internal: false,
        errors: Vec::new(),
    };
    if c.library == Library::OpenSsl && openssl_internal {
        if let Some(at) = hooks::openssl_internal(&c.path) {
            // Both halves or neither, so that no call is seen twice or missed.
            let off = |o: u64| move || UProbeAttachLocation::AbsoluteOffset(o);
            match attach_point(bpf, &c.path, off(at.read), "hs_ssl_read_ex") {
                Ok(read) => match attach_point(bpf, &c.path, off(at.write), "hs_ssl_write_ex") {
                    Ok(_) => {
                        lib.internal = true;
                        lib.symbols = vec!["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"];
                        return lib;
                    }
                    Err(e) => {
                        detach_point(bpf, "hs_ssl_read_ex", read);
                        lib.errors.push(format!("internal write function: {e}"));
                    }
                },
                Err(e) => lib.errors.push(format!("internal read function: {e}")),
            }
        }
    }
    let send2 = c.library == Library::GnuTls && openssl_internal && hooks::gnutls_send2(&c.path);
    for &(symbol, entry) in c.library.symbols() {
        let at = if send2 && symbol == "gnutls_record_send" {
            lib.internal = true;
            "gnutls_record_send2"
        } else {
            symbol
        };
        match attach_point(bpf, &c.path, || UProbeAttachLocation::Symbol(at), entry) {
            Ok(_) => lib.symbols.push(symbol),
            Err(e) => lib.errors.push(format!("{symbol}: {e}")),
        }
    }
    lib
}

/// Programs that just started, looked at a few times while they load their libraries: one
/// FIFO per delay (so each is in due order), bounded, and a budget of maps reads per second
/// so that a host starting thousands of programs a second does not keep this thread busy
/// (what does not fit is skipped and counted; the periodic rescan still finds it).
struct ExecQueue {
    queues: [VecDeque<(Instant, u32)>; EXEC_CHECKS.len()],
    budget: u32,
    budget_since: Instant,
    skipped: u64,
}

/// When a started program is looked at again, after the notice.
const EXEC_CHECKS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
];
/// The most programs waiting per delay.
const EXEC_QUEUE_MAX: usize = 1024;
/// The most `/proc/<pid>/maps` reads per second for started programs.
const EXEC_CHECKS_PER_SEC: u32 = 200;

impl ExecQueue {
    fn new(now: Instant) -> Self {
        ExecQueue {
            queues: Default::default(),
            budget: EXEC_CHECKS_PER_SEC,
            budget_since: now,
            skipped: 0,
        }
    }

    fn push(&mut self, now: Instant, pid: u32, step: usize) {
        let (Some(delay), Some(q)) = (EXEC_CHECKS.get(step), self.queues.get_mut(step)) else {
            return;
        };
        if q.len() >= EXEC_QUEUE_MAX {
            self.skipped += 1;
            return;
        }
        q.push_back((now + *delay, pid));
    }

    /// The next program due for a look (and its step), within the budget.
    fn due(&mut self, now: Instant) -> Option<(u32, usize)> {
        if now.duration_since(self.budget_since) >= Duration::from_secs(1) {
            self.budget = EXEC_CHECKS_PER_SEC;
            self.budget_since = now;
        }
        if self.budget == 0 {
            return None;
        }
        let step = (0..self.queues.len())
            .find(|&i| self.queues[i].front().is_some_and(|(due, _)| *due <= now))?;
        let (_, pid) = self.queues[step].pop_front()?;
        self.budget -= 1;
        Some((pid, step))
    }
}

impl crate::ebpf::CpuCounters for TlsRawStats {
    fn add_up(&mut self, other: &Self) {
        self.add(other);
    }
}

fn tags(lib: Library) -> Tags {
    let mut t = Tags::default();
    t.insert("tls_library", lib.as_str());
    t
}

/// A TLS object whose socket was never seen has an all-zero tuple: report no addresses.
fn unknown_addresses_to_none(t: &mut Transaction) {
    let zero = |a: &Option<SocketAddr>| a.is_some_and(|a| a.ip().is_unspecified() && a.port() == 0);
    if zero(&t.client) && zero(&t.server) {
        t.client = None;
        t.server = None;
    }
}

/// Loads the programs, attaches them to every TLS library found, then reads events until
/// `stop` is set (checked at least every 50 ms), sending batches through `tx` at
/// `cfg.flush_interval` without ever blocking. On return every program is detached and
/// every map freed (also on error).
pub fn capture(
    cfg: &TlsConfig,
    tx: &BatchSender,
    stop: &AtomicBool,
) -> Result<TlsReport, TlsError> {
    let btf = check_host()?;
    let (mut bpf, program_ids) = load(cfg, &btf)?;
    let map_ids: Vec<u32> = bpf.maps().filter_map(|(_, m)| map_id(m)).collect();
    let mut report = TlsReport {
        program_ids,
        map_ids,
        ..TlsReport::default()
    };
    let take = |bpf: &mut Ebpf, name: &'static str| {
        bpf.take_map(name).ok_or(TlsError::Map {
            map: name,
            reason: "missing".into(),
        })
    };
    let mut ring =
        RingBuf::try_from(take(&mut bpf, "HS_TLS_EVENTS")?).map_err(|e| TlsError::Map {
            map: "HS_TLS_EVENTS",
            reason: error_chain(&e),
        })?;
    let mut execs =
        RingBuf::try_from(take(&mut bpf, "HS_TLS_EXECS")?).map_err(|e| TlsError::Map {
            map: "HS_TLS_EXECS",
            reason: error_chain(&e),
        })?;
    let stats_map: PerCpuArray<MapData, TlsRawStats> =
        PerCpuArray::try_from(take(&mut bpf, "HS_TLS_STATS")?).map_err(|e| TlsError::Map {
            map: "HS_TLS_STATS",
            reason: error_chain(&e),
        })?;

    // The socket and exec programs first, so that every TLS call entered from now on finds
    // its socket.
    for &(name, _) in TRACEPOINTS {
        let prog: &mut BtfTracePoint = bpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(TlsError::Attach {
                program: name,
                reason: "not in the object".into(),
            })?;
        prog.attach().map_err(|e| TlsError::Attach {
            program: name,
            reason: error_chain(&e),
        })?;
    }
    let mut attacher = Attacher {
        known: HashSet::new(),
        openssl_internal: cfg.openssl_internal,
        max: cfg.max_libraries.max(1),
        libraries: Vec::new(),
        skipped: 0,
    };
    let dirs: Vec<&str> = cfg.library_dirs.iter().filter_map(|p| p.to_str()).collect();
    attacher.attach_all(&mut bpf, libs::in_all_processes(&attacher.known));
    attacher.attach_all(&mut bpf, libs::in_dirs(&dirs));
    let attached_at = Instant::now();
    if let Some(flag) = &cfg.attached {
        flag.store(true, Ordering::SeqCst);
    }

    let wall_offset_ns = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
    let mut tables: Vec<(Library, Streams)> = Library::ALL
        .iter()
        .map(|&lib| {
            let s = Streams::new(
                cfg.http.clone(),
                cfg.max_connections,
                cfg.idle_timeout,
                Duration::from_millis(200),
                wall_offset_ns,
            )
            .labelled(Source::Tls, tags(lib));
            (lib, s)
        })
        .collect();
    let mut out = Output::default();
    let mut pending = SourceStats::default();
    let mut kernel_seen = TlsRawStats::default();
    let mut last_flush = Instant::now();
    let mut last_rescan = Instant::now();
    let mut exec_queue = ExecQueue::new(Instant::now());
    let fd = ring.as_raw_fd();
    let poll_ms = cfg.flush_interval.as_millis().clamp(1, 20) as libc::c_int;

    let feed = |item: &[u8],
                tables: &mut Vec<(Library, Streams)>,
                out: &mut Output,
                pending: &mut SourceStats| {
        pending.events += 1;
        let lib = event::library(item);
        match (Event::new_checked(item), lib) {
            (Ok(ev), Some(lib)) => {
                if let Some((_, s)) = tables.iter_mut().find(|(l, _)| *l == lib) {
                    s.event(&ev, out, pending);
                }
            }
            _ => {
                pending.undecodable += 1;
                pending.dropped.inc(DropReason::Undecodable);
            }
        }
    };

    let result = loop {
        let mut drained = 0usize;
        while let Some(item) = ring.next() {
            drained += 1;
            feed(&item, &mut tables, &mut out, &mut pending);
            if drained >= 65_536 {
                break;
            }
        }
        // Programs that started: look at their libraries a little later, a few times.
        let now = Instant::now();
        while let Some(item) = execs.next() {
            if let Ok(b) = <[u8; 4]>::try_from(&*item) {
                report.execs_seen += 1;
                exec_queue.push(now, u32::from_ne_bytes(b), 0);
            }
        }
        while let Some((pid, step)) = exec_queue.due(now) {
            let found: Vec<Candidate> = libs::in_process(pid)
                .into_iter()
                .filter(|c| !attacher.known.contains(&c.file))
                .collect();
            attacher.attach_all(&mut bpf, found);
            exec_queue.push(now, pid, step + 1);
        }
        if last_rescan.elapsed() >= cfg.rescan_interval {
            last_rescan = Instant::now();
            attacher.attach_all(&mut bpf, libs::in_all_processes(&attacher.known));
        }

        let stopping = stop.load(Ordering::Relaxed);
        if stopping || last_flush.elapsed() >= cfg.flush_interval {
            last_flush = Instant::now();
            for (_, s) in tables.iter_mut() {
                s.sweep(monotonic_ns(), &mut out, &mut pending);
            }
            if stopping {
                while let Some(item) = ring.next() {
                    feed(&item, &mut tables, &mut out, &mut pending);
                }
                for (_, s) in tables.iter_mut() {
                    s.close_all(&mut out);
                }
            }
            let k = read_kernel_stats(&stats_map);
            let lost = k.ringbuf_lost.saturating_sub(kernel_seen.ringbuf_lost);
            // TLS calls the per-thread table had no room to follow, and exec notices the
            // ring had no room for, are data the kernel side could not deliver too.
            let unfollowed = k.calls_lost.saturating_sub(kernel_seen.calls_lost)
                + k.execs_lost.saturating_sub(kernel_seen.execs_lost);
            kernel_seen = k;
            pending.kernel_lost += lost + unfollowed;
            pending
                .dropped
                .add(DropReason::KernelBufferFull, lost + unfollowed);
            let disconnected = flush(tx, &mut out, &mut pending, &mut report).is_err();
            if stopping || disconnected {
                break Ok(());
            }
        }
        if drained == 0 {
            if let Err(e) = wait_readable(fd, poll_ms) {
                break Err(TlsError::Poll(e));
            }
        }
    };
    report.kernel = kernel_seen.into();
    report.connections = tables.iter().map(|(_, s)| s.opened).sum();
    report.attached_for = attached_at.elapsed();
    report.libraries = std::mem::take(&mut attacher.libraries);
    report.libraries_skipped = attacher.skipped;
    report.exec_checks_skipped = exec_queue.skipped;
    drop(ring);
    drop(execs);
    drop(stats_map);
    drop(bpf); // detaches every link and closes every fd
    if let Some(flag) = &cfg.attached {
        flag.store(false, Ordering::SeqCst);
    }
    result.map(|()| report)
}

/// Sends what is pending as one batch (if anything); `Err` when the monitor is gone.
fn flush(
    tx: &BatchSender,
    out: &mut Output,
    pending: &mut SourceStats,
    report: &mut TlsReport,
) -> Result<(), httpscope_model::batch::Disconnected> {
    let mut batch = take_batch(Source::Tls, out, pending);
    batch
        .transactions
        .iter_mut()
        .for_each(unknown_addresses_to_none);
    if batch.is_empty() {
        return Ok(());
    }
    report.transactions += batch.transactions.len() as u64;
    report.stats.merge(&batch.stats);
    tx.send(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_queue_is_bounded_in_due_order_and_budgeted() {
        let t0 = Instant::now();
        let mut q = ExecQueue::new(t0);
        for pid in 0..(EXEC_QUEUE_MAX as u32 + 10) {
            q.push(t0, pid, 0);
        }
        assert_eq!(q.queues[0].len(), EXEC_QUEUE_MAX);
        assert_eq!(q.skipped, 10);
        q.push(t0, 7, EXEC_CHECKS.len());
        assert!(
            q.queues.iter().skip(1).all(|q| q.is_empty()),
            "no step after the last"
        );
        // Nothing is due before its delay; a later step queued first does not block.
        assert_eq!(q.due(t0), None);
        let mut q = ExecQueue::new(t0);
        q.push(t0, 1, 2);
        q.push(t0, 2, 0);
        let at = t0 + EXEC_CHECKS[0];
        assert_eq!(q.due(at), Some((2, 0)));
        assert_eq!(q.due(at), None);
        // The budget: at most EXEC_CHECKS_PER_SEC looks per second.
        let mut q = ExecQueue::new(t0);
        for pid in 0..EXEC_CHECKS_PER_SEC + 5 {
            q.push(t0, pid, 0);
        }
        let mut n = 0;
        while q.due(at).is_some() {
            n += 1;
        }
        assert_eq!(n, EXEC_CHECKS_PER_SEC);
        assert!(
            q.due(t0 + Duration::from_secs(2)).is_some(),
            "budget refilled"
        );
    }

    #[test]
    fn zero_tuples_become_unknown_addresses() {
        let mut t = Transaction {
            client: Some("0.0.0.0:0".parse().unwrap()),
            server: Some("0.0.0.0:0".parse().unwrap()),
            ..Transaction::default()
        };
        unknown_addresses_to_none(&mut t);
        assert_eq!((t.client, t.server), (None, None));
        let mut t = Transaction {
            client: Some("127.0.0.1:5000".parse().unwrap()),
            server: Some("127.0.0.1:443".parse().unwrap()),
            ..Transaction::default()
        };
        unknown_addresses_to_none(&mut t);
        assert!(t.client.is_some() && t.server.is_some());
    }
}
