//! Reads capture files with the packet source and prints what it found and how fast.
//!
//! ```text
//! cargo run --release -p httpscope-capture --example packet_count -- FILE... [--list] [--port N]
//! ```
//! `--list` prints one `METHOD PATH STATUS` line per complete transaction on stdout (for
//! comparing with other tools), `--incomplete` one `INCOMPLETE METHOD PATH STATUS START_NS`
//! line per incomplete one; the summary goes to stderr.

use std::path::PathBuf;
use std::time::Instant;

use httpscope_capture::packet::{read_files, PacketConfig};
use httpscope_model::{batch, Source};

fn main() {
    let mut files = Vec::new();
    let mut list = false;
    let mut list_incomplete = false;
    let mut cfg = PacketConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => list = true,
            "--incomplete" => list_incomplete = true,
            "--port" => cfg
                .ports
                .push(args.next().and_then(|p| p.parse().ok()).expect("--port N")),
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        eprintln!("usage: packet_count FILE... [--list] [--incomplete] [--port N]");
        std::process::exit(2);
    }
    let (tx, rx) = batch::channel(Source::Packet, 64);
    let started = Instant::now();
    let reader = std::thread::spawn(move || read_files(&files, &cfg, &tx, None));
    let (mut total, mut complete, mut incomplete) = (0u64, 0u64, 0u64);
    let mut stats = httpscope_model::telemetry::SourceStats::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for b in rx.receiver().iter() {
        stats.merge(&b.stats);
        for t in &b.transactions {
            total += 1;
            if t.incomplete {
                incomplete += 1;
                if list_incomplete {
                    use std::io::Write;
                    let m = t.method.map(|m| m.as_str()).unwrap_or("-");
                    let s = t.status.unwrap_or(0);
                    let _ = writeln!(out, "INCOMPLETE {m} {} {s} {}", t.path, t.start_ns);
                }
            } else {
                complete += 1;
                if list {
                    use std::io::Write;
                    let m = t.method.map(|m| m.as_str()).unwrap_or("-");
                    let _ = writeln!(out, "{m} {} {}", t.path, t.status.unwrap_or(0));
                }
            }
        }
    }
    let report = match reader.join().expect("reader thread") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mb = report.bytes as f64 / 1e6;
    eprintln!(
        "{:.1} MB in {:.3} s = {:.0} MB/s; packets {} tcp {} undecodable {} fragments {}; \
         connections {}; transactions {} (complete {}, incomplete {}); dropped {:?}; \
         parse errors {:?}; gaps {}",
        mb,
        secs,
        mb / secs,
        report.packets,
        report.tcp_segments,
        report.undecodable,
        report.fragments,
        report.connections,
        total,
        complete,
        incomplete,
        stats.dropped,
        stats.parse.errors,
        stats.parse.gaps,
    );
    if let Some(w) = report.warning {
        eprintln!("warning: {w}");
    }
}
