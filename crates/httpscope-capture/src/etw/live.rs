//! The live consumer on Windows, on the ferrisetw crate. **Untested**: this file is compiled
//! only on Windows, and httpscope is built and tested on Linux; nothing here has ever run. It
//! is kept to the subscription glue: everything after "an event arrived" is the
//! platform-independent, tested [`EtwSource`] / [`Correlator`](super::Correlator).
//!
//! ferrisetw's `EventRecord` does not expose the user data buffer publicly (`user_buffer` is
//! `pub(crate)` in ferrisetw 1.2), so it is read from the `EVENT_RECORD` that `EventRecord`
//! wraps with `#[repr(transparent)]`, through a minimal `#[repr(C)]` mirror of the documented
//! `EVENT_RECORD` layout (evntcons.h).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrisetw::native::ExtendedDataItem;
use ferrisetw::provider::Provider;
use ferrisetw::trace::{TraceTrait, UserTrace};
use ferrisetw::{EventRecord, FileTrace, SchemaLocator};
use httpscope_model::batch::BatchSender;

use super::correlate::{Config, RawEvent};
use super::guid::Guid;
use super::iis::IisConfigFile;
use super::wire;
use super::{Delivery, EtwSource};

/// The leading part of `EVENT_RECORD` (evntcons.h) up to `UserData`, 64-bit layout:
/// `EVENT_HEADER` (80 bytes), `ETW_BUFFER_CONTEXT` (4), `ExtendedDataCount` (2),
/// `UserDataLength` (2), `ExtendedData` (pointer), `UserData` (pointer), `UserContext`.
#[repr(C)]
struct RawEventRecord {
    header_and_context: [u8; 84],
    extended_data_count: u16,
    user_data_length: u16,
    extended_data: *const std::ffi::c_void,
    user_data: *const u8,
    user_context: *const std::ffi::c_void,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<RawEventRecord>() == 112);

fn user_data(record: &EventRecord) -> &[u8] {
    // SAFETY: `EventRecord` is `#[repr(transparent)]` over `EVENT_RECORD`, whose first fields
    // `RawEventRecord` mirrors; Windows guarantees `UserData` points to `UserDataLength` bytes
    // for the duration of the callback, which bounds the returned borrow.
    unsafe {
        let raw = &*(record as *const EventRecord as *const RawEventRecord);
        if raw.user_data.is_null() || raw.user_data_length == 0 {
            return &[];
        }
        std::slice::from_raw_parts(raw.user_data, usize::from(raw.user_data_length))
    }
}

fn guid(g: ferrisetw::GUID) -> Guid {
    Guid::from_fields(g.data1, g.data2, g.data3, g.data4)
}

fn raw_event<'a>(record: &'a EventRecord) -> RawEvent<'a> {
    let related = record
        .extended_data()
        .iter()
        .find_map(|e| match e.to_extended_data_item() {
            ExtendedDataItem::RelatedActivityId(g) => Some(guid(g)),
            _ => None,
        });
    RawEvent {
        event_id: record.event_id(),
        version: record.version(),
        timestamp: record.raw_timestamp() as u64,
        activity_id: guid(record.activity_id()),
        related_activity_id: related,
        user_data: user_data(record),
    }
}

/// A running live subscription. Dropping it stops the ETW session.
pub struct LiveTrace {
    trace: Option<UserTrace>,
    source: Arc<Mutex<EtwSource>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Live consumer failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// ETW refused the session (not elevated, session name taken...).
    #[error("cannot start the ETW session: {0}")]
    Start(String),
}

impl LiveTrace {
    /// Subscribes to Microsoft-Windows-HttpService (level informational, keywords 0x136) and
    /// sends transactions to `tx` as they complete. `iis_config` names sites and is reloaded
    /// when it changes. Requires an elevated process.
    pub fn start(
        tx: BatchSender,
        config: Config,
        iis_config: Option<PathBuf>,
    ) -> Result<LiveTrace, LiveError> {
        let source = Arc::new(Mutex::new(EtwSource::new(config, tx, Delivery::Live)));
        let iis = iis_config.and_then(|p| IisConfigFile::open(p, Duration::from_secs(5)).ok());
        if let (Some(f), Ok(mut s)) = (&iis, source.lock()) {
            s.correlator_mut().set_iis_config(Some(f.config().clone()));
        }
        let iis = Arc::new(Mutex::new(iis));
        let cb_source = source.clone();
        let cb_iis = iis.clone();
        let provider = Provider::by_guid(wire::PROVIDER_GUID)
            .any(wire::KEYWORDS)
            .level(4)
            .add_callback(move |record: &EventRecord, _: &SchemaLocator| {
                let Ok(mut s) = cb_source.lock() else { return };
                if let Ok(mut iis) = cb_iis.lock() {
                    if let Some(f) = iis.as_mut() {
                        if f.refresh() {
                            s.correlator_mut().set_iis_config(Some(f.config().clone()));
                        }
                    }
                }
                let _ = s.on_event(&raw_event(record));
            })
            .build();
        let trace = UserTrace::new()
            .named(format!("httpscope-{}", std::process::id()))
            .enable(provider)
            .start_and_process()
            .map_err(|e| LiveError::Start(format!("{e:?}")))?;
        // Counts must reach the monitor even when no transaction completes.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t_source, t_stop) = (source.clone(), stop.clone());
        std::thread::spawn(move || {
            while !t_stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(mut s) = t_source.lock() {
                    s.correlator_mut().sweep();
                    if s.flush_nonblocking().is_err() {
                        break;
                    }
                }
            }
        });
        Ok(LiveTrace {
            trace: Some(trace),
            source,
            stop,
        })
    }

    /// Stops the session and drains what was completed into the channel.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.trace.take() {
            let _ = t.stop();
        }
        if let Ok(mut s) = self.source.lock() {
            let _ = s.flush();
        }
    }
}

impl Drop for LiveTrace {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads a binary `.etl` trace file through the same correlator (Windows only; untested).
pub fn read_etl(path: &Path, tx: BatchSender, config: Config) -> Result<(), LiveError> {
    let source = Arc::new(Mutex::new(EtwSource::new(
        config,
        tx,
        Delivery::Replay(1024),
    )));
    let cb_source = source.clone();
    let (trace, handle) = FileTrace::new(
        path.to_owned(),
        move |record: &EventRecord, _: &SchemaLocator| {
            if record.provider_id() != ferrisetw::GUID::from(wire::PROVIDER_GUID) {
                return;
            }
            if let Ok(mut s) = cb_source.lock() {
                let _ = s.on_event(&raw_event(record));
            }
        },
    )
    .start()
    .map_err(|e| LiveError::Start(format!("{e:?}")))?;
    let result = FileTrace::process_from_handle(handle);
    drop(trace);
    if let Ok(mut s) = source.lock() {
        s.correlator_mut().finish();
        let _ = s.flush();
    }
    result.map_err(|e| LiveError::Start(format!("{e:?}")))
}
