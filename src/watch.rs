//! `httpscope watch`: live traffic through the best available source.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use httpscope_model::batch::{channel, BatchSender};
use httpscope_model::Source;
use httpscope_monitor::export::Cadence;

use crate::cli::{Format, SourceKind, WatchArgs};
use crate::config::{self, Settings};
use crate::pipeline;

/// A live source that can run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// Kernel socket calls.
    Ebpf,
    /// AF_PACKET.
    Packet,
}

/// Resolves `auto`: eBPF when it loads, else packet capture; says which and why on stderr.
pub fn choose(kind: SourceKind, interface: &str) -> Live {
    match kind {
        SourceKind::Ebpf => Live::Ebpf,
        SourceKind::Packet => Live::Packet,
        SourceKind::Auto => match ebpf_probe() {
            Ok(()) => {
                eprintln!(
                    "httpscope: source ebpf (kernel socket calls, with process ids and names)"
                );
                Live::Ebpf
            }
            Err(why) => {
                eprintln!(
                    "httpscope: source packet capture on {interface} (eBPF unavailable: {why})"
                );
                Live::Packet
            }
        },
    }
}

#[cfg(target_os = "linux")]
fn ebpf_probe() -> Result<(), String> {
    httpscope_capture::ebpf::probe().map_err(|e| e.to_string())
}

#[cfg(not(target_os = "linux"))]
fn ebpf_probe() -> Result<(), String> {
    Err("eBPF is Linux only".into())
}

/// What a live source needs to start.
#[derive(Clone, Debug)]
pub struct SourceOpts {
    /// Ports to look at (empty: all).
    pub ports: Vec<u16>,
    /// HTTP parser options.
    pub http: httpscope_http::Config,
    /// Interface for packet capture.
    pub interface: String,
    /// Whether eBPF also watches this process (the demo serves from it).
    pub include_self: bool,
    /// Set by the eBPF source once its programs are attached.
    pub attached: Option<Arc<AtomicBool>>,
    /// eBPF and TLS sources: only processes in this cgroup v2 directory or below.
    pub cgroup: Option<std::path::PathBuf>,
}

impl SourceOpts {
    /// From the settings.
    pub fn new(s: &Settings) -> Self {
        SourceOpts {
            ports: s.ports.clone(),
            http: pipeline::http_config(s),
            interface: s.interface.clone(),
            include_self: false,
            attached: None,
            cgroup: s.cgroup.clone(),
        }
    }
}

/// Runs a live source until `stop`; returns an error message on failure.
pub fn run_source(
    live: Live,
    o: SourceOpts,
    tx: &BatchSender,
    stop: &AtomicBool,
) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        match live {
            Live::Ebpf => {
                let cfg = httpscope_capture::ebpf::EbpfConfig {
                    ports: o.ports,
                    http: o.http,
                    include_self: o.include_self,
                    attached: o.attached,
                    cgroup: o.cgroup,
                    ..httpscope_capture::ebpf::EbpfConfig::default()
                };
                httpscope_capture::ebpf::capture(&cfg, tx, stop)
                    .map(drop)
                    .map_err(|e| format!("ebpf: {e}"))
            }
            Live::Packet => {
                if let Some(cg) = &o.cgroup {
                    eprintln!(
                        "httpscope: --cgroup {} is ignored: packet capture cannot tell processes apart",
                        cg.display()
                    );
                }
                let cfg = httpscope_capture::packet::PacketConfig {
                    ports: o.ports,
                    http: o.http,
                    ..httpscope_capture::packet::PacketConfig::default()
                };
                httpscope_capture::packet::capture_live(&o.interface, &cfg, tx, stop)
                    .map(drop)
                    .map_err(|e| format!("packet capture on {}: {e}", o.interface))
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (live, o, tx, stop);
        Err("live capture is only available on Linux in this build".into())
    }
}

pub fn run(args: WatchArgs) -> Result<()> {
    let mut s = config::settings(&args.out, args.source, args.interface.clone())?;
    if let Some(cg) = &args.cgroup {
        s.cgroup = Some(cg.clone());
    }
    if args.no_tls {
        s.tls = false;
    }
    let live = choose(s.source, &s.interface);
    let source = match live {
        Live::Ebpf => Source::Ebpf,
        Live::Packet => Source::Packet,
    };
    let tui = pipeline::stdout_is_terminal()
        && !args.no_tui
        && !s.transactions
        && s.format == Format::Table;
    if tui {
        s.interval = Duration::from_secs(1);
    }
    let mut monitor = pipeline::monitor(&s, Cadence::EveryWindow, None, !tui, false)?;
    let stop = pipeline::signals()?;
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(d));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (tx, rx) = channel(source, 256);
    monitor.add_source(rx);
    let tls_thread = pipeline::start_tls(&s, &mut monitor, stop.clone());
    // The monitor stops when the source has returned (its channel closes), or 3 s after the
    // stop request if the source does not return.
    let monitor_stop = Arc::new(AtomicBool::new(false));
    pipeline::after(stop.clone(), Duration::from_secs(3), monitor_stop.clone());
    let source_thread = {
        let stop = stop.clone();
        let opts = SourceOpts::new(&s);
        std::thread::spawn(move || {
            let r = run_source(live, opts, &tx, &stop);
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            r
        })
    };
    if tui {
        let (exporter, feed) = httpscope_monitor::export::tui::channel();
        monitor.add_exporter(Box::new(exporter));
        let ms = monitor_stop.clone();
        let runner = std::thread::spawn(move || monitor.run(&ms));
        let title = format!(
            "httpscope watch — source {}{}",
            source.as_str(),
            if tls_thread.is_some() { "+tls" } else { "" }
        );
        let ui = httpscope_monitor::export::tui::run(feed, &stop, &title);
        stop.store(true, Ordering::Relaxed);
        let _ = runner.join();
        ui?;
    } else {
        monitor.run(&monitor_stop);
    }
    if let Some(t) = tls_thread {
        let _ = t.join();
    }
    match source_thread.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => bail!("the source thread panicked"),
    }
}
