"""The payment use case on the in-memory event store: reservation, idempotency, both strategies."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from consim.adapters.envelope import from_envelope, partition_key, to_envelope
from consim.adapters.event_store import StreamWrite
from consim.adapters.memory_event_store import InMemoryEventStore
from consim.adapters.payments_summary import summarize
from consim.domain.account import account_stream
from consim.domain.errors import (
    AccountNotFound,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InsufficientFunds,
    PaymentNotFound,
)
from consim.domain.events import FundsReserved, PaymentAuthorized, PaymentFailed
from consim.domain.payment import payment_stream
from consim.services import accounts, payments

pytestmark = pytest.mark.unit


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


def command(account_id: str, amount: int = 1, key: str | None = None, client: str = "c1"):
    return payments.RequestPayment(
        client, key or str(uuid.uuid4()), account_id, amount, "EUR", None
    )


def test_payment_id_is_derived_from_client_and_key() -> None:
    assert payments.payment_id_for("c1", "k") == payments.payment_id_for("c1", "k")
    assert payments.payment_id_for("c1", "k") != payments.payment_id_for("c2", "k")


@pytest.mark.parametrize("strategy", payments.STRATEGIES)
def test_payment_and_reservation_are_recorded_together(store, strategy) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    accepted = payments.request_payment(store, command("a1", 4), strategy)
    assert (accepted.account.reserved, accepted.account.available) == (4, 6)
    assert [e.type for e in store.read_stream(payment_stream(accepted.payment.id))] == [
        "PaymentRequested"
    ]
    assert [e.type for e in store.read_stream(account_stream("a1"))] == [
        "AccountOpened",
        "FundsReserved",
    ]


def test_refusals_record_nothing(store) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    before = len(store.read_all())
    with pytest.raises(InsufficientFunds):
        payments.request_payment(store, command("a1", 11))
    with pytest.raises(AccountNotFound):
        payments.request_payment(store, command("a1", 1, client="c2"))
    with pytest.raises(AccountNotFound):
        payments.request_payment(store, command("nope", 1))
    with pytest.raises(CurrencyMismatch):
        payments.request_payment(
            store, payments.RequestPayment("c1", "k", "a1", 1, "USD", None), payments.LOCK
        )
    assert len(store.read_all()) == before


def test_the_same_request_again_finds_the_existing_payment(store) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    first = payments.request_payment(store, command("a1", 3, key="k1"))
    again = payments.request_payment(store, command("a1", 3, key="k1"))
    assert again.existing
    assert again.payment.id == first.payment.id
    assert again.account.reserved == 3
    with pytest.raises(IdempotencyKeyReused):
        payments.request_payment(store, command("a1", 4, key="k1"))


@pytest.mark.parametrize("strategy", payments.STRATEGIES)
def test_concurrent_payments_never_pass_the_limit(store, strategy) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    barrier = threading.Barrier(25)
    outcomes: list[str] = []

    def pay() -> None:
        barrier.wait()
        try:
            payments.request_payment(store, command("a1", 1), strategy)
            outcomes.append("ok")
        except InsufficientFunds:
            outcomes.append("refused")

    threads = [threading.Thread(target=pay) for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 10 + ["refused"] * 15


def test_a_payment_is_visible_to_its_client_only(store) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    accepted = payments.request_payment(store, command("a1", 2))
    assert payments.load_payment(store, "c1", accepted.payment.id).payment.amount == 2
    with pytest.raises(PaymentNotFound):
        payments.load_payment(store, "c2", accepted.payment.id)
    with pytest.raises(PaymentNotFound):
        payments.load_payment(store, "c1", "not-a-uuid")


def test_envelope_round_trip_and_partition_key(store) -> None:
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    accepted = payments.request_payment(store, command("a1", 2))
    for event in store.read_all():
        assert from_envelope(to_envelope(event)) == event
        assert partition_key(event) == "a1"
    assert accepted.payment.account_id == "a1"


def test_unknown_strategy_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("RESERVATION_STRATEGY", "hope")
    with pytest.raises(ValueError, match="RESERVATION_STRATEGY"):
        payments.reservation_strategy()
    monkeypatch.delenv("RESERVATION_STRATEGY")
    assert payments.reservation_strategy() == payments.LOCK


def test_summary_counts_authorized_payments_per_provider_in_the_window(store) -> None:
    accounts.open_account(store, "c1", "EUR", 100, 0, "a1")
    made = [payments.request_payment(store, command("a1", n)).payment.id for n in (3, 4, 5)]
    outcomes = [
        PaymentAuthorized(made[0], "a1", "default", "r1", 0),
        PaymentAuthorized(made[1], "a1", "fallback", "r2", 0),
        PaymentFailed(made[2], "a1", "timeout"),
    ]
    for payment_id, outcome in zip(made, outcomes, strict=True):
        store.append_streams([StreamWrite(payment_stream(payment_id), 1, [outcome])])

    now = datetime.now(UTC)
    summary = summarize(store.read_all(), "c1", now - timedelta(minutes=1), now + timedelta(1))
    assert summary["default"] == {"total_requests": 1, "total_amount": 3}
    assert summary["fallback"] == {"total_requests": 1, "total_amount": 4}
    assert summarize(store.read_all(), "c2", None, None)["default"]["total_requests"] == 0
    later = summarize(store.read_all(), "c1", now + timedelta(minutes=1), None)
    assert later["default"]["total_requests"] == 0


@pytest.mark.parametrize("strategy", payments.STRATEGIES)
def test_a_writer_that_skips_the_lock_makes_the_reservation_retry(store, strategy) -> None:
    """The processor settles without the account lock: the API must retry, not fail."""
    accounts.open_account(store, "c1", "EUR", 10, 0, "a1")
    real = store.read_stream
    interfered = []

    def read_then_interfere(stream_id: str, after_version: int = 0):
        events = real(stream_id, after_version)
        if stream_id == account_stream("a1") and not interfered:
            interfered.append(True)  # another writer extends the account right after our read
            store.append(stream_id, len(events), [FundsReserved("other", 1)])
        return events

    store.read_stream = read_then_interfere  # type: ignore[method-assign]
    accepted = payments.request_payment(store, command("a1", 2), strategy)
    assert accepted.attempts == 2
    assert (accepted.account.reserved, accepted.account.version) == (3, 3)
