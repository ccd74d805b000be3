"""The provider's Postgres side: knobs, concurrency slots and the ledger (schema `provider`)."""

from __future__ import annotations

import os
import random
import threading
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .behaviour import Knobs

_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()


def pool(database_url: str) -> ConnectionPool:
    """One small pool per process: a Lambda worker serves one request at a time and needs two
    connections for it (the slot it holds and the ledger it writes); tests serving many
    threads in one process raise PROVIDER_POOL_SIZE."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ConnectionPool(
                database_url,
                min_size=0,
                max_size=int(os.environ.get("PROVIDER_POOL_SIZE", "4")),
                kwargs={"autocommit": True, "row_factory": dict_row},
                open=True,
            )
        return _pool


@dataclass(frozen=True)
class Charge:
    provider: str
    payment_id: str
    provider_ref: str
    status: str
    amount: int
    currency: str
    fee: int
    reason: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "provider": self.provider,
            "provider_ref": self.provider_ref,
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "fee": self.fee,
            "reason": self.reason,
            "created_at": self.created_at,
        }


def _charge(row: dict[str, Any]) -> Charge:
    return Charge(
        provider=row["provider"],
        payment_id=row["payment_id"],
        provider_ref=row["provider_ref"],
        status=row["status"],
        amount=row["amount"],
        currency=row["currency"],
        fee=row["fee"],
        reason=row["reason"],
        created_at=row["created_at"].isoformat(),
    )


def load_knobs(conn: psycopg.Connection, provider: str) -> Knobs:
    row = conn.execute("SELECT * FROM provider.knobs WHERE provider = %s", (provider,)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO provider.knobs (provider) VALUES (%s) ON CONFLICT DO NOTHING", (provider,)
        )
        return Knobs()
    return Knobs(**{name: row[name] for name in Knobs.names()})


def save_knobs(conn: psycopg.Connection, provider: str, knobs: Knobs) -> None:
    values = knobs.to_dict()
    names = list(values)
    conn.execute(
        "INSERT INTO provider.knobs (provider, {cols}, updated_at) VALUES (%s, {marks}, now()) "
        "ON CONFLICT (provider) DO UPDATE SET {sets}, updated_at = now()".format(
            cols=", ".join(names),
            marks=", ".join(["%s"] * len(names)),
            sets=", ".join(f"{n} = EXCLUDED.{n}" for n in names),
        ),
        (provider, *values.values()),
    )


def slot_class(provider: str) -> int:
    """The first key of the provider's advisory locks: a stable positive int4 per instance.
    The two-int4 key space of advisory locks never meets the bigint one, which others may use."""
    return zlib.crc32(f"provider:{provider}".encode()) & 0x7FFFFFFF


def try_take_slot(conn: psycopg.Connection, provider: str, max_concurrency: int) -> int | None:
    """Take one of max_concurrency slots for the rest of the caller's open transaction.

    The slot is a transaction-scoped advisory lock, so Postgres gives it back when the
    transaction ends, however it ends: a commit, a rollback, or the connection dropping
    because the worker died mid-request. No counter can leak. Slots are tried from a random
    start so that concurrent requests do not all queue on slot 0; the LIMIT stops at the
    first lock taken, so a request never holds two.
    """
    start = random.randrange(max_concurrency)
    order = [(start + i) % max_concurrency for i in range(max_concurrency)]
    row = conn.execute(
        "SELECT slot FROM unnest(%s::int[]) AS slot "
        "WHERE pg_try_advisory_xact_lock(%s, slot) LIMIT 1",
        (order, slot_class(provider)),
    ).fetchone()
    return None if row is None else row["slot"]


def in_flight(conn: psycopg.Connection, provider: str) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 2 AND classid = %s::oid",
        (slot_class(provider),),
    ).fetchone()
    return row["n"]


def record(
    conn: psycopg.Connection,
    provider: str,
    payment_id: str,
    amount: int,
    currency: str,
    fee: int,
    declined_reason: str | None,
    deadline_ms: int | None = None,
) -> tuple[Charge | None, bool]:
    """Record the decision unless the payment id is already in the ledger.

    Returns the charge in the ledger and whether it is the one just made; (None, False) when
    the caller's deadline (unix milliseconds) had passed, so nothing was recorded. Concurrent
    requests with the same id race on the primary key: exactly one insert wins, the others
    read it.

    The deadline check is part of the insert: a request that reached us late (queued, a cold
    start) must not charge after its client gave up and, finding no charge, went elsewhere.
    """
    status = "authorized" if declined_reason is None else "declined"
    row = conn.execute(
        "INSERT INTO provider.charges "
        "(provider, payment_id, provider_ref, status, amount, currency, fee, reason) "
        "SELECT %s, %s, %s, %s, %s, %s, %s, %s "
        "WHERE %s::bigint IS NULL OR clock_timestamp() < to_timestamp(%s::bigint / 1000.0) "
        "ON CONFLICT (provider, payment_id) DO NOTHING RETURNING *",
        (
            provider,
            payment_id,
            f"{provider[:3]}_{uuid.uuid4().hex}",
            status,
            amount,
            currency,
            fee if status == "authorized" else 0,
            declined_reason,
            deadline_ms,
            deadline_ms,
        ),
    ).fetchone()
    if row is not None:
        return _charge(row), True
    return find(conn, provider, payment_id), False


def find(conn: psycopg.Connection, provider: str, payment_id: str) -> Charge | None:
    row = conn.execute(
        "SELECT * FROM provider.charges WHERE provider = %s AND payment_id = %s",
        (provider, payment_id),
    ).fetchone()
    return None if row is None else _charge(row)


def summary(conn: psycopg.Connection, provider: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'authorized') AS count, "
        "coalesce(sum(amount) FILTER (WHERE status = 'authorized'), 0) AS amount, "
        "coalesce(sum(fee) FILTER (WHERE status = 'authorized'), 0) AS fees, "
        "count(*) FILTER (WHERE status = 'declined') AS declined "
        "FROM provider.charges WHERE provider = %s",
        (provider,),
    ).fetchone()
    return {key: int(value) for key, value in row.items()}


def charges(conn: psycopg.Connection, provider: str, limit: int, after: str) -> list[Charge]:
    rows = conn.execute(
        "SELECT * FROM provider.charges WHERE provider = %s AND payment_id > %s "
        "ORDER BY payment_id LIMIT %s",
        (provider, after, limit),
    ).fetchall()
    return [_charge(row) for row in rows]


def purge(conn: psycopg.Connection, provider: str) -> int:
    return conn.execute("DELETE FROM provider.charges WHERE provider = %s", (provider,)).rowcount
