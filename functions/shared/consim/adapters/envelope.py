"""The JSON envelope of an event on Kafka, and its way back from a Kafka event source record.

Lambda's Kafka event source delivers records as {"topic", "partition", "offset", "key",
"value", "headers"}: key and value base64, each header a {name: [byte values]} map.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from .event_store import RecordedEvent

TRACE_HEADER = "X-Amzn-Trace-Id"


def partition_key(event: RecordedEvent) -> str:
    """The account id: every event of an account, and of its payments, lands in one partition."""
    if event.stream_id.startswith("account-"):
        return event.stream_id.removeprefix("account-")
    return str(event.data.get("account_id") or event.stream_id)


def to_envelope(event: RecordedEvent) -> dict[str, Any]:
    metadata = {k: v for k, v in event.metadata.items() if k != "trace_header"}
    return {
        "event_id": event.event_id,
        "type": event.type,
        "stream_id": event.stream_id,
        "version": event.version,
        "position": event.position,
        "occurred_at": event.recorded_at.isoformat(),
        "data": event.data,
        "metadata": metadata,
    }


def trace_header_of(event: RecordedEvent) -> str | None:
    if header := event.metadata.get("trace_header"):
        return header
    if trace_id := event.metadata.get("trace_id"):
        return f"Root={trace_id}"
    return None


def from_envelope(envelope: dict[str, Any], trace_header: str | None = None) -> RecordedEvent:
    metadata = dict(envelope.get("metadata") or {})
    if trace_header:
        metadata.setdefault("trace_header", trace_header)
    return RecordedEvent(
        position=int(envelope["position"]),
        stream_id=envelope["stream_id"],
        version=int(envelope["version"]),
        event_id=envelope["event_id"],
        type=envelope["type"],
        data=envelope["data"],
        metadata=metadata,
        recorded_at=datetime.fromisoformat(envelope["occurred_at"]),
    )


def record_header(record: dict[str, Any], name: str) -> str | None:
    """A header of a Kafka event source record, decoded; names compare case-insensitively."""
    for header in record.get("headers") or []:
        for key, value in header.items():
            if key.lower() == name.lower():
                return bytes(value).decode()
    return None


def from_kafka_record(record: dict[str, Any]) -> RecordedEvent:
    envelope = json.loads(base64.b64decode(record["value"]))
    return from_envelope(envelope, record_header(record, TRACE_HEADER))


def kafka_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a Kafka event source event, in partition order."""
    return [r for batch in (event.get("records") or {}).values() for r in batch]
