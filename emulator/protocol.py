"""The private pipe between the emulator and a worker: length-prefixed JSON frames.

Frames from the emulator: {"type": "invoke", "request_id", "event", "deadline_ms", "trace_header",
"invoked_function_arn"}. Frames from a worker: {"type": "ready", "init_ms"} once, then one
{"type": "result", "request_id", "ok", "payload" | "error"} per invocation.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")


class WorkerGone(EOFError):
    """The other end of the pipe closed: the worker exited or was killed."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def read_frame(stream: BinaryIO) -> dict[str, Any]:
    header = _read_exactly(stream, _HEADER.size)
    return json.loads(_read_exactly(stream, _HEADER.unpack(header)[0]))


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise WorkerGone("pipe closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def read_frame_async(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        header = await reader.readexactly(_HEADER.size)
        return json.loads(await reader.readexactly(_HEADER.unpack(header)[0]))
    except asyncio.IncompleteReadError as exc:
        raise WorkerGone("pipe closed") from exc
