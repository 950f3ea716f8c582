//! One request through the filter, phase by phase, against the `Host` trait:
//! headers → identity/tags decision → request body → response → record.
//! The glue's HTTP context only forwards proxy-wasm callbacks to this.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::config::UnknownPaths;
use crate::controls::{self, caps::CapsView, limits::local::LocalCounts, strict};
use crate::filter::Filter;
use crate::host::{HeaderBlock, Host, Metric};
use crate::jobs::shipper::Shipper;
use crate::request::decision::{Admitted, Decision, Denial};
use crate::request::identity::{self, ClaimSource, Principal};
use crate::request::key_registry::RegistryView;
use crate::request::record::{self, Call, Finished, IdGen, Metered};
use crate::request::tags;
use crate::request::upstream;
use crate::usage::{
    self, ChunkEdit, Held, MeterStart, Operation, PathKind, RequestInfo, ResponseMeter, Route,
};
use crate::vm::Shared;

/// What the glue returns to the host for a body or headers callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Stop iteration (request body: let the host buffer it; after a local
    /// reply: stop the original request).
    Pause,
}

/// How far the request body has been read.
#[derive(Debug)]
enum RequestBody {
    Unseen,
    /// The first chunk was not the whole body and may be rewritten: the host
    /// buffers it until the end (up to `usage.max_buffered_body_bytes`).
    Buffering,
    /// Too large to hold, or never rewritten: chunks pass as they come and
    /// only the values the filter reads are kept.
    Streaming(Box<crate::json::scan::CaptureScanner>),
    Read,
    /// The whole body, passed on unread: nothing before the record needs
    /// what it says (`keeps_request_body`), so the shipper reads it with
    /// the record, in its loop, where the reading code runs warm.
    Kept(Vec<u8>),
}

#[derive(Debug)]
enum Phase {
    Start,
    Denied,
    Admitted(Box<Admitted>),
    /// Finished and handed to the shipper, with what the record needs
    /// (moved, not copied: the request context then drops little).
    Recorded,
}

/// The response's meter: none (nothing metered), known from the response
/// headers but not built yet, or reading.
#[derive(Debug)]
enum Meter {
    Off,
    /// Built when the first byte must be read live; a kept first chunk
    /// (`Held`) leaves it to the shipper's pass (`Metered::Later`).
    Pending(MeterStart),
    Live(ResponseMeter),
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestFlow {
    filter: Rc<Filter>,
    shipper: Rc<RefCell<Shipper>>,
    caps: Rc<RefCell<CapsView>>,
    /// This VM's decoded copy of the key registry (refreshed on the root tick).
    registry: Rc<RefCell<RegistryView>>,
    requests: Rc<Cell<u64>>,
    limit_counts: Rc<RefCell<LocalCounts>>,
    ids: Rc<RefCell<IdGen>>,
    id: [u8; 32],
    phase: Phase,
    start_ms: u64,
    route: Option<Route>,
    request: RequestInfo,
    request_body: RequestBody,
    /// Request body bytes seen so far.
    body_bytes: usize,
    /// The request's `content-length`, when it sent one.
    declared_length: Option<usize>,
    meter: Meter,
    /// The first chunk of a JSON response body, fed to `meter` with the
    /// record (in the shipper's loop, where the parsing code runs warm)
    /// when nothing needs the usage earlier (`may_read_usage_later`).
    held: Option<Held>,
    status: u32,
    ttft_ms: Option<u64>,
    /// When the last response bytes arrived, if the clock was read then
    /// (the first chunk, while no later one came).
    last_byte_ms: Option<u64>,
    /// `content-length` was removed upstream, so the body may change size.
    length_free: bool,
    /// Headers the controls add to the client's response (rate-limit state,
    /// budget warnings).
    extra_response_headers: Vec<(&'static str, String)>,
    /// A call on strict budgets (boxed: most calls have none, and the
    /// request context stays small).
    strict: Option<Box<StrictCall>>,
}

/// The strict budgets covering a call (its body is reserved against them
/// before it leaves) and what it reserved, settled at its end.
#[derive(Debug)]
struct StrictCall {
    budgets: Vec<String>,
    held: Option<strict::Held>,
}

impl RequestFlow {
    pub fn new(shared: &Shared) -> Self {
        RequestFlow {
            ids: shared.ids.clone(),
            filter: shared.filter.clone(),
            shipper: shared.shipper.clone(),
            caps: shared.caps.clone(),
            registry: shared.registry.clone(),
            requests: shared.requests.clone(),
            limit_counts: shared.limit_counts.clone(),
            // Set in on_request_headers, once the start time is known.
            id: [b'0'; 32],
            phase: Phase::Start,
            start_ms: 0,
            route: None,
            request: RequestInfo::default(),
            request_body: RequestBody::Unseen,
            body_bytes: 0,
            declared_length: None,
            meter: Meter::Off,
            held: None,
            status: 0,
            ttft_ms: None,
            last_byte_ms: None,
            length_free: false,
            extra_response_headers: Vec::new(),
            strict: None,
        }
    }

    pub fn request_id(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or("")
    }

    /// Decide on the request from its headers (pure: no host effects).
    pub fn decide(&self, headers: &[(&str, &str)], claims: &mut dyn ClaimSource) -> Decision {
        let f = &self.filter;
        let client = match f.tags.inspect_client(&f.schema, headers) {
            Ok(c) => c,
            Err(conflict) => return Decision::Deny(Denial::tag_conflict(&conflict)),
        };
        let view = self.registry.try_borrow().ok();
        let registry = view.as_deref().map(RegistryView::keys);
        match f
            .identity
            .resolve_with(headers, claims, registry, self.start_ms)
        {
            Ok(principal) => Decision::Continue(Box::new(Admitted { principal, client })),
            Err(why) => Decision::Deny(Denial::unauthorized(why, &f.schema)),
        }
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Step {
        self.start_ms = host.now_ms();
        if let Ok(mut ids) = self.ids.try_borrow_mut() {
            self.id = ids.next_id(self.start_ms);
        }
        self.requests.set(self.requests.get().saturating_add(1));
        let block = host.request_headers();
        let headers = block.pairs();
        let decision = {
            let mut claims = HostClaims {
                host: &mut *host,
                filter: &self.filter,
            };
            self.decide(&headers, &mut claims)
        };
        let path = identity::header(&headers, ":path").unwrap_or("");
        let kind = usage::classify(path);
        let unknown = matches!(kind, PathKind::Unknown);
        self.route = match kind {
            PathKind::Metered(route) => Some(route),
            PathKind::Free => None,
            PathKind::Unknown => match self.filter.config.usage.unknown_paths {
                UnknownPaths::Meter => Some(usage::unknown_route()),
                UnknownPaths::Reject => None,
            },
        };
        let admitted = match decision {
            Decision::Deny(denial) => return self.deny_identity(host, &headers, &denial),
            Decision::Continue(admitted) => admitted,
        };
        if unknown && self.route.is_none() {
            return self.deny(host, &Denial::unknown_path());
        }
        let controls = controls::enforce(
            host,
            &self.filter,
            &self.caps,
            &self.limit_counts,
            &admitted.principal,
            self.start_ms,
        );
        if let Some(denial) = controls.denial {
            return self.deny_recorded(host, &denial, Some(&admitted.principal));
        }
        self.extra_response_headers = controls.response_headers;
        if !controls.strict_budgets.is_empty() {
            self.strict = Some(Box::new(StrictCall {
                budgets: controls.strict_budgets,
                held: None,
            }));
        }

        // A metered body is read in on_request_body and may be rewritten
        // there, after the headers went on: its length is not known yet.
        // (Holding the headers instead would need resume_http_request, since
        // a paused headers phase stops the body callbacks too in Envoy.)
        // Mirrors usage::inspect_request: only chat streams (OpenAI, Azure)
        // get `stream_options.include_usage` added.
        let may_rewrite = self.strict.is_some()
            || self.route.as_ref().is_some_and(|r| {
                self.filter.usage.openai_stream_usage && r.operation == Operation::Chat
            });
        self.declared_length = identity::header(&headers, "content-length").and_then(parse_trimmed);
        let max_body = self.filter.config.usage.max_request_body_bytes;
        if self.declared_length.is_some_and(|n| n > max_body) {
            return self.deny(host, &Denial::request_too_large(max_body));
        }
        let profile = self.filter.profile;
        let no_body = end_of_stream && profile.headers_eos_reliable();
        self.length_free = may_rewrite && !no_body;
        let planned = upstream::plan(
            &headers,
            &upstream::Inputs {
                filter: &self.filter,
                admitted: &admitted,
                route: self.route.as_ref(),
                request_id: self.request_id(),
                body_may_change: self.length_free,
                now_ms: self.start_ms,
            },
        );
        match planned {
            Ok(edits) => upstream::apply(host, &self.filter, &edits),
            Err(denial) => return self.deny(host, &denial),
        }
        let principal = (no_body && self.strict.is_some()).then(|| admitted.principal.clone());
        self.phase = Phase::Admitted(admitted);
        // A strict call is reserved once its body is read. The headers go on
        // now: pausing them would stop Envoy's body callbacks too (and stall
        // Kong). A refusal from the body resets the upstream request before
        // its body is sent, so the provider never gets a complete call (Kong
        // reads the whole body before proxying: nothing reaches it at all).
        if let Some(principal) = principal {
            if let Some(denial) = self.reserve_strict(host, b"", &principal) {
                return denial;
            }
        }
        Step::Continue
    }

    /// Reserve a strict call's worst case against its budgets' leases, and
    /// lower its output limit when that does not fit. `Some(step)`: refused.
    fn reserve_strict(
        &mut self,
        host: &mut dyn Host,
        body: &[u8],
        principal: &Principal,
    ) -> Option<Step> {
        let route = self.route.as_ref()?;
        let caps = &self.filter.config.caps;
        let view = self.caps.try_borrow().ok()?;
        let model = self.request.model.clone();
        let admission = strict::admit(
            host,
            &strict::Call {
                config: &caps.strict,
                failure_mode: caps.failure_mode,
                view: &view.strict,
                budgets: self.strict.as_ref().map_or(&[][..], |s| &s.budgets[..]),
                route,
                model: model.as_deref(),
                body,
                now_ms: self.start_ms,
            },
        );
        drop(view);
        match admission {
            strict::Admission::Admit {
                held,
                clamped,
                body,
            } => {
                if let Some(s) = self.strict.as_mut() {
                    s.held = Some(held);
                }
                if let Some(n) = clamped {
                    self.extra_response_headers
                        .push((strict::CLAMPED_HEADER, n.to_string()));
                }
                if let Some(new_body) = body {
                    host.replace_request_body(&new_body);
                }
                None
            }
            strict::Admission::Unenforced => {
                host.increment_metric(Metric::CapsUnenforced, 1);
                None
            }
            strict::Admission::Deny(denial) => {
                Some(self.deny_recorded(host, &denial, Some(principal)))
            }
        }
    }

    /// `deny`, and leave a record of the refusal (zero tokens, `error` = its
    /// code) when `usage.record_refusals` names its status, so usage reports
    /// show how often a team hit its cap or limit.
    #[cold]
    #[inline(never)]
    fn deny_recorded(
        &mut self,
        host: &mut dyn Host,
        denial: &Denial,
        principal: Option<&Principal>,
    ) -> Step {
        let recorded = self
            .filter
            .config
            .usage
            .record_refusals
            .contains(denial.status);
        if let (true, Some(principal), Some(route)) = (recorded, principal, &self.route) {
            let usage = usage::Usage {
                error: Some(denial.kind),
                ..usage::Usage::default()
            };
            let call = Call {
                id: std::str::from_utf8(&self.id).unwrap_or(""),
                start_ms: self.start_ms,
                end_ms: self.start_ms,
                ttft_ms: None,
                gateway: self.filter.profile.name(),
                schema: &self.filter.schema,
                principal,
                labels: &[],
                route,
                request: &self.request,
                status: denial.status,
                usage: &usage,
                principal_json: Some(&self.filter.principal_json),
                reservation: None,
                // Refused here: no provider credential was used.
                credential_id: None,
            };
            buffer_record(&self.shipper, &call);
        }
        self.deny(host, denial)
    }

    /// Refuse a call its identity did not admit. A revoked key is still
    /// known: its refusal can be recorded. Out of line, as every refusal:
    /// an admitted call's code stays short.
    #[cold]
    #[inline(never)]
    fn deny_identity(
        &mut self,
        host: &mut dyn Host,
        headers: &[(&str, &str)],
        denial: &Denial,
    ) -> Step {
        let view = self.registry.try_borrow().ok();
        let registry = view.as_deref().map(RegistryView::keys);
        let known = self.filter.identity.known_key(headers, registry);
        drop(view);
        self.deny_recorded(host, denial, known.as_ref())
    }

    /// Answer locally with `denial` and stop the request.
    #[cold]
    #[inline(never)]
    fn deny(&mut self, host: &mut dyn Host, denial: &Denial) -> Step {
        self.phase = Phase::Denied;
        let metric = match denial.status {
            400 => Metric::Denied400,
            404 => Metric::Denied404,
            413 => Metric::Denied413,
            402 => Metric::Denied402,
            429 => Metric::Denied429,
            503 => Metric::Denied503,
            _ => Metric::Denied401,
        };
        host.increment_metric(metric, 1);
        let mut extra: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            (tags::REQUEST_ID_HEADER, self.request_id()),
        ];
        extra.extend(denial.headers.iter().map(|(n, v)| (*n, v.as_str())));
        host.send_response(denial.status, &extra, denial.body().as_bytes());
        Step::Pause
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        let Some(route) = self.route.as_ref() else {
            return Step::Continue;
        };
        if !matches!(self.phase, Phase::Admitted(_)) {
            return Step::Continue;
        }
        self.body_bytes = self.body_bytes.saturating_add(body_size);
        let usage_cfg = &self.filter.config.usage;
        if self.body_bytes > usage_cfg.max_request_body_bytes {
            return self.deny(
                host,
                &Denial::request_too_large(usage_cfg.max_request_body_bytes),
            );
        }
        let hold = usage_cfg.max_buffered_body_bytes;
        // What the host held and the filter already took (Kong's whole body).
        let taken = match &mut self.request_body {
            RequestBody::Read | RequestBody::Kept(_) => return Step::Continue,
            RequestBody::Streaming(scanner) => {
                if let Some(chunk) = host.request_body(body_size) {
                    scanner.feed(&chunk);
                }
                if end_of_stream {
                    self.request = usage::inspect_scanned(route, scanner);
                    self.request_body = RequestBody::Read;
                }
                return Step::Continue;
            }
            RequestBody::Buffering if !end_of_stream && body_size <= hold => return Step::Pause,
            RequestBody::Buffering if !end_of_stream && self.strict.is_some() => {
                // A strict call's worst case needs its whole body.
                return self.deny(host, &Denial::request_too_large(hold));
            }
            RequestBody::Buffering if !end_of_stream => {
                // Grown past what the filter holds: let it all go on and
                // read the rest as it passes (no include_usage rewrite).
                log::info!("aispend: request body over {hold} bytes streams through unbuffered");
                return self.start_streaming(host, body_size);
            }
            RequestBody::Buffering => None,
            RequestBody::Unseen if !end_of_stream => {
                // Envoy hands over the body, then flags its end in a later,
                // empty callback. A first chunk that is a complete JSON object
                // is the whole body: read it now and let it pass, rather than
                // have the host buffer it. Only the first chunk is tried, so a
                // large body is not re-read as it grows.
                let body = host.request_body(body_size).unwrap_or_default();
                // The whole body (its declared length): kept for the record
                // when nothing before it needs what the body says.
                let whole =
                    self.declared_length == Some(self.body_bytes) && body.len() == body_size;
                if whole && self.keeps_request_body(route, &body) {
                    self.request_body = RequestBody::Kept(body);
                    return Step::Continue;
                }
                if let Some(info) = usage::inspect_whole_request(route, &body, &self.filter.usage) {
                    self.request_body = RequestBody::Read;
                    return self.take_request_info(host, info, &body);
                }
                // Only a body that may be rewritten is worth holding, and only
                // one known to fit: the host may add a large read to a held
                // body before the filter sees it, past its own limit (413).
                let fits = self.declared_length.unwrap_or(body_size) <= hold;
                if self.length_free && fits {
                    self.request_body = RequestBody::Buffering;
                    return Step::Pause;
                }
                if self.strict.is_some() {
                    return self.deny(host, &Denial::request_too_large(hold));
                }
                let mut scanner = Box::new(usage::body_scanner());
                scanner.feed(&body);
                self.request_body = RequestBody::Streaming(scanner);
                return Step::Continue;
            }
            RequestBody::Unseen => {
                // The whole body in one callback (Kong reads it all first).
                let body = host.request_body(body_size).unwrap_or_default();
                if self.keeps_request_body(route, &body) {
                    self.request_body = RequestBody::Kept(body);
                    return Step::Continue;
                }
                Some(body)
            }
        };
        self.request_body = RequestBody::Read;
        let body = taken.unwrap_or_else(|| host.request_body(body_size).unwrap_or_default());
        let info = usage::inspect_request(route, &body, &self.filter.usage);
        self.take_request_info(host, info, &body)
    }

    /// Whether the whole request `body` may pass unread and be read with the
    /// call's record. Only what the body says decides anything earlier: a
    /// stream (`stream_options.include_usage` is added, and the meter reads
    /// events) and a strict budget (its worst case is reserved). A body
    /// that may hold no key starting with `stream` (as written or spelled
    /// with escapes, which the reader decodes as the provider's parser
    /// does) names neither `stream` nor `stream_options`, so it reads as no
    /// stream and no usage asked: the same request info the response side
    /// would see after reading it. Up to `MAX_HELD` bytes, as a kept
    /// response chunk.
    fn keeps_request_body(&self, route: &Route, body: &[u8]) -> bool {
        self.strict.is_none()
            && !route.path_stream
            && !body.is_empty()
            && body.len() <= usage::MAX_HELD
            && !crate::json::bytes::may_hold_key(body, b"\"stream")
    }

    /// Read what the host holds so far and let the rest stream.
    fn start_streaming(&mut self, host: &mut dyn Host, body_size: usize) -> Step {
        let mut scanner = Box::new(usage::body_scanner());
        if let Some(held) = host.request_body(body_size) {
            scanner.feed(&held);
        }
        self.request_body = RequestBody::Streaming(scanner);
        Step::Continue
    }

    /// Keep what the request body said, and apply its rewrite if any; a
    /// strict call then reserves (and may lower its output limit).
    fn take_request_info(
        &mut self,
        host: &mut dyn Host,
        mut info: RequestInfo,
        body: &[u8],
    ) -> Step {
        let rewritten = info.body_rewrite.take();
        if let Some(new_body) = &rewritten {
            if self.length_free {
                host.replace_request_body(new_body);
            } else {
                // The headers already went upstream with the old length; a
                // different body would corrupt the request. Send it unchanged.
                log::warn!("aispend: body rewrite skipped, content-length already sent");
            }
        }
        self.request = info;
        if self.strict.is_none() {
            return Step::Continue;
        }
        let Phase::Admitted(admitted) = &self.phase else {
            return Step::Continue;
        };
        let principal = admitted.principal.clone();
        let body = match &rewritten {
            Some(b) if self.length_free => b.as_slice(),
            _ => body,
        };
        match self.reserve_strict(host, body, &principal) {
            Some(step) => step,
            None => Step::Continue,
        }
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) {
        if !matches!(self.phase, Phase::Admitted(_)) {
            return;
        }
        let response = host.response_headers();
        let [status, content_type] = response.get_each([":status", "content-type"]);
        self.status = status.and_then(status_code).unwrap_or(0);
        host.add_response_header(tags::REQUEST_ID_HEADER, self.request_id());
        if !self.extra_response_headers.is_empty() {
            self.answer_headers(host, &response);
        }
        if let Some(route) = &self.route {
            self.meter = Meter::Pending(MeterStart::new(
                route,
                &self.request,
                self.status,
                content_type,
            ));
        }
    }

    /// The gateway's own standing (the key's `x-ratelimit-*`, a clamped
    /// limit, a budget warning) replaces what the upstream sent under the
    /// same name (OpenAI's `x-ratelimit-*` are the organization's, shared by
    /// every key): one value per header, never two that disagree. Out of
    /// line: most calls have none, and the response headers' code stays
    /// short.
    #[inline(never)]
    fn answer_headers(&self, host: &mut dyn Host, response: &HeaderBlock) {
        let mut sent = response.present(&self.extra_response_headers, |(n, _)| n);
        for (name, value) in &self.extra_response_headers {
            match sent & 1 {
                0 => host.add_response_header(name, value),
                _ => host.replace_response_header(name, value),
            }
            sent >>= 1;
        }
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Step {
        if !matches!(self.phase, Phase::Admitted(_)) {
            return Step::Continue;
        }
        // One clock read serves both the first byte and, when this chunk is
        // also the last (a plain JSON answer), the record's duration: also
        // when the end comes in an empty callback right after it (as Envoy
        // delivers a body), the last byte arrived at that reading.
        let mut now = None;
        if self.ttft_ms.is_none() && body_size > 0 {
            let t = host.now_ms();
            self.ttft_ms = Some(t.saturating_sub(self.start_ms));
            now = Some(t);
            self.last_byte_ms = Some(t);
        } else if body_size > 0 {
            self.last_byte_ms = None;
        } else if end_of_stream {
            now = self.last_byte_ms;
        }
        let may_hold = self.may_read_usage_later();
        if !matches!(self.meter, Meter::Off) {
            // The last callback is fed even when empty: bytes the meter held back
            // (an unfinished event while stripping the usage chunk) are released then.
            let chunk = if body_size > 0 {
                host.response_body(body_size)
            } else if end_of_stream {
                Some(Vec::new())
            } else {
                None
            };
            if let Some(chunk) = chunk {
                let edit = match self.held.as_mut() {
                    Some(held) if chunk.is_empty() && end_of_stream => {
                        held.end();
                        ChunkEdit::Keep
                    }
                    Some(_) => {
                        // More bytes: the meter reads live from here on.
                        let held = self.held.take();
                        match self.live_meter() {
                            Some(meter) => {
                                if let Some(held) = held {
                                    meter.resume(held);
                                }
                                meter.feed_end(&chunk, end_of_stream)
                            }
                            None => ChunkEdit::Keep,
                        }
                    }
                    None if may_hold
                        && matches!(&self.meter, Meter::Pending(start) if start.may_hold()) =>
                    {
                        match Held::keep(chunk, end_of_stream) {
                            Ok(held) => {
                                self.held = Some(held);
                                ChunkEdit::Keep
                            }
                            Err(chunk) => self.feed_live(&chunk, end_of_stream),
                        }
                    }
                    None => self.feed_live(&chunk, end_of_stream),
                };
                if let ChunkEdit::Replace(bytes) = edit {
                    host.replace_response_body(&bytes);
                }
            }
        }
        if end_of_stream {
            self.finish(host, true, now);
        }
        // Never hold a chunk back: streams reach the client as they come.
        Step::Continue
    }

    /// The meter, built now if the response headers only noted what it needs.
    fn live_meter(&mut self) -> Option<&mut ResponseMeter> {
        if let Meter::Pending(start) = self.meter {
            let route = self.route.as_ref()?;
            self.meter = Meter::Live(start.meter(route, &self.request));
        }
        match &mut self.meter {
            Meter::Live(meter) => Some(meter),
            _ => None,
        }
    }

    fn feed_live(&mut self, chunk: &[u8], end_of_stream: bool) -> ChunkEdit {
        match self.live_meter() {
            Some(meter) => meter.feed_end(chunk, end_of_stream),
            None => ChunkEdit::Keep,
        }
    }

    /// Nothing needs the call's usage before its record is written: no
    /// strict budget settles it and no token limit counts it.
    fn may_read_usage_later(&self) -> bool {
        let Phase::Admitted(admitted) = &self.phase else {
            return false;
        };
        self.strict.is_none()
            && admitted
                .principal
                .limits
                .is_none_or(|l| l.tokens_per_minute.is_none())
    }

    /// The stream is over (possibly cut short): record it if not done yet.
    pub fn on_log(&mut self, host: &mut dyn Host) {
        self.finish(host, false, None);
    }

    /// `now_ms`: the clock if the caller just read it.
    fn finish(&mut self, host: &mut dyn Host, end_of_stream: bool, now_ms: Option<u64>) {
        if !matches!(self.phase, Phase::Admitted(_)) || self.route.is_none() {
            return;
        }
        let now = now_ms.unwrap_or_else(|| host.now_ms());
        // A kept body (never one of a strict call: `may_read_usage_later`)
        // is read with the record, by the shipper.
        // Its meter was never built (a chunk is kept only while none was fed).
        if let Some(held) = self.held.take() {
            if let Meter::Pending(start) = self.meter {
                let later = Box::new((start, held, end_of_stream));
                self.defer_record(now, Metered::Later(later), None);
                return;
            }
        }
        let usage = match self.live_meter() {
            Some(meter) => meter.finish(end_of_stream),
            None => usage::Usage {
                error: Some("no_response"),
                ..usage::Usage::default()
            },
        };
        let reservation = self.strict.take().and_then(|s| s.held).map(|held| {
            let settled = strict::settle(host, &held, self.status, &usage);
            (held.reserved_usd(), settled)
        });
        if let Phase::Admitted(admitted) = &self.phase {
            let (input_tokens, output_tokens) = record::recorded_tokens(&usage);
            controls::record_tokens(
                host,
                &self.filter,
                &self.limit_counts,
                &admitted.principal,
                input_tokens.saturating_add(output_tokens),
                now,
            );
        }
        self.defer_record(now, Metered::Read(usage), reservation);
    }

    /// Hand the finished call to the shipper, which writes its record with
    /// the next ones (`Shipper::defer`). The principal, route and request
    /// info move into it: they are freed with the record, in the shipper's
    /// loop, rather than one by one as each request context goes.
    fn defer_record(&mut self, now: u64, usage: Metered, reservation: Option<(f64, f64)>) {
        let Phase::Admitted(admitted) = std::mem::replace(&mut self.phase, Phase::Recorded) else {
            return;
        };
        let Some(route) = self.route.take() else {
            return;
        };
        let Admitted { principal, client } = *admitted;
        let call = Finished {
            filter: self.filter.clone(),
            id: self.id,
            start_ms: self.start_ms,
            end_ms: now,
            ttft_ms: self.ttft_ms,
            principal,
            labels: client.labels,
            route,
            request: std::mem::take(&mut self.request),
            request_body: match std::mem::replace(&mut self.request_body, RequestBody::Read) {
                RequestBody::Kept(body) => Some(body),
                _ => None,
            },
            status: self.status,
            usage,
            reservation,
        };
        if let Ok(mut shipper) = self.shipper.try_borrow_mut() {
            shipper.defer(call);
        }
    }
}

/// A response's `:status`: three digits as every host sends it (without
/// the generic number parser's code on each call), else as any number.
fn status_code(value: &str) -> Option<u32> {
    match *value.as_bytes() {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 100 + u32::from(b - b'0') * 10 + u32::from(c - b'0'))
        }
        _ => parse_trimmed(value),
    }
}

/// A number header value, surrounding whitespace allowed. Parsed as sent
/// first: `trim` (Unicode whitespace) costs more than the parse.
fn parse_trimmed<T: std::str::FromStr>(value: &str) -> Option<T> {
    value.parse().ok().or_else(|| value.trim().parse().ok())
}

/// Write `call`'s record into the VM's shipper.
/// Returns the (input, output) tokens recorded (0 when the shipper is busy,
/// which a single-threaded VM never is).
fn buffer_record(shipper: &RefCell<Shipper>, call: &Call<'_>) -> (u64, u64) {
    let Ok(mut shipper) = shipper.try_borrow_mut() else {
        return (0, 0);
    };
    shipper.write(|out| call.write_record(out))
}

/// Verified JWT claims, read where the host profile says they are (Envoy:
/// `jwt_authn`'s dynamic metadata, which exists only once it verified the
/// token).
struct HostClaims<'a> {
    host: &'a mut dyn Host,
    filter: &'a Filter,
}

impl ClaimSource for HostClaims<'_> {
    fn claim(&mut self, name: &str) -> Option<String> {
        let jwt = self.filter.jwt()?;
        let path =
            self.filter
                .profile
                .claim_path(&jwt.metadata_namespace, &jwt.payload_key, name)?;
        let raw = self.host.property(&path)?;
        // Envoy hands a string leaf over as its UTF-8 bytes.
        String::from_utf8(raw).ok().filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests;
