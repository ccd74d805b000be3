"""X-Ray trace headers and the segment the Lambda service records for each invocation.

The emulator plays the Lambda service's part: it starts a trace (or continues the caller's
X-Amzn-Trace-Id), hands the function a header whose Parent is the id of an
AWS::Lambda::Function segment, and sends that segment to the X-Ray daemon when the invocation
ends, so the function's own subsegments hang under it.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from emulator.logs import get_logger

log = get_logger("emulator.tracing")

DAEMON_HEADER = b'{"format": "json", "version": 1}\n'


def new_trace_id(now: float | None = None) -> str:
    return f"1-{int(now or time.time()):08x}-{secrets.token_hex(12)}"


def new_segment_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class TraceHeader:
    root: str
    parent: str | None = None
    sampled: bool = True

    @classmethod
    def parse(cls, header: str | None) -> TraceHeader | None:
        if not header:
            return None
        fields = {}
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        if not fields.get("Root"):
            return None
        return cls(fields["Root"], fields.get("Parent") or None, fields.get("Sampled") != "0")

    def render(self) -> str:
        parts = [f"Root={self.root}"]
        if self.parent:
            parts.append(f"Parent={self.parent}")
        parts.append(f"Sampled={1 if self.sampled else 0}")
        return ";".join(parts)


@dataclass(frozen=True)
class InvocationTrace:
    """The trace of one invocation: the caller's parent (if any) and the function segment id."""

    root: str
    caller_parent: str | None
    segment_id: str
    sampled: bool

    @classmethod
    def begin(cls, incoming: str | None) -> InvocationTrace:
        caller = TraceHeader.parse(incoming)
        if caller is None:
            return cls(new_trace_id(), None, new_segment_id(), True)
        return cls(caller.root, caller.parent, new_segment_id(), caller.sampled)

    def header_for_function(self) -> str:
        return TraceHeader(self.root, self.segment_id, self.sampled).render()

    def segment(
        self,
        function_name: str,
        function_arn: str,
        request_id: str,
        start: float,
        end: float,
        error: dict[str, Any] | None = None,
        cold_start: bool = False,
    ) -> dict[str, Any]:
        segment: dict[str, Any] = {
            "name": function_name,
            "id": self.segment_id,
            "trace_id": self.root,
            "start_time": start,
            "end_time": end,
            "origin": "AWS::Lambda::Function",
            "resource_arn": function_arn,
            "aws": {"request_id": request_id, "function_arn": function_arn},
            "annotations": {"cold_start": cold_start},
        }
        if self.caller_parent:
            segment["parent_id"] = self.caller_parent
        if error is not None:
            segment["fault"] = True
            segment["cause"] = {
                "exceptions": [
                    {
                        "id": new_segment_id(),
                        "type": str(error.get("errorType", "Error")),
                        "message": str(error.get("errorMessage", ""))[:1000],
                    }
                ]
            }
        return segment


class SegmentEmitter:
    """Sends segment documents to an X-Ray daemon over UDP, as the SDKs do."""

    def __init__(self, daemon_address: str) -> None:
        host, _, port = daemon_address.rpartition(":")
        self.address = (host or "127.0.0.1", int(port))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def emit(self, segment: dict[str, Any]) -> None:
        try:
            self._socket.sendto(DAEMON_HEADER + json.dumps(segment).encode(), self.address)
        except OSError as exc:
            log.warning(
                "segment not sent", extra={"error": str(exc), "trace_id": segment["trace_id"]}
            )

    def close(self) -> None:
        self._socket.close()
