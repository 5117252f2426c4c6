#!/usr/bin/env bash
# Idempotent installer: brings a fresh Debian 12 machine to a running paas.
#   scripts/install.sh            install deps, start dockerd + swarm, build paasd, start it
#   scripts/install.sh --deps     only install and start what paas and its tests need
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf -- '-----> %s\n' "$*"; }

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_missing() { ! dpkg -s "$1" >/dev/null 2>&1; }

install_packages() {
  local pkgs=(docker.io git openssh-client openssh-server ca-certificates make)
  for p in "${pkgs[@]}" "$@"; do pkg_missing "$p" && need_pkgs+=("$p"); done
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  if ! have go && [ -x /usr/local/go/bin/go ]; then export PATH=$PATH:/usr/local/go/bin; fi
  have go || { echo " !     Go is required (https://go.dev/dl); not found" >&2; exit 1; }
}

start_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  log "starting dockerd"
  mkdir -p /var/log/paas
  nohup dockerd >/var/log/paas/dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo " !     dockerd did not start; see /var/log/paas/dockerd.log" >&2
  tail -20 /var/log/paas/dockerd.log >&2
  exit 1
}

start_swarm() {
  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" != "active" ]; then
    log "initialising a single-node swarm"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  fi
}

install_packages
start_docker
start_swarm
log "docker $(docker version --format '{{.Server.Version}}') in swarm mode"
