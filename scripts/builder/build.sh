#!/usr/bin/env bash
# Builds paas's air-gapped Cloud Native Buildpacks builder into the local Docker
# daemon, pulling no image: safe to run again (it does nothing when the builder
# of these sources already exists).
#
#   paas/cnb-build:TAG    build image: busybox (Debian's busybox-static), user cnb
#                         1000:1000, the host's Go toolchain in /usr/local/go
#   paas/cnb-run:TAG      run image: busybox, user cnb
#   paas/cnb-builder:TAG  the builder: lifecycle compiled from its Go module, the
#                         buildpacks of builder/buildpacks (go, static, procfile)
#   paas/cnb-builder:latest  what paasd uses by default
#
# Needs: docker, go, /bin/busybox (apt-get install busybox-static).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LIFECYCLE_VERSION=0.21.0
log() { printf -- '-----> %s\n' "$*"; }
die() { printf -- ' !     %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker is required"
command -v go >/dev/null || die "go is required"
[ -x /bin/busybox ] || die "/bin/busybox is required: apt-get install busybox-static"
GOROOT_HOST=$(go env GOROOT)
GOVERSION=$(go env GOVERSION)

# The tag follows everything the builder is made of.
TAG=$( {
  echo "lifecycle $LIFECYCLE_VERSION $GOVERSION"
  sha256sum /bin/busybox
  cat scripts/builder/build.sh scripts/builder/create/*.go
  find builder/buildpacks -type f -name '*.go' | sort | xargs cat
} | sha256sum | cut -c1-12)
BUILDER=paas/cnb-builder:$TAG
if docker image inspect "$BUILDER" >/dev/null 2>&1 && [ "${1:-}" != --force ]; then
  docker tag "$BUILDER" paas/cnb-builder:latest
  log "Builder $BUILDER is up to date"
  exit 0
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

log "Compiling the CNB lifecycle $LIFECYCLE_VERSION from its Go module"
src=$(cd "$ROOT" && go mod download -json "github.com/buildpacks/lifecycle@v$LIFECYCLE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || die "go mod download of the lifecycle failed"
cp -r "$src" "$work/lifecycle-src" && chmod -R u+w "$work/lifecycle-src"
mkdir -p "$work/lifecycle/lifecycle"
(
  cd "$work/lifecycle-src"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
  ld="-s -w -X github.com/buildpacks/lifecycle/cmd.Version=$LIFECYCLE_VERSION -X github.com/buildpacks/lifecycle/cmd.SCMRepository=github.com/buildpacks/lifecycle"
  go build -trimpath -ldflags "$ld" -o "$work/lifecycle/lifecycle/lifecycle" ./cmd/lifecycle
  go build -trimpath -ldflags "$ld" -o "$work/lifecycle/lifecycle/launcher" ./cmd/launcher
  for l in detector analyzer restorer builder exporter rebaser creator extender; do
    ln -s lifecycle "$work/lifecycle/lifecycle/$l"
  done
  # Minimal SBOMs of the lifecycle and launcher: the exporter adds them to
  # every image and warns when they are missing.
  for bin in lifecycle launcher; do
    printf '{"bomFormat":"CycloneDX","specVersion":"1.4","version":1,"metadata":{"component":{"type":"application","name":"%s","version":"%s"}}}\n' "$bin" "$LIFECYCLE_VERSION" >"$work/lifecycle/lifecycle/$bin.sbom.cdx.json"
    printf '{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"%s","packages":[]}\n' "$bin" >"$work/lifecycle/lifecycle/$bin.sbom.spdx.json"
    printf '{"artifacts":[],"source":{"type":"file","target":"%s"}}\n' "$bin" >"$work/lifecycle/lifecycle/$bin.sbom.syft.json"
  done
  go run ./tools/packager -inputDir "$work/lifecycle/lifecycle" -archivePath "$work/lifecycle.tgz" \
    -descriptorPath lifecycle.toml -version "$LIFECYCLE_VERSION" >/dev/null
)

log "Compiling the buildpacks"
for bp in go static procfile; do
  d=$work/buildpacks/$bp
  mkdir -p "$d/bin"
  cat >"$d/buildpack.toml" <<TOML
api = "0.10"

[buildpack]
  id = "paas/$bp"
  version = "0.1.0"
  name = "paas $bp"

[[targets]]
  os = "linux"
  arch = "amd64"
TOML
done
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/cnb" ./builder/buildpacks/cnb
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/buildpacks/static/bin/paas-static" ./builder/buildpacks/staticserver
for bp in go static procfile; do
  cp "$work/cnb" "$work/buildpacks/$bp/bin/detect"
  cp "$work/cnb" "$work/buildpacks/$bp/bin/build"
done

# A busybox root with the cnb user: the base of both images.
rootfs() {
  local r=$1
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/home/cnb" "$r/usr/bin" "$r/workspace"
  cp /bin/busybox "$r/bin/busybox"
  for app in $(/bin/busybox --list); do
    [ "$app" = busybox ] || ln -sf busybox "$r/bin/$app"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\ncnb:x:1000:1000:cnb:/home/cnb:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\ncnb:x:1000:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
}
image() { # NAME CONTEXT EXTRA-DOCKERFILE-LINES
  cat >"$2/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
$3
ENV PATH=/usr/local/go/bin:/bin:/usr/bin CNB_USER_ID=1000 CNB_GROUP_ID=1000
LABEL io.buildpacks.base.distro.name=busybox io.buildpacks.base.distro.version=1.35 io.buildpacks.stack.id=io.paas.busybox
USER 1000:1000
DOCKERFILE
  docker build -q -t "$1" "$2" >"$2.log" 2>&1 || { cat "$2.log" >&2; die "docker build of $1 failed"; }
}

log "Building the run image paas/cnb-run:$TAG"
rootfs "$work/run/rootfs"
chown -R 1000:1000 "$work/run/rootfs/home/cnb" "$work/run/rootfs/workspace"
image "paas/cnb-run:$TAG" "$work/run" ""

log "Building the build image paas/cnb-build:$TAG (with $GOVERSION from $GOROOT_HOST)"
rootfs "$work/build/rootfs"
chown -R 1000:1000 "$work/build/rootfs/home/cnb" "$work/build/rootfs/workspace"
mkdir -p "$work/build/go"
# The toolchain minus what a build never reads.
tar -C "$GOROOT_HOST" --exclude=./test --exclude=./doc --exclude=./api --exclude=./misc \
  --exclude='./pkg/tool/*/api' --exclude='./src/*/testdata' -cf - . | tar -C "$work/build/go" -xf -
image "paas/cnb-build:$TAG" "$work/build" "COPY go/ /usr/local/go/"
# Compile the standard library once, here, into a seed build cache the Go
# buildpack starts an app's cache from: a first build then compiles the app only.
log "Seeding the Go build cache of the build image"
seed=paas-cnb-seed-$TAG
docker rm -f "$seed" >/dev/null 2>&1 || true
docker run --name "$seed" --network none -e CGO_ENABLED=0 -e GOTOOLCHAIN=local -e GOENV=off \
  -e GOCACHE=/usr/local/go-cache -e HOME=/tmp -u 0:0 "paas/cnb-build:$TAG" \
  sh -c 'go build -trimpath -ldflags="-s -w" std && chmod -R a+rX /usr/local/go-cache' >/dev/null
docker commit -c "USER 1000:1000" "$seed" "paas/cnb-build:$TAG" >/dev/null
docker rm -f "$seed" >/dev/null

log "Creating the builder $BUILDER"
cat >"$work/builder.toml" <<TOML
description = "paas air-gapped builder: Go, static sites, Procfile"

[[buildpacks]]
  uri = "$work/buildpacks/go"
[[buildpacks]]
  uri = "$work/buildpacks/static"
[[buildpacks]]
  uri = "$work/buildpacks/procfile"

[[order]]
  [[order.group]]
    id = "paas/go"
    version = "0.1.0"
  [[order.group]]
    id = "paas/procfile"
    version = "0.1.0"
    optional = true
[[order]]
  [[order.group]]
    id = "paas/static"
    version = "0.1.0"
  [[order.group]]
    id = "paas/procfile"
    version = "0.1.0"
    optional = true
[[order]]
  [[order.group]]
    id = "paas/procfile"
    version = "0.1.0"

[lifecycle]
  uri = "$work/lifecycle.tgz"

[build]
  image = "paas/cnb-build:$TAG"

[[run.images]]
  image = "paas/cnb-run:$TAG"

[[targets]]
  os = "linux"
  arch = "amd64"
TOML
go run ./scripts/builder/create -config "$work/builder.toml" -name "$BUILDER"
docker tag "$BUILDER" paas/cnb-builder:latest
log "Builder $BUILDER ready (also tagged paas/cnb-builder:latest)"
# Older builders of this script: their tags go (images in use stay).
for repo in paas/cnb-builder paas/cnb-build paas/cnb-run; do
  docker images "$repo" --format '{{.Repository}}:{{.Tag}}' | while read -r ref; do
    case "$ref" in *:"$TAG"|*:latest) ;; *) docker rmi "$ref" >/dev/null 2>&1 || true ;; esac
  done
done
