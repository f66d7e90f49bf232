//! What every subcommand shares: the monitor with its exporters, and signal handling.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use httpscope_monitor::export::json::{JsonExporter, TransactionsExporter};
use httpscope_monitor::export::otlp::OtlpExporter;
use httpscope_monitor::export::prometheus::PrometheusExporter;
use httpscope_monitor::export::table::TableExporter;
use httpscope_monitor::export::Cadence;
use httpscope_monitor::{KeeperConfig, Monitor, MonitorConfig};

use crate::cli::Format;
use crate::config::Settings;

/// Starts the TLS source (uprobes on OpenSSL and GnuTLS) as one more source of `monitor`,
/// when the settings ask for it and it can run here; says on stderr what it does and, when
/// it cannot, why. Runs until `stop`; a failure while running is reported, not fatal.
pub fn start_tls(
    s: &Settings,
    monitor: &mut Monitor,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    if !s.tls {
        eprintln!("httpscope: TLS capture off (--no-tls or [source] tls = false)");
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        use httpscope_capture::tls;
        if let Err(why) = tls::probe() {
            eprintln!(
                "httpscope: TLS plaintext capture unavailable ({why}); https exchanges are not \
                 shown (their encrypted bytes are counted as not HTTP)"
            );
            return None;
        }
        let (tx, rx) = httpscope_model::batch::channel(httpscope_model::Source::Tls, 256);
        monitor.add_source(rx);
        let cfg = tls::TlsConfig {
            ports: s.ports.clone(),
            cgroup: s.cgroup.clone(),
            http: http_config(s),
            ..tls::TlsConfig::default()
        };
        eprintln!(
            "httpscope: also capturing TLS plaintext (uprobes on every OpenSSL libssl and GnuTLS \
             library file in use; --no-tls turns it off)"
        );
        Some(std::thread::spawn(move || {
            match tls::capture(&cfg, &tx, &stop) {
                Ok(r) => {
                    let failed: Vec<String> = r
                        .libraries
                        .iter()
                        .filter(|l| l.symbols.is_empty())
                        .map(|l| format!("{} ({})", l.path.display(), l.errors.join("; ")))
                        .collect();
                    if !failed.is_empty() {
                        eprintln!("httpscope: tls: could not hook {}", failed.join(", "));
                    }
                }
                Err(e) => eprintln!("httpscope: tls: {e}"),
            }
        }))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (monitor, stop);
        eprintln!("httpscope: TLS plaintext capture is Linux only");
        None
    }
}

/// The HTTP parser options the sources should use.
pub fn http_config(s: &Settings) -> httpscope_http::Config {
    httpscope_http::Config {
        keep_query: s.keep_query,
        ..httpscope_http::Config::default()
    }
}

/// Builds the monitor and its exporters. `cadence` says whether stdout gets a snapshot every
/// interval or the total once at the end; `stdout_snapshots` false leaves stdout to someone
/// else (the TUI); `data_time` computes rates over the transactions' own time span (replays).
pub fn monitor(
    s: &Settings,
    cadence: Cadence,
    title: Option<String>,
    stdout_snapshots: bool,
    data_time: bool,
) -> Result<Monitor> {
    let cfg = MonitorConfig {
        interval: s.interval,
        keeper: KeeperConfig {
            max_keys: s.max_keys,
            client_rollup: s.client_rollup,
        },
        routes: s.routes.clone(),
        ..MonitorConfig::default()
    };
    let mut m = Monitor::new(cfg).context("invalid route configuration")?;
    if s.transactions {
        m.add_exporter(Box::new(TransactionsExporter::new(Box::new(
            std::io::stdout(),
        ))));
        if s.stats {
            // stdout carries transactions: telemetry goes to stderr.
            let mut t =
                TableExporter::new(Box::new(std::io::stderr()), Cadence::FinalTotal, 0, true);
            t.top = usize::MAX;
            m.add_exporter(Box::new(StatsOnly(t)));
        }
    } else if stdout_snapshots {
        match s.format {
            Format::Table => {
                let mut t =
                    TableExporter::new(Box::new(std::io::stdout()), cadence, s.top, s.stats);
                t.title = title;
                t.data_time = data_time;
                m.add_exporter(Box::new(t));
            }
            Format::Json | Format::Jsonl => {
                let mut j = JsonExporter::new(
                    Box::new(std::io::stdout()),
                    s.format == Format::Jsonl,
                    cadence,
                    s.top,
                );
                j.data_time = data_time;
                m.add_exporter(Box::new(j));
            }
        }
    }
    if let Some(p) = &s.prometheus {
        let e = PrometheusExporter::start(p)?;
        eprintln!(
            "httpscope: Prometheus metrics on http://{}/metrics",
            e.local_addr()
        );
        m.add_exporter(Box::new(e));
    }
    if let Some(o) = &s.otlp {
        let e = OtlpExporter::new(o)?;
        eprintln!(
            "httpscope: pushing OTLP metrics to {} every {:?}",
            e.uri(),
            s.interval
        );
        m.add_exporter(Box::new(e));
    }
    m.on_export_error(|name, err| eprintln!("httpscope: {name} exporter: {err}"));
    Ok(m)
}

/// Prints only the telemetry part of the table exporter (for `--transactions --stats`).
struct StatsOnly(TableExporter);

impl httpscope_monitor::Exporter for StatsOnly {
    fn name(&self) -> &'static str {
        "stats"
    }
    fn flush(
        &mut self,
        f: &httpscope_monitor::Flush<'_>,
    ) -> Result<(), httpscope_monitor::ExportError> {
        if f.last {
            use std::io::Write;
            let text = httpscope_monitor::export::table::render_telemetry(&f.total.telemetry);
            std::io::stderr().write_all(text.as_bytes())?;
        }
        let _ = &self.0;
        Ok(())
    }
}

/// A flag set by SIGINT or SIGTERM; a second SIGINT exits at once.
pub fn signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

/// Sets `then` once `when` has been set for `grace` (so that a source that does not stop by
/// itself cannot keep the monitor from its final flush).
pub fn after(when: Arc<AtomicBool>, grace: Duration, then: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !when.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(grace);
        then.store(true, Ordering::Relaxed);
    });
}

/// Whether stderr is a terminal (for progress bars).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdout is a terminal (for the live view).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
