"""The dead-letter topic: where a notification goes when its subscriber could not take it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from consim.config import KAFKA_RECONNECT_BACKOFF_MAX_MS
from consim.domain.notifications import DeliveryOutcome, Notification, Subscription


class DeadLetters(Protocol):
    def bury(
        self,
        subscription: Subscription,
        notification: Notification,
        outcome: DeliveryOutcome,
        attempts: int,
    ) -> None: ...


def dead_letter(
    subscription: Subscription, notification: Notification, outcome: DeliveryOutcome, attempts: int
) -> dict[str, Any]:
    """Enough to see why, and to send the same notification again by hand."""
    return {
        "source": "notifier",
        "reason": outcome.reason,
        "verdict": str(outcome.verdict),
        "http_status": outcome.status,
        "attempts": attempts,
        "subscription_id": subscription.id,
        "kind": str(subscription.kind),
        "target": subscription.target.key,
        "notification": notification.body(),
        "failed_at": datetime.now(UTC).isoformat(),
    }


class KafkaDeadLetters:
    """Produces to the dead-letter topic and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, producer: Any | None = None) -> None:
        self._topic = topic
        self._bootstrap = bootstrap
        self._producer = producer
        self._lock = threading.Lock()

    def _connected(self) -> Any:
        # Connected on first use: most batches never dead-letter anything.
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer

                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap.split(","),
                    acks="all",
                    linger_ms=0,
                    request_timeout_ms=5000,
                    bootstrap_timeout_ms=5000,  # not the 30 s default of the constructor
                    max_block_ms=5000,
                    reconnect_backoff_max_ms=KAFKA_RECONNECT_BACKOFF_MAX_MS,
                )
        return self._producer

    def bury(
        self,
        subscription: Subscription,
        notification: Notification,
        outcome: DeliveryOutcome,
        attempts: int,
    ) -> None:
        value = json.dumps(dead_letter(subscription, notification, outcome, attempts))
        future = self._connected().send(
            self._topic, key=subscription.id.encode(), value=value.encode()
        )
        future.get(timeout=10)
