"""The composition root: the process-wide adapters, built once per execution environment."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache

from consim.adapters.event_store import EventStore
from consim.adapters.kafka_publisher import KafkaEventPublisher
from consim.adapters.outbox import OutboxRelay
from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.config import settings


@cache
def kafka_publisher() -> KafkaEventPublisher:
    """The relay's publisher: it may wait for the broker (KAFKA_PUBLISH_TIMEOUT_S)."""
    config = settings()
    return KafkaEventPublisher(
        config.kafka_bootstrap, config.payment_events_topic, config.kafka_publish_timeout_s
    )


@cache
def fast_path_publisher() -> KafkaEventPublisher:
    """The publisher a request uses right after its commit: short timeout, the relay backs it."""
    config = settings()
    return KafkaEventPublisher(
        config.kafka_bootstrap, config.payment_events_topic, config.kafka_fast_path_timeout_s
    )


@cache
def event_store() -> PostgresEventStore:
    """The Postgres event store, publishing to Kafka after each commit (the outbox fast path)."""
    # One request at a time per Lambda environment; the benchmark and tests size it up.
    max_size = int(os.environ.get("EVENT_STORE_POOL_SIZE", "4"))
    return PostgresEventStore(
        open_pool(settings().database_url, max_size=max_size), fast_path_publisher()
    )


def store() -> EventStore:
    return event_store()


def outbox_relay() -> OutboxRelay:
    """The relay over the event store's pool; OUTBOX_GRACE_SECONDS (default 5) old rows only."""
    grace = float(os.environ.get("OUTBOX_GRACE_SECONDS", "5"))
    return OutboxRelay(event_store().pool, kafka_publisher(), timedelta(seconds=grace))
