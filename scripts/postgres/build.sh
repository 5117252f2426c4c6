#!/usr/bin/env bash
# Builds the image paas runs Postgres databases from, with nothing pulled from a
# registry: a Debian bookworm root made by debootstrap (minbase) plus Debian's own
# postgresql package, imported with `docker import`. Safe to run again: an existing
# image is kept unless --force is given or it was built from another entrypoint.sh
# (its label paas.postgres.entrypoint holds the script's SHA-256).
#
#   scripts/postgres/build.sh [--force]
#
# PAAS_POSTGRES_IMAGE names the image (paas-postgres:15); DEBIAN_MIRROR the mirror
# (http://deb.debian.org/debian).
set -euo pipefail
IMAGE=${PAAS_POSTGRES_IMAGE:-paas-postgres:15}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PG=15

log() { printf -- '-----> %s\n' "$*"; }
die() { printf -- ' !     %s\n' "$*" >&2; exit 1; }

ENTRYPOINT_SUM=$(sha256sum "$(dirname "$0")/entrypoint.sh" | cut -d' ' -f1)
if [ "${1:-}" != --force ] &&
  [ "$(docker image inspect --format '{{index .Config.Labels "paas.postgres.entrypoint"}}' "$IMAGE" 2>/dev/null)" = "$ENTRYPOINT_SUM" ]; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root: debootstrap needs it"
if ! command -v debootstrap >/dev/null 2>&1; then
  log "Installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

tmp=$(mktemp -d /var/tmp/paas-postgres.XXXXXX)
root=$tmp/root
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

log "Building $IMAGE: Debian bookworm (debootstrap minbase) + postgresql-$PG"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 ||
  { tail -30 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }

# No service may start inside the chroot, and the package's own cluster is not
# wanted: the image's entrypoint makes one on the database's volume.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common"
echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "postgresql-$PG" "postgresql-client-$PG" >"$tmp/apt.log" 2>&1 ||
  { tail -30 "$tmp/apt.log" >&2; die "installing postgresql-$PG failed"; }
umount "$root/proc"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
: >"$root/etc/resolv.conf"

# The data directory is the mount point of the database's volume: a new named
# volume takes its owner (postgres) from the image.
install -d -o 0 -g 0 -m 755 "$root/var/lib/postgresql"
chroot "$root" install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
cp "$(dirname "$0")/entrypoint.sh" "$root/usr/local/bin/paas-postgres"
chmod 755 "$root/usr/local/bin/paas-postgres"

log "Importing $IMAGE"
tar -C "$root" --numeric-owner -c . | docker import \
  --change "ENV PATH=/usr/lib/postgresql/$PG/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV PGDATA=/var/lib/postgresql/data" \
  --change "ENV LANG=C.UTF-8" \
  --change "USER postgres" \
  --change "WORKDIR /var/lib/postgresql" \
  --change "EXPOSE 5432" \
  --change 'ENTRYPOINT ["/usr/local/bin/paas-postgres"]' \
  --change "LABEL paas.postgres.entrypoint=$ENTRYPOINT_SUM" \
  - "$IMAGE" >/dev/null
log "$IMAGE ready ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1000000}'))"
