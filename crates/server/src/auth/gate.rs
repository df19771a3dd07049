//! [`Auth`]: the keys in force, the web UI's sign-in sessions, and the
//! middleware that stands in front of every listener.
//!
//! A request names its key in `Authorization: Bearer <key>` (HTTP and gRPC
//! metadata alike; Basic with the key as password works too, for tools that
//! only speak Basic), or carries the session cookie set by `/login`. The
//! middleware puts the resulting [`Principal`] into the request's
//! extensions, where handlers find whom they serve.
//!
//! What each path needs is decided here, in [`api_need`], so that a new
//! route is read-only unless it says otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chaintrace_metrics::{Counter, Gauge, Registry};

use super::keys::{key_hash, KeySet, KeyUsage, KeysFile, Scope, Scopes};
use super::login::Sessions;

/// Whom a request serves: the key it came with, and that key's tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name (never the key).
    pub key: Arc<str>,
    /// The tenant the key acts for.
    pub tenant: Arc<str>,
    /// What the key may do.
    pub scopes: Scopes,
    /// The sign-in session's CSRF token, when the request came with the
    /// session cookie rather than a key.
    pub session_csrf: Option<Arc<str>>,
    /// The key's counters.
    usage: Arc<KeyUsage>,
}

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key and no session.
    Missing,
    /// An `Authorization` header that is not Bearer or Basic.
    Malformed,
    /// A key this server does not know (wrong, or revoked).
    UnknownKey,
    /// A session cookie that is not (or no longer) valid.
    SessionEnded,
    /// A known key without the scope the request needs.
    Scope { key: Arc<str>, need: Scope },
    /// A state-changing request from a session without its CSRF token, or
    /// from another site's page.
    Csrf,
    /// An admin key of a tenant other than `default` asked for what spans
    /// every tenant.
    OperatorOnly { key: Arc<str> },
}

impl Refusal {
    /// The HTTP status: 401 for who-are-you, 403 for not-allowed.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Scope { .. } | Refusal::Csrf | Refusal::OperatorOnly { .. } => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The label in `chaintrace_auth_failures_total`.
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown_key",
            Refusal::SessionEnded => "session_ended",
            Refusal::Scope { .. } | Refusal::OperatorOnly { .. } => "scope",
            Refusal::Csrf => "csrf",
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "this server needs an API key: send `Authorization: Bearer <key>` \
                 (an administrator makes keys with `chaintrace keys add`)"
                .to_string(),
            Refusal::Malformed => {
                "the Authorization header is neither `Bearer <key>` nor Basic with the key as password"
                    .to_string()
            }
            Refusal::UnknownKey => {
                "the API key is not known to this server: it is mistyped or was revoked".to_string()
            }
            Refusal::SessionEnded => {
                "the sign-in has ended (expired, signed out, or its key was revoked): sign in again at /login"
                    .to_string()
            }
            Refusal::Scope { key, need } => format!(
                "the key {key:?} may not do this: it needs the {:?} scope",
                need.name()
            ),
            Refusal::Csrf => {
                "a request that changes state must come from this server's own pages, and from a \
                 signed-in browser needs the x-csrf-token header (the `csrf` of GET /api/v1/whoami)"
                    .to_string()
            }
            Refusal::OperatorOnly { key } => format!(
                "the key {key:?} may not read this: it spans every tenant, so it needs an admin key \
                 of the {:?} tenant",
                super::keys::DEFAULT_TENANT
            ),
        }
    }
}

const REASONS: [&str; 6] = [
    "missing",
    "malformed",
    "unknown_key",
    "session_ended",
    "scope",
    "csrf",
];

/// How often the keys file is looked at for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Failed authentications are logged at most this often (with how many
/// were not), so that a flood of bad keys cannot flood the log.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The keys in force and the sessions signed in with them.
pub struct Auth {
    path: PathBuf,
    keys: RwLock<Arc<KeySet>>,
    /// The file's text as last read, to notice changes.
    loaded_text: Mutex<String>,
    pub(super) sessions: Sessions,
    /// Whether cookies are marked `Secure` (the API is served over TLS).
    pub(super) secure_cookies: bool,
    registry: Registry,
    failures: Vec<Counter>,
    reloads: Counter,
    reload_errors: Counter,
    key_count: Gauge,
    failure_log: Mutex<(Option<Instant>, u64)>,
    /// Each key's counters by name, kept across reloads of the file.
    usage: Mutex<std::collections::HashMap<Arc<str>, Arc<KeyUsage>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("path", &self.path)
            .field("keys", &self.keys().len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads the keys file at `path` (which must exist and be valid) and
    /// counts into `registry`.
    pub fn load(
        path: &Path,
        registry: &Registry,
        secure_cookies: bool,
    ) -> Result<Arc<Auth>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the keys file {}: {e}", path.display()))?;
        let set = KeysFile::parse(&text)
            .and_then(|f| KeySet::from_file(&f))
            .map_err(|e| format!("the keys file {}: {e}", path.display()))?;
        let failures = REASONS
            .iter()
            .map(|reason| {
                registry.counter(
                    "chaintrace_auth_failures_total",
                    "Requests refused for want of a valid key or session, or of a scope.",
                    &[("reason", reason)],
                )
            })
            .collect();
        let auth = Auth {
            path: path.to_path_buf(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            loaded_text: Mutex::new(text),
            sessions: Sessions::default(),
            secure_cookies,
            registry: registry.clone(),
            failures,
            reloads: registry.counter(
                "chaintrace_auth_key_reloads_total",
                "Times the keys file was read again after it changed.",
                &[],
            ),
            reload_errors: registry.counter(
                "chaintrace_auth_key_reload_errors_total",
                "Changes to the keys file that could not be read; the keys before stay in force.",
                &[],
            ),
            key_count: registry.gauge("chaintrace_auth_keys", "Keys in force.", &[]),
            failure_log: Mutex::new((None, 0)),
            usage: Mutex::new(std::collections::HashMap::new()),
        };
        auth.install(set);
        Ok(Arc::new(auth))
    }

    fn install(&self, mut set: KeySet) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        for key in set.keys_mut() {
            // Made at zero for every key, so a key never used shows 0.
            let counters = usage.entry(key.name.clone()).or_insert_with(|| {
                Arc::new(KeyUsage {
                    requests: self.registry.counter(
                        "chaintrace_auth_requests_total",
                        "Requests let in, by the name of the key they came with.",
                        &[("key", &key.name)],
                    ),
                    logged: Default::default(),
                })
            });
            key.usage = counters.clone();
        }
        drop(usage);
        self.key_count.set(set.len() as f64);
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again if its text changed. A file that cannot be
    /// read or is invalid leaves the keys before in force (a half-edited
    /// file must not lock everyone out, nor let anyone in) and is reported
    /// once per change. Blocking: call it off the async workers.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                let message = format!("cannot read the keys file {}: {e}", self.path.display());
                return self.reload_failed(format!("\u{0}{message}"), message);
            }
        };
        if *self
            .loaded_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == text
        {
            return Ok(false);
        }
        match KeysFile::parse(&text).and_then(|f| KeySet::from_file(&f)) {
            Ok(set) => {
                let count = set.len();
                self.install(set);
                *self
                    .loaded_text
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = text;
                self.reloads.inc();
                tracing::info!(keys = count, file = %self.path.display(), "keys file read again");
                Ok(true)
            }
            Err(e) => {
                let message = format!(
                    "the keys file {} changed but is not valid ({e}); the keys before stay in force",
                    self.path.display()
                );
                self.reload_failed(text, message)
            }
        }
    }

    /// Remembers `seen` as the file's state, so one bad change is reported once.
    fn reload_failed(&self, seen: String, message: String) -> Result<bool, String> {
        let mut loaded = self
            .loaded_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *loaded != seen {
            *loaded = seen;
            self.reload_errors.inc();
            tracing::error!("{message}");
        }
        Err(message)
    }

    /// Looks at the keys file every [`RELOAD_EVERY`] until `stop` turns true.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let auth = self.clone();
            let _ = tokio::task::spawn_blocking(move || auth.reload_if_changed()).await;
        }
    }

    /// Who `headers` say the request comes from.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Refusal> {
        let keys = self.keys();
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let key = presented_key(value).ok_or(Refusal::Malformed)?;
            let key = keys.find(&key_hash(&key)).ok_or(Refusal::UnknownKey)?;
            return Ok(Principal {
                key: key.name.clone(),
                tenant: key.tenant.clone(),
                scopes: key.scopes,
                session_csrf: None,
                usage: key.usage.clone(),
            });
        }
        if let Some(token) = super::login::session_cookie(headers, self.secure_cookies) {
            let (key_hash, csrf) = self.sessions.get(token).ok_or(Refusal::SessionEnded)?;
            // The key is looked up again on every request: revoking it
            // ends its sessions at once.
            let key = keys.find(&key_hash).ok_or(Refusal::SessionEnded)?;
            return Ok(Principal {
                key: key.name.clone(),
                tenant: key.tenant.clone(),
                scopes: key.scopes,
                session_csrf: Some(csrf),
                usage: key.usage.clone(),
            });
        }
        Err(Refusal::Missing)
    }

    /// Counts and (at most every ten seconds) logs a refusal. The key is
    /// never logged; a key's name is.
    pub fn count_refusal(&self, refusal: &Refusal, path: &str) {
        let at = REASONS
            .iter()
            .position(|r| *r == refusal.reason())
            .unwrap_or(0);
        self.failures[at].inc();
        let mut log = self
            .failure_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if log
            .0
            .is_some_and(|last| now.duration_since(last) < FAILURE_LOG_EVERY)
        {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        let key = match refusal {
            Refusal::Scope { key, .. } | Refusal::OperatorOnly { key } => Some(key.clone()),
            _ => None,
        };
        tracing::warn!(
            reason = refusal.reason(),
            key = key.as_deref(),
            path,
            refused_since_last_log = suppressed,
            "request refused"
        );
    }

    /// Counts a request let in under `principal`'s key, and logs the
    /// key's first use since the server started (every use at debug level).
    pub fn count_use(&self, principal: &Principal) {
        principal.usage.requests.inc();
        let first = !principal
            .usage
            .logged
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        if first {
            tracing::info!(key = %principal.key, tenant = %principal.tenant, "key used for the first time since start");
        } else {
            tracing::debug!(key = %principal.key, tenant = %principal.tenant, "request let in");
        }
    }
}

/// The key in an `Authorization` value: `Bearer <key>`, or Basic with the
/// key as password (any user name).
fn presented_key(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_, password) = decoded.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_string());
    }
    None
}

/// What a path of the query API's listener needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, the API index, UI assets, the sign-in page.
    Open,
    /// Any valid key or session.
    Known,
    /// A key or session with this scope.
    Scope(Scope),
    /// A web UI page: people without a session are sent to `/login`.
    Page,
}

/// What `path` of the query API's listener needs. Anything not listed is
/// a read.
pub fn api_need(path: &str) -> Need {
    match path {
        "/api/v1/health" | "/api" | "/api/v1/openapi.json" | "/login" | "/logout" => Need::Open,
        "/api/v1/whoami" => Need::Known,
        "/metrics" => Need::Scope(Scope::Admin),
        "/api/v1/spans" => Need::Scope(Scope::Ingest),
        "/" | "/sessions" => Need::Page,
        p if p.starts_with("/ui/") => Need::Open,
        p if ["/trace/", "/sessions/", "/compare/"]
            .iter()
            .any(|page| p.starts_with(page)) =>
        {
            Need::Page
        }
        _ => Need::Scope(Scope::Read),
    }
}

/// How a listener words a refusal.
#[derive(Clone, Copy)]
pub enum Answer {
    /// `{"error": "…"}` (the query API, Jaeger and Zipkin receivers).
    Json,
    /// A gRPC trailers-only answer (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
    Grpc,
    /// The receiver's own wording (OTLP/HTTP's `google.rpc.Status`):
    /// status, message, the request's headers.
    With(fn(StatusCode, &str, &HeaderMap) -> Response),
}

/// What the middleware asks of each request on one listener.
#[derive(Clone, Copy)]
pub enum Policy {
    /// Every request needs this scope (the receivers' listeners).
    Every(Scope),
    /// Per path, by [`api_need`] (the query API's listener).
    QueryApi,
}

/// The state of [`gate`].
#[derive(Clone)]
pub struct Gate {
    /// The keys.
    pub auth: Arc<Auth>,
    /// What requests need.
    pub policy: Policy,
    /// How refusals are worded.
    pub answer: Answer,
}

/// Puts `gate` in front of every route of `router`.
///
/// ```no_run
/// # fn demo(auth: std::sync::Arc<chaintrace_server::auth::Auth>, app: axum::Router) {
/// use chaintrace_server::auth::{protect, Answer, Gate, Policy, Scope};
/// let app = protect(app, Gate { auth, policy: Policy::Every(Scope::Ingest), answer: Answer::Json });
/// # }
/// ```
pub fn protect(router: axum::Router, gate: Gate) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(gate, check))
}

/// Whether a request comes from a page of this server: browsers send
/// `Origin` with every cross-site request that is not a plain GET, and it
/// must name the host the request was sent to (the `Host` header, or over
/// HTTP/2 the `:authority`, which browsers send instead). A request
/// without `Origin` is not from a browser (or from an old one; SameSite
/// still guards the cookie); `Origin: null` is refused.
pub(super) fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    host.is_some() && host == origin_host
}

/// The middleware: lets a request in with its [`Principal`], or refuses it.
async fn check(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let need = match gate.policy {
        Policy::Every(scope) => Need::Scope(scope),
        Policy::QueryApi => api_need(request.uri().path()),
    };
    // On the query API a state change from another site's page is refused
    // whatever credentials the browser adds on its own (a cookie, or Basic
    // credentials it remembered): only requests without `Origin` (not
    // browsers) or from this origin change anything. The receivers take
    // cross-origin posts: browser SDKs export from their own pages.
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if matches!(gate.policy, Policy::QueryApi)
        && !safe
        && !same_origin(request.headers(), request.uri())
    {
        gate.auth
            .count_refusal(&Refusal::Csrf, request.uri().path());
        return refuse(gate.answer, &Refusal::Csrf, request.headers());
    }
    if need == Need::Open {
        return next.run(request).await;
    }
    let outcome = gate
        .auth
        .authenticate(request.headers())
        .and_then(|principal| allowed(principal, need, request.method(), request.headers()));
    match outcome {
        Ok(principal) => {
            gate.auth.count_use(&principal);
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => {
            gate.auth.count_refusal(&refusal, request.uri().path());
            if need == Need::Page && refusal.status() == StatusCode::UNAUTHORIZED {
                return to_login(request.uri());
            }
            refuse(gate.answer, &refusal, request.headers())
        }
    }
}

/// Whether `principal` may make this request.
fn allowed(
    principal: Principal,
    need: Need,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, Refusal> {
    let scope = match need {
        Need::Scope(scope) => Some(scope),
        Need::Page => Some(Scope::Read),
        Need::Open | Need::Known => None,
    };
    if let Some(scope) = scope.filter(|s| !principal.scopes.allows(*s)) {
        return Err(Refusal::Scope {
            key: principal.key,
            need: scope,
        });
    }
    // Admin reaches what spans every tenant (`/metrics`): a tenant's own
    // admin key must not learn the others' key names and figures.
    if scope == Some(Scope::Admin) && &*principal.tenant != super::keys::DEFAULT_TENANT {
        return Err(Refusal::OperatorOnly { key: principal.key });
    }
    // A browser sends the cookie with any request to this origin; a state
    // change must also show it was made by our page, which alone can read
    // the token.
    if let Some(csrf) = &principal.session_csrf {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let shown = headers
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !safe && !super::login::same_token(shown, csrf.as_bytes()) {
            return Err(Refusal::Csrf);
        }
    }
    Ok(principal)
}

/// A 303 to the sign-in page, which comes back here afterwards.
fn to_login(uri: &axum::http::Uri) -> Response {
    let back = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let location = format!("/login?next={}", super::login::form_encode(&back));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The refusal as `answer` words it.
pub fn refuse(answer: Answer, refusal: &Refusal, headers: &HeaderMap) -> Response {
    let status = refusal.status();
    let message = refusal.message();
    let mut response = match answer {
        Answer::Json => {
            (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
        }
        Answer::Grpc => grpc_refusal(status, &message),
        Answer::With(word) => word(status, &message, headers),
    };
    if status == StatusCode::UNAUTHORIZED && !matches!(answer, Answer::Grpc) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"chaintrace\""),
        );
    }
    response
}

/// A gRPC "trailers-only" answer: HTTP 200 whose headers carry the status.
fn grpc_refusal(status: StatusCode, message: &str) -> Response {
    // UNAUTHENTICATED is 16, PERMISSION_DENIED 7.
    let code = if status == StatusCode::UNAUTHORIZED {
        "16"
    } else {
        "7"
    };
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static(code));
    if let Ok(value) = HeaderValue::from_str(&grpc_percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` is kept.
fn grpc_percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            0x20..=0x7e if b != b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_as_bearer_or_as_the_basic_password() {
        let bearer = HeaderValue::from_static("Bearer ctk_abc");
        assert_eq!(presented_key(&bearer).as_deref(), Some("ctk_abc"));
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("grafana:ctk_abc")
        );
        let basic = HeaderValue::from_str(&basic).unwrap();
        assert_eq!(presented_key(&basic).as_deref(), Some("ctk_abc"));
        for bad in ["Bearer", "Bearer ", "Token ctk_abc", "Basic !!", "ctk_abc"] {
            assert_eq!(presented_key(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn routes_are_reads_unless_listed() {
        assert_eq!(api_need("/api/v1/health"), Need::Open);
        assert_eq!(api_need("/ui/abc/style.css"), Need::Open);
        assert_eq!(api_need("/metrics"), Need::Scope(Scope::Admin));
        assert_eq!(api_need("/api/v1/spans"), Need::Scope(Scope::Ingest));
        assert_eq!(api_need("/trace/00ff"), Need::Page);
        assert_eq!(api_need("/api/v1/sql"), Need::Scope(Scope::Read));
        assert_eq!(api_need("/api/traces/00ff"), Need::Scope(Scope::Read));
        assert_eq!(api_need("/some/new/route"), Need::Scope(Scope::Read));
    }

    #[test]
    fn posts_from_other_origins_are_told_apart() {
        let uri: axum::http::Uri = "/login".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:16686".parse().unwrap());
        assert!(same_origin(&headers, &uri));
        headers.insert(header::ORIGIN, "http://127.0.0.1:16686".parse().unwrap());
        assert!(same_origin(&headers, &uri));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers, &uri));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers, &uri));
        // HTTP/2: no Host header, the authority is in the URI.
        let h2: axum::http::Uri = "https://trace.example:16686/login".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            "https://trace.example:16686".parse().unwrap(),
        );
        assert!(same_origin(&headers, &h2));
        assert!(!same_origin(&headers, &uri));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            grpc_percent_encode("a 100% \"key\"\n"),
            "a 100%25 \"key\"%0A"
        );
    }
}
