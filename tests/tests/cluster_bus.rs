//! Two nodes on one real Redis (store and pub/sub): a plugin uploaded on one
//! node is active on the other; the Redis `notification` channel delivers
//! pushes (stored until acked with `needStore`).

use std::sync::Arc;
use std::time::Duration;

use hookwire_tests::procs::ServiceProc;
use hookwire_tests::server::{ADMIN_KEY, API_KEY, TestClient, TestServer};
use redis::AsyncCommands;
use rust_socketio::TransportType;
use serde_json::json;

/// Waits until `n` connections subscribe to `chan` (a node subscribes in the
/// background after it starts; a publish before that is lost).
async fn subscribed(redis: &ServiceProc, chan: &str, n: i64) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut conn)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} of {n} subscribers on `{chan}` after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The node's `hookwire_pushes_total{tenant="default"}` (pushes accepted and queued).
async fn pushes(srv: &TestServer) -> u64 {
    let text = srv
        .http
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("hookwire_pushes_total{") && l.contains("tenant=\"default\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

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
    // Both nodes listen for chain announcements.
    subscribed(&redis, hookwire::cluster::CHAIN_CHANNEL, 2).await;

    let wasm = hookwire_tests::plugins::wasm("word-filter");
    let r = a
        .http
        .post(format!("{}/api/tenants/default/plugins/word-filter", a.url))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/wasm")
        .header(
            "x-hookwire-manifest",
            // a generous deadline: with the engine's 5 ms default the
            // activation call can time out on a loaded machine
            json!({ "timeout_ms": 2000, "config": { "words": ["darn"], "mode": "mask" } })
                .to_string(),
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
    subscribed(&redis, hookwire::cluster::NOTIFICATION_CHANNEL, 1).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stat) = srv
            .api(
                reqwest::Method::GET,
                "/admin/monitor/stat",
                API_KEY,
                json!(null),
            )
            .await;
        if stat["data"]["online_user_count"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "n1 still online 30 s after its disconnect: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = pushes(&srv).await;
    let stored = json!({ "toWho": ["n1"], "needStore": true, "text": "while away" }).to_string();
    let _: () = conn.publish("notification", &stored).await.unwrap();
    // the node queued it (the counter moves after the store write)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pushes(&srv).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the needStore notification was not queued within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
