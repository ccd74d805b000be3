"""The amount and currency of a payment, read from its stream in the event store."""

from __future__ import annotations

from functools import lru_cache

from consim.adapters.event_store import EventStore
from consim.domain.errors import PaymentNotFound


class PaymentFactsFromStore:
    def __init__(self, store: EventStore) -> None:
        self._store = store
        # A payment's amount never changes, so remembering it across batches is safe.
        self._cached = lru_cache(maxsize=4096)(self._read)

    def __call__(self, payment_id: str) -> tuple[int, str]:
        return self._cached(payment_id)

    def _read(self, payment_id: str) -> tuple[int, str]:
        for event in self._store.read_stream(f"payment-{payment_id}"):
            if event.type == "PaymentRequested":
                return int(event.data["amount"]), str(event.data["currency"])
        raise PaymentNotFound(payment_id)
