"""The small AWS-side steps of localstack/deploy.sh, run with the project's venv.

    python localstack/stack_tools.py strip-kafka BUILT_TEMPLATE OUT
    python localstack/stack_tools.py ensure-bucket NAME
    python localstack/stack_tools.py register-api-key STACK
    python localstack/stack_tools.py api-url STACK STAGE
    python localstack/stack_tools.py provider-url STACK STAGE ENDPOINT

LocalStack's free tier rejects Kafka event source mappings (CreateEventSourceMapping answers
"Unrecognized event source"), so the deployed template goes without them and the emulator's
bridge feeds the functions through the Invoke API instead. Every AWS call honours
AWS_ENDPOINT_URL, which deploy.sh points at LocalStack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KAFKA_EVENT_TYPES = {"SelfManagedKafka", "MSK"}
ESM_TYPE = "AWS::Lambda::EventSourceMapping"
CLIENT_ID = "localstack"


def strip_kafka(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The template without Kafka mappings (SAM events and plain resources), and what went."""
    removed: list[str] = []
    resources = {}
    for logical_id, resource in (document.get("Resources") or {}).items():
        if resource.get("Type") == ESM_TYPE:
            removed.append(logical_id)
            continue
        events = (resource.get("Properties") or {}).get("Events")
        if isinstance(events, dict):
            kept = {}
            for name, event in events.items():
                if event.get("Type") in KAFKA_EVENT_TYPES:
                    removed.append(f"{logical_id}.{name}")
                else:
                    kept[name] = event
            properties = {k: v for k, v in resource["Properties"].items() if k != "Events"}
            if kept:
                properties["Events"] = kept
            resource = {**resource, "Properties": properties}
        resources[logical_id] = resource
    return {**document, "Resources": resources}, removed


def _load(path: str) -> dict[str, Any]:
    # cfn-lint's loader knows the short intrinsic tags (!Ref, !Sub...) that plain YAML does not.
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(path)


def _to_plain(value: Any) -> Any:
    """cfn-lint's node types as plain dicts, lists and strings, for json.dump."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _client(service: str):
    import boto3

    return boto3.client(service)


def ensure_bucket(name: str) -> None:
    s3 = _client("s3")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if name not in existing:
        s3.create_bucket(Bucket=name)


def _stack_resource(stack: str, logical_id: str) -> str:
    answer = _client("cloudformation").describe_stack_resource(
        StackName=stack, LogicalResourceId=logical_id
    )
    return answer["StackResourceDetail"]["PhysicalResourceId"]


def register_api_key(stack: str) -> str:
    """The usage plan's key, registered as a client of the API (the API maps keys to clients)."""
    key_id = _stack_resource(stack, "PaymentsApiApiKey")
    value = _client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
    table = _stack_resource(stack, "ClientsTable")
    _client("dynamodb").put_item(
        TableName=table,
        Item={
            "api_key": {"S": value},
            "client_id": {"S": CLIENT_ID},
            "name": {"S": "LocalStack developer"},
        },
    )
    return value


def api_url(stack: str, stage: str, endpoint: str, api: str = "PaymentsApi") -> str:
    """LocalStack's path-style URL of a deployed REST API stage."""
    api_id = _stack_resource(stack, api)
    return f"{endpoint.rstrip('/')}/restapis/{api_id}/{stage}/_user_request_"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "strip-kafka":
        source, target = args
        document, removed = strip_kafka(_to_plain(_load(source)))
        Path(target).write_text(json.dumps(document, indent=1))
        print(f"without Kafka mappings: {', '.join(removed) or 'none found'}", file=sys.stderr)
    elif command == "ensure-bucket":
        ensure_bucket(args[0])
    elif command == "register-api-key":
        print(register_api_key(args[0]))
    elif command == "api-url":
        import os

        print(api_url(args[0], args[1], os.environ.get("AWS_ENDPOINT_URL", "")))
    elif command == "provider-url":
        # As the processor's container sees it: LocalStack by its service name.
        stack, stage, endpoint = args
        print(api_url(stack, stage, endpoint, "ProviderApi") + "/providers")
    else:
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
