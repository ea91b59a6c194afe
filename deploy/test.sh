#!/usr/bin/env bash
# The README's test command: brings up the local stack (installing what is missing), then runs
# formatting, lints and every test of the workspace against the real Kafka, Postgres and Redis.
# Benchmarks and the load tester are not part of it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
started=$(date +%s)

bash deploy/bootstrap.sh
bash deploy/stack.sh up
bash deploy/stack.sh prune

echo "[test] cargo fmt --check"
cargo fmt --all --check
echo "[test] cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[test] cargo test"
cargo test --workspace --locked --no-fail-fast

echo "[test] all checks passed in $(( $(date +%s) - started ))s"
