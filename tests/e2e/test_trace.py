"""A payment made over HTTP is one trace, from the POST to the last consumer, and the viewer
shows it: segments for the api, processor, projector and notifier; subsegments for Postgres,
DynamoDB, Kafka and the provider; children never before their parents."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from consim.config import settings
from consim.tracing_waterfall import DYNAMODB, HTTP, KAFKA, POSTGRES, Trace, render_waterfall

from infra.clients import api_key as stored_api_key
from infra.layout import Layout
from simulator.tracing import XRayReader, payment_trace_ids, trace_command

pytestmark = pytest.mark.e2e

SERVICES = ("api", "processor", "projector", "notifier")
SETTLE_SECONDS = 90
# Clocks are one machine's, but the SDK and the emulator round differently: allow a hair.
CLOCK_SLACK = 0.002


def call(method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
    config = settings()
    key = os.environ.get("API_KEY") or stored_api_key(Layout(config.state_dir))
    request = urllib.request.Request(
        f"{config.api_url.rstrip('/')}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"x-api-key": key or "", "content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def service_of(segment_name: str) -> str | None:
    for service in SERVICES:
        if service in segment_name.lower():
            return service
    return None


def complete(trace: Trace) -> bool:
    services = {service_of(s.name) for s in trace.segments}
    remotes = {s.remote for s in trace.spans() if not s.is_segment}
    open_spans = [s for s in trace.spans() if s.end is None]
    return (
        set(SERVICES) <= services and {POSTGRES, DYNAMODB, KAFKA, HTTP} <= remotes
    ) and not open_spans


@pytest.fixture(scope="module")
def payment() -> dict:
    status, account = call("POST", "/accounts", {"currency": "EUR", "limit": 1_000_000})
    assert status == 201, account
    status, accepted = call(
        "POST",
        "/payments",
        {"account_id": account["id"], "amount": 2500, "currency": "EUR", "description": "trace"},
        {"Idempotency-Key": f"e2e-trace-{uuid.uuid4()}"},
    )
    assert status == 201, accepted

    deadline = time.monotonic() + SETTLE_SECONDS
    current = accepted
    while current.get("status") == "pending" and time.monotonic() < deadline:
        time.sleep(1)
        _, current = call("GET", f"/payments/{accepted['id']}")
    assert current.get("status") in ("authorized", "declined", "failed"), current
    return current


@pytest.fixture(scope="module")
def trace(payment) -> Trace:
    trace_ids = payment_trace_ids(payment["id"])
    assert len(trace_ids) == 1, f"one payment, one trace: {trace_ids}"

    reader = XRayReader.from_settings()
    deadline = time.monotonic() + SETTLE_SECONDS
    found: Trace | None = None
    while time.monotonic() < deadline:
        traces = reader.traces(trace_ids)
        found = traces[0] if traces else None
        if found is not None and complete(found):
            return found
        time.sleep(2)
    pytest.fail(
        "the trace never held every service and call:\n"
        + (render_waterfall(found) if found else "no segments at all")
    )


def test_every_event_of_the_payment_was_recorded_in_one_trace(payment, trace):
    status, body = call("GET", f"/payments/{payment['id']}/events")

    assert status == 200
    assert {e["trace_id"] for e in body["events"]} == {trace.id}
    assert len(body["events"]) >= 2


def test_the_trace_has_a_segment_per_function_and_the_calls_they_made(trace):
    per_service = {service_of(s.name) for s in trace.segments}
    remotes = {s.remote for s in trace.spans() if not s.is_segment}
    provider_calls = [
        s for s in trace.spans() if s.remote == HTTP and "/providers/" in (s.operation or "")
    ]

    assert set(SERVICES) <= per_service
    assert {POSTGRES, DYNAMODB, KAFKA, HTTP} <= remotes
    assert provider_calls and all(s.service == "processor" for s in provider_calls)


def test_the_trace_reads_in_time_order(trace):
    roots = sorted(trace.roots, key=lambda s: s.start)
    first = roots[0]
    api = min((s for s in trace.segments if service_of(s.name) == "api"), key=lambda s: s.start)

    assert first is api, "the trace begins with the API"
    for span in trace.spans():
        for child in span.children:
            assert child.start >= span.start - CLOCK_SLACK, (span.label, child.label)
    api_send = min(
        s.start for s in trace.spans() if s.remote == KAFKA and service_of(s.service) == "api"
    )
    for segment in trace.segments:
        if service_of(segment.name) in ("processor", "projector", "notifier"):
            assert segment.start >= api_send - CLOCK_SLACK, segment.label


def test_the_viewer_renders_it(payment, trace, capsys):
    status = trace_command(
        argparse.Namespace(
            payment_id=payment["id"], trace_id=None, xray_endpoint=None, width=130, wait=0
        )
    )
    out = capsys.readouterr().out

    assert status == 0
    assert f"trace {trace.id}" in out
    # The event append shows as its named step, or as its statement when
    # CONSIM_TRACE_SQL_STATEMENTS=true adds one subsegment per statement.
    assert re.search(r"Postgres (locked_append|append|INSERT events)", out), out
    for label in ("Kafka send payment-events", "dynamodb"):
        assert label in out

    page = urllib.request.urlopen(f"{settings().api_url}/_traces/{trace.id}", timeout=30)
    html = page.read().decode()
    assert page.status == 200
    assert "<svg" in html
    for service in ("processor", "projector", "notifier"):
        assert service in html
