"""How a Kafka mapping thread reaches a function: the local runtime (the emulator's own workers)
or the Lambda Invoke API of another host (bridge mode, e.g. LocalStack)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config

from emulator.runtime import Runtime, Throttled

_TEST_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    payload: Any
    throttled: bool = False

    @property
    def error_type(self) -> str | None:
        if self.ok:
            return None
        if isinstance(self.payload, Mapping):
            return str(self.payload.get("errorType", "Unknown"))
        return "Unknown"


class Invoker(Protocol):
    def invoke(self, function: str, event: Any) -> Outcome: ...


class LocalInvoker:
    """Invokes through the emulator's runtime, from a thread other than the event loop's."""

    def __init__(self, runtime: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop

    def invoke(self, function: str, event: Any) -> Outcome:
        future = asyncio.run_coroutine_threadsafe(self.runtime.invoke(function, event), self.loop)
        try:
            result = future.result()
        except Throttled as exc:
            return Outcome(
                False, {"errorType": "TooManyRequestsException", "errorMessage": str(exc)}, True
            )
        return Outcome(result.ok, result.payload)


class HttpInvoker:
    """Invokes through a Lambda Invoke API (bridge mode); `names` maps the template's logical ids
    to the remote functions' names where they differ."""

    def __init__(self, endpoint_url: str, region: str, names: Mapping[str, str] | None = None):
        self.names = dict(names or {})
        # LocalStack and the emulator accept any credentials; real ones win when configured.
        credentials = {} if boto3.Session().get_credentials() else _TEST_CREDENTIALS
        self.client = boto3.client(
            "lambda",
            endpoint_url=endpoint_url,
            region_name=region,
            **credentials,
            config=Config(retries={"max_attempts": 0}, read_timeout=910, connect_timeout=5),
        )

    def invoke(self, function: str, event: Any) -> Outcome:
        try:
            answer = self.client.invoke(
                FunctionName=self.names.get(function, function),
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
            )
        except self.client.exceptions.TooManyRequestsException as exc:
            return Outcome(
                False, {"errorType": "TooManyRequestsException", "errorMessage": str(exc)}, True
            )
        raw = answer["Payload"].read()
        payload = json.loads(raw) if raw else None
        return Outcome("FunctionError" not in answer, payload)
