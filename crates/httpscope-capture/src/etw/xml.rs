//! Windows event XML (`tracerpt trace.etl -of XML`, `Get-WinEvent ... | % { $_.ToXml() }`).
//!
//! Each `<Event>` has `<System>` (provider, `EventID`, `Version`, `TimeCreated SystemTime`,
//! `Correlation ActivityID / RelatedActivityID`) and `<EventData>` with one `<Data Name=...>`
//! per template field, rendered as text by TDH ([W] "Event Tracing in HTTP.sys: Part 2").
//! httpscope turns the named fields back into user data laid out exactly as the manifest's
//! template ([`wire::template`]) and runs it through the same decoder and correlator as a live
//! event, so both paths are one code path from the bytes on.

use std::io::{BufRead, Read};
use std::net::SocketAddr;

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;

use super::guid::Guid;
use super::wire::{self, FieldType};

/// Most `<Data>` fields kept per event (the largest template used has 7).
const MAX_FIELDS: usize = 32;
/// Most text kept per event; larger events are skipped and counted.
const MAX_EVENT_TEXT: usize = 64 * 1024;

/// One event as read from XML, before its fields become user data.
#[derive(Default, Debug)]
pub(crate) struct XmlRecord {
    pub provider_guid: Option<Guid>,
    pub provider_name: String,
    pub event_id: Option<u16>,
    pub version: u8,
    pub timestamp: Option<u64>,
    pub activity_id: Guid,
    pub related_activity_id: Option<Guid>,
    pub fields: Vec<(String, String)>,
    /// `<BinaryEventData>`: the raw user data, hex, when the renderer had no manifest.
    pub binary: Option<String>,
    text_len: usize,
    overflow: bool,
}

impl XmlRecord {
    fn clear(&mut self) {
        self.provider_guid = None;
        self.provider_name.clear();
        self.event_id = None;
        self.version = 0;
        self.timestamp = None;
        self.activity_id = Guid::NIL;
        self.related_activity_id = None;
        self.fields.clear();
        self.binary = None;
        self.text_len = 0;
        self.overflow = false;
    }

    /// Whether this is a Microsoft-Windows-HttpService event.
    pub fn is_http_service(&self) -> bool {
        match self.provider_guid {
            Some(g) => g == Guid::parse(wire::PROVIDER_GUID).unwrap_or_default(),
            None => self
                .provider_name
                .eq_ignore_ascii_case("Microsoft-Windows-HttpService"),
        }
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Lays the fields out as the event's user data into `out`. `None` when a field is
    /// missing or does not parse, or the event is not one httpscope reads.
    pub fn user_data(&self, out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        if self.overflow {
            return None;
        }
        if let Some(hex) = &self.binary {
            // Not rendered by field: the user data itself.
            let h = hex.trim();
            let h = h
                .strip_prefix("0x")
                .or_else(|| h.strip_prefix("0X"))
                .unwrap_or(h);
            if !h.len().is_multiple_of(2) {
                return None;
            }
            for pair in h.as_bytes().chunks_exact(2) {
                let hi = (pair[0] as char).to_digit(16)?;
                let lo = (pair[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            return Some(());
        }
        let template = wire::template(self.event_id?, self.version)?;
        let mut binary: Vec<u8> = Vec::new();
        for (i, &(name, ty)) in template.iter().enumerate() {
            match ty {
                FieldType::Pointer | FieldType::U64 => {
                    out.extend_from_slice(&parse_uint(self.field(name)?, u64::MAX)?.to_le_bytes())
                }
                FieldType::U32 => out.extend_from_slice(
                    &(parse_uint(self.field(name)?, u32::MAX.into())? as u32).to_le_bytes(),
                ),
                FieldType::U16 => out.extend_from_slice(
                    &(parse_uint(self.field(name)?, u16::MAX.into())? as u16).to_le_bytes(),
                ),
                FieldType::BinaryLength => {
                    // The length is that of the binary field that follows.
                    let &(bin_name, _) = template.get(i + 1)?;
                    binary.clear();
                    parse_binary(self.field(bin_name)?, &mut binary)?;
                    out.extend_from_slice(&(binary.len() as u32).to_le_bytes());
                }
                FieldType::Binary => out.extend_from_slice(&binary),
                FieldType::Unicode => wire::encode::utf16z(out, self.field(name)?),
                FieldType::Ansi => wire::encode::ansiz(out, self.field(name)?),
            }
        }
        Some(())
    }
}

/// `123`, `0x7B` (TDH renders pointers and some integers in hex).
fn parse_uint(s: &str, max: u64) -> Option<u64> {
    let s = s.trim();
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => s.parse().ok()?,
    };
    (v <= max).then_some(v)
}

/// A socket address rendered as hex bytes (`0x02000050...` or without `0x`) or as text
/// (`127.0.0.1:80`, `[::1]:80`, as TDH renders `win:SocketAddress`).
fn parse_binary(s: &str, out: &mut Vec<u8>) -> Option<()> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        wire::encode::sockaddr(out, addr);
        return Some(());
    }
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if !h.len().is_multiple_of(2) || h.len() > 2 * 1024 {
        return None;
    }
    for pair in h.as_bytes().chunks_exact(2) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(())
}

/// `2006-09-06T16:59:22.251258100Z` to FILETIME.
pub(crate) fn parse_system_time(s: &str) -> Option<u64> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let ns = t.unix_timestamp_nanos();
    let ticks = ns.div_euclid(100) + i128::from(super::correlate::FILETIME_UNIX_EPOCH);
    u64::try_from(ticks).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Text {
    None,
    EventId,
    Version,
    Data,
    Binary,
}

/// Streams `<Event>` records out of event XML.
pub(crate) struct XmlEvents<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    record: XmlRecord,
    /// Malformed XML stops the stream; this says where.
    pub error: Option<(u64, String)>,
}

impl<R: BufRead> XmlEvents<R> {
    pub fn new(input: R) -> Self {
        let mut reader = Reader::from_reader(input);
        reader.config_mut().trim_text(true);
        XmlEvents {
            reader,
            buf: Vec::new(),
            record: XmlRecord::default(),
            error: None,
        }
    }

    /// The next event, or `None` at the end (or at malformed XML: see `error`).
    pub fn next_record(&mut self) -> Option<&XmlRecord> {
        let mut in_event = false;
        let mut text = Text::None;
        loop {
            self.buf.clear();
            let ev = match self.reader.read_event_into(&mut self.buf) {
                Ok(ev) => ev,
                Err(e) => {
                    self.error = Some((self.reader.error_position(), e.to_string()));
                    return None;
                }
            };
            let r = &mut self.record;
            match ev {
                XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                    let empty = matches!(ev, XmlEvent::Empty(_));
                    let local = e.local_name();
                    let name = local.as_ref();
                    if name == b"Event" {
                        r.clear();
                        in_event = !empty;
                        continue;
                    }
                    if !in_event {
                        continue;
                    }
                    text = Text::None;
                    match name {
                        b"Provider" => {
                            for a in e.attributes().flatten() {
                                let v = a.unescape_value().unwrap_or_default();
                                match a.key.local_name().as_ref() {
                                    b"Guid" => r.provider_guid = Guid::parse(&v),
                                    b"Name" => r.provider_name = v.into_owned(),
                                    _ => {}
                                }
                            }
                        }
                        b"EventID" => text = Text::EventId,
                        b"Version" => text = Text::Version,
                        b"BinaryEventData" if !empty => {
                            r.binary = Some(String::new());
                            text = Text::Binary;
                        }
                        b"TimeCreated" => {
                            for a in e.attributes().flatten() {
                                if a.key.local_name().as_ref() == b"SystemTime" {
                                    r.timestamp =
                                        parse_system_time(&a.unescape_value().unwrap_or_default());
                                }
                            }
                        }
                        b"Correlation" => {
                            for a in e.attributes().flatten() {
                                let v = a.unescape_value().unwrap_or_default();
                                match a.key.local_name().as_ref() {
                                    b"ActivityID" => {
                                        r.activity_id = Guid::parse(&v).unwrap_or_default()
                                    }
                                    b"RelatedActivityID" => r.related_activity_id = Guid::parse(&v),
                                    _ => {}
                                }
                            }
                        }
                        b"Data" => {
                            let name = e
                                .attributes()
                                .flatten()
                                .find(|a| a.key.local_name().as_ref() == b"Name")
                                .map(|a| a.unescape_value().unwrap_or_default().into_owned());
                            if let Some(n) = name {
                                if r.fields.len() >= MAX_FIELDS {
                                    r.overflow = true;
                                } else {
                                    r.text_len += n.len();
                                    r.fields.push((n, String::new()));
                                    text = if empty { Text::None } else { Text::Data };
                                }
                            }
                        }
                        _ => {}
                    }
                }
                XmlEvent::Text(ref t) => {
                    if !in_event || text == Text::None {
                        continue;
                    }
                    let v = match t.decode() {
                        Ok(v) => v,
                        Err(_) => {
                            r.overflow = true;
                            continue;
                        }
                    };
                    let v = quick_xml::escape::unescape(&v)
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    match text {
                        Text::EventId => r.event_id = v.trim().parse().ok(),
                        Text::Version => r.version = v.trim().parse().unwrap_or(u8::MAX),
                        Text::Data => {
                            r.text_len += v.len();
                            if r.text_len > MAX_EVENT_TEXT {
                                r.overflow = true;
                            } else if let Some(last) = r.fields.last_mut() {
                                last.1.push_str(&v);
                            }
                        }
                        Text::Binary => {
                            r.text_len += v.len();
                            match r.binary.as_mut() {
                                Some(b) if r.text_len <= MAX_EVENT_TEXT => b.push_str(&v),
                                _ => r.overflow = true,
                            }
                        }
                        Text::None => {}
                    }
                }
                // An entity (&amp; ...) inside text: quick-xml reports it separately.
                XmlEvent::GeneralRef(ref g) if in_event && text == Text::Data => {
                    let s = match g.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => {
                            let n = g.decode().unwrap_or_default();
                            quick_xml::escape::resolve_predefined_entity(&n)
                                .unwrap_or("")
                                .to_string()
                        }
                    };
                    if let Some(last) = r.fields.last_mut() {
                        last.1.push_str(&s);
                    }
                }
                XmlEvent::End(ref e) => {
                    text = Text::None;
                    if in_event && e.local_name().as_ref() == b"Event" {
                        return Some(&self.record);
                    }
                }
                XmlEvent::Eof => return None,
                _ => {}
            }
        }
    }
}

/// Turns UTF-16LE input (PowerShell's default `>` encoding) into UTF-8, streaming, so the
/// XML parser (which needs an ASCII-compatible encoding) can read it.
pub(crate) struct Utf16LeToUtf8<R: Read> {
    inner: R,
    raw: Vec<u8>,
    pending: Vec<u8>,
    pos: usize,
    carry: Option<u8>,
    high: Option<u16>,
    eof: bool,
}

impl<R: Read> Utf16LeToUtf8<R> {
    pub fn new(inner: R) -> Self {
        Utf16LeToUtf8 {
            inner,
            raw: vec![0; 16 * 1024],
            pending: Vec::new(),
            pos: 0,
            carry: None,
            high: None,
            eof: false,
        }
    }

    fn push_unit(&mut self, u: u16) {
        let mut tmp = [0u8; 4];
        let c = match (self.high.take(), u) {
            (Some(h), 0xdc00..=0xdfff) => {
                char::from_u32(0x10000 + ((u32::from(h) - 0xd800) << 10) + (u32::from(u) - 0xdc00))
            }
            (Some(_), _) | (None, 0xdc00..=0xdfff) => {
                // Unpaired surrogate: replace, and reconsider `u` below.
                self.pending.extend_from_slice("\u{fffd}".as_bytes());
                if (0xd800..=0xdbff).contains(&u) {
                    self.high = Some(u);
                    return;
                }
                if (0xdc00..=0xdfff).contains(&u) {
                    return;
                }
                char::from_u32(u32::from(u))
            }
            (None, 0xd800..=0xdbff) => {
                self.high = Some(u);
                return;
            }
            (None, _) => char::from_u32(u32::from(u)),
        };
        let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
        self.pending
            .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
}

impl<R: Read> Read for Utf16LeToUtf8<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.pending.len() && !self.eof {
            self.pending.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                self.eof = true;
                if self.high.take().is_some() || self.carry.take().is_some() {
                    self.pending.extend_from_slice("\u{fffd}".as_bytes());
                }
                break;
            }
            let mut i = 0;
            if let Some(lo) = self.carry.take() {
                let u = u16::from_le_bytes([lo, self.raw[0]]);
                self.push_unit(u);
                i = 1;
            }
            while i + 1 < n {
                let u = u16::from_le_bytes([self.raw[i], self.raw[i + 1]]);
                self.push_unit(u);
                i += 2;
            }
            if i < n {
                self.carry = Some(self.raw[i]);
            }
        }
        let avail = &self.pending[self.pos..];
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_adapter_round_trips() {
        let s = "<Event>é \u{1F600} x</Event>";
        let mut b = Vec::new();
        for u in s.encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        // Tiny reads to cross chunk boundaries inside code units and surrogate pairs.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(3);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut got = String::new();
        Utf16LeToUtf8::new(Trickle(&b))
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, s);
    }

    #[test]
    fn system_time_to_filetime() {
        assert_eq!(
            parse_system_time("1970-01-01T00:00:00.0000001Z"),
            Some(super::super::correlate::FILETIME_UNIX_EPOCH + 1)
        );
        assert_eq!(
            parse_system_time("2006-09-06T16:59:22.251258100Z"),
            Some(128_020_355_622_512_581)
        );
        assert_eq!(parse_system_time("yesterday"), None);
    }

    #[test]
    fn binary_forms() {
        let mut a = Vec::new();
        parse_binary("[::1]:80", &mut a).unwrap();
        let mut b = Vec::new();
        parse_binary(
            "0x17000050000000000000000000000000000000000000000100000000",
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
        let mut c = Vec::new();
        assert!(parse_binary("0x1", &mut c).is_none());
        assert!(parse_binary("zz", &mut c).is_none());
    }
}
