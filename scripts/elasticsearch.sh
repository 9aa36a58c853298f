#!/usr/bin/env bash
# Start and stop a real Elasticsearch node on 127.0.0.1 for Raqib's tests,
# beside scripts/opensearch.sh and with the same interface.  The node is
# Elastic's own integ-test distribution from Maven Central
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip):
# the real bin/elasticsearch launcher with the transport-netty4, x-pack-core
# and x-pack-security modules, and nothing else.  It lacks modules every
# production cluster has (percolator, analysis-common, reindex, lang-painless,
# mapper-extras, rest-root); Raqib probes for them and degrades, and the tests
# cover both paths.
#
# Usage:
#   scripts/elasticsearch.sh start [--version V] [--run-dir DIR] [--http-port P]
#                                  [--heap SIZE]
#   scripts/elasticsearch.sh stop [--run-dir DIR]
#   scripts/elasticsearch.sh status [--run-dir DIR]
#
# V is 9.5.3 (default) or 8.19.21 (any 8.x/9.x on Maven Central should do).
# One node per run dir (--run-dir, else $RAQIB_ELASTICSEARCH_RUN_DIR, else
# $RAQIB_ELASTICSEARCH_HOME/run-<V>): config, data, logs, pid and url live
# there, so runs never collide; the Maven repository and the unpacked
# distribution are shared.  `start` picks a free port unless --http-port is
# given, prints the URL on stdout (progress on stderr) and returns once
# _cluster/health is yellow or green.  Security is off; 127.0.0.1 only.
# Elasticsearch refuses to run as root: as root (CI) the node runs in a user
# namespace as uid 1000 (`unshare --user --map-user=1000 --map-group=1000`;
# without the mapping 9.x fails with "Unable to attach entitlement agent").
#
# Environment:
#   RAQIB_ELASTICSEARCH_HOME       cache root     (default ~/.cache/raqib-elasticsearch)
#   RAQIB_ELASTICSEARCH_M2_REPO    Maven repo     (default $RAQIB_ELASTICSEARCH_HOME/m2)
#   RAQIB_ELASTICSEARCH_RUN_DIR    this run's dir (default $RAQIB_ELASTICSEARCH_HOME/run-<V>)
#   RAQIB_ELASTICSEARCH_JAVA_HOME  JDK            (default: Java 21+ for 9.x, 17-24 for 8.x)
#   RAQIB_ELASTICSEARCH_HEAP       heap           (default 512m)
#   RAQIB_ELASTICSEARCH_TIMEOUT    seconds to wait for health (default 240)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RAQIB_ELASTICSEARCH_HOME:-$HOME/.cache/raqib-elasticsearch}
M2_REPO=${RAQIB_ELASTICSEARCH_M2_REPO:-$CACHE/m2}
HEAP=${RAQIB_ELASTICSEARCH_HEAP:-512m}
START_TIMEOUT=${RAQIB_ELASTICSEARCH_TIMEOUT:-240}
STOP_TIMEOUT=30
CLUSTER_NAME=raqib-test
ES_VERSION=9.5.3
RUN_DIR=${RAQIB_ELASTICSEARCH_RUN_DIR:-}
LOG_NAME=elasticsearch.sh
# shellcheck source=scripts/node-lib.sh
source "$SCRIPT_DIR/node-lib.sh"

set_version() {
  [[ $1 =~ ^[89]\.[0-9]+\.[0-9]+$ ]] || die "--version must be 8.x.y or 9.x.y, not '$1'"
  ES_VERSION=$1
  ES_HOME="$CACHE/dist/elasticsearch-$ES_VERSION"
  RUN_DIR=${RUN_DIR:-$CACHE/run-$ES_VERSION}
}

# 9.x needs Java 21+ (this machine kind ships Temurin 25 beside Java 17);
# 8.19 runs on 17.
pick_java() {
  local jvm=/usr/lib/jvm
  if [[ $ES_VERSION == 9.* ]]; then
    pick_java_between 21 99 "${RAQIB_ELASTICSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}" \
        $jvm/temurin-25-jdk-amd64 $jvm/temurin-21-jdk-amd64 $jvm/java-21-openjdk-amd64 "$(path_java_home)" \
      || die "no Java 21+ found for Elasticsearch $ES_VERSION; set RAQIB_ELASTICSEARCH_JAVA_HOME"
  else
    pick_java_between 17 24 "${RAQIB_ELASTICSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}" \
        $jvm/java-17-openjdk-amd64 $jvm/temurin-21-jdk-amd64 "$(path_java_home)" \
      || die "no Java 17-24 found for Elasticsearch $ES_VERSION; set RAQIB_ELASTICSEARCH_JAVA_HOME"
  fi
}

# Download (once, into the Maven repository) and unpack (once per version).
ensure_dist() {
  local artifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip
  local zip="$M2_REPO/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
  mkdir -p "$CACHE/dist" "$M2_REPO"
  exec 8>"$CACHE/.build.lock"
  flock -w 900 8 || die "timed out waiting for the lock on $CACHE/.build.lock"
  if [[ ! -x $ES_HOME/bin/elasticsearch ]]; then
    if [[ ! -f $zip ]]; then
      command -v mvn >/dev/null || die "mvn not found (Maven downloads the distribution)"
      log "downloading $artifact from Maven Central (~130 MB, once)"
      mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" dependency:get \
          -Dartifact="$artifact" -Dtransitive=false >"$CACHE/build.log" 2>&1 </dev/null \
        || { tail -n 40 "$CACHE/build.log" >&2; die "Maven build failed (full log: $CACHE/build.log)"; }
    fi
    command -v unzip >/dev/null || die "unzip not found (needed to unpack $zip)"
    local tmp="$CACHE/dist/tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    unzip -q "$zip" -d "$tmp" || { rm -rf "$tmp"; die "cannot unpack $zip"; }
    rm -rf "$ES_HOME"
    mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
    rm -rf "$tmp"
  fi
  exec 8>&-
}

write_config() {  # node-dir http-port transport-port
  local dir=$1
  mkdir -p "$dir/config/jvm.options.d" "$dir/data" "$dir/logs" "$dir/tmp"
  cp -r "$ES_HOME/config/." "$dir/config/"
  sed -i -e "s#file=gc.log#file=$dir/logs/gc.log#" -e "s#filecount=32,filesize=64m#filecount=2,filesize=16m#" \
         -e "s#^-XX:ErrorFile=.*#-XX:ErrorFile=$dir/logs/hs_err_pid%p.log#" "$dir/config/jvm.options"
  printf -- '-Xms%s\n-Xmx%s\n' "$HEAP" "$HEAP" >"$dir/config/jvm.options.d/raqib-heap.options"
  cat >"$dir/config/elasticsearch.yml" <<EOF
cluster.name: $CLUSTER_NAME
node.name: node-0
path.data: $dir/data
path.logs: $dir/logs
network.host: 127.0.0.1
http.port: $2
transport.port: $3
discovery.type: single-node
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
EOF
}

our_pids() {  # this run's processes: the launcher (pid file) and the JVMs under its config dir
  local p
  if [[ -f $RUN_DIR/node.pid ]]; then p=$(<"$RUN_DIR/node.pid"); alive "$p" && echo "$p"; fi
  pids_with_prefix environ "ES_PATH_CONF=$RUN_DIR/node/config"
}

cmd_start() {
  local http_port=auto
  while (( $# )); do
    case $1 in
      --version) set_version "${2:?}"; shift 2 ;;
      --run-dir) RUN_DIR=${2:?}; shift 2 ;;
      --http-port) http_port=${2:?}; shift 2 ;;
      --heap) HEAP=${2:?}; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  set_version "$ES_VERSION"
  [[ $http_port == auto ]] && http_port=$(free_port_base 1)
  [[ $http_port =~ ^[0-9]+$ ]] || die "--http-port must be a number"
  port_busy "$http_port" && die "port $http_port is already in use"
  mkdir -p "$RUN_DIR"
  RUN_DIR=$(cd "$RUN_DIR" && pwd)
  exec 9>"$RUN_DIR/.lock"
  flock -w 900 9 || die "timed out waiting for the lock on $RUN_DIR/.lock"
  if [[ -n $(our_pids) ]]; then die "a node is already running in $RUN_DIR; run '$0 stop --run-dir $RUN_DIR' first"; fi
  rm -f "$RUN_DIR/node.pid" "$RUN_DIR/urls"

  local java_home dir="$RUN_DIR/node" pid
  java_home=$(pick_java)
  ensure_dist
  rm -rf "$dir"     # always a brand-new node
  write_config "$dir" "$http_port" $((http_port + 100))
  local ns=()
  (( EUID == 0 )) && ns=(unshare --user --map-user=1000 --map-group=1000)
  (
    exec 9>&-
    cd "$ES_HOME"
    unset JAVA_TOOL_OPTIONS JAVA_OPTS ES_JAVA_OPTS
    export ES_JAVA_HOME="$java_home" ES_PATH_CONF="$dir/config" ES_TMPDIR="$dir/tmp"
    exec setsid "${ns[@]}" "$ES_HOME/bin/elasticsearch" -p "$dir/elasticsearch.pid"
  ) >"$dir/logs/console.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN_DIR/node.pid"
  trap 'if [[ -n ${pid:-} ]]; then log "start failed, stopping the node"; terminate $(our_pids); fi' EXIT
  trap 'exit 130' INT TERM
  log "Elasticsearch $ES_VERSION on Java $(java_major "$java_home"): pid $pid, http $http_port, log $dir/logs/console.log"
  local health
  if ! health=$(wait_healthy "http://127.0.0.1:$http_port" 1 "$START_TIMEOUT" "$pid"); then
    tail_logs "$dir/logs/console.log"
    alive "$pid" || die "the node (pid $pid) exited during startup"
    die "node not healthy after ${START_TIMEOUT}s (last health: ${health#TIMEOUT })"
  fi
  pid=""   # success: the EXIT trap has nothing to clean up
  log "Elasticsearch $ES_VERSION is $(sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' <<<"$health") (heap $HEAP)"
  echo "http://127.0.0.1:$http_port" | tee "$RUN_DIR/urls"
}

cmd_stop() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $RUN_DIR/.lock"
  local pids
  mapfile -t pids < <(our_pids | sort -u)
  if (( ${#pids[@]} )); then
    log "stopping pid(s) ${pids[*]}"
    terminate "${pids[@]}"
  else
    log "no node running"
  fi
  [[ -z $(our_pids) ]] || die "processes still alive after stop: $(our_pids | tr '\n' ' ')"
  rm -rf "$RUN_DIR/node.pid" "$RUN_DIR/urls" "$RUN_DIR/node"
}

cmd_status() {
  if [[ -z $(our_pids) ]]; then echo "not running"; return 1; fi
  local url
  url=$(cat "$RUN_DIR/urls" 2>/dev/null || true)
  echo "running (pid $(cat "$RUN_DIR/node.pid" 2>/dev/null || echo '?')) ${url:-starting}"
  [[ -n $url ]] && echo "health: $(http_get "$url/_cluster/health" 5 2>/dev/null || echo 'no answer')"
  return 0
}

CMD=${1:-}
(( $# )) && shift
if [[ $CMD == stop || $CMD == status ]]; then
  while (( $# )); do
    case $1 in
      --run-dir) RUN_DIR=${2:?}; shift 2 ;;
      --version) set_version "${2:?}"; shift 2 ;;
      *) die "$CMD: unknown option $1" ;;
    esac
  done
  set_version "$ES_VERSION"
fi
case $CMD in
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    sed -n '/^# Usage:/,/^# Environment:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
