#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/control-tower) without a cluster: `helm lint`, then
# `helm template` with the default values and with the Strimzi example's, every rendered object
# validated by kubeconform against the Kubernetes JSON schemas shipped in testdata/k8s (the
# Strimzi custom resources too, and deploy/helm/examples/strimzi-kafka.yaml); values the chart
# must refuse (more consumers than partitions, ...) must make `helm template` fail. Nothing is
# fetched at check time: helm and kubeconform are pinned by deploy/tools/k8s/go.mod and built from
# the Go module proxy into the state folder, like deploy/jaeger.sh.
#   bash deploy/k8s.sh build    build the tools (safe to run twice: tools built from the same go.mod are kept)
#   bash deploy/k8s.sh check    the checks, with the tools built before
#   bash deploy/k8s.sh          both
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CT_STATE_DIR:-$REPO/.state}"
TOOL="$REPO/deploy/tools/k8s"
BIN="$STATE/bin"
CHART="$REPO/deploy/helm/control-tower"
EXAMPLES="$REPO/deploy/helm/examples"
SCHEMAS="$REPO/testdata/k8s"
# The Kubernetes version the schemas in testdata/k8s describe (see its README.md).
KUBE_VERSION=1.35.0

build() {
  local stamp
  # The stamp covers what the binaries are built from: go.mod, go.sum and this function.
  stamp="$(cat "$TOOL/go.mod" "$TOOL/go.sum" <(declare -f build) | sha256sum | cut -c1-16)"
  if [[ -x "$BIN/helm" && -x "$BIN/kubeconform" && "$(cat "$BIN/k8s-tools.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "[k8s] $BIN/helm and $BIN/kubeconform are current"
    return
  fi
  command -v go >/dev/null || { echo "[k8s] the Go toolchain is missing (apt-get install golang-go, or the machine's Go)" >&2; exit 1; }
  mkdir -p "$BIN"
  echo "[k8s] building helm and kubeconform from the Go module proxy (the first build takes several minutes)"
  (
    cd "$TOOL"
    # As helm's Makefile does: its version, and the Kubernetes version of its client libraries
    # as the default of `helm template` and of lint's deprecation rules (else 1.20).
    local helm_version kubeconform_version k8s_minor
    helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
    kubeconform_version="$(go list -m -f '{{.Version}}' github.com/yannh/kubeconform)"
    k8s_minor="$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
    local helm_flags=(-X "helm.sh/helm/v3/internal/version.version=$helm_version")
    local pkg
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      helm_flags+=(-X "$pkg.k8sVersionMajor=1" -X "$pkg.k8sVersionMinor=$k8s_minor")
    done
    go build -o "$BIN/helm.tmp" -ldflags "${helm_flags[*]}" helm.sh/helm/v3/cmd/helm
    go build -o "$BIN/kubeconform.tmp" -ldflags "-X main.version=$kubeconform_version" github.com/yannh/kubeconform/cmd/kubeconform
  )
  mv "$BIN/helm.tmp" "$BIN/helm"
  mv "$BIN/kubeconform.tmp" "$BIN/kubeconform"
  echo "$stamp" > "$BIN/k8s-tools.stamp"
  echo "[k8s] built helm $("$BIN/helm" version --short) and kubeconform $("$BIN/kubeconform" -v) into $BIN"
}

check() {
  [[ -x "$BIN/helm" && -x "$BIN/kubeconform" ]] || { echo "[k8s] the tools are not built (bash deploy/k8s.sh build)" >&2; exit 1; }
  # Helm keeps its own settings here, not in the user's home (no repository is used).
  export HELM_CACHE_HOME="$STATE/helm/cache" HELM_CONFIG_HOME="$STATE/helm/config" HELM_DATA_HOME="$STATE/helm/data"
  local helm=("$BIN/helm")
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  local kubeconform=("$BIN/kubeconform" -strict -summary -kubernetes-version "$KUBE_VERSION"
    -schema-location "$SCHEMAS"
    -schema-location "$SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")
  local -A sets=([default]="" [strimzi]="$EXAMPLES/values-strimzi.yaml")
  local name
  for name in default strimzi; do
    local values=()
    [[ -n "${sets[$name]}" ]] && values=(--values "${sets[$name]}")
    echo "[k8s] helm lint --strict ($name values)"
    "${helm[@]}" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "${values[@]}"
    echo "[k8s] helm template ($name values) | kubeconform"
    "${helm[@]}" template ct "$CHART" --namespace control-tower --kube-version "$KUBE_VERSION" "${values[@]}" > "$out/$name.yaml"
    "${kubeconform[@]}" "$out/$name.yaml"
  done
  echo "[k8s] kubeconform examples/strimzi-kafka.yaml"
  "${kubeconform[@]}" "$EXAMPLES/strimzi-kafka.yaml"

  # Values the chart must refuse, each with the words its message must contain.
  local refused=(
    "services.projector.replicas=7|more replicas than ct.events.v1 has partitions"
    "services.runner.replicas=4|more replicas than ct.runs.v1 has partitions"
    "services.registry.replicas=2|one writer"
    "services.api.replicas=2|artifacts"
    "profile=production|profile production needs secrets."
  )
  local case override words
  for case in "${refused[@]}"; do
    override="${case%%|*}" words="${case#*|}"
    if "${helm[@]}" template ct "$CHART" --kube-version "$KUBE_VERSION" --set "$override" > /dev/null 2> "$out/refused.txt"; then
      echo "[k8s] helm template --set $override succeeded; the chart must refuse it" >&2
      exit 1
    fi
    grep -qF -- "$words" "$out/refused.txt" || {
      cat "$out/refused.txt" >&2
      echo "[k8s] helm template --set $override failed without saying \"$words\"" >&2
      exit 1
    }
    echo "[k8s] --set $override is refused: $(grep -o 'execution error.*' "$out/refused.txt" | head -n 1)"
  done
  echo "[k8s] the chart is valid"
}

case "${1:-all}" in
  build) build ;;
  check) check ;;
  all) build && check ;;
  *) echo "usage: bash deploy/k8s.sh [build|check]" >&2; exit 2 ;;
esac
