//! `hookwire plugin check|run|new`, the real binary with real plugins and
//! no server: what it reports, its exit codes, its errors, and that a new
//! project builds, passes its test and runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use hookwire_tests::plugins::wasm_path;
use serde_json::Value;

fn bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/hookwire");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p hookwire`",
        bin.display()
    );
    bin
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// `hookwire plugin ARGS` with no node config but `env`.
fn plugin(args: &[&str], env: &[(&str, &str)]) -> Out {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("plugin").args(args);
    // Nothing of the caller's environment decides the limits, and errors
    // must read the same with backtraces switched on.
    for (k, _) in std::env::vars() {
        if k.starts_with("HOOKWIRE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_BACKTRACE", "1")
        .env("XDG_CACHE_HOME", cache.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path(name: &str) -> String {
    wasm_path(name).to_string_lossy().into_owned()
}

#[test]
fn check_reports_world_hooks_and_acceptance() {
    let out = plugin(&["check", &path("word-filter")], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for line in [
        "world      hookwire:policy@0.1.0",
        "hookwire:policy/host@0.1.0",
        "exports    describe, authenticate, on-join, on-msg, storage-mode, route-push",
        "describe   word-filter 0.1.0, hooks: on-msg",
        "limits     timeout 10 ms, memory 33554432 bytes",
        "verdict    accepted by this node's limits",
    ] {
        assert!(
            out.stdout.contains(line),
            "missing {line:?} in:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_refuses_with_reasons() {
    let out = plugin(&["check", &path("wrong-world")], &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("world      not hookwire:policy@0.1.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("no export `authenticate`"),
        "{}",
        out.stdout
    );

    // The node's own limits decide: a smaller component ceiling from its
    // configuration refuses what the defaults accept.
    let out = plugin(
        &["check", &path("word-filter")],
        &[("HOOKWIRE_PLUGINS__MAX_COMPONENT_BYTES", "1000")],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("this node accepts at most 1000 (plugins.max_component_bytes)"),
        "{}",
        out.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, r#"{"timeout_ms": 999999}"#).unwrap();
    let out = plugin(
        &[
            "check",
            &path("word-filter"),
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    let reasons: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("  - "))
        .collect();
    assert_eq!(reasons.len(), 1, "one reason, said once: {}", out.stdout);
    assert!(reasons[0].contains("timeout_ms = 999999"), "{}", out.stdout);

    // Not a component at all: a plain error, no backtrace.
    let out = plugin(&["check", manifest.to_str().unwrap()], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: not a WebAssembly component: no WebAssembly header"
    );
}

#[test]
fn run_prints_verdict_time_fuel_and_logs() {
    let out = plugin(
        &[
            "run",
            &path("word-filter"),
            "--hook",
            "on-msg",
            "--config",
            r#"{"words":["darn"]}"#,
            "--input",
            r#"{"room":"r","msg":{"data":"oh darn it"}}"#,
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["hook"], "on-msg");
    assert_eq!(v["verdict"]["Rewrite"]["msg"]["data"], "oh **** it");
    assert!(v["elapsed_us"].as_u64().is_some());
    assert!(v["fuel_used"].as_u64().unwrap() > 0, "{v}");
    assert!(v["memory_bytes"].as_u64().unwrap() >= 64 << 10, "{v}");

    // What the plugin logs comes back with the verdict.
    let out = plugin(
        &[
            "run",
            &path("rate-limit"),
            "--hook",
            "on-msg",
            "--config",
            r#"{"unknown": 1}"#,
            "--input",
            r#"{"room":"r","msg":{}}"#,
        ],
        &[],
    );
    let v = out.json();
    let logs = v["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{v}");
    assert_eq!(logs[0]["level"], "error");
    assert!(
        logs[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid plugin config")
    );
}

#[test]
fn run_contains_a_hostile_plugin_and_exits_2() {
    let out = plugin(
        &[
            "run",
            &path("spin-loop"),
            "--hook",
            "on-msg",
            "--input",
            r#"{"room":"r","msg":{}}"#,
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["fault"]["kind"], "timeout");
}

#[test]
fn run_keeps_kv_in_a_file_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv.redb");
    let once = |kv: Option<&Path>| {
        let mut args = vec![
            "run".to_string(),
            path("rate-limit"),
            "--hook".into(),
            "on-msg".into(),
            "--config".into(),
            r#"{"rate_per_sec": 0.001, "burst": 1}"#.into(),
            "--input".into(),
            r#"{"room":"r","msg":{"data":"x"}}"#.into(),
        ];
        if let Some(kv) = kv {
            args.extend(["--kv".into(), kv.to_string_lossy().into_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = plugin(&args, &[]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        out.json()["verdict"].clone()
    };
    // Without a kv file every run starts empty: the one-message burst is
    // never used up.
    assert_eq!(once(None), "Pass");
    assert_eq!(once(None), "Pass");
    // With one, the second run sees the first one's counter.
    assert_eq!(once(Some(&kv)), "Pass");
    let second = once(Some(&kv));
    assert!(second["Drop"]["reason"].is_string(), "{second}");
}

#[test]
fn run_refuses_an_unknown_hook_clearly() {
    let out = plugin(&["run", &path("word-filter"), "--hook", "on-mesage"], &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "error: unknown hook `on-mesage`; one of: describe, authenticate, on-join, on-msg, storage-mode, route-push"
    );
    let out = plugin(
        &[
            "run",
            &path("word-filter"),
            "--hook",
            "on-msg",
            "--input",
            "{",
        ],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("error: --input is not JSON"),
        "{}",
        out.stderr
    );
}

/// What `new` writes; that each language's project builds, passes its test
/// and runs is checked by the first-plugin pages (`docs-pages.test.mjs`),
/// which start from it.
#[test]
fn new_writes_a_project_per_language_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().to_str().unwrap();
    for (lang, files) in [
        (
            "rust",
            &["Cargo.toml", "src/lib.rs", "manifest.json", "README.md"][..],
        ),
        (
            "js",
            &["plugin.js", "plugin.test.mjs", "manifest.json", "README.md"][..],
        ),
        (
            "python",
            &["plugin.py", "test_plugin.py", "manifest.json", "README.md"][..],
        ),
    ] {
        let name = format!("p-{lang}");
        let out = plugin(&["new", &name, "--lang", lang, "--dir", at], &[]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        for f in files {
            assert!(dir.path().join(&name).join(f).is_file(), "{lang}: {f}");
        }
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(&name).join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert!(
            manifest["timeout_ms"].as_u64().is_some(),
            "{lang}: {manifest}"
        );
        let again = plugin(&["new", &name, "--lang", lang, "--dir", at], &[]);
        assert_eq!(again.code, 1);
        assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    }
    let bad = plugin(&["new", "Bad Name", "--dir", at], &[]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("invalid plugin name"), "{}", bad.stderr);
}
