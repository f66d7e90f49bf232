//! A fixed amount of parsing for instruction-count profiling, where criterion's repetitions
//! would only add noise: `valgrind --tool=callgrind target/release/examples/parse_loop small 100000`.
//!
//! Workloads: `small` (wrk's GET and nginx's 20-byte answer, as in the `parse` bench) and
//! `browser` (a 300-byte browser request and a 250-byte API response), `cookie` (the browser
//! exchange with a 4 KiB cookie: long header lines). Each run feeds that
//! many exchanges through one connection and drops the transactions in batches of 1,000, as a
//! source does after handing a batch to the monitor.

use httpscope_http::{Config, ConnMeta, Connection, Direction, Output};
use httpscope_model::ConnTuple;

const SMALL_REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const SMALL_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 03:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 20\r\n\
Connection: keep-alive\r\n\r\n<html>small</html>\r\n";

const REQUEST: &[u8] = b"GET /api/v1/users/12345/profile?fields=name,email HTTP/1.1\r\n\
Host: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\n\
Cookie: session=abcdef0123456789; theme=dark\r\nConnection: keep-alive\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 22 Nov 2026 03:00:00 GMT\r\nContent-Type: application/json\r\n\
Content-Length: 49\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\n\r\n\
{\"id\":12345,\"name\":\"Ada\",\"email\":\"a@example.com\"}";

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "small".into());
    let n: u64 = args.next().map_or(100_000, |s| s.parse().expect("a count"));
    let cookie = [
        &REQUEST[..REQUEST.len() - 2],
        b"Cookie: ",
        &[b'x'; 4096],
        b"\r\n\r\n",
    ]
    .concat();
    let (req, resp) = match which.as_str() {
        "small" => (SMALL_REQUEST, SMALL_RESPONSE),
        "browser" => (REQUEST, RESPONSE),
        "cookie" => (&cookie[..], RESPONSE),
        other => panic!("unknown workload {other}: small, browser or cookie"),
    };
    let tuple = ConnTuple::new(
        "10.0.0.1:50000".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    );
    let cfg = Config::default();
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let mut conn = Connection::new(tuple, meta, &cfg);
    let mut out = Output::default();
    let mut seen = 0u64;
    for i in 0..n {
        conn.feed(
            Direction::Forward,
            2 * i,
            std::hint::black_box(req),
            &mut out,
        );
        conn.feed(
            Direction::Reverse,
            2 * i + 1,
            std::hint::black_box(resp),
            &mut out,
        );
        if out.transactions.len() >= 1000 {
            seen += out.transactions.len() as u64;
            out.transactions.clear();
        }
    }
    conn.close(2 * n, &mut out);
    seen += out.transactions.len() as u64;
    assert_eq!(seen, n, "one transaction per exchange");
    assert_eq!(out.stats.errors.total(), 0);
    println!("{which}: {seen} transactions");
}
