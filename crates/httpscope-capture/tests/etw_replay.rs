//! Offline replay: the same event sequences as JSON-lines records and as Windows event XML
//! (UTF-8 with hex or text addresses, UTF-16LE as PowerShell writes it) must give the same
//! transactions as feeding the correlator directly; IIS site names from applicationHost.config.

mod etw_support;

use std::path::Path;

use etw_support::*;
use httpscope_capture::etw::{self, iis, EtwError, Format, ReadOptions};
use httpscope_model::batch::{self, BatchReceiver};
use httpscope_model::{Source, Transaction};

fn scenario() -> Scenario {
    let mut s = Scenario::default();
    let (c4, c6) = (conn_id(1), conn_id(2));
    s.connect(c4, "10.0.0.5:80", "192.0.2.10:50438");
    s.connect(c6, "[2001:db8::5]:443", "[2001:db8::10]:50999");
    s.tls(c6);
    s.flow_fast(
        c4,
        req_id(1),
        "192.0.2.10:50438",
        "http://localhost:80/index.html?user=alice",
    );
    s.flow_response(
        c6,
        req_id(2),
        "[2001:db8::10]:50999",
        "https://orders.example.com:443/api/orders/42",
        201,
    );
    s.flow_rejected(
        c4,
        req_id(3),
        "192.0.2.10:50438",
        "http://localhost:80/busy",
    );
    s.flow_cache_fill(
        c4,
        req_id(4),
        "192.0.2.10:50438",
        "http://localhost:80/static/app.js",
    );
    s.flow_cache_hit(
        c6,
        req_id(5),
        "[2001:db8::10]:50999",
        "http://localhost:80/static/app.js",
    );
    // The ConnClose trap on the IPv6 connection.
    s.recv(c6, req_id(6), "[2001:db8::10]:50999");
    s.parse(
        req_id(6),
        4,
        "https://orders.example.com:443/report?x=&y=<1>",
    );
    s.deliver(
        req_id(6),
        2,
        "ApiPool",
        "https://orders.example.com:443/report?x=&y=<1>",
    );
    s.response(req_id(6), false, 200, "GET", 0);
    s.close(c6);
    s.send(req_id(6), 10, 200);
    s.cleanup(c6);
    s.close(c4);
    s.cleanup(c4);
    s
}

fn drain(rx: &BatchReceiver) -> (Vec<Transaction>, u64, u64) {
    let mut txs = Vec::new();
    let (mut events, mut undecodable) = (0, 0);
    for b in rx.receiver().try_iter() {
        assert_eq!(b.source, Source::Etw);
        events += b.stats.events;
        undecodable += b.stats.undecodable;
        txs.extend(b.transactions);
    }
    (txs, events, undecodable)
}

fn replay(path: &Path, options: &ReadOptions) -> (etw::EtwReport, Vec<Transaction>, u64, u64) {
    let (tx, rx) = batch::channel(Source::Etw, 1024);
    let report = etw::read_file_with(path, &tx, options).unwrap();
    let (txs, events, undecodable) = drain(&rx);
    (report, txs, events, undecodable)
}

fn sorted(mut v: Vec<Transaction>) -> Vec<Transaction> {
    v.sort_by_key(|t| t.start_ns);
    v
}

#[test]
fn json_lines_and_event_xml_match_the_direct_path() {
    let s = scenario();
    let (direct, _) = run(&s.evs);
    assert_eq!(direct.len(), 6);
    let dir = temp_dir("match");
    let files = [
        ("events.jsonl", s.jsonl().into_bytes(), Format::JsonLines),
        ("events.xml", s.xml(false).into_bytes(), Format::EventXml),
        (
            "events-text-addr.xml",
            s.xml(true).into_bytes(),
            Format::EventXml,
        ),
        (
            "events-utf16.xml",
            {
                let mut b = vec![0xff, 0xfe];
                for u in s.xml(false).encode_utf16() {
                    b.extend_from_slice(&u.to_le_bytes());
                }
                b
            },
            Format::EventXmlUtf16,
        ),
    ];
    for (name, bytes, format) in files {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        assert!(etw::detect(&bytes[..bytes.len().min(4096)]), "{name}");
        let (report, txs, events, undecodable) = replay(&path, &ReadOptions::default());
        assert_eq!(report.format, format, "{name}");
        assert_eq!(report.records, s.evs.len() as u64, "{name}");
        assert_eq!(
            (report.malformed_records, report.other_provider, undecodable),
            (0, 0, 0),
            "{name}"
        );
        assert_eq!(events, s.evs.len() as u64, "{name}");
        assert_eq!(report.transactions, 6);
        assert_eq!(sorted(txs), sorted(direct.clone()), "{name}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn site_names_from_application_host_config() {
    let s = scenario();
    let dir = temp_dir("iis");
    let (events, config) = (dir.join("events.xml"), dir.join("applicationHost.config"));
    std::fs::write(&events, s.xml(false)).unwrap();
    std::fs::write(&config, APPLICATION_HOST).unwrap();
    let options = ReadOptions {
        iis_config: Some(config.clone()),
        ..ReadOptions::default()
    };
    let (_, txs, _, _) = replay(&events, &options);
    let by_path = |p: &str| txs.iter().find(|t| t.path == p).unwrap();
    assert_eq!(
        by_path("/index.html").tags.get("site_name"),
        Some("Default Web Site")
    );
    assert_eq!(
        by_path("/api/orders/42").tags.get("site_name"),
        Some("Orders API")
    );
    assert_eq!(by_path("/api/orders/42").tags.get("site_id"), Some("2"));
    // Query strings never reach the path by default.
    assert_eq!(by_path("/report").status, Some(200));
    assert!(txs.iter().all(|t| !t.path.contains('?')));

    // A missing configuration is an error of its own.
    let bad = ReadOptions {
        iis_config: Some(dir.join("missing.config")),
        ..ReadOptions::default()
    };
    let (tx, _rx) = batch::channel(Source::Etw, 8);
    assert!(matches!(
        etw::read_file_with(&events, &tx, &bad),
        Err(EtwError::IisConfig(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn iis_config_reloads_when_the_file_changes() {
    let dir = temp_dir("reload");
    let path = dir.join("applicationHost.config");
    std::fs::write(&path, APPLICATION_HOST).unwrap();
    let mut f = iis::IisConfigFile::open(&path, std::time::Duration::from_secs(3600)).unwrap();
    assert_eq!(f.config().site_name(2), Some("Orders API"));
    assert!(!f.refresh(), "not due yet");
    assert!(!f.force_refresh(), "unchanged");
    std::fs::write(
        &path,
        APPLICATION_HOST.replace("Orders API", "Orders API v2 (renamed)"),
    )
    .unwrap();
    assert!(f.force_refresh());
    assert_eq!(f.config().site_name(2), Some("Orders API v2 (renamed)"));
    assert_eq!(f.reloads(), 1);
    // A half-written file keeps the previous configuration.
    std::fs::write(&path, "<configuration><system.applicationHost><sites><site").unwrap();
    assert!(!f.force_refresh());
    assert_eq!(f.errors(), 1);
    assert_eq!(f.config().site_name(2), Some("Orders API v2 (renamed)"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_records_are_counted_and_skipped() {
    let s = scenario();
    let mut text = String::new();
    text.push_str("not json at all\n");
    text.push_str(
        &s.evs[0]
            .json_line()
            .replace("\"user_data\":\"", "\"user_data\":\"!!"),
    );
    text.push_str(&s.evs[0].json_line().replace("dd5ef90a", "22fb2cd6"));
    text.push_str(&"x".repeat(1 << 21));
    text.push('\n');
    text.push_str("\n\n");
    text.push_str(&s.jsonl());
    // A truncated last line.
    let last = s.evs[0].json_line();
    text.push_str(&last[..last.len() / 2]);
    let dir = temp_dir("bad");
    let path = dir.join("events.jsonl");
    std::fs::write(&path, format!("{}{}", s.evs[0].json_line(), text)).unwrap();
    let (report, txs, _, undecodable) = replay(&path, &ReadOptions::default());
    assert_eq!(report.other_provider, 1);
    assert_eq!(report.malformed_records, 4);
    assert_eq!(undecodable, 4);
    assert_eq!(txs.len(), 6);

    // XML: an event with a field missing, another provider, then malformed XML.
    let mut xml = s.xml(false);
    assert_eq!(s.evs[4].id, 2);
    let broken = s.evs[4]
        .xml(false)
        .replace("<Data Name=\"Url\">", "<Data Name=\"Nope\">");
    let other = s.evs[2].xml(false).replace(
        "Microsoft-Windows-HttpService\" Guid=\"{dd5ef90a",
        "Other\" Guid=\"{11111111",
    );
    xml = xml.replacen("<Event ", &format!("{broken}{other}<Event "), 1);
    std::fs::write(&path, &xml).unwrap();
    let (report, txs, _, _) = replay(&path, &ReadOptions::default());
    assert_eq!((report.malformed_records, report.other_provider), (1, 1));
    assert_eq!(txs.len(), 6);
    let cut = &xml[..xml.len() - 40];
    std::fs::write(&path, format!("{cut}<<<")).unwrap();
    let (tx, _rx) = batch::channel(Source::Etw, 1024);
    assert!(matches!(
        etw::read_file(&path, &tx),
        Err(EtwError::Xml { .. })
    ));

    std::fs::write(&path, b"\x0a\x0d\x0d\x0apcapng").unwrap();
    assert!(matches!(
        etw::read_file(&path, &tx),
        Err(EtwError::UnknownFormat { .. })
    ));
    assert!(matches!(
        etw::read_file(&dir.join("nope"), &tx),
        Err(EtwError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flush_drains_synchronously_and_batches_are_bounded() {
    let mut s = Scenario::default();
    s.connect(conn_id(1), "10.0.0.5:80", "192.0.2.10:50438");
    for i in 0..2_500u32 {
        s.flow_fast(
            conn_id(1),
            req_id(i),
            "192.0.2.10:50438",
            "http://localhost:80/x",
        );
    }
    let dir = temp_dir("batches");
    let path = dir.join("events.jsonl");
    std::fs::write(&path, s.jsonl()).unwrap();
    // A channel of 2 batches: the replay waits for the consumer instead of dropping.
    let (tx, rx) = batch::channel(Source::Etw, 2);
    let options = ReadOptions {
        batch_size: 100,
        ..ReadOptions::default()
    };
    let reader = std::thread::spawn(move || etw::read_file_with(&path, &tx, &options).unwrap());
    let mut got = 0;
    let mut batches = 0;
    while let Ok(b) = rx
        .receiver()
        .recv_timeout(std::time::Duration::from_secs(20))
    {
        assert!(b.transactions.len() <= 100);
        got += b.transactions.len();
        batches += 1;
    }
    let report = reader.join().unwrap();
    assert_eq!(got, 2_500);
    assert_eq!(report.transactions, 2_500);
    assert!(batches >= 25);
    assert_eq!(rx.drops().batches.get(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn committed_fixtures_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/etw");
    let s = scenario();
    if std::env::var_os("ETW_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("all-flows.jsonl"), s.jsonl()).unwrap();
        std::fs::write(dir.join("all-flows.xml"), s.xml(false)).unwrap();
        std::fs::write(dir.join("applicationHost.config"), APPLICATION_HOST).unwrap();
    }
    // The fixtures are exactly what the synthetic sequence renders to.
    assert_eq!(
        std::fs::read_to_string(dir.join("all-flows.jsonl")).unwrap(),
        s.jsonl()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("all-flows.xml")).unwrap(),
        s.xml(false)
    );
    let options = ReadOptions {
        iis_config: Some(dir.join("applicationHost.config")),
        ..ReadOptions::default()
    };
    for f in ["all-flows.jsonl", "all-flows.xml"] {
        let (report, txs, _, _) = replay(&dir.join(f), &options);
        assert_eq!(report.transactions, 6, "{f}");
        assert_eq!(
            txs.iter()
                .filter(|t| t.tags.get("site_name").is_some())
                .count(),
            5,
            "{f}"
        );
    }
}

/// `Get-WinEvent -Path trace.etl -Oldest | ForEach-Object { $_.ToXml() }`: no XML declaration,
/// no `<Events>` root, single-quoted attributes, binary rendered as bare hex.
#[test]
fn get_winevent_to_xml_style() {
    let s = scenario();
    let mut text = String::new();
    for e in &s.evs {
        let x = e
            .xml(false)
            .replace('"', "'")
            .replace(">0x0", ">0")
            .replace(">0x1", ">1");
        text.push_str(&x.replace("\r\n", ""));
        text.push('\n');
    }
    assert!(!text.starts_with("<?xml"));
    let dir = temp_dir("winevent");
    let path = dir.join("events.xml");
    std::fs::write(&path, &text).unwrap();
    assert!(etw::detect(text.as_bytes()));
    let (report, txs, _, _) = replay(&path, &ReadOptions::default());
    assert_eq!(report.format, Format::EventXml);
    assert_eq!(report.malformed_records, 0);
    let (direct, _) = run(&s.evs);
    assert_eq!(sorted(txs), sorted(direct));
    let _ = std::fs::remove_dir_all(dir);
}

/// Events rendered without the provider's manifest carry the raw user data as
/// `<BinaryEventData>` hex: it goes through the decoder as is.
#[test]
fn binary_event_data_is_raw_user_data() {
    let s = scenario();
    let mut xml = String::from("<Events>\n");
    for e in &s.evs {
        let full = e.xml(false);
        let start = full.find("<EventData>").unwrap();
        let end = full.find("</EventData>").unwrap() + "</EventData>".len();
        let hex: String = e.bytes().iter().map(|b| format!("{b:02X}")).collect();
        xml.push_str(&full[..start]);
        xml.push_str(&format!("<BinaryEventData>{hex}</BinaryEventData>"));
        xml.push_str(&full[end..]);
    }
    xml.push_str("</Events>\n");
    let dir = temp_dir("binary");
    let path = dir.join("events.xml");
    std::fs::write(&path, &xml).unwrap();
    let (report, txs, _, _) = replay(&path, &ReadOptions::default());
    assert_eq!(report.malformed_records, 0);
    let (direct, _) = run(&s.evs);
    assert_eq!(sorted(txs), sorted(direct));
    let _ = std::fs::remove_dir_all(dir);
}
