//! Redis pub/sub between nodes and business servers (when `--redis` is set).
//!
//! - channel `notification` (the push-server article's, PROTOCOL.md):
//!   `{toWho:[uid...], needStore:bool, ...}` is delivered as the event
//!   `notification` to those users, queued until acked when `needStore`,
//!   exactly like `POST /send`. The payload is the published text, as the
//!   Node service emitted it. `site` (or `tenant`) picks the tenant.
//! - channel `hookwire:chain`: a tenant name, published after a plugin
//!   chain changed on some node; every node reloads that tenant's chain from
//!   the shared store, so an upload is active everywhere within about a
//!   second.
//!
//! The listener reconnects with backoff when Redis goes away; while it is
//! away, `/healthz` reports it (`dependency_up{dependency="redis_pubsub"}`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use serde_json::Value;

use crate::policy::PushRequest;
use crate::protocol::{push, wire};
use crate::server::AppState;
use crate::tenant::DEFAULT_TENANT;

pub const NOTIFICATION_CHANNEL: &str = "notification";
pub const CHAIN_CHANNEL: &str = "hookwire:chain";

/// A connection to the Redis server used for pub/sub.
pub struct Bus {
    client: redis::Client,
    publisher: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Bus {
    pub fn new(url: &str) -> Result<Arc<Bus>, redis::RedisError> {
        Ok(Arc::new(Bus {
            client: redis::Client::open(url)?,
            publisher: tokio::sync::Mutex::new(None),
        }))
    }

    /// Tells every node that `tenant`'s plugin chain changed.
    pub async fn announce_chain(&self, tenant: &str) {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            *guard = self.client.get_multiplexed_async_connection().await.ok();
        }
        let Some(conn) = guard.as_mut() else {
            tracing::warn!(%tenant, "redis unreachable: other nodes will load the new chain when they restart");
            return;
        };
        if let Err(e) = conn.publish::<_, _, ()>(CHAIN_CHANNEL, tenant).await {
            tracing::warn!(%tenant, error = %e, "announcing a plugin chain change failed");
            *guard = None;
        }
    }

    /// Subscribes and handles messages until the process ends, reconnecting
    /// with backoff (100 ms doubling to 5 s).
    pub fn spawn_listener(self: &Arc<Self>, state: AppState) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let up = state
                .metrics
                .dependency_up
                .get_or_create(&vec![("dependency", "redis_pubsub".to_string())])
                .clone();
            loop {
                match bus.listen_once(&state, &up).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "redis pub/sub unavailable")
                    }
                }
                up.set(0);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    async fn listen_once(
        &self,
        state: &AppState,
        up: &prometheus_client::metrics::gauge::Gauge,
    ) -> Result<(), redis::RedisError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(NOTIFICATION_CHANNEL).await?;
        pubsub.subscribe(CHAIN_CHANNEL).await?;
        up.set(1);
        tracing::info!(
            "subscribed to redis channels `{NOTIFICATION_CHANNEL}` and `{CHAIN_CHANNEL}`"
        );
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            let text: String = match msg.get_payload() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a non-text pub/sub message");
                    continue;
                }
            };
            match msg.get_channel_name() {
                NOTIFICATION_CHANNEL => notification(state, &text).await,
                CHAIN_CHANNEL => chain_changed(state, &text).await,
                _ => {}
            }
        }
        Ok(())
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
    if let Err(e) = state.plugins.activate(&tenant).await {
        tracing::error!(tenant = %tenant_name, error = %e, "reloading the announced plugin chain failed; its hooks fail until it is fixed");
        tenant.set_policy(Box::new(crate::policy::UnavailableChain {
            reason: format!("{e:#}"),
        }));
    } else {
        tracing::info!(tenant = %tenant_name, "plugin chain reloaded after an announcement");
    }
}
