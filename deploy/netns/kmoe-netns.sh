#!/usr/bin/env bash
# A bandwidth-limited "multi-host" network on one machine: a coordinator namespace and N worker
# namespaces, each joined by a veth pair to a bridge that lives in a switch namespace of its own,
# every link limited with tc htb in both directions. Addresses exist only inside the namespaces
# this script creates (no routes out of them; the host's namespace is never touched), and
# everything it created is removed on exit, on failure and on SIGINT/SIGTERM.
#
# This kernel has htb but neither netem nor tbf: bandwidth can be limited, delay cannot be added.
# The real RTT between namespaces is measured (ping when installed, else a TCP echo probe in Node)
# and reported beside every run.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROBE="$SCRIPT_DIR/probe.mjs"
ECHO_PORT=7999

usage() {
  cat <<'EOF'
usage: deploy/netns/kmoe-netns.sh check
       deploy/netns/kmoe-netns.sh run [options]

check   says whether this host can run the network (root, ip netns, veth, bridge, tc htb);
        exit 0 if it can, 3 with the reason if it cannot.
run     creates the namespaces, measures RTT coordinator -> each worker, starts --worker-cmd in
        every worker namespace (background), runs --coordinator-cmd in the coordinator namespace
        (its stdin is not the terminal), then removes everything. Exit status: the coordinator
        command's; 130/143 after SIGINT/SIGTERM.

options of run:
  --workers N            worker namespaces (default 2)
  --rate RATE            bandwidth of every link, each direction, in tc units (100mbit, 1gbit)
                         or 'unlimited' (default unlimited)
  --name NAME            namespace prefix, [a-z0-9]{1,10} (default kmoe<pid>)
  --subnet A.B.C         /24 used inside the namespaces, 10.x.y or 192.168.x (default 10.213.0):
                         coordinator A.B.C.1, worker i A.B.C.(10+i)
  --worker-cmd CMD       shell command run in each worker namespace; {i} is replaced by the
                         worker index, {addr} by its address
  --coordinator-cmd CMD  shell command run in the coordinator namespace
  --rtt-count N          round trips measured per worker (default 20; 0 skips the RTT)
  --wait-port P          after starting the worker commands, wait until every worker accepts
                         TCP connections on port P before the coordinator command starts
  --wait-timeout S       seconds to wait for that (default 600: loading large experts is slow)
  --keep-going SECONDS   with no --coordinator-cmd: keep the network up this long (default 0)

Commands see KMOE_NETNS_INDEX (workers), KMOE_NETNS_ADDR, KMOE_NETNS_COORDINATOR_ADDR,
KMOE_NETNS_WORKER_ADDRS (comma-separated) and KMOE_NETNS_RATE.
EOF
}

say() { printf 'kmoe-netns: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# ---------------------------------------------------------------- capability check
cannot() {
  say "cannot run: $*"
  exit 3
}

check_host() {
  [[ $(id -u) -eq 0 ]] || cannot "needs root (network namespaces and tc); run it with sudo"
  command -v ip >/dev/null || cannot "the 'ip' command (iproute2) is not installed"
  command -v tc >/dev/null || cannot "the 'tc' command (iproute2) is not installed"
  command -v node >/dev/null || cannot "node is not on PATH (the probes and kmoe need it)"
  command -v setsid >/dev/null || cannot "setsid (util-linux) is not installed"
  ip netns list >/dev/null 2>&1 || cannot "'ip netns' does not work here (no network namespace support?)"
  # A throw-away pair of namespaces proves veth, bridge and htb work on this kernel.
  local a="kmoechk$$a" b="kmoechk$$b" why=""
  if ! ip netns add "$a" 2>/dev/null; then cannot "'ip netns add' failed (no CAP_SYS_ADMIN in this container?)"; fi
  ip netns add "$b" 2>/dev/null || why="'ip netns add' failed"
  [[ -n $why ]] || ip link add v0 netns "$a" type veth peer name v1 netns "$b" 2>/dev/null || why="veth pairs are not supported"
  [[ -n $why ]] || ip -n "$a" link add br0 type bridge 2>/dev/null || why="bridges are not supported"
  [[ -n $why ]] || tc -n "$a" qdisc add dev v0 root handle 1: htb default 10 2>/dev/null || why="tc qdisc htb is not available"
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  [[ -z $why ]] || cannot "$why"
}

# ---------------------------------------------------------------- state and cleanup
CREATED_NS=()
STARTED_PGIDS=()
SLEEP_PID=""

cleanup() {
  local status=$?
  # Ignored, not reset, until the end: a Ctrl-C reaches every process of the job and may come again
  # (a caller forwarding it), and with the default action it would end this cleanup, and the ip and
  # sleep it runs (they inherit the ignore), halfway, leaving namespaces behind.
  trap - EXIT
  trap '' INT TERM
  # A leftover sleep would hold our stdout/stderr open for the caller.
  [[ -z $SLEEP_PID ]] || kill -TERM "$SLEEP_PID" 2>/dev/null || true
  for pgid in "${STARTED_PGIDS[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
  if ((${#STARTED_PGIDS[@]} > 0)); then
    sleep 0.2
    for pgid in "${STARTED_PGIDS[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
  fi
  # Reverse order; deleting a namespace removes its veth ends and the bridge with it.
  for ((i = ${#CREATED_NS[@]} - 1; i >= 0; i--)); do
    ip netns del "${CREATED_NS[i]}" 2>/dev/null || say "warning: could not delete namespace ${CREATED_NS[i]}"
  done
  ((${#CREATED_NS[@]} == 0)) || say "removed namespaces ${CREATED_NS[*]}"
  exit "$status"
}

add_ns() {
  local ns=$1
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then die "namespace $ns already exists (another run? pick another --name)"; fi
  ip netns add "$ns"
  CREATED_NS+=("$ns")
  ip -n "$ns" link set lo up
}

# Starts a command in a namespace in its own process group (so cleanup can stop all of it).
start_bg() {
  local ns=$1 cmd=$2
  shift 2
  setsid env "$@" ip netns exec "$ns" sh -c "$cmd" &
  STARTED_PGIDS+=("$!")
}

limit_link() {
  local ns=$1 dev=$2
  [[ $RATE == unlimited ]] && return 0
  tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 10
  # One class, so quantum only silences htb's "quantum is big" warning; it does not shape.
  tc -n "$ns" class add dev "$dev" parent 1: classid 1:10 htb rate "$RATE" ceil "$RATE" quantum 60000
}

# ---------------------------------------------------------------- run
run() {
  WORKERS=2 RATE=unlimited NAME="kmoe$$" SUBNET=10.213.0 WORKER_CMD="" COORD_CMD="" RTT_COUNT=20 KEEP=0 WAIT_PORT="" WAIT_TIMEOUT=600
  while (($# > 0)); do
    case $1 in
      --workers) WORKERS=${2:?--workers needs a value}; shift 2 ;;
      --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      --subnet) SUBNET=${2:?--subnet needs a value}; shift 2 ;;
      --worker-cmd) WORKER_CMD=${2?--worker-cmd needs a value}; shift 2 ;;
      --coordinator-cmd) COORD_CMD=${2?--coordinator-cmd needs a value}; shift 2 ;;
      --rtt-count) RTT_COUNT=${2:?--rtt-count needs a value}; shift 2 ;;
      --keep-going) KEEP=${2:?--keep-going needs a value}; shift 2 ;;
      --wait-port) WAIT_PORT=${2:?--wait-port needs a value}; shift 2 ;;
      --wait-timeout) WAIT_TIMEOUT=${2:?--wait-timeout needs a value}; shift 2 ;;
      -h | --help) usage; exit 0 ;;
      *) say "unknown option '$1'"; usage >&2; exit 2 ;;
    esac
  done
  [[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 1 && WORKERS <= 64)) || { say "--workers must be 1..64"; exit 2; }
  [[ $RTT_COUNT =~ ^[0-9]+$ ]] || { say "--rtt-count must be an integer >= 0"; exit 2; }
  [[ $KEEP =~ ^[0-9]+$ ]] || { say "--keep-going must be whole seconds"; exit 2; }
  [[ -z $WAIT_PORT || $WAIT_PORT =~ ^[0-9]+$ ]] || { say "--wait-port must be a port number"; exit 2; }
  [[ $WAIT_TIMEOUT =~ ^[0-9]+$ ]] && ((WAIT_TIMEOUT > 0)) || { say "--wait-timeout must be whole seconds > 0"; exit 2; }
  [[ $NAME =~ ^[a-z0-9]{1,10}$ ]] || { say "--name must be 1-10 characters of [a-z0-9]"; exit 2; }
  [[ $RATE == unlimited || $RATE =~ ^[0-9]+(\.[0-9]+)?([kmg]bit|[kmg]bps|bit|bps)$ ]] ||
    { say "--rate must be like 100mbit, 1gbit or unlimited, got '$RATE'"; exit 2; }
  # Private ranges only, and only ever configured inside our own namespaces.
  [[ $SUBNET =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ || $SUBNET =~ ^192\.168\.([0-9]{1,3})$ ]] ||
    { say "--subnet must be 10.X.Y or 192.168.X, got '$SUBNET'"; exit 2; }

  check_host
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  local sw="$NAME-sw" coord="$NAME-c"
  local coord_addr="$SUBNET.1"
  local -a worker_ns worker_addr
  for ((i = 0; i < WORKERS; i++)); do
    worker_ns[i]="$NAME-w$i"
    worker_addr[i]="$SUBNET.$((10 + i))"
  done

  add_ns "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local -a nodes=("$coord" "${worker_ns[@]}") addrs=("$coord_addr" "${worker_addr[@]}")
  for ((j = 0; j < ${#nodes[@]}; j++)); do
    local ns=${nodes[j]} port="p$j"
    add_ns "$ns"
    # Created directly inside the two namespaces: no interface ever appears in the host's.
    ip link add eth0 netns "$ns" type veth peer name "$port" netns "$sw"
    ip -n "$sw" link set "$port" master br0
    ip -n "$sw" link set "$port" up
    ip -n "$ns" addr add "${addrs[j]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Egress of both ends: node -> switch (uploads) and switch -> node (downloads).
    limit_link "$ns" eth0
    limit_link "$sw" "$port"
  done
  local worker_list
  worker_list=$(IFS=,; echo "${worker_addr[*]}")
  say "coordinator $coord $coord_addr"
  for ((i = 0; i < WORKERS; i++)); do say "worker $i ${worker_ns[i]} ${worker_addr[i]}"; done
  if [[ $RATE == unlimited ]]; then say "links: no bandwidth limit"; else say "every link: $RATE each way (tc htb)"; fi
  say "no added delay (this kernel has no netem): the RTT below is the real one"

  if ((RTT_COUNT > 0)); then measure_rtt; fi

  local -a env_common=(KMOE_NETNS_COORDINATOR_ADDR="$coord_addr" KMOE_NETNS_WORKER_ADDRS="$worker_list" KMOE_NETNS_RATE="$RATE")
  if [[ -n $WORKER_CMD ]]; then
    for ((i = 0; i < WORKERS; i++)); do
      local cmd=${WORKER_CMD//\{i\}/$i}
      cmd=${cmd//\{addr\}/${worker_addr[i]}}
      start_bg "${worker_ns[i]}" "$cmd" "${env_common[@]}" KMOE_NETNS_INDEX="$i" KMOE_NETNS_ADDR="${worker_addr[i]}"
    done
  fi
  if [[ -n $WAIT_PORT ]]; then
    for ((i = 0; i < WORKERS; i++)); do
      ip netns exec "$coord" node "$PROBE" wait --host "${worker_addr[i]}" --port "$WAIT_PORT" --timeout "$WAIT_TIMEOUT" ||
        die "worker $i (${worker_addr[i]}:$WAIT_PORT) did not accept connections within ${WAIT_TIMEOUT}s"
    done
    say "all workers accept connections on port $WAIT_PORT"
  fi
  local status=0
  if [[ -n $COORD_CMD ]]; then
    # In the background with `wait`, so that a signal to this script is handled at once (bash
    # defers traps until a foreground child exits) and cleanup stops the command too.
    start_bg "$coord" "$COORD_CMD" "${env_common[@]}" KMOE_NETNS_ADDR="$coord_addr"
    wait "${STARTED_PGIDS[-1]}" || status=$?
    say "coordinator command exited with status $status"
  elif ((KEEP > 0)); then
    say "network up for ${KEEP}s (Ctrl-C to stop early)"
    sleep "$KEEP" &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
  fi
  exit "$status"
}

# Prints one line per worker: "rtt worker=I method=... min_ms=... median_ms=... max_ms=...".
measure_rtt() {
  local i
  for ((i = 0; i < WORKERS; i++)); do
    if command -v ping >/dev/null; then
      local out
      out=$(ip netns exec "$coord" ping -n -q -c "$RTT_COUNT" -i 0.2 "${worker_addr[i]}") || die "ping ${worker_addr[i]} failed"
      # rtt min/avg/max/mdev = 0.041/0.052/0.071/0.009 ms
      echo "$out" | awk -v w="$i" -F'[ /=]+' '/^rtt|^round-trip/ {printf "rtt worker=%s method=icmp min_ms=%s avg_ms=%s max_ms=%s\n", w, $6, $7, $8}'
    else
      local pgid_index=${#STARTED_PGIDS[@]}
      start_bg "${worker_ns[i]}" "exec node '$PROBE' echo --port $ECHO_PORT"
      local json
      json=$(ip netns exec "$coord" node "$PROBE" rtt --host "${worker_addr[i]}" --port "$ECHO_PORT" --count "$RTT_COUNT") ||
        die "RTT probe to worker $i failed"
      kill -TERM -- "-${STARTED_PGIDS[pgid_index]}" 2>/dev/null || true
      echo "$json" | node -e '
        const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
        console.log(`rtt worker=${process.argv[1]} method=${r.method} min_ms=${r.min_ms} median_ms=${r.median_ms} max_ms=${r.max_ms}`);
      ' "$i"
    fi
  done
}

case ${1:-} in
  check) check_host; say "this host can run kmoe-netns (root, ip netns, veth, bridge, tc htb)" ;;
  run) shift; run "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
