//! Offline analysis of exported HttpService events, on any OS.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use httpscope_model::batch::BatchSender;
use serde::Deserialize;

use super::correlate::{Config, EtwCounters, RawEvent};
use super::guid::Guid;
use super::iis::{IisConfig, IisConfigError};
use super::wire;
use super::xml::{Utf16LeToUtf8, XmlEvents};
use super::{Delivery, EtwSource};

/// The longest JSON line accepted; longer lines are skipped and counted.
const MAX_LINE: usize = 1 << 20;

/// The two offline formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// httpscope's JSON-lines replay format, one raw event per line.
    JsonLines,
    /// Windows event XML (tracerpt, Get-WinEvent `ToXml()`), UTF-8.
    EventXml,
    /// Windows event XML in UTF-16LE (PowerShell's `>` redirection).
    EventXmlUtf16,
}

/// What a file replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtwReport {
    /// The format the content was recognised as.
    pub format: Format,
    /// Records read (lines or `<Event>` elements).
    pub records: u64,
    /// Records that were not valid JSON / lacked required fields / had bad base64 or GUIDs.
    pub malformed_records: u64,
    /// Records of another provider (skipped).
    pub other_provider: u64,
    /// Transactions sent.
    pub transactions: u64,
    /// The correlator's counts.
    pub counters: EtwCounters,
    /// Requests still open at the end of the file (dropped, counted as expired).
    pub unfinished_requests: u64,
}

/// Replay failed as a whole (bad records are counted, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtwError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is neither the JSON-lines replay format nor event XML.
    #[error("{path} is neither httpscope's ETW JSON-lines format nor Windows event XML")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The event XML is malformed past recovery.
    #[error("malformed event XML in {path} at byte {position}: {message}")]
    Xml {
        /// The file.
        path: PathBuf,
        /// Byte offset.
        position: u64,
        /// What the parser said.
        message: String,
    },
    /// The IIS configuration could not be loaded.
    #[error(transparent)]
    IisConfig(#[from] IisConfigError),
    /// The monitor stopped receiving.
    #[error("the monitor stopped receiving transactions")]
    Disconnected,
}

/// Options of [`read_file_with`].
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// `applicationHost.config` for site names (and app pools of cache-served requests).
    pub iis_config: Option<PathBuf>,
    /// Correlator limits.
    pub correlator: Config,
    /// Transactions per batch sent to the monitor.
    pub batch_size: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            iis_config: None,
            correlator: Config::default(),
            batch_size: 1024,
        }
    }
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[n..]
}

/// Recognises the format from the first bytes of a file.
pub fn detect_format(head: &[u8]) -> Option<Format> {
    let (text, utf16): (Cow<'_, [u8]>, bool) = if head.starts_with(&[0xff, 0xfe])
        || (head.len() >= 4 && head[0] == b'<' && head[1] == 0 && head[3] == 0)
    {
        // UTF-16LE: keep the low bytes of ASCII code units, enough to recognise markup.
        let body = head.strip_prefix(&[0xff, 0xfe]).unwrap_or(head);
        let ascii: Vec<u8> = body
            .chunks_exact(2)
            .map(|c| {
                if c[1] == 0 && c[0].is_ascii() {
                    c[0]
                } else {
                    b'?'
                }
            })
            .collect();
        (Cow::Owned(ascii), true)
    } else {
        (
            Cow::Borrowed(head.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(head)),
            false,
        )
    };
    let t = skip_ws(&text);
    let contains = |needle: &[u8]| t.windows(needle.len()).any(|w| w == needle);
    match t.first() {
        Some(b'{') if !utf16 => {
            let line = t.split(|&c| c == b'\n').next().unwrap_or(t);
            let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
            (has(b"\"event_id\"") && (has(b"\"provider\"") || has(b"\"activity_id\"")))
                .then_some(Format::JsonLines)
        }
        Some(b'<') => {
            let ok = contains(b"<Event")
                && (contains(b"schemas.microsoft.com/win/2004/08/events/event")
                    || contains(b"<System>"));
            ok.then_some(if utf16 {
                Format::EventXmlUtf16
            } else {
                Format::EventXml
            })
        }
        _ => None,
    }
}

/// Whether the first bytes of a file are httpscope's ETW JSON-lines replay format or Windows
/// event XML (UTF-8 or UTF-16LE).
pub fn detect(head: &[u8]) -> bool {
    detect_format(head).is_some()
}

/// Replays `path` through the correlator, sending batches of transactions (with
/// [`BatchSender::send_blocking`]: a replay loses nothing) until the file ends.
pub fn read_file(path: &Path, tx: &BatchSender) -> Result<EtwReport, EtwError> {
    read_file_with(path, tx, &ReadOptions::default())
}

/// [`read_file`] with options (IIS configuration for site names, limits, batch size).
pub fn read_file_with(
    path: &Path,
    tx: &BatchSender,
    options: &ReadOptions,
) -> Result<EtwReport, EtwError> {
    let io = |source| EtwError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        let k = file.read(&mut head[n..]).map_err(io)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    let format = detect_format(&head).ok_or_else(|| EtwError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let input = std::io::Cursor::new(head).chain(file);

    let iis = match &options.iis_config {
        Some(p) => Some(IisConfig::load(p)?),
        None => None,
    };
    let mut source = EtwSource::new(
        options.correlator.clone(),
        tx.clone(),
        Delivery::Replay(options.batch_size),
    );
    source.correlator_mut().set_iis_config(iis);
    let mut report = EtwReport {
        format,
        records: 0,
        malformed_records: 0,
        other_provider: 0,
        transactions: 0,
        counters: EtwCounters::default(),
        unfinished_requests: 0,
    };
    match format {
        Format::JsonLines => replay_json(
            BufReader::with_capacity(1 << 16, input),
            &mut source,
            &mut report,
        )
        .map_err(|e| match e {
            ReplayError::Io(source) => EtwError::Io {
                path: path.to_owned(),
                source,
            },
            ReplayError::Disconnected => EtwError::Disconnected,
        })?,
        Format::EventXml | Format::EventXmlUtf16 => {
            let reader: Box<dyn BufRead> = if format == Format::EventXmlUtf16 {
                let mut r = BufReader::new(Utf16LeToUtf8::new(input));
                // Drop the BOM (now U+FEFF in UTF-8) if present.
                if r.fill_buf().map_err(io)?.starts_with(&[0xef, 0xbb, 0xbf]) {
                    r.consume(3);
                }
                Box::new(r)
            } else {
                Box::new(BufReader::with_capacity(1 << 16, input))
            };
            replay_xml(reader, &mut source, &mut report).map_err(|e| match e {
                XmlReplayError::Disconnected => EtwError::Disconnected,
                XmlReplayError::Xml(position, message) => EtwError::Xml {
                    path: path.to_owned(),
                    position,
                    message,
                },
            })?;
        }
    }
    report.unfinished_requests = source.correlator_mut().finish();
    source.flush().map_err(|_| EtwError::Disconnected)?;
    report.counters = *source.correlator().counters();
    report.transactions = report.counters.transactions;
    Ok(report)
}

enum ReplayError {
    Io(std::io::Error),
    Disconnected,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    event_id: u16,
    #[serde(default)]
    version: u8,
    timestamp: u64,
    #[serde(borrow, default)]
    activity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    related_activity_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_data: Cow<'a, str>,
}

fn replay_json(
    mut input: impl BufRead,
    source: &mut EtwSource,
    report: &mut EtwReport,
) -> Result<(), ReplayError> {
    let provider = Guid::parse(wire::PROVIDER_GUID).unwrap_or_default();
    let mut line = Vec::with_capacity(4096);
    let mut data = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(ReplayError::Io)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            // Too long: skip to the end of the line without keeping it.
            loop {
                let buf = input.fill_buf().map_err(ReplayError::Io)?;
                if buf.is_empty() {
                    break;
                }
                match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        input.consume(i + 1);
                        break;
                    }
                    None => {
                        let l = buf.len();
                        input.consume(l);
                    }
                }
            }
            report.records += 1;
            report.malformed_records += 1;
            source.count_undecodable();
            continue;
        }
        if skip_ws(&line).is_empty() {
            continue;
        }
        report.records += 1;
        let parsed: Option<(u16, u8, u64, Guid, Option<Guid>)> = match serde_json::from_slice::<
            Line<'_>,
        >(&line)
        {
            Ok(l) => {
                if let Some(p) = &l.provider {
                    if Guid::parse(p) != Some(provider) {
                        report.other_provider += 1;
                        continue;
                    }
                }
                data.clear();
                let activity = match &l.activity_id {
                    Some(a) => Guid::parse(a),
                    None => Some(Guid::NIL),
                };
                let related = match &l.related_activity_id {
                    Some(a) => Guid::parse(a).map(Some),
                    None => Some(None),
                };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode_vec(l.user_data.as_bytes(), &mut data);
                match (activity, related, decoded) {
                    (Some(a), Some(r), Ok(())) => Some((l.event_id, l.version, l.timestamp, a, r)),
                    _ => None,
                }
            }
            Err(_) => None,
        };
        let Some((event_id, version, timestamp, activity_id, related_activity_id)) = parsed else {
            report.malformed_records += 1;
            source.count_undecodable();
            continue;
        };
        let ev = RawEvent {
            event_id,
            version,
            timestamp,
            activity_id,
            related_activity_id,
            user_data: &data,
        };
        source
            .on_event(&ev)
            .map_err(|_| ReplayError::Disconnected)?;
    }
}

enum XmlReplayError {
    Xml(u64, String),
    Disconnected,
}

fn replay_xml(
    input: impl BufRead,
    source: &mut EtwSource,
    report: &mut EtwReport,
) -> Result<(), XmlReplayError> {
    let mut events = XmlEvents::new(input);
    let mut data = Vec::with_capacity(1024);
    while let Some(rec) = events.next_record() {
        report.records += 1;
        if !rec.is_http_service() {
            report.other_provider += 1;
            continue;
        }
        let (Some(event_id), Some(timestamp)) = (rec.event_id, rec.timestamp) else {
            report.malformed_records += 1;
            source.count_undecodable();
            continue;
        };
        if rec.binary.is_none() && wire::template(event_id, rec.version).is_none() {
            // An event httpscope does not read: hand it on as such (counted as ignored).
            let ev = RawEvent {
                event_id,
                version: rec.version,
                timestamp,
                activity_id: rec.activity_id,
                related_activity_id: rec.related_activity_id,
                user_data: &[],
            };
            source
                .on_event(&ev)
                .map_err(|_| XmlReplayError::Disconnected)?;
            continue;
        }
        if rec.user_data(&mut data).is_none() {
            report.malformed_records += 1;
            source.count_undecodable();
            continue;
        }
        let ev = RawEvent {
            event_id,
            version: rec.version,
            timestamp,
            activity_id: rec.activity_id,
            related_activity_id: rec.related_activity_id,
            user_data: &data,
        };
        source
            .on_event(&ev)
            .map_err(|_| XmlReplayError::Disconnected)?;
    }
    if let Some((pos, msg)) = events.error.take() {
        return Err(XmlReplayError::Xml(pos, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_content() {
        let json =
            br#"{"provider":"dd5ef90a-6398-47a4-ad34-4dcecdef795f","event_id":21,"version":0}"#;
        assert_eq!(detect_format(json), Some(Format::JsonLines));
        let xml = b"<?xml version=\"1.0\"?>\r\n<Events>\r\n<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\"><System>";
        assert_eq!(detect_format(xml), Some(Format::EventXml));
        let mut utf16 = vec![0xff, 0xfe];
        for u in "<Event xmlns='x'><System><Provider".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(detect_format(&utf16), Some(Format::EventXmlUtf16));
        assert!(!detect(
            b"<?xml version=\"1.0\"?><configuration><system.applicationHost>"
        ));
        assert!(!detect(b"{\"time\":\"2026\",\"method\":\"GET\"}"));
        assert!(!detect(b"\xd4\xc3\xb2\xa1pcap"));
        assert!(!detect(b""));
    }
}
