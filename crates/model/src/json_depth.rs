//! A bound on how deeply a JSON document nests, checked before parsing.
//!
//! serde_json limits recursion for the fields a type declares, but skips
//! unknown fields without any depth limit, so `{"x": [[[[...]]]]}` nested
//! 100 000 deep was accepted (and any other JSON reader we add later may
//! recurse). One linear pass over the bytes, before any parser sees them,
//! bounds every JSON input of the server the same way.

/// Deepest nesting of arrays and objects accepted in any JSON input. OTLP
/// needs about 10 (kvlists in arrays in attributes go a few levels more).
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON text nests deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON nests deeper than {max} levels (at byte {offset})")]
pub struct JsonTooDeep {
    /// The limit.
    pub max: usize,
    /// Byte offset of the bracket that went past it.
    pub offset: usize,
}

/// Checks that no array or object in `json` nests deeper than `max`, and
/// returns how many arrays and objects it holds (what a caller bounds
/// the parsed size by: each becomes a struct or a `Vec`, however few bytes
/// it took). Brackets inside strings do not count. It does not validate
/// the JSON otherwise: the parser that runs next does.
///
/// ```
/// use chaintrace_model::{check_json_depth, MAX_JSON_DEPTH};
/// assert!(check_json_depth(br#"{"a": [1, {"b": "]]]["}]}"#, MAX_JSON_DEPTH).is_ok());
/// let deep = "[".repeat(100) + &"]".repeat(100);
/// assert_eq!(check_json_depth(deep.as_bytes(), 64).unwrap_err().offset, 64);
/// ```
pub fn check_json_depth(json: &[u8], max: usize) -> Result<usize, JsonTooDeep> {
    let mut depth = 0usize;
    let mut containers = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                containers += 1;
                if depth > max {
                    return Err(JsonTooDeep { max, offset });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(containers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_brackets_outside_strings() {
        assert_eq!(check_json_depth(b"[[[]]]", 3), Ok(3));
        assert_eq!(check_json_depth(br#"[{}, {"a": "{["}, []]"#, 3), Ok(4));
        assert_eq!(
            check_json_depth(b"[[[[]]]]", 3),
            Err(JsonTooDeep { max: 3, offset: 3 })
        );
        assert!(check_json_depth(br#"["[[[[\"[[[[", "\\"]"#, 1).is_ok());
        assert!(check_json_depth(b"[] [] [] []", 1).is_ok());
        assert!(check_json_depth(b"", 1).is_ok());
    }

    #[test]
    fn a_hundred_thousand_levels_stop_at_the_limit() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let err = check_json_depth(deep.as_bytes(), MAX_JSON_DEPTH).unwrap_err();
        assert_eq!(err.offset, 5 + MAX_JSON_DEPTH - 1);
        assert!(err.to_string().contains("deeper than 64 levels"));
    }
}
