//! Counter types for what httpscope reports about itself.
//!
//! Every part counts what it saw, what it could not parse and what it had to drop, by reason.
//! Counting is done per batch into plain integers ([`ReasonCounts`]) on the thread that owns
//! the data; [`Counter`] is for the few numbers that another thread reads while they change
//! (a kernel reader's losses, a channel's drops).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count that may be bumped and read from several threads.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// A closed set of reasons, each with a stable index and a label for exporters.
pub trait Reason: Copy + Eq + 'static {
    /// Every reason, ordered by [`Reason::index`].
    const ALL: &'static [Self];
    /// The position of this reason in [`Reason::ALL`]; less than [`MAX_REASONS`].
    fn index(self) -> usize;
    /// The label value exporters use (`dropped{reason="..."}`).
    fn as_str(self) -> &'static str;
}

/// The most reasons one [`Reason`] type may have.
pub const MAX_REASONS: usize = 16;

/// A count per reason, in a fixed array: no allocation, cheap to copy and merge.
pub struct ReasonCounts<R> {
    counts: [u64; MAX_REASONS],
    _reason: PhantomData<R>,
}

impl<R: Reason> ReasonCounts<R> {
    /// All zero.
    pub const fn new() -> Self {
        ReasonCounts {
            counts: [0; MAX_REASONS],
            _reason: PhantomData,
        }
    }

    /// Adds `n` to `reason`.
    #[inline]
    pub fn add(&mut self, reason: R, n: u64) {
        self.counts[reason.index()] += n;
    }

    /// Adds one to `reason`.
    #[inline]
    pub fn inc(&mut self, reason: R) {
        self.add(reason, 1);
    }

    /// The count for `reason`.
    pub fn get(&self, reason: R) -> u64 {
        self.counts[reason.index()]
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Every reason with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (R, u64)> + '_ {
        R::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

impl<R: Reason> Default for ReasonCounts<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for ReasonCounts<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for ReasonCounts<R> {}

impl<R: Reason> PartialEq for ReasonCounts<R> {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts
    }
}

impl<R: Reason + fmt::Debug> fmt::Debug for ReasonCounts<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(r, n)| (r.as_str(), n)))
            .finish()
    }
}

macro_rules! reasons {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl Reason for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)*];
            #[inline]
            fn index(self) -> usize {
                self as usize
            }
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }

        const _: () = assert!(<$name as Reason>::ALL.len() <= MAX_REASONS);
    };
}

reasons! {
    /// Why a transaction was not aggregated because its content is impossible.
    MalformedReason {
        /// The path is empty.
        EmptyPath => "empty_path",
        /// The path has control or non-ASCII bytes.
        NonPrintablePath => "non_printable_path",
        /// The method is not one httpscope knows.
        UnknownMethod => "unknown_method",
        /// The end is not after the start.
        NonPositiveLatency => "non_positive_latency",
        /// The status is outside 100-599.
        StatusOutOfRange => "status_out_of_range",
    }
}

reasons! {
    /// Why something was dropped: every cap in httpscope names its reason here.
    DropReason {
        /// A source's channel to the monitor was full; the batch was dropped.
        ChannelFull => "channel_full",
        /// The aggregation already holds its maximum number of keys.
        KeyLimit => "key_limit",
        /// The maximum number of tracked connections was reached.
        ConnectionLimit => "connection_limit",
        /// A connection's reassembly buffer was full.
        StreamBufferLimit => "stream_buffer_limit",
        /// More requests were in flight on one connection than the parser keeps.
        PipelineLimit => "pipeline_limit",
        /// The kernel could not hand an event to user space (ring buffer full).
        KernelBufferFull => "kernel_buffer_full",
        /// An entry was evicted because it grew too old.
        Expired => "expired",
        /// A record could not be decoded.
        Undecodable => "undecodable",
        /// More requests were open at once than a source tracks (ETW requests waiting for
        /// their response events).
        RequestLimit => "request_limit",
        /// A source's cache of responses (HTTP.sys kernel-cache entries) was full.
        CacheLimit => "cache_limit",
    }
}

reasons! {
    /// Why bytes of an HTTP stream could not be parsed; each makes the parser resynchronise.
    ParseError {
        /// A request or response head grew past the head-size limit.
        HeadTooLarge => "head_too_large",
        /// A request head that is not HTTP/1.x (bad request line or header).
        InvalidRequest => "invalid_request",
        /// A response head that is not HTTP/1.x (bad status line or header).
        InvalidResponse => "invalid_response",
        /// A head with more header fields than the parser accepts.
        TooManyHeaders => "too_many_headers",
        /// A chunked body whose framing is broken (bad size line or missing CRLF).
        InvalidChunk => "invalid_chunk",
        /// A Content-Length that is not a number, or two different ones.
        InvalidContentLength => "invalid_content_length",
        /// Bytes were lost (a capture gap) where no body could absorb them.
        GapOutsideBody => "gap_outside_body",
        /// A head split across chunks could not be held: the source's budget for partial
        /// heads (all connections together) was spent.
        HeadBudget => "head_budget",
    }
}

/// What an HTTP stream parser saw, summed over connections. Plain integers: each source owns
/// one, adds it into its batch and starts again from zero.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParseStats {
    /// Request heads parsed.
    pub requests: u64,
    /// Final (non-1xx) response heads parsed.
    pub responses: u64,
    /// Informational (1xx) responses parsed.
    pub informational: u64,
    /// Transactions emitted, complete or not.
    pub transactions: u64,
    /// Of those, incomplete ones (request without response or response without request).
    pub incomplete: u64,
    /// Requests dropped because too many were in flight on one connection.
    pub pipeline_overflow: u64,
    /// Times a direction lost its place and searched for the next message head.
    pub resyncs: u64,
    /// Bytes passed over while searching for a message head.
    pub skipped_bytes: u64,
    /// Gaps (lost bytes) signalled by the source.
    pub gaps: u64,
    /// Bytes lost in those gaps.
    pub gap_bytes: u64,
    /// Parse errors, by kind.
    pub errors: ReasonCounts<ParseError>,
    /// Connections recognised as HTTP/1.x.
    pub http1_connections: u64,
    /// Connections recognised as HTTP/2 (counted; not parsed yet).
    pub http2_connections: u64,
    /// Connections whose first bytes were not HTTP (counted and ignored).
    pub non_http_connections: u64,
    /// Connections that left HTTP/1 (101 Switching Protocols or a CONNECT tunnel).
    pub upgraded_connections: u64,
}

impl ParseStats {
    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &ParseStats) {
        self.requests += other.requests;
        self.responses += other.responses;
        self.informational += other.informational;
        self.transactions += other.transactions;
        self.incomplete += other.incomplete;
        self.pipeline_overflow += other.pipeline_overflow;
        self.resyncs += other.resyncs;
        self.skipped_bytes += other.skipped_bytes;
        self.gaps += other.gaps;
        self.gap_bytes += other.gap_bytes;
        self.errors.merge(&other.errors);
        self.http1_connections += other.http1_connections;
        self.http2_connections += other.http2_connections;
        self.non_http_connections += other.non_http_connections;
        self.upgraded_connections += other.upgraded_connections;
    }
}

/// What one source reports with each batch, counted since its previous batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SourceStats {
    /// Raw events (packets, kernel events, ETW records, client requests) received.
    pub events: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Events the source could not decode at all (counted here, then skipped).
    pub undecodable: u64,
    /// Events the kernel or OS reported it could not deliver (ring buffer full, ETW lost,
    /// TLS calls the kernel side could not follow).
    pub kernel_lost: u64,
    /// Socket writes and reads the kernel side passed over because they could not be HTTP
    /// (the eBPF pre-check): counted there, never copied to user space.
    pub kernel_skipped: u64,
    /// What the source dropped on purpose, by reason (caps, expiry).
    pub dropped: ReasonCounts<DropReason>,
    /// What its HTTP stream parser saw.
    pub parse: ParseStats,
}

impl SourceStats {
    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &SourceStats) {
        self.events += other.events;
        self.bytes += other.bytes;
        self.undecodable += other.undecodable;
        self.kernel_lost += other.kernel_lost;
        self.kernel_skipped += other.kernel_skipped;
        self.dropped.merge(&other.dropped);
        self.parse.merge(&other.parse);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_list_non_zero() {
        let mut a = ReasonCounts::<DropReason>::new();
        a.inc(DropReason::ChannelFull);
        let mut b = ReasonCounts::new();
        b.add(DropReason::ChannelFull, 2);
        b.add(DropReason::KeyLimit, 5);
        a.merge(&b);
        assert_eq!(a.get(DropReason::ChannelFull), 3);
        assert_eq!(a.total(), 8);
        let listed: Vec<_> = a.iter().map(|(r, n)| (r.as_str(), n)).collect();
        assert_eq!(listed, vec![("channel_full", 3), ("key_limit", 5)]);
    }

    #[test]
    fn indices_match_positions() {
        for (i, r) in MalformedReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counter_is_shared() {
        let c = std::sync::Arc::new(Counter::new());
        let c2 = c.clone();
        std::thread::spawn(move || c2.add(3)).join().unwrap();
        c.inc();
        assert_eq!(c.get(), 4);
    }
}
