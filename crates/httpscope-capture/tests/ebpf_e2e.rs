//! End-to-end tests of the eBPF source against the real kernel: a hyper server in this
//! process and nginx, driven by curl, python and wrk in other processes, all on loopback.
//!
//! They need root and a kernel with BTF and the sock_*_length tracepoints (>= 6.3); otherwise
//! each test prints why and passes without checking anything. CI runs as root.
#![cfg(target_os = "linux")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use httpscope_capture::ebpf::{self, EbpfConfig, EbpfError, EbpfReport};
use httpscope_model::batch::{self, BatchReceiver};
use httpscope_model::{Method, Side, Source, Transaction};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One capture at a time: each test filters on its own ports, but attaching several copies
/// at once only costs CPU on a shared machine.
mod bpf_support;

use bpf_support::{assert_gone, TestCgroup};

static SERIAL: Mutex<()> = Mutex::new(());

fn skip_reason() -> Option<String> {
    ebpf::probe().err().map(|e| e.to_string())
}

macro_rules! require_ebpf {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping: eBPF unavailable: {why}");
            return;
        }
    };
}

struct Capture {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<EbpfReport, EbpfError>>>,
    rx: BatchReceiver,
    txs: Vec<Transaction>,
    kernel_lost: u64,
}

impl Capture {
    fn start(ports: Vec<u16>) -> Capture {
        Self::start_with(EbpfConfig {
            ports,
            include_self: true,
            ..EbpfConfig::default()
        })
    }

    fn start_with(mut cfg: EbpfConfig) -> Capture {
        let attached = Arc::new(AtomicBool::new(false));
        cfg.attached = Some(attached.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = batch::channel(Source::Ebpf, 4096);
        let s = stop.clone();
        let handle = std::thread::spawn(move || ebpf::capture(&cfg, &tx, &s));
        let t0 = Instant::now();
        while !attached.load(Ordering::SeqCst) {
            assert!(
                !handle.is_finished(),
                "capture ended before attaching: {:?}",
                handle.join()
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "capture did not attach in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture {
            stop,
            handle: Some(handle),
            rx,
            txs: Vec::new(),
            kernel_lost: 0,
        }
    }

    fn pump(&mut self, wait: Duration) {
        if let Ok(b) = self.rx.receiver().recv_timeout(wait) {
            self.kernel_lost += b.stats.kernel_lost;
            self.txs.extend(b.transactions);
        }
        for b in self.rx.receiver().try_iter() {
            self.kernel_lost += b.stats.kernel_lost;
            self.txs.extend(b.transactions);
        }
    }

    /// Collects transactions until `done` holds or `timeout` passes.
    fn collect_until(&mut self, timeout: Duration, done: impl Fn(&[Transaction]) -> bool) {
        let t0 = Instant::now();
        while !done(&self.txs) && t0.elapsed() < timeout {
            self.pump(Duration::from_millis(50));
        }
    }

    /// Stops the capture, waits for its report and collects the last batches.
    fn stop_capture(&mut self) -> EbpfReport {
        self.stop.store(true, Ordering::SeqCst);
        let report = self
            .handle
            .take()
            .unwrap()
            .join()
            .unwrap()
            .expect("capture failed");
        self.pump(Duration::from_millis(10));
        report
    }

    fn finish(mut self) -> (Vec<Transaction>, EbpfReport) {
        let report = self.stop_capture();
        assert_eq!(
            self.rx.drops().batches.get(),
            0,
            "batches dropped on the channel"
        );
        assert_eq!(self.kernel_lost, 0, "the kernel lost events");
        assert_no_leftovers(&report);
        (std::mem::take(&mut self.txs), report)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// After a capture returned, none of its programs or maps may still exist (bpftool).
fn assert_no_leftovers(report: &EbpfReport) {
    assert_eq!(
        report.program_ids.len(),
        3,
        "three programs loaded: {report:?}"
    );
    assert!(
        report.map_ids.len() >= 6,
        "maps created: {:?}",
        report.map_ids
    );
    assert_gone(&report.program_ids, &report.map_ids);
}

fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

// ---------------------------------------------------------------- hyper server

const BIG: usize = 1 << 20;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let resp = match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/hello") => Response::new(Full::new(Bytes::from_static(b"hello world"))),
        ("GET", "/big") => Response::new(Full::new(Bytes::from(vec![b'x'; BIG]))),
        ("POST", "/upload") => {
            let n = body
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            let mut r = Response::new(Full::new(Bytes::from(format!("got {n:08}"))));
            *r.status_mut() = hyper::StatusCode::CREATED;
            r
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"nope")));
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

struct Server {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(bind: &str) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind(bind)).unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .pipeline_flush(true)
                        .serve_connection(TokioIo::new(stream), service_fn(handle))
                        .await;
                });
            }
        });
        Server { addr, rt: Some(rt) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn curl(args: &[&str]) -> u32 {
    let child = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "/dev/null"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("curl runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {args:?} failed");
    pid
}

fn find<'a>(
    txs: &'a [Transaction],
    side: Side,
    method: Method,
    path: &str,
) -> Vec<&'a Transaction> {
    txs.iter()
        .filter(|t| t.side == Some(side) && t.method == Some(method) && t.path == path)
        .collect()
}

/// What one request should look like: method, path, status, request and response body bytes.
type Expect<'a> = (Method, &'a str, u16, u64, u64);

/// Checks the server-side (this process) and client-side (pid, comm) transactions of a request.
fn check_pair(txs: &[Transaction], expect: Expect<'_>, client: (Option<u32>, Option<&str>)) {
    let (method, path, status, req_bytes, resp_bytes) = expect;
    let (client_pid, client_comm) = client;
    let server = find(txs, Side::Server, method, path);
    let client = find(txs, Side::Client, method, path);
    assert_eq!(
        server.len(),
        1,
        "one server-side {method:?} {path}: {txs:#?}"
    );
    assert_eq!(
        client.len(),
        1,
        "one client-side {method:?} {path}: {txs:#?}"
    );
    let me = std::process::id();
    let comm = own_comm();
    let s = server[0];
    assert_eq!(s.pid, Some(me));
    assert_eq!(
        s.comm.map(|c| c.to_string()).as_deref(),
        Some(comm.as_str())
    );
    for t in [s, client[0]] {
        assert_eq!(t.status, Some(status), "{t:?}");
        assert_eq!(t.request_bytes, req_bytes, "{t:?}");
        assert_eq!(t.response_bytes, resp_bytes, "{t:?}");
        assert_eq!(t.source, Source::Ebpf);
        assert!(!t.incomplete, "{t:?}");
        assert!(t.end_ns >= t.start_ns);
        assert!(
            t.time_unix_ns > 1_600_000_000_000_000_000,
            "wall clock: {t:?}"
        );
    }
    let c = client[0];
    if let Some(pid) = client_pid {
        assert_eq!(c.pid, Some(pid), "{c:?}");
    }
    if let Some(comm) = client_comm {
        assert_eq!(
            c.comm.map(|x| x.to_string()).as_deref(),
            Some(comm),
            "{c:?}"
        );
    }
    // The two ends agree on who is client and server.
    assert_eq!(s.server, c.server);
    assert_eq!(s.client, c.client);
}

#[test]
fn hyper_keep_alive_big_post_and_404_on_both_sides() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("127.0.0.1:0");
    let port = server.addr.port();
    let mut cap = Capture::start(vec![port]);
    let base = format!("http://127.0.0.1:{port}");
    // Keep-alive: three requests on one connection.
    let pid_ka = curl(&[
        &format!("{base}/hello"),
        "-o",
        "/dev/null",
        &format!("{base}/missing?secret=1"),
        "-o",
        "/dev/null",
        &format!("{base}/big"),
    ]);
    let body = std::env::temp_dir().join(format!("hs-ebpf-post-{}", std::process::id()));
    std::fs::write(&body, vec![b'p'; 100_000]).unwrap();
    let pid_post = curl(&[
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("{base}/upload"),
    ]);
    let _ = std::fs::remove_file(&body);
    cap.collect_until(Duration::from_secs(10), |t| t.len() >= 8);
    let (txs, report) = cap.finish();
    check_pair(
        &txs,
        (Method::Get, "/hello", 200, 0, 11),
        (Some(pid_ka), Some("curl")),
    );
    check_pair(
        &txs,
        (Method::Get, "/missing", 404, 0, 4),
        (Some(pid_ka), Some("curl")),
    );
    check_pair(
        &txs,
        (Method::Get, "/big", 200, 0, BIG as u64),
        (Some(pid_ka), Some("curl")),
    );
    check_pair(
        &txs,
        (Method::Post, "/upload", 201, 100_000, 12),
        (Some(pid_post), Some("curl")),
    );
    assert_eq!(txs.len(), 8, "{txs:#?}");
    // Keep-alive: the three GETs of one side share one connection (one client port).
    let ports: std::collections::HashSet<_> = txs
        .iter()
        .filter(|t| t.side == Some(Side::Server) && t.method == Some(Method::Get))
        .map(|t| t.client)
        .collect();
    assert_eq!(ports.len(), 1, "keep-alive reused one connection");
    assert!(
        report.stats.events > 0 && report.connections >= 4,
        "{report:?}"
    );
    drop(server);
}

#[test]
fn hyper_pipelined_requests() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("127.0.0.1:0");
    let port = server.addr.port();
    let mut cap = Capture::start(vec![port]);
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'GET /hello HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nGET /p2 HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nGET /hello HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   d = s.recv(65536)\n\
         \x20   if not d: break\n\
         \x20   data += d\n\
         print(data.count(b'HTTP/1.1 '))\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "3",
        "three responses"
    );
    cap.collect_until(Duration::from_secs(10), |t| t.len() >= 6);
    let (txs, _) = cap.finish();
    for side in [Side::Client, Side::Server] {
        let hello = find(&txs, side, Method::Get, "/hello");
        assert_eq!(hello.len(), 2, "{side:?}: {txs:#?}");
        assert!(hello
            .iter()
            .all(|t| t.status == Some(200) && t.response_bytes == 11));
        let p2 = find(&txs, side, Method::Get, "/p2");
        assert_eq!(p2.len(), 1, "{side:?}: {txs:#?}");
        assert_eq!(p2[0].status, Some(404));
    }
    assert_eq!(txs.len(), 6, "{txs:#?}");
    drop(server);
}

#[test]
fn hyper_ipv6_loopback() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("[::1]:0");
    let port = server.addr.port();
    let mut cap = Capture::start(vec![port]);
    let pid = curl(&[&format!("http://[::1]:{port}/hello")]);
    cap.collect_until(Duration::from_secs(10), |t| t.len() >= 2);
    let (txs, _) = cap.finish();
    check_pair(
        &txs,
        (Method::Get, "/hello", 200, 0, 11),
        (Some(pid), Some("curl")),
    );
    let s = find(&txs, Side::Server, Method::Get, "/hello")[0];
    assert_eq!(s.server, Some(server.addr), "IPv6 server address");
    assert!(s.client.unwrap().is_ipv6());
    drop(server);
}

#[test]
fn capture_bytes_and_filters_apply() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let watched = Server::start("127.0.0.1:0");
    let other = Server::start("127.0.0.1:0");
    // Only the watched port, with a tiny capture size: heads longer than 64 bytes are cut, but
    // the GET line and the status still parse, and sizes still come from the lengths.
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![watched.addr.port()],
        capture_bytes: 4096,
        include_self: true,
        ..EbpfConfig::default()
    });
    curl(&[&format!("http://{}/hello", other.addr)]);
    curl(&[&format!("http://{}/big", watched.addr)]);
    cap.collect_until(Duration::from_secs(10), |t| t.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let (txs, report) = cap.finish();
    assert!(
        txs.iter().all(|t| t.server == Some(watched.addr)),
        "port filter: {txs:#?}"
    );
    check_pair(
        &txs,
        (Method::Get, "/big", 200, 0, BIG as u64),
        (None, Some("curl")),
    );
    // 1 MiB in, 1 MiB out, captured at most 4096 bytes per event.
    assert!(report.stats.bytes < 2 * BIG as u64, "{report:?}");
}

/// The first cgroup v2 mount point (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones).
#[test]
fn cgroup_filter_sees_only_processes_in_the_cgroup() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = match TestCgroup::make("hs-ebpf-test") {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let server = Server::start("127.0.0.1:0");
    let base = format!("http://{}", server.addr);
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![server.addr.port()],
        cgroup: Some(cg.0.clone()),
        include_self: true,
        ..EbpfConfig::default()
    });
    // A curl that moves itself into the cgroup first (exec keeps the pid), and one outside.
    let inside = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec curl -sS --max-time 20 -o /dev/null {base}/hello",
            cg.0.display()
        ))
        .spawn()
        .expect("sh runs");
    let inside_pid = inside.id();
    let out = inside.wait_with_output().unwrap();
    assert!(out.status.success(), "curl in the cgroup failed");
    let outside_pid = curl(&[&format!("{base}/missing")]);
    cap.collect_until(Duration::from_secs(10), |t| !t.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (txs, _) = cap.finish();
    // Only the client side of the curl inside: the server (this process) and the other curl
    // are outside the cgroup.
    assert_eq!(txs.len(), 1, "only the curl in the cgroup: {txs:#?}");
    let t = &txs[0];
    assert_eq!(
        (t.pid, t.side, t.method, t.path.as_str(), t.status),
        (
            Some(inside_pid),
            Some(Side::Client),
            Some(Method::Get),
            "/hello",
            Some(200)
        ),
        "{t:?} (curl outside was pid {outside_pid})"
    );
    drop(server);
}

#[test]
fn own_process_is_excluded_by_default() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("127.0.0.1:0");
    let port = server.addr.port();
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![port],
        ..EbpfConfig::default()
    });
    let pid = curl(&[&format!("http://127.0.0.1:{port}/hello")]);
    cap.collect_until(Duration::from_secs(5), |t| !t.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (txs, _) = cap.finish();
    assert_eq!(txs.len(), 1, "only curl's side: {txs:#?}");
    assert_eq!(txs[0].pid, Some(pid));
    assert_eq!(txs[0].side, Some(Side::Client));
}

#[test]
fn full_ring_buffer_losses_are_counted_and_reported() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("127.0.0.1:0");
    let port = server.addr.port();
    // The smallest ring (one page) cannot hold the events of a 1 MiB exchange.
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![port],
        ring_buffer_bytes: 4096,
        include_self: true,
        ..EbpfConfig::default()
    });
    for _ in 0..3 {
        curl(&[&format!("http://127.0.0.1:{port}/big")]);
    }
    std::thread::sleep(Duration::from_millis(300));
    cap.pump(Duration::from_millis(200));
    let report = cap.stop_capture();
    assert!(
        report.kernel.ringbuf_lost > 0,
        "a one-page ring overflowed: {report:?}"
    );
    assert_eq!(report.stats.kernel_lost, report.kernel.ringbuf_lost);
    assert_eq!(
        report
            .stats
            .dropped
            .get(httpscope_model::telemetry::DropReason::KernelBufferFull),
        report.kernel.ringbuf_lost
    );
    assert_eq!(
        cap.kernel_lost, report.kernel.ringbuf_lost,
        "reported in the batches too"
    );
    assert_no_leftovers(&report);
}

/// Stopping while traffic goes on: the programs are detached before the last read of the
/// rings, so every event the kernel wrote (its own count) is read and counted by user space.
/// Before, the rings were read while the programs were still attached and the events of the
/// last moments were neither read nor counted anywhere.
#[test]
fn stopping_under_load_reads_every_event_the_kernel_wrote() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start("127.0.0.1:0");
    let addr = server.addr;
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![addr.port()],
        include_self: true,
        ..EbpfConfig::default()
    });
    // Keep-alive requests from this process until told to stop (at most 10 s / 100,000).
    let load_stop = Arc::new(AtomicBool::new(false));
    let ls = load_stop.clone();
    let load = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        let mut done = 0u32;
        while !ls.load(Ordering::Relaxed)
            && done < 100_000
            && t0.elapsed() < Duration::from_secs(10)
        {
            conn.write_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            // hyper's response to /hello ends with its 11-byte body.
            let mut got = Vec::new();
            while !got.ends_with(b"hello world") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "server closed");
                got.extend_from_slice(&buf[..n]);
            }
            done += 1;
        }
        done
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = cap.stop_capture();
    load_stop.store(true, Ordering::Relaxed);
    let requests = load.join().unwrap();
    assert!(
        report.kernel.events > 100,
        "traffic was captured ({requests} requests): {report:?}"
    );
    assert_eq!(report.kernel.ringbuf_lost, 0, "{report:?}");
    assert_eq!(
        report.stats.events, report.kernel.events,
        "every event the kernel wrote was read ({requests} requests): {report:?}"
    );
    assert_no_leftovers(&report);
}

// ---------------------------------------------------------------- nginx

struct Nginx {
    dir: std::path::PathBuf,
    child: std::process::Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    fn start() -> Option<Nginx> {
        if !std::path::Path::new("/usr/sbin/nginx").exists() {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("hs-ebpf-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("www/index.html"), vec![b'n'; 612]).unwrap();
        std::fs::write(dir.join("www/big.bin"), vec![b'b'; 300_000]).unwrap();
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
               log_format hs '$request_method $uri $status $body_bytes_sent';\n\
               access_log {d}/access.log hs;\n\
               client_body_temp_path {d}/tmp/body;\n\
               proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n\
               uwsgi_temp_path {d}/tmp/uwsgi;\n\
               scgi_temp_path {d}/tmp/scgi;\n\
               sendfile on;\n\
               keepalive_requests 100000;\n\
               server {{ listen 127.0.0.1:{port}; root {d}/www; }}\n\
             }}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Nginx { dir, child, port })
    }

    fn access_log(&self) -> Vec<(String, String, u16, u64)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].parse().ok()?,
                    f[3].parse().ok()?,
                ))
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn nginx_under_curl_and_wrk_matches_its_access_log() {
    require_ebpf!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(nginx) = Nginx::start() else {
        eprintln!("skipping: /usr/sbin/nginx not installed (apt-get install nginx-light)");
        return;
    };
    let has_wrk = Command::new("wrk").arg("--version").output().is_ok();
    // A debug-build consumer is slow: a ring buffer large enough for the whole wrk burst keeps
    // this a test of correctness, not of the unoptimised parser's speed (see bench/ebpf).
    let mut cap = Capture::start_with(EbpfConfig {
        ports: vec![nginx.port],
        ring_buffer_bytes: 128 << 20,
        ..EbpfConfig::default()
    });
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let curl_pid = curl(&[
        &format!("{base}/index.html"),
        "-o",
        "/dev/null",
        &format!("{base}/big.bin"),
    ]);
    curl(&[&format!("{base}/nothing-here")]);
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        "abc",
        &format!("{base}/index.html"),
    ]);
    if has_wrk {
        let out = Command::new("wrk")
            .args(["-t1", "-c4", "-d1s", &format!("{base}/index.html")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wrk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("wrk not installed: curl only");
    }
    // Wait until the server side has caught up with the access log.
    let expected = {
        std::thread::sleep(Duration::from_millis(300));
        nginx.access_log()
    };
    cap.collect_until(Duration::from_secs(60), |t| {
        t.iter().filter(|t| t.side == Some(Side::Server)).count() >= expected.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    let (txs, report) = cap.finish();
    let log = nginx.access_log();
    assert!(log.len() >= 4, "nginx logged requests: {log:?}");
    let server: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.side == Some(Side::Server))
        .collect();
    assert!(server
        .iter()
        .all(|t| t.comm.map(|c| c.to_string()).as_deref() == Some("nginx")));
    assert!(
        server
            .iter()
            .all(|t| t.pid.is_some() && t.pid != Some(nginx.child.id())),
        "a worker, not the master"
    );
    // Every logged request, with its status and body size, exactly once on the server side.
    let mut seen: std::collections::HashMap<(String, String, u16, u64), i64> = Default::default();
    for (m, p, s, b) in &log {
        *seen.entry((m.clone(), p.clone(), *s, *b)).or_default() += 1;
    }
    let mut cut_short = Vec::new();
    for t in &server {
        if t.incomplete {
            cut_short.push(*t);
            continue;
        }
        let key = (
            t.method.map(|m| m.as_str().to_string()).unwrap_or_default(),
            t.path.to_string(),
            t.status.unwrap_or(0),
            t.response_bytes,
        );
        *seen.entry(key).or_default() -= 1;
    }
    // When its time is up wrk closes its 4 connections with requests in flight: nginx logs
    // those requests with the status it meant to send and the body bytes it managed to send
    // (0 when its write failed on the reset connection), and the server side holds the same
    // request with the part of the response that went out (nothing, or the head). Each must
    // match such a log line exactly: same method and path, the same body bytes, the same
    // status when the head went out.
    let mut unmatched = Vec::new();
    for t in &cut_short {
        let m = t.method.map(|x| x.as_str()).unwrap_or_default();
        let left = seen.iter_mut().find(|((lm, lp, ls, lb), n)| {
            **n > 0
                && lm == m
                && *lp == t.path
                && *lb == t.response_bytes
                && t.status.is_none_or(|s| s == *ls)
        });
        match left {
            Some((_, n)) => *n -= 1,
            None => unmatched.push(*t),
        }
    }
    assert!(
        unmatched.is_empty(),
        "incomplete server-side transactions without a matching log line: {unmatched:#?}"
    );
    assert!(
        cut_short.len() <= 4,
        "incomplete server-side transactions: {cut_short:#?}"
    );
    let diff: Vec<_> = seen.iter().filter(|(_, &n)| n != 0).collect();
    assert!(
        diff.is_empty(),
        "server side vs access log (log minus seen): {diff:?}\nincomplete: {cut_short:#?}\n{report:?}"
    );
    // The client side: curl's requests with the right pid, wrk's complete ones counted.
    let big = find(&txs, Side::Client, Method::Get, "/big.bin");
    assert_eq!(big.len(), 1);
    assert_eq!(
        (big[0].pid, big[0].response_bytes),
        (Some(curl_pid), 300_000)
    );
    let client_done = txs
        .iter()
        .filter(|t| t.side == Some(Side::Client) && !t.incomplete)
        .count();
    // When its time is up wrk closes its 4 connections without reading what is in flight:
    // nginx has logged those requests, but the client never received their responses.
    assert!(
        client_done <= log.len() && client_done + 4 >= log.len(),
        "every logged request also seen complete on the client side (but wrk's last 4): {} of {}",
        client_done,
        log.len()
    );
    eprintln!(
        "nginx: {} logged, {} transactions, {:?}",
        log.len(),
        txs.len(),
        report.kernel
    );
}
