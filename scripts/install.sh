#!/usr/bin/env bash
# Brings a Debian 12 machine to a running paas; safe to run again.
#
#   scripts/install.sh          install what is missing, start dockerd and a single-node
#                               swarm, build paasd, start it (SSH on :2222, HTTP on :80)
#   scripts/install.sh --deps   only install and start what paas and its tests need
#   scripts/install.sh --stop   stop the paasd this script started (apps keep serving)
#   scripts/install.sh --bench-deps   also install the benchmark peers (Debian's nginx, wrk, h2load)
#   scripts/install.sh --join --token TOKEN --manager-addr HOST:2377 [--registry HOST:PORT
#                      --registry-ca-sha256 HEX | --registry-ca-file FILE] [--advertise-addr ADDR]
#                      [--docker-certs-dir DIR]
#                               join this machine to a paas swarm: what `ssh paas nodes:join-command`
#                               prints. Installs Docker if missing, trusts the registry's CA (fetched
#                               from the registry, checked against the SHA-256; or FILE) in
#                               DIR/HOST:PORT/ca.crt (PAAS_DOCKER_CERTS_DIR, /etc/docker/certs.d),
#                               joins the swarm; says so and exits 0 when already joined. The Docker
#                               daemon is $DOCKER_HOST's when set.
#
# Settings come from the environment, as paasd reads them: PAAS_DATA_DIR (/var/lib/paas),
# PAAS_SSH_ADDR (:2222), PAAS_HTTP_PORT (80), PAAS_DOMAIN (paas.localhost),
# PAAS_ADMIN_KEYS (/etc/paas/admin_keys), PAAS_NAME (paas). PAAS_ADVERTISE_ADDR: this
# machine's address on the network of the nodes to come; the new swarm advertises it and
# the registry listens on every address and is reached there (PAAS_REGISTRY_ADDR
# 0.0.0.0:5000, PAAS_REGISTRY_ADVERTISE_ADDR). Without it the swarm is made on 127.0.0.1
# and takes no other node.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

GO_VERSION=1.26.8
RUN_DIR=/run/paas
LOG_DIR=/var/log/paas
BIN=/usr/local/bin/paasd

log() { printf -- '-----> %s\n' "$*"; }
die() { printf -- ' !     %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and starts dockerd"

install_packages() {
  # iproute2, util-linux (nsenter, unshare, flock) and containerd also serve scripts/cluster.sh.
  apt_install docker.io containerd git openssh-client openssh-server ca-certificates curl unzip procps iproute2 util-linux busybox-static slapd ldap-utils chromium
}

# apt_install PACKAGE...: installs those of Debian's packages that are missing.
apt_install() {
  local p missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "Installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # slapd is only for the LDAP tests: no configuration, no service started.
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

go_ok() {
  have go || return 1
  local v
  v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$GO_VERSION" "$v" | sort -V | head -1)" = "$GO_VERSION" ]
}

# Go comes from the Go module proxy (the golang.org/toolchain module), which is
# reachable where the rest of the internet may not be.
install_go() {
  [ -x /usr/local/go/bin/go ] && export PATH=/usr/local/go/bin:$PATH
  go_ok && return
  local dir=/usr/local/lib/paas-go/go$GO_VERSION
  if [ ! -x "$dir/bin/go" ]; then
    local proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%,*}
    [ "$proxy" = direct ] || [ "$proxy" = off ] && proxy=https://proxy.golang.org
    log "Installing Go $GO_VERSION from the Go module proxy"
    local tmp
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
    unzip -q "$tmp/go.zip" -d "$tmp"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64" "$dir"
    chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$tmp"
  fi
  export PATH=$dir/bin:$PATH
  ln -sf "$dir/bin/go" /usr/local/bin/go
  ln -sf "$dir/bin/gofmt" /usr/local/bin/gofmt
  go_ok || die "Go $GO_VERSION could not be installed"
}

start_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  # A daemon named by DOCKER_HOST is someone else's to start.
  [ -z "${DOCKER_HOST:-}" ] || die "the Docker daemon at DOCKER_HOST=$DOCKER_HOST does not answer"
  log "Starting dockerd"
  mkdir -p "$LOG_DIR"
  # No systemd on these machines: dockerd runs in the background, detached.
  setsid nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  tail -20 "$LOG_DIR/dockerd.log" >&2
  die "dockerd did not start; see $LOG_DIR/dockerd.log"
}

start_swarm() {
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    log "Initialising a swarm (advertised at ${PAAS_ADVERTISE_ADDR:-127.0.0.1})"
    docker swarm init --advertise-addr "${PAAS_ADVERTISE_ADDR:-127.0.0.1}" >/dev/null
  elif [ -n "${PAAS_ADVERTISE_ADDR:-}" ] && [ "$(docker info --format '{{.Swarm.NodeAddr}}')" != "$PAAS_ADVERTISE_ADDR" ]; then
    log "warning: this machine's swarm advertises $(docker info --format '{{.Swarm.NodeAddr}}'), not PAAS_ADVERTISE_ADDR=$PAAS_ADVERTISE_ADDR; Swarm cannot change that in place"
  fi
}

deps() {
  install_packages
  install_go
  start_docker
  start_swarm
  "$ROOT/scripts/postgres/build.sh"   # the Postgres plugin's image, built here (no pulls)
  scripts/builder/build.sh   # the air-gapped buildpacks builder, the default for source apps
  log "Docker $(docker version --format '{{.Server.Version}}') in swarm mode, $(go version | cut -d' ' -f3)"
}

paasd_pid() {
  local pid
  pid=$(cat "$RUN_DIR/paasd.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_paasd() {
  local pid
  pid=$(paasd_pid) || return 0
  log "Stopping paasd ($pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$RUN_DIR/paasd.pid"
}

build_paasd() {
  log "Building paasd"
  local version
  version=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$BIN.new" ./cmd/paasd
  mv "$BIN.new" "$BIN"
}

# The installing user's key becomes an administrator's: the first one on a
# new machine; on a machine whose admin keys file exists, the user's key is
# added when it is missing (the file's other keys are kept).
seed_admin_key() {
  local keys=$1
  mkdir -p "$(dirname "$keys")"
  local pub=""
  for k in "$HOME"/.ssh/id_ed25519.pub "$HOME"/.ssh/id_ecdsa.pub "$HOME"/.ssh/id_rsa.pub; do
    [ -f "$k" ] && { pub=$k; break; }
  done
  if [ -z "$pub" ]; then
    log "Creating an SSH key for $(id -un) (~/.ssh/id_ed25519)"
    mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
    ssh-keygen -q -t ed25519 -N "" -C "$(id -un)" -f "$HOME/.ssh/id_ed25519"
    pub=$HOME/.ssh/id_ed25519.pub
  fi
  local key
  key=$(awk '{print $1" "$2}' "$pub")
  if [ -f "$keys" ] && grep -qF -- "$key" "$keys"; then
    return
  fi
  log "Adding $pub to the administrators ($keys)"
  touch "$keys" && chmod 600 "$keys"
  if [ -s "$keys" ] && [ -n "$(tail -c1 "$keys")" ]; then echo >>"$keys"; fi
  cat "$pub" >>"$keys"
}

start_paasd() {
  export PAAS_DATA_DIR=${PAAS_DATA_DIR:-/var/lib/paas}
  export PAAS_SSH_ADDR=${PAAS_SSH_ADDR:-:2222}
  export PAAS_HTTP_PORT=${PAAS_HTTP_PORT:-80}
  export PAAS_DOMAIN=${PAAS_DOMAIN:-paas.localhost}
  export PAAS_ADMIN_KEYS=${PAAS_ADMIN_KEYS:-/etc/paas/admin_keys}
  export PAAS_NAME=${PAAS_NAME:-paas}
  if [ -n "${PAAS_ADVERTISE_ADDR:-}" ]; then
    export PAAS_REGISTRY_ADDR=${PAAS_REGISTRY_ADDR:-0.0.0.0:5000}
    export PAAS_REGISTRY_ADVERTISE_ADDR=${PAAS_REGISTRY_ADVERTISE_ADDR:-$PAAS_ADVERTISE_ADDR}
  fi
  seed_admin_key "$PAAS_ADMIN_KEYS"
  stop_paasd
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  log "Starting paasd (log: $LOG_DIR/paasd.log)"
  # paasd logs "router running" once the router runs its image (after an
  # upgrade, once the old router has handed over and stopped).
  local routers_before
  routers_before=$(grep -c '"msg":"router running","image"' "$LOG_DIR/paasd.log" 2>/dev/null || true)
  setsid nohup "$BIN" serve >>"$LOG_DIR/paasd.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/paasd.pid"
  local port=${PAAS_SSH_ADDR##*:}
  for _ in $(seq 1 240); do
    paasd_pid >/dev/null || { tail -20 "$LOG_DIR/paasd.log" >&2; die "paasd exited; see $LOG_DIR/paasd.log"; }
    if [ "$(grep -c '"msg":"router running","image"' "$LOG_DIR/paasd.log" 2>/dev/null || true)" -gt "${routers_before:-0}" ] &&
      curl -s -o /dev/null -w '%{http_code}' -H 'Host: none.invalid' "http://127.0.0.1:$PAAS_HTTP_PORT/" 2>/dev/null | grep -q 404 &&
      (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      trust_host_key "$port"
      log "paas is up: ssh -p $port git@127.0.0.1 help; apps at http://APP.$PAAS_DOMAIN:$PAAS_HTTP_PORT"
      return
    fi
    sleep 0.5
  done
  tail -20 "$LOG_DIR/paasd.log" >&2
  die "paasd did not come up in 120s"
}

# Record paasd's host key so the first ssh/git commands do not stop at a prompt.
trust_host_key() {
  local port=$1 key
  key=$(ssh-keygen -y -f "$PAAS_DATA_DIR/ssh_host_ed25519_key") || return 0
  mkdir -p "$HOME/.ssh" && touch "$HOME/.ssh/known_hosts"
  ssh-keygen -R "[127.0.0.1]:$port" -f "$HOME/.ssh/known_hosts" >/dev/null 2>&1 || true
  echo "[127.0.0.1]:$port $key" >>"$HOME/.ssh/known_hosts"
}

# The benchmark peers (make bench): Debian's nginx and wrk. nginx's package would
# start a system nginx on :80, so service starts are denied while it installs.
bench_deps() {
  local want=(nginx wrk nghttp2-client) missing=() policy=/usr/sbin/policy-rc.d created=""
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "Installing ${missing[*]} (benchmark peers; no service is started)"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local ok=0
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || ok=$?
  if [ -n "$created" ]; then rm -f "$policy"; fi
  [ "$ok" = 0 ] || die "could not install ${missing[*]}"
}

# ---------------------------------------------------------------- joining a node
# join ARGS: what `ssh paas nodes:join-command` printed after --join. Nothing is changed
# until every check that can be made before joining has passed (the arguments, the
# manager's port, the registry's CA), and a failed join takes back the CA it installed.
join() {
  local token="" manager="" registry="" ca_sha="" ca_file="" advertise=""
  local certs=${PAAS_DOCKER_CERTS_DIR:-/etc/docker/certs.d}
  while [ $# -gt 0 ]; do
    case $1 in
    --token) token=${2:?--token needs a value}; shift 2 ;;
    --manager-addr) manager=${2:?--manager-addr needs a value}; shift 2 ;;
    --registry) registry=${2:?--registry needs a value}; shift 2 ;;
    --registry-ca-sha256) ca_sha=${2:?--registry-ca-sha256 needs a value}; shift 2 ;;
    --registry-ca-file) ca_file=${2:?--registry-ca-file needs a value}; shift 2 ;;
    --advertise-addr) advertise=${2:?--advertise-addr needs a value}; shift 2 ;;
    --docker-certs-dir) certs=${2:?--docker-certs-dir needs a value}; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; return ;;
    *) die "--join: unknown argument '$1' (scripts/install.sh --help)" ;;
    esac
  done
  [ -n "$token" ] && [ -n "$manager" ] ||
    die "--join needs --token and --manager-addr: run what 'ssh paas nodes:join-command' prints"
  [[ $token =~ ^SWMTKN-1-[0-9a-z]{1,64}-[0-9a-z]{1,64}$ ]] ||
    die "--token: not a Swarm join token (SWMTKN-1-...): copy it whole from 'ssh paas nodes:join-command'"
  valid_hostport "$manager" || die "--manager-addr '$manager': not HOST:PORT"
  if [ -n "$registry" ]; then
    valid_hostport "$registry" || [[ $registry =~ ^[A-Za-z0-9.-]+$ ]] || die "--registry '$registry': not HOST[:PORT]"
    [ -n "$ca_sha" ] || [ -n "$ca_file" ] || die "--registry needs --registry-ca-sha256 or --registry-ca-file: the CA the nodes must trust"
  else
    [ -z "$ca_sha" ] && [ -z "$ca_file" ] || die "--registry-ca-sha256 and --registry-ca-file need --registry HOST:PORT"
  fi
  if [ -n "$ca_sha" ]; then
    ca_sha=$(printf '%s' "${ca_sha#sha256:}" | tr -d ':' | tr 'A-F' 'a-f')
    [[ $ca_sha =~ ^[0-9a-f]{64}$ ]] || die "--registry-ca-sha256: not a SHA-256 (64 hex digits)"
  fi
  [ -z "$ca_file" ] || [ -r "$ca_file" ] || die "--registry-ca-file $ca_file: cannot read it"
  [ -z "$advertise" ] || [[ $advertise =~ ^[A-Za-z0-9.:%\[\]-]+$ ]] || die "--advertise-addr '$advertise': not an address or interface"
  case $certs in /*) ;; *) die "--docker-certs-dir '$certs': give an absolute path" ;; esac

  # Docker as install.sh installs it for the manager, when missing; a daemon started.
  if ! have docker || { [ -z "${DOCKER_HOST:-}" ] && ! have dockerd; }; then
    apt_install docker.io containerd ca-certificates openssl curl
  fi
  have openssl || apt_install openssl
  start_docker

  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}') || die "cannot read the Docker daemon's swarm state"
  case $state in
  active)
    local managers
    managers=$(docker info --format '{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}')
    case " $managers " in
    *" $manager "*) ;;
    *) die "this machine is already in another swarm (its managers: ${managers:-none known}); 'docker swarm leave' first to join this one" ;;
    esac
    ;;
  pending) die "a join of this machine is under way (docker info: pending); 'docker swarm leave --force' cancels it" ;;
  locked) die "this machine's swarm is locked ('docker swarm unlock')" ;;
  esac

  # The manager must answer on its swarm port before anything is changed: a join to an
  # unreachable manager would otherwise go on in the background.
  local mhost=${manager%:*} mport=${manager##*:}
  mhost=${mhost#[}
  mhost=${mhost%]}
  # shellcheck disable=SC2016 # expanded by the inner shell
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' sh "$mhost" "$mport" 2>/dev/null ||
    die "cannot reach the manager at $manager: is it the address 'nodes:join-command' printed, and is $mport/tcp open from this machine to it?"

  local tmp ca_installed="" ca_dest="" ca_backup=""
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -rf '$tmp'" EXIT
  if [ -n "$registry" ]; then
    registry_ca "$registry" "$ca_sha" "$ca_file" "$tmp"
    ca_dest=$certs/$registry/ca.crt
    if [ -f "$ca_dest" ] && cmp -s "$ca_dest" "$tmp/ca.pem"; then
      log "The registry's CA is already trusted ($ca_dest)"
    else
      [ -f "$ca_dest" ] && { cp -p "$ca_dest" "$tmp/old-ca.pem"; ca_backup=$tmp/old-ca.pem; }
      mkdir -p "$certs/$registry"
      install -m 0644 "$tmp/ca.pem" "$ca_dest.tmp" && mv -f "$ca_dest.tmp" "$ca_dest"
      ca_installed=1
      log "Trusting the registry's CA for $registry ($ca_dest)"
    fi
  fi

  if [ "$state" = active ]; then
    log "This machine is already in the swarm of $manager, as a $(docker info --format '{{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}}') (node $(docker info --format '{{.Swarm.NodeID}}')): nothing to do"
    return 0
  fi

  log "Joining the swarm of $manager"
  local out rc=0
  out=$(docker swarm join --token "$token" ${advertise:+--advertise-addr "$advertise"} "$manager" 2>&1) || rc=$?
  if [ $rc -eq 0 ] && [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
    log "Joined as a $(docker info --format '{{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}}') (node $(docker info --format '{{.Swarm.NodeID}}')); 'ssh paas nodes:list' shows it"
    return 0
  fi
  # Undo: a pending join stops, the CA goes back to what it was.
  [ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = inactive ] || docker swarm leave --force >/dev/null 2>&1 || true
  if [ -n "$ca_installed" ]; then
    if [ -n "$ca_backup" ]; then mv -f "$ca_backup" "$ca_dest"; else rm -f "$ca_dest"; rmdir "$certs/$registry" 2>/dev/null || true; fi
  fi
  case $out in
  *"valid join token is necessary"* | *"invalid join token"*)
    die "the swarm refused the join token: it is wrong, or was replaced (nodes:join-command --rotate); print a new command with 'ssh paas nodes:join-command'" ;;
  *"remote CA does not match fingerprint"*)
    die "the manager at $manager belongs to another swarm than the token's: print the command again with 'ssh paas nodes:join-command'" ;;
  *"could not choose an IP address"* | *"advertise address"*)
    die "this machine has several addresses: give the one the other nodes reach with --advertise-addr ADDR ($out)" ;;
  *"Timeout was reached"*)
    die "the join did not finish in time (stopped): ports 2377/tcp, 7946/tcp+udp and 4789/udp must be open between this machine and the nodes ($out)" ;;
  *) die "docker swarm join failed: $out" ;;
  esac
}

# valid_hostport ADDR: HOST:PORT with a DNS name, an IPv4 address or a [IPv6] address.
valid_hostport() {
  [[ $1 =~ ^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$ ]] && [ "${BASH_REMATCH[2]}" -ge 1 ] && [ "${BASH_REMATCH[2]}" -le 65535 ]
}

# registry_ca REGISTRY SHA256 FILE DIR: writes DIR/ca.pem, the CA to trust for REGISTRY:
# FILE's (checked against SHA256 when given), or, without FILE, the certificate of the
# chain the registry presents whose SHA-256 (of its DER, as nodes:join-command prints it)
# is SHA256. Either way the registry's own certificate must be signed by it for REGISTRY's
# host, so a CA that does not match what serves there is refused before it is installed.
registry_ca() {
  local registry=$1 pin=$2 file=$3 dir=$4 host f sum got=""
  host=${registry%:*}
  [[ $registry == *:* ]] || host=$registry
  host=${host#[}
  host=${host%]}
  local port=${registry##*:} connect=$registry
  [[ $registry == *:* ]] || { port=443; connect=$registry:443; }
  timeout 15 openssl s_client -connect "$connect" -servername "$host" -showcerts </dev/null >"$dir/handshake" 2>"$dir/handshake.err" || true
  awk -v dir="$dir" '/-----BEGIN CERTIFICATE-----/ {n++; f=dir "/chain" n ".pem"} f {print > f} /-----END CERTIFICATE-----/ {f=""}' "$dir/handshake"
  [ -f "$dir/chain1.pem" ] ||
    die "cannot reach the registry at $registry over TLS: is $port/tcp open from this machine to it? ($(tail -1 "$dir/handshake.err" 2>/dev/null))"
  if [ -n "$file" ]; then
    openssl x509 -in "$file" -out "$dir/ca.pem" 2>/dev/null || die "--registry-ca-file $file: not a PEM certificate"
    got=$(openssl x509 -in "$dir/ca.pem" -outform DER | sha256sum | cut -c1-64)
    [ -z "$pin" ] || [ "$got" = "$pin" ] ||
      die "--registry-ca-file $file has SHA-256 $got, not the $pin nodes:join-command printed: refusing to trust it"
  else
    for f in "$dir"/chain*.pem; do
      sum=$(openssl x509 -in "$f" -outform DER 2>/dev/null | sha256sum | cut -c1-64)
      if [ "$sum" = "$pin" ]; then cp "$f" "$dir/ca.pem"; got=$sum; break; fi
    done
    [ -n "$got" ] ||
      die "the registry at $registry presented no CA with SHA-256 $pin: the fingerprint is wrong, or what answers there is not the installation's registry. Nothing was changed; check the command with 'ssh paas nodes:join-command' (or give the CA with --registry-ca-file)"
  fi
  local check=(-verify_hostname "$host")
  [[ $host =~ ^[0-9.]+$ || $host == *:* ]] && check=(-verify_ip "$host")
  openssl verify -CAfile "$dir/ca.pem" "${check[@]}" "$dir/chain1.pem" >/dev/null 2>"$dir/verify.err" ||
    die "the registry's certificate at $registry is not one its CA signed for $host: $(grep -m1 -i error "$dir/verify.err" || cat "$dir/verify.err")"
}

case "${1:-}" in
  --deps) deps ;;
  --join) shift; join "$@" ;;
  --bench-deps) deps; bench_deps ;;
  --stop) stop_paasd ;;
  "") deps; build_paasd; start_paasd ;;
  -h|--help) sed -n '2,25p' "$0" ;;
  *) die "unknown option $1 (see --help)" ;;
esac
