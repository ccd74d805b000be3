#!/usr/bin/env bash
# `docker compose config` on localstack/docker-compose.yml: parses and validates the file
# without a Docker engine. Falls back to the older docker-compose (Debian's package) where the
# compose plugin is missing. The auth token only has to be set for interpolation here.
set -euo pipefail

file=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/docker-compose.yml
export LOCALSTACK_AUTH_TOKEN=${LOCALSTACK_AUTH_TOKEN:-placeholder-for-config-only}

if docker compose version >/dev/null 2>&1; then
    docker compose -p consim -f "$file" config --quiet
    echo "docker compose config: $file is valid"
elif command -v docker-compose >/dev/null; then
    docker-compose -p consim -f "$file" config --quiet
    echo "docker-compose config: $file is valid"
else
    echo "neither docker compose nor docker-compose is installed" >&2
    exit 1
fi
