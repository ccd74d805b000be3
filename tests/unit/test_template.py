"""template.yaml against the rest of the tree: tables, routes, layer requirements, mappings,
sample events and the LocalStack files. cfn-lint, sam validate and sam build run in `make lint`."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml
from consim.config import REPO_ROOT

pytestmark = pytest.mark.unit

TEMPLATE = REPO_ROOT / "template.yaml"
EVENTS_DIR = REPO_ROOT / "events"
LOCALSTACK = REPO_ROOT / "localstack"
FUNCTION_PREFIXES = {
    "api": "ApiFunction",
    "processor": "ProcessorFunction",
    "projector": "ProjectorFunction",
    "notifier": "NotifierFunction",
    "relay": "RelayFunction",
    "provider-default": "ProviderDefaultFunction",
    "provider-fallback": "ProviderFallbackFunction",
}
KAFKA_CONSUMERS = ("ProcessorFunction", "ProjectorFunction", "NotifierFunction")
ENVELOPE_KEYS = {"event_id", "type", "stream_id", "version", "position", "occurred_at", "data"}
METADATA_KEYS = {"client_id", "correlation_id", "causation_id", "trace_id"}


@cache
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))


def resources(kind: str) -> dict[str, dict]:
    return {k: v for k, v in template()["Resources"].items() if v["Type"] == kind}


def functions() -> dict[str, dict]:
    return resources("AWS::Serverless::Function")


def events_of(function: str, kind: str) -> dict[str, dict]:
    events = functions()[function]["Properties"].get("Events") or {}
    return {name: e["Properties"] for name, e in events.items() if e["Type"] == kind}


# ---------------------------------------------------------------- tables


def test_tables_equal_the_native_stack_specs():
    specs = json.loads((REPO_ROOT / "infra" / "tables.json").read_text())["tables"]
    declared = {}
    for table in resources("AWS::DynamoDB::Table").values():
        props = table["Properties"]
        name = props["TableName"]["Fn::Sub"]
        assert name.startswith("${TablePrefix}"), name
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        declared[name.removeprefix("${TablePrefix}")] = props

    assert set(declared) == {spec["name"] for spec in specs}
    for spec in specs:
        props = declared[spec["name"]]
        for key in ("AttributeDefinitions", "KeySchema"):
            assert props[key] == spec[key], (spec["name"], key)
        assert props.get("GlobalSecondaryIndexes", []) == spec.get("GlobalSecondaryIndexes", []), (
            spec["name"]
        )


def test_table_prefix_default_is_the_settings_default():
    from consim.config import Settings

    assert template()["Parameters"]["TablePrefix"]["Default"] == Settings().table_prefix


# ---------------------------------------------------------------- functions and layer


def test_runtime_is_set_once_in_globals():
    assert template()["Globals"]["Function"]["Runtime"] == "python3.11"
    for name, function in functions().items():
        assert "Runtime" not in function["Properties"], f"{name} overrides the runtime"
    layer = template()["Resources"]["SharedLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.11"
    assert layer["Properties"]["ContentUri"] == "functions/shared/"


def test_layer_requirements_are_a_copy_of_the_runtime_requirements():
    def pins(path: Path) -> list[str]:
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]

    layer = REPO_ROOT / "functions" / "shared" / "requirements.txt"
    assert pins(layer) == pins(REPO_ROOT / "requirements.txt"), "run: make sam-build"


def test_every_function_is_named_traced_and_has_a_log_group():
    assert template()["Globals"]["Function"]["Tracing"] == "Active"
    log_groups = {
        g["Properties"]["LogGroupName"]["Fn::Sub"]: g["Properties"]
        for g in resources("AWS::Logs::LogGroup").values()
    }
    for name, function in functions().items():
        assert function["Properties"]["FunctionName"]["Fn::Sub"].startswith("consim-${Stage}-")
        group = log_groups.get(f"/aws/lambda/${{{name}}}")
        assert group is not None, f"{name} has no log group"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for api in resources("AWS::Serverless::Api").values():
        assert "TracingEnabled" not in api["Properties"]  # set once in Globals
    assert template()["Globals"]["Api"]["TracingEnabled"] is True


def test_handlers_exist():
    for name, function in functions().items():
        props = function["Properties"]
        module, _, attribute = props["Handler"].rpartition(".")
        source = REPO_ROOT / props["CodeUri"] / f"{module.replace('.', '/')}.py"
        assert source.is_file(), f"{name}: no {source}"
        assert re.search(rf"^(def {attribute}\b|{attribute}\s*=)", source.read_text(), re.M), (
            f"{name}: {source} defines no {attribute}"
        )


# ---------------------------------------------------------------- the payments API


def chalice_routes() -> set[tuple[str, str]]:
    """(path, METHOD) of every @app.route / @<blueprint>.route under functions/api."""
    found = set()
    pattern = re.compile(r"@\w+\.route\(\s*\"([^\"]+)\"\s*,\s*methods=\[([^\]]*)\]")
    for source in (REPO_ROOT / "functions" / "api").rglob("*.py"):
        for path, methods in pattern.findall(source.read_text()):
            for method in re.findall(r"\"(\w+)\"", methods):
                found.add((path, method.upper()))
    return found


def api_events() -> dict[tuple[str, str], dict]:
    return {(e["Path"], e["Method"].upper()): e for e in events_of("ApiFunction", "Api").values()}


def test_every_chalice_route_is_an_api_event():
    # Chalice finds its view by the resource path: a {proxy+} event would reach none.
    assert set(api_events()) == chalice_routes()


def test_only_health_and_the_vapid_key_go_without_an_api_key():
    api = template()["Resources"]["PaymentsApi"]["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    open_routes = {
        route
        for route, event in api_events().items()
        if (event.get("Auth") or {}).get("ApiKeyRequired") is False
    }
    assert open_routes == {("/health", "GET"), ("/vapid-public-key", "GET")}


# ---------------------------------------------------------------- Kafka mappings


@pytest.mark.parametrize("function", KAFKA_CONSUMERS)
def test_kafka_mapping_reports_item_failures_and_dead_letters(function):
    (props,) = events_of(function, "SelfManagedKafka").values()
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::Sub": "kafka://${DeadLetterTopic}"
    }
    assert props["Topics"] == [{"Ref": "PaymentEventsTopic"}]
    assert props["Enabled"] == {"Fn::If": ["UseMsk", False, True]}
    assert props["ConsumerGroupId"] == f"consim-{function.removesuffix('Function').lower()}"


@pytest.mark.parametrize("function", KAFKA_CONSUMERS)
def test_msk_mapping_mirrors_the_self_managed_one(function):
    (smk,) = events_of(function, "SelfManagedKafka").values()
    (msk,) = [
        r
        for r in resources("AWS::Lambda::EventSourceMapping").values()
        if r["Properties"]["FunctionName"] == {"Ref": function}
    ]
    assert msk["Condition"] == "UseMsk"
    props = msk["Properties"]
    assert props["EventSourceArn"] == {"Ref": "MskClusterArn"}
    assert props["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == smk["ConsumerGroupId"]
    for key in (
        "Topics",
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "FunctionResponseTypes",
        "MaximumRetryAttempts",
        "DestinationConfig",
        "ProvisionedPollerConfig",
    ):
        assert props[key] == smk[key], key


def test_the_emulator_reads_the_template():
    from emulator.template import load_template

    loaded = load_template(TEMPLATE)
    assert set(loaded.functions) == set(functions())
    for name in KAFKA_CONSUMERS:
        (mapping,) = loaded.functions[name].kafka_events
        assert mapping.on_failure_topic == "payment-events-dlq"
        assert mapping.report_batch_item_failures
    (tick,) = loaded.functions["RelayFunction"].schedule_events
    assert tick.interval_s == 60.0


# ---------------------------------------------------------------- sample events


def event_files() -> list[Path]:
    return sorted(EVENTS_DIR.glob("*.json"))


def function_of(path: Path) -> str:
    matches = [p for p in FUNCTION_PREFIXES if path.stem.startswith(p + "-")]
    assert matches, f"{path.name} is not named <function>-<case>.json"
    return FUNCTION_PREFIXES[max(matches, key=len)]


def test_every_function_and_route_has_a_sample():
    files = event_files()
    assert {function_of(p) for p in files} == set(functions())
    sampled = set()
    for path in files:
        if function_of(path) == "ApiFunction":
            event = json.loads(path.read_text())
            sampled.add((event["resource"], event["httpMethod"]))
    assert sampled == set(api_events())


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_sample_has_the_aws_shape(path: Path):
    event = json.loads(path.read_text())
    function = function_of(path)
    if function in KAFKA_CONSUMERS:
        check_kafka_event(event)
    elif function == "RelayFunction":
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["resources"][0].startswith("arn:aws:events:")
    else:
        check_proxy_event(event)


def check_proxy_event(event: dict) -> None:
    for key in (
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "pathParameters",
        "requestContext",
        "body",
        "isBase64Encoded",
    ):
        assert key in event, key
    context = event["requestContext"]
    assert context["resourcePath"] == event["resource"]
    assert context["httpMethod"] == event["httpMethod"]
    assert context["path"] == f"/{context['stage']}{event['path']}"
    # The path is the resource with its parameters filled in.
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(event["resource"]))
    pattern = pattern.replace(r"\{proxy\+\}", r"(?P<proxy>.+)")
    match = re.fullmatch(pattern, event["path"])
    assert match, (event["resource"], event["path"])
    assert (event["pathParameters"] or {}) == match.groupdict()
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    if event["body"] is not None:
        json.loads(event["body"])
        assert event["headers"]["Content-Type"] == "application/json"


def check_kafka_event(event: dict) -> None:
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"]
    assert event["records"]
    for key, records in event["records"].items():
        for record in records:
            assert key == f"{record['topic']}-{record['partition']}"
            assert record["timestampType"] in ("CREATE_TIME", "LOG_APPEND_TIME")
            account = base64.b64decode(record["key"], validate=True).decode()
            envelope = json.loads(base64.b64decode(record["value"], validate=True))
            assert set(envelope) >= ENVELOPE_KEYS, envelope
            assert set(envelope["metadata"]) >= METADATA_KEYS
            # Keyed by account (per-account order): an account event's stream is the account's,
            # a payment event names its account in its data.
            owner = envelope["data"].get("account_id") or envelope["stream_id"].removeprefix(
                "account-"
            )
            assert owner == account, (owner, account)
            for header in record["headers"]:
                ((name, value),) = header.items()
                assert all(isinstance(b, int) and 0 <= b < 256 for b in value), name
            names = {name for h in record["headers"] for name in h}
            assert "X-Amzn-Trace-Id" in names
            trace = bytes(
                next(h["X-Amzn-Trace-Id"] for h in record["headers"] if "X-Amzn-Trace-Id" in h)
            )
            assert trace.decode().startswith("Root=1-")
        offsets = [r["offset"] for r in records]
        assert offsets == sorted(offsets), "offsets rise within a partition"


# ---------------------------------------------------------------- LocalStack


@cache
def stack_tools():
    spec = importlib.util.spec_from_file_location("stack_tools", LOCALSTACK / "stack_tools.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_localstack_template_has_no_kafka_mappings_and_nothing_else_missing():
    original = json.loads(json.dumps(template()))
    stripped, removed = stack_tools().strip_kafka(original)
    assert sorted(removed) == sorted(
        [f"{f}.PaymentEvents" for f in KAFKA_CONSUMERS]
        + [f"{f.removesuffix('Function')}MskMapping" for f in KAFKA_CONSUMERS]
    )
    kept = stripped["Resources"]
    assert not [r for r in kept.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert set(kept) == set(original["Resources"]) - set(removed)
    for name in KAFKA_CONSUMERS:
        assert "Events" not in kept[name]["Properties"]
    assert kept["RelayFunction"]["Properties"]["Events"]  # the schedule stays
    assert (
        kept["ApiFunction"]["Properties"]["Events"]
        == original["Resources"]["ApiFunction"]["Properties"]["Events"]
    )


def test_compose_file_wires_localstack_redpanda_and_postgres():
    compose = yaml.safe_load((LOCALSTACK / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"localstack", "redpanda", "postgres", "topics"} <= set(services)
    token = services["localstack"]["environment"]["LOCALSTACK_AUTH_TOKEN"]
    assert token.startswith("${LOCALSTACK_AUTH_TOKEN:?"), "the token comes from the environment"
    assert "../infra/migrations:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]
    assert services["topics"]["depends_on"]["redpanda"]["condition"] == "service_healthy"
    text = (LOCALSTACK / "docker-compose.yml").read_text()
    assert not re.search(r"ls-[A-Za-z0-9]{8,}", text), "an auth token must never be committed"


def test_topic_hook_creates_the_native_stack_topics():
    topics = json.loads((REPO_ROOT / "infra" / "topics.json").read_text())["topics"]
    script = (LOCALSTACK / "init" / "create-topics.sh").read_text()
    partitions = {t["setting"]: t["partitions"] for t in topics}
    assert f'payment-events}}" {partitions["payment_events_topic"]}' in script
    assert f'payment-events-dlq}}" {partitions["dead_letter_topic"]}' in script


def test_cfn_lint_is_clean():
    """The first of `make lint`'s template checks (sam validate and sam build need .venv-sam)."""
    from cfnlint.api import lint_file

    assert [str(match) for match in lint_file(TEMPLATE)] == []


@cache
def translated() -> dict[str, Any]:
    """The template after SAM's transform, as `sam validate` and CloudFormation see it (code
    locations stand in for the S3 objects `sam deploy` would upload)."""
    from samtranslator.translator.transform import transform

    document = json.loads(json.dumps(template()))
    for resource in document["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://consim-artifacts/code.zip"

    class ManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    # The translator asks a boto3 session for the region, whatever the parameters say.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return transform(document, {}, ManagedPolicies())


def test_sam_translates_the_template():
    kinds = {r["Type"] for r in translated()["Resources"].values()}
    assert {
        "AWS::Lambda::Function",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::EventSourceMapping",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::Events::Rule",
    } <= kinds


def test_translated_api_asks_for_a_key_on_every_route_but_two():
    api = translated()["Resources"]["PaymentsApi"]["Properties"]["Body"]
    open_routes, keyed = set(), set()
    for path, methods in api["paths"].items():
        for method, operation in methods.items():
            needs_key = any("api_key" in rule for rule in operation.get("security", []))
            (keyed if needs_key else open_routes).add((path, method.upper()))
    assert open_routes == {("/health", "GET"), ("/vapid-public-key", "GET")}
    assert keyed == set(api_events()) - open_routes


def test_translated_roles_grant_each_function_only_its_tables():
    resources = translated()["Resources"]
    expected = {
        "ApiFunction": {"IdempotencyTable", "ClientsTable", "SubscriptionsTable"},
        "ProcessorFunction": set(),
        "ProjectorFunction": {"AccountsTable", "PaymentsTable"},
        "NotifierFunction": {"SubscriptionsTable", "DeliveriesTable", "ClientsTable"},
        "RelayFunction": set(),
        "ProviderDefaultFunction": set(),
        "ProviderFallbackFunction": set(),
    }
    for function, tables in expected.items():
        role = resources[f"{function}Role"]["Properties"]
        text = json.dumps(role.get("Policies", []))
        granted = set(re.findall(r'"Ref": "(\w+Table)"', text))
        assert granted == tables, function
        assert "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess" in role["ManagedPolicyArns"]
