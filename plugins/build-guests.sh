#!/usr/bin/env bash
# Builds the JavaScript (plugins/js/*.js) and Python (plugins/python/*.py)
# plugins into WebAssembly components under plugins/target/guests/:
#
#   plugins/js/word-filter.js       -> plugins/target/guests/js-word-filter.wasm
#   plugins/python/word_filter.py   -> plugins/target/guests/py-word-filter.wasm
#
# Installs what is missing first: the npm packages of guest-sdk/js (`npm ci`,
# pinned by its package-lock.json) and the pinned componentize-py in
# guest-sdk/python/.venv. A component newer than its plugin, the SDK and the
# WIT is not rebuilt, so a second run takes a second.
#
#   plugins/build-guests.sh                  # everything
#   plugins/build-guests.sh word-filter      # the JS and Python word-filter only
#   plugins/build-guests.sh --js | --py      # one language
#   plugins/build-guests.sh --force          # rebuild even if up to date
#
# Prints "<bytes> <path>" per component on stdout (progress on stderr) and
# fails if a build fails or an output is not a component.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

COMPONENTIZE_PY_VERSION=0.25.1
out=plugins/target/guests
js_sdk=guest-sdk/js
py_sdk=guest-sdk/python

langs="js py"
force=0
only=()
for a in "$@"; do
    case "$a" in
        --js) langs=js ;;
        --py) langs=py ;;
        --force) force=1 ;;
        -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "build-guests.sh: unknown option $a" >&2; exit 2 ;;
        *) only+=("${a//_/-}") ;;
    esac
done

say() { echo "build-guests.sh: $*" >&2; }

wanted() {
    [ "${#only[@]}" -eq 0 ] && return 0
    local n
    for n in "${only[@]}"; do [ "$n" = "$1" ] && return 0; done
    return 1
}

# True when $1 is missing or older than any of the other files.
stale() {
    local target=$1; shift
    [ "$force" = 1 ] && return 0
    [ -e "$target" ] || return 0
    local f
    for f in "$@"; do [ "$f" -nt "$target" ] && return 0; done
    return 1
}

setup_js() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            say "installing nodejs and npm (apt-get)"
            apt-get install -y -q nodejs npm >&2 || { apt-get update -q >&2 && apt-get install -y -q nodejs npm >&2; }
        else
            say "node and npm are needed for the JavaScript plugins"; exit 1
        fi
    fi
    # node_modules/.package-lock.json is npm's record of the last install.
    if stale "$js_sdk/node_modules/.package-lock.json" "$js_sdk/package-lock.json" "$js_sdk/package.json"; then
        say "npm ci in $js_sdk"
        (cd "$js_sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
}

setup_py() {
    local venv=$py_sdk/.venv
    if [ -x "$venv/bin/componentize-py" ] &&
        [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
        return
    fi
    say "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
    if ! python3 -m venv "$venv" >&2 2>/dev/null; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
            rm -rf "$venv"
            python3 -m venv "$venv" >&2
        else
            say "python3 -m venv failed (install python3-venv)"; exit 1
        fi
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
}

is_component() {
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "0061736d0d000100" ]
}

built=()
status=0
mkdir -p "$out"
wit=(wit/*.wit)

if [[ " $langs " == *" js "* ]] && compgen -G "plugins/js/*.js" >/dev/null; then
    js_deps=("$js_sdk/src/guest.js" "$js_sdk/build.mjs" "$js_sdk/package-lock.json" "${wit[@]}")
    setup_done=0
    for src in plugins/js/*.js; do
        name=$(basename "$src" .js)
        wanted "$name" || continue
        wasm=$out/js-$name.wasm
        if stale "$wasm" "$src" "${js_deps[@]}"; then
            [ "$setup_done" = 1 ] || { setup_js; setup_done=1; }
            say "building $src"
            node "$js_sdk/build.mjs" "$src" -o "$wasm.tmp" --name "$name" && mv "$wasm.tmp" "$wasm" || {
                rm -f "$wasm.tmp"; say "FAILED: $src"; status=1; continue
            }
        fi
        built+=("$wasm")
    done
fi

if [[ " $langs " == *" py "* ]] && compgen -G "plugins/python/*.py" >/dev/null; then
    py_deps=("$py_sdk"/hookwire_guest/*.py "$py_sdk/build.py" "${wit[@]}")
    setup_done=0
    for src in plugins/python/*.py; do
        name=$(basename "$src" .py)
        name=${name//_/-}
        wanted "$name" || continue
        wasm=$out/py-$name.wasm
        if stale "$wasm" "$src" "${py_deps[@]}"; then
            [ "$setup_done" = 1 ] || { setup_py; setup_done=1; }
            say "building $src"
            python3 "$py_sdk/build.py" "$src" -o "$wasm.tmp" --name "$name" && mv "$wasm.tmp" "$wasm" || {
                rm -f "$wasm.tmp"; say "FAILED: $src"; status=1; continue
            }
        fi
        built+=("$wasm")
    done
fi

for f in "${built[@]}"; do
    if is_component "$f"; then
        size=$(stat -c %s "$f")
        printf "%10d  %5.1f MiB  %s\n" "$size" "$(echo "$size / 1048576" | bc -l)" "$root/$f"
    else
        say "$f is not a component"; status=1
    fi
done
exit $status
