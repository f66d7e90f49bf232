//! Property: however a valid conversation is cut into chunks, the parser reports the same
//! transactions, and they are the ones the conversation was generated from.

mod common;

use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum BodyKind {
    None,
    Length(usize),
    /// Chunk sizes; with an extension on each size line and a trailer when `true`.
    Chunked(Vec<usize>, bool),
}

#[derive(Clone, Debug)]
struct Exchange {
    method: &'static str,
    path: String,
    request_body: BodyKind,
    continue_first: bool,
    status: u16,
    response_body: BodyKind,
}

fn body_kind() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::None),
        (0usize..3000).prop_map(BodyKind::Length),
        (prop::collection::vec(1usize..700, 0..4), any::<bool>())
            .prop_map(|(c, x)| BodyKind::Chunked(c, x)),
    ]
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS",
        ]),
        "/[a-z0-9]{0,8}(/[a-z]{1,5}){0,3}",
        body_kind(),
        any::<bool>(),
        prop::sample::select(vec![200u16, 201, 204, 301, 304, 404, 418, 500, 503]),
        body_kind(),
    )
        .prop_map(
            |(method, path, request_body, continue_first, status, response_body)| Exchange {
                method,
                path,
                request_body,
                continue_first,
                status,
                response_body,
            },
        )
}

/// Appends the framing headers and the body; returns the body's wire length. A response
/// without a body says `Content-Length: 0`, except the last one, which is delimited by the
/// connection's close and carries a few bytes.
fn body(out: &mut Vec<u8>, kind: &BodyKind, fill: u8, response: Option<bool>) -> u64 {
    let start;
    match (kind, response) {
        (BodyKind::None, None) => {
            out.extend_from_slice(b"\r\n");
            return 0;
        }
        (BodyKind::None, Some(false)) => {
            out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            return 0;
        }
        (BodyKind::None, Some(true)) => {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&[fill; 17]);
            return 17;
        }
        (BodyKind::Length(n), _) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
            start = out.len();
            out.extend(std::iter::repeat_n(fill, *n));
        }
        (BodyKind::Chunked(sizes, extras), _) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            start = out.len();
            for &n in sizes {
                let ext = if *extras { ";name=\"v;x\"" } else { "" };
                out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                out.extend(std::iter::repeat_n(fill, n));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            if *extras {
                out.extend_from_slice(b"X-Trailer: yes\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    (out.len() - start) as u64
}

/// The conversation as (from client, bytes) messages, and the rows it must produce.
fn render(exchanges: &[Exchange]) -> (Vec<(bool, Vec<u8>)>, Vec<Row>) {
    let mut msgs = Vec::new();
    let mut want = Vec::new();
    for (i, x) in exchanges.iter().enumerate() {
        let last = i + 1 == exchanges.len();
        let mut req =
            format!("{} {}?secret=1 HTTP/1.1\r\nHost: h\r\n", x.method, x.path).into_bytes();
        if x.continue_first {
            req.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        let req_bytes = body(&mut req, &x.request_body, b'q', None);
        msgs.push((true, req));
        if x.continue_first {
            msgs.push((false, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()));
        }
        let mut resp = format!("HTTP/1.1 {} X\r\nServer: t\r\n", x.status).into_bytes();
        let bodyless = x.method == "HEAD" || x.status == 204 || x.status == 304;
        let resp_bytes = if bodyless {
            // Bodyless responses may still declare a length (HEAD, 304).
            resp.extend_from_slice(b"Content-Length: 42\r\n\r\n");
            0
        } else {
            body(&mut resp, &x.response_body, b'r', Some(last))
        };
        msgs.push((false, resp));
        want.push((
            Some(x.method),
            x.path.clone(),
            Some(x.status),
            req_bytes,
            resp_bytes,
            false,
        ));
    }
    (msgs, want)
}

fn steps_of(msgs: &[(bool, Vec<u8>)], cuts: &[usize]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut cut = cuts.iter().cycle();
    for (i, (client, bytes)) in msgs.iter().enumerate() {
        let ts = i as u64 + 1;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (cut.next().copied().unwrap_or(usize::MAX)).clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            steps.push(if *client { c(ts, piece) } else { s(ts, piece) });
            rest = tail;
        }
    }
    steps.push(Step::Close(msgs.len() as u64 + 1));
    steps
}

/// Joins the conversation mid-stream: drops the first `cut_c` client bytes and `cut_s`
/// server bytes. Returns the steps and, per exchange, whether its request and its response
/// head were kept whole.
fn steps_after_cuts(
    msgs: &[(bool, Vec<u8>)],
    cut_c: usize,
    cut_s: usize,
) -> (Vec<Step>, Vec<(bool, bool)>) {
    let mut steps = Vec::new();
    let mut kept = Vec::new();
    let (mut off_c, mut off_s) = (0usize, 0usize);
    for (i, (client, bytes)) in msgs.iter().enumerate() {
        let ts = i as u64 + 1;
        let (off, cut) = if *client {
            (&mut off_c, cut_c)
        } else {
            (&mut off_s, cut_s)
        };
        let skip = cut.saturating_sub(*off).min(bytes.len());
        let whole = skip == 0;
        *off += bytes.len();
        if skip < bytes.len() {
            let piece = &bytes[skip..];
            steps.push(if *client { c(ts, piece) } else { s(ts, piece) });
        }
        let is_informational = !*client && bytes.starts_with(b"HTTP/1.1 100 ");
        if *client {
            kept.push((whole, false));
        } else if !is_informational {
            kept.last_mut().expect("a request precedes its response").1 = whole;
        }
    }
    steps.push(Step::Close(msgs.len() as u64 + 1));
    (steps, kept)
}

/// 400 cases by default; `PROPTEST_CASES=N` for a longer run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn joining_mid_stream_reports_every_whole_exchange_after_the_cuts(
        exchanges in prop::collection::vec(exchange(), 1..8),
        cut_c in 0usize..6000,
        cut_s in 0usize..12000,
    ) {
        let exchanges: Vec<Exchange> = exchanges
            .into_iter()
            .map(|mut x| { if x.path.is_empty() { x.path = "/".into(); } x })
            .collect();
        let (msgs, want) = render(&exchanges);
        let (steps, kept) = steps_after_cuts(&msgs, cut_c, cut_s);
        let (txs, _) = run_mid(&steps);
        let complete: Vec<Row> = rows(&txs).into_iter().filter(|r| !r.5).collect();
        let expected: Vec<Row> = want
            .into_iter()
            .zip(&kept)
            .filter(|(_, &(req, resp))| req && resp)
            .map(|(row, _)| row)
            .collect();
        prop_assert_eq!(complete, expected);
    }

    #[test]
    fn any_split_gives_the_same_transactions(
        exchanges in prop::collection::vec(exchange(), 1..6),
        cuts in prop::collection::vec(1usize..200, 1..40),
    ) {
        let exchanges: Vec<Exchange> = exchanges
            .into_iter()
            .map(|mut x| { if x.path.is_empty() { x.path = "/".into(); } x })
            .collect();
        let (msgs, want) = render(&exchanges);
        let whole = steps_of(&msgs, &[usize::MAX]);
        let split = steps_of(&msgs, &cuts);
        let (a, sa) = run(&whole);
        let (b, sb) = run(&split);
        prop_assert_eq!(rows(&a), want);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(sa.errors.total() + sb.errors.total(), 0);
    }

    #[test]
    fn pipelined_any_split_gives_the_same_transactions(
        exchanges in prop::collection::vec(exchange(), 1..6),
        cuts in prop::collection::vec(1usize..300, 1..40),
    ) {
        // All requests first (no 100-continue: a pipelining client does not wait), then
        // all responses.
        let exchanges: Vec<Exchange> = exchanges
            .into_iter()
            .map(|mut x| { x.continue_first = false; if x.path.is_empty() { x.path = "/".into(); } x })
            .collect();
        let (msgs, want) = render(&exchanges);
        let mut requests: Vec<u8> = Vec::new();
        let mut responses: Vec<u8> = Vec::new();
        for (client, bytes) in &msgs {
            if *client { requests.extend_from_slice(bytes) } else { responses.extend_from_slice(bytes) }
        }
        let msgs = vec![(true, requests), (false, responses)];
        let (a, _) = run(&steps_of(&msgs, &[usize::MAX]));
        let (b, sb) = run(&steps_of(&msgs, &cuts));
        prop_assert_eq!(rows(&a), want);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(sb.errors.total(), 0);
    }
}
