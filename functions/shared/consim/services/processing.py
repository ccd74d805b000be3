"""Settling a requested payment with the provider, and recording the outcome.

Two instances of the provider exist, `default` (cheaper) and `fallback`. The rules:

- Prefer the default; go to the fallback first while the default is failing or slow (its health
  endpoint says so, or our own circuit breaker has seen it fail several times in a row).
- Retry an instance with backoff on errors. Repeating a charge is safe *at the same instance*:
  the payment id is the provider's idempotency key and a repeat gets the original (409).
- Moving to the other instance is not safe by itself: a request that timed out (or got a 5xx)
  may have been charged. Before charging elsewhere, ask the instance that left us uncertain.
- When every instance is exhausted, ask each for the payment before calling it failed: a charge
  we do not record would break "no charge without a record". If an instance cannot say, the
  outcome is unknown and the caller retries later rather than guess.
- Before each charge request, the instance is written to an intent log (`ProviderAttempts`);
  a later delivery of the same payment asks the instances logged there for the payment before
  charging anywhere, so what an earlier delivery charged and never recorded is found, not doubled.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from consim.adapters.event_store import ConcurrencyConflict, EventStore, RecordedEvent, StreamWrite
from consim.adapters.provider_attempts import InMemoryProviderAttempts, ProviderAttempts
from consim.adapters.provider_client import (
    DEFAULT,
    FALLBACK,
    Charge,
    Health,
    PaymentProvider,
    ProviderError,
    ProviderRejected,
    ProviderUncertain,
)
from consim.config import Settings, settings
from consim.domain.account import Account, account_stream
from consim.domain.errors import PaymentNotFound
from consim.domain.payment import AUTHORIZED, DECLINED, FAILED, Payment, payment_stream
from consim.services.payments import LOCK, reservation_strategy

logger = logging.getLogger(__name__)


class OutcomeUnknown(Exception):
    """The payment may have been charged and the provider cannot tell us now: retry later."""

    def __init__(self, payment_id: str, provider: str, cause: Exception) -> None:
        super().__init__(f"payment {payment_id}: provider {provider} cannot say ({cause})")
        self.payment_id = payment_id
        self.provider = provider


@dataclass(frozen=True)
class Outcome:
    status: str  # authorized | declined | failed
    provider: str | None = None
    provider_ref: str | None = None
    fee: int = 0
    reason: str | None = None
    # Found by asking the provider after a call that left us uncertain.
    reconciled: bool = False
    attempts: int = 0
    elapsed_ms: float = 0.0  # asking the provider(s), retries and lookups included

    @classmethod
    def of(cls, charge: Charge, attempts: int, reconciled: bool = False) -> Outcome:
        if charge.authorized:
            return cls(
                AUTHORIZED,
                charge.provider,
                charge.provider_ref,
                charge.fee,
                None,
                reconciled,
                attempts,
            )
        reason = charge.reason or "declined"
        return cls(DECLINED, charge.provider, charge.provider_ref, 0, reason, reconciled, attempts)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # per provider instance
    backoff_s: float = 0.05  # first retry waits up to this, doubling each time (full jitter)
    backoff_cap_s: float = 1.0
    slow_ms: int = 500
    health_ttl_s: float = 5.0
    breaker_threshold: int = 3  # consecutive failures that open the breaker
    breaker_cooldown_s: float = 5.0
    # Between an uncertain answer and asking for the payment: lets a charge the provider
    # decided just before our deadline finish committing, so the lookup sees it.
    status_grace_s: float = 0.05

    @classmethod
    def from_settings(cls, config: Settings | None = None) -> RetryPolicy:
        config = config or settings()
        return cls(
            attempts=max(1, config.provider_attempts),
            backoff_s=config.provider_backoff_ms / 1000,
            slow_ms=config.provider_slow_ms,
            health_ttl_s=config.provider_health_ttl_ms / 1000,
        )

    def backoff(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.backoff_cap_s, self.backoff_s * 2 ** (retry - 1)))


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class ProviderRouter:
    """Which instance to try first, from cached health answers and a small circuit breaker.

    Kept for the life of a warm execution environment, so health is asked at most once per TTL
    and a failing default is skipped without paying its timeouts on every payment.
    """

    client: PaymentProvider
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.monotonic
    instances: Sequence[str] = (DEFAULT, FALLBACK)
    _health: dict[str, tuple[float, Health]] = field(default_factory=dict)
    _breakers: dict[str, _Breaker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def health(self, name: str) -> Health:
        now = self.clock()
        cached = self._health.get(name)
        if cached is not None and now - cached[0] < self.policy.health_ttl_s:
            return cached[1]
        answer = self.client.health(name)
        self._health[name] = (now, answer)
        return answer

    def breaker_open(self, name: str) -> bool:
        return self._breakers.get(name, _Breaker()).open_until > self.clock()

    def usable(self, name: str) -> bool:
        if self.breaker_open(name):
            return False
        health = self.health(name)
        return not health.failing and health.min_response_time <= self.policy.slow_ms

    def order(self) -> list[str]:
        preferred, *others = self.instances
        if self.usable(preferred):
            return [preferred, *others]
        usable = [name for name in others if self.usable(name)]
        rest = [name for name in others if name not in usable]
        return [*usable, preferred, *rest]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._breakers[name] = _Breaker()

    def failed(self, name: str) -> None:
        with self._lock:
            breaker = self._breakers.setdefault(name, _Breaker())
            breaker.failures += 1
            if breaker.failures >= self.policy.breaker_threshold:
                breaker.open_until = self.clock() + self.policy.breaker_cooldown_s
                breaker.failures = 0
                # What health said before the failures is stale now.
                self._health.pop(name, None)


@dataclass
class Settler:
    """Gets one decision for a payment out of the provider instances (see the module doc)."""

    client: PaymentProvider
    router: ProviderRouter
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    # The intent log; the processor wires the Postgres one. The in-memory default only covers
    # deliveries within one process (unit tests, a Settler built by hand).
    intents: ProviderAttempts = field(default_factory=InMemoryProviderAttempts)

    def settle(self, payment_id: str, amount: int, currency: str) -> Outcome:
        started = time.perf_counter()
        outcome = self._settle(payment_id, amount, currency)
        return replace(outcome, elapsed_ms=(time.perf_counter() - started) * 1000)

    def _settle(self, payment_id: str, amount: int, currency: str) -> Outcome:
        # The intent log: an earlier delivery of this payment may have charged an instance and
        # died before recording it (then Kafka or the relay's sweeper delivers it again). Each
        # charge request is logged before it is sent (`_try`), so the instances named here are
        # the only ones that can hold such a charge; each is asked first, and a charge found is
        # the outcome: no other instance is charged. Without this, a payment the fallback charged
        # while the default was failing would be charged again at the default once it recovered.
        # A payment never submitted costs this one SELECT and no lookup.
        for name in self.intents.submitted(payment_id):
            found = self._status(name, payment_id)  # cannot say: OutcomeUnknown, retried later
            if found is not None:
                logger.info(
                    "charge from an earlier delivery found",
                    extra={"payment_id": payment_id, "provider": name},
                )
                return Outcome.of(found, 0, reconciled=True)

        attempts = 0
        for name in self.router.order():
            charge, uncertain, used = self._try(name, payment_id, amount, currency)
            attempts += used
            if charge is not None:
                return Outcome.of(charge, attempts)
            if uncertain:
                self.sleep(self.policy.status_grace_s)
                found = self._status(name, payment_id)
                if found is not None:
                    return Outcome.of(found, attempts, reconciled=True)

        # Every instance is exhausted. One may still hold a charge from an earlier delivery of
        # this record (a process that died before recording), so each is asked once more.
        for name in self.router.instances:
            found = self._status(name, payment_id)
            if found is not None:
                return Outcome.of(found, attempts, reconciled=True)
        return Outcome(FAILED, reason="provider_unavailable", attempts=attempts)

    def _try(
        self, name: str, payment_id: str, amount: int, currency: str
    ) -> tuple[Charge | None, bool, int]:
        """(charge or None, whether a request may have been decided, requests made)."""
        uncertain = False
        for attempt in range(self.policy.attempts):
            if attempt:
                self.sleep(self.policy.backoff(attempt, self.rng))
            # Logged, and committed, before the request leaves: a process that dies after
            # sending it (charged or not, we cannot tell) must leave the instance on record for
            # the next delivery. Logging after the call would leave exactly that case unseen.
            self.intents.record(payment_id, name)
            try:
                charge = self.client.charge(name, payment_id, amount, currency)
            except ProviderRejected:
                raise
            except ProviderError as error:
                uncertain = uncertain or isinstance(error, ProviderUncertain)
                self.router.failed(name)
                logger.warning(
                    "provider call failed",
                    extra={
                        "provider": name,
                        "payment_id": payment_id,
                        "attempt": attempt + 1,
                        "error": type(error).__name__,
                        "detail": error.detail,
                    },
                )
                if self.router.breaker_open(name):
                    return None, uncertain, attempt + 1
                continue
            self.router.succeeded(name)
            return charge, uncertain, attempt + 1
        return None, uncertain, self.policy.attempts

    def _status(self, name: str, payment_id: str) -> Charge | None:
        # An instance that cannot answer keeps the payment pending only until it answers again:
        # the record is handed back, and once the event source gives up on it (dead letter) the
        # relay's sweeper (services/redrive.py) re-drives pending payments, so a later delivery
        # asks again.
        try:
            return self.client.status(name, payment_id)
        except ProviderError as error:
            raise OutcomeUnknown(payment_id, name, error) from error


@dataclass(frozen=True)
class Processed:
    payment_id: str
    status: str
    outcome: Outcome | None  # None when the payment was already final: nothing was asked
    recorded: list[RecordedEvent]


def process_payment(
    store: EventStore,
    settler: Settler,
    payment_id: str,
    metadata: dict[str, Any] | None = None,
    max_conflicts: int = 20,
    strategy: str | None = None,
) -> Processed:
    """Settle a requested payment and record the outcome; a final payment is left alone."""
    payment = _load_payment(store, payment_id)
    if payment.is_final:
        return Processed(payment_id, payment.status, None, [])

    try:
        outcome = settler.settle(payment.id, payment.amount, payment.currency)
    except ProviderRejected as error:
        # The provider refuses the request as such: no retry or other instance will change it.
        outcome = Outcome(FAILED, provider=error.provider, reason="rejected_by_provider")
    recorded = record_outcome(
        store, payment_id, outcome, metadata, max_conflicts, strategy=strategy
    )
    return Processed(payment_id, outcome.status, outcome, recorded)


def record_outcome(
    store: EventStore,
    payment_id: str,
    outcome: Outcome,
    metadata: dict[str, Any] | None = None,
    max_conflicts: int = 20,
    sleep: Callable[[float], None] = time.sleep,
    strategy: str | None = None,
) -> list[RecordedEvent]:
    """Append the final status to the payment and capture or release its hold on the account,
    in one transaction on both streams.

    Both appends carry the version each stream had when read. The payment stream conflicts only
    with another delivery of the same record; the account stream is the hot one, extended by
    every payment of the account (reservations from the API, other outcomes from here).

    The account is written the way the API writes it (RESERVATION_STRATEGY). Under `lock` the
    API's reservations queue on the account's advisory lock; an outcome appended beside that
    queue would slip in between a holder's read and its append and make the holder retry. So
    here too the lock is taken, then both streams are read, the outcome decided and appended in
    that transaction: the outcome waits its turn like a reservation, and neither side retries.
    Under `optimistic` nobody locks: read, decide, append, and on conflict read both again.

    The conflict retry stays under the lock as a safety net for writers that skip it (an API
    still running the other strategy during a change). A read that finds the payment already
    final ends it: whoever won recorded the same provider decision, so re-delivery is harmless.
    """
    strategy = strategy or reservation_strategy()
    account_id = _load_payment(store, payment_id).account_id  # never changes: lock by it
    for conflict in range(max_conflicts + 1):
        try:
            if strategy == LOCK:
                with store.locked(account_stream(account_id)) as session:
                    return _decide_and_append(session, payment_id, outcome, metadata)
            return _decide_and_append(store, payment_id, outcome, metadata)
        except ConcurrencyConflict as error:
            if conflict == max_conflicts:
                raise
            logger.info(
                "append conflict, retrying",
                extra={
                    "payment_id": payment_id,
                    "stream": error.stream_id,
                    "retry": conflict + 1,
                    "strategy": strategy,
                },
            )
            sleep(random.uniform(0, min(0.05, 0.002 * 2**conflict)))
    raise AssertionError("unreachable")


def _decide_and_append(
    store: EventStore, payment_id: str, outcome: Outcome, metadata: dict[str, Any] | None
) -> list[RecordedEvent]:
    """One read-decide-append round on both streams (inside the lock's transaction or not)."""
    payment = _load_payment(store, payment_id)
    if payment.is_final:
        if payment.status != outcome.status:
            logger.error(
                "payment already final with another status",
                extra={
                    "payment_id": payment_id,
                    "recorded": payment.status,
                    "outcome": outcome.status,
                },
            )
        return []
    account = Account.fold(
        payment.account_id,
        (e.event for e in store.read_stream(account_stream(payment.account_id))),
    )
    if outcome.status == AUTHORIZED:
        payment_events = payment.authorize(
            outcome.provider or "", outcome.provider_ref or "", outcome.fee
        )
        account_events = account.capture(payment_id)
    elif outcome.status == DECLINED:
        payment_events = payment.decline(outcome.provider or "", outcome.reason or "declined")
        account_events = account.release(payment_id, f"declined: {outcome.reason}")
    else:
        payment_events = payment.fail(outcome.reason or "failed")
        account_events = account.release(payment_id, f"failed: {outcome.reason}")
    return store.append_streams(
        [
            StreamWrite(payment_stream(payment_id), payment.version, payment_events),
            StreamWrite(account_stream(payment.account_id), account.version, account_events),
        ],
        metadata,
    )


def _load_payment(store: EventStore, payment_id: str) -> Payment:
    payment = Payment.fold(
        payment_id, (e.event for e in store.read_stream(payment_stream(payment_id)))
    )
    if not payment.exists:
        raise PaymentNotFound(payment_id)
    return payment
