#!/usr/bin/env bash
# Builds the trace collector the tests read traces back from: Jaeger v2 (an OpenTelemetry
# Collector distribution; OTLP in, the query API out), pinned by deploy/tools/jaeger/go.mod and
# built from the Go module proxy into the state folder. Safe to run twice: a binary built from the
# same go.mod is kept.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CT_STATE_DIR:-$REPO/.state}"
TOOL="$REPO/deploy/tools/jaeger"
BIN="$STATE/bin/jaeger"
stamp="$(sha256sum "$TOOL/go.mod" "$TOOL/go.sum" | sha256sum | cut -c1-16)"
if [[ -x "$BIN" && "$(cat "$BIN.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "[jaeger] $BIN is current"
  exit 0
fi
command -v go >/dev/null || { echo "[jaeger] the Go toolchain is missing (apt-get install golang-go, or the machine's Go)" >&2; exit 1; }
mkdir -p "$STATE/bin"
echo "[jaeger] building Jaeger v2 from the Go module proxy (the first build takes several minutes)"
cd "$TOOL"
go build -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$BIN.tmp" "$BIN"
echo "$stamp" > "$BIN.stamp"
echo "[jaeger] built $BIN"
