//! One table test per behaviour the parser promises (issue "Foundation", part 4).

mod common;

use common::*;
use httpscope_http::{
    Config, ConnMeta, Connection, Direction, Endpoint, HeadBudget, Output, Protocol,
};
use httpscope_model::telemetry::ParseError;
use httpscope_model::{HttpVersion, Side, Source};

const GET: &str = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const OK5: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn keep_alive_sequence_with_timings_and_addresses() {
    let (txs, stats) = run(&[
        c(100, GET),
        s(250, OK5),
        c(300, "GET /b HTTP/1.1\r\n\r\n"),
        s(400, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(
        rows(&txs),
        vec![row("GET", "/a", 200, 0, 5), row("GET", "/b", 404, 0, 0)]
    );
    assert_eq!(
        (txs[0].start_ns, txs[0].end_ns, txs[0].duration_ns()),
        (100, 250, 150)
    );
    assert_eq!((txs[1].start_ns, txs[1].end_ns), (300, 400));
    assert_eq!(txs[0].client, Some(CLIENT.parse().unwrap()));
    assert_eq!(txs[0].server, Some(SERVER.parse().unwrap()));
    assert_eq!(txs[0].version, Some(HttpVersion::Http11));
    assert_eq!(txs[0].source, Source::Packet);
    assert_eq!(
        (
            stats.requests,
            stats.responses,
            stats.transactions,
            stats.incomplete
        ),
        (2, 2, 2, 0)
    );
    assert_eq!(stats.http1_connections, 1);
    assert_eq!(stats.errors.total(), 0);
}

#[test]
fn heads_split_at_every_byte() {
    let req = "POST /split?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    let resp = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Long: aaaaaaaaaaaa\r\n\r\nok";
    for at in 0..=req.len() {
        for rat in [0, 1, 9, 17, resp.len() - 3, resp.len()] {
            let (txs, stats) = run(&[
                c(1, &req[..at]),
                c(2, &req[at..]),
                s(3, &resp[..rat]),
                s(4, &resp[rat..]),
            ]);
            assert_eq!(
                rows(&txs),
                vec![row("POST", "/split", 201, 3, 2)],
                "split {at}/{rat}"
            );
            let first = if at == 0 { 2 } else { 1 };
            assert_eq!(
                txs[0].start_ns, first,
                "start is the chunk with the first byte"
            );
            // The response ends in the last chunk that carried bytes.
            assert_eq!(txs[0].end_ns, if rat == resp.len() { 3 } else { 4 });
            assert_eq!(stats.errors.total(), 0);
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let conversation = [
        (true, GET),
        (false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
        (true, "PUT /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        (false, OK5),
    ];
    let mut steps = Vec::new();
    let mut ts = 0;
    for (client, text) in conversation {
        for b in text.as_bytes() {
            ts += 1;
            steps.push(if client { c(ts, [*b]) } else { s(ts, [*b]) });
        }
    }
    let (txs, stats) = run(&steps);
    assert_eq!(
        rows(&txs),
        vec![row("GET", "/a", 200, 0, 23), row("PUT", "/p", 200, 2, 5)]
    );
    assert_eq!(stats.errors.total(), 0);
}

#[test]
fn head_size_limit_counts_and_resynchronises() {
    let cfg = Config {
        max_head_bytes: 1024,
        ..Config::default()
    };
    let huge = format!("GET /big HTTP/1.1\r\nX-Fill: {}\r\n\r\n", "a".repeat(4000));
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    // Once as one chunk, once in small pieces: neither may buffer past the limit.
    for pieces in [1usize, 50] {
        let mut steps = Vec::new();
        for part in huge.as_bytes().chunks(huge.len().div_ceil(pieces)) {
            steps.push(c(1, part));
        }
        steps.push(s(2, "HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n"));
        steps.push(c(3, GET));
        steps.push(s(4, OK5));
        let (txs, stats, _) = run_with(&cfg, meta.clone(), &steps);
        assert_eq!(
            stats.errors.get(ParseError::HeadTooLarge),
            1,
            "pieces {pieces}"
        );
        // The 431 answers a request we could not read: it is reported without a request,
        // and the next exchange pairs correctly.
        assert_eq!(
            rows(&txs),
            vec![
                (None, String::new(), Some(431), 0, 0, true),
                row("GET", "/a", 200, 0, 5)
            ],
            "pieces {pieces}"
        );
    }
}

#[test]
fn pipelined_requests_pair_in_order() {
    let reqs = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET /4 HTTP/1.1\r\n\r\n";
    let resps = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 201 OK\r\nContent-Length: 2\r\n\r\nBBHTTP/1.1 202 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nC\r\n0\r\n\r\nHTTP/1.1 203 OK\r\nContent-Length: 0\r\n\r\n";
    let (txs, stats) = run(&[c(1, reqs), s(5, &resps[..60]), s(6, &resps[60..])]);
    assert_eq!(
        rows(&txs),
        vec![
            row("GET", "/1", 200, 0, 1),
            row("GET", "/2", 201, 0, 2),
            row("POST", "/3", 202, 4, 11),
            row("GET", "/4", 203, 0, 0),
        ]
    );
    assert_eq!(stats.requests, 4);
    assert_eq!(txs[0].end_ns, 5);
    assert_eq!(txs[3].end_ns, 6);
}

#[test]
fn pipeline_limit_emits_oldest_as_incomplete() {
    let cfg = Config {
        max_in_flight: 2,
        ..Config::default()
    };
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let reqs = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
    let (txs, stats, _) = run_with(&cfg, meta, &[c(1, reqs), s(2, OK5)]);
    assert_eq!(stats.pipeline_overflow, 1);
    assert_eq!(rows(&txs)[0], (Some("GET"), "/1".into(), None, 0, 0, true));
    assert_eq!(rows(&txs)[1], row("GET", "/2", 200, 0, 5));
}

#[test]
fn content_length_bodies_both_ways() {
    let body = vec![b'x'; 100_000];
    let mut req = b"POST /upload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    resp.extend_from_slice(&body);
    let mut steps = Vec::new();
    for (i, part) in req.chunks(1460).enumerate() {
        steps.push(c(i as u64, part));
    }
    for (i, part) in resp.chunks(1460).enumerate() {
        steps.push(s(1000 + i as u64, part));
    }
    let (txs, _) = run(&steps);
    assert_eq!(
        rows(&txs),
        vec![row("POST", "/upload", 200, 100_000, 100_000)]
    );
    assert_eq!(txs[0].end_ns, 1000 + (resp.len() as u64).div_ceil(1460) - 1);
}

#[test]
fn chunked_with_extensions_and_trailers_both_ways() {
    let req = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n";
    let resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;a=\"q;x\"\r\nWiki\r\nA\r\n0123456789\r\n0\r\nExpires: never\r\n\r\n";
    let (txs, stats) = run(&[c(1, req), s(2, resp), c(3, GET), s(4, OK5)]);
    let req_body = req.len() - req.find("\r\n\r\n").unwrap() - 4;
    let resp_body = resp.len() - resp.find("\r\n\r\n").unwrap() - 4;
    assert_eq!(
        rows(&txs),
        vec![
            row("POST", "/c", 200, req_body as u64, resp_body as u64),
            row("GET", "/a", 200, 0, 5)
        ]
    );
    assert_eq!(stats.errors.total(), 0);
}

#[test]
fn broken_chunk_framing_is_counted_and_resynchronised() {
    let (txs, stats) = run(&[
        c(1, GET),
        s(
            2,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        ),
        c(3, "GET /next HTTP/1.1\r\n\r\n"),
        s(4, "\r\nHTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    assert_eq!(stats.errors.get(ParseError::InvalidChunk), 1);
    assert_eq!(
        rows(&txs),
        vec![
            (Some("GET"), "/a".into(), Some(200), 0, 1, true),
            row("GET", "/next", 204, 0, 0)
        ]
    );
}

#[test]
fn response_delimited_by_close() {
    let (txs, _) = run(&[
        c(1, "GET /old HTTP/1.0\r\n\r\n"),
        s(2, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome"),
        s(3, " more"),
        Step::Close(9),
    ]);
    assert_eq!(rows(&txs), vec![row("GET", "/old", 200, 0, 9)]);
    assert_eq!(txs[0].end_ns, 3, "ends at the last byte, not at the close");
    assert_eq!(txs[0].version, Some(HttpVersion::Http10));
}

#[test]
fn head_response_has_no_body() {
    let (txs, _) = run(&[
        c(1, "HEAD /h HTTP/1.1\r\n\r\n"),
        s(2, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        c(3, GET),
        s(4, OK5),
    ]);
    assert_eq!(
        rows(&txs),
        vec![row("HEAD", "/h", 200, 0, 0), row("GET", "/a", 200, 0, 5)]
    );
}

#[test]
fn expect_100_continue_then_final_response() {
    let (txs, stats) = run(&[
        c(
            1,
            "PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        ),
        s(2, "HTTP/1.1 100 Continue\r\n\r\n"),
        c(3, "data"),
        s(4, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"),
        s(5, OK5),
    ]);
    assert_eq!(rows(&txs), vec![row("PUT", "/f", 200, 4, 5)]);
    assert_eq!((txs[0].start_ns, txs[0].end_ns), (1, 5));
    assert_eq!(stats.informational, 2);
}

#[test]
fn a_request_body_sent_after_its_response_is_still_counted() {
    // nginx's `return 201` answers a `100-continue` upload before curl sends the body (as in
    // the nginx-curl capture fixture); an early 413 does the same to a body being sent.
    let (txs, stats) = run(&[
        c(
            1,
            "POST /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        ),
        s(2, "HTTP/1.1 100 Continue\r\n\r\n"),
        s(3, "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nmade!"),
        c(4, "01234"),
        c(5, "56789"),
        c(6, "GET /next HTTP/1.1\r\n\r\n"),
        s(7, OK5),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("POST", "/upload", 201, 10, 5),
            row("GET", "/next", 200, 0, 5)
        ]
    );
    // The exchange ended with its response; the body only adds its bytes.
    assert_eq!((txs[0].start_ns, txs[0].end_ns), (1, 3));
    assert_eq!((stats.incomplete, stats.errors.total()), (0, 0));

    // A body cut by the close still leaves one transaction, with the bytes that came.
    let (txs, stats) = run(&[
        c(1, "PUT /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nabc"),
        s(
            2,
            "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n",
        ),
        c(3, "defg"),
        Step::Close(4),
    ]);
    assert_eq!(rows(&txs), vec![row("PUT", "/big", 413, 7, 0)]);
    assert_eq!(stats.transactions, 1);
}

#[test]
fn switching_protocols_ends_http1_parsing() {
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let (txs, stats, conn) = run_with(
        &Config::default(),
        meta,
        &[
            c(
                1,
                "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ),
            s(
                2,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
            ),
            c(3, b"\x81\x85GET / HTTP/1.1\r\n\r\n"),
        ],
    );
    assert_eq!(rows(&txs), vec![row("GET", "/ws", 101, 0, 0)]);
    assert_eq!(conn.protocol(), Protocol::Upgraded);
    assert!(conn.is_ignoring());
    assert_eq!((stats.upgraded_connections, stats.requests), (1, 1));
}

#[test]
fn h2c_upgrade_and_prior_knowledge_are_http2() {
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let (_, stats, conn) = run_with(
        &Config::default(),
        meta.clone(),
        &[
            c(
                1,
                "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
            ),
            s(
                2,
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            ),
        ],
    );
    assert_eq!(conn.protocol(), Protocol::Http2);
    assert_eq!(stats.http2_connections, 1);
    let (txs, stats, conn) = run_with(
        &Config::default(),
        meta,
        &[c(1, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04")],
    );
    assert_eq!(conn.protocol(), Protocol::Http2);
    assert!(txs.is_empty());
    assert_eq!((stats.http2_connections, stats.http1_connections), (1, 0));
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let (txs, _) = run(&[
        c(1, "DELETE /x/1 HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\nIf-None-Match: \"a\"\r\n\r\n"),
        s(2, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\n\r\n"),
        c(3, GET),
        s(4, OK5),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("DELETE", "/x/1", 204, 0, 0),
            row("GET", "/y", 304, 0, 0),
            row("GET", "/a", 200, 0, 5)
        ]
    );
}

#[test]
fn connect_tunnel() {
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let (txs, _, conn) = run_with(
        &Config::default(),
        meta,
        &[
            c(
                1,
                "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            ),
            s(2, "HTTP/1.1 200 Connection Established\r\n\r\n"),
            c(3, b"\x16\x03\x01\x00\xa5\x01\x00"),
        ],
    );
    assert_eq!(
        rows(&txs),
        vec![row("CONNECT", "example.com:443", 200, 0, 0)]
    );
    assert_eq!(conn.protocol(), Protocol::Upgraded);
    // A refused CONNECT stays HTTP.
    let (txs, _) = run(&[
        c(1, "CONNECT a:443 HTTP/1.1\r\n\r\n"),
        s(2, "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n"),
        c(3, GET),
        s(4, OK5),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("CONNECT", "a:443", 407, 0, 0),
            row("GET", "/a", 200, 0, 5)
        ]
    );
}

#[test]
fn http10_absolute_form_and_no_host() {
    let (txs, _) = run(&[
        c(
            1,
            "GET http://proxy.example:3128/p/q?secret=1 HTTP/1.0\r\n\r\n",
        ),
        s(2, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        c(3, "GET /no-host HTTP/1.1\r\n\r\n"),
        s(4, OK5),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("GET", "/p/q", 200, 0, 2),
            row("GET", "/no-host", 200, 0, 5)
        ]
    );
    assert_eq!(txs[0].version, Some(HttpVersion::Http10));
}

#[test]
fn query_kept_only_when_asked() {
    let steps = [c(1, "GET /s?q=secret#frag HTTP/1.1\r\n\r\n"), s(2, OK5)];
    let (txs, _) = run(&steps);
    assert_eq!(txs[0].path, "/s");
    let cfg = Config {
        keep_query: true,
        ..Config::default()
    };
    let (txs, _, _) = run_with(
        &cfg,
        ConnMeta {
            from_start: true,
            ..ConnMeta::default()
        },
        &steps,
    );
    assert_eq!(txs[0].path, "/s?q=secret");
}

#[test]
fn starts_mid_stream_and_resynchronises() {
    // Joined in the middle of a POST body and of a response body.
    let (txs, stats) = run_mid(&[
        c(
            1,
            "ody of an earlier upload\r\nstill body GET / not a start\n",
        ),
        s(2, "tail of an earlier response with HTTP/1.1 in it\n"),
        c(3, "GET /first-seen HTTP/1.1\r\nHost: x\r\n\r\n"),
        s(4, OK5),
    ]);
    assert_eq!(rows(&txs), vec![row("GET", "/first-seen", 200, 0, 5)]);
    assert!(stats.skipped_bytes > 50);
    // A start cut across two chunks is still found.
    let (txs, _) = run_mid(&[
        c(1, "junk\r\nGE"),
        c(2, "T /cut HTTP/1.1\r\n\r\n"),
        s(3, "xx\nHTTP/1."),
        s(4, "1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(rows(&txs), vec![row("GET", "/cut", 200, 0, 0)]);
    assert_eq!(txs[0].start_ns, 1);
    // Joined mid-stream where the server speaks first: a response without request.
    let (txs, _) = run_mid(&[s(1, OK5), c(2, GET), s(3, OK5)]);
    assert_eq!(
        rows(&txs),
        vec![
            (None, String::new(), Some(200), 0, 5, true),
            row("GET", "/a", 200, 0, 5)
        ]
    );
    assert_eq!(txs[1].client, Some(CLIENT.parse().unwrap()));
}

#[test]
fn gap_inside_a_body_is_counted_through() {
    let (txs, stats) = run(&[
        c(1, GET),
        s(2, "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"),
        s(3, vec![b'x'; 1000]),
        Step::GapS(4, 1000),
        s(5, vec![b'x'; 1000]),
        c(6, "GET /chunked HTTP/1.1\r\n\r\n"),
        s(
            7,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
        ),
        s(8, vec![b'y'; 100]),
        Step::GapS(9, 1000),
        s(10, vec![b'y'; 948]),
        s(11, "\r\n0\r\n\r\n"),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("GET", "/a", 200, 0, 3000),
            row("GET", "/chunked", 200, 0, 5 + 2048 + 7)
        ]
    );
    assert_eq!((stats.gaps, stats.gap_bytes), (2, 2000));
    assert_eq!(stats.errors.total(), 0);
}

#[test]
fn gap_outside_a_body_resynchronises() {
    let (txs, stats) = run(&[
        c(1, GET),
        s(2, "HTTP/1.1 200 OK\r\nContent-Len"),
        Step::GapS(3, 30),
        c(4, "GET /b HTTP/1.1\r\n\r\n"),
        s(5, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
        Step::GapC(6, 20),
        c(7, "GET /c HTTP/1.1\r\n\r\n"),
        s(8, OK5),
    ]);
    assert_eq!(stats.errors.get(ParseError::GapOutsideBody), 2);
    // The first response's head was lost: /a is reported without response, and /b gets
    // its own answer (not /a's).
    assert_eq!(
        rows(&txs),
        vec![
            (Some("GET"), "/a".into(), None, 0, 0, true),
            row("GET", "/b", 202, 0, 0),
            row("GET", "/c", 200, 0, 5)
        ]
    );
}

#[test]
fn leftovers_at_close_are_incomplete() {
    let (txs, stats) = run(&[
        c(1, GET),
        s(2, OK5),
        c(3, "GET /never-answered HTTP/1.1\r\n\r\n"),
        Step::Close(10),
    ]);
    assert_eq!(
        rows(&txs),
        vec![
            row("GET", "/a", 200, 0, 5),
            (Some("GET"), "/never-answered".into(), None, 0, 0, true)
        ]
    );
    assert_eq!((txs[1].start_ns, txs[1].end_ns), (3, 10));
    assert_eq!(stats.incomplete, 1);
}

#[test]
fn aborted_download_is_incomplete_with_its_status() {
    let (txs, _) = run(&[
        c(1, "GET /big.iso HTTP/1.1\r\n\r\n"),
        s(2, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"),
        s(3, vec![0u8; 5000]),
        Step::Close(4),
    ]);
    assert_eq!(
        rows(&txs),
        vec![(Some("GET"), "/big.iso".into(), Some(200), 0, 5000, true)]
    );
}

#[test]
fn not_http_is_counted_and_ignored() {
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    for first in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"220 mail ESMTP\r\n",
    ] {
        let (txs, stats, conn) = run_with(
            &Config::default(),
            meta.clone(),
            &[c(1, first), c(2, GET), s(3, OK5)],
        );
        assert!(txs.is_empty());
        assert_eq!(conn.protocol(), Protocol::NotHttp);
        assert!(conn.is_ignoring());
        assert_eq!(stats.non_http_connections, 1);
    }
    // Mid-stream connections give up after the search budget.
    let cfg = Config {
        max_search_bytes: 10_000,
        ..Config::default()
    };
    let noise: Vec<Step> = (0..20).map(|i| c(i, vec![0xAB; 1000])).collect();
    let (_, stats, conn) = run_with(&cfg, ConnMeta::default(), &noise);
    assert_eq!(conn.protocol(), Protocol::NotHttp);
    assert_eq!(stats.non_http_connections, 1);
}

#[test]
fn stray_line_ends_before_the_first_request() {
    let (txs, stats) = run(&[c(1, "\r\n"), c(2, "\r\nGET /x HTTP/1.1\r\n\r\n"), s(3, OK5)]);
    assert_eq!(rows(&txs), vec![row("GET", "/x", 200, 0, 5)]);
    assert_eq!(stats.non_http_connections, 0);
}

#[test]
fn detection_waits_for_enough_bytes() {
    let (txs, _) = run(&[
        c(1, "G"),
        c(2, "ET"),
        c(3, " /slow HTTP/1.1\r\n\r\n"),
        s(4, OK5),
    ]);
    assert_eq!(rows(&txs), vec![row("GET", "/slow", 200, 0, 5)]);
    assert_eq!(txs[0].start_ns, 1);
}

#[test]
fn the_server_is_who_received_the_request_and_side_follows_the_observer() {
    // The tuple's src is the server here (e.g. a capture that missed the SYN, or the
    // server's own socket in a kernel source): requests flow Reverse.
    let meta = ConnMeta {
        from_start: true,
        observer: Some(Endpoint::Src),
        source: Source::Ebpf,
        pid: Some(7),
        ..ConnMeta::default()
    };
    let (txs, _, _) = run_with(&Config::default(), meta.clone(), &[s(1, GET), c(2, OK5)]);
    assert_eq!(txs[0].server, Some(CLIENT.parse().unwrap()));
    assert_eq!(txs[0].client, Some(SERVER.parse().unwrap()));
    assert_eq!(txs[0].side, Some(Side::Server));
    assert_eq!((txs[0].pid, txs[0].source), (Some(7), Source::Ebpf));
    let (txs, _, _) = run_with(&Config::default(), meta, &[c(1, GET), s(2, OK5)]);
    assert_eq!(txs[0].side, Some(Side::Client));
    // Without an observer the side is unknown.
    let (txs, _) = run(&[c(1, GET), s(2, OK5)]);
    assert_eq!(txs[0].side, None);
}

#[test]
fn wall_clock_time_uses_the_offset() {
    let meta = ConnMeta {
        from_start: true,
        wall_offset_ns: 1_000_000_000,
        ..ConnMeta::default()
    };
    let (txs, _, _) = run_with(&Config::default(), meta, &[c(5, GET), s(9, OK5)]);
    assert_eq!(txs[0].time_unix_ns, 1_000_000_005);
}

#[test]
fn bad_heads_are_counted_and_skipped() {
    let (txs, stats) = run(&[
        c(
            1,
            "GET /ok HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ),
        s(2, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        c(3, GET),
        s(4, "HTTP/1.1 200 OK\r\nBad\0Header: x\r\n\r\n"),
        c(5, "GET /c HTTP/1.1\r\n\r\n"),
        s(6, OK5),
    ]);
    assert_eq!(stats.errors.get(ParseError::InvalidContentLength), 1);
    assert_eq!(stats.errors.get(ParseError::InvalidResponse), 1);
    assert_eq!(
        rows(&txs),
        vec![
            (None, String::new(), Some(400), 0, 0, true),
            (Some("GET"), "/a".into(), None, 0, 0, true),
            row("GET", "/c", 200, 0, 5),
        ]
    );
}

#[test]
fn unknown_methods_still_pair() {
    let (txs, _) = run(&[
        c(1, "GET / HTTP/1.1\r\n\r\nBREW /pot HTTP/1.1\r\n\r\n"),
        s(2, OK5),
        s(3, "HTTP/1.1 418 Teapot\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(rows(&txs)[1], (None, "/pot".into(), Some(418), 0, 0, false));
}

#[test]
fn a_chunk_start_is_a_resync_candidate() {
    // The first response overruns its declared length by one byte (a buggy server), so the
    // next response head fails to parse; the one after starts a new chunk right after body
    // bytes with no line end, and must still be found.
    let (txs, stats) = run(&[
        c(1, GET),
        s(2, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhello"),
        c(3, "GET /b HTTP/1.1\r\n\r\n"),
        s(4, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"),
        c(5, "GET /c HTTP/1.1\r\n\r\n"),
        s(6, OK5),
    ]);
    assert_eq!(stats.errors.get(ParseError::InvalidResponse), 1);
    assert_eq!(
        rows(&txs),
        vec![
            row("GET", "/a", 200, 0, 4),
            (Some("GET"), "/b".into(), None, 0, 0, true),
            row("GET", "/c", 200, 0, 5)
        ]
    );
}

#[test]
fn partial_heads_share_one_budget_across_connections() {
    let cfg = Config {
        head_budget: HeadBudget::new(100),
        ..Config::default()
    };
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let mut out = Output::default();
    let head = "GET /long-path-longer-than-24-bytes HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    // The first connection holds a split head of 80 bytes.
    let mut a = Connection::new(tuple(), meta.clone(), &cfg);
    a.feed(Direction::Forward, 1, &head.as_bytes()[..80], &mut out);
    assert_eq!(cfg.head_budget.used(), 80);
    // A second one cannot also hold 50: counted, and it resynchronises.
    let mut b = Connection::new(tuple(), meta.clone(), &cfg);
    b.feed(Direction::Forward, 2, &head.as_bytes()[..50], &mut out);
    assert_eq!(out.stats.errors.get(ParseError::HeadBudget), 1);
    assert_eq!(cfg.head_budget.used(), 80);
    // Heads that arrive whole never touch the budget.
    b.feed(
        Direction::Forward,
        3,
        b"\r\nGET /whole HTTP/1.1\r\n\r\n",
        &mut out,
    );
    b.feed(Direction::Reverse, 4, OK5.as_bytes(), &mut out);
    assert_eq!(
        rows(&out.transactions),
        vec![row("GET", "/whole", 200, 0, 5)]
    );
    // When the first head completes, its bytes go back.
    a.feed(
        Direction::Forward,
        5,
        format!("{}\r\n", &head[80..]).as_bytes(),
        &mut out,
    );
    // Its head's bytes went back; only its waiting path is held until it is answered
    // (paths longer than 24 bytes: shorter ones are stored inline and hold nothing).
    assert_eq!(
        cfg.head_budget.used(),
        "/long-path-longer-than-24-bytes".len()
    );
    a.feed(Direction::Reverse, 6, OK5.as_bytes(), &mut out);
    assert_eq!(cfg.head_budget.used(), 0);
    // A connection dropped mid-head (without close) gives its bytes back too.
    let mut c = Connection::new(tuple(), meta, &cfg);
    c.feed(Direction::Forward, 6, &head.as_bytes()[..60], &mut out);
    assert_eq!(cfg.head_budget.used(), 60);
    drop(c);
    assert_eq!(cfg.head_budget.used(), 0);
}

#[test]
fn waiting_paths_count_against_the_budget() {
    let cfg = Config {
        head_budget: HeadBudget::new(40),
        ..Config::default()
    };
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let mut out = Output::default();
    let mut conn = Connection::new(tuple(), meta, &cfg);
    conn.feed(
        Direction::Forward,
        1,
        b"GET /1234567-path-longer-than-24-b HTTP/1.1\r\n\r\nGET /too-long-now-path-longer-than-24 HTTP/1.1\r\n\r\n",
        &mut out,
    );
    // Paths longer than 24 bytes are held on the heap and count; shorter ones are inline.
    assert_eq!(cfg.head_budget.used(), 30);
    assert_eq!(out.stats.errors.get(ParseError::HeadBudget), 1);
    conn.feed(
        Direction::Reverse,
        2,
        format!("{OK5}{OK5}").as_bytes(),
        &mut out,
    );
    // Both requests were answered in order; the second lost only its path.
    assert_eq!(
        rows(&out.transactions),
        vec![
            row("GET", "/1234567-path-longer-than-24-b", 200, 0, 5),
            row("GET", "", 200, 0, 5)
        ]
    );
    assert_eq!(cfg.head_budget.used(), 0);
    // Requests still waiting when the parser stops (an upgrade) or the connection is
    // dropped give their paths back as well.
    let mut conn = Connection::new(
        tuple(),
        ConnMeta {
            from_start: true,
            ..ConnMeta::default()
        },
        &cfg,
    );
    conn.feed(
        Direction::Forward,
        3,
        b"GET /ws-path-longer-than-24-bytes HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
        &mut out,
    );
    assert_eq!(cfg.head_budget.used(), 29);
    conn.feed(
        Direction::Reverse,
        4,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        &mut out,
    );
    assert_eq!(cfg.head_budget.used(), 0);
    let mut conn = Connection::new(
        tuple(),
        ConnMeta {
            from_start: true,
            ..ConnMeta::default()
        },
        &cfg,
    );
    conn.feed(
        Direction::Forward,
        5,
        b"GET /abc-path-longer-than-24-bytes HTTP/1.1\r\n\r\n",
        &mut out,
    );
    assert_eq!(cfg.head_budget.used(), 30);
    drop(conn);
    assert_eq!(cfg.head_budget.used(), 0);
}

#[test]
fn a_request_body_that_looks_like_a_status_line_is_still_a_body() {
    // Joined mid-stream: a response without its request is waiting for its body when the
    // client uploads a body that happens to start like a status line.
    let (txs, stats) = run_mid(&[
        s(1, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        c(2, "POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\n"),
        c(3, "HTTP/1.1 200 OK\r\n\r\n!"),
        s(4, "hello"),
        s(5, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(stats.errors.total(), 0);
    assert_eq!(
        rows(&txs),
        vec![
            (None, String::new(), Some(200), 0, 5, true),
            row("POST", "/x", 201, 20, 0)
        ]
    );
}
