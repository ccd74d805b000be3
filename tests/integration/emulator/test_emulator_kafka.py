"""Kafka event source mappings against the real broker: event shape, per-partition order,
retries then the on-failure topic, partial batch failures, and the bridge mode."""

import base64
import json
import time
import uuid
from pathlib import Path

import pytest
from consim.config import settings
from fixtures.emulator.harness import RunningEmulator, private_settings
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from emulator.apikeys import StaticApiKeys
from emulator.invokers import HttpInvoker
from emulator.kafka_mappings import KafkaMapping
from emulator.template import KafkaEvent

pytestmark = pytest.mark.integration


def wait_until(predicate, timeout_s=60.0, every_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return predicate()


@pytest.fixture
def topics():
    suffix = uuid.uuid4().hex[:8]
    source, dead_letter = f"emu-src-{suffix}", f"emu-dlq-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    admin.create_topics([NewTopic(source, 2, 1), NewTopic(dead_letter, 1, 1)])
    admin.close()
    return source, dead_letter


@pytest.fixture
def producer():
    producer = KafkaProducer(bootstrap_servers=settings().kafka_bootstrap, acks="all")
    yield producer
    producer.close()


def produce(producer, topic, partition, values, headers=()):
    for value in values:
        producer.send(
            topic, value=value.encode(), key=b"acct-1", partition=partition, headers=list(headers)
        )
    producer.flush()


def batches(record_dir: Path) -> list[dict]:
    path = record_dir / "batch.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def delivered(record_dir: Path) -> list[dict]:
    return [record for batch in batches(record_dir) for record in batch["records"]]


def emulator_for(topics, record_dir):
    source, dead_letter = topics
    overrides = {
        "UseKafka": "true",
        "SourceTopic": source,
        "DeadLetterTopic": dead_letter,
        "KafkaBootstrapServers": settings().kafka_bootstrap,
        "RecordDir": str(record_dir),
        "ScheduleRate": "rate(1 hour)",
    }
    return RunningEmulator(private_settings(), overrides, StaticApiKeys(set()))


def test_event_shape_batch_size_and_per_partition_order(topics, producer, tmp_path):
    source, _ = topics
    produce(producer, source, 0, [f"p0-{i}" for i in range(15)], [("trace", b"\x01\x02")])
    produce(producer, source, 1, [f"p1-{i}" for i in range(7)])

    with emulator_for(topics, tmp_path):
        assert wait_until(lambda: len(delivered(tmp_path)) >= 22)

    all_batches = batches(tmp_path)
    assert all(sum(len(v) for v in b["event"]["records"].values()) <= 10 for b in all_batches)
    # One invocation per partition: each event holds one topic-partition.
    assert all(len(b["event"]["records"]) == 1 for b in all_batches)
    event = all_batches[0]["event"]
    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == settings().kafka_bootstrap
    key, records = next(iter(event["records"].items()))
    assert key in (f"{source}-0", f"{source}-1")
    record = records[0]
    assert set(record) == {
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    }
    assert record["timestampType"] == "CREATE_TIME"
    assert base64.b64decode(record["key"]) == b"acct-1"
    if record["partition"] == 0:
        assert record["headers"] == [{"trace": [1, 2]}]

    for partition, count in ((0, 15), (1, 7)):
        seen = [r["value"] for r in delivered(tmp_path) if r["key"] == f"{source}-{partition}"]
        assert seen == [f"p{partition}-{i}" for i in range(count)]


def test_a_failing_record_is_retried_then_sent_to_the_on_failure_topic(topics, producer, tmp_path):
    source, dead_letter = topics
    produce(producer, source, 0, ["poison"])

    with emulator_for(topics, tmp_path):
        # First attempt + MaximumRetryAttempts (2), then the on-failure topic; then it moves on.
        consumer = KafkaConsumer(
            dead_letter,
            bootstrap_servers=settings().kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=60_000,
        )
        failed = next(iter(consumer))
        consumer.close()
        produce(producer, source, 0, ["after"])
        assert wait_until(lambda: any(r["value"] == "after" for r in delivered(tmp_path)))

    attempts = [r for r in delivered(tmp_path) if r["value"] == "poison"]
    assert len(attempts) == 3
    assert failed.value == b"poison" and failed.key == b"acct-1"
    headers = dict(failed.headers)
    assert headers["x-failure-reason"] == b"RetriesExhausted"
    assert headers["x-failure-source"] == f"{source}-0@0".encode()
    assert headers["x-failure-function"] == b"ConsumerFunction"
    assert headers["x-failure-error"].startswith(b"ValueError: poison record")


def test_a_partial_batch_failure_redelivers_only_what_failed(topics, producer, tmp_path):
    source, _ = topics
    produce(producer, source, 0, ["first", "partial", "last"])

    with emulator_for(topics, tmp_path):
        assert wait_until(lambda: len(batches(tmp_path)) >= 2)
        time.sleep(1)  # room for a wrong third delivery to show up

    offsets = [[r["offset"] for r in b["records"]] for b in batches(tmp_path)]
    assert offsets == [[0, 1, 2], [1, 2]]


def test_bridge_feeds_a_function_through_the_invoke_api(topics, producer, tmp_path):
    source, dead_letter = topics
    bridged = f"{source}-bridged"
    admin = KafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    admin.create_topics([NewTopic(bridged, 1, 1)])
    admin.close()
    produce(producer, bridged, 0, ["via-bridge-1", "via-bridge-2"])

    with emulator_for(topics, tmp_path) as emulator:
        mapping = KafkaEvent(
            name="Bridged",
            source="SelfManagedKafka",
            topics=(bridged,),
            bootstrap_servers=(settings().kafka_bootstrap,),
            consumer_group_id=f"bridge-{bridged}",
            batch_size=10,
            batching_window_s=0.5,
            starting_position="TRIM_HORIZON",
            report_batch_item_failures=True,
            on_failure_topic=dead_letter,
            maximum_retry_attempts=1,
            event_source_arn=None,
        )
        invoker = HttpInvoker(emulator.url, "us-east-1", {"Consumer": "ConsumerFunction"})
        thread = KafkaMapping(
            "Consumer", mapping, invoker, [settings().kafka_bootstrap], dead_letter
        )
        thread.start()
        try:
            assert wait_until(lambda: len(delivered(tmp_path)) >= 2)
        finally:
            thread.stop()
            thread.join(10)

    assert [r["value"] for r in delivered(tmp_path)] == ["via-bridge-1", "via-bridge-2"]
