# Shell functions shared by scripts/opensearch.sh and scripts/elasticsearch.sh
# (sourced, not run).  The caller sets LOG_NAME and STOP_TIMEOUT first.

log() { printf '[%s] %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Loopback only, and never through an http_proxy the environment may set.
http_get() { curl --noproxy '*' -fsS --max-time "${2:-5}" "$1"; }

# A node joins the cluster (transport) before its HTTP layer binds: a joined node's port can
# still refuse connections for a moment. Retry until $2 seconds have passed.
http_get_within() {
  local url=$1 deadline=$((SECONDS + ${2:-60}))
  until http_get "$url" 5 >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.5
  done
}

java_major() {  # prints the feature version of the JDK at $1, e.g. 17
  "$1/bin/java" -XshowSettings:properties -version 2>&1 \
    | sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p' | sed 's/^1\.//'
}

# The first JDK among the candidates ($3...) whose major version is in [$1, $2].
pick_java_between() {
  local lo=$1 hi=$2 cand major
  shift 2
  for cand in "$@"; do
    [[ -n $cand && -x $cand/bin/java ]] || continue
    major=$(java_major "$cand")
    if [[ $major =~ ^[0-9]+$ ]] && (( major >= lo && major <= hi )); then
      echo "$cand"; return 0
    fi
  done
  return 1
}

path_java_home() {  # the JDK that `java` on PATH belongs to, if any
  if command -v java >/dev/null 2>&1; then
    dirname "$(dirname "$(readlink -f "$(command -v java)")")"
  fi
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A base port B such that B..B+n-1 and B+100..B+100+n-1 are all free (http
# and transport ports of n nodes), picked at random so that two runs started
# at the same moment are unlikely to pick the same one.  A port taken between
# this check and the node's bind makes the start fail loudly, never collide.
free_port_base() {  # n
  local n=$1 tries base i ok
  for (( tries = 0; tries < 200; tries++ )); do
    base=$(( 20000 + RANDOM % 30000 ))
    ok=1
    for (( i = 0; i < n; i++ )); do
      if port_busy $((base + i)) || port_busy $((base + 100 + i)); then ok=0; break; fi
    done
    (( ok )) && { echo "$base"; return 0; }
  done
  die "found no free ports on 127.0.0.1"
}

# Pids of processes whose command line (cmdline) or environment (environ) has
# an entry starting with $2: finds the nodes of one run (by their config path)
# even when pid files are lost, and never those of another run.
pids_with_prefix() {  # cmdline|environ prefix
  local f pid
  for f in /proc/[0-9]*/"$1"; do
    pid=${f#/proc/}; pid=${pid%/"$1"}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if tr '\0' '\n' 2>/dev/null <"$f" | grep -q -- "^$2"; then
      echo "$pid"
    fi
  done
}

# SIGTERM (the node shuts down cleanly), then SIGKILL after the grace time.
terminate() {  # pid...
  local pids=("$@") p left i
  (( ${#pids[@]} )) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for (( i = 0; i < STOP_TIMEOUT * 5; i++ )); do
    left=0
    for p in "${pids[@]}"; do alive "$p" && left=1; done
    (( left )) || return 0
    sleep 0.2
  done
  log "still alive after ${STOP_TIMEOUT}s, sending SIGKILL: ${pids[*]}"
  kill -KILL "${pids[@]}" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    left=0
    for p in "${pids[@]}"; do alive "$p" && left=1; done
    (( left )) || return 0
    sleep 0.2
  done
}

tail_logs() {  # log file
  log "---- last lines of $1 ----"
  if [[ -f $1 ]]; then tail -n 40 "$1" >&2; else log "(no log)"; fi
}

# Waits until $1/_cluster/health says yellow or green with $2 nodes; fails as
# soon as one of the pids ($4...) dies.  $3 is the timeout in seconds.
# Prints the last health answer.
wait_healthy() {
  local base=$1 nodes=$2 timeout=$3 p health="" deadline
  shift 3
  deadline=$((SECONDS + timeout))
  while (( SECONDS < deadline )); do
    for p in "$@"; do alive "$p" || { echo "DIED $p"; return 1; }; done
    if health=$(http_get "$base/_cluster/health?wait_for_status=yellow&wait_for_nodes=$nodes&timeout=2s" 5 2>/dev/null) \
       && [[ $health == *'"timed_out":false'* ]]; then
      echo "$health"; return 0
    fi
    sleep 1
  done
  echo "TIMEOUT ${health:-no answer}"
  return 1
}
