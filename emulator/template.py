"""template.yaml as the emulator needs it: functions, their triggers and their settings.

The YAML is read with cfn-lint's CloudFormation-aware loader (it knows the short intrinsic tags),
then intrinsics are resolved with the stack's parameters (defaults, then overrides).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml
from consim.config import REPO_ROOT, Settings

from emulator import gateway_responses as gateway_responses_mod
from emulator.gateway_responses import GatewayResponse
from emulator.intrinsics import Resolver, TemplateError

FUNCTION_TYPES = {"AWS::Serverless::Function"}
IMPLICIT_API = "ServerlessRestApi"  # SAM's name for the Api an event without RestApiId gets.
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class ApiEvent:
    name: str
    api_id: str
    stage: str
    path: str
    method: str  # upper case, or ANY
    api_key_required: bool


@dataclass(frozen=True)
class KafkaEvent:
    name: str
    source: str  # "SelfManagedKafka" or "MSK"
    topics: tuple[str, ...]
    bootstrap_servers: tuple[str, ...]
    consumer_group_id: str
    batch_size: int
    batching_window_s: float
    starting_position: str  # TRIM_HORIZON or LATEST
    report_batch_item_failures: bool
    on_failure_topic: str | None  # None: the emulator's dead-letter topic
    maximum_retry_attempts: int  # -1: until it succeeds
    event_source_arn: str | None  # MSK's cluster ARN


@dataclass(frozen=True)
class ScheduleEvent:
    name: str
    expression: str
    interval_s: float | None  # None: an expression the emulator cannot fire (cron)
    enabled: bool
    input: str | None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: Mapping[str, str]
    timeout_s: float
    memory_mb: int
    reserved_concurrency: int | None
    runtime: str
    api_events: tuple[ApiEvent, ...] = ()
    kafka_events: tuple[KafkaEvent, ...] = ()
    schedule_events: tuple[ScheduleEvent, ...] = ()


@dataclass(frozen=True)
class Template:
    path: Path
    parameters: Mapping[str, Any]
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)
    # Api logical id -> its GatewayResponses (response type -> response).
    gateway_responses: Mapping[str, Mapping[str, GatewayResponse]] = field(default_factory=dict)

    def function(self, name: str) -> FunctionSpec:
        """A function by logical id, FunctionName or ARN (as the Invoke API accepts)."""
        name = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        if name in self.functions:
            return self.functions[name]
        for spec in self.functions.values():
            if spec.function_name == name:
                return spec
        raise KeyError(name)


def native_overrides(settings: Settings) -> dict[str, str]:
    """The parameters that point the template at the native stack's services."""
    return {
        "DatabaseUrl": settings.database_url,
        "KafkaBootstrapServers": settings.kafka_bootstrap,
        "DynamoDbEndpoint": settings.dynamodb_endpoint,
        "ProviderUrl": settings.provider_url,
        "PaymentEventsTopic": settings.payment_events_topic,
        "DeadLetterTopic": settings.dead_letter_topic,
        "RelaySchedule": "rate(5 seconds)",
        "TablePrefix": settings.table_prefix,
    }


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`K=V` strings from the command line."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TemplateError(f"parameter override {pair!r} is not KEY=VALUE")
        overrides[key.strip()] = value
    return overrides


def rate_seconds(expression: str) -> float | None:
    match = _RATE.match(expression.strip())
    if not match:
        return None
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    return float(count * _UNIT_SECONDS[unit])


def load_template(
    path: Path | str = DEFAULT_TEMPLATE,
    overrides: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> Template:
    path = Path(path).resolve()
    document = cfn_yaml.load(str(path))
    declared = document.get("Parameters") or {}
    parameters: dict[str, Any] = {
        name: spec.get("Default") for name, spec in declared.items() if "Default" in spec
    }
    # Only declared parameters are overridden: CloudFormation rejects unknown ones, and the
    # native overrides are offered to every template, small test ones included.
    for name, value in (overrides or {}).items():
        if name in declared:
            parameters[name] = value
    missing = sorted(set(declared) - set(parameters))
    if missing:
        raise TemplateError(f"parameters without a value: {', '.join(missing)}")

    resources = document.get("Resources") or {}
    resolver = Resolver(parameters, document.get("Conditions") or {}, resources, region)
    globals_ = resolver.resolve((document.get("Globals") or {}).get("Function") or {})
    builder = _FunctionBuilder(path.parent, resolver, resources, globals_)
    functions = {
        logical_id: builder.build(logical_id, resource)
        for logical_id, resource in resources.items()
        if resource.get("Type") in FUNCTION_TYPES and _included(resolver, resource)
    }
    gateway_responses = {
        logical_id: gateway_responses_mod.parse(
            resolver.resolve((resource.get("Properties") or {}).get("GatewayResponses"))
        )
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Api" and _included(resolver, resource)
    }
    return Template(
        path=path,
        parameters=parameters,
        functions=functions,
        gateway_responses=gateway_responses,
    )


def _included(resolver: Resolver, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    return condition is None or resolver.condition(condition)


def merge_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's rule: maps merge (the function wins), lists append, scalars are replaced."""
    merged = dict(globals_)
    for key, value in properties.items():
        base = merged.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


class _FunctionBuilder:
    def __init__(
        self,
        root: Path,
        resolver: Resolver,
        resources: Mapping[str, Any],
        globals_: Mapping[str, Any],
    ) -> None:
        self.root = root
        self.resolver = resolver
        self.resources = resources
        self.globals = globals_

    def build(self, logical_id: str, resource: Mapping[str, Any]) -> FunctionSpec:
        own = self.resolver.resolve(resource.get("Properties") or {})
        props = merge_globals(self.globals, own)
        variables = (props.get("Environment") or {}).get("Variables") or {}
        return FunctionSpec(
            logical_id=logical_id,
            function_name=str(props.get("FunctionName") or logical_id),
            handler=str(props["Handler"]),
            code_dir=(self.root / str(props.get("CodeUri") or ".")).resolve(),
            layer_dirs=tuple(self._layer_dirs(props.get("Layers") or [])),
            environment={k: _env_value(v) for k, v in variables.items()},
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            reserved_concurrency=_optional_int(props.get("ReservedConcurrentExecutions")),
            runtime=str(props.get("Runtime", "python3.11")),
            api_events=tuple(self._api_events(props)),
            kafka_events=tuple(self._kafka_events(logical_id, props)),
            schedule_events=tuple(self._schedule_events(props)),
        )

    def _layer_dirs(self, layers: list[Any]) -> list[Path]:
        dirs = []
        for layer in layers:
            resource = self.resources.get(str(layer))
            if resource is None:
                continue  # a published layer's ARN: nothing local to put on the path
            content = self.resolver.resolve((resource.get("Properties") or {}).get("ContentUri"))
            if isinstance(content, str):
                dirs.append((self.root / content).resolve())
        return dirs

    def _events(self, props: Mapping[str, Any], kinds: set[str]) -> list[tuple[str, dict]]:
        events = props.get("Events") or {}
        return [
            (name, event.get("Properties") or {})
            for name, event in events.items()
            if event.get("Type") in kinds
        ]

    def _api_events(self, props: Mapping[str, Any]) -> list[ApiEvent]:
        result = []
        for name, event in self._events(props, {"Api"}):
            api_id = str(event.get("RestApiId") or IMPLICIT_API)
            api = self.resolver.resolve((self.resources.get(api_id) or {}).get("Properties") or {})
            api_auth = api.get("Auth") or {}
            event_auth = event.get("Auth") or {}
            key_required = event_auth.get("ApiKeyRequired", api_auth.get("ApiKeyRequired", False))
            result.append(
                ApiEvent(
                    name=name,
                    api_id=api_id,
                    stage=str(api.get("StageName") or "Prod"),
                    path=str(event["Path"]),
                    method=str(event.get("Method", "ANY")).upper(),
                    api_key_required=bool(key_required),
                )
            )
        return result

    def _kafka_events(self, logical_id: str, props: Mapping[str, Any]) -> list[KafkaEvent]:
        result = []
        for name, event in self._events(props, {"SelfManagedKafka", "MSK"}):
            source = "MSK" if "Stream" in event else "SelfManagedKafka"
            destination = ((event.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            bootstrap = event.get("KafkaBootstrapServers") or []
            if isinstance(bootstrap, str):
                bootstrap = bootstrap.split(",")
            # AWS retries forever without a destination and caps retries at 10 with one; the
            # emulator always has one (its dead-letter topic), so 10 is the default here.
            default_retries = 10
            result.append(
                KafkaEvent(
                    name=name,
                    source=source,
                    topics=tuple(event.get("Topics") or ()),
                    bootstrap_servers=tuple(bootstrap),
                    consumer_group_id=str(
                        event.get("ConsumerGroupId") or f"emulator-{logical_id}-{name}"
                    ),
                    batch_size=int(event.get("BatchSize", 100)),
                    batching_window_s=float(event.get("MaximumBatchingWindowInSeconds", 0.5)),
                    starting_position=str(event.get("StartingPosition", "TRIM_HORIZON")),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (event.get("FunctionResponseTypes") or ()),
                    on_failure_topic=_kafka_topic(destination),
                    maximum_retry_attempts=int(event.get("MaximumRetryAttempts", default_retries)),
                    event_source_arn=str(event["Stream"]) if source == "MSK" else None,
                )
            )
        return result

    def _schedule_events(self, props: Mapping[str, Any]) -> list[ScheduleEvent]:
        result = []
        for name, event in self._events(props, {"Schedule", "ScheduleV2"}):
            expression = str(event.get("Schedule") or event.get("ScheduleExpression") or "")
            enabled = event.get("Enabled", True) and event.get("State", "ENABLED") == "ENABLED"
            result.append(
                ScheduleEvent(
                    name=name,
                    expression=expression,
                    interval_s=rate_seconds(expression),
                    enabled=bool(enabled),
                    input=event.get("Input"),
                )
            )
        return result


def _kafka_topic(destination: Any) -> str | None:
    """AWS spells a Kafka on-failure destination `kafka://<topic>`; other kinds (SQS, SNS, S3
    ARNs) have no local counterpart, so those records go to the emulator's dead-letter topic."""
    if isinstance(destination, str) and destination.startswith("kafka://"):
        return destination.removeprefix("kafka://")
    return None


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)
