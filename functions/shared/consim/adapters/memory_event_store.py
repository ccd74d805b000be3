"""An in-memory event store for unit tests and the contract suite; thread-safe, not durable."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .event_store import (
    ConcurrencyConflict,
    EventPublisher,
    EventStore,
    RecordedEvent,
    StreamWrite,
)

logger = logging.getLogger(__name__)


class InMemoryEventStore(EventStore):
    def __init__(self, publisher: EventPublisher | None = None) -> None:
        self._events: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = defaultdict(list)
        self._mutex = threading.RLock()
        self._stream_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._publisher = publisher

    def append_streams(
        self, writes: Sequence[StreamWrite], metadata: dict[str, Any] | None = None
    ) -> list[RecordedEvent]:
        metadata = self._with_trace(metadata)
        writes = [w for w in writes if w.events]
        with self._mutex:
            for write in writes:
                actual = len(self._streams.get(write.stream_id, ()))
                if actual != write.expected_version:
                    raise ConcurrencyConflict(write.stream_id, write.expected_version, actual)

            recorded = []
            now = datetime.now(UTC)
            for write in writes:
                for offset, event in enumerate(write.events, start=1):
                    record = RecordedEvent(
                        position=len(self._events) + 1,
                        stream_id=write.stream_id,
                        version=write.expected_version + offset,
                        event_id=str(uuid.uuid4()),
                        type=event.type,
                        data=event.to_data(),
                        metadata=dict(metadata),
                        recorded_at=now,
                    )
                    self._events.append(record)
                    self._streams[write.stream_id].append(record)
                    recorded.append(record)

        if self._publisher and recorded:
            try:
                self._publisher.publish(recorded)
            except Exception:
                logger.exception("publishing %d events failed", len(recorded))
        return recorded

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        with self._mutex:
            return list(self._streams.get(stream_id, ())[after_version:])

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        with self._mutex:
            return list(self._events[after_position : after_position + limit])

    @contextmanager
    def locked(self, stream_id: str) -> Iterator[EventStore]:
        # Appends inside take effect at once (no rollback): enough for the fake's callers, which
        # append once at the end of the block.
        with self._mutex:
            lock = self._stream_locks[stream_id]
        with lock:
            yield self
