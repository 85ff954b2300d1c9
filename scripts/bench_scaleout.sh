#!/usr/bin/env bash
# bench_scaleout.sh — the scale-out figures of docs/benchmarks.md in one run:
# direct closed-loop throughput of one node in memory, one node on a single
# Redis, two nodes over one Redis (senders on node 1, receivers on node 2)
# and one node on a three-master Redis Cluster; then, with 1,000 users, how
# the routed messages spread over the cluster's masters (INFO commandstats
# of each master: calls of the route script).
#
#   scripts/bench_scaleout.sh              # ~2 minutes
#   D=10s PAIRS=100 scripts/bench_scaleout.sh
#   PROFILE=1 scripts/bench_scaleout.sh    # also CPU profiles of both nodes
#                                          # during the two-node run
#
# Everything listens on 127.0.0.1 only, on free ports; every process started
# here is stopped on exit. Results: OUT (default a new /tmp/sbscale.XXXX).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-5s}
WARM=${WARM:-1s}
PAIRS=${PAIRS:-100}
OUT=${OUT:-$(mktemp -d /tmp/sbscale.XXXXXX)}
BIN=$OUT/bin
mkdir -p "$BIN"
log() { printf '%s scaleout: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  return 1
}
wait_http() {
  local deadline=$((SECONDS + 15))
  until curl -fsS --max-time 1 "$1" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}
# redis PORT [ARGS...]: a private redis-server.
redis() {
  local port=$1; shift
  mkdir -p "$OUT/r$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/r$port" \
    --logfile "$OUT/r$port/redis.log" "$@" &
  PIDS+=($!)
  until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
}
# server NAME ENV...: sets SRV_PORT, SRV_PID.
server() {
  local name=$1; shift
  SRV_PORT=$(free_port)
  env SWITCHBOARD_ADDR="127.0.0.1:$SRV_PORT" SWITCHBOARD_NODE_ID="$name" RATE_LIMIT=1000000 RATE_BURST=1000000 \
    PRESENCE_EVENTS=false "$@" "$BIN/switchboard" >"$OUT/server-$name.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_http "http://127.0.0.1:$SRV_PORT/healthz"
}
stop() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# direct NAME ARGS...: one closed-loop direct run, JSON to $OUT/NAME.json.
direct() {
  local name=$1; shift
  log "run $name"
  timeout 300 "$BIN/sbbench" -json -scenario direct -window 16 -warmup "$WARM" -duration "$D" \
    -quiet-wait 1s -quiet-max 100 "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || log "run $name failed: $(tail -n 2 "$OUT/$name.err")"
}
val() { jq -r "($2) // empty" "$OUT/$1.json" 2>/dev/null || true; }
# calls FILE COMMAND: the calls of COMMAND in an INFO commandstats dump.
calls() { tr -d '\r' <"$1" | awk -F'[:,=]' -v c="cmdstat_$2" '$1 == c {print $3; found=1} END {if (!found) print 0}'; }

go build -o "$BIN/switchboard" ./cmd/switchboard
go build -o "$BIN/sbbench" ./cmd/sbbench
log "results in $OUT"

# 1. One node, memory.
server mem
direct mem -url "ws://127.0.0.1:$SRV_PORT/ws" -pairs "$PAIRS" -pid "$SRV_PID"
stop "$SRV_PID"

# 2. One node, and two nodes, over one Redis.
RP=$(free_port)
redis "$RP"
server redis1 REDIS_URL="redis://127.0.0.1:$RP" REDIS_PREFIX="s1:"
direct redis1 -url "ws://127.0.0.1:$SRV_PORT/ws" -pairs "$PAIRS" -pid "$SRV_PID"
stop "$SRV_PID"
server node1 REDIS_URL="redis://127.0.0.1:$RP" REDIS_PREFIX="s2:" PPROF=true
N1_PID=$SRV_PID N1_PORT=$SRV_PORT
server node2 REDIS_URL="redis://127.0.0.1:$RP" REDIS_PREFIX="s2:" PPROF=true
N2_PID=$SRV_PID N2_PORT=$SRV_PORT
redis-cli -p "$RP" config resetstat >/dev/null
if [ "${PROFILE:-0}" = 1 ]; then
  # CPU profiles of both nodes during the measured phase.
  (sleep 2; curl -fsS "http://127.0.0.1:$N1_PORT/debug/pprof/profile?seconds=3" -o "$OUT/node1.pprof") &
  PROF1=$!
  (sleep 2; curl -fsS "http://127.0.0.1:$N2_PORT/debug/pprof/profile?seconds=3" -o "$OUT/node2.pprof") &
  PROF2=$!
fi
direct twonode -url "ws://127.0.0.1:$N1_PORT/ws" -url2 "ws://127.0.0.1:$N2_PORT/ws" -pairs "$PAIRS" -pid "$N1_PID"
redis-cli -p "$RP" info commandstats >"$OUT/twonode.commandstats"
redis-cli -p "$RP" info cpu >"$OUT/twonode.cpu"
[ -n "${PROF1:-}" ] && wait "$PROF1" "$PROF2"
stop "$N2_PID"
stop "$N1_PID"

# 3. One node on a three-master cluster.
CPORTS=()
for _ in 1 2 3; do
  p=$(free_port)
  redis "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$(free_port)"
  CPORTS+=("$p")
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CPORTS[@]}") --cluster-replicas 0 --cluster-yes >"$OUT/cluster-create.log"
until [ "$(for p in "${CPORTS[@]}"; do redis-cli -p "$p" cluster info | grep -c cluster_state:ok; done | paste -sd+ | bc)" = 3 ]; do sleep 0.2; done
CURL=$(printf 'redis://127.0.0.1:%s,' "${CPORTS[@]}")
CURL=${CURL%,}
server cluster1 REDIS_URL="$CURL"
direct cluster1 -url "ws://127.0.0.1:$SRV_PORT/ws" -pairs "$PAIRS" -pid "$SRV_PID"

# 4. 1,000 users (500 pairs) on the cluster: the route script's calls per master.
for p in "${CPORTS[@]}"; do redis-cli -p "$p" config resetstat >/dev/null; done
direct spread -url "ws://127.0.0.1:$SRV_PORT/ws" -pairs 500 -pid "$SRV_PID"
stop "$SRV_PID"
SPREAD=""
TOTAL=0
for p in "${CPORTS[@]}"; do
  redis-cli -p "$p" info commandstats >"$OUT/spread-$p.commandstats"
  # The route script runs as EVALSHA; HGETALL (one per routed message, in
  # the script) tells the same story.
  n=$(calls "$OUT/spread-$p.commandstats" evalsha)
  SPREAD="$SPREAD $p:$n"
  TOTAL=$((TOTAL + n))
done

{
  echo "scale-out run $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), $D per run, $PAIRS pairs, window 16"
  printf '%-32s %12s %8s\n' run delivered/s ratio
  M=$(val mem .delivered_per_s)
  R=$(val redis1 .delivered_per_s)
  for r in mem redis1 twonode cluster1; do
    v=$(val $r .delivered_per_s)
    printf '%-32s %12.0f\n' "$r" "${v:-0}"
  done
  awk -v m="$M" -v t="$(val twonode .delivered_per_s)" 'BEGIN{printf "two nodes over one Redis / one node in memory: %.2f (target >= 0.8)\n", t/m}'
  awk -v r="$R" -v c="$(val cluster1 .delivered_per_s)" 'BEGIN{printf "one node on a 3-master cluster / one node on one Redis: %.2f (target >= 0.9)\n", c/r}'
  echo "route script calls per master with 1,000 users (port:calls):$SPREAD (total $TOTAL)"
  for kv in $SPREAD; do
    awk -v n="${kv#*:}" -v t="$TOTAL" -v p="${kv%%:*}" 'BEGIN{printf "  master %s: %.1f %% of the routed messages\n", p, 100*n/t}'
  done
  echo "other CPU during runs (% of one core):"
  for r in mem redis1 twonode cluster1 spread; do echo "  $r: $(val $r '.other_cpu_pct // 0 | floor')"; done
  echo "errors: $(for r in mem redis1 twonode cluster1 spread; do echo -n "$r=$(val $r '[.server_errors // {} | .[]] | add // 0') "; done)"
} | tee "$OUT/summary.txt"
