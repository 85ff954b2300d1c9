#!/usr/bin/env bash
# bench.sh — Switchboard's benchmark suite in one go, on this machine.
#
# Builds barerelay (the reference relay: a map lookup and a write per
# message), sbbench (the load tool) and the server, then runs every scenario
# against barerelay and against Switchboard in the same run, in memory mode,
# with Redis on one node and with two nodes sharing Redis, and prints each
# figure beside the bare relay's with the ratio and the issue's target.
#
# Everything listens on 127.0.0.1 only; Redis is a private redis-server on a
# free port (never 6379); every step is bounded by sbbench's own limits and
# by `timeout`; every process started here is stopped on exit.
#
#   scripts/bench.sh                 # full suite, about 20-25 minutes
#   QUICK=1 scripts/bench.sh         # short runs (about 4 minutes), for a smoke check
#   ONLY="direct idle" scripts/bench.sh
#
# Environment: OUT (results directory, default a new /tmp/sbbench.XXXX),
# REPS (repetitions of the direct runs, default 3, median reported),
# ONLY (space-separated subset of: direct open idle broadcast churn redis
# twonode), SKIP_SERVER=1 (barerelay only).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
QUICK=${QUICK:-0}
REPS=${REPS:-3}
ONLY=${ONLY:-"direct open idle broadcast churn redis twonode"}
OUT=${OUT:-$(mktemp -d /tmp/sbbench.XXXXXX)}
BIN=$OUT/bin
mkdir -p "$OUT" "$BIN"

# Durations (full / quick).
if [ "$QUICK" = 1 ]; then
  D_DIRECT=3s D_OPEN=5s D_IDLE=2s D_BCAST=5s D_CHURN=5s D_SETTLE=10s WARM=1s IDLE_CONNS=3000 REPS=1
else
  D_DIRECT=10s D_OPEN=20s D_IDLE=10s D_BCAST=20s D_CHURN=30s D_SETTLE=180s WARM=2s IDLE_CONNS=15000
fi
STEP_TIMEOUT=660 # seconds; sbbench caps itself at 10 minutes
# Before each run, wait up to QUIET_WAIT for other processes to use under
# QUIET_MAX % of one core (a shared machine makes latency figures noise).
QUIET_WAIT=${QUIET_WAIT:-90s}
QUIET_MAX=${QUIET_MAX:-25}

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---- processes -------------------------------------------------------------

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768-)
    if port_free "$p"; then echo "$p"; return; fi
  done
  echo "bench: no free port" >&2; return 1
}

# wait_http URL SECONDS [PID]: wait for URL to answer; give up early if PID exits.
wait_http() {
  local deadline=$((SECONDS + $2))
  until curl -fsS --max-time 1 "$1" >/dev/null 2>&1; do
    [ $SECONDS -ge "$deadline" ] && return 1
    [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null && return 1
    sleep 0.1
  done
}

# stop PID: SIGTERM, then SIGKILL after 15 s.
stop() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 1 150); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
}

# Other programs on the machine may take a port between free_port and the
# bind, so starting is tried three times with fresh ports.

# start_relay: sets RELAY_PID, RELAY_PORT.
start_relay() {
  local try
  for try in 1 2 3; do
    RELAY_PORT=$(free_port)
    "$BIN/barerelay" -addr "127.0.0.1:$RELAY_PORT" >"$OUT/barerelay.log" 2>&1 &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    wait_http "http://127.0.0.1:$RELAY_PORT/healthz" 10 "$RELAY_PID" && return 0
    stop "$RELAY_PID"
  done
  echo "barerelay did not start (see $OUT/barerelay.log)" >&2; exit 1
}

# start_server NAME [ENV=VALUE...]: sets SRV_PID, SRV_PORT; returns 1 if it
# does not answer /healthz within 15 s.
start_server() {
  local name=$1 try; shift
  for try in 1 2 3; do
    SRV_PORT=$(free_port)
    env SWITCHBOARD_ADDR="127.0.0.1:$SRV_PORT" SWITCHBOARD_NODE_ID="$name" "$@" \
      "$BIN/switchboard" >"$OUT/server-$name.log" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    wait_http "http://127.0.0.1:$SRV_PORT/healthz" 15 "$SRV_PID" && return 0
    stop "$SRV_PID"
  done
  log "server $name did not answer /healthz (see $OUT/server-$name.log)"
  return 1
}

# start_redis: sets REDIS_PID, REDIS_PORT.
start_redis() {
  local try deadline
  for try in 1 2 3; do
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$OUT" --logfile "$OUT/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    deadline=$((SECONDS + 10))
    until redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
      if [ $SECONDS -ge $deadline ] || ! kill -0 "$REDIS_PID" 2>/dev/null; then
        stop "$REDIS_PID"; continue 2
      fi
      sleep 0.1
    done
    return 0
  done
  echo "redis-server did not start (see $OUT/redis.log)" >&2; exit 1
}

# ---- running sbbench --------------------------------------------------------

# bench NAME ARGS...: one sbbench run, JSON to $OUT/NAME.json, table to stderr.
bench() {
  local name=$1; shift
  log "run $name: sbbench $*"
  if timeout "$STEP_TIMEOUT" "$BIN/sbbench" -json -progress 5s -quiet-wait "$QUIET_WAIT" -quiet-max "$QUIET_MAX" \
    "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; then
    :
  else
    log "run $name failed (exit $?): $(tail -n 3 "$OUT/$name.err" | tr '\n' ' ')"
  fi
}

# val NAME JQ: one number from a result (empty if absent).
val() {
  [ -s "$OUT/$1.json" ] || { echo ""; return; }
  jq -r "($2) // empty" "$OUT/$1.json" 2>/dev/null || echo ""
}

# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }

ROWS=()
# row LABEL RELAY SERVER HIGHER_IS_BETTER TARGET
row() {
  local ratio="-"
  if [ -n "$2" ] && [ -n "$3" ] && awk "BEGIN{exit !($2 != 0)}"; then
    ratio=$(awk "BEGIN{printf \"%.2f\", $3/$2}")
  fi
  ROWS+=("$1|${2:--}|${3:--}|$ratio|$5")
}

fmt() { [ -z "$1" ] && echo "" || awk "BEGIN{printf \"%.${2:-1}f\", $1}"; }

# errs NAME...: " (N server errors)" when the runs got error frames — a
# closed-loop figure with errors is not an error-free throughput.
errs() {
  local n=0 f e
  for f in "$@"; do
    e=$(val "$f" '[.server_errors // {} | .[]] | add // 0')
    n=$((n + ${e:-0}))
  done
  [ "$n" -gt 0 ] && echo " ($n server errors)" || true
}

# ---- build ------------------------------------------------------------------

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "results in $OUT (nproc $(nproc), $(go version | cut -d' ' -f3), fd limit $(ulimit -n))"
go build -o "$BIN/barerelay" ./cmd/barerelay
go build -o "$BIN/sbbench" ./cmd/sbbench
HAVE_SERVER=0
if [ "${SKIP_SERVER:-0}" != 1 ] && [ -d cmd/switchboard ] && go build -o "$BIN/switchboard" ./cmd/switchboard 2>"$OUT/build-server.err"; then
  HAVE_SERVER=1
else
  log "no server binary (see $OUT/build-server.err): barerelay figures only"
fi
HIGH_LIMITS=(RATE_LIMIT=1000000 RATE_BURST=1000000)

# ---- direct, closed loop: max throughput ---------------------------------

if want direct; then
  start_relay
  if [ $HAVE_SERVER = 1 ]; then start_server mem "${HIGH_LIMITS[@]}" || HAVE_SERVER=0; fi
  for i in $(seq 1 "$REPS"); do
    bench "direct-relay-$i" -url "ws://127.0.0.1:$RELAY_PORT/ws" -scenario direct -pairs 100 -window 16 \
      -warmup "$WARM" -duration "$D_DIRECT" -pid "$RELAY_PID" -label barerelay
    if [ $HAVE_SERVER = 1 ]; then
      bench "direct-mem-$i" -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario direct -pairs 100 -window 16 \
        -warmup "$WARM" -duration "$D_DIRECT" -pid "$SRV_PID" -label memory
    fi
  done
  R=$(for i in $(seq 1 "$REPS"); do val "direct-relay-$i" .delivered_per_s; done | median)
  S=$(for i in $(seq 1 "$REPS"); do val "direct-mem-$i" .delivered_per_s; done | median)
  row "direct max msgs/s (100 pairs, window 16, median of $REPS)" "$(fmt "$R" 0)" "$(fmt "$S" 0)" "" ">= 0.80"
  E=$(errs $(for i in $(seq 1 "$REPS"); do echo "direct-mem-$i"; done))
  [ -n "$E" ] && ROWS+=("  server errors in those runs|-|${E# }|-|none")
  RELAY_DIRECT=$R DIRECT_MEM=$S
  stop "$RELAY_PID"; if [ $HAVE_SERVER = 1 ]; then stop "$SRV_PID"; fi
fi

# ---- direct, open loop: 10k msgs/s, 200 pairs, latency ---------------------

if want open; then
  start_relay
  # Default rate limits: 25 msgs/s per connection is under them.
  if [ $HAVE_SERVER = 1 ]; then start_server memdefault || HAVE_SERVER=0; fi
  for i in $(seq 1 "$REPS"); do
    bench "open-relay-$i" -url "ws://127.0.0.1:$RELAY_PORT/ws" -scenario direct -pairs 200 -rate 10000 \
      -warmup "$WARM" -duration "$D_OPEN" -pid "$RELAY_PID" -label barerelay
    if [ $HAVE_SERVER = 1 ]; then
      bench "open-mem-$i" -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario direct -pairs 200 -rate 10000 \
        -warmup "$WARM" -duration "$D_OPEN" -pid "$SRV_PID" -label memory
    fi
  done
  for q in p50 p99 p999; do
    R=$(for i in $(seq 1 "$REPS"); do val "open-relay-$i" ".latency.${q}_ms"; done | median)
    S=$(for i in $(seq 1 "$REPS"); do val "open-mem-$i" ".latency.${q}_ms"; done | median)
    t=""; [ $q = p99 ] && t="<= 1.50" && RELAY_P99=$R
    row "direct 10k/s 200 pairs $q ms (median of $REPS)" "$(fmt "$R" 2)" "$(fmt "$S" 2)" "" "$t"
  done
  R=$(for i in $(seq 1 "$REPS"); do val "open-relay-$i" .delivered_pct; done | median)
  S=$(for i in $(seq 1 "$REPS"); do val "open-mem-$i" .delivered_pct; done | median)
  row "direct 10k/s delivered %" "$(fmt "$R" 3)" "$(fmt "$S" 3)" "" "100%"
  stop "$RELAY_PID"; if [ $HAVE_SERVER = 1 ]; then stop "$SRV_PID"; fi
fi

# ---- idle: RSS per connection and connect rate (fresh processes) ---------

if want idle; then
  for layout in "1" "$IDLE_CONNS"; do
    tag=$([ "$layout" = 1 ] && echo "1action" || echo "spread")
    start_relay
    bench "idle-$tag-relay" -url "ws://127.0.0.1:$RELAY_PORT/ws" -scenario idle -conns "$IDLE_CONNS" -actions "$layout" \
      -duration "$D_IDLE" -pid "$RELAY_PID" -metrics "http://127.0.0.1:$RELAY_PORT/metrics" -label barerelay
    stop "$RELAY_PID"
    if [ $HAVE_SERVER = 1 ] && start_server "idle$tag"; then
      bench "idle-$tag-mem" -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario idle -conns "$IDLE_CONNS" -actions "$layout" \
        -duration "$D_IDLE" -pid "$SRV_PID" -metrics "http://127.0.0.1:$SRV_PORT/metrics" -label memory
      stop "$SRV_PID"
    fi
    desc=$([ "$layout" = 1 ] && echo "one action" || echo "one action per conn")
    row "idle $IDLE_CONNS conns ($desc): KB RSS/conn" "$(fmt "$(val "idle-$tag-relay" .server.rss_per_conn_kb)")" \
      "$(fmt "$(val "idle-$tag-mem" .server.rss_per_conn_kb)")" "" "server <= 16"
    row "idle $IDLE_CONNS conns ($desc): connects/s" "$(fmt "$(val "idle-$tag-relay" .connect_per_s)" 0)" \
      "$(fmt "$(val "idle-$tag-mem" .connect_per_s)" 0)" "" "server >= 4000"
  done
fi

# ---- broadcast: 1 publisher, 1000 subscribers, 50/s ------------------------

if want broadcast; then
  start_relay
  bench broadcast-relay -url "ws://127.0.0.1:$RELAY_PORT/ws" -scenario broadcast -subs 1000 -rate 50 \
    -warmup "$WARM" -duration "$D_BCAST" -pid "$RELAY_PID" -label barerelay
  stop "$RELAY_PID"
  if [ $HAVE_SERVER = 1 ] && start_server bcast; then
    bench broadcast-mem -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario broadcast -subs 1000 -rate 50 \
      -warmup "$WARM" -duration "$D_BCAST" -pid "$SRV_PID" -label memory
    stop "$SRV_PID"
  fi
  row "broadcast 1000 subs 50/s: p99 ms" "$(fmt "$(val broadcast-relay .latency.p99_ms)" 2)" \
    "$(fmt "$(val broadcast-mem .latency.p99_ms)" 2)" "" "server <= 40 ms"
  row "broadcast 1000 subs 50/s: delivered %" "$(fmt "$(val broadcast-relay .delivered_pct)" 3)" \
    "$(fmt "$(val broadcast-mem .delivered_pct)" 3)" "" "100%"
  row "broadcast 1000 subs 50/s: deliveries/s" "$(fmt "$(val broadcast-relay .delivered_per_s)" 0)" \
    "$(fmt "$(val broadcast-mem .delivered_per_s)" 0)" "" ""
fi

# ---- churn: 1000 steady + 500 connects/s ------------------------------------

CHURN_ARGS=(-scenario churn -conns 1000 -churn-rate 500 -churn-life 1s -duration "$D_CHURN")
# Afterwards, hold the steady connections until RSS is back near its
# baseline: Go returns freed heap after its next collection (<= 2 min idle).
SETTLE_ARGS=(-settle "$D_SETTLE")
checks_ok() { # NAME: "ok" if every check passed, else the failed ones
  [ -s "$OUT/$1.json" ] || { echo ""; return; }
  jq -r 'if (.checks // []) | length == 0 then "no checks" elif all(.checks[]; .ok) then "ok"
         else [.checks[] | select(.ok | not) | "\(.name) want \(.want) got \(.got)"] | join("; ") end' "$OUT/$1.json"
}
if want churn; then
  start_relay
  bench churn-relay -url "ws://127.0.0.1:$RELAY_PORT/ws" "${CHURN_ARGS[@]}" "${SETTLE_ARGS[@]}" -pid "$RELAY_PID" \
    -metrics "http://127.0.0.1:$RELAY_PORT/metrics" -label barerelay
  stop "$RELAY_PID"
  if [ $HAVE_SERVER = 1 ] && start_server churn; then
    bench churn-mem -url "ws://127.0.0.1:$SRV_PORT/ws" "${CHURN_ARGS[@]}" "${SETTLE_ARGS[@]}" -pid "$SRV_PID" \
      -metrics "http://127.0.0.1:$SRV_PORT/metrics" -label memory
    stop "$SRV_PID"
  fi
  row "churn ${D_CHURN}: connects/s achieved (target 500)" "$(fmt "$(val churn-relay .churn.connects_per_s)")" \
    "$(fmt "$(val churn-mem .churn.connects_per_s)")" "" ""
  row "churn ${D_CHURN}: failed connects" "$(val churn-relay .churn.failed)" "$(val churn-mem .churn.failed)" "" "0"
  ROWS+=("churn ${D_CHURN}: leftover checks|$(checks_ok churn-relay)|$(checks_ok churn-mem)|-|zero leftovers")
  ROWS+=("churn ${D_CHURN}: server RSS KB before -> after|$(val churn-relay .server.rss_before_kb) -> $(val churn-relay .server.rss_after_kb)|$(val churn-mem .server.rss_before_kb) -> $(val churn-mem .server.rss_after_kb)|-|back to baseline")
  settled() { # NAME: "RSS KB after N s", or "" without a settle phase
    [ -s "$OUT/$1.json" ] || { echo ""; return; }
    jq -r 'if .server.rss_settled_kb then "\(.server.rss_settled_kb) after \(.server.settle_s | floor) s" else "" end' "$OUT/$1.json"
  }
  ROWS+=("churn ${D_CHURN}: server RSS KB settled (baseline + 10 %)|$(settled churn-relay)|$(settled churn-mem)|-|back to baseline")
  ROWS+=("churn ${D_CHURN}: server goroutines before -> after|$(val churn-relay .server.goroutines_start) -> $(val churn-relay .server.goroutines_after)|$(val churn-mem .server.goroutines_start) -> $(val churn-mem .server.goroutines_after)|-|back to baseline")
fi

# ---- Redis, single node --------------------------------------------------

if want redis && [ $HAVE_SERVER = 1 ]; then
  start_redis
  RURL="redis://127.0.0.1:$REDIS_PORT/0"
  if start_server redis1 REDIS_URL="$RURL" REDIS_PREFIX="sbb:" "${HIGH_LIMITS[@]}"; then
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    bench direct-redis -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario direct -pairs 100 -window 16 \
      -warmup "$WARM" -duration "$D_DIRECT" -pid "$SRV_PID" -label redis
    redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/direct-redis.commandstats"
    bench open-redis -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario direct -pairs 200 -rate 10000 \
      -warmup "$WARM" -duration "$D_OPEN" -pid "$SRV_PID" -label redis
    bench broadcast-redis -url "ws://127.0.0.1:$SRV_PORT/ws" -scenario broadcast -subs 1000 -rate 50 \
      -warmup "$WARM" -duration "$D_BCAST" -pid "$SRV_PID" -label redis
    bench churn-redis -url "ws://127.0.0.1:$SRV_PORT/ws" "${CHURN_ARGS[@]}" -pid "$SRV_PID" \
      -metrics "http://127.0.0.1:$SRV_PORT/metrics" -redis "127.0.0.1:$REDIS_PORT" -prefix "sbb:" -label redis
    stop "$SRV_PID"
  fi
  row "redis 1 node: direct max msgs/s (vs barerelay)" "$(fmt "${RELAY_DIRECT:-}" 0)" \
    "$(fmt "$(val direct-redis .delivered_per_s)" 0)" "" "valid only without errors"
  E=$(errs direct-redis)
  [ -n "$E" ] && ROWS+=("  server errors in that run|-|${E# }|-|none")
  row "redis 1 node: 10k/s p99 ms (vs barerelay)" "$(fmt "${RELAY_P99:-}" 2)" \
    "$(fmt "$(val open-redis .latency.p99_ms)" 2)" "" ""
  row "redis 1 node: broadcast p99 ms" "$(fmt "$(val broadcast-relay .latency.p99_ms)" 2)" \
    "$(fmt "$(val broadcast-redis .latency.p99_ms)" 2)" "" "server <= 40 ms"
  row "redis 1 node: broadcast delivered %" "$(fmt "$(val broadcast-relay .delivered_pct)" 3)" \
    "$(fmt "$(val broadcast-redis .delivered_pct)" 3)" "" "100%"
  ROWS+=("redis 1 node: churn leftover checks|-|$(checks_ok churn-redis)|-|zero leftovers")
fi

# ---- Redis, two nodes (senders on node 1, receivers on node 2) ----------

if want twonode && [ $HAVE_SERVER = 1 ]; then
  [ -n "${REDIS_PID:-}" ] && kill -0 "$REDIS_PID" 2>/dev/null || start_redis
  RURL="redis://127.0.0.1:$REDIS_PORT/0"
  if start_server node1 REDIS_URL="$RURL" REDIS_PREFIX="sb2:" "${HIGH_LIMITS[@]}"; then
    N1_PID=$SRV_PID N1_PORT=$SRV_PORT
    if start_server node2 REDIS_URL="$RURL" REDIS_PREFIX="sb2:" "${HIGH_LIMITS[@]}"; then
      N2_PID=$SRV_PID N2_PORT=$SRV_PORT
      redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
      bench direct-2node -url "ws://127.0.0.1:$N1_PORT/ws" -url2 "ws://127.0.0.1:$N2_PORT/ws" -scenario direct \
        -pairs 100 -window 16 -warmup "$WARM" -duration "$D_DIRECT" -pid "$N1_PID" -label two-nodes
      redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/direct-2node.commandstats"
      bench open-2node -url "ws://127.0.0.1:$N1_PORT/ws" -url2 "ws://127.0.0.1:$N2_PORT/ws" -scenario direct \
        -pairs 200 -rate 10000 -warmup "$WARM" -duration "$D_OPEN" -pid "$N1_PID" -label two-nodes
      bench broadcast-2node -url "ws://127.0.0.1:$N1_PORT/ws" -url2 "ws://127.0.0.1:$N2_PORT/ws" -scenario broadcast \
        -subs 1000 -rate 50 -warmup "$WARM" -duration "$D_BCAST" -pid "$N1_PID" -label two-nodes
      stop "$N2_PID"
    fi
    stop "$N1_PID"
  fi
  S2=$(val direct-2node .delivered_per_s)
  row "2 nodes: direct max msgs/s (vs 1-node memory; target >= 0.5)" "$(fmt "${DIRECT_MEM:-}" 0)" "$(fmt "$S2" 0)" "" ">= 0.50"
  E=$(errs direct-2node)
  [ -n "$E" ] && ROWS+=("  server errors in that run|-|${E# }|-|none")
  row "2 nodes: 10k/s p99 ms (vs barerelay)" "$(fmt "${RELAY_P99:-}" 2)" \
    "$(fmt "$(val open-2node .latency.p99_ms)" 2)" "" ""
  row "2 nodes: broadcast p99 ms" "$(fmt "$(val broadcast-relay .latency.p99_ms)" 2)" \
    "$(fmt "$(val broadcast-2node .latency.p99_ms)" 2)" "" "server <= 40 ms"
  row "2 nodes: broadcast delivered %" "$(fmt "$(val broadcast-relay .delivered_pct)" 3)" \
    "$(fmt "$(val broadcast-2node .delivered_pct)" 3)" "" "100%"
fi

# ---- summary -------------------------------------------------------------

{
  echo
  echo "Switchboard benchmarks — $(date -u +%Y-%m-%dT%H:%M:%SZ), nproc $(nproc), $(go version | cut -d' ' -f3), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "ratio = server / barerelay (lower is better for latency and RSS)"
  echo
  printf '%s\n' "scenario|barerelay|switchboard|ratio|target" "${ROWS[@]}" | column -t -s '|'
  echo
  echo "Per run: server and client CPU, and CPU used by other processes during the measured"
  echo "phase (% of one core; high 'other' means the run was disturbed and should be repeated)."
  {
    echo "run|server CPU|client CPU|other CPU|other at start|lost|server errors|client errors"
    for f in "$OUT"/*.json; do
      [ -s "$f" ] || continue
      jq -r --arg n "$(basename "$f" .json)" '
        def counts: (. // {}) | to_entries | map("\(.key)=\(.value)") | join(",") | if . == "" then "-" else . end;
        "\($n)|\(.server.cpu_pct // 0 | floor)|\(.client_cpu_pct // 0 | floor)|\(.other_cpu_pct // 0 | floor)|\(.busy_before_pct // 0 | floor)|\(.lost // 0)|\(.server_errors | counts)|\(.client_errors | counts)"' "$f" 2>/dev/null || true
    done
  } | column -t -s '|'
  echo
  echo "per-run JSON, stderr and server logs: $OUT"
} | tee "$OUT/summary.txt"
