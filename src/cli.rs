//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// See every HTTP exchange on a host: per-endpoint counts, error rates, latency percentiles
/// and bytes, from eBPF, packet capture, capture files and Windows ETW replays.
#[derive(Debug, Parser)]
#[command(name = "httpscope", version, propagate_version = true)]
#[command(
    after_help = "Start with `httpscope demo`: it serves and loads a small HTTP API on 127.0.0.1 \
and shows what httpscope sees, in about ten seconds. Then `httpscope watch` (live host, root) or \
`httpscope analyze capture.pcap`."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read capture files (pcap, pcapng) or ETW replays (JSON lines, event XML) and print
    /// per-endpoint statistics. The reader is chosen from each file's content.
    Analyze(AnalyzeArgs),
    /// Watch live traffic until Ctrl-C (or --duration): eBPF when available, else packet
    /// capture on all interfaces, plus TLS plaintext from OpenSSL and GnuTLS when it can
    /// (--no-tls turns it off). Full-screen table when stdout is a terminal.
    Watch(WatchArgs),
    /// Start an HTTP server and a bounded client load on 127.0.0.1 and watch them with the
    /// best available source; finishes by itself.
    Demo(DemoArgs),
}

/// Output format of snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// An aligned table.
    Table,
    /// One pretty JSON document per snapshot.
    Json,
    /// One JSON object per line per snapshot.
    Jsonl,
}

/// A live source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// eBPF when it can run here, else packet capture.
    Auto,
    /// Kernel socket calls through eBPF (root, Linux >= 6.3 with BTF).
    Ebpf,
    /// AF_PACKET capture (root or CAP_NET_RAW).
    Packet,
}

/// The demo's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoSource {
    /// eBPF, else packet capture on lo when root, else the load generator's own view.
    Auto,
    /// eBPF.
    Ebpf,
    /// AF_PACKET on lo.
    Packet,
    /// The load generator's own observed exchanges (httpscope-client), no privileges needed.
    Client,
}

/// How clients are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Rollup {
    /// By client IP (ports dropped).
    Ip,
    /// By client IP and port.
    Full,
    /// All clients together.
    All,
}

/// OTLP temporality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Temporality {
    /// Each push holds one interval.
    Delta,
    /// Each push holds everything since start.
    Cumulative,
}

/// Options shared by every subcommand. Each can also be set in the --config file; a flag
/// wins over the file.
#[derive(Debug, Args, Default)]
pub struct OutputArgs {
    /// Snapshot output format [default: table].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Stream every transaction as one JSON line instead of printing snapshots.
    #[arg(long)]
    pub transactions: bool,
    /// Show only the N busiest endpoints (0: all) [default: 20].
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Only look at TCP port N (repeatable; default: all ports).
    #[arg(long = "port", value_name = "N")]
    pub ports: Vec<u16>,
    /// Seconds between snapshots for watch and exporters [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<f64>,
    /// Also print httpscope's own telemetry (events, drops, malformed, flush time).
    #[arg(long)]
    pub stats: bool,
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9464), path /metrics.
    #[arg(long, value_name = "ADDR")]
    pub prometheus: Option<SocketAddr>,
    /// Push OTLP/HTTP metrics to URL (e.g. http://127.0.0.1:4318) every interval.
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// OTLP temporality [default: cumulative].
    #[arg(long, value_enum)]
    pub otlp_temporality: Option<Temporality>,
    /// Read settings from a TOML file (unknown keys are an error).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep query strings in transaction paths (routes never keep them).
    #[arg(long)]
    pub keep_query: bool,
    /// Most endpoint keys kept [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_keys: Option<usize>,
    /// How clients are told apart in the aggregation [default: ip].
    #[arg(long, value_enum)]
    pub client_rollup: Option<Rollup>,
    /// A route pattern such as /users/{id}/orders (repeatable); wins over the id heuristic.
    #[arg(long = "route", value_name = "PATTERN")]
    pub routes: Vec<String>,
}

/// `httpscope analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap, pcapng) or ETW replays; pcap files are read in order as one
    /// capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `httpscope watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Which source [default: auto].
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Interface for packet capture [default: any].
    #[arg(long, short, value_name = "NAME")]
    pub interface: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Print plain tables even when stdout is a terminal.
    #[arg(long)]
    pub no_tui: bool,
    /// Do not capture TLS plaintext (uprobes on OpenSSL and GnuTLS), which is otherwise on
    /// next to the live source whenever it can run here (config file: `[source] tls = false`).
    #[arg(long)]
    pub no_tls: bool,
    /// eBPF and TLS sources: only processes in this cgroup v2 directory or below it, absolute or
    /// relative to the cgroup v2 mount, e.g. system.slice/nginx.service (config file:
    /// `[source] cgroup`).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `httpscope demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub duration: f64,
    /// Requests per second of the load.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub rate: u32,
    /// Which source watches the demo.
    #[arg(long, value_enum, default_value_t = DemoSource::Auto)]
    pub source: DemoSource,
    #[command(flatten)]
    pub out: OutputArgs,
}
