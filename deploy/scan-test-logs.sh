#!/usr/bin/env bash
# Scans the logs of a whole test run (CT_TEST_LOG_DIR, filled by ct_testkit: every test process's
# log lines at info and above, and every service process the tests started) for the secrets the
# tests use: the Postgres canary password, the dev HMAC secret, redaction salt and tokens. Any hit
# fails the run; so does a log folder too small to have meant anything.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-${CT_TEST_LOG_DIR:-$REPO/target/test-logs}}"

canary=$(sed -n 's/^pub const CANARY_PASSWORD: &str = "\(.*\)";$/\1/p' "$REPO/services/testkit/src/lib.rs")
secrets=("$canary" "dev-webhook-secret" "dev-redaction-salt" "dev-run-redaction-salt" "dev-callback-secret" "dev-token-")
[ -n "$canary" ] || { echo "[scan] cannot read CANARY_PASSWORD from ct-testkit" >&2; exit 1; }

files=$(find "$dir" -type f -name '*.log' 2>/dev/null | wc -l)
lines=$(find "$dir" -type f -name '*.log' -exec cat {} + 2>/dev/null | wc -l)
if [ "$files" -lt 10 ] || [ "$lines" -lt 1000 ]; then
    echo "[scan] only $files log files and $lines lines in $dir: the run's logs were not captured" >&2
    exit 1
fi

found=0
for secret in "${secrets[@]}"; do
    if hits=$(grep -rlF -- "$secret" "$dir"); then
        found=1
        # Name the secret by its first characters only.
        echo "[scan] '${secret:0:6}...' appears in:" >&2
        echo "$hits" | sed 's/^/[scan]   /' >&2
    fi
done
[ "$found" -eq 0 ] || exit 1
echo "[scan] no test secret in $lines log lines of $files files"
