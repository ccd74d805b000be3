"""The system under test as the run sees it, behind one object so tests can hand in a fake.

``Inspector`` is the blocking side: evidence for the invariants, the drain's question (which
payments are not final yet), the provider's knobs and the chaos levers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from consim.config import Settings

from simulator.evidence import (
    EventStoreReader,
    ProviderAdmin,
    ReadModelReader,
    kafka_event_ids,
)
from simulator.invariants import Evidence
from simulator.scenario import PROVIDERS
from simulator.timeline import Chaos

log = logging.getLogger("consim.simulator")


class Inspector(Protocol):
    chaos: Chaos

    def pending(self, account_ids: Iterable[str], payment_ids: Iterable[str]) -> set[str]: ...

    def evidence(self, account_ids: list[str], payment_ids: list[str]) -> Evidence: ...

    def knobs(self, provider: str) -> dict[str, Any]: ...

    def set_knobs(self, provider: str, changes: dict[str, Any]) -> Any: ...


class StackInspector:
    """The real stack: Postgres, DynamoDB, the provider's admin API, Kafka."""

    def __init__(self, config: Settings, chaos: Chaos) -> None:
        self.config = config
        self.chaos = chaos
        self.store = EventStoreReader(config.database_url)
        self.read_models = ReadModelReader(config)
        self.provider = ProviderAdmin(config)

    def pending(self, account_ids: Iterable[str], payment_ids: Iterable[str]) -> set[str]:
        return self.store.pending_payment_ids(account_ids, payment_ids)

    def evidence(self, account_ids: list[str], payment_ids: list[str]) -> Evidence:
        events = self.store.events_of(account_ids, payment_ids)
        all_payment_ids = {
            e["stream_id"][len("payment-") :]
            for e in events
            if e["stream_id"].startswith("payment-")
        }
        evidence = Evidence(events=events)
        evidence.read_payments = self.read_models.payments(all_payment_ids)
        evidence.read_accounts = self.read_models.accounts(account_ids)
        for provider in PROVIDERS:
            try:
                evidence.provider_ledger[provider] = self.provider.ledger(provider, all_payment_ids)
            except Exception as exc:  # an unreachable ledger fails invariant 5, with the reason
                evidence.provider_ledger[provider] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            evidence.kafka_event_ids = kafka_event_ids(self.config)
        except Exception as exc:  # an unreadable topic fails invariant 6, not the whole check
            log.warning("payment-events unreadable: %s", exc)
            evidence.kafka_event_ids = None
        return evidence

    def knobs(self, provider: str) -> dict[str, Any]:
        return self.provider.knobs(provider)

    def set_knobs(self, provider: str, changes: dict[str, Any]) -> Any:
        return self.provider.set_knobs(provider, changes)
