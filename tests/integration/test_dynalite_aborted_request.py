"""dynalite survives a client that hangs up in the middle of sending a request (a Lambda worker
killed mid-call): before the guard in infra/dynalite/serve.js, that ended the process."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import pytest
from consim.config import settings

from infra.dynamodb import client

pytestmark = pytest.mark.integration


def test_a_request_aborted_mid_body_leaves_dynalite_serving() -> None:
    config = settings()
    endpoint = urlparse(config.dynamodb_endpoint)
    dynamodb = client(config.dynamodb_endpoint, config.aws_region)
    dynamodb.list_tables(Limit=1)

    for _ in range(3):
        with socket.create_connection((endpoint.hostname, endpoint.port), timeout=5) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: dynamodb\r\nContent-Type: application/x-amz-json-1.0\r\n"
                b'X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 1000\r\n\r\n{"Li'
            )
            time.sleep(0.2)  # the server is reading the body when the connection goes
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    time.sleep(0.5)

    assert "TableNames" in dynamodb.list_tables(Limit=1)
