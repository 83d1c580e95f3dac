//! The files `hookwire plugin new` writes, per language. Each project
//! builds into a component and carries a test that passes as written.

use std::path::Path;

use super::toolbox::Lang;

/// `(relative path, contents)` of a new plugin project.
pub fn files(name: &str, lang: Lang, sdk: &Path) -> Vec<(String, String)> {
    let sdk = sdk.display().to_string();
    // An interpreter in the component (JavaScript, Python) holds 13-16 MiB
    // of the instance's memory; a Rust plugin about 1 MiB. (Starting an
    // instance has a budget of its own, so the hook's stays small.)
    let (timeout_ms, memory_bytes) = match lang {
        Lang::Rust => ("50", "33554432"),
        Lang::Js | Lang::Python => ("50", "67108864"),
    };
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{sdk}}", &sdk)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{timeout_ms}}", timeout_ms)
            .replace("{{memory_bytes}}", memory_bytes)
    };
    let templates: &[(&str, &str)] = match lang {
        Lang::Rust => &[
            ("Cargo.toml", RUST_CARGO),
            ("src/lib.rs", RUST_LIB),
            ("manifest.json", MANIFEST),
            ("README.md", RUST_README),
        ],
        Lang::Js => &[
            ("plugin.js", JS_PLUGIN),
            ("plugin.test.mjs", JS_TEST),
            ("manifest.json", MANIFEST),
            ("README.md", JS_README),
        ],
        Lang::Python => &[
            ("plugin.py", PY_PLUGIN),
            ("test_plugin.py", PY_TEST),
            ("manifest.json", MANIFEST),
            ("README.md", PY_README),
        ],
    };
    templates.iter().map(|(p, t)| (fill(p), fill(t))).collect()
}

/// What to type next, printed after the files.
pub fn next_steps(name: &str, lang: Lang) -> String {
    let build = match lang {
        Lang::Rust => format!(
            "  cd {name}\n  cargo test                                      # the plugin's test, natively\n  cargo build --release --target wasm32-wasip2    # the component\n  hookwire plugin run target/wasm32-wasip2/release/{}.wasm --hook on-msg --input '{{\"room\":\"r\",\"msg\":{{\"data\":\"hi\"}}}}'",
            name.replace('-', "_")
        ),
        Lang::Js => format!(
            "  cd {name}\n  node --test                                     # builds it and runs its hook\n  hookwire plugin run {name}.wasm --manifest manifest.json --hook on-msg --input '{{\"room\":\"r\",\"msg\":{{\"data\":\"hi\"}}}}'"
        ),
        Lang::Python => format!(
            "  cd {name}\n  python3 -m unittest                             # builds it and runs its hook\n  hookwire plugin run {name}.wasm --manifest manifest.json --hook on-msg --input '{{\"room\":\"r\",\"msg\":{{\"data\":\"hi\"}}}}'"
        ),
    };
    format!("{build}\n  hookwire plugin check <the .wasm> --manifest manifest.json")
}

const MANIFEST: &str = r#"{
  "timeout_ms": {{timeout_ms}},
  "memory_bytes": {{memory_bytes}},
  "fail_open": false,
  "config": { "blocked": ["darn"] }
}
"#;

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# The component; the unit tests still run natively (`cargo test`).
crate-type = ["cdylib"]

[dependencies]
hookwire-guest = { path = "{{sdk}}" }
serde = { version = "1", features = ["derive"] }

# Its own workspace, wherever it is created.
[workspace]

[profile.release]
# Small components upload and compile faster.
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
panic = "abort"
"#;

const RUST_LIB: &str = r#"//! `{{name}}`: refuses messages whose `data` contains a blocked word and
//! upper-cases the others.
//!
//! Config: `{"blocked": ["darn"]}`.

use hookwire_guest::serde_json::Value;
use hookwire_guest::{Context, MsgEvent, MsgVerdict, Plugin, config, log};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    blocked: Vec<String>,
}

pub struct Main;

#[hookwire_guest::plugin]
impl Plugin for Main {
    fn on_msg(_ctx: &Context, ev: MsgEvent) -> MsgVerdict {
        let cfg: Config = config().unwrap_or_default();
        let Some(Value::String(text)) = ev.msg.get("data") else {
            return MsgVerdict::Pass;
        };
        let lower = text.to_lowercase();
        if cfg.blocked.iter().any(|w| !w.is_empty() && lower.contains(&w.to_lowercase())) {
            log::info(format!("refused a message in {}", ev.room));
            return MsgVerdict::Drop("blocked word".into());
        }
        let mut msg = ev.msg.clone();
        msg["data"] = Value::String(text.to_uppercase());
        MsgVerdict::Rewrite(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwire_guest::serde_json::json;

    #[test]
    fn upper_cases_and_refuses() {
        hookwire_guest::testing::set_config(json!({"blocked": ["darn"]}));
        let ev = |data: &str| MsgEvent { room: "r".into(), msg: json!({"data": data}) };
        assert_eq!(
            Main::on_msg(&Context::default(), ev("hi")),
            MsgVerdict::Rewrite(json!({"data": "HI"}))
        );
        assert_eq!(
            Main::on_msg(&Context::default(), ev("oh Darn")),
            MsgVerdict::Drop("blocked word".into())
        );
    }
}
"#;

const RUST_README: &str = r#"# {{name}}

A hookwire plugin in Rust.

    cargo test                                      # the test, natively
    rustup target add wasm32-wasip2                 # once
    cargo build --release --target wasm32-wasip2    # the component
    hookwire plugin check target/wasm32-wasip2/release/{{crate}}.wasm --manifest manifest.json
    hookwire plugin run target/wasm32-wasip2/release/{{crate}}.wasm --manifest manifest.json \
        --hook on-msg --input '{"room":"r","msg":{"data":"hi"}}'
    hookwire plugin push {{name}} target/wasm32-wasip2/release/{{crate}}.wasm --manifest manifest.json
"#;

const JS_PLUGIN: &str = r#"// {{name}}: refuses messages whose `data` contains a blocked word and
// upper-cases the others. Config: {"blocked": ["darn"]}.
import { config, drop, log, pass, rewrite } from '@hookwire/guest';

export function onMsg(ctx, ev) {
  const blocked = (config() ?? {}).blocked ?? [];
  const data = ev.msg?.data;
  if (typeof data !== 'string') return pass();
  const lower = data.toLowerCase();
  if (blocked.some((w) => w && lower.includes(w.toLowerCase()))) {
    log.info(`refused a message in ${ev.room}`);
    return drop('blocked word');
  }
  return rewrite({ ...ev.msg, data: data.toUpperCase() });
}
"#;

const JS_TEST: &str = r#"// Builds the component and runs its hook in hookwire's own runtime and
// limits (`hookwire plugin run`): the test of the real thing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import test from 'node:test';

const SDK = process.env.HOOKWIRE_GUEST_SDK_JS ?? '{{sdk}}';
const run = (data) => JSON.parse(execFileSync('hookwire', ['plugin', 'run', '{{name}}.wasm', '--manifest', 'manifest.json',
  '--hook', 'on-msg', '--input', JSON.stringify({ room: 'r', msg: { data } })], { encoding: 'utf8' }));

test('upper-cases and refuses', () => {
  execFileSync('node', [`${SDK}/build.mjs`, 'plugin.js', '-o', '{{name}}.wasm'], { stdio: 'inherit' });
  assert.deepEqual(run('hi').verdict, { Rewrite: { msg: { data: 'HI' } } });
  assert.deepEqual(run('oh Darn').verdict, { Drop: { reason: 'blocked word' } });
});
"#;

const JS_README: &str = r#"# {{name}}

A hookwire plugin in JavaScript (SDK: `{{sdk}}`; run `npm ci` there once).

    node --test                                     # builds it and runs its hook
    node {{sdk}}/build.mjs plugin.js -o {{name}}.wasm
    hookwire plugin check {{name}}.wasm --manifest manifest.json
    hookwire plugin run {{name}}.wasm --manifest manifest.json \
        --hook on-msg --input '{"room":"r","msg":{"data":"hi"}}'
    hookwire plugin push {{name}} {{name}}.wasm --manifest manifest.json
"#;

const PY_PLUGIN: &str = r#""""{{name}}: refuses messages whose `data` contains a blocked word and
upper-cases the others. Config: {"blocked": ["darn"]}."""
from hookwire_guest import config, drop, log, pass_, rewrite


def on_msg(ctx, ev):
    blocked = (config() or {}).get("blocked", [])
    data = ev.msg.get("data") if isinstance(ev.msg, dict) else None
    if not isinstance(data, str):
        return pass_()
    lower = data.lower()
    if any(w and w.lower() in lower for w in blocked):
        log.info(f"refused a message in {ev.room}")
        return drop("blocked word")
    return rewrite({**ev.msg, "data": data.upper()})
"#;

const PY_TEST: &str = r#""""Builds the component and runs its hook in hookwire's own runtime and
limits (`hookwire plugin run`): the test of the real thing."""
import json
import os
import subprocess
import sys
import unittest

SDK = os.environ.get("HOOKWIRE_GUEST_SDK_PY", "{{sdk}}")


def run(data):
    out = subprocess.run(
        ["hookwire", "plugin", "run", "{{name}}.wasm", "--manifest", "manifest.json",
         "--hook", "on-msg", "--input", json.dumps({"room": "r", "msg": {"data": data}})],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["verdict"]


class PluginTest(unittest.TestCase):
    def test_upper_cases_and_refuses(self):
        subprocess.run([sys.executable, f"{SDK}/build.py", "plugin.py", "-o", "{{name}}.wasm"], check=True)
        self.assertEqual(run("hi"), {"Rewrite": {"msg": {"data": "HI"}}})
        self.assertEqual(run("oh Darn"), {"Drop": {"reason": "blocked word"}})


if __name__ == "__main__":
    unittest.main()
"#;

const PY_README: &str = r#"# {{name}}

A hookwire plugin in Python (SDK: `{{sdk}}`; componentize-py from its
`.venv`, see its README).

    python3 -m unittest                             # builds it and runs its hook
    python3 {{sdk}}/build.py plugin.py -o {{name}}.wasm
    hookwire plugin check {{name}}.wasm --manifest manifest.json
    hookwire plugin run {{name}}.wasm --manifest manifest.json \
        --hook on-msg --input '{"room":"r","msg":{"data":"hi"}}'
    hookwire plugin push {{name}} {{name}}.wasm --manifest manifest.json
"#;
