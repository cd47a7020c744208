#!/usr/bin/env bash
# Runs the whole dialcore test suite, from a fresh clone on Debian 12 (as root):
#
#   bash scripts/test.sh                      # everything: typecheck + all vitest suites
#   bash scripts/test.sh sip-tests/harness    # extra arguments go to `vitest run`
#
# 1. scripts/setup.sh --test: Debian packages (redis-server, rtpengine-daemon,
#    sip-tester, chromium, baresip, linphone-cli) and npm dependencies, each only when missing.
# 2. npx tsc -p tsconfig.json (type check, no output files).
# 3. npx vitest run: unit tests next to the code and integration suites in sip-tests/.
#    Suites start their own Redis, rtpengine, SIPp and browsers on 127.0.0.1 with
#    free ports (sip-tests/harness), so nothing needs to be running beforehand.
# Ends with a line "tests: N passed, N failed" and exits non-zero if anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh --test

echo "[test] tsc -p tsconfig.json" >&2
npx --no-install tsc -p tsconfig.json

mkdir -p .run
report=.run/vitest-report.json
rm -f "$report"

echo "[test] vitest run $*" >&2
set +e
npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" </dev/null
status=$?
set -e

if [[ -f $report ]]; then
  # A run that executed no test at all counts as a failure.
  if ! node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
    if (r.numTotalTests === 0) process.exitCode = 1;
  ' "$report"; then
    if [[ $status == 0 ]]; then status=1; fi
  fi
fi
exit "$status"
