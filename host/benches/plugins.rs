//! Plugin runtime benchmarks (criterion), with the real plugins of
//! `plugins/` (built here for wasm32-wasip2):
//!
//! - `hook_call/warm_pass`: one `on_msg` on a warm instance that decides
//!   without parsing the message (`user-router`, no `to`): the host's own
//!   cost per call. The message's JSON text is made once (`MsgEvent`
//!   keeps it), as in the pipeline, which serialises each `msg` once to
//!   check its size;
//! - `hook_call/warm` vs `hook_call/fresh`: one `on_msg` of `word-filter`
//!   (which masks a word: parse, rewrite, serialise) on a reused warm
//!   instance vs a fresh pooled instance per call (the choice the runtime
//!   makes; see BENCHMARKS.md ("Plugin runtime"));
//! - `authenticate/fresh_instance`: `sign-check` on a fresh instance;
//! - `chain3/on_msg`: word-filter → user-router → rate-limit (kv store);
//! - `on_msg/none` vs `on_msg/word_filter`: the built-in policy against the
//!   filter, for a small and a 10 KB message.
//!
//! After criterion, `p50/p99` lines give percentiles of single calls.
//! Run: `cargo bench -p hookwire --bench plugins`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use hookwire::policy::{AuthRequest, BuiltinPolicy, HookContext, MsgEvent, Policy};
use hookwire::runtime::{EngineLimits, Hook, PluginManifest, PluginRuntime};
use hookwire::store::{Store, TenantRecord};
use hookwire::telemetry::Metrics;
use hookwire::tenant::{Tenant, TenantConfig};
use serde_json::{Value, json};

fn build_plugins() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join("plugins/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("plugins/target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building plugins/ failed");
    root.join("plugins/target/wasm32-wasip2/release")
}

struct Bench {
    _dir: tempfile::TempDir,
    rt: Arc<PluginRuntime>,
    wasm_dir: PathBuf,
}

impl Bench {
    fn new(rt_handle: &tokio::runtime::Runtime, wasm_dir: &Path, idle: u32) -> Bench {
        Bench::with_idle(rt_handle, wasm_dir, idle, idle.min(8))
    }

    fn with_idle(
        rt_handle: &tokio::runtime::Runtime,
        wasm_dir: &Path,
        idle: u32,
        idle_per_plugin: u32,
    ) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            hookwire::store::embedded::EmbeddedStore::open(
                &dir.path().join("db.redb"),
                Duration::ZERO,
            )
            .unwrap(),
        );
        let limits = EngineLimits {
            cache_dir: Some(dir.path().join("cache")),
            max_idle_instances: idle,
            max_idle_per_plugin: idle_per_plugin,
            ..EngineLimits::default()
        };
        let _g = rt_handle.enter();
        let rt = PluginRuntime::new(&limits, store, Metrics::default().plugins).unwrap();
        Bench {
            _dir: dir,
            rt,
            wasm_dir: wasm_dir.to_path_buf(),
        }
    }

    /// A tenant with these (name, config) plugins of `plugins/` in its chain.
    fn tenant(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
        plugins: &[(&str, Value)],
    ) -> Arc<Tenant> {
        let uploads: Vec<(&str, Vec<u8>, PluginManifest)> = plugins
            .iter()
            .map(|(plugin, config)| {
                let file = self
                    .wasm_dir
                    .join(format!("{}.wasm", plugin.replace('-', "_")));
                // A generous deadline: the bench machine may be shared, and
                // a wall-clock deadline must not turn contention into faults.
                let m = PluginManifest {
                    config: config.clone(),
                    timeout_ms: Some(1000),
                    ..Default::default()
                };
                (*plugin, std::fs::read(file).unwrap(), m)
            })
            .collect();
        self.tenant_of(rt, name, &uploads)
    }

    /// A tenant with these (name, component, manifest) plugins in its chain.
    fn tenant_of(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
        uploads: &[(&str, Vec<u8>, PluginManifest)],
    ) -> Arc<Tenant> {
        rt.block_on(async {
            let rec = TenantRecord {
                version: 1,
                name: name.into(),
                config: TenantConfig::default(),
                api_key_hashes: vec![],
                created_ms: 0,
            };
            self.rt.store().put_tenant(&rec).await.unwrap();
            let t = Arc::new(Tenant::new(rec));
            for (plugin, wasm, m) in uploads {
                self.rt
                    .upload(name, plugin, wasm, Some(m.clone()))
                    .await
                    .unwrap();
            }
            self.rt.activate(&t).await.unwrap();
            t
        })
    }
}

fn ctx(uid: &str) -> HookContext {
    HookContext {
        tenant: "b".into(),
        sid: Some("s".into()),
        uid: Some(uid.into()),
        device: None,
    }
}

fn small_msg() -> MsgEvent {
    MsgEvent::new(
        "room1",
        json!({ "data": { "text": "hello there, darn it" }, "msgId": "m1", "storage": 0 }),
    )
}

fn big_msg() -> MsgEvent {
    let text: String = "lorem ipsum dolor sit amet ".repeat(400);
    MsgEvent::new("room1", json!({ "data": { "text": text }, "msgId": "m2" }))
}

fn words() -> Value {
    json!({ "words": ["darn", "heck", "frak", "gorram", "smeg"] })
}

/// p50 / p99 of `n` single calls, printed for BENCHMARKS.md ("Plugin runtime").
fn percentiles<F: Fn() -> Fut, Fut: Future>(
    rt: &tokio::runtime::Runtime,
    label: &str,
    n: usize,
    f: F,
) {
    let mut samples = Vec::with_capacity(n);
    rt.block_on(async {
        for _ in 0..n / 10 {
            f().await;
        }
        for _ in 0..n {
            let t = Instant::now();
            f().await;
            samples.push(t.elapsed());
        }
    });
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!("p50/p99 {label}: p50 {:?}  p99 {:?}", p(0.5), p(0.99));
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wasm_dir = build_plugins();
    let warm = Bench::new(&rt, &wasm_dir, 64);
    let fresh = Bench::new(&rt, &wasm_dir, 0);

    let wf_warm = warm.tenant(&rt, "wfw", &[("word-filter", words())]);
    let router_warm = warm.tenant(&rt, "urw", &[("user-router", json!({}))]);
    let wf_fresh = fresh.tenant(&rt, "wff", &[("word-filter", words())]);
    let sign = fresh.tenant(
        &rt,
        "sign",
        &[("sign-check", json!({ "apps": { "app1": "KEY" } }))],
    );
    let sign_warm = warm.tenant(
        &rt,
        "signw",
        &[("sign-check", json!({ "apps": { "app1": "KEY" } }))],
    );
    let chain3 = warm.tenant(
        &rt,
        "chain3",
        &[
            ("word-filter", words()),
            ("user-router", json!({})),
            ("rate-limit", json!({ "rate_per_sec": 1e9, "burst": 1e9 })),
        ],
    );
    let builtin: Box<dyn Policy> = Box::new(BuiltinPolicy);
    let auth = AuthRequest {
        uid: Some("42".into()),
        token: None,
        payload: json!({ "uid": "42", "app": "app1", "timestamp": 1, "sign": "0123456789abcdef0123456789abcdef" }),
        query: String::new(),
    };
    let (small, big) = (small_msg(), big_msg());
    // The pipeline has this text already (it measures the message with it).
    small.json();
    // Built once: the server builds its context once per socket event.
    let (c1, c42) = (ctx("1"), ctx("42"));

    // Profiling aid: `HOOKWIRE_BENCH_LOOP=<case> cargo bench ...` runs one
    // case in a loop for 10 s (under `perf record`, say) and skips the rest.
    if let Ok(case) = std::env::var("HOOKWIRE_BENCH_LOOP") {
        let until = Instant::now() + Duration::from_secs(10);
        rt.block_on(async {
            while Instant::now() < until {
                for _ in 0..1000 {
                    match case.as_str() {
                        "warm" => drop(wf_warm.policy().on_msg(&c1, &small).await),
                        "warm_pass" => drop(router_warm.policy().on_msg(&c1, &small).await),
                        "sign_warm" => drop(sign_warm.policy().authenticate(&c42, &auth).await),
                        "sign_fresh" => drop(sign.policy().authenticate(&c42, &auth).await),
                        other => panic!("unknown HOOKWIRE_BENCH_LOOP case {other}"),
                    }
                }
            }
        });
        return;
    }

    let mut g = c.benchmark_group("hook_call");
    g.bench_function("warm_pass", |b| {
        b.to_async(&rt)
            .iter(|| async { router_warm.policy().on_msg(&c1, &small).await.unwrap() })
    });
    g.bench_function("warm", |b| {
        b.to_async(&rt)
            .iter(|| async { wf_warm.policy().on_msg(&c1, &small).await.unwrap() })
    });
    g.bench_function("fresh", |b| {
        b.to_async(&rt)
            .iter(|| async { wf_fresh.policy().on_msg(&c1, &small).await.unwrap() })
    });
    g.finish();

    let mut g = c.benchmark_group("authenticate");
    g.bench_function("fresh_instance", |b| {
        b.to_async(&rt)
            .iter(|| async { sign.policy().authenticate(&c42, &auth).await.unwrap() })
    });
    g.bench_function("warm_instance", |b| {
        b.to_async(&rt)
            .iter(|| async { sign_warm.policy().authenticate(&c42, &auth).await.unwrap() })
    });
    g.finish();

    let mut g = c.benchmark_group("chain3");
    g.bench_function("on_msg", |b| {
        b.to_async(&rt)
            .iter(|| async { chain3.policy().on_msg(&c1, &small).await.unwrap() })
    });
    g.finish();

    let mut g = c.benchmark_group("on_msg");
    g.bench_function("none/small", |b| {
        b.to_async(&rt)
            .iter(|| async { builtin.on_msg(&c1, &small).await.unwrap() })
    });
    g.bench_function("word_filter/small", |b| {
        b.to_async(&rt)
            .iter(|| async { wf_warm.policy().on_msg(&c1, &small).await.unwrap() })
    });
    g.bench_function("none/10KB", |b| {
        b.to_async(&rt)
            .iter(|| async { builtin.on_msg(&c1, &big).await.unwrap() })
    });
    g.bench_function("word_filter/10KB", |b| {
        b.to_async(&rt)
            .iter(|| async { wf_warm.policy().on_msg(&c1, &big).await.unwrap() })
    });
    g.finish();

    let n = 5000;
    percentiles(
        &rt,
        "hook_call/warm_pass (user-router on_msg)",
        n,
        || async { router_warm.policy().on_msg(&c1, &small).await.unwrap() },
    );
    percentiles(&rt, "hook_call/warm (word-filter on_msg)", n, || async {
        wf_warm.policy().on_msg(&c1, &small).await.unwrap()
    });
    percentiles(&rt, "hook_call/fresh (word-filter on_msg)", n, || async {
        wf_fresh.policy().on_msg(&c1, &small).await.unwrap()
    });
    percentiles(
        &rt,
        "authenticate/fresh_instance (sign-check)",
        n,
        || async { sign.policy().authenticate(&c42, &auth).await.unwrap() },
    );
    percentiles(
        &rt,
        "authenticate/warm_instance (sign-check)",
        n,
        || async { sign_warm.policy().authenticate(&c42, &auth).await.unwrap() },
    );
    percentiles(&rt, "chain3/on_msg", n, || async {
        chain3.policy().on_msg(&c1, &small).await.unwrap()
    });
    percentiles(&rt, "on_msg/word_filter/10KB", n, || async {
        wf_warm.policy().on_msg(&c1, &big).await.unwrap()
    });

    // Compile time, cold and from the disk cache, for the record.
    let wasm = std::fs::read(wasm_dir.join("word_filter.wasm")).unwrap();
    compile_times(&rt, "word-filter", &wasm);

    languages(&rt, &wasm_dir);
}

/// word-filter in each language whose component is built (Rust always;
/// JavaScript and Python by `plugins/build-guests.sh`, into
/// `plugins/target/guests/`): size, compile cold and from the cache,
/// `on_msg` warm and on a fresh instance, and resident memory per warm
/// instance. Printed as `lang ...` lines for BENCHMARKS.md.
fn languages(rt: &tokio::runtime::Runtime, wasm_dir: &Path) {
    let guests = wasm_dir.join("../../guests");
    let builds = [
        ("rust", wasm_dir.join("word_filter.wasm")),
        ("js", guests.join("js-word-filter.wasm")),
        ("python", guests.join("py-word-filter.wasm")),
    ];
    for (lang, path) in builds {
        let Ok(wasm) = std::fs::read(&path) else {
            println!(
                "lang {lang}: {} not built (plugins/build-guests.sh)",
                path.display()
            );
            continue;
        };
        println!("lang {lang}: word-filter component {} bytes", wasm.len());
        compile_times(rt, &format!("{lang} word-filter"), &wasm);
        // Components this size want more memory and time than the defaults
        // give a Rust one: the limits their pages recommend.
        let manifest = |config: Value| PluginManifest {
            config,
            timeout_ms: Some(1000),
            memory_bytes: Some(128 << 20),
            ..Default::default()
        };
        let uploads = [("word-filter", wasm.clone(), manifest(words()))];
        let c1 = ctx("1");
        let small = small_msg();
        let warm = Bench::with_idle(rt, wasm_dir, 64, 32);
        let t = warm.tenant_of(rt, &format!("{lang}w"), &uploads);
        percentiles(rt, &format!("lang {lang}: on_msg warm"), 2000, || async {
            t.policy().on_msg(&c1, &small).await.unwrap()
        });
        // Linear memory of an instance after a call (what the pooling
        // allocator must hold per live instance of this plugin).
        let memory = rt.block_on(async {
            warm.rt
                .dry_run(
                    &format!("{lang}w"),
                    "word-filter",
                    None,
                    Hook::OnMsg,
                    json!({"room": "r", "msg": small.msg().clone()}),
                    None,
                )
                .await
                .unwrap()
                .memory_bytes
        });
        println!(
            "lang {lang}: linear memory per instance {} KiB",
            memory.unwrap_or(0) / 1024
        );
        let fresh = Bench::with_idle(rt, wasm_dir, 0, 0);
        let tf = fresh.tenant_of(rt, &format!("{lang}f"), &uploads);
        percentiles(
            rt,
            &format!("lang {lang}: on_msg fresh instance"),
            200,
            || async { tf.policy().on_msg(&c1, &small).await.unwrap() },
        );
    }
}

/// Compiling a component cold vs loading it from the on-disk cache.
fn compile_times(rt: &tokio::runtime::Runtime, what: &str, wasm: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        hookwire::store::embedded::EmbeddedStore::open(&dir.path().join("db.redb"), Duration::ZERO)
            .unwrap(),
    );
    let limits = EngineLimits {
        cache_dir: Some(dir.path().join("cache")),
        ..EngineLimits::default()
    };
    for label in ["cold compile", "restart, disk cache"] {
        let _g = rt.enter();
        let prt = PluginRuntime::new(&limits, store.clone(), Metrics::default().plugins).unwrap();
        let t = Instant::now();
        rt.block_on(prt.compile(wasm)).unwrap();
        println!(
            "compile {what} ({} KB), {label}: {:?}",
            wasm.len() / 1024,
            t.elapsed()
        );
    }
}

criterion_group! {
    name = plugin_benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion::criterion_main!(plugin_benches);
