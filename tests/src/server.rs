//! A hookwire node inside the test process (`hookwire::server::serve` on
//! `127.0.0.1:0`), plus a small event-collecting Rust socket.io client.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hookwire::Config;
use hookwire::store::Store;
use hookwire::store::embedded::EmbeddedStore;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub const ADMIN_KEY: &str = "test-admin-key";
pub const API_KEY: &str = "test-api-key";

pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A node on the embedded store in a fresh temporary directory.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("t.redb"), Duration::ZERO).expect("open store"),
        );
        let mut s = Self::start_on(store, dir.path().to_path_buf()).await;
        s._dir = Some(dir);
        s
    }

    /// A node on the given store (one per backend in the conformance runs).
    pub async fn start_on(store: Arc<dyn Store>, data_dir: std::path::PathBuf) -> TestServer {
        Self::start_with(store, data_dir, None).await
    }

    /// With `redis`: the node's pub/sub bus (notification channel, plugin
    /// announcements) on that Redis.
    pub async fn start_with(
        store: Arc<dyn Store>,
        data_dir: std::path::PathBuf,
        redis: Option<String>,
    ) -> TestServer {
        let config = Config {
            data_dir,
            redis,
            admin_key: Some(ADMIN_KEY.into()),
            default_api_key: Some(API_KEY.into()),
            ..Config::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(hookwire::server::serve(
            config,
            store,
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        let s = TestServer {
            url,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: None,
        };
        for _ in 0..100 {
            if s.http
                .get(format!("{}/healthz", s.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("test server did not become healthy");
    }

    /// Calls the HTTP API with the tenant key; returns (HTTP status, body).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("http call");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /user/create_token` for `uid` on the default tenant.
    pub async fn token(&self, uid: &str) -> String {
        let (_, v) = self
            .api(
                reqwest::Method::POST,
                "/user/create_token",
                API_KEY,
                json!({ "uid": uid }),
            )
            .await;
        v["data"]["token"].as_str().expect("token").to_string()
    }

    /// Graceful shutdown (flushes the store).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server run");
        }
    }
}

/// A Rust socket.io client that records every event it receives.
pub struct TestClient {
    pub client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl TestClient {
    pub async fn connect(url: &str, transport: TransportType, auth: Option<Value>) -> TestClient {
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = tx.clone();
        let mut b = ClientBuilder::new(url)
            .namespace("/")
            .transport_type(transport)
            .reconnect(false)
            .on_any(move |ev: Event, payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    let v = match payload {
                        Payload::Text(mut vals) if vals.len() == 1 => vals.remove(0),
                        Payload::Text(vals) => Value::Array(vals),
                        _ => Value::Null,
                    };
                    let _ = tx.send((ev.to_string(), v));
                }
                .boxed()
            })
            // The server closing the connection is recorded as `close`.
            .on(Event::Close, move |_p: Payload, _c: Client| {
                let closed = closed.clone();
                async move {
                    let _ = closed.send(("close".into(), Value::Null));
                }
                .boxed()
            });
        if let Some(a) = auth {
            b = b.auth(a);
        }
        let client = b.connect().await.expect("connect");
        let mut c = TestClient { client, events: rx };
        // The server sends `_settings` right after CONNECT: from then on the
        // namespace is joined and emits are not lost.
        c.next("_settings").await;
        c
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// Emits and waits for the ack's first value.
    pub async fn emit_ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(parking_lot_free::Slot::new(tx));
        self.client
            .emit_with_ack(
                event,
                data,
                Duration::from_secs(5),
                move |p: Payload, _c: Client| {
                    let tx = tx.clone();
                    async move {
                        // rust_socketio hands the ack's argument list as one array.
                        let mut v = match p {
                            Payload::Text(mut vals) if !vals.is_empty() => vals.remove(0),
                            _ => Value::Null,
                        };
                        if let Value::Array(a) = &mut v
                            && a.len() == 1
                        {
                            v = a.remove(0);
                        }
                        tx.send(v);
                    }
                    .boxed()
                },
            )
            .await
            .expect("emit_with_ack");
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("ack in time")
            .expect("ack")
    }

    /// The next `event` (other events are skipped), within 5 s.
    pub async fn next(&mut self, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((e, v))) if e == event => return v,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("client closed while waiting for {event}"),
                Err(_) => panic!("no `{event}` within 5 s"),
            }
        }
    }

    /// Asserts no `event` arrives within `ms`.
    pub async fn none(&mut self, event: &str, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some((e, v))) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert_ne!(e, event, "unexpected `{event}`: {v}");
        }
    }
}

/// A oneshot sender usable from an `FnMut` callback.
mod parking_lot_free {
    use std::sync::Mutex;
    pub struct Slot<T>(Mutex<Option<tokio::sync::oneshot::Sender<T>>>);
    impl<T> Slot<T> {
        pub fn new(tx: tokio::sync::oneshot::Sender<T>) -> Self {
            Slot(Mutex::new(Some(tx)))
        }
        pub fn send(&self, v: T) {
            if let Some(tx) = self.0.lock().unwrap().take() {
                let _ = tx.send(v);
            }
        }
    }
}
