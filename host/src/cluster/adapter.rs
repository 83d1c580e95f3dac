//! The socket.io adapter every namespace uses: socketioxide-redis's
//! adapter over a [`HubDriver`], so rooms and broadcasts reach the sockets
//! of every node.
//!
//! One concrete type for both deployments keeps generics out of every
//! handler: without `--redis` the driver is [`HubDriver::Local`], whose
//! channels are silent, so the adapter only ever reaches local sockets
//! (the cost is one small msgpack encoding per broadcast, not per recipient).

use std::sync::Arc;

use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use super::hub::{HubError, RedisHub};

#[derive(Clone)]
pub enum HubDriver {
    /// One node: nothing to tell anyone.
    Local,
    Redis(Arc<RedisHub>),
}

impl Driver for HubDriver {
    type Error = HubError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), HubError> {
        if let HubDriver::Redis(hub) = self {
            hub.publish(chan, val);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, HubError> {
        match self {
            HubDriver::Local => Ok(MessageStream::new_empty()),
            HubDriver::Redis(hub) => hub.subscribe(chan, size).await,
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), HubError> {
        match self {
            HubDriver::Local => Ok(()),
            HubDriver::Redis(hub) => hub.unsubscribe(chan).await,
        }
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, HubError> {
        match self {
            HubDriver::Local => Ok(1),
            HubDriver::Redis(hub) => Ok(hub.subscribers(chan).await),
        }
    }
}

/// The adapter of every hookwire namespace.
pub type Adapter = CustomRedisAdapter<socketioxide::adapter::Emitter, HubDriver>;
pub type Io = socketioxide::SocketIo<Adapter>;
pub type Socket = socketioxide::extract::SocketRef<Adapter>;
pub type Ack = socketioxide::extract::AckSender<Adapter>;
pub type Operators = socketioxide::operators::BroadcastOperators<Adapter>;

/// The adapter's state for `SocketIo::builder().with_adapter`.
pub fn adapter_state(hub: Option<Arc<RedisHub>>) -> RedisAdapterCtr<HubDriver> {
    let driver = hub.map_or(HubDriver::Local, HubDriver::Redis);
    // Cluster requests (room lists, acks from remote sockets) give up after
    // 2 s rather than the default 5 when a node does not answer.
    let config = RedisAdapterConfig::new()
        .with_prefix("hookwire")
        .with_request_timeout(std::time::Duration::from_secs(2))
        .with_stream_buffer(8192);
    RedisAdapterCtr::new_with_driver(driver, config)
}
