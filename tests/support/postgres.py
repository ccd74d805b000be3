"""A migrated Postgres for integration tests: the stack's, found through consim's settings."""

from __future__ import annotations

from pathlib import Path

import psycopg
from consim.config import REPO_ROOT, settings

MIGRATIONS = sorted((REPO_ROOT / "infra" / "migrations").glob("00*_event_store*.sql"))


def migrated_url() -> str:
    """The stack's database URL, with the event store's tables present (idempotent DDL)."""
    url = settings().database_url
    with psycopg.connect(url, autocommit=True) as conn:
        for path in MIGRATIONS:
            conn.execute(Path(path).read_text())
    return url
