#!/usr/bin/env bash
# Runs the whole test suite on this machine, installing what it needs first:
#   1. scripts/install.sh         the README's quickstart install (paasd on :2222 and :80)
#   2. the README's quickstart    its commands, extracted from README.md and run as written
#   3. go test ./...              unit tests and the end-to-end scenarios (real git, ssh,
#                                 Docker/Swarm, registry), each on its own installation
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=${CI:-}

scripts/install.sh
export PATH=/usr/local/go/bin:/usr/local/lib/paas-go/go1.26.8/bin:$PATH

echo "-----> Running the README quickstart"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '/^```sh quickstart$/{on=1; next} /^```$/{on=0} on' README.md >"$work/quickstart.sh"
[ -s "$work/quickstart.sh" ] || { echo " !     no quickstart block in README.md" >&2; exit 1; }
(cd "$work" && REPO="$OLDPWD" bash -euxo pipefail "$work/quickstart.sh")
echo "-----> Quickstart passed"

echo "-----> go test ./..."
go test -count=1 -timeout 60m ./...
