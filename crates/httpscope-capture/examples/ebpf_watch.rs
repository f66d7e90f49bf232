//! Runs the eBPF source until SIGINT/SIGTERM or `--seconds N`, then prints what it saw.
//!
//! ```text
//! sudo ebpf_watch [--seconds N] [--port P]... [--pid P]... [--cgroup PATH] [--capture-bytes N] [--ring-bytes N] [--poll-ms N] [--print]
//! ```
//!
//! The last line is machine-readable (`key=value` pairs) for bench/ebpf/run.sh:
//! transactions (by side), events, kernel_lost, dropped, and this process's user+sys CPU.

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("ebpf_watch: Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use httpscope_capture::ebpf::{self, EbpfConfig};
    use httpscope_model::{batch, Comm, Side, Source};

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }

    fn cpu_seconds() -> f64 {
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to ru.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    pub fn main() {
        let mut cfg = EbpfConfig::default();
        let mut seconds: Option<f64> = None;
        let mut print = false;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut val = || args.next().expect("missing value");
            match a.as_str() {
                "--seconds" => seconds = Some(val().parse().expect("seconds")),
                "--port" => cfg.ports.push(val().parse().expect("port")),
                "--pid" => cfg.pids.push(val().parse().expect("pid")),
                "--cgroup" => cfg.cgroup = Some(val().into()),
                "--capture-bytes" => cfg.capture_bytes = val().parse().expect("bytes"),
                "--ring-bytes" => cfg.ring_buffer_bytes = val().parse().expect("bytes"),
                "--poll-ms" => {
                    cfg.poll_interval = Duration::from_millis(val().parse().expect("ms"))
                }
                "--print" => print = true,
                _ => {
                    eprintln!("usage: ebpf_watch [--seconds N] [--port P] [--pid P] [--cgroup PATH] [--capture-bytes N] [--ring-bytes N] [--poll-ms N] [--print]");
                    std::process::exit(2);
                }
            }
        }
        if let Err(why) = ebpf::probe() {
            eprintln!("ebpf_watch: eBPF unavailable: {why}");
            std::process::exit(1);
        }
        // SAFETY: installing an async-signal-safe handler that only stores an atomic.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        let attached = std::sync::Arc::new(AtomicBool::new(false));
        cfg.attached = Some(attached.clone());
        let (tx, rx) = batch::channel(Source::Ebpf, 1024);
        let mut cpu0 = cpu_seconds();
        let mut start = Instant::now();
        let worker = std::thread::spawn(move || ebpf::capture(&cfg, &tx, &STOP));
        let mut said_attached = false;

        let mut by_side: BTreeMap<&'static str, u64> = BTreeMap::new();
        // Keyed by the inline Comm (no allocation per transaction), named at the end.
        let mut by_comm: std::collections::HashMap<Comm, u64> = Default::default();
        loop {
            if let (Some(s), true) = (seconds, said_attached) {
                if start.elapsed().as_secs_f64() >= s {
                    STOP.store(true, Ordering::Relaxed);
                }
            }
            if !said_attached && attached.load(Ordering::SeqCst) {
                said_attached = true;
                start = Instant::now();
                // CPU is counted from here: loading (BTF parsing, verification) is a one-off.
                cpu0 = cpu_seconds();
                eprintln!("ebpf_watch: attached");
            }
            match rx.receiver().recv_timeout(Duration::from_millis(100)) {
                Ok(b) => {
                    for t in &b.transactions {
                        let side = match t.side {
                            Some(Side::Client) => "client",
                            Some(Side::Server) => "server",
                            None => "unknown",
                        };
                        *by_side.entry(side).or_default() += 1;
                        *by_comm.entry(t.comm.unwrap_or_default()).or_default() += 1;
                        if print {
                            println!("{}", serde_json::to_string(t).unwrap_or_default());
                        }
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(_) => break,
            }
        }
        let report = match worker.join().expect("capture thread panicked") {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ebpf_watch: capture failed: {e}");
                std::process::exit(1);
            }
        };
        let cpu = cpu_seconds() - cpu0;
        let by_comm: BTreeMap<String, u64> =
            by_comm.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        eprintln!("ebpf_watch: by comm {by_comm:?}");
        eprintln!("ebpf_watch: kernel {:?}", report.kernel);
        println!(
            "transactions={} client={} server={} events={} bytes={} kernel_lost={} dropped={} undecodable={} connections={} cpu_s={:.3} seconds={:.3} channel_drops={}",
            report.transactions,
            by_side.get("client").copied().unwrap_or(0),
            by_side.get("server").copied().unwrap_or(0),
            report.stats.events,
            report.stats.bytes,
            report.stats.kernel_lost,
            report.stats.dropped.total(),
            report.stats.undecodable,
            report.connections,
            cpu,
            report.attached_for.as_secs_f64(),
            rx.drops().batches.get(),
        );
    }
}
