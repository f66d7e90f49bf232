//! Drives a `Connection` through a script of chunks, gaps and a close.
#![allow(dead_code)]

use httpscope_http::{Config, ConnMeta, Connection, Direction, Output};
use httpscope_model::telemetry::ParseStats;
use httpscope_model::{ConnTuple, Transaction};

pub const CLIENT: &str = "10.1.1.1:40000";
pub const SERVER: &str = "10.2.2.2:8080";

/// One step of a conversation. `C`/`S`: bytes from client/server at a timestamp.
#[derive(Clone, Debug)]
pub enum Step {
    C(u64, Vec<u8>),
    S(u64, Vec<u8>),
    GapC(u64, u64),
    GapS(u64, u64),
    Close(u64),
}

pub fn c(ts: u64, b: impl AsRef<[u8]>) -> Step {
    Step::C(ts, b.as_ref().to_vec())
}

pub fn s(ts: u64, b: impl AsRef<[u8]>) -> Step {
    Step::S(ts, b.as_ref().to_vec())
}

pub fn tuple() -> ConnTuple {
    ConnTuple::new(CLIENT.parse().unwrap(), SERVER.parse().unwrap())
}

pub fn run_with(
    cfg: &Config,
    meta: ConnMeta,
    steps: &[Step],
) -> (Vec<Transaction>, ParseStats, Connection) {
    let mut conn = Connection::new(tuple(), meta, cfg);
    let mut out = Output::default();
    for step in steps {
        match step {
            Step::C(ts, b) => conn.feed(Direction::Forward, *ts, b, &mut out),
            Step::S(ts, b) => conn.feed(Direction::Reverse, *ts, b, &mut out),
            Step::GapC(ts, n) => conn.gap(Direction::Forward, *ts, *n, &mut out),
            Step::GapS(ts, n) => conn.gap(Direction::Reverse, *ts, *n, &mut out),
            Step::Close(ts) => conn.close(*ts, &mut out),
        }
    }
    if matches!(steps.last(), Some(Step::Close(_))) {
        assert_eq!(
            cfg.head_budget.used(),
            0,
            "a closed connection holds nothing"
        );
    }
    let (txs, stats) = out.take();
    (txs, stats, conn)
}

pub fn run(steps: &[Step]) -> (Vec<Transaction>, ParseStats) {
    let meta = ConnMeta {
        from_start: true,
        ..ConnMeta::default()
    };
    let (t, s, _) = run_with(&Config::default(), meta, steps);
    (t, s)
}

pub fn run_mid(steps: &[Step]) -> (Vec<Transaction>, ParseStats) {
    let (t, s, _) = run_with(&Config::default(), ConnMeta::default(), steps);
    (t, s)
}

/// A compact, comparable view of a transaction.
pub type Row = (Option<&'static str>, String, Option<u16>, u64, u64, bool);

pub fn rows(txs: &[Transaction]) -> Vec<Row> {
    txs.iter()
        .map(|t| {
            (
                t.method.map(|m| m.as_str()),
                t.path.to_string(),
                t.status,
                t.request_bytes,
                t.response_bytes,
                t.incomplete,
            )
        })
        .collect()
}

pub fn row(m: &'static str, path: &str, status: u16, req: u64, resp: u64) -> Row {
    (Some(m), path.to_string(), Some(status), req, resp, false)
}
