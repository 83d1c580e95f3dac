//! Plugin administration: the operations behind the admin REST API
//! (`http/plugins.rs`) with typed errors. Each change is persisted through
//! the [`Store`](hookwire_core::store::Store) first; the caller then re-activates the
//! tenant (`http::plugins::on_chain_changed`).

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::PluginManifest;
use super::plugin::PluginInfo;
use super::{PluginError, PluginRuntime, sha256_hex};
use hookwire_core::policy::Hook;
use hookwire_core::policy::{
    AuthRequest, HookContext, JoinRequest, MsgEvent, PushRequest, StorageMode,
};
use hookwire_core::store::{ChainEntry, PluginChainRecord, PluginRecord};

/// Plugin names are URL segments and metric labels: keep them plain.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A stored version, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: u64,
    pub hash: String,
    pub size: u64,
    pub created_ms: u64,
    pub manifest: Value,
}

/// One plugin of a tenant, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    pub name: String,
    /// Oldest first.
    pub versions: Vec<VersionView>,
    /// The version in the chain, if the plugin is in it.
    pub active_version: Option<u64>,
    /// Position in the chain (0 = called first).
    pub chain_index: Option<usize>,
    pub hash: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub chain: Vec<ChainEntry>,
    pub revision: u64,
    pub plugins: Vec<PluginView>,
}

/// What an upload (or a config change) stored.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub name: String,
    pub version: u64,
    pub hash: String,
    pub size: u64,
    /// What the component says about itself.
    pub describe: PluginInfo,
    pub chain: Vec<ChainEntry>,
}

/// A dry run's outcome: the verdict (or the fault) and the time it took.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub plugin: String,
    pub version: u64,
    pub hook: &'static str,
    pub ok: bool,
    /// The verdict, as the pipeline would see it.
    pub verdict: Option<Value>,
    /// `{kind, message}` when the plugin faulted.
    pub fault: Option<Value>,
    pub elapsed_us: u64,
    /// What the plugin logged during the call, in order.
    pub logs: Vec<crate::probe::LogLine>,
    /// Fuel the call burnt, when the node meters fuel (`plugins.fuel`).
    pub fuel_used: Option<u64>,
    /// Linear memory of the instance that ran it, in bytes.
    pub memory_bytes: Option<u64>,
}

/// Dry-run input of one hook; fields may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnyInput {
    uid: Option<String>,
    token: Option<String>,
    payload: Option<Value>,
    query: String,
    room: String,
    dummy: bool,
    msg: Value,
    proposed: Option<Value>,
    rooms: Vec<String>,
    event: String,
    args: Vec<Value>,
}

impl PluginRuntime {
    async fn versions_of(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<PluginRecord>, PluginError> {
        let mut v: Vec<_> = self
            .store
            .list_plugins(tenant)
            .await?
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        v.sort_by_key(|r| r.version);
        Ok(v)
    }

    async fn save_chain(
        &self,
        tenant: &str,
        mut chain: PluginChainRecord,
    ) -> Result<PluginChainRecord, PluginError> {
        chain.revision += 1;
        self.store.put_chain(tenant, &chain).await?;
        Ok(chain)
    }

    /// Checks and stores a new version of `name` (previous + 1). Without a
    /// manifest the previous version's is kept. The chain then points to
    /// it (appended at the end when the plugin was not in the chain).
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        wasm: &[u8],
        manifest: Option<PluginManifest>,
    ) -> Result<Uploaded, PluginError> {
        if !valid_plugin_name(name) {
            return Err(PluginError::BadRequest(format!(
                "invalid plugin name `{name}`: 1 to 64 of a-z, 0-9, `-`, `_`"
            )));
        }
        self.check_bytes(wasm)?;
        // Compiled before the admin lock is taken (the component cache keeps
        // it for `prepare` below): a long compile must not hold up every
        // other admin call of the node.
        self.compile(wasm).await?;
        let _guard = self.admin_lock.lock().await;
        let previous = self.versions_of(tenant, name).await?;
        let manifest = match (manifest, previous.last()) {
            (Some(m), _) => m,
            (None, Some(prev)) => PluginManifest::from_value(&prev.manifest)
                .map_err(|e| PluginError::BadManifest(e.to_string()))?,
            (None, None) => PluginManifest::default(),
        };
        let version = previous.last().map_or(1, |r| r.version + 1);
        let loaded = self.prepare(tenant, name, version, wasm, &manifest).await?;
        let rec = PluginRecord {
            name: name.to_string(),
            version,
            hash: sha256_hex(wasm),
            size: wasm.len() as u64,
            manifest: manifest.to_value(),
            created_ms: hookwire_core::clock::now_ms(),
        };
        self.store.put_plugin(tenant, &rec, wasm).await?;
        let chain = self.point_chain_to(tenant, name, version).await?;
        Ok(Uploaded {
            name: rec.name,
            version,
            hash: rec.hash,
            size: rec.size,
            describe: loaded.info.clone(),
            chain: chain.entries,
        })
    }

    async fn point_chain_to(
        &self,
        tenant: &str,
        name: &str,
        version: u64,
    ) -> Result<PluginChainRecord, PluginError> {
        let mut chain = self.store.get_chain(tenant).await?;
        match chain.entries.iter_mut().find(|e| e.name == name) {
            Some(e) => e.version = version,
            None => chain.entries.push(ChainEntry {
                name: name.to_string(),
                version,
            }),
        }
        self.save_chain(tenant, chain).await
    }

    /// A manifest (limits, permissions, config) change: a new version with
    /// the same component, which the chain then uses.
    pub async fn set_manifest(
        &self,
        tenant: &str,
        name: &str,
        manifest: PluginManifest,
    ) -> Result<Uploaded, PluginError> {
        let _guard = self.admin_lock.lock().await;
        let versions = self.versions_of(tenant, name).await?;
        let chain = self.store.get_chain(tenant).await?;
        let base = chain
            .entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| versions.iter().find(|r| r.version == e.version))
            .or(versions.last())
            .ok_or_else(|| PluginError::UnknownPlugin(name.to_string()))?;
        let wasm = self
            .store
            .get_plugin_wasm(tenant, name, base.version)
            .await?
            .ok_or_else(|| PluginError::Missing {
                name: name.to_string(),
                version: base.version,
            })?;
        let version = versions.last().map_or(1, |r| r.version + 1);
        let loaded = self
            .prepare(tenant, name, version, &wasm, &manifest)
            .await?;
        let rec = PluginRecord {
            name: name.to_string(),
            version,
            hash: base.hash.clone(),
            size: base.size,
            manifest: manifest.to_value(),
            created_ms: hookwire_core::clock::now_ms(),
        };
        self.store.put_plugin(tenant, &rec, &wasm).await?;
        let chain = self.point_chain_to(tenant, name, version).await?;
        Ok(Uploaded {
            name: rec.name,
            version,
            hash: rec.hash,
            size: rec.size,
            describe: loaded.info.clone(),
            chain: chain.entries,
        })
    }

    /// Plugins with their versions, and the chain.
    pub async fn list(&self, tenant: &str) -> Result<Listing, PluginError> {
        let chain = self.store.get_chain(tenant).await?;
        let mut records = self.store.list_plugins(tenant).await?;
        records.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        let mut plugins: Vec<PluginView> = Vec::new();
        for r in records {
            if plugins.last().is_none_or(|p| p.name != r.name) {
                let idx = chain.entries.iter().position(|e| e.name == r.name);
                plugins.push(PluginView {
                    name: r.name.clone(),
                    versions: Vec::new(),
                    active_version: idx.map(|i| chain.entries[i].version),
                    chain_index: idx,
                    hash: None,
                    size: None,
                });
            }
            let p = plugins.last_mut().expect("pushed above");
            if p.active_version == Some(r.version) {
                p.hash = Some(r.hash.clone());
                p.size = Some(r.size);
            }
            p.versions.push(VersionView {
                version: r.version,
                hash: r.hash,
                size: r.size,
                created_ms: r.created_ms,
                manifest: r.manifest,
            });
        }
        Ok(Listing {
            chain: chain.entries,
            revision: chain.revision,
            plugins,
        })
    }

    /// Sets the chain to exactly these plugins, in this order. A plugin
    /// already in the chain keeps its version; a new one gets its latest.
    pub async fn set_chain(
        &self,
        tenant: &str,
        order: &[String],
    ) -> Result<PluginChainRecord, PluginError> {
        let _guard = self.admin_lock.lock().await;
        let current = self.store.get_chain(tenant).await?;
        let records = self.store.list_plugins(tenant).await?;
        let mut entries = Vec::with_capacity(order.len());
        for name in order {
            if entries.iter().any(|e: &ChainEntry| &e.name == name) {
                return Err(PluginError::BadRequest(format!(
                    "`{name}` appears twice in the chain"
                )));
            }
            let version = match current.entries.iter().find(|e| &e.name == name) {
                Some(e) => e.version,
                None => records
                    .iter()
                    .filter(|r| &r.name == name)
                    .map(|r| r.version)
                    .max()
                    .ok_or_else(|| PluginError::UnknownPlugin(name.clone()))?,
            };
            entries.push(ChainEntry {
                name: name.clone(),
                version,
            });
        }
        self.save_chain(
            tenant,
            PluginChainRecord {
                entries,
                revision: current.revision,
            },
        )
        .await
    }

    /// Moves the chain entry of `name` to the version before the active one.
    pub async fn rollback(&self, tenant: &str, name: &str) -> Result<ChainEntry, PluginError> {
        let _guard = self.admin_lock.lock().await;
        let mut chain = self.store.get_chain(tenant).await?;
        let versions = self.versions_of(tenant, name).await?;
        if versions.is_empty() {
            return Err(PluginError::UnknownPlugin(name.to_string()));
        }
        let Some(entry) = chain.entries.iter_mut().find(|e| e.name == name) else {
            return Err(PluginError::BadRequest(format!(
                "`{name}` is not in the chain"
            )));
        };
        let previous = versions
            .iter()
            .map(|r| r.version)
            .filter(|v| *v < entry.version)
            .max()
            .ok_or_else(|| {
                PluginError::BadRequest(format!("`{name}` has no version before {}", entry.version))
            })?;
        entry.version = previous;
        let out = entry.clone();
        self.save_chain(tenant, chain).await?;
        Ok(out)
    }

    /// Removes the plugin from the chain and deletes all its versions.
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<(), PluginError> {
        let _guard = self.admin_lock.lock().await;
        let mut chain = self.store.get_chain(tenant).await?;
        let before = chain.entries.len();
        chain.entries.retain(|e| e.name != name);
        let in_chain = chain.entries.len() != before;
        if !in_chain && self.versions_of(tenant, name).await?.is_empty() {
            return Err(PluginError::UnknownPlugin(name.to_string()));
        }
        // Out of the chain first: a crash in between leaves unused versions,
        // never a chain entry without its component.
        if in_chain {
            self.save_chain(tenant, chain).await?;
        }
        self.store.delete_plugin(tenant, name).await?;
        // A new plugin of the same name starts with an empty kv.
        self.kv
            .delete_prefix(tenant, &super::host::kv_prefix(name))
            .await?;
        Ok(())
    }

    /// Calls one hook of one plugin version (default: the active one, else
    /// the latest) with a given input.
    pub async fn dry_run(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u64>,
        hook: Hook,
        input: Value,
        ctx: Option<HookContext>,
    ) -> Result<DryRun, PluginError> {
        let versions = self.versions_of(tenant, name).await?;
        let chain = self.store.get_chain(tenant).await?;
        let wanted = version.or_else(|| {
            chain
                .entries
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.version)
        });
        let rec = match wanted {
            Some(v) => versions.iter().find(|r| r.version == v),
            None => versions.last(),
        }
        .ok_or_else(|| PluginError::UnknownPlugin(name.to_string()))?;
        let plugin = self.load(tenant, rec).await?;
        let input: AnyInput = if input.is_null() {
            AnyInput::default()
        } else {
            serde_json::from_value(input)
                .map_err(|e| PluginError::BadRequest(format!("invalid input: {e}")))?
        };
        let mut ctx = ctx.unwrap_or_default();
        ctx.tenant = tenant.to_string();
        let started = Instant::now();
        let call = async {
            match hook {
                Hook::Describe => Ok(serde_json::to_value(&plugin.info).unwrap_or_default()),
                Hook::Authenticate => {
                    let req = AuthRequest {
                        uid: input.uid,
                        token: input.token,
                        payload: input
                            .payload
                            .unwrap_or_else(|| Value::Object(Default::default())),
                        query: input.query,
                    };
                    plugin.authenticate(&ctx, &req).await.map(to_json)
                }
                Hook::OnJoin => plugin
                    .on_join(
                        &ctx,
                        &JoinRequest {
                            room: input.room,
                            dummy: input.dummy,
                        },
                    )
                    .await
                    .map(to_json),
                Hook::OnMsg => plugin
                    .on_msg(&ctx, &MsgEvent::new(input.room, input.msg))
                    .await
                    .map(to_json),
                Hook::StorageMode => {
                    let proposed = match input.proposed {
                        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                            "update" => StorageMode::Update,
                            "ignore" => StorageMode::Ignore,
                            _ => StorageMode::Insert,
                        },
                        other => StorageMode::from_wire(other.as_ref()),
                    };
                    plugin
                        .storage_mode(&ctx, &MsgEvent::new(input.room, input.msg), proposed)
                        .await
                        .map(to_json)
                }
                Hook::RoutePush => plugin
                    .route_push(
                        &ctx,
                        &PushRequest {
                            rooms: input.rooms,
                            event: input.event,
                            args: input.args,
                        },
                    )
                    .await
                    .map(to_json),
            }
        };
        let (r, observed): (Result<Value, hookwire_core::error::HookError>, _) =
            crate::probe::observe(call).await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let (ok, verdict, fault) = match r {
            Ok(v) => (true, Some(v), None),
            Err(e) => (
                false,
                None,
                Some(serde_json::json!({ "kind": e.kind(), "message": e.to_string() })),
            ),
        };
        Ok(DryRun {
            plugin: name.to_string(),
            version: rec.version,
            hook: hook.wit_name(),
            ok,
            verdict,
            fault,
            elapsed_us,
            logs: observed.logs,
            fuel_used: observed.fuel_used,
            memory_bytes: observed.memory_bytes,
        })
    }
}

fn to_json<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
