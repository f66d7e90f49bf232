//! The TOML configuration file and how it combines with the flags (a flag wins).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use httpscope_monitor::export::otlp::{OtlpConfig, Temporality as OtlpTemporality};
use httpscope_monitor::export::prometheus::PrometheusConfig;
use httpscope_monitor::route::RouteConfig;
use httpscope_monitor::ClientRollup;
use serde::Deserialize;

use crate::cli::{Format, OutputArgs, Rollup, SourceKind, Temporality};

/// The file's shape. Every key is optional; unknown keys are an error naming the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    format: Option<Format>,
    transactions: Option<bool>,
    top: Option<usize>,
    ports: Option<Vec<u16>>,
    /// Seconds.
    interval: Option<f64>,
    stats: Option<bool>,
    keep_query: Option<bool>,
    max_keys: Option<usize>,
    client_rollup: Option<ClientRollup>,
    source: Option<SourceSection>,
    routes: Option<RouteConfig>,
    prometheus: Option<PrometheusConfig>,
    otlp: Option<OtlpConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    kind: Option<SourceKind>,
    interface: Option<String>,
    /// TLS plaintext through uprobes next to the live source (default true; `--no-tls`).
    tls: Option<bool>,
    /// eBPF and TLS sources: only processes in this cgroup v2 directory or below (`--cgroup`).
    cgroup: Option<std::path::PathBuf>,
}

/// Everything a run needs, after merging file and flags.
#[derive(Debug)]
pub struct Settings {
    pub format: Format,
    pub transactions: bool,
    pub top: usize,
    pub ports: Vec<u16>,
    pub interval: Duration,
    pub stats: bool,
    pub keep_query: bool,
    pub max_keys: usize,
    pub client_rollup: ClientRollup,
    pub source: SourceKind,
    pub interface: String,
    /// `watch` also captures TLS plaintext when it can (`[source] tls`, `--no-tls`).
    pub tls: bool,
    /// eBPF and TLS sources: only processes in this cgroup v2 directory or below (`[source] cgroup`,
    /// `--cgroup`).
    pub cgroup: Option<std::path::PathBuf>,
    pub routes: RouteConfig,
    pub prometheus: Option<PrometheusConfig>,
    pub otlp: Option<OtlpConfig>,
}

/// Parses a configuration file.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

fn parse(text: &str) -> Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

/// Merges flags over the file over the defaults.
pub fn settings(
    out: &OutputArgs,
    source: Option<SourceKind>,
    interface: Option<String>,
) -> Result<Settings> {
    let file = match &out.config {
        Some(p) => load(p)?,
        None => FileConfig::default(),
    };
    merge(out, source, interface, file)
}

fn merge(
    out: &OutputArgs,
    source: Option<SourceKind>,
    interface: Option<String>,
    file: FileConfig,
) -> Result<Settings> {
    let interval = out.interval.or(file.interval).unwrap_or(10.0);
    if !(0.05..=86_400.0).contains(&interval) {
        bail!("interval must be between 0.05 and 86400 seconds, not {interval}");
    }
    let mut routes = file.routes.unwrap_or_default();
    routes.patterns.extend(out.routes.iter().cloned());
    let fsrc = file.source.unwrap_or_default();
    let prometheus = match out.prometheus {
        Some(listen) => Some(PrometheusConfig { listen }),
        None => file.prometheus,
    };
    let otlp = match (&out.otlp, file.otlp) {
        (Some(endpoint), f) => Some(OtlpConfig {
            endpoint: endpoint.clone(),
            temporality: f.as_ref().map(|f| f.temporality).unwrap_or_default(),
            timeout_secs: f.as_ref().map_or(5.0, |f| f.timeout_secs),
        }),
        (None, f) => f,
    }
    .map(|mut o| {
        if let Some(t) = out.otlp_temporality {
            o.temporality = match t {
                Temporality::Delta => OtlpTemporality::Delta,
                Temporality::Cumulative => OtlpTemporality::Cumulative,
            };
        }
        o
    });
    Ok(Settings {
        format: out.format.or(file.format).unwrap_or(Format::Table),
        transactions: out.transactions || file.transactions.unwrap_or(false),
        top: out.top.or(file.top).unwrap_or(20),
        ports: if out.ports.is_empty() {
            file.ports.unwrap_or_default()
        } else {
            out.ports.clone()
        },
        interval: Duration::from_secs_f64(interval),
        stats: out.stats || file.stats.unwrap_or(false),
        keep_query: out.keep_query || file.keep_query.unwrap_or(false),
        max_keys: out.max_keys.or(file.max_keys).unwrap_or(100_000).max(1),
        client_rollup: match out.client_rollup {
            Some(Rollup::Ip) => ClientRollup::Ip,
            Some(Rollup::Full) => ClientRollup::Full,
            Some(Rollup::All) => ClientRollup::All,
            None => file.client_rollup.unwrap_or_default(),
        },
        source: source.or(fsrc.kind).unwrap_or(SourceKind::Auto),
        interface: interface
            .or(fsrc.interface)
            .unwrap_or_else(|| "any".to_owned()),
        tls: fsrc.tls.unwrap_or(true),
        cgroup: fsrc.cgroup,
        routes,
        prometheus,
        otlp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
format = "jsonl"
top = 5
ports = [8080, 9090]
interval = 2.5
stats = true
max_keys = 500
client_rollup = "all"

[source]
kind = "packet"
interface = "eth0"
tls = false
cgroup = "system.slice/nginx.service"

[routes]
patterns = ["/users/{id}/orders"]
drop = ["^/health"]
replace = [{ pattern = "^/v[0-9]+/", with = "/" }]

[prometheus]
listen = "127.0.0.1:9999"

[otlp]
endpoint = "http://127.0.0.1:4318"
temporality = "delta"
"#;

    #[test]
    fn file_sets_everything_and_flags_win() {
        let file = parse(FULL).unwrap();
        let flags = OutputArgs {
            top: Some(7),
            routes: vec!["/a/{b}".into()],
            ..OutputArgs::default()
        };
        let s = merge(&flags, None, None, file).unwrap();
        assert_eq!(s.format, Format::Jsonl);
        assert_eq!(s.top, 7);
        assert_eq!(s.ports, vec![8080, 9090]);
        assert_eq!(s.interval, Duration::from_millis(2500));
        assert!(s.stats);
        assert_eq!(s.max_keys, 500);
        assert_eq!(s.client_rollup, ClientRollup::All);
        assert_eq!(s.source, SourceKind::Packet);
        assert_eq!(s.interface, "eth0");
        assert!(!s.tls);
        assert_eq!(
            s.cgroup.as_deref(),
            Some(Path::new("system.slice/nginx.service"))
        );
        assert_eq!(
            s.routes.patterns,
            vec!["/users/{id}/orders".to_owned(), "/a/{b}".to_owned()]
        );
        assert_eq!(s.routes.drop, vec!["^/health".to_owned()]);
        assert_eq!(
            s.prometheus.unwrap().listen,
            "127.0.0.1:9999".parse().unwrap()
        );
        let otlp = s.otlp.unwrap();
        assert_eq!(otlp.temporality, OtlpTemporality::Delta);
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4318");
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("intervall = 3", "intervall"),
            ("[routes]\npaterns = []", "paterns"),
            ("[prometheus]\nlisten = \"127.0.0.1:1\"\nport = 3", "port"),
            ("[source]\niface = \"lo\"", "iface"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(key), "{err}");
            assert!(err.contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn defaults() {
        let s = merge(&OutputArgs::default(), None, None, FileConfig::default()).unwrap();
        assert_eq!(s.format, Format::Table);
        assert_eq!(s.top, 20);
        assert_eq!(s.interval, Duration::from_secs(10));
        assert_eq!(s.max_keys, 100_000);
        assert_eq!(s.source, SourceKind::Auto);
        assert_eq!(s.interface, "any");
        assert!(s.tls, "TLS capture is on unless turned off");
        assert!(s.prometheus.is_none() && s.otlp.is_none());
        let bad = OutputArgs {
            interval: Some(0.0),
            ..OutputArgs::default()
        };
        assert!(merge(&bad, None, None, FileConfig::default()).is_err());
    }
}
