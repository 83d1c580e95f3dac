//! hookwire-runtime: tenant policies as WebAssembly components (wasmtime
//! component model, world `hookwire:policy` in `wit/`). It builds on
//! `hookwire-core` alone (the hooks, the `Policy` trait it implements, the
//! `Store` it keeps plugins and kv in) and knows nothing of the server.
//!
//! - [`limits`]: engine defaults and the per-plugin manifest, as data.
//! - `bindings`: the one `bindgen!` over `wit/`.
//! - `host`: the store data of an instance and the host imports.
//! - [`admin`]: upload, list, chain order, rollback, config, delete, dry
//!   run: what the admin REST API calls.
//! - `convert`: hook inputs as borrowed WIT records.
//! - [`plugin`]: a loaded plugin: its warm instance pool, the limits and
//!   deadline of each call, fault classification, output checks, the typed
//!   per-hook calls.
//! - [`semantics`]: how a chain combines its plugins' answers, per hook
//!   (pure folds, tested without wasm).
//! - [`chain`]: the tenant's [`PluginChain`] that implements
//!   [`hookwire_core::policy::Policy`] over its plugins with those folds.
//! - [`kv`]: plugin kv, in memory with write-behind over a store of this
//!   node's alone.
//! - [`metrics`]: the runtime's metric families, registered by the node.
//! - [`outbound`]: the HTTP client of the `http-fetch` import.
//! - [`probe`]: the logs and fuel of one observed (dry-run) call.
//!
//! One [`wasmtime::Engine`] per node: pooling allocator, epoch interruption
//! driven by one ticker thread, fuel only when configured. Components are
//! compiled once per content hash (kept in memory, and on disk through
//! wasmtime's compilation cache so a restart loads instead of compiling).

pub mod admin;
mod bindings;
pub mod chain;
mod convert;
mod host;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod plugin;
pub mod probe;
pub mod semantics;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Cache, CacheConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use chain::{PluginChain, UnloadableChain};
pub use hookwire_core::policy::Hook;
pub use limits::{CallLimits, EngineLimits, ManifestError, PluginManifest};
pub use metrics::PluginMetrics;
pub use plugin::{LoadedPlugin, PluginInfo};

use hookwire_core::error::{HookError, StoreError};
use hookwire_core::policy::BuiltinPolicy;
use hookwire_core::store::{PluginRecord, Store};
use hookwire_core::tenant::Tenant;
use host::{HostState, PluginScope};

/// The imports and exports of a component, by name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInterface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// Why this host cannot link it (an import it does not provide, an
    /// export of the wrong type); `None` when it links.
    pub link_error: Option<String>,
}

/// Why a component or a manifest was refused, or a plugin could not load.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("not a WebAssembly component: {0}")]
    NotComponent(&'static str),
    #[error("component is {size} bytes, the limit is {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("component does not compile: {0}")]
    Compile(String),
    #[error("component does not implement world hookwire:policy@0.1.0: {0}")]
    WrongWorld(String),
    #[error("invalid manifest: {0}")]
    BadManifest(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("plugin failed its first call: {0}")]
    Describe(#[from] HookError),
    #[error("unknown plugin `{0}`")]
    UnknownPlugin(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("plugin {name} version {version} is not stored")]
    Missing { name: String, version: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the whole runtime shares with its loaded plugins.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) limits: EngineLimits,
    pub(crate) metrics: PluginMetrics,
    /// One permit per hook call (or upload check) in flight.
    pub(crate) calls: Semaphore,
    /// Idle warm instances over all plugins.
    pub(crate) idle_total: AtomicUsize,
    /// Each tenant's permits (`max_instances_per_tenant`), shared by all of
    /// its plugins and kept while any of them is loaded.
    tenant_calls: Mutex<HashMap<Arc<str>, Weak<Semaphore>>>,
}

impl Shared {
    /// The permits of `tenant`, created on first use.
    fn tenant_calls(&self, tenant: &str) -> Arc<Semaphore> {
        let mut map = self.tenant_calls.lock();
        if let Some(s) = map.get(tenant).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(Semaphore::new(self.limits.tenant_instances()));
        map.insert(tenant.into(), Arc::downgrade(&s));
        s
    }
}

/// Compiles, validates and loads plugins; installs tenants' chains.
pub struct PluginRuntime {
    shared: Arc<Shared>,
    linker: Linker<HostState>,
    store: Arc<dyn Store>,
    kv: Arc<kv::PluginKv>,
    http: reqwest::Client,
    cache: Option<Cache>,
    /// Compiled components by content hash (shared by tenants).
    components: Mutex<HashMap<String, Component>>,
    /// Plugins in use by (tenant, name, version): a re-activation with an
    /// unchanged entry keeps its warm instances.
    loaded: Mutex<HashMap<(String, String, u64), Weak<LoadedPlugin>>>,
    /// Serialises admin changes, so two uploads never pick the same version.
    admin_lock: tokio::sync::Mutex<()>,
}

/// Memory (and table) of a freed pooling slot kept resident and reset in
/// place, per slot, when PAGEMAP_SCAN (Linux 6.7+) finds the dirty pages. A
/// sample plugin dirties a few hundred KiB per instance.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Without PAGEMAP_SCAN the whole kept range is memset on every reset, so
/// it stays small.
const KEEP_RESIDENT_BYTES_NO_PAGEMAP: usize = 64 << 10;

/// Wasm magic, then the version/layer word of a core module or a component.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PluginRuntime {
    pub fn new(
        limits: &EngineLimits,
        store: Arc<dyn Store>,
        metrics: PluginMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(limits.fuel.is_some());

        // Every slot is sized for the largest instance; calls in flight plus
        // idle warm instances plus a little headroom is all there can be.
        let instances = limits.max_concurrent_instances + limits.max_idle_instances + 8;
        let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() {
            KEEP_RESIDENT_BYTES
        } else {
            KEEP_RESIDENT_BYTES_NO_PAGEMAP
        };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(limits.max_concurrent_instances + 8)
            .max_memory_size(limits.max_memory_bytes as usize)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .table_elements(100_000)
            // A slot given back is reset with memset over its dirty pages
            // (found with the PAGEMAP_SCAN ioctl where the kernel has it),
            // not madvise: no syscall, TLB flush or page faults on reuse.
            // Costs up to `keep_resident` of RSS per recently used slot.
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(keep_resident)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

        let cache_dir = limits.cache_dir();
        std::fs::create_dir_all(&cache_dir)?;
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(&cache_dir);
        let cache = Cache::new(cache_config)?;
        config.cache(Some(cache.clone()));

        let engine = Engine::new(&config)?;
        spawn_ticker(&engine, limits.epoch_tick());

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::add_host_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;

        let http = outbound::client()
            .map_err(|e| anyhow::anyhow!("cannot build the plugin HTTP client: {e}"))?;

        Ok(Arc::new(PluginRuntime {
            shared: Arc::new(Shared {
                engine,
                limits: limits.clone(),
                metrics,
                calls: Semaphore::new(limits.max_concurrent_instances as usize),
                idle_total: AtomicUsize::new(0),
                tenant_calls: Mutex::default(),
            }),
            linker,
            kv: kv::PluginKv::new(store.clone()),
            store,
            http,
            cache: Some(cache),
            components: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            admin_lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.shared.limits
    }

    /// Writes the plugin kv's pending changes to the store (at shutdown).
    pub async fn flush_kv(&self) -> Result<(), StoreError> {
        self.kv.flush().await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// On-disk compilation cache (hits, misses) since start.
    pub fn disk_cache_stats(&self) -> (usize, usize) {
        self.cache
            .as_ref()
            .map_or((0, 0), |c| (c.cache_hits(), c.cache_misses()))
    }

    /// Components compiled (or loaded from disk) by this process.
    pub fn compiled_components(&self) -> usize {
        self.components.lock().len()
    }

    /// The import and export names of a component (what `hookwire plugin
    /// check` prints), compiled with this node's engine, and whether this
    /// host links it.
    pub async fn interface(&self, wasm: &[u8]) -> Result<ComponentInterface, PluginError> {
        let (_, component) = self.compile(wasm).await?;
        let ty = component.component_type();
        let engine = &self.shared.engine;
        let link_error = self
            .linker
            .instantiate_pre(&component)
            .and_then(bindings::GuestPre::new)
            .err()
            .map(short);
        Ok(ComponentInterface {
            imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
            exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
            link_error,
        })
    }

    /// Refuses what is not a component, before any compilation.
    pub fn check_bytes(&self, wasm: &[u8]) -> Result<(), PluginError> {
        let max = self.shared.limits.max_component_bytes;
        if wasm.len() as u64 > max {
            return Err(PluginError::TooLarge {
                size: wasm.len() as u64,
                max,
            });
        }
        if wasm.len() < 8 || &wasm[..4] != WASM_MAGIC {
            return Err(PluginError::NotComponent("no WebAssembly header"));
        }
        match wasm[4..8].try_into().unwrap_or([0; 4]) {
            COMPONENT_VERSION => Ok(()),
            CORE_VERSION => Err(PluginError::NotComponent(
                "this is a core wasm module; build with --target wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
            )),
            _ => Err(PluginError::NotComponent(
                "unknown WebAssembly version or layer",
            )),
        }
    }

    /// Compiles (or finds) the component for these bytes. Compilation runs
    /// on a blocking thread: it takes tens to hundreds of milliseconds.
    pub async fn compile(&self, wasm: &[u8]) -> Result<(String, Component), PluginError> {
        self.check_bytes(wasm)?;
        let hash = sha256_hex(wasm);
        if let Some(c) = self.components.lock().get(&hash) {
            return Ok((hash, c.clone()));
        }
        let engine = self.shared.engine.clone();
        let bytes = wasm.to_vec();
        let max = std::time::Duration::from_millis(self.shared.limits.max_compile_ms);
        let compiling = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes));
        let component = tokio::time::timeout(max, compiling)
            .await
            .map_err(|_| {
                PluginError::Compile(format!(
                    "compiling took longer than {} ms (plugins.max_compile_ms); the component was not loaded",
                    max.as_millis()
                ))
            })?
            .map_err(|e| PluginError::Compile(format!("compiler task failed: {e}")))?
            .map_err(|e| PluginError::Compile(format!("{:#}", anyhow::Error::from(e))))?;
        self.components
            .lock()
            .insert(hash.clone(), component.clone());
        Ok((hash, component))
    }

    fn scope(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
        manifest: &PluginManifest,
    ) -> Arc<PluginScope> {
        Arc::new(PluginScope {
            tenant_calls: self.shared.tenant_calls(tenant),
            tenant: tenant.into(),
            plugin: name.into(),
            version,
            config_json: manifest.config_json().into(),
            allowed_hosts: manifest.allowed_hosts.clone(),
            limits: manifest.resolve(&self.shared.limits),
            kv: self.kv.clone(),
            http: self.http.clone(),
        })
    }

    /// Compiles, links and instantiates a component for `tenant` and calls
    /// its `describe`. This is the whole upload check: what passes here
    /// loads at activation.
    pub async fn prepare(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
        wasm: &[u8],
        manifest: &PluginManifest,
    ) -> Result<LoadedPlugin, PluginError> {
        manifest.check(&self.shared.limits)?;
        self.prepare_stored(tenant, name, version, wasm, manifest)
            .await
    }

    /// [`prepare`](Self::prepare) without the manifest check: a stored
    /// manifest that asks for more than the engine now allows (the node was
    /// restarted with lower limits) is clamped, not refused.
    async fn prepare_stored(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
        wasm: &[u8],
        manifest: &PluginManifest,
    ) -> Result<LoadedPlugin, PluginError> {
        let (hash, component) = self.compile(wasm).await?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::WrongWorld(short(e)))?;
        let pre = bindings::GuestPre::new(pre).map_err(|e| PluginError::WrongWorld(short(e)))?;
        let scope = self.scope(tenant, name, version, manifest);
        let fail_open = manifest.fail_open == Some(true);
        Ok(LoadedPlugin::new(
            name.into(),
            version,
            hash,
            fail_open,
            scope,
            pre,
            self.shared.clone(),
        )
        .await?)
    }

    /// Loads a stored plugin version (reusing the loaded one if in use).
    pub async fn load(
        &self,
        tenant: &str,
        rec: &PluginRecord,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let key = (tenant.to_string(), rec.name.clone(), rec.version);
        if let Some(p) = self.loaded.lock().get(&key).and_then(Weak::upgrade)
            && p.hash == rec.hash
        {
            return Ok(p);
        }
        let manifest = PluginManifest::from_value(&rec.manifest)
            .map_err(|e| PluginError::BadManifest(e.to_string()))?;
        let wasm = self
            .store
            .get_plugin_wasm(tenant, &rec.name, rec.version)
            .await?
            .ok_or_else(|| PluginError::Missing {
                name: rec.name.clone(),
                version: rec.version,
            })?;
        if let Err(e) = manifest.check(&self.shared.limits) {
            tracing::warn!(tenant, plugin = %rec.name, version = rec.version, error = %e, "stored manifest clamped to the engine limits");
        }
        let p = Arc::new(
            self.prepare_stored(tenant, &rec.name, rec.version, &wasm, &manifest)
                .await?,
        );
        let mut loaded = self.loaded.lock();
        loaded.retain(|_, w| w.strong_count() > 0);
        loaded.insert(key, Arc::downgrade(&p));
        Ok(p)
    }

    /// Builds the tenant's chain from the store. On failure, says which
    /// plugin (or `chain` for the store itself) could not be loaded.
    async fn build_chain(&self, tenant: &str) -> Result<PluginChain, (String, PluginError)> {
        let whole = |e: StoreError| ("chain".to_string(), PluginError::Store(e));
        let chain = self.store.get_chain(tenant).await.map_err(whole)?;
        let records = self.store.list_plugins(tenant).await.map_err(whole)?;
        let mut plugins = Vec::with_capacity(chain.entries.len());
        for entry in &chain.entries {
            let Some(rec) = records
                .iter()
                .find(|r| r.name == entry.name && r.version == entry.version)
            else {
                let e = PluginError::Missing {
                    name: entry.name.clone(),
                    version: entry.version,
                };
                return Err((entry.name.clone(), e));
            };
            plugins.push(
                self.load(tenant, rec)
                    .await
                    .map_err(|e| (entry.name.clone(), e))?,
            );
        }
        Ok(PluginChain::new(plugins))
    }

    /// Reads the tenant's chain from the store and swaps its policy
    /// atomically: calls in flight finish on the old chain. An empty chain
    /// is the built-in policy. A chain that cannot be loaded fails closed:
    /// every hook then faults (`Instantiate`), and the pipeline refuses the
    /// operation unless the tenant set `plugin_fail_open`; the error is
    /// also returned. Falling back to the built-in policy instead would
    /// silently drop the tenant's auth and filters.
    pub async fn activate(&self, tenant: &Arc<Tenant>) -> anyhow::Result<()> {
        let name = tenant.name();
        match self.build_chain(&name).await {
            Ok(chain) if chain.plugins().is_empty() => tenant.set_policy(Box::new(BuiltinPolicy)),
            Ok(chain) => {
                tracing::info!(tenant = %name, chain = %hookwire_core::policy::Policy::describe(&chain), "plugin chain activated");
                tenant.set_policy(Box::new(chain));
            }
            Err((plugin, e)) => {
                tracing::error!(tenant = %name, %plugin, error = %e, "plugin chain cannot be loaded: its hooks fail until it is fixed");
                tenant.set_policy(Box::new(UnloadableChain {
                    tenant: name.clone(),
                    plugin: plugin.clone(),
                    detail: e.to_string(),
                    metrics: self.shared.metrics.clone(),
                }));
                anyhow::bail!("tenant {name}: plugin {plugin}: {e}");
            }
        }
        self.evict_unused_components();
        Ok(())
    }

    /// Drops compiled components no loaded plugin uses any more (deleted
    /// or replaced versions). A later load finds them in the disk cache.
    fn evict_unused_components(&self) {
        let live: std::collections::HashSet<String> = {
            let mut loaded = self.loaded.lock();
            loaded.retain(|_, w| w.strong_count() > 0);
            loaded
                .values()
                .filter_map(Weak::upgrade)
                .map(|p| p.hash.clone())
                .collect()
        };
        self.components.lock().retain(|hash, _| live.contains(hash));
    }
}

fn short(e: wasmtime::Error) -> String {
    format!("{:#}", anyhow::Error::from(e))
        .chars()
        .take(1000)
        .collect()
}

/// The one epoch ticker of an engine. It holds only a weak handle, so it
/// ends when the engine is dropped.
fn spawn_ticker(engine: &Engine, tick: std::time::Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("hookwire-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker: plugin deadlines will not fire");
    }
}
