//! The HttpService correlator on synthetic event sequences encoded byte for byte per the
//! provider manifest: every flow, IPv4 and IPv6, the ConnClose trap, missing, duplicated and
//! reordered events, truncated user data, and a million requests in bounded memory.

mod etw_support;

use etw_support::*;
use httpscope_capture::etw::{Config, Correlator, Guid, RawEvent};
use httpscope_model::{Method, Side, Source, Transaction};

const CLIENT4: &str = "192.0.2.10:50438";
const SERVER4: &str = "10.0.0.5:80";
const CLIENT6: &str = "[2001:db8::10]:50438";
const SERVER6: &str = "[2001:db8::5]:443";

fn tag<'a>(t: &'a Transaction, k: &str) -> Option<&'a str> {
    t.tags.get(k)
}

fn all_flows(s: &mut Scenario, client: &str, server: &str) {
    let c = conn_id(1);
    s.connect(c, server, client);
    s.flow_fast(
        c,
        req_id(1),
        client,
        "http://localhost:80/index.html?user=alice",
    );
    s.flow_response(
        c,
        req_id(2),
        client,
        "http://localhost:80/api/orders/42",
        201,
    );
    s.flow_rejected(c, req_id(3), client, "http://localhost:80/busy");
    s.flow_cache_fill(c, req_id(4), client, "http://localhost:80/static/app.js");
    s.flow_cache_hit(c, req_id(5), client, "http://localhost:80/static/app.js");
    s.close(c);
    s.cleanup(c);
}

fn check_all_flows(txs: &[Transaction], client: &str, server: &str) {
    assert_eq!(txs.len(), 5, "{txs:#?}");
    let (client, server) = (client.parse().unwrap(), server.parse().unwrap());
    for t in txs {
        assert_eq!(t.client, Some(client));
        assert_eq!(t.server, Some(server));
        assert_eq!(t.source, Source::Etw);
        assert_eq!(t.side, Some(Side::Server));
        assert!(!t.incomplete);
        assert!(t.end_ns > t.start_ns, "{t:?}");
        assert!(t.start_ns >= 1_795_305_600_000_000_000); // 2026-11-22
    }
    let fast = &txs[0];
    assert_eq!(
        (fast.method, fast.path.as_str(), fast.status),
        (Some(Method::Get), "/index.html", Some(200))
    );
    assert_eq!(tag(fast, "site_id"), Some("1"));
    assert_eq!(tag(fast, "app_pool"), Some("DefaultAppPool"));
    // Events 1 ms apart: RecvReq to FastSend is 4 ms.
    assert_eq!(fast.duration_ns(), 4_000_000);

    let resp = &txs[1];
    assert_eq!(
        (resp.method, resp.path.as_str(), resp.status),
        (Some(Method::Post), "/api/orders/42", Some(201))
    );
    assert_eq!(tag(resp, "site_id"), Some("2"));
    assert_eq!(tag(resp, "app_pool"), Some("ApiPool"));

    let rej = &txs[2];
    assert_eq!(
        (rej.method, rej.path.as_str(), rej.status),
        (Some(Method::Get), "/busy", Some(503))
    );
    assert_eq!(tag(rej, "app_pool"), Some("ApiPool"));
    assert_eq!(tag(rej, "site_id"), None);

    let fill = &txs[3];
    assert_eq!(
        (fill.path.as_str(), fill.status),
        ("/static/app.js", Some(200))
    );
    assert_eq!(tag(fill, "site_id"), Some("1"));

    let hit = &txs[4];
    assert_eq!(
        (hit.method, hit.path.as_str(), hit.status),
        (Some(Method::Get), "/static/app.js", Some(200))
    );
    assert_eq!(
        hit.response_bytes, 5120,
        "body size from the cache entry (25)"
    );
    assert_eq!(tag(hit, "site_id"), Some("1"), "site from 16");
    assert_eq!(
        tag(hit, "app_pool"),
        Some("DefaultAppPool"),
        "pool of the request that filled the entry"
    );
}

#[test]
fn every_flow_gives_one_transaction_ipv4() {
    let mut s = Scenario::default();
    all_flows(&mut s, CLIENT4, SERVER4);
    let (txs, c) = run(&s.evs);
    check_all_flows(&txs, CLIENT4, SERVER4);
    assert_eq!(
        (c.requests, c.transactions, c.served_from_cache, c.rejected),
        (5, 5, 1, 1)
    );
    assert_eq!((c.undecodable, c.duplicates, c.unknown_request), (0, 0, 0));
    assert_eq!(
        (c.cache_added, c.cache_misses, c.ended_by_cleanup),
        (1, 0, 0)
    );
}

#[test]
fn every_flow_gives_one_transaction_ipv6() {
    let mut s = Scenario::default();
    all_flows(&mut s, CLIENT6, SERVER6);
    let (txs, _) = run(&s.evs);
    check_all_flows(&txs, CLIENT6, SERVER6);
}

#[test]
fn server_2022_recv_req_layout() {
    let mut s = Scenario::default();
    let c = conn_id(1);
    s.connect(c, SERVER6, CLIENT6);
    s.recv_short(c, req_id(1), CLIENT6);
    assert_eq!(s.evs[1].bytes().len(), 8 + 8 + 2 + 28);
    s.parse(req_id(1), 4, "http://[2001:db8::5]:443/x");
    s.send(req_id(1), 12, 204);
    let (txs, c) = run(&s.evs);
    assert_eq!(c.undecodable, 0);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].client, Some(CLIENT6.parse().unwrap()));
    assert_eq!(txs[0].status, Some(204));
}

#[test]
fn cache_not_modified_and_version_1_events() {
    let mut s = Scenario::default();
    let c = conn_id(1);
    s.connect(c, SERVER4, CLIENT4);
    s.cache_entry(25, 1, "http://localhost:80/logo.png", 200, 900);
    s.recv(c, req_id(1), CLIENT4);
    s.parse(req_id(1), 4, "http://localhost:80/logo.png");
    s.served_from_cache(req_id(1), 17, 1, 3, 120);
    s.recv(c, req_id(2), CLIENT4);
    s.parse(req_id(2), 5, "http://localhost:80/logo.png");
    s.served_from_cache(req_id(2), 16, 1, 3, 1100);
    s.cache_entry(27, 0, "http://localhost:80/logo.png", 200, 900);
    s.recv(c, req_id(3), CLIENT4);
    s.parse(req_id(3), 4, "http://localhost:80/logo.png");
    s.served_from_cache(req_id(3), 16, 0, 3, 1100);
    let (txs, cnt) = run(&s.evs);
    assert_eq!(txs.len(), 3);
    assert_eq!((txs[0].status, txs[0].response_bytes), (Some(304), 0));
    assert_eq!(
        (txs[1].method, txs[1].status, txs[1].response_bytes),
        (Some(Method::Head), Some(200), 900)
    );
    assert_eq!(tag(&txs[1], "site_id"), Some("3"));
    // After 27 FlushedCache the entry is gone: the status is unknown and counted.
    assert_eq!(txs[2].status, None);
    assert!(txs[2].incomplete);
    assert_eq!(
        (cnt.cache_flushed, cnt.cache_misses, cnt.served_from_cache),
        (1, 1, 3)
    );
}

#[test]
fn conn_close_before_last_send_still_completes() {
    let mut s = Scenario::default();
    let c = conn_id(7);
    s.connect(c, SERVER4, CLIENT4);
    s.recv(c, req_id(1), CLIENT4);
    s.parse(req_id(1), 4, "http://localhost:80/slow");
    s.deliver(req_id(1), 1, "DefaultAppPool", "http://localhost:80/slow");
    s.response(req_id(1), false, 200, "GET", 0);
    s.close(c); // the trap: ConnClose before SendComplete
    s.send(req_id(1), 10, 200);
    s.cleanup(c);
    let (txs, cnt) = run(&s.evs);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].server, Some(SERVER4.parse().unwrap()));
    assert_eq!(txs[0].client, Some(CLIENT4.parse().unwrap()));
    assert_eq!(txs[0].status, Some(200));
    assert!(!txs[0].incomplete);
    assert_eq!(
        (
            cnt.connection_closes,
            cnt.connection_cleanups,
            cnt.ended_by_cleanup
        ),
        (1, 1, 0)
    );
}

#[test]
fn conn_cleanup_ends_what_is_still_open() {
    let mut s = Scenario::default();
    let c = conn_id(8);
    s.connect(c, SERVER4, CLIENT4);
    s.recv(c, req_id(1), CLIENT4);
    s.parse(req_id(1), 4, "http://localhost:80/a");
    s.recv(c, req_id(2), CLIENT4);
    s.parse(req_id(2), 4, "http://localhost:80/b");
    s.response(req_id(2), true, 500, "GET", 0);
    s.close(c);
    s.cleanup(c);
    // A late send of an ended request is counted, not turned into a second transaction.
    s.send(req_id(1), 10, 200);
    let (txs, cnt) = run(&s.evs);
    assert_eq!(txs.len(), 2, "{txs:#?}");
    let a = txs.iter().find(|t| t.path == "/a").unwrap();
    let b = txs.iter().find(|t| t.path == "/b").unwrap();
    assert!(a.incomplete && a.status.is_none());
    assert_eq!(b.status, Some(500));
    assert_eq!(cnt.ended_by_cleanup, 2);
    assert_eq!(cnt.incomplete, 1);
    assert_eq!(cnt.unknown_request, 1);
}

#[test]
fn missing_events_degrade_and_are_counted() {
    // No ConnConnect: the client comes from RecvReq, the server is unknown.
    let mut s = Scenario::default();
    s.flow_fast(conn_id(1), req_id(1), CLIENT4, "http://localhost:80/x");
    let (txs, cnt) = run(&s.evs);
    assert_eq!(txs.len(), 1);
    assert_eq!(
        (txs[0].client, txs[0].server),
        (Some(CLIENT4.parse().unwrap()), None)
    );
    assert_eq!(cnt.unknown_connection, 1);

    // No Parse: the URL comes from Deliver.
    let mut s = Scenario::default();
    s.connect(conn_id(1), SERVER4, CLIENT4);
    s.flow_fast(
        conn_id(1),
        req_id(1),
        CLIENT4,
        "http://localhost:80/from-deliver?q",
    );
    s.evs.retain(|e| e.id != 2);
    let (txs, _) = run(&s.evs);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].path, "/from-deliver");
    assert_eq!(
        txs[0].method,
        Some(Method::Get),
        "the verb from FastResp's text"
    );

    // No RecvReq: nothing ties the request to a connection; it is dropped at the end.
    let mut s = Scenario::default();
    s.connect(conn_id(1), SERVER4, CLIENT4);
    s.flow_fast(conn_id(1), req_id(1), CLIENT4, "http://localhost:80/x");
    s.evs.retain(|e| e.id != 1);
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in &s.evs {
        e.feed(&mut c, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(c.finish(), 1);
    assert_eq!(c.counters().expired_requests, 1);

    // RecvReq without RelatedActivityID cannot be correlated.
    let mut s = Scenario::default();
    s.connect(conn_id(1), SERVER4, CLIENT4);
    s.flow_fast(conn_id(1), req_id(1), CLIENT4, "http://localhost:80/x");
    s.evs[1].related = None;
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in &s.evs {
        e.feed(&mut c, &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(c.counters().missing_related_activity, 1);
}

#[test]
fn duplicated_events_give_one_transaction_each() {
    let mut s = Scenario::default();
    all_flows(&mut s, CLIENT4, SERVER4);
    let doubled: Vec<Ev> = s.evs.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    let (txs, cnt) = run(&doubled);
    check_all_flows(&txs, CLIENT4, SERVER4);
    // 27 events doubled: the copies of 23, 24 and 25 are harmless repeats; the other 24 are
    // counted, as duplicates or (the repeated final send of a finished request) as unknown.
    assert_eq!(cnt.duplicates + cnt.unknown_request, 24, "{cnt:?}");
}

#[test]
fn reordered_events_within_a_request() {
    let mut s = Scenario::default();
    let c = conn_id(1);
    s.connect(c, SERVER4, CLIENT4);
    s.flow_fast(c, req_id(1), CLIENT4, "http://localhost:80/r1");
    s.flow_response(c, req_id(2), CLIENT4, "http://localhost:80/r2", 404);
    // Request 1: Parse and Deliver before RecvReq; request 2: the send before RecvReq.
    let mut evs = s.evs.clone();
    evs.swap(1, 3); // Deliver <-> RecvReq
    evs.swap(1, 2); // Parse first
    let r2: Vec<Ev> = evs.drain(6..).collect();
    evs.push(r2[4].clone()); // SendComplete
    evs.extend(r2[..4].iter().cloned());
    let ids: Vec<u16> = evs.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![21, 2, 3, 1, 8, 12, 10, 1, 2, 3, 4]);
    let (txs, cnt) = run(&evs);
    assert_eq!(txs.len(), 2, "{txs:#?}");
    assert_eq!(
        (txs[0].path.as_str(), txs[0].status, txs[0].client),
        ("/r1", Some(200), Some(CLIENT4.parse().unwrap()))
    );
    assert_eq!(tag(&txs[0], "app_pool"), Some("DefaultAppPool"));
    assert_eq!((txs[1].path.as_str(), txs[1].status), ("/r2", Some(404)));
    assert_eq!(txs[1].method, Some(Method::Post));
    assert_eq!(txs[1].server, Some(SERVER4.parse().unwrap()));
    // The start is the earliest event of the request.
    assert!(txs[0].start_ns < txs[0].end_ns);
    assert_eq!(cnt.duplicates, 0);
}

#[test]
fn truncated_user_data_is_counted_without_panic() {
    let mut s = Scenario::default();
    all_flows(&mut s, CLIENT6, SERVER6);
    let mut truncated_events = 0u64;
    for (i, e) in s.evs.iter().enumerate() {
        let full = e.bytes();
        for n in 0..full.len() {
            let mut c = Correlator::new(Config::default());
            let mut out = Vec::new();
            // The sequence up to this event, then this event cut to `n` bytes.
            for prev in &s.evs[..i] {
                prev.feed(&mut c, &mut out);
            }
            let before = c.counters().undecodable;
            c.process(
                &RawEvent {
                    event_id: e.id,
                    version: e.version,
                    timestamp: e.ts,
                    activity_id: Guid(e.activity),
                    related_activity_id: e.related.map(Guid),
                    user_data: &full[..n],
                },
                &mut out,
            );
            if e.id == 1 && n >= 16 {
                // RecvReq with both ids but a cut address: kept, the address counted as unparsed.
                assert_eq!(c.counters().undecodable, before);
                assert_eq!(c.counters().unparsed_addresses, 1, "RecvReq cut to {n}");
                continue;
            }
            let counted = c.counters().undecodable - before;
            assert_eq!(
                counted,
                1,
                "event {} cut to {n} of {} bytes was not counted",
                e.id,
                full.len()
            );
            let stats = c.take_stats();
            assert!(stats.undecodable >= 1);
            truncated_events += 1;
        }
    }
    assert!(truncated_events > 500);
}

#[test]
fn garbage_user_data_never_panics() {
    // Deterministic pseudo-random bytes for every event id the decoder knows.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    let ids = [
        1u16, 2, 3, 4, 8, 10, 11, 12, 13, 14, 16, 17, 21, 23, 24, 25, 27, 34, 64, 99,
    ];
    for i in 0..20_000u64 {
        let mut data = vec![0u8; (i % 97) as usize];
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let ev = RawEvent {
            event_id: ids[(i % ids.len() as u64) as usize],
            version: (x % 3) as u8,
            timestamp: T0 + i * 1000,
            activity_id: Guid(u128::from(x % 8)),
            related_activity_id: Some(Guid(u128::from(x % 16))),
            user_data: &data,
        };
        c.process(&ev, &mut out);
    }
    assert_eq!(c.counters().events, 20_000);
    assert!(c.counters().undecodable > 0);
}

#[test]
fn maps_are_bounded_by_count() {
    let config = Config {
        max_connections: 64,
        max_requests: 128,
        max_cache_entries: 16,
        ..Config::default()
    };
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    let mut s = Scenario::default();
    for i in 0..5_000u32 {
        // Connections that never close and requests that never end.
        s.connect(conn_id(i), SERVER4, CLIENT4);
        s.recv(conn_id(i), req_id(i), CLIENT4);
        s.parse(req_id(i), 4, "http://localhost:80/never-ends");
        s.cache_entry(25, 0, &format!("http://localhost:80/c/{i}"), 200, 10);
        for e in s.evs.drain(..) {
            e.feed(&mut c, &mut out);
            let (conns, reqs, cache) = c.sizes();
            assert!(
                conns <= 64 && reqs <= 128 && cache <= 16,
                "{conns} {reqs} {cache}"
            );
        }
    }
    let cnt = *c.counters();
    assert!(out.is_empty());
    assert!(cnt.evicted_connections >= 5_000 - 64);
    assert!(cnt.evicted_requests >= 5_000 - 128);
    assert!(cnt.evicted_cache_entries >= 5_000 - 16);
    let stats = c.take_stats();
    assert_eq!(
        stats.dropped.total(),
        cnt.evicted_requests + cnt.evicted_cache_entries
    );
    use httpscope_model::telemetry::DropReason;
    assert_eq!(
        stats.dropped.get(DropReason::RequestLimit),
        cnt.evicted_requests
    );
    assert_eq!(
        stats.dropped.get(DropReason::CacheLimit),
        cnt.evicted_cache_entries
    );
}

#[test]
fn maps_are_bounded_by_age() {
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    let mut s = Scenario::default();
    s.connect(conn_id(1), SERVER4, CLIENT4);
    s.recv(conn_id(1), req_id(1), CLIENT4);
    s.cache_entry(25, 0, "http://localhost:80/old", 200, 1);
    for e in &s.evs {
        e.feed(&mut c, &mut out);
    }
    assert_eq!(c.sizes(), (1, 1, 1));
    // Two hours later, one unrelated event triggers the sweep.
    let mut late = Scenario {
        evs: Vec::new(),
        t: s.t + 7_200 * 10_000_000,
    };
    late.tls(conn_id(99));
    late.evs[0].feed(&mut c, &mut out);
    assert_eq!(c.sizes(), (0, 0, 0));
    let cnt = c.counters();
    assert_eq!(
        (
            cnt.expired_connections,
            cnt.expired_requests,
            cnt.expired_cache_entries
        ),
        (1, 1, 1)
    );
}

/// One million requests through the correlator, 10% of which never end, with many
/// concurrent connections: memory stays bounded (map sizes never pass their caps) and every
/// finished request gives exactly one transaction.
#[test]
fn one_million_requests_in_bounded_memory() {
    const N: u32 = 1_000_000;
    let config = Config {
        max_connections: 4_096,
        max_requests: 8_192,
        ..Config::default()
    };
    let mut c = Correlator::new(config);
    let mut out = Vec::with_capacity(1024);
    let mut emitted = 0u64;
    let mut max_sizes = (0, 0, 0);
    let url = "http://localhost:80/api/items/1234";
    // Encode one request's events once; only activity ids and timestamps vary.
    let mut s = Scenario::default();
    s.connect(conn_id(0), SERVER4, CLIENT4);
    s.flow_fast(conn_id(0), req_id(0), CLIENT4, url);
    let templ: Vec<(u16, Vec<u8>)> = s.evs.iter().map(|e| (e.id, e.bytes())).collect();
    let mut ts = T0;
    for i in 0..N {
        let conn = Guid(conn_id(i % 2_000));
        let req = Guid(req_id(i));
        for (k, (id, data)) in templ.iter().enumerate() {
            let activity = match k {
                0 | 1 => conn,
                _ => req,
            };
            if (k == 0 && i >= 2_000) || (k == 5 && i % 10 == 0) {
                continue;
            }
            ts += 200;
            let ev = RawEvent {
                event_id: *id,
                version: 0,
                timestamp: ts,
                activity_id: activity,
                related_activity_id: (k == 1).then_some(req),
                user_data: data,
            };
            c.process(&ev, &mut out);
        }
        emitted += out.len() as u64;
        out.clear();
        if i % 4096 == 0 {
            let z = c.sizes();
            max_sizes = (
                max_sizes.0.max(z.0),
                max_sizes.1.max(z.1),
                max_sizes.2.max(z.2),
            );
        }
    }
    let cnt = *c.counters();
    assert_eq!(emitted, u64::from(N) / 10 * 9);
    assert_eq!(cnt.transactions, emitted);
    assert!(
        max_sizes.0 <= 4_096 && max_sizes.1 <= 8_192,
        "{max_sizes:?}"
    );
    // The unfinished tenth is dropped by the count cap or by age, and counted.
    let open = c.finish();
    assert_eq!(
        cnt.evicted_requests + cnt.expired_requests + open,
        u64::from(N) / 10
    );
}
