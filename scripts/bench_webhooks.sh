#!/usr/bin/env bash
# bench_webhooks.sh — the cost of webhooks under connection churn.
#
# For each store (memory, then one node on Redis), runs the same load
# against a fresh server, webhooks off and on (REPS times each, alternating): STEADY connections opened as
# fast as the tool can (closed loop: the maximum connect rate), then churn at
# RATE connects/s for DURATION, each churn connection living 1 s (half
# dropped without a close frame). With webhooks on, a local receiver
# (internal/bench/hookrecv) verifies every signature and measures each
# event's latency from the moment that triggered it (user.offline: after
# WEBHOOK_OFFLINE_DELAY) to its arrival. Every connection is a distinct
# user, so each one owes exactly one user.online and one user.offline.
#
#   scripts/bench_webhooks.sh                       # about 8 minutes
#   DURATION=10s STEADY=500 scripts/bench_webhooks.sh
#   STORES=redis scripts/bench_webhooks.sh          # memory, redis, or both (default)
#
# Everything listens on 127.0.0.1; Redis is a private redis-server on a free
# port; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-30s}
RATE=${RATE:-500}
STEADY=${STEADY:-2000}
DELAY=${DELAY:-5s}
STORES=${STORES:-"memory redis"}
REPS=${REPS:-2}
OUT=${OUT:-$(mktemp -d /tmp/sbwebhooks.XXXXXX)}
BIN=$OUT/bin
mkdir -p "$BIN"
SECRET="whsec_$(head -c 32 /dev/urandom | base64)"

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

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
  echo "bench: no free port" >&2; return 1
}
wait_http() {
  local deadline=$((SECONDS + $2))
  until curl -fsS --max-time 1 "$1" >/dev/null 2>&1; do
    [ $SECONDS -ge "$deadline" ] && return 1
    sleep 0.1
  done
}
stop() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}
val() { jq -r "($2) // empty" "$OUT/$1.json" 2>/dev/null || echo ""; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "results in $OUT"
go build -o "$BIN/switchboard" ./cmd/switchboard
go build -o "$BIN/sbbench" ./cmd/sbbench
go build -o "$BIN/hookrecv" ./internal/bench/hookrecv

HOOK_PORT=$(free_port)
"$BIN/hookrecv" -addr "127.0.0.1:$HOOK_PORT" -secret "$SECRET" -offline-delay "$DELAY" >"$OUT/hookrecv.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$HOOK_PORT/stats" 10 || { echo "hookrecv did not start" >&2; exit 1; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" --logfile "$OUT/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

# run NAME [ENV=VALUE...]: one server, one load; with webhooks, waits until
# every owed event arrived (or 60 s after the load) and saves the receiver's stats.
run() {
  local name=$1; shift
  local port
  port=$(free_port)
  env SWITCHBOARD_ADDR="127.0.0.1:$port" SWITCHBOARD_NODE_ID="$name" LOG_LEVEL=warn "$@" \
    "$BIN/switchboard" >"$OUT/server-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/healthz" 15 || { echo "server $name did not start" >&2; exit 1; }
  curl -fsS -X DELETE "http://127.0.0.1:$HOOK_PORT/stats"
  log "run $name"
  timeout 600 "$BIN/sbbench" -json -scenario churn -conns "$STEADY" -churn-rate "$RATE" -churn-life 1s \
    -duration "$DURATION" -url "ws://127.0.0.1:$port/ws" -pid "$pid" -metrics "http://127.0.0.1:$port/metrics" \
    -label "$name" >"$OUT/$name.json" 2>"$OUT/$name.err" || log "sbbench $name failed: $(tail -n 2 "$OUT/$name.err")"
  if [[ " $* " == *WEBHOOK_URL=* ]]; then
    local owed=$((2 * ($(val "$name" .conns) + $(val "$name" .churn.connects))))
    local deadline=$((SECONDS + 60)) got=0
    while [ $SECONDS -lt $deadline ]; do
      got=$(curl -fsS "http://127.0.0.1:$HOOK_PORT/stats" | jq .events)
      [ "$got" -ge "$owed" ] && break
      sleep 0.5
    done
    curl -fsS "http://127.0.0.1:$HOOK_PORT/stats" | jq --argjson owed "$owed" '. + {owed: $owed}' >"$OUT/$name.hooks.json"
    curl -fsS "http://127.0.0.1:$port/metrics" | grep '^switchboard_' >"$OUT/$name.metrics" || true
  fi
  stop "$pid"
}

HOOKS=(WEBHOOK_URL="http://127.0.0.1:$HOOK_PORT/" WEBHOOK_SECRET="$SECRET" WEBHOOK_OFFLINE_DELAY="$DELAY")
# Off and on alternate ABBA-wise (off, on, on, off, ...) so that a drift in
# the machine's load weighs on both alike.
for store in $STORES; do
  env=()
  [ "$store" = redis ] && env=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0")
  for rep in $(seq 1 "$REPS"); do
    order="off on"
    [ $((rep % 2)) = 0 ] && order="on off"
    for mode in $order; do
      redis-cli -p "$REDIS_PORT" flushall >/dev/null
      if [ "$mode" = on ]; then
        run "$store-on-$rep" "${env[@]}" "${HOOKS[@]}"
      else
        run "$store-off-$rep" "${env[@]}"
      fi
    done
  done
done

# mean NAME_GLOB JQ: the mean of a figure over the runs matching the glob.
mean() {
  local f v sum=0 n=0
  for f in "$OUT"/$1.json; do
    [ -s "$f" ] || continue
    v=$(jq -r "($2) // empty" "$f")
    [ -n "$v" ] || continue
    sum=$(awk -v a="$sum" -v b="$v" 'BEGIN{print a+b}'); n=$((n + 1))
  done
  [ $n -gt 0 ] && awk -v a="$sum" -v n="$n" 'BEGIN{printf "%.1f", a/n}' || echo ""
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN{ if (a > 0) printf "%.2f", b/a; else print "-" }'; }

printf '\n%s run(s) of each, means:\n\n| figure | store | webhooks off | webhooks on | on/off |\n| --- | --- | --- | --- | --- |\n' "$REPS"
for store in $STORES; do
  for f in ".connect_per_s|max connect rate, $STEADY conns (conns/s)" ".connect_latency.p99_ms|connect p99 (ms)" \
    ".churn.connects_per_s|churn connects/s (target $RATE)" ".churn.failed|churn failed connects" ".server.cpu_pct|server CPU % of one core"; do
    q=${f%%|*} label=${f#*|}
    a=$(mean "$store-off-*" "$q") b=$(mean "$store-on-*" "$q")
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$store" "$a" "$b" "$(ratio "$a" "$b")"
  done
done
echo
for f in "$OUT"/*-on-*.hooks.json; do
  printf '%s: events %s of %s owed %s, bad signatures %s, latency beyond the trigger p50 %.1f ms, p99 %.1f ms, max %.1f ms\n' \
    "$(basename "$f" .hooks.json)" "$(jq .events "$f")" "$(jq .owed "$f")" "$(jq -c .by_type "$f")" "$(jq .bad "$f")" \
    "$(jq .latency_ms.p50 "$f")" "$(jq .latency_ms.p99 "$f")" "$(jq .latency_ms.max "$f")"
done
