"""The processor's handler with Kafka-shaped events, against the stack's Postgres event store and
both provider instances served over HTTP."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
import uuid
from collections import Counter

import pytest
from consim.adapters.envelope import to_envelope
from consim.adapters.event_store import RecordedEvent, StreamWrite
from consim.adapters.postgres_event_store import _insert as insert_events
from consim.adapters.postgres_event_store import open_pool
from consim.adapters.provider_client import HttpPaymentProvider
from consim.config import REPO_ROOT
from consim.domain.account import Account, account_stream
from consim.domain.payment import Payment, payment_stream
from consim.services.processing import process_payment
from support.postgres import migrated_url as event_store_url
from support.postgres import unpublished_store
from support.provider import (
    DEFAULT,
    FALLBACK,
    LambdaContext,
    call,
    ledger,
    load_provider,
    provider_server,
    reset,
    set_knobs,
)
from support.provider import migrated_url as provider_url

pytestmark = pytest.mark.integration

TRACE = "Root=1-6750a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
CLIENT_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def pool():
    event_store_url()
    pool = open_pool(provider_url(), max_size=12)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def providers():
    return {DEFAULT: load_provider(DEFAULT), FALLBACK: load_provider(FALLBACK)}


@pytest.fixture(scope="module")
def base_url():
    with provider_server(workers=6) as url:
        yield url


@pytest.fixture(scope="module")
def processor():
    spec = importlib.util.spec_from_file_location(
        "processor_handler", REPO_ROOT / "functions" / "processor" / "handler.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def store(pool, providers, base_url, processor, monkeypatch):
    for name, module in providers.items():
        reset(module, name)
    monkeypatch.setenv("PROVIDER_TIMEOUT_MS", str(CLIENT_TIMEOUT_MS))
    monkeypatch.setenv("PROVIDER_ATTEMPTS", "2")
    monkeypatch.setenv("PROVIDER_BACKOFF_MS", "10")
    monkeypatch.setenv("PROVIDER_HEALTH_TTL_MS", "0")
    store = unpublished_store(pool)
    client = HttpPaymentProvider(base_url=base_url)
    processor.wire(store=store, client=client, instances=(DEFAULT, FALLBACK))
    yield store
    for name, module in providers.items():
        reset(module, name)


def append_unpublished(store, writes, metadata=None):
    # In the appending transaction, so that no relay tick can see the outbox rows.
    with store.pool.connection() as conn, conn.transaction():
        recorded = insert_events(conn, writes, store._with_trace(metadata))
        positions = [event.position for event in recorded]
        conn.execute("DELETE FROM outbox WHERE position = ANY(%s)", [positions])
    return recorded


def open_account(store, balance=0, limit=100_000) -> str:
    account_id = f"acc-{uuid.uuid4()}"
    store.append(
        account_stream(account_id), 0, [Account.open(account_id, "c1", "EUR", limit, balance)]
    )
    return account_id


def request_payment(store, account_id, amount) -> RecordedEvent:
    """What the API does: reserve the funds and record the request in one transaction."""
    payment_id = str(uuid.uuid4())
    account = fold_account(store, account_id)
    requested = Payment.request(
        payment_id, account_id, "c1", amount, "EUR", "test", f"k-{payment_id}"
    )
    recorded = append_unpublished(
        store,
        [
            StreamWrite(
                account_stream(account_id), account.version, account.reserve(payment_id, amount)
            ),
            StreamWrite(payment_stream(payment_id), 0, [requested]),
        ],
        {"client_id": "c1", "correlation_id": payment_id, "trace_id": TRACE.split(";")[0][5:]},
    )
    return next(e for e in recorded if e.type == "PaymentRequested")


def kafka_event(*events: RecordedEvent, first_offset=0) -> dict:
    records = [
        {
            "topic": "payment-events",
            "partition": 0,
            "offset": first_offset + n,
            "timestamp": 1764786000000,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(event.data.get("account_id", "k").encode()).decode(),
            "value": base64.b64encode(json.dumps(to_envelope(event)).encode()).decode(),
            "headers": [{"X-Amzn-Trace-Id": list(TRACE.encode())}],
        }
        for n, event in enumerate(events)
    ]
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": {"payment-events-0": records},
    }


def fold_account(store, account_id) -> Account:
    return Account.fold(
        account_id, (e.event for e in store.read_stream(account_stream(account_id)))
    )


def fold_payment(store, payment_id) -> Payment:
    return Payment.fold(
        payment_id, (e.event for e in store.read_stream(payment_stream(payment_id)))
    )


def run(processor, *events, context=None) -> dict:
    return processor.handler(kafka_event(*events), context or LambdaContext())


def charge_at(providers, name, payment_id):
    status, body = call(providers[name], "GET", f"/providers/{name}/payments/{payment_id}")
    return body if status == 200 else None


def test_authorized_captures_the_funds_and_keeps_the_trace(processor, store, providers):
    account_id = open_account(store)
    requested = request_payment(store, account_id, 10_000)
    payment_id = requested.data["payment_id"]

    assert run(processor, requested) == {"batchItemFailures": []}

    payment = fold_payment(store, payment_id)
    assert (payment.status, payment.provider, payment.fee) == ("authorized", DEFAULT, 150)
    assert payment.provider_ref == charge_at(providers, DEFAULT, payment_id)["provider_ref"]
    account = fold_account(store, account_id)
    assert (account.reserved, account.captured, account.balance) == (0, 10_000, -10_000)
    outcome = store.read_stream(payment_stream(payment_id))[-1]
    assert outcome.metadata["trace_id"] == "1-6750a1b2-0123456789abcdef01234567"
    assert "Root=1-6750a1b2-0123456789abcdef01234567" in outcome.metadata["trace_header"]
    assert outcome.metadata["causation_id"] == requested.event_id
    captured = store.read_stream(account_stream(account_id))[-1]
    assert (captured.type, captured.metadata["trace_id"]) == ("FundsCaptured", outcome.trace_id)


def test_declined_releases_the_funds(processor, store, providers):
    set_knobs(providers[DEFAULT], DEFAULT, decline_amount_suffix="13")
    account_id = open_account(store)
    requested = request_payment(store, account_id, 2013)

    assert run(processor, requested) == {"batchItemFailures": []}

    payment = fold_payment(store, requested.data["payment_id"])
    assert (payment.status, payment.provider, payment.reason) == (
        "declined",
        DEFAULT,
        "card_declined",
    )
    account = fold_account(store, account_id)
    assert (account.reserved, account.captured, account.available) == (0, 0, 100_000)
    assert charge_at(providers, FALLBACK, requested.data["payment_id"]) is None


def test_a_failing_default_sends_payments_to_the_fallback(processor, store, providers):
    set_knobs(providers[DEFAULT], DEFAULT, failure_rate=1.0)
    account_id = open_account(store)
    requested = request_payment(store, account_id, 10_000)
    payment_id = requested.data["payment_id"]

    assert run(processor, requested) == {"batchItemFailures": []}

    payment = fold_payment(store, payment_id)
    assert (payment.status, payment.provider, payment.fee) == ("authorized", FALLBACK, 300)
    assert charge_at(providers, DEFAULT, payment_id) is None
    assert fold_account(store, account_id).captured == 10_000


def test_both_failing_fails_the_payment_and_releases_the_funds(processor, store, providers):
    set_knobs(providers[DEFAULT], DEFAULT, failure_rate=1.0)
    set_knobs(providers[FALLBACK], FALLBACK, outage=True)
    account_id = open_account(store)
    requested = request_payment(store, account_id, 5000)
    payment_id = requested.data["payment_id"]

    assert run(processor, requested) == {"batchItemFailures": []}

    payment = fold_payment(store, payment_id)
    assert (payment.status, payment.reason) == ("failed", "provider_unavailable")
    account = fold_account(store, account_id)
    assert (account.reserved, account.captured, account.available) == (0, 0, 100_000)
    assert ledger(providers[DEFAULT], DEFAULT)["count"] == 0
    assert ledger(providers[FALLBACK], FALLBACK)["count"] == 0


def test_a_timeout_that_was_charged_is_recorded_authorized(processor, store, providers):
    # The default charges, then answers long after the client's timeout.
    set_knobs(providers[DEFAULT], DEFAULT, timeout_rate=1.0, timeout_ms=CLIENT_TIMEOUT_MS * 2)
    account_id = open_account(store)
    requested = request_payment(store, account_id, 7000)
    payment_id = requested.data["payment_id"]

    assert run(processor, requested) == {"batchItemFailures": []}

    payment = fold_payment(store, payment_id)
    assert (payment.status, payment.provider) == ("authorized", DEFAULT)
    assert payment.provider_ref == charge_at(providers, DEFAULT, payment_id)["provider_ref"]
    assert charge_at(providers, FALLBACK, payment_id) is None
    assert fold_account(store, account_id).captured == 7000


def test_redelivery_changes_nothing(processor, store, providers):
    account_id = open_account(store)
    requested = request_payment(store, account_id, 1234)
    run(processor, requested)
    events_before = store.read_stream(account_stream(account_id))
    ledger_before = ledger(providers[DEFAULT], DEFAULT)

    assert run(processor, requested, requested) == {"batchItemFailures": []}

    assert store.read_stream(account_stream(account_id)) == events_before
    assert len(store.read_stream(payment_stream(requested.data["payment_id"]))) == 2
    assert ledger(providers[DEFAULT], DEFAULT) == ledger_before


def test_other_event_types_are_ignored(processor, store):
    account_id = open_account(store)
    requested = request_payment(store, account_id, 100)
    reserved = store.read_stream(account_stream(account_id))[-1]
    assert reserved.type == "FundsReserved"

    assert run(processor, reserved) == {"batchItemFailures": []}
    assert fold_payment(store, requested.data["payment_id"]).status == "pending"


def test_a_failing_record_is_reported_by_partition_and_offset_and_others_proceed(processor, store):
    account_id = open_account(store)
    good = request_payment(store, account_id, 100)
    ghost = RecordedEvent(
        position=0,
        stream_id="payment-ghost",
        version=1,
        event_id=str(uuid.uuid4()),
        type="PaymentRequested",
        data={**good.data, "payment_id": f"ghost-{uuid.uuid4()}"},
        metadata={},
        recorded_at=good.recorded_at,
    )

    response = processor.handler(kafka_event(ghost, good, first_offset=40), LambdaContext())

    assert response == {
        "batchItemFailures": [{"itemIdentifier": {"partition": "payment-events-0", "offset": 40}}]
    }
    assert fold_payment(store, good.data["payment_id"]).status == "authorized"


def test_records_are_handed_back_when_the_invocation_is_almost_out_of_time(processor, store):
    class Expiring(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 500

    account_id = open_account(store)
    requested = request_payment(store, account_id, 100)

    response = run(processor, requested, context=Expiring())

    assert len(response["batchItemFailures"]) == 1
    assert fold_payment(store, requested.data["payment_id"]).status == "pending"


def test_the_ledgers_equal_what_was_recorded_authorized(processor, store, providers):
    """Concurrent processors on one hot account, a default that fails half the time and declines
    some amounts: afterwards each provider charged exactly what the store says it authorized."""
    # Below the failure rate at which health admits failing: the default stays first, so both
    # instances end up with charges (after a default's failures, and while its breaker is open).
    set_knobs(providers[DEFAULT], DEFAULT, failure_rate=0.4, decline_amount_suffix="7")
    set_knobs(providers[FALLBACK], FALLBACK, decline_amount_suffix="7")
    account_id = open_account(store)
    requests = [request_payment(store, account_id, 100 + n) for n in range(24)]
    settler = processor._wiring.settler

    def work(chunk):
        for requested in chunk:
            process_payment(store, settler, requested.data["payment_id"])

    threads = [threading.Thread(target=work, args=(requests[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    payments = [fold_payment(store, r.data["payment_id"]) for r in requests]
    assert all(p.is_final for p in payments)
    statuses = Counter(p.status for p in payments)
    assert (statuses["declined"], statuses["failed"]) == (2, 0)  # amounts 107 and 117
    for name in (DEFAULT, FALLBACK):
        recorded = {
            (p.id, p.provider_ref, p.fee)
            for p in payments
            if p.status == "authorized" and p.provider == name
        }
        _, body = call(
            providers[name],
            "GET",
            f"/providers/{name}/admin/charges",
            headers={"x-admin-token": _admin_token()},
        )
        charged = {
            (c["payment_id"], c["provider_ref"], c["fee"])
            for c in body["charges"]
            if c["status"] == "authorized"
        }
        assert charged == recorded, name
    account = fold_account(store, account_id)
    authorized = sum(p.amount for p in payments if p.status == "authorized")
    assert (account.reserved, account.captured) == (0, authorized)


def _admin_token() -> str:
    from consim.config import settings

    return settings().provider_admin_token
