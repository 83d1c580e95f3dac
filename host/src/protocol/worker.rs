//! One worker per socket: the socket's events are handled one after the
//! other, in the order they arrived.
//!
//! socketioxide runs every event handler as its own task, so two `msg`s
//! sent back to back could be relayed and stored in either order. The
//! handlers therefore only queue the event (in arrival order) and this loop
//! handles them. A `msg`'s store write is the exception to "one after the
//! other": it is *started* in order (the first poll enqueues it in the
//! store's group commit) and then awaited alongside later events, so a
//! socket is not held to one disk sync per message; acks go out in order.

use std::sync::Arc;
use std::task::Poll;

use crate::cluster::adapter::{Ack, Socket};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::Value;
use tokio::sync::mpsc;

use super::room_sync::{self, PendingMsg};
use super::session::Session;
use super::wire;
use crate::server::AppState;
use crate::store::{RoomWriteAck, StoreResult};

/// Events queued per socket before the worker takes them.
pub const QUEUE: usize = 1024;

pub enum Event {
    Authenticate(Value, Option<Ack>),
    Join(Value, Option<Ack>),
    Msg(Value, Ack, bool),
    Sync(Value, Option<Ack>),
    Leave(Option<Ack>),
    Disconnected,
}

/// Events are queued boxed: tokio allocates a channel's slots 32 at a time,
/// so an idle socket's queue costs 32 pointers rather than 32 events.
pub type EventTx = mpsc::Sender<Box<Event>>;
pub type EventRx = mpsc::Receiver<Box<Event>>;

impl Event {
    /// Refuses the event without handling it: through its ack when the
    /// client gave one, else as an `error` event.
    pub fn refuse(self, socket: &Socket, reason: &str) {
        let v = wire::fail(reason);
        let ack = match self {
            Event::Authenticate(_, a) | Event::Join(_, a) | Event::Sync(_, a) | Event::Leave(a) => {
                a
            }
            Event::Msg(_, a, true) => Some(a),
            Event::Msg(_, _, false) | Event::Disconnected => None,
        };
        match ack {
            Some(a) => {
                let _ = a.send(&v);
            }
            None => {
                let _ = socket.emit("error", &v);
            }
        }
    }
}

/// Runs until the socket is gone. `first`: the handshake authentication,
/// handled before any queued event.
pub async fn run(
    state: AppState,
    sess: Arc<Session>,
    socket: Socket,
    mut rx: EventRx,
    first: Option<Value>,
) {
    if let Some(creds) = first {
        let req = room_sync::auth_request(&creds, &sess.query);
        Box::pin(room_sync::authenticate(&state, &sess, &socket, req, None)).await;
    }
    let mut inflight = FuturesOrdered::new();
    loop {
        let event = tokio::select! {
            biased;
            Some((pending, r)) = inflight.next(), if !inflight.is_empty() => {
                let pending: PendingMsg = pending;
                pending.complete(&state, &sess, &socket, r);
                continue;
            }
            ev = rx.recv() => ev,
        };
        let Some(event) = event else { break };
        // Each handler's future is boxed: this loop lives as long as the
        // socket, and inline it would be as large as the largest handler.
        match *event {
            Event::Authenticate(data, ack) => {
                let payload = wire::first_object(&data)
                    .map(|m| Value::Object(m.clone()))
                    .unwrap_or(Value::Null);
                let req = room_sync::auth_request(&payload, &sess.query);
                Box::pin(room_sync::authenticate(&state, &sess, &socket, req, ack)).await;
            }
            Event::Join(data, ack) => {
                Box::pin(room_sync::join(&state, &sess, &socket, data, ack)).await
            }
            Event::Msg(data, ack, wants) => {
                if let Some(mut pending) =
                    Box::pin(room_sync::msg(&state, &sess, &socket, data, ack, wants)).await
                {
                    // Start the write now, in order; finish it later.
                    match futures::poll!(&mut pending.write) {
                        Poll::Ready(r) => pending.complete(&state, &sess, &socket, r),
                        Poll::Pending => inflight.push_back(async move {
                            let r = (&mut pending.write).await;
                            (pending, r)
                        }),
                    }
                }
            }
            Event::Sync(data, ack) => {
                // A socket reads its own writes: what it sent before this
                // `sync` is stored before the sync is answered.
                finish_writes(&mut inflight, &state, &sess, &socket).await;
                Box::pin(room_sync::sync(&state, &sess, &socket, data, ack)).await
            }
            Event::Leave(ack) => {
                // Others may `sync` as soon as they see `remote_leave`; the
                // leaver's last msgs must already be stored then.
                finish_writes(&mut inflight, &state, &sess, &socket).await;
                Box::pin(room_sync::leave(&state, &sess, socket.clone(), ack)).await
            }
            Event::Disconnected => {
                // Writes already relayed still get stored.
                finish_writes(&mut inflight, &state, &sess, &socket).await;
                Box::pin(room_sync::disconnected(&state, &sess, &socket)).await;
                break;
            }
        }
    }
}

/// Waits for every started store write and acks each, in order.
async fn finish_writes<F>(
    inflight: &mut FuturesOrdered<F>,
    state: &AppState,
    sess: &Arc<Session>,
    socket: &Socket,
) where
    F: std::future::Future<Output = (PendingMsg, StoreResult<RoomWriteAck>)>,
{
    while let Some((pending, r)) = inflight.next().await {
        pending.complete(state, sess, socket, r);
    }
}
