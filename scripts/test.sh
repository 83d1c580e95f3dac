#!/usr/bin/env bash
# Runs every test of hookwire, installing what they need on a Debian machine:
#   redis-server, chromium and openssl (Debian packages; openssl makes the
#   TLS test's certificate), SecantusDB (PyPI, a
#   MongoDB-compatible server), socket.io-client, ws and playwright-core (npm;
#   the conformance suites install their own in run.sh), the
#   wasm32-wasip2 Rust target.
# Then: the sample plugins (built for wasm32-wasip2, their unit tests run
# natively; the JavaScript and Python ones with plugins/build-guests.sh, which
# installs componentize-js in guest-sdk/js and componentize-py in a venv), the Rust tests (store conformance on all backends, the plugin
# runtime, the Rust socket.io client), the official Engine.IO and Socket.IO
# protocol conformance suites against the engine hookwire runs, and the JS
# suites against the real `hookwire` binary with the official socket.io-client,
# and the chaos run (tests/chaos/run.mjs).
#
# Usage: scripts/test.sh            everything
#        SKIP_INSTALL=1 scripts/test.sh   when the dependencies are there
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# Each step says how long the run has taken so far (CI has a 30-minute budget).
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -z "${SKIP_INSTALL:-}" ]; then
    step "system packages (redis-server, chromium, openssl)"
    missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v openssl >/dev/null || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    step "SecantusDB (PyPI)"
    python3 -c 'import secantus' 2>/dev/null || python3 -m pip install -q secantusdb
    step "Rust target wasm32-wasip2"
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    step "npm packages"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

step "sample plugins: build (wasm32-wasip2) and unit tests"
plugins/build.sh >/dev/null
(cd plugins && cargo test --quiet --target "$(rustc -vV | sed -n 's/^host: //p')")

step "JavaScript and Python plugins (componentize-js, componentize-py; installed on first use)"
plugins/build-guests.sh >/dev/null

step "guest SDK docs and tests"
(cd guest-sdk && cargo test --quiet --target "$(rustc -vV | sed -n 's/^host: //p')")

step "cargo build"
cargo build --quiet -p hookwire -p hookwire-rust-client-example
cargo build --quiet -p hookwire-tests --bin conformance-fixture

step "Rust tests (store conformance, plugin runtime, Rust client)"
cargo test --quiet --workspace

step "protocol conformance (engine.io + socket.io suites)"
CONFORMANCE_FIXTURE="$root/target/debug/conformance-fixture" tests/conformance/run.sh

step "JS tests (socket.io-client against target/debug/hookwire)"
HOOKWIRE_BIN="$root/target/debug/hookwire" node --test --test-concurrency=2 tests/js/

step "chaos run (three nodes, plugin hot-swaps, node and Redis kill -9)"
HOOKWIRE_BIN="$root/target/debug/hookwire" node tests/chaos/run.mjs

step "all tests passed"
