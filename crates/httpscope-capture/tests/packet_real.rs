//! The packet source on captures it did not make: curl talking to a real nginx on
//! 127.0.0.1, recorded by tcpdump (Ethernet on `lo`, Linux cooked v2 on `any`, nanosecond
//! pcap) and by tshark/dumpcap (pcapng), with nginx's own access log as the ground truth.
//! `bench/packet/make_fixtures.sh` records them again.

use std::path::PathBuf;

use httpscope_capture::packet::{read_files, PacketConfig};
use httpscope_model::{batch, Source, Transaction};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/packet")
        .join(name)
}

/// nginx's log: (method, uri, status, body bytes sent).
fn expected() -> Vec<(String, String, u16, u64)> {
    std::fs::read_to_string(fixture("nginx-curl.expected"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].to_owned(),
                f[1].to_owned(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

fn read(name: &str) -> Vec<Transaction> {
    let (tx, rx) = batch::channel(Source::Packet, 64);
    let report = read_files(&[fixture(name)], &PacketConfig::default(), &tx, None).unwrap();
    drop(tx);
    assert_eq!(report.warning, None);
    assert_eq!(report.undecodable, 0);
    let mut txs: Vec<Transaction> = rx.receiver().iter().flat_map(|b| b.transactions).collect();
    txs.sort_by_key(|t| t.start_ns);
    txs
}

fn check(name: &str) {
    let want = expected();
    let txs = read(name);
    let got: Vec<_> = txs
        .iter()
        .map(|t| {
            let m = t.method.map(|m| m.as_str().to_owned()).unwrap_or_default();
            (m, t.path.to_string(), t.status.unwrap_or(0))
        })
        .collect();
    let want_keys: Vec<_> = want
        .iter()
        .map(|w| (w.0.clone(), w.1.clone(), w.2))
        .collect();
    assert_eq!(got, want_keys, "{name}");
    for (t, w) in txs.iter().zip(&want) {
        assert!(!t.incomplete, "{name}: {t:?}");
        assert_eq!(t.server, Some("127.0.0.1:18091".parse().unwrap()), "{name}");
        assert!(
            t.end_ns >= t.start_ns && t.end_ns - t.start_ns < 5_000_000_000,
            "{name}"
        );
        // nginx counts the body bytes it sent (chunk framing included); so do we, off the
        // wire. Its count also takes in the interim "HTTP/1.1 100 Continue\r\n\r\n" (25
        // bytes) it sent before the final response to the upload; we do not.
        let interim = if w.1 == "/upload" { 25 } else { 0 };
        assert_eq!(t.response_bytes, w.3 - interim, "{name}: {} {}", w.0, w.1);
        // nginx answered the upload (100 Continue, then 201) before curl sent its 5000-byte
        // body; the transaction still counts the body that followed.
        let body = if w.1 == "/upload" { 5000 } else { 0 };
        assert_eq!(t.request_bytes, body, "{name}: {} {}", w.0, w.1);
    }
    assert_eq!(txs.len(), want.len());
}

#[test]
fn tcpdump_on_lo_ethernet_microseconds() {
    check("nginx-curl-lo.pcap");
}

#[test]
fn tcpdump_on_any_linux_cooked_v2_nanoseconds() {
    check("nginx-curl-any.pcap");
}

#[test]
fn dumpcap_pcapng() {
    check("nginx-curl-lo.pcapng");
}

#[test]
fn tshark_agrees_on_the_requests() {
    // tshark (if installed) reads the same fixture: every request it prints we found too.
    let Ok(out) = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(fixture("nginx-curl-lo.pcap"))
        .args([
            "-d",
            "tcp.port==18091,http",
            "-Y",
            "http.request",
            "-T",
            "fields",
        ])
        .args(["-e", "http.request.method", "-e", "http.request.uri"])
        .output()
    else {
        eprintln!("skipped: tshark is not installed");
        return;
    };
    let theirs: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            (
                f.next().unwrap_or("").to_owned(),
                f.next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let ours: Vec<(String, String)> = read("nginx-curl-lo.pcap")
        .iter()
        .map(|t| (t.method.unwrap().as_str().to_owned(), t.path.to_string()))
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
}
