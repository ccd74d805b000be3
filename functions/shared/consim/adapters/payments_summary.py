"""Authorized payments per provider in a time window, straight from the event store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from .event_store import RecordedEvent

PROVIDERS = ("default", "fallback")


def _empty() -> dict[str, dict[str, int]]:
    return {p: {"total_requests": 0, "total_amount": 0} for p in PROVIDERS}


def summarize(
    events: Iterable[RecordedEvent],
    client_id: str,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, dict[str, int]]:
    """The same figures as `PostgresPaymentsSummary`, folded in memory (tests, checks)."""
    requested: dict[str, RecordedEvent] = {}
    summary = _empty()
    for event in events:
        if event.type == "PaymentRequested":
            requested[event.stream_id] = event
        elif event.type == "PaymentAuthorized" and event.stream_id in requested:
            request = requested[event.stream_id]
            if request.data["client_id"] != client_id:
                continue
            if (start and request.recorded_at < start) or (end and request.recorded_at >= end):
                continue
            row = summary.setdefault(
                event.data["provider"], {"total_requests": 0, "total_amount": 0}
            )
            row["total_requests"] += 1
            row["total_amount"] += request.data["amount"]
    return summary


class PostgresPaymentsSummary:
    # The window applies to when the payment was requested (the client's clock of the payment),
    # [from, to). The amount is the requested one: PaymentAuthorized does not repeat it.
    QUERY = """
        SELECT a.data->>'provider' AS provider,
               count(*) AS total_requests,
               coalesce(sum((r.data->>'amount')::bigint), 0) AS total_amount
        FROM events a
        JOIN events r ON r.stream_id = a.stream_id AND r.version = 1
        WHERE a.type = 'PaymentAuthorized'
          AND r.data->>'client_id' = %(client_id)s
          AND (%(start)s::timestamptz IS NULL OR r.recorded_at >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR r.recorded_at < %(end)s)
        GROUP BY 1
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def summary(
        self, client_id: str, start: datetime | None, end: datetime | None
    ) -> dict[str, dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                self.QUERY, {"client_id": client_id, "start": start, "end": end}
            ).fetchall()
        summary = _empty()
        for row in rows:
            summary[row["provider"]] = {
                "total_requests": int(row["total_requests"]),
                "total_amount": int(row["total_amount"]),
            }
        return summary
