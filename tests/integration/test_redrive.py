"""The pending-payment sweeper against the stack's Postgres and Kafka: a payment left pending is
published again after the threshold (not before), at most once per interval, never once final;
and the processor's outcomes queue on the account's lock beside the API's reservations."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from consim.adapters import postgres_event_store
from consim.adapters.event_store import ConcurrencyConflict, EventPublisher, StreamWrite
from consim.adapters.kafka_publisher import KafkaEventPublisher
from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.adapters.postgres_event_store import _insert as insert_events
from consim.config import REPO_ROOT, settings
from consim.domain.account import Account, account_stream
from consim.domain.payment import Payment, payment_stream
from consim.services.payments import LOCK, RequestPayment, request_payment
from consim.services.processing import Outcome, record_outcome
from consim.services.redrive import PendingSweeper, RedrivePolicy
from kafka import KafkaConsumer
from support.api import LambdaContext, api_module
from support.postgres import migrated_url

pytestmark = pytest.mark.integration

TRACE = "Root=1-6750a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
POLICY = RedrivePolicy(after=timedelta(seconds=30), interval=timedelta(seconds=60), batch=100)


@pytest.fixture(scope="module")
def pool():
    pool = open_pool(migrated_url(), max_size=24)
    yield pool
    pool.close()


class Recording(EventPublisher):
    """Acknowledges without sending (the stack's live processor must not see these payments),
    or refuses everything when `down`."""

    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.published = []

    def publish(self, events):
        if self.down:
            raise ConnectionError("Kafka is down")
        self.published.extend(events)
        return [event.position for event in events]


@pytest.fixture
def store(pool):
    yield PostgresEventStore(pool, Recording())
    # The sweeps here run on a test clock, ahead of the database's: their redrives rows would
    # hold the stack's own relay back from these payments until that time. Forget them.
    with pool.connection() as conn:
        conn.execute(
            "DELETE FROM redrives WHERE payment_id IN (SELECT data ->> 'payment_id' FROM events"
            " WHERE stream_id LIKE %s AND type = 'FundsReserved')",
            ["account-acc-redrive-%"],
        )


def open_account(store, limit=1_000_000, balance=0) -> str:
    account_id = f"acc-redrive-{uuid.uuid4()}"
    store.append(
        account_stream(account_id), 0, [Account.open(account_id, "c1", "EUR", limit, balance)]
    )
    return account_id


def fold_account(store, account_id) -> Account:
    return Account.fold(
        account_id, (e.event for e in store.read_stream(account_stream(account_id)))
    )


def left_pending(store, account_id, amount=500, in_outbox=False):
    """What the API appends, with its outbox rows gone as if published (or kept: `in_outbox`),
    and then nothing: the payment stays pending. Returns the PaymentRequested event."""
    payment_id = str(uuid.uuid4())
    account = fold_account(store, account_id)
    writes = [
        StreamWrite(
            payment_stream(payment_id),
            0,
            [Payment.request(payment_id, account_id, "c1", amount, "EUR", None, payment_id)],
        ),
        StreamWrite(
            account_stream(account_id), account.version, account.reserve(payment_id, amount)
        ),
    ]
    with store.pool.connection() as conn, conn.transaction():
        metadata = {"client_id": "c1", "correlation_id": payment_id, "trace_header": TRACE}
        recorded = insert_events(conn, writes, metadata)
        if not in_outbox:
            conn.execute(
                "DELETE FROM outbox WHERE position = ANY(%s)", [[e.position for e in recorded]]
            )
    return next(e for e in recorded if e.type == "PaymentRequested")


def redrive_row(pool, payment_id):
    with pool.connection() as conn:
        return conn.execute(
            "SELECT first_at, last_at, count FROM redrives WHERE payment_id = %s", [payment_id]
        ).fetchone()


def test_a_pending_payment_is_redriven_after_the_threshold_and_not_before(pool, store):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    publisher = Recording()
    sweeper = PendingSweeper(pool, publisher, POLICY)
    at = requested.recorded_at

    assert sweeper.sweep(now=at + timedelta(seconds=29), payment_ids=[pid]) == []
    assert publisher.published == []
    assert redrive_row(pool, pid) is None

    [redriven] = sweeper.sweep(now=at + timedelta(seconds=31), payment_ids=[pid])

    assert (redriven.payment_id, redriven.count) == (pid, 1)
    assert 30 < redriven.age_s < 32
    assert [e.event_id for e in publisher.published] == [requested.event_id]
    assert publisher.published[0].metadata["correlation_id"] == pid
    assert redrive_row(pool, pid)["count"] == 1


def test_the_redrive_interval_is_honoured(pool, store):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    publisher = Recording()
    sweeper = PendingSweeper(pool, publisher, POLICY)
    first = requested.recorded_at + timedelta(seconds=31)

    assert len(sweeper.sweep(now=first, payment_ids=[pid])) == 1
    assert sweeper.sweep(now=first + timedelta(seconds=1), payment_ids=[pid]) == []
    assert sweeper.sweep(now=first + timedelta(seconds=59), payment_ids=[pid]) == []
    [again] = sweeper.sweep(now=first + timedelta(seconds=61), payment_ids=[pid])

    assert again.count == 2
    assert len(publisher.published) == 2
    row = redrive_row(pool, pid)
    assert (row["count"], row["first_at"], row["last_at"]) == (
        2,
        first,
        first + timedelta(seconds=61),
    )


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("authorized", provider="default", provider_ref="ref-1", fee=7),
        Outcome("declined", provider="default", reason="card_declined"),
        Outcome("failed", reason="provider_unavailable"),
    ],
    ids=lambda o: o.status,
)
def test_a_final_payment_is_never_redriven(pool, store, outcome):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    record_outcome(store, pid, outcome, strategy=LOCK)
    publisher = Recording()

    swept = PendingSweeper(pool, publisher, POLICY).sweep(
        now=requested.recorded_at + timedelta(days=1), payment_ids=[pid]
    )

    assert (swept, publisher.published, redrive_row(pool, pid)) == ([], [], None)


def test_a_request_still_in_the_outbox_is_left_to_the_outbox_relay(pool, store):
    requested = left_pending(store, open_account(store), in_outbox=True)
    pid = requested.data["payment_id"]
    try:
        swept = PendingSweeper(pool, Recording(), POLICY).sweep(
            now=requested.recorded_at + timedelta(days=1), payment_ids=[pid]
        )
        assert swept == []
    finally:
        with pool.connection() as conn:
            conn.execute("DELETE FROM outbox WHERE position = %s", [requested.position])


def test_a_failed_publish_leaves_the_payment_due(pool, store):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    at = requested.recorded_at + timedelta(seconds=31)

    with pytest.raises(ConnectionError):
        PendingSweeper(pool, Recording(down=True), POLICY).sweep(now=at, payment_ids=[pid])
    assert redrive_row(pool, pid) is None

    publisher = Recording()
    [redriven] = PendingSweeper(pool, publisher, POLICY).sweep(now=at, payment_ids=[pid])
    assert redriven.count == 1
    assert [e.event_id for e in publisher.published] == [requested.event_id]


def test_a_redriven_payment_reaches_kafka_with_its_trace(pool, store):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    config = settings()
    kafka = KafkaEventPublisher(config.kafka_bootstrap, config.payment_events_topic)
    consumer = KafkaConsumer(
        config.payment_events_topic,
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"test-redrive-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        [redriven] = PendingSweeper(pool, kafka, POLICY).sweep(
            now=requested.recorded_at + timedelta(seconds=31), payment_ids=[pid]
        )
        assert redriven.payment_id == pid
        found = []
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                found += [
                    r for r in records if json.loads(r.value)["event_id"] == requested.event_id
                ]
    finally:
        consumer.close()
        kafka.close()
    assert len(found) == 1
    record = found[0]
    assert record.key.decode() == requested.data["account_id"]
    assert json.loads(record.value)["type"] == "PaymentRequested"
    # Published by the sweeper, the record keeps the payment's own trace.
    assert dict(record.headers)["X-Amzn-Trace-Id"].decode() == TRACE


def test_the_relay_handler_redrives_pending_payments(pool, store, monkeypatch):
    api_module()  # the test environment: credentials, tracing off
    monkeypatch.setenv("OUTBOX_GRACE_SECONDS", "5")
    monkeypatch.setenv("PENDING_REDRIVE_AFTER_S", "0")
    monkeypatch.setenv("PENDING_REDRIVE_BATCH", "100000")
    spec = importlib.util.spec_from_file_location(
        "consim_relay_handler_redrive", REPO_ROOT / "functions" / "relay" / "handler.py"
    )
    relay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relay)
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]

    result = relay.handler({"source": "aws.events"}, LambdaContext())

    assert result["redriven"] >= 1
    assert redrive_row(pool, pid)["count"] == 1


def test_outcomes_queue_on_the_account_lock_beside_reservations(pool, store, monkeypatch):
    """Postgres advisory lock: API reservations and processor outcomes on one account at once,
    RESERVATION_STRATEGY=lock on both sides: no append is refused, the balances add up."""
    monkeypatch.setenv("RESERVATION_STRATEGY", LOCK)
    account_id = open_account(store, limit=0, balance=1_000_000)
    settling = [
        request_payment(
            store, RequestPayment("c1", f"s-{uuid.uuid4()}", account_id, 100 + n, "EUR", None)
        ).payment.id
        for n in range(8)
    ]
    conflicts = []
    real_insert = postgres_event_store._insert

    def counting_insert(conn, writes, metadata):
        try:
            return real_insert(conn, writes, metadata)
        except ConcurrencyConflict as conflict:
            conflicts.append(conflict)
            raise

    monkeypatch.setattr(postgres_event_store, "_insert", counting_insert)
    outcomes = [
        Outcome("authorized", provider="default", provider_ref=f"r-{n}", fee=1)
        if n % 2
        else Outcome("declined", provider="default", reason="card_declined")
        for n in range(8)
    ]
    start = threading.Barrier(16)
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def reserve(n):
        start.wait()
        try:
            command = RequestPayment("c1", f"n-{uuid.uuid4()}", account_id, 1000 + n, "EUR", None)
            results[f"r{n}"] = request_payment(store, command)
        except BaseException as error:
            errors.append(error)

    def settle(n):
        start.wait()
        try:
            results[f"o{n}"] = record_outcome(store, settling[n], outcomes[n])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(8)]
    threads += [threading.Thread(target=settle, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert conflicts == []
    assert {results[f"r{n}"].attempts for n in range(8)} == {1}
    assert all(len(results[f"o{n}"]) == 2 for n in range(8))
    account = fold_account(store, account_id)
    captured = sum(100 + n for n in range(8) if n % 2)
    assert (account.reserved, account.captured) == (sum(1000 + n for n in range(8)), captured)
    assert account.balance == 1_000_000 - captured


def test_two_sweepers_at_once_publish_a_payment_once(pool, store):
    requested = left_pending(store, open_account(store))
    pid = requested.data["payment_id"]
    at = requested.recorded_at + timedelta(seconds=31)
    entered, release = threading.Event(), threading.Event()

    class Slow(Recording):
        def publish(self, events):
            entered.set()
            release.wait(30)
            return super().publish(events)

    first, second = Slow(), Recording()
    results: dict[str, list] = {}
    one = threading.Thread(
        target=lambda: results.update(one=PendingSweeper(pool, first, POLICY).sweep(at, [pid]))
    )
    two = threading.Thread(
        target=lambda: results.update(two=PendingSweeper(pool, second, POLICY).sweep(at, [pid]))
    )
    one.start()
    assert entered.wait(30)
    two.start()  # waits for the first sweeper's lock
    time.sleep(0.2)
    release.set()
    one.join()
    two.join()

    assert ([r.count for r in results["one"]], results["two"]) == ([1], [])
    assert ([e.event_id for e in first.published], second.published) == ([requested.event_id], [])
    assert redrive_row(pool, pid)["count"] == 1
