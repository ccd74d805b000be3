"""The processor's intent log: a delivery that charged one instance and died before recording is
found by the next delivery, which charges no other instance (consim.services.processing)."""

from __future__ import annotations

import random

import pytest
from consim.adapters.event_store import StreamWrite
from consim.adapters.memory_event_store import InMemoryEventStore
from consim.adapters.provider_attempts import InMemoryProviderAttempts
from consim.adapters.provider_client import (
    DEFAULT,
    FALLBACK,
    Charge,
    Health,
    ProviderUnavailable,
)
from consim.domain.account import Account, account_stream
from consim.domain.payment import Payment, payment_stream
from consim.services.processing import (
    OutcomeUnknown,
    ProviderRouter,
    RetryPolicy,
    Settler,
    process_payment,
)

pytestmark = pytest.mark.unit


class Crashed(Exception):
    """Stands for the processor dying right after a charge (not a provider error)."""


class Provider:
    """Two instances with a shared ledger, like the real provider: a charge is kept, `status`
    reads it, a repeat gets the original. `down` instances refuse charges (503) while their
    health still looks fine, so the default is tried, and logged, before the fallback."""

    def __init__(self) -> None:
        self.ledger: dict[tuple[str, str], Charge] = {}
        self.down: set[str] = set()
        self.crash_after_charge: set[str] = set()
        self.status_unanswered: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def charge(self, provider: str, payment_id: str, amount: int, currency: str) -> Charge:
        self.calls.append(("charge", provider))
        if provider in self.down:
            raise ProviderUnavailable(provider, "503 outage")
        if (provider, payment_id) in self.ledger:
            original = self.ledger[(provider, payment_id)]
            return Charge(**{**original.__dict__, "already_processed": True})
        charge = Charge(
            provider=provider,
            payment_id=payment_id,
            status="authorized",
            provider_ref=f"{provider}-ref-{payment_id}",
            fee=amount // 100,
            reason=None,
        )
        self.ledger[(provider, payment_id)] = charge
        if provider in self.crash_after_charge:
            raise Crashed(provider)
        return charge

    def status(self, provider: str, payment_id: str) -> Charge | None:
        self.calls.append(("status", provider))
        if provider in self.status_unanswered:
            raise ProviderUnavailable(provider, "cannot answer")
        return self.ledger.get((provider, payment_id))

    def health(self, provider: str) -> Health:
        return Health(False, 10)

    def charged(self) -> list[str]:
        return [name for kind, name in self.calls if kind == "charge"]


def new_process(provider: Provider, intents: InMemoryProviderAttempts) -> Settler:
    """What a fresh execution environment builds: its own router (no breaker, no health cache);
    only the provider and the intent log outlive the process that died."""
    policy = RetryPolicy(attempts=2, backoff_s=0.001, status_grace_s=0)
    router = ProviderRouter(provider, policy, instances=(DEFAULT, FALLBACK))
    return Settler(
        provider, router, policy, sleep=lambda _s: None, rng=random.Random(1), intents=intents
    )


def requested_payment(store: InMemoryEventStore, payment_id: str = "p1") -> None:
    store.append(account_stream("a1"), 0, [Account.open("a1", "c1", "EUR", 10_000)])
    account = Account.fold("a1", (e.event for e in store.read_stream(account_stream("a1"))))
    store.append_streams(
        [
            StreamWrite(account_stream("a1"), account.version, account.reserve(payment_id, 1000)),
            StreamWrite(
                payment_stream(payment_id),
                0,
                [Payment.request(payment_id, "a1", "c1", 1000, "EUR", None, f"k-{payment_id}")],
            ),
        ]
    )


def test_a_fallback_charge_left_unrecorded_is_the_outcome_once_the_default_is_back():
    store, provider, intents = InMemoryEventStore(), Provider(), InMemoryProviderAttempts()
    requested_payment(store)

    # First delivery: the default is failing, the fallback charges, the process dies before
    # the outcome is recorded.
    provider.down = {DEFAULT}
    provider.crash_after_charge = {FALLBACK}
    with pytest.raises(Crashed):
        process_payment(store, new_process(provider, intents), "p1", strategy="optimistic")
    assert provider.ledger.keys() == {(FALLBACK, "p1")}
    pending = Payment.fold("p1", (e.event for e in store.read_stream(payment_stream("p1"))))
    assert pending.status == "pending"
    assert intents.submitted("p1") == [DEFAULT, FALLBACK]

    # Second delivery, in a new process, with the default healthy again.
    provider.down, provider.crash_after_charge = set(), set()
    provider.calls.clear()
    result = process_payment(store, new_process(provider, intents), "p1", strategy="optimistic")

    assert (result.status, result.outcome.provider, result.outcome.reconciled) == (
        "authorized",
        FALLBACK,
        True,
    )
    assert result.outcome.provider_ref == f"{FALLBACK}-ref-p1"
    assert provider.charged() == []  # the default was never asked to charge
    assert provider.calls == [("status", DEFAULT), ("status", FALLBACK)]
    assert (DEFAULT, "p1") not in provider.ledger
    payment = Payment.fold("p1", (e.event for e in store.read_stream(payment_stream("p1"))))
    assert (payment.status, payment.provider) == ("authorized", FALLBACK)


def test_each_charge_request_is_logged_before_it_is_sent():
    provider, intents = Provider(), InMemoryProviderAttempts()
    provider.down = {DEFAULT}
    seen_before_charge: list[list[str]] = []
    charge = provider.charge

    def charge_and_look(name, payment_id, amount, currency):
        seen_before_charge.append(list(intents.submitted(payment_id)))
        return charge(name, payment_id, amount, currency)

    provider.charge = charge_and_look  # type: ignore[method-assign]
    outcome = new_process(provider, intents).settle("p2", 1000, "EUR")

    assert (outcome.status, outcome.provider) == ("authorized", FALLBACK)
    # Every request found its own instance already logged when it went out.
    assert seen_before_charge == [[DEFAULT], [DEFAULT], [DEFAULT, FALLBACK]]
    assert (intents.attempts("p2", DEFAULT), intents.attempts("p2", FALLBACK)) == (2, 1)


def test_a_payment_never_submitted_asks_no_instance_for_its_status():
    provider, intents = Provider(), InMemoryProviderAttempts()
    outcome = new_process(provider, intents).settle("p3", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.reconciled) == ("authorized", DEFAULT, False)
    assert provider.calls == [("charge", DEFAULT)]
    assert intents.submitted("p3") == [DEFAULT]


def test_retries_on_one_instance_count_attempts_in_one_entry():
    provider, intents = Provider(), InMemoryProviderAttempts()
    provider.down = {DEFAULT, FALLBACK}
    outcome = new_process(provider, intents).settle("p4", 1000, "EUR")

    assert outcome.status == "failed"
    assert intents.submitted("p4") == [DEFAULT, FALLBACK]
    assert (intents.attempts("p4", DEFAULT), intents.attempts("p4", FALLBACK)) == (2, 2)


def test_a_logged_instance_that_cannot_answer_hands_the_record_back_and_charges_nothing():
    provider, intents = Provider(), InMemoryProviderAttempts()
    intents.record("p5", FALLBACK)  # an earlier delivery sent a charge there
    provider.status_unanswered = {FALLBACK}

    with pytest.raises(OutcomeUnknown) as raised:
        new_process(provider, intents).settle("p5", 1000, "EUR")

    assert raised.value.provider == FALLBACK
    assert provider.charged() == []


def test_a_logged_instance_without_the_charge_lets_the_normal_path_run():
    provider, intents = Provider(), InMemoryProviderAttempts()
    intents.record("p6", FALLBACK)  # the request never arrived: the fallback holds nothing

    outcome = new_process(provider, intents).settle("p6", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.reconciled) == ("authorized", DEFAULT, False)
    assert provider.calls == [("status", FALLBACK), ("charge", DEFAULT)]
