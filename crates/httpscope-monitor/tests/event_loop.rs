//! The event loop: full channels drop and count, SIGTERM drains and flushes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use httpscope_model::batch::{channel, Batch};
use httpscope_model::telemetry::DropReason;
use httpscope_model::{Method, Source, Transaction};
use httpscope_monitor::{ExportError, Exporter, Flush, Monitor, MonitorConfig};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(bool, u64, u64)>>>);

impl Exporter for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn flush(&mut self, f: &Flush<'_>) -> Result<(), ExportError> {
        self.0
            .lock()
            .unwrap()
            .push((f.last, f.window.transactions(), f.total.transactions()));
        Ok(())
    }
}

fn batch(n: usize) -> Batch {
    let mut b = Batch::new(Source::Ebpf);
    for i in 0..n {
        b.transactions.push(Transaction {
            method: Some(Method::Get),
            path: format!("/items/{i}").into(),
            status: Some(200),
            start_ns: 10,
            end_ns: 1_000_010,
            source: Source::Ebpf,
            ..Transaction::default()
        });
    }
    b.stats.events = n as u64;
    b
}

fn monitor(interval: Duration) -> (Monitor, Recorder) {
    let cfg = MonitorConfig {
        interval,
        ..MonitorConfig::default()
    };
    let mut m = Monitor::new(cfg).unwrap();
    let rec = Recorder::default();
    m.add_exporter(Box::new(rec.clone()));
    (m, rec)
}

#[test]
fn full_channel_drops_are_counted_and_never_block() {
    let (tx, rx) = channel(Source::Ebpf, 2);
    let (mut m, rec) = monitor(Duration::from_secs(3600));
    m.add_source(rx);
    let started = Instant::now();
    for _ in 0..10 {
        tx.send(batch(3)).unwrap(); // live-source send: never blocks
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(tx);
    let summary = m.run(&AtomicBool::new(false));
    let t = &summary.total.telemetry;
    assert_eq!(t.sources[0].channel_full_batches, 8);
    assert_eq!(t.sources[0].channel_full_transactions, 24);
    assert_eq!(t.dropped().get(DropReason::ChannelFull), 24);
    assert_eq!(t.sources[0].batches, 2);
    assert_eq!(t.sources[0].stats.events, 6);
    assert_eq!(summary.total.transactions(), 6);
    assert_eq!(rec.0.lock().unwrap().as_slice(), &[(true, 6, 6)]);
}

#[test]
fn flushes_every_interval_while_running() {
    let (tx, rx) = channel(Source::Packet, 64);
    let (mut m, rec) = monitor(Duration::from_millis(100));
    m.add_source(rx);
    let producer = std::thread::spawn(move || {
        for _ in 0..5 {
            tx.send_blocking(batch(2)).unwrap();
            std::thread::sleep(Duration::from_millis(80));
        }
    });
    let summary = m.run(&AtomicBool::new(false));
    producer.join().unwrap();
    let flushes = rec.0.lock().unwrap().clone();
    assert!(flushes.len() >= 3, "{flushes:?}");
    assert_eq!(flushes.iter().map(|f| f.1).sum::<u64>(), 10);
    assert_eq!(
        flushes.last().unwrap(),
        &(true, flushes.last().unwrap().1, 10)
    );
    assert!(flushes[..flushes.len() - 1].iter().all(|f| !f.0));
    assert_eq!(summary.total.transactions(), 10);
}

#[test]
fn sigterm_drains_the_channels_and_flushes_once_more() {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone()).unwrap();

    // Batches waiting in the channel of a source that is still alive when the signal comes.
    let (tx, rx) = channel(Source::Ebpf, 64);
    let (mut m, rec) = monitor(Duration::from_secs(3600));
    m.add_source(rx);
    for _ in 0..20 {
        tx.send_blocking(batch(5)).unwrap();
    }
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(stop.load(Ordering::Relaxed), "SIGTERM did not set the flag");
    let started = Instant::now();
    let summary = m.run(&stop);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(summary.total.transactions(), 100);
    assert_eq!(rec.0.lock().unwrap().as_slice(), &[(true, 100, 100)]);
    drop(tx);

    // And while running: a producer keeps sending, the signal stops the loop promptly.
    stop.store(false, Ordering::Relaxed);
    let (tx, rx) = channel(Source::Ebpf, 64);
    let (mut m, rec) = monitor(Duration::from_secs(3600));
    m.add_source(rx);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sent2, stop2) = (sent.clone(), stop.clone());
    let producer = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            if tx.send(batch(1)).is_err() {
                break;
            }
            sent2.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let stop3 = stop.clone();
    let runner = std::thread::spawn(move || m.run(&stop3));
    std::thread::sleep(Duration::from_millis(300));
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    let summary = runner.join().unwrap();
    producer.join().unwrap();
    let flushes = rec.0.lock().unwrap().clone();
    assert_eq!(flushes.len(), 1);
    assert!(flushes[0].0, "final flush is marked last");
    let got = summary.total.transactions();
    assert!(got > 0 && got <= sent.load(Ordering::Relaxed), "got {got}");
}

/// Keeps the telemetry each flush hands its exporters.
#[derive(Clone, Default)]
struct TelemetryRecorder(Arc<Mutex<Vec<(u64, Duration, Duration)>>>);

impl Exporter for TelemetryRecorder {
    fn name(&self) -> &'static str {
        "telemetry"
    }
    fn flush(&mut self, f: &Flush<'_>) -> Result<(), ExportError> {
        let t = &f.window.telemetry;
        self.0
            .lock()
            .unwrap()
            .push((t.flushes, t.last_flush, t.flush_total));
        // A slow exporter: its time shows in the next flush's telemetry.
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    }
}

#[test]
fn flush_time_is_reported_from_the_first_flush_on() {
    let mut m = Monitor::new(MonitorConfig::default()).unwrap();
    let rec = TelemetryRecorder::default();
    m.add_exporter(Box::new(rec.clone()));
    m.flush(false);
    m.flush(true);
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    // The first (and for `analyze` the only) flush already reports its own snapshot time.
    assert_eq!(seen[0].0, 1);
    assert!(seen[0].1 > Duration::ZERO, "{seen:?}");
    // The second reports the whole first flush, the slow exporter included.
    assert_eq!(seen[1].0, 2);
    assert!(seen[1].2 >= Duration::from_millis(20), "{seen:?}");
    assert_eq!(m.telemetry().flushes, 2);
    assert!(m.telemetry().flush_total >= Duration::from_millis(40));
}
