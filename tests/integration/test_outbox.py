"""Appends that commit in a shuffled order: the outbox publishes every event, none skipped."""

from __future__ import annotations

import importlib.util
import json
import random
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from consim.adapters.event_store import EventPublisher, RecordedEvent
from consim.adapters.kafka_publisher import KafkaEventPublisher
from consim.adapters.outbox import OutboxRelay
from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.config import REPO_ROOT, settings
from consim.domain.events import AccountOpened
from kafka import KafkaConsumer
from support.api import LambdaContext, api_module
from support.postgres import migrated_url

pytestmark = pytest.mark.integration

WRITERS = 12


class RecordingPublisher(EventPublisher):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[RecordedEvent] = []
        self._lock = threading.Lock()

    def publish(self, events):
        if self.fail:
            raise ConnectionError("Kafka is down")
        with self._lock:
            self.published.extend(events)
        return [e.position for e in events]


@pytest.fixture(scope="module")
def pool():
    pool = open_pool(migrated_url(), max_size=WRITERS + 4)
    yield pool
    pool.close()


def commit_in_order(store: PostgresEventStore, order: list[int], after_each) -> list[RecordedEvent]:
    """WRITERS transactions insert in index order, then commit in `order`, one at a time."""
    streams = [f"account-outbox-{uuid.uuid4()}" for _ in range(WRITERS)]
    inserted = [threading.Event() for _ in range(WRITERS)]
    turn = [threading.Event() for _ in range(WRITERS)]
    committed = [threading.Event() for _ in range(WRITERS)]
    recorded: list[RecordedEvent] = [None] * WRITERS  # type: ignore[list-item]

    def writer(i: int) -> None:
        if i > 0:  # Positions follow the index: writer i inserts after writer i-1 did.
            inserted[i - 1].wait()
        with store.locked(streams[i]) as session:
            [recorded[i]] = session.append(
                streams[i], 0, [AccountOpened(streams[i][8:], "c", "EUR", 1, 0)]
            )
            inserted[i].set()
            turn[i].wait()  # The transaction stays open, its rows invisible, until its turn.
        committed[i].set()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    inserted[-1].wait()
    for i in order:
        turn[i].set()
        committed[i].wait()
        after_each()
    for thread in threads:
        thread.join()
    return recorded


def shuffled() -> list[int]:
    order = list(range(WRITERS))
    random.Random(3).shuffle(order)
    assert order != sorted(order)
    return order


def test_relay_publishes_every_event_committed_out_of_order(pool) -> None:
    down = RecordingPublisher(fail=True)  # the fast path fails: everything is left to the relay
    relayed = RecordingPublisher()
    store = PostgresEventStore(pool, down)
    relay = OutboxRelay(pool, relayed, grace=timedelta(0))

    # A tail by position, for contrast: it remembers the highest position it has seen.
    with pool.connection() as conn:
        last = conn.execute("SELECT coalesce(max(position), 0) AS p FROM events").fetchone()["p"]
    cursor = {"position": last}
    tailed: list[RecordedEvent] = []

    def tail_and_relay() -> None:
        relay.publish_pending()
        batch = store.read_all(cursor["position"], 10_000)
        tailed.extend(batch)
        if batch:
            cursor["position"] = batch[-1].position

    recorded = commit_in_order(store, shuffled(), tail_and_relay)
    relay.publish_pending()

    mine = {e.event_id for e in recorded}
    counts = Counter(e.event_id for e in relayed.published if e.event_id in mine)
    assert set(counts) == mine
    assert set(counts.values()) == {1}
    # What a position cursor would have lost: rows committed after a higher position was seen.
    assert len(mine - {e.event_id for e in tailed}) > 0
    with pool.connection() as conn:
        left = conn.execute(
            "SELECT count(*) AS n FROM outbox WHERE position = ANY(%s)",
            [[e.position for e in recorded]],
        ).fetchone()["n"]
    assert left == 0


def test_fast_path_and_relay_put_every_event_on_kafka(pool) -> None:
    config = settings()
    kafka = KafkaEventPublisher(config.kafka_bootstrap, config.payment_events_topic)

    class HalfDown(EventPublisher):
        """Kafka for even writers; a failure (left to the relay) for odd ones."""

        def publish(self, events):
            if int(events[0].data["limit"]) % 2:
                raise ConnectionError("lost on the way")
            return kafka.publish(events)

    store = PostgresEventStore(pool, HalfDown())
    streams: list[str] = []
    for i in range(WRITERS):
        sid = f"account-kafka-{uuid.uuid4()}"
        streams.append(sid)
        store.append(sid, 0, [AccountOpened(sid[8:], "c", "EUR", i, 0)])
    assert OutboxRelay(pool, kafka, grace=timedelta(0)).publish_pending() >= WRITERS // 2
    kafka.close()

    wanted = {sid.removeprefix("account-") for sid in streams}
    seen: Counter[str] = Counter()
    consumer = KafkaConsumer(
        config.payment_events_topic,
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"test-outbox-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        deadline = time.monotonic() + 60
        while set(seen) != wanted and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    key = record.key.decode()
                    if key in wanted:
                        envelope = json.loads(record.value)
                        assert envelope["stream_id"] == f"account-{key}"
                        assert envelope["type"] == "AccountOpened"
                        seen[key] += 1
    finally:
        consumer.close()
    assert set(seen) == wanted
    assert set(seen.values()) == {1}


def test_relay_handler_publishes_what_the_fast_path_left(pool, monkeypatch) -> None:
    api_module()  # the test environment: credentials, tracing off
    monkeypatch.setenv("OUTBOX_GRACE_SECONDS", "0")
    spec = importlib.util.spec_from_file_location(
        "consim_relay_handler", REPO_ROOT / "functions" / "relay" / "handler.py"
    )
    relay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relay)

    store = PostgresEventStore(pool)  # no publisher: the rows stay in the outbox
    sid = f"account-relay-{uuid.uuid4()}"
    [event] = store.append(sid, 0, [AccountOpened(sid[8:], "c", "EUR", 1, 0)])

    result = relay.handler({"source": "aws.events"}, LambdaContext())
    assert result["published"] >= 1
    with pool.connection() as conn:
        left = conn.execute(
            "SELECT count(*) AS n FROM outbox WHERE position = %s", [event.position]
        ).fetchone()["n"]
    assert left == 0
