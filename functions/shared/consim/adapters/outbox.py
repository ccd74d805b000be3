"""The outbox relay: publishes committed events the fast path did not.

Why a scan of the outbox table and not a cursor over `events.position`: positions come from a
sequence when a row is inserted, but rows become visible when their transaction commits, and
transactions commit in any order. A tail that remembers "published up to position 42" can read
43 while 41 is still uncommitted, move its cursor past 41, and never see it. Here a row is not
"after" anything: it stays in the outbox until someone deletes it after publishing, so a
transaction that commits late simply adds rows the next scan finds. Nothing is skipped;
at worst an event is published twice (fast path and relay racing), which consumers tolerate.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from psycopg_pool import ConnectionPool

from .event_store import EventPublisher
from .postgres_event_store import EVENT_COLUMNS, row_to_event

logger = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        pool: ConnectionPool,
        publisher: EventPublisher,
        grace: timedelta = timedelta(seconds=5),
        batch_size: int = 500,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        # The fast path normally publishes within milliseconds of the commit; the grace period
        # keeps the relay from racing it for rows that are about to be deleted anyway.
        self._grace = grace
        self._batch_size = batch_size

    def pending(self) -> int:
        with self._pool.connection() as conn:
            return conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"]

    def publish_pending(self) -> int:
        """Publish every outbox row older than the grace period; return how many were published."""
        total = 0
        while True:
            published, seen = self._publish_batch()
            total += published
            if seen < self._batch_size or published < seen:
                return total

    def _publish_batch(self) -> tuple[int, int]:
        # FOR UPDATE SKIP LOCKED: two relays (or a relay and a fast-path delete) never work on the
        # same rows, and neither waits for the other. The lock is held until the rows are
        # published and deleted, so a row is never deleted unpublished.
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))}"
                " FROM outbox o JOIN events e ON e.position = o.position"
                " WHERE o.created_at < now() - %s"
                " ORDER BY o.position LIMIT %s FOR UPDATE OF o SKIP LOCKED",
                [self._grace, self._batch_size],
            ).fetchall()
            if not rows:
                return 0, 0
            events = [row_to_event(r) for r in rows]
            published = self._publisher.publish(events)
            conn.execute("DELETE FROM outbox WHERE position = ANY(%s)", [published])
        logger.info("relay published %d of %d outbox rows", len(published), len(events))
        return len(published), len(events)
