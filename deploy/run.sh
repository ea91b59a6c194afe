#!/usr/bin/env bash
# The README's run command: brings up the local stack (installing what is missing), builds and
# starts every service, prints where everything runs and the dev credentials, and stays in the
# foreground until Ctrl-C (services stop; the stack keeps running: `deploy/stack.sh down`).
#
#   deploy/run.sh                debug build
#   deploy/run.sh --golden       also load the golden dataset (testdata/golden), so the read API
#                                shows a populated system at once
#   CT_RELEASE=1 deploy/run.sh   optimised build (for load tests)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
STATE="${CT_STATE_DIR:-$REPO/.state}"
LOGS="$STATE/logs"
mkdir -p "$LOGS"

die() { printf 'run: error: %s\n' "$*" >&2; exit 1; }
load_golden=0
for arg in "$@"; do
  case "$arg" in
    --golden) load_golden=1 ;;
    *) die "unknown option $arg (use --golden)" ;;
  esac
done
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bash deploy/bootstrap.sh
bash deploy/stack.sh up

profile=debug; cargo_flags=()
if [ "${CT_RELEASE:-0}" = 1 ]; then profile=release; cargo_flags=(--release); fi
echo "[run] building the services ($profile)"
cargo build "${cargo_flags[@]}" -p ct-registry -p ct-edge -p ct-projector -p ct-dlq-categoriser -p ct-health -p ct-digest -p ct-api -p ct-runner -p ct-target -p ct-replay

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "[run] services stopped; the stack is still up (deploy/stack.sh down stops it)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

start() { # name port readiness-path
  local name="$1" port="$2" path="$3"
  port_open "$port" && die "port $port is taken; stop whatever runs there before starting $name"
  "${CARGO_TARGET_DIR:-$REPO/target}/$profile/$name" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port$path" >/dev/null 2>&1; then return; fi
    kill -0 "${pids[-1]}" 2>/dev/null || die "$name exited: $(tail -n 5 "$LOGS/$name.log")"
    sleep 0.5
  done
  die "$name did not become ready on port $port within 60 s (see $LOGS/$name.log)"
}

# On a machine of two cores or fewer, every service runs one Tokio worker: ten services with a
# worker per core each fought over two cores (one event per request at 6,000/s: HTTP p99 315 ms with
# the default, 31 ms with one worker; loadtest/README.md). Set TOKIO_WORKER_THREADS to override.
if [ -z "${TOKIO_WORKER_THREADS:-}" ] && [ "$(nproc)" -le 2 ]; then
  export TOKIO_WORKER_THREADS=1
fi
start ct-registry 8081 /schemas/types
# Locally the per-token rate limit is raised so the golden dataset and load tests are not throttled;
# set CT_RATE_LIMIT__PER_MINUTE / CT_RATE_LIMIT__BURST to see the production defaults (60 / 120).
export CT_RATE_LIMIT__PER_MINUTE="${CT_RATE_LIMIT__PER_MINUTE:-600000}" CT_RATE_LIMIT__BURST="${CT_RATE_LIMIT__BURST:-100000}"
start ct-edge 8080 /readyz
start ct-projector 9101 /healthz
start ct-dlq-categoriser 9102 /healthz
start ct-health 9103 /healthz
start ct-digest 9104 /healthz
# The dev target of the shipped triggers (config/triggers.toml): records calls, one effect per key.
start ct-target 8095 /_effects
start ct-runner 8096 /healthz
start ct-api 8090 /healthz
if [ "$load_golden" = 1 ]; then
  python3 testdata/golden/golden.py load --edge http://127.0.0.1:8080 || die "loading the golden dataset failed"
fi

cat <<BANNER

Control Tower is running.
  edge (POST /events)   http://127.0.0.1:8080      logs $LOGS/ct-edge.log
  read API              http://127.0.0.1:8090      logs $LOGS/ct-api.log
  dashboards            http://127.0.0.1:8090/ui/  sign in with a user token (the golden days: ?as_of=2025-09-25T09:00:00Z)
  projector (metrics)   http://127.0.0.1:9101      logs $LOGS/ct-projector.log
  DLQ categoriser       http://127.0.0.1:9102      logs $LOGS/ct-dlq-categoriser.log (GET /metrics: ct_dlq_depth)
  health evaluator      http://127.0.0.1:9103      logs $LOGS/ct-health.log (ticks ct.clock.v1 each minute)
  daily digest          http://127.0.0.1:9104      logs $LOGS/ct-digest.log (08:00 Europe/London; files in .state/digests)
  runner (metrics)      http://127.0.0.1:8096      logs $LOGS/ct-runner.log (executes triggered runs)
  dev trigger target    http://127.0.0.1:8095      logs $LOGS/ct-target.log (GET /_calls, /_effects)
  schema registry       http://127.0.0.1:8081      logs $LOGS/ct-registry.log
  Kafka                 127.0.0.1:9092             topics: deploy/topics.toml
  Postgres              postgres://postgres@127.0.0.1:5432/controltower
  Redis                 redis://127.0.0.1:6379

Dev credentials (refused under CT_PROFILE=production):
  producer tokens  dev-token-portal dev-token-backend dev-token-finance dev-token-desktop dev-token-github dev-token-website dev-token-control_tower
  HMAC secret      dev-webhook-secret
  user tokens      dev-token-owner dev-token-maintainer dev-token-operator dev-token-viewer

Try it (deep dive §7.1):
  BODY='{"eventId":"evt_demo_001","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{"invoiceId":"INV-2025-0912","period":"2025-09","total":1234.56}}'
  SIG=\$(printf '%s' "\$BODY" | openssl dgst -sha256 -hmac dev-webhook-secret -binary | xxd -p -c 256)
  curl -i http://127.0.0.1:8080/events -H "Authorization: Bearer dev-token-finance" \\
       -H "X-CT-Signature: sha256=\$SIG" -H "Content-Type: application/json" -d "\$BODY"
  curl -s "http://127.0.0.1:8090/events?source=finance&type=finance.invoice.generated&from=2025-09-27T00:00:00Z" \\
       -H "Authorization: Bearer dev-token-maintainer"

Trigger a run (deep dive §7.3) and read it:
  curl -s -X POST http://127.0.0.1:8090/triggers/contract.regenerate -H "Authorization: Bearer dev-token-operator" \\
       -H "Content-Type: application/json" -d '{"contractId":"K456"}'
  curl -s http://127.0.0.1:8090/runs/run_... -H "Authorization: Bearer dev-token-maintainer"

Dead letters (the SRE CLI; every command has --help and --json):
  ${CARGO_TARGET_DIR:-$REPO/target}/$profile/ct dlq list
  ${CARGO_TARGET_DIR:-$REPO/target}/$profile/ct dlq replay --category schema --dry-run
  curl -s "http://127.0.0.1:8090/dlq?category=schema" -H "Authorization: Bearer dev-token-maintainer"

Press Ctrl-C to stop the services.
BANNER
wait -n "${pids[@]}" || true
die "a service exited; see $LOGS"
