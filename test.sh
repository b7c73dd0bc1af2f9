#!/usr/bin/env bash
# The test command. It installs what the tests need when it is missing
# (php-cli and phpunit from Debian), then runs every check: PHP syntax,
# PHPUnit, go vet, and every Go test with the race detector. A fresh Debian
# machine with Go passes with just this.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v php >/dev/null || missing+=(php-cli)
command -v phpunit >/dev/null || missing+=(phpunit)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PHP: every file parses, and the unit tests pass.
find php -name '*.php' -print0 | xargs -0 -n1 php -l >/dev/null
phpunit -c php/phpunit.xml

go vet ./...
go test -race -count=1 ./...
# Benchmarks are not timed tests: run each once so they cannot rot.
go test -run '^$' -bench . -benchtime 1x ./... >/dev/null
