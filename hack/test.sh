#!/usr/bin/env bash
# make test: every test, as root, and none may skip. A skipped test counted
# as passing hides what was never checked, so any SKIP fails the run (the
# skips exist for `make test-short`, an ordinary user's quick run).
#   hack/test.sh [go test flags] [packages]   (default ./...)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "make test needs root (network namespaces, netfilter); make test-short runs the pure tests as any user"; exit 1; }
(($#)) || set -- ./...
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# -v prints a SKIP line for every skipped test; the filter keeps the output
# as go test prints it without -v (packages, failures, logs).
set +e
go test -count=1 -timeout 40m -v "$@" 2>&1 | tee "$log" |
  grep --line-buffered -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS: )|^PASS$'
rc=${PIPESTATUS[0]}
set -e
skips=$(grep -E '^\s*--- SKIP: ' "$log" || true)
if [[ -n $skips ]]; then
  echo "test: FAIL: $(wc -l <<<"$skips") test(s) skipped (reasons in the output above); make test runs every test:" >&2
  echo "$skips" >&2
  exit 1
fi
exit "$rc"
