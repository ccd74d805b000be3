"""Fan a batch of notifications out to their subscribers, within a time budget.

Exactly one delivery per (subscription, event) in the normal case, at least one always. Copies
of one event in the batch are first reduced to the first one (the set below is read once per
batch, so it would answer "not delivered" for each), then:

    in the delivered set? ──yes──▶ skip (a re-delivered Kafka record)
         │no
         ▼
       send ──────────────▶ subscriber accepted (2xx)
         │                        │
         │                  X crash here: the next attempt sends again (a duplicate)
         ▼                        ▼
    mark_delivered (conditional put into the delivered set)

The mark is written *after* the send. Writing a claim before the send would turn that crash
window into a lost notification (claimed, never sent) unless claims expire, and an expiring claim
only moves the window. A payment status is better twice than never, so the window is left on the
duplicate side: it lasts from the subscriber's answer to the DynamoDB put (milliseconds), and a
duplicate carries the same `webhook-id` and Web Push `Topic`, and the same `event_id` in the body,
so receivers can recognise it. The put is conditional, so two notifiers racing on the same record
(a rebalance) log the duplicate instead of hiding it.

Order: what one subscription hears of one payment is sent one after the other, in record order,
so `pending` never overtakes `authorized`; everything else (other payments, other subscriptions)
is served concurrently, so a slow or dead subscriber delays only itself. Every attempt's timeout
is cut to what is left of the batch's budget, and no attempt starts after it: what is still
undelivered then (and what exhausted its attempts or was refused) goes to the dead-letter topic
with the reason, and the partition moves on. A subscriber that keeps failing is rested
(`breaker`): for a while its notifications are dead-lettered without a try.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from consim.domain.notifications import (
    DeliveryOutcome,
    DeliveryVerdict,
    Notification,
    PushKeys,
    Subscription,
    SubscriptionKind,
    Target,
)
from consim.observability import logger

from .breaker import SubscriberBreaker
from .dead_letters import DeadLetters


class SubscriptionDirectory(Protocol):
    def following(self, target: Target) -> list[Subscription]: ...
    def remove(self, subscription_id: str) -> None: ...
    def delivered_among(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def mark_delivered(self, subscription_id: str, event_id: str, status: int) -> bool: ...


class PushSender(Protocol):
    def send(
        self, push: PushKeys, payload: bytes, *, ttl: int, urgency: str, topic: str, timeout: float
    ) -> DeliveryOutcome: ...


class HookSender(Protocol):
    def send(
        self, url: str, secret: str, message_id: str, payload: str, *, timeout: float
    ) -> DeliveryOutcome: ...


@dataclass(frozen=True)
class FanoutPolicy:
    timeout_seconds: float = 2.0
    max_attempts: int = 3
    push_ttl_seconds: int = 3600
    concurrency: int = 16
    backoff_base_seconds: float = 0.2
    backoff_cap_seconds: float = 2.0
    # An attempt with less time than this left would only time out: it is not started.
    min_attempt_seconds: float = 0.05


@dataclass
class BatchReport:
    delivered: int = 0
    duplicates: int = 0
    gone: int = 0
    dead_lettered: int = 0
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    # From the event's recording to the subscriber's acceptance, per delivery (milliseconds).
    lags_ms: list[float] = field(default_factory=list)

    def add(self, subscription_id: str, event_id: str, result: str) -> None:
        self.outcomes.append((subscription_id, event_id, result))
        if result == "delivered":
            self.delivered += 1
        elif result == "duplicate":
            self.duplicates += 1
        elif result == "gone":
            self.gone += 1
        else:
            self.dead_lettered += 1


def message_id(subscription: Subscription, notification: Notification) -> str:
    """Stable across retries and re-deliveries: the receiver's key for dropping a duplicate."""
    return f"{notification.event_id}.{subscription.id}"


class Fanout:
    def __init__(
        self,
        directory: SubscriptionDirectory,
        push: PushSender,
        hooks: HookSender,
        dead_letters: DeadLetters,
        policy: FanoutPolicy,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        breaker: SubscriberBreaker | None = None,
    ) -> None:
        self._directory = directory
        self._push = push
        self._hooks = hooks
        self._dead_letters = dead_letters
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._breaker = breaker or SubscriberBreaker(clock=clock)

    def deliver(self, notifications: Sequence[Notification], deadline: float) -> BatchReport:
        """Send every notification to every subscriber of its payment or account, by `deadline`
        (a `clock()` value). Raises if DynamoDB or the dead-letter topic fail: the batch is then
        retried whole, and the delivered set skips what already went out."""
        report = BatchReport()
        # The delivered set is read once, before anything is sent, so it cannot tell two copies
        # of one event in this batch apart: the first copy (its place keeps the order) stands
        # for all of them.
        first: dict[str, Notification] = {}
        for notification in notifications:
            first.setdefault(notification.event_id, notification)
        notifications = list(first.values())
        if not notifications:
            return report
        with ThreadPoolExecutor(
            max_workers=self._policy.concurrency, thread_name_prefix="notify"
        ) as pool:
            targets = list(dict.fromkeys(t for n in notifications for t in n.targets))
            followers = dict(
                zip(targets, pool.map(self._directory.following, targets), strict=True)
            )

            # One lane per (subscription, payment): its notifications go out in record order.
            lanes: dict[tuple[str, str], tuple[Subscription, list[Notification]]] = {}
            for notification in notifications:
                for target in notification.targets:
                    for sub in followers[target]:
                        lane = lanes.setdefault((sub.id, notification.payment_id), (sub, []))
                        lane[1].append(notification)
            delivered = self._directory.delivered_among(
                (sub.id, n.event_id) for sub, queue in lanes.values() for n in queue
            )

            futures = [
                pool.submit(self._deliver_in_order, sub, queue, delivered, deadline)
                for sub, queue in lanes.values()
            ]
            for future in futures:
                for subscription_id, event_id, result, lag_ms in future.result():
                    report.add(subscription_id, event_id, result)
                    if lag_ms is not None:
                        report.lags_ms.append(lag_ms)
        return report

    def _deliver_in_order(
        self,
        sub: Subscription,
        queue: list[Notification],
        delivered: set[tuple[str, str]],
        deadline: float,
    ) -> list[tuple[str, str, str, float | None]]:
        results = []
        for notification in queue:
            if (sub.id, notification.event_id) in delivered:
                results.append((sub.id, notification.event_id, "duplicate", None))
                continue
            result = self._deliver_one(sub, notification, deadline)
            lag = _lag_ms(notification) if result == "delivered" else None
            results.append((sub.id, notification.event_id, result, lag))
            if result == "gone":
                break
        return results

    def _deliver_one(self, sub: Subscription, notification: Notification, deadline: float) -> str:
        if self._breaker.resting(sub.id):
            outcome, attempts = _RESTING, 0
        else:
            outcome, attempts = self._attempt(sub, notification, deadline)
            if outcome.verdict is DeliveryVerdict.RETRY:
                self._breaker.failed(sub.id)
            elif outcome.verdict is DeliveryVerdict.DELIVERED:
                self._breaker.succeeded(sub.id)
        log_keys = {
            "subscription_id": sub.id,
            "kind": str(sub.kind),
            "payment_id": notification.payment_id,
            "event_id": notification.event_id,
            "status": notification.status,
            "attempts": attempts,
            "http_status": outcome.status,
        }
        if outcome.verdict is DeliveryVerdict.DELIVERED:
            if not self._directory.mark_delivered(
                sub.id, notification.event_id, outcome.status or 0
            ):
                logger.warning("delivered twice: another notifier sent it too", extra=log_keys)
            return "delivered"
        if outcome.verdict is DeliveryVerdict.GONE:
            self._directory.remove(sub.id)
            logger.info("subscriber gone, subscription removed", extra=log_keys)
            return "gone"
        self._dead_letters.bury(sub, notification, outcome, attempts)
        logger.warning("notification dead-lettered: %s", outcome.reason, extra=log_keys)
        return "dead_lettered"

    def _attempt(
        self, sub: Subscription, notification: Notification, deadline: float
    ) -> tuple[DeliveryOutcome, int]:
        payload = json.dumps(notification.body(), separators=(",", ":"))
        policy = self._policy
        outcome: DeliveryOutcome | None = None
        attempts = 0
        while True:
            remaining = deadline - self._clock()
            if remaining < policy.min_attempt_seconds:
                return _out_of_time(outcome), attempts
            attempts += 1
            outcome = self._send(sub, notification, payload, min(policy.timeout_seconds, remaining))
            if outcome.verdict is not DeliveryVerdict.RETRY or attempts >= policy.max_attempts:
                return outcome, attempts
            pause = self._backoff(attempts, outcome.retry_after)
            if self._clock() + pause + policy.min_attempt_seconds > deadline:
                return _out_of_time(outcome), attempts
            self._sleep(pause)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(
            self._policy.backoff_cap_seconds,
            self._policy.backoff_base_seconds * 2 ** (attempts - 1),
        )
        # Half fixed, half random: retries of many subscribers do not fall in step.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _send(
        self, sub: Subscription, notification: Notification, payload: str, timeout: float
    ) -> DeliveryOutcome:
        if sub.kind is SubscriptionKind.WEBPUSH:
            assert sub.push is not None
            return self._push.send(
                sub.push,
                payload.encode(),
                ttl=self._policy.push_ttl_seconds,
                urgency=notification.urgency,
                topic=notification.topic,
                timeout=timeout,
            )
        assert sub.url is not None and sub.secret is not None
        return self._hooks.send(
            sub.url, sub.secret, message_id(sub, notification), payload, timeout=timeout
        )


_RESTING = DeliveryOutcome(
    DeliveryVerdict.RETRY, None, "subscriber resting after repeated failures (circuit open)"
)


def _lag_ms(notification: Notification) -> float | None:
    try:
        occurred = datetime.fromisoformat(notification.occurred_at)
    except ValueError:
        return None
    if occurred.tzinfo is None:
        return None
    return (datetime.now(UTC) - occurred).total_seconds() * 1000


def _out_of_time(last: DeliveryOutcome | None) -> DeliveryOutcome:
    reason = "the batch's time budget ran out"
    if last is not None:
        reason += f" (last attempt: {last.reason})"
    return DeliveryOutcome(DeliveryVerdict.RETRY, last.status if last else None, reason)
