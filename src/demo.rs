//! `httpscope demo`: an HTTP API and a bounded load on 127.0.0.1, watched by the best
//! available source, so that a newcomer sees real output within seconds.
//!
//! Sources, best first: eBPF (root, Linux >= 6.3 with BTF), AF_PACKET on `lo` (root), and
//! otherwise the load generator's own view: it is built on httpscope-client, whose
//! `TransactionBridge` turns every finished request into a transaction with source `client`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use httpscope_client::bridge::TransactionBridge;
use httpscope_client::{Client, Observer};
use httpscope_model::batch::channel;
use httpscope_model::Source;
use httpscope_monitor::export::Cadence;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::cli::{DemoArgs, DemoSource, SourceKind};
use crate::config;
use crate::pipeline;
use crate::watch::{self, Live, SourceOpts};

/// A tiny deterministic generator for the load mix and the server's choices.
fn mix(n: u64) -> u64 {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

async fn handle(req: Request<hyper::body::Incoming>, n: u64) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let _ = req.into_body().collect().await;
    let r = mix(n);
    let (status, body): (StatusCode, Bytes) = match (method.as_str(), path.as_str()) {
        ("GET", p) if p.starts_with("/api/users/") && p.ends_with("/orders") => {
            (StatusCode::OK, Bytes::from(vec![b'o'; 1200]))
        }
        ("GET", p) if p.starts_with("/api/users/") => {
            let id: u64 = p["/api/users/".len()..].parse().unwrap_or(0);
            if id.is_multiple_of(17) {
                (
                    StatusCode::NOT_FOUND,
                    Bytes::from_static(b"{\"error\":\"no such user\"}"),
                )
            } else {
                (
                    StatusCode::OK,
                    Bytes::from(format!("{{\"id\":{id},\"name\":\"user {id}\"}}")),
                )
            }
        }
        ("POST", "/api/orders") => (StatusCode::CREATED, Bytes::from_static(b"{\"ok\":true}")),
        ("GET", "/api/hello.world") => (StatusCode::OK, Bytes::from_static(b"hello")),
        ("GET", "/api/slow") => {
            tokio::time::sleep(Duration::from_millis(100 + r % 200)).await;
            (StatusCode::OK, Bytes::from_static(b"finally"))
        }
        ("GET", "/api/checkout") => {
            if r.is_multiple_of(5) {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"try later"),
                )
            } else {
                (StatusCode::OK, Bytes::from_static(b"paid"))
            }
        }
        ("GET", p) if p.starts_with("/static/") => {
            (StatusCode::OK, Bytes::from(vec![b'j'; 8 * 1024]))
        }
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found")),
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res
}

async fn serve(listener: tokio::net::TcpListener, stop: Arc<AtomicBool>) {
    let counter = Arc::new(AtomicU64::new(0));
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok((stream, _))) =
            tokio::time::timeout(Duration::from_millis(100), listener.accept()).await
        else {
            continue;
        };
        let counter = counter.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, std::convert::Infallible>(handle(req, n).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn request_for(i: u64, base: &str) -> Request<Bytes> {
    let r = mix(i ^ 0x5555);
    let (method, path, body) = match r % 20 {
        0..=6 => ("GET", format!("/api/users/{}", r % 1000), Bytes::new()),
        7..=8 => (
            "GET",
            format!("/api/users/{}/orders", r % 1000),
            Bytes::new(),
        ),
        9..=10 => (
            "POST",
            "/api/orders".to_owned(),
            Bytes::from(vec![b'x'; 300 + (r % 200) as usize]),
        ),
        11..=12 => ("GET", "/api/hello.world".to_owned(), Bytes::new()),
        13 => ("GET", "/api/slow".to_owned(), Bytes::new()),
        14..=15 => ("GET", "/api/checkout".to_owned(), Bytes::new()),
        16..=17 => (
            "GET",
            format!("/static/app.{:08x}.js", r as u32 % 4),
            Bytes::new(),
        ),
        _ => ("GET", "/missing".to_owned(), Bytes::new()),
    };
    let mut req = Request::new(body);
    *req.method_mut() = method.parse().unwrap_or(hyper::Method::GET);
    *req.uri_mut() = format!("{base}{path}").parse().unwrap_or_default();
    req
}

/// Sends requests at `rate` per second from 4 workers until `deadline` or `stop`.
async fn load<O: Observer>(
    client: Arc<Client<O>>,
    base: String,
    rate: u32,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let workers = 4u32;
    let period = Duration::from_secs_f64(f64::from(workers) / f64::from(rate.max(1)));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, base, stop, ok, failed) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = u64::from(w);
            let mut next = tokio::time::Instant::now();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let req = request_for(i, &base);
                i += u64::from(workers);
                match client.send(req).await {
                    Ok(res) => match res.into_body().bytes().await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    },
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                next += period;
                tokio::time::sleep_until(next).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        // `id -u` without libc: the effective uid is in /proc on Linux; elsewhere assume not.
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
            })
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// A live source that started: which, its thread, its channel.
type Started = (
    Live,
    std::thread::JoinHandle<Result<(), String>>,
    httpscope_model::batch::BatchReceiver,
);

pub fn run(args: DemoArgs) -> Result<()> {
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be between 0 and 3600 seconds");
    }
    let mut s = config::settings(&args.out, Some(SourceKind::Auto), Some("lo".into()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1")?;
    std_listener.set_nonblocking(true)?;
    let addr: SocketAddr = std_listener.local_addr()?;
    s.ports = vec![addr.port()];
    let stop = pipeline::signals()?;
    let server_stop = Arc::new(AtomicBool::new(false));
    {
        let server_stop = server_stop.clone();
        rt.spawn(async move {
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => serve(l, server_stop).await,
                Err(e) => eprintln!("httpscope demo: server: {e}"),
            }
        });
    }

    // Pick the source, best first.
    let wanted: Vec<Live> = match args.source {
        DemoSource::Auto => {
            let mut v = Vec::new();
            if watch_probe_ebpf().is_ok() {
                v.push(Live::Ebpf);
            }
            if is_root() {
                v.push(Live::Packet);
            }
            v
        }
        DemoSource::Ebpf => vec![Live::Ebpf],
        DemoSource::Packet => vec![Live::Packet],
        DemoSource::Client => vec![],
    };
    let sources_stop = Arc::new(AtomicBool::new(false));
    let mut chosen: Option<Started> = None;
    let mut why_not = Vec::new();
    for live in wanted {
        let source = if live == Live::Ebpf {
            Source::Ebpf
        } else {
            Source::Packet
        };
        let (tx, rx) = channel(source, 256);
        let attached = Arc::new(AtomicBool::new(false));
        let mut opts = SourceOpts::new(&s);
        opts.include_self = true;
        opts.attached = Some(attached.clone());
        let st = sources_stop.clone();
        let handle = std::thread::spawn(move || watch::run_source(live, opts, &tx, &st));
        // eBPF says when it is attached; packet capture is ready once its socket is open.
        let ready_by =
            Instant::now() + Duration::from_secs(if live == Live::Ebpf { 10 } else { 1 });
        while Instant::now() < ready_by
            && !handle.is_finished()
            && !(live == Live::Ebpf && attached.load(Ordering::Relaxed))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if handle.is_finished() {
            let err = handle
                .join()
                .map_err(|_| "panicked".to_owned())
                .and_then(|r| r)
                .err()
                .unwrap_or_default();
            why_not.push(format!("{live:?}: {err}"));
            continue;
        }
        chosen = Some((live, handle, rx));
        break;
    }
    if args.source != DemoSource::Client && args.source != DemoSource::Auto && chosen.is_none() {
        bail!(
            "the requested source could not start: {}",
            why_not.join("; ")
        );
    }

    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let (title, source_name) = match &chosen {
        Some((Live::Ebpf, ..)) => (
            "observed by eBPF (kernel socket calls of this process)".to_owned(),
            "ebpf",
        ),
        Some((Live::Packet, ..)) => ("observed by packet capture on lo".to_owned(), "packet"),
        None => {
            let why = if args.source == DemoSource::Client {
                "asked for with --source client".to_owned()
            } else if why_not.is_empty() {
                "not root, so neither eBPF nor packet capture".to_owned()
            } else {
                why_not.join("; ")
            };
            (
                format!("source client: the load generator's own view of its requests ({why})"),
                "client",
            )
        }
    };
    eprintln!(
        "httpscope demo: serving {base}, {} requests/s for {:.0} s, {title}",
        args.rate, args.duration
    );
    let title = format!("httpscope demo — {base} — {title}");
    let mut monitor = pipeline::monitor(&s, Cadence::FinalTotal, Some(title), true, false)?;

    let driver = match chosen {
        Some((_live, handle, rx)) => {
            monitor.add_source(rx);
            let (stop, sources_stop) = (stop.clone(), sources_stop.clone());
            let client = Client::builder()
                .build()
                .context("cannot build the load client")?;
            std::thread::spawn(move || {
                let counts = rt.block_on(load(Arc::new(client), base, args.rate, deadline, stop));
                // Let the source see the last responses, then stop it: it sends its last
                // batch and closes its channel, which ends the monitor.
                std::thread::sleep(Duration::from_millis(500));
                sources_stop.store(true, Ordering::Relaxed);
                let r = handle.join();
                server_stop.store(true, Ordering::Relaxed);
                (counts, r.unwrap_or_else(|_| Err("panicked".into())))
            })
        }
        None => {
            let (tx, rx) = channel(Source::Client, 256);
            monitor.add_source(rx);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let counts = rt.block_on(async move {
                    let bridge = TransactionBridge::new(tx).max_delay(Duration::from_millis(200));
                    match Client::builder().observer(bridge).build() {
                        Ok(client) => {
                            let client = Arc::new(client);
                            let counts =
                                load(client.clone(), base, args.rate, deadline, stop).await;
                            let _ = client.observer().flush();
                            counts
                        }
                        Err(e) => {
                            eprintln!("httpscope demo: cannot build the load client: {e}");
                            (0, 0)
                        }
                    }
                });
                server_stop.store(true, Ordering::Relaxed);
                (counts, Ok(()))
            })
        }
    };
    let monitor_stop = Arc::new(AtomicBool::new(false));
    pipeline::after(stop.clone(), Duration::from_secs(3), monitor_stop.clone());
    let summary = monitor.run(&monitor_stop);
    let ((ok, failed), source_result) = driver
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
    eprintln!(
        "httpscope demo: {ok} requests answered, {failed} failed; {} transactions seen by source {source_name}",
        summary.total.transactions()
    );
    if let Err(e) = source_result {
        bail!("{e}");
    }
    Ok(())
}

fn watch_probe_ebpf() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        httpscope_capture::ebpf::probe().map_err(|e| e.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("eBPF is Linux only".into())
    }
}
