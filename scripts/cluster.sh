#!/usr/bin/env bash
# A Docker Swarm of several real nodes on this one machine, for tests and to try paas on
# more than one node. It never touches the machine's own Docker daemon or its swarm.
#
#   scripts/cluster.sh up N [--name NAME] [--managers M] [--subnet 198.18.K.0/24]
#                           [--registry ADDR] [--pool CIDR] [--format env|json]
#                           [--unjoined U] [--tls-registry]
#       N nodes (node 1 a manager, nodes 2..M managers too, the rest workers). Prints the
#       environment that points a client at the cluster: eval "$(scripts/cluster.sh up 3)"
#       --unjoined U: the last U nodes run their dockerd but stay out of the swarm, as new
#       machines to join (scripts/install.sh --join; role "none" in the JSON).
#       --tls-registry: the nodes trust no registry without verified TLS (no
#       --insecure-registry) and each one's dockerd sees a /etc/docker/certs.d of its own
#       (RUN/nodeK/certs.d, bind-mounted in a mount namespace of the node), as separate
#       machines have: a CA written for one node is not trusted by another.
#   scripts/cluster.sh env [--name NAME] [--format env|json]    that environment again
#   scripts/cluster.sh status [--name NAME]                      nodes, daemons, memory
#   scripts/cluster.sh load IMAGE... [--name NAME] [--from DOCKER_HOST]
#       copies images from the machine's daemon (unix:///var/run/docker.sock) to every node
#   scripts/cluster.sh cut NODE | restore NODE [--name NAME]
#       takes a node's link down (a faithful node loss) or back up
#   scripts/cluster.sh down [--name NAME]     removes everything up made; safe to run again
#
# What up makes, for NAME (default "cluster"):
#   network namespaces NAME-br (a bridge, br0) and NAME-node1..N, each node's eth0 a veth
#   into the bridge; a veth NAME-br on the host into the same bridge. One private /24
#   (default: the first free 198.18.K.0/24, a range set aside for network tests) holds
#   every address: the host .1, node K .(10+K). No default route anywhere: nothing leaves.
#   A containerd and a dockerd per node, started in its namespace (nsenter --net, plus
#   unshare --uts for the node's hostname), state under /run/paas-cluster/NAME/nodeK and
#   /var/lib/paas-cluster/NAME/nodeK, containers under the cgroup /paas-cluster/NAME-nodeK.
#   The swarm's overlays come from --pool (default 198.19.0.0/16, /24 each).
#
# Nodes cannot pull from the internet. An image reaches them by `load` (docker save of the
# machine's daemon, docker load into each node), or from a registry listening on the host's
# address on the bridge, .1 (the nodes accept plain HTTP from any port of that address and
# from --registry, default HOST:5000: --insecure-registry).
set -euo pipefail

RUN_BASE=/run/paas-cluster
DATA_BASE=/var/lib/paas-cluster
CGROUP_PARENT=paas-cluster
MAIN_DOCKER=unix:///var/run/docker.sock

log() { printf -- '-----> %s\n' "$*" >&2; }
die() { printf -- ' !     %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}'; }

# ---------------------------------------------------------------- addresses
ip2int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((a << 24) + (b << 16) + (c << 8) + d))
}

# overlaps CIDR CIDR: whether the two ranges share an address.
overlaps() {
  local a=${1%/*} am=${1#*/} b=${2%/*} bm=${2#*/}
  local m=$((am < bm ? am : bm))
  local mask=$(((0xffffffff << (32 - m)) & 0xffffffff))
  [ $(($(ip2int "$a") & mask)) -eq $(($(ip2int "$b") & mask)) ]
}

valid_cidr() {
  [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] || return 1
  local i
  for i in 1 2 3 4; do [ "${BASH_REMATCH[$i]}" -le 255 ] || return 1; done
  [ "${BASH_REMATCH[5]}" -ge 8 ] && [ "${BASH_REMATCH[5]}" -le 30 ]
}

# host_uses CIDR: whether an address or a route of this machine falls in the range.
host_uses() {
  local net=$1 r
  while read -r r; do
    [ -n "$r" ] || continue
    [[ $r == */* ]] || r=$r/32
    overlaps "$r" "$net" && return 0
  done < <({
    ip -4 -o addr show | awk '{print $4}'
    ip -4 route show table all | awk '$1 ~ /^[0-9.]+(\/[0-9]+)?$/ {print $1}'
  })
  return 1
}

claimed() { grep -qxF "$1" "$RUN_BASE"/*/subnet 2>/dev/null; }

# pick_subnet: the first 198.18.K.0/24 that neither this machine nor another cluster uses.
pick_subnet() {
  local k
  for k in $(seq 1 254); do
    claimed "198.18.$k.0/24" || host_uses "198.18.$k.0/24" || {
      echo "198.18.$k.0/24"
      return
    }
  done
  die "no free 198.18.K.0/24 for the cluster; give one with --subnet"
}

# ---------------------------------------------------------------- state
# Every path of cluster $NAME; set_cluster must run first.
set_cluster() {
  NAME=$1
  [[ $NAME =~ ^[a-z][a-z0-9-]{0,11}$ ]] ||
    die "cluster name '$NAME': 1 to 12 lowercase letters, digits or dashes, starting with a letter"
  RUN=$RUN_BASE/$NAME
  DATA=$DATA_BASE/$NAME
  BRNS=$NAME-br
  HOSTLINK=$NAME-br
}

node_ns() { echo "$NAME-node$1"; }
node_run() { echo "$RUN/node$1"; }
node_sock() { echo "$RUN/node$1/docker.sock"; }
node_addr() { echo "${PREFIX}.$((10 + $1))"; }
dk() { local k=$1; shift; docker -H "unix://$(node_sock "$k")" "$@"; }
# node_mntns K: the file holding node K's mount namespace (--tls-registry).
node_mntns() { echo "$RUN/mnt/node$1"; }
# node_certs K: the directory node K's dockerd reads as /etc/docker/certs.d.
node_certs() { if [ -n "$TLS_REGISTRY" ]; then echo "$(node_run "$1")/certs.d"; else echo /etc/docker/certs.d; fi; }
# node_role K: manager, worker, or none for a node left out of the swarm.
node_role() {
  if [ "$1" -gt $((NODES - UNJOINED)) ]; then echo none; elif [ "$1" -le "$MANAGERS" ]; then echo manager; else echo worker; fi
}

# load_state: the subnet and node count recorded by up.
load_state() {
  [ -f "$RUN/subnet" ] && [ -f "$RUN/nodes" ] || die "no cluster '$NAME' (scripts/cluster.sh up N --name $NAME)"
  SUBNET=$(cat "$RUN/subnet")
  PREFIX=${SUBNET%.*}
  NODES=$(cat "$RUN/nodes")
  MANAGERS=$(cat "$RUN/managers" 2>/dev/null || echo 1)
  REGISTRY=$(cat "$RUN/registry" 2>/dev/null || echo "")
  UNJOINED=$(cat "$RUN/unjoined" 2>/dev/null || echo 0)
  TLS_REGISTRY=$(cat "$RUN/tls-registry" 2>/dev/null || echo "")
}

# The network namespaces of cluster $NAME.
our_netns() { ip netns list | awk '{print $1}' | grep -E "^$NAME-(br|node[0-9]+)$" || true; }

# The node numbers of whatever exists of cluster $NAME, even half-built.
existing_nodes() {
  {
    ip netns list | awk '{print $1}' | sed -n "s/^$NAME-node\([0-9]\{1,\}\)$/\1/p"
    for d in "$RUN"/node* "$DATA"/node*; do [ -d "$d" ] && echo "${d##*/node}"; done
  } | grep -E '^[0-9]+$' | sort -un
}

# ---------------------------------------------------------------- processes
# ours PID: whether PID is a live process started for this cluster (its command line
# names this cluster's run directory; a recycled PID does not).
ours() {
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$RUN/"
}

# stop_pids SECONDS PID...: SIGTERM, wait up to SECONDS for every one to exit, SIGKILL the rest.
stop_pids() {
  local wait=$1 pid left i
  shift
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for i in $(seq 1 $((wait * 10))); do
    left=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  log "Killing ${left[*]}, still running after ${wait}s"
  kill -KILL "${left[@]}" 2>/dev/null || true
  for i in $(seq 1 50); do
    left=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.1
  done
}

# daemon_pids WHAT: the live dockerd or containerd PIDs of every node (by their pidfiles).
daemon_pids() {
  local what=$1 k f pid
  for k in $(existing_nodes); do
    for f in "$(node_run "$k")/$what.pid" "$(node_run "$k")/$what.launched.pid"; do
      pid=$(cat "$f" 2>/dev/null) || continue
      ours "$pid" && echo "$pid"
    done
  done | sort -u
}

# The cgroup directories of the cluster's containers, deepest first.
cgroup_dirs() {
  find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -depth -type d -regextype posix-extended \
    -regex ".*/$CGROUP_PARENT/$NAME-node[0-9]+(/.*)?" 2>/dev/null
}

# Every mount under the cluster's directories, deepest first.
our_mounts() {
  awk -v run="$RUN/" -v data="$DATA/" '{ if (index($5, run) == 1 || index($5, data) == 1 || $5"/" == run || $5"/" == data) print $5 }' /proc/self/mountinfo |
    sed 's/\\040/ /g' | sort -r -u
}

# ---------------------------------------------------------------- up
make_network() {
  ip netns add "$BRNS"
  ip -n "$BRNS" link set lo up
  ip -n "$BRNS" link add br0 type bridge
  ip -n "$BRNS" link set br0 up
  # The host's end: the nodes reach a listener on the host's address (a registry), the
  # host reaches the nodes.
  ip link add "$HOSTLINK" type veth peer name host netns "$BRNS"
  ip -n "$BRNS" link set host master br0 up
  ip addr add "$PREFIX.1/24" dev "$HOSTLINK"
  ip link set "$HOSTLINK" up
}

make_node() {
  local k=$1 ns
  ns=$(node_ns "$k")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add eth0 netns "$ns" type veth peer name "node$k" netns "$BRNS"
  ip -n "$BRNS" link set "node$k" master br0 up
  ip -n "$ns" addr add "$(node_addr "$k")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# make_mntns_dir: $RUN/mnt, a private bind mount on itself that holds the nodes' mount
# namespaces (as `ip netns` keeps /run/netns); made once, before the nodes start.
make_mntns_dir() {
  mkdir -p "$RUN/mnt" /etc/docker/certs.d
  mount --bind "$RUN/mnt" "$RUN/mnt"
  mount --make-private "$RUN/mnt"
}

# make_mntns K: a mount namespace for node K, kept in a file under $RUN/mnt, in which the
# node's own certs.d is /etc/docker/certs.d. Slave propagation: mounts made on the machine
# later still reach it.
make_mntns() {
  local k=$1 certs
  certs=$(node_certs "$k")
  mkdir -p "$certs"
  touch "$(node_mntns "$k")"
  unshare --mount="$(node_mntns "$k")" --propagation slave \
    mount --bind "$certs" /etc/docker/certs.d ||
    die "node$k: could not make its mount namespace"
}

# start_node K: the node's containerd, then its dockerd, both in its network namespace.
start_node() {
  local k=$1 ns dir data t i
  ns=$(node_ns "$k")
  dir=$(node_run "$k")
  data=$DATA/node$k
  mkdir -p "$dir/exec" "$dir/containerd" "$data/docker" "$data/containerd"
  echo '{}' >"$dir/daemon.json"
  # Both daemons enter the node's network namespace and, with --tls-registry, its mount
  # namespace (containerd's shims must see the mounts dockerd makes for containers).
  local enter=(nsenter --net="/run/netns/$ns") insecure=(--insecure-registry "$PREFIX.1/32" --insecure-registry "$REGISTRY")
  if [ -n "$TLS_REGISTRY" ]; then
    make_mntns "$k"
    enter+=(--mount="$(node_mntns "$k")")
    insecure=()
  fi
  # Its own containerd, always: a dockerd would otherwise share the machine's system
  # containerd (/run/containerd/containerd.sock) when one runs.
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$data/containerd"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = 0
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = "$dir/containerd/debug.sock"
  level = "info"
[metrics]
  address = ""
EOF
  t=$(now)
  # nsenter, not `ip netns exec`: that remounts /sys and dockerd then finds no cgroups.
  setsid "${enter[@]}" -- containerd --config "$dir/containerd.toml" \
    >"$dir/containerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/containerd.pid"
  for i in $(seq 1 200); do
    [ -S "$dir/containerd/containerd.sock" ] && break
    kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null || { tail -5 "$dir/containerd.log" >&2; die "node$k: containerd exited; see $dir/containerd.log"; }
    sleep 0.05
  done
  [ -S "$dir/containerd/containerd.sock" ] || die "node$k: containerd did not start in 10s; see $dir/containerd.log"
  setsid "${enter[@]}" -- unshare --uts -- sh -c 'hostname "$1" && shift && exec "$@"' sh "$ns" \
    dockerd --config-file "$dir/daemon.json" \
    --data-root "$data/docker" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    -H "unix://$(node_sock "$k")" --containerd "$dir/containerd/containerd.sock" \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$CGROUP_PARENT/$ns" \
    ${insecure[@]+"${insecure[@]}"} \
    >"$dir/dockerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/dockerd.launched.pid"
  for i in $(seq 1 600); do
    curl -fsS -o /dev/null --max-time 2 --unix-socket "$(node_sock "$k")" http://node/_ping 2>/dev/null && break
    kill -0 "$(cat "$dir/dockerd.launched.pid")" 2>/dev/null || { tail -5 "$dir/dockerd.log" >&2; die "node$k: dockerd exited; see $dir/dockerd.log"; }
    sleep 0.05
  done
  curl -fsS -o /dev/null --max-time 2 --unix-socket "$(node_sock "$k")" http://node/_ping ||
    die "node$k: dockerd did not answer in 30s; see $dir/dockerd.log"
  log "node$k ($ns, $(node_addr "$k")): containerd and dockerd answer after $(since "$t")s"
}

# memory K: resident memory of node K's daemons and shims, in MB.
memory() {
  local pids
  pids=$(ip netns pids "$(node_ns "$1")" 2>/dev/null | paste -sd, -)
  [ -n "$pids" ] || { echo 0; return; }
  ps -o rss= -p "$pids" | awk '{s+=$1} END {printf "%d", s/1024}'
}

cmd_up() {
  local n="" managers=1 subnet="" registry="" pool=198.19.0.0/16 format=env name=cluster unjoined=0 tls=""
  while [ $# -gt 0 ]; do
    case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --managers) managers=${2:?--managers needs a value}; shift 2 ;;
    --subnet) subnet=${2:?--subnet needs a value}; shift 2 ;;
    --registry) registry=${2:?--registry needs a value}; shift 2 ;;
    --pool) pool=${2:?--pool needs a value}; shift 2 ;;
    --format) format=${2:?--format needs a value}; shift 2 ;;
    --unjoined) unjoined=${2:?--unjoined needs a value}; shift 2 ;;
    --tls-registry) tls=1; shift ;;
    -*) die "up: unknown flag $1 (scripts/cluster.sh help)" ;;
    *) [ -z "$n" ] || die "up: one node count, got '$n' and '$1'"; n=$1; shift ;;
    esac
  done
  set_cluster "$name"
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: give the number of nodes, 1 to 200 (got '${n}')"
  [[ $managers =~ ^[0-9]+$ ]] && [ "$managers" -ge 1 ] && [ "$managers" -le "$n" ] || die "up: --managers must be 1 to $n (got '$managers')"
  [ "$format" = env ] || [ "$format" = json ] || die "up: --format is env or json (got '$format')"
  [[ $unjoined =~ ^[0-9]+$ ]] && [ "$unjoined" -le $((n - managers)) ] ||
    die "up: --unjoined must be 0 to $((n - managers)), the nodes that are not managers (got '$unjoined')"
  valid_cidr "$pool" || die "up: --pool '$pool' is not an IPv4 CIDR such as 198.19.0.0/16"
  if [ -n "$subnet" ]; then
    [[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+\.0/24$ ]] && valid_cidr "$subnet" || die "up: --subnet '$subnet' must be an IPv4 /24 such as 198.18.7.0/24"
  fi
  preflight
  [ ! -e "$RUN" ] && [ ! -e "$DATA" ] && [ -z "$(our_netns)" ] ||
    die "cluster '$NAME' exists; scripts/cluster.sh down --name $NAME first"

  local t0
  t0=$(now)
  mkdir -p "$RUN_BASE"
  # Choosing the /24 and making the host's link that claims it happen under one lock, so
  # clusters started side by side never get the same one.
  exec 9>"$RUN_BASE/.lock"
  flock 9
  if [ -n "$subnet" ]; then
    ! claimed "$subnet" || { flock -u 9; die "up: $subnet belongs to another cluster: $(grep -lxF "$subnet" "$RUN_BASE"/*/subnet | xargs -n1 dirname | xargs -n1 basename | paste -sd' ')"; }
    ! host_uses "$subnet" || { flock -u 9; die "up: $subnet overlaps an address or route of this machine (ip route); pick another --subnet"; }
  else
    subnet=$(pick_subnet)
  fi
  overlaps "$subnet" "$pool" && { flock -u 9; die "up: --pool $pool overlaps the nodes' $subnet"; }
  SUBNET=$subnet
  PREFIX=${subnet%.*}
  NODES=$n
  MANAGERS=$managers
  UNJOINED=$unjoined
  TLS_REGISTRY=$tls
  REGISTRY=${registry:-$PREFIX.1:5000}
  # From here on a failure removes whatever was made.
  trap 'up_exit $?' EXIT
  mkdir -p "$RUN"
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
  echo "$subnet" >"$RUN/subnet"
  echo "$n" >"$RUN/nodes"
  echo "$managers" >"$RUN/managers"
  echo "$REGISTRY" >"$RUN/registry"
  echo "$UNJOINED" >"$RUN/unjoined"
  echo "$TLS_REGISTRY" >"$RUN/tls-registry"
  make_network
  flock -u 9
  exec 9>&-

  local k t pids=()
  for k in $(seq 1 "$n"); do make_node "$k"; done
  [ -z "$TLS_REGISTRY" ] || make_mntns_dir
  log "Network: $NAME-br bridge namespace, $n node namespaces, host at $PREFIX.1 on $HOSTLINK ($(since "$t0")s)"
  for k in $(seq 1 "$n"); do
    start_node "$k" &
    STARTING+=($!)
  done
  for k in "${STARTING[@]}"; do wait "$k" || die "a node did not start"; done
  STARTING=()

  t=$(now)
  dk 1 swarm init --advertise-addr "$(node_addr 1)" --listen-addr "$(node_addr 1):2377" \
    --default-addr-pool "$pool" --default-addr-pool-mask-length 24 >/dev/null
  log "swarm init on node1: $(since "$t")s"
  local wtoken mtoken
  wtoken=$(dk 1 swarm join-token -q worker)
  mtoken=$(dk 1 swarm join-token -q manager)
  t=$(now)
  # Managers one at a time (each raft member joins a settled quorum), workers all at once.
  for k in $(seq 2 "$managers"); do
    dk "$k" swarm join --token "$mtoken" --advertise-addr "$(node_addr "$k")" --listen-addr "$(node_addr "$k"):2377" "$(node_addr 1):2377" >/dev/null
  done
  pids=()
  for k in $(seq $((managers + 1)) $((n - unjoined))); do
    dk "$k" swarm join --token "$wtoken" --advertise-addr "$(node_addr "$k")" --listen-addr "$(node_addr "$k"):2377" "$(node_addr 1):2377" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || die "a node could not join the swarm"; done
  local members=$((n - unjoined))
  [ "$members" -gt 1 ] && log "$((members - 1)) node(s) joined: $(since "$t")s"
  [ "$unjoined" -gt 0 ] && log "$unjoined node(s) left out of the swarm: $(for k in $(seq $((members + 1)) "$n"); do printf '%s ' "$(node_ns "$k")"; done)"
  local ready=0 i
  for i in $(seq 1 600); do
    ready=$(dk 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
    [ "$ready" -eq "$members" ] && break
    sleep 0.1
  done
  [ "$ready" -eq "$members" ] || die "only $ready of $members nodes are ready after 60s (scripts/cluster.sh status --name $NAME)"
  log "$members node(s) ready: $(since "$t")s after the first join"

  write_env
  local mem=()
  for k in $(seq 1 "$n"); do mem+=("node$k $(memory "$k") MB"); done
  log "Memory (dockerd, containerd): $(printf '%s, ' "${mem[@]}" | sed 's/, $//')"
  log "Cluster $NAME up in $(since "$t0")s: $n node(s) on $SUBNET; scripts/cluster.sh down --name $NAME removes it"
  trap - EXIT HUP INT TERM
  print_env "$format"
}

# The subshells starting nodes, while they run.
STARTING=()

# up_exit RC: on a failure (or a signal), stop the nodes still starting and remove
# whatever up made.
up_exit() {
  local rc=$1
  if [ "$rc" -ne 0 ]; then
    printf -- ' !     up failed; removing what it made\n' >&2
    if [ ${#STARTING[@]} -gt 0 ]; then
      kill -TERM "${STARTING[@]}" 2>/dev/null || true
      wait "${STARTING[@]}" 2>/dev/null || true
    fi
    down_cluster >&2 || true
  fi
  exit "$rc"
}

preflight() {
  [ "$(id -u)" = 0 ] || die "run as root: it makes network namespaces and starts dockerd"
  local c missing=()
  for c in ip nsenter unshare setsid flock dockerd containerd docker curl; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: scripts/install.sh --deps installs them"
}

write_env() {
  {
    echo "export DOCKER_HOST=unix://$(node_sock 1)"
    echo "export PAAS_CLUSTER=$NAME"
    echo "export PAAS_CLUSTER_SUBNET=$SUBNET"
    echo "export PAAS_CLUSTER_HOST_ADDR=$PREFIX.1"
    echo "export PAAS_CLUSTER_REGISTRY=$REGISTRY"
    local k nodes=()
    for k in $(seq 1 "$NODES"); do nodes+=("$(node_ns "$k")=$(node_addr "$k")"); done
    echo "export PAAS_CLUSTER_NODES='${nodes[*]}'"
  } >"$RUN/env"
  {
    printf '{"name":"%s","subnet":"%s","host_addr":"%s","registry":"%s","docker_host":"unix://%s","nodes":[' \
      "$NAME" "$SUBNET" "$PREFIX.1" "$REGISTRY" "$(node_sock 1)"
    for k in $(seq 1 "$NODES"); do
      [ "$k" -gt 1 ] && printf ','
      printf '{"name":"%s","role":"%s","addr":"%s","docker_host":"unix://%s","netns":"%s","data_root":"%s","certs_dir":"%s"}' \
        "$(node_ns "$k")" "$(node_role "$k")" "$(node_addr "$k")" \
        "$(node_sock "$k")" "$(node_ns "$k")" "$DATA/node$k/docker" "$(node_certs "$k")"
    done
    printf ']}\n'
  } >"$RUN/cluster.json"
}

print_env() {
  case $1 in
  json) cat "$RUN/cluster.json" ;;
  *) cat "$RUN/env" ;;
  esac
}

# ---------------------------------------------------------------- down
# down_cluster: removes everything of cluster $NAME that exists, in order; safe when
# half-built and when run again.
down_cluster() {
  local k pids pid sock t
  t=$(now)
  if [ ! -e "$RUN" ] && [ ! -e "$DATA" ] && [ -z "$(our_netns)" ] && [ ! -e "/sys/class/net/$HOSTLINK" ] &&
    [ -z "$(cgroup_dirs)" ]; then
    log "No cluster $NAME: nothing to remove"
    return 0
  fi
  # 1. Services, so their tasks stop cleanly.
  sock=$(node_sock 1)
  if [ -S "$sock" ] && curl -fsS -o /dev/null --max-time 2 --unix-socket "$sock" http://node/_ping 2>/dev/null; then
    local svcs
    svcs=$(dk 1 service ls -q 2>/dev/null || true)
    if [ -n "$svcs" ]; then
      local t1
      t1=$(now)
      # shellcheck disable=SC2086 # one id a word
      dk 1 service rm $svcs >/dev/null 2>&1 || true
      local i left
      for i in $(seq 1 150); do
        left=0
        for k in $(existing_nodes); do
          [ -S "$(node_sock "$k")" ] || continue
          [ -z "$(dk "$k" ps -q 2>/dev/null)" ] || left=1
        done
        [ $left -eq 0 ] && break
        sleep 0.1
      done
      log "$(echo "$svcs" | wc -l) service(s) removed, their containers gone in $(since "$t1")s"
    fi
  fi
  # 2. Each dockerd (it stops its containers), then each containerd, then anything else
  #    left in a node's namespace (shims) or in its containers' cgroups.
  local t1
  t1=$(now)
  mapfile -t pids < <(daemon_pids dockerd)
  stop_pids 30 "${pids[@]}"
  [ ${#pids[@]} -eq 0 ] || log "${#pids[@]} dockerd stopped in $(since "$t1")s"
  mapfile -t pids < <(daemon_pids containerd)
  stop_pids 10 "${pids[@]}"
  pids=()
  for k in $(existing_nodes); do
    mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$(node_ns "$k")" 2>/dev/null)
  done
  local d
  while read -r d; do
    [ -f "$d/cgroup.procs" ] && mapfile -t -O "${#pids[@]}" pids <"$d/cgroup.procs"
  done < <(cgroup_dirs)
  [ ${#pids[@]} -eq 0 ] || { log "Stopping leftover processes ${pids[*]}"; stop_pids 5 "${pids[@]}"; }
  # 3. Mounts the daemons left under their directories.
  local m
  while read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done < <(our_mounts)
  # 4. The links and namespaces.
  ip link del "$HOSTLINK" 2>/dev/null || true
  for k in $(existing_nodes); do ip netns del "$(node_ns "$k")" 2>/dev/null || true; done
  ip netns del "$BRNS" 2>/dev/null || true
  # 5. The cgroups, then the directories (never across a mount that is still there).
  while read -r d; do rmdir "$d" 2>/dev/null || log "could not remove cgroup $d"; done < <(cgroup_dirs)
  # The shared parent goes with the last cluster (rmdir fails while another one uses it).
  find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name "$CGROUP_PARENT" -exec rmdir {} \; 2>/dev/null || true
  if [ -n "$(our_mounts)" ]; then
    die "mounts remain under $RUN or $DATA; not removing them: $(our_mounts | paste -sd' ')"
  fi
  rm -rf --one-file-system "$RUN" "$DATA"
  rmdir "$DATA_BASE" 2>/dev/null || true
  log "Cluster $NAME removed ($(since "$t")s)"
}

cmd_down() {
  local name=cluster
  while [ $# -gt 0 ]; do
    case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    *) die "down: unknown argument $1 (scripts/cluster.sh help)" ;;
    esac
  done
  set_cluster "$name"
  [ "$(id -u)" = 0 ] || die "run as root"
  down_cluster
}

# ---------------------------------------------------------------- status, env, load, cut
cmd_status() {
  local names=() name
  while [ $# -gt 0 ]; do
    case $1 in
    --name) names+=("${2:?--name needs a value}"); shift 2 ;;
    *) die "status: unknown argument $1 (scripts/cluster.sh help)" ;;
    esac
  done
  if [ ${#names[@]} -eq 0 ]; then
    for d in "$RUN_BASE"/*/; do [ -d "$d" ] && names+=("$(basename "$d")"); done
    [ ${#names[@]} -gt 0 ] || { echo "no cluster (scripts/cluster.sh up N)"; return 0; }
  fi
  for name in "${names[@]}"; do
    set_cluster "$name"
    if [ ! -f "$RUN/nodes" ]; then
      echo "cluster $NAME: being made or half removed (scripts/cluster.sh down --name $NAME removes it)"
      continue
    fi
    load_state
    echo "cluster $NAME: $NODES node(s) on $SUBNET, host $PREFIX.1, registry $REGISTRY"
    local k pid state
    for k in $(seq 1 "$NODES"); do
      pid=$(cat "$(node_run "$k")/dockerd.pid" 2>/dev/null || echo "")
      if [ -n "$pid" ] && ours "$pid"; then state="dockerd $pid"; else state="dockerd not running"; fi
      printf '  %-16s %-15s %s, %s MB, %s\n' "$(node_ns "$k")" "$(node_addr "$k")" "$state" "$(memory "$k")" \
        "$(ip -n "$(node_ns "$k")" -br link show eth0 2>/dev/null | awk '{print "eth0 " $2}')"
    done
    for k in $(seq 1 "$MANAGERS"); do
      if dk "$k" node ls 2>/dev/null | sed 's/^/  /'; then break; fi
    done
  done
}

cmd_env() {
  local name=cluster format=env
  while [ $# -gt 0 ]; do
    case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --format) format=${2:?--format needs a value}; shift 2 ;;
    *) die "env: unknown argument $1 (scripts/cluster.sh help)" ;;
    esac
  done
  set_cluster "$name"
  load_state
  print_env "$format"
}

cmd_load() {
  local name=cluster from=$MAIN_DOCKER images=()
  while [ $# -gt 0 ]; do
    case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --from) from=${2:?--from needs a value}; shift 2 ;;
    -*) die "load: unknown flag $1 (scripts/cluster.sh help)" ;;
    *) images+=("$1"); shift ;;
    esac
  done
  [ ${#images[@]} -gt 0 ] || die "load: name the images to copy (scripts/cluster.sh load IMAGE...)"
  set_cluster "$name"
  load_state
  local t tar k pids=()
  t=$(now)
  mkdir -p "$DATA"
  tar=$(mktemp "$DATA/load.XXXXXX")
  docker -H "$from" save "${images[@]}" >"$tar" || { rm -f "$tar"; die "load: could not save ${images[*]} from $from"; }
  for k in $(seq 1 "$NODES"); do
    dk "$k" load -q <"$tar" >/dev/null &
    pids+=($!)
  done
  local failed=0
  for k in "${pids[@]}"; do wait "$k" || failed=1; done
  rm -f "$tar"
  [ $failed -eq 0 ] || die "load: a node refused ${images[*]}"
  log "Loaded ${images[*]} into $NODES node(s) in $(since "$t")s"
}

cmd_link() {
  local state=$1 name=cluster node=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    -*) die "unknown flag $1 (scripts/cluster.sh help)" ;;
    *) node=$1; shift ;;
    esac
  done
  set_cluster "$name"
  load_state
  [[ $node =~ ^(node)?([0-9]+)$ ]] || [[ $node =~ ^$NAME-node([0-9]+)$ ]] || die "name a node: node2 or $NAME-node2"
  local k=${BASH_REMATCH[-1]}
  [ "$k" -ge 1 ] && [ "$k" -le "$NODES" ] || die "no node $node in cluster $NAME (1 to $NODES)"
  ip -n "$(node_ns "$k")" link set eth0 "$state"
  log "$(node_ns "$k"): eth0 $state"
}

main() {
  local cmd=${1:-help}
  [ $# -gt 0 ] && shift
  case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  env) cmd_env "$@" ;;
  load) cmd_load "$@" ;;
  cut) cmd_link down "$@" ;;
  restore) cmd_link up "$@" ;;
  help | -h | --help) usage ;;
  *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
