//! Packs generated traces into encoded OTLP `ExportTraceServiceRequest`s.
//!
//! A [`BatchBuilder`] decides per trace its id, service, whether it fails,
//! where it sits in the time window and a ±20 % speed factor, then copies
//! the pre-encoded template bytes and patches ids and times in place. Traces
//! are packed `batch_spans` spans to a request; a trace larger than what is
//! left of a batch continues in the next one, with the same ids and times.
//! Spans are grouped into one `ResourceSpans` per service, as an SDK's
//! exporter would send them.
//!
//! Plain code, no I/O: the sender in `send` ships what this builds.

use std::sync::Arc;

use anyhow::{ensure, Result};
use chaintrace_model::{DurationNanos, UnixNanos};
use prost::encoding::{encode_varint, encoded_len_varint};

use super::chain::ChainShape;
use super::template::{PatchKind, ServiceHeader, TraceTemplate};

/// What the generated load looks like.
#[derive(Debug, Clone)]
pub struct LoadShape {
    /// Spans in each trace (7 is the RAG chain).
    pub spans_per_trace: usize,
    /// Spans per export request.
    pub batch_spans: usize,
    /// Bytes of each `gen_ai.prompt` / `gen_ai.completion` attribute.
    pub attr_bytes: usize,
    /// Share of traces whose `api_call` fails, 0.0 to 1.0.
    pub error_rate: f64,
    /// Number of distinct `service.name`s.
    pub services: usize,
    /// Traces lie within this long before "now".
    pub time_spread: DurationNanos,
    /// Each sender's traces start in order across the spread (its first
    /// trace the oldest), as a live system's would arrive; otherwise
    /// anywhere in it.
    pub in_order: bool,
}

/// Per-trace speed factor in 1/1024ths: 0.8× to 1.2×.
const SCALE_MIN: u64 = 819;
const SCALE_MAX: u64 = 1229;

/// Everything encoded once and shared by all builders.
#[derive(Debug)]
pub struct Templates {
    ok: TraceTemplate,
    error: TraceTemplate,
    services: Vec<ServiceHeader>,
    spans_per_trace: usize,
    batch_spans: usize,
    /// `error_rate` as a threshold on a uniform u64.
    error_threshold: u64,
    spread: u64,
    in_order: bool,
    /// How long a trace lasts at speed factor 1.
    duration: u64,
}

impl Templates {
    /// Lays out and encodes the trace shape and the service headers.
    pub fn new(load: &LoadShape) -> Result<Templates> {
        ensure!(
            load.spans_per_trace >= 1,
            "spans per trace must be at least 1"
        );
        ensure!(load.batch_spans >= 1, "spans per batch must be at least 1");
        ensure!(load.services >= 1, "services must be at least 1");
        ensure!(
            (0.0..=1.0).contains(&load.error_rate),
            "error rate {} is outside 0.0 to 1.0",
            load.error_rate
        );
        ensure!(
            load.spans_per_trace <= u32::MAX as usize,
            "spans per trace {} is too large",
            load.spans_per_trace
        );
        let spread = load.time_spread.0;
        // Leave room for the slowest speed factor.
        let shape = ChainShape::new(
            load.spans_per_trace,
            load.attr_bytes,
            spread.saturating_mul(1024) / SCALE_MAX,
        );
        let error_threshold = if load.error_rate >= 1.0 {
            u64::MAX
        } else {
            (load.error_rate * 2f64.powi(64)) as u64
        };
        Ok(Templates {
            ok: TraceTemplate::new(&shape, false)?,
            error: TraceTemplate::new(&shape, true)?,
            services: ServiceHeader::all(load.services),
            spans_per_trace: load.spans_per_trace,
            batch_spans: load.batch_spans,
            error_threshold,
            spread,
            in_order: load.in_order,
            duration: shape.duration(),
        })
    }
}

/// A fast non-cryptographic generator (xorshift64*); never yields 0.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from any `seed` (0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ 0x9e37_79b9_7f4a_7c15).max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The splitmix64 finaliser: a bijection on u64 with `mix(0) == 0`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The span id of `slot` in the trace with `key`. `key` is in 1..2^63 so
/// `key + slot` never wraps to 0, and `mix` is a bijection: ids are unique
/// within a trace and never all zero.
fn span_id(key: u64, slot: u32) -> u64 {
    mix(key + u64::from(slot))
}

/// What is decided once per trace.
#[derive(Debug, Clone, Copy)]
struct TraceState {
    id: [u8; 16],
    key: u64,
    start: u64,
    scale: u64,
    service: usize,
    error: bool,
    /// The first slot not yet sent.
    next_slot: usize,
}

/// Slots `from..to` of one trace, going into the batch being built.
#[derive(Debug)]
struct Piece {
    trace: TraceState,
    from: usize,
    to: usize,
}

/// One encoded export request.
#[derive(Debug)]
pub struct Batch {
    /// The `ExportTraceServiceRequest` protobuf.
    pub body: Vec<u8>,
    /// Spans in it.
    pub spans: u64,
}

/// Produces batches for one sender; each builder has its own random stream
/// and its own share of the trace budget.
#[derive(Debug)]
pub struct BatchBuilder {
    templates: Arc<Templates>,
    rng: Rng,
    traces_left: Option<u64>,
    /// The trace budget at the start, and traces started so far.
    budget: Option<u64>,
    started: u64,
    current: Option<TraceState>,
    pieces: Vec<Piece>,
    service_bytes: Vec<usize>,
}

impl BatchBuilder {
    /// A builder that starts at most `traces` traces (unbounded if `None`).
    pub fn new(templates: Arc<Templates>, seed: u64, traces: Option<u64>) -> BatchBuilder {
        let services = templates.services.len();
        BatchBuilder {
            templates,
            rng: Rng::new(seed),
            traces_left: traces,
            budget: traces,
            started: 0,
            current: None,
            pieces: Vec::new(),
            service_bytes: vec![0; services],
        }
    }

    fn new_trace(&mut self, now: u64) -> TraceState {
        let t = &self.templates;
        let rng = &mut self.rng;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        let scale = SCALE_MIN + rng.next_u64() % (SCALE_MAX - SCALE_MIN + 1);
        let duration = scaled(t.duration, scale);
        let slack = t.spread.saturating_sub(duration);
        let key = (rng.next_u64() >> 1) | 1;
        let offset = match self.budget {
            // Trace k of n starts k/n of the way in, give or take 1/n.
            Some(n) if t.in_order && n > 0 => {
                let step = slack / n;
                let at =
                    (u128::from(slack) * u128::from(self.started.min(n)) / u128::from(n)) as u64;
                at + rng.next_u64() % (step + 1)
            }
            _ => rng.next_u64() % (slack + 1),
        };
        self.started += 1;
        TraceState {
            id,
            key,
            start: now.saturating_sub(t.spread) + offset,
            scale,
            service: (rng.next_u64() % t.services.len() as u64) as usize,
            error: rng.next_u64() < t.error_threshold,
            next_slot: 0,
        }
    }

    /// The next request, or `None` once the trace budget is spent and every
    /// started trace is sent. Traces start within the window ending at `now`.
    pub fn next_batch(&mut self, now: UnixNanos) -> Option<Batch> {
        let spans_per_trace = self.templates.spans_per_trace;
        let batch_spans = self.templates.batch_spans;
        self.pieces.clear();
        self.service_bytes.fill(0);
        let mut filled = 0;
        while filled < batch_spans {
            let trace = match self.current.take() {
                Some(t) => t,
                None => {
                    match &mut self.traces_left {
                        Some(0) => break,
                        Some(n) => *n -= 1,
                        None => {}
                    }
                    self.new_trace(now.0)
                }
            };
            let from = trace.next_slot;
            let to = spans_per_trace.min(from + batch_spans - filled);
            let template = self.templates.template(trace.error);
            self.service_bytes[trace.service] += template.len_of(from, to);
            self.pieces.push(Piece { trace, from, to });
            filled += to - from;
            if to < spans_per_trace {
                self.current = Some(TraceState {
                    next_slot: to,
                    ..trace
                });
            }
        }
        if filled == 0 {
            return None;
        }
        Some(Batch {
            body: self.encode(),
            spans: filled as u64,
        })
    }

    /// Writes the request: per service, `resource_spans { resource,
    /// scope_spans { scope, spans... } }` with lengths known up front.
    fn encode(&self) -> Vec<u8> {
        let t = &*self.templates;
        let lengths: Vec<(usize, usize)> = t
            .services
            .iter()
            .zip(&self.service_bytes)
            .map(|(h, &spans)| {
                let scope = h.scope_field.len() + spans;
                let resource =
                    h.resource_field.len() + 1 + encoded_len_varint(scope as u64) + scope;
                (resource, scope)
            })
            .collect();
        let total: usize = lengths
            .iter()
            .zip(&self.service_bytes)
            .filter(|(_, &spans)| spans > 0)
            .map(|(&(resource, _), _)| 1 + encoded_len_varint(resource as u64) + resource)
            .sum();
        let mut out = Vec::with_capacity(total);
        for (service, header) in t.services.iter().enumerate() {
            if self.service_bytes[service] == 0 {
                continue;
            }
            let (resource, scope) = lengths[service];
            out.push(0x0a); // ExportTraceServiceRequest.resource_spans = 1
            encode_varint(resource as u64, &mut out);
            out.extend_from_slice(&header.resource_field);
            out.push(0x12); // ResourceSpans.scope_spans = 2
            encode_varint(scope as u64, &mut out);
            out.extend_from_slice(&header.scope_field);
            for piece in self.pieces.iter().filter(|p| p.trace.service == service) {
                write_piece(&mut out, t.template(piece.trace.error), piece);
            }
        }
        debug_assert_eq!(out.len(), total);
        out
    }
}

impl Templates {
    fn template(&self, error: bool) -> &TraceTemplate {
        if error {
            &self.error
        } else {
            &self.ok
        }
    }
}

/// `rel` nanoseconds at speed factor `scale`/1024.
fn scaled(rel: u64, scale: u64) -> u64 {
    (u128::from(rel) * u128::from(scale) / 1024) as u64
}

/// The hot loop: one copy of the piece's bytes, then a handful of fixed-size
/// overwrites per span.
fn write_piece(out: &mut Vec<u8>, template: &TraceTemplate, piece: &Piece) {
    let range = template.span_at[piece.from]..template.span_at[piece.to];
    let base = out.len();
    out.extend_from_slice(&template.bytes[range.clone()]);
    let trace = &piece.trace;
    let patches = &template.patches[template.patch_at[piece.from]..template.patch_at[piece.to]];
    for patch in patches {
        let at = base + patch.at - range.start;
        match patch.kind {
            PatchKind::TraceId => out[at..at + 16].copy_from_slice(&trace.id),
            PatchKind::SpanId(slot) => {
                out[at..at + 8].copy_from_slice(&span_id(trace.key, slot).to_be_bytes())
            }
            PatchKind::Time(rel) => {
                let time = trace.start + scaled(rel, trace.scale);
                out[at..at + 8].copy_from_slice(&time.to_le_bytes())
            }
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
