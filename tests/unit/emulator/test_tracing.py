"""Trace headers, the function segment and the daemon's datagrams."""

import json

import pytest

from emulator.tracing import DAEMON_HEADER, InvocationTrace, TraceHeader, new_trace_id
from emulator.xray_daemon import parse_datagram

pytestmark = pytest.mark.unit


def test_trace_ids_have_xrays_format():
    trace_id = new_trace_id(now=0x5F000000)
    version, epoch, random = trace_id.split("-")
    assert (version, epoch, len(random)) == ("1", "5f000000", 24)


def test_header_round_trip():
    header = TraceHeader.parse("Root=1-5f000000-abc;Parent=0123456789abcdef;Sampled=0")
    assert header == TraceHeader("1-5f000000-abc", "0123456789abcdef", False)
    assert TraceHeader.parse(header.render()) == header
    assert TraceHeader.parse("Parent=x") is None


def test_an_invocation_continues_the_callers_trace_under_a_new_function_segment():
    trace = InvocationTrace.begin("Root=1-5f000000-abc;Parent=aaaaaaaaaaaaaaaa;Sampled=1")
    handed = TraceHeader.parse(trace.header_for_function())
    assert handed.root == "1-5f000000-abc"
    assert handed.parent == trace.segment_id != "aaaaaaaaaaaaaaaa"

    segment = trace.segment("fn", "arn:fn", "req", 1.0, 2.5, {"errorType": "Boom"}, True)
    assert segment["id"] == trace.segment_id
    assert segment["parent_id"] == "aaaaaaaaaaaaaaaa"
    assert segment["origin"] == "AWS::Lambda::Function"
    assert segment["fault"] is True
    assert segment["cause"]["exceptions"][0]["type"] == "Boom"


def test_a_new_trace_has_no_parent():
    segment = InvocationTrace.begin(None).segment("fn", "arn:fn", "req", 1.0, 2.0)
    assert "parent_id" not in segment and "fault" not in segment


def test_daemon_reads_header_and_document():
    document = {"name": "x", "id": "1", "trace_id": "t", "start_time": 1, "end_time": 2}
    assert json.loads(parse_datagram(DAEMON_HEADER + json.dumps(document).encode())) == document
    assert parse_datagram(b"no newline") is None
    assert parse_datagram(b'{"format": "json"}\nnot json') is None
