#!/usr/bin/env bash
# One-command side-by-side benchmark: hookwire embedded, hookwire + Redis
# (one node with the Redis store, and a cluster of two nodes when a probe shows
# messages crossing nodes; only when `hookwire serve --help` lists --redis), hookwire +
# word-filter plugin (when the plugin builds and uploads), and the Node peer
# (socket.io 4 + @socket.io/redis-adapter + node-redis), all in ONE run; then
# writes BENCHMARKS.md and bench/results/benchmarks.png.
#
#   bench/run.sh            full comparison (8-10 minutes after the build)
#   bench/run.sh --quick    smoke run (about 2 minutes)
#
# Scenarios: Node's highest sustainable fan-out rate (ramp); fan-out at 1x and 2x
# of it (server CPU per delivery as user and system time, TCP sends per delivery,
# latency, losses); idle joined connections (RSS per connection); sync paging;
# sync memory (RSS before, at the peak of and after one ~1 MiB page to each of
# many connections); one big room (latency to the last member served).
#
# Options: --no-build (use the binaries already in target/release),
#          --out FILE (markdown to write, default BENCHMARKS.md),
#          --chart FILE (chart to write, default bench/results/benchmarks.png),
#          --only LIST (comma list of: node,hookwire,hookwire-redis,hookwire-cluster,
#                       hookwire-wordfilter)
# Env: BENCH_NICE (nice level for servers and load generator, default 0),
#      BENCH_PIN (1 = pin with taskset, the default on 2+ cores; 0 = don't),
#      BENCH_SERVER_CPUS / BENCH_LOAD_CPUS (taskset CPU lists, default 0 and 1),
#      BENCH_RAMP_P99_MS (p99 bound of a sustainable ramp step, default 50),
#      BENCH_RATE (1x in msg/s when the Node peer is not measured),
#      HOOKWIRE_ADMIN_KEY / HOOKWIRE_DEFAULT_API_KEY (defaults: random).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=0
BUILD=1
OUT_MD=BENCHMARKS.md
CHART=
ONLY="node,hookwire,hookwire-redis,hookwire-cluster,hookwire-wordfilter"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT_MD=$2; shift ;;
    --chart) CHART=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

log() { echo "[run.sh $(date -u +%H:%M:%S)] $*" >&2; }

# ------------------------------------------------------------------ parameters
if [ $QUICK = 1 ]; then
  MODE=quick
  ROOMS=4; SUBS=50; PUBS=4; BYTES=128
  RAMP_RATES=100,200,400,800,1600
  RAMP_WARMUP=0.3; RAMP_WINDOW=1; RAMP_WINDOWS=1
  WARMUP=0.5; WINDOW=1; WINDOWS=3
  CONN_N=2000
  SYNC_M=2000; SYNC_C=10
  SYNCMEM_C=100; SYNCMEM_SETTLE=3
  BIG_N=1000; BIG_WARMUP=1; BIG_SECS=5
else
  MODE=full
  ROOMS=10; SUBS=100; PUBS=10; BYTES=128
  RAMP_RATES=100,150,200,300,400,500,650,800,1000,1300,1600,2000,2500,3200
  RAMP_WARMUP=0.5; RAMP_WINDOW=1.5; RAMP_WINDOWS=2
  WARMUP=1; WINDOW=3; WINDOWS=3
  CONN_N=19900
  SYNC_M=10000; SYNC_C=50
  SYNCMEM_C=1000; SYNCMEM_SETTLE=10
  BIG_N=10000; BIG_WARMUP=2; BIG_SECS=30
fi
# sync memory: one page of all SYNCMEM_M stored msgs (storage 1), SYNCMEM_PAGE bytes in all
SYNCMEM_M=200; SYNCMEM_PAGE=1048576
BIG_RATE=10
NICE_LVL=${BENCH_NICE:-0}
# A ramp step is sustainable when deliveries keep up (>= 97% of offered) and the
# median window p99 stays under this bound (ms). 50 ms on a quiet machine; on a
# shared 2-core VM the scheduler alone adds tens of ms, so raise it there.
RAMP_P99_MS=${BENCH_RAMP_P99_MS:-50}
NICE=(nice -n "$NICE_LVL")

# Pinning: the server side (server process(es) and redis-server) on one CPU, the
# load generator on another, so neither takes the other's core.
PIN=${BENCH_PIN:-1}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
cpu_count() { # taskset list: 1 / 0-3 / 1,3
  echo "$1" | tr ',' '\n' | awk -F- '{ n += (NF == 2 ? $2 - $1 + 1 : 1) } END { print n }'
}
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc --all)" -ge 2 ]; then
  SRV=(taskset -c "$SERVER_CPUS" "${NICE[@]}")
  LOADGEN=(taskset -c "$LOAD_CPUS" "${NICE[@]}")
  LOAD_THREADS=$(cpu_count "$LOAD_CPUS")
  PINNING="server side (the server process(es) and redis-server) pinned to CPU $SERVER_CPUS with \`taskset\`, load generator to CPU $LOAD_CPUS ($LOAD_THREADS tokio worker thread(s)); hookwire sizes its runtime from its CPU affinity, so one pinned node runs one worker thread; a cluster's two nodes share CPU $SERVER_CPUS"
else
  PIN=0
  SRV=("${NICE[@]}")
  LOADGEN=("${NICE[@]}")
  LOAD_THREADS=2
  PINNING="not pinned: servers, redis-server and the load generator ($LOAD_THREADS worker threads) share all cores"
fi

# Open files: each process (server, load generator) may hold as many as its soft
# limit allows; raise it to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=bench/results
mkdir -p "$RESULTS_DIR"
RESULTS=$RESULTS_DIR/results-$MODE.jsonl
CHART=${CHART:-$RESULTS_DIR/benchmarks.png}
NOTES=$(mktemp /tmp/hookwire-bench-notes.XXXXXX)
WORK=$(mktemp -d /tmp/hookwire-bench.XXXXXX)
: > "$RESULTS"
note() { echo "- $*" >> "$NOTES"; log "NOTE: $*"; }
if [ "$FD_LIMIT" != unlimited ]; then
  for v in CONN_N BIG_N; do
    if [ $((${!v} + 100)) -gt "$FD_LIMIT" ]; then
      note "$v lowered from ${!v} to $((FD_LIMIT - 100)) to stay under the open-file limit $FD_LIMIT"
      printf -v "$v" %d $((FD_LIMIT - 100))
    fi
  done
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK" "$NOTES"
}
trap cleanup EXIT

stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# ------------------------------------------------------------------ build & deps
BENCH=target/release/hookwire-bench
HOOKWIRE=target/release/hookwire
HAVE_HOOKWIRE=1
if [ $BUILD = 1 ]; then
  log "building (release)"
  cargo build --release -p hookwire-bench
  if ! cargo build --release -p hookwire; then
    HAVE_HOOKWIRE=0; note "hookwire did not build; only the Node peer was measured"
  fi
fi
[ -x "$HOOKWIRE" ] || { HAVE_HOOKWIRE=0; }
for tool in jq curl; do
  command -v "$tool" >/dev/null || (apt-get update -qq && apt-get install -y -qq "$tool") >&2
done
if ! command -v redis-server >/dev/null; then
  log "installing redis-server"
  (apt-get update -qq && apt-get install -y -qq redis-server) >&2
fi
if ! command -v perf >/dev/null; then
  log "installing linux-perf (for the send counts)"
  (apt-get update -qq && apt-get install -y -qq linux-perf) >&2 || true
fi
# sends per delivery: perf stat on the sock_send_length tracepoint (TCP sends by any
# system call), or, without it, on the send/write system call tracepoints
SENDS=0; SENDS_METHOD=none
if command -v perf >/dev/null; then
  if perf stat -x, -e sock:sock_send_length -- true >/dev/null 2>&1; then SENDS=1; SENDS_METHOD=tcp-sock-sendmsg
  elif perf stat -x, -e syscalls:sys_enter_sendto -- true >/dev/null 2>&1; then SENDS=1; SENDS_METHOD=syscalls; fi
fi
[ $SENDS = 1 ] || note "perf stat cannot count tracepoints here: sends per delivery not measured"
if ! ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1; then
  (apt-get install -y -qq fonts-dejavu-core) >&2 || note "no font for the chart"
fi
if [ ! -d bench/node-peer/node_modules ]; then
  log "npm ci in bench/node-peer"
  (cd bench/node-peer && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

free_port() { "$BENCH" free-port; }

wait_http() { # url, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ------------------------------------------------------------------ redis
RPORT=$(free_port)
"${SRV[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$WORK/redis.log" &
RPID=$!
PIDS+=("$RPID")
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL=redis://127.0.0.1:$RPORT
log "redis-server pid $RPID on $RPORT"

# ------------------------------------------------------------------ servers
ADMIN_KEY=${HOOKWIRE_ADMIN_KEY:-bench-admin-$RANDOM$RANDOM}
API_KEY=${HOOKWIRE_DEFAULT_API_KEY:-bench-api-$RANDOM$RANDOM}

SERVER_PID=
start_node() { # port [redis_url]
  local port=$1 url=${2:-}
  (cd bench/node-peer && PORT=$port REDIS_URL=$url JOIN_TIMEOUT_MS=0 exec "${SRV[@]}" node server.js) \
    > "$WORK/node-$port.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "http://127.0.0.1:$port/healthz" 20 || { cat "$WORK/node-$port.log" >&2; return 1; }
}

start_hookwire() { # port datadir [extra serve args...]
  local port=$1 dir=$2; shift 2
  mkdir -p "$dir"
  HOOKWIRE_ADMIN_KEY=$ADMIN_KEY HOOKWIRE_DEFAULT_API_KEY=$API_KEY RUST_LOG=${RUST_LOG:-warn} \
    "${SRV[@]}" "$HOOKWIRE" serve --listen "127.0.0.1:$port" --data-dir "$dir" "$@" \
    > "$WORK/hookwire-$port.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  if ! wait_http "http://127.0.0.1:$port/healthz" 30; then
    tail -20 "$WORK/hookwire-$port.log" >&2; return 1
  fi
  # any uid authenticates without a token, no join timeout
  curl -fsS -X PATCH -H "Authorization: Bearer $ADMIN_KEY" -H 'content-type: application/json' \
    -d '{"force_user_auth": false, "join_timeout_ms": 0}' \
    "http://127.0.0.1:$port/api/tenants/default" > /dev/null \
    || curl -fsS -X POST -H "Authorization: Bearer $ADMIN_KEY" -H 'content-type: application/json' \
      -d '{"forceUserAuth": false}' "http://127.0.0.1:$port/admin/system/config" > /dev/null \
    || { note "could not switch tenant 'default' to forceUserAuth=false on :$port"; return 1; }
}

B() { "${LOADGEN[@]}" "$BENCH" --threads "$LOAD_THREADS" "$@"; }

FAN_ARGS=(--rooms "$ROOMS" --subs "$SUBS" --pubs "$PUBS" --bytes "$BYTES")
SEND_ARGS=(); [ $SENDS = 1 ] && SEND_ARGS=(--count-sends)

measure_fanout() { # target label-args... (server pids and servers passed in)
  local target=$1; shift
  B fanout "${FAN_ARGS[@]}" --target "$target" --rates "$R1,$R2" --labels 1x,2x \
    --warmup "$WARMUP" --window "$WINDOW" --windows "$WINDOWS" --drain 2 --max-drain 30 "${SEND_ARGS[@]}" \
    --out "$RESULTS" "$@" > /dev/null \
    || note "fanout on $target failed"
}
measure_connect() {
  local target=$1; shift
  B connect --target "$target" --n "$CONN_N" --settle 3 --out "$RESULTS" "$@" > /dev/null \
    || note "connect on $target failed"
}
measure_sync() {
  local target=$1; shift
  B sync --target "$target" --messages "$SYNC_M" --clients "$SYNC_C" --out "$RESULTS" "$@" > /dev/null \
    || note "sync on $target failed"
}
measure_syncmem() {
  local target=$1; shift
  B syncmem --target "$target" --clients "$SYNCMEM_C" --messages "$SYNCMEM_M" --page-bytes "$SYNCMEM_PAGE" \
    --settle "$SYNCMEM_SETTLE" --timeout 120 --out "$RESULTS" "$@" > /dev/null \
    || note "sync memory on $target failed"
}
measure_bigroom() {
  local target=$1; shift
  B bigroom --target "$target" --members "$BIG_N" --rate "$BIG_RATE" --warmup "$BIG_WARMUP" --secs "$BIG_SECS" \
    --bytes "$BYTES" --out "$RESULTS" "$@" > /dev/null \
    || note "big room on $target failed"
}

# ------------------------------------------------------------------ meta
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
OTHERS=$(ps -eo comm= | grep -cE '^(rustc|cargo|cc1|cc1plus|ld|node|python3|pytest|wasm-tools)$' || true)
GIT=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git status --porcelain -- host 2>/dev/null)" ]; then GIT="$GIT with uncommitted changes in host/"; fi
if [ $HAVE_HOOKWIRE = 1 ]; then GIT="$GIT; hookwire binary built $(date -u -r "$HOOKWIRE" +%H:%M) UTC"; fi
MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), node $(node --version), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
T_START=$(date +%s)

# ------------------------------------------------------------------ 1. Node peer ramp
R1=0
if want node; then
  NPORT=$(free_port)
  start_node "$NPORT" "$REDIS_URL"
  log "node peer pid $SERVER_PID on $NPORT: ramp $RAMP_RATES"
  B fanout "${FAN_ARGS[@]}" --server "127.0.0.1:$NPORT" --target node --server-pid "$SERVER_PID" \
    --aux-pid "$RPID" --rates "$RAMP_RATES" --ramp --warmup "$RAMP_WARMUP" --window "$RAMP_WINDOW" \
    --windows "$RAMP_WINDOWS" --max-p99-ms "$RAMP_P99_MS" --drain 1 --out "$RESULTS" > "$WORK/ramp.json"
  R1=$(jq -r '.max_sustainable_rate // empty' "$WORK/ramp.json")
  stop "$SERVER_PID"
fi
if [ -z "$R1" ] || [ "$R1" = 0 ]; then
  R1=${BENCH_RATE:-$(echo "$RAMP_RATES" | cut -d, -f1)}
  note "no sustainable Node rate found; using $R1 msg/s as 1x"
fi
R2=$(awk -v r="$R1" 'BEGIN{print r*2}')
log "1x = $R1 msg/s, 2x = $R2 msg/s"

# ------------------------------------------------------------------ which systems
HAVE_REDIS_FLAG=0
if [ $HAVE_HOOKWIRE = 1 ] && "$HOOKWIRE" serve --help 2>/dev/null | grep -q -- '--redis'; then HAVE_REDIS_FLAG=1; fi
WASM=""
if [ $HAVE_HOOKWIRE = 1 ] && want hookwire-wordfilter && [ -d plugins/word-filter ]; then
  if [ -f plugins/build.sh ]; then
    log "building the word-filter plugin (plugins/build.sh -p word-filter)"
    WASM=$(bash plugins/build.sh -p word-filter 2> "$WORK/plugins-build.log" | grep -E 'word.filter[^/]*\.wasm$' | head -1) \
      || log "plugins/build.sh failed: $(tail -3 "$WORK/plugins-build.log")"
  fi
  [ -n "$WASM" ] || WASM=$(find plugins/target -name 'word_filter.wasm' -path '*release*' 2>/dev/null | head -1)
fi
# a realistic list; the benchmark's messages contain none of the words, so every
# message is scanned and passes unchanged
WF_CONFIG=$(printf '%s' '{"words":["darn","heck","shoot","blast","crud","dang","frick","gosh"],"mode":"mask"}' | jq -sRr @uri)

TARGETS=()
want node && TARGETS+=(node)
if [ $HAVE_HOOKWIRE = 1 ]; then
  want hookwire && TARGETS+=(hookwire)
  if want hookwire-redis || want hookwire-cluster; then
    if [ $HAVE_REDIS_FLAG = 1 ]; then
      want hookwire-redis && TARGETS+=(hookwire-redis)
      want hookwire-cluster && TARGETS+=(hookwire-cluster)
    else note "\`hookwire serve --help\` has no --redis option yet: hookwire + Redis not measured"; fi
  fi
  if want hookwire-wordfilter; then
    if [ -n "$WASM" ]; then TARGETS+=(hookwire-wordfilter)
    else note "no word-filter plugin .wasm (plugins/word-filter, plugins/build.sh): hookwire + word-filter not measured"; fi
  fi
fi
log "systems: ${TARGETS[*]}"

# Starts the system under test. Sets UP_SERVERS (addresses), UP_PIDS (comma list),
# UP_PUB / UP_SUB (fan-out placement args), UP_AUX (aux pid args), UP_ALL (pids to stop).
up() { # target
  local t=$1 p pa pb
  UP_AUX=(); UP_PUB=(); UP_SUB=(); UP_ALL=()
  case $t in
    node)
      p=$(free_port); start_node "$p" "$REDIS_URL" || return 1
      UP_SERVERS="127.0.0.1:$p"; UP_PIDS=$SERVER_PID; UP_ALL=("$SERVER_PID"); UP_AUX=(--aux-pid "$RPID") ;;
    hookwire)
      p=$(free_port); start_hookwire "$p" "$WORK/hw-$p" || return 1
      UP_SERVERS="127.0.0.1:$p"; UP_PIDS=$SERVER_PID; UP_ALL=("$SERVER_PID") ;;
    hookwire-redis)
      redis-cli -p "$RPORT" flushall > /dev/null
      p=$(free_port); start_hookwire "$p" "$WORK/hw-$p" --redis "$REDIS_URL" || return 1
      UP_SERVERS="127.0.0.1:$p"; UP_PIDS=$SERVER_PID; UP_ALL=("$SERVER_PID"); UP_AUX=(--aux-pid "$RPID") ;;
    hookwire-cluster)
      redis-cli -p "$RPORT" flushall > /dev/null
      pa=$(free_port); start_hookwire "$pa" "$WORK/hw-$pa" --redis "$REDIS_URL" || return 1
      UP_ALL=("$SERVER_PID"); UP_PIDS=$SERVER_PID
      pb=$(free_port); start_hookwire "$pb" "$WORK/hw-$pb" --redis "$REDIS_URL" || { down; return 1; }
      UP_ALL+=("$SERVER_PID"); UP_PIDS="$UP_PIDS,$SERVER_PID"
      UP_SERVERS="127.0.0.1:$pa"; UP_PUB=(--pub-server "127.0.0.1:$pa"); UP_SUB=(--sub-server "127.0.0.1:$pb")
      UP_AUX=(--aux-pid "$RPID") ;;
    hookwire-wordfilter)
      p=$(free_port); start_hookwire "$p" "$WORK/hw-$p" || return 1
      UP_SERVERS="127.0.0.1:$p"; UP_PIDS=$SERVER_PID; UP_ALL=("$SERVER_PID")
      local code
      code=$(curl -sS -o "$WORK/upload.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN_KEY" \
        -H 'content-type: application/wasm' --data-binary "@$WASM" \
        "http://127.0.0.1:$p/api/tenants/default/plugins/word-filter?config=$WF_CONFIG" || echo 000)
      if [[ "$code" != 2* ]]; then
        note "uploading $WASM answered HTTP $code ($(head -c 200 "$WORK/upload.out")): hookwire + word-filter not measured"
        down; return 1
      fi ;;
  esac
}
down() { local p; for p in "${UP_ALL[@]}"; do stop "$p"; done; UP_ALL=(); }

# ------------------------------------------------------------------ cluster probe
if [[ " ${TARGETS[*]} " == *" hookwire-cluster "* ]]; then
  PROBE_OK=0
  if up hookwire-cluster; then
    B fanout --rooms 1 --subs 2 --pubs 1 --rates 20 --warmup 0.2 --window 1 --windows 1 --drain 1 \
      --target probe --server "$UP_SERVERS" "${UP_PUB[@]}" "${UP_SUB[@]}" > "$WORK/probe.json" 2>/dev/null || true
    [ "$(jq -r '.delivered // 0' "$WORK/probe.json" 2>/dev/null)" -gt 0 ] 2>/dev/null && PROBE_OK=1
    down
  fi
  if [ $PROBE_OK = 0 ]; then
    note "two hookwire nodes sharing Redis did not deliver a msg from node A to a subscriber on node B (probe): the cluster was not measured"
    T2=(); for t in "${TARGETS[@]}"; do [ "$t" = hookwire-cluster ] || T2+=("$t"); done; TARGETS=("${T2[@]}")
  fi
fi

# ------------------------------------------------------------------ 2. fan-out at 1x and 2x, system after system
for t in "${TARGETS[@]}"; do
  up "$t" || { note "$t did not start for fan-out"; continue; }
  log "$t: fan-out at 1x and 2x"
  # one node: the --server; cluster: publishers on node A, subscribers on node B
  measure_fanout "$t" --server "$UP_SERVERS" "${UP_PUB[@]}" "${UP_SUB[@]}" --server-pid "$UP_PIDS" "${UP_AUX[@]}"
  down
done

# ------------------------------------------------------------------ 3. idle connections at the open-file limit
for t in "${TARGETS[@]}"; do
  case $t in hookwire-wordfilter|hookwire-cluster) continue ;; esac # same memory as hookwire / hookwire-redis
  up "$t" || { note "$t did not start for idle connections"; continue; }
  log "$t: $CONN_N idle connections"
  # a cluster's idle memory is measured on node A alone
  measure_connect "$t" --server "$UP_SERVERS" --server-pid "${UP_PIDS%%,*}"
  down
done

# One scenario on each single-node system (the plugin and cluster variants
# add nothing to it): start the system, measure, stop.
each_single_node() { # what (for notes), log line, measure function
  local what=$1 line=$2 measure=$3 t
  for t in "${TARGETS[@]}"; do
    case $t in hookwire-wordfilter|hookwire-cluster) continue ;; esac
    up "$t" || { note "$t did not start for $what"; continue; }
    log "$t: $line"
    "$measure" "$t" --server "$UP_SERVERS" --server-pid "${UP_PIDS%%,*}"
    down
  done
}

# ------------------------------------------------------------------ 4. sync
each_single_node sync sync measure_sync

# ------------------------------------------------------------------ 5. sync memory
each_single_node "sync memory" "$SYNCMEM_C connections x one sync page of $SYNCMEM_PAGE bytes" measure_syncmem

# ------------------------------------------------------------------ 6. big room
each_single_node "the big room" "one room of $BIG_N members, $BIG_RATE msg/s" measure_bigroom

# ------------------------------------------------------------------ report
T_END=$(date +%s)
SHARED=false
if awk -v l="${LOADAVG%% *}" 'BEGIN{exit !(l > 0.5)}' || [ "$OTHERS" -gt 0 ]; then SHARED=true; fi
jq -nc --arg date "$STAMP" --arg mode "$MODE run, $((T_END - T_START)) s" --arg git "commit $GIT" \
  --arg machine "$MACHINE" --arg loadavg "$LOADAVG" --argjson shared "$SHARED" \
  --argjson node_rate "$R1" --argjson node_deliveries "$(awk -v r="$R1" -v s="$SUBS" 'BEGIN{print r*s}')" \
  --arg nice "$NICE_LVL" --argjson ramp_p99_ms "$RAMP_P99_MS" \
  --argjson pinned "$([ $PIN = 1 ] && echo true || echo false)" --arg pinning "$PINNING" \
  --arg fd_limit "$FD_LIMIT" --arg sends_method "$SENDS_METHOD" \
  '{scenario:"meta", date:$date, mode:$mode, git:$git, machine:$machine, loadavg:$loadavg, shared:$shared,
    node_rate:$node_rate, node_deliveries:$node_deliveries, nice:$nice, ramp_p99_ms:$ramp_p99_ms,
    pinned:$pinned, pinning:$pinning, fd_limit:$fd_limit, sends_method:$sends_method,
    describe:{
      "node": "Node peer (bench/node-peer: socket.io 4 + @socket.io/redis-adapter + node-redis v4, messages stored in a Redis list), one process",
      "hookwire": "hookwire, one node, embedded store",
      "hookwire-redis": "hookwire, one node, Redis store (`--redis`)",
      "hookwire-cluster": "hookwire, two nodes sharing Redis: publishers on node A, subscribers on node B (CPU of both nodes counted; idle memory and sync on node A)",
      "hookwire-wordfilter": "hookwire, one node, embedded store, word-filter plugin on every message"}}' \
  >> "$RESULTS"
"$BENCH" report --results "$RESULTS" --out "$OUT_MD" --chart "$CHART" --notes "$NOTES"
log "done in $((T_END - T_START)) s: $OUT_MD, $CHART, $RESULTS"
