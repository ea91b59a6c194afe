#!/usr/bin/env bash
# Outage drill: a steady load through the edge while one dependency is down, every service on its
# default settings (release build). Reports dead letters created, loss, and how long the
# projector's lag took to fall under one second of load after the dependency came back.
#
#   bash loadtest/drills/outage.sh postgres|redis|registry [outage seconds: 300] [events/s: 1000]
#
# postgres, redis: stopped with deploy/stack.sh and started again. registry: the ct-registry
# process is SIGKILLed, the projector and the categoriser are restarted (cold schema caches)
# while it is down, and it is started again after the outage.
# Uses the local defaults' ports (8080, 8081, 9101, 9102): stop deploy/run.sh first.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
dependency="${1:?usage: outage.sh postgres|redis|registry [seconds] [rate]}"
outage="${2:-300}"
rate="${3:-1000}"
before=60
after=120
case "$dependency" in postgres | redis | registry) ;; *) echo "unknown dependency $dependency" >&2; exit 2 ;; esac

cargo build --release -p ct-registry -p ct-edge -p ct-projector -p ct-dlq-categoriser -p ct-load -p ct-platform
bash deploy/stack.sh up >/dev/null
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
LOGS="$(mktemp -d /tmp/ct-drill-XXXXXX)"
PSQL=(psql -h 127.0.0.1 -U postgres -d controltower -Atc)
export CT_RATE_LIMIT__PER_MINUTE=60000000 CT_RATE_LIMIT__BURST=1000000

declare -A pid
start() { # name port path
  "$BIN/$1" >>"$LOGS/$1.log" 2>&1 &
  pid[$1]=$!
  for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$2$3" >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "$1 did not start (see $LOGS/$1.log)" >&2
  exit 1
}
stop() { kill -"${2:-TERM}" "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; }
cleanup() { for name in "${!pid[@]}"; do stop "$name"; done; }
trap cleanup EXIT

start ct-registry 8081 /schemas/types
start ct-edge 8080 /readyz
start ct-projector 9101 /healthz
start ct-dlq-categoriser 9102 /healthz
dead_letters() { "${PSQL[@]}" "SELECT count(*) FROM ct_dlq.dlq_items" 2>/dev/null || echo "?"; }
lag() { "$BIN/ct-admin" lag --group ct-projector --topic ct.events.v1 2>/dev/null || echo 999999999; }
items_before="$(dead_letters)"
echo "[drill] $dependency down for ${outage}s under ${rate} events/s; logs in $LOGS"

"$BIN/ct-load" --rate "$rate" --duration "$((before + outage + after))s" --settle 600s \
  --csv "$LOGS/load.csv" >"$LOGS/load.txt" 2>"$LOGS/load.err" &
load=$!
sleep "$before"
echo "[drill] lag before the outage: $(lag)"
case "$dependency" in
  postgres | redis) bash deploy/stack.sh down "$dependency" >/dev/null ;;
  registry)
    stop ct-registry KILL
    stop ct-projector; stop ct-dlq-categoriser
    "$BIN/ct-projector" >>"$LOGS/ct-projector.log" 2>&1 & pid[ct-projector]=$!
    "$BIN/ct-dlq-categoriser" >>"$LOGS/ct-dlq-categoriser.log" 2>&1 & pid[ct-dlq-categoriser]=$!
    ;;
esac
sleep "$((outage / 2))"
echo "[drill] half-way: /healthz of the projector: $(curl -s http://127.0.0.1:9101/healthz)"
sleep "$((outage - outage / 2))"
echo "[drill] lag at the end of the outage: $(lag)"
case "$dependency" in
  postgres | redis) bash deploy/stack.sh up >/dev/null ;;
  registry) start ct-registry 8081 /schemas/types ;;
esac
back=$(date +%s%N)
while :; do
  current="$(lag)"
  if [ "$current" -lt "$rate" ]; then break; fi
  sleep 0.5
done
recovered_ms=$((($(date +%s%N) - back) / 1000000))
echo "[drill] lag under one second of load (${current} records) $((recovered_ms / 1000)).$(printf %03d $((recovered_ms % 1000)))s after $dependency came back"
wait "$load" || true
cat "$LOGS/load.txt"
echo "[drill] dead-letter items: before ${items_before}, after $(dead_letters)"
echo "[drill] projector log lines about the pause:"
grep -E "paused|resumed" "$LOGS/ct-projector.log" | sed 's/\x1b\[[0-9;]*m//g' | head -5
