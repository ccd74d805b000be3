#!/usr/bin/env bash
# Builds the docker compose v2 plugin from its Go module when the docker client has none
# (`docker compose config` needs no engine, only the plugin). Go fetches the sources through
# the Go module proxy; the first build takes minutes, later ones reuse Go's caches.
set -euo pipefail

version=${COMPOSE_VERSION:-v5.6.0}
plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

if docker compose version >/dev/null 2>&1; then
    docker compose version
    exit 0
fi
command -v go >/dev/null || { echo "go is needed to build docker compose" >&2; exit 1; }

# go install refuses modules whose go.mod has exclude directives: build inside the module.
source_dir=$(go mod download -json "github.com/docker/compose/v5@$version" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$source_dir" "$work/compose"
chmod -R u+w "$work/compose"
mkdir -p "$plugins"
(cd "$work/compose" && go build -trimpath -o "$plugins/docker-compose" ./cmd)
docker compose version
