"""The system under test as the run sees it, behind one object so tests can hand in a fake.

``Inspector`` is the blocking side: evidence for the invariants, the drain's question (which
payments are not final yet), the provider's knobs and the chaos levers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from consim.config import Settings

from simulator.evidence import (
    EventStoreReader,
    ProviderAdmin,
    ReadModelReader,
    TopicReader,
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

    def system_metrics(self, wall_start: float, wall_end: float) -> dict[str, Any]: ...


class StackInspector:
    """The real stack: Postgres, DynamoDB, the provider's admin API, Kafka."""

    def __init__(self, config: Settings, chaos: Chaos) -> None:
        self.config = config
        self.chaos = chaos
        self.store = EventStoreReader(config.database_url)
        self.read_models = ReadModelReader(config)
        self.provider = ProviderAdmin(config)
        self.topic = TopicReader(config)

    def pending(self, account_ids: Iterable[str], payment_ids: Iterable[str]) -> set[str]:
        return self.store.pending_payment_ids(account_ids, payment_ids)

    def evidence(self, account_ids: list[str], payment_ids: list[str]) -> Evidence:
        """The copies first, the event store after them, Kafka last.

        The reads are not one snapshot. Read in this order, a copy (read model, ledger) can only
        be behind the events it is compared with, never ahead, so a difference left after the
        drain is a copy that lags or is wrong, not an artefact of the order of the reads; and
        every event read was on the topic before the topic was read.
        """
        known = self.store.reserved_payment_ids(account_ids) | set(payment_ids)
        evidence = Evidence()
        try:
            evidence.read_payments = self.read_models.payments(known)
            evidence.read_accounts = self.read_models.accounts(account_ids)
        except Exception as exc:  # DynamoDB down: invariant 4 fails with the reason
            evidence.unreadable["read-models"] = f"{type(exc).__name__}: {exc}"
        evidence.provider_ledger = self._ledgers(known)

        evidence.events = self.store.events_of(account_ids, payment_ids)
        found = {
            e["stream_id"][len("payment-") :]
            for e in evidence.events
            if e["stream_id"].startswith("payment-")
        }
        if found - known:  # payments that appeared meanwhile (a request answered after the run)
            if "read-models" not in evidence.unreadable:
                evidence.read_payments.update(self.read_models.payments(found - known))
            evidence.provider_ledger = self._ledgers(found | known)

        try:
            evidence.kafka_event_ids = self.topic.event_ids()
        except Exception as exc:  # an unreadable topic fails invariant 6, not the whole check
            log.warning("payment-events unreadable: %s", exc)
            evidence.kafka_event_ids = None
        return evidence

    def _ledgers(self, payment_ids: set[str]) -> dict[str, dict[str, Any]]:
        ledgers: dict[str, dict[str, Any]] = {}
        for provider in PROVIDERS:
            try:
                ledgers[provider] = self.provider.ledger(provider, payment_ids)
            except Exception as exc:  # an unreachable ledger fails invariant 5, with the reason
                ledgers[provider] = {"error": f"{type(exc).__name__}: {exc}"}
        return ledgers

    def knobs(self, provider: str) -> dict[str, Any]:
        return self.provider.knobs(provider)

    def set_knobs(self, provider: str, changes: dict[str, Any]) -> Any:
        return self.provider.set_knobs(provider, changes)

    def system_metrics(self, wall_start: float, wall_end: float) -> dict[str, Any]:
        """The functions' own EMF metrics over the run (native stack: from its log folder)."""
        return read_system_metrics(self.config.state_dir / "logs", wall_start, wall_end)


def read_system_metrics(logs: Path, wall_start: float, wall_end: float) -> dict[str, Any]:
    """Totals per metric, and reservation conflicts per second of the run, from EMF records."""
    from simulator.metrics import _lines, _log_files, _values, emf_records

    totals: dict[str, float] = defaultdict(float)
    conflicts: dict[int, float] = defaultdict(float)
    for record in emf_records(_lines(_log_files(logs))):
        stamp = record["_aws"].get("Timestamp")
        if not isinstance(stamp, int | float) or not wall_start <= stamp / 1000 <= wall_end:
            continue
        for directive in record["_aws"].get("CloudWatchMetrics") or []:
            for metric in directive.get("Metrics") or []:
                name = metric.get("Name")
                if name in record and metric.get("Unit") == "Count":
                    value = sum(_values(record[name]))
                    totals[name] += value
                    if name == "ReservationConflicts":
                        conflicts[int(stamp / 1000 - wall_start)] += value
    return {
        "totals": dict(sorted(totals.items())),
        "reservation_conflicts": [[t, v] for t, v in sorted(conflicts.items())],
    }
