//! One Redis connection per node for everything cluster-wide: the
//! socketioxide adapter's pub/sub channels, hookwire's own channels
//! (`notification`, chain and tenant announcements) and presence writes.
//!
//! Why not the `RedisDriver` that socketioxide-redis ships: it holds a plain
//! multiplexed connection, so after a Redis restart every subscription is
//! gone for good and each broadcast fails (and with it the *local* part of
//! the broadcast, which the adapter only runs after a successful publish).
//! Here a [`ConnectionManager`] reconnects with backoff and resubscribes on
//! its own, and publishes go through a queue that never blocks or fails the
//! caller: while Redis is away, cross-node delivery pauses, local delivery
//! goes on, and the loss is counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, MessageStream};
use tokio::sync::mpsc;

/// Publishes waiting for Redis; beyond this, cross-node messages are
/// dropped (and counted) rather than held in memory without bound.
const PUBLISH_QUEUE: usize = 65_536;
/// Publishes sent in one pipeline (one round trip).
const PUBLISH_BATCH: usize = 512;

type Handlers = HashMap<String, mpsc::Sender<ChanItem>>;

pub struct RedisHub {
    conn: ConnectionManager,
    handlers: Arc<RwLock<Handlers>>,
    publish_tx: mpsc::Sender<(String, Vec<u8>)>,
    up: Arc<AtomicBool>,
    /// Cross-node publishes lost (queue full or Redis unreachable).
    pub dropped: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct HubError(#[from] pub redis::RedisError);

impl RedisHub {
    /// Connects (RESP3, for pushes on the same connection as commands).
    /// Fails when Redis does not answer at start; later outages are
    /// retried with backoff for as long as the node runs.
    pub async fn connect(url: &str) -> Result<Arc<RedisHub>, HubError> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let handlers: Arc<RwLock<Handlers>> = Arc::default();
        let up = Arc::new(AtomicBool::new(true));
        let (h, u) = (handlers.clone(), up.clone());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(3)
            .set_push_sender(move |msg: PushInfo| {
                dispatch(msg, &h, &u);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(publish_loop(
            conn.clone(),
            publish_rx,
            up.clone(),
            dropped.clone(),
        ));
        Ok(Arc::new(RedisHub {
            conn,
            handlers,
            publish_tx,
            up,
            dropped,
        }))
    }

    /// A connection for commands (cheap clone; reconnects by itself).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Did the last exchange with Redis succeed?
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Queues a publish; never waits for Redis.
    pub fn publish(&self, chan: String, payload: Vec<u8>) {
        if self.publish_tx.try_send((chan, payload)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subscribes to `chan`; messages arrive on the returned stream, also
    /// after Redis restarts (the manager resubscribes).
    pub async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, HubError> {
        let (tx, rx) = mpsc::channel(size);
        // Registered before SUBSCRIBE so that the first message finds it.
        self.handlers.write().insert(chan.clone(), tx);
        if let Err(e) = self.conn.clone().subscribe(&chan).await {
            self.handlers.write().remove(&chan);
            return Err(e.into());
        }
        Ok(MessageStream::new(rx))
    }

    pub async fn unsubscribe(&self, chan: String) -> Result<(), HubError> {
        self.handlers.write().remove(&chan);
        self.conn.clone().unsubscribe(&chan).await?;
        Ok(())
    }

    /// Subscribers of `chan` (socket.io servers of a namespace); this node
    /// only when Redis cannot say, so that local delivery still happens.
    pub async fn subscribers(&self, chan: &str) -> u16 {
        let r: redis::RedisResult<(String, u16)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.conn.clone())
            .await;
        match r {
            Ok((_, n)) => n.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "PUBSUB NUMSUB failed; assuming this node alone");
                1
            }
        }
    }
}

fn dispatch(msg: PushInfo, handlers: &RwLock<Handlers>, up: &AtomicBool) {
    match msg.kind {
        PushKind::Message | PushKind::SMessage if msg.data.len() >= 2 => {
            let mut it = msg.data.into_iter();
            let (Some(chan), Some(payload)) = (it.next(), it.next()) else {
                return;
            };
            let (Ok(chan), Ok(payload)) = (
                redis::from_redis_value::<String>(chan),
                redis::from_redis_value::<Vec<u8>>(payload),
            ) else {
                tracing::warn!("ignoring a malformed pub/sub message");
                return;
            };
            if let Some(tx) = handlers.read().get(&chan)
                && tx.try_send((chan.clone(), payload)).is_err()
            {
                tracing::warn!(%chan, "pub/sub consumer too slow; a cluster message was dropped");
            }
        }
        PushKind::Disconnection => {
            up.store(false, Ordering::Relaxed);
            tracing::warn!("connection to redis lost; reconnecting");
        }
        _ => {}
    }
}

async fn publish_loop(
    conn: ConnectionManager,
    mut rx: mpsc::Receiver<(String, Vec<u8>)>,
    up: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut failing = false;
    // While one pipeline is in flight the next batch gathers, so under load
    // many publishes share one round trip.
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len() as u64;
        let mut pipe = redis::pipe();
        for (chan, payload) in batch.drain(..) {
            pipe.publish(chan, payload).ignore();
        }
        match pipe.query_async::<()>(&mut conn.clone()).await {
            Ok(()) => {
                if failing {
                    tracing::info!("publishing to redis works again");
                }
                failing = false;
                up.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                dropped.fetch_add(n, Ordering::Relaxed);
                up.store(false, Ordering::Relaxed);
                if !failing {
                    tracing::warn!(error = %e, "publishing to redis failed; cross-node messages are lost until it returns");
                }
                failing = true;
            }
        }
    }
}
