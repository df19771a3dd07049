//! Tenants: with `--keys`, every key acts for a tenant, and every tenant
//! has a store of its own — its own WAL, blocks, rollups and logs, under
//! `DATA_DIR/tenants/NAME/` (the `default` tenant keeps `DATA_DIR` itself,
//! so a server that had no keys keeps its data there).
//!
//! Isolation is by construction rather than by filtering: a request is
//! handed to routers built over its tenant's store alone, so no search,
//! SQL query, aggregate, Jaeger list or existence check of one tenant can
//! reach another's spans, whatever it asks.
//!
//! This module opens stores and routes requests; it knows nothing of keys
//! beyond the [`Principal`] the gate put on a request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chaintrace_server::auth::{check_name, Principal, DEFAULT_TENANT};
use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store};
use tokio::sync::OnceCell;
use tower::ServiceExt;

/// A tenant's store, once opened.
type StoreCell = Arc<OnceCell<Arc<dyn Store>>>;

/// The stores of every tenant met so far.
pub struct Tenants {
    /// The default tenant's configuration; others differ only in `dir`.
    base: EmbeddedConfig,
    stores: Mutex<HashMap<Arc<str>, StoreCell>>,
}

impl Tenants {
    /// Tenants over `default`, the store opened with `base`.
    pub fn new(base: EmbeddedConfig, default: Arc<dyn Store>) -> Tenants {
        let cell = Arc::new(OnceCell::new_with(Some(default)));
        let mut stores = HashMap::new();
        stores.insert(Arc::from(DEFAULT_TENANT), cell);
        Tenants {
            base,
            stores: Mutex::new(stores),
        }
    }

    /// Where `tenant`'s store lives.
    pub fn dir_of(data_dir: &Path, tenant: &str) -> PathBuf {
        if tenant == DEFAULT_TENANT {
            data_dir.to_path_buf()
        } else {
            data_dir.join("tenants").join(tenant)
        }
    }

    /// The tenants that have a store on disk besides the default one.
    pub fn on_disk(data_dir: &Path) -> Result<Vec<String>> {
        let dir = data_dir.join("tenants");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && check_name("tenant", &name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// `tenant`'s store, opened (and its WAL replayed) the first time.
    pub async fn store(&self, tenant: &str) -> Result<Arc<dyn Store>> {
        check_name("tenant", tenant).map_err(anyhow::Error::msg)?;
        let cell = self
            .stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(Arc::from(tenant))
            .or_default()
            .clone();
        let store = cell
            .get_or_try_init(|| async {
                let mut config = self.base.clone();
                config.dir = Self::dir_of(&self.base.dir, tenant);
                let dir = config.dir.clone();
                let (store, replay) =
                    tokio::task::spawn_blocking(move || EmbeddedStore::open(config))
                        .await
                        .context("store open task failed")?
                        .with_context(|| {
                            format!(
                                "cannot open the store of tenant {tenant:?} in {}",
                                dir.display()
                            )
                        })?;
                tracing::info!(
                    tenant,
                    dir = %dir.display(),
                    replayed_spans = replay.spans,
                    "opened a tenant's store"
                );
                anyhow::Ok(Arc::new(store) as Arc<dyn Store>)
            })
            .await?;
        Ok(store.clone())
    }

    /// How many tenants' stores are open.
    pub fn open_count(&self) -> usize {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|c| c.initialized())
            .count()
    }
}

/// Builds one listener's routes over one tenant's store.
pub type BuildRoutes = Box<dyn Fn(Arc<dyn Store>) -> Router + Send + Sync>;

/// One listener's routes per tenant, built on first use and kept.
pub struct PerTenant {
    tenants: Arc<Tenants>,
    build: BuildRoutes,
    routers: Mutex<HashMap<Arc<str>, Router>>,
}

impl PerTenant {
    /// A router that hands each request to the routes `build` makes over
    /// the store of the request's tenant (the default tenant when the
    /// request has no [`Principal`]). Put the key gate around it.
    pub fn router(tenants: Arc<Tenants>, build: BuildRoutes) -> Router {
        let per = Arc::new(PerTenant {
            tenants,
            build,
            routers: Mutex::new(HashMap::new()),
        });
        Router::new().fallback(dispatch).with_state(per)
    }

    async fn routes(&self, tenant: &Arc<str>) -> Result<Router> {
        if let Some(router) = self
            .routers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(router.clone());
        }
        let store = self.tenants.store(tenant).await?;
        let router = (self.build)(store);
        Ok(self
            .routers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.clone())
            .or_insert(router)
            .clone())
    }
}

async fn dispatch(State(per): State<Arc<PerTenant>>, request: Request) -> Response {
    let tenant = request
        .extensions()
        .get::<Principal>()
        .map_or_else(|| Arc::from(DEFAULT_TENANT), |p| p.tenant.clone());
    match per.routes(&tenant).await {
        Ok(router) => match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %format!("{e:#}"), "a tenant's store is unavailable");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                axum::Json(serde_json::json!({
                    "error": format!("the store of this key's tenant cannot be opened: {e:#}")
                })),
            )
                .into_response()
        }
    }
}
