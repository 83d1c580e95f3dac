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
//! Nothing here acts on the server: what the bus hears goes to the
//! [`BusEvents`] the application implements (the push protocol delivers a
//! `notification`, the tenant lifecycle follows tenant and chain changes),
//! so this layer never calls the protocol above it.
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

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;

use hub::RedisHub;

pub const NOTIFICATION_CHANNEL: &str = "notification";
pub const CHAIN_CHANNEL: &str = "hookwire:chain";
pub const TENANT_CHANNEL: &str = "hookwire:tenant";
/// Tapped msgs (`tenant \u{1} room \u{1} json`), published by the relaying
/// node while any node has a watcher of that room.
pub const TAP_CHANNEL: &str = "hookwire:tap";
/// Watchers of a room (`tenant \u{1} room`), repeated while they watch.
pub const TAP_WATCH_CHANNEL: &str = "hookwire:tap-watch";

/// How long a `notification` claim is remembered; see [`Bus::claim`].
const CLAIM_WINDOW: Duration = Duration::from_secs(60);

/// What the bus hears, handed to the application: the cluster layer
/// decodes and de-duplicates, and never acts on the server itself.
#[async_trait]
pub trait BusEvents: Send + Sync + 'static {
    /// A `notification` publish this node claimed (its text as published).
    async fn notification(&self, text: &str);
    /// `tenant`'s plugin chain changed on some node.
    async fn chain_changed(&self, tenant: &str);
    /// `tenant` was created, changed or deleted on some node.
    async fn tenant_changed(&self, tenant: &str);
    /// A msg relayed on some node to a room someone taps.
    fn tapped(&self, tenant: &str, room: &str, json: &str);
    /// Some node has a watcher of this room (said again while it watches).
    fn tap_watched(&self, tenant: &str, room: &str);
}

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
    pub fn spawn_listener(
        self: &Arc<Self>,
        events: Arc<dyn BusEvents>,
    ) -> tokio::task::JoinHandle<()> {
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
                        events.notification(&text).await
                    }
                    // A reload compiles (seconds for a big component), so it
                    // runs beside this loop: tenant changes and notifications
                    // are never queued behind a compile.
                    CHAIN_CHANNEL => bus.reload_chain(&events, text),
                    TENANT_CHANNEL => events.tenant_changed(&text).await,
                    TAP_CHANNEL => {
                        let mut parts = text.splitn(3, '\u{1}');
                        if let (Some(t), Some(r), Some(json)) =
                            (parts.next(), parts.next(), parts.next())
                        {
                            events.tapped(t, r, json);
                        }
                    }
                    TAP_WATCH_CHANNEL => {
                        if let Some((t, r)) = text.split_once('\u{1}') {
                            events.tap_watched(t, r);
                        }
                    }
                    _ => {}
                }
            }
        })
    }

    /// Reloads `tenant`'s chain in a task of its own. Announcements that
    /// arrive during a reload coalesce into one more reload, which reads the
    /// store's latest chain, so a burst of uploads costs at most two.
    fn reload_chain(self: &Arc<Self>, events: &Arc<dyn BusEvents>, tenant: String) {
        {
            let mut reloading = self.reloading.lock();
            if let Some(again) = reloading.get_mut(&tenant) {
                *again = true;
                return;
            }
            reloading.insert(tenant.clone(), false);
        }
        let (bus, events) = (self.clone(), events.clone());
        tokio::spawn(async move {
            loop {
                events.chain_changed(&tenant).await;
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
        for chan in [
            NOTIFICATION_CHANNEL,
            CHAIN_CHANNEL,
            TENANT_CHANNEL,
            TAP_CHANNEL,
            TAP_WATCH_CHANNEL,
        ] {
            streams.push(self.hub.subscribe(chan.to_string(), 1024).await?);
        }
        Ok(streams)
    }
}
