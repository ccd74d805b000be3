"""The gateway, the Invoke API and schedules of a running emulator (fixture template, fixture
functions in real workers; API keys from a fixed set, so no service is needed)."""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from fixtures.emulator.harness import RunningEmulator, private_settings

from emulator.apikeys import StaticApiKeys

pytestmark = pytest.mark.unit

API_KEY = "test-key-1"
CALLER_ROOT = "1-5f000000-0123456789abcdef01234567"


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def emulator(record_dir):
    overrides = {"RecordDir": str(record_dir), "ScheduleRate": "rate(1 second)"}
    with RunningEmulator(private_settings(), overrides, StaticApiKeys({API_KEY})) as running:
        yield running


def call(emulator, method, path, body=None, headers=None):
    request = urllib.request.Request(
        emulator.url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def seen_event(body: bytes) -> dict:
    return json.loads(body)["event"]


def test_path_parameters_query_and_body_reach_the_function(emulator):
    status, headers, body = call(
        emulator,
        "POST",
        "/items/42?tag=a&tag=b",
        body=b'{"amount": 10}',
        headers={
            "Content-Type": "application/json",
            "X-Amzn-Trace-Id": f"Root={CALLER_ROOT};Parent=53995c3f42cd8ad8;Sampled=1",
        },
    )
    assert status == 200
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    answer = json.loads(body)
    event = answer["event"]
    assert event["resource"] == "/items/{item_id}"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["body"] == '{"amount": 10}'
    assert event["requestContext"]["stage"] == "test"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    # ItemsPostFunction serves POST on this path; the trace continues the caller's.
    assert answer["context"]["function_name"] == "ItemsPostFunction"
    assert answer["env"]["_X_AMZN_TRACE_ID"].startswith(f"Root={CALLER_ROOT};")


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/items/special", "/items/special"),
        ("/items/7", "/items/{item_id}"),
        ("/items/7/more", "/{proxy+}"),
    ],
)
def test_exact_paths_before_parameters_before_proxy(emulator, path, resource):
    status, _, body = call(emulator, "GET", path)
    assert status == 200
    assert seen_event(body)["resource"] == resource


def test_binary_answers_are_decoded(emulator):
    status, headers, body = call(emulator, "GET", "/files/binary")
    assert status == 200
    assert body == b"\x00\x01\x02binary"
    assert headers["Content-Type"] == "application/octet-stream"


def test_api_key_is_required_where_the_api_says_so(emulator):
    assert call(emulator, "GET", "/secure/x")[0] == 403
    status, _, body = call(emulator, "GET", "/secure/x", headers={"x-api-key": "wrong"})
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})

    status, _, body = call(emulator, "GET", "/secure/x", headers={"x-api-key": API_KEY})
    assert status == 200
    assert seen_event(body)["requestContext"]["identity"]["apiKey"] == API_KEY


def test_function_error_is_a_502(emulator):
    status, _, body = call(emulator, "GET", "/fail")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_a_timeout_behind_the_api_is_a_502(emulator):
    status, _, body = call(emulator, "GET", "/slow?sleep_s=3")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_concurrent_requests_never_run_more_than_the_cap(emulator, record_dir):
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: call(emulator, "GET", "/slow?sleep_s=0.4")[0], range(6)))
    assert statuses == [200] * 6
    runs = [json.loads(line) for line in (record_dir / "slow.jsonl").read_text().splitlines()]
    overlaps = [sum(1 for o in runs if o["start"] <= r["start"] < o["end"]) for r in runs]
    assert max(overlaps) <= 2


def _lambda_client(emulator):
    return boto3.client(
        "lambda",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}),
    )


def test_invoke_api_through_boto3(emulator, record_dir):
    client = _lambda_client(emulator)

    answer = client.invoke(FunctionName="echo-test", Payload=json.dumps({"hello": "world"}))
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["event"] == {"hello": "world"}

    failed = client.invoke(FunctionName="FailFunction", Payload=b"{}")
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "PaymentBroken"

    queued = client.invoke(
        FunctionName="ScheduledFunction", InvocationType="Event", Payload=b'{"queued": true}'
    )
    assert queued["StatusCode"] == 202

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = (record_dir / "schedule.jsonl").read_text().splitlines()
        if any(json.loads(line)["event"] == {"queued": True} for line in lines):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the Event invocation never ran")


def test_schedule_fires_with_the_scheduled_event_shape(emulator, record_dir):
    deadline = time.monotonic() + 30
    ticks = []
    while time.monotonic() < deadline and len(ticks) < 2:
        path = record_dir / "schedule.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        ticks = [json.loads(line)["event"] for line in lines]
        ticks = [t for t in ticks if t.get("source") == "aws.events"]
        time.sleep(0.2)
    assert len(ticks) >= 2
    assert ticks[0]["detail-type"] == "Scheduled Event"
    assert ticks[0]["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")


def test_kill_endpoint_replaces_the_workers(emulator):
    _, _, first = call(emulator, "GET", "/items/1")
    pid = json.loads(first)["pid"]
    status, _, body = call(emulator, "POST", "/_emulator/functions/EchoFunction/kill")
    assert status == 200 and pid in json.loads(body)["killed_pids"]
    _, _, after = call(emulator, "GET", "/items/1")
    assert json.loads(after)["pid"] != pid
