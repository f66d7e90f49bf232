//! A timeline of one request, like `curl -w`: every event as it happens, then the phases.
//!
//!     cargo run -p httpscope-client --example trace -- https://example.com/
//!     cargo run -p httpscope-client --example trace -- http://127.0.0.1:8080/ --times 2
//!
//! With `--times N` the request is repeated on the same client, to show connection reuse.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use httpscope_client::observer::*;
use httpscope_client::{Client, Observer};

/// Prints each event with its offset from the start of its request.
#[derive(Default)]
struct Trace {
    start: Mutex<Option<Instant>>,
}

impl Trace {
    fn line(&self, at: Instant, what: std::fmt::Arguments<'_>) {
        let start = self.start.lock().unwrap().unwrap_or(at);
        let off = at.saturating_duration_since(start);
        println!("{:>10.3} ms  {what}", off.as_secs_f64() * 1e3);
    }
}

fn ms(d: Option<(Instant, Instant)>) -> String {
    d.map(|(a, b)| format!("{:.3} ms", (b - a).as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

fn since(start: Instant, t: Option<Instant>) -> String {
    t.map(|t| format!("{:.3} ms", (t - start).as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

impl Observer for Trace {
    fn request_start(&self, e: &RequestStart<'_>) {
        *self.start.lock().unwrap() = Some(e.at);
        self.line(
            e.at,
            format_args!("request_start  #{} {} {}", e.ids.request.0, e.method, e.uri),
        );
    }
    fn get_conn(&self, e: &GetConn<'_>) {
        self.line(e.at, format_args!("get_conn       {}", e.origin));
    }
    fn queue_enter(&self, e: &QueueEnter<'_>) {
        self.line(
            e.at,
            format_args!("queue_enter    {:?} {:?}", e.reason, e.snapshot.host),
        );
    }
    fn queue_exit(&self, e: &QueueExit<'_>) {
        self.line(
            e.at,
            format_args!("queue_exit     {:?} after {:?}", e.outcome, e.waited),
        );
    }
    fn dns_start(&self, e: &DnsStart<'_>) {
        self.line(e.at, format_args!("dns_start      {}", e.host));
    }
    fn dns_done(&self, e: &DnsDone<'_>) {
        match e.error {
            Some(err) => self.line(e.at, format_args!("dns_done       error: {err}")),
            None => self.line(e.at, format_args!("dns_done       {:?}", e.addrs)),
        }
    }
    fn connect_start(&self, e: &ConnectStart<'_>) {
        self.line(e.at, format_args!("connect_start  {}", e.addr));
    }
    fn connect_done(&self, e: &ConnectDone<'_>) {
        match e.error {
            Some(err) => self.line(e.at, format_args!("connect_done   {} error: {err}", e.addr)),
            None => self.line(
                e.at,
                format_args!("connect_done   {} from {:?}", e.addr, e.local),
            ),
        }
    }
    fn tls_start(&self, e: &TlsStart<'_>) {
        self.line(e.at, format_args!("tls_start      {}", e.server_name));
    }
    fn tls_done(&self, e: &TlsDone<'_>) {
        let alpn = e.alpn.map(String::from_utf8_lossy);
        match e.error {
            Some(err) => self.line(e.at, format_args!("tls_done       error: {err}")),
            None => self.line(
                e.at,
                format_args!(
                    "tls_done       {:?} {:?} alpn={:?}",
                    e.version, e.cipher, alpn
                ),
            ),
        }
    }
    fn got_conn(&self, e: &GotConn<'_>) {
        self.line(
            e.at,
            format_args!(
                "got_conn       #{} {:?} reused={} idle={:?}",
                e.ids.connection.map_or(0, |c| c.0),
                e.origin,
                e.reused,
                e.idle_time
            ),
        );
    }
    fn headers_written(&self, e: &HeadersWritten<'_>) {
        self.line(e.at, format_args!("headers_written"));
    }
    fn body_written(&self, e: &BodyWritten<'_>) {
        self.line(e.at, format_args!("body_written   {} bytes", e.bytes));
    }
    fn continue_wait_start(&self, e: &ContinueWaitStart<'_>) {
        self.line(e.at, format_args!("waiting for 100-continue"));
    }
    fn continue_wait_end(&self, e: &ContinueWaitEnd<'_>) {
        self.line(
            e.at,
            format_args!(
                "100-continue wait ended: {:?} after {:?}",
                e.outcome, e.waited
            ),
        );
    }
    fn first_response_byte(&self, e: &FirstResponseByte<'_>) {
        self.line(e.at, format_args!("first_byte"));
    }
    fn response_headers(&self, e: &ResponseHeaders<'_>) {
        self.line(
            e.at,
            format_args!("response_head  {} {:?}", e.status, e.version),
        );
    }
    fn response_body_end(&self, e: &ResponseBodyEnd<'_>) {
        self.line(
            e.at,
            format_args!(
                "body_end       {} bytes {:?}",
                e.bytes,
                e.error.map(|e| e.kind())
            ),
        );
    }
    fn idle_in(&self, e: &IdleIn<'_>) {
        self.line(e.at, format_args!("idle_in        #{}", e.connection.0));
    }
    fn idle_out(&self, e: &IdleOut<'_>) {
        self.line(
            e.at,
            format_args!("idle_out       #{} {:?}", e.connection.0, e.reason),
        );
    }
    fn put_idle_refused(&self, e: &PutIdleRefused<'_>) {
        self.line(
            e.at,
            format_args!("put_idle_refused #{} {:?}", e.connection.0, e.reason),
        );
    }
    fn connection_closed(&self, e: &ConnectionClosed<'_>) {
        self.line(
            e.at,
            format_args!("conn_closed    #{} {:?}", e.connection.0, e.reason),
        );
    }
    fn request_retry(&self, e: &RequestRetry<'_>) {
        self.line(
            e.at,
            format_args!(
                "retry          attempt {} failed: {}",
                e.ids.attempt, e.error
            ),
        );
    }
    fn request_failed(&self, e: &RequestFailed<'_>) {
        self.line(e.at, format_args!("request_failed {}", e.error));
    }
    fn request_end(&self, e: &RequestEnd<'_>) {
        self.line(e.at, format_args!("request_end    {:?}", e.summary.status));
        let t = e.summary.timeline;
        let Some(start) = t.start else { return };
        println!();
        println!("       queue: {}", ms(t.queue));
        println!("  namelookup: {}", ms(t.dns));
        println!("     connect: {}", ms(t.connect));
        println!("  appconnect: {}", ms(t.tls));
        println!("    got_conn: {}", since(start, t.got_conn));
        println!(" pretransfer: {}", since(start, t.headers_written));
        println!("starttransfer: {}", since(start, t.first_byte));
        println!("       total: {}", since(start, Some(e.at)));
        println!(
            "      reused: {}  sent {} B  received {} B  {:?} -> {:?}",
            e.summary.reused,
            e.summary.request_bytes,
            e.summary.response_bytes,
            e.summary.local,
            e.summary.peer
        );
        println!();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: trace URL [--times N]");
        std::process::exit(2);
    };
    let times: u32 = match (args.next().as_deref(), args.next()) {
        (Some("--times"), Some(n)) => n.parse().unwrap_or(1),
        _ => 1,
    };
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("bad url: {e}");
            std::process::exit(2);
        }
    };
    let client = Client::builder()
        .observer(Trace::default())
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .expect("client");
    for _ in 0..times {
        match client.get(uri.clone()).await {
            Ok(res) => {
                if let Err(e) = res.into_body().bytes().await {
                    eprintln!("body failed: {e}");
                }
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
