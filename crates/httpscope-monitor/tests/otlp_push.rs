//! The OTLP exporter pushing to a receiver inside the test (a hyper server) that decodes the
//! protobuf `ExportMetricsServiceRequest` and checks the values.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use httpscope_model::batch::channel;
use httpscope_model::Source;
use httpscope_monitor::export::otlp::{OtlpConfig, OtlpExporter, Temporality};
use httpscope_monitor::{Monitor, MonitorConfig};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, HistogramDataPoint,
};
use prost::Message;

/// Starts a receiver on a free port; every decoded request (with its path and content type)
/// goes to the returned channel.
fn receiver() -> (
    std::net::SocketAddr,
    mpsc::Receiver<(String, String, ExportMetricsServiceRequest)>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Bounded: the test pushes a handful of times.
            for _ in 0..16 {
                let Ok(Ok((stream, _))) =
                    tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
                else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let tx = tx.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let ct = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let decoded = ExportMetricsServiceRequest::decode(body).unwrap();
                                let _ = tx.send((path, ct, decoded));
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    (addr, rx)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn run(temporality: Temporality, addr: std::net::SocketAddr, batches: usize) {
    let exporter = OtlpExporter::new(&OtlpConfig {
        endpoint: format!("http://{addr}"),
        temporality,
        timeout_secs: 5.0,
    })
    .unwrap();
    let (tx, rx) = channel(Source::Packet, 8);
    let mut m = Monitor::new(MonitorConfig {
        interval: Duration::from_secs(3600),
        ..MonitorConfig::default()
    })
    .unwrap();
    m.add_source(rx);
    m.add_exporter(Box::new(exporter));
    for _ in 0..batches {
        m.process(0, common::batch());
        m.flush(false);
    }
    drop(tx);
    m.run(&AtomicBool::new(false));
}

#[test]
fn pushes_histograms_and_telemetry_that_decode() {
    let (addr, got) = receiver();
    run(Temporality::Cumulative, addr, 2);
    // Two flushes plus the final one.
    let reqs: Vec<_> = (0..3)
        .map(|_| got.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    for (path, ct, _) in &reqs {
        assert_eq!(path, "/v1/metrics");
        assert_eq!(ct, "application/x-protobuf");
    }
    let last = &reqs[2].2;
    let rm = &last.resource_metrics[0];
    let res = rm.resource.as_ref().unwrap();
    assert!(
        matches!(attr(&res.attributes, "service.name"), Some(Any::StringValue(s)) if s == "httpscope")
    );
    let metrics = &rm.scope_metrics[0].metrics;
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };

    let Some(metric::Data::Histogram(h)) = &find("http.server.request.duration").data else {
        panic!("not a histogram")
    };
    assert_eq!(
        h.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let ok = h
        .data_points
        .iter()
        .find(|p| {
            matches!(
                attr(&p.attributes, "http.response.status_code"),
                Some(Any::IntValue(200))
            )
        })
        .unwrap();
    assert!(
        matches!(attr(&ok.attributes, "http.route"), Some(Any::StringValue(r)) if r == "/users/*")
    );
    assert!(
        matches!(attr(&ok.attributes, "http.request.method"), Some(Any::StringValue(r)) if r == "GET")
    );
    assert!(matches!(
        attr(&ok.attributes, "server.port"),
        Some(Any::IntValue(8080))
    ));
    // Cumulative: two batches of 27, nothing new at the final flush.
    assert_eq!(ok.count, 54);
    assert_eq!(ok.bucket_counts.iter().sum::<u64>(), 54);
    assert_eq!(
        ok.bucket_counts[0], 54,
        "2 ms requests are in the first (5 ms) bucket"
    );
    assert_eq!(ok.explicit_bounds.len() + 1, ok.bucket_counts.len());
    assert!((ok.sum.unwrap() - 54.0 * 0.002).abs() < 1e-9);
    assert!((ok.min.unwrap() - 0.002).abs() < 1e-12);
    let err = h
        .data_points
        .iter()
        .find(|p| {
            matches!(
                attr(&p.attributes, "http.response.status_code"),
                Some(Any::IntValue(500))
            )
        })
        .unwrap();
    assert_eq!(err.count, 6);
    assert!(matches!(attr(&err.attributes, "error.type"), Some(Any::StringValue(s)) if s == "500"));

    let Some(metric::Data::Histogram(c)) = &find("http.client.request.duration").data else {
        panic!()
    };
    assert_eq!(c.data_points.len(), 1);
    assert_eq!(c.data_points[0].count, 20);
    let body = find("http.client.request.body.size");
    assert_eq!(body.unit, "By");
    let Some(metric::Data::Histogram(body)) = &body.data else {
        panic!("not a histogram")
    };
    assert_eq!(
        body.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = &body.data_points[0];
    assert_eq!(p.sum, Some(1000.0));
    assert_eq!(p.count, 20);
    assert_eq!(p.explicit_bounds[..3], [0.0, 64.0, 256.0]);
    assert_eq!(p.explicit_bounds.len() + 1, p.bucket_counts.len());
    // Twenty 50-byte bodies: all in (0, 64].
    let mut want = vec![0; p.bucket_counts.len()];
    want[1] = 20;
    assert_eq!(p.bucket_counts, want);
    let Some(metric::Data::Histogram(resp)) = &find("http.server.response.body.size").data else {
        panic!("not a histogram")
    };
    let ok = resp
        .data_points
        .iter()
        .find(|p| {
            matches!(
                attr(&p.attributes, "http.response.status_code"),
                Some(Any::IntValue(200))
            )
        })
        .unwrap();
    // 54 100-byte responses: all in (64, 256].
    let mut want = vec![0; ok.bucket_counts.len()];
    want[2] = 54;
    assert_eq!(ok.bucket_counts, want);
    assert_eq!((ok.count, ok.sum), (54, Some(5400.0)));

    let Some(metric::Data::Sum(mal)) = &find("httpscope.malformed").data else {
        panic!()
    };
    assert!(mal.is_monotonic);
    let p = &mal.data_points[0];
    assert!(
        matches!(attr(&p.attributes, "reason"), Some(Any::StringValue(s)) if s == "empty_path")
    );
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(4)));
    let Some(metric::Data::Sum(tr)) = &find("httpscope.transactions").data else {
        panic!()
    };
    assert_eq!(
        tr.data_points[0].value,
        Some(number_data_point::Value::AsInt(84))
    );
}

#[test]
fn delta_pushes_hold_only_their_interval() {
    let (addr, got) = receiver();
    run(Temporality::Delta, addr, 2);
    let reqs: Vec<_> = (0..3)
        .map(|_| got.recv_timeout(Duration::from_secs(10)).unwrap().2)
        .collect();
    // Per push, `f` of the delta histogram `name`'s points, summed (0 when it is absent).
    let per_push = |name: &str, f: fn(&HistogramDataPoint) -> u64| -> Vec<u64> {
        reqs.iter()
            .map(|r| {
                let ms = &r.resource_metrics[0].scope_metrics[0].metrics;
                match ms.iter().find(|m| m.name == name).map(|m| &m.data) {
                    Some(Some(metric::Data::Histogram(h))) => {
                        assert_eq!(
                            h.aggregation_temporality,
                            AggregationTemporality::Delta as i32
                        );
                        h.data_points.iter().map(f).sum()
                    }
                    _ => 0,
                }
            })
            .collect()
    };
    // The body sizes too: each push holds its interval's bodies (27 + 3 server responses).
    assert_eq!(
        per_push("http.server.response.body.size", |p| p.bucket_counts[2]),
        vec![30, 30, 0]
    );
    // Each interval had 30 server-side transactions; the final one had none.
    assert_eq!(
        per_push("http.server.request.duration", |p| p.count),
        vec![30, 30, 0]
    );
}
