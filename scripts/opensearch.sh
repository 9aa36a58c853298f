#!/usr/bin/env bash
# Start and stop a real OpenSearch node, or a small cluster, on 127.0.0.1 for
# Raqib's tests.  No Docker here, and the network reaches only package
# registries, so the node is assembled from Maven Central artifacts by
# scripts/opensearch/pom.xml (OpenSearch's own integ-test distribution plus the
# analysis-common, percolator, lang-painless, mapper-extras and reindex
# modules) and run with its own bin/opensearch launcher, one JVM per node.
#
# Usage:
#   scripts/opensearch.sh start [--run-dir DIR] [--nodes N] [--http-port P]
#                               [--transport-port T] [--data DIR] [--heap SIZE]
#   scripts/opensearch.sh stop [--run-dir DIR]
#   scripts/opensearch.sh stop-node I [--kill] [--run-dir DIR]
#   scripts/opensearch.sh status [--run-dir DIR]
#
# Each run has its own directory (--run-dir, else $RAQIB_OPENSEARCH_RUN_DIR,
# else $RAQIB_OPENSEARCH_HOME/run): pid files, urls, and the nodes' data, logs
# and config.  Two runs with different run dirs never touch each other, so
# two test sessions on one machine can each have their own nodes; only the
# Maven repository and the assembled distribution are shared (built once,
# under a lock).  `stop`, `stop-node` and `status` act on the run dir given.
#
# `start` (defaults: 1 node, free http ports picked at random, transport ports
# http+100) prints one URL per node on stdout (progress goes to stderr) and
# returns once GET /_cluster/health?wait_for_status=yellow answers with all N
# nodes joined.  The URLs are also in $RUN_DIR/urls.  Without --data every
# start gets a brand-new, empty cluster in $RUN_DIR/nodes; --data DIR keeps
# what DIR holds across starts.  `stop-node I` stops node I (0-based) cleanly;
# with --kill it SIGKILLs it (a crash).  `stop` also kills this run's nodes
# whose pid files are gone (found by their config path).
# When run as root (CI), the nodes run with JNA disabled: see write_node_config.
#
# Environment:
#   RAQIB_OPENSEARCH_HOME       cache root           (default ~/.cache/raqib-opensearch)
#   RAQIB_OPENSEARCH_RUN_DIR    this run's directory (default $RAQIB_OPENSEARCH_HOME/run)
#   RAQIB_OPENSEARCH_M2_REPO    Maven local repo     (default $RAQIB_OPENSEARCH_HOME/m2)
#   RAQIB_OPENSEARCH_JAVA_HOME  JDK to run nodes on  (default: first Java 11-23 found)
#   RAQIB_OPENSEARCH_HEAP       heap per node        (default 512m)
#   RAQIB_OPENSEARCH_TIMEOUT    seconds to wait for health (default 180)
set -euo pipefail

OS_VERSION=2.19.6
CLUSTER_NAME=raqib-test

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/opensearch/pom.xml"

CACHE=${RAQIB_OPENSEARCH_HOME:-$HOME/.cache/raqib-opensearch}
# Maven's repository lives in the cache too, so that one directory holds
# everything a cold start downloads (easy to keep, easy to wipe).
M2_REPO=${RAQIB_OPENSEARCH_M2_REPO:-$CACHE/m2}
# DIST_DIR and OS_HOME are set once the build stamp is known (below).
RUN_DIR=${RAQIB_OPENSEARCH_RUN_DIR:-$CACHE/run}   # pid files, urls, nodes of this run
HEAP=${RAQIB_OPENSEARCH_HEAP:-512m}
START_TIMEOUT=${RAQIB_OPENSEARCH_TIMEOUT:-180}
STOP_TIMEOUT=30                    # seconds of SIGTERM grace before SIGKILL
LOG_NAME=opensearch.sh
# shellcheck source=scripts/node-lib.sh
source "$SCRIPT_DIR/node-lib.sh"

# ---------------------------------------------------------------- java ------

# OpenSearch 2.19 needs Java 11-23: it installs the Java security manager,
# which JDK 24+ no longer has (so the Temurin 25 on this machine won't do).
pick_java() {
  pick_java_between 11 23 "${RAQIB_OPENSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}" \
      /usr/lib/jvm/java-17-openjdk-amd64 "$(path_java_home)" \
    || die "no Java 11-23 found for OpenSearch $OS_VERSION; set RAQIB_OPENSEARCH_JAVA_HOME"
}

# --------------------------------------------------------------- build ------

# The distribution is rebuilt when the pom or this script change (the module
# descriptors below are part of this script).
build_stamp() { cat "$POM" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16; }
# One directory per build, so a run with another version of this script (another
# checkout) never replaces the distribution a running node was started from.
DIST_DIR="$CACHE/dist-$(build_stamp)"
OS_HOME="$DIST_DIR/opensearch-$OS_VERSION"

write_module() {  # home name classname extended-plugins description
  local dir="$1/modules/$2"
  [[ -d $dir ]] || die "module $2 missing from the Maven build ($dir)"
  # OpenSearch's gradle build writes this file into each module's zip; the
  # jars on Maven Central don't carry it, so it is written here.
  cat >"$dir/plugin-descriptor.properties" <<EOF
description=$5
version=$OS_VERSION
name=$2
classname=$3
java.version=11
opensearch.version=$OS_VERSION
custom.foldername=
extended.plugins=$4
has.native.controller=false
EOF
}

# Same permissions as the modules' plugin-security.policy in OpenSearch's
# source; without them the security manager blocks painless and reindex.
write_policies() {
  cat >"$1/modules/lang-painless/plugin-security.policy" <<'EOF'
grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";
  // needed to find the classloader to load whitelisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF
  cat >"$1/modules/reindex/plugin-security.policy" <<'EOF'
grant {
  // reindex opens socket connections using the rest client
  permission java.net.SocketPermission "*", "connect";
};
grant codeBase "${codebase.opensearch-rest-client}" {
  permission java.net.NetPermission "getProxySelector";
};
grant codeBase "${codebase.httpasyncclient}" {
  permission java.net.NetPermission "getProxySelector";
};
EOF
}

ensure_dist() {
  mkdir -p "$CACHE"
  # One build at a time per cache (two concurrent first runs would both build).
  exec 8>"$CACHE/.build.lock"
  flock -w 900 8 || die "timed out waiting for the lock on $CACHE/.build.lock"
  ensure_dist_locked
  exec 8>&-
}

ensure_dist_locked() {
  local stamp tmp d
  stamp=$(build_stamp)
  if [[ -f $DIST_DIR/.stamp && $(<"$DIST_DIR/.stamp") == "$stamp" && -x $OS_HOME/bin/opensearch ]]; then
    return 0
  fi
  # Builds of other script versions that no running node uses go (80 MB each).
  for d in "$CACHE"/dist "$CACHE"/dist-*; do
    [[ -d $d && $d != "$DIST_DIR" ]] || continue
    [[ -z $(pids_with_prefix cmdline "-Dopensearch.path.home=$d/") ]] && rm -rf "$d"
  done
  command -v mvn >/dev/null || die "mvn not found (Maven builds the distribution)"
  log "assembling OpenSearch $OS_VERSION from Maven Central into $DIST_DIR (first run downloads ~80 MB)"
  # Build into a fresh directory and swap it in, so an interrupted build never
  # leaves a half-assembled distribution behind.
  tmp="$CACHE/dist.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp" "$M2_REPO"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" -Dmaven.repo.local="$M2_REPO" \
        -Draqib.dist.dir="$tmp" package >"$CACHE/build.log" 2>&1 </dev/null; then
    tail -n 40 "$CACHE/build.log" >&2
    rm -rf "$tmp"
    die "Maven build failed (full log: $CACHE/build.log)"
  fi
  local home="$tmp/opensearch-$OS_VERSION"
  write_module "$home" lang-painless  org.opensearch.painless.PainlessPlugin       ""            "An easy, safe and fast scripting language for OpenSearch"
  write_module "$home" analysis-common org.opensearch.analysis.common.CommonAnalysisPlugin lang-painless 'Adds "built in" analyzers to OpenSearch.'
  write_module "$home" percolator     org.opensearch.percolator.PercolatorPlugin   ""            "Percolator module adds capability to index queries and query these queries by specifying documents"
  write_module "$home" mapper-extras  org.opensearch.index.mapper.MapperExtrasPlugin ""          "Adds advanced field mappers"
  write_module "$home" reindex        org.opensearch.index.reindex.ReindexPlugin   ""            "The Reindex module adds APIs to reindex from one index to another or update documents in place."
  write_policies "$home"
  rm -rf "$tmp/maven-build"
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$DIST_DIR"
  mv "$tmp" "$DIST_DIR"
}

# ----------------------------------------------------------- processes ------

# This run's JVMs, whatever started them: lets `stop` also catch nodes whose
# pid files were lost (stragglers), and never another run's nodes.
our_java_pids() {
  local data
  [[ -f $RUN_DIR/cluster.env ]] || return 0
  data=$(sed -n 's/^DATA=//p' "$RUN_DIR/cluster.env")
  [[ -n $data ]] || return 0
  pids_with_prefix cmdline "-Dopensearch.path.conf=$data/"
}

node_pid() { if [[ -f $RUN_DIR/node-$1.pid ]]; then cat "$RUN_DIR/node-$1.pid"; fi; }

recorded_nodes() {  # indexes of nodes with a pid file, sorted
  local f
  for f in "$RUN_DIR"/node-*.pid; do
    [[ -e $f ]] || continue
    f=${f##*/node-}; echo "${f%.pid}"
  done | sort -n
}


# --------------------------------------------------------------- start ------

write_node_config() {  # node-dir index nodes http-port transport-port
  local dir=$1 i=$2 n=$3 hp=$4 tp=$5 j seeds="" masters=""
  mkdir -p "$dir/config" "$dir/data" "$dir/logs" "$dir/tmp"
  cp "$OS_HOME/config/log4j2.properties" "$dir/config/"
  # The distribution's jvm.options (security manager, G1, ...) with our heap,
  # and its cwd-relative log/dump paths made to point into the node's dir.
  sed -e "s/^-Xms.*/-Xms$HEAP/" -e "s/^-Xmx.*/-Xmx$HEAP/" \
      -e "s#file=logs/gc.log#file=$dir/logs/gc.log#" \
      -e "s#filecount=32,filesize=64m#filecount=2,filesize=16m#" \
      -e "s#^-XX:HeapDumpPath=.*#-XX:HeapDumpPath=$dir/logs#" \
      -e "s#^-XX:ErrorFile=logs/#-XX:ErrorFile=$dir/logs/#" \
      "$OS_HOME/config/jvm.options" >"$dir/config/jvm.options"
  mkdir -p "$dir/config/jvm.options.d"
  if (( EUID == 0 )); then
    # CI and these machines run everything as root, and OpenSearch refuses to
    # start as root ("can not run opensearch as root", no setting overrides
    # it); dropping to another user fails too, since the cache under /root is
    # not reachable by other users.  The check needs JNA's native library:
    # without it OpenSearch logs "cannot check if running as root because JNA
    # is not available" and carries on, losing only native extras that a
    # loopback test node doesn't need (seccomp filter, mlockall, rlimit
    # probes).  jna.noclasspath stops JNA from unpacking its library.
    echo "-Djna.noclasspath=true" >"$dir/config/jvm.options.d/raqib-root.options"
  fi
  for (( j = 0; j < n; j++ )); do
    seeds+="${seeds:+, }\"127.0.0.1:$((tp - i + j))\""
    masters+="${masters:+, }\"node-$j\""
  done
  {
    echo "cluster.name: $CLUSTER_NAME"
    echo "node.name: node-$i"
    echo "path.data: $dir/data"
    echo "path.logs: $dir/logs"
    # Loopback only: also keeps OpenSearch's production bootstrap checks
    # (vm.max_map_count, ...) as warnings instead of fatal errors.
    echo "network.host: 127.0.0.1"
    echo "http.port: $hp"
    echo "transport.port: $tp"
    # Tests fill small disks; never flip indices to read-only on disk usage.
    echo "cluster.routing.allocation.disk.threshold_enabled: false"
    if (( n == 1 )); then
      echo "discovery.type: single-node"
    else
      # Every node is cluster-manager eligible: with 3, losing one keeps quorum.
      echo "discovery.seed_hosts: [$seeds]"
      echo "cluster.initial_cluster_manager_nodes: [$masters]"
    fi
  } >"$dir/config/opensearch.yml"
}

cmd_start() {
  local nodes=1 http_port=auto transport_port="" data="" heap_opt=""
  while (( $# )); do
    case $1 in
      --run-dir) RUN_DIR=${2:?}; shift 2 ;;
      --nodes) nodes=${2:?}; shift 2 ;;
      --http-port) http_port=${2:?}; shift 2 ;;
      --transport-port) transport_port=${2:?}; shift 2 ;;
      --data) data=${2:?}; shift 2 ;;
      --heap) heap_opt=${2:?}; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
  [[ $http_port == auto ]] && http_port=$(free_port_base "$nodes")
  [[ $http_port =~ ^[0-9]+$ ]] || die "--http-port must be a number"
  transport_port=${transport_port:-$((http_port + 100))}
  [[ -n $heap_opt ]] && HEAP=$heap_opt

  mkdir -p "$CACHE" "$RUN_DIR"
  RUN_DIR=$(cd "$RUN_DIR" && pwd)
  # One start/stop at a time per run dir.
  exec 9>"$RUN_DIR/.lock"
  flock -w 900 9 || die "timed out waiting for the lock on $RUN_DIR/.lock"

  local i
  for i in $(recorded_nodes); do
    if alive "$(node_pid "$i")"; then
      die "a cluster is already running (node-$i, pid $(node_pid "$i")); run '$0 stop' first"
    fi
  done
  rm -f "$RUN_DIR"/node-*.pid "$RUN_DIR"/urls "$RUN_DIR"/cluster.env

  for (( i = 0; i < nodes; i++ )); do
    if port_busy $((http_port + i)); then
      die "port $((http_port + i)) (http, node-$i) is already in use"
    fi
    if port_busy $((transport_port + i)); then
      die "port $((transport_port + i)) (transport, node-$i) is already in use"
    fi
  done

  local java_home
  java_home=$(pick_java)
  ensure_dist

  if [[ -z $data ]]; then
    data=$RUN_DIR/nodes
    rm -rf "$data"     # default location: always a brand-new cluster
  fi
  # An explicit --data DIR is kept as is: reuse it only with the same layout.
  mkdir -p "$data"
  data=$(cd "$data" && pwd)
  {
    echo "NODES=$nodes"; echo "HTTP_PORT=$http_port"; echo "TRANSPORT_PORT=$transport_port"
    echo "DATA=$data"
  } >"$RUN_DIR/cluster.env"

  local dir pid
  # If start fails or is interrupted from here on, take down the nodes it
  # started: never leave stray JVMs behind.
  STARTED=()
  trap 'if (( ${#STARTED[@]} )); then log "start failed, stopping the nodes it started"; terminate "${STARTED[@]}"; rm -f "$RUN_DIR"/node-*.pid "$RUN_DIR"/cluster.env; fi' EXIT
  trap 'exit 130' INT TERM    # make Ctrl-C / a killed CI step run the cleanup too

  for (( i = 0; i < nodes; i++ )); do
    dir="$data/node-$i"
    write_node_config "$dir" "$i" "$nodes" $((http_port + i)) $((transport_port + i))
    # cd into the distribution: bin/opensearch calls bin/opensearch-keystore by
    # a relative path.  setsid detaches the node from the caller's session so
    # it outlives this script and a Ctrl-C in the caller's terminal.
    (
      exec 9>&-        # the node must not inherit (and so hold) the lock
      cd "$OS_HOME"
      unset JAVA_TOOL_OPTIONS JAVA_OPTS
      export OPENSEARCH_JAVA_HOME="$java_home" OPENSEARCH_PATH_CONF="$dir/config" \
             OPENSEARCH_TMPDIR="$dir/tmp" OPENSEARCH_JAVA_OPTS=""
      exec setsid "$OS_HOME/bin/opensearch" -p "$dir/opensearch.pid"
    ) >"$dir/logs/console.log" 2>&1 </dev/null &
    pid=$!
    STARTED+=("$pid")
    echo "$pid" >"$RUN_DIR/node-$i.pid"
    log "node-$i: pid $pid, http $((http_port + i)), transport $((transport_port + i)), log $dir/logs/console.log"
  done

  # Wait for the cluster: yellow (or green) with every node joined, via node-0,
  # then each node's own HTTP port.
  local base="http://127.0.0.1:$http_port" health
  if ! health=$(wait_healthy "$base" "$nodes" "$START_TIMEOUT" "${STARTED[@]}"); then
    for (( i = 0; i < nodes; i++ )); do
      alive "${STARTED[$i]}" || { tail_logs "$data/node-$i/logs/console.log"; die "node-$i (pid ${STARTED[$i]}) exited during startup"; }
    done
    tail_logs "$data/node-0/logs/console.log"
    die "cluster not healthy after ${START_TIMEOUT}s (last health: ${health#TIMEOUT })"
  fi
  for (( i = 1; i < nodes; i++ )); do
    http_get_within "http://127.0.0.1:$((http_port + i))/" 60 || die "node-$i does not answer on its http port"
  done
  STARTED=()   # success: the EXIT trap has nothing to clean up

  local status
  status=$(sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' <<<"$health")
  log "cluster '$CLUSTER_NAME' is $status with $nodes node(s) (OpenSearch $OS_VERSION, heap $HEAP per node)"
  : >"$RUN_DIR/urls"
  for (( i = 0; i < nodes; i++ )); do
    echo "http://127.0.0.1:$((http_port + i))" | tee -a "$RUN_DIR/urls"
  done
}

# ---------------------------------------------------------------- stop ------

cmd_stop() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $RUN_DIR/.lock"
  local pids=() i p
  for i in $(recorded_nodes); do
    p=$(node_pid "$i")
    alive "$p" && pids+=("$p")
  done
  # Stragglers: this run's JVMs without a pid file.
  for p in $(our_java_pids); do
    [[ " ${pids[*]} " == *" $p "* ]] || { log "also stopping straggler pid $p"; pids+=("$p"); }
  done
  if (( ${#pids[@]} )); then
    log "stopping pid(s) ${pids[*]}"
    terminate "${pids[@]}"
  else
    log "no node running"
  fi
  # Anything still here ignored SIGKILL (should not happen): say so loudly.
  p=$(our_java_pids | tr '\n' ' ')
  [[ -z ${p// } ]] || die "processes still alive after stop: $p"
  rm -f "$RUN_DIR"/node-*.pid "$RUN_DIR"/urls "$RUN_DIR"/cluster.env
  # the nodes' data of a default (not --data) start goes with them
  rm -rf "$RUN_DIR/nodes"
}

cmd_stop_node() {
  local i=${1:-} hard=0
  [[ $i =~ ^[0-9]+$ ]] || die "usage: $0 stop-node I [--kill]   (I is the 0-based node index)"
  [[ ${2:-} == --kill ]] && hard=1
  local p
  p=$(node_pid "$i")
  [[ -n $p ]] || die "node-$i is not recorded as running (see '$0 status')"
  if alive "$p"; then
    if (( hard )); then
      # Simulates a crash: no clean shutdown, the cluster must notice by itself.
      log "killing node-$i (pid $p) with SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      terminate "$p"
    else
      log "stopping node-$i (pid $p)"
      terminate "$p"
    fi
  else
    log "node-$i (pid $p) was not running"
  fi
  rm -f "$RUN_DIR/node-$i.pid"
  if [[ -f $RUN_DIR/urls ]]; then
    grep -vxF "http://127.0.0.1:$(( $(sed -n 's/^HTTP_PORT=//p' "$RUN_DIR/cluster.env") + i ))" \
      "$RUN_DIR/urls" >"$RUN_DIR/urls.new" || true
    mv "$RUN_DIR/urls.new" "$RUN_DIR/urls"
  fi
}

# -------------------------------------------------------------- status ------

cmd_status() {
  local i p http_port=0 up=0 down=0 url=""
  if [[ -f $RUN_DIR/cluster.env ]]; then
    http_port=$(sed -n 's/^HTTP_PORT=//p' "$RUN_DIR/cluster.env")
  fi
  for i in $(recorded_nodes); do
    p=$(node_pid "$i")
    if alive "$p"; then
      up=$((up + 1)); url=${url:-http://127.0.0.1:$((http_port + i))}
      echo "node-$i  pid $p  running  http://127.0.0.1:$((http_port + i))"
    else
      down=$((down + 1))
      echo "node-$i  pid $p  NOT running"
    fi
  done
  if (( up + down == 0 )); then
    echo "not running"
    return 1
  fi
  if [[ -n $url ]]; then
    echo "health: $(http_get "$url/_cluster/health" 5 2>/dev/null || echo 'no answer')"
  fi
  (( down == 0 ))
}

# ---------------------------------------------------------------- main ------

# --run-dir DIR may come anywhere after the command (start parses its own).
ARGS=()
CMD=${1:-}
(( $# )) && shift
while (( $# )); do
  if [[ $CMD != start && $1 == --run-dir ]]; then RUN_DIR=${2:?}; shift 2; else ARGS+=("$1"); shift; fi
done
case $CMD in
  start) cmd_start "${ARGS[@]}" ;;
  stop) cmd_stop ;;
  stop-node) cmd_stop_node "${ARGS[@]}" ;;
  status) cmd_status ;;
  *)
    sed -n '/^# Usage:/,/^# When run as root/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
