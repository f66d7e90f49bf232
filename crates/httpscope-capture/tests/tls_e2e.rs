//! End-to-end tests of the TLS source against the real kernel and real programs: nginx
//! (Debian nginx-light, OpenSSL) serving https on 127.0.0.1 with a certificate made by the
//! test, and curl (OpenSSL), python3 `urllib` and a raw python `ssl` socket (OpenSSL) and
//! `gnutls-cli` (GnuTLS) as clients. The socket path runs at the same time and must see the
//! encrypted bytes as not HTTP.
//!
//! They need root, a kernel with BTF, uprobes and the sock_*_length tracepoints (>= 6.3),
//! nginx, openssl, curl, python3 and gnutls-cli; otherwise each test prints why and passes
//! without checking anything. CI runs as root with those installed.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use httpscope_capture::ebpf::{self, EbpfConfig, EbpfError, EbpfReport};
use httpscope_capture::tls::{self, TlsConfig, TlsError, TlsReport};
use httpscope_model::batch::{self, BatchReceiver};
use httpscope_model::{Method, Side, Source, Transaction};

mod bpf_support;

use bpf_support::{assert_gone, TestCgroup};

static SERIAL: Mutex<()> = Mutex::new(());

fn skip_reason() -> Option<String> {
    if let Err(e) = tls::probe() {
        return Some(format!("TLS capture unavailable: {e}"));
    }
    for (tool, arg) in [
        ("/usr/sbin/nginx", "-v"),
        ("openssl", "version"),
        ("curl", "--version"),
        ("python3", "--version"),
        ("gnutls-cli", "--version"),
    ] {
        if Command::new(tool).arg(arg).output().is_err() {
            return Some(format!(
                "{tool} not installed (apt-get install nginx-light openssl curl python3 gnutls-bin)"
            ));
        }
    }
    None
}

macro_rules! require {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

// ---------------------------------------------------------------- captures

/// A capture running on its own thread, collecting transactions.
struct Running<R> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<R>>,
    rx: BatchReceiver,
    txs: Vec<Transaction>,
    kernel_lost: u64,
}

impl<R: Send + 'static> Running<R> {
    fn start(
        source: Source,
        run: impl FnOnce(Arc<AtomicBool>, Arc<AtomicBool>, batch::BatchSender) -> R + Send + 'static,
    ) -> Self {
        let attached = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = batch::channel(source, 4096);
        let (a, s) = (attached.clone(), stop.clone());
        let handle = std::thread::spawn(move || run(a, s, tx));
        let t0 = Instant::now();
        while !attached.load(Ordering::SeqCst) {
            assert!(
                !handle.is_finished(),
                "{source} capture ended before attaching"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{source} capture did not attach in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
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

    fn collect_until(&mut self, timeout: Duration, done: impl Fn(&[Transaction]) -> bool) {
        let t0 = Instant::now();
        while !done(&self.txs) && t0.elapsed() < timeout {
            self.pump(Duration::from_millis(50));
        }
    }

    fn finish(mut self) -> (Vec<Transaction>, R) {
        self.stop.store(true, Ordering::SeqCst);
        let r = self.handle.take().unwrap().join().unwrap();
        self.pump(Duration::from_millis(10));
        assert_eq!(self.rx.drops().batches.get(), 0, "batches dropped");
        assert_eq!(self.kernel_lost, 0, "the kernel lost events");
        (std::mem::take(&mut self.txs), r)
    }
}

impl<R> Drop for Running<R> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn start_tls(cfg: TlsConfig) -> Running<Result<TlsReport, TlsError>> {
    Running::start(Source::Tls, move |attached, stop, tx| {
        let cfg = TlsConfig {
            attached: Some(attached),
            ..cfg
        };
        tls::capture(&cfg, &tx, &stop)
    })
}

fn start_ebpf(cfg: EbpfConfig) -> Running<Result<EbpfReport, EbpfError>> {
    Running::start(Source::Ebpf, move |attached, stop, tx| {
        let cfg = EbpfConfig {
            attached: Some(attached),
            ..cfg
        };
        ebpf::capture(&cfg, &tx, &stop)
    })
}

// ---------------------------------------------------------------- nginx with TLS

struct Nginx {
    dir: PathBuf,
    child: Child,
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
    fn start() -> Nginx {
        let dir = std::env::temp_dir().join(format!("hs-tls-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::write(dir.join("www/index.html"), vec![b'n'; 612]).unwrap();
        std::fs::write(dir.join("www/big.bin"), vec![b'b'; 200_000]).unwrap();
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl req: {out:?}");
        let port = free_port();
        let d = dir.display();
        // IPv6 loopback too, when this host has it.
        let v6 = if std::net::TcpListener::bind(("::1", port)).is_ok() {
            format!("listen [::1]:{port} ssl;")
        } else {
            String::new()
        };
        let conf = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               log_format hs '$request_method $uri $status $body_bytes_sent';\n\
               access_log {d}/access.log hs;\n\
               client_body_temp_path {d}/tmp/body;\n\
               proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n\
               uwsgi_temp_path {d}/tmp/uwsgi;\n\
               scgi_temp_path {d}/tmp/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port} ssl;\n\
                 {v6}\n\
                 ssl_certificate {d}/cert.pem;\n\
                 ssl_certificate_key {d}/key.pem;\n\
                 root {d}/www;\n\
               }}\n\
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
            .expect("nginx starts");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { dir, child, port }
    }

    /// (method, path, status, body bytes) per logged request.
    fn access_log(&self) -> Vec<(String, String, u16, u64)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
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

/// Runs a client to completion (at most 20 s) and returns its pid.
fn run(mut cmd: Command, stdin: Option<&[u8]>) -> u32 {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    // Keep stdin open until the client is done: gnutls-cli stops at end of input.
    let mut input = child.stdin.take();
    if let (Some(w), Some(bytes)) = (input.as_mut(), stdin) {
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{cmd:?} did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(input);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{cmd:?} failed: {status} {err}");
    pid
}

/// A raw python `ssl` socket that reads the response 7 bytes at a time: after the first
/// read, OpenSSL serves those reads from the record it already holds, without a syscall, so
/// the TLS object's socket must come from the cache.
const PY_SMALL_READS: &str = r#"
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl._create_unverified_context()
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
s.sendall(b"GET /index.html?small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
n = 0
while True:
    b = s.recv(7)
    if not b:
        break
    n += len(b)
assert n > 612, n
"#;

/// python3 `urllib`: a 200 and a 404 (urlopen raises HTTPError for it), one connection each.
const PY_URLLIB: &str = r#"
import ssl, sys, urllib.request, urllib.error
port = int(sys.argv[1])
ctx = ssl._create_unverified_context()
with urllib.request.urlopen(f"https://127.0.0.1:{port}/index.html", context=ctx) as r:
    assert r.status == 200 and len(r.read()) == 612
try:
    urllib.request.urlopen(f"https://127.0.0.1:{port}/py/urllib", context=ctx)
    raise SystemExit("expected a 404")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
"#;

fn tls_library(t: &Transaction) -> Option<&str> {
    t.tags.get("tls_library")
}

/// One client request, as the test expects to see it on both sides.
struct Expect {
    client_pid: u32,
    client_comm: &'static str,
    library: &'static str,
    method: Method,
    path: &'static str,
    status: u16,
}

#[test]
fn nginx_https_under_openssl_and_gnutls_clients_on_both_sides() {
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t_start = Instant::now();
    let nginx = Nginx::start();
    let port = nginx.port;
    // Both sources, as `httpscope watch` runs them: the socket path must reject the
    // encrypted bytes of the same connections.
    let mut tls_cap = start_tls(TlsConfig {
        ports: vec![port],
        ..TlsConfig::default()
    });
    let mut ebpf_cap = start_ebpf(EbpfConfig {
        ports: vec![port],
        ..EbpfConfig::default()
    });
    let base = format!("https://127.0.0.1:{port}");

    let mut expect = Vec::new();
    // curl: keep-alive, two requests on one connection, then a 404 and a POST.
    let mut c = Command::new("curl");
    c.args(["-sk", "-o", "/dev/null", &format!("{base}/index.html")])
        .args(["-o", "/dev/null", &format!("{base}/big.bin")]);
    let pid = run(c, None);
    for (path, status) in [("/index.html", 200), ("/big.bin", 200)] {
        expect.push(Expect {
            client_pid: pid,
            client_comm: "curl",
            library: "openssl",
            method: Method::Get,
            path,
            status,
        });
    }
    let mut c = Command::new("curl");
    c.args(["-sk", "-o", "/dev/null", &format!("{base}/missing")]);
    expect.push(Expect {
        client_pid: run(c, None),
        client_comm: "curl",
        library: "openssl",
        method: Method::Get,
        path: "/missing",
        status: 404,
    });
    let mut c = Command::new("curl");
    c.args([
        "-sk",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        "--data-binary",
        "abc",
    ])
    .arg(format!("{base}/index.html"));
    expect.push(Expect {
        client_pid: run(c, None),
        client_comm: "curl",
        library: "openssl",
        method: Method::Post,
        path: "/index.html",
        status: 405,
    });
    // python3 urllib.
    let mut c = Command::new("python3");
    c.args(["-c", PY_URLLIB, &port.to_string()]);
    let pid = run(c, None);
    for (path, status) in [("/index.html", 200), ("/py/urllib", 404)] {
        expect.push(Expect {
            client_pid: pid,
            client_comm: "python3",
            library: "openssl",
            method: Method::Get,
            path,
            status,
        });
    }
    let mut c = Command::new("python3");
    c.args(["-c", PY_SMALL_READS, &port.to_string()]);
    expect.push(Expect {
        client_pid: run(c, None),
        client_comm: "python3",
        library: "openssl",
        method: Method::Get,
        path: "/index.html",
        status: 200,
    });
    // IPv6 loopback.
    if std::net::TcpStream::connect(("::1", port)).is_ok() {
        let mut c = Command::new("curl");
        c.args([
            "-sk",
            "-o",
            "/dev/null",
            &format!("https://[::1]:{port}/v6"),
        ]);
        expect.push(Expect {
            client_pid: run(c, None),
            client_comm: "curl",
            library: "openssl",
            method: Method::Get,
            path: "/v6",
            status: 404,
        });
    } else {
        eprintln!("no IPv6 loopback: IPv4 only");
    }
    // GnuTLS.
    let mut c = Command::new("gnutls-cli");
    c.args(["--insecure", "-p", &port.to_string(), "127.0.0.1"]);
    expect.push(Expect {
        client_pid: run(
            c,
            Some(b"GET /gnutls/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ),
        client_comm: "gnutls-cli",
        library: "gnutls",
        method: Method::Get,
        path: "/gnutls/path",
        status: 404,
    });

    std::thread::sleep(Duration::from_millis(300));
    let log = nginx.access_log();
    assert_eq!(
        log.len(),
        expect.len(),
        "nginx logged every request: {log:?}"
    );
    tls_cap.collect_until(Duration::from_secs(30), |t| t.len() >= 2 * expect.len());
    std::thread::sleep(Duration::from_millis(300));
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    ebpf_cap.pump(Duration::from_millis(200));
    let (ebpf_txs, ebpf_report) = ebpf_cap.finish();
    let ebpf_report = ebpf_report.expect("ebpf capture failed");

    // Every transaction is TLS, tied to its socket, from nginx's port.
    for t in &txs {
        assert_eq!(t.source, Source::Tls);
        assert!(!t.incomplete, "incomplete: {t:?}");
        assert_eq!(t.server.map(|a| a.port()), Some(port), "{t:?}");
        assert!(t.client.is_some_and(|a| a.ip().is_loopback()), "{t:?}");
    }
    assert_eq!(report.kernel.no_socket, 0, "{:?}", report.kernel);
    let server: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.side == Some(Side::Server))
        .collect();
    let client: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.side == Some(Side::Client))
        .collect();
    assert_eq!(server.len(), expect.len(), "server side: {server:#?}");
    assert_eq!(client.len(), expect.len(), "client side: {client:#?}");
    // Server side: nginx's worker (not the master), OpenSSL; and the access log's sizes.
    for t in &server {
        assert_eq!(t.comm.map(|c| c.to_string()).as_deref(), Some("nginx"));
        assert!(t.pid.is_some() && t.pid != Some(nginx.child.id()), "{t:?}");
        assert_eq!(tls_library(t), Some("openssl"));
    }
    let mut logged: HashMap<(String, String, u16, u64), i32> = HashMap::new();
    for l in &log {
        *logged.entry(l.clone()).or_default() += 1;
    }
    for t in &server {
        let key = (
            t.method.map(|m| m.as_str().to_string()).unwrap_or_default(),
            t.path.to_string(),
            t.status.unwrap_or(0),
            t.response_bytes,
        );
        *logged.entry(key).or_default() -= 1;
    }
    let diff: Vec<_> = logged.iter().filter(|(_, &n)| n != 0).collect();
    assert!(
        diff.is_empty(),
        "server side vs access log (log minus seen): {diff:?}"
    );
    // Each request on both sides, with the client's pid, name and library.
    for e in &expect {
        let on = |side: Side| {
            txs.iter()
                .filter(|t| {
                    t.side == Some(side)
                        && t.method == Some(e.method)
                        && t.path == e.path
                        && t.status == Some(e.status)
                })
                .filter(|t| side == Side::Server || t.pid == Some(e.client_pid))
                .count()
        };
        assert!(
            on(Side::Server) >= 1,
            "{} {} not seen on the server side",
            e.method.as_str(),
            e.path
        );
        let c: Vec<&&Transaction> = client
            .iter()
            .filter(|t| {
                t.pid == Some(e.client_pid) && t.path == e.path && t.method == Some(e.method)
            })
            .collect();
        assert_eq!(
            c.len(),
            1,
            "{} {} by pid {} on the client side: {client:#?}",
            e.method.as_str(),
            e.path,
            e.client_pid
        );
        assert_eq!(c[0].status, Some(e.status));
        assert_eq!(
            c[0].comm.map(|x| x.to_string()).as_deref(),
            Some(e.client_comm)
        );
        assert_eq!(tls_library(c[0]), Some(e.library), "{:?}", c[0]);
    }
    if let Some(v6) = server.iter().find(|t| t.path == "/v6") {
        assert!(
            v6.server
                .is_some_and(|a| a.is_ipv6() && a.ip().is_loopback()),
            "{v6:?}"
        );
    }
    // Both sides of one exchange agree on the tuple and the sizes.
    let big_c = client.iter().find(|t| t.path == "/big.bin").unwrap();
    let big_s = server.iter().find(|t| t.path == "/big.bin").unwrap();
    assert_eq!((big_c.client, big_c.server), (big_s.client, big_s.server));
    assert_eq!(
        (big_c.response_bytes, big_s.response_bytes),
        (200_000, 200_000)
    );
    let post = server
        .iter()
        .find(|t| t.method == Some(Method::Post))
        .unwrap();
    assert_eq!(post.request_bytes, 3);

    // OpenSSL is hooked on its internal functions and GnuTLS's sends on gnutls_record_send2
    // wherever they are found.
    for l in &report.libraries {
        let inner = match l.library {
            tls::event::Library::OpenSsl => tls::hooks::openssl_internal(&l.path).is_some(),
            tls::event::Library::GnuTls => tls::hooks::gnutls_send2(&l.path),
        };
        assert_eq!(l.internal, inner, "{l:?}");
    }
    // One attachment per library file, with every function hooked.
    let mut files: Vec<(u64, u64)> = report.libraries.iter().map(|l| l.file).collect();
    files.sort();
    files.dedup();
    assert_eq!(
        files.len(),
        report.libraries.len(),
        "{:#?}",
        report.libraries
    );
    for (lib, n) in [("openssl", 4), ("gnutls", 2)] {
        assert!(
            report
                .libraries
                .iter()
                .any(|l| l.library.as_str() == lib && l.symbols.len() == n),
            "{lib}: {:#?}",
            report.libraries
        );
    }

    // The socket path saw the same connections encrypted: nothing reported, bytes skipped.
    assert!(
        ebpf_txs.is_empty(),
        "the socket path reported transactions from encrypted bytes: {ebpf_txs:#?}"
    );
    assert!(
        ebpf_report.kernel.skipped_not_http >= expect.len() as u64,
        "{:?}",
        ebpf_report.kernel
    );
    assert_eq!(
        ebpf_report.stats.parse.requests, 0,
        "{:?}",
        ebpf_report.stats
    );
    // ... and reported with the source's telemetry.
    assert!(
        (expect.len() as u64..=ebpf_report.kernel.skipped_not_http)
            .contains(&ebpf_report.stats.kernel_skipped),
        "{:?} {:?}",
        ebpf_report.stats,
        ebpf_report.kernel
    );

    assert_gone(&report.program_ids, &report.map_ids);
    assert_eq!(report.program_ids.len(), 10, "programs loaded: {report:?}");
    eprintln!(
        "tls: {} transactions, kernel {:?}, libraries {:?}, {:?}",
        txs.len(),
        report.kernel,
        report
            .libraries
            .iter()
            .map(|l| l.path.display().to_string())
            .collect::<Vec<_>>(),
        t_start.elapsed()
    );
}

/// A python3 client that loads its own copy of libssl (a file no process maps when the
/// capture starts and that no library directory holds), waits, then makes one request.
const PY_LATE: &str = r#"
import ssl, sys, time, urllib.request, urllib.error
time.sleep(1.5)
ctx = ssl._create_unverified_context()
try:
    urllib.request.urlopen(f"https://127.0.0.1:{sys.argv[1]}/later", context=ctx)
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
"#;

#[test]
fn library_file_of_a_program_started_later_is_found() {
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(system_ssl) = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib64/libssl.so.3",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists()) else {
        eprintln!("skipping: no libssl.so.3 to copy");
        return;
    };
    let nginx = Nginx::start();
    let port = nginx.port;
    let libdir = nginx.dir.join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    let copy = libdir.join("libssl.so.3");
    std::fs::copy(&system_ssl, &copy).unwrap();
    // Library directories are searched at start only; this copy is found through the exec
    // notice of the program that loads it (the periodic rescan is pushed out of the way).
    // And the public OpenSSL functions (SSL_read/SSL_write for nginx, the _ex variants for
    // python3), as on builds whose internal functions are not found.
    let mut tls_cap = start_tls(TlsConfig {
        ports: vec![port],
        rescan_interval: Duration::from_secs(3600),
        openssl_internal: false,
        ..TlsConfig::default()
    });
    let mut c = Command::new("python3");
    c.env("LD_LIBRARY_PATH", &libdir)
        .args(["-c", PY_LATE, &port.to_string()]);
    let pid = run(c, None);
    tls_cap.collect_until(Duration::from_secs(20), |t| {
        t.iter().filter(|t| t.path == "/later").count() >= 2
    });
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    let copy_id = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&copy).unwrap();
        (m.dev(), m.ino())
    };
    let found: Vec<_> = report
        .libraries
        .iter()
        .filter(|l| l.file == copy_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the copy attached once: {:#?}",
        report.libraries
    );
    assert_eq!(found[0].symbols.len(), 4, "{:#?}", found[0]);
    assert!(report.libraries.iter().all(|l| !l.internal));
    assert!(report.execs_seen >= 1);
    let later: Vec<&Transaction> = txs.iter().filter(|t| t.path == "/later").collect();
    assert!(
        later
            .iter()
            .any(|t| t.side == Some(Side::Client) && t.pid == Some(pid) && t.status == Some(404)),
        "client side of the late program: {later:#?}"
    );
    assert!(
        later
            .iter()
            .any(|t| t.side == Some(Side::Server) && t.status == Some(404)),
        "{later:#?}"
    );
    // This test process never appears (include_self is false).
    assert!(txs.iter().all(|t| t.pid != Some(std::process::id())));
    assert_gone(&report.program_ids, &report.map_ids);
}

/// python3 `asyncio` keeps TLS on memory BIOs (`ssl.SSLObject`): its TLS calls make no
/// syscall, so its side is never tied to a socket (a documented limit).
const PY_ASYNCIO: &str = r#"
import asyncio, ssl, sys
async def main():
    ctx = ssl._create_unverified_context()
    r, w = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]), ssl=ctx)
    w.write(b"GET /asyncio HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await w.drain()
    assert (await r.read()).startswith(b"HTTP/1.1 404")
    w.close()
asyncio.run(main())
"#;

#[test]
fn memory_bio_engine_is_reported_without_addresses() {
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let port = nginx.port;
    let mut tls_cap = start_tls(TlsConfig::default());
    let mut c = Command::new("python3");
    c.args(["-c", PY_ASYNCIO, &port.to_string()]);
    let pid = run(c, None);
    tls_cap.collect_until(Duration::from_secs(20), |t| {
        t.iter().filter(|t| t.path == "/asyncio").count() >= 2
    });
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    let client: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.path == "/asyncio" && t.side == Some(Side::Client))
        .collect();
    assert_eq!(client.len(), 1, "{txs:#?}");
    let t = client[0];
    assert_eq!(
        (t.pid, t.status, t.method),
        (Some(pid), Some(404), Some(Method::Get))
    );
    assert_eq!(
        (t.client, t.server),
        (None, None),
        "no socket, no addresses"
    );
    assert!(report.kernel.no_socket >= 2, "{:?}", report.kernel);
    // nginx's side of the same exchange is tied to its socket as usual.
    let server: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.path == "/asyncio" && t.side == Some(Side::Server))
        .collect();
    assert_eq!(server.len(), 1, "{txs:#?}");
    assert_eq!(server[0].server.map(|a| a.port()), Some(port));
    assert_gone(&report.program_ids, &report.map_ids);
}

/// python3 loads its own copy of libssl, which is then deleted (as a package upgrade does
/// under a running program) before the capture starts; then it makes one request.
const PY_DELETED: &str = r#"
import ssl, sys, urllib.request, urllib.error
print("ready", flush=True)
sys.stdin.readline()
ctx = ssl._create_unverified_context()
try:
    urllib.request.urlopen(f"https://127.0.0.1:{sys.argv[1]}/deleted", context=ctx)
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
"#;

#[test]
fn deleted_library_of_a_running_program_is_attached_through_map_files() {
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(system_ssl) = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib64/libssl.so.3",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists()) else {
        eprintln!("skipping: no libssl.so.3 to copy");
        return;
    };
    let nginx = Nginx::start();
    let port = nginx.port;
    let libdir = nginx.dir.join("gone");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::copy(&system_ssl, libdir.join("libssl.so.3")).unwrap();
    let mut py = Command::new("python3")
        .env("LD_LIBRARY_PATH", &libdir)
        .args(["-c", PY_DELETED, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(py.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    std::fs::remove_dir_all(&libdir).unwrap();
    let mut tls_cap = start_tls(TlsConfig {
        ports: vec![port],
        ..TlsConfig::default()
    });
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = py.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "python did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    tls_cap.collect_until(Duration::from_secs(20), |t| {
        t.iter().filter(|t| t.path == "/deleted").count() >= 2
    });
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    assert!(
        report.libraries.iter().any(|l| l
            .path
            .to_string_lossy()
            .contains(&format!("/proc/{}/map_files/", py.id()))
            && l.symbols.len() == 4),
        "{:#?}",
        report.libraries
    );
    assert!(
        txs.iter().any(|t| t.path == "/deleted"
            && t.side == Some(Side::Client)
            && t.pid == Some(py.id())
            && t.status == Some(404)),
        "{txs:#?}"
    );
    assert_gone(&report.program_ids, &report.map_ids);
}

#[test]
fn cgroup_filter_keeps_only_tls_calls_of_processes_in_the_cgroup() {
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cg = match TestCgroup::make("hs-tls-test") {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let nginx = Nginx::start();
    let port = nginx.port;
    let mut tls_cap = start_tls(TlsConfig {
        ports: vec![port],
        cgroup: Some(cg.0.clone()),
        ..TlsConfig::default()
    });
    let base = format!("https://127.0.0.1:{port}");
    // A curl that moves itself into the cgroup first (exec keeps the pid), and one outside.
    let mut inside = Command::new("sh");
    inside.arg("-c").arg(format!(
        "echo $$ > '{}/cgroup.procs' && exec curl -sSk --max-time 20 -o /dev/null {base}/inside",
        cg.0.display()
    ));
    let inside_pid = run(inside, None);
    let mut outside = Command::new("curl");
    outside.args([
        "-sSk",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        &format!("{base}/outside"),
    ]);
    let outside_pid = run(outside, None);
    tls_cap.collect_until(Duration::from_secs(10), |t| !t.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    // nginx logged both; only the client side of the curl inside is seen (nginx and the
    // other curl are outside the cgroup).
    assert_eq!(nginx.access_log().len(), 2, "nginx answered both");
    assert_eq!(txs.len(), 1, "only the curl in the cgroup: {txs:#?}");
    let t = &txs[0];
    assert_eq!(
        (t.pid, t.side, t.method, t.path.as_str(), t.status),
        (
            Some(inside_pid),
            Some(Side::Client),
            Some(Method::Get),
            "/inside",
            Some(404)
        ),
        "{t:?} (curl outside was pid {outside_pid})"
    );
    assert_gone(&report.program_ids, &report.map_ids);
}

#[test]
fn request_head_longer_than_the_default_capture_is_parsed_with_a_larger_capture() {
    // The return program reserves events in three sizes (128, 512 and 4096 payload bytes):
    // a 2 KB request head only parses when the largest one is used and filled; the response
    // (about 250 bytes of head) and the other tests' short requests take the two others.
    require!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nginx = Nginx::start();
    let port = nginx.port;
    let mut tls_cap = start_tls(TlsConfig {
        ports: vec![port],
        capture_bytes: 4096,
        ..TlsConfig::default()
    });
    let mut curl = Command::new("curl");
    curl.args(["-sSk", "--max-time", "20", "-o", "/dev/null", "-H"])
        .arg(format!("X-Long: {}", "v".repeat(2000)))
        .arg(format!("https://127.0.0.1:{port}/big-head"));
    let curl_pid = run(curl, None);
    tls_cap.collect_until(Duration::from_secs(10), |t| t.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let (txs, report) = tls_cap.finish();
    let report = report.expect("tls capture failed");
    assert_eq!(nginx.access_log().len(), 1, "nginx answered");
    assert_eq!(txs.len(), 2, "one transaction per side: {txs:#?}");
    for side in [Side::Client, Side::Server] {
        let t = txs
            .iter()
            .find(|t| t.side == Some(side))
            .unwrap_or_else(|| panic!("no {side:?} side: {txs:#?}"));
        assert_eq!(
            (t.method, t.path.as_str(), t.status, t.incomplete),
            (Some(Method::Get), "/big-head", Some(404), false),
            "{t:?}"
        );
        if side == Side::Client {
            assert_eq!(t.pid, Some(curl_pid), "{t:?}");
        }
    }
    assert_gone(&report.program_ids, &report.map_ids);
}
