//! Servers on 127.0.0.1 started by the tests, and an observer that logs every event.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use httpscope_client::observer::*;
use httpscope_client::Observer;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Routes: `/` → "hello"; `/slow/MS` → "slow" after MS ms; `/drip` → one chunk, then
/// another after 2 s; `/close` → "bye" with `Connection: close`.
async fn handle(req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Ok(Response::new(
            Full::new(Bytes::from_static(b"slow")).boxed(),
        ));
    }
    if path == "/drip" {
        let stream = futures_lite_stream();
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if path == "/close" {
        return Ok(Response::builder()
            .header("connection", "close")
            .body(Full::new(Bytes::from_static(b"bye")).boxed())
            .unwrap());
    }
    Ok(Response::new(
        Full::new(Bytes::from_static(b"hello")).boxed(),
    ))
}

/// A two-chunk body with a pause, without pulling in a stream crate.
fn futures_lite_stream(
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    struct Drip(u8, Option<Pin<Box<tokio::time::Sleep>>>);
    use std::pin::Pin;
    use std::task::{Context, Poll};
    impl futures_core::Stream for Drip {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.0 {
                0 => {
                    self.0 = 1;
                    self.1 = Some(Box::pin(tokio::time::sleep(Duration::from_secs(2))));
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
                }
                1 => match self.1.as_mut().unwrap().as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.0 = 2;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"second")))))
                    }
                },
                _ => Poll::Ready(None),
            }
        }
    }
    use std::future::Future;
    Drip(0, None)
}

/// Starts the hyper server on 127.0.0.1; `keep_alive: false` closes every connection after
/// its first response. The server stops when the test's runtime ends.
pub async fn server(keep_alive: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
    addr
}

/// A TLS server for `localhost` with a certificate generated now; returns its address and
/// the certificate (DER) to trust.
pub async fn tls_server() -> (SocketAddr, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone().into()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(handle))
                    .await;
            });
        }
    });
    (addr, der)
}

/// A raw server whose first connection answers one request with keep-alive, then reads the
/// next request and closes without answering: a reused connection that turns out dead.
/// Later connections answer normally.
pub async fn dying_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let die = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    // Requests here are small GETs: one read is one request head.
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(resp).await.is_err() {
                        return;
                    }
                    if die {
                        let _ = tcp.read(&mut buf).await;
                        return; // drops the socket without answering
                    }
                }
            });
        }
    });
    addr
}

/// How [`expect_server`] answers a request with `Expect: 100-continue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectMode {
    /// Never sends `100 Continue`: waits for the body, then answers 200 "ok".
    Silent,
    /// Answers `417 Expectation Failed` right after the head, without reading the body.
    Reject,
}

/// A raw HTTP/1.1 server for one connection that does not send `100 Continue` (unlike
/// hyper's server, which sends it when the body is first read). For `Silent`, the returned
/// channel gets the time between the end of the request head and the body's arrival.
pub async fn expect_server(
    mode: ExpectMode,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Duration>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
        };
        let head_at = Instant::now();
        if mode == ExpectMode::Reject {
            let _ = tcp
                .write_all(b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n")
                .await;
            // Keep reading (the client may still send the body) until it closes.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Ok(n) = tcp.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            return;
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut have = buf.len() - head_end;
        while have < len {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        }
        let _ = tx.send(head_at.elapsed());
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await;
    });
    (addr, rx)
}

/// A raw server: on each connection, reads one request head, writes `answer`, waits
/// `close_after`, and closes the connection.
pub async fn raw_server(answer: &'static [u8], close_after: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // Requests here are small GETs: one read is one request head.
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let _ = tcp.write_all(answer).await;
                tokio::time::sleep(close_after).await;
            });
        }
    });
    addr
}

/// A listener on 127.0.0.1 that never accepts, with its accept queue filled: a TCP connect
/// to it gets no answer (the kernel drops the SYN), so only a connect timeout ends it.
/// Returns its address and what must stay alive.
pub async fn unanswering_listener() -> (
    SocketAddr,
    Vec<tokio::net::TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut filler = Vec::new();
    // Backlog 0 holds one or two connections; the ones after them hang.
    for _ in 0..4 {
        match tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => filler.push(s),
            _ => break,
        }
    }
    (addr, filler, listener)
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One logged event.
#[derive(Clone, Debug)]
pub struct Ev {
    pub at: Instant,
    /// When the observer was called (to show that an event is emitted when it happens).
    pub seen: Instant,
    pub request: Option<u64>,
    pub connection: Option<u64>,
    pub attempt: Option<u32>,
    pub what: String,
}

/// Logs every event as a short string.
#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Ev>>>);

impl Log {
    pub fn events(&self) -> Vec<Ev> {
        self.0.lock().unwrap().clone()
    }

    /// The event names of one request, in order.
    pub fn of(&self, request: u64) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.request == Some(request))
            .map(|e| e.what)
            .collect()
    }

    /// Names of events that belong to no request (pool events), in order.
    pub fn pool(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.request.is_none())
            .map(|e| e.what)
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.what).collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear()
    }

    fn push(&self, at: Instant, ids: Option<Ids>, connection: Option<ConnectionId>, what: String) {
        self.0.lock().unwrap().push(Ev {
            at,
            seen: Instant::now(),
            request: ids.map(|i| i.request.0),
            connection: connection.or(ids.and_then(|i| i.connection)).map(|c| c.0),
            attempt: ids.map(|i| i.attempt),
            what,
        });
    }

    /// Every `_start` has exactly one end, per request.
    pub fn assert_balanced(&self) {
        let evs = self.events();
        let mut reqs: Vec<u64> = evs.iter().filter_map(|e| e.request).collect();
        reqs.sort();
        reqs.dedup();
        for r in reqs {
            let names: Vec<String> = self.of(r);
            let count = |p: &str| names.iter().filter(|n| n.starts_with(p)).count();
            assert_eq!(count("request_start"), 1, "request {r}: {names:?}");
            assert_eq!(
                count("request_end") + count("request_failed"),
                1,
                "request {r}: {names:?}"
            );
            for (s, e) in [
                ("queue_enter", "queue_exit"),
                ("dns_start", "dns_done"),
                ("connect_start", "connect_done"),
                ("tls_start", "tls_done"),
                ("continue_wait_start", "continue_wait_end"),
            ] {
                assert_eq!(count(s), count(e), "request {r}: {s}/{e} in {names:?}");
            }
        }
    }
}

fn err(e: Option<&httpscope_client::Error>) -> String {
    e.map(|e| format!("({})", e.kind())).unwrap_or_default()
}

impl Observer for Log {
    fn request_start(&self, e: &RequestStart<'_>) {
        self.push(e.at, Some(e.ids), None, "request_start".into())
    }
    fn request_end(&self, e: &RequestEnd<'_>) {
        let s = e.summary.status.map(|s| s.as_u16()).unwrap_or(0);
        self.push(e.at, Some(e.ids), None, format!("request_end({s})"))
    }
    fn request_failed(&self, e: &RequestFailed<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("request_failed({})", e.error.kind()),
        )
    }
    fn request_retry(&self, e: &RequestRetry<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("request_retry({})", e.error.kind()),
        )
    }
    fn headers_written(&self, e: &HeadersWritten<'_>) {
        self.push(e.at, Some(e.ids), None, "headers_written".into())
    }
    fn body_written(&self, e: &BodyWritten<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("body_written({})", e.bytes),
        )
    }
    fn continue_wait_start(&self, e: &ContinueWaitStart<'_>) {
        self.push(e.at, Some(e.ids), None, "continue_wait_start".into())
    }
    fn continue_wait_end(&self, e: &ContinueWaitEnd<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("continue_wait_end({:?})", e.outcome),
        )
    }
    fn informational(&self, e: &Informational<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("informational({})", e.status.as_u16()),
        )
    }
    fn first_response_byte(&self, e: &FirstResponseByte<'_>) {
        self.push(e.at, Some(e.ids), None, "first_response_byte".into())
    }
    fn response_headers(&self, e: &ResponseHeaders<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("response_headers({})", e.status.as_u16()),
        )
    }
    fn response_body_end(&self, e: &ResponseBodyEnd<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("response_body_end({}){}", e.bytes, err(e.error)),
        )
    }
    fn get_conn(&self, e: &GetConn<'_>) {
        self.push(e.at, Some(e.ids), None, "get_conn".into())
    }
    fn queue_enter(&self, e: &QueueEnter<'_>) {
        let h = e.snapshot.host;
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!(
                "queue_enter({:?};a={},i={},c={},w={})",
                e.reason, h.active, h.idle, h.connecting, h.waiting
            ),
        )
    }
    fn queue_exit(&self, e: &QueueExit<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("queue_exit({:?})", e.outcome),
        )
    }
    fn got_conn(&self, e: &GotConn<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!(
                "got_conn({:?},reused={},idle={})",
                e.origin, e.reused, e.was_idle
            ),
        )
    }
    fn dns_start(&self, e: &DnsStart<'_>) {
        self.push(e.at, Some(e.ids), None, format!("dns_start({})", e.host))
    }
    fn dns_done(&self, e: &DnsDone<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("dns_done({}){}", e.addrs.len(), err(e.error)),
        )
    }
    fn connect_start(&self, e: &ConnectStart<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("connect_start({})", e.addr.ip()),
        )
    }
    fn connect_done(&self, e: &ConnectDone<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("connect_done({}){}", e.addr.ip(), err(e.error)),
        )
    }
    fn tls_start(&self, e: &TlsStart<'_>) {
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!("tls_start({})", e.server_name),
        )
    }
    fn tls_done(&self, e: &TlsDone<'_>) {
        let alpn = e
            .alpn
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        self.push(
            e.at,
            Some(e.ids),
            None,
            format!(
                "tls_done({},{alpn},{}){}",
                e.version.unwrap_or("-"),
                e.cipher.is_some(),
                err(e.error)
            ),
        )
    }
    fn connection_open(&self, e: &ConnectionOpen<'_>) {
        self.push(e.at, None, Some(e.connection), "connection_open".into())
    }
    fn idle_in(&self, e: &IdleIn<'_>) {
        self.push(
            e.at,
            None,
            Some(e.connection),
            format!("idle_in(i={})", e.snapshot.host.idle),
        )
    }
    fn idle_out(&self, e: &IdleOut<'_>) {
        let ids = e.request.map(|r| Ids {
            request: r,
            connection: Some(e.connection),
            attempt: 0,
        });
        // Logged with the request that took it (if any), as part of its sequence.
        self.push(
            e.at,
            ids,
            Some(e.connection),
            format!("idle_out({:?})", e.reason),
        )
    }
    fn put_idle_refused(&self, e: &PutIdleRefused<'_>) {
        self.push(
            e.at,
            None,
            Some(e.connection),
            format!("put_idle_refused({:?})", e.reason),
        )
    }
    fn limit_hit(&self, e: &LimitHit<'_>) {
        self.push(e.at, Some(e.ids), None, format!("limit_hit({:?})", e.limit))
    }
    fn connection_closed(&self, e: &ConnectionClosed<'_>) {
        self.push(
            e.at,
            None,
            Some(e.connection),
            format!("connection_closed({:?},requests={})", e.reason, e.requests),
        )
    }
}

/// `Vec<String>` from string literals.
#[macro_export]
macro_rules! seq {
    ($($s:expr),* $(,)?) => { vec![$($s.to_string()),*] };
}
