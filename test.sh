#!/usr/bin/env bash
# The test command. It installs what the tests need when it is missing
# (php-cli, phpunit, prometheus with promtool, nodejs and npm,
# python3-prometheus-client for its strict OpenMetrics parser, systemd for
# systemd-analyze, and chromium for the live page's browser test, from Debian;
# Autobahn|JS from npm), then runs
# every check: PHP syntax, PHPUnit, gofmt, go vet, and every Go test with the
# race detector (some start PHP processes and a real Prometheus). A fresh Debian
# machine with Go passes with just this.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v php >/dev/null || missing+=(php-cli)
command -v phpunit >/dev/null || missing+=(phpunit)
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
# Node.js runs Autobahn|JS, a WAMP client nobody here wrote, for the interop
# tests (a Node installed some other way is used as it is, with its npm).
command -v node >/dev/null || missing+=(nodejs npm)
# The strict OpenMetrics parser the scrape test uses, for Debian's python3.
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || missing+=(python3-prometheus-client)
# systemd-analyze checks the shipped unit (deploy/systemd); only the tool is
# used, no service is started.
command -v systemd-analyze >/dev/null || missing+=(systemd)
# Headless Chromium drives the live page in a real browser (chromedp).
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the prometheus service on install where it can; the tests
  # run their own, on free ports.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    $sudo invoke-rc.d prometheus stop >/dev/null 2>&1 || true
  fi
fi

# Autobahn|JS for the interop tests, exactly as locked.
(cd testdata/autobahn && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)

# PHP: every file parses, and the unit tests pass.
find php -name '*.php' -print0 | xargs -0 -n1 php -l >/dev/null
phpunit -c php/phpunit.xml
# The PHP 7 WampObserver (php/php7) through the same observer tests, on PHP 8.
phpunit -c php/phpunit-php7.xml

# This command installs the tools the tests use, so a test that finds one
# missing fails here rather than skipping (internal/harness.RequireTool).
export WAMP_OBSERVER_REQUIRE_TOOLS=1

unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt would change: $unformatted" >&2; exit 1; }
go vet ./...
go test -race -count=1 ./...
# Each fuzz target briefly (./fuzz.sh runs them long); their seed corpora
# in testdata/fuzz already ran above as plain tests. The budget is a count of
# executions, about 10 s of each on a 2-core machine, not a duration: with a
# duration, Go 1.26's fuzzing coordinator can fail a target that found
# nothing, with "context deadline exceeded", as the time runs out
# (go.dev/issue/75804, fixed in Go 1.27).
for target in "FuzzParseLine ./wamplog 40000" "FuzzHandleLines ./wamplog 8000" "FuzzObserver ./router 15000" "FuzzNexus ./router 3000" "FuzzDecodingIsNexuss ./wampjson 30000" "FuzzEncodingIsNexuss ./wampjson 30000"; do
  set -- $target
  go test -run '^$' -fuzz "^$1\$" -fuzztime "${3}x" "$2"
done
# Benchmarks are not timed tests: run each once so they cannot rot.
go test -run '^$' -bench . -benchtime 1x ./... >/dev/null
