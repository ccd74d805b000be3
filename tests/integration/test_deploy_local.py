"""localstack/deploy.sh's bridge step, end to end, against the native emulator's Invoke API.

Without a Docker engine there is no LocalStack here, so DEPLOY_TARGET=emulator points the
script's bridge at the emulator instead: Kafka -> bridge -> Lambda Invoke API -> projector ->
DynamoDB. The bridge reads its own topic, which the emulator's own mappings do not consume, so
the read model it restores can only have come through the bridge.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
from consim.adapters import dynamodb
from consim.config import REPO_ROOT, settings
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0


def open_account(account_id: str) -> None:
    request = urllib.request.Request(
        f"{settings().api_url}/accounts",
        data=json.dumps({"id": account_id, "currency": "EUR", "limit": 10_000}).encode(),
        headers={"Content-Type": "application/json", "x-api-key": os.environ["API_KEY"]},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201


def account_item(account_id: str) -> dict | None:
    answer = dynamodb.client().get_item(
        TableName=settings().table("accounts"),
        Key={"account_id": {"S": account_id}},
        ConsistentRead=True,
    )
    return answer.get("Item")


def wait_for(check, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}")


def opened_record(account_id: str) -> bytes:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "type": "AccountOpened",
        "stream_id": f"account-{account_id}",
        "version": 1,
        "position": 0,
        "occurred_at": "2026-12-03T18:00:00.000000+00:00",
        "data": {
            "account_id": account_id,
            "client_id": "local",
            "currency": "EUR",
            "limit": 10_000,
            "balance": 0,
        },
        "metadata": {"client_id": "local", "correlation_id": account_id},
    }
    return json.dumps(envelope).encode()


def test_deploy_script_bridges_kafka_to_the_invoke_api():
    config = settings()
    account = f"acc-bridge-{uuid.uuid4().hex[:10]}"
    topic = f"bridge-test-{uuid.uuid4().hex[:8]}"

    open_account(account)
    wait_for(lambda: account_item(account), "the emulator's projector")
    # Forget the read model: only a projector invocation can bring it back now.
    dynamodb.client().delete_item(
        TableName=config.table("accounts"), Key={"account_id": {"S": account}}
    )
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()

    env = {
        **os.environ,
        "DEPLOY_TARGET": "emulator",
        "INVOKE_ENDPOINT": config.api_url,
        "KAFKA_BOOTSTRAP": config.kafka_bootstrap,
        "BRIDGE_ARGS": f"PaymentEventsTopic={topic}",
    }
    bridge = subprocess.Popen(
        ["bash", str(REPO_ROOT / "localstack" / "deploy.sh")],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap)
        producer.send(
            topic,
            key=account.encode(),
            value=opened_record(account),
            headers=[("X-Amzn-Trace-Id", b"Root=1-6930d2a0-3c5e8f1a2b4d6c8e0f1a2b3c;Sampled=1")],
        ).get(timeout=30)
        producer.close()

        item = wait_for(lambda: account_item(account), "the bridge to feed the projector")
        assert item["version"]["N"] == "1"
        assert bridge.poll() is None, "the bridge stopped on its own"
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        try:
            output, _ = bridge.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(bridge.pid, signal.SIGKILL)
            output, _ = bridge.communicate()
    assert "target emulator" in output
    assert "bridge running" in output, output[-3000:]


def test_deploy_script_refuses_a_target_it_does_not_know():
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "localstack" / "deploy.sh")],
        cwd=REPO_ROOT,
        env={**os.environ, "DEPLOY_TARGET": "mainframe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DEPLOY_TARGET must be localstack or emulator" in result.stderr
