"""Requesting a payment: record it and reserve its funds in one append.

Two writers may race on one account. Each reads the account stream, folds it, decides, and
appends at the version it folded; the event store lets exactly one of them extend that version.
What the loser does is the reservation strategy (RESERVATION_STRATEGY):

- optimistic: re-read and re-decide after a jittered backoff, until a deadline. No lock is held
  while waiting; under heavy contention most attempts are wasted reads.
- lock: take a per-account lock (a Postgres advisory lock held by the transaction) before
  reading, so writers queue instead of colliding; one round trip more per payment, and retries
  only when a writer that does not take the lock (the processor) got in between.

benchmarks/hot_account.py measures both; docs/architecture.md has the figures and the choice.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from consim.adapters.event_store import (
    ConcurrencyConflict,
    EventStore,
    RecordedEvent,
    StreamWrite,
)
from consim.domain.account import Account, account_stream
from consim.domain.errors import (
    AccountNotFound,
    CurrencyMismatch,
    DomainError,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentNotFound,
)
from consim.domain.events import PaymentRequested
from consim.domain.payment import Payment, payment_stream
from consim.domain.rules import require_amount, require_currency, require_description

OPTIMISTIC = "optimistic"
LOCK = "lock"
STRATEGIES = (OPTIMISTIC, LOCK)
DEFAULT_STRATEGY = LOCK
MAX_IDEMPOTENCY_KEY = 255

# Payment ids are derived from (client, Idempotency-Key), so that a retry whose idempotency
# record was lost still lands on the same payment stream and finds the payment it made before.
PAYMENT_ID_NAMESPACE = uuid.UUID("6f1c1c9e-4d0f-4b8e-9a57-2f5f0f6a2c11")


class ReservationContended(DomainError):
    """The optimistic strategy ran out of time before it could append."""


def reservation_strategy() -> str:
    strategy = os.environ.get("RESERVATION_STRATEGY") or DEFAULT_STRATEGY
    if strategy not in STRATEGIES:
        raise ValueError(f"RESERVATION_STRATEGY must be one of {STRATEGIES}, got {strategy!r}")
    return strategy


def payment_id_for(client_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(PAYMENT_ID_NAMESPACE, f"{client_id}\n{idempotency_key}"))


@dataclass(frozen=True)
class RequestPayment:
    client_id: str
    idempotency_key: str
    account_id: str
    amount: int
    currency: str
    description: str | None

    @property
    def payment_id(self) -> str:
        return payment_id_for(self.client_id, self.idempotency_key)

    @classmethod
    def parse(cls, client_id: str, idempotency_key: object, body: dict) -> RequestPayment:
        """Validate everything before anything is read or written."""
        if not isinstance(idempotency_key, str) or not idempotency_key.strip():
            raise InvalidRequest("the Idempotency-Key header is required")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequest(f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY}")
        account_id = body.get("account_id")
        if not isinstance(account_id, str) or not account_id:
            raise InvalidRequest("account_id must be a non-empty string")
        return cls(
            client_id=client_id,
            idempotency_key=idempotency_key,
            account_id=account_id,
            amount=require_amount(body.get("amount")),
            currency=require_currency(body.get("currency")),
            description=require_description(body.get("description")),
        )

    def same_as(self, requested: PaymentRequested) -> bool:
        return (
            requested.account_id,
            requested.amount,
            requested.currency,
            requested.description,
        ) == (
            self.account_id,
            self.amount,
            self.currency,
            self.description,
        )


@dataclass(frozen=True)
class PaymentAccepted:
    payment: Payment
    account: Account
    created_at: datetime
    # True when the payment existed already (a retry of the same request).
    existing: bool
    attempts: int = 1


@dataclass(frozen=True)
class PaymentView:
    payment: Payment
    created_at: datetime
    updated_at: datetime
    events: list[RecordedEvent]


def request_payment(
    store: EventStore, command: RequestPayment, strategy: str | None = None
) -> PaymentAccepted:
    strategy = strategy or reservation_strategy()
    if strategy == LOCK:
        return _retrying(command, lambda attempts: _with_lock(store, command, attempts))
    return _retrying(command, lambda attempts: _attempt(store, command, attempts))


def _with_lock(store: EventStore, command: RequestPayment, attempts: int) -> PaymentAccepted:
    with store.locked(account_stream(command.account_id)) as session:
        return _attempt(session, command, attempts)


def _retrying(
    command: RequestPayment,
    attempt: Callable[[int], PaymentAccepted],
    deadline_seconds: float = 8.0,
) -> PaymentAccepted:
    """Run `attempt` until it appends or refuses, retrying on ConcurrencyConflict.

    Optimistic writers conflict with each other all the time. Under the lock they conflict only
    with writers that do not take it (the processor settling a payment on the same account) or
    on the payment stream (the same Idempotency-Key racing in through another account; the next
    attempt finds that payment). Full jitter: sleep a random time up to an exponentially growing
    cap, so that the losers of one round do not collide again in lockstep. The deadline stays
    under the function's timeout, so a request gets a clear answer rather than being killed.
    """
    deadline = time.monotonic() + deadline_seconds
    attempts = 0
    while True:
        attempts += 1
        try:
            return attempt(attempts)
        except ConcurrencyConflict as conflict:
            if time.monotonic() >= deadline:
                raise ReservationContended(
                    f"account {command.account_id} is too busy, retry later"
                ) from conflict
            if conflict.stream_id != payment_stream(command.payment_id):
                cap = min(0.002 * 2 ** min(attempts, 6), 0.1)
                time.sleep(random.uniform(0, cap))


def _attempt(store: EventStore, command: RequestPayment, attempts: int) -> PaymentAccepted:
    payment_id = command.payment_id
    existing = store.read_stream(payment_stream(payment_id))
    if existing:
        return _existing(store, command, existing)

    account_events = store.read_stream(account_stream(command.account_id))
    account = Account.fold(command.account_id, [e.event for e in account_events])
    if not account.exists or account.client_id != command.client_id:
        raise AccountNotFound(command.account_id)
    if account.currency != command.currency:
        raise CurrencyMismatch(account.currency, command.currency)

    requested = Payment.request(
        payment_id,
        command.account_id,
        command.client_id,
        command.amount,
        command.currency,
        command.description,
        command.idempotency_key,
    )
    reserved = account.reserve(payment_id, command.amount)
    recorded = store.append_streams(
        [
            StreamWrite(payment_stream(payment_id), 0, [requested]),
            StreamWrite(account_stream(command.account_id), account.version, reserved),
        ],
        {"client_id": command.client_id, "correlation_id": payment_id},
    )
    for event in reserved:
        account.apply(event)
    payment = Payment.fold(payment_id, [requested])
    return PaymentAccepted(payment, account, recorded[0].recorded_at, False, attempts)


def _existing(
    store: EventStore, command: RequestPayment, events: list[RecordedEvent]
) -> PaymentAccepted:
    payment = Payment.fold(command.payment_id, [e.event for e in events])
    first = events[0].event
    if not isinstance(first, PaymentRequested) or not command.same_as(first):
        raise IdempotencyKeyReused(command.idempotency_key)
    account_events = store.read_stream(account_stream(payment.account_id))
    account = Account.fold(payment.account_id, [e.event for e in account_events])
    return PaymentAccepted(payment, account, events[0].recorded_at, True)


def load_payment(store: EventStore, client_id: str, payment_id: str) -> PaymentView:
    try:
        uuid.UUID(payment_id)
    except ValueError as exc:
        raise PaymentNotFound(payment_id) from exc
    events = store.read_stream(payment_stream(payment_id))
    payment = Payment.fold(payment_id, [e.event for e in events])
    if not payment.exists or payment.client_id != client_id:
        raise PaymentNotFound(payment_id)
    return PaymentView(payment, events[0].recorded_at, events[-1].recorded_at, events)
