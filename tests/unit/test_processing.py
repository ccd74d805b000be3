"""The processor's decisions (which instance, retries, fallback, reconciliation) with a fake
provider, and the recording of outcomes on the in-memory event store."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from consim.adapters.event_store import ConcurrencyConflict, StreamWrite
from consim.adapters.memory_event_store import InMemoryEventStore
from consim.adapters.provider_client import (
    Charge,
    Health,
    ProviderBusy,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUncertain,
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


class FakeProvider:
    """Each instance answers charges from a script (a Charge, or an error to raise; the last
    entry repeats) and keeps a ledger that `status` reads, like the real one."""

    def __init__(self) -> None:
        self.scripts: dict[str, list] = defaultdict(lambda: ["authorize"])
        self.healths: dict[str, Health] = defaultdict(lambda: Health(False, 10))
        self.ledger: dict[tuple[str, str], Charge] = {}
        self.unknown_status: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def _next(self, name: str):
        script = self.scripts[name]
        return script.pop(0) if len(script) > 1 else script[0]

    def charge(self, provider: str, payment_id: str, amount: int, currency: str) -> Charge:
        self.calls.append(("charge", provider))
        step = self._next(provider)
        if (provider, payment_id) in self.ledger and step in ("authorize", "decline"):
            original = self.ledger[(provider, payment_id)]
            return Charge(**{**original.__dict__, "already_processed": True})
        if step in ("authorize", "decline", "charge-then-timeout"):
            charge = Charge(
                provider=provider,
                payment_id=payment_id,
                status="declined" if step == "decline" else "authorized",
                provider_ref=f"{provider}-ref-{payment_id}",
                fee=0 if step == "decline" else amount // 100,
                reason="card_declined" if step == "decline" else None,
            )
            self.ledger[(provider, payment_id)] = charge
            if step == "charge-then-timeout":
                raise ProviderTimeout(provider, "timed out")
            return charge
        raise step

    def status(self, provider: str, payment_id: str) -> Charge | None:
        self.calls.append(("status", provider))
        if provider in self.unknown_status:
            raise ProviderUnavailable(provider, "cannot answer")
        return self.ledger.get((provider, payment_id))

    def health(self, provider: str) -> Health:
        self.calls.append(("health", provider))
        return self.healths[provider]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settler_for(fake: FakeProvider, clock: Clock | None = None, **policy) -> Settler:
    policy = RetryPolicy(**{"attempts": 3, "backoff_s": 0.01, **policy})
    router = ProviderRouter(fake, policy, clock=clock or Clock())
    sleeps: list[float] = []
    settler = Settler(fake, router, policy, sleep=sleeps.append, rng=random.Random(1))
    settler.sleeps = sleeps  # type: ignore[attr-defined]
    return settler


def charges(fake: FakeProvider) -> list[str]:
    return [provider for kind, provider in fake.calls if kind == "charge"]


def test_the_default_authorizes_and_the_fallback_is_never_asked():
    fake = FakeProvider()
    outcome = settler_for(fake).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.fee, outcome.attempts) == (
        "authorized",
        "default",
        10,
        1,
    )
    assert charges(fake) == ["default"]


def test_a_decline_is_an_answer_not_a_reason_to_fall_back():
    fake = FakeProvider()
    fake.scripts["default"] = ["decline"]
    outcome = settler_for(fake).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.reason) == (
        "declined",
        "default",
        "card_declined",
    )
    assert charges(fake) == ["default"]


def test_errors_are_retried_with_growing_backoff_on_the_same_instance():
    fake = FakeProvider()
    fake.scripts["default"] = [
        ProviderUncertain("default", "500"),
        ProviderBusy("default", "429"),
        "authorize",
    ]
    settler = settler_for(fake, backoff_s=0.1)
    outcome = settler.settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.attempts) == ("authorized", "default", 3)
    assert charges(fake) == ["default"] * 3
    assert len(settler.sleeps) == 2
    assert 0 <= settler.sleeps[0] <= 0.1 and 0 <= settler.sleeps[1] <= 0.2


def test_a_refusing_default_sends_the_payment_to_the_fallback_without_a_status_check():
    fake = FakeProvider()
    fake.scripts["default"] = [ProviderUnavailable("default", "503")]
    outcome = settler_for(fake, breaker_threshold=10).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider) == ("authorized", "fallback")
    assert charges(fake) == ["default", "default", "default", "fallback"]
    assert ("status", "default") not in fake.calls


def test_after_uncertain_errors_the_default_is_asked_before_charging_the_fallback():
    fake = FakeProvider()
    fake.scripts["default"] = [ProviderTimeout("default", "timeout")]
    outcome = settler_for(fake, breaker_threshold=10).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.reconciled) == (
        "authorized",
        "fallback",
        False,
    )
    kinds = [call for call in fake.calls if call[0] != "health"]
    assert kinds.index(("status", "default")) < kinds.index(("charge", "fallback"))


def test_a_timeout_that_was_charged_is_found_and_never_charged_again_elsewhere():
    fake = FakeProvider()
    fake.scripts["default"] = ["charge-then-timeout", ProviderTimeout("default", "timeout")]
    outcome = settler_for(fake, attempts=1).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.reconciled) == (
        "authorized",
        "default",
        True,
    )
    assert outcome.provider_ref == "default-ref-p1"
    assert "fallback" not in charges(fake)


def test_a_retry_after_a_charged_timeout_gets_the_original_charge():
    fake = FakeProvider()
    fake.scripts["default"] = ["charge-then-timeout", "authorize"]
    outcome = settler_for(fake).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider_ref) == ("authorized", "default-ref-p1")
    assert len(fake.ledger) == 1


def test_both_failing_asks_both_for_the_payment_then_fails():
    fake = FakeProvider()
    fake.scripts["default"] = [ProviderUncertain("default", "500")]
    fake.scripts["fallback"] = [ProviderUnavailable("fallback", "503")]
    outcome = settler_for(fake, breaker_threshold=100).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.reason, outcome.attempts) == (
        "failed",
        "provider_unavailable",
        6,
    )
    statuses = [provider for kind, provider in fake.calls if kind == "status"]
    assert set(statuses) == {"default", "fallback"}
    assert fake.calls[-2:] == [("status", "default"), ("status", "fallback")]


def test_both_failing_but_an_earlier_delivery_charged_the_fallback_is_authorized():
    fake = FakeProvider()
    fake.ledger[("fallback", "p1")] = Charge("fallback", "p1", "authorized", "fb-old", 30)
    fake.scripts["default"] = [ProviderUnavailable("default", "503")]
    fake.scripts["fallback"] = [ProviderUnavailable("fallback", "503")]
    outcome = settler_for(fake, breaker_threshold=100).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider, outcome.provider_ref, outcome.reconciled) == (
        "authorized",
        "fallback",
        "fb-old",
        True,
    )


def test_an_instance_that_cannot_say_whether_it_charged_leaves_the_outcome_unknown():
    fake = FakeProvider()
    fake.scripts["default"] = [ProviderTimeout("default", "timeout")]
    fake.unknown_status.add("default")

    with pytest.raises(OutcomeUnknown):
        settler_for(fake).settle("p1", 1000, "EUR")
    assert "fallback" not in charges(fake)


def test_already_processed_counts_as_the_original_outcome():
    fake = FakeProvider()
    fake.ledger[("default", "p1")] = Charge("default", "p1", "declined", "d-1", 0, "card_declined")
    outcome = settler_for(fake).settle("p1", 1000, "EUR")

    assert (outcome.status, outcome.provider_ref) == ("declined", "d-1")


@pytest.mark.parametrize(
    "health",
    [Health(failing=True, min_response_time=10), Health(failing=False, min_response_time=2000)],
    ids=["failing", "slow"],
)
def test_a_failing_or_slow_default_is_tried_after_the_fallback(health):
    fake = FakeProvider()
    fake.healths["default"] = health
    outcome = settler_for(fake, slow_ms=500).settle("p1", 1000, "EUR")

    assert outcome.provider == "fallback"
    assert charges(fake) == ["fallback"]


def test_when_both_are_unhealthy_the_default_stays_first():
    fake = FakeProvider()
    fake.healths["default"] = fake.healths["fallback"] = Health(True, 10)
    assert settler_for(fake).settle("p1", 1000, "EUR").provider == "default"


def test_health_is_asked_once_per_ttl():
    fake, clock = FakeProvider(), Clock()
    settler = settler_for(fake, clock, health_ttl_s=1.0)
    for n in range(5):
        settler.settle(f"p{n}", 1000, "EUR")
    clock.now += 1.5
    settler.settle("p-late", 1000, "EUR")

    assert fake.calls.count(("health", "default")) == 2


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_its_cooldown():
    fake, clock = FakeProvider(), Clock()
    fake.scripts["default"] = [ProviderUnavailable("default", "503")] * 3 + ["authorize"]
    settler = settler_for(fake, clock, breaker_threshold=3, breaker_cooldown_s=5)

    first = settler.settle("p1", 1000, "EUR")
    assert first.provider == "fallback"
    assert settler.router.breaker_open("default")
    # While open, the default is not even tried first.
    assert settler.settle("p2", 1000, "EUR").provider == "fallback"
    assert charges(fake).count("default") == 3

    clock.now += 6
    assert settler.settle("p3", 1000, "EUR").provider == "default"


# Recording outcomes ------------------------------------------------------------------------


def requested_payment(store, payment_id="p1", account_id="a1", amount=1000) -> None:
    if not store.read_stream(account_stream(account_id)):
        store.append(account_stream(account_id), 0, [Account.open(account_id, "c1", "EUR", 10_000)])
    account = Account.fold(
        account_id, (e.event for e in store.read_stream(account_stream(account_id)))
    )
    store.append_streams(
        [
            StreamWrite(
                account_stream(account_id), account.version, account.reserve(payment_id, amount)
            ),
            StreamWrite(
                payment_stream(payment_id),
                0,
                [
                    Payment.request(
                        payment_id, account_id, "c1", amount, "EUR", None, f"k-{payment_id}"
                    )
                ],
            ),
        ]
    )


def fold_account(store, account_id="a1") -> Account:
    return Account.fold(
        account_id, (e.event for e in store.read_stream(account_stream(account_id)))
    )


def fold_payment(store, payment_id="p1") -> Payment:
    return Payment.fold(
        payment_id, (e.event for e in store.read_stream(payment_stream(payment_id)))
    )


def test_authorized_records_the_authorization_and_captures_the_funds():
    store, fake = InMemoryEventStore(), FakeProvider()
    requested_payment(store)

    result = process_payment(store, settler_for(fake), "p1", {"causation_id": "e1"})

    assert [e.type for e in result.recorded] == ["PaymentAuthorized", "FundsCaptured"]
    assert all(e.metadata["causation_id"] == "e1" for e in result.recorded)
    payment, account = fold_payment(store), fold_account(store)
    assert (payment.status, payment.provider, payment.fee) == ("authorized", "default", 10)
    assert (account.reserved, account.captured, account.balance) == (0, 1000, -1000)


@pytest.mark.parametrize(
    ("script", "status", "event"),
    [
        (["decline"], "declined", "PaymentDeclined"),
        ([ProviderUnavailable("x", "503")], "failed", "PaymentFailed"),
    ],
)
def test_declined_or_failed_records_it_and_releases_the_funds(script, status, event):
    store, fake = InMemoryEventStore(), FakeProvider()
    fake.scripts["default"] = list(script)
    fake.scripts["fallback"] = list(script)
    requested_payment(store)

    result = process_payment(store, settler_for(fake), "p1")

    assert [e.type for e in result.recorded] == [event, "FundsReleased"]
    assert fold_payment(store).status == status
    account = fold_account(store)
    assert (account.reserved, account.captured, account.available) == (0, 0, 10_000)


def test_a_redelivered_request_changes_nothing_and_asks_no_provider():
    store, fake = InMemoryEventStore(), FakeProvider()
    requested_payment(store)
    process_payment(store, settler_for(fake), "p1")
    events_before, calls_before = len(store.read_all()), len(fake.calls)

    again = process_payment(store, settler_for(fake), "p1")

    assert (again.status, again.outcome, again.recorded) == ("authorized", None, [])
    assert len(store.read_all()) == events_before
    assert len(fake.calls) == calls_before


def test_a_provider_that_rejects_the_request_fails_the_payment():
    store, fake = InMemoryEventStore(), FakeProvider()
    fake.scripts["default"] = [ProviderRejected("default", "422")]
    requested_payment(store)

    result = process_payment(store, settler_for(fake), "p1")
    assert (result.status, fold_payment(store).reason) == ("failed", "rejected_by_provider")


class ConflictingStore(InMemoryEventStore):
    """Lets another payment of the same account in just before each of our first appends,
    as a concurrent API request or processor would."""

    def __init__(self, conflicts: int) -> None:
        super().__init__()
        self.conflicts = conflicts
        self.armed = False

    def append_streams(self, writes, metadata=None):
        if self.armed and self.conflicts > 0:
            self.conflicts -= 1
            self.armed = False
            requested_payment(self, payment_id=f"other-{self.conflicts}", amount=1)
            self.armed = True
        return super().append_streams(writes, metadata)


def test_conflicts_on_the_hot_account_stream_are_retried_on_fresh_state():
    store, fake = ConflictingStore(conflicts=3), FakeProvider()
    requested_payment(store)
    store.armed = True

    result = process_payment(store, settler_for(fake), "p1")

    assert [e.type for e in result.recorded] == ["PaymentAuthorized", "FundsCaptured"]
    account = fold_account(store)
    assert (account.reserved, account.captured) == (3, 1000)  # the three others still held


def test_conflicts_beyond_the_limit_are_raised():
    store, fake = ConflictingStore(conflicts=5), FakeProvider()
    requested_payment(store)
    store.armed = True

    with pytest.raises(ConcurrencyConflict):
        process_payment(store, settler_for(fake), "p1", max_conflicts=2)
    assert fold_payment(store).status == "pending"
