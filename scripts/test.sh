#!/usr/bin/env bash
# Runs Switchboard's whole test suite on a fresh Debian machine: installs what
# the tests need (redis-server, chromium) when missing, then vet, the check
# that docs and --help agree, the tests with the race detector, and a short
# run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The client package's tests (web/client: node --test, tsc) need Node 18+
# and npm; `go test ./web/` installs the package's devDependencies itself.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing nodejs npm"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi

echo "==> go vet"
go vet ./...

echo "==> docs and --help agree"
./scripts/check-docs.sh

echo "==> go test -race"
# One package at a time: the end-to-end packages (cmd/switchboard,
# internal/chaos, web) each run several servers, Redis Clusters and
# browsers; on two cores, running them together turns timing into noise.
# The whole suite still takes about 7 minutes.
go test -race -count=1 -p 1 -timeout 20m ./...

echo "==> fuzz (short runs; seed corpora run above)"
fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-15s}" "$1"; }
fuzz ./routing FuzzParseStamp
fuzz ./routing FuzzAPIMessage
fuzz ./routing FuzzHandshake
fuzz ./routing FuzzSequence
fuzz ./routing FuzzEnvelope
fuzz ./auth FuzzVerify
echo "==> all tests passed"
