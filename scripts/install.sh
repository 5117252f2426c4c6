#!/usr/bin/env bash
# Brings a Debian 12 machine to a running paas; safe to run again.
#
#   scripts/install.sh          install what is missing, start dockerd and a single-node
#                               swarm, build paasd, start it (SSH on :2222, HTTP on :80)
#   scripts/install.sh --deps   only install and start what paas and its tests need
#   scripts/install.sh --stop   stop the paasd this script started (apps keep serving)
#   scripts/install.sh --bench-deps   also install the benchmark peers (Debian's nginx, wrk, h2load)
#
# Settings come from the environment, as paasd reads them: PAAS_DATA_DIR (/var/lib/paas),
# PAAS_SSH_ADDR (:2222), PAAS_HTTP_PORT (80), PAAS_DOMAIN (paas.localhost),
# PAAS_ADMIN_KEYS (/etc/paas/admin_keys), PAAS_NAME (paas).
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
  local want=(docker.io containerd git openssh-client openssh-server ca-certificates curl unzip procps iproute2 util-linux busybox-static slapd ldap-utils)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
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
    log "Initialising a single-node swarm"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
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

case "${1:-}" in
  --deps) deps ;;
  --bench-deps) deps; bench_deps ;;
  --stop) stop_paasd ;;
  "") deps; build_paasd; start_paasd ;;
  -h|--help) sed -n '2,12p' "$0" ;;
  *) die "unknown option $1 (see --help)" ;;
esac
