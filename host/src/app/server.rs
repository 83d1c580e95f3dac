//! Wiring: open the store, load tenants and their plugin chains, mount one
//! socket.io namespace per tenant, serve HTTP + socket.io on one listener,
//! and shut down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use super::App;
use crate::auth;
use crate::config::{Config, StoreKind};
use crate::http::ApiState;
use crate::protocol::{self, AuthLimiter, Presence, Services};
use crate::runtime::PluginRuntime;
use crate::store::{
    Store, TenantRecord, embedded::EmbeddedStore, mongo::MongoStore, redis::RedisStore,
};
use crate::telemetry::Metrics;
use crate::tenant::{DEFAULT_TENANT, TenantRegistry};

/// Serves one hookwire node on `listener` until `shutdown` completes, then
/// closes every connection and flushes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = match (config.store_kind(), &config.mongo, &config.redis) {
        (StoreKind::Mongo, Some(url), _) => Arc::new(
            MongoStore::connect(url)
                .await
                .context("cannot connect to MongoDB (--mongo)")?,
        ),
        (StoreKind::Redis, _, Some(url)) => Arc::new(
            RedisStore::connect(url)
                .await
                .context("cannot connect to Redis (--redis) for the store")?,
        ),
        // `validate` refused a server kind without its URL.
        _ => Arc::new(
            EmbeddedStore::open(
                &config.data_dir.join("hookwire.redb"),
                Duration::from_micros(config.commit_delay_us),
            )
            .with_context(|| {
                format!(
                    "cannot open the embedded store in {}",
                    config.data_dir.display()
                )
            })?,
        ),
    };
    serve(config, store, listener, shutdown).await
}

/// The headers a socket.io session reads after its request: `Origin`, checked
/// when a namespace is joined. The URI (its query) is kept by the engine.
static SESSION_HEADERS: [axum::http::HeaderName; 1] = [axum::http::header::ORIGIN];

/// engine.io keeps the request that opened a session for the session's whole
/// life, with its headers and extensions. socket.io requests never reach an
/// axum route, so of the extensions they keep only the two that are read
/// later: hyper's upgrade handle (taken by the engine for a WebSocket) and
/// the client's address (the login limiter counts per address). axum's
/// `OriginalUri`, a view into hyper's 8 KiB read buffer, would keep that
/// whole buffer alive. Of the headers, the session keeps [`SESSION_HEADERS`].
async fn trim_session_request(mut req: axum::extract::Request) -> axum::extract::Request {
    if req.uri().path().starts_with("/socket.io") {
        let old = req.extensions_mut();
        let mut kept = axum::http::Extensions::new();
        if let Some(upgrade) = old.remove::<hyper::upgrade::OnUpgrade>() {
            kept.insert(upgrade);
        }
        if let Some(addr) = old.remove::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
            kept.insert(addr);
        }
        kept.insert(engineioxide::SessionHeaders(&SESSION_HEADERS));
        *old = kept;
    }
    req
}

/// [`run`] on a store the caller opened (tests pass each backend).
pub async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = crate::tls::from_config(&config)?;
    let metrics = Arc::new(Metrics::default());
    // Every store operation timed, whichever the backend.
    let store: Arc<dyn Store> = Arc::new(crate::store::timed::Timed::new(
        store,
        Arc::new(crate::telemetry::StoreTimings::new(&metrics)),
    ));
    bootstrap(&config, store.as_ref()).await?;
    let tenants = Arc::new(TenantRegistry::load(store.as_ref()).await?);

    // With `--redis`, one connection carries the socket.io adapter's
    // channels, the presence mirror and the announcements.
    let hub = match &config.redis {
        Some(url) => Some(
            crate::cluster::hub::RedisHub::connect(url)
                .await
                .context("cannot connect to Redis (--redis) for clustering")?,
        ),
        None => None,
    };
    let (layer, io) = socketioxide::SocketIo::builder()
        .max_payload(config.max_payload_bytes)
        .max_buffer_size(1024)
        // Each websocket keeps its read buffer for life; most clients send
        // small events, and a larger frame grows the buffer as needed.
        .ws_read_buffer_size(1024)
        .ack_timeout(Duration::from_millis(config.ack_timeout_ms))
        .with_adapter::<crate::cluster::adapter::Adapter>(crate::cluster::adapter::adapter_state(
            hub.clone(),
        ))
        .build_layer();

    let mut limits = config.plugins.clone();
    if limits.cache_dir.is_none() {
        // Compiled plugins are cached beside the data (wasmtime wants an
        // absolute path).
        let dir = config.data_dir.join("plugin-cache");
        limits.cache_dir = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    let plugins = PluginRuntime::new(&limits, store.clone(), metrics.plugins.clone())?;
    let bus = hub.clone().map(crate::cluster::Bus::new);
    let auth_limiter = Arc::new(AuthLimiter::new(hub.clone()));
    let mirror = hub.map(crate::cluster::presence::PresenceMirror::new);
    let services = Services {
        store,
        tenants: tenants.clone(),
        io,
        metrics,
        presence: Arc::new(Presence::new(mirror)),
        auth_limiter,
        push_order: Default::default(),
        relays: Default::default(),
        taps: Default::default(),
    };
    if let Some(bus) = &bus {
        services.taps.cluster(bus.hub().clone());
    }
    let state = App {
        services,
        plugins,
        bus,
    };
    for tenant in tenants.all() {
        super::lifecycle::start(&state, &tenant).await;
    }
    let housekeeping = protocol::spawn_housekeeping(&state.services);
    let heartbeat = state.services.presence.spawn_heartbeat();
    let listener_task = state
        .bus
        .as_ref()
        .map(|b| b.spawn_listener(Arc::new(state.clone())));
    // A store shared with other nodes can change under this one.
    let reconcile = (state.services.store.kind() != "embedded")
        .then(|| super::lifecycle::spawn_tenant_reconcile(&state));

    let config = Arc::new(config);
    let api = ApiState {
        services: state.services.clone(),
        config: config.clone(),
        plugins: state.plugins.clone(),
        bus: state.bus.clone(),
        lifecycle: Arc::new(state.clone()),
        started: Instant::now(),
    };
    let mut app = crate::http::router(api).layer(layer);
    // CORS wraps socket.io too, so a browser page of a listed origin can
    // use long-polling (the tenant's allowed_origins still decides whether
    // its socket may connect).
    if let Some(cors) = crate::http::cors(&config.cors_allowed_origins) {
        app = app.layer(cors);
    }
    let app = app.layer(axum::middleware::map_request(trim_session_request));
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cluster = if state.bus.is_some() { "redis" } else { "none" };
    tracing::info!(%addr, store = state.services.store.kind(), cluster, "hookwire listening on {scheme}://{addr}");

    let (io, taps) = (state.services.io.clone(), state.services.taps.clone());
    serve_http(listener, app, tls, async move {
        shutdown.await;
        tracing::info!("shutting down: closing connections");
        taps.close_all();
        io.close().await;
    })
    .await;
    housekeeping.abort();
    if let Some(t) = listener_task {
        t.abort();
    }
    if let Some(t) = reconcile {
        t.abort();
    }
    if let Some(t) = heartbeat {
        t.abort();
    }
    state.services.presence.leave_cluster().await;
    // The namespaces' handlers hold the state (and the store): drop them so
    // the store closes when this function returns.
    for t in state.services.tenants.all() {
        protocol::unmount(&state.services, &t.name());
    }
    // Plugin kv written behind from memory lands before the store closes.
    if let Err(e) = state.plugins.flush_kv().await {
        tracing::error!(error = %e, "writing plugin kv at shutdown failed");
    }
    state
        .services
        .store
        .flush()
        .await
        .context("flushing the store at shutdown")?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// How long a client may take over its TLS handshake: a connection that
/// never finishes one holds a task and a descriptor until then.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts HTTP/1.1 connections (over TLS when `tls` is set) until
/// `shutdown` completes, then lets the requests in flight finish (for at
/// most five seconds).
///
/// hookwire runs hyper's HTTP/1 connection itself instead of `axum::serve`:
/// axum's server sniffs for HTTP/2 and wraps each connection in a buffering
/// adapter, so a WebSocket upgrade could not be handed back as the plain
/// `TcpStream` the engine writes through to from any task. Over TLS the
/// engine cannot write to the kernel socket itself; it bridges the upgraded
/// stream instead (see the engine's `ws::bridge`).
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::TokioIo;
    use tower::Service;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Each connection task holds a clone; recv() returns None once all ended.
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, mostly: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // TCP_NODELAY on every accepted connection (Node's http server sets it
        // too). Without it Nagle holds a socket's next small frame until the
        // client ACKs the previous one, and a client that only reads ACKs late
        // (delayed ACK, up to 40 ms): room fan-out's p99 paid that.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut app = app.clone();
                async move { app.call(req).await }
            });
        let mut stop = stop_rx.clone();
        let alive = alive_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(tcp), service, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => Some(stream),
                            // Plain HTTP on the TLS port, a client that does
                            // not trust the certificate, a scanner: theirs to
                            // see, not an operator's warning.
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                None
                            }
                        },
                        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => None,
                    };
                    if let Some(stream) = stream {
                        serve_connection(TokioIo::new(stream), service, stop).await;
                    }
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    stop_tx.send(true).ok();
    drop(alive_tx);
    if tokio::time::timeout(Duration::from_secs(5), alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections were still open after 5 s; closing them");
    }
}

/// Serves one HTTP/1.1 connection (with upgrades) until it ends, or until
/// `stop` turns true: then it finishes the request in flight and closes.
async fn serve_connection<I, S, B>(io: I, service: S, mut stop: tokio::sync::watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await.ok();
        }
    }
}

/// First start: the admin key and the `default` tenant.
async fn bootstrap(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    match &config.admin_key {
        Some(key) => {
            store
                .set_meta(crate::http::ADMIN_KEY_META, &auth::sha256_hex(key))
                .await?
        }
        None => {
            if store.get_meta(crate::http::ADMIN_KEY_META).await?.is_none() {
                let key = auth::random_secret();
                let path = config.data_dir.join("admin.key");
                write_secret(&path, &key)?;
                store
                    .set_meta(crate::http::ADMIN_KEY_META, &auth::sha256_hex(&key))
                    .await?;
                tracing::warn!(path = %path.display(), "first start: generated the admin key");
                println!("hookwire: admin key written to {}", path.display());
            }
        }
    }
    if store.get_tenant(DEFAULT_TENANT).await?.is_none() {
        let key = config
            .default_api_key
            .clone()
            .unwrap_or_else(auth::random_secret);
        if config.default_api_key.is_none() {
            let path = config.data_dir.join("default.api-key");
            write_secret(&path, &key)?;
            println!(
                "hookwire: API key of tenant `default` written to {}",
                path.display()
            );
        }
        // Only if still missing: nodes of a cluster may start together.
        store
            .swap_tenant(
                &TenantRecord {
                    name: DEFAULT_TENANT.into(),
                    config: config.tenant_defaults.clone(),
                    api_key_hashes: vec![auth::sha256_hex(&key)],
                    created_ms: crate::clock::now_ms(),
                    version: 1,
                },
                None,
            )
            .await?;
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}
