//! Writes seed inputs into `corpus/<target>/`, all from the repository's own
//! fixtures through the real code: the OTLP fixtures in `testdata/` as they
//! are; WAL records and block values made by the store's encoders from the
//! spans those fixtures decode to; TraceQL queries quoted in README.md.
//!
//! Run from `fuzz/`: `cargo run --bin make_seeds`. Seeds are named by
//! content, so running it again adds nothing that is already there.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;

use chaintrace_model::{AnyValue, KeyValue};
use chaintrace_store::fuzz_api::{encode_block_value, encode_wal_payload, frame_wal_record};

fn main() {
    let pb = fs::read("../testdata/otlp-traces-python-rag-chain.pb").expect("read .pb fixture");
    let json =
        fs::read("../testdata/otlp-traces-python-rag-chain.json").expect("read .json fixture");
    write("otlp_protobuf", &pb);
    write("otlp_json", &json);

    let spans = chaintrace_ingest::otlp::decode_protobuf(&pb)
        .expect("the .pb fixture decodes")
        .spans;
    assert!(!spans.is_empty(), "the .pb fixture holds spans");

    // WAL: the whole batch, one span, a few spans; each as a bare payload
    // and as a framed record (the target reads its input both ways).
    for batch in [&spans[..], &spans[..1], &spans[..spans.len().min(4)], &[]] {
        let payload = encode_wal_payload(batch).expect("fixture spans encode");
        write("wal_record", &frame_wal_record(&payload).expect("frame"));
        write("wal_record", &payload);
    }

    // Block values: every attribute value of the fixture, plus the types
    // its attributes lack.
    let mut values: Vec<AnyValue> = spans
        .iter()
        .flat_map(|s| s.attributes.iter().chain(s.resource.attributes.iter()))
        .map(|kv| kv.value.clone())
        .collect();
    values.extend([
        AnyValue::Empty,
        AnyValue::Bool(true),
        AnyValue::Int(i64::MIN),
        AnyValue::Double(f64::NAN),
        AnyValue::Bytes(vec![0, 255]),
        AnyValue::Array(vec![
            AnyValue::Int(1),
            AnyValue::from("x"),
            AnyValue::Array(vec![]),
        ]),
        AnyValue::KvList(vec![
            KeyValue::new("k", "v"),
            KeyValue::new("nested", AnyValue::KvList(vec![KeyValue::new("d", 0.5f64)])),
        ]),
    ]);
    for v in &values {
        write(
            "block_value",
            &encode_block_value(v).expect("shallow value encodes"),
        );
    }

    // TraceQL: every query quoted on a `chaintrace` command line in the
    // README, and the examples of the query crate's docs.
    let readme = fs::read_to_string("../README.md").expect("read README.md");
    let mut queries: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("chaintrace "))
        .filter_map(|l| l.split('\'').nth(1))
        .filter(|q| q.starts_with('{'))
        .map(str::to_string)
        .collect();
    queries.extend(
        [
            "{ span:duration > 1.5s } | count() > 2",
            "{ duration > 1500ms } | count() > 2",
            r#"{ duration = "abc" }"#,
        ]
        .map(String::from),
    );
    for q in &queries {
        write("traceql_parse", q.as_bytes());
    }
    eprintln!(
        "wrote seeds: {} block values, {} queries",
        values.len(),
        queries.len()
    );
}

fn write(target: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    fs::write(dir.join(format!("seed-{:016x}", h.finish())), bytes).expect("write seed");
}
