//! A criterion measurement of the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
//!
//! The targets are "on one core"; on a shared machine wall time also counts the time other
//! processes held the core. Thread CPU time does not (cache and frequency effects of a busy
//! machine remain, so figures are still best taken on a quiet one).

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// Thread CPU time in nanoseconds.
pub struct ThreadCpuTime;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        now_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e3, "µs cpu"),
            t if t < 1e9 => (1e6, "ms cpu"),
            _ => (1e9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per, units): (f64, [&'static str; 4]) = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (
                *n as f64,
                ["B/s (cpu)", "KiB/s (cpu)", "MiB/s (cpu)", "GiB/s (cpu)"],
            ),
            Throughput::Elements(n) => (
                *n as f64,
                [
                    "elem/s (cpu)",
                    "Kelem/s (cpu)",
                    "Melem/s (cpu)",
                    "Gelem/s (cpu)",
                ],
            ),
        };
        let step = if matches!(throughput, Throughput::Elements(_)) {
            1000.0
        } else {
            1024.0
        };
        let typical = per * 1e9 / typical_ns;
        let mut scale = 1.0;
        let mut unit = units[0];
        for u in &units[1..] {
            if typical / (scale * step) < 1.0 {
                break;
            }
            scale *= step;
            unit = u;
        }
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / scale);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
