//! One worker per socket, while the socket has something to do: the
//! socket's events are handled one after the other, in the order they
//! arrived.
//!
//! socketioxide runs every event handler as its own task, so two `msg`s
//! sent back to back could be relayed and stored in either order. The
//! handlers therefore only queue the event (in arrival order, in the
//! session's [`Queue`]) and a worker handles them. A `msg`'s store write is
//! the exception to "one after the other": it is *started* in order (the
//! first poll enqueues it in the store's group commit) and then awaited
//! alongside later events, so a socket is not held to one disk sync per
//! message; acks go out in order.
//!
//! Most sockets are idle most of the time, so the worker is not a task for
//! the socket's whole life: the first queued event starts it, and it ends
//! once the queue is empty and no write is in flight. Starting and ending
//! both happen under the queue's lock, so there is never more than one
//! worker per socket and an event is never left without one.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::cluster::adapter::{Ack, Socket};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde_json::Value;

use super::Services;
use super::msg::PendingMsg;
use super::refusal::Refusal;
use super::session::Session;
use super::wire;
use super::{auth, msg, rooms, sync};
use crate::store::{RoomWriteAck, StoreResult};

/// Events queued per socket before the worker takes them.
pub const QUEUE: usize = 1024;

pub enum Event {
    /// The credentials of the handshake (`auth`, or the query string).
    HandshakeAuth(Value),
    Authenticate(Value, Option<Ack>),
    Join(Value, Option<Ack>),
    Msg(Value, Ack, bool),
    Sync(Value, Option<Ack>),
    Leave(Option<Ack>),
    Disconnected,
}

impl Event {
    /// Refuses the event without handling it: through its ack when the
    /// client gave one, else as an `error` event.
    pub fn refuse(self, socket: &Socket, refusal: Refusal) {
        let v = serde_json::Value::from(refusal);
        let ack = match self {
            Event::Authenticate(_, a) | Event::Join(_, a) | Event::Sync(_, a) | Event::Leave(a) => {
                a
            }
            Event::Msg(_, a, true) => Some(a),
            Event::Msg(_, _, false) | Event::HandshakeAuth(_) | Event::Disconnected => None,
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

/// A socket's events waiting for its worker, and whether it has one.
#[derive(Default)]
pub struct Queue {
    /// Emptied and released whenever the worker ends, so an idle socket
    /// holds no buffer.
    events: VecDeque<Event>,
    worker: WorkerState,
    /// The running worker, when it waits for an event.
    waker: Option<Waker>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    /// Before the connect handler: events are kept, none is handled yet,
    /// so that `_settings` and the handshake authentication come first.
    #[default]
    BeforeConnect,
    /// No worker; the next event starts one.
    Idle,
    Running,
    /// The disconnect was handled: nothing more is.
    Closed,
}

impl Queue {
    /// Adds `event`; whether a worker must be started for it. After the
    /// disconnect was handled nothing more is, and the event is dropped.
    fn push(&mut self, event: Event) -> bool {
        if self.worker == WorkerState::Closed {
            return false;
        }
        self.events.push_back(event);
        match self.worker {
            WorkerState::Idle => {
                self.worker = WorkerState::Running;
                true
            }
            WorkerState::Running => {
                if let Some(w) = self.waker.take() {
                    w.wake();
                }
                false
            }
            WorkerState::BeforeConnect | WorkerState::Closed => false,
        }
    }

    /// The worker ends: the queue gives its buffer back.
    fn stop(&mut self, next: WorkerState) {
        self.worker = next;
        self.events = VecDeque::new();
        self.waker = None;
    }
}

/// Queues an event of `socket` (from its handlers, in arrival order) and
/// starts the socket's worker if it has none. Past [`QUEUE`] waiting
/// events it is refused; the disconnect is never refused, so the socket is
/// always cleaned up.
pub fn queue(state: &Services, sess: &Arc<Session>, socket: &Socket, event: Event) {
    let mut q = sess.queue.lock();
    if q.events.len() >= QUEUE && !matches!(event, Event::Disconnected) {
        drop(q);
        tracing::warn!(tenant = %sess.tenant_name, sid = %sess.sid, "socket sends faster than it is served; event refused");
        let refusal = Refusal::Busy { limit: QUEUE };
        state.metrics.refuse(&sess.tenant_name, refusal.kind());
        event.refuse(socket, refusal);
        return;
    }
    let start = q.push(event);
    drop(q);
    if start {
        spawn(state, sess, socket);
    }
}

/// The connect handler ran: `handshake` (the handshake's credentials) is
/// handled before anything the client already sent, and the events queued
/// so far get a worker.
pub fn connected(state: &Services, sess: &Arc<Session>, socket: &Socket, handshake: Option<Value>) {
    let mut q = sess.queue.lock();
    if q.worker != WorkerState::BeforeConnect {
        return;
    }
    if let Some(creds) = handshake {
        q.events.push_front(Event::HandshakeAuth(creds));
    }
    let start = !q.events.is_empty();
    q.worker = if start {
        WorkerState::Running
    } else {
        WorkerState::Idle
    };
    drop(q);
    if start {
        spawn(state, sess, socket);
    }
}

fn spawn(state: &Services, sess: &Arc<Session>, socket: &Socket) {
    tokio::spawn(run(state.clone(), sess.clone(), socket.clone()));
}

/// What the worker does next.
enum Step<W> {
    /// A started store write finished: ack it.
    Written(W),
    Event(Event),
    /// Nothing queued, nothing in flight: the worker has ended.
    Done,
}

/// A worker that ends any other way than by returning (a handler panicked)
/// hands the queue back, so the socket's next event starts a new one
/// instead of waiting for ever. One that returns has already handed it
/// back under the lock, and a new worker may be running by the time it is
/// dropped: that one's state is not touched.
struct RunningGuard<'a> {
    sess: &'a Session,
    returned: bool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if self.returned {
            return;
        }
        let mut q = self.sess.queue.lock();
        if q.worker == WorkerState::Running {
            q.worker = WorkerState::Idle;
            q.waker = None;
        }
    }
}

/// Handles the socket's queued events until there are none left and no
/// write is in flight (or the socket is gone).
async fn run(state: Services, sess: Arc<Session>, socket: Socket) {
    let mut guard = RunningGuard {
        sess: &sess,
        returned: false,
    };
    let mut inflight = FuturesOrdered::new();
    loop {
        let step = std::future::poll_fn(|cx| next_step(&sess, &mut inflight, cx)).await;
        let event = match step {
            Step::Written((pending, r)) => {
                let pending: PendingMsg = pending;
                pending.complete(&state, &sess, &socket, r);
                continue;
            }
            Step::Event(event) => event,
            Step::Done => break,
        };
        // Each handler's future is boxed: inline, this loop's future would
        // be as large as the largest handler's.
        match event {
            Event::HandshakeAuth(creds) => {
                let req = auth::auth_request(&creds, query(&socket));
                Box::pin(auth::authenticate(&state, &sess, &socket, req, None)).await;
            }
            Event::Authenticate(data, ack) => {
                let payload = wire::first_object(&data)
                    .map(|m| Value::Object(m.clone()))
                    .unwrap_or(Value::Null);
                let req = auth::auth_request(&payload, query(&socket));
                Box::pin(auth::authenticate(&state, &sess, &socket, req, ack)).await;
            }
            Event::Join(data, ack) => {
                Box::pin(rooms::join(&state, &sess, &socket, data, ack)).await
            }
            Event::Msg(data, ack, wants) => {
                if let Some(mut pending) =
                    Box::pin(msg::msg(&state, &sess, &socket, data, ack, wants)).await
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
                Box::pin(sync::sync(&state, &sess, &socket, data, ack)).await
            }
            Event::Leave(ack) => {
                // Others may `sync` as soon as they see `remote_leave`; the
                // leaver's last msgs must already be stored then.
                finish_writes(&mut inflight, &state, &sess, &socket).await;
                Box::pin(rooms::leave(&state, &sess, socket.clone(), ack)).await
            }
            Event::Disconnected => {
                // Writes already relayed still get stored.
                finish_writes(&mut inflight, &state, &sess, &socket).await;
                Box::pin(rooms::disconnected(&state, &sess, &socket)).await;
                sess.queue.lock().stop(WorkerState::Closed);
                break;
            }
        }
    }
    guard.returned = true;
}

/// Finished writes first (their acks go out before later events are
/// handled), then the next queued event. With neither, the worker ends if
/// no write is in flight (deciding under the queue's lock, where `queue`
/// looks whether to start one), else waits for either.
fn next_step<F: Future>(
    sess: &Session,
    inflight: &mut FuturesOrdered<F>,
    cx: &mut Context<'_>,
) -> Poll<Step<F::Output>> {
    if let Poll::Ready(Some(done)) = inflight.poll_next_unpin(cx) {
        return Poll::Ready(Step::Written(done));
    }
    let mut q = sess.queue.lock();
    if let Some(event) = q.events.pop_front() {
        return Poll::Ready(Step::Event(event));
    }
    if inflight.is_empty() {
        q.stop(WorkerState::Idle);
        return Poll::Ready(Step::Done);
    }
    match &q.waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => q.waker = Some(cx.waker().clone()),
    }
    Poll::Pending
}

/// The handshake's query string, where `?uid=&token=` credentials are read.
/// The transport keeps the request that opened the session, so it is read
/// from there rather than copied into every session.
pub fn query(socket: &Socket) -> &str {
    socket.req_parts().uri.query().unwrap_or("")
}

/// Waits for every started store write and acks each, in order.
async fn finish_writes<F>(
    inflight: &mut FuturesOrdered<F>,
    state: &Services,
    sess: &Arc<Session>,
    socket: &Socket,
) where
    F: Future<Output = (PendingMsg, StoreResult<RoomWriteAck>)>,
{
    while let Some((pending, r)) = inflight.next().await {
        pending.complete(state, sess, socket, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(n: i64) -> Event {
        Event::HandshakeAuth(Value::from(n))
    }

    fn order(q: &Queue) -> Vec<i64> {
        q.events
            .iter()
            .map(|e| match e {
                Event::HandshakeAuth(v) => v.as_i64().unwrap_or(-1),
                Event::Disconnected => 0,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn events_before_connect_wait_and_start_nothing() {
        let mut q = Queue::default();
        assert!(!q.push(handshake(1)));
        assert!(!q.push(handshake(2)));
        assert_eq!(order(&q), [1, 2]);
    }

    #[test]
    fn only_the_event_that_finds_no_worker_starts_one() {
        let mut q = Queue {
            worker: WorkerState::Idle,
            ..Queue::default()
        };
        assert!(
            q.push(handshake(1)),
            "an idle socket's event starts a worker"
        );
        assert!(!q.push(handshake(2)), "the running worker takes the next");
        assert_eq!(order(&q), [1, 2]);
    }

    #[test]
    fn a_worker_that_ends_gives_the_buffer_back() {
        let mut q = Queue {
            worker: WorkerState::Running,
            ..Queue::default()
        };
        for i in 1..=20 {
            q.push(handshake(i));
        }
        while q.events.pop_front().is_some() {}
        assert!(q.events.capacity() > 0);
        q.stop(WorkerState::Idle);
        assert_eq!(q.events.capacity(), 0);
        assert!(q.push(handshake(21)), "the next event starts a new worker");
    }

    #[test]
    fn after_the_disconnect_nothing_is_queued() {
        let mut q = Queue {
            worker: WorkerState::Running,
            ..Queue::default()
        };
        q.push(Event::Disconnected);
        q.events.clear();
        q.stop(WorkerState::Closed);
        assert!(!q.push(handshake(1)));
        assert!(q.events.is_empty());
    }

    #[test]
    fn the_running_worker_is_woken_by_a_new_event() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(Default::default()));
        let mut q = Queue {
            worker: WorkerState::Running,
            waker: Some(Waker::from(flag.clone())),
            ..Queue::default()
        };
        assert!(!q.push(handshake(1)));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(q.waker.is_none());
    }
}
