//! The web UI: five HTML pages (`/` search, `/trace/{id}` one trace,
//! `/sessions[/{id}]` sessions and one session's transcript,
//! `/compare/{a}/{b}` two traces span by span, `/login` the sign-in form
//! when keys are on) and their
//! CSS and ES modules, compiled into the binary so the server works offline
//! and needs no front-end build step.
//!
//! Assets live under `/ui/{version}/{file}`, where `version` is a hash of all
//! assets together: a new binary gets new URLs, so assets can be cached for a
//! year, and the modules' relative imports (`./gantt.js`) stay inside one
//! version. Every answer also carries an `ETag`.
//!
//! Pages carry a strict Content-Security-Policy: scripts and styles only
//! from this origin, no inline script, no inline style attributes (the
//! scripts position elements through the CSSOM, which the policy allows).
//! Span data never reaches HTML here: the pages are static, and the scripts
//! build the DOM from the JSON API with `textContent`.
//!
//! This module knows nothing of traces; it serves bytes.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One compiled-in file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../ui/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every asset under `/ui/{version}/`.
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("common.js", JS),
    asset!("search.js", JS),
    asset!("trace.js", JS),
    asset!("gantt.js", JS),
    asset!("panel.js", JS),
    asset!("conversation.js", JS),
    asset!("markdown.js", JS),
    asset!("sessions.js", JS),
    asset!("compare.js", JS),
    asset!("login.js", JS),
];

const SEARCH_PAGE: &str = include_str!("../ui/search.html");
const TRACE_PAGE: &str = include_str!("../ui/trace.html");
const SESSIONS_PAGE: &str = include_str!("../ui/sessions.html");
const COMPARE_PAGE: &str = include_str!("../ui/compare.html");
const LOGIN_PAGE: &str = include_str!("../ui/login.html");

/// The policy every page is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// FNV-1a, 64 bits: a stable content hash without a dependency (not for
/// security; it only names versions).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates "ab","c" from "a","bc".
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of all assets and pages: the `{version}` in asset URLs.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut parts: Vec<&str> = ASSETS.iter().flat_map(|a| [a.name, a.body]).collect();
        parts.push(SEARCH_PAGE);
        parts.push(TRACE_PAGE);
        parts.push(SESSIONS_PAGE);
        parts.push(COMPARE_PAGE);
        parts.push(LOGIN_PAGE);
        format!("{:016x}", fnv1a(&parts))
    })
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn page(template: &'static str, headers: &HeaderMap, preload: Option<HeaderValue>) -> Response {
    let etag = format!("\"p{}\"", version());
    let security = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    let mut response = if etag_matches(headers, &etag) {
        (StatusCode::NOT_MODIFIED, security, [(header::ETAG, etag)]).into_response()
    } else {
        let body = template.replace("%VERSION%", version());
        (
            security,
            [
                (header::ETAG, etag),
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            ],
            body,
        )
            .into_response()
    };
    if let Some(link) = preload {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// `GET /`: the search page.
pub async fn search_page(headers: HeaderMap) -> Response {
    page(SEARCH_PAGE, &headers, None)
}

/// `GET /sessions` and `GET /sessions/{id}`: the sessions list and one
/// session's transcript (the script reads which from the URL).
pub async fn sessions_page(headers: HeaderMap) -> Response {
    page(SESSIONS_PAGE, &headers, None)
}

/// `GET /compare/{a}/{b}`: two traces side by side (the script reads the
/// ids from the URL).
pub async fn compare_page(headers: HeaderMap) -> Response {
    page(COMPARE_PAGE, &headers, None)
}

/// `GET /login`: the sign-in form (served when `--keys` is given).
///
/// Served with `Referrer-Policy: same-origin` instead of the other pages'
/// `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
/// the form's post, and the server could not tell its own form from
/// another site's.
pub async fn login_page(headers: HeaderMap) -> Response {
    let mut response = page(LOGIN_PAGE, &headers, None);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `GET /trace/{id}`: the trace page (the id is read by the script from the URL).
///
/// The answer's `Link` header asks the browser to fetch the trace's Gantt
/// (what the page's script asks for first, at the same URL) while it still
/// loads the page and its scripts: on a 100 000-span trace the server's
/// work then overlaps the page's start instead of following it.
pub async fn trace_page(Path(trace_id): Path<String>, headers: HeaderMap) -> Response {
    page(TRACE_PAGE, &headers, gantt_preload(&trace_id))
}

/// The `Link` preload of `/api/v1/traces/{id}/gantt`, for an id the page's
/// script would ask for (1 to 32 hex digits) and nothing else: the header
/// never carries text from the URL that is not a hex id.
fn gantt_preload(trace_id: &str) -> Option<HeaderValue> {
    let hex = (1..=32).contains(&trace_id.len()) && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return None;
    }
    // `crossorigin` (anonymous) is the credentials mode of the script's
    // same-origin fetch: without it the browser would not reuse the answer.
    HeaderValue::from_str(&format!(
        "</api/v1/traces/{trace_id}/gantt>; rel=preload; as=fetch; crossorigin"
    ))
    .ok()
}

/// `GET /ui/{version}/{file}`.
pub async fn asset(Path((asked, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return crate::api::error(StatusCode::NOT_FOUND, format!("no UI asset named {name:?}"));
    };
    let etag = format!("\"{}-{:016x}\"", version(), fnv1a(&[asset.body]));
    // An old page asking for an older version gets today's file, but must
    // not keep it for a year under the old name.
    let cache = if asked == version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let common = [
        (header::CACHE_CONTROL, cache.to_string()),
        (header::ETAG, etag.clone()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    if etag_matches(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_reference_only_assets_that_exist_and_no_inline_code() {
        for page in [
            SEARCH_PAGE,
            TRACE_PAGE,
            SESSIONS_PAGE,
            COMPARE_PAGE,
            LOGIN_PAGE,
        ] {
            for (at, _) in page.match_indices("/ui/%VERSION%/") {
                let rest = &page[at + "/ui/%VERSION%/".len()..];
                let name: String = rest.chars().take_while(|c| *c != '"').collect();
                assert!(ASSETS.iter().any(|a| a.name == name), "page names {name}");
            }
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style=\""), "inline style");
            for handler in [" onclick=", " onload=", " onerror=", " oninput="] {
                assert!(!page.contains(handler), "inline handler {handler}");
            }
        }
    }

    #[test]
    fn scripts_never_write_html_from_strings() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!a.body.contains(banned), "{} uses {banned}", a.name);
            }
        }
    }

    #[test]
    fn the_trace_page_preloads_the_gantt_of_hex_ids_only() {
        let link = gantt_preload("00ffAB12").unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            "</api/v1/traces/00ffAB12/gantt>; rel=preload; as=fetch; crossorigin"
        );
        for bad in ["", "zz", "0>; rel=x", &"a".repeat(33)] {
            assert!(gantt_preload(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn version_is_stable_and_hex() {
        assert_eq!(version(), version());
        assert_eq!(version().len(), 16);
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
    }
}
