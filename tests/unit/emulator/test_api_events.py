"""API Gateway proxy events and answers; the event's shape is checked against SAM's sample."""

import base64
import json

import pytest
from consim.config import REPO_ROOT

from emulator.api_events import HttpRequest, http_response, proxy_event
from emulator.routes import Route, RouteMatch
from emulator.template import ApiEvent

pytestmark = pytest.mark.unit

SAM_SAMPLE = REPO_ROOT / "tests/fixtures/emulator/apigateway-aws-proxy.json"
MATCH = RouteMatch(
    Route("Fn", ApiEvent("Proxy", "PaymentsApi", "local", "/{proxy+}", "ANY", True)),
    {"proxy": "path/to/resource"},
)


def _request(body: bytes = b'{"test":"body"}') -> HttpRequest:
    return HttpRequest(
        method="POST",
        path="/path/to/resource",
        query=[("foo", "bar"), ("foo", "baz")],
        headers=[("Accept", "text/html"), ("X-Multi", "1"), ("X-Multi", "2")],
        body=body,
        source_ip="10.0.0.7",
    )


def _key_paths(document, prefix=""):
    """Every key path of a JSON document, with the kind of value found there."""
    paths = {}
    if isinstance(document, dict):
        for key, value in document.items():
            paths[prefix + key] = type(value).__name__ if value is not None else "null"
            if key not in (
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "stageVariables",
            ):
                paths.update(_key_paths(value, prefix + key + "."))
    return paths


def test_event_has_every_key_of_sams_sample_with_the_same_kind_of_value():
    sample = json.loads(SAM_SAMPLE.read_text())
    event = proxy_event(_request(), MATCH, "req-1", api_key="k-123", now=1_700_000_000.0)

    expected, actual = _key_paths(sample), _key_paths(event)
    missing = set(expected) - set(actual)
    assert not missing, f"keys SAM's sample has and the emulator's event lacks: {missing}"
    kinds_differ = {
        path: (expected[path], actual[path])
        for path in expected
        if "null" not in (expected[path], actual[path]) and expected[path] != actual[path]
    }
    # stageVariables is null when a stage has none (as API Gateway sends it).
    kinds_differ.pop("stageVariables", None)
    assert not kinds_differ


def test_event_values():
    event = proxy_event(_request(), MATCH, "req-1", api_key="k-123", now=1_700_000_000.0)

    assert event["resource"] == "/{proxy+}"
    assert event["pathParameters"] == {"proxy": "path/to/resource"}
    assert event["queryStringParameters"] == {"foo": "baz"}
    assert event["multiValueQueryStringParameters"] == {"foo": ["bar", "baz"]}
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["body"] == '{"test":"body"}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestId"] == "req-1"
    assert context["stage"] == "local"
    assert context["resourcePath"] == "/{proxy+}"
    assert context["requestTimeEpoch"] == 1_700_000_000_000
    assert context["identity"]["sourceIp"] == "10.0.0.7"
    assert context["identity"]["apiKey"] == "k-123"


def test_binary_body_is_base64():
    event = proxy_event(_request(b"\xff\x00\x01"), MATCH, "req-2")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00\x01"


def test_answers_become_http():
    answer = http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "created",
        }
    )
    assert answer.status == 201 and answer.body == b"created"
    assert ("Set-Cookie", "a=1") in answer.headers and ("Set-Cookie", "b=2") in answer.headers
    assert ("X-One", "1") in answer.headers

    binary = http_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"


@pytest.mark.parametrize("answer", [None, "text", {"body": "no status"}, {"statusCode": "x"}])
def test_unreadable_answers_are_left_to_the_gateway(answer):
    assert http_response(answer) is None
