//! The HttpService user-data decoder and the correlator on arbitrary events. Nothing may
//! panic; every decoded view's accessors are called (they must stay in bounds); the correlator
//! runs under tiny limits so that every cap and expiry path is reached, and its maps must stay
//! within those limits.
//!
//! Input: records `[id][version][activity][related][dt][len]` followed by `len` bytes of user
//! data. `id` picks one of the event ids httpscope decodes (or another), `activity` and
//! `related` pick from a few GUIDs (related 0 = none), `dt` advances the clock by `dt` seconds.
#![no_main]

use httpscope_capture::etw::wire::{self, Event};
use httpscope_capture::etw::{Config, Correlator, Guid, RawEvent};
use libfuzzer_sys::fuzz_target;

const IDS: [u16; 20] = [
    1, 2, 3, 4, 8, 10, 11, 12, 13, 14, 16, 17, 21, 23, 24, 25, 27, 34, 64, 99,
];

fn touch(ev: &Event<'_>) -> u64 {
    let mut acc = 0u64;
    match ev {
        Event::ConnConnect(v) => {
            acc = acc.wrapping_add(
                u64::from(v.local().port()) ^ u64::from(v.remote().port()) ^ v.connection_obj(),
            );
        }
        Event::ConnClose(v) | Event::ConnCleanup(v) | Event::SslConnEvent(v) => {
            acc = acc.wrapping_add(v.connection_obj() ^ u64::from(v.abortive()));
        }
        Event::RecvReq(v) => {
            acc = acc.wrapping_add(
                v.request_id() ^ v.connection_id() ^ u64::from(v.remote().map_or(0, |a| a.port())),
            );
            acc = acc.wrapping_add(u64::from(v.short_length_field()));
        }
        Event::Parse(v) => {
            let mut s = String::new();
            wire::utf16_to_string(v.url_utf16(), &mut s);
            acc =
                acc.wrapping_add(wire::url_path(&s, false).len() as u64 ^ u64::from(v.http_verb()));
            acc = acc.wrapping_add(v.request_obj());
            acc = acc.wrapping_add(u64::from(wire::http_verb(v.http_verb()).is_some()));
        }
        Event::Deliver(v) => {
            acc = acc.wrapping_add(v.request_id() ^ u64::from(v.site_id()) ^ u64::from(v.status()));
            acc = acc.wrapping_add((v.request_queue_utf16().len() ^ v.url_utf16().len()) as u64);
        }
        Event::Response { view, .. } => {
            acc = acc.wrapping_add(
                view.request_id() ^ view.connection_id() ^ u64::from(view.status_code()),
            );
            acc = acc.wrapping_add(view.verb().len() as u64 ^ u64::from(view.header_length()));
            acc = acc.wrapping_add(
                u64::from(view.entity_chunk_count()) ^ u64::from(view.cache_policy()),
            );
        }
        Event::Send { view, .. } => {
            acc = acc.wrapping_add(view.request_id() ^ u64::from(view.http_status()))
        }
        Event::ServedFromCache { view, .. } => {
            acc = acc.wrapping_add(
                view.request_obj() ^ u64::from(view.site_id()) ^ u64::from(view.bytes_sent()),
            );
            acc = acc.wrapping_add(view.request_id().unwrap_or(0));
        }
        Event::CacheEntry { view, .. } => {
            acc = acc.wrapping_add(view.uri_utf16().len() as u64 ^ u64::from(view.status_code()));
            acc = acc.wrapping_add(view.verb().len() as u64 ^ u64::from(view.header_length()));
            acc = acc.wrapping_add(u64::from(view.content_length()) ^ view.expiration_time());
        }
        Event::RequestRejected(v) => {
            acc = acc.wrapping_add(
                v.request_id() ^ (v.reason().len() ^ v.request_queue_utf16().len()) as u64,
            );
        }
        Event::Other(id) => acc = acc.wrapping_add(u64::from(*id)),
    }
    acc
}

fuzz_target!(|data: &[u8]| {
    let config = Config {
        max_connections: 4,
        max_requests: 4,
        max_cache_entries: 2,
        connection_idle: 30 * 10_000_000,
        request_max_age: 10 * 10_000_000,
        cache_max_age: 60 * 10_000_000,
        keep_query: data.first().is_some_and(|b| b & 1 != 0),
    };
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    let mut ts = 134_397_792_000_000_000u64;
    let mut rest = data;
    let mut sink = 0u64;
    while let [id, version, activity, related, dt, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (user_data, next) = tail.split_at(len);
        rest = next;
        let event_id = IDS[usize::from(*id) % IDS.len()];
        if let Ok(ev) = wire::decode(event_id, *version, user_data) {
            sink = sink.wrapping_add(touch(&ev));
        }
        ts += u64::from(*dt) * 10_000_000;
        c.process(
            &RawEvent {
                event_id,
                version: *version,
                timestamp: ts,
                activity_id: Guid(u128::from(*activity % 8)),
                related_activity_id: (*related != 0).then(|| Guid(u128::from(*related % 8) + 8)),
                user_data,
            },
            &mut out,
        );
        let (conns, reqs, cache) = c.sizes();
        assert!(conns <= 4 && reqs <= 4 && cache <= 2);
    }
    let counted = c.counters().transactions;
    assert_eq!(counted, out.len() as u64);
    std::hint::black_box(sink);
});
