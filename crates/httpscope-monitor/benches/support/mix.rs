//! The realistic transaction mix of the StatKeeper bench, shared with the
//! `keeper_cycles` example (which counts cycles per transaction under `perf stat`).

use httpscope_model::{Method, Source, Transaction};

/// A small deterministic generator (xorshift), so the bench needs no `rand`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` transactions of the mix; the same ones on every call.
pub fn mix(n: usize) -> Vec<Transaction> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    type Shape = (Method, &'static dyn Fn(&mut Rng) -> String);
    let shapes: [Shape; 10] = [
        (Method::Get, &|r| {
            format!("/api/v1/users/{}", r.below(100_000))
        }),
        (Method::Get, &|r| {
            format!(
                "/api/v1/users/{}/orders/{}",
                r.below(100_000),
                r.below(1000)
            )
        }),
        (Method::Get, &|r| {
            format!(
                "/api/v2/orders/{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                r.next() as u32,
                r.below(0x10000),
                r.below(0x1000),
                r.below(0x1000),
                r.next() & 0xffff_ffff_ffff
            )
        }),
        (Method::Get, &|r| {
            format!("/static/app.{:08x}.js", r.next() as u32)
        }),
        (Method::Get, &|_| "/api/v1/health".to_owned()),
        (Method::Post, &|_| "/grpc.health.v1.Health/Check".to_owned()),
        (Method::Get, &|r| {
            format!("/search/items?q={}", r.below(1000))
        }),
        (Method::Put, &|r| format!("/blobs/{:016x}", r.next())),
        (Method::Post, &|_| "/api/v1/login".to_owned()),
        (Method::Get, &|r| {
            format!("/catalog/category{}/products", r.below(4))
        }),
    ];
    let prefixes = ["", "/eu"];
    (0..n)
        .map(|_| {
            // Each server serves three route shapes under two prefixes.
            let server = rng.below(8);
            let shape = ((server + rng.below(3)) % shapes.len() as u64) as usize;
            let (method, make) = shapes[shape];
            let path = format!("{}{}", prefixes[rng.below(2) as usize], make(&mut rng));
            let status = match rng.below(100) {
                0..=1 => 500,
                2..=6 => 404,
                _ => 200,
            };
            let dur = 50_000 + rng.below(1_000) * rng.below(1_000) * 50;
            let start = rng.below(1 << 40);
            Transaction {
                method: Some(method),
                path: path.into(),
                status: Some(status),
                start_ns: start,
                end_ns: start + dur,
                request_bytes: rng.below(2000),
                response_bytes: rng.below(20_000),
                client: Some(
                    format!("10.1.0.{}:{}", rng.below(16), 30_000 + rng.below(30_000))
                        .parse()
                        .unwrap(),
                ),
                server: Some(format!("10.0.0.{server}:8080").parse().unwrap()),
                source: Source::Packet,
                ..Transaction::default()
            }
        })
        .collect()
}
