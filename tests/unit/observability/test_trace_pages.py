"""The /_traces pages, served by aiohttp with a fake X-Ray reader."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from consim.config import settings
from consim.tracing_waterfall import parse_trace, service_map

from emulator import trace_pages
from simulator.tracing import TraceSummary

pytestmark = pytest.mark.unit


class FakeReader:
    def __init__(self, traces):
        self._traces = {t.id: t for t in traces}

    def summaries(self, since, until=None, filter_expression=None):
        return [
            TraceSummary(t.id, t.duration, t.has_error, t.has_fault) for t in self._traces.values()
        ]

    def traces(self, trace_ids):
        return [self._traces[i] for i in trace_ids if i in self._traces]


def serve(reader, paths, tmp_path, monkeypatch):
    monkeypatch.setenv("CONSIM_STATE_DIR", str(tmp_path))

    async def go():
        root = web.Application()
        trace_pages.mount(root, settings(), reader=reader)
        async with TestClient(TestServer(root)) as client:
            answers = []
            for path in paths:
                response = await client.get(path, allow_redirects=False)
                answers.append((response.status, await response.text(), response.headers))
            return answers

    return asyncio.run(go())


def test_trace_page_has_every_row_and_a_service_map(
    flat_documents, trace_id, tmp_path, monkeypatch
):
    trace = parse_trace(trace_id, flat_documents)
    [(status, body, _)] = serve(
        FakeReader([trace]), [f"/_traces/{trace_id}"], tmp_path, monkeypatch
    )

    assert status == 200
    assert body.count("<tr>") == 1 + len(trace.rows())
    assert "ProviderUnavailable: outage" in body
    assert "<svg" in body and ">127.0.0.1/providers<" in body
    assert "payment_id <code>pay-1</code>" in body
    assert "&larr; api: Kafka produce payment-events" in body


def test_list_page_links_each_trace_with_its_services(
    flat_documents, trace_id, tmp_path, monkeypatch
):
    trace = parse_trace(trace_id, flat_documents)
    [(status, body, _), (missing, _, _), (bare, _, headers)] = serve(
        FakeReader([trace]),
        ["/_traces/", "/_traces/1-00000000-000000000000000000000000", "/_traces"],
        tmp_path,
        monkeypatch,
    )

    assert status == 200
    assert f"href='/_traces/{trace_id}'" in body
    assert "api, processor, notifier" in body
    assert "<td>pay-1</td>" in body
    assert missing == 404
    assert bare == 302 and headers["Location"] == "/_traces/"


def test_metrics_page_summarises_the_logs(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    stamp = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1000)
    record = {
        "_aws": {
            "Timestamp": stamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": "ConcurrencySimulator",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "NotificationsSent", "Unit": "Count"}],
                }
            ],
        },
        "service": "notifier",
        "NotificationsSent": [1.0, 1.0, 1.0],
    }
    (logs / "notifier.log").write_text(json.dumps(record) + "\n")

    [(status, body, _)] = serve(FakeReader([]), ["/_traces/metrics"], tmp_path, monkeypatch)

    assert status == 200
    assert "<td>NotificationsSent</td><td>notifier</td><td>Count</td><td class=num>3</td>" in body


def test_service_map_svg_places_every_node(flat_documents, trace_id):
    svg = trace_pages.render_service_map_svg(service_map(parse_trace(trace_id, flat_documents)))

    for node in ("api", "processor", "notifier", "Postgres", "DynamoDB", "Kafka"):
        assert f">{node}</text>" in svg
    assert svg.count("<line") == 7
