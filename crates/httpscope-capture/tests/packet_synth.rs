//! The packet source end to end on synthesized captures whose ground truth is known exactly:
//! every HTTP/1.x shape the parser must pair, every TCP misadventure the reassembly must
//! survive, written as pcap (both byte orders, micro- and nanoseconds) and pcapng (two
//! interfaces with their own time resolution), and the exact transaction list asserted.

use std::net::SocketAddr;
use std::path::Path;

use httpscope_capture::packet::synth::{Conversation, Format, TcpSegment, Writer};
use httpscope_capture::packet::{read_files, read_reader, FileReport, PacketConfig, PacketError};
use httpscope_model::batch;
use httpscope_model::telemetry::SourceStats;
use httpscope_model::{Method, Source, Transaction};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn conv(port: u16) -> Conversation {
    let mut c = Conversation::new(addr(&format!("10.0.0.1:{port}")), addr("10.0.0.2:80"));
    // Distinct sequence numbers per connection, one of them close to wrapping.
    c.seq = [u32::from(port) * 7919, u32::MAX - 50_000 + u32::from(port)];
    c
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn head(len: usize) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
}

/// What a transaction must be: (method, path, status, request bytes, response bytes,
/// client, server, incomplete).
type Want = (
    Option<Method>,
    String,
    Option<u16>,
    u64,
    u64,
    SocketAddr,
    SocketAddr,
    bool,
);

fn want(
    method: Option<Method>,
    path: &str,
    status: Option<u16>,
    req: u64,
    resp: u64,
    c: &Conversation,
    incomplete: bool,
) -> Want {
    (
        method,
        path.to_owned(),
        status,
        req,
        resp,
        c.client,
        c.server,
        incomplete,
    )
}

fn got(t: &Transaction) -> Want {
    (
        t.method,
        t.path.to_string(),
        t.status,
        t.request_bytes,
        t.response_bytes,
        t.client.unwrap(),
        t.server.unwrap(),
        t.incomplete,
    )
}

struct Scenario {
    segments: Vec<TcpSegment>,
    want: Vec<Want>,
}

const GET: Option<Method> = Some(Method::Get);

fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    let mut add = |c: Conversation, want: Vec<Want>| {
        all.push(Scenario {
            segments: c.segments,
            want,
        })
    };

    // Keep-alive: three exchanges on one connection, one with a request body.
    let mut c = conv(40001);
    c.handshake();
    c.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("hello").as_bytes());
    c.client(b"GET /b?secret=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    c.client(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    c.server(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
    c.close();
    let w = vec![
        want(GET, "/a", Some(200), 0, 5, &c, false),
        want(GET, "/b", Some(404), 0, 0, &c, false),
        want(Some(Method::Post), "/c", Some(201), 3, 2, &c, false),
    ];
    add(c, w);

    // Pipelining: three requests in one segment, three responses in one segment.
    let mut c = conv(40002);
    c.handshake();
    c.client(
        b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    c.server(format!("{}{}{}", ok("1"), ok("22"), ok("333")).as_bytes());
    c.close();
    let w = vec![
        want(GET, "/p1", Some(200), 0, 1, &c, false),
        want(GET, "/p2", Some(200), 0, 2, &c, false),
        want(GET, "/p3", Some(200), 0, 3, &c, false),
    ];
    add(c, w);

    // Chunked with extensions and trailers, split across segments at awkward places.
    let mut c = conv(40003);
    c.mss = 7;
    c.handshake();
    c.client(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    let body = "5;name=val\r\nhello\r\n6;x\r\n world\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
    c.server(format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}").as_bytes());
    c.client(b"GET /after-chunked HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("z").as_bytes());
    c.close();
    let w = vec![
        want(GET, "/chunked", Some(200), 0, body.len() as u64, &c, false),
        want(GET, "/after-chunked", Some(200), 0, 1, &c, false),
    ];
    add(c, w);

    // 100-continue: the interim response is not the answer.
    let mut c = conv(40004);
    c.handshake();
    c.client(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    c.server(b"HTTP/1.1 100 Continue\r\n\r\n");
    c.client(b"data");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.close();
    let w = vec![want(Some(Method::Put), "/up", Some(200), 4, 0, &c, false)];
    add(c, w);

    // HEAD: a Content-Length but no body; the next exchange must still line up.
    let mut c = conv(40005);
    c.handshake();
    c.client(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    c.client(b"GET /after-head HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("x").as_bytes());
    c.close();
    let w = vec![
        want(Some(Method::Head), "/h", Some(200), 0, 0, &c, false),
        want(GET, "/after-head", Some(200), 0, 1, &c, false),
    ];
    add(c, w);

    // 204 and 304 have no body whatever their headers say.
    let mut c = conv(40006);
    c.handshake();
    c.client(b"DELETE /nc HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(b"HTTP/1.1 204 No Content\r\n\r\n");
    c.client(b"GET /nm HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"e\"\r\n\r\n");
    c.server(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"e\"\r\n\r\n");
    c.client(b"GET /z HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("1").as_bytes());
    c.close();
    let w = vec![
        want(Some(Method::Delete), "/nc", Some(204), 0, 0, &c, false),
        want(GET, "/nm", Some(304), 0, 0, &c, false),
        want(GET, "/z", Some(200), 0, 1, &c, false),
    ];
    add(c, w);

    // A close-delimited body: ends when the server closes.
    let mut c = conv(40007);
    c.handshake();
    c.client(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(
        &[
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".as_slice(),
            &[b'b'; 3000],
        ]
        .concat(),
    );
    c.server_close();
    let w = vec![want(GET, "/stream", Some(200), 0, 3000, &c, false)];
    add(c, w);

    // An aborted download: the client resets mid-body.
    let mut c = conv(40008);
    c.handshake();
    c.client(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(
        &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".as_slice(),
            &[b'b'; 5000],
        ]
        .concat(),
    );
    c.reset(true);
    let w = vec![want(GET, "/big", Some(200), 0, 5000, &c, true)];
    add(c, w);

    // HTTP/1.0, no Host, body delimited by length, server closes.
    let mut c = conv(40009);
    c.handshake();
    c.client(b"GET /old HTTP/1.0\r\n\r\n");
    c.server(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    c.server_close();
    let w = vec![want(GET, "/old", Some(200), 0, 3, &c, false)];
    add(c, w);

    // Port reuse: the first connection is never closed in the capture; a new SYN on the
    // same 4-tuple a moment later starts a second one.
    let mut c = conv(40010);
    c.handshake();
    c.client(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("1").as_bytes());
    c.client(b"GET /first-unanswered HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut w = vec![
        want(GET, "/first", Some(200), 0, 1, &c, false),
        want(GET, "/first-unanswered", None, 0, 0, &c, true),
    ];
    c.seq = [77, 99_999];
    c.handshake();
    c.client(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("22").as_bytes());
    c.close();
    w.push(want(GET, "/second", Some(200), 0, 2, &c, false));
    add(c, w);

    // Reordering and duplicates: body segments swapped and repeated.
    let mut c = conv(40011);
    c.mss = 1000;
    c.handshake();
    c.client(b"GET /reorder HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(&[head(10000).as_bytes(), &[b'r'; 10000]].concat());
    c.close();
    let w = vec![want(GET, "/reorder", Some(200), 0, 10000, &c, false)];
    let data: Vec<usize> = (0..c.segments.len())
        .filter(|&i| !c.segments[i].payload.is_empty())
        .collect();
    // data[0] is the request; data[1..] the response.
    c.segments.swap(data[3], data[5]);
    c.segments.swap(data[1], data[2]);
    let dup = c.segments[data[4]].clone();
    c.segments.insert(data[7], dup);
    add(c, w);

    // Loss inside a body: one body segment never captured; the client's ACK tells.
    let mut c = conv(40012);
    c.mss = 1000;
    c.handshake();
    c.client(b"GET /lossy HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(&[head(8000).as_bytes(), &[b'l'; 8000]].concat());
    c.client(b"GET /after-loss HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("ok").as_bytes());
    c.close();
    let w = vec![
        want(GET, "/lossy", Some(200), 0, 8000, &c, false),
        want(GET, "/after-loss", Some(200), 0, 2, &c, false),
    ];
    let data: Vec<usize> = (0..c.segments.len())
        .filter(|&i| !c.segments[i].payload.is_empty())
        .collect();
    c.segments.remove(data[4]);
    add(c, w);

    // A lost request head: its response has no request; the next pair is whole.
    let mut c = conv(40013);
    c.handshake();
    c.client(b"GET /lost-request HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("aaa").as_bytes());
    c.client(b"GET /m2 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("bb").as_bytes());
    c.close();
    let w = vec![
        want(None, "", Some(200), 0, 3, &c, true),
        want(GET, "/m2", Some(200), 0, 2, &c, false),
    ];
    let first_data = c
        .segments
        .iter()
        .position(|s| !s.payload.is_empty())
        .unwrap();
    c.segments.remove(first_data);
    add(c, w);

    // No SYN captured: the capture started on an established connection.
    let mut c = conv(40014);
    c.handshake();
    c.client(b"GET /nosyn1 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("1").as_bytes());
    c.client(b"GET /nosyn2 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("2").as_bytes());
    c.close();
    let w = vec![
        want(GET, "/nosyn1", Some(200), 0, 1, &c, false),
        want(GET, "/nosyn2", Some(200), 0, 1, &c, false),
    ];
    c.segments.drain(..3);
    add(c, w);

    // IPv6, on a port other than 80.
    let mut c = Conversation::new(addr("[fd00::1]:40015"), addr("[fd00::2]:8080"));
    c.handshake();
    c.client(b"GET /v6 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("six").as_bytes());
    c.close();
    let w = vec![want(GET, "/v6", Some(200), 0, 3, &c, false)];
    add(c, w);

    // The server is whoever received the request, not the lower port.
    let mut c = Conversation::new(addr("10.0.0.1:80"), addr("10.0.0.2:40016"));
    c.handshake();
    c.client(b"GET /low-port-client HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("").as_bytes());
    c.close();
    let w = vec![want(GET, "/low-port-client", Some(200), 0, 0, &c, false)];
    add(c, w);

    // Timestamps going backwards must not break anything.
    let mut c = conv(40017);
    c.handshake();
    c.client(b"GET /clock HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("tick").as_bytes());
    c.close();
    let w = vec![want(GET, "/clock", Some(200), 0, 4, &c, false)];
    let n = c.segments.len();
    for (i, s) in c.segments.iter_mut().enumerate() {
        s.ts_ns -= (i as u64 % 3) * 5_000_000 + if i == n - 1 { 10_000_000_000 } else { 0 };
    }
    add(c, w);

    all
}

/// Interleaves the scenarios' segments round-robin (each connection keeps its own order),
/// as concurrent connections appear in a real capture.
fn interleave(scenarios: &[Scenario]) -> Vec<TcpSegment> {
    let mut out = Vec::new();
    let mut at = vec![0; scenarios.len()];
    loop {
        let mut any = false;
        for (i, s) in scenarios.iter().enumerate() {
            if let Some(seg) = s.segments.get(at[i]) {
                out.push(seg.clone());
                at[i] += 1;
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

fn run(bytes: &[u8], cfg: &PacketConfig) -> (Vec<Transaction>, SourceStats, FileReport) {
    let (tx, rx) = batch::channel(Source::Packet, 100_000);
    let report = read_reader(bytes, Path::new("synth"), cfg, &tx).unwrap();
    drop(tx);
    let mut txs = Vec::new();
    let mut stats = SourceStats::default();
    for b in rx.receiver().iter() {
        assert_eq!(b.source, Source::Packet);
        stats.merge(&b.stats);
        txs.extend(b.transactions);
    }
    (txs, stats, report)
}

fn sorted(mut v: Vec<Want>) -> Vec<Want> {
    v.sort_by(|a, b| (a.5, &a.1, a.2).cmp(&(b.5, &b.1, b.2)));
    v
}

#[test]
fn every_scenario_in_every_format_gives_the_exact_transactions() {
    let scenarios = scenarios();
    let segments = interleave(&scenarios);
    let want = sorted(scenarios.iter().flat_map(|s| s.want.clone()).collect());
    for format in [
        Format::Pcap {
            nanos: false,
            big_endian: false,
        },
        Format::Pcap {
            nanos: true,
            big_endian: true,
        },
        Format::PcapNg {
            tsresol: [9, 6],
            interfaces: 2,
        },
    ] {
        let mut w = Writer::new(format);
        w.segments(&segments);
        if let Some(dir) = std::env::var_os("HTTPSCOPE_FUZZ_SEEDS") {
            // Seeds for fuzz/fuzz_targets/packet_capture.rs: a flags byte of 0, then the file.
            let name = format!("synth-{format:?}").replace(|c: char| !c.is_alphanumeric(), "_");
            let seed = [&[0u8][..], w.bytes()].concat();
            std::fs::write(Path::new(&dir).join(name), seed).unwrap();
        }
        let (txs, stats, report) = run(w.bytes(), &PacketConfig::default());
        let got = sorted(txs.iter().map(got).collect());
        assert_eq!(got, want, "{format:?}");
        assert!(txs.iter().all(|t| t.source == Source::Packet));
        assert_eq!(report.packets, segments.len() as u64);
        assert_eq!(stats.events, segments.len() as u64);
        assert_eq!(report.undecodable, 0);
        assert_eq!(report.warning, None);
        assert_eq!(report.transactions, want.len() as u64);
        assert_eq!(stats.dropped.total(), 0, "{:?}", stats.dropped);
        // The loss scenario produced gaps, and the lost request a resync.
        assert!(
            stats.parse.gaps >= 2 && stats.parse.gap_bytes >= 1000,
            "{:?}",
            stats.parse
        );
    }
}

#[test]
fn each_scenario_alone_in_order() {
    // Alone, so a failure names the scenario.
    for s in scenarios() {
        let mut w = Writer::new(Format::Pcap {
            nanos: true,
            big_endian: false,
        });
        w.segments(&s.segments);
        let (txs, _, _) = run(w.bytes(), &PacketConfig::default());
        assert_eq!(
            sorted(txs.iter().map(got).collect()),
            sorted(s.want.clone())
        );
    }
}

#[test]
fn timing_comes_from_the_capture_clock() {
    let mut c = conv(41000);
    c.handshake();
    c.client(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n");
    let start = c.segments.last().unwrap().ts_ns - c.step_ns; // the request segment
    c.step_ns = 2_000_000;
    c.server(ok("t").as_bytes());
    let end = c.segments[c.segments.len() - 2].ts_ns;
    let mut w = Writer::new(Format::Pcap {
        nanos: true,
        big_endian: false,
    });
    w.segments(&c.segments);
    let (txs, _, _) = run(w.bytes(), &PacketConfig::default());
    assert_eq!(txs.len(), 1);
    assert_eq!((txs[0].start_ns, txs[0].end_ns), (start, end));
    assert_eq!(txs[0].time_unix_ns, start as i64);
}

#[test]
fn port_filter_keeps_only_those_ports() {
    let scenarios = scenarios();
    let mut w = Writer::new(Format::Pcap {
        nanos: false,
        big_endian: false,
    });
    w.segments(&interleave(&scenarios));
    let cfg = PacketConfig {
        ports: vec![8080],
        ..PacketConfig::default()
    };
    let (txs, _, report) = run(w.bytes(), &cfg);
    assert_eq!(
        txs.iter().map(|t| t.path.as_str()).collect::<Vec<_>>(),
        vec!["/v6"]
    );
    assert_eq!(report.connections, 1);
}

#[test]
fn caps_are_counted_not_exceeded() {
    let scenarios = scenarios();
    let mut w = Writer::new(Format::Pcap {
        nanos: false,
        big_endian: false,
    });
    w.segments(&interleave(&scenarios));
    // Room for three connections only.
    let cfg = PacketConfig {
        max_connections: 3,
        ..PacketConfig::default()
    };
    let (txs, stats, _) = run(w.bytes(), &cfg);
    let limited = stats
        .dropped
        .get(httpscope_model::telemetry::DropReason::ConnectionLimit);
    assert!(limited > 0);
    assert!(txs.len() < 20);
    // No room to hold anything ahead of a hole: reordered data becomes gaps, counted.
    let cfg = PacketConfig {
        max_buffered_bytes_per_connection: 0,
        ..PacketConfig::default()
    };
    let (_, stats, _) = run(w.bytes(), &cfg);
    let overflows = stats
        .dropped
        .get(httpscope_model::telemetry::DropReason::StreamBufferLimit);
    assert!(overflows > 0);
}

#[test]
fn idle_connections_expire() {
    let mut c = conv(42000);
    c.handshake();
    c.client(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n");
    // Another connection two minutes later moves the clock on.
    let mut d = conv(42001);
    d.ts_ns = c.ts_ns + 120_000_000_000;
    d.handshake();
    d.client(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    d.server(ok("").as_bytes());
    let mut w = Writer::new(Format::Pcap {
        nanos: false,
        big_endian: false,
    });
    w.segments(&c.segments);
    w.segments(&d.segments);
    let (txs, stats, _) = run(w.bytes(), &PacketConfig::default());
    assert_eq!(
        stats
            .dropped
            .get(httpscope_model::telemetry::DropReason::Expired),
        1
    );
    let paths: Vec<_> = txs
        .iter()
        .map(|t| (t.path.as_str(), t.incomplete))
        .collect();
    assert_eq!(paths, vec![("/idle", true), ("/later", false)]);
}

#[test]
fn truncated_file_is_read_up_to_the_cut_with_a_warning() {
    let mut c = conv(43000);
    c.handshake();
    c.client(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("w").as_bytes());
    c.client(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
    c.server(ok("c").as_bytes());
    let mut w = Writer::new(Format::Pcap {
        nanos: false,
        big_endian: false,
    });
    w.segments(&c.segments);
    let mut bytes = w.into_bytes();
    bytes.truncate(bytes.len() - 30);
    let dir = std::env::temp_dir().join(format!("httpscope-packet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.pcap");
    std::fs::write(&path, &bytes).unwrap();
    let (tx, rx) = batch::channel(Source::Packet, 64);
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let report = read_files(
        std::slice::from_ref(&path),
        &PacketConfig::default(),
        &tx,
        Some(&progress),
    )
    .unwrap();
    drop(tx);
    let txs: Vec<_> = rx.receiver().iter().flat_map(|b| b.transactions).collect();
    let warning = report.warning.unwrap();
    assert!(
        warning.contains("cut.pcap") && warning.contains("truncated"),
        "{warning}"
    );
    assert_eq!(txs[0].path, "/whole");
    assert!(!txs[0].incomplete);
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(last.1, bytes.len() as u64);
    assert!(last.0 > 0 && last.0 <= last.1);

    // Not a capture, and a missing file: clear errors.
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello, this is not a capture").unwrap();
    let (tx, _rx) = batch::channel(Source::Packet, 64);
    let err = read_files(&[text], &PacketConfig::default(), &tx, None).unwrap_err();
    assert!(matches!(err, PacketError::NotACapture { .. }));
    assert!(err.to_string().contains("not a capture"), "{err}");
    let err = read_files(
        &[dir.join("missing.pcap")],
        &PacketConfig::default(),
        &tx,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, PacketError::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}
