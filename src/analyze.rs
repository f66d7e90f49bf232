//! `httpscope analyze FILE...`: replays captures and ETW files through the monitor.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use httpscope_capture::packet::{PacketConfig, PacketError};
use httpscope_model::batch::channel;
use httpscope_model::Source;
use httpscope_monitor::export::Cadence;

use crate::cli::AnalyzeArgs;
use crate::config;
use crate::pipeline;

/// What a file holds, judged from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// pcap or pcapng.
    Capture,
    /// httpscope's ETW JSON-lines replay format or Windows event XML.
    Etw,
}

const PCAP_MAGICS: [[u8; 4]; 5] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x0a, 0x0d, 0x0d, 0x0a], // pcapng section header block
];

/// Classifies content by its head.
pub fn classify(head: &[u8]) -> Option<Kind> {
    if head.len() >= 4 && PCAP_MAGICS.iter().any(|m| head[..4] == *m) {
        return Some(Kind::Capture);
    }
    httpscope_capture::etw::detect(head).then_some(Kind::Etw)
}

fn classify_file(path: &Path) -> Result<Kind> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        let r = f
            .read(&mut head[n..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    head.truncate(n);
    match classify(&head) {
        Some(k) => Ok(k),
        None if n == 0 => bail!("{}: the file is empty", path.display()),
        None => bail!(
            "{}: not a pcap/pcapng capture nor an ETW replay (httpscope ETW JSON lines or Windows event XML)",
            path.display()
        ),
    }
}

pub fn run(args: AnalyzeArgs) -> Result<()> {
    let s = config::settings(&args.out, None, None)?;
    let mut captures: Vec<PathBuf> = Vec::new();
    let mut etw: Vec<PathBuf> = Vec::new();
    for f in &args.files {
        match classify_file(f)? {
            Kind::Capture => captures.push(f.clone()),
            Kind::Etw => etw.push(f.clone()),
        }
    }
    let mut monitor = pipeline::monitor(&s, Cadence::FinalTotal, None, true, true)?;
    let stop = pipeline::signals()?;

    let packet_reader = if captures.is_empty() {
        None
    } else {
        let (tx, rx) = channel(Source::Packet, 64);
        monitor.add_source(rx);
        let cfg = PacketConfig {
            ports: s.ports.clone(),
            http: pipeline::http_config(&s),
            ..PacketConfig::default()
        };
        let total: u64 = captures
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let bar = (pipeline::stderr_is_terminal() && total >= 64 * 1024 * 1024).then(|| {
            let pb = indicatif::ProgressBar::new(total);
            pb.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb
        });
        Some(std::thread::spawn(move || {
            let progress = |done: u64, _total: u64| {
                if let Some(pb) = &bar {
                    pb.set_position(done);
                }
            };
            let progress_ref: &(dyn Fn(u64, u64) + Sync) = &progress;
            let r = httpscope_capture::packet::read_files(&captures, &cfg, &tx, Some(progress_ref));
            if let Some(pb) = &bar {
                pb.finish_and_clear();
            }
            r
        }))
    };
    let etw_reader = if etw.is_empty() {
        None
    } else {
        let (tx, rx) = channel(Source::Etw, 64);
        monitor.add_source(rx);
        Some(std::thread::spawn(move || {
            let mut reports = Vec::new();
            for path in &etw {
                reports.push((path.clone(), httpscope_capture::etw::read_file(path, &tx)));
            }
            reports
        }))
    };

    monitor.run(&stop);
    let interrupted = stop.load(Ordering::Relaxed);

    let mut failed = None;
    if let Some(h) = packet_reader {
        match h.join() {
            Ok(Ok(report)) => {
                if let Some(w) = &report.warning {
                    eprintln!("httpscope: warning: {w}");
                }
            }
            Ok(Err(PacketError::Disconnected)) if interrupted => {}
            Ok(Err(e)) => failed = Some(anyhow::Error::new(e)),
            Err(_) => failed = Some(anyhow::anyhow!("the capture reader panicked")),
        }
    }
    if let Some(h) = etw_reader {
        match h.join() {
            Ok(reports) => {
                for (path, r) in reports {
                    match r {
                        Ok(rep) if rep.malformed_records > 0 => eprintln!(
                            "httpscope: warning: {}: {} malformed records skipped",
                            path.display(),
                            rep.malformed_records
                        ),
                        Ok(_) => {}
                        Err(_) if interrupted => {}
                        Err(e) => failed = Some(anyhow::Error::new(e)),
                    }
                }
            }
            Err(_) => failed = Some(anyhow::anyhow!("the ETW reader panicked")),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_magic() {
        assert_eq!(
            classify(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
            Some(Kind::Capture)
        );
        assert_eq!(
            classify(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]),
            Some(Kind::Capture)
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(classify(b""), None);
    }
}
