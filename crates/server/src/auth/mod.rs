//! Who may send and who may read: API keys with scopes and tenants
//! ([`keys`]), the middleware that checks them on every listener
//! ([`gate`]), and the web UI's sign-in ([`login`]).
//!
//! Off unless `chaintrace serve --keys FILE` is given; then every request
//! but health, the API index, the UI's static files and the sign-in page
//! needs a key (or a signed-in session) with the right scope.

pub mod gate;
pub mod keys;
pub mod login;

pub use gate::{api_need, protect, refuse, Answer, Auth, Gate, Need, Policy, Principal, Refusal};
pub use keys::{
    check_name, check_tenant, key_hash, new_key, Key, KeyRecord, KeySet, KeyUsage, KeysFile, Scope,
    Scopes, TenantLimits, TenantRecord, DEFAULT_TENANT, KEY_PREFIX,
};
pub use login::{login_routes, SECURE_SESSION_COOKIE, SESSION_COOKIE};
