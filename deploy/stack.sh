#!/usr/bin/env bash
# The local stack: Apache Kafka 4 (KRaft, one combined broker+controller), Postgres and Redis,
# installed and started by the project itself. No Docker engine is needed.
#
#   deploy/stack.sh up      install what is missing, start what is not answering, create topics, verify
#   deploy/stack.sh status  say what answers where
#   deploy/stack.sh down [kafka|postgres|redis] [--kill]
#                           stop what this script started, or one part of it (data is kept);
#                           --kill stops Kafka with SIGKILL, to prove acknowledged records survive a crash
#   deploy/stack.sh reset   down, then wipe the state folder's data (jars stay cached)
#
# Cluster mode: CT_KAFKA_BROKERS=3 runs three KRaft nodes (each broker and controller) on
# 127.0.0.1, node i on CT_KAFKA_PORT + 2(i-1) with its controller on the port after it, data in
# $CT_STATE_DIR/kafka-cluster/node<i>; topics get replication factor 3 and min.insync.replicas 2.
#   CT_KAFKA_BROKERS=3 deploy/stack.sh down kafka-node <i> [--kill]   stop one node
#   CT_KAFKA_BROKERS=3 deploy/stack.sh up                            start what is not running
# The default stays one broker.
#
# Safe to run twice: every step checks before it acts. State lives in $CT_STATE_DIR (default
# <repo>/.state, git-ignored); Kafka records and offsets survive `down`/`up`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CT_STATE_DIR:-$REPO/.state}"
KAFKA_PORT="${CT_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${CT_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${CT_PG_PORT:-5432}"
REDIS_PORT="${CT_REDIS_PORT:-6379}"
# After a kill, the broker recovers and loads every partition before it listens: with the
# thousand-odd partitions a full test run creates, that took 49 s on a quiet 2-core machine and
# more than 90 s under load. The wait ends as soon as Kafka answers, or when its process exits.
KAFKA_START_TIMEOUT="${CT_KAFKA_START_TIMEOUT:-240}"
REDIS_START_TIMEOUT="${CT_REDIS_START_TIMEOUT:-60}"
KAFKA_HEAP="${CT_KAFKA_HEAP:-1G}"
PG_DB="controltower"

BROKERS="${CT_KAFKA_BROKERS:-1}"
CLUSTER_HEAP="${CT_KAFKA_CLUSTER_HEAP:-512M}"
KAFKA_DIR="$STATE/kafka"
[ "$BROKERS" -gt 1 ] && KAFKA_DIR="$STATE/kafka-cluster"
KAFKA_LIB="${CT_KAFKA_LIB_DIR:-$STATE/kafka-lib}"
PG_DIR=""  # set by pg_data_dir once $STATE exists
REDIS_DIR="$STATE/redis"
# The append-only file stays (poller cursors and receipts survive a restart), but never stalls
# the edge: fsync once a second, none while a rewrite's child writes (the main thread blocked on
# fsync behind the child's writes for seconds under load), and rewrites only past 1 GB and
# double the last size (each is a fork and a full write of the data set).
REDIS_PERSISTENCE="--appendfsync everysec --no-appendfsync-on-rewrite yes --auto-aof-rewrite-percentage 100 --auto-aof-rewrite-min-size 1gb"

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port_owner() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -n1
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available to install: $*; install them by hand"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
    sudo="sudo"
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    $sudo apt-get update -qq >/dev/null || die "apt-get update failed; cannot install: $*"
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

ensure_java() {
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    apt_install openjdk-17-jre-headless
  fi
  command -v java >/dev/null 2>&1 || die "Java 17+ is missing and could not be installed (apt-get install openjdk-17-jre-headless)"
  local major; major="$(java_major)"
  [ -n "$major" ] && [ "$major" -ge 17 ] || die "Java 17+ is required for Kafka 4, found: $(java -version 2>&1 | head -n1)"
  command -v mvn >/dev/null 2>&1 || apt_install maven
  command -v mvn >/dev/null 2>&1 || die "Maven is missing and could not be installed (apt-get install maven)"
}

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

ensure_packages() {
  ensure_java
  [ -n "$(pg_bin || true)" ] || apt_install postgresql
  [ -n "$(pg_bin || true)" ] || die "Postgres server binaries are missing and could not be installed (apt-get install postgresql)"
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server is missing and could not be installed (apt-get install redis-server)"
}

# ---------------------------------------------------------------- Kafka
kafka_jars() {
  if [ -f "$KAFKA_LIB/.complete" ] && [ "$KAFKA_LIB/.complete" -nt "$REPO/deploy/kafka/pom.xml" ]; then
    return
  fi
  say "resolving Apache Kafka jars from Maven Central into $KAFKA_LIB"
  rm -rf "$KAFKA_LIB"; mkdir -p "$KAFKA_LIB"
  (cd "$REPO/deploy/kafka" && mvn -q -B dependency:copy-dependencies -Dkafka.lib.dir="$KAFKA_LIB") \
    >"$STATE/mvn.log" 2>&1 || die "could not resolve the Kafka jars with Maven (see $STATE/mvn.log)"
  ls "$KAFKA_LIB"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven ran but no kafka_2.13 jar is in $KAFKA_LIB"
  touch "$KAFKA_LIB/.complete"
}

kafka_properties() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by deploy/stack.sh; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# Flush is left to the OS like in production; durability across a clean restart comes from the log.
log.retention.hours=-1
EOF
  kafka_log4j
}

kafka_log4j() {
  cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
}

kafka_java() {
  java -Xmx256M -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" "$@"
}

kafka_pid() {
  local pid
  pid="$(cat "$KAFKA_DIR/kafka.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

kafka_up() {
  if kafka_pid >/dev/null; then
    say "Kafka already running (pid $(kafka_pid))"
    return
  fi
  if port_open "$KAFKA_PORT"; then
    # Something else listens there: accept it only when it speaks Kafka.
    if "$(ct_admin)" --bootstrap "127.0.0.1:$KAFKA_PORT" ping >/dev/null 2>&1; then
      say "a Kafka broker not started by this script answers on 127.0.0.1:$KAFKA_PORT; using it"
      return
    fi
    die "port $KAFKA_PORT is taken by $(port_owner "$KAFKA_PORT") which is not a Kafka broker; stop it or set CT_KAFKA_PORT"
  fi
  port_open "$KAFKA_CONTROLLER_PORT" && die "port $KAFKA_CONTROLLER_PORT (Kafka controller) is taken by $(port_owner "$KAFKA_CONTROLLER_PORT"); stop it or set CT_KAFKA_CONTROLLER_PORT"
  kafka_jars
  kafka_properties
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/logs/tool.log")" \
      || die "kafka StorageTool random-uuid failed (see $KAFKA_DIR/logs/tool.log)"
    say "formatting KRaft storage (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" --standalone \
      >>"$KAFKA_DIR/logs/tool.log" 2>&1 || die "formatting KRaft storage failed (see $KAFKA_DIR/logs/tool.log)"
  fi
  say "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/stdout.log" 2>&1 &
  echo $! >"$KAFKA_DIR/kafka.pid"
  local waited=0
  until port_open "$KAFKA_PORT"; do
    kafka_pid >/dev/null || die "Kafka exited during start-up: $(tail -n 3 "$KAFKA_DIR/logs/stdout.log" "$KAFKA_DIR/logs/server.log" 2>/dev/null | grep -iE 'error|exception' | head -n1) (see $KAFKA_DIR/logs/server.log)"
    if [ "$waited" -ge "$KAFKA_START_TIMEOUT" ]; then
      kafka_down KILL >/dev/null 2>&1 || true
      die "Kafka did not come up on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (see $KAFKA_DIR/logs/server.log)"
    fi
    sleep 1; waited=$((waited + 1))
  done
}

# ---------------------------------------------------------------- Kafka, cluster mode
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() { echo $((KAFKA_PORT + 2 * ($1 - 1) + 1)); }
node_dir() { echo "$KAFKA_DIR/node$1"; }
node_pid() {
  local pid
  pid="$(cat "$(node_dir "$1")/kafka.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
cluster_bootstrap() {
  local i list=""
  for i in $(seq 1 "$BROKERS"); do list="$list${list:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$list"
}

cluster_properties() {
  local i="$1" dir voters="" j rf=3 isr=2
  [ "$BROKERS" -lt 3 ] && { rf="$BROKERS"; isr=1; }
  dir="$(node_dir "$i")"
  for j in $(seq 1 "$BROKERS"); do voters="$voters${voters:+,}$j@127.0.0.1:$(node_controller_port "$j")"; done
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<EOF
# Written by deploy/stack.sh (cluster mode); edit the script, not this file.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(node_controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$i"),CONTROLLER://127.0.0.1:$(node_controller_port "$i")
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
unclean.leader.election.enable=false
log.retention.hours=-1
EOF
}

cluster_up() {
  local i dir pending waited=0 cluster_id
  kafka_jars
  mkdir -p "$KAFKA_DIR/logs"
  kafka_log4j
  if [ ! -s "$KAFKA_DIR/cluster.id" ]; then
    kafka_java kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id" 2>>"$KAFKA_DIR/logs/tool.log" \
      || die "kafka StorageTool random-uuid failed (see $KAFKA_DIR/logs/tool.log)"
  fi
  cluster_id="$(cat "$KAFKA_DIR/cluster.id")"
  for i in $(seq 1 "$BROKERS"); do
    dir="$(node_dir "$i")"
    if node_pid "$i" >/dev/null; then say "Kafka node $i already running (pid $(node_pid "$i"))"; continue; fi
    port_open "$(node_port "$i")" && die "port $(node_port "$i") (Kafka node $i) is taken by $(port_owner "$(node_port "$i")"); set CT_KAFKA_PORT"
    cluster_properties "$i"
    if [ ! -f "$dir/data/meta.properties" ]; then
      kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
        >>"$KAFKA_DIR/logs/tool.log" 2>&1 || die "formatting node $i failed (see $KAFKA_DIR/logs/tool.log)"
    fi
    say "starting Kafka node $i on 127.0.0.1:$(node_port "$i")"
    nohup java -Xms"$CLUSTER_HEAP" -Xmx"$CLUSTER_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
      -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
    echo $! >"$dir/kafka.pid"
  done
  while :; do
    pending=""
    for i in $(seq 1 "$BROKERS"); do
      node_pid "$i" >/dev/null || die "Kafka node $i exited during start-up (see $(node_dir "$i")/logs/server.log)"
      port_open "$(node_port "$i")" || pending="$pending $i"
    done
    [ -z "$pending" ] && break
    [ "$waited" -ge "$KAFKA_START_TIMEOUT" ] && die "Kafka nodes$pending did not come up within ${KAFKA_START_TIMEOUT}s"
    sleep 1; waited=$((waited + 1))
  done
}

node_down() {
  local i="$1" signal="${2:-TERM}" pid
  pid="$(node_pid "$i" || true)"
  [ -n "$pid" ] || return 0
  say "stopping Kafka node $i (pid $pid, SIG$signal)"
  kill -"$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$(node_dir "$i")/kafka.pid"
}

cluster_down() {
  local i
  for i in $(seq 1 "$BROKERS"); do node_down "$i" "${1:-TERM}"; done
}

kafka_down() {
  local pid signal="${1:-TERM}"
  pid="$(kafka_pid || true)"
  [ -n "$pid" ] || return 0
  say "stopping Kafka (pid $pid, SIG$signal)"
  kill -"$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && { say "Kafka did not stop in 60s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  rm -f "$KAFKA_DIR/kafka.pid"
}

# ---------------------------------------------------------------- Postgres
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_answers() {
  psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -tAc 'SELECT 1' >/dev/null 2>&1
}

# The postgres user must reach its data folder. When the repository sits somewhere it cannot
# traverse (a clone under /root, say), keep the cluster under /var/tmp instead, one per state folder.
pg_data_dir() {
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    echo "/var/tmp/ct-postgres-$(printf '%s' "$STATE" | md5sum | cut -c1-12)"
  else
    echo "$STATE/postgres"
  fi
}

pg_up() {
  local bin; bin="$(pg_bin)"
  if ! pg_answers; then
    if port_open "$PG_PORT"; then
      die "port $PG_PORT is taken by $(port_owner "$PG_PORT") which does not accept postgres://postgres@127.0.0.1:$PG_PORT (trust); stop it or set CT_PG_PORT"
    fi
    if [ ! -f "$PG_DIR/PG_VERSION" ]; then
      say "initialising a Postgres cluster in $PG_DIR"
      mkdir -p "$PG_DIR"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
      chmod 700 "$PG_DIR"
      as_postgres "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 >"$STATE/postgres-init.log" 2>&1 \
        || die "initdb failed (see $STATE/postgres-init.log); if the postgres user cannot reach $PG_DIR, set CT_STATE_DIR to a readable place"
    fi
    say "starting Postgres on 127.0.0.1:$PG_PORT"
    as_postgres "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c max_connections=300 -c fsync=on -c shared_buffers=256MB" start >/dev/null \
      || die "Postgres did not start on 127.0.0.1:$PG_PORT (see $PG_DIR/server.log)"
  fi
  pg_answers || die "Postgres does not answer SELECT 1 on 127.0.0.1:$PG_PORT"
  # Checkpoints by time, not by WAL volume: at 10,000 events/s the default 1 GB of WAL forced one
  # every minute or so, each a burst of writes under load. Applied to a running cluster too.
  psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -qAt \
    -c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "ALTER SYSTEM SET checkpoint_timeout = '15min'" \
    -c "ALTER SYSTEM SET checkpoint_completion_target = 0.9" -c "SELECT pg_reload_conf()" >/dev/null \
    || die "could not apply the checkpoint settings to Postgres on 127.0.0.1:$PG_PORT"
  if [ "$(psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" != 1 ]; then
    psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -qc "CREATE DATABASE $PG_DB" || die "could not create database $PG_DB"
  fi
}

pg_down() {
  [ -f "$PG_DIR/postmaster.pid" ] || return 0
  say "stopping Postgres"
  as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- Redis
redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]; }

redis_up() {
  if ! redis_answers; then
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by $(port_owner "$REDIS_PORT") which does not answer Redis PING; stop it or set CT_REDIS_PORT"
    mkdir -p "$REDIS_DIR"
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$REDIS_DIR" \
      --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --appendonly yes --save "" $REDIS_PERSISTENCE >/dev/null \
      || die "redis-server failed to start (see $REDIS_DIR/redis.log)"
    # A large append-only file is replayed before Redis answers PING (it answers LOADING meanwhile).
    local waited=0
    until redis_answers || [ "$waited" -ge $((REDIS_START_TIMEOUT * 5)) ]; do sleep 0.2; waited=$((waited + 1)); done
  fi
  redis_answers || die "Redis does not answer PING on 127.0.0.1:$REDIS_PORT within ${REDIS_START_TIMEOUT}s (see $REDIS_DIR/redis.log)"
  # Also to a Redis started before these settings (CONFIG SET takes the same pairs).
  # shellcheck disable=SC2086
  set -- $REDIS_PERSISTENCE
  while [ $# -ge 2 ]; do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" CONFIG SET "${1#--}" "$2" >/dev/null 2>&1 || true
    shift 2
  done
  # The edge's idempotency claim is SET NX GET, which Redis 7.0 introduced.
  local version
  version="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p' || true)"
  [ "${version%%.*}" -ge 7 ] 2>/dev/null \
    || die "Redis on 127.0.0.1:$REDIS_PORT is version ${version:-unknown}; the edge needs 7.0+ (stop it, or set CT_REDIS_PORT to a free port)"
}

redis_down() {
  [ -f "$REDIS_DIR/redis.pid" ] || return 0
  say "stopping Redis"
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -f "$REDIS_DIR/redis.pid"
}

# ---------------------------------------------------------------- topics and checks
ct_admin() {
  local bin="${CARGO_TARGET_DIR:-$REPO/target}/debug/ct-admin"
  # Rebuild when missing or stale, but never from inside a cargo command (a test calling this
  # script): cargo holds the build-directory lock there, so a nested build would wait forever.
  if [ ! -x "$bin" ] || { [ -z "${CARGO:-}" ] && [ -n "$(find "$REPO/services/platform" "$REPO/services/core" -newer "$bin" -name '*.rs' -print -quit 2>/dev/null)" ]; }; then
    say "building ct-admin (the first build compiles librdkafka and takes a few minutes)"
    (cd "$REPO" && cargo build -q -p ct-platform --bin ct-admin) >&2 || die "building ct-admin failed"
  fi
  echo "$bin"
}

topics_and_roundtrip() {
  local admin bootstrap="127.0.0.1:$KAFKA_PORT"; admin="$(ct_admin)"
  [ "$BROKERS" -gt 1 ] && bootstrap="$(cluster_bootstrap)"
  "$admin" --bootstrap "$bootstrap" ensure-topics --file "$REPO/deploy/topics.toml" \
    || die "creating the topics of deploy/topics.toml failed"
  "$admin" --bootstrap "$bootstrap" roundtrip --timeout-secs 60 \
    || die "Kafka accepts connections on 127.0.0.1:$KAFKA_PORT but a produce/consume round trip failed (see $KAFKA_DIR/logs/server.log)"
}

status() {
  local k=down p=down r=down i
  if [ "$BROKERS" -gt 1 ]; then
    for i in $(seq 1 "$BROKERS"); do
      k=down; port_open "$(node_port "$i")" && k=up
      echo "Kafka node $i  127.0.0.1:$(node_port "$i")   $k   (data $(node_dir "$i")/data)"
    done
  fi
  port_open "$KAFKA_PORT" && k=up
  [ "$BROKERS" -gt 1 ] || echo "Kafka     127.0.0.1:$KAFKA_PORT   $k   (data $KAFKA_DIR/data, log $KAFKA_DIR/logs/server.log)"
  pg_answers && p=up
  redis_answers && r=up
  cat <<EOF
Postgres  postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB   $p
Redis     redis://127.0.0.1:$REDIS_PORT   $r
EOF
}

# What earlier test and benchmark runs left behind: their topics (`t.<id>.*`, `bench.*`), Postgres
# schemas (`t_<id>*`, `bench_*`) and Redis keys (`t:<id>:*`, `bench:*`). Thousands of leftover
# partitions on one broker slow every group join and restart, and the timing of the outage tests
# with them, so the test command prunes before it runs.
prune() {
  say "deleting leftover test and benchmark topics"
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --delete --topic 't\..*|bench\..*' >>"$KAFKA_DIR/logs/tool.log" 2>&1 || true
  say "dropping leftover test and benchmark schemas"
  psql "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB" -qAtc \
    "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
     WHERE nspname ~ '^(t_[0-9a-f]{12}|bench_)'" 2>/dev/null \
    | psql "postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB" -q >/dev/null 2>&1 || true
  say "deleting leftover test and benchmark Redis keys"
  for pattern in 't:*' 'bench:*'; do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$pattern" \
      | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" unlink >/dev/null 2>&1 || true
  done
}

cmd="${1:-up}"
mkdir -p "$STATE"
PG_DIR="$(pg_data_dir)"
case "$cmd" in
  up)
    ensure_packages
    redis_up
    pg_up
    if [ "$BROKERS" -gt 1 ]; then cluster_up; else kafka_up; fi
    topics_and_roundtrip
    status
    ;;
  status) status ;;
  prune) prune ;;
  down)
    part="${2:-all}"; signal=TERM
    [ "${3:-}" = --kill ] || [ "${2:-}" = --kill ] && signal=KILL
    [ "$part" = --kill ] && part=all
    case "$part" in
      all) if [ "$BROKERS" -gt 1 ]; then cluster_down "$signal"; else kafka_down "$signal"; fi; pg_down; redis_down ;;
      kafka) if [ "$BROKERS" -gt 1 ]; then cluster_down "$signal"; else kafka_down "$signal"; fi ;;
      kafka-node)
        [ "$BROKERS" -gt 1 ] || die "kafka-node needs cluster mode (CT_KAFKA_BROKERS=3)"
        node="${3:-}"; [ -n "$node" ] && [ "$node" -ge 1 ] && [ "$node" -le "$BROKERS" ] || die "kafka-node needs a node number from 1 to $BROKERS"
        signal=TERM; [ "${4:-}" = --kill ] && signal=KILL
        node_down "$node" "$signal" ;;
      postgres) pg_down ;;
      redis) redis_down ;;
      *) die "unknown part '$part' (use kafka, postgres or redis)" ;;
    esac
    ;;
  reset)
    if [ "$BROKERS" -gt 1 ]; then cluster_down; else kafka_down; fi
    pg_down; redis_down
    say "wiping $KAFKA_DIR $PG_DIR $REDIS_DIR"
    rm -rf "$KAFKA_DIR" "$PG_DIR" "$REDIS_DIR"
    ;;
  *) die "unknown command '$cmd' (use up, status, down, prune or reset)" ;;
esac
