"""The processor's intent log on the stack's Postgres (consim.adapters.provider_attempts): a
charge request is on record, committed, when `record` returns; a later process sees which
instances a payment went to, in order, and settles from the one that holds its charge."""

from __future__ import annotations

import random
import threading
import uuid

import psycopg
import pytest
from consim.adapters.postgres_event_store import open_pool
from consim.adapters.provider_attempts import PostgresProviderAttempts
from consim.adapters.provider_client import (
    DEFAULT,
    FALLBACK,
    Charge,
    Health,
    ProviderUnavailable,
)
from consim.services.processing import ProviderRouter, RetryPolicy, Settler
from support.postgres import migrated_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def url():
    return migrated_url()


@pytest.fixture(scope="module")
def pool(url):
    pool = open_pool(url, max_size=8)
    yield pool
    pool.close()


@pytest.fixture
def payment_id(url):
    payment_id = f"it-intent-{uuid.uuid4()}"
    yield payment_id
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM provider_attempts WHERE payment_id = %s", [payment_id])


def rows(url: str, payment_id: str) -> list[tuple[str, int]]:
    # A connection of its own: what it sees was committed, not merely written.
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT provider, attempts FROM provider_attempts WHERE payment_id = %s "
            "ORDER BY first_at, provider",
            [payment_id],
        ).fetchall()


def test_a_recorded_attempt_is_committed_when_record_returns(pool, url, payment_id):
    PostgresProviderAttempts(pool).record(payment_id, FALLBACK)

    assert rows(url, payment_id) == [(FALLBACK, 1)]


def test_repeats_count_in_one_row_and_instances_come_back_in_submission_order(
    pool, url, payment_id
):
    intents = PostgresProviderAttempts(pool)
    assert intents.submitted(payment_id) == []

    intents.record(payment_id, FALLBACK)
    intents.record(payment_id, DEFAULT)
    intents.record(payment_id, FALLBACK)

    assert intents.submitted(payment_id) == [FALLBACK, DEFAULT]
    assert (intents.attempts(payment_id, FALLBACK), intents.attempts(payment_id, DEFAULT)) == (2, 1)
    assert rows(url, payment_id) == [(FALLBACK, 2), (DEFAULT, 1)]


def test_concurrent_records_of_one_instance_all_count(pool, payment_id):
    intents = PostgresProviderAttempts(pool)
    start = threading.Barrier(6)

    def record() -> None:
        start.wait()
        for _ in range(5):
            intents.record(payment_id, DEFAULT)

    threads = [threading.Thread(target=record) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert intents.submitted(payment_id) == [DEFAULT]
    assert intents.attempts(payment_id, DEFAULT) == 30


class Provider:
    """Both instances with one ledger; the default refuses charges while `down`."""

    def __init__(self) -> None:
        self.ledger: dict[tuple[str, str], Charge] = {}
        self.down: set[str] = set()
        self.charges: list[str] = []

    def charge(self, provider: str, payment_id: str, amount: int, currency: str) -> Charge:
        self.charges.append(provider)
        if provider in self.down:
            raise ProviderUnavailable(provider, "503 outage")
        charge = Charge(provider, payment_id, "authorized", f"{provider}-ref", amount // 100, None)
        self.ledger.setdefault((provider, payment_id), charge)
        return self.ledger[(provider, payment_id)]

    def status(self, provider: str, payment_id: str) -> Charge | None:
        return self.ledger.get((provider, payment_id))

    def health(self, provider: str) -> Health:
        return Health(False, 10)


def settler(provider: Provider, url: str) -> tuple[Settler, PostgresProviderAttempts]:
    """A Settler as a fresh process would have it: its own pool, router and intent log."""
    policy = RetryPolicy(attempts=2, backoff_s=0.001, status_grace_s=0)
    router = ProviderRouter(provider, policy, instances=(DEFAULT, FALLBACK))
    intents = PostgresProviderAttempts.from_url(url)
    return Settler(
        provider, router, policy, sleep=lambda _s: None, rng=random.Random(1), intents=intents
    ), intents


def test_a_later_process_finds_the_fallback_charge_and_charges_no_other_instance(url, payment_id):
    provider = Provider()
    provider.down = {DEFAULT}
    first, first_intents = settler(provider, url)
    charged = first.settle(payment_id, 1000, "EUR")
    first_intents.pool.close()  # the first process is gone; only its log rows remain
    assert (charged.provider, provider.charges) == (FALLBACK, [DEFAULT, DEFAULT, FALLBACK])
    # (Its outcome was never recorded: this is the delivery that died.)

    provider.down, provider.charges = set(), []
    second, second_intents = settler(provider, url)
    try:
        outcome = second.settle(payment_id, 1000, "EUR")
    finally:
        second_intents.pool.close()

    assert (outcome.status, outcome.provider, outcome.reconciled) == (
        "authorized",
        FALLBACK,
        True,
    )
    assert provider.charges == []
    assert rows(url, payment_id) == [(DEFAULT, 2), (FALLBACK, 1)]
