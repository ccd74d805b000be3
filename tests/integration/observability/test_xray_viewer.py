"""Segments into the stack's X-Ray API (moto's server), read back by the viewer.

Three ways in: PutTraceSegments directly; the X-Ray SDK through consim.observability and the
emulator's UDP daemon; and a payment found through its events in the event store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import timedelta

import boto3
import psycopg
import pytest
from consim.config import settings
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from emulator.xray_daemon import XRayDaemon
from infra.broker import admin_client
from simulator.tracing import XRayReader, payment_trace_ids, trace_command

pytestmark = pytest.mark.integration


def new_trace_id() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def new_id() -> str:
    return secrets.token_hex(8)


def payment_documents(trace_id: str) -> list[dict]:
    now = time.time() - 1.0
    api, handler, kafka, processor = new_id(), new_id(), new_id(), new_id()
    return [
        {
            "name": "api",
            "id": api,
            "trace_id": trace_id,
            "start_time": now,
            "end_time": now + 0.1,
            "origin": "AWS::Lambda::Function",
        },
        {
            "type": "subsegment",
            "name": "## app",
            "id": handler,
            "trace_id": trace_id,
            "parent_id": api,
            "start_time": now + 0.01,
            "end_time": now + 0.09,
            "subsegments": [
                {
                    "name": "Postgres",
                    "id": new_id(),
                    "start_time": now + 0.02,
                    "end_time": now + 0.04,
                    "namespace": "remote",
                    "sql": {"database_type": "PostgreSQL"},
                    "annotations": {"operation": "append"},
                }
            ],
        },
        {
            "type": "subsegment",
            "name": "Kafka",
            "id": kafka,
            "trace_id": trace_id,
            "parent_id": handler,
            "start_time": now + 0.05,
            "end_time": now + 0.06,
            "namespace": "remote",
            "annotations": {"operation": "produce", "topic": "payment-events"},
        },
        {
            "name": "processor",
            "id": processor,
            "trace_id": trace_id,
            "parent_id": kafka,
            "start_time": now + 0.2,
            "end_time": now + 0.3,
            "origin": "AWS::Lambda::Function",
        },
    ]


@pytest.fixture(scope="module")
def xray():
    config = settings()
    return boto3.client(
        "xray",
        endpoint_url=config.xray_endpoint,
        region_name=config.aws_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture(scope="module")
def reader():
    return XRayReader.from_settings()


def put(xray, documents) -> None:
    answer = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(d) for d in documents])
    assert answer["UnprocessedTraceSegments"] == []


def outline(trace) -> list[tuple[int, str]]:
    return [(row.depth, row.span.label) for row in trace.rows()]


EXPECTED = [
    (0, "api (AWS::Lambda::Function)"),
    (1, "## app"),
    (2, "Postgres append"),
    (2, "Kafka produce payment-events"),
    (0, "processor (AWS::Lambda::Function)"),
]


def test_segments_put_to_the_api_come_back_as_one_waterfall(xray, reader):
    trace_id = new_trace_id()
    put(xray, payment_documents(trace_id))

    listed = [s.id for s in reader.summaries(timedelta(minutes=5))]
    trace = reader.trace(trace_id)

    assert trace_id in listed
    assert outline(trace) == EXPECTED
    assert trace.services == ["api", "processor"]


def test_a_filter_expression_is_not_sent_to_moto(xray, reader):
    trace_id = new_trace_id()
    put(xray, payment_documents(trace_id))

    listed = [s.id for s in reader.summaries(timedelta(minutes=5), filter_expression="ok")]

    assert not reader.filters
    assert trace_id in listed


SDK_SCRIPT = textwrap.dedent(
    """
    import os
    from consim import observability as o
    import psycopg
    from kafka import KafkaProducer

    class Context:
        function_name = "processor"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:processor"
        aws_request_id = "req-1"

    @o.observed
    def handler(event, context):
        with o.continue_trace(event["header"]):
            o.annotate(payment_id=event["payment_id"])
            with o.sql_subsegment("append"):
                with o.kafka_subsegment("produce", "payment-events"):
                    pass
            with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
                conn.execute("SELECT count(*) FROM events WHERE stream_id = %s", ["none"])
            producer = KafkaProducer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"].split(","))
            producer.send(os.environ["TOPIC"], b"traced")
            producer.flush(timeout=10)
        producer.close()  # it flushes again: outside the record's trace, not in the outline
        return {}

    handler({"header": os.environ["RECORD_HEADER"], "payment_id": "pay-sdk"}, Context())
    """
)


class DaemonThread:
    """The emulator's X-Ray daemon on a free port, forwarding to the stack's moto server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.daemon: XRayDaemon | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        config = settings()
        self.daemon = XRayDaemon("127.0.0.1:0", config.xray_endpoint, config.aws_region)
        self.loop.run_until_complete(self.daemon.start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> str:
        self.thread.start()
        assert self.ready.wait(10)
        host, port = self.daemon._transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def __exit__(self, *exc) -> None:
        future = asyncio.run_coroutine_threadsafe(self.daemon.close(), self.loop)
        future.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


TOPIC = "consim-observability-test"


@pytest.fixture(scope="module")
def topic():
    admin = admin_client(settings().kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    return TOPIC


def test_sdk_segments_travel_through_the_daemon_into_one_trace(reader, topic):
    trace_id, producer = new_trace_id(), new_id()
    with DaemonThread() as address:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "_X_"))}
        env.update(
            LAMBDA_TASK_ROOT=os.getcwd(),
            AWS_LAMBDA_FUNCTION_NAME="processor",
            AWS_XRAY_DAEMON_ADDRESS=address,
            POWERTOOLS_SERVICE_NAME="processor",
            _X_AMZN_TRACE_ID=f"Root={new_trace_id()};Parent={new_id()};Sampled=1",
            RECORD_HEADER=f"Root={trace_id};Parent={producer};Sampled=1",
            DATABASE_URL=settings().database_url,
            KAFKA_BOOTSTRAP=settings().kafka_bootstrap,
            TOPIC=topic,
        )
        done = subprocess.run(
            [sys.executable, "-c", SDK_SCRIPT], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr

        deadline = time.monotonic() + 15
        trace = None
        while time.monotonic() < deadline:
            found = reader.traces([trace_id])
            if found and sum(1 for _ in found[0].spans()) >= 6:
                trace = found[0]
                break
            time.sleep(0.5)

    assert trace is not None, "the segments never reached the X-Ray API"
    assert outline(trace) == [
        (0, "processor (AWS::Lambda::Function)"),
        (1, "Postgres append"),
        (2, "Kafka produce payment-events"),
        (1, "Postgres SELECT events"),
        (1, f"Kafka send {topic}"),
        (1, "Kafka flush"),
    ]
    select = next(s for s in trace.spans() if s.label == "Postgres SELECT events")
    assert select.remote == "Postgres"
    assert trace.roots[0].parent_id == producer
    assert trace.annotation("payment_id") == "pay-sdk"


def test_consim_trace_finds_a_payment_through_its_events(xray, capsys, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    trace_id, payment_id = new_trace_id(), f"it-{uuid.uuid4()}"
    put(xray, payment_documents(trace_id))
    with psycopg.connect(settings().database_url, autocommit=True) as conn:
        for version, kind in enumerate(["PaymentRequested", "PaymentAuthorized"], start=1):
            conn.execute(
                "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    f"payment-{payment_id}",
                    version,
                    uuid.uuid4(),
                    kind,
                    json.dumps({"payment_id": payment_id}),
                    json.dumps({"trace_id": trace_id}),
                ),
            )

    try:
        assert payment_trace_ids(payment_id) == [trace_id]
        args = argparse.Namespace(
            payment_id=payment_id, trace_id=None, xray_endpoint=None, width=120, wait=0
        )
        status = trace_command(args)
    finally:
        # Half-made events must not outlive the test: a rebuild of the read models over the
        # shared store folds every stream.
        with psycopg.connect(settings().database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM events WHERE stream_id = %s", [f"payment-{payment_id}"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"trace {trace_id}")
    assert "Kafka produce payment-events" in out
    assert f"/_traces/{trace_id}" in out


def test_consim_trace_says_when_a_payment_does_not_exist(capsys, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    args = argparse.Namespace(
        payment_id=f"missing-{uuid.uuid4()}", trace_id=None, xray_endpoint=None, width=120, wait=0
    )

    status = trace_command(args)

    assert status == 1
    assert "has no events" in capsys.readouterr().err
