"""A request's publish after its commit gives up sooner than the relay's (both configurable)."""

from __future__ import annotations

import pytest
from consim.services import bootstrap

pytestmark = pytest.mark.unit


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


def test_the_producer_gives_up_finding_the_brokers_within_the_timeout(monkeypatch) -> None:
    # kafka-python's constructor bootstraps eagerly and waits 30 s for a broker by default: a
    # worker starting during an outage would block past the API's own timeout.
    import kafka

    made: list[dict] = []

    class Recording:
        def __init__(self, **config) -> None:
            made.append(config)

    monkeypatch.setattr(kafka, "KafkaProducer", Recording)
    from consim.adapters.kafka_publisher import KafkaEventPublisher

    KafkaEventPublisher("127.0.0.1:1", "payment-events", timeout=0.5)._get_producer()

    assert made[0]["bootstrap_timeout_ms"] == 500
    assert made[0]["max_block_ms"] == 500
    assert made[0]["request_timeout_ms"] == 500
