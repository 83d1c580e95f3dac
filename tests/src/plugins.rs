//! Real plugins for tests: builds the `plugins/` workspace (wasm32-wasip2,
//! release) once per test process and hands out the `.wasm` paths, so a
//! test never runs against a stale binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin of the workspace: package name → component path.
pub fn plugins() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| build().unwrap_or_else(|e| panic!("building plugins/ failed: {e:#}")))
}

/// The component of one plugin package (`word-filter`, `spin-loop`, ...).
pub fn wasm_path(name: &str) -> &'static Path {
    plugins()
        .get(name)
        .unwrap_or_else(|| panic!("no plugin package `{name}` in plugins/"))
        .as_path()
}

/// The bytes of one plugin component.
pub fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(wasm_path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn build() -> anyhow::Result<HashMap<String, PathBuf>> {
    let root = repo_root();
    let manifest = root.join("plugins/Cargo.toml");
    let target_dir = root.join("plugins/target");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(&manifest)
    .args(["--message-format", "json-render-diagnostics"])
    .env("CARGO_TARGET_DIR", &target_dir)
    // The host build's flags must not leak into a wasm build.
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_ENCODED_RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET")
    .current_dir(root.join("plugins"));
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!(
            "cargo build of plugins/ failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Take the artifact paths from cargo itself rather than guessing names.
    let mut found = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(name) = msg.pointer("/target/name").and_then(|v| v.as_str()) else {
            continue;
        };
        let files = msg["filenames"].as_array().cloned().unwrap_or_default();
        if let Some(wasm) = files
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            // Target names use `_`; the package names the tests use have `-`.
            found.insert(name.replace('_', "-"), PathBuf::from(wasm));
        }
    }
    if found.is_empty() {
        anyhow::bail!("cargo built no .wasm in plugins/");
    }
    Ok(found)
}
