//! Helpers shared by the exporter tests.
#![allow(dead_code)]

use httpscope_model::batch::Batch;
use httpscope_model::{Method, Side, Source, Transaction};

/// 30 server-side GETs on `/users/{n}` (27 × 200 at 2 ms, 3 × 500 at 40 ms), 10 client-side
/// POSTs on `/orders` (201 at 300 ms), and 2 malformed.
pub fn batch() -> Batch {
    let mut b = Batch::new(Source::Packet);
    let server = Some("127.0.0.1:8080".parse().unwrap());
    for i in 0..30u64 {
        let (status, ms) = if i % 10 == 9 { (500, 40) } else { (200, 2) };
        b.transactions.push(Transaction {
            method: Some(Method::Get),
            path: format!("/users/{i}").into(),
            status: Some(status),
            start_ns: 1_000,
            end_ns: 1_000 + ms * 1_000_000,
            response_bytes: 100,
            server,
            ..Transaction::default()
        });
    }
    for _ in 0..10 {
        b.transactions.push(Transaction {
            method: Some(Method::Post),
            path: "/orders".into(),
            status: Some(201),
            start_ns: 0,
            end_ns: 300_000_000,
            request_bytes: 50,
            server,
            side: Some(Side::Client),
            ..Transaction::default()
        });
    }
    for _ in 0..2 {
        b.transactions.push(Transaction {
            method: Some(Method::Get),
            path: String::new().into(),
            status: Some(200),
            start_ns: 0,
            end_ns: 5,
            ..Transaction::default()
        });
    }
    b.stats.events = 123;
    b
}

/// A blocking HTTP/1.0 GET; returns (status, body).
pub fn http_get(
    addr: std::net::SocketAddr,
    path_and_query: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Percent-encodes a query value.
pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
