//! Pre-encoded protobuf for generated traces, with the places to patch.
//!
//! Encoding OTLP with prost for every span would cost more than the server
//! spends decoding it, so each trace shape is encoded once with marker
//! values in place of ids and times. Ids are fixed-size `bytes` and times are
//! `fixed64` on the wire, so a patch never changes a length: a batch is made
//! by copying template bytes and overwriting the patch places.
//!
//! This module must not decide anything per trace (ids, times, services);
//! that is `batch`'s job.

use anyhow::{bail, Result};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

use super::chain::ChainShape;

/// What to write at one patch place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// The 16-byte trace id.
    TraceId,
    /// The 8-byte span id of this slot (a span's own id or its parent's).
    SpanId(u32),
    /// A `fixed64` time, this many nanoseconds after the trace's start.
    Time(u64),
}

/// One place in a template to overwrite.
#[derive(Debug, Clone, Copy)]
pub struct Patch {
    /// Byte offset in [`TraceTemplate::bytes`].
    pub at: usize,
    /// What goes there.
    pub kind: PatchKind,
}

/// All spans of one trace variant, encoded back to back as `ScopeSpans.spans`
/// fields (tag, length, span), with the places that differ per trace.
#[derive(Debug)]
pub struct TraceTemplate {
    /// The encoded spans.
    pub bytes: Vec<u8>,
    /// `span_at[i]..span_at[i + 1]` is slot i; one entry more than slots.
    pub span_at: Vec<usize>,
    /// Patches in byte order.
    pub patches: Vec<Patch>,
    /// `patch_at[i]..patch_at[i + 1]` are slot i's patches.
    pub patch_at: Vec<usize>,
}

impl TraceTemplate {
    /// Encoded size of slots `from..to`.
    pub fn len_of(&self, from: usize, to: usize) -> usize {
        self.span_at[to] - self.span_at[from]
    }
}

// Markers: high-entropy values that cannot occur in the ASCII text and small
// numbers of the rest of a span.
const TRACE_MARK: [u8; 16] = *b"\xf3\x9a\x01\xc7\x5e\xd2\x88\x3b\xe4\x17\xa9\x60\xcf\x2d\x95\xb8";
const SPAN_MARK: u64 = 0xd1e5_7a0b_93c2_4f86;
const PARENT_MARK: u64 = 0xa7c3_19f0_e25d_6b48;
const START_MARK: u64 = 0xe8b4_62d9_0f13_c7a5;
const END_MARK: u64 = 0xb52f_c8e1_7a94_306d;
const EVENT_MARK: u64 = 0xc69d_04b7_e3a8_51f2;

const RATE_LIMIT_MESSAGE: &str = "Rate limit exceeded: 50 requests per minute";

fn string(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

impl TraceTemplate {
    /// Encodes `shape`; with `error`, its error slot fails with
    /// `RateLimitError` (status ERROR, error attributes, `exception` event).
    pub fn new(shape: &ChainShape, error: bool) -> Result<TraceTemplate> {
        let mut t = TraceTemplate {
            bytes: Vec::new(),
            span_at: vec![0],
            patches: Vec::new(),
            patch_at: vec![0],
        };
        let failing = failing_slots(shape, error);
        for (i, slot) in shape.slots.iter().enumerate() {
            let mut sp = Span {
                trace_id: TRACE_MARK.to_vec(),
                span_id: SPAN_MARK.to_be_bytes().to_vec(),
                parent_span_id: match slot.parent {
                    Some(_) => PARENT_MARK.to_be_bytes().to_vec(),
                    None => Vec::new(),
                },
                name: slot.name.to_string(),
                kind: slot.kind as i32,
                start_time_unix_nano: START_MARK,
                end_time_unix_nano: END_MARK,
                attributes: slot.attributes.clone(),
                ..Default::default()
            };
            let mut event_time = None;
            if error && i == shape.error_slot {
                sp.attributes.extend([
                    string("status", "error"),
                    string("error_type", "RateLimitError"),
                    string("error.type", "RateLimitError"),
                    string("error_message", RATE_LIMIT_MESSAGE),
                ]);
                sp.status = Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: format!("RateLimitError: {RATE_LIMIT_MESSAGE}"),
                });
                sp.events.push(span::Event {
                    time_unix_nano: EVENT_MARK,
                    name: "exception".to_string(),
                    attributes: vec![
                        string("exception.type", "RateLimitError"),
                        string("exception.message", RATE_LIMIT_MESSAGE),
                    ],
                    dropped_attributes_count: 0,
                });
                event_time = Some(slot.end);
            } else if failing[i] {
                // The exception propagates, as in the Python SDK: every
                // ancestor ends with status ERROR too.
                sp.status = Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: format!("RateLimitError: {RATE_LIMIT_MESSAGE}"),
                });
            }
            // Encoding a ScopeSpans holding only this span yields exactly the
            // `spans` field: tag, length, span.
            let encoded = ScopeSpans {
                spans: vec![sp],
                ..Default::default()
            }
            .encode_to_vec();
            let base = t.bytes.len();
            let mut found = vec![
                (find_marker(&encoded, &TRACE_MARK, i)?, PatchKind::TraceId),
                (
                    find_marker(&encoded, &SPAN_MARK.to_be_bytes(), i)?,
                    PatchKind::SpanId(i as u32),
                ),
                (
                    find_marker(&encoded, &START_MARK.to_le_bytes(), i)?,
                    PatchKind::Time(slot.start),
                ),
                (
                    find_marker(&encoded, &END_MARK.to_le_bytes(), i)?,
                    PatchKind::Time(slot.end),
                ),
            ];
            if let Some(p) = slot.parent {
                let at = find_marker(&encoded, &PARENT_MARK.to_be_bytes(), i)?;
                found.push((at, PatchKind::SpanId(p as u32)));
            }
            if let Some(rel) = event_time {
                let at = find_marker(&encoded, &EVENT_MARK.to_le_bytes(), i)?;
                found.push((at, PatchKind::Time(rel)));
            }
            found.sort_by_key(|(at, _)| *at);
            t.patches.extend(found.into_iter().map(|(at, kind)| Patch {
                at: base + at,
                kind,
            }));
            t.bytes.extend_from_slice(&encoded);
            t.span_at.push(t.bytes.len());
            t.patch_at.push(t.patches.len());
        }
        Ok(t)
    }
}

/// The first place `needle` occurs. Ids and times come before attributes on
/// the wire, so this stops early; a marker that also occurred by chance
/// earlier would be caught by the tests that decode patched batches.
fn find_marker(haystack: &[u8], needle: &[u8], slot: usize) -> Result<usize> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => Ok(at),
        None => bail!("template slot {slot}: marker not found in the encoded span"),
    }
}

/// The per-service wrapping of spans: `ResourceSpans.resource` and
/// `ScopeSpans.scope`, each encoded as its field (tag, length, message).
#[derive(Debug)]
pub struct ServiceHeader {
    /// The encoded `resource` field of `ResourceSpans`.
    pub resource_field: Vec<u8>,
    /// The encoded `scope` field of `ScopeSpans`.
    pub scope_field: Vec<u8>,
}

const SERVICE_NAMES: [&str; 8] = [
    "rag-chain",
    "support-bot",
    "code-agent",
    "search-api",
    "summarizer",
    "doc-qa",
    "sql-agent",
    "triage-bot",
];

impl ServiceHeader {
    /// Headers for `count` distinct services.
    pub fn all(count: usize) -> Vec<ServiceHeader> {
        (0..count)
            .map(|i| {
                let name = match SERVICE_NAMES.get(i) {
                    Some(n) => (*n).to_string(),
                    None => format!("llm-service-{i}"),
                };
                ServiceHeader::new(name)
            })
            .collect()
    }

    fn new(name: String) -> ServiceHeader {
        let resource_field = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", &name),
                    string("service.version", "1.4.0"),
                    string("deployment.environment", "loadgen"),
                    string("telemetry.sdk.name", "chaintrace-gen"),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let scope_field = ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "chaintrace.gen".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        ServiceHeader {
            resource_field,
            scope_field,
        }
    }
}

/// Which slots end with status ERROR in an error trace: the error slot and
/// its ancestors.
fn failing_slots(shape: &ChainShape, error: bool) -> Vec<bool> {
    let mut failing = vec![false; shape.slots.len()];
    if !error {
        return failing;
    }
    let mut at = Some(shape.error_slot);
    while let Some(i) = at {
        if failing[i] {
            break;
        }
        failing[i] = true;
        at = shape.slots[i].parent;
    }
    failing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_span_has_its_patches_and_errors_propagate_to_ancestors() {
        let shape = ChainShape::new(20, 50, u64::MAX);
        let ok = TraceTemplate::new(&shape, false).unwrap();
        let err = TraceTemplate::new(&shape, true).unwrap();
        for (i, slot) in shape.slots.iter().enumerate() {
            let n = ok.patch_at[i + 1] - ok.patch_at[i];
            assert_eq!(n, if slot.parent.is_some() { 5 } else { 4 }, "slot {i}");
            let same = ok.len_of(i, i + 1) == err.len_of(i, i + 1);
            let failing = failing_slots(&shape, true)[i];
            assert_eq!(same, !failing, "slot {i}");
            if i == 0 {
                assert!(failing, "the error propagates to the root");
            }
        }
    }
}
