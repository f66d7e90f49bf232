//! The live full-screen view: the busiest endpoints of the last interval, refreshed at every
//! flush (every second under `httpscope watch` on a terminal). Keys: `s` cycles the sort
//! (rate, error %, p99, route), `q` / `Esc` / `Ctrl-C` quits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row as TRow, Table};

use super::{fmt_addr, fmt_bytes, fmt_quantile, rows, Row};
use crate::monitor::{ExportError, Exporter, Flush};
use crate::snapshot::Snapshot;

/// Hands window snapshots to the view (never blocks the monitor: a snapshot the view has not
/// taken yet is replaced by the next one).
#[derive(Debug)]
pub struct TuiExporter {
    tx: Sender<Snapshot>,
}

/// The view's end of the snapshot feed.
#[derive(Debug)]
pub struct TuiFeed {
    rx: Receiver<Snapshot>,
}

/// A connected exporter and feed.
pub fn channel() -> (TuiExporter, TuiFeed) {
    let (tx, rx) = crossbeam_channel::bounded(2);
    (TuiExporter { tx }, TuiFeed { rx })
}

impl Exporter for TuiExporter {
    fn name(&self) -> &'static str {
        "tui"
    }

    fn flush(&mut self, flush: &Flush<'_>) -> Result<(), ExportError> {
        match self.tx.try_send(flush.window.clone()) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

/// Sort orders, cycled with `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Requests per second, busiest first.
    Rate,
    /// Error percentage, worst first.
    Errors,
    /// p99 latency, slowest first.
    P99,
    /// Route, alphabetically.
    Route,
}

impl SortBy {
    fn next(self) -> Self {
        match self {
            SortBy::Rate => SortBy::Errors,
            SortBy::Errors => SortBy::P99,
            SortBy::P99 => SortBy::Route,
            SortBy::Route => SortBy::Rate,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortBy::Rate => "rate",
            SortBy::Errors => "error %",
            SortBy::P99 => "p99",
            SortBy::Route => "route",
        }
    }
}

/// Sorts display rows.
pub fn sort(rows: &mut [Row], by: SortBy) {
    let p99 = |r: &Row| r.stats.latency.quantile_ns(0.99).unwrap_or(0.0);
    match by {
        SortBy::Rate => rows.sort_by_key(|r| std::cmp::Reverse(r.stats.count)),
        SortBy::Errors => rows.sort_by(|a, b| b.error_pct().total_cmp(&a.error_pct())),
        SortBy::P99 => rows.sort_by(|a, b| p99(b).total_cmp(&p99(a))),
        SortBy::Route => rows.sort_by(|a, b| a.route.cmp(&b.route)),
    }
}

/// Runs the view until a quit key, `stop`, or the monitor going away. Restores the terminal
/// on every path.
pub fn run(feed: TuiFeed, stop: &AtomicBool, title: &str) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> std::io::Result<()> {
        let mut snap: Option<Snapshot> = None;
        let mut sort_by = SortBy::Rate;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            loop {
                match feed.rx.try_recv() {
                    Ok(s) => snap = Some(s),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            terminal.draw(|f| {
                let [head, body, foot] = Layout::vertical([
                    Constraint::Length(1),
                    Constraint::Min(3),
                    Constraint::Length(1),
                ])
                .areas(f.area());
                f.render_widget(Paragraph::new(Line::from(title.to_owned())), head);
                let mut rs = snap.as_ref().map(rows).unwrap_or_default();
                sort(&mut rs, sort_by);
                let secs = snap.as_ref().map_or(1.0, Snapshot::window_secs);
                let header = TRow::new([
                    "SERVER", "METHOD", "ROUTE", "STATUS", "RATE/s", "ERR%", "P50", "P99", "REQ",
                    "RESP",
                ])
                .style(Style::default().add_modifier(Modifier::BOLD));
                let lines: Vec<TRow> = rs
                    .iter()
                    .take(body.height.saturating_sub(3) as usize)
                    .map(|r| {
                        TRow::new([
                            fmt_addr(r.server),
                            r.method.map_or("-", |m| m.as_str()).to_owned(),
                            r.route.clone(),
                            r.statuses_text(),
                            format!("{:.1}", r.stats.count as f64 / secs),
                            format!("{:.1}", r.error_pct()),
                            fmt_quantile(&r.stats.latency, 0.5),
                            fmt_quantile(&r.stats.latency, 0.99),
                            fmt_bytes(r.stats.request_bytes),
                            fmt_bytes(r.stats.response_bytes),
                        ])
                    })
                    .collect();
                let widths = [
                    Constraint::Length(22),
                    Constraint::Length(7),
                    Constraint::Min(20),
                    Constraint::Length(16),
                    Constraint::Length(8),
                    Constraint::Length(6),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Length(9),
                ];
                let table = Table::new(lines, widths).header(header).block(
                    Block::bordered().title(format!(" endpoints, sorted by {} ", sort_by.label())),
                );
                f.render_widget(table, body);
                let t = snap.as_ref().map(|s| &s.telemetry);
                let foot_text = match t {
                    Some(t) => format!(
                        "q quit · s sort · transactions {} · malformed {} · dropped {} · keys {}",
                        t.keeper.transactions,
                        t.malformed().total(),
                        t.dropped().total(),
                        t.keys
                    ),
                    None => "q quit · s sort · waiting for the first interval…".to_owned(),
                };
                f.render_widget(Paragraph::new(Line::from(foot_text)), foot);
            })?;
            if event::poll(Duration::from_millis(200))? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(())
                        }
                        KeyCode::Char('s') => sort_by = sort_by.next(),
                        _ => {}
                    }
                }
            }
        }
    })();
    ratatui::restore();
    stop.store(true, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keeper::EndpointStats;

    fn row(route: &str, count: u64, errors: u64, ms: u64) -> Row {
        let mut stats = EndpointStats {
            count,
            ..EndpointStats::default()
        };
        stats.latency.add(ms * 1_000_000);
        Row {
            route: route.into(),
            errors,
            stats,
            ..Row::default()
        }
    }

    #[test]
    fn sorts() {
        let mut rs = vec![
            row("/b", 10, 0, 5),
            row("/a", 5, 5, 1),
            row("/c", 1, 0, 900),
        ];
        sort(&mut rs, SortBy::Rate);
        assert_eq!(rs[0].route, "/b");
        sort(&mut rs, SortBy::Errors);
        assert_eq!(rs[0].route, "/a");
        sort(&mut rs, SortBy::P99);
        assert_eq!(rs[0].route, "/c");
        sort(&mut rs, SortBy::Route);
        assert_eq!(
            rs.iter().map(|r| r.route.as_str()).collect::<Vec<_>>(),
            ["/a", "/b", "/c"]
        );
        assert_eq!(SortBy::Route.next(), SortBy::Rate);
    }

    #[test]
    fn exporter_never_blocks() {
        let (mut e, feed) = channel();
        let s = Snapshot::default();
        for _ in 0..10 {
            e.flush(&Flush {
                window: &s,
                total: &s,
                last: false,
            })
            .unwrap();
        }
        assert_eq!(feed.rx.try_iter().count(), 2);
        drop(feed);
        e.flush(&Flush {
            window: &s,
            total: &s,
            last: true,
        })
        .unwrap();
    }
}
