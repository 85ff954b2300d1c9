#!/usr/bin/env bash
# bench_mailbox.sh — direct-message throughput with the mailbox on and off,
# in memory mode and with Redis on one node, in one run (docs/benchmarks.md,
# "The mailbox"). One closed-loop run per setting: 100 pairs, window 16.
#
# Everything listens on 127.0.0.1 only; Redis is a private redis-server on a
# free port (never 6379); every process started here is stopped on exit.
#
#   scripts/bench_mailbox.sh            # ~1 minute
#   DURATION=20s scripts/bench_mailbox.sh
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/sbmbox.XXXXXX)}
DURATION=${DURATION:-10s}
BIN=$OUT/bin
mkdir -p "$BIN"
go build -o "$BIN/switchboard" ./cmd/switchboard
go build -o "$BIN/sbbench" ./cmd/sbbench

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" --logfile "$OUT/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
until redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done

# run NAME ENV...: one server with ENV, one sbbench run, the server stopped.
run() {
  local name=$1; shift
  local port; port=$(free_port)
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  env SWITCHBOARD_ADDR="127.0.0.1:$port" RATE_LIMIT=1000000 RATE_BURST=1000000 "$@" \
    "$BIN/switchboard" >"$OUT/server-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  until curl -fsS --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.1; done
  timeout 660 "$BIN/sbbench" -json -progress 0 -quiet-wait "${QUIET_WAIT:-20s}" -url "ws://127.0.0.1:$port/ws" \
    -scenario direct -pairs 100 -window 16 -duration "$DURATION" -pid "$pid" >"$OUT/$name.json"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-12s %10.0f msg/s  (other processes: %s%% of a core)\n' "$name" \
    "$(jq .delivered_per_s "$OUT/$name.json")" "$(jq '.other_cpu_pct // 0 | floor' "$OUT/$name.json")"
}

# Interleaved, so that a change in the machine's load hits both settings.
for i in $(seq 1 "${REPS:-2}"); do
  run "mem-off-$i" MAILBOX=false
  run "mem-on-$i" MAILBOX=true
  run "redis-off-$i" MAILBOX=false REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  run "redis-on-$i" MAILBOX=true REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
done
echo "results in $OUT"
