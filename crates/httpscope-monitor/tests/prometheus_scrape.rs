//! The Prometheus exporter scraped by a real Prometheus server (`/usr/bin/prometheus`, Debian
//! package `prometheus`), queried through its HTTP API.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use httpscope_model::batch::channel;
use httpscope_model::Source;
use httpscope_monitor::export::prometheus::{PrometheusConfig, PrometheusExporter};
use httpscope_monitor::{Monitor, MonitorConfig};

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an instant query and returns the single value, if there is one.
fn query(prom: std::net::SocketAddr, q: &str) -> Option<f64> {
    let (status, body) =
        common::http_get(prom, &format!("/api/v1/query?query={}", common::encode(q))).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn real_prometheus_scrapes_our_metrics() {
    let bin = std::path::Path::new("/usr/bin/prometheus");
    if !bin.exists() {
        eprintln!("skipping: /usr/bin/prometheus is not installed (apt-get install prometheus)");
        return;
    }
    // The monitor with a Prometheus exporter on a free port, fed once, kept running.
    let exporter = PrometheusExporter::start(&PrometheusConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .unwrap();
    let target = exporter.local_addr();
    let (tx, rx) = channel(Source::Packet, 8);
    let mut m = Monitor::new(MonitorConfig {
        interval: Duration::from_millis(200),
        ..MonitorConfig::default()
    })
    .unwrap();
    m.add_source(rx);
    m.add_exporter(Box::new(exporter));
    tx.send_blocking(common::batch()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let runner = std::thread::spawn(move || m.run(&stop2));

    // Our own scrape first: the exposition is there.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = common::http_get(target, "/metrics").unwrap();
        assert_eq!(status, 200);
        if body.contains("http_server_request_duration_seconds_count") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exporter never showed the histogram:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: httpscope\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let prom_addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let _prom = Child(
        Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let server_ok = r#"http_server_request_duration_seconds_count{http_route="/users/*",http_response_status_code="200",http_request_method="GET"}"#;
    let server_err = r#"http_server_request_duration_seconds_count{http_route="/users/*",http_response_status_code="500"}"#;
    let fast_bucket = r#"http_server_request_duration_seconds_bucket{http_route="/users/*",http_response_status_code="200",le="0.005"}"#;
    let slow_bucket = r#"http_server_request_duration_seconds_bucket{http_route="/users/*",http_response_status_code="500",le="0.025"}"#;
    let client = r#"http_client_request_duration_seconds_sum{http_route="/orders",http_request_method="POST"}"#;
    let client_body = r#"http_client_request_body_size_bytes_sum{http_route="/orders"}"#;
    // 50-byte request bodies: none at le="0", all ten by le="64"; 100-byte responses of the
    // server's 200s: none by le="64", all 27 by le="256".
    let body_le = |side: &str, what: &str, route: &str, le: &str| {
        format!(r#"http_{side}_{what}_body_size_bytes_bucket{{http_route="{route}",le="{le}"}}"#)
    };
    let ok_resp = r#",http_response_status_code="200"}"#;
    let malformed = r#"httpscope_malformed_total{reason="empty_path"}"#;
    let events = r#"httpscope_events_total{source="packet"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(v) = query(prom_addr, server_ok) {
            last = Some(v);
            if v == 27.0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        last,
        Some(27.0),
        "prometheus never reported the scraped count"
    );
    assert_eq!(query(prom_addr, server_err), Some(3.0));
    assert_eq!(query(prom_addr, fast_bucket), Some(27.0));
    assert_eq!(query(prom_addr, slow_bucket), Some(0.0));
    let client_sum = query(prom_addr, client).unwrap();
    assert!((client_sum - 3.0).abs() < 1e-9, "{client_sum}");
    assert_eq!(query(prom_addr, client_body), Some(500.0));
    assert_eq!(
        query(prom_addr, &body_le("client", "request", "/orders", "0")),
        Some(0.0)
    );
    assert_eq!(
        query(prom_addr, &body_le("client", "request", "/orders", "64")),
        Some(10.0)
    );
    assert_eq!(
        query(prom_addr, &body_le("client", "request", "/orders", "+Inf")),
        Some(10.0)
    );
    let resp = |le| body_le("server", "response", "/users/*", le).replace('}', ok_resp);
    assert_eq!(query(prom_addr, &resp("64")), Some(0.0));
    assert_eq!(query(prom_addr, &resp("256")), Some(27.0));
    assert_eq!(
        query(
            prom_addr,
            r#"http_server_response_body_size_bytes_count{http_route="/users/*",http_response_status_code="500"}"#
        ),
        Some(3.0)
    );
    assert_eq!(query(prom_addr, malformed), Some(2.0));
    assert_eq!(query(prom_addr, events), Some(123.0));
    assert_eq!(query(prom_addr, r#"up{job="httpscope"}"#), Some(1.0));

    stop.store(true, Ordering::Relaxed);
    drop(tx);
    runner.join().unwrap();
}
