"""API keys, checked as API Gateway checks them for an Api with ApiKeyRequired: the key must be
a known one. Known keys live in the clients table (partition key `api_key`); answers are cached
for a few seconds so a burst of requests does not become a burst of reads."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from consim.config import Settings

from emulator.logs import get_logger

log = get_logger("emulator.apikeys")

CACHE_SECONDS = 5.0


class ApiKeyChecker(Protocol):
    async def is_known(self, api_key: str) -> bool: ...


class DynamoDbApiKeys:
    def __init__(self, settings: Settings, cache_seconds: float = CACHE_SECONDS) -> None:
        self.table = settings.table("clients")
        self.cache_seconds = cache_seconds
        self._client = boto3.client(
            "dynamodb",
            endpoint_url=settings.dynamodb_endpoint,
            region_name=settings.aws_region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=5),
        )
        self._cache: dict[str, tuple[bool, float]] = {}

    async def is_known(self, api_key: str) -> bool:
        cached = self._cache.get(api_key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        known = await asyncio.to_thread(self._lookup, api_key)
        if known is None:
            return False  # not cached: the table may be back a moment later
        self._cache[api_key] = (known, time.monotonic() + self.cache_seconds)
        return known

    def _lookup(self, api_key: str) -> bool | None:
        try:
            item = self._client.get_item(
                TableName=self.table, Key={"api_key": {"S": api_key}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("api key lookup failed", extra={"table": self.table, "error": str(exc)})
            return None
        return "Item" in item


class StaticApiKeys:
    """A fixed set of keys (tests, or a stack without DynamoDB)."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    async def is_known(self, api_key: str) -> bool:
        return api_key in self.keys
