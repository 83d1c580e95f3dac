#!/usr/bin/env bash
# A local three-node hookwire cluster: one redis-server, one SecantusDB
# (MongoDB-compatible), three hookwire nodes sharing both. For trying the
# cluster on one machine; see examples/cluster/README.md and docs/cluster.md.
#
#   examples/cluster/run.sh          # Ctrl-C (or SIGTERM) stops everything
#
# Environment (all optional):
#   HOOKWIRE_BIN        hookwire binary (default: target/release/hookwire,
#                       then target/debug/hookwire, else `cargo build --release`)
#   HOOKWIRE_PORTS      node ports (default "3001 3002 3003")
#   HOOKWIRE_HOST       address the nodes listen on (default 127.0.0.1)
#   REDIS_PORT          redis-server port (default: a free one)
#   MONGO_PORT          SecantusDB port (default: a free one)
#   ADMIN_KEY           admin key (default: generated)
#   API_KEY             API key of the `default` tenant (default: generated)
#   WORK_DIR            where data and logs go (default: a new temp dir,
#                       removed at exit unless KEEP_WORK=1; a WORK_DIR you
#                       give is never removed)
#   PYTHON              interpreter for SecantusDB (default python3)
#   REDIS_SERVER        redis-server binary (default redis-server)

set -euo pipefail
# Job control: every background process gets its own process group, so a
# Ctrl-C reaches only this script, which then stops the nodes before the
# stores they flush into.
set -m

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORTS=(${HOOKWIRE_PORTS:-3001 3002 3003})
HOST=${HOOKWIRE_HOST:-127.0.0.1}
PYTHON=${PYTHON:-python3}
REDIS_SERVER=${REDIS_SERVER:-redis-server}

say() { printf '%s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks
command -v "$REDIS_SERVER" >/dev/null ||
    die "redis-server not found: apt-get install -y redis-server (or set REDIS_SERVER)"
command -v curl >/dev/null || die "curl not found: apt-get install -y curl"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (Python 3 is needed for SecantusDB)"
"$PYTHON" -c 'import secantus' 2>/dev/null ||
    die "Python module secantus not found: $PYTHON -m pip install secantusdb"

port_free() { # port -> 0 when nothing listens on 127.0.0.1:port and it can be bound
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

REDIS_PORT=${REDIS_PORT:-$(free_port)}
MONGO_PORT=${MONGO_PORT:-$(free_port)}
for p in "$REDIS_PORT" "$MONGO_PORT" "${PORTS[@]}"; do
    [[ $p =~ ^[0-9]+$ ]] || die "not a port number: $p"
    port_free "$p" || die "port $p is in use (set HOOKWIRE_PORTS / REDIS_PORT / MONGO_PORT)"
done
[[ $REDIS_PORT != "$MONGO_PORT" ]] || die "REDIS_PORT and MONGO_PORT are the same"

# ---------------------------------------------------------------- binary
BIN=${HOOKWIRE_BIN:-}
if [[ -z $BIN ]]; then
    for b in "$ROOT/target/release/hookwire" "$ROOT/target/debug/hookwire"; do
        if [[ -x $b ]]; then BIN=$b; break; fi
    done
fi
if [[ -z $BIN ]]; then
    say "No hookwire binary yet: cargo build --release -p hookwire"
    (cd "$ROOT" && cargo build --release -p hookwire)
    BIN=$ROOT/target/release/hookwire
fi
[[ -x $BIN ]] || die "hookwire binary not executable: $BIN"
if [[ -d $ROOT/host/src ]] && [[ -n $(find "$ROOT/host/src" -name '*.rs' -newer "$BIN" -print -quit) ]]; then
    say "warning: $BIN is older than host/src; rebuild it (cargo build --release -p hookwire) or set HOOKWIRE_BIN" >&2
fi

# ---------------------------------------------------------------- work dir
if [[ -n ${WORK_DIR:-} ]]; then
    mkdir -p "$WORK_DIR"
    WORK=$(cd "$WORK_DIR" && pwd)
    REMOVE_WORK=0
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/hookwire-cluster.XXXXXX")
    REMOVE_WORK=$([[ ${KEEP_WORK:-0} == 1 ]] && echo 0 || echo 1)
fi
mkdir -p "$WORK/redis"

ADMIN_KEY=${ADMIN_KEY:-$(secret)}
API_KEY=${API_KEY:-$(secret)}
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/hookwire

# ---------------------------------------------------------------- teardown
NODE_PIDS=()
MONGO_PID=
REDIS_PID=
STOPPING=0

stop_pid() { # pid name: SIGTERM, wait up to 15 s, then SIGKILL
    local pid=$1 name=$2 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    say "  $name (pid $pid) did not stop within 15 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    ((STOPPING)) && return
    STOPPING=1
    trap '' INT TERM
    say ""
    say "Stopping the cluster..."
    local pid i=0
    # Nodes first (graceful: they close their sockets and flush), in parallel.
    for pid in "${NODE_PIDS[@]}"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${NODE_PIDS[@]}"; do
        i=$((i + 1))
        stop_pid "$pid" "hookwire node $i"
    done
    stop_pid "$MONGO_PID" "SecantusDB"
    stop_pid "$REDIS_PID" "redis-server"
    if ((REMOVE_WORK)); then
        rm -rf "$WORK"
        say "Stopped; removed $WORK."
    else
        say "Stopped; data and logs kept in $WORK."
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_until() { # seconds pid what command...
    local secs=$1 pid=$2 what=$3 i
    shift 3
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
redis_ping() {
    if command -v redis-cli >/dev/null; then
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        tcp_open "$REDIS_PORT"
    fi
}
healthy() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/healthz"; }
show_log() { say "--- last lines of $1:" >&2; tail -n 30 "$1" >&2 || true; }

# ---------------------------------------------------------------- start
say "Work dir: $WORK"

"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
    --save '' --appendonly yes --appendfsync always \
    --daemonize no --protected-mode no --maxmemory-policy noeviction \
    >"$WORK/redis.log" 2>&1 </dev/null &
REDIS_PID=$!
wait_until 10 "$REDIS_PID" redis redis_ping ||
    { show_log "$WORK/redis.log"; die "redis-server did not come up on port $REDIS_PORT"; }
say "redis-server  pid $REDIS_PID  $REDIS_URL"

"$PYTHON" -m secantus --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: \
    --log-level WARNING >"$WORK/secantus.log" 2>&1 </dev/null &
MONGO_PID=$!
wait_until 30 "$MONGO_PID" secantus tcp_open "$MONGO_PORT" ||
    { show_log "$WORK/secantus.log"; die "SecantusDB did not come up on port $MONGO_PORT"; }
say "SecantusDB    pid $MONGO_PID  $MONGO_URL"

start_node() { # index port
    local i=$1 port=$2
    mkdir -p "$WORK/node$i"
    "$BIN" serve --listen "$HOST:$port" --data-dir "$WORK/node$i" \
        --redis "$REDIS_URL" --mongo "$MONGO_URL" \
        --admin-key "$ADMIN_KEY" --default-api-key "$API_KEY" \
        >>"$WORK/node$i.log" 2>&1 </dev/null &
    NODE_PIDS[$((i - 1))]=$!
}
wait_node() { # index port
    local i=$1 port=$2 pid=${NODE_PIDS[$(($1 - 1))]}
    wait_until 60 "$pid" "node $i" healthy "$port" ||
        { show_log "$WORK/node$i.log"; die "hookwire node $i did not answer 200 on http://127.0.0.1:$port/healthz"; }
    say "hookwire $i    pid $pid  http://127.0.0.1:$port"
}
# The first node creates the `default` tenant in the shared store; the others
# start once it is there and load it.
start_node 1 "${PORTS[0]}"
wait_node 1 "${PORTS[0]}"
for ((n = 2; n <= ${#PORTS[@]}; n++)); do start_node "$n" "${PORTS[$((n - 1))]}"; done
for ((n = 2; n <= ${#PORTS[@]}; n++)); do wait_node "$n" "${PORTS[$((n - 1))]}"; done

cat >"$WORK/cluster.env" <<EOF
HOOKWIRE_ADMIN_KEY=$ADMIN_KEY
HOOKWIRE_API_KEY=$API_KEY
HOOKWIRE_REDIS=$REDIS_URL
HOOKWIRE_MONGO=$MONGO_URL
HOOKWIRE_URLS="$(for p in "${PORTS[@]}"; do printf 'http://127.0.0.1:%s ' "$p"; done | sed 's/ $//')"
EOF
chmod 600 "$WORK/cluster.env"

P1=${PORTS[0]}
PL=${PORTS[$((${#PORTS[@]} - 1))]}
cat <<EOF

The cluster is up.
  nodes:      $(for p in "${PORTS[@]}"; do printf 'http://127.0.0.1:%s  ' "$p"; done)
  redis:      $REDIS_URL
  mongo:      $MONGO_URL
  admin key:  $ADMIN_KEY
  API key:    $API_KEY   (tenant "default")
  logs:       $WORK/node*.log, redis.log, secantus.log
  (keys and URLs also in $WORK/cluster.env)

Try it:
  # a user token, issued on node 1 (stored in MongoDB, valid on every node)
  curl -s -XPOST http://127.0.0.1:$P1/user/create_token \\
       -H "Authorization: Bearer $API_KEY" \\
       -H 'content-type: application/json' -d '{"uid":"alice"}'
  # health and who is online, asked of another node
  curl -s http://127.0.0.1:$PL/healthz
  curl -s http://127.0.0.1:$PL/admin/monitor/stat -H "Authorization: Bearer $API_KEY"
  # alice on node 1, bob on node $((${#PORTS[@]})), one room, a message across nodes
  HOOKWIRE_API_KEY=$API_KEY node $ROOT/examples/cluster/try.mjs http://127.0.0.1:$P1 http://127.0.0.1:$PL

Kill a node (kill <pid>) to watch its clients move; kill -USR1 $$ starts it again.
Ctrl-C (or kill $$) stops everything.
EOF

# ---------------------------------------------------------------- wait
# `wait -n` returns when a child exits or a trapped signal arrives (INT and
# TERM exit through cleanup; USR1 restarts the nodes that are down).
# A node that exits (say, you killed it to watch the others take over) is
# reported and the rest keep running; Redis or SecantusDB exiting stops all.
RESTART=0
trap 'RESTART=1' USR1
declare -A REPORTED=()
while :; do
    live=()
    for pid in "$REDIS_PID" "$MONGO_PID"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "run.sh: $([[ $pid == "$REDIS_PID" ]] && echo redis-server || echo SecantusDB) (pid $pid) exited; stopping the rest (logs kept in $WORK)" >&2
            REMOVE_WORK=0
            exit 1
        fi
        live+=("$pid")
    done
    for ((n = 1; n <= ${#PORTS[@]}; n++)); do
        pid=${NODE_PIDS[$((n - 1))]}
        if kill -0 "$pid" 2>/dev/null; then
            live+=("$pid")
        elif [[ -z ${REPORTED[$pid]:-} ]]; then
            REPORTED[$pid]=1
            say "run.sh: hookwire node $n (pid $pid, port ${PORTS[$((n - 1))]}) exited; the others keep running." >&2
            say "        kill -USR1 $$ starts it again; log: $WORK/node$n.log" >&2
        fi
    done
    if ((RESTART)); then
        RESTART=0
        for ((n = 1; n <= ${#PORTS[@]}; n++)); do
            if ! kill -0 "${NODE_PIDS[$((n - 1))]}" 2>/dev/null; then
                start_node "$n" "${PORTS[$((n - 1))]}"
                if wait_until 60 "${NODE_PIDS[$((n - 1))]}" "node $n" healthy "${PORTS[$((n - 1))]}"; then
                    say "run.sh: hookwire node $n restarted (pid ${NODE_PIDS[$((n - 1))]})"
                else
                    say "run.sh: hookwire node $n did not come back; see $WORK/node$n.log" >&2
                fi
            fi
        done
        continue
    fi
    set +e
    wait -n "${live[@]}"
    set -e
done
