//! Inputs no client sends: truncated, random, deeply nested, lying about sizes.

use proptest::prelude::*;

use super::test_encoder::{Ty, Writer};
use super::tests::{decoded_fixture, COMPACT_FIXTURE};
use super::*;
use crate::testing::fixture;

#[test]
fn every_truncation_of_the_real_datagram_is_an_error_naming_the_offset() {
    let datagram = fixture(COMPACT_FIXTURE);
    let full = decoded_fixture().spans.len();
    for len in 0..datagram.len() {
        match decode_emit_batch(&datagram[..len], ThriftProtocol::Compact) {
            Ok(decoded) => assert!(decoded.spans.len() < full, "prefix {len}"),
            Err(e) => {
                assert!(e.offset <= len, "prefix {len}: {e}");
                assert!(e.to_string().contains(&format!("at byte {}", e.offset)));
            }
        }
    }
    // Cut inside the tags of the second span: the message says where.
    let e = decode_emit_batch(&datagram[..0x220], ThriftProtocol::Compact).unwrap_err();
    assert!(e.to_string().contains("(batch.spans[1].tags[2])"), "{e}");
}

/// An `emitBatch` message whose args struct has an unknown field 2: a
/// list nested `levels` deep (each list holding one list, the innermost
/// none).
fn nested_lists(protocol: ThriftProtocol, levels: usize) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.message("emitBatch", 4);
    w.struct_begin();
    w.field(2, Ty::List);
    for _ in 1..levels {
        w.list(Ty::List, 1);
    }
    w.list(Ty::List, 0);
    w.struct_end();
    w.out
}

#[test]
fn unknown_fields_nested_past_the_cap_are_refused_below_it_skipped() {
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        // The args struct is one level; 63 lists make 64.
        let ok = decode_emit_batch(&nested_lists(protocol, 63), protocol).unwrap();
        assert!(ok.spans.is_empty());
        let e = decode_emit_batch(&nested_lists(protocol, 64), protocol).unwrap_err();
        assert!(e.to_string().contains("nest more than 64"), "{e}");
        let e = decode_emit_batch(&nested_lists(protocol, 100_000), protocol).unwrap_err();
        assert!(e.to_string().contains("nest more than 64"), "{e}");
    }
}

#[test]
fn a_list_declaring_two_billion_spans_in_a_few_bytes_is_an_error() {
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        let mut w = Writer::new(protocol);
        w.struct_begin();
        w.field(2, Ty::List);
        w.list(Ty::Struct, i32::MAX as usize);
        w.out.extend([0, 0, 0]);
        let e = decode_batch(&w.out, protocol).unwrap_err();
        assert!(
            e.to_string().contains("declares 2147483647 elements"),
            "{protocol}: {e}"
        );
        assert!(e.to_string().contains("(batch.spans)"), "{e}");
    }
}

#[test]
fn a_string_longer_than_the_datagram_is_an_error() {
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        let mut w = Writer::new(protocol);
        w.struct_begin();
        w.field(1, Ty::Struct);
        w.struct_begin();
        w.field(1, Ty::Binary);
        let declared = w.out.len();
        match protocol {
            ThriftProtocol::Binary => w.out.extend(i32::MAX.to_be_bytes()),
            ThriftProtocol::Compact => w.varint(i32::MAX as u64),
        }
        w.out.extend(b"rag");
        let e = decode_batch(&w.out, protocol).unwrap_err();
        assert_eq!(e.offset, declared, "{e}");
        assert!(
            e.to_string()
                .contains("serviceName declares 2147483647 bytes"),
            "{e}"
        );
    }
}

#[test]
fn other_methods_and_protocols_are_refused_by_name() {
    let datagram = fixture(COMPACT_FIXTURE);
    let e = decode_emit_batch(&datagram, ThriftProtocol::Binary).unwrap_err();
    assert!(e.to_string().contains("binary protocol version"), "{e}");
    let mut w = Writer::new(ThriftProtocol::Compact);
    w.message("emitZipkinBatch", 4);
    let e = decode_emit_batch(&w.out, ThriftProtocol::Compact).unwrap_err();
    assert!(e.to_string().contains("\"emitZipkinBatch\""), "{e}");
    let mut w = Writer::new(ThriftProtocol::Binary);
    w.message("emitBatch", 2);
    let e = decode_emit_batch(&w.out, ThriftProtocol::Binary).unwrap_err();
    assert!(e.to_string().contains("message type 2"), "{e}");
}

fn decode_all_ways(bytes: &[u8]) {
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        let _ = decode_emit_batch(bytes, protocol);
        let _ = decode_batch(bytes, protocol);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all_ways(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        protocol in prop_oneof![Just(ThriftProtocol::Compact), Just(ThriftProtocol::Binary)],
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut w = Writer::new(protocol);
        w.message("emitBatch", 4);
        w.out.extend(tail);
        let _ = decode_emit_batch(&w.out, protocol);
    }

    #[test]
    fn mutated_real_datagram_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut datagram = fixture(COMPACT_FIXTURE);
        for (at, byte) in edits {
            let i = at.index(datagram.len());
            datagram[i] = byte;
        }
        decode_all_ways(&datagram);
    }
}

/// A batch of one span carrying `tags` empty tag structs: one byte each
/// on the wire, a `KeyValue` slot each decoded.
fn empty_tags(protocol: ThriftProtocol, tags: usize) -> Vec<u8> {
    let mut w = Writer::new(protocol);
    w.struct_begin();
    w.field(2, Ty::List);
    w.list(Ty::Struct, 1);
    w.struct_begin();
    w.field(10, Ty::List);
    w.list(Ty::Struct, tags);
    for _ in 0..tags {
        w.struct_begin();
        w.struct_end();
    }
    w.struct_end();
    w.struct_end();
    w.out
}

#[test]
fn decoding_stops_at_its_memory_budget_and_says_so() {
    for protocol in [ThriftProtocol::Compact, ThriftProtocol::Binary] {
        let body = empty_tags(protocol, 100_000);
        // 100 KB of empty tags would take megabytes: past a 256 KiB budget
        // the read stops before building them.
        let e = super::decode_batch_within(&body, protocol, 256 << 10).unwrap_err();
        assert!(e.is_over_budget(), "{protocol}: {e}");
        assert!(e.to_string().contains("send smaller batches"), "{e}");
        // Within the bound the gate gives a body that long, it decodes,
        // and charges no more than that bound.
        let bound = body.len() * super::THRIFT_BYTES_PER_BODY_BYTE;
        let (decoded, used) = super::decode_batch_within(&body, protocol, bound)
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert!(used <= bound, "{used} > {bound}");
        // The span has zero ids, so it is rejected, not stored.
        assert_eq!((decoded.spans.len(), decoded.rejected), (0, 1));
    }
}
