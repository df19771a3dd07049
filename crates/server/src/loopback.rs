//! Loopback-only answers: when the query API listens on loopback without
//! keys, it answers only requests addressed to a loopback name.
//!
//! Listening on 127.0.0.1 does not stop a web page from reading it: a page
//! on `evil.example` can make that name resolve to 127.0.0.1 (DNS
//! rebinding), and the browser then lets its scripts read the answers as
//! same-origin. Such requests still carry `Host: evil.example`, which is
//! what this checks.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

/// Puts the check in front of every route of `router`.
pub fn loopback_only(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(check))
}

async fn check(request: Request, next: Next) -> Response {
    // Health says nothing a page could use; probes may name any host.
    if request.uri().path() == "/api/v1/health" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if !is_loopback_name(host) => crate::api::error(
            StatusCode::FORBIDDEN,
            format!(
                "this server listens on loopback without keys, so it answers only requests \
                 addressed to localhost, 127.0.0.1 or [::1], not {host:?} (a page whose name \
                 resolves to 127.0.0.1 must not read your traces); to serve other names, \
                 give --keys"
            ),
        ),
        _ => next.run(request).await,
    }
}

/// Whether `host` (a Host header: name or address, maybe with a port)
/// names this machine's loopback.
fn is_loopback_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:16686
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_name;

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "localhost",
            "localhost:16686",
            "127.0.0.1:16686",
            "127.1.2.3",
            "[::1]:16686",
            "[::1]",
            "LOCALHOST.",
            "ui.localhost:80",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:16686",
            "10.0.0.5:16686",
            "localhost.evil.example",
            "[::2]:1",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }
}
