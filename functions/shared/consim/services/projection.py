"""Keeps the DynamoDB read models equal to the fold of the event store.

A Kafka record only says "stream S reached version v". The projector then reads the item, and
if the item is behind v, reads the stream from the event store after the item's version, applies
those events and writes the item on condition that its version did not move. So records may
arrive twice, late or out of order: an old record finds the item already past it and does
nothing; a record that overtook its predecessors brings them along from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from consim.adapters.event_store import EventStore, RecordedEvent, iter_all
from consim.adapters.read_models import (
    ReadModels,
    StaleReadModel,
    account_from_item,
    account_item,
    payment_from_item,
    payment_item,
)
from consim.domain.account import Account
from consim.domain.payment import Payment

logger = logging.getLogger(__name__)

ATTEMPTS = 5


@dataclass(frozen=True)
class StreamHead:
    stream_id: str
    version: int


def heads(events: Iterable[RecordedEvent]) -> list[StreamHead]:
    """The highest version seen per stream, in first-seen order."""
    highest: dict[str, int] = {}
    for event in events:
        highest[event.stream_id] = max(highest.get(event.stream_id, 0), event.version)
    return [StreamHead(s, v) for s, v in highest.items()]


def project(store: EventStore, models: ReadModels, head: StreamHead) -> int:
    """Bring the stream's read model up to at least `head.version`; return events applied."""
    kind, _, entity_id = head.stream_id.partition("-")
    if kind not in ("account", "payment"):
        return 0
    for _ in range(ATTEMPTS):
        try:
            if kind == "account":
                return _project_account(store, models, entity_id, head.version)
            return _project_payment(store, models, entity_id, head.version)
        except StaleReadModel:
            logger.info("read model of %s moved meanwhile; re-reading", head.stream_id)
    raise StaleReadModel(f"{head.stream_id}: gave up after {ATTEMPTS} attempts")


def _project_account(store: EventStore, models: ReadModels, account_id: str, version: int) -> int:
    item = models.account(account_id)
    state = account_from_item(item) if item else Account(id=account_id)
    if state.version >= version:
        return 0
    events = store.read_stream(f"account-{account_id}", after_version=state.version)
    if not events:
        return 0
    before = state.version
    for event in events:
        state.apply(event.event)
    models.put_account(account_item(state, events[-1].recorded_at.isoformat()), before)
    return len(events)


def _project_payment(store: EventStore, models: ReadModels, payment_id: str, version: int) -> int:
    item = models.payment(payment_id)
    state = payment_from_item(item) if item else Payment(id=payment_id)
    if state.version >= version:
        return 0
    events = store.read_stream(f"payment-{payment_id}", after_version=state.version)
    if not events:
        return 0
    before = state.version
    created_at = item.get("created_at") if item else events[0].recorded_at.isoformat()
    for event in events:
        state.apply(event.event)
    fields = payment_item(state, created_at, events[-1].recorded_at.isoformat())
    models.put_payment(fields, before)
    return len(events)


def rebuild(store: EventStore, models: ReadModels) -> dict[str, int]:
    """Rewrite every read model from the full fold of its stream (newer items are kept)."""
    streams: dict[str, list[RecordedEvent]] = {}
    for event in iter_all(store):
        streams.setdefault(event.stream_id, []).append(event)

    def write(item: tuple[str, list[RecordedEvent]]) -> str | None:
        stream_id, events = item
        kind, _, entity_id = stream_id.partition("-")
        if kind == "account":
            account = Account.fold(entity_id, [e.event for e in events])
            fields = account_item(account, events[-1].recorded_at.isoformat())
            return "accounts" if _put_unless_newer(models.put_account, fields) else None
        if kind == "payment":
            payment = Payment.fold(entity_id, [e.event for e in events])
            fields = payment_item(
                payment, events[0].recorded_at.isoformat(), events[-1].recorded_at.isoformat()
            )
            return "payments" if _put_unless_newer(models.put_payment, fields) else None
        return None

    # Each item is one independent conditional write: a few in flight hide the round trips.
    written = {"accounts": 0, "payments": 0}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for kind in pool.map(write, streams.items()):
            if kind:
                written[kind] += 1
    return written


def _put_unless_newer(put, fields: dict) -> int:
    try:
        put(fields, None)
    except StaleReadModel:
        return 0  # a projector got there with a newer version meanwhile
    return 1
