//! OTLP/JSON trace export bodies: decoding never panics, and every span it
//! keeps has the ids the decoder promises (non-zero trace and span id).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = chaintrace_ingest::otlp::decode_json(data) {
        for span in &decoded.spans {
            assert!(
                span.trace_id.0 != [0; 16],
                "kept a span with a zero trace id"
            );
            assert!(span.span_id.0 != [0; 8], "kept a span with a zero span id");
        }
        assert!(decoded.errors.len() <= chaintrace_ingest::otlp::MAX_ERROR_MESSAGES);
    }
});
