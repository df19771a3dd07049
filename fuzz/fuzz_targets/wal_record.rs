//! WAL records. The input is read twice: as a framed record (length, CRC,
//! payload), and as a payload that the target frames itself, so that mutated
//! payloads get past the CRC to the payload decoder. Neither panics; a frame
//! never claims more bytes than it was given; and a payload that decodes
//! re-encodes to bytes that decode and re-encode to themselves (the writer's
//! output is a fixed point).
#![no_main]

use chaintrace_store::fuzz_api::{
    decode_wal_payload, encode_wal_payload, frame_wal_record, read_wal_frame,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((payload, used)) = read_wal_frame(data) {
        assert!(used as usize <= data.len());
        assert!(payload.len() < used as usize);
    }

    let framed = frame_wal_record(data).expect("fuzz inputs are far below the payload limit");
    let (payload, used) = read_wal_frame(&framed).expect("a frame the writer made reads back");
    assert_eq!(payload, data);
    assert_eq!(used as usize, framed.len());

    let Ok(spans) = decode_wal_payload(payload) else {
        return;
    };
    let once = encode_wal_payload(&spans).expect("decoded spans re-encode");
    let again = decode_wal_payload(&once).expect("the writer's payload decodes");
    assert_eq!(again.len(), spans.len());
    let twice = encode_wal_payload(&again).expect("decoded spans re-encode");
    assert!(once == twice, "re-encoding a decoded payload is not stable");
});
