"""A migrated Postgres for integration tests: the stack's, found through consim's settings."""

from __future__ import annotations

from pathlib import Path

import psycopg
from consim.adapters.event_store import EventPublisher
from consim.adapters.postgres_event_store import PostgresEventStore
from consim.config import REPO_ROOT, settings

MIGRATIONS = sorted((REPO_ROOT / "infra" / "migrations").glob("00*_event_store*.sql"))


def migrated_url() -> str:
    """The stack's database URL, with the event store's tables present (idempotent DDL)."""
    url = settings().database_url
    with psycopg.connect(url, autocommit=True) as conn:
        for path in MIGRATIONS:
            conn.execute(Path(path).read_text())
    return url


class Unpublished(EventPublisher):
    """Keeps what a test appends off Kafka, as if published (the fast path then deletes the
    outbox rows): the stack under test runs a live relay and processor on this database, which
    must not settle a test's payments behind its back."""

    def publish(self, events):
        return [event.position for event in events]


def unpublished_store(pool) -> PostgresEventStore:
    return PostgresEventStore(pool, Unpublished())
