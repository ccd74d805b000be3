"""A failed fast-path publish pauses the fast path: with the broker down, requests must not each
wait out the producer's timeout; the outbox keeps what they recorded for the relay."""

from __future__ import annotations

import uuid

import pytest
from consim.adapters.event_store import EventPublisher
from consim.adapters.postgres_event_store import (
    FAST_PATH_PAUSE_S,
    PostgresEventStore,
    open_pool,
)
from consim.domain.events import AccountOpened
from support.postgres import migrated_url

pytestmark = pytest.mark.integration


class FlakyPublisher(EventPublisher):
    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def publish(self, events):
        self.calls += 1
        if self.down:
            raise ConnectionError("Kafka is down")
        return [e.position for e in events]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pool():
    pool = open_pool(migrated_url())
    yield pool
    pool.close()


def outbox_rows(pool, positions: list[int]) -> int:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM outbox WHERE position = ANY(%s)", [positions]
        ).fetchone()["n"]


def test_failed_publish_pauses_the_fast_path_and_leaves_the_outbox(pool) -> None:
    publisher, clock = FlakyPublisher(), Clock()
    store = PostgresEventStore(pool, publisher, clock=clock)
    positions: list[int] = []

    def append() -> None:
        sid = f"account-pause-{uuid.uuid4()}"
        positions.extend(
            e.position for e in store.append(sid, 0, [AccountOpened(sid[8:], "c", "EUR", 1, 0)])
        )

    try:
        append()  # fails: the pause starts
        append()
        append()
        assert publisher.calls == 1
        assert outbox_rows(pool, positions) == 3  # all three left for the relay

        publisher.down = False
        clock.now += FAST_PATH_PAUSE_S + 0.1
        append()  # the pause is over: published at once, its row deleted
        assert publisher.calls == 2
        assert outbox_rows(pool, positions) == 3
        assert outbox_rows(pool, positions[-1:]) == 0
    finally:
        with pool.connection() as conn:
            conn.execute("DELETE FROM outbox WHERE position = ANY(%s)", [positions])
