"""The emulator against the stack's other services: API keys in DynamoDB (dynalite) and X-Ray
segments forwarded to the X-Ray API (moto's server)."""

import asyncio
import json
import time
import urllib.request
import uuid

import boto3
import pytest
from consim.config import settings
from fixtures.emulator.harness import RunningEmulator, private_settings

from emulator.apikeys import DynamoDbApiKeys
from emulator.tracing import TraceHeader

pytestmark = pytest.mark.integration


def _client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=settings().aws_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_api_keys_are_the_ones_in_the_clients_table():
    config = settings()
    known = f"key-{uuid.uuid4().hex}"
    _client("dynamodb", config.dynamodb_endpoint).put_item(
        TableName=config.table("clients"),
        Item={"api_key": {"S": known}, "client_id": {"S": "client-1"}},
    )
    keys = DynamoDbApiKeys(config)

    async def check():
        return await keys.is_known(known), await keys.is_known(f"key-{uuid.uuid4().hex}")

    assert asyncio.run(check()) == (True, False)


def test_each_invocation_sends_a_lambda_function_segment_to_the_xray_api(tmp_path):
    config = private_settings()
    overrides = {"RecordDir": str(tmp_path), "ScheduleRate": "rate(1 hour)"}
    with RunningEmulator(config, overrides, with_daemon=True) as emulator:
        with urllib.request.urlopen(emulator.url + "/items/1", timeout=30) as response:
            header = TraceHeader.parse(response.headers["X-Amzn-Trace-Id"])
            answer = json.loads(response.read())

        xray = _client("xray", config.xray_endpoint)
        deadline = time.monotonic() + 30
        segments = []
        while time.monotonic() < deadline and not segments:
            traces = xray.batch_get_traces(TraceIds=[header.root])["Traces"]
            segments = [json.loads(s["Document"]) for t in traces for s in t["Segments"]]
            time.sleep(0.5)

    handed = TraceHeader.parse(answer["env"]["_X_AMZN_TRACE_ID"])
    (segment,) = [s for s in segments if s["id"] == handed.parent]
    assert segment["name"] == "echo-test"
    assert segment["origin"] == "AWS::Lambda::Function"
    assert segment["trace_id"] == header.root
    assert segment["start_time"] <= segment["end_time"]
