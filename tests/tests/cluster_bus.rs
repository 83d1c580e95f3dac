//! Two nodes on one real Redis (store and pub/sub): a plugin uploaded on one
//! node is active on the other; the Redis `notification` channel delivers
//! pushes (stored until acked with `needStore`).

use std::sync::Arc;
use std::time::Duration;

use hookwire_tests::procs::ServiceProc;
use hookwire_tests::server::{ADMIN_KEY, TestClient, TestServer};
use redis::AsyncCommands;
use rust_socketio::TransportType;
use serde_json::json;

async fn node(redis: &ServiceProc) -> (TestServer, tempfile::TempDir) {
    let store = hookwire::store::redis::RedisStore::connect(&redis.url())
        .await
        .expect("redis store");
    let dir = tempfile::tempdir().unwrap();
    let srv =
        TestServer::start_with(Arc::new(store), dir.path().to_path_buf(), Some(redis.url())).await;
    (srv, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_upload_on_one_node_is_active_on_the_other() {
    let redis = ServiceProc::redis().expect("redis-server");
    let (a, _da) = node(&redis).await;
    let (b, _db) = node(&redis).await;
    // Wait for B's subscription.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let wasm = hookwire_tests::plugins::wasm("word-filter");
    let r = a
        .http
        .post(format!("{}/api/tenants/default/plugins/word-filter", a.url))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/wasm")
        .header(
            "x-hookwire-manifest",
            json!({ "config": { "words": ["darn"], "mode": "mask" } }).to_string(),
        )
        .body(wasm)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "upload: {}",
        r.text().await.unwrap()
    );

    // On node B, soon, messages are filtered. (No timing assertion: B
    // compiles the component itself, which a debug build does slowly.)
    let (t1, t2) = (b.token("u1").await, b.token("u2").await);
    let s1 = TestClient::connect(
        &b.url,
        TransportType::Websocket,
        Some(json!({ "uid": "u1", "token": t1 })),
    )
    .await;
    let mut s2 = TestClient::connect(
        &b.url,
        TransportType::Websocket,
        Some(json!({ "uid": "u2", "token": t2 })),
    )
    .await;
    assert_eq!(
        s1.emit_ack("join", json!({ "roomId": "r" })).await["status"],
        0
    );
    assert_eq!(
        s2.emit_ack("join", json!({ "roomId": "r" })).await["status"],
        0
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert_eq!(
            s1.emit_ack("msg", json!({ "data": "oh darn", "storage": 2 }))
                .await["status"],
            0
        );
        let m = s2.next("msg").await;
        if m["data"] == "oh ****" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node B still relays unfiltered: {m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_notification_channel_delivers() {
    let redis = ServiceProc::redis().expect("redis-server");
    let (srv, _d) = node(&redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    let t = srv.token("n1").await;
    let mut c = TestClient::connect(
        &srv.url,
        TransportType::Websocket,
        Some(json!({ "uid": "n1", "token": t.clone() })),
    )
    .await;
    assert_eq!(c.next("authenticate").await["status"], 0);
    let live = json!({ "toWho": ["n1"], "needStore": false, "text": "hello" }).to_string();
    let _: () = conn.publish("notification", &live).await.unwrap();
    assert_eq!(c.next("notification").await, json!(live));
    let _ = c.client.disconnect().await;
    drop(c);

    // Offline with needStore: kept, and delivered as `_batch` on reconnect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = json!({ "toWho": ["n1"], "needStore": true, "text": "while away" }).to_string();
    let _: () = conn.publish("notification", &stored).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = TestClient::connect(
        &srv.url,
        TransportType::Websocket,
        Some(json!({ "uid": "n1", "token": t })),
    )
    .await;
    let batch = c.next("_batch").await;
    assert_eq!(batch, json!([["notification", stored]]), "{batch}");
    srv.stop().await;
}
