//! Redis pub/sub between nodes and business servers (when `--redis` is set).
//!
//! - channel `notification` (docs/protocol.md, "Pushes from a business server"):
//!   `{toWho:[uid...], needStore:bool, ...}` is delivered as the event
//!   `notification` to those users, queued until acked when `needStore`,
//!   exactly like `POST /send`. The payload is the published text, as the
//!   Node service emitted it. `site` (or `tenant`) picks the tenant.
//!   Every node hears a publish, so one claims it (see [`Bus::claim`]) and
//!   delivers it cluster-wide.
//! - channel `hookwire:chain`: a tenant name, published after a plugin
//!   chain changed on some node; every node reloads that tenant's chain from
//!   the shared store, so an upload is active everywhere within about a
//!   second.
//! - channel `hookwire:tenant`: a tenant name, published after a tenant was
//!   created, changed or deleted; every node reloads it from the store.
//! - the socket.io adapter's channels (`hookwire-request#...`), through
//!   [`adapter::HubDriver`], and the presence mirror ([`presence`]).
//!
//! All of it runs on one [`hub::RedisHub`], which reconnects with backoff
//! and resubscribes when Redis goes away; while it is away, `/healthz`
//! reports it (`dependency_up{dependency="redis_pubsub"}`).

pub mod adapter;
pub mod hub;
pub mod presence;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::Value;

use crate::policy::PushRequest;
use crate::protocol::{push, wire};
use crate::server::AppState;
use crate::store::TenantRecord;
use crate::tenant::DEFAULT_TENANT;
use hub::RedisHub;

pub const NOTIFICATION_CHANNEL: &str = "notification";
pub const CHAIN_CHANNEL: &str = "hookwire:chain";
pub const TENANT_CHANNEL: &str = "hookwire:tenant";

/// How long a `notification` claim is remembered; see [`Bus::claim`].
const CLAIM_WINDOW: Duration = Duration::from_secs(60);

/// The node's Redis pub/sub: announcements and the `notification` channel.
pub struct Bus {
    hub: Arc<RedisHub>,
    /// Per notification text: how often this node has seen it, and when last.
    seen: Mutex<HashMap<String, (u64, Instant)>>,
    /// Tenants whose chain is being reloaded, and whether another
    /// announcement came in meanwhile (so one more reload follows).
    reloading: Mutex<HashMap<String, bool>>,
}

impl Bus {
    pub fn new(hub: Arc<RedisHub>) -> Arc<Bus> {
        Arc::new(Bus {
            hub,
            seen: Mutex::default(),
            reloading: Mutex::default(),
        })
    }

    pub fn hub(&self) -> &Arc<RedisHub> {
        &self.hub
    }

    /// Tells every node that `tenant`'s plugin chain changed.
    pub fn announce_chain(&self, tenant: &str) {
        self.hub
            .publish(CHAIN_CHANNEL.into(), tenant.as_bytes().to_vec());
    }

    /// Tells every node that `tenant` was created, changed or deleted.
    pub fn announce_tenant(&self, tenant: &str) {
        self.hub
            .publish(TENANT_CHANNEL.into(), tenant.as_bytes().to_vec());
    }

    /// Every node hears each `notification`; the one that claims it
    /// delivers it (cluster-wide), so it arrives and is queued once.
    ///
    /// The publish carries no id, so the claim key is the text's digest
    /// and its occurrence number: every subscriber sees the same publishes
    /// in the same order, so the n-th identical text is the same claim on
    /// every node. Counting restarts after [`CLAIM_WINDOW`] without that
    /// text, which is also how long claims live.
    pub async fn claim(&self, text: &str) -> bool {
        let digest = crate::auth::sha256_hex(text);
        let n = {
            let mut seen = self.seen.lock();
            if seen.len() > 4096 {
                seen.retain(|_, (_, at)| at.elapsed() < CLAIM_WINDOW);
            }
            let e = seen.entry(digest.clone()).or_insert((0, Instant::now()));
            if e.1.elapsed() >= CLAIM_WINDOW {
                e.0 = 0;
            }
            e.0 += 1;
            e.1 = Instant::now();
            e.0
        };
        let r: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(crate::store::redis_keys::notification_claim(&digest, n))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(CLAIM_WINDOW.as_millis() as u64)
            .query_async(&mut self.hub.conn())
            .await;
        match r {
            Ok(won) => won.is_some(),
            Err(e) => {
                // Better twice than never.
                tracing::warn!(error = %e, "cannot claim a `notification`; delivering it from this node too");
                true
            }
        }
    }

    /// Subscribes (retrying until Redis answers) and handles announcements
    /// and notifications until the process ends. Resubscribing after a
    /// Redis restart is the hub's business.
    pub fn spawn_listener(self: &Arc<Self>, state: AppState) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let streams = loop {
                match bus.subscribe_all().await {
                    Ok(s) => break s,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to redis channels");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            tracing::info!(
                "subscribed to redis channels `{NOTIFICATION_CHANNEL}`, `{CHAIN_CHANNEL}` and `{TENANT_CHANNEL}`"
            );
            let mut messages = futures::stream::select_all(streams);
            while let Some((chan, payload)) = messages.next().await {
                let Ok(text) = String::from_utf8(payload) else {
                    tracing::warn!(%chan, "ignoring a non-text pub/sub message");
                    continue;
                };
                match chan.as_str() {
                    // Every node hears it; the one that claims it delivers it.
                    NOTIFICATION_CHANNEL if bus.claim(&text).await => {
                        notification(&state, &text).await
                    }
                    // A reload compiles (seconds for a big component), so it
                    // runs beside this loop: tenant changes and notifications
                    // are never queued behind a compile.
                    CHAIN_CHANNEL => bus.reload_chain(&state, text),
                    TENANT_CHANNEL => tenant_changed(&state, &text).await,
                    _ => {}
                }
            }
        })
    }

    /// Reloads `tenant`'s chain in a task of its own. Announcements that
    /// arrive during a reload coalesce into one more reload, which reads the
    /// store's latest chain, so a burst of uploads costs at most two.
    fn reload_chain(self: &Arc<Self>, state: &AppState, tenant: String) {
        {
            let mut reloading = self.reloading.lock();
            if let Some(again) = reloading.get_mut(&tenant) {
                *again = true;
                return;
            }
            reloading.insert(tenant.clone(), false);
        }
        let (bus, state) = (self.clone(), state.clone());
        tokio::spawn(async move {
            loop {
                chain_changed(&state, &tenant).await;
                let mut reloading = bus.reloading.lock();
                match reloading.get_mut(&tenant) {
                    Some(again) if *again => *again = false,
                    _ => {
                        reloading.remove(&tenant);
                        return;
                    }
                }
            }
        });
    }

    async fn subscribe_all(
        &self,
    ) -> Result<
        Vec<socketioxide_redis::drivers::MessageStream<socketioxide_redis::drivers::ChanItem>>,
        hub::HubError,
    > {
        let mut streams = Vec::new();
        for chan in [NOTIFICATION_CHANNEL, CHAIN_CHANNEL, TENANT_CHANNEL] {
            streams.push(self.hub.subscribe(chan.to_string(), 1024).await?);
        }
        Ok(streams)
    }
}

/// A publish on `notification`: deliver to each uid of `toWho`.
pub async fn notification(state: &AppState, text: &str) {
    let v: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!("ignoring a `notification` that is not a JSON object");
            return;
        }
    };
    let tenant_name = v
        .get("site")
        .or_else(|| v.get("tenant"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TENANT);
    let Some(tenant) = state.tenants.get(tenant_name) else {
        tracing::warn!(tenant = %tenant_name, "`notification` for an unknown tenant ignored");
        return;
    };
    let users: Vec<String> = match v.get("toWho") {
        Some(Value::Array(a)) => a.iter().filter_map(|u| wire::id_string(Some(u))).collect(),
        other => wire::id_string(other).into_iter().collect(),
    };
    if users.is_empty() {
        tracing::warn!("ignoring a `notification` without `toWho`");
        return;
    }
    let need_store = v
        .get("needStore")
        .is_some_and(|n| n.as_bool() == Some(true) || n.as_i64() == Some(1));
    let prefix = tenant.config().user_room_prefix.clone();
    let req = PushRequest {
        rooms: users.iter().map(|u| format!("{prefix}{u}")).collect(),
        event: "notification".into(),
        // The Node service emitted the published text itself.
        args: vec![Value::String(text.to_string())],
    };
    if let Err(e) = push::send_with(state, &tenant, req, false, need_store).await {
        tracing::warn!(tenant = %tenant_name, error = %e, "a `notification` could not be delivered");
    }
}

async fn chain_changed(state: &AppState, tenant_name: &str) {
    let Some(tenant) = state.tenants.get(tenant_name) else {
        return;
    };
    // On failure `activate` has logged it and left the tenant failing closed.
    if state.plugins.activate(&tenant).await.is_ok() {
        tracing::info!(tenant = %tenant_name, "plugin chain reloaded after an announcement");
    }
}

/// How often every node re-reads all tenant records from the shared store.
/// An announcement lost on the way (Redis down or restarting, a node cut
/// off) is healed by the next pass: a change made on one node shows on every
/// node within this period (plus one store read), and a pass also runs as
/// soon as Redis is back.
pub const TENANT_RECONCILE: Duration = Duration::from_secs(3);

/// Keeps this node's tenants equal to the shared store's, every
/// [`TENANT_RECONCILE`] and right after Redis reconnects.
pub fn spawn_tenant_reconcile(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        let mut was_up = true;
        loop {
            tick.tick().await;
            let up = state.bus.as_ref().is_none_or(|b| b.hub().is_up());
            let reconnected = up && !was_up;
            was_up = up;
            if !reconnected && last.elapsed() < TENANT_RECONCILE {
                continue;
            }
            last = tokio::time::Instant::now();
            reconcile_tenants(&state).await;
        }
    })
}

/// One pass: every stored tenant applied (new ones mounted, changed ones
/// followed), and local tenants the store no longer has removed.
async fn reconcile_tenants(state: &AppState) {
    let stored = match state.store.list_tenants().await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "tenant reconcile skipped: store unavailable");
            return;
        }
    };
    let names: std::collections::HashSet<&str> = stored.iter().map(|r| r.name.as_str()).collect();
    for local in state.tenants.all() {
        let name = local.name();
        if !names.contains(&*name) && &*name != DEFAULT_TENANT {
            tenant_changed(state, &name).await;
        }
    }
    for rec in &stored {
        if state
            .tenants
            .get(&rec.name)
            .is_none_or(|t| t.is_behind(rec))
        {
            tenant_changed(state, &rec.name).await;
        }
    }
}

/// Another node created, changed or deleted a tenant: follow the store
/// (read under the lifecycle lock, so what is applied is what the store
/// holds after any local create or delete).
async fn tenant_changed(state: &AppState, name: &str) {
    let _lifecycle = state.tenants.lifecycle.lock().await;
    let rec = match state.store.get_tenant(name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(tenant = %name, error = %e, "cannot reload an announced tenant change");
            return;
        }
    };
    apply_tenant(state, name, rec).await;
}

/// Makes this node's tenant `name` what the store holds (`None`: deleted).
async fn apply_tenant(state: &AppState, name: &str, rec: Option<TenantRecord>) {
    match (rec, state.tenants.get(name)) {
        (Some(rec), Some(tenant)) => {
            if tenant.follow(rec) {
                tracing::info!(tenant = %name, "tenant reloaded from the store");
            }
        }
        (Some(rec), None) => {
            crate::lifecycle::bring_in(state, rec).await;
            tracing::info!(tenant = %name, "tenant mounted from the store");
        }
        (None, Some(_)) => {
            crate::lifecycle::take_out(state, name).await;
            tracing::info!(tenant = %name, "tenant removed: the store no longer has it");
        }
        (None, None) => {}
    }
}
