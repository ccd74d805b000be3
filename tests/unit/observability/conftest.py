"""Hand-made X-Ray segment documents of one payment's trip, in the two shapes an API returns."""

from __future__ import annotations

import copy

import pytest

TRACE_ID = "1-6b11b90f-3f0c96be04b545e88f52faa6"
T0 = 1_796_323_000.0


def _ids() -> dict[str, str]:
    names = ["api", "handler", "pg", "ddb", "kafka", "processor", "http", "pg2", "notifier"]
    return {name: f"{i + 1:016x}" for i, name in enumerate(names)}


@pytest.fixture
def trace_id() -> str:
    return TRACE_ID


@pytest.fixture
def ids() -> dict[str, str]:
    return _ids()


@pytest.fixture
def flat_documents() -> list[dict]:
    """As moto's server returns them: subsegments streamed one by one, linked by parent_id."""
    i = _ids()
    return [
        {
            "name": "notifier",
            "id": i["notifier"],
            "trace_id": TRACE_ID,
            "parent_id": i["kafka"],
            "start_time": T0 + 0.400,
            "end_time": T0 + 0.450,
            "origin": "AWS::Lambda::Function",
        },
        {
            "name": "api",
            "id": i["api"],
            "trace_id": TRACE_ID,
            "start_time": T0,
            "end_time": T0 + 0.100,
            "origin": "AWS::Lambda::Function",
            "http": {"response": {"status": 201}},
            "annotations": {"payment_id": "pay-1"},
        },
        {
            "type": "subsegment",
            "name": "## app",
            "id": i["handler"],
            "trace_id": TRACE_ID,
            "parent_id": i["api"],
            "start_time": T0 + 0.005,
            "end_time": T0 + 0.095,
            "subsegments": [
                {
                    "name": "Postgres",
                    "id": i["pg"],
                    "start_time": T0 + 0.010,
                    "end_time": T0 + 0.040,
                    "namespace": "remote",
                    "sql": {"database_type": "PostgreSQL"},
                    "annotations": {"operation": "append"},
                },
                {
                    "name": "DynamoDB",
                    "id": i["ddb"],
                    "start_time": T0 + 0.045,
                    "end_time": T0 + 0.055,
                    "namespace": "aws",
                    "aws": {"operation": "PutItem", "table_name": "consim-idempotency"},
                },
            ],
        },
        {
            "type": "subsegment",
            "name": "Kafka",
            "id": i["kafka"],
            "trace_id": TRACE_ID,
            "parent_id": i["handler"],
            "start_time": T0 + 0.060,
            "end_time": T0 + 0.070,
            "namespace": "remote",
            "annotations": {"operation": "produce", "topic": "payment-events"},
        },
        {
            "name": "processor",
            "id": i["processor"],
            "trace_id": TRACE_ID,
            "parent_id": i["kafka"],
            "start_time": T0 + 0.200,
            "end_time": T0 + 0.380,
            "origin": "AWS::Lambda::Function",
        },
        {
            "type": "subsegment",
            "name": "127.0.0.1",
            "id": i["http"],
            "trace_id": TRACE_ID,
            "parent_id": i["processor"],
            "start_time": T0 + 0.210,
            "end_time": T0 + 0.300,
            "namespace": "remote",
            "fault": True,
            "http": {
                "request": {
                    "method": "POST",
                    "url": "http://127.0.0.1:3000/providers/default/payments",
                },
                "response": {"status": 503},
            },
            "cause": {"exceptions": [{"type": "ProviderUnavailable", "message": "outage"}]},
        },
        {
            "type": "subsegment",
            "name": "Postgres",
            "id": i["pg2"],
            "trace_id": TRACE_ID,
            "parent_id": i["processor"],
            "start_time": T0 + 0.310,
            "end_time": T0 + 0.330,
            "namespace": "remote",
            "sql": {"database_type": "PostgreSQL"},
            "annotations": {"operation": "append"},
        },
    ]


@pytest.fixture
def nested_documents(flat_documents) -> list[dict]:
    """As AWS returns them: each segment with its subsegments nested inside it."""
    by_id = {d["id"]: d for d in copy.deepcopy(flat_documents)}
    segments = []
    for doc in by_id.values():
        if doc.get("type") == "subsegment":
            continue
        segments.append(doc)
    for doc in by_id.values():
        if doc.get("type") != "subsegment":
            continue
        parent = by_id[doc["parent_id"]]
        child = {k: v for k, v in doc.items() if k not in ("type", "trace_id", "parent_id")}
        parent.setdefault("subsegments", []).append(child)
        by_id[doc["id"]] = child
    return segments
