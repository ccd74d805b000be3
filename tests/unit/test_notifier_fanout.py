"""The notifier's fan-out with in-memory fakes: order, the delivered set, retries, dead letters."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time

import pytest
from consim.config import REPO_ROOT
from consim.domain.notifications import (
    DeliveryOutcome,
    DeliveryVerdict,
    Notification,
    PushKeys,
    Subscription,
    SubscriptionKind,
    Target,
    judge_response,
    unreachable,
)

sys.path.insert(0, str(REPO_ROOT / "functions" / "notifier"))

from notifier.batch import notifications_of
from notifier.fanout import Fanout, FanoutPolicy, message_id
from notifier.records import kafka_records

pytestmark = pytest.mark.unit


class Directory:
    def __init__(self, *subs: Subscription) -> None:
        self.subs = {s.id: s for s in subs}
        self.delivered: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def following(self, target: Target) -> list[Subscription]:
        return [s for s in self.subs.values() if s.target == target]

    def remove(self, subscription_id: str) -> None:
        self.subs.pop(subscription_id, None)

    def delivered_among(self, pairs) -> set[tuple[str, str]]:
        return {pair for pair in pairs if pair in self.delivered}

    def mark_delivered(self, subscription_id: str, event_id: str, status: int) -> bool:
        with self.lock:
            if (subscription_id, event_id) in self.delivered:
                return False
            self.delivered[(subscription_id, event_id)] = status
            return True


class Recorder:
    """Both senders: records every attempt and answers from a per-destination script."""

    def __init__(
        self, scripts: dict[str, list[DeliveryOutcome]] | None = None, delay: dict | None = None
    ):
        self.scripts = scripts or {}
        self.delay = delay or {}
        self.sent: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()

    def _answer(self, destination: str, body: dict, extra: dict) -> DeliveryOutcome:
        time.sleep(self.delay.get(destination, 0))
        with self.lock:
            self.sent.append((destination, body, extra))
            script = self.scripts.get(destination)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        return judge_response(201)

    def send(self, *args, **kwargs) -> DeliveryOutcome:
        if isinstance(args[0], PushKeys):  # the Web Push sender's signature
            push, payload = args
            return self._answer(push.endpoint, json.loads(payload), kwargs)
        url, _secret, msg_id, payload = args
        return self._answer(url, json.loads(payload), {"message_id": msg_id, **kwargs})

    def to(self, destination: str) -> list[dict]:
        return [body for dest, body, _ in self.sent if dest == destination]


class DeadLetters:
    def __init__(self) -> None:
        self.buried: list[tuple[str, str, DeliveryOutcome, int]] = []

    def bury(self, subscription, notification, outcome, attempts) -> None:
        self.buried.append((subscription.id, notification.event_id, outcome, attempts))


def hook(sub_id: str, target: Target) -> Subscription:
    return Subscription(
        id=sub_id,
        client_id="c",
        kind=SubscriptionKind.WEBHOOK,
        target=target,
        created_at="t",
        url=f"https://hooks.example/{sub_id}",
        secret="whsec_AAAA",
    )


def push(sub_id: str, target: Target) -> Subscription:
    return Subscription(
        id=sub_id,
        client_id="c",
        kind=SubscriptionKind.WEBPUSH,
        target=target,
        created_at="t",
        push=PushKeys(f"https://push.example/{sub_id}", "p256dh", "auth"),
    )


def note(
    event_id: str, status: str, payment_id: str = "p-1", account_id: str = "a-1"
) -> Notification:
    return Notification(
        payment_id, account_id, 500, "EUR", status, event_id, "2026-12-03T18:00:00Z"
    )


ACCOUNT = Target("account", "a-1")
PAYMENT = Target("payment", "p-1")
FAST = FanoutPolicy(
    timeout_seconds=1.0, max_attempts=3, backoff_base_seconds=0.001, backoff_cap_seconds=0.002
)


def fanout(directory, sender, dead, policy=FAST) -> Fanout:
    return Fanout(directory, sender, sender, dead, policy)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_every_follower_gets_each_status_once_and_in_order():
    directory = Directory(
        hook("h", ACCOUNT), push("w", PAYMENT), hook("other", Target("account", "a-2"))
    )
    sender = Recorder()
    batch = [note("e1", "pending"), note("e2", "authorized")]

    report = fanout(directory, sender, DeadLetters()).deliver(batch, soon())

    assert [b["status"] for b in sender.to("https://hooks.example/h")] == ["pending", "authorized"]
    assert [b["status"] for b in sender.to("https://push.example/w")] == ["pending", "authorized"]
    assert sender.to("https://hooks.example/other") == []
    assert report.delivered == 4
    assert set(directory.delivered) == {("h", "e1"), ("h", "e2"), ("w", "e1"), ("w", "e2")}
    assert len(report.lags_ms) == 4  # one lag per delivery, for the NotificationLag metric


def test_a_redelivered_batch_sends_nothing_again():
    directory = Directory(hook("h", ACCOUNT))
    sender = Recorder()
    batch = [note("e1", "pending"), note("e2", "declined")]
    fanout(directory, sender, DeadLetters()).deliver(batch, soon())

    report = fanout(directory, sender, DeadLetters()).deliver(batch, soon())

    assert len(sender.sent) == 2
    assert (report.delivered, report.duplicates) == (0, 2)


def test_push_carries_ttl_urgency_and_topic_and_webhooks_a_stable_id():
    sub_push, sub_hook = push("w", PAYMENT), hook("h", PAYMENT)
    sender = Recorder()
    fanout(Directory(sub_push, sub_hook), sender, DeadLetters()).deliver(
        [note("e9", "failed")], soon()
    )

    ((_, _, push_extra),) = [s for s in sender.sent if s[0].startswith("https://push")]
    ((_, _, hook_extra),) = [s for s in sender.sent if s[0].startswith("https://hooks")]
    assert push_extra["urgency"] == "high" and push_extra["ttl"] == FAST.push_ttl_seconds
    assert push_extra["topic"] == note("e9", "failed").topic
    assert hook_extra["message_id"] == message_id(sub_hook, note("e9", "failed"))


def test_a_gone_push_subscription_is_removed_and_skipped_for_the_rest():
    directory = Directory(push("w", ACCOUNT), hook("h", ACCOUNT))
    sender = Recorder({"https://push.example/w": [judge_response(410)]})

    report = fanout(directory, sender, DeadLetters()).deliver(
        [note("e1", "pending"), note("e2", "authorized")], soon()
    )

    assert "w" not in directory.subs
    assert len(sender.to("https://push.example/w")) == 1
    assert len(sender.to("https://hooks.example/h")) == 2
    assert report.gone == 1


def test_transient_failures_are_retried_until_accepted():
    sender = Recorder(
        {
            "https://hooks.example/h": [
                judge_response(503),
                unreachable("reset"),
                judge_response(204),
            ]
        }
    )
    dead = DeadLetters()
    directory = Directory(hook("h", ACCOUNT))

    fanout(directory, sender, dead).deliver([note("e1", "pending")], soon())

    assert len(sender.to("https://hooks.example/h")) == 3
    assert directory.delivered == {("h", "e1"): 204}
    assert dead.buried == []


def test_what_keeps_failing_goes_to_the_dead_letters_with_the_reason():
    sender = Recorder({"https://hooks.example/h": [judge_response(500, "receiver answered 500")]})
    dead = DeadLetters()
    directory = Directory(hook("h", ACCOUNT))

    report = fanout(directory, sender, dead).deliver([note("e1", "pending")], soon())

    assert len(sender.to("https://hooks.example/h")) == FAST.max_attempts
    assert [(s, e, o.reason, n) for s, e, o, n in dead.buried] == [
        ("h", "e1", "receiver answered 500", 3)
    ]
    assert directory.delivered == {}
    assert report.dead_lettered == 1


def test_a_refusal_is_not_retried():
    sender = Recorder({"https://hooks.example/h": [judge_response(400)]})
    dead = DeadLetters()

    fanout(Directory(hook("h", ACCOUNT)), sender, dead).deliver([note("e1", "pending")], soon())

    assert len(sender.sent) == 1
    assert dead.buried[0][2].verdict is DeliveryVerdict.REJECTED


def test_a_slow_subscriber_is_cut_off_at_the_deadline_and_does_not_delay_the_others():
    slow, quick = hook("slow", ACCOUNT), hook("quick", ACCOUNT)
    sender = Recorder(
        {"https://hooks.example/slow": [unreachable("read timed out")]},
        delay={"https://hooks.example/slow": 0.2},
    )
    dead = DeadLetters()
    directory = Directory(slow, quick)
    policy = FanoutPolicy(
        timeout_seconds=1.0, max_attempts=100, backoff_base_seconds=0.01, backoff_cap_seconds=0.01
    )

    fanout(directory, sender, dead, policy).deliver(
        [note("e1", "pending"), note("e2", "authorized")], soon(0.5)
    )

    assert set(directory.delivered) == {("quick", "e1"), ("quick", "e2")}
    assert {(s, e) for s, e, _, _ in dead.buried} == {("slow", "e1"), ("slow", "e2")}
    assert all("time budget" in o.reason for _, _, o, _ in dead.buried)
    # No attempt was allowed to outlast the batch: each timeout was cut to what was left.
    assert all(extra["timeout"] <= 0.5 for dest, _, extra in sender.sent if dest.endswith("/slow"))
    assert len(sender.to("https://hooks.example/slow")) < policy.max_attempts


def kafka_event(*envelopes: dict) -> dict:
    records = [
        {
            "topic": "payment-events",
            "partition": 0,
            "offset": offset,
            "timestamp": 0,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(b"a-1").decode(),
            "value": base64.b64encode(json.dumps(env).encode()).decode(),
            "headers": [{"X-Amzn-Trace-Id": list(b"Root=1-5759e988-bd862e3fe1be46a994272793")}],
        }
        for offset, env in enumerate(envelopes)
    ]
    return {
        "eventSource": "SelfManagedKafka",
        "records": {"payment-events-0": list(reversed(records))},
    }


def envelope(event_id: str, event_type: str, payment_id: str = "p-1", **data) -> dict:
    return {
        "event_id": event_id,
        "type": event_type,
        "stream_id": f"payment-{payment_id}",
        "version": 1,
        "position": 1,
        "occurred_at": "2026-12-03T18:00:00+00:00",
        "data": {"payment_id": payment_id, "account_id": "a-1", **data},
        "metadata": {},
    }


def test_a_batch_becomes_notifications_in_offset_order_with_amounts_from_the_payment():
    looked_up: list[str] = []

    def facts(payment_id: str) -> tuple[int, str]:
        looked_up.append(payment_id)
        return 999, "USD"

    event = kafka_event(
        envelope("e0", "AccountOpened"),
        envelope("e1", "PaymentRequested", amount=500, currency="EUR"),
        envelope("e2", "FundsReserved", amount=500),
        envelope("e3", "PaymentAuthorized", provider="default"),
        envelope("e4", "PaymentDeclined", payment_id="p-old", provider="default", reason="no"),
    )

    notes = notifications_of(kafka_records(event), facts)

    assert [(n.event_id, n.status, n.amount, n.currency) for n in notes] == [
        ("e1", "pending", 500, "EUR"),
        ("e3", "authorized", 500, "EUR"),
        ("e4", "declined", 999, "USD"),
    ]
    assert looked_up == ["p-old"]


def test_an_outcome_of_a_payment_the_store_does_not_know_is_skipped_not_retried_forever():
    from consim.domain.errors import PaymentNotFound

    def facts(payment_id: str) -> tuple[int, str]:
        raise PaymentNotFound(payment_id)

    event = kafka_event(
        envelope("e1", "PaymentFailed", payment_id="p-ghost", reason="x"),
        envelope("e2", "PaymentRequested", payment_id="p-2", amount=1, currency="EUR"),
    )

    notes = notifications_of(kafka_records(event), facts)

    assert [n.event_id for n in notes] == ["e2"]


def test_amounts_come_from_the_payments_stream_and_are_remembered():
    from consim.adapters.memory_event_store import InMemoryEventStore
    from consim.domain.errors import PaymentNotFound
    from consim.domain.events import PaymentRequested
    from notifier.facts import PaymentFactsFromStore

    store = InMemoryEventStore()
    store.append("payment-p-7", 0, [PaymentRequested("p-7", "a-1", "c", 321, "SEK", None, "k")])
    reads: list[str] = []
    original = store.read_stream
    store.read_stream = lambda stream_id, after=0: (
        reads.append(stream_id) or original(stream_id, after)
    )
    facts = PaymentFactsFromStore(store)

    assert facts("p-7") == (321, "SEK")
    assert facts("p-7") == (321, "SEK")
    assert reads == ["payment-p-7"]
    with pytest.raises(PaymentNotFound):
        facts("p-unknown")


def test_different_payments_reach_one_subscriber_concurrently():
    """Only one payment's statuses need to keep their order: two payments may overlap. The
    receiver below answers only when both requests are in flight at once."""
    both_in_flight = threading.Barrier(2)

    class Overlapping(Recorder):
        def _answer(self, destination, body, extra):
            try:
                both_in_flight.wait(timeout=5)
            except threading.BrokenBarrierError:
                return unreachable("the two payments were sent one after the other")
            return super()._answer(destination, body, extra)

    sender = Overlapping()
    directory = Directory(hook("h", ACCOUNT))
    notes = [note("e1", "pending", payment_id="p-1"), note("e2", "pending", payment_id="p-2")]
    policy = FanoutPolicy(max_attempts=1)

    report = fanout(directory, sender, DeadLetters(), policy).deliver(notes, soon())

    assert report.delivered == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_subscriber_that_keeps_failing_rests_then_gets_one_trial():
    from notifier.breaker import SubscriberBreaker

    clock = FakeClock()
    down = {"https://hooks.example/h": [unreachable("connection refused")]}
    sender = Recorder(down)
    dead = DeadLetters()
    directory = Directory(hook("h", ACCOUNT))
    policy = FanoutPolicy(max_attempts=1)
    breaker = SubscriberBreaker(threshold=2, cooldown_seconds=30, clock=clock)
    notifier = Fanout(directory, sender, sender, dead, policy, breaker=breaker)

    for i in range(4):  # four payments, four batches
        notifier.deliver([note(f"e{i}", "pending", payment_id=f"p-{i}")], soon())

    assert len(sender.sent) == 2  # two real failures, then the circuit opened
    assert [o.reason for _, _, o, _ in dead.buried][2:] == [
        "subscriber resting after repeated failures (circuit open)"
    ] * 2

    clock.now += 31
    sender.scripts.clear()  # the subscriber is back
    notifier.deliver([note("e5", "pending", payment_id="p-5")], soon())
    notifier.deliver([note("e6", "pending", payment_id="p-6")], soon())

    assert len(sender.sent) == 4
    assert {("h", "e5"), ("h", "e6")} <= set(directory.delivered)


def test_refusals_do_not_open_the_circuit():
    from notifier.breaker import SubscriberBreaker

    sender = Recorder({"https://hooks.example/h": [judge_response(400)]})
    breaker = SubscriberBreaker(threshold=1, cooldown_seconds=30, clock=FakeClock())
    notifier = Fanout(
        Directory(hook("h", ACCOUNT)), sender, sender, DeadLetters(), FAST, breaker=breaker
    )

    for i in range(3):
        notifier.deliver([note(f"e{i}", "pending", payment_id=f"p-{i}")], soon())

    assert len(sender.sent) == 3


# -- the same event several times in one batch -------------------------------------------------
# After a Kafka outage one event can sit on the topic several times (the outbox's fast path and
# the relay both published it, or the relay's sweeper re-drove a pending PaymentRequested). The
# delivered set is read once per batch, so it cannot tell the copies of one batch apart.


def test_an_event_repeated_within_a_batch_is_delivered_once_per_subscription():
    directory = Directory(hook("h", ACCOUNT), push("w", PAYMENT))
    sender = Recorder()
    event = kafka_event(
        envelope("e1", "PaymentRequested", amount=500, currency="EUR"),
        envelope("e1", "PaymentRequested", amount=500, currency="EUR"),
        envelope("e2", "PaymentAuthorized", provider="default"),
        envelope("e1", "PaymentRequested", amount=500, currency="EUR"),
    )

    notes = notifications_of(kafka_records(event), lambda payment_id: (999, "USD"))
    report = fanout(directory, sender, DeadLetters()).deliver(notes, soon())

    # One of each, and the first copy's place decides the order: pending before the outcome.
    assert [b["event_id"] for b in sender.to("https://hooks.example/h")] == ["e1", "e2"]
    assert [b["event_id"] for b in sender.to("https://push.example/w")] == ["e1", "e2"]
    assert len(sender.sent) == 4
    assert report.delivered == 4
    assert set(directory.delivered) == {("h", "e1"), ("h", "e2"), ("w", "e1"), ("w", "e2")}


def test_repeated_notifications_handed_to_the_fanout_go_out_once():
    directory = Directory(hook("h", ACCOUNT))
    sender = Recorder()
    batch = [note("e1", "pending"), note("e1", "pending"), note("e2", "declined")]
    batch.append(note("e1", "pending"))

    report = fanout(directory, sender, DeadLetters()).deliver(batch, soon())

    assert [b["event_id"] for b in sender.to("https://hooks.example/h")] == ["e1", "e2"]
    assert (report.delivered, report.duplicates) == (2, 0)


def test_a_copy_in_a_later_batch_finds_the_mark_of_the_first_and_is_skipped():
    directory = Directory(hook("h", ACCOUNT))
    sender = Recorder()
    notifier = fanout(directory, sender, DeadLetters())
    notifier.deliver([note("e1", "pending"), note("e1", "pending")], soon())

    report = notifier.deliver([note("e1", "pending"), note("e2", "authorized")], soon())

    assert [b["event_id"] for b in sender.to("https://hooks.example/h")] == ["e1", "e2"]
    assert (report.delivered, report.duplicates) == (1, 1)


def test_the_delivered_set_in_dynamodb_answers_a_mark_in_the_next_read(monkeypatch):
    """The adapter's side of the later-batch case: `mark_delivered` (a put, synchronous within
    the batch) is seen by the next batch's `delivered_among` (a consistent BatchGetItem)."""
    import boto3
    from consim.adapters.subscriptions import SubscriptionStore
    from consim.config import Settings
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName=settings.table("deliveries"),
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "subscription_id", "AttributeType": "S"},
                {"AttributeName": "event_id", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "subscription_id", "KeyType": "HASH"},
                {"AttributeName": "event_id", "KeyType": "RANGE"},
            ],
        )
        store = SubscriptionStore(settings, client=client)
        asked = [("h", "e1"), ("h", "e2"), ("w", "e1")]
        assert store.delivered_among(asked) == set()

        assert store.mark_delivered("h", "e1", 204) is True
        assert store.mark_delivered("h", "e1", 204) is False  # a second mark is refused

        assert store.delivered_among(asked) == {("h", "e1")}
