"""The processor's intent log: which provider instances a payment was submitted to.

A row is written before every charge request (see `Settler` in consim.services.processing), so a
later delivery of the same payment knows which instances may hold a charge from an earlier one
that died before recording its outcome, and asks them first.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from .postgres_event_store import open_pool


class ProviderAttempts(ABC):
    """Port: remember, durably, that a charge for a payment is about to go to an instance."""

    @abstractmethod
    def record(self, payment_id: str, provider: str) -> None:
        """Note one charge request to `provider`; durable when this returns."""

    @abstractmethod
    def submitted(self, payment_id: str) -> Sequence[str]:
        """The instances this payment was ever submitted to, first submitted first."""


class InMemoryProviderAttempts(ProviderAttempts):
    """For unit tests (and a Settler built without a store): thread-safe, not durable."""

    def __init__(self) -> None:
        self._attempts: dict[str, dict[str, int]] = {}  # payment -> instance -> requests
        self._mutex = threading.Lock()

    def record(self, payment_id: str, provider: str) -> None:
        with self._mutex:
            by_provider = self._attempts.setdefault(payment_id, {})
            by_provider[provider] = by_provider.get(provider, 0) + 1

    def submitted(self, payment_id: str) -> list[str]:
        with self._mutex:
            return list(self._attempts.get(payment_id, {}))  # dicts keep insertion order

    def attempts(self, payment_id: str, provider: str) -> int:
        with self._mutex:
            return self._attempts.get(payment_id, {}).get(provider, 0)


_RECORD = """
INSERT INTO provider_attempts (payment_id, provider)
VALUES (%s, %s)
    ON CONFLICT (payment_id, provider) DO UPDATE
   SET last_at = now(), attempts = provider_attempts.attempts + 1
"""

_SUBMITTED = """
SELECT provider FROM provider_attempts WHERE payment_id = %s ORDER BY first_at, provider
"""


class PostgresProviderAttempts(ProviderAttempts):
    """The `provider_attempts` table (migration 0004_event_store_provider_attempts.sql)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @classmethod
    def from_url(cls, url: str) -> PostgresProviderAttempts:
        return cls(open_pool(url, max_size=2))

    def record(self, payment_id: str, provider: str) -> None:
        # Its own transaction, committed when the block exits: the caller sends the charge only
        # after this returns, so the row exists whatever happens to the process afterwards.
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(_RECORD, [payment_id, provider])

    def submitted(self, payment_id: str) -> list[str]:
        with self.pool.connection() as conn:
            return [row["provider"] for row in conn.execute(_SUBMITTED, [payment_id])]

    def attempts(self, payment_id: str, provider: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT attempts FROM provider_attempts WHERE payment_id = %s AND provider = %s",
                [payment_id, provider],
            ).fetchone()
            return row["attempts"] if row else 0
