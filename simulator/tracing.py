"""The trace viewer's reading side: a payment's trace id, traces from any X-Ray API, the CLI.

Entry points for ``simulator/cli.py`` (each takes the parsed ``argparse.Namespace`` and returns
an exit status)::

    add_trace_arguments(parser)   # PAYMENT_ID, --trace-id, --xray-endpoint, --width
    trace_command(args)           # consim trace PAYMENT_ID: the terminal waterfall

The viewer only uses BatchGetTraces and GetTraceSummaries over a time window, so it reads
moto's server locally and X-Ray in AWS alike (``--xray-endpoint aws`` for the real one).
moto's server implements neither filter expressions nor annotations in summaries, so a
payment is never looked up by annotation here: its trace id comes from its events' metadata,
read through the API (``API_KEY`` set) or straight from the event store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consim.config import Settings, settings
from consim.tracing_waterfall import Trace, parse_trace, render_waterfall

__all__ = [
    "PaymentNotFound",
    "TraceNotFound",
    "TraceSummary",
    "XRayReader",
    "add_trace_arguments",
    "payment_trace_ids",
    "trace_command",
]

# BatchGetTraces takes at most five ids a call in AWS.
_BATCH = 5


class TraceViewerError(Exception):
    """What the viewer cannot show, said for a person."""


class PaymentNotFound(TraceViewerError):
    pass


class TraceNotFound(TraceViewerError):
    pass


@dataclass(frozen=True)
class TraceSummary:
    id: str
    duration: float
    has_error: bool
    has_fault: bool

    @property
    def started(self) -> datetime:
        """X-Ray trace ids carry their start second: 1-<hex epoch seconds>-<random>."""
        try:
            return datetime.fromtimestamp(int(self.id.split("-")[1], 16), UTC)
        except (IndexError, ValueError):
            return datetime.fromtimestamp(0, UTC)


class XRayReader:
    """BatchGetTraces and GetTraceSummaries, on moto's server or on AWS."""

    def __init__(self, endpoint: str | None, region: str) -> None:
        import boto3

        options: dict[str, Any] = {"region_name": region}
        if endpoint:
            options["endpoint_url"] = endpoint
            # A local endpoint takes any key; do not send real credentials to it.
            options.setdefault("aws_access_key_id", os.environ.get("AWS_ACCESS_KEY_ID", "local"))
            options.setdefault(
                "aws_secret_access_key", os.environ.get("AWS_SECRET_ACCESS_KEY", "local")
            )
        self._client = boto3.client("xray", **options)
        self.filters = not endpoint or _endpoint_filters(endpoint)

    @classmethod
    def from_settings(
        cls, config: Settings | None = None, endpoint: str | None = None
    ) -> XRayReader:
        config = config or settings()
        chosen = endpoint if endpoint is not None else config.xray_endpoint
        return cls(None if chosen in ("", "aws") else chosen, config.aws_region)

    def traces(self, trace_ids: Iterable[str]) -> list[Trace]:
        ids = list(dict.fromkeys(trace_ids))
        found: list[Trace] = []
        for start in range(0, len(ids), _BATCH):
            token: str | None = None
            while True:
                request: dict[str, Any] = {"TraceIds": ids[start : start + _BATCH]}
                if token:
                    request["NextToken"] = token
                reply = self._client.batch_get_traces(**request)
                for trace in reply.get("Traces", []):
                    documents = [s["Document"] for s in trace.get("Segments", [])]
                    found.append(parse_trace(trace["Id"], documents))
                token = reply.get("NextToken")
                if not token:
                    break
        return found

    def trace(self, trace_id: str) -> Trace:
        traces = self.traces([trace_id])
        if not traces or not traces[0].roots:
            raise TraceNotFound(f"no segments for trace {trace_id} at the X-Ray API yet")
        return traces[0]

    def summaries(
        self,
        since: timedelta,
        until: datetime | None = None,
        filter_expression: str | None = None,
        limit: int = 2000,
    ) -> list[TraceSummary]:
        """Traces that started and ended in the window, newest first (pages stop at ``limit``:
        a busy AWS account has far more traces in a window than a page can show)."""
        # Whole seconds: moto's server parses the bounds with int(); the end gets one second
        # of slack because moto only counts traces that ended strictly before it.
        end = (until or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=1)
        start = end - since - timedelta(seconds=1)
        request: dict[str, Any] = {"StartTime": start, "EndTime": end, "Sampling": False}
        if filter_expression and self.filters:
            request["FilterExpression"] = filter_expression
        found: dict[str, TraceSummary] = {}
        for page in self._client.get_paginator("get_trace_summaries").paginate(**request):
            for item in page.get("TraceSummaries", []):
                found[item["Id"]] = TraceSummary(
                    id=item["Id"],
                    duration=float(item.get("Duration") or 0.0),
                    has_error=bool(item.get("HasError")),
                    has_fault=bool(item.get("HasFault")),
                )
            if len(found) >= limit:
                break
        return sorted(found.values(), key=lambda s: (s.started, s.id), reverse=True)


def _endpoint_filters(endpoint: str) -> bool:
    """Whether the endpoint evaluates filter expressions: AWS does, moto's server does not."""
    return "amazonaws.com" in endpoint


# A payment's trace ids -----------------------------------------------------------------------


def payment_trace_ids(payment_id: str, config: Settings | None = None) -> list[str]:
    """The trace ids the payment's events were recorded under, oldest event first."""
    config = config or settings()
    api_key = os.environ.get("API_KEY")
    events = _events_over_api(payment_id, config, api_key) if api_key else None
    if events is None:
        events = _events_from_store(payment_id, config)
    if not events:
        raise PaymentNotFound(f"payment {payment_id} has no events")
    ids: dict[str, None] = {}
    for event in events:
        trace_id = (event.get("metadata") or {}).get("trace_id") or event.get("trace_id")
        if trace_id:
            ids.setdefault(str(trace_id), None)
    if not ids:
        raise TraceNotFound(f"payment {payment_id} has events but none was recorded in a trace")
    return list(ids)


def _events_over_api(
    payment_id: str, config: Settings, api_key: str
) -> list[dict[str, Any]] | None:
    request = urllib.request.Request(
        f"{config.api_url.rstrip('/')}/payments/{payment_id}/events",
        headers={"x-api-key": api_key, "accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise PaymentNotFound(f"payment {payment_id} not found at {config.api_url}") from error
        return None
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if isinstance(body, dict):
        body = body.get("events") or body.get("items") or []
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else None


def _events_from_store(payment_id: str, config: Settings) -> list[dict[str, Any]]:
    import psycopg

    try:
        with psycopg.connect(config.database_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT metadata FROM events WHERE stream_id = %s ORDER BY version",
                (f"payment-{payment_id}",),
            ).fetchall()
    except psycopg.Error as error:
        raise TraceViewerError(f"cannot read the event store: {error}") from error
    return [{"metadata": row[0]} for row in rows]


# The command ---------------------------------------------------------------------------------


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("payment_id", nargs="?", help="the payment whose trip to show")
    parser.add_argument("--trace-id", help="show this trace instead of a payment's")
    parser.add_argument(
        "--xray-endpoint", help="X-Ray API URL ('aws' for the real one; default XRAY_ENDPOINT)"
    )
    parser.add_argument("--width", type=int, default=120, help="terminal width to draw in")
    parser.add_argument(
        "--wait", type=float, default=5.0, help="seconds to wait for segments still in flight"
    )


def trace_command(args: argparse.Namespace) -> int:
    """``consim trace PAYMENT_ID``: print the waterfall of each trace the payment went through."""
    config = settings()
    try:
        if args.trace_id:
            trace_ids = [args.trace_id]
        elif args.payment_id:
            trace_ids = payment_trace_ids(args.payment_id, config)
        else:
            print("consim trace: give a PAYMENT_ID or --trace-id", file=sys.stderr)
            return 2
        reader = XRayReader.from_settings(config, getattr(args, "xray_endpoint", None))
        traces = _fetch_settled(reader, trace_ids, float(getattr(args, "wait", 0.0) or 0.0))
    except TraceViewerError as error:
        print(f"consim trace: {error}", file=sys.stderr)
        return 1

    for trace in traces:
        print(render_waterfall(trace, width=int(getattr(args, "width", 120) or 120)))
        print()
    page = f"{config.api_url.rstrip('/')}/_traces/{traces[0].id}" if traces else None
    if page:
        print(f"page: {page}")
    return 0


def _fetch_settled(reader: XRayReader, trace_ids: list[str], wait: float) -> list[Trace]:
    """Segments reach the daemon and then the API in batches: poll until the trace stops growing."""
    deadline = time.monotonic() + wait
    last_size = -1
    while True:
        traces = [t for t in reader.traces(trace_ids) if t.roots]
        size = sum(1 for t in traces for _ in t.spans())
        if (traces and size == last_size) or time.monotonic() >= deadline:
            break
        last_size = size
        time.sleep(1.0)
    if not traces:
        raise TraceNotFound(f"no segments yet for {', '.join(trace_ids)} at the X-Ray API")
    return traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consim trace", description=trace_command.__doc__)
    add_trace_arguments(parser)
    return trace_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
