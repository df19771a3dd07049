//! Signing in to the web UI: `GET /login` (a form for the key),
//! `POST /login` (checks it, starts a session), `POST /logout`, and
//! `GET /api/v1/whoami`.
//!
//! The browser keeps only a random session token, in an HttpOnly,
//! SameSite=Strict cookie (Secure when served over TLS); the key never
//! leaves the form post. A session names its key by hash, so revoking the
//! key ends it. Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::gate::{refuse, same_origin, Answer, Auth, Principal, Refusal};
use super::keys::{key_hash, same_bytes, to_hex, Scope};

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "chaintrace_session";

/// Its name under TLS: the `__Host-` prefix makes browsers refuse it unless
/// it is `Secure`, for this host only and `Path=/`, so that a sibling
/// subdomain or a plain-HTTP attacker cannot set one ("cookie tossing").
pub const SECURE_SESSION_COOKIE: &str = "__Host-chaintrace_session";

/// Sessions one key may hold; past it, its own oldest ends. Without it,
/// one key signing in ten thousand times would sign everyone else out.
const MAX_SESSIONS_PER_KEY: usize = 20;

/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at most; past it, the one nearest its end is dropped.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    key_hash: [u8; 32],
    csrf: Arc<str>,
    ends: Instant,
}

/// Signed-in browsers, by the SHA-256 of their token.
#[derive(Default)]
pub(super) struct Sessions {
    by_token: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for the key hashing to `key_hash`: (token, csrf).
    fn start(&self, key_hash: [u8; 32]) -> Result<(String, Arc<str>), String> {
        let token = random_hex()?;
        let csrf: Arc<str> = random_hex()?.into();
        let now = Instant::now();
        let mut sessions = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let mine: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.key_hash == key_hash)
            .map(|(t, s)| (*t, s.ends))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_KEY {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, ends)| *ends) {
                sessions.remove(oldest);
            }
        }
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.ends > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            let nearest = sessions.iter().min_by_key(|(_, s)| s.ends).map(|(t, _)| *t);
            if let Some(t) = nearest {
                sessions.remove(&t);
            }
        }
        sessions.insert(
            super::keys::key_hash(&token),
            Session {
                key_hash,
                csrf: csrf.clone(),
                ends: now + SESSION_LIFETIME,
            },
        );
        Ok((token, csrf))
    }

    /// The key hash and CSRF token of a live session.
    pub(super) fn get(&self, token: &str) -> Option<([u8; 32], Arc<str>)> {
        let sessions = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get(&key_hash(token))?;
        (session.ends > Instant::now()).then(|| (session.key_hash, session.csrf.clone()))
    }

    fn end(&self, token: &str) {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key_hash(token));
    }
}

fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes for a session: {e}"))?;
    Ok(to_hex(&bytes))
}

/// The session token in the request's cookies (under TLS, only the
/// `__Host-` one counts).
pub(super) fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<&str> {
    let wanted = if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == wanted && !value.is_empty()).then_some(value)
        })
}

/// Compares tokens without an early exit (both are hashed first, so their
/// lengths do not matter either).
pub(super) fn same_token(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let a: [u8; 32] = sha2::Sha256::digest(a).into();
    let b: [u8; 32] = sha2::Sha256::digest(b).into();
    same_bytes(&a, &b)
}

/// `text` percent-encoded for the query string of a redirect (`/` kept,
/// so that `next=/trace/…` stays readable).
pub(super) fn form_encode(text: &str) -> String {
    crate::percent::percent_encode(text, b"/")
}

/// Where to go after signing in: a path on this server, nothing else. A
/// browser strips tabs and newlines from URLs and reads `\\` as `/`, so
/// `/<TAB>/evil.example` or `/\\evil.example` would leave the site: the
/// path must start with one `/` followed by neither `/` nor `\\`, and hold
/// no control character, space or backslash at all.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p[1..].starts_with(['/', '\\'])
                && !p.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

/// The sign-in routes, to merge into the query API's router (behind the
/// gate, which lets `/login` and `/logout` through).
pub fn login_routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/login", get(crate::ui::login_page).post(sign_in))
        .route("/logout", post(sign_out))
        .with_state(auth)
}

#[derive(Deserialize)]
struct SignIn {
    key: String,
    #[serde(default)]
    next: Option<String>,
}

fn cookie(auth: &Auth, value: &str, max_age: u64) -> String {
    let (name, secure) = if auth.secure_cookies {
        (SECURE_SESSION_COOKIE, "; Secure")
    } else {
        (SESSION_COOKIE, "")
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn sign_in(
    State(auth): State<Arc<Auth>>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if !same_origin(&headers, &uri) {
        let refusal = Refusal::Csrf;
        auth.count_refusal(&refusal, "/login");
        return crate::api::error(
            StatusCode::FORBIDDEN,
            "a sign-in must come from this server's own page".into(),
        );
    }
    let next = local_path(form.next.as_deref());
    let hash = key_hash(form.key.trim());
    let keys = auth.keys();
    let Some(key) = keys.find(&hash) else {
        auth.count_refusal(&Refusal::UnknownKey, "/login");
        return see_other(&format!("/login?failed=key&next={}", form_encode(&next)));
    };
    if !key.scopes.allows(Scope::Read) {
        auth.count_refusal(
            &Refusal::Scope {
                key: key.name.clone(),
                need: Scope::Read,
            },
            "/login",
        );
        return see_other(&format!("/login?failed=scope&next={}", form_encode(&next)));
    }
    // A new sign-in ends the session this browser had, if any.
    if let Some(old) = session_cookie(&headers, auth.secure_cookies) {
        auth.sessions.end(old);
    }
    match auth.sessions.start(hash) {
        Ok((token, _)) => {
            tracing::info!(key = %key.name, tenant = %key.tenant, "signed in to the web UI");
            let mut response = see_other(&next);
            if let Ok(value) = cookie(&auth, &token, SESSION_LIFETIME.as_secs()).parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => crate::api::error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(auth): State<Arc<Auth>>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    let Some(token) = session_cookie(&headers, auth.secure_cookies) else {
        return see_other("/login");
    };
    if let Some((_, csrf)) = auth.sessions.get(token) {
        if !same_origin(&headers, &uri) || !same_token(form.csrf.as_bytes(), csrf.as_bytes()) {
            auth.count_refusal(&Refusal::Csrf, "/logout");
            return refuse(Answer::Json, &Refusal::Csrf, &headers);
        }
        auth.sessions.end(token);
    }
    let mut response = see_other("/login?signed_out=1");
    if let Ok(value) = cookie(&auth, "", 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /api/v1/whoami`: the key a request came with, or
/// `{"keys": false}` when the server has no keys (then there is no one to be).
pub async fn whoami(principal: Option<Extension<Principal>>) -> Response {
    let Some(Extension(principal)) = principal else {
        return Json(serde_json::json!({ "keys": false })).into_response();
    };
    Json(serde_json::json!({
        "keys": true,
        "key": &*principal.key,
        "tenant": &*principal.tenant,
        "scopes": principal.scopes.names(),
        "signed_in": principal.session_csrf.is_some(),
        "csrf": principal.session_csrf.as_deref(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_only_returns_to_paths_on_this_server() {
        assert_eq!(local_path(Some("/trace/00ff?x=1")), "/trace/00ff?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "trace",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/x\\..\\evil",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn sessions_end_and_stay_bounded() {
        let sessions = Sessions::default();
        let (token, csrf) = sessions.start([7; 32]).unwrap();
        let (hash, got) = sessions.get(&token).unwrap();
        assert_eq!((hash, &*got), ([7; 32], &*csrf));
        assert!(sessions.get("not-a-token").is_none());
        sessions.end(&token);
        assert!(sessions.get(&token).is_none());
        // One key keeps at most its share; its oldest ends first.
        let (first, _) = sessions.start([1; 32]).unwrap();
        for _ in 0..MAX_SESSIONS_PER_KEY + 5 {
            sessions.start([1; 32]).unwrap();
        }
        assert_eq!(
            sessions.by_token.lock().unwrap().len(),
            MAX_SESSIONS_PER_KEY
        );
        assert!(sessions.get(&first).is_none());
        // Many keys: the whole stays bounded.
        for i in 0..MAX_SESSIONS + 5 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            key[31] = 9;
            sessions.start(key).unwrap();
        }
        assert_eq!(sessions.by_token.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; chaintrace_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers, false), Some("abc"));
        assert_eq!(
            session_cookie(&headers, true),
            None,
            "under TLS only __Host- counts"
        );
        headers.insert(
            header::COOKIE,
            "__Host-chaintrace_session=def".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers, true), Some("def"));
        headers.insert(header::COOKIE, "chaintrace_session=".parse().unwrap());
        assert_eq!(session_cookie(&headers, false), None);
    }
}
