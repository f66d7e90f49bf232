//! Exact event sequences against real servers on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    closed_port, dying_server, expect_server, raw_server, server, tls_server, unanswering_listener,
    ExpectMode, Log,
};
use httpscope_client::observer::CloseReason;
use httpscope_client::{Builder, Client, Error, Noop, StaticResolver};

fn client(log: &Log, f: impl FnOnce(Builder<Noop>) -> Builder<Noop>) -> Client<Log> {
    f(Client::builder()).observer(log.clone()).build().unwrap()
}

fn uri(addr: std::net::SocketAddr, path: &str) -> http::Uri {
    format!("http://{addr}{path}").parse().unwrap()
}

const DIAL: [&str; 3] = [
    "connect_start(127.0.0.1)",
    "connect_done(127.0.0.1)",
    "connection_open",
];
const EXCHANGE: [&str; 4] = [
    "headers_written",
    "body_written(0)",
    "first_response_byte",
    "response_headers(200)",
];

fn join(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| s.to_string()))
        .collect()
}

#[tokio::test]
async fn reuse_of_an_idle_connection() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    for _ in 0..2 {
        let body = c
            .get(uri(addr, "/"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"hello");
    }
    assert_eq!(
        log.names(),
        join(&[
            &["request_start", "get_conn"],
            &DIAL,
            &["got_conn(Dialled,reused=false,idle=false)"],
            &EXCHANGE,
            &["response_body_end(5)", "idle_in(i=1)", "request_end(200)"],
            &["request_start", "get_conn", "idle_out(Reused)"],
            &["got_conn(Idle,reused=true,idle=true)"],
            &EXCHANGE,
            &["response_body_end(5)", "idle_in(i=1)", "request_end(200)"],
        ])
    );
    let evs = log.events();
    assert_eq!(evs[0].request, Some(1));
    assert_eq!(evs.last().unwrap().request, Some(2));
    assert!(evs
        .iter()
        .all(|e| e.connection.is_none() || e.connection == Some(1)));
    // Per request, the moments of the exchange are in order.
    for r in [1, 2] {
        let at: Vec<Instant> = evs
            .iter()
            .filter(|e| e.request == Some(r))
            .map(|e| e.at)
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] <= w[1]),
            "request {r} timestamps out of order"
        );
    }
    let stats = c.pool_stats();
    assert_eq!(stats.total.now.idle, 1);
    assert_eq!(stats.total.now.active, 0);
    log.assert_balanced();
}

#[tokio::test]
async fn queueing_under_the_per_host_limit_hands_the_connection_over() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections_per_host(1));
    let one = async {
        c.get(uri(addr, "/slow/100"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
    };
    let two = async {
        c.get(uri(addr, "/slow/0"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
    };
    let (a, b) = tokio::join!(one, two);
    assert_eq!(&a.unwrap()[..], b"slow");
    assert_eq!(&b.unwrap()[..], b"slow");
    assert_eq!(
        log.of(2),
        join(&[
            &["request_start", "get_conn", "limit_hit(ConnectionsPerHost)"],
            &[
                "queue_enter(PerHostLimit;a=0,i=0,c=1,w=1)",
                "queue_exit(IdleConnection)"
            ],
            &["got_conn(HandedOver,reused=true,idle=false)"],
            &EXCHANGE,
            &["response_body_end(4)", "request_end(200)"],
        ])
    );
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &["got_conn(Dialled,reused=false,idle=false)"],
            &EXCHANGE,
            &["response_body_end(4)", "request_end(200)"],
        ])
    );
    assert_eq!(
        log.pool(),
        ["connection_open", "idle_in(i=1)"],
        "one connection for both"
    );
    let stats = c.pool_stats();
    assert_eq!(stats.total.waits, 1);
    assert!(
        stats.total.wait_time >= Duration::from_millis(50),
        "{:?}",
        stats.total
    );
    log.assert_balanced();
}

#[tokio::test]
async fn deadline_while_queued() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections_per_host(1));
    let one = async {
        c.get(uri(addr, "/slow/400"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
    };
    let two = async {
        let mut req = http::Request::new(Bytes::new());
        *req.uri_mut() = uri(addr, "/");
        c.send_with_deadline(req, Some(Instant::now() + Duration::from_millis(100)))
            .await
    };
    let (a, b) = tokio::join!(one, two);
    assert!(a.is_ok());
    assert!(matches!(b, Err(Error::DeadlineExceeded)), "{b:?}");
    assert_eq!(
        log.of(2),
        [
            "request_start",
            "get_conn",
            "limit_hit(ConnectionsPerHost)",
            "queue_enter(PerHostLimit;a=0,i=0,c=1,w=1)",
            "queue_exit(DeadlineExceeded)",
            "request_failed(deadline_exceeded)",
        ]
    );
    assert_eq!(c.pool_stats().total.now.waiting, 0);
    log.assert_balanced();
}

#[tokio::test]
async fn cancellation_while_queued_and_while_waiting_for_the_response() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections_per_host(1));
    let one = async {
        // Dropped while waiting for the response.
        tokio::time::timeout(Duration::from_millis(200), c.get(uri(addr, "/slow/3000"))).await
    };
    let two = async {
        // Dropped while queued behind the first.
        tokio::time::timeout(Duration::from_millis(100), c.get(uri(addr, "/"))).await
    };
    let (a, b) = tokio::join!(one, two);
    assert!(a.is_err() && b.is_err(), "both time out");
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &[
                "got_conn(Dialled,reused=false,idle=false)",
                // The request was on the wire when it was dropped (reported as it happened,
                // not with a response head that never came).
                "headers_written",
                "body_written(0)",
                "request_failed(cancelled)"
            ],
        ])
    );
    assert_eq!(
        log.of(2),
        [
            "request_start",
            "get_conn",
            "limit_hit(ConnectionsPerHost)",
            "queue_enter(PerHostLimit;a=0,i=0,c=1,w=1)",
            "queue_exit(Cancelled)",
            "request_failed(cancelled)",
        ]
    );
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)"
        ]
    );
    let stats = c.pool_stats();
    assert_eq!(stats.total.now, Default::default(), "nothing left counted");
    assert_eq!(stats.total.closed(CloseReason::NotReusable), 1);
    log.assert_balanced();
}

#[tokio::test]
async fn dropping_the_response_body_half_way() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    let res = c.get(uri(addr, "/drip")).await.unwrap();
    let mut body = res.into_body();
    let first =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"first"));
    drop(body);
    let names = log.of(1);
    assert_eq!(
        names[names.len() - 2..],
        [
            "response_body_end(5)(cancelled)",
            "request_failed(cancelled)"
        ]
    );
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)"
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn idle_expiry() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.idle_timeout(Some(Duration::from_millis(100))));
    c.get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    log.clear();
    c.get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        log.names(),
        join(&[
            &["request_start", "get_conn", "idle_out(Expired)"],
            &["connection_closed(IdleTimeout,requests=1)"],
            &DIAL,
            &["got_conn(Dialled,reused=false,idle=false)"],
            &EXCHANGE,
            &["response_body_end(5)", "idle_in(i=1)", "request_end(200)"],
        ])
    );
    assert_eq!(c.pool_stats().total.closed(CloseReason::IdleTimeout), 1);
}

#[tokio::test]
async fn connection_refused_then_the_next_address() {
    let port = closed_port();
    let log = Log::default();
    let c = client(&log, |b| b);
    let err = c
        .get(format!("http://127.0.0.1:{port}/").parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_eq!(
        log.names(),
        [
            "request_start",
            "get_conn",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)(connect)",
            "request_failed(connect)",
        ]
    );
    assert_eq!(
        c.pool_stats().total.now,
        Default::default(),
        "the dial slot was freed"
    );

    // A name with a refusing address first: the next address is tried.
    let addr = server(true).await;
    let log = Log::default();
    let resolver = StaticResolver::new().with(
        "two.test",
        &["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    );
    let c = client(&log, |b| b.resolver(resolver));
    let u = format!("http://two.test:{}/", addr.port()).parse().unwrap();
    c.get(u).await.unwrap().into_body().bytes().await.unwrap();
    assert_eq!(
        log.of(1)[..7],
        [
            "request_start",
            "get_conn",
            "dns_start(two.test)",
            "dns_done(2)",
            "connect_start(127.0.0.2)",
            "connect_done(127.0.0.2)(connect)",
            "connect_start(127.0.0.1)",
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn dns_failure() {
    let log = Log::default();
    let c = client(&log, |b| b.resolver(StaticResolver::new()));
    let err = c
        .get("http://nowhere.test/".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Dns(_)), "{err:?}");
    assert_eq!(
        log.names(),
        [
            "request_start",
            "get_conn",
            "dns_start(nowhere.test)",
            "dns_done(0)(dns)",
            "request_failed(dns)",
        ]
    );
    assert_eq!(c.pool_stats().total.now, Default::default());
}

#[tokio::test]
async fn retry_on_a_dead_reused_connection() {
    let addr = dying_server().await;
    let log = Log::default();
    let c = client(&log, |b| b);
    c.get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    log.clear();
    let body = c
        .get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"ok");
    let evs = log.events();
    assert_eq!(
        log.names(),
        join(&[
            &["request_start", "get_conn", "idle_out(Reused)"],
            &["got_conn(Idle,reused=true,idle=true)"],
            // Written to the dead connection before it turned out dead.
            &["headers_written", "body_written(0)"],
            &[
                "connection_closed(ClosedByPeer,requests=2)",
                "request_retry(http)"
            ],
            &["get_conn"],
            &DIAL,
            &["got_conn(Dialled,reused=false,idle=false)"],
            &[
                "headers_written",
                "body_written(0)",
                "first_response_byte",
                "response_headers(200)"
            ],
            &["response_body_end(2)", "idle_in(i=1)", "request_end(200)"],
        ])
    );
    let retry = evs
        .iter()
        .position(|e| e.what.starts_with("request_retry"))
        .unwrap();
    assert_eq!(evs[retry].attempt, Some(1));
    assert_eq!(evs[retry].connection, Some(1));
    assert_eq!(evs.last().unwrap().attempt, Some(2));
    assert_eq!(evs.last().unwrap().connection, Some(2));
    log.assert_balanced();

    // A non-idempotent request is not retried.
    let addr = dying_server().await;
    let log = Log::default();
    let c = client(&log, |b| b);
    c.get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    let mut post = http::Request::new(Bytes::from_static(b"x"));
    *post.method_mut() = http::Method::POST;
    *post.uri_mut() = uri(addr, "/");
    let err = c.send(post).await.unwrap_err();
    assert!(matches!(err, Error::Http(_)), "{err:?}");
    assert!(!log.names().iter().any(|n| n.starts_with("request_retry")));
}

#[tokio::test]
async fn server_closing_keep_alive_connections() {
    let addr = server(false).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    for _ in 0..2 {
        c.get(uri(addr, "/"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap();
    }
    let closes: Vec<String> = log
        .pool()
        .into_iter()
        .filter(|n| !n.starts_with("connection_open"))
        .collect();
    assert_eq!(
        closes,
        [
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)",
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)",
        ]
    );
    assert!(log
        .of(2)
        .contains(&"got_conn(Dialled,reused=false,idle=false)".to_string()));
}

#[tokio::test]
async fn tls_with_a_generated_certificate() {
    let (addr, der) = tls_server().await;
    let log = Log::default();
    let resolver = StaticResolver::new().with("localhost", &["127.0.0.1".parse().unwrap()]);
    let c = client(&log, |b| b.resolver(resolver).add_root_certificate(der));
    let u = format!("https://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    let body = c.get(u).await.unwrap().into_body().bytes().await.unwrap();
    assert_eq!(&body[..], b"hello");
    assert_eq!(
        log.of(1)[..9],
        [
            "request_start",
            "get_conn",
            "dns_start(localhost)",
            "dns_done(1)",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)",
            "tls_start(localhost)",
            "tls_done(TLSv1_3,http/1.1,true)",
            "got_conn(Dialled,reused=false,idle=false)",
        ]
    );
    log.assert_balanced();

    // An untrusted certificate fails the handshake, reported as such.
    let log = Log::default();
    let resolver = StaticResolver::new().with("localhost", &["127.0.0.1".parse().unwrap()]);
    let c = client(&log, |b| b.resolver(resolver));
    let u = format!("https://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    assert!(matches!(c.get(u).await.unwrap_err(), Error::Tls(_)));
    assert!(
        log.names().contains(&"tls_done(-,,false)(tls)".to_string()),
        "{:?}",
        log.names()
    );
    log.assert_balanced();
}

#[tokio::test]
async fn closing_the_pool_fails_queued_requests() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections_per_host(1));
    let one = async { c.get(uri(addr, "/slow/200")).await.map(|_| ()) };
    let two = async { c.get(uri(addr, "/")).await.map(|_| ()) };
    let close = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.close();
    };
    let (a, b, ()) = tokio::join!(one, two, close);
    assert!(a.is_ok());
    assert!(matches!(b, Err(Error::PoolClosed)), "{b:?}");
    assert_eq!(
        log.of(2)[4..],
        ["queue_exit(PoolClosed)", "request_failed(pool_closed)"]
    );
    assert!(matches!(
        c.get(uri(addr, "/")).await,
        Err(Error::PoolClosed)
    ));
    log.assert_balanced();
}

#[tokio::test]
async fn total_limit_evicts_an_idle_connection_of_another_host() {
    let a = server(true).await;
    let b = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections(1));
    c.get(uri(a, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    log.clear();
    c.get(uri(b, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        log.names()[..4],
        [
            "request_start",
            "get_conn",
            "idle_out(Evicted)",
            "connection_closed(Evicted,requests=1)"
        ]
    );
    let stats = c.pool_stats();
    assert_eq!(
        stats.hosts.len(),
        1,
        "the first host is forgotten: {stats:?}"
    );
    assert_eq!(stats.total.closed(CloseReason::Evicted), 1);
}

/// Only asks for 1xx responses (a [`Log`] paired with it logs them).
struct WantsInformational;

impl httpscope_client::Observer for WantsInformational {
    fn interest(&self) -> httpscope_client::Interest {
        httpscope_client::Interest::ALWAYS.with_informational()
    }
}

/// Adds 1xx responses to a [`Log`] (they cost an allocation per request, so are opt-in).
struct Informational(Log);

impl httpscope_client::Observer for Informational {
    fn interest(&self) -> httpscope_client::Interest {
        httpscope_client::Interest::ALWAYS.with_informational()
    }
    fn informational(&self, e: &httpscope_client::observer::Informational<'_>) {
        httpscope_client::Observer::informational(&self.0, e)
    }
}

#[tokio::test]
async fn informational_responses_when_asked_for() {
    let addr = server(true).await;
    let log = Log::default();
    let c = Client::builder()
        .observer((log.clone(), Informational(log.clone())))
        .build()
        .unwrap();
    let mut post = http::Request::new(Bytes::from_static(b"abc"));
    *post.method_mut() = http::Method::POST;
    *post.uri_mut() = uri(addr, "/");
    post.headers_mut()
        .insert("expect", http::HeaderValue::from_static("100-continue"));
    let res = c.send(post).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().bytes().await.unwrap();
    let names = log.of(1);
    let info = names.iter().position(|n| n == "informational(100)");
    let head = names.iter().position(|n| n == "response_headers(200)");
    assert!(info.is_some() && info < head, "{names:?}");

    // Without the opt-in, no 1xx event (and no per-request allocation for it).
    let log = Log::default();
    let c = client(&log, |b| b);
    let mut post = http::Request::new(Bytes::from_static(b"abc"));
    *post.method_mut() = http::Method::POST;
    *post.uri_mut() = uri(addr, "/");
    post.headers_mut()
        .insert("expect", http::HeaderValue::from_static("100-continue"));
    c.send(post)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert!(!log.names().iter().any(|n| n.starts_with("informational")));
}

#[tokio::test]
async fn idle_limits_refuse_and_max_lifetime_expires() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| {
        b.max_idle_per_host(1)
            .max_lifetime(Some(Duration::from_millis(150)))
    });
    let get = || async {
        c.get(uri(addr, "/slow/30"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
    };
    let (a, b) = tokio::join!(get(), get());
    a.unwrap();
    b.unwrap();
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "connection_open",
            "idle_in(i=1)",
            "put_idle_refused(MaxIdlePerHost)",
            "connection_closed(IdleFull,requests=1)",
        ]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.clear();
    c.get(uri(addr, "/"))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        log.names()[..4],
        [
            "request_start",
            "get_conn",
            "idle_out(Expired)",
            "connection_closed(MaxLifetime,requests=1)"
        ]
    );
    let stats = c.pool_stats();
    assert_eq!(stats.total.closed(CloseReason::IdleFull), 1);
    assert_eq!(stats.total.closed(CloseReason::MaxLifetime), 1);
}

#[tokio::test]
async fn a_dial_limit_queues_until_the_dial_ends() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_dials_per_host(1));
    let get = || async {
        c.get(uri(addr, "/slow/20"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
    };
    let (a, b) = tokio::join!(get(), get());
    a.unwrap();
    b.unwrap();
    assert_eq!(
        log.of(2)[..8],
        [
            "request_start",
            "get_conn",
            "limit_hit(DialsPerHost)",
            "queue_enter(DialInProgress;a=0,i=0,c=1,w=1)",
            "queue_exit(NewConnection)",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)",
            "got_conn(Dialled,reused=false,idle=false)",
        ]
    );
    assert_eq!(
        c.pool_stats().total.now.idle,
        2,
        "two connections, dialled one after the other"
    );
    log.assert_balanced();
}

fn post_expecting_continue(u: http::Uri) -> http::Request<Bytes> {
    let mut post = http::Request::new(Bytes::from_static(b"abc"));
    *post.method_mut() = http::Method::POST;
    *post.uri_mut() = u;
    post.headers_mut()
        .insert("expect", http::HeaderValue::from_static("100-continue"));
    post
}

/// The moment an event was emitted (the observer was called), by name, for one request.
fn seen(log: &Log, request: u64, name: &str) -> Instant {
    log.events()
        .into_iter()
        .find(|e| e.request == Some(request) && e.what == name)
        .unwrap_or_else(|| panic!("no {name} for request {request}: {:?}", log.of(request)))
        .seen
}

#[tokio::test]
async fn request_moments_are_emitted_when_they_happen() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    let res = c.get(uri(addr, "/slow/300")).await.unwrap();
    res.into_body().bytes().await.unwrap();
    // The server answers 300 ms after reading the request: the head and body were reported
    // when they were written, not with the response.
    let head = seen(&log, 1, "response_headers(200)");
    for early in ["headers_written", "body_written(0)"] {
        let at = seen(&log, 1, early);
        assert!(
            head.duration_since(at) >= Duration::from_millis(250),
            "{early} emitted only {:?} before the response head",
            head.duration_since(at)
        );
    }
    assert!(seen(&log, 1, "first_response_byte") <= head);
    log.assert_balanced();
}

#[tokio::test]
async fn expect_continue_with_a_server_that_answers_100() {
    let addr = server(true).await;
    let log = Log::default();
    let c = Client::builder()
        .expect_continue_timeout(Duration::from_secs(5))
        .observer((log.clone(), WantsInformational))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = c
        .send(post_expecting_continue(uri(addr, "/")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(&res.into_body().bytes().await.unwrap()[..], b"hello");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the body went on 100 Continue, not on the 5 s timeout"
    );
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &["got_conn(Dialled,reused=false,idle=false)"],
            &[
                "headers_written",
                "continue_wait_start",
                "first_response_byte"
            ],
            &["informational(100)", "continue_wait_end(Continue)"],
            &["body_written(3)", "response_headers(200)"],
            &["response_body_end(5)", "request_end(200)"],
        ])
    );
    // The exchange completed normally: the connection is reused.
    assert_eq!(log.pool(), ["connection_open", "idle_in(i=1)"]);
    log.assert_balanced();
}

#[tokio::test]
async fn expect_continue_with_a_server_that_never_answers_100() {
    let (addr, mut gaps) = expect_server(ExpectMode::Silent).await;
    let log = Log::default();
    let c = client(&log, |b| {
        b.expect_continue_timeout(Duration::from_millis(300))
    });
    let res = c
        .send(post_expecting_continue(uri(addr, "/")))
        .await
        .unwrap();
    assert_eq!(&res.into_body().bytes().await.unwrap()[..], b"ok");
    let gap = gaps.recv().await.unwrap();
    assert!(
        gap >= Duration::from_millis(250),
        "the server got the body {gap:?} after the head: not held back"
    );
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &["got_conn(Dialled,reused=false,idle=false)"],
            &["headers_written", "continue_wait_start"],
            &["continue_wait_end(Timeout)", "body_written(3)"],
            &["first_response_byte", "response_headers(200)"],
            &["response_body_end(2)", "request_end(200)"],
        ])
    );
    let start = seen(&log, 1, "continue_wait_start");
    let end = seen(&log, 1, "continue_wait_end(Timeout)");
    assert!(end.duration_since(start) >= Duration::from_millis(250));
    log.assert_balanced();
}

#[tokio::test]
async fn expect_continue_answered_by_a_final_status() {
    let (addr, _) = expect_server(ExpectMode::Reject).await;
    let log = Log::default();
    let c = client(&log, |b| b.expect_continue_timeout(Duration::from_secs(5)));
    let res = c
        .send(post_expecting_continue(uri(addr, "/")))
        .await
        .unwrap();
    assert_eq!(res.status(), 417);
    res.into_body().bytes().await.unwrap();
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &["got_conn(Dialled,reused=false,idle=false)"],
            &[
                "headers_written",
                "continue_wait_start",
                "first_response_byte"
            ],
            &["continue_wait_end(FinalResponse)", "response_headers(417)"],
            &["response_body_end(0)", "request_end(417)"],
        ])
    );
    // The body went after the final answer: the connection is not trusted again.
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)"
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn dropping_a_request_while_it_waits_for_100_continue() {
    let (addr, _) = expect_server(ExpectMode::Silent).await;
    let log = Log::default();
    let c = client(&log, |b| b.expect_continue_timeout(Duration::from_secs(10)));
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        c.send(post_expecting_continue(uri(addr, "/"))),
    )
    .await;
    assert!(r.is_err(), "timed out while waiting");
    // Nothing of the dropped attempt is reported after its end.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        log.of(1),
        join(&[
            &["request_start", "get_conn"],
            &["connect_start(127.0.0.1)", "connect_done(127.0.0.1)"],
            &["got_conn(Dialled,reused=false,idle=false)"],
            &["headers_written", "continue_wait_start"],
            &["continue_wait_end(Cancelled)", "request_failed(cancelled)"],
        ])
    );
    log.assert_balanced();
}

/// Resolves every name to 127.0.0.1 after a pause, so that requests queue behind the dial.
struct SlowResolver(Duration);

impl httpscope_client::Resolve for SlowResolver {
    fn resolve(&self, _host: &str, port: u16) -> httpscope_client::Resolving {
        let pause = self.0;
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
        })
    }
}

#[tokio::test]
async fn requests_queued_behind_a_refused_dial_fail_with_its_error() {
    let port = closed_port();
    let log = Log::default();
    let c = client(&log, |b| {
        b.max_connections_per_host(1)
            .resolver(SlowResolver(Duration::from_millis(100)))
    });
    let u: http::Uri = format!("http://refused.test:{port}/").parse().unwrap();
    let (a, b, d) = tokio::join!(c.get(u.clone()), c.get(u.clone()), c.get(u.clone()));
    for r in [a, b, d] {
        assert!(matches!(r, Err(Error::Connect(_))), "{r:?}");
    }
    assert_eq!(
        log.of(1),
        [
            "request_start",
            "get_conn",
            "dns_start(refused.test)",
            "dns_done(1)",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)(connect)",
            "request_failed(connect)",
        ]
    );
    for (r, waiting) in [(2, 1), (3, 2)] {
        assert_eq!(
            log.of(r),
            [
                "request_start".to_string(),
                "get_conn".into(),
                "limit_hit(ConnectionsPerHost)".into(),
                format!("queue_enter(PerHostLimit;a=0,i=0,c=1,w={waiting})"),
                "queue_exit(ConnectError)".into(),
                "request_failed(connect)".into(),
            ]
        );
    }
    let stats = c.pool_stats();
    assert_eq!(stats.total.now, Default::default(), "nothing left counted");
    assert_eq!(stats.total.waits, 2);
    log.assert_balanced();
}

/// Resolves to 127.0.0.1 the first time, then fails (after a pause) every time.
struct FlakyResolver(std::sync::atomic::AtomicU32);

impl httpscope_client::Resolve for FlakyResolver {
    fn resolve(&self, _host: &str, port: u16) -> httpscope_client::Resolving {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            if n == 0 {
                return Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("flaky"))
        })
    }
}

#[tokio::test]
async fn a_failed_dial_gives_its_slot_to_a_waiter_while_the_host_has_a_connection() {
    // Connection 1 is busy; request 2's dial fails while request 3 waits behind it. The host
    // still has a connection, so request 3 is not failed with request 2's error: it gets the
    // freed slot and dials itself (and fails on its own).
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| {
        b.max_connections_per_host(2)
            .resolver(FlakyResolver(Default::default()))
    });
    let u = |path: &str| -> http::Uri {
        format!("http://flaky.test:{}{path}", addr.port())
            .parse()
            .unwrap()
    };
    let slow = async {
        c.get(u("/slow/400"))
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap()
    };
    let others = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = c.get(u("/"));
        let third = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.get(u("/")).await
        };
        tokio::join!(second, third)
    };
    let (body, (second, third)) = tokio::join!(slow, others);
    assert_eq!(&body[..], b"slow");
    assert!(matches!(second, Err(Error::Dns(_))), "{second:?}");
    assert!(matches!(third, Err(Error::Dns(_))), "{third:?}");
    assert_eq!(
        log.of(3),
        [
            "request_start",
            "get_conn",
            "limit_hit(ConnectionsPerHost)",
            "queue_enter(PerHostLimit;a=1,i=0,c=1,w=1)",
            "queue_exit(NewConnection)",
            "dns_start(flaky.test)",
            "dns_done(0)(dns)",
            "request_failed(dns)",
        ]
    );
    log.assert_balanced();
}

async fn read(c: &Client<Log>, u: http::Uri) -> Result<Bytes, Error> {
    c.get(u).await?.into_body().bytes().await
}

#[tokio::test]
async fn queueing_on_the_total_limit_until_an_idle_connection_can_be_evicted() {
    let (a, b) = (server(true).await, server(true).await);
    let log = Log::default();
    let c = client(&log, |b| b.max_connections(1));
    let first = read(&c, uri(a, "/slow/200"));
    let second = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        read(&c, uri(b, "/")).await
    };
    let (x, y) = tokio::join!(first, second);
    assert_eq!(&x.unwrap()[..], b"slow");
    assert_eq!(&y.unwrap()[..], b"hello");
    assert_eq!(
        log.of(2)[..6],
        [
            "request_start",
            "get_conn",
            "limit_hit(Connections)",
            "queue_enter(TotalLimit;a=0,i=0,c=0,w=1)",
            "queue_exit(NewConnection)",
            "connect_start(127.0.0.1)",
        ]
    );
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "idle_in(i=1)",
            "idle_out(Evicted)",
            "connection_closed(Evicted,requests=1)",
            "connection_open",
            "idle_in(i=1)",
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server() {
    let addr = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        Duration::from_millis(100),
    )
    .await;
    let log = Log::default();
    let c = client(&log, |b| b);
    assert_eq!(&read(&c, uri(addr, "/")).await.unwrap()[..], b"ok");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "idle_in(i=1)",
            "idle_out(ClosedByPeer)",
            "connection_closed(ClosedByPeer,requests=1)",
        ]
    );
    let stats = c.pool_stats();
    assert_eq!(stats.total.now, Default::default());
    assert_eq!(stats.total.closed(CloseReason::ClosedByPeer), 1);
}

#[tokio::test]
async fn closing_the_pool_closes_idle_and_released_connections() {
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    // Two connections (two requests at once), then one of them busy again.
    let (x, y) = tokio::join!(
        read(&c, uri(addr, "/slow/50")),
        read(&c, uri(addr, "/slow/50"))
    );
    x.unwrap();
    y.unwrap();
    let busy = c.get(uri(addr, "/")).await.unwrap();
    log.clear();
    c.close();
    // The idle connection closes now; the one in use when its body is done.
    assert_eq!(
        log.pool(),
        [
            "idle_out(PoolClosed)",
            "connection_closed(PoolClosed,requests=1)"
        ]
    );
    busy.into_body().bytes().await.unwrap();
    assert_eq!(
        log.pool()[2..],
        ["connection_closed(PoolClosed,requests=2)"]
    );
    assert_eq!(c.pool_stats().total.closed(CloseReason::PoolClosed), 2);
}

#[tokio::test]
async fn the_total_idle_limit_and_the_lifetime_refuse_idle_connections() {
    let (a, b) = (server(true).await, server(true).await);
    let log = Log::default();
    let c = client(&log, |b| {
        b.max_idle(1).max_lifetime(Some(Duration::from_millis(150)))
    });
    read(&c, uri(a, "/")).await.unwrap();
    read(&c, uri(b, "/")).await.unwrap();
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "idle_in(i=1)",
            "connection_open",
            "put_idle_refused(MaxIdle)",
            "connection_closed(IdleFull,requests=1)",
        ]
    );
    // Older than max_lifetime when it comes back: refused as expired.
    log.clear();
    read(&c, uri(b, "/slow/200")).await.unwrap();
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "put_idle_refused(Expired)",
            "connection_closed(MaxLifetime,requests=1)",
        ]
    );
}

#[tokio::test]
async fn a_connect_timeout() {
    let (addr, _filler, _listener) = unanswering_listener().await;
    let log = Log::default();
    let c = client(&log, |b| {
        b.connect_timeout(Some(Duration::from_millis(200)))
    });
    let started = Instant::now();
    let err = c.get(uri(addr, "/")).await.unwrap_err();
    assert!(matches!(err, Error::ConnectTimeout), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        log.of(1),
        [
            "request_start",
            "get_conn",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)(connect_timeout)",
            "request_failed(connect_timeout)",
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn a_response_body_cut_short_by_the_server() {
    let addr = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        Duration::ZERO,
    )
    .await;
    let log = Log::default();
    let c = client(&log, |b| b);
    let err = read(&c, uri(addr, "/")).await.unwrap_err();
    assert!(matches!(err, Error::Http(_)), "{err:?}");
    assert_eq!(
        log.of(1)[5..],
        [
            "headers_written",
            "body_written(0)",
            "first_response_byte",
            "response_headers(200)",
            "response_body_end(3)(http)",
            "request_failed(http)",
        ]
    );
    assert_eq!(
        log.pool(),
        [
            "connection_open",
            "put_idle_refused(NotReusable)",
            "connection_closed(NotReusable,requests=1)",
        ]
    );
    log.assert_balanced();
}

#[tokio::test]
async fn dropping_the_request_during_dns_connect_and_tls() {
    let log = Log::default();
    // During DNS.
    let c = client(&log, |b| b.resolver(SlowResolver(Duration::from_secs(5))));
    let u: http::Uri = "http://slow.test:1/".parse().unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), c.get(u))
        .await
        .is_err());
    assert_eq!(
        log.of(1),
        [
            "request_start",
            "get_conn",
            "dns_start(slow.test)",
            "dns_done(0)(cancelled)",
            "request_failed(cancelled)",
        ]
    );
    assert_eq!(
        c.pool_stats().total.now,
        Default::default(),
        "dial slot freed"
    );
    // During the TCP connect (no connect timeout: only the drop ends it).
    let (addr, _filler, _listener) = unanswering_listener().await;
    let log = Log::default();
    let c = client(&log, |b| b.connect_timeout(None));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), c.get(uri(addr, "/")))
            .await
            .is_err()
    );
    assert_eq!(
        log.of(1),
        [
            "request_start",
            "get_conn",
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)(cancelled)",
            "request_failed(cancelled)",
        ]
    );
    // During the TLS handshake: a server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            keep.push(s);
        }
    });
    let log = Log::default();
    let c = client(&log, |b| {
        b.resolver(StaticResolver::new().with("localhost", &["127.0.0.1".parse().unwrap()]))
    });
    let u: http::Uri = format!("https://localhost:{port}/").parse().unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), c.get(u))
        .await
        .is_err());
    assert_eq!(
        log.of(1)[4..],
        [
            "connect_start(127.0.0.1)",
            "connect_done(127.0.0.1)",
            "tls_start(localhost)",
            "tls_done(-,,false)(cancelled)",
            "request_failed(cancelled)",
        ]
    );
    log.assert_balanced();
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_threaded_runtime_nothing_follows_a_request_end() {
    // Connection tasks and request tasks run on different threads: the socket-side events
    // race with the request's end when requests are dropped, and must still come before it.
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b.max_connections_per_host(4));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60u64 {
        let c = c.clone();
        tasks.spawn(async move {
            let path = if i % 3 == 0 { "/slow/20" } else { "/" };
            // Every third request is dropped at some point of its exchange.
            let limit = Duration::from_micros(if i % 3 == 0 { 100 + i * 300 } else { 5_000_000 });
            let _ = tokio::time::timeout(limit, async {
                c.get(uri(addr, path)).await?.into_body().bytes().await
            })
            .await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let evs = log.events();
    let mut reqs: Vec<u64> = evs.iter().filter_map(|e| e.request).collect();
    reqs.sort();
    reqs.dedup();
    assert_eq!(reqs.len(), 60);
    let names = log.names();
    let count = |p: &str| names.iter().filter(|n| n.starts_with(p)).count();
    assert!(
        count("request_failed(cancelled)") > 0 && count("request_end") > 0,
        "some requests dropped, some finished: {names:?}"
    );
    for r in reqs {
        let names = log.of(r);
        let last = names.last().unwrap();
        assert!(
            last.starts_with("request_end") || last.starts_with("request_failed"),
            "request {r}: {names:?}"
        );
    }
    log.assert_balanced();
}

#[tokio::test]
async fn the_observer_goes_with_the_client() {
    // Connection tasks outlive the client for a moment; they must not keep the observer.
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    read(&c, uri(addr, "/")).await.unwrap();
    let (x, y) = tokio::join!(read(&c, uri(addr, "/slow/20")), read(&c, uri(addr, "/")));
    x.unwrap();
    y.unwrap();
    assert_eq!(
        std::sync::Arc::strong_count(&log.0),
        2,
        "ours and the client's"
    );
    drop(c);
    assert_eq!(
        std::sync::Arc::strong_count(&log.0),
        1,
        "the client's is gone"
    );
}

#[tokio::test]
async fn the_observer_goes_soon_after_the_client_when_a_request_was_dropped_half_way() {
    // The request is dropped after its head was written, while its connection task holds
    // the hooks for the moments still to come; that task lets them go at its next socket
    // call (or its end), a moment after the client goes.
    let addr = server(true).await;
    let log = Log::default();
    let c = client(&log, |b| b);
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        read(&c, uri(addr, "/slow/2000")),
    );
    assert!(r.await.is_err(), "dropped half-way");
    assert!(log.names().iter().any(|n| n == "headers_written"));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::sync::Arc::strong_count(&log.0) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        std::sync::Arc::strong_count(&log.0),
        1,
        "the connection task let the observer go"
    );
    log.assert_balanced();
}

#[tokio::test]
async fn without_an_observer_the_body_still_waits_for_100_continue() {
    let (addr, mut gaps) = expect_server(ExpectMode::Silent).await;
    let c = Client::builder()
        .expect_continue_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let res = c
        .send(post_expecting_continue(uri(addr, "/")))
        .await
        .unwrap();
    assert_eq!(&res.into_body().bytes().await.unwrap()[..], b"ok");
    let gap = gaps.recv().await.unwrap();
    assert!(gap >= Duration::from_millis(250), "body sent after {gap:?}");
    // A server that answers 100: no wait for the timeout.
    let addr = server(true).await;
    let c = Client::builder()
        .expect_continue_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = c
        .send(post_expecting_continue(uri(addr, "/")))
        .await
        .unwrap();
    assert_eq!(&res.into_body().bytes().await.unwrap()[..], b"hello");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// An observer that panics on the socket moments (run in the connection task).
struct PanicsOnTheWire;
impl httpscope_client::Observer for PanicsOnTheWire {
    fn headers_written(&self, _: &httpscope_client::observer::HeadersWritten<'_>) {
        panic!("observer panics on purpose");
    }
}

#[test]
fn a_panicking_observer_fails_its_request_and_does_not_hang_the_runtime() {
    // The panic kills the connection task (tokio catches it); the request must then fail,
    // not wait forever for the tap's emission to end, and the runtime must go on.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(async {
            let addr = server(true).await;
            let c = Client::builder().observer(PanicsOnTheWire).build().unwrap();
            let failed = c.get(uri(addr, "/")).await.is_err();
            // The runtime still serves another (unobserved) client.
            let plain = Client::new();
            let ok = plain.get(uri(addr, "/")).await.is_ok();
            (failed, ok)
        });
        let _ = tx.send(r);
    });
    let (failed, ok) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime hung after an observer panicked");
    assert!(failed, "the request whose connection task panicked fails");
    assert!(ok);
}
