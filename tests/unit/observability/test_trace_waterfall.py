"""Segment documents to a tree, a waterfall and a service map."""

from __future__ import annotations

import json

import pytest
from consim.tracing_waterfall import (
    DYNAMODB,
    HTTP,
    KAFKA,
    POSTGRES,
    parse_trace,
    render_waterfall,
    service_map,
)

pytestmark = pytest.mark.unit


def _outline(trace) -> list[tuple[int, str]]:
    return [(row.depth, row.span.label) for row in trace.rows()]


# One block per segment, in time order; subsegments nested inside their segment's block.
EXPECTED_OUTLINE = [
    (0, "api (AWS::Lambda::Function)"),
    (1, "## app"),
    (2, "Postgres append"),
    (2, "DynamoDB PutItem consim-idempotency"),
    (2, "Kafka produce payment-events"),
    (0, "processor (AWS::Lambda::Function)"),
    (1, "127.0.0.1 POST /providers/default/payments"),
    (1, "Postgres append"),
    (0, "notifier (AWS::Lambda::Function)"),
]


def test_flat_documents_from_moto_become_one_tree(flat_documents, trace_id):
    trace = parse_trace(trace_id, [json.dumps(d) for d in flat_documents])

    assert _outline(trace) == EXPECTED_OUTLINE
    assert len(trace.roots) == 1
    processor = next(s for s in trace.spans() if s.name == "processor")
    assert processor.parent is not None and processor.parent.label == "Kafka produce payment-events"


def test_nested_documents_from_aws_give_the_same_tree(nested_documents, trace_id):
    trace = parse_trace(trace_id, nested_documents)

    assert _outline(trace) == EXPECTED_OUTLINE


def test_offsets_durations_and_services(flat_documents, ids, trace_id):
    trace = parse_trace(trace_id, flat_documents)
    rows = {row.span.id: row for row in trace.rows()}

    assert trace.duration == pytest.approx(0.450)
    assert rows[ids["processor"]].offset == pytest.approx(0.200)
    assert rows[ids["http"]].span.duration == pytest.approx(0.090)
    assert rows[ids["pg2"]].span.service == "processor"
    assert rows[ids["ddb"]].span.service == "api"
    assert trace.services == ["api", "processor", "notifier"]


def test_remote_calls_are_classified(flat_documents, ids, trace_id):
    spans = {s.id: s for s in parse_trace(trace_id, flat_documents).spans()}

    assert spans[ids["pg"]].remote == POSTGRES
    assert spans[ids["ddb"]].remote == DYNAMODB
    assert spans[ids["kafka"]].remote == KAFKA
    assert spans[ids["http"]].remote == HTTP
    assert spans[ids["handler"]].remote is None


def test_faults_and_causes_are_kept(flat_documents, ids, trace_id):
    trace = parse_trace(trace_id, flat_documents)
    http = next(s for s in trace.spans() if s.id == ids["http"])

    assert trace.has_fault
    assert not trace.has_error
    assert http.marks == "F"
    assert http.http_status == 503
    assert http.cause == "ProviderUnavailable: outage"


def test_a_segment_sent_twice_keeps_its_end(flat_documents, ids, trace_id):
    in_progress = dict(flat_documents[1], in_progress=True)
    del in_progress["end_time"]
    trace = parse_trace(trace_id, [in_progress, *flat_documents])

    api = next(s for s in trace.spans() if s.id == ids["api"])
    assert api.end is not None
    assert sum(1 for s in trace.spans() if s.id == ids["api"]) == 1


def test_an_orphan_and_a_cycle_do_not_lose_spans(ids):
    docs = [
        {"name": "a", "id": "a" * 16, "parent_id": "b" * 16, "start_time": 1.0, "end_time": 2.0},
        {"name": "b", "id": "b" * 16, "parent_id": "a" * 16, "start_time": 1.5, "end_time": 2.0},
        {"name": "c", "id": "c" * 16, "parent_id": "f" * 16, "start_time": 3.0, "end_time": 4.0},
    ]
    trace = parse_trace("1-x-y", docs)

    assert sorted(s.name for s in trace.spans()) == ["a", "b", "c"]


def test_render_waterfall_lists_every_entity_in_order(flat_documents, trace_id):
    text = render_waterfall(parse_trace(trace_id, flat_documents), width=120)
    lines = text.splitlines()

    assert lines[0].startswith(f"trace {trace_id}  450.0 ms")
    assert "services: api, processor, notifier" in lines[0]
    body = [line for line in lines if "|" in line]
    assert len(body) == len(EXPECTED_OUTLINE)
    assert "Postgres append" in body[2] and body[2].split()[:2] == ["10.0", "30.0"]
    assert " F " in body[6] and body[6].rstrip().endswith("503")
    assert any("! ProviderUnavailable: outage" in line for line in lines)
    assert body[5].rstrip().endswith("<- api: Kafka produce payment-events")
    assert body[8].rstrip().endswith("<- api: Kafka produce payment-events")
    assert "<-" not in body[0]


def test_waterfall_bars_start_where_the_span_starts(flat_documents, trace_id):
    text = render_waterfall(parse_trace(trace_id, flat_documents), width=110)
    bars = [line.split("|")[1] for line in text.splitlines() if "|" in line]

    api, notifier = bars[0], bars[-1]
    assert api.startswith("#")
    assert notifier.index("#") > len(notifier) * 0.8


def test_service_map_edges(flat_documents, trace_id):
    graph = service_map(parse_trace(trace_id, flat_documents))
    edges = {(e.source, e.target): e for e in graph.edges}

    assert set(edges) == {
        ("api", POSTGRES),
        ("api", DYNAMODB),
        ("api", KAFKA),
        ("api", "processor"),
        ("api", "notifier"),
        ("processor", "127.0.0.1/providers"),
        ("processor", POSTGRES),
    }
    assert edges[("processor", "127.0.0.1/providers")].faults == 1
    assert edges[("api", POSTGRES)].calls == 1
    assert graph.nodes[0] == "api"
