//! The block value codec (attribute values without a typed column): the
//! input is a type tag and a body. Decoding never panics; a value that
//! decodes encodes to bytes that decode to a value encoding to the same
//! bytes (comparing bytes keeps every NaN payload exact).
#![no_main]

use chaintrace_store::fuzz_api::{decode_block_value, encode_block_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = decode_block_value(data) else {
        return;
    };
    let once = encode_block_value(&value).expect("a decoded value is shallow enough to encode");
    let back = decode_block_value(&once).expect("the encoder's bytes decode");
    let twice = encode_block_value(&back).expect("a decoded value is shallow enough to encode");
    assert!(
        once == twice,
        "encode -> decode -> encode changed the bytes"
    );
});
