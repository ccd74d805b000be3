"""Kafka mapping events and partial batch answers, in AWS's shapes."""

import base64

import pytest

from emulator.kafka_events import (
    InvalidBatchResponse,
    KafkaRecord,
    first_failed_offsets,
    kafka_event,
    remaining_after,
)

pytestmark = pytest.mark.unit


def _record(partition: int, offset: int, value: bytes | None = b"v", key: bytes | None = b"k"):
    return KafkaRecord(
        "pay-events", partition, offset, 1_700_000_000_123, 0, key, value, (("trace", b"\x01A"),)
    )


BATCH = {
    "pay-events-0": [_record(0, 5), _record(0, 6), _record(0, 7)],
    "pay-events-1": [_record(1, 2)],
}


def test_self_managed_kafka_event_shape():
    event = kafka_event(BATCH, ["b1:9092", "b2:9092"])

    assert event["eventSource"] == "SelfManagedKafka"
    assert event["bootstrapServers"] == "b1:9092,b2:9092"
    assert "eventSourceArn" not in event
    assert list(event["records"]) == ["pay-events-0", "pay-events-1"]
    first = event["records"]["pay-events-0"][0]
    assert first == {
        "topic": "pay-events",
        "partition": 0,
        "offset": 5,
        "timestamp": 1_700_000_000_123,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k").decode(),
        "value": base64.b64encode(b"v").decode(),
        "headers": [{"trace": [1, 65]}],
    }


def test_msk_event_and_absent_key():
    batch = {"pay-events-0": [_record(0, 1, key=None)]}
    event = kafka_event(batch, ["b:9092"], "MSK", "arn:aws:kafka:us-east-1:1:cluster/c/1")
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == "arn:aws:kafka:us-east-1:1:cluster/c/1"
    assert "key" not in event["records"]["pay-events-0"][0]


@pytest.mark.parametrize(
    "identifier",
    [{"partition": "pay-events-0", "offset": 6}, "pay-events-0@6", "pay-events-0-6"],
)
def test_a_failure_redelivers_from_it_onwards_in_its_partition_only(identifier):
    answer = {"batchItemFailures": [{"itemIdentifier": identifier}]}
    first = first_failed_offsets(answer, BATCH)
    assert first == {"pay-events-0": 6}
    again = remaining_after(BATCH, first)
    assert {k: [r.offset for r in v] for k, v in again.items()} == {"pay-events-0": [6, 7]}


def test_the_lowest_failure_of_a_partition_counts():
    answer = {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": "pay-events-0", "offset": 7}},
            {"itemIdentifier": {"partition": "pay-events-0", "offset": 5}},
        ]
    }
    assert first_failed_offsets(answer, BATCH) == {"pay-events-0": 5}


@pytest.mark.parametrize("answer", [None, {}, {"batchItemFailures": []}, "ok", {"x": 1}])
def test_answers_without_failures_mean_success(answer):
    assert first_failed_offsets(answer, BATCH) == {}


@pytest.mark.parametrize(
    "identifier",
    [
        None,
        "",
        {"partition": "pay-events-0"},
        {"partition": "other-0", "offset": 5},
        "pay-events-0@99",
    ],
)
def test_bad_identifiers_fail_the_whole_batch(identifier):
    with pytest.raises(InvalidBatchResponse):
        first_failed_offsets({"batchItemFailures": [{"itemIdentifier": identifier}]}, BATCH)
