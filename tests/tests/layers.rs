//! The server crate's modules form layers (see the map in `host/src/lib.rs`):
//! each may use only the modules before it in [`LAYERS`]. Crates make the
//! workspace's layers a compile error; inside one crate this test does, by
//! reading every module's code (comments aside) for a path into a later one.

use std::path::{Path, PathBuf};

/// Leaves first.
const LAYERS: &[&str] = &[
    "config",
    "telemetry",
    "cluster",
    "protocol",
    "http",
    "tls",
    "cli",
    "app",
];

fn host_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src")
}

/// `module.rs` or every file under `module/`.
fn files_of(module: &str) -> Vec<PathBuf> {
    let src = host_src();
    let file = src.join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The top-level modules a line of code names through `crate::`, including
/// each of a `crate::{a, b::c}` group.
fn named_modules(line: &str) -> Vec<&str> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut out = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let item = item.trim();
                out.push(&item[..ident(item)]);
            }
        } else {
            out.push(&rest[..ident(rest)]);
        }
    }
    out
}

/// Lines of `path` whose code names a module of `later`.
fn violations(path: &Path, later: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| named_modules(l).iter().any(|m| later.contains(m)))
        .map(|(i, l)| format!("{}:{}: {}", path.display(), i + 1, l.trim()))
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_before_it() {
    let mut found = Vec::new();
    for (i, module) in LAYERS.iter().enumerate() {
        let later = &LAYERS[i + 1..];
        let files = files_of(module);
        assert!(!files.is_empty(), "no source for module {module}");
        for f in files {
            found.extend(violations(&f, later));
        }
    }
    assert!(
        found.is_empty(),
        "modules that name a later layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib = std::fs::read_to_string(host_src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let mut sorted = declared.clone();
    sorted.sort();
    let mut layers = LAYERS.to_vec();
    layers.sort();
    assert_eq!(sorted, layers, "lib.rs declares {declared:?}");
}

#[test]
fn the_check_sees_a_path_into_a_later_layer() {
    let dir = std::env::temp_dir().join(format!("hookwire-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("m.rs");
    std::fs::write(
        &f,
        "//! see crate::app::server\nuse crate::app::App;\nuse crate::{config, app};\n",
    )
    .unwrap();
    assert_eq!(
        violations(&f, &["app"]).len(),
        2,
        "the code lines, not the comment"
    );
    assert!(violations(&f, &["http"]).is_empty());
    assert_eq!(
        named_modules("use crate::{config, app::App};"),
        ["config", "app"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
