"""A request's publish after its commit gives up sooner than the relay's (both configurable)."""

from __future__ import annotations

import pytest
from consim.services import bootstrap


@pytest.fixture(autouse=True)
def fresh_publishers():
    bootstrap.kafka_publisher.cache_clear()
    bootstrap.fast_path_publisher.cache_clear()
    yield
    bootstrap.kafka_publisher.cache_clear()
    bootstrap.fast_path_publisher.cache_clear()


def test_the_fast_path_waits_less_than_the_relay_by_default(monkeypatch) -> None:
    monkeypatch.delenv("KAFKA_FAST_PATH_TIMEOUT_S", raising=False)
    monkeypatch.delenv("KAFKA_PUBLISH_TIMEOUT_S", raising=False)

    assert bootstrap.fast_path_publisher()._timeout == 1.0
    assert bootstrap.kafka_publisher()._timeout == 5.0


def test_both_timeouts_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_FAST_PATH_TIMEOUT_S", "0.25")
    monkeypatch.setenv("KAFKA_PUBLISH_TIMEOUT_S", "9")

    assert bootstrap.fast_path_publisher()._timeout == 0.25
    assert bootstrap.kafka_publisher()._timeout == 9.0
