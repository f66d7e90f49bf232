//! The real binary: help, demo, analyze of real captures and ETW files, config errors,
//! transaction stream, SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_httpscope"))
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/httpscope-capture/tests/fixtures")
        .join(rel)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Table rows (after the header) as whitespace-split columns, stopping at the summary line.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("SERVER"));
    lines.next();
    lines
        .take_while(|l| !l.contains(" transactions, "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The COUNT column: the integer right before the ERR% column (the first `x.y` number).
fn count_of(row: &[String]) -> u64 {
    (3..row.len() - 1)
        .find(|&i| {
            row[i].parse::<u64>().is_ok()
                && row[i + 1].contains('.')
                && row[i + 1].parse::<f64>().is_ok()
        })
        .map(|i| row[i].parse().unwrap())
        .unwrap_or_else(|| panic!("no count column in {row:?}"))
}

#[test]
fn help_shows_the_subcommands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let s = text(&out.stdout);
    for word in ["analyze", "watch", "demo", "httpscope demo"] {
        assert!(s.contains(word), "{s}");
    }
    let out = bin().args(["analyze", "--help"]).output().unwrap();
    let s = text(&out.stdout);
    for flag in [
        "--format",
        "--transactions",
        "--top",
        "--port",
        "--interval",
        "--stats",
        "--prometheus",
        "--otlp",
        "--config",
    ] {
        assert!(s.contains(flag), "{flag} missing:\n{s}");
    }
}

fn demo(extra: &[&str]) -> Output {
    let mut c = bin();
    c.args(["demo", "--duration", "2", "--rate", "40"])
        .args(extra);
    let started = Instant::now();
    let out = c.output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "demo took {:?}",
        started.elapsed()
    );
    out
}

#[test]
fn demo_prints_a_table_with_counts() {
    // The client source needs no privileges, so this runs everywhere.
    let out = demo(&["--source", "client"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{so}\n{se}");
    let rows = rows(&so);
    assert!(rows.len() >= 5, "{so}");
    let total: u64 = rows.iter().map(|r| count_of(r)).sum();
    assert!(total >= 40, "{so}");
    assert!(
        rows.iter().any(|r| r.contains(&"/api/users/*".to_owned())),
        "{so}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(&"/api/hello.world".to_owned())),
        "{so}"
    );
    assert!(
        rows.iter().all(|r| r.last().unwrap() == "client/client"),
        "{so}"
    );
    assert!(so.contains("load generator's own view"), "{so}");
}

#[test]
fn demo_with_the_best_source() {
    let out = demo(&[]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{so}\n{se}");
    let rows = rows(&so);
    let total: u64 = rows.iter().map(|r| count_of(r)).sum();
    assert!(total >= 40, "{so}\n{se}");
    eprintln!("{se}");
}

#[test]
fn demo_streams_transactions_as_json_lines() {
    let out = demo(&["--source", "client", "--transactions"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let mut n = 0;
    for line in so.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["source"], "client");
        assert_eq!(v["side"], "client");
        assert!(v["status"]
            .as_u64()
            .is_some_and(|s| (200..600).contains(&s)));
        assert!(v["duration_ns"].as_u64().unwrap() > 0);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        n += 1;
    }
    assert!(n >= 40, "{n} lines");
}

#[test]
fn sigterm_ends_demo_with_a_final_table() {
    let child = bin()
        .args([
            "demo",
            "--duration",
            "60",
            "--rate",
            "40",
            "--source",
            "client",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        started.elapsed()
    );
    let so = text(&out.stdout);
    assert!(out.status.success(), "{so}\n{}", text(&out.stderr));
    let total: u64 = rows(&so).iter().map(|r| count_of(r)).sum();
    assert!(total > 0, "{so}");
}

#[test]
fn analyze_reads_pcap_and_pcapng_by_content() {
    for f in ["packet/nginx-curl-lo.pcap", "packet/nginx-curl-lo.pcapng"] {
        let out = bin().arg("analyze").arg(fixture(f)).output().unwrap();
        let so = text(&out.stdout);
        assert!(out.status.success(), "{so}\n{}", text(&out.stderr));
        let rows = rows(&so);
        let total: u64 = rows.iter().map(|r| count_of(r)).sum();
        assert_eq!(total, 9, "{so}");
        let missing = rows
            .iter()
            .find(|r| r[2] == "/missing")
            .expect("/missing row");
        assert_eq!(missing[3], "404");
        assert!(so.contains("9 transactions, 7 endpoints"), "{so}");
    }
}

#[test]
fn analyze_reads_etw_replays_and_json() {
    let out = bin()
        .arg("analyze")
        .arg(fixture("etw/all-flows.jsonl"))
        .args(["--format", "json", "--stats"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let eps = v["endpoints"].as_array().unwrap();
    assert!(!eps.is_empty());
    assert!(eps.iter().all(|e| e["source"] == "etw"));
    // Each endpoint's body-size histograms count each of its transactions once.
    for e in eps {
        for h in ["request_body_size", "response_body_size"] {
            let in_buckets: u64 = e[h]
                .as_object()
                .unwrap()
                .values()
                .map(|c| c.as_u64().unwrap())
                .sum();
            assert_eq!(in_buckets, e["count"].as_u64().unwrap(), "{h} of {e}");
        }
    }
    let n: u64 = eps.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(v["telemetry"]["aggregated"].as_u64().unwrap(), n);
    assert!(v["telemetry"]["sources"][0]["events"].as_u64().unwrap() > 0);
}

#[test]
fn analyze_rejects_unknown_content_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "just some text\n").unwrap();
    let out = bin().arg("analyze").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let se = text(&out.stderr);
    assert!(
        se.contains("not a pcap/pcapng capture nor an ETW replay"),
        "{se}"
    );
}

#[test]
fn config_file_is_used_and_unknown_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "format = \"jsonl\"\ntop = 2\n[routes]\npatterns = [\"/big.txt\"]\ndrop = [\"^/gz/\"]\n",
    )
    .unwrap();
    let out = bin()
        .arg("analyze")
        .arg(fixture("packet/nginx-curl-lo.pcap"))
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(v["telemetry"]["filtered"], 1);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "top = 2\n[prometheus]\nlisten = \"127.0.0.1:9464\"\nscrape_path = \"/x\"\n",
    )
    .unwrap();
    let out = bin()
        .arg("analyze")
        .arg(fixture("packet/nginx-curl-lo.pcap"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let se = text(&out.stderr);
    assert!(
        se.contains("scrape_path") && se.contains("unknown field"),
        "{se}"
    );
}

#[test]
fn watch_stops_after_its_duration() {
    // Root: a live source (eBPF or AF_PACKET) opens; not root: the source fails with a clear
    // error. Either way the command ends by itself.
    let started = Instant::now();
    let out = bin()
        .args([
            "watch",
            "--duration",
            "1.5",
            "--interval",
            "0.5",
            "--no-tui",
            "--port",
            "9",
        ])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let se = text(&out.stderr);
    assert!(se.contains("source"), "{se}");
    if out.status.success() {
        // At least one plain table was printed.
        assert!(
            text(&out.stdout).contains("SERVER"),
            "{}",
            text(&out.stdout)
        );
    } else {
        eprintln!("watch could not capture here: {se}");
    }
}

#[test]
fn watch_draws_the_live_view_on_a_terminal_and_restores_it() {
    // `script` (util-linux) gives the binary a pseudo-terminal; the live source needs root.
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !is_root || !Path::new("/usr/bin/script").exists() {
        eprintln!("skipping: needs root (live capture) and /usr/bin/script (a pseudo-terminal)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let typescript = dir.path().join("typescript");
    let cmd = format!(
        "stty rows 30 cols 150; {} watch --duration 2 --port 9",
        env!("CARGO_BIN_EXE_httpscope")
    );
    let status = Command::new("/usr/bin/script")
        .args(["-q", "-e", "-c", &cmd])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let screen = text(&std::fs::read(&typescript).unwrap());
    // Cells are placed with cursor moves, so look for words, not phrases.
    for word in [
        "endpoints,",
        "sorted",
        "SERVER",
        "ROUTE",
        "P99",
        "quit",
        "malformed",
    ] {
        assert!(screen.contains(word), "{word} missing: {screen}");
    }
    assert!(
        screen.contains("\x1b[?1049h") && screen.contains("\x1b[?1049l"),
        "alternate screen entered and left"
    );
}
