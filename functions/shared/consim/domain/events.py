"""The domain events, named in the past tense, and their (de)serialisation to plain dicts.

The field names are the `data` of the stored event and of the Kafka envelope, so renaming one
is a contract change (see docs/architecture.md, "Events").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Event:
    # The stream an event belongs to is the aggregate's, not the event's; `type` is the class name.
    @property
    def type(self) -> str:
        return type(self).__name__

    def to_data(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AccountOpened(Event):
    account_id: str
    client_id: str
    currency: str
    limit: int
    balance: int


@dataclass(frozen=True)
class FundsReserved(Event):
    payment_id: str
    amount: int


@dataclass(frozen=True)
class FundsCaptured(Event):
    payment_id: str
    amount: int


@dataclass(frozen=True)
class FundsReleased(Event):
    payment_id: str
    amount: int
    reason: str


@dataclass(frozen=True)
class PaymentRequested(Event):
    payment_id: str
    account_id: str
    client_id: str
    amount: int
    currency: str
    description: str | None
    idempotency_key: str


@dataclass(frozen=True)
class PaymentAuthorized(Event):
    payment_id: str
    account_id: str
    provider: str
    provider_ref: str
    fee: int


@dataclass(frozen=True)
class PaymentDeclined(Event):
    payment_id: str
    account_id: str
    provider: str
    reason: str


@dataclass(frozen=True)
class PaymentFailed(Event):
    payment_id: str
    account_id: str
    reason: str


class UnknownEventType(ValueError):
    pass


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        AccountOpened,
        FundsReserved,
        FundsCaptured,
        FundsReleased,
        PaymentRequested,
        PaymentAuthorized,
        PaymentDeclined,
        PaymentFailed,
    )
}


def event_from_data(event_type: str, data: dict[str, Any]) -> Event:
    """Rebuild a domain event from its stored form; unknown keys are ignored (newer writers)."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventType(event_type)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
