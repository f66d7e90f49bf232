//! Live AF_PACKET capture on loopback (bound to `lo`, and unbound as `any`): a small HTTP
//! server on 127.0.0.1 answers keep-alive requests from two client connections while
//! `capture_live` runs; the transactions captured must be exactly the requests the server
//! logged, each once (loopback shows every packet twice; the outgoing copy must be dropped).
//! Needs root (CAP_NET_RAW); skips otherwise, saying so.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use httpscope_capture::packet::{capture_live, PacketConfig, PacketError};
use httpscope_model::{batch, Source};

/// Serves keep-alive GETs until the client closes; logs each path.
fn serve(listener: TcpListener, conns: usize, log: Arc<Mutex<Vec<String>>>) {
    for _ in 0..conns {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let body = format!("served {path}");
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            log.lock().unwrap().push(path);
        }
    }
}

fn get(s: &mut TcpStream, path: &str) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let want = format!("served {path}");
    let mut buf = vec![0u8; 256];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with(&want) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn loopback_capture_sees_each_exchange_once() {
    live_exchanges("lo");
}

#[test]
fn any_interface_capture_sees_each_exchange_once() {
    live_exchanges("any");
}

fn live_exchanges(interface: &'static str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: live AF_PACKET capture needs root (CAP_NET_RAW)");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let log = log.clone();
        std::thread::spawn(move || serve(listener, 2, log))
    };
    let (tx, rx) = batch::channel(Source::Packet, 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let capture = {
        let stop = stop.clone();
        let cfg = PacketConfig {
            ports: vec![port],
            ..PacketConfig::default()
        };
        std::thread::spawn(move || capture_live(interface, &cfg, &tx, &stop))
    };
    std::thread::sleep(Duration::from_millis(300));
    for (c, paths) in [["/one", "/two", "/three"].as_slice(), &["/four", "/five"]]
        .iter()
        .enumerate()
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for p in paths.iter() {
            get(&mut s, &format!("{p}-{c}"));
        }
    }
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let report = capture.join().unwrap().unwrap();
    let mut got: Vec<(String, u16, u64)> = rx
        .receiver()
        .try_iter()
        .flat_map(|b| b.transactions)
        .map(|t| (t.path.to_string(), t.status.unwrap_or(0), t.response_bytes))
        .collect();
    got.sort();
    let mut want: Vec<(String, u16, u64)> = log
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.clone(), 200, format!("served {p}").len() as u64))
        .collect();
    want.sort();
    assert_eq!(got, want, "{interface}");
    assert_eq!(report.connections, 2);
    assert_eq!(report.undecodable, 0);
}

#[test]
fn unknown_interface_is_a_clear_error() {
    let (tx, _rx) = batch::channel(Source::Packet, 4);
    let stop = AtomicBool::new(true);
    let err = capture_live("no-such-if0", &PacketConfig::default(), &tx, &stop).unwrap_err();
    assert!(matches!(err, PacketError::NoSuchInterface(_)), "{err}");
}
