//! The room-sync contract through a Rust socket.io client (rust_socketio),
//! on both transports, against a node running in this process.

use hookwire_tests::server::{TestClient, TestServer};
use rust_socketio::TransportType;
use serde_json::json;

async fn room_sync_roundtrip(transport: TransportType) {
    room_sync_on(TestServer::start().await, transport).await;
}

/// The room-sync round trip against a node on `srv`'s store.
async fn room_sync_on(srv: TestServer, transport: TransportType) {
    let (ta, tb) = (srv.token("alice").await, srv.token("bob").await);

    let mut a = TestClient::connect(&srv.url, transport.clone(), None).await;
    let r = a
        .emit_ack("authenticate", json!({ "uid": "alice", "token": ta }))
        .await;
    assert_eq!(r, json!({ "status": 0, "data": "auth success" }));
    assert_eq!(
        a.emit_ack("join", json!({ "roomId": 7 })).await["status"],
        0
    );

    // Handshake auth is the same as the event.
    let mut b = TestClient::connect(
        &srv.url,
        transport,
        Some(json!({ "uid": "bob", "token": tb })),
    )
    .await;
    assert_eq!(b.next("authenticate").await["status"], 0);
    assert_eq!(
        b.emit_ack("join", json!({ "roomId": "7" })).await["status"],
        0
    );
    assert_eq!(b.next("remote_join").await, json!({ "uid": "alice" }));
    assert_eq!(a.next("remote_join").await, json!({ "uid": "bob" }));

    for i in 0..5 {
        let ack = a
            .emit_ack(
                "msg",
                json!({ "data": { "i": i }, "storage": 0, "msgId": i }),
            )
            .await;
        assert_eq!(ack["status"], 0, "msg {i}: {ack}");
    }
    for i in 0..5 {
        let m = b.next("msg").await;
        assert_eq!(
            (m["data"]["i"].clone(), m["uid"].clone()),
            (json!(i), json!("alice"))
        );
    }
    a.none("msg", 100).await;

    let page = b.emit_ack("sync", json!({ "offset": 0 })).await;
    assert_eq!(page["status"], 0);
    assert_eq!(page["next"], 0);
    assert_eq!(page["offset"], 5);
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert_eq!(a.next("remote_sync").await, json!({ "uid": "bob" }));

    // Refusals are answered, never dropped.
    assert_eq!(a.emit_ack("join", json!({})).await["status"], 1);
    assert_eq!(a.emit_ack("msg", json!("not an object")).await["status"], 1);

    b.emit("leave", json!({})).await;
    assert_eq!(a.next("remote_leave").await, json!({ "uid": "bob" }));
    assert_eq!(a.next("remote_disconnect").await, json!({ "uid": "bob" }));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sync_over_websocket() {
    room_sync_roundtrip(TransportType::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sync_over_polling() {
    room_sync_roundtrip(TransportType::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_then_disconnected() {
    let srv = TestServer::start().await;
    srv.token("carol").await;
    let mut c = TestClient::connect(&srv.url, TransportType::Websocket, None).await;
    let r = c
        .emit_ack("authenticate", json!({ "uid": "carol", "token": "nope" }))
        .await;
    assert_eq!(r, json!({ "status": 1, "data": "invalid token" }));
    // the server closes the refused socket (within 5 s, or `next` panics)
    c.next("close").await;
    srv.stop().await;
}

/// The same room-sync round trip with every durable record in Redis, then
/// in MongoDB (SecantusDB), each a real server process started here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sync_on_redis_store() {
    let proc = hookwire_tests::procs::ServiceProc::redis().expect("redis-server");
    let store = hookwire::store::redis::RedisStore::connect(&proc.url())
        .await
        .expect("connect redis");
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_on(std::sync::Arc::new(store), dir.path().to_path_buf()).await;
    room_sync_on(srv, TransportType::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_sync_on_mongo_store() {
    let proc = hookwire_tests::procs::ServiceProc::secantus().expect("secantus");
    let store = hookwire::store::mongo::MongoStore::connect(&proc.mongo_url("room_sync"))
        .await
        .expect("connect mongo");
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_on(std::sync::Arc::new(store), dir.path().to_path_buf()).await;
    room_sync_on(srv, TransportType::Websocket).await;
}
