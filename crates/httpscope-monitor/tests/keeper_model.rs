//! The StatKeeper against a naive model: same keys, same counts and bytes, and every
//! transaction accounted for exactly once.

use httpscope_model::telemetry::DropReason;
use httpscope_model::{Method, Side, Source, Transaction};
use httpscope_monitor::route::{Quantizer, RouteConfig};
use httpscope_monitor::{naive_aggregate, ClientRollup, KeeperConfig, StatKeeper};
use proptest::prelude::*;

fn arb_tx() -> impl Strategy<Value = Transaction> {
    let paths = prop::sample::select(vec![
        "/users/1",
        "/users/22",
        "/users/abc",
        "/api/v2/x",
        "/api/hello.world",
        "",
        "/bad path",
        "/health",
        "/orders/3f2b8c1e-9d4a-4b6e-8f0a-1c2d3e4f5a6b",
        "/a?q=1",
        "*",
    ]);
    (
        prop::option::weighted(
            0.9,
            prop::sample::select(vec![Method::Get, Method::Post, Method::Delete]),
        ),
        paths,
        prop::option::weighted(
            0.95,
            prop::sample::select(vec![99u16, 200, 201, 404, 500, 503, 600]),
        ),
        0u64..5,
        0u64..3_000_000,
        (0u8..3, 0u16..3),
        prop::option::of(prop::sample::select(vec![Side::Client, Side::Server])),
        prop::sample::select(vec![Source::Packet, Source::Ebpf]),
        (0u64..1000, 0u64..1000),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(method, path, status, start, dur, (ip, port), side, source, (rq, rs), incomplete)| {
                Transaction {
                    method,
                    path: path.into(),
                    status,
                    start_ns: start,
                    end_ns: start + dur,
                    // 0 (no wall-clock time) for some, to exercise the span both ways.
                    time_unix_ns: start as i64 * 1_000_000_007,
                    client: Some(format!("10.0.0.{ip}:{}", 40000 + port).parse().unwrap()),
                    server: Some("10.0.1.1:80".parse().unwrap()),
                    side,
                    source,
                    request_bytes: rq,
                    response_bytes: rs,
                    incomplete,
                    ..Transaction::default()
                }
            },
        )
}

fn quantizer() -> Quantizer {
    Quantizer::new(&RouteConfig {
        drop: vec!["^/health".into()],
        ..RouteConfig::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn matches_naive_model(txs in prop::collection::vec(arb_tx(), 0..300), rollup in prop::sample::select(vec![ClientRollup::Ip, ClientRollup::Full, ClientRollup::All])) {
        let mut k = StatKeeper::new(KeeperConfig { max_keys: 100_000, client_rollup: rollup }, quantizer());
        for t in &txs {
            k.add(t);
        }
        let (mut got, counts) = k.take();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let qz = quantizer();
        let want = naive_aggregate(&txs, &qz, rollup);
        let routes: Vec<Option<String>> = txs.iter().map(|t| {
            let mut r = String::new();
            (qz.route(&t.path, &mut r) == httpscope_monitor::route::Outcome::Route).then_some(r)
        }).collect();
        let got_flat: Vec<_> = got.iter().map(|(key, s)| (key.clone(), s.count, s.request_bytes, s.response_bytes)).collect();
        prop_assert_eq!(&got_flat, &want);
        for (key, s) in &got {
            prop_assert_eq!(s.latency.count(), s.count);
            let naive_sum: u128 = txs.iter().zip(&routes).filter(|(t, r)| {
                !t.incomplete && httpscope_monitor::validate(t).is_ok()
                    && r.as_deref() == Some(&*key.route) && t.status == Some(key.status) && t.side == key.side
                    && t.source == key.source && t.method == Some(key.method)
                    && match rollup {
                        ClientRollup::Full => t.client == key.client,
                        ClientRollup::Ip => t.client.map(|c| c.ip()) == key.client.map(|c| c.ip()),
                        ClientRollup::All => true,
                    }
            }).map(|(t, _)| t.duration_ns() as u128).sum();
            prop_assert_eq!(s.latency.sum_ns(), naive_sum);
        }
        prop_assert_eq!(counts.transactions, txs.len() as u64);
        prop_assert_eq!(counts.aggregated, want.iter().map(|w| w.1).sum::<u64>());
        prop_assert_eq!(
            counts.aggregated + counts.incomplete + counts.malformed.total() + counts.filtered + counts.dropped.total(),
            counts.transactions
        );
    }

    #[test]
    fn key_cap_is_respected_and_counted(txs in prop::collection::vec(arb_tx(), 0..300), cap in 1usize..8) {
        let mut k = StatKeeper::new(KeeperConfig { max_keys: cap, client_rollup: ClientRollup::Full }, quantizer());
        for t in &txs {
            k.add(t);
            prop_assert!(k.len() <= cap);
        }
        let (got, counts) = k.take();
        prop_assert_eq!(got.iter().map(|g| g.1.count).sum::<u64>(), counts.aggregated);
        prop_assert_eq!(
            counts.aggregated + counts.incomplete + counts.malformed.total() + counts.filtered + counts.dropped.get(DropReason::KeyLimit),
            txs.len() as u64
        );
    }

    #[test]
    fn add_batch_equals_add_one_by_one(
        txs in prop::collection::vec(arb_tx(), 0..300),
        cap in 1usize..40,
        batch in 1usize..100,
    ) {
        let cfg = KeeperConfig { max_keys: cap, client_rollup: ClientRollup::Full };
        let mut one = StatKeeper::new(cfg.clone(), quantizer());
        let mut many = StatKeeper::new(cfg, quantizer());
        for t in &txs {
            one.add(t);
        }
        for b in txs.chunks(batch) {
            many.add_batch(b);
        }
        prop_assert_eq!(one.take_span(), many.take_span());
        let (mut a, ca) = one.take();
        let (mut b, cb) = many.take();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        prop_assert_eq!(a, b);
        prop_assert_eq!(ca, cb);
    }
}
