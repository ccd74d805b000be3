"""NotifierFunction: payment status events (Kafka event source mapping) to Web Push and webhooks.

The handler wires the adapters once per execution environment and hands each batch to the
fan-out; the decisions live in `notifier.fanout` and `notifier.batch`.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from consim.adapters.postgres_event_store import PostgresEventStore
from consim.adapters.subscriptions import SubscriptionStore
from consim.adapters.webhooks import WebhookSender
from consim.adapters.webpush import WebPushSender, load_vapid
from consim.config import settings
from consim.observability import (
    NOTIFICATIONS_FAILED,
    NOTIFICATIONS_SENT,
    count,
    latency_ms,
    logger,
    observed,
)
from notifier.batch import PaymentFacts, notifications_of
from notifier.dead_letters import KafkaDeadLetters
from notifier.facts import PaymentFactsFromStore
from notifier.fanout import Fanout, FanoutPolicy
from notifier.records import kafka_records

# Kept free at the end of the invocation for the dead-letter writes and the answer itself.
_MARGIN_SECONDS = 2.0
_MIN_BUDGET_SECONDS = 0.5
# Milliseconds from an event's recording in the store to its acceptance by a subscriber.
NOTIFICATION_LAG = "NotificationLag"
_MAX_METRIC_VALUES = 100


@cache
def _wired() -> tuple[Fanout, PaymentFacts]:
    config = settings()
    store = SubscriptionStore(config)
    fanout = Fanout(
        directory=store,
        push=WebPushSender(load_vapid(config), config.vapid_subject),
        hooks=WebhookSender(),
        dead_letters=KafkaDeadLetters(config.kafka_bootstrap, config.dead_letter_topic),
        policy=FanoutPolicy(
            timeout_seconds=config.notify_timeout_seconds,
            max_attempts=config.notify_max_attempts,
            push_ttl_seconds=config.push_ttl_seconds,
            concurrency=config.notify_concurrency,
        ),
    )
    facts = PaymentFactsFromStore(PostgresEventStore.from_url(config.database_url, max_size=2))
    return fanout, facts


# Wired during the init phase, as Lambda advises: connections and imports are paid once, before
# the first batch (and by a prewarmed environment, before any). A dependency that is down now is
# not fatal here: the first invocation wires again and fails, or retries, like any other batch.
try:
    _wired()
except Exception:
    logger.exception("notifier not wired at init; the first batch will try again")


def _budget_seconds(context: Any) -> float:
    budget = settings().notify_batch_budget_seconds
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        budget = min(budget, remaining() / 1000 - _MARGIN_SECONDS)
    return max(budget, _MIN_BUDGET_SECONDS)


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    fanout, facts = _wired()
    started = time.monotonic()
    notifications = notifications_of(kafka_records(event), facts)
    report = fanout.deliver(notifications, deadline=started + _budget_seconds(context))

    count(NOTIFICATIONS_SENT, report.delivered)
    count(NOTIFICATIONS_FAILED, report.dead_lettered)
    # EMF takes at most 100 values per metric and flush: a big batch gives an even sample.
    step = max(1, -(-len(report.lags_ms) // _MAX_METRIC_VALUES))
    for lag in report.lags_ms[::step]:
        latency_ms(NOTIFICATION_LAG, lag)
    summary = {
        "notifications": len(notifications),
        "delivered": report.delivered,
        "duplicates": report.duplicates,
        "gone": report.gone,
        "dead_lettered": report.dead_lettered,
    }
    logger.info("batch notified", extra=summary)
    # Every record is handled (delivered, skipped or dead-lettered); a failure raises instead.
    return {"batchItemFailures": [], **summary}
