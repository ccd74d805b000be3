"""The template loader: globals, intrinsics, parameters and every trigger kind."""

import pytest
from consim.config import REPO_ROOT, settings

from emulator.intrinsics import Resolver, TemplateError
from emulator.template import load_template, merge_globals, native_overrides, rate_seconds

pytestmark = pytest.mark.unit

FIXTURE = REPO_ROOT / "tests/fixtures/emulator/template.yaml"


def test_globals_merge_maps_append_lists_and_replace_scalars():
    merged = merge_globals(
        {"Timeout": 5, "Layers": ["a"], "Environment": {"Variables": {"A": "1", "B": "2"}}},
        {"Timeout": 9, "Layers": ["b"], "Environment": {"Variables": {"B": "3"}}},
    )
    assert merged == {
        "Timeout": 9,
        "Layers": ["a", "b"],
        "Environment": {"Variables": {"A": "1", "B": "3"}},
    }


def test_intrinsics_resolve_parameters_conditions_and_sub():
    resolver = Resolver(
        {"Stage": "dev", "Url": ""},
        {"HasUrl": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Url"}, ""]}]}},
        {"MyApi": {}},
        "eu-west-1",
    )
    assert resolver.resolve({"Fn::Sub": "x-${Stage}-${AWS::Region}-${!Literal}"}) == (
        "x-dev-eu-west-1-${Literal}"
    )
    assert resolver.resolve({"Fn::If": ["HasUrl", "yes", "no"]}) == "no"
    assert resolver.resolve({"A": {"Ref": "AWS::NoValue"}, "B": 1}) == {"B": 1}
    assert resolver.resolve({"Fn::GetAtt": ["MyApi", "RootResourceId"]}).startswith("<GetAtt")
    assert resolver.resolve({"Fn::Sub": ["${X}/${Stage}", {"X": "y"}]}) == "y/dev"
    assert resolver.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]}) == "a-dev"
    with pytest.raises(TemplateError):
        resolver.resolve({"Ref": "Nope"})


def test_fixture_template_functions():
    template = load_template(FIXTURE, {"RecordDir": "/tmp/x", "Unknown": "ignored"})

    assert "ConsumerFunction" not in template.functions  # its Condition is false by default
    echo = template.function("echo-test")
    assert echo is template.function("EchoFunction")
    assert echo is template.function("arn:aws:lambda:us-east-1:123456789012:function:echo-test")
    assert echo.handler == "echo.handler"
    assert echo.code_dir == FIXTURE.parent / "functions"
    assert echo.layer_dirs == (FIXTURE.parent / "layer",)
    assert echo.environment["RECORD_DIR"] == "/tmp/x"
    assert echo.environment["GREETING"] == "hello from test in us-east-1"
    assert echo.timeout_s == 5 and echo.memory_mb == 256
    assert {(e.path, e.method, e.api_id, e.api_key_required) for e in echo.api_events} == {
        ("/items/{item_id}", "GET", "OpenApi", False),
        ("/items/special", "GET", "OpenApi", False),
        ("/{proxy+}", "ANY", "OpenApi", False),
        ("/secure/{proxy+}", "ANY", "SecureApi", True),
    }
    slow = template.function("SlowFunction")
    assert slow.reserved_concurrency == 2 and slow.timeout_s == 2
    (tick,) = template.function("ScheduledFunction").schedule_events
    assert tick.interval_s == 1.0


def test_kafka_mapping_settings():
    template = load_template(FIXTURE, {"UseKafka": "true", "SourceTopic": "src"})
    (mapping,) = template.function("ConsumerFunction").kafka_events
    assert mapping.source == "SelfManagedKafka"
    assert mapping.topics == ("src",)
    assert mapping.consumer_group_id == "emulator-test-src"
    assert mapping.batch_size == 10 and mapping.batching_window_s == 1.0
    assert mapping.starting_position == "TRIM_HORIZON"
    assert mapping.report_batch_item_failures
    assert mapping.on_failure_topic == "emulator-test-dlq"
    assert mapping.maximum_retry_attempts == 2


def test_project_template_with_native_overrides():
    config = settings()
    template = load_template(REPO_ROOT / "template.yaml", native_overrides(config))

    processor = template.function("ProcessorFunction")
    assert processor.environment["PROVIDER_URL"] == config.provider_url
    assert processor.environment["DATABASE_URL"] == config.database_url
    assert processor.environment["DYNAMODB_ENDPOINT"] == config.dynamodb_endpoint
    assert processor.layer_dirs == (REPO_ROOT / "functions/shared",)
    (relay_tick,) = template.function("RelayFunction").schedule_events
    assert relay_tick.interval_s == 5.0
    assert template.function("RelayFunction").reserved_concurrency == 1
    routes = {e.path: e for e in template.function("ApiFunction").api_events}
    assert all(e.stage == "local" and e.api_id == "PaymentsApi" for e in routes.values())
    # The API's key requirement holds unless an event's own Auth says otherwise.
    assert routes["/payments"].api_key_required
    assert not routes["/health"].api_key_required


def test_rate_expressions():
    assert rate_seconds("rate(5 seconds)") == 5
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(2 hours)") == 7200
    assert rate_seconds("cron(0 12 * * ? *)") is None
