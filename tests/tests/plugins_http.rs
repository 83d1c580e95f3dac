//! The plugin admin REST API and the `hookwire plugin` CLI against a real
//! node (`hookwire::run` on 127.0.0.1:0) with the real plugins.

use hookwire::runtime::EngineLimits;
use hookwire_tests::plugins::{wasm, wasm_path};
use serde_json::{Value, json};

const ADMIN: &str = "admin-secret";

struct Node {
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let config = hookwire::Config {
        data_dir: dir.path().to_path_buf(),
        admin_key: Some(ADMIN.into()),
        default_api_key: Some("tenant-key".into()),
        plugins: EngineLimits {
            cache_dir: Some(dir.path().join("plugin-cache")),
            max_concurrent_instances: 8,
            max_idle_instances: 16,
            ..EngineLimits::default()
        },
        ..hookwire::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hookwire::run(config, listener, async move {
        let _ = rx.await;
    }));
    Node {
        base,
        _dir: dir,
        _stop: tx,
    }
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn upload_list_test_chain_rollback_delete_over_rest() {
    let n = node().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/tenants/default{p}", n.base);

    // No key, wrong key, unknown tenant.
    let (s, body) = call(http.get(url("/plugins"))).await;
    assert_eq!(
        (s, body["meta"]["status"].as_i64()),
        (401, Some(2)),
        "{body}"
    );
    let (s, _) = call(http.get(url("/plugins")).bearer_auth("tenant-key")).await;
    assert_eq!(s, 401);
    let (s, _) = call(http.get(format!(
        "{}/api/tenants/nope/plugins?apiKey={ADMIN}",
        n.base
    )))
    .await;
    assert_eq!(s, 404);

    // Refusals: core module, garbage, wrong world.
    for (bytes, what) in [
        (b"\0asm\x01\0\0\0".to_vec(), "core module"),
        (b"garbage".to_vec(), "garbage"),
        (wasm("wrong-world"), "wrong world"),
    ] {
        let (s, body) = call(http.post(url("/plugins/x")).bearer_auth(ADMIN).body(bytes)).await;
        assert_eq!(
            (s, body["meta"]["status"].as_i64()),
            (400, Some(4)),
            "{what}: {body}"
        );
        assert!(body["data"].is_null());
    }

    // Upload with a manifest header; version 1, in the chain.
    let manifest = json!({ "timeout_ms": 2000, "config": { "words": ["darn"] } });
    let (s, body) = call(
        http.post(url("/plugins/word-filter"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/wasm")
            .header("x-hookwire-manifest", manifest.to_string())
            .body(wasm("word-filter")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["meta"]["status"], 0);
    assert_eq!(body["data"]["version"], 1);
    assert!(
        body["data"]["describe"]["hooks"]
            .as_array()
            .unwrap()
            .contains(&json!("on-msg"))
    );

    // Dry run.
    let (s, body) = call(
        http.post(url("/plugins/word-filter/test"))
            .bearer_auth(ADMIN)
            .json(
                &json!({ "hook": "on-msg", "input": { "room": "r", "msg": { "data": "darn" } } }),
            ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["data"]["verdict"],
        json!({ "Rewrite": { "msg": { "data": "****" } } })
    );
    assert!(body["data"]["elapsed_us"].as_u64().is_some());

    // A config change is version 2; rollback goes back to 1.
    let (s, body) = call(
        http.put(url("/plugins/word-filter/config"))
            .bearer_auth(ADMIN)
            .json(&json!({ "timeout_ms": 2000, "config": { "words": ["darn"], "mode": "drop" } })),
    )
    .await;
    assert_eq!(
        (s, body["data"]["version"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let (_, body) = call(
        http.post(url("/plugins/word-filter/rollback"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(body["data"]["version"], 1, "{body}");

    // Chain order with a second plugin, then the listing.
    let (s, _) = call(
        http.post(url("/plugins/router"))
            .bearer_auth(ADMIN)
            .body(wasm("user-router")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = call(
        http.put(url("/chain"))
            .bearer_auth(ADMIN)
            .json(&json!({ "order": ["router", "word-filter"] })),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (_, body) = call(http.get(url("/plugins")).bearer_auth(ADMIN)).await;
    let chain: Vec<_> = body["data"]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(chain, [json!("router"), json!("word-filter")]);
    let wf = body["data"]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "word-filter")
        .unwrap();
    assert_eq!(wf["active_version"], 1);
    assert_eq!(wf["versions"].as_array().unwrap().len(), 2);
    assert_eq!(wf["hash"].as_str().unwrap().len(), 64);

    // Delete; then it is unknown.
    let (s, _) = call(http.delete(url("/plugins/router")).bearer_auth(ADMIN)).await;
    assert_eq!(s, 200);
    let (s, _) = call(
        http.post(url("/plugins/router/rollback"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(s, 404);
}

/// Runs `hookwire plugin ARGS` (the real binary) against `server`; its exit
/// status and stdout parsed as JSON (`Null` when it is not JSON), or stderr.
fn cli(server: &str, key: &str, args: &[&str]) -> (bool, Value, String) {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/hookwire");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p hookwire`",
        bin.display()
    );
    let out = std::process::Command::new(bin)
        .arg("plugin")
        .args(args)
        .args(["--server", server, "--admin-key", key])
        .env_remove("HOOKWIRE_SERVER")
        .env_remove("HOOKWIRE_ADMIN_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_pushes_lists_tests_and_removes() {
    let n = node().await;
    let server = n.base.clone();
    // The binary blocks while it talks to the node: off the test's runtime.
    let run = |args: Vec<String>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&server, ADMIN, &args)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let wasm = wasm_path("word-filter").to_string_lossy().into_owned();

    let (ok, pushed, err) = run(args(&[
        "push",
        "word-filter",
        &wasm,
        "--config",
        r#"{"words":["heck"]}"#,
    ]))
    .await
    .unwrap();
    assert!(ok, "push: {err}");
    assert_eq!(
        pushed["version"], 1,
        "push prints the new version: {pushed}"
    );

    let (ok, listed, err) = run(args(&["list"])).await.unwrap();
    assert!(ok, "list: {err}");
    assert!(
        listed.to_string().contains("word-filter"),
        "list names the plugin: {listed}"
    );

    let (ok, tested, err) = run(args(&[
        "test",
        "word-filter",
        "--hook",
        "on-msg",
        "--input",
        r#"{"room":"r","msg":{"data":"heck"}}"#,
    ]))
    .await
    .unwrap();
    assert!(ok, "test: {err}");
    assert_eq!(
        tested["verdict"],
        json!({ "Rewrite": { "msg": { "data": "****" } } }),
        "the dry run's verdict: {tested}"
    );

    let (ok, _, err) = run(args(&["chain", "word-filter"])).await.unwrap();
    assert!(ok, "chain: {err}");

    // Rollback with one version is refused with the server's message.
    let (ok, _, err) = run(args(&["rollback", "word-filter"])).await.unwrap();
    assert!(!ok && err.contains("no version before"), "rollback: {err}");

    let (ok, _, err) = run(args(&["rm", "word-filter"])).await.unwrap();
    assert!(ok, "rm: {err}");
    let (ok, listed, err) = run(args(&["list"])).await.unwrap();
    assert!(ok, "list after rm: {err}");
    assert!(
        !listed.to_string().contains("word-filter"),
        "rm removed the plugin: {listed}"
    );

    let (ok, _, err) = tokio::task::spawn_blocking({
        let server = server.clone();
        move || cli(&server, "wrong", &["list"])
    })
    .await
    .unwrap();
    assert!(
        !ok && !err.is_empty(),
        "a wrong admin key fails with a message"
    );
}
