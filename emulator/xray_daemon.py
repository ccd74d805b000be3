"""A small X-Ray daemon: receives segment documents over UDP and forwards them in batches to an
X-Ray API (PutTraceSegments), locally moto's server.

Each datagram is a JSON header line ({"format": "json", "version": 1}), a newline, then one
segment document, as the X-Ray SDKs send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import boto3
from botocore.config import Config

from emulator.logs import get_logger

log = get_logger("emulator.xray_daemon")

BATCH_LIMIT = 50
FLUSH_INTERVAL_S = 1.0


def parse_datagram(data: bytes) -> str | None:
    """The segment document of a datagram, or None when it is not one."""
    header, sep, body = data.partition(b"\n")
    if not sep:
        return None
    try:
        if json.loads(header).get("format") != "json":
            return None
        document = body.decode()
        json.loads(document)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return document


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, daemon: XRayDaemon) -> None:
        self.daemon = daemon

    def datagram_received(self, data: bytes, addr: Any) -> None:
        document = parse_datagram(data)
        if document is None:
            log.warning("datagram is not a segment", extra={"bytes": len(data)})
            return
        self.daemon.pending.append(document)
        if len(self.daemon.pending) >= BATCH_LIMIT:
            self.daemon.wake.set()


class XRayDaemon:
    def __init__(self, address: str, xray_endpoint: str, region: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.client = boto3.client(
            "xray",
            endpoint_url=xray_endpoint,
            region_name=region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=5),
        )
        self.pending: list[str] = []
        self.wake = asyncio.Event()
        self.sent = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> XRayDaemon:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port)
        )
        self._task = asyncio.create_task(self._forward_forever())
        log.info("x-ray daemon listening", extra={"address": f"{self.host}:{self.port}"})
        return self

    async def _forward_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), FLUSH_INTERVAL_S)
            self.wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:BATCH_LIMIT], self.pending[BATCH_LIMIT:]
            try:
                answer = await asyncio.to_thread(
                    self.client.put_trace_segments, TraceSegmentDocuments=batch
                )
            except Exception as exc:  # the trace store is optional; the stack keeps running
                log.warning(
                    "segments not forwarded", extra={"count": len(batch), "error": str(exc)}
                )
                continue
            unprocessed = answer.get("UnprocessedTraceSegments") or []
            self.sent += len(batch) - len(unprocessed)
            if unprocessed:
                log.warning("segments refused", extra={"unprocessed": unprocessed[:5]})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
        await self.flush()
