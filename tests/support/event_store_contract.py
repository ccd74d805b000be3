"""One behaviour for every event store: subclasses provide `store`, the suite does the rest."""

from __future__ import annotations

import threading
import uuid

import pytest
from consim.adapters.event_store import ConcurrencyConflict, EventStore, StreamWrite
from consim.domain.events import AccountOpened, FundsReserved, PaymentRequested


def opened(account_id: str) -> AccountOpened:
    return AccountOpened(account_id, "client-1", "EUR", 10, 0)


def stream() -> str:
    return f"account-{uuid.uuid4()}"


class EventStoreContract:
    @pytest.fixture
    def store(self) -> EventStore:
        raise NotImplementedError

    def test_a_new_stream_reads_empty(self, store: EventStore) -> None:
        assert store.read_stream(stream()) == []
        assert store.stream_version(stream()) == 0

    def test_append_then_read_in_version_order(self, store: EventStore) -> None:
        sid = stream()
        store.append(sid, 0, [opened(sid), FundsReserved("p1", 3)], {"client_id": "client-1"})
        store.append(sid, 2, [FundsReserved("p2", 4)])

        events = store.read_stream(sid)
        assert [(e.version, e.type) for e in events] == [
            (1, "AccountOpened"),
            (2, "FundsReserved"),
            (3, "FundsReserved"),
        ]
        assert events[1].event == FundsReserved("p1", 3)
        assert events[0].metadata["client_id"] == "client-1"
        assert events[0].position < events[1].position < events[2].position
        assert len({e.event_id for e in events}) == 3
        assert [e.version for e in store.read_stream(sid, after_version=2)] == [3]

    def test_stale_expected_version_conflicts_and_writes_nothing(self, store: EventStore) -> None:
        sid = stream()
        store.append(sid, 0, [opened(sid)])
        with pytest.raises(ConcurrencyConflict) as caught:
            store.append(sid, 0, [FundsReserved("p1", 1)])
        assert caught.value.stream_id == sid
        assert store.stream_version(sid) == 1

    def test_expected_version_ahead_of_the_stream_conflicts(self, store: EventStore) -> None:
        sid = stream()
        store.append(sid, 0, [opened(sid)])
        with pytest.raises(ConcurrencyConflict):
            store.append(sid, 5, [FundsReserved("p1", 1)])
        assert store.stream_version(sid) == 1

    def test_appends_to_several_streams_are_atomic(self, store: EventStore) -> None:
        account, payment = stream(), f"payment-{uuid.uuid4()}"
        store.append(account, 0, [opened(account)])
        request = PaymentRequested("p", account, "client-1", 1, "EUR", None, "k")

        with pytest.raises(ConcurrencyConflict):
            store.append_streams(
                [
                    StreamWrite(payment, 0, [request]),
                    StreamWrite(account, 0, [FundsReserved("p", 1)]),
                ]
            )
        assert store.read_stream(payment) == []

        recorded = store.append_streams(
            [StreamWrite(payment, 0, [request]), StreamWrite(account, 1, [FundsReserved("p", 1)])]
        )
        assert [(e.stream_id, e.version) for e in recorded] == [(payment, 1), (account, 2)]

    def test_concurrent_appends_at_one_version_exactly_one_wins(self, store: EventStore) -> None:
        sid = stream()
        store.append(sid, 0, [opened(sid)])
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def write(i: int) -> None:
            barrier.wait()
            try:
                store.append(sid, 1, [FundsReserved(f"p{i}", 1)])
                outcomes.append("ok")
            except ConcurrencyConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
        assert store.stream_version(sid) == 2

    def test_locked_sessions_serialise_read_decide_append(self, store: EventStore) -> None:
        sid = stream()
        store.append(sid, 0, [opened(sid)])

        def reserve(i: int) -> None:
            with store.locked(sid) as session:
                version = len(session.read_stream(sid))
                session.append(sid, version, [FundsReserved(f"p{i}", 1)])

        threads = [threading.Thread(target=reserve, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [e.version for e in store.read_stream(sid)] == list(range(1, 12))

    def test_read_all_pages_by_position(self, store: EventStore) -> None:
        start = store.read_all(0, 1_000_000)
        after = start[-1].position if start else 0
        a, b = stream(), stream()
        store.append(a, 0, [opened(a)])
        store.append(b, 0, [opened(b)])
        store.append(a, 1, [FundsReserved("p", 1)])

        mine = [e for e in store.read_all(after, 1000) if e.stream_id in (a, b)]
        assert [(e.stream_id, e.version) for e in mine] == [(a, 1), (b, 1), (a, 2)]
        first = store.read_all(after, 1)
        assert len(first) == 1
        assert first[0].position > after

    def test_trace_of_the_current_call_is_kept(
        self, store: EventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
        sid = stream()
        store.append(sid, 0, [opened(sid)])
        [event] = store.read_stream(sid)
        assert event.trace_id == "1-5759e988-bd862e3fe1be46a994272793"
        assert event.metadata["trace_header"] == header
