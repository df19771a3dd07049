//! Percent-encoding for the URLs the server writes itself (redirects,
//! in-process API calls): RFC 3986's unreserved bytes stay, every other
//! byte becomes `%XX`.

/// `text` with every byte but the unreserved ones (and `also_keep`)
/// percent-encoded.
///
/// ```
/// use chaintrace_server::percent::percent_encode;
/// assert_eq!(percent_encode("a b/c", b"/"), "a%20b/c");
/// ```
pub fn percent_encode(text: &str, also_keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || also_keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn only_unreserved_bytes_stay() {
        assert_eq!(
            percent_encode("{ a = \"é\" }/x", b""),
            "%7B%20a%20%3D%20%22%C3%A9%22%20%7D%2Fx"
        );
        assert_eq!(percent_encode("/trace/ab?x=1", b"/"), "/trace/ab%3Fx%3D1");
    }
}
