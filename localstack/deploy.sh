#!/usr/bin/env bash
# Deploys template.yaml to LocalStack and feeds its functions from Redpanda (`make deploy-local`).
#
#   localstack/deploy.sh          build, deploy, then run the Kafka bridge in the foreground
#   localstack/deploy.sh down     stop LocalStack, Redpanda and Postgres and drop their data
#
# LocalStack's free tier has no Kafka event source mappings, so the stack goes up without them
# and the emulator's bridge (python -m emulator bridge) consumes the topics with the template's
# mapping settings and calls the deployed functions through LocalStack's Lambda Invoke API.
#
# DEPLOY_TARGET=emulator skips Docker and SAM and points the bridge at an Invoke API already
# running (the native emulator's, INVOKE_ENDPOINT or API_URL): that is how the bridge step is
# tested on machines without a Docker engine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

target=${DEPLOY_TARGET:-localstack}
stack=${STACK_NAME:-consim-local}
stage=${STAGE:-local}
python=${PYTHON:-$root/.venv/bin/python}
sam=${SAM:-$root/.venv-sam/bin/sam}
compose_file=$here/docker-compose.yml
endpoint=${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}
# Function containers reach the brokers by service name; the bridge on the host by port.
function_kafka=${FUNCTION_KAFKA_BOOTSTRAP:-redpanda:9092}
bridge_kafka=${BRIDGE_KAFKA_BOOTSTRAP:-127.0.0.1:19092}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p consim -f "$compose_file" "$@"
    elif command -v docker-compose >/dev/null; then
        docker-compose -p consim -f "$compose_file" "$@"
    else
        die "docker compose is not installed"
    fi
}

aws_env() {
    export AWS_ENDPOINT_URL=$endpoint
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
    export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
    export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
    export AWS_REGION=$AWS_DEFAULT_REGION
    export SAM_CLI_TELEMETRY=0
}

sam_deploy() {
    local provider_url=$1
    "$sam" deploy \
        --template-file "$deployed" \
        --stack-name "$stack" \
        --s3-bucket "$bucket" \
        --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
        --no-confirm-changeset \
        --no-fail-on-empty-changeset \
        --parameter-overrides \
        "Stage=$stage" \
        "KafkaBootstrapServers=$function_kafka" \
        "DatabaseSecretArn=consim/database" \
        "ProviderUrl=$provider_url" \
        "RelaySchedule=rate(1 minute)" \
        "XRayDaemonAddress=${XRAY_DAEMON_ADDRESS:-xray:2000}"
}

deploy_to_localstack() {
    command -v docker >/dev/null || die "docker is needed for LocalStack (or use DEPLOY_TARGET=emulator)"
    [[ -n ${LOCALSTACK_AUTH_TOKEN:-} ]] || die "export LOCALSTACK_AUTH_TOKEN first (docs/deploy.md)"
    [[ -x $sam ]] || die "no SAM CLI at $sam: run make sam-venv"

    log "starting LocalStack, Redpanda, Postgres and the X-Ray stand-in"
    compose up -d --wait localstack redpanda postgres moto
    compose up -d xray
    compose up topics

    log "building (sam build, no container)"
    "$sam" build --cached
    built=.aws-sam/build/template.yaml
    deployed=.aws-sam/build/template-localstack.json
    "$python" "$here/stack_tools.py" strip-kafka "$built" "$deployed"

    aws_env
    bucket=consim-sam-artifacts
    "$python" "$here/stack_tools.py" ensure-bucket "$bucket"

    log "deploying stack $stack to $endpoint"
    sam_deploy "${PROVIDER_URL:-}"
    if [[ -z ${PROVIDER_URL:-} ]]; then
        # The provider's URL is known once its API exists: a second, small update tells the
        # processor (the template's default is the AWS execute-api host, unknown to LocalStack).
        provider_url=$("$python" "$here/stack_tools.py" provider-url "$stack" "$stage" \
            "http://localstack:4566")
        log "pointing the processor at $provider_url"
        sam_deploy "$provider_url"
    fi

    api_key=$("$python" "$here/stack_tools.py" register-api-key "$stack")
    api_url=$("$python" "$here/stack_tools.py" api-url "$stack" "$stage")
    cat >&2 <<EOF

Deployed. Try:
  curl -s $api_url/health
  curl -s -H 'x-api-key: $api_key' -H 'content-type: application/json' \\
       -d '{"currency": "EUR", "limit": 50000}' $api_url/accounts

EOF
    invoke_endpoint=$endpoint
}

start_bridge() {
    local endpoint=$1 kafka=$2
    log "Kafka bridge: $kafka -> $endpoint (Ctrl-C stops it)"
    # The bridge reads the same template, so the topics, batch sizes and consumer groups are
    # the ones AWS would use; BRIDGE_ARGS adds parameter overrides and options.
    # shellcheck disable=SC2086
    KAFKA_BOOTSTRAP=$kafka exec "$python" -m emulator bridge \
        --template template.yaml \
        --invoke-endpoint "$endpoint" \
        --parameter-overrides "Stage=$stage" ${BRIDGE_ARGS:-}
}

case ${1:-up} in
    down)
        compose down -v
        exit 0
        ;;
    up) ;;
    *) die "usage: deploy.sh [up|down]" ;;
esac

case $target in
    localstack)
        deploy_to_localstack
        start_bridge "$invoke_endpoint" "$bridge_kafka"
        ;;
    emulator)
        invoke_endpoint=${INVOKE_ENDPOINT:-${API_URL:-}}
        [[ -n $invoke_endpoint ]] || die "DEPLOY_TARGET=emulator needs INVOKE_ENDPOINT or API_URL"
        kafka=${KAFKA_BOOTSTRAP:-}
        [[ -n $kafka ]] || die "DEPLOY_TARGET=emulator needs KAFKA_BOOTSTRAP (make -s env)"
        log "target emulator: nothing to deploy, the emulator runs template.yaml itself"
        start_bridge "$invoke_endpoint" "$kafka"
        ;;
    *) die "DEPLOY_TARGET must be localstack or emulator, not $target" ;;
esac
