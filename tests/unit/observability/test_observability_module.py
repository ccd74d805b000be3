"""consim.observability inside a Lambda-like process: what reaches the X-Ray daemon.

The module configures process-wide singletons (the recorder, Powertools' tracer) when it is
imported, so each case runs in a fresh interpreter with Lambda's variables set, and a UDP socket
of the test stands in for the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

INVOCATION_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
INVOCATION_HEADER = f"Root={INVOCATION_ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
RECORD_ROOT = "1-6759e988-bd862e3fe1be46a994272794"
RECORD_HEADER = f"Root={RECORD_ROOT};Parent=1111111111111111;Sampled=1"

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import urllib3
    from consim import observability as o

    class Provider(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["provider_saw"] = self.headers.get("X-Amzn-Trace-Id")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    mode = sys.argv[1]
    seen = {}

    class Context:
        function_name = "processor"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:processor"
        aws_request_id = "req-1"

    @o.observed
    def handler(event, context):
        try:
            with o.continue_trace(event["header"].encode()) as trace_id:
                seen["yielded"] = trace_id
                seen["env_inside"] = os.environ.get("_X_AMZN_TRACE_ID")
                seen["current_inside"] = o.current_trace_id()
                o.annotate(payment_id="pay-1", account_id="acc-1")
                with o.sql_subsegment("append"):
                    with o.kafka_subsegment("produce", "payment-events"):
                        seen["kafka_header"] = o.kafka_trace_header()
                port = server.server_address[1]
                urllib3.PoolManager().request(
                    "POST", f"http://127.0.0.1:{port}/providers/default/payments", body=b"{}"
                )
                o.count(o.PAYMENTS_AUTHORIZED)
                o.logger.info("recorded")
                if mode == "fail":
                    raise RuntimeError("provider exploded")
        except RuntimeError:
            seen["raised"] = True
        seen["env_after"] = os.environ.get("_X_AMZN_TRACE_ID")
        seen["current_after"] = o.current_trace_id()
        return {}

    handler({"header": os.environ["RECORD_HEADER"]}, Context())
    print("RESULT " + json.dumps(seen))
    """
)


def run(mode: str, **extra_env: str) -> tuple[dict, list[dict], str]:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.5)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "AWS_XRAY", "_X_AMZN"))
    }
    env.update(
        LAMBDA_TASK_ROOT=os.getcwd(),
        AWS_LAMBDA_FUNCTION_NAME="processor",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
        POWERTOOLS_SERVICE_NAME="processor",
        _X_AMZN_TRACE_ID=INVOCATION_HEADER,
        RECORD_HEADER=RECORD_HEADER,
        **extra_env,
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = next(
        json.loads(line[len("RESULT ") :])
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
    )
    documents = []
    try:
        while True:
            datagram, _ = daemon.recvfrom(65536)
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            documents.append(json.loads(body))
    except TimeoutError:
        pass
    finally:
        daemon.close()
    return result, documents, done.stdout


def test_a_record_is_traced_in_its_own_trace_under_its_producer():
    seen, docs, _ = run("ok")
    by_name = {d["name"]: d for d in docs}

    segment = by_name["processor"]
    assert segment["trace_id"] == RECORD_ROOT
    assert segment["parent_id"] == "1111111111111111"
    assert segment["origin"] == "AWS::Lambda::Function"
    assert segment["annotations"]["payment_id"] == "pay-1"
    assert segment["annotations"]["account_id"] == "acc-1"
    assert segment["annotations"]["invocation_trace_id"] == INVOCATION_ROOT
    assert segment["metadata"]["consim"]["invocation"]["segment_id"] == "53995c3f42cd8ad8"

    postgres, kafka = by_name["Postgres"], by_name["Kafka"]
    assert postgres["trace_id"] == kafka["trace_id"] == RECORD_ROOT
    assert postgres["parent_id"] == segment["id"]
    assert kafka["parent_id"] == postgres["id"]
    assert postgres["sql"]["database_type"] == "PostgreSQL"
    assert kafka["annotations"] == {"operation": "produce", "topic": "payment-events"}
    assert seen["kafka_header"] == f"Root={RECORD_ROOT};Parent={kafka['id']};Sampled=1"


def test_the_invocation_keeps_its_handler_subsegment_and_its_environment():
    seen, docs, _ = run("ok")
    handler = next(d for d in docs if d["name"] == "## handler")

    assert handler["trace_id"] == INVOCATION_ROOT
    assert handler["parent_id"] == "53995c3f42cd8ad8"
    assert seen["yielded"] == seen["current_inside"] == RECORD_ROOT
    assert seen["env_inside"].startswith(f"Root={RECORD_ROOT};Parent=")
    assert seen["env_after"] == INVOCATION_HEADER
    assert seen["current_after"] == INVOCATION_ROOT


def test_an_exception_marks_the_record_segment_as_a_fault():
    seen, docs, _ = run("fail")
    segment = next(d for d in docs if d["name"] == "processor")

    assert seen["raised"] is True
    assert segment["fault"] is True
    assert segment["cause"]["exceptions"][0]["message"] == "provider exploded"
    assert seen["env_after"] == INVOCATION_HEADER


def test_with_tracing_disabled_nothing_is_sent_but_the_trace_id_still_flows():
    seen, docs, stdout = run("ok", POWERTOOLS_TRACE_DISABLED="true")

    assert docs == []
    assert seen["env_inside"] == RECORD_HEADER
    assert seen["current_inside"] == RECORD_ROOT
    assert seen["env_after"] == INVOCATION_HEADER
    assert '"PaymentsAuthorized":[1.0]' in stdout


def test_logs_carry_the_record_trace_and_the_payment():
    _, _, stdout = run("ok")
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    log = next(line for line in lines if line.get("message") == "recorded")
    emf = [line for line in lines if "_aws" in line]

    assert log["xray_trace_id"] == log["trace_id"] == RECORD_ROOT
    assert (log["payment_id"], log["account_id"]) == ("pay-1", "acc-1")
    assert log["service"] == "processor"
    assert log["cold_start"] is True

    names = {m["Name"] for r in emf for d in r["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert "PaymentsAuthorized" in names
    assert all(
        d["Namespace"] == "ConcurrencySimulator"
        for r in emf
        for d in r["_aws"]["CloudWatchMetrics"]
    )


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("INSERT INTO events (stream_id) VALUES (%s)", "INSERT events"),
        ("select metadata from events where stream_id = %s", "SELECT events"),
        ('UPDATE "provider".knobs SET outage = true', "UPDATE provider.knobs"),
        ("DELETE FROM outbox WHERE position = %s", "DELETE outbox"),
        ("SELECT pg_advisory_xact_lock(%s)", "SELECT"),
        ("", "ping"),
    ],
)
def test_a_statement_is_named_by_its_verb_and_table(statement, operation):
    from consim.observability import _sql_operation

    assert _sql_operation(statement) == operation


def test_an_http_call_is_a_subsegment_and_carries_the_trace_to_the_callee():
    seen, docs, _ = run("ok")
    call = next(d for d in docs if d["name"] == "127.0.0.1")
    segment = next(d for d in docs if d["name"] == "processor")

    assert call["trace_id"] == RECORD_ROOT
    assert call["parent_id"] == segment["id"]
    assert call["namespace"] == "remote"
    assert call["http"]["request"]["method"] == "POST"
    assert call["http"]["request"]["url"].endswith("/providers/default/payments")
    assert call["http"]["response"]["status"] == 503
    assert call["fault"] is True
    assert seen["provider_saw"] == f"Root={RECORD_ROOT};Parent={call['id']};Sampled=1"
    assert sum(1 for d in docs if d.get("http", {}).get("request")) == 1


TWICE = textwrap.dedent(
    """
    import os
    from consim import observability as o

    class Context:
        function_name = "provider"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:provider"
        aws_request_id = "req-1"

    @o.observed
    def handler(event, context):
        with o.remote_subsegment("Postgres", "charge"):
            pass
        return {}

    for parent in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"):
        os.environ["_X_AMZN_TRACE_ID"] = f"Root={os.environ['ROOT']};Parent={parent};Sampled=1"
        handler({}, Context())
    """
)


def test_two_invocations_in_one_trace_hang_under_their_own_segments():
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "_X_AMZN"))}
    env.update(
        LAMBDA_TASK_ROOT=os.getcwd(),
        AWS_LAMBDA_FUNCTION_NAME="provider",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
        ROOT=RECORD_ROOT,
    )
    done = subprocess.run(
        [sys.executable, "-c", TWICE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    docs = []
    with contextlib.suppress(TimeoutError):
        while True:
            docs.append(json.loads(daemon.recvfrom(65536)[0].partition(b"\n")[2]))
    daemon.close()

    handlers = [d for d in docs if d["name"] == "## handler"]
    assert [d["parent_id"] for d in handlers] == ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
    assert all(d["trace_id"] == RECORD_ROOT for d in handlers)
