#!/usr/bin/env bash
# Builds every plugin of this workspace as a WebAssembly component (release)
# and prints the path of each .wasm, one per line, on stdout (progress goes
# to stderr, so `mapfile -t wasm < <(plugins/build.sh)` works in tests).
# Extra arguments go to cargo, e.g. `plugins/build.sh -p word-filter`.
set -euo pipefail
cd "$(dirname "$0")"

target=wasm32-wasip2
# When a test harness runs this from a build script, cargo's flags for the
# *host* build are in the environment; they must not leak into a wasm build.
unset CARGO_ENCODED_RUSTFLAGS RUSTFLAGS CARGO_BUILD_TARGET
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
    echo "build.sh: installing the $target target" >&2
    rustup target add "$target" >&2
fi

# Take the artifact paths from cargo itself rather than guessing names.
mapfile -t wasm < <(
    cargo build --release --target "$target" --message-format=json-render-diagnostics "$@" |
        grep -o '"[^"]*\.wasm"' | tr -d '"' | sort -u
)
if [ "${#wasm[@]}" -eq 0 ]; then
    echo "build.sh: cargo produced no .wasm" >&2
    exit 1
fi

# A component starts with `\0asm` and version 0x0d 0x00 0x01 0x00; a core
# module (0x01 0x00 0x00 0x00) would be refused by the server.
status=0
for f in "${wasm[@]}"; do
    head=$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')
    if [ "$head" = "0061736d0d000100" ]; then
        echo "$f"
    else
        echo "build.sh: $f is not a component (header $head)" >&2
        status=1
    fi
done
exit $status
