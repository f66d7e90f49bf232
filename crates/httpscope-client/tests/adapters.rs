//! The adapters against a real server: Prometheus metrics with the OpenTelemetry names, and
//! the bridge that sends transactions to the httpscope monitor.

mod common;

use std::time::Duration;

use httpscope_client::bridge::TransactionBridge;
use httpscope_client::metrics::{Metrics, PrometheusRecorder};
use httpscope_client::Client;
use httpscope_model::{Side, Source};

fn line<'a>(text: &'a str, prefix: &str, contains: &[&str]) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix) && contains.iter().all(|c| l.contains(c)))
        .unwrap_or_else(|| panic!("no {prefix} {contains:?} in\n{text}"))
}

fn value(l: &str) -> f64 {
    l.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn prometheus_metrics_follow_the_requests() {
    let addr = common::server(true).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(PrometheusRecorder::new(&mut registry));
    let c = Client::builder()
        .max_connections_per_host(1)
        .observer(metrics)
        .build()
        .unwrap();
    let u = |p: &str| -> http::Uri { format!("http://{addr}{p}").parse().unwrap() };
    // Two at once under a limit of one: the second queues.
    let (a, b) = tokio::join!(
        async {
            c.get(u("/slow/50"))
                .await
                .unwrap()
                .into_body()
                .bytes()
                .await
        },
        async { c.get(u("/")).await.unwrap().into_body().bytes().await },
    );
    a.unwrap();
    b.unwrap();
    c.get(u("/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    let refused = format!("http://127.0.0.1:{}/", common::closed_port())
        .parse()
        .unwrap();
    assert!(c.get(refused).await.is_err());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let port = addr.port().to_string();
    let ok = line(
        &text,
        "http_client_request_duration_seconds_count",
        &[
            "http_request_method=\"GET\"",
            "http_response_status_code=\"200\"",
            &port,
        ],
    );
    assert_eq!(value(ok), 3.0);
    assert!(ok.contains("server_address=\"127.0.0.1\"") && ok.contains("url_scheme=\"http\""));
    let failed = line(
        &text,
        "http_client_request_duration_seconds_count",
        &["error_type=\"connect\""],
    );
    assert_eq!(value(failed), 1.0);
    let active = line(&text, "http_client_active_requests", &[&port]);
    assert_eq!(value(active), 0.0);
    let idle = line(
        &text,
        "http_client_open_connections",
        &["state=\"idle\"", &port],
    );
    assert_eq!(value(idle), 1.0);
    let busy = line(
        &text,
        "http_client_open_connections",
        &["state=\"active\"", &port],
    );
    assert_eq!(value(busy), 0.0);
    let queued = line(
        &text,
        "http_client_request_time_in_queue_seconds_count",
        &[&port],
    );
    assert_eq!(value(queued), 1.0);
    let sum = line(
        &text,
        "http_client_request_time_in_queue_seconds_sum",
        &[&port],
    );
    assert!(value(sum) > 0.0);

    // Closing the pool closes the idle connection: its duration is recorded.
    c.close();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let closed = line(
        &text,
        "http_client_connection_duration_seconds_count",
        &[&port],
    );
    assert_eq!(value(closed), 1.0);
    let idle = line(
        &text,
        "http_client_open_connections",
        &["state=\"idle\"", &port],
    );
    assert_eq!(value(idle), 0.0);
}

#[tokio::test]
async fn each_finished_request_becomes_a_transaction() {
    let addr = common::server(true).await;
    let (tx, rx) = httpscope_model::batch::channel(Source::Client, 8);
    let bridge = TransactionBridge::new(tx)
        .max_batch(2)
        .max_delay(Duration::from_secs(60));
    let c = Client::builder().observer(bridge).build().unwrap();
    let mut post = http::Request::new(bytes::Bytes::from_static(b"12345678"));
    *post.method_mut() = http::Method::POST;
    *post.uri_mut() = format!("http://{addr}/users/42?token=secret")
        .parse()
        .unwrap();
    c.send(post)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert!(
        rx.receiver().try_recv().is_err(),
        "batched: nothing sent after one request"
    );
    c.get(format!("http://{addr}/slow/5").parse().unwrap())
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    let batch = rx
        .receiver()
        .try_recv()
        .expect("a batch after two requests");
    assert_eq!(batch.source, Source::Client);
    assert_eq!(batch.transactions.len(), 2);
    let t = &batch.transactions[0];
    assert_eq!(t.method, Some(httpscope_model::Method::Post));
    assert_eq!(t.path, "/users/42", "no query string");
    assert_eq!(t.status, Some(200));
    assert_eq!((t.request_bytes, t.response_bytes), (8, 5));
    assert_eq!(t.server, Some(addr));
    assert_eq!(t.client.map(|a| a.ip()), Some("127.0.0.1".parse().unwrap()));
    assert_eq!(t.side, Some(Side::Client));
    assert_eq!(t.source, Source::Client);
    assert_eq!(t.pid, Some(std::process::id()));
    assert!(!t.incomplete);
    assert!(t.end_ns > t.start_ns && t.time_unix_ns > 0);
    let slow = &batch.transactions[1];
    assert!(slow.duration_ns() >= 5_000_000, "{}", slow.duration_ns());
    assert!(slow.start_ns >= t.end_ns);

    // A failed request is an incomplete transaction; dropping the client flushes it.
    let refused = format!("http://127.0.0.1:{}/x", common::closed_port())
        .parse()
        .unwrap();
    assert!(c.get(refused).await.is_err());
    drop(c);
    let batch = rx.receiver().try_recv().expect("flushed on drop");
    assert_eq!(batch.transactions.len(), 1);
    assert!(batch.transactions[0].incomplete);
    assert_eq!(batch.transactions[0].status, None);
    assert_eq!(batch.transactions[0].path, "/x");
}
