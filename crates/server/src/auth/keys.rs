//! The keys file (`--keys FILE`): who holds a key, what it may do, which
//! tenant it acts for. Only SHA-256 hashes of keys are stored; the key
//! itself is shown once, by `chaintrace keys add`.
//!
//! A slow password hash (argon2, bcrypt) is unnecessary here: keys are 256
//! random bits made by this program, never chosen by people, so there is no
//! dictionary to try and a stolen file gives nothing that guessing could
//! recover. One SHA-256 per request keeps authentication off the profile.
//!
//! This module reads and writes the file and checks keys; it knows nothing
//! of HTTP.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every key starts with: makes keys recognisable in configuration
/// and to secret scanners.
pub const KEY_PREFIX: &str = "ctk_";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Send spans and logs (every receiver, and `POST /api/v1/spans`).
    Ingest,
    /// Read: the query API, the web UI, SQL, the Jaeger API.
    Read,
    /// Everything, and what spans all tenants (`/metrics`).
    Admin,
}

impl Scope {
    /// The scope's name in the keys file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Ingest => 1,
            Scope::Read => 2,
            Scope::Admin => 4,
        }
    }

    const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];
}

/// The scopes of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Reads scope names (`ingest`, `read`, `admin`); at least one.
    ///
    /// ```
    /// use chaintrace_server::auth::{Scope, Scopes};
    /// let s = Scopes::parse(["ingest", "read"]).unwrap();
    /// assert!(s.allows(Scope::Read) && !s.allows(Scope::Admin));
    /// assert!(Scopes::parse(["write"]).is_err());
    /// ```
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut bits = 0;
        for name in names {
            let name = name.trim();
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| {
                    format!("unknown scope {name:?}: the scopes are ingest, read and admin")
                })?;
            bits |= scope.bit();
        }
        if bits == 0 {
            return Err("a key needs at least one scope: ingest, read or admin".to_string());
        }
        Ok(Scopes(bits))
    }

    /// Whether these scopes allow `scope` (`admin` allows everything).
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// The scope names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .map(Scope::name)
            .collect()
    }
}

/// The tenant of keys that do not name one.
pub const DEFAULT_TENANT: &str = "default";

/// One `[[key]]` of the keys file, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// Who holds the key: unique in the file, shown in logs and metrics.
    pub name: String,
    /// `sha256:` and 64 hex digits.
    pub hash: String,
    /// `ingest`, `read`, `admin`.
    pub scopes: Vec<String>,
    /// The tenant the key acts for.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// When the key was made (RFC 3339), for people reading the file.
    #[serde(default)]
    pub created: String,
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

/// One `[tenant.NAME]` of the keys file: limits of one tenant, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    /// Spans a second the tenant may send, on average; past it, receivers
    /// answer 429 (gRPC `RESOURCE_EXHAUSTED`) with `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spans_per_second: Option<u64>,
    /// Disk the tenant's store may take (`"20GiB"`); past it, receivers
    /// answer 429 until retention has freed room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota: Option<String>,
    /// How long the tenant's traces are kept (`"3d"`), instead of
    /// `--retention`; read when the tenant's store opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

/// The whole keys file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Every key, in file order.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyRecord>,
    /// Limits per tenant, by tenant name.
    #[serde(
        default,
        rename = "tenant",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub tenants: std::collections::BTreeMap<String, TenantRecord>,
}

/// The limits of one tenant, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantLimits {
    /// Average spans a second; `None`: no limit.
    pub max_spans_per_second: Option<u64>,
    /// Bytes of disk; `None`: no quota.
    pub storage_quota: Option<u64>,
    /// Retention instead of `--retention`; `None`: the flag's.
    pub retention: Option<std::time::Duration>,
}

impl TenantRecord {
    fn check(&self, name: &str) -> Result<TenantLimits, String> {
        let at = format!("tenant {name:?}");
        check_tenant(name).map_err(|e| format!("{at}: {e}"))?;
        if self.max_spans_per_second == Some(0) {
            return Err(format!("{at}: max_spans_per_second must be above 0"));
        }
        let storage_quota = self
            .storage_quota
            .as_deref()
            .map(|q| chaintrace_model::parse_bytes(q).map(|b| b as u64))
            .transpose()
            .map_err(|e| format!("{at}: storage_quota: {e}"))?;
        let retention = self
            .retention
            .as_deref()
            .map(|r| {
                r.parse::<chaintrace_model::DurationNanos>()
                    .map(|d| std::time::Duration::from_nanos(d.0))
                    .map_err(|e| format!("{at}: retention: {e}"))
            })
            .transpose()?;
        Ok(TenantLimits {
            max_spans_per_second: self.max_spans_per_second,
            storage_quota,
            retention,
        })
    }
}

/// What opens every file `chaintrace keys` writes.
const FILE_HEADER: &str = "# chaintrace API keys (`chaintrace serve --keys FILE`).\n\
# Only SHA-256 hashes are kept: a key is shown once, by `chaintrace keys add`.\n\
# A running server reads this file again within seconds of a change.\n\n";

impl KeysFile {
    /// Reads and checks the text of a keys file.
    pub fn parse(text: &str) -> Result<KeysFile, String> {
        let file: KeysFile = toml::from_str(text).map_err(|e| e.to_string())?;
        KeySet::from_file(&file)?;
        Ok(file)
    }

    /// Reads `path`; a file that does not exist yet is empty.
    pub fn read(path: &Path) -> Result<KeysFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => KeysFile::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("{FILE_HEADER}{body}")
    }

    /// Adds a key named `name` and returns it (the only time it exists
    /// outside its holder's hands).
    pub fn add(
        &mut self,
        name: &str,
        scopes: Scopes,
        tenant: &str,
        created: String,
    ) -> Result<String, String> {
        check_name("key name", name)?;
        check_tenant(tenant)?;
        if self.keys.iter().any(|k| k.name == name) {
            return Err(format!(
                "there is already a key named {name:?}: revoke it first, or choose another name"
            ));
        }
        let key = new_key()?;
        self.keys.push(KeyRecord {
            name: name.to_string(),
            hash: format!("sha256:{}", to_hex(&key_hash(&key))),
            scopes: scopes.names().iter().map(|s| s.to_string()).collect(),
            tenant: tenant.to_string(),
            created,
        });
        Ok(key)
    }

    /// Removes the key named `name`.
    pub fn revoke(&mut self, name: &str) -> Result<KeyRecord, String> {
        let at = self
            .keys
            .iter()
            .position(|k| k.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
                format!("no key named {name:?}; the keys are: {}", names.join(", "))
            })?;
        Ok(self.keys.remove(at))
    }
}

/// Names (of keys and tenants) are 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit: they appear in logs, metric labels and
/// (tenants) directory names, where `..` must never be one.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// A tenant name: a [`check_name`] in lower case, since it names a
/// directory and `Acme` and `acme` would share one on a case-insensitive
/// file system.
pub fn check_tenant(name: &str) -> Result<(), String> {
    check_name("tenant", name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("tenant {name:?} must be in lower case"));
    }
    Ok(())
}

/// A new key: the prefix and 256 random bits in hex.
pub fn new_key() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("the system gave no random bytes for a key: {e}"))?;
    Ok(format!("{KEY_PREFIX}{}", to_hex(&bytes)))
}

/// The SHA-256 of a key as presented.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn from_hex_32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Equality that takes the same time wherever the bytes differ, so that
/// answer times tell nothing about how close a guess came.
pub(crate) fn same_bytes(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What is counted of one key while the server runs: requests let in,
/// and whether its first use was logged. Kept across reloads of the file,
/// and reached from the key itself so that counting a request takes no
/// lock.
#[derive(Debug, Default)]
pub struct KeyUsage {
    pub(crate) requests: chaintrace_metrics::Counter,
    pub(crate) logged: std::sync::atomic::AtomicBool,
}

/// One usable key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Its name in the file.
    pub name: Arc<str>,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    /// What it may do.
    pub scopes: Scopes,
    /// Whom it acts for.
    pub tenant: Arc<str>,
    /// Its counters (the server's, once it installs the set).
    pub usage: Arc<KeyUsage>,
}

/// The keys of a file, checked, ready to compare against.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    tenants: std::collections::HashMap<String, TenantLimits>,
}

impl KeySet {
    /// Checks every record: unique names, well-formed hashes, known scopes.
    pub fn from_file(file: &KeysFile) -> Result<KeySet, String> {
        let mut keys: Vec<Key> = Vec::with_capacity(file.keys.len());
        for (i, record) in file.keys.iter().enumerate() {
            let at = format!("key {} ({:?})", i + 1, record.name);
            check_name("key name", &record.name).map_err(|e| format!("{at}: {e}"))?;
            check_tenant(&record.tenant).map_err(|e| format!("{at}: {e}"))?;
            let hash = record
                .hash
                .strip_prefix("sha256:")
                .and_then(from_hex_32)
                .ok_or_else(|| {
                    format!("{at}: hash must be \"sha256:\" and 64 hex digits, as `chaintrace keys add` writes it")
                })?;
            let scopes = Scopes::parse(record.scopes.iter().map(String::as_str))
                .map_err(|e| format!("{at}: {e}"))?;
            if keys.iter().any(|k| *k.name == *record.name) {
                return Err(format!("{at}: the name is used twice"));
            }
            if keys.iter().any(|k| k.hash == hash) {
                return Err(format!("{at}: the same key is listed twice"));
            }
            keys.push(Key {
                name: record.name.as_str().into(),
                hash,
                scopes,
                tenant: record.tenant.as_str().into(),
                usage: Arc::default(),
            });
        }
        let mut tenants = std::collections::HashMap::new();
        for (name, record) in &file.tenants {
            tenants.insert(name.clone(), record.check(name)?);
        }
        Ok(KeySet { keys, tenants })
    }

    /// The limits of `tenant` (none when the file sets none).
    pub fn tenant_limits(&self, tenant: &str) -> TenantLimits {
        self.tenants.get(tenant).copied().unwrap_or_default()
    }

    /// The key whose hash is `hash`. Every key is compared, in constant
    /// time each, whichever matches.
    pub fn find(&self, hash: &[u8; 32]) -> Option<&Key> {
        let mut found = None;
        for key in &self.keys {
            if same_bytes(&key.hash, hash) {
                found = Some(key);
            }
        }
        found
    }

    /// Every key.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(crate) fn keys_mut(&mut self) -> &mut [Key] {
        &mut self.keys
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (then nobody gets in).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_key_is_found_by_its_hash_and_the_file_keeps_no_key() {
        let mut file = KeysFile::default();
        let scopes = Scopes::parse(["ingest"]).unwrap();
        let key = file.add("ci", scopes, "team-a", "now".into()).unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 64);
        let text = file.to_toml();
        assert!(!text.contains(&key[KEY_PREFIX.len()..]), "{text}");
        let again = KeysFile::parse(&text).unwrap();
        assert_eq!(again, file);
        let set = KeySet::from_file(&again).unwrap();
        let found = set.find(&key_hash(&key)).unwrap();
        assert_eq!((&*found.name, &*found.tenant), ("ci", "team-a"));
        assert!(found.scopes.allows(Scope::Ingest) && !found.scopes.allows(Scope::Read));
        assert!(set.find(&key_hash("ctk_guess")).is_none());
        // Two keys are never the same.
        let other = file.add("ci2", scopes, "team-a", "now".into()).unwrap();
        assert_ne!(key, other);
        assert!(file.add("ci", scopes, "x", "now".into()).is_err());
        assert_eq!(file.revoke("ci").unwrap().name, "ci");
        assert!(file.revoke("ci").unwrap_err().contains("ci2"));
    }

    #[test]
    fn admin_allows_everything() {
        let admin = Scopes::parse(["admin"]).unwrap();
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        assert_eq!(admin.names(), ["admin"]);
        assert!(Scopes::parse([]).unwrap_err().contains("at least one"));
    }

    #[test]
    fn bad_files_say_which_key_and_what_is_wrong() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        for (text, says) in [
            ("[[key]]\nname = \"a\"\nhash = \"sha256:12\"\nscopes = [\"read\"]\n", "key 1 (\"a\"): hash must be"),
            (&format!("[[key]]\nname = \"a b\"\nhash = \"{hash}\"\nscopes = [\"read\"]\n"), "key name \"a b\" must be"),
            (&format!("[[key]]\nname = \"a\"\nhash = \"{hash}\"\nscopes = [\"write\"]\n"), "unknown scope \"write\""),
            (&format!("[[key]]\nname = \"a\"\nhash = \"{hash}\"\nscopes = [\"read\"]\ncolour = 1\n"), "unknown field `colour`"),
            (&format!("[[key]]\nname = \"a\"\nhash = \"{hash}\"\nscopes = [\"read\"]\n[[key]]\nname = \"a\"\nhash = \"sha256:{}\"\nscopes = [\"read\"]\n", "cd".repeat(32)), "key 2 (\"a\"): the name is used twice"),
        ] {
            let err = KeysFile::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn names_cannot_climb_out_of_a_directory() {
        for bad in ["..", ".", "-x", "", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name("tenant", bad).is_err(), "{bad:?}");
        }
        for good in ["team-a", "a.b_c", "0", "Team.A-1"] {
            assert!(check_name("key name", good).is_ok(), "{good:?}");
        }
        assert!(check_tenant("team-a").is_ok());
        assert!(check_tenant("Team-A").unwrap_err().contains("lower case"));
    }

    #[test]
    fn tenants_have_limits_and_bad_ones_are_named() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let text = format!(
            "[[key]]\nname = \"a\"\nhash = \"{hash}\"\nscopes = [\"ingest\"]\ntenant = \"acme\"\n\
             [tenant.acme]\nmax_spans_per_second = 500\nstorage_quota = \"2GiB\"\nretention = \"3d\"\n"
        );
        let file = KeysFile::parse(&text).unwrap();
        let set = KeySet::from_file(&file).unwrap();
        let limits = set.tenant_limits("acme");
        assert_eq!(limits.max_spans_per_second, Some(500));
        assert_eq!(limits.storage_quota, Some(2 << 30));
        assert_eq!(
            limits.retention,
            Some(std::time::Duration::from_secs(3 * 86_400))
        );
        assert_eq!(set.tenant_limits("other"), TenantLimits::default());
        // Written back as read.
        assert_eq!(KeysFile::parse(&file.to_toml()).unwrap(), file);
        for (bad, says) in [
            (
                "[tenant.acme]\nstorage_quota = \"lots\"\n",
                "tenant \"acme\": storage_quota",
            ),
            (
                "[tenant.acme]\nretention = \"soon\"\n",
                "tenant \"acme\": retention",
            ),
            ("[tenant.acme]\nmax_spans_per_second = 0\n", "above 0"),
            ("[tenant.\"..\"]\nretention = \"1d\"\n", "must be 1 to 64"),
            ("[tenant.acme]\nburst = 1\n", "unknown field `burst`"),
        ] {
            let err = KeysFile::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn comparison_is_exact() {
        let a = key_hash("x");
        let mut b = a;
        assert!(same_bytes(&a, &b));
        b[31] ^= 1;
        assert!(!same_bytes(&a, &b));
    }
}
