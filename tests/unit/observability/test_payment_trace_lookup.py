"""A payment's trace ids, read from GET /payments/{id}/events of a stand-in API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from consim.config import settings

from simulator.tracing import PaymentNotFound, TraceNotFound, payment_trace_ids

pytestmark = pytest.mark.unit

EVENTS = {
    "pay-1": [
        {"type": "PaymentRequested", "trace_id": "1-aaaaaaaa-000000000000000000000001"},
        {"type": "PaymentAuthorized", "trace_id": "1-aaaaaaaa-000000000000000000000001"},
    ],
    "pay-retried": [
        {"type": "PaymentRequested", "trace_id": "1-aaaaaaaa-000000000000000000000002"},
        {"type": "PaymentFailed", "trace_id": "1-aaaaaaaa-000000000000000000000003"},
    ],
    "pay-untraced": [{"type": "PaymentRequested", "trace_id": None}],
}


class FakeApi(BaseHTTPRequestHandler):
    def do_GET(self):
        payment_id = self.path.split("/")[2]
        if self.headers.get("x-api-key") != "key-1" or payment_id not in EVENTS:
            self.send_response(404 if payment_id not in EVENTS else 403)
            self.end_headers()
            return
        body = json.dumps({"payment_id": payment_id, "events": EVENTS[payment_id]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def api(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("API_KEY", "key-1")
    yield settings()
    server.shutdown()
    server.server_close()


def test_one_trace_for_a_payment(api):
    assert payment_trace_ids("pay-1", api) == ["1-aaaaaaaa-000000000000000000000001"]


def test_every_trace_in_the_order_of_the_events(api):
    assert payment_trace_ids("pay-retried", api) == [
        "1-aaaaaaaa-000000000000000000000002",
        "1-aaaaaaaa-000000000000000000000003",
    ]


def test_an_unknown_payment_is_said_so(api):
    with pytest.raises(PaymentNotFound):
        payment_trace_ids("pay-unknown", api)


def test_events_without_a_trace_are_said_so(api):
    with pytest.raises(TraceNotFound):
        payment_trace_ids("pay-untraced", api)
