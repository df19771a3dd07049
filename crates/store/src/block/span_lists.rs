//! The byte encoding of a span's events and of its links in `vparquet3`,
//! one value per row of the `events` and `links` columns (null when the
//! span has none).
//!
//! Nearly every span has neither, and no query reads them: they only
//! rebuild spans. As nested Parquet lists of structs they filled nine leaf
//! columns each on every row; as one binary value they fill one, and the
//! few spans that have them (exceptions, follows-from links) pay for the
//! bytes.
//!
//! Layout (numbers and strings as in [`super::value_codec`]):
//! - events: LEB128 count, then per event its time (8 bytes little-endian
//!   Unix nanoseconds), its name (LEB128 length + UTF-8) and its attributes;
//! - links: LEB128 count, then per link its trace id (16 bytes), span id
//!   (8 bytes) and attributes;
//! - attributes: [`value_codec::encode_attributes`].
//!
//! Decoding checks every length against the bytes left and fails with a
//! message on anything malformed; it never panics. No I/O.

use chaintrace_model::{Event, Link, SpanId, TraceId, UnixNanos};

use super::value_codec::{self, put_bytes, put_varint, Input};

/// Encodes `events` into `out`; on a too-deep attribute value, returns
/// which event and key.
pub(crate) fn encode_events(events: &[Event], out: &mut Vec<u8>) -> Result<(), String> {
    put_varint(out, events.len() as u64);
    for e in events {
        out.extend_from_slice(&e.time.0.to_le_bytes());
        put_bytes(out, e.name.as_bytes());
        value_codec::encode_attributes(&e.attributes, out)
            .map_err(|key| format!("event {:?} {key}", e.name))?;
    }
    Ok(())
}

/// Encodes `links` into `out`; on a too-deep attribute value, returns
/// which key.
pub(crate) fn encode_links(links: &[Link], out: &mut Vec<u8>) -> Result<(), String> {
    put_varint(out, links.len() as u64);
    for l in links {
        out.extend_from_slice(&l.trace_id.0);
        out.extend_from_slice(&l.span_id.0);
        value_codec::encode_attributes(&l.attributes, out).map_err(|key| format!("link {key}"))?;
    }
    Ok(())
}

/// The events [`encode_events`] wrote into `bytes` (all of them).
pub(crate) fn decode_events(bytes: &[u8]) -> Result<Vec<Event>, String> {
    let mut input = Input::new(bytes);
    let n = input.len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let time = UnixNanos(u64::from_le_bytes(input.array()?));
        let name = input.string()?;
        let attributes = input.attributes()?;
        out.push(Event {
            time,
            name,
            attributes,
        });
    }
    input.finish()?;
    Ok(out)
}

/// The links [`encode_links`] wrote into `bytes` (all of them).
pub(crate) fn decode_links(bytes: &[u8]) -> Result<Vec<Link>, String> {
    let mut input = Input::new(bytes);
    let n = input.len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let trace_id = TraceId(input.array()?);
        let span_id = SpanId(input.array()?);
        let attributes = input.attributes()?;
        out.push(Link {
            trace_id,
            span_id,
            attributes,
        });
    }
    input.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chaintrace_model::{AnyValue, KeyValue};
    use proptest::prelude::*;

    use super::super::testing::attributes;
    use super::super::value_codec::MAX_DEPTH;
    use super::*;

    fn events() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec(
            (any::<u64>(), any::<String>(), attributes()).prop_map(|(t, name, attributes)| Event {
                time: UnixNanos(t),
                name,
                attributes,
            }),
            0..4,
        )
    }

    fn links() -> impl Strategy<Value = Vec<Link>> {
        prop::collection::vec(
            (any::<[u8; 16]>(), any::<[u8; 8]>(), attributes()).prop_map(|(t, s, attributes)| {
                Link {
                    trace_id: TraceId(t),
                    span_id: SpanId(s),
                    attributes,
                }
            }),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn events_and_links_round_trip(e in events(), l in links()) {
            let mut out = Vec::new();
            encode_events(&e, &mut out).unwrap();
            prop_assert_eq!(decode_events(&out).unwrap(), e);
            out.clear();
            encode_links(&l, &mut out).unwrap();
            prop_assert_eq!(decode_links(&out).unwrap(), l);
        }

        /// Whatever the bytes, decoding answers (an error or lists), and
        /// cut short, a valid encoding is an error.
        #[test]
        fn damaged_bytes_are_an_error_not_a_panic(
            e in events(),
            junk in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = decode_events(&junk);
            let _ = decode_links(&junk);
            let mut out = Vec::new();
            encode_events(&e, &mut out).unwrap();
            for cut in 0..out.len() {
                prop_assert!(decode_events(&out[..cut]).is_err());
            }
            out.push(0);
            prop_assert!(decode_events(&out).unwrap_err().contains("trailing"));
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        // A count of 2^63 - 1 in ten bytes.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
        let err = decode_events(&bytes).unwrap_err();
        assert!(err.contains("claims"), "{err}");
        assert!(decode_links(&bytes).is_err());
    }

    #[test]
    fn a_too_deep_attribute_names_its_event_and_key() {
        let mut v = AnyValue::Empty;
        for _ in 0..MAX_DEPTH {
            v = AnyValue::Array(vec![v]);
        }
        let event = Event {
            time: UnixNanos(1),
            name: "exception".into(),
            attributes: vec![KeyValue::new("deep", v.clone())],
        };
        let err = encode_events(&[event], &mut Vec::new()).unwrap_err();
        assert_eq!(err, "event \"exception\" deep");
        let link = Link {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            attributes: vec![KeyValue::new("deeper", v)],
        };
        let err = encode_links(&[link], &mut Vec::new()).unwrap_err();
        assert_eq!(err, "link deeper");
    }
}
