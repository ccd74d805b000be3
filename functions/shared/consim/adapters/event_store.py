"""The event store port: append to streams with an expected version, read them back.

Streams are named `account-<id>` and `payment-<id>`; versions count from 1 within a stream and
positions order every event of the store. `expected_version` is the version of the last event the
caller folded (0 for a stream it believes new): an append whose expectation is stale raises
`ConcurrencyConflict` and writes nothing, so two writers can never both extend the same version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consim.domain.events import Event, event_from_data

from .trace_context import trace_metadata


class ConcurrencyConflict(Exception):
    """Another writer extended the stream since the caller read it (or it does not exist yet)."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None) -> None:
        super().__init__(
            f"stream {stream_id}: expected version {expected_version}, found {actual_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


@dataclass(frozen=True)
class StreamWrite:
    """Events to append to one stream, on condition that its last version is `expected_version`."""

    stream_id: str
    expected_version: int
    events: Sequence[Event]


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @property
    def event(self) -> Event:
        return event_from_data(self.type, self.data)

    @property
    def trace_id(self) -> str | None:
        return self.metadata.get("trace_id")


class EventPublisher(ABC):
    """Hands committed events to the message bus."""

    @abstractmethod
    def publish(self, events: Sequence[RecordedEvent]) -> list[int]:
        """Publish in order; return the positions the bus acknowledged (a prefix or all)."""


class EventStore(ABC):
    def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        metadata: dict[str, Any] | None = None,
    ) -> list[RecordedEvent]:
        return self.append_streams([StreamWrite(stream_id, expected_version, events)], metadata)

    @abstractmethod
    def append_streams(
        self, writes: Sequence[StreamWrite], metadata: dict[str, Any] | None = None
    ) -> list[RecordedEvent]:
        """Append to several streams atomically: every write's expectation holds, or none lands.

        `metadata` is stored with every event; the trace of the current call is added to it
        (`trace_id`, `trace_header`) unless the caller gives its own.
        """

    @abstractmethod
    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events with version > after_version, in version order ([] if none)."""

    @abstractmethod
    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > after_position, in position order, at most `limit`.

        For rebuilds and checks on a quiet store: a transaction that commits late can leave a
        lower position behind a cursor that already moved on. Live consumers read Kafka.
        """

    @abstractmethod
    def locked(self, stream_id: str) -> AbstractContextManager[EventStore]:
        """A session holding an exclusive lock on `stream_id` until it ends.

        Reads and appends made through the session form one transaction, committed when the
        block exits (rolled back if it raises). Writers that all take the lock serialise instead
        of conflicting; the expected-version check still applies.
        """

    def stream_version(self, stream_id: str) -> int:
        events = self.read_stream(stream_id)
        return events[-1].version if events else 0

    @staticmethod
    def _with_trace(metadata: dict[str, Any] | None) -> dict[str, Any]:
        merged = dict(metadata or {})
        for key, value in trace_metadata().items():
            merged.setdefault(key, value)
        return merged


def iter_all(
    store: EventStore, after_position: int = 0, page: int = 1000
) -> Iterator[RecordedEvent]:
    """Every event after `after_position`, paging through `read_all`."""
    while True:
        batch = store.read_all(after_position, page)
        yield from batch
        if len(batch) < page:
            return
        after_position = batch[-1].position
