"""The event store on Postgres (psycopg 3 with a connection pool), with a transactional outbox.

Every append writes its events and one outbox row per event in the same transaction. After the
commit the fast path hands the events to the publisher (Kafka) and deletes the outbox rows it
published; rows it could not publish (Kafka down, the process killed between commit and send)
stay behind for the relay (`consim.adapters.outbox`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from consim.observability import sql_subsegment

from .event_store import (
    ConcurrencyConflict,
    EventPublisher,
    EventStore,
    RecordedEvent,
    StreamWrite,
)

logger = logging.getLogger(__name__)

EVENT_COLUMNS = "position, stream_id, version, event_id, type, data, metadata, recorded_at"

# After a failed fast-path publish, appends skip the fast path this long: with the broker down
# every publish waits out the producer's timeout (5 s), and a request holding a function worker
# that long makes the API queue and throttle. The outbox rows stay for the relay either way.
FAST_PATH_PAUSE_S = 10.0


def open_pool(url: str, min_size: int = 1, max_size: int = 4) -> ConnectionPool:
    # Lambda environments run one request at a time: a small pool per process is enough, and
    # the API, the processor and the relay together must stay under Postgres' max_connections.
    # check: a Lambda environment sleeps between invocations, and Postgres may have dropped its
    # idle connections meanwhile; a pooled connection is tested before it is handed out.
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=True,
        kwargs={"row_factory": dict_row},
        check=ConnectionPool.check_connection,
    )


def row_to_event(row: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        event_id=str(row["event_id"]),
        type=row["type"],
        data=row["data"],
        metadata=row["metadata"],
        recorded_at=row["recorded_at"],
    )


def delete_outbox_rows(pool: ConnectionPool, positions: Sequence[int]) -> None:
    """Forget published rows; rows a relay holds locked are skipped, the relay deletes them."""
    if not positions:
        return
    with pool.connection() as conn:
        conn.execute(
            "DELETE FROM outbox WHERE position IN ("
            " SELECT position FROM outbox WHERE position = ANY(%s) FOR UPDATE SKIP LOCKED)",
            [list(positions)],
        )


class _Session(EventStore):
    """Reads and appends on one connection inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.recorded: list[RecordedEvent] = []

    def append_streams(
        self, writes: Sequence[StreamWrite], metadata: dict[str, Any] | None = None
    ) -> list[RecordedEvent]:
        recorded = _insert(self._conn, writes, self._with_trace(metadata))
        self.recorded.extend(recorded)
        return recorded

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        return _read_stream(self._conn, stream_id, after_version)

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return _read_all(self._conn, after_position, limit)

    def locked(self, stream_id: str) -> Any:
        raise NotImplementedError("sessions do not nest")


class PostgresEventStore(EventStore):
    def __init__(
        self,
        pool: ConnectionPool,
        publisher: EventPublisher | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.pool = pool
        self._publisher = publisher
        self._clock = clock
        self._fast_path_paused_until = 0.0

    @classmethod
    def from_url(
        cls, url: str, publisher: EventPublisher | None = None, max_size: int = 4
    ) -> PostgresEventStore:
        return cls(open_pool(url, max_size=max_size), publisher)

    def append_streams(
        self, writes: Sequence[StreamWrite], metadata: dict[str, Any] | None = None
    ) -> list[RecordedEvent]:
        with sql_subsegment("append", "INSERT INTO events ..."), self.pool.connection() as conn:
            recorded = _insert(conn, writes, self._with_trace(metadata))
        self._publish_committed(recorded)
        return recorded

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        with sql_subsegment("read_stream"), self.pool.connection() as conn:
            return _read_stream(conn, stream_id, after_version)

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        with sql_subsegment("read_all"), self.pool.connection() as conn:
            return _read_all(conn, after_position, limit)

    @contextmanager
    def locked(self, stream_id: str) -> Iterator[EventStore]:
        # A transaction-scoped advisory lock on a hash of the stream id: released by the commit
        # or rollback, so a crashed writer cannot leave it held. Two streams sharing a hash only
        # serialise a little more than needed.
        with (
            sql_subsegment("locked_append", "SELECT pg_advisory_xact_lock(...); INSERT ..."),
            self.pool.connection() as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [stream_id])
            session = _Session(conn)
            yield session
        self._publish_committed(session.recorded)

    def _publish_committed(self, recorded: list[RecordedEvent]) -> None:
        if not self._publisher or not recorded:
            return
        if self._clock() < self._fast_path_paused_until:
            return  # the broker failed us lately: the relay publishes these from the outbox
        try:
            published = self._publisher.publish(recorded)
        except Exception:
            # The outbox rows are committed: the relay publishes them after its grace period.
            self._fast_path_paused_until = self._clock() + FAST_PATH_PAUSE_S
            logger.exception(
                "fast-path publish failed; the relay will publish %d events, fast path paused"
                " for %.0f s",
                len(recorded),
                FAST_PATH_PAUSE_S,
            )
            return
        if len(published) < len(recorded):
            self._fast_path_paused_until = self._clock() + FAST_PATH_PAUSE_S
        try:
            delete_outbox_rows(self.pool, published)
        except psycopg.Error:
            logger.exception("deleting %d published outbox rows failed", len(published))


def _read_stream(
    conn: psycopg.Connection, stream_id: str, after_version: int
) -> list[RecordedEvent]:
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s"
        " ORDER BY version",
        [stream_id, after_version],
    ).fetchall()
    return [row_to_event(r) for r in rows]


def _read_all(conn: psycopg.Connection, after_position: int, limit: int) -> list[RecordedEvent]:
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s",
        [after_position, limit],
    ).fetchall()
    return [row_to_event(r) for r in rows]


def _insert(
    conn: psycopg.Connection, writes: Sequence[StreamWrite], metadata: dict[str, Any]
) -> list[RecordedEvent]:
    """Append every write on `conn`'s open transaction, with an outbox row per event.

    The expected version is checked twice. The SELECT catches an expectation that is ahead of
    the stream (it would otherwise leave a gap). Two writers that both read the same last
    version both pass it, and then both insert the same (stream_id, version): the UNIQUE index
    makes the second wait for the first to commit and then fail, so exactly one extends the
    stream; that unique violation becomes ConcurrencyConflict and the whole transaction rolls
    back, taking every other stream of the append with it.
    """
    recorded: list[RecordedEvent] = []
    meta_json = json.dumps(metadata)
    for write in writes:
        if not write.events:
            continue
        actual = conn.execute(
            "SELECT coalesce(max(version), 0) AS v FROM events WHERE stream_id = %s",
            [write.stream_id],
        ).fetchone()["v"]
        if actual != write.expected_version:
            raise ConcurrencyConflict(write.stream_id, write.expected_version, actual)

        n = len(write.events)
        try:
            rows = conn.execute(
                "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
                " SELECT %s, v, e, t, d::jsonb, %s::jsonb"
                " FROM unnest(%s::int[], %s::uuid[], %s::text[], %s::text[]) AS x(v, e, t, d)"
                f" RETURNING {EVENT_COLUMNS}",
                [
                    write.stream_id,
                    meta_json,
                    [write.expected_version + i for i in range(1, n + 1)],
                    [uuid.uuid4() for _ in range(n)],
                    [e.type for e in write.events],
                    [json.dumps(e.to_data()) for e in write.events],
                ],
            ).fetchall()
        except errors.UniqueViolation as exc:
            raise ConcurrencyConflict(write.stream_id, write.expected_version, None) from exc
        recorded.extend(sorted((row_to_event(r) for r in rows), key=lambda e: e.version))

    if recorded:
        conn.execute(
            "INSERT INTO outbox (position) SELECT unnest(%s::bigint[])",
            [[e.position for e in recorded]],
        )
    return recorded
