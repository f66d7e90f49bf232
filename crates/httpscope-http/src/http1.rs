//! The HTTP/1.x state of one connection: a push parser per direction, and the queue that
//! pairs requests with responses.
//!
//! Each direction ([`Half`]) is at a message boundary, inside a head, inside a body, lost
//! (searching for the next head) or ignoring a tunnel. Heads are parsed straight from the
//! caller's chunk when they fit in it and copied into a bounded buffer only when split.
//! Bodies are skipped by counting. Requests wait in a bounded FIFO until their response head
//! arrives; the response then completes the transaction when its body ends.

use std::collections::VecDeque;

use httpscope_model::telemetry::ParseError;
use httpscope_model::{CompactString, ConnTuple, HttpVersion, Method, Transaction};

use crate::chunked::{Chunked, Progress};
use crate::head::{self, Framing};
use crate::scan::{message_start, HeadEnd, Kind, Start, START_LEN};
use crate::{side_of, Config, ConnMeta, Direction, HeadBudget, Output};

/// What the HTTP/1 parser borrows from its connection for every call.
pub(crate) struct Ctx<'a> {
    pub(crate) tuple: &'a ConnTuple,
    pub(crate) meta: &'a ConnMeta,
    pub(crate) cfg: &'a Config,
}

/// The connection left HTTP/1 parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 101 Switching Protocols or a CONNECT tunnel.
    Upgraded,
    /// Upgraded to HTTP/2 (`Upgrade: h2c`).
    Http2,
    /// Never showed an HTTP head within the search budget.
    NotHttp,
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug)]
enum State {
    /// At a message boundary.
    Idle,
    /// Inside a head whose first bytes may be in `buf`.
    Head,
    /// Inside a body.
    Body(Body),
    /// Lost: looking for the start of the next head.
    Search,
    /// Tunnel or upgraded protocol: nothing more to parse.
    Ignore,
}

/// One direction of the connection.
#[derive(Debug)]
struct Half {
    state: State,
    /// What this direction carries, once known.
    role: Option<Kind>,
    /// The kind of the head being read (needed while `role` is unknown).
    head_kind: Kind,
    /// The start of a head split across chunks; at most `max_head_bytes`.
    buf: Vec<u8>,
    head_end: HeadEnd,
    /// Timestamp of the chunk holding the current message's first byte.
    msg_start_ns: u64,
    /// Timestamp of the latest chunk of this direction.
    last_ns: u64,
    /// While searching: whether the next byte starts a line.
    at_line_start: bool,
    /// While searching: a possible message start cut by the end of the previous chunk.
    prefix: [u8; START_LEN],
    prefix_len: u8,
    prefix_ns: u64,
}

/// Where a search for the next head ended.
enum Found {
    /// No head start in this chunk.
    Nothing,
    /// A head starts at this offset of the chunk (or in the kept prefix, when `in_prefix`).
    At {
        offset: usize,
        kind: Kind,
        in_prefix: bool,
    },
}

impl Half {
    fn new(state: State, role: Option<Kind>) -> Self {
        Half {
            state,
            role,
            head_kind: role.unwrap_or(Kind::Request),
            buf: Vec::new(),
            head_end: HeadEnd::default(),
            msg_start_ns: 0,
            last_ns: 0,
            at_line_start: true,
            prefix: [0; START_LEN],
            prefix_len: 0,
            prefix_ns: 0,
        }
    }

    fn begin_head(&mut self, kind: Kind, start_ns: u64) {
        self.state = State::Head;
        self.head_kind = kind;
        self.head_end.reset();
        self.msg_start_ns = start_ns;
    }

    /// Drops any partial head and starts searching.
    fn lose_place(&mut self, at_line_start: bool, budget: &HeadBudget) {
        self.state = State::Search;
        self.release_buf(budget);
        self.prefix_len = 0;
        self.at_line_start = at_line_start;
    }

    /// Empties the head buffer (giving its bytes back to the budget), and frees it if a large
    /// head made it grow.
    fn release_buf(&mut self, budget: &HeadBudget) {
        budget.give_back(self.buf.len());
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Looks for the next message start in `data`, resuming a start cut by the last chunk.
    ///
    /// Candidates are line starts and the start of every chunk: senders usually write each
    /// message with its own call, so a new message often begins a segment or a syscall's data
    /// even when the previous one ended without a line end.
    fn search(&mut self, data: &[u8], ts: u64) -> Found {
        self.at_line_start = true;
        if self.prefix_len > 0 {
            let kept = usize::from(self.prefix_len);
            let mut joined = [0u8; 2 * START_LEN];
            let extra = data.len().min(START_LEN);
            joined[..kept].copy_from_slice(&self.prefix[..kept]);
            joined[kept..kept + extra].copy_from_slice(&data[..extra]);
            match message_start(&joined[..kept + extra], self.role) {
                Start::Yes(kind) => {
                    return Found::At {
                        offset: 0,
                        kind,
                        in_prefix: true,
                    }
                }
                Start::More => {
                    // Still undecided, so the whole chunk is shorter than a start: keep it.
                    self.prefix[kept..kept + data.len()].copy_from_slice(data);
                    self.prefix_len += data.len() as u8;
                    return Found::Nothing;
                }
                Start::No => self.prefix_len = 0,
            }
        }
        let mut i = 0;
        loop {
            if self.at_line_start {
                match message_start(&data[i..], self.role) {
                    Start::Yes(kind) => {
                        return Found::At {
                            offset: i,
                            kind,
                            in_prefix: false,
                        }
                    }
                    Start::More => {
                        let rest = &data[i..];
                        self.prefix[..rest.len()].copy_from_slice(rest);
                        self.prefix_len = rest.len() as u8;
                        self.prefix_ns = ts;
                        return Found::Nothing;
                    }
                    Start::No => {}
                }
            }
            match memchr::memchr(b'\n', &data[i..]) {
                Some(at) => {
                    i += at + 1;
                    self.at_line_start = true;
                }
                None => {
                    self.at_line_start = false;
                    return Found::Nothing;
                }
            }
        }
    }
}

/// A parsed head of either kind.
enum Head {
    Request(head::RequestHead),
    Response(head::ResponseHead),
}

/// Parses a head of `kind` at the start of `buf`; `None` if `buf` holds only part of it.
fn parse_head(kind: Kind, buf: &[u8], cfg: &Config) -> Result<Option<(Head, usize)>, ParseError> {
    Ok(match kind {
        Kind::Request => head::parse_request(buf, cfg.keep_query, cfg.max_path_bytes)?
            .map(|(h, n)| (Head::Request(h), n)),
        Kind::Response => head::parse_response(buf)?.map(|(h, n)| (Head::Response(h), n)),
    })
}

/// A request waiting for (or being answered by) its response.
#[derive(Debug)]
struct Pending {
    id: u64,
    method: Option<Method>,
    path: CompactString,
    version: HttpVersion,
    start_ns: u64,
    request_bytes: u64,
    /// The request asked for `Upgrade: h2c`.
    upgrade_h2c: bool,
}

/// A response whose head was parsed and whose body is still arriving.
#[derive(Debug)]
struct InFlight {
    request: Option<Pending>,
    status: u16,
    version: HttpVersion,
    start_ns: u64,
    response_bytes: u64,
}

/// A response that ended while its request's body was still arriving (an early answer such
/// as 413, or a `100-continue` request answered before it sent its body): its transaction
/// waits for the body's bytes to be counted.
#[derive(Debug)]
struct Answered {
    flight: InFlight,
    end_ns: u64,
    incomplete: bool,
}

/// The HTTP/1.x state of one connection.
#[derive(Debug)]
pub(crate) struct Http1 {
    halves: [Half; 2],
    /// The direction requests travel in, once known.
    req_dir: Option<Direction>,
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    answered: Option<Answered>,
    next_id: u64,
    /// The request whose body the request direction is sending.
    body_of: Option<u64>,
    /// Response bytes were lost: the next response may not answer the oldest request.
    resp_desync: bool,
    /// Whether any head parsed yet (before that, searching is on a budget).
    seen_head: bool,
    searched: u64,
    exit: Option<Exit>,
}

impl Http1 {
    /// A connection seen from its start, whose first bytes (in `first_dir`) begin a message
    /// of `kind`.
    pub(crate) fn at_start(first_dir: Direction, kind: Kind) -> Self {
        let req_dir = match kind {
            Kind::Request => first_dir,
            Kind::Response => first_dir.flip(),
        };
        let mut h = Http1::new(|| State::Idle);
        h.set_roles(req_dir);
        h
    }

    /// A connection joined in the middle: both directions search for their first head, and
    /// the first response found may answer a request newer than the oldest one seen.
    pub(crate) fn mid_stream() -> Self {
        let mut h = Http1::new(|| State::Search);
        h.resp_desync = true;
        h
    }

    fn new(state: fn() -> State) -> Self {
        Http1 {
            halves: [Half::new(state(), None), Half::new(state(), None)],
            req_dir: None,
            pending: VecDeque::new(),
            in_flight: None,
            answered: None,
            next_id: 0,
            body_of: None,
            resp_desync: false,
            seen_head: false,
            searched: 0,
            exit: None,
        }
    }

    /// Set once the connection left HTTP/1.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.exit
    }

    fn set_roles(&mut self, req_dir: Direction) {
        if self.req_dir.is_none() {
            self.req_dir = Some(req_dir);
            self.halves[req_dir.index()].role = Some(Kind::Request);
            self.halves[req_dir.flip().index()].role = Some(Kind::Response);
        }
    }

    /// Counts bytes passed over while searching; gives up on a connection that never showed a
    /// head within the budget.
    fn skipped(&mut self, n: usize, ctx: &Ctx<'_>, out: &mut Output) {
        out.stats.skipped_bytes += n as u64;
        if !self.seen_head {
            self.searched += n as u64;
            if self.searched > ctx.cfg.max_search_bytes {
                self.stop(Exit::NotHttp, &ctx.cfg.head_budget);
            }
        }
    }

    fn stop(&mut self, exit: Exit, budget: &HeadBudget) {
        self.exit = Some(exit);
        for half in &mut self.halves {
            half.state = State::Ignore;
            budget.give_back(half.buf.len());
            half.buf = Vec::new();
        }
    }

    /// Bytes of partial heads and of waiting requests' paths held (they are counted in the
    /// config's [`HeadBudget`]).
    pub(crate) fn held(&self) -> usize {
        let heads: usize = self.halves.iter().map(|h| h.buf.len()).sum();
        let waiting: usize = self.pending.iter().map(|p| path_held(&p.path)).sum();
        let flights = [
            self.in_flight.as_ref(),
            self.answered.as_ref().map(|a| &a.flight),
        ];
        let answering: usize = flights
            .iter()
            .flatten()
            .filter_map(|f| f.request.as_ref())
            .map(|p| path_held(&p.path))
            .sum();
        heads + waiting + answering
    }

    /// Parses the next chunk of one direction.
    pub(crate) fn feed(
        &mut self,
        dir: Direction,
        ts: u64,
        mut data: &[u8],
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        let h = dir.index();
        self.halves[h].last_ns = ts;
        while !data.is_empty() {
            let half = &mut self.halves[h];
            match &mut half.state {
                State::Ignore => return,
                State::Idle => {
                    // Stray line ends between messages are allowed (RFC 9112 §2.2).
                    let start = data.iter().position(|&b| b != b'\r' && b != b'\n');
                    let Some(start) = start else { return };
                    data = &data[start..];
                    let kind = half.role.unwrap_or(Kind::Request);
                    half.begin_head(kind, ts);
                }
                State::Search => match half.search(data, ts) {
                    Found::Nothing => {
                        self.skipped(data.len(), ctx, out);
                        return;
                    }
                    Found::At {
                        offset,
                        kind,
                        in_prefix,
                    } => {
                        if in_prefix {
                            let start_ns = half.prefix_ns;
                            let kept = usize::from(half.prefix_len);
                            // A few bytes at most: taken even past the budget.
                            ctx.cfg.head_budget.take(kept);
                            half.buf.extend_from_slice(&half.prefix[..kept]);
                            half.prefix_len = 0;
                            half.begin_head(kind, start_ns);
                            // The kept bytes hold no line end (they are a start's prefix).
                        } else {
                            half.begin_head(kind, ts);
                        }
                        self.skipped(offset, ctx, out);
                        data = &data[offset..];
                    }
                },
                State::Head => {
                    let max = ctx.cfg.max_head_bytes;
                    if half.buf.is_empty() {
                        // Fast path: the head starts this chunk, so let the head parser find its end
                        // too. Only a partial or bad head falls through to scanning, which
                        // buffers a split head and locates a bad one's end.
                        // The parsed head goes straight to its handler (no `Head` enum and
                        // `Result` around it: each wrapping moved the head once more).
                        let kind = half.role.unwrap_or(half.head_kind);
                        let start_ns = half.msg_start_ns;
                        match kind {
                            Kind::Request => {
                                let (keep, max_path) = (ctx.cfg.keep_query, ctx.cfg.max_path_bytes);
                                if let Ok(Some((req, len))) =
                                    head::parse_request(data, keep, max_path)
                                {
                                    if len <= max {
                                        self.on_request(dir, req, start_ns, ctx, out);
                                        data = &data[len..];
                                        continue;
                                    }
                                }
                            }
                            Kind::Response => {
                                if let Ok(Some((resp, len))) = head::parse_response(data) {
                                    if len <= max {
                                        self.on_response(dir, resp, start_ns, ts, ctx, out);
                                        data = &data[len..];
                                        continue;
                                    }
                                }
                            }
                        }
                    }
                    match half.head_end.find(data) {
                        None => {
                            if half.buf.len() + data.len() > max {
                                // Its end is still to come: search from the next line.
                                self.head_too_large(dir, false, ParseError::HeadTooLarge, ctx, out);
                                data = &[];
                            } else if !ctx.cfg.head_budget.try_take(data.len()) {
                                // Every connection together holds as much as allowed.
                                self.head_too_large(dir, false, ParseError::HeadBudget, ctx, out);
                                data = &[];
                            } else {
                                half.buf.extend_from_slice(data);
                                return;
                            }
                        }
                        Some(end) if half.buf.len() + end > max => {
                            // Its end is here: the next byte may start a message.
                            self.head_too_large(dir, true, ParseError::HeadTooLarge, ctx, out);
                            data = &data[end..];
                        }
                        Some(end) => {
                            if half.buf.is_empty() {
                                self.on_head(dir, &data[..end], ts, ctx, out);
                            } else {
                                let mut buf = std::mem::take(&mut half.buf);
                                // The head is complete: its bytes leave the budget now.
                                ctx.cfg.head_budget.give_back(buf.len());
                                buf.extend_from_slice(&data[..end]);
                                self.on_head(dir, &buf, ts, ctx, out);
                                // Keep the (small) allocation for the next split head.
                                let half = &mut self.halves[h];
                                if half.buf.is_empty() && buf.capacity() <= 4096 {
                                    buf.clear();
                                    half.buf = buf;
                                }
                            }
                            data = &data[end..];
                        }
                    }
                }
                State::Body(body) => {
                    if matches!(body, Body::Length(_) | Body::UntilClose)
                        && half.role == Some(Kind::Response)
                        && self
                            .in_flight
                            .as_ref()
                            .is_some_and(|f| f.request.is_none() && f.response_bytes == 0)
                        && message_start(data, Some(Kind::Response)) == Start::Yes(Kind::Response)
                    {
                        // A response whose request was not seen (joined mid-stream, lost
                        // bytes) declared a body, but a status line follows at once: it
                        // answered a HEAD request, so it had no body.
                        self.halves[h].state = State::Idle;
                        self.finish_in_flight(ts, false, ctx, out);
                        continue;
                    }
                    let body = match &mut self.halves[h].state {
                        State::Body(body) => body,
                        _ => unreachable!("checked above"),
                    };
                    let (used, done) = match body {
                        Body::Length(remaining) => {
                            let take = (data.len() as u64).min(*remaining);
                            *remaining -= take;
                            (take as usize, *remaining == 0)
                        }
                        Body::UntilClose => (data.len(), false),
                        Body::Chunked(c) => match c.advance(data) {
                            Progress::More => (data.len(), false),
                            Progress::Done(n) => (n, true),
                            Progress::Invalid(n) => {
                                self.body_bytes(dir, n as u64);
                                data = &data[n..];
                                out.stats.errors.inc(ParseError::InvalidChunk);
                                self.lose_message(dir, ts, false, ctx, out);
                                continue;
                            }
                        },
                    };
                    self.body_bytes(dir, used as u64);
                    data = &data[used..];
                    if done {
                        self.halves[h].state = State::Idle;
                        self.message_done(dir, ts, ctx, out);
                    }
                }
            }
        }
    }

    fn head_too_large(
        &mut self,
        dir: Direction,
        at_line_start: bool,
        why: ParseError,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        out.stats.errors.inc(why);
        out.stats.resyncs += 1;
        if self.halves[dir.index()].role == Some(Kind::Response) {
            self.resp_desync = true;
        }
        self.halves[dir.index()].lose_place(at_line_start, &ctx.cfg.head_budget);
    }

    /// Handles a complete head read from direction `dir` in the chunk at `ts`.
    fn on_head(&mut self, dir: Direction, bytes: &[u8], ts: u64, ctx: &Ctx<'_>, out: &mut Output) {
        let half = &self.halves[dir.index()];
        let kind = half.role.unwrap_or(half.head_kind);
        let parsed = match parse_head(kind, bytes, ctx.cfg) {
            Ok(Some((head, _))) => Ok(head),
            // `bytes` ends with the empty line, so the parser must have found a whole head.
            Ok(None) => Err(match kind {
                Kind::Request => ParseError::InvalidRequest,
                Kind::Response => ParseError::InvalidResponse,
            }),
            Err(e) => Err(e),
        };
        self.apply_head(dir, kind, parsed, ts, ctx, out);
    }

    /// Acts on a parsed head (or its error) of direction `dir`.
    fn apply_head(
        &mut self,
        dir: Direction,
        kind: Kind,
        parsed: Result<Head, ParseError>,
        ts: u64,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        let start_ns = self.halves[dir.index()].msg_start_ns;
        match parsed {
            Ok(Head::Request(req)) => self.on_request(dir, req, start_ns, ctx, out),
            Ok(Head::Response(resp)) => self.on_response(dir, resp, start_ns, ts, ctx, out),
            Err(e) => {
                out.stats.errors.inc(e);
                out.stats.resyncs += 1;
                if kind == Kind::Response && self.req_dir.is_some() {
                    self.resp_desync = true;
                }
                // The bad head ended with an empty line, so the next byte starts a line.
                self.halves[dir.index()].lose_place(true, &ctx.cfg.head_budget);
            }
        }
    }

    fn on_request(
        &mut self,
        dir: Direction,
        req: head::RequestHead,
        start_ns: u64,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        self.set_roles(dir);
        self.seen_head = true;
        out.stats.requests += 1;
        if self.pending.len() >= ctx.cfg.max_in_flight.max(1) {
            if let Some(old) = self.pending.pop_front() {
                out.stats.pipeline_overflow += 1;
                let end = old.start_ns;
                self.emit(Some(old), None, None, 0, end, end, true, ctx, out);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        // Waiting paths count against the same budget as partial heads: a flood of
        // connections pipelining long paths must not grow memory past it either. Over the
        // budget the request keeps its place in the pairing but loses its path.
        let mut path = req.path;
        if !ctx.cfg.head_budget.try_take(path_held(&path)) {
            out.stats.errors.inc(ParseError::HeadBudget);
            path = CompactString::default();
        }
        self.pending.push_back(Pending {
            id,
            method: req.method,
            path,
            version: req.version,
            start_ns,
            request_bytes: 0,
            upgrade_h2c: req.upgrade_h2c,
        });
        let half = &mut self.halves[dir.index()];
        half.state = match req.framing {
            Framing::Length(n) => State::Body(Body::Length(n)),
            Framing::Chunked => State::Body(Body::Chunked(Chunked::default())),
            Framing::Empty | Framing::UntilClose => State::Idle,
        };
        self.body_of = matches!(half.state, State::Body(_)).then_some(id);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        dir: Direction,
        resp: head::ResponseHead,
        start_ns: u64,
        ts: u64,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        self.set_roles(dir.flip());
        self.seen_head = true;
        // Only a request without a body can be answered twice; whatever waited for a body
        // that did not come is done.
        self.emit_answered(ctx, out);
        let status = resp.status;
        if (100..200).contains(&status) && status != 101 {
            // 100 Continue, 103 Early Hints...: the final response follows.
            out.stats.informational += 1;
            self.halves[dir.index()].state = State::Idle;
            return;
        }
        out.stats.responses += 1;
        if self.resp_desync {
            // Responses were lost: answer the newest request that began before this response
            // instead of the oldest, and give up on the older ones.
            self.resp_desync = false;
            while self.pending.len() > 1 && self.pending[1].start_ns <= start_ns {
                let lost = self.pending.pop_front().expect("len > 1");
                self.emit(
                    Some(lost),
                    None,
                    None,
                    0,
                    start_ns,
                    start_ns,
                    true,
                    ctx,
                    out,
                );
            }
        }
        let request = self.pending.pop_front();
        let method = request.as_ref().and_then(|r| r.method);
        if status == 101 || (method == Some(Method::Connect) && (200..300).contains(&status)) {
            // The connection now carries another protocol (or a tunnel): this exchange ends
            // here, and so does HTTP/1 parsing.
            let h2c = resp.upgrade_h2c || request.as_ref().is_some_and(|r| r.upgrade_h2c);
            let incomplete = request.is_none();
            self.emit(
                request,
                Some(status),
                Some(resp.version),
                0,
                start_ns,
                ts,
                incomplete,
                ctx,
                out,
            );
            out.stats.upgraded_connections += 1;
            let exit = if status == 101 && h2c {
                Exit::Http2
            } else {
                Exit::Upgraded
            };
            self.stop(exit, &ctx.cfg.head_budget);
            return;
        }
        let framing = if method == Some(Method::Head) || status == 204 || status == 304 {
            Framing::Empty
        } else {
            resp.framing
        };
        let body = match framing {
            Framing::Empty => None,
            Framing::Length(n) => Some(Body::Length(n)),
            Framing::Chunked => Some(Body::Chunked(Chunked::default())),
            Framing::UntilClose => Some(Body::UntilClose),
        };
        match body {
            None => {
                self.halves[dir.index()].state = State::Idle;
                let incomplete = request.is_none();
                let flight = InFlight {
                    request,
                    status,
                    version: resp.version,
                    start_ns,
                    response_bytes: 0,
                };
                let a = Answered {
                    flight,
                    end_ns: ts,
                    incomplete,
                };
                self.complete(a, ctx, out);
            }
            Some(body) => {
                self.halves[dir.index()].state = State::Body(body);
                self.in_flight = Some(InFlight {
                    request,
                    status,
                    version: resp.version,
                    start_ns,
                    response_bytes: 0,
                });
            }
        }
    }

    /// Adds body bytes to the message being received in `dir`.
    fn body_bytes(&mut self, dir: Direction, n: u64) {
        if self.halves[dir.index()].role == Some(Kind::Response) {
            if let Some(f) = &mut self.in_flight {
                f.response_bytes += n;
            }
        } else if let Some(id) = self.body_of {
            if let Some(p) = self.pending.back_mut().filter(|p| p.id == id) {
                p.request_bytes += n;
            } else if let Some(p) = [
                self.in_flight.as_mut(),
                self.answered.as_mut().map(|a| &mut a.flight),
            ]
            .into_iter()
            .flatten()
            .filter_map(|f| f.request.as_mut())
            .find(|p| p.id == id)
            {
                // The server answered before the request body ended (an early 413, a
                // `100-continue` request answered at once).
                p.request_bytes += n;
            }
        }
    }

    /// The message in `dir` ended with the chunk at `ts`.
    fn message_done(&mut self, dir: Direction, ts: u64, ctx: &Ctx<'_>, out: &mut Output) {
        if self.halves[dir.index()].role == Some(Kind::Response) {
            self.finish_in_flight(ts, false, ctx, out);
        } else {
            self.body_of = None;
            self.emit_answered(ctx, out);
        }
    }

    fn finish_in_flight(&mut self, end_ns: u64, cut: bool, ctx: &Ctx<'_>, out: &mut Output) {
        if let Some(f) = self.in_flight.take() {
            let incomplete = cut || f.request.is_none();
            let a = Answered {
                flight: f,
                end_ns,
                incomplete,
            };
            self.complete(a, ctx, out);
        }
    }

    /// Emits a finished exchange, or keeps it until its request body has been counted.
    fn complete(&mut self, a: Answered, ctx: &Ctx<'_>, out: &mut Output) {
        let body_coming =
            self.body_of.is_some() && a.flight.request.as_ref().map(|p| p.id) == self.body_of;
        if body_coming {
            self.emit_answered(ctx, out);
            self.answered = Some(a);
        } else {
            self.emit_flight(a, ctx, out);
        }
    }

    /// Emits the answered transaction that waited for its request body, if any.
    fn emit_answered(&mut self, ctx: &Ctx<'_>, out: &mut Output) {
        if let Some(a) = self.answered.take() {
            self.emit_flight(a, ctx, out);
        }
    }

    fn emit_flight(&self, a: Answered, ctx: &Ctx<'_>, out: &mut Output) {
        let f = a.flight;
        self.emit(
            f.request,
            Some(f.status),
            Some(f.version),
            f.response_bytes,
            f.start_ns,
            a.end_ns,
            a.incomplete,
            ctx,
            out,
        );
    }

    /// The current message of `dir` cannot be followed any further (broken framing or lost
    /// bytes): it ends here, incomplete, and the direction searches for the next head.
    fn lose_message(
        &mut self,
        dir: Direction,
        ts: u64,
        at_line_start: bool,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        out.stats.resyncs += 1;
        let half = &mut self.halves[dir.index()];
        let role = half.role;
        half.lose_place(at_line_start, &ctx.cfg.head_budget);
        if role == Some(Kind::Response) {
            self.resp_desync = true;
            self.finish_in_flight(ts, true, ctx, out);
        } else {
            self.body_of = None;
            self.emit_answered(ctx, out);
        }
    }

    /// `len` bytes of `dir` were lost before the chunk at `ts`.
    pub(crate) fn gap(
        &mut self,
        dir: Direction,
        ts: u64,
        len: u64,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        out.stats.gaps += 1;
        out.stats.gap_bytes += len;
        let h = dir.index();
        self.halves[h].last_ns = ts;
        let (absorbed, done) = match &mut self.halves[h].state {
            State::Ignore => return,
            State::Search => {
                // Already lost; a start cut by the previous chunk is no longer contiguous.
                let half = &mut self.halves[h];
                half.prefix_len = 0;
                half.at_line_start = true;
                return;
            }
            State::Body(Body::UntilClose) => (len, false),
            State::Body(Body::Length(remaining)) => {
                let take = len.min(*remaining);
                *remaining -= take;
                (take, *remaining == 0)
            }
            State::Body(Body::Chunked(c)) if c.can_skip(len) => {
                c.skip(len);
                (len, false)
            }
            State::Body(Body::Chunked(_)) | State::Idle | State::Head => (0, false),
        };
        self.body_bytes(dir, absorbed);
        if done {
            self.halves[h].state = State::Idle;
            self.message_done(dir, ts, ctx, out);
        }
        if absorbed < len {
            // The loss reaches outside a body we can count through: whatever message was
            // being read is lost, and the next chunk may start anywhere, even at a head.
            out.stats.errors.inc(ParseError::GapOutsideBody);
            self.lose_message(dir, ts, true, ctx, out);
        }
    }

    /// The connection ended at `ts`.
    pub(crate) fn close(&mut self, ts: u64, ctx: &Ctx<'_>, out: &mut Output) {
        // A request body cut by the close: its exchange still had its whole response.
        self.emit_answered(ctx, out);
        if self.in_flight.is_some() {
            let resp_half = self.req_dir.map(|d| &self.halves[d.flip().index()]);
            let (until_close, last) = match resp_half {
                Some(h) => (matches!(h.state, State::Body(Body::UntilClose)), h.last_ns),
                None => (false, ts),
            };
            // A close-delimited body ends at its last byte; any other body cut by the close
            // was aborted.
            self.finish_in_flight(if until_close { last } else { ts }, !until_close, ctx, out);
        }
        while let Some(p) = self.pending.pop_front() {
            self.emit(Some(p), None, None, 0, ts, ts, true, ctx, out);
        }
        self.stop(self.exit.unwrap_or(Exit::Upgraded), &ctx.cfg.head_budget);
    }

    /// Builds and outputs one transaction. It starts at its request's first byte, or at
    /// `response_start_ns` when there is no request.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        request: Option<Pending>,
        status: Option<u16>,
        version: Option<HttpVersion>,
        response_bytes: u64,
        response_start_ns: u64,
        end_ns: u64,
        incomplete: bool,
        ctx: &Ctx<'_>,
        out: &mut Output,
    ) {
        let req_dir = self.req_dir.unwrap_or(Direction::Forward);
        let (client, server) = match req_dir {
            Direction::Forward => (ctx.tuple.src, ctx.tuple.dst),
            Direction::Reverse => (ctx.tuple.dst, ctx.tuple.src),
        };
        if let Some(r) = &request {
            // The path leaves the parser with the transaction.
            ctx.cfg.head_budget.give_back(path_held(&r.path));
        }
        let (method, path, req_version, start_ns, request_bytes) = match request {
            Some(r) => (
                r.method,
                r.path,
                Some(r.version),
                r.start_ns,
                r.request_bytes,
            ),
            None => (None, CompactString::default(), None, response_start_ns, 0),
        };
        out.stats.transactions += 1;
        out.stats.incomplete += u64::from(incomplete);
        // Reserve first, then write the transaction into its slot: `push` builds the value
        // on the stack, keeps it across its possible reallocation, then copies it (a
        // `memmove` of the whole struct per transaction, ~6% of the small-GET time).
        let txs = &mut out.transactions;
        txs.reserve(1);
        txs.spare_capacity_mut()[0].write(Transaction {
            time_unix_ns: (start_ns as i64).saturating_add(ctx.meta.wall_offset_ns),
            start_ns,
            end_ns: end_ns.max(start_ns),
            method,
            path,
            status,
            request_bytes,
            response_bytes,
            client: Some(client),
            server: Some(server),
            pid: ctx.meta.pid,
            comm: ctx.meta.comm,
            side: side_of(ctx.meta.observer, req_dir),
            source: ctx.meta.source,
            version: req_version.or(version),
            tags: ctx.meta.tags.clone(),
            incomplete,
        });
        // SAFETY: the slot at `len` was reserved and has just been initialised.
        unsafe { txs.set_len(txs.len() + 1) };
    }
}

/// The heap bytes a waiting request's path holds, which count against the [`HeadBudget`]:
/// paths of up to 24 bytes are stored inline in the pending request, whose number per
/// connection `max_in_flight` already bounds, so they hold nothing more and skip the budget's
/// shared atomic (two locked instructions per request were ~6% of the small-GET time).
///
/// [`HeadBudget`]: crate::HeadBudget
fn path_held(path: &CompactString) -> usize {
    if path.is_heap_allocated() {
        path.len()
    } else {
        0
    }
}
