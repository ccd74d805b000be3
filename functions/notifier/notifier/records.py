"""Records of a Kafka event source mapping's event, in the shape AWS gives them to Lambda."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    envelope: dict[str, Any]
    headers: dict[str, bytes]

    @property
    def trace_header(self) -> bytes | None:
        return self.headers.get("X-Amzn-Trace-Id")


def _headers(raw: list[dict[str, list[int]]] | None) -> dict[str, bytes]:
    # AWS gives each header as {"name": [byte, byte, ...]}; several may share a name.
    headers: dict[str, bytes] = {}
    for entry in raw or []:
        for name, values in entry.items():
            headers[name] = bytes(values)
    return headers


def kafka_records(event: dict[str, Any]) -> Iterator[KafkaRecord]:
    """Every record of the event, partition by partition, in offset order within a partition."""
    for records in (event.get("records") or {}).values():
        for record in sorted(records, key=lambda r: int(r["offset"])):
            key = record.get("key")
            yield KafkaRecord(
                topic=record["topic"],
                partition=int(record["partition"]),
                offset=int(record["offset"]),
                key=base64.b64decode(key).decode() if key else None,
                envelope=json.loads(base64.b64decode(record["value"])),
                headers=_headers(record.get("headers")),
            )
