#!/usr/bin/env bash
# The README's test command: brings up the local stack (installing what is missing), then runs
# formatting, lints and every test of the workspace against the real Kafka, Postgres and Redis.
# Benchmarks and the load tester are not part of it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
started=$(date +%s)

bash deploy/bootstrap.sh
# The trace collector the tests read traces from (cached; the first build takes minutes, so it
# runs beside the stack start and the lints).
jaeger_log="$(mktemp)"
bash deploy/jaeger.sh > "$jaeger_log" 2>&1 &
jaeger_build=$!
# helm and kubeconform for the Helm chart's checks (cached the same way; built beside it).
k8s_log="$(mktemp)"
bash deploy/k8s.sh build > "$k8s_log" 2>&1 &
k8s_build=$!
bash deploy/stack.sh up
bash deploy/stack.sh prune

echo "[test] the OpenAPI taxonomy and the clients follow schemas-avro"
"${CT_STATE_DIR:-$REPO/.state}/venv/bin/python" clients/taxonomy/generate.py --check
echo "[test] the Grafana dashboards query only metrics the code defines"
python3 deploy/grafana/check.py
echo "[test] cargo fmt --check"
cargo fmt --all --check
echo "[test] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
if ! wait "$jaeger_build"; then
  cat "$jaeger_log" >&2
  echo "[test] building the trace collector failed" >&2
  exit 1
fi
cat "$jaeger_log"
if ! wait "$k8s_build"; then
  cat "$k8s_log" >&2
  echo "[test] building helm and kubeconform failed" >&2
  exit 1
fi
cat "$k8s_log"
echo "[test] Helm chart: helm lint, helm template | kubeconform (deploy/k8s.sh)"
bash deploy/k8s.sh check || { echo "[test] the Helm chart's checks failed" >&2; exit 1; }
echo "[test] cargo test"
# Every test process and every service it starts logs into this folder; the scan below reads it.
export CT_TEST_LOG_DIR="$REPO/target/test-logs"
rm -rf "$CT_TEST_LOG_DIR" && mkdir -p "$CT_TEST_LOG_DIR"
# Each test binary runs under a time limit (cargo's runner): a consumer dropped while a test's
# runtime shuts down can hang in librdkafka's close (its issue 4884). Such a binary then fails
# (exit status 124) after CT_TEST_BINARY_TIMEOUT_S instead of stalling the run until CI's limit.
host="$(rustc -vV | sed -n 's/^host: //p')"
runner_var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUNNER"
export "$runner_var=timeout --kill-after=30 ${CT_TEST_BINARY_TIMEOUT_S:-1200}"
cargo test --workspace --locked --no-fail-fast
echo "[test] scanning the run's logs for the tests' secrets"
bash deploy/scan-test-logs.sh "$CT_TEST_LOG_DIR"

echo "[test] all checks passed in $(( $(date +%s) - started ))s"
