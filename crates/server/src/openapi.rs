//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the query
//! API, written by hand in `openapi.json` beside this file and compiled in.
//!
//! Two checks keep it true: the tests below find every route the routers
//! declare in the description (and every described path among the routes),
//! and the end-to-end suite runs schemathesis from the description against
//! a live server, which must never answer 5xx.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The description, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::OPENAPI_JSON;

    /// `(METHOD, path)` of every `.route("path", get(..).post(..))` in
    /// `source`, the way the routers are written.
    fn declared(source: &str) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (at, _) in source.match_indices(".route(") {
            let rest = &source[at + ".route(".len()..];
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let Some(end) = rest.find('"') else { continue };
            let path = &rest[..end];
            // The handler expression runs to the call's closing parenthesis.
            let mut depth = 1;
            let mut stop = rest.len();
            for (i, c) in rest[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = end + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let handler = &rest[end..stop];
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = handler.starts_with(&format!("\", {method}("))
                    || handler.contains(&format!(" {method}("))
                    || handler.contains(&format!("\n{method}("))
                    || handler.contains(&format!(".{method}("))
                    || handler.contains(&format!("({method}("));
                if called {
                    routes.insert((method.to_uppercase(), path.to_string()));
                }
            }
        }
        routes
    }

    /// The routes of the query API's listener that belong in the
    /// description: everything but the web UI's HTML pages and assets and
    /// the sign-in form.
    fn api_routes() -> BTreeSet<(String, String)> {
        let mut all = declared(include_str!("api.rs"));
        all.extend(declared(include_str!("metrics.rs")));
        all.extend(declared(include_str!("../../ingest/src/json_span.rs")));
        all.into_iter()
            .filter(|(_, p)| p.starts_with("/api") || p == "/metrics")
            .collect()
    }

    fn described() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "delete", "patch"] {
                if item.get(method).is_some() {
                    ops.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    #[test]
    fn the_parser_finds_routes_as_they_are_written() {
        let found = declared(
            r#"Router::new()
        .route("/a", get(x))
        .route(
            "/b/{id}",
            get(crate::m::y),
        )
        .route("/c", post(z))
        .route("/d", get(page).post(sign_in))"#,
        );
        let want: BTreeSet<(String, String)> = [
            ("GET", "/a"),
            ("GET", "/b/{id}"),
            ("POST", "/c"),
            ("GET", "/d"),
            ("POST", "/d"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let routes = api_routes();
        assert!(
            routes.len() > 25,
            "the parser found too few routes: {routes:?}"
        );
        let described = described();
        let missing: Vec<_> = routes.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        let extra: Vec<_> = described.difference(&routes).collect();
        assert!(
            extra.is_empty(),
            "openapi.json describes routes that do not exist: {extra:?}"
        );
    }
}
