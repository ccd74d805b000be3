"""Kafka event source mapping events and partial batch answers, in AWS's shapes; no I/O.

Records are grouped under "<topic>-<partition>" keys, key and value base64-encoded, headers as a
list of {name: [byte values]}. A batch item failure names a record by the key of its partition
and its offset: Powertools (the AWS library) answers {"partition": "<topic>-<partition>",
"offset": N}; the strings "<topic>-<partition>@<offset>" and "<topic>-<partition>-<offset>" are
accepted too, since AWS documents no string form for Kafka.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds
    timestamp_type: int  # 0: the producer's create time, 1: the broker's log append time
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()

    @property
    def partition_key(self) -> str:
        return f"{self.topic}-{self.partition}"


class InvalidBatchResponse(ValueError):
    """The answer names records that are not in the batch, or names them badly: AWS then
    treats the whole batch as failed."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def record_json(record: KafkaRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": "LOG_APPEND_TIME" if record.timestamp_type == 1 else "CREATE_TIME",
    }
    if record.key is not None:
        item["key"] = _b64(record.key)
    if record.value is not None:
        item["value"] = _b64(record.value)
    item["headers"] = [{name: list(value or b"")} for name, value in record.headers]
    return item


def kafka_event(
    batch: Mapping[str, Sequence[KafkaRecord]],
    bootstrap_servers: Sequence[str],
    source: str = "SelfManagedKafka",
    event_source_arn: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if source == "MSK":
        event["eventSource"] = "aws:kafka"
        event["eventSourceArn"] = event_source_arn
    else:
        event["eventSource"] = "SelfManagedKafka"
    event["bootstrapServers"] = ",".join(bootstrap_servers)
    event["records"] = {
        key: [record_json(r) for r in records] for key, records in batch.items() if records
    }
    return event


def _identifier(item: Any, keys: Sequence[str]) -> tuple[str, int]:
    identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
    if isinstance(identifier, Mapping):
        key, offset = identifier.get("partition"), identifier.get("offset")
        if key in keys and offset is not None:
            return str(key), int(offset)
    elif isinstance(identifier, str) and identifier:
        for key in keys:
            for separator in ("@", "-"):
                prefix = key + separator
                if identifier.startswith(prefix) and identifier[len(prefix) :].isdigit():
                    return key, int(identifier[len(prefix) :])
    raise InvalidBatchResponse(f"bad itemIdentifier: {identifier!r}")


def first_failed_offsets(answer: Any, batch: Mapping[str, Sequence[KafkaRecord]]) -> dict[str, int]:
    """For each partition with a reported failure, the lowest failed offset: re-delivery starts
    there (what came before it in that partition succeeded)."""
    if not isinstance(answer, Mapping):
        return {}
    failures = answer.get("batchItemFailures")
    if not failures:
        return {}
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list")
    keys = [k for k, records in batch.items() if records]
    first: dict[str, int] = {}
    for item in failures:
        key, offset = _identifier(item, keys)
        if not any(r.offset == offset for r in batch[key]):
            raise InvalidBatchResponse(f"{key}@{offset} is not in the batch")
        first[key] = min(offset, first.get(key, offset))
    return first


def remaining_after(
    batch: Mapping[str, Sequence[KafkaRecord]], first_failed: Mapping[str, int]
) -> dict[str, list[KafkaRecord]]:
    """The records to deliver again: from the first failure of each failed partition onwards."""
    return {
        key: [r for r in batch[key] if r.offset >= offset] for key, offset in first_failed.items()
    }
