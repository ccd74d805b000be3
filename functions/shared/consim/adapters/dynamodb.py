"""DynamoDB clients for the stack's endpoint, and the API clients directory."""

from __future__ import annotations

import os
import threading
import time
from functools import cache

import boto3
from botocore.config import Config

from consim.config import settings

# Fail fast: a request that waits on a dead endpoint holds a Lambda environment for nothing.
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})


def endpoint_url() -> str | None:
    """The DynamoDB endpoint: the configured one, none (AWS's own) inside Lambda without one."""
    if os.environ.get("DYNAMODB_ENDPOINT"):
        return os.environ["DYNAMODB_ENDPOINT"]
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not os.environ.get("CONSIM_PORT_OFFSET"):
        return None
    return settings().dynamodb_endpoint


@cache
def client():
    return boto3.client(
        "dynamodb", endpoint_url=endpoint_url(), region_name=settings().aws_region, config=_CONFIG
    )


class UnknownApiKey(Exception):
    pass


class ClientDirectory:
    """API key -> client id, from the clients table, cached for `ttl` seconds per process.

    API Gateway already refused unknown keys; the cache keeps a table read off every request.
    A removed key keeps working here for at most `ttl`.
    """

    def __init__(self, table: str | None = None, ttl: float = 60.0) -> None:
        self._table = table or settings().table("clients")
        self._ttl = ttl
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def client_id(self, api_key: str) -> str:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(api_key)
        if cached and cached[1] > now:
            return cached[0]
        item = (
            client()
            .get_item(TableName=self._table, Key={"api_key": {"S": api_key}}, ConsistentRead=True)
            .get("Item")
        )
        if not item or "client_id" not in item:
            raise UnknownApiKey()
        client_id = item["client_id"]["S"]
        with self._lock:
            self._cache[api_key] = (client_id, now + self._ttl)
        return client_id
