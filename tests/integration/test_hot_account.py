"""25 concurrent payments of 1 on an account with limit 10 and balance 0, both strategies."""

from __future__ import annotations

import threading
import uuid

import pytest
from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.domain.account import Account, account_stream
from consim.domain.errors import InsufficientFunds
from consim.services import accounts, payments
from support.postgres import migrated_url

pytestmark = pytest.mark.integration

CONCURRENT = 25


@pytest.fixture(scope="module")
def store():
    pool = open_pool(migrated_url(), max_size=CONCURRENT + 2)
    yield PostgresEventStore(pool)
    pool.close()


@pytest.mark.parametrize("strategy", payments.STRATEGIES)
def test_hot_account_never_passes_its_limit(store, strategy) -> None:
    account_id = f"hot-{uuid.uuid4().hex[:8]}"
    accounts.open_account(store, "client-hot", "EUR", 10, 0, account_id)
    barrier = threading.Barrier(CONCURRENT)
    outcomes: list[int] = []
    lock = threading.Lock()

    def pay(i: int) -> None:
        command = payments.RequestPayment(
            "client-hot", f"{account_id}-{i}", account_id, 1, "EUR", None
        )
        barrier.wait()
        try:
            payments.request_payment(store, command, strategy)
            status = 201
        except InsufficientFunds:
            status = 422
        with lock:
            outcomes.append(status)

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [201] * 10 + [422] * 15
    account = Account.fold(
        account_id, [e.event for e in store.read_stream(account_stream(account_id))]
    )
    assert account.reserved + account.captured == 10
    assert account.available == 0
    assert account.version == 11
    assert len(account.holds) == 10
