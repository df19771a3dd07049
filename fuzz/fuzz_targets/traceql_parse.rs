//! The TraceQL parser: parsing never panics, and a query that parses
//! displays as text that parses to the same query (display is canonical:
//! displaying that again gives the same text).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = chaintrace_query::parse(text) else {
        return;
    };
    let shown = query.to_string();
    let again = chaintrace_query::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(
        again.to_string(),
        shown,
        "{text:?} displays as {shown:?}, which displays differently"
    );
});
