#!/usr/bin/env bash
# Checks that README.md, docs/ and deploy/ name only commands and options
# that `switchboard --help` lists, and document every option it lists.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)/switchboard"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/switchboard
go run ./scripts/checkdocs "$bin"
