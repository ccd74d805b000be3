"""Publishes committed events to the `payment-events` topic (kafka-python producer)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consim.config import KAFKA_RECONNECT_BACKOFF_MAX_MS
from consim.observability import current_trace_id, kafka_subsegment, kafka_trace_header

from .envelope import TRACE_HEADER, partition_key, to_envelope, trace_header_of
from .event_store import EventPublisher, RecordedEvent

if TYPE_CHECKING:
    from kafka import KafkaProducer

logger = logging.getLogger(__name__)


class KafkaEventPublisher(EventPublisher):
    def __init__(self, bootstrap: str, topic: str, timeout: float = 5.0) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout = timeout
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _get_producer(self) -> KafkaProducer:
        # Made on first use, so a function starts (and serves reads) while Kafka is down.
        # kafka-python is imported here: it is slow to import, and a cold start that only
        # reads (GET routes) never needs it.
        from kafka import KafkaProducer

        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap.split(","),
                    acks="all",
                    linger_ms=0,
                    retries=3,
                    request_timeout_ms=int(self._timeout * 1000),
                    max_block_ms=int(self._timeout * 1000),
                    # The constructor finds the brokers' versions before it returns: with the
                    # broker down it would block 30 s, so a cold start during an outage would
                    # outlive the API's timeout (measured: 10 s Sandbox.Timedout, 502s).
                    bootstrap_timeout_ms=int(self._timeout * 1000),
                    reconnect_backoff_max_ms=KAFKA_RECONNECT_BACKOFF_MAX_MS,
                )
            return self._producer

    def publish(self, events: Sequence[RecordedEvent]) -> list[int]:
        producer = self._get_producer()
        futures = []
        with kafka_subsegment("produce", self._topic):
            # Published from the request that recorded the events, the header names this
            # produce call as the consumers' parent; published later (the relay), the header the
            # event was recorded under keeps the consumers in the payment's own trace.
            live_header = kafka_trace_header()
            live_trace = current_trace_id()
            for event in events:
                header = live_header if live_trace and live_trace == event.trace_id else None
                header = header or trace_header_of(event)
                futures.append(
                    producer.send(
                        self._topic,
                        key=partition_key(event).encode(),
                        value=json.dumps(to_envelope(event)).encode(),
                        headers=[(TRACE_HEADER, header.encode())] if header else [],
                    )
                )
            producer.flush(timeout=self._timeout)

        # Positions count as published only up to the first failure: the rest stay in the outbox.
        published = []
        for event, future in zip(events, futures, strict=True):
            try:
                future.get(timeout=self._timeout)
            except Exception:
                logger.exception("publishing event %s failed", event.event_id)
                break
            published.append(event.position)
        return published

    def ping(self) -> None:
        """Raise unless a broker answers (for /health)."""
        producer = self._get_producer()
        if not producer.bootstrap_connected():
            producer.partitions_for(self._topic)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self._timeout)
                self._producer = None
