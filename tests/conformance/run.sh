#!/usr/bin/env bash
# Runs the official Engine.IO and Socket.IO protocol conformance suites
# (engine.io-protocol/, socket.io-protocol/) against the conformance fixture
# server. Builds nothing: build the fixture first with
#   cargo build -p hookwire-tests --bin conformance-fixture
#
#   CONFORMANCE_FIXTURE  the fixture binary (default target/debug/conformance-fixture)
#   RUST_LOG             passed to the fixture, which then logs to stderr
#
# Exits non-zero if a test of either suite fails or the fixture dies.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fixture=${CONFORMANCE_FIXTURE:-$root/target/debug/conformance-fixture}
if [ ! -x "$fixture" ]; then
    echo "run.sh: no fixture at $fixture; build it with: cargo build -p hookwire-tests --bin conformance-fixture" >&2
    exit 2
fi

suites=(engine.io-protocol socket.io-protocol)
for suite in "${suites[@]}"; do
    (cd "$here/$suite" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
done

out=$(mktemp)
# Port 0: the fixture takes free loopback ports and prints them.
"$fixture" --engineio 0 --socketio 0 >"$out" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$out"
}
trap cleanup EXIT

for _ in $(seq 100); do
    [ "$(grep -c '^\(engineio\|socketio\) http://' "$out")" -eq 2 ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: the fixture exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
url_of() { sed -n "s/^$1 //p" "$out"; }
declare -A url=([engine.io-protocol]=$(url_of engineio) [socket.io-protocol]=$(url_of socketio))
for suite in "${suites[@]}"; do
    if [ -z "${url[$suite]}" ]; then
        echo "run.sh: the fixture did not report its $suite address" >&2
        exit 1
    fi
done

failed=()
for suite in "${suites[@]}"; do
    echo "--- $suite suite against ${url[$suite]}"
    start=$(date +%s%N)
    # The suites time their heartbeat tests with the fixture's 300 ms ping
    # interval: one at a time, so they do not compete for the CPU.
    if ! (cd "$here/$suite" && SUITE_URL=${url[$suite]} ./node_modules/.bin/mocha test-suite.js); then
        failed+=("$suite")
    fi
    echo "--- $suite suite took $((($(date +%s%N) - start) / 1000000)) ms"
done

if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: the fixture died during the run" >&2
    exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "run.sh: failing: ${failed[*]}" >&2
    exit 1
fi
echo "--- both conformance suites passed"
