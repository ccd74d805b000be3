"""The notifier on the real stack: DynamoDB (dynalite), Postgres, Kafka, and local receivers.

Each test follows its own fresh payment, so the tests share the stack without seeing each other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from consim.adapters.envelope import to_envelope
from consim.adapters.memory_event_store import InMemoryEventStore
from consim.adapters.subscriptions import SubscriptionStore
from consim.adapters.webhooks import new_secret
from consim.adapters.webpush import application_server_key, load_vapid
from consim.config import REPO_ROOT, settings
from consim.domain.events import PaymentAuthorized, PaymentFailed, PaymentRequested
from consim.domain.notifications import (
    PushKeys,
    Subscription,
    SubscriptionKind,
    SubscriptionNotFound,
    Target,
)
from kafka import KafkaConsumer, TopicPartition
from support.notifications import kafka_event, push_service, webhook_receiver
from support.run_notifier import LambdaContext, load_handler

from simulator.receivers import Behaviour

pytestmark = pytest.mark.integration

RUNNER = REPO_ROOT / "tests" / "support" / "run_notifier.py"


@pytest.fixture(scope="module")
def notifier():
    return load_handler()


@pytest.fixture(scope="module")
def store():
    return SubscriptionStore(settings())


@pytest.fixture(scope="module")
def events():
    return InMemoryEventStore()


@pytest.fixture(autouse=True)
def amounts_from(notifier, events, monkeypatch):
    from notifier.facts import PaymentFactsFromStore  # on the path once the handler is loaded

    fanout, _ = notifier._wired()
    monkeypatch.setattr(notifier, "_wired", lambda: (fanout, PaymentFactsFromStore(events)))


@pytest.fixture
def vapid_key():
    return application_server_key(load_vapid(settings()))


class Payment:
    """A payment's events, as the Kafka envelopes carry them.

    Its stream is kept in an in-memory event store that the notifier reads amounts from: made-up
    payments written to the stack's shared Postgres would reach the processor (through the
    outbox relay) and the whole-store checks of other tests.
    """

    def __init__(self, events: InMemoryEventStore, amount: int = 4200) -> None:
        self.events = events
        self.id = str(uuid.uuid4())
        self.account_id = f"acc-{uuid.uuid4().hex[:10]}"
        self.amount = amount

    def requested(self) -> dict:
        event = PaymentRequested(
            self.id, self.account_id, "notifier-tests", self.amount, "EUR", None, uuid.uuid4().hex
        )
        (recorded,) = self.events.append(f"payment-{self.id}", 0, [event])
        return to_envelope(recorded)

    def finished(self, event) -> dict:
        (recorded,) = self.events.append(f"payment-{self.id}", 1, [event])
        return to_envelope(recorded)

    def authorized(self) -> dict:
        return self.finished(PaymentAuthorized(self.id, self.account_id, "default", "ref-1", 10))

    def failed(self) -> dict:
        return self.finished(PaymentFailed(self.id, self.account_id, "provider down"))


def subscribe_push(store, service, target: Target, **behaviour) -> tuple[str, str]:
    keys = service.new_subscription(Behaviour(**behaviour) if behaviour else None)
    info = keys.subscription()
    sub_id = str(uuid.uuid4())
    store.add(
        Subscription(
            id=sub_id,
            client_id="notifier-tests",
            kind=SubscriptionKind.WEBPUSH,
            target=target,
            created_at=datetime.now(UTC).isoformat(),
            push=PushKeys(info["endpoint"], info["keys"]["p256dh"], info["keys"]["auth"]),
        )
    )
    return sub_id, keys.id


def subscribe_hook(store, receiver, target: Target, **behaviour) -> tuple[str, str]:
    channel = receiver.new_channel(Behaviour(**behaviour) if behaviour else None)
    secret = new_secret()
    receiver.trust(channel, secret)
    sub_id = str(uuid.uuid4())
    store.add(
        Subscription(
            id=sub_id,
            client_id="notifier-tests",
            kind=SubscriptionKind.WEBHOOK,
            target=target,
            created_at=datetime.now(UTC).isoformat(),
            url=receiver.url(channel),
            secret=secret,
        )
    )
    return sub_id, channel


def statuses(inbox, channel: str) -> list[str]:
    return [m.body["status"] for m in inbox.of(channel)]


def test_pending_then_the_outcome_reach_push_and_webhook_once_each(
    notifier, store, events, vapid_key
):
    payment = Payment(events)
    with push_service(vapid_key) as push, webhook_receiver() as hooks:
        _, browser = subscribe_push(store, push, Target("account", payment.account_id))
        _, channel = subscribe_hook(store, hooks, Target("payment", payment.id))

        first = notifier.handler(kafka_event([payment.requested()]), LambdaContext())
        # The outcome alone in its batch: its amount must come from the payment's stream.
        authorized = payment.authorized()
        second = notifier.handler(kafka_event([authorized]), LambdaContext())
        again = notifier.handler(kafka_event([authorized]), LambdaContext())

        assert statuses(push.inbox, browser) == ["pending", "authorized"]
        assert statuses(hooks.inbox, channel) == ["pending", "authorized"]
        (_, pushed), (_, hooked) = push.inbox.of(browser), hooks.inbox.of(channel)
        expected = {
            "payment_id": payment.id,
            "account_id": payment.account_id,
            "amount": 4200,
            "currency": "EUR",
            "status": "authorized",
            "event_id": authorized["event_id"],
            "occurred_at": authorized["occurred_at"],
        }
        assert pushed.body == expected and hooked.body == expected
        assert push.inbox.refused == [] and hooks.inbox.refused == []
    assert (first["delivered"], second["delivered"]) == (2, 2)
    assert (again["delivered"], again["duplicates"]) == (0, 2)


def dead_letters_after(offset_marker: dict, subscription_id: str) -> list[dict]:
    config = settings()
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, consumer_timeout_ms=3000)
    try:
        partitions = [TopicPartition(config.dead_letter_topic, p) for p in offset_marker]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, offset_marker[tp.partition])
        found = []
        for record in consumer:
            letter = json.loads(record.value)
            if letter.get("subscription_id") == subscription_id:
                found.append(letter)
        return found
    finally:
        consumer.close()


def dead_letter_offsets() -> dict[int, int]:
    config = settings()
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap)
    try:
        partitions = [
            TopicPartition(config.dead_letter_topic, p)
            for p in consumer.partitions_for_topic(config.dead_letter_topic)
        ]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def test_a_failing_webhook_is_retried_then_dead_lettered_without_holding_the_others(
    notifier, store, events
):
    payment = Payment(events)
    marker = dead_letter_offsets()
    with webhook_receiver() as hooks:
        broken_id, broken = subscribe_hook(store, hooks, Target("payment", payment.id), status=503)
        _, healthy = subscribe_hook(store, hooks, Target("payment", payment.id))

        report = notifier.handler(
            kafka_event([payment.requested(), payment.failed()]), LambdaContext()
        )

        assert statuses(hooks.inbox, healthy) == ["pending", "failed"]
        assert hooks.inbox.arrivals[broken] == 2 * settings().notify_max_attempts
    letters = dead_letters_after(marker, broken_id)
    assert report["dead_lettered"] == 2
    assert [
        (letter["notification"]["status"], letter["reason"], letter["attempts"])
        for letter in letters
    ] == [
        ("pending", "receiver answered 503", settings().notify_max_attempts),
        ("failed", "receiver answered 503", settings().notify_max_attempts),
    ]


def test_a_push_subscription_the_service_calls_gone_is_deleted(notifier, store, events, vapid_key):
    payment = Payment(events)
    with push_service(vapid_key) as push:
        sub_id, _ = subscribe_push(store, push, Target("payment", payment.id), status=410)

        report = notifier.handler(kafka_event([payment.requested()]), LambdaContext())

    assert report["gone"] == 1
    with pytest.raises(SubscriptionNotFound):
        store.get(sub_id)


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def run_notifier(event_file) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(event_file)],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_worker_killed_mid_batch_then_redelivered_notifies_each_status_once(
    store, events, vapid_key, tmp_path
):
    payment = Payment(events)
    with push_service(vapid_key) as push, webhook_receiver() as hooks:
        # The browser's push service holds the first message long enough to kill the worker
        # while it waits; the webhook answers at once, so its deliveries are recorded by then.
        _, browser = subscribe_push(
            store, push, Target("account", payment.account_id), hold_seconds=3.0, holds_left=1
        )
        hook_id, channel = subscribe_hook(store, hooks, Target("account", payment.account_id))
        envelopes = [payment.requested(), payment.authorized()]
        batch = tmp_path / "batch.json"
        batch.write_text(json.dumps(kafka_event(envelopes)))

        worker = run_notifier(batch)
        push.inbox.wait_for_arrivals(browser, 1, timeout=30)
        # Killed once the webhook's two deliveries are recorded and the push is still held (a
        # kill between a receiver's answer and the record is the duplicate window, see fanout).
        wait_until(lambda: all(store.was_delivered(hook_id, e["event_id"]) for e in envelopes))
        assert worker.poll() is None
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

        redelivery = run_notifier(batch)
        out, err = redelivery.communicate(timeout=60)
        assert redelivery.returncode == 0, err.decode()[-2000:]
        report = json.loads(out.decode().strip().splitlines()[-1])

        assert statuses(push.inbox, browser) == ["pending", "authorized"]
        assert statuses(hooks.inbox, channel) == ["pending", "authorized"]
        assert push.inbox.arrivals[browser] == 3  # the held one, never accepted, then two
    assert (report["delivered"], report["duplicates"]) == (2, 2)


def test_the_delivered_set_is_read_in_batches_of_a_hundred(store):
    subscription_id = str(uuid.uuid4())
    events = [str(uuid.uuid4()) for _ in range(130)]
    marked = {events[0], events[99], events[100], events[129]}
    for event_id in marked:
        assert store.mark_delivered(subscription_id, event_id, 201)

    found = store.delivered_among((subscription_id, e) for e in events)

    assert found == {(subscription_id, e) for e in marked}
    assert not store.mark_delivered(subscription_id, events[0], 201)  # already in the set


def test_a_subscriber_that_never_answers_is_cut_off_by_the_batch_budget(
    notifier, store, events, monkeypatch
):
    monkeypatch.setenv("NOTIFY_BATCH_BUDGET_SECONDS", "1.5")
    payment = Payment(events)
    marker = dead_letter_offsets()
    with webhook_receiver() as hooks:
        stuck_id, stuck = subscribe_hook(
            store, hooks, Target("payment", payment.id), hold_seconds=6.0
        )
        _, healthy = subscribe_hook(store, hooks, Target("payment", payment.id))

        report = notifier.handler(kafka_event([payment.requested()]), LambdaContext())

        assert statuses(hooks.inbox, healthy) == ["pending"]
        assert hooks.inbox.of(stuck) == []
    (letter,) = dead_letters_after(marker, stuck_id)
    assert "time budget" in letter["reason"] or "timed out" in letter["reason"].lower()
    assert (report["delivered"], report["dead_lettered"]) == (1, 1)
