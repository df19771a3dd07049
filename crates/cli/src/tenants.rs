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
//! Each tenant's limits from the keys file (`[tenant.NAME]`) are kept
//! here too: spans and log records a second, a storage quota (both answer
//! 429 past them), and retention.
//!
//! This module opens stores, routes requests and admits batches; it knows
//! nothing of keys beyond the [`Principal`] the gate put on a request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chaintrace_ingest::{SinkError, SpanSink};
use chaintrace_model::{LogRecord, Span};
use chaintrace_server::auth::{check_tenant, Auth, Principal, DEFAULT_TENANT};
use chaintrace_store::{EmbeddedConfig, EmbeddedStore, Store, StoreError};
use tokio::sync::OnceCell;
use tower::ServiceExt;

/// One tenant's store, and the sink its receivers hand batches to.
#[derive(Clone)]
pub struct Tenant {
    /// Where its spans are kept and read from.
    pub store: Arc<dyn Store>,
    /// Its store behind its limits.
    pub sink: Arc<dyn SpanSink>,
}

impl Tenant {
    /// A store without limits (no keys, no tenants).
    pub fn unlimited(store: Arc<dyn Store>) -> Tenant {
        Tenant {
            sink: Arc::new(TenantSink {
                store: store.clone(),
                admission: None,
            }),
            store,
        }
    }
}

/// A tenant, once opened.
type TenantCell = Arc<OnceCell<Tenant>>;

/// The stores of every tenant met so far.
pub struct Tenants {
    /// The default tenant's configuration; others differ in `dir` (and
    /// their retention, when the keys file sets one).
    base: EmbeddedConfig,
    auth: Arc<Auth>,
    stores: Mutex<HashMap<Arc<str>, TenantCell>>,
}

impl Tenants {
    /// Tenants over `default`, the store opened with `base`, with limits
    /// from `auth`'s keys file.
    pub fn new(base: EmbeddedConfig, default: Arc<dyn Store>, auth: Arc<Auth>) -> Tenants {
        let tenant = Tenant {
            sink: Arc::new(TenantSink {
                store: default.clone(),
                admission: Some(Admission::new(
                    DEFAULT_TENANT,
                    auth.clone(),
                    default.clone(),
                )),
            }),
            store: default,
        };
        let cell = Arc::new(OnceCell::new_with(Some(tenant)));
        let mut stores = HashMap::new();
        stores.insert(Arc::from(DEFAULT_TENANT), cell);
        Tenants {
            base,
            auth,
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
            if entry.path().is_dir() && check_tenant(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// `tenant`'s store and sink, opened (and its WAL replayed) the first time.
    pub async fn tenant(&self, tenant: &str) -> Result<Tenant> {
        check_tenant(tenant).map_err(anyhow::Error::msg)?;
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
                if let Some(retention) = self.auth.keys().tenant_limits(tenant).retention {
                    config.retention = Some(retention);
                }
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
                let store: Arc<dyn Store> = Arc::new(store);
                anyhow::Ok(Tenant {
                    sink: Arc::new(TenantSink {
                        store: store.clone(),
                        admission: Some(Admission::new(tenant, self.auth.clone(), store.clone())),
                    }),
                    store,
                })
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

/// Builds one listener's routes over one tenant.
pub type BuildRoutes = Box<dyn Fn(&Tenant) -> Router + Send + Sync>;

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
        let router = (self.build)(&self.tenants.tenant(tenant).await?);
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
                // The cause (paths, OS errors) is in the log, not the answer.
                axum::Json(serde_json::json!({
                    "error": "the store of this key's tenant cannot be opened now; the server's log says why"
                })),
            )
                .into_response()
        }
    }
}

/// How often a tenant's disk use is measured for its storage quota.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(10);

/// What a tenant's limits let in: a token bucket for spans (and log
/// records) a second, and the disk its store took when last measured.
struct Admission {
    tenant: Arc<str>,
    auth: Arc<Auth>,
    store: Arc<dyn Store>,
    /// Tokens (may run into debt by one batch) and when they were counted.
    bucket: Mutex<(f64, Instant)>,
    disk_bytes: AtomicU64,
    disk_measured: Mutex<Option<Instant>>,
    measuring: Arc<AtomicBool>,
}

impl Admission {
    fn new(tenant: &str, auth: Arc<Auth>, store: Arc<dyn Store>) -> Arc<Admission> {
        Arc::new(Admission {
            tenant: Arc::from(tenant),
            auth,
            store,
            bucket: Mutex::new((f64::NAN, Instant::now())),
            disk_bytes: AtomicU64::new(0),
            disk_measured: Mutex::new(None),
            measuring: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Lets `items` spans or records in, or says when to come back. The
    /// limits are read from the keys file as it is now, so a change needs
    /// no restart.
    fn admit(self: &Arc<Self>, items: usize) -> Result<(), SinkError> {
        let limits = self.auth.keys().tenant_limits(&self.tenant);
        if let Some(quota) = limits.storage_quota {
            self.measure_if_stale();
            let used = self.disk_bytes.load(Ordering::Relaxed);
            if used >= quota {
                return Err(SinkError::Limited {
                    message: format!(
                        "tenant {:?} is over its storage quota ({used} of {quota} bytes); \
                         retention frees room as old traces expire",
                        self.tenant
                    ),
                    retry_after_secs: DISK_CHECK_EVERY.as_secs(),
                });
            }
        }
        let Some(rate) = limits.max_spans_per_second else {
            return Ok(());
        };
        let rate = rate as f64;
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // One second's worth may be spent at once; a batch larger than
        // that is let in when the bucket is full and leaves it in debt,
        // so the average stays at the rate and no batch is refused forever.
        let tokens = if bucket.0.is_nan() {
            rate
        } else {
            (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(rate)
        };
        if tokens <= 0.0 {
            *bucket = (tokens, now);
            let wait = (-tokens / rate).ceil().max(1.0) as u64;
            return Err(SinkError::Limited {
                message: format!(
                    "tenant {:?} is over its {rate} spans a second; retry in {wait} s",
                    self.tenant
                ),
                retry_after_secs: wait,
            });
        }
        *bucket = (tokens - items as f64, now);
        Ok(())
    }

    /// Measures the store's disk in the background when the last
    /// measurement is older than [`DISK_CHECK_EVERY`] (it walks block
    /// directories: never on the request's path).
    fn measure_if_stale(self: &Arc<Self>) {
        {
            let mut measured = self
                .disk_measured
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if measured.is_some_and(|at| at.elapsed() < DISK_CHECK_EVERY) {
                return;
            }
            if self.measuring.swap(true, Ordering::AcqRel) {
                return;
            }
            *measured = Some(Instant::now());
        }
        let me = self.clone();
        tokio::spawn(async move {
            match me.store.stats().await {
                Ok(stats) => me.disk_bytes.store(
                    stats.block_bytes + stats.wal_bytes + stats.log_bytes,
                    Ordering::Relaxed,
                ),
                Err(e) => {
                    tracing::warn!(tenant = %me.tenant, error = %e, "cannot measure a tenant's disk")
                }
            }
            me.measuring.store(false, Ordering::Release);
        });
    }
}

/// Hands a tenant's batches to its store, within its limits: the bridge
/// between ingest and store, which do not know each other.
struct TenantSink {
    store: Arc<dyn Store>,
    admission: Option<Arc<Admission>>,
}

#[async_trait::async_trait]
impl SpanSink for TenantSink {
    async fn accept(&self, spans: Vec<Span>) -> Result<(), SinkError> {
        if let Some(admission) = &self.admission {
            admission.admit(spans.len())?;
        }
        self.store.append(spans).await.map_err(sink_error)
    }

    async fn accept_logs(&self, logs: Vec<LogRecord>) -> Result<(), SinkError> {
        if let Some(admission) = &self.admission {
            admission.admit(logs.len())?;
        }
        self.store.append_logs(logs).await.map_err(sink_error)
    }
}

/// What a sender hears when the store refused its batch.
fn sink_error(e: StoreError) -> SinkError {
    match e {
        StoreError::BatchTooLarge { .. } | StoreError::OverMemoryBudget { .. } => {
            SinkError::TooLarge(e.to_string())
        }
        e if e.is_retryable() => SinkError::Overloaded(e.to_string()),
        e => SinkError::Failed(e.to_string()),
    }
}
