"""Recording outcomes the way the API reserves: under the account's lock with
RESERVATION_STRATEGY=lock, optimistically otherwise (in-memory event store, threads)."""

from __future__ import annotations

import threading
import time

import pytest
from consim.adapters.event_store import ConcurrencyConflict, StreamWrite
from consim.adapters.memory_event_store import InMemoryEventStore
from consim.domain.account import Account, account_stream
from consim.domain.payment import Payment, payment_stream
from consim.services.payments import LOCK, OPTIMISTIC, RequestPayment, request_payment
from consim.services.processing import Outcome, record_outcome

pytestmark = pytest.mark.unit

ACCOUNT = "hot"
OPENING_BALANCE = 100_000
LIMIT = 50_000


class ContendedStore(InMemoryEventStore):
    """Counts the appends refused with ConcurrencyConflict and the locks taken; every read is
    slow, so a writer that reads without the lock is overtaken between its read and its append."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicts = 0
        self.locks: list[str] = []
        self._count = threading.Lock()

    def read_stream(self, stream_id, after_version=0):
        events = super().read_stream(stream_id, after_version)
        time.sleep(0.002)
        return events

    def append_streams(self, writes, metadata=None):
        try:
            return super().append_streams(writes, metadata)
        except ConcurrencyConflict:
            with self._count:
                self.conflicts += 1
            raise

    def locked(self, stream_id):
        with self._count:
            self.locks.append(stream_id)
        return super().locked(stream_id)


def open_account(store) -> None:
    store.append(
        account_stream(ACCOUNT), 0, [Account.open(ACCOUNT, "c1", "EUR", LIMIT, OPENING_BALANCE)]
    )


def command(key: str, amount: int) -> RequestPayment:
    return RequestPayment("c1", key, ACCOUNT, amount, "EUR", None)


def fold_account(store) -> Account:
    return Account.fold(ACCOUNT, (e.event for e in store.read_stream(account_stream(ACCOUNT))))


def status_of(store, payment_id) -> str:
    return Payment.fold(
        payment_id, (e.event for e in store.read_stream(payment_stream(payment_id)))
    ).status


def outcome_for(n: int) -> Outcome:
    if n % 3 == 0:
        return Outcome("declined", provider="default", reason="card_declined")
    if n % 3 == 1:
        return Outcome("authorized", provider="default", provider_ref=f"ref-{n}", fee=1)
    return Outcome("failed", reason="provider_unavailable")


def run_together(jobs) -> list:
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(i, job):
        start.wait()
        try:
            results[i] = job()
        except BaseException as error:  # reported below, with the others' results
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.parametrize("strategy", [LOCK, OPTIMISTIC])
def test_reservations_and_outcomes_on_one_account_keep_the_balances(strategy, monkeypatch):
    monkeypatch.setenv("RESERVATION_STRATEGY", strategy)
    store = ContendedStore()
    open_account(store)
    # Payments already requested, whose outcomes arrive while new reservations come in.
    settling = [
        request_payment(store, command(f"settle-{n}", 100 + n), strategy).payment.id
        for n in range(12)
    ]
    store.conflicts = 0
    store.locks.clear()

    reserve_jobs = [
        (lambda n=n: request_payment(store, command(f"new-{n}", 1000 + n), strategy))
        for n in range(12)
    ]
    outcome_jobs = [
        (lambda n=n, pid=pid: record_outcome(store, pid, outcome_for(n), {"causation_id": "t"}))
        for n, pid in enumerate(settling)
    ]
    results = run_together([*reserve_jobs, *outcome_jobs])

    accepted = results[: len(reserve_jobs)]
    recorded = results[len(reserve_jobs) :]
    assert all(len(events) == 2 for events in recorded)
    captured = sum(100 + n for n in range(12) if outcome_for(n).status == "authorized")
    new_holds = sum(1000 + n for n in range(12))
    account = fold_account(store)
    assert (account.reserved, account.captured) == (new_holds, captured)
    assert account.balance == OPENING_BALANCE - captured
    assert account.available == OPENING_BALANCE + LIMIT - captured - new_holds
    assert [status_of(store, pid) for pid in settling] == [outcome_for(n).status for n in range(12)]
    if strategy == LOCK:
        # Everyone queued on the account's lock: no append was refused, nobody retried.
        assert store.conflicts == 0
        assert {a.attempts for a in accepted} == {1}
        assert store.locks.count(account_stream(ACCOUNT)) == len(reserve_jobs) + len(outcome_jobs)
    else:
        assert store.locks == []


def test_under_lock_the_outcome_is_decided_inside_the_lock(monkeypatch):
    """The read of both streams happens while the account's lock is held: a reservation that
    holds the lock makes the outcome wait, rather than race it."""
    monkeypatch.setenv("RESERVATION_STRATEGY", LOCK)
    store = ContendedStore()
    open_account(store)
    pid = request_payment(store, command("p", 500), LOCK).payment.id
    store.conflicts = 0

    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def reservation():
        with store.locked(account_stream(ACCOUNT)) as session:
            holding.set()
            release.wait(5)
            account = fold_account(session)
            session.append(account_stream(ACCOUNT), account.version, account.reserve("q", 7))
            order.append("reservation")

    def outcome():
        holding.wait(5)
        record_outcome(store, pid, outcome_for(1))
        order.append("outcome")

    threads = [threading.Thread(target=reservation), threading.Thread(target=outcome)]
    for thread in threads:
        thread.start()
    holding.wait(5)
    time.sleep(0.05)  # the outcome is now waiting on the lock (or it would have appended)
    order.append("released")
    release.set()
    for thread in threads:
        thread.join()

    assert order == ["released", "reservation", "outcome"]
    assert store.conflicts == 0
    account = fold_account(store)
    assert (account.reserved, account.captured) == (7, 500)


@pytest.mark.parametrize("strategy", [LOCK, OPTIMISTIC])
def test_a_redelivered_outcome_records_nothing_more(strategy):
    store = ContendedStore()
    open_account(store)
    pid = request_payment(store, command("p", 500), strategy).payment.id

    first = record_outcome(store, pid, outcome_for(1), strategy=strategy)
    again = record_outcome(store, pid, outcome_for(1), strategy=strategy)
    other = record_outcome(store, pid, outcome_for(0), strategy=strategy)

    assert [e.type for e in first] == ["PaymentAuthorized", "FundsCaptured"]
    assert again == [] and other == []
    assert status_of(store, pid) == "authorized"
    assert fold_account(store).captured == 500


def test_a_writer_that_skips_the_lock_is_still_retried_under_it():
    """The expected-version check stays the safety net: a reservation appended without the lock
    between the outcome's read and its append is a conflict, retried on fresh state."""

    class Interloper(ContendedStore):
        armed = True

        def append_streams(self, writes, metadata=None):
            if self.armed and any(w.stream_id == payment_stream("p1") for w in writes):
                self.armed = False
                account = Account.fold(
                    ACCOUNT,
                    (
                        e.event
                        for e in InMemoryEventStore.read_stream(self, account_stream(ACCOUNT))
                    ),
                )
                InMemoryEventStore.append_streams(
                    self,
                    [
                        StreamWrite(
                            account_stream(ACCOUNT), account.version, account.reserve("x", 3)
                        )
                    ],
                )
            return super().append_streams(writes, metadata)

    store = Interloper()
    open_account(store)
    store.armed = False
    account = fold_account(store)
    store.append_streams(
        [
            StreamWrite(
                payment_stream("p1"), 0, [Payment.request("p1", ACCOUNT, "c1", 9, "EUR", None, "k")]
            ),
            StreamWrite(account_stream(ACCOUNT), account.version, account.reserve("p1", 9)),
        ]
    )
    store.armed = True

    recorded = record_outcome(store, "p1", outcome_for(1), strategy=LOCK, sleep=lambda s: None)

    assert [e.type for e in recorded] == ["PaymentAuthorized", "FundsCaptured"]
    assert store.conflicts == 1
    assert (fold_account(store).reserved, fold_account(store).captured) == (3, 9)
