"""The mapping keeps its consumer through a broker outage: a commit that cannot reach the broker
is retried on the same consumer, and only a lost assignment gives the consumer up."""

import pytest
from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from emulator.kafka_mappings import KafkaMapping
from emulator.template import KafkaEvent

pytestmark = pytest.mark.unit

OFFSETS = {TopicPartition("payment-events", 0): OffsetAndMetadata(42, "", -1)}


class ScriptedConsumer:
    """Answers each commit with the next item of a script: an exception to raise, or None."""

    def __init__(self, script):
        self.script = list(script)
        self.committed = []

    def commit(self, offsets):
        outcome = self.script.pop(0)
        if outcome is not None:
            raise outcome
        self.committed.append(offsets)


def mapping() -> KafkaMapping:
    event = KafkaEvent(
        name="PaymentEvents",
        source="SelfManagedKafka",
        topics=("payment-events",),
        bootstrap_servers=("127.0.0.1:1",),
        consumer_group_id="consim-test",
        batch_size=10,
        batching_window_s=0.1,
        starting_position="TRIM_HORIZON",
        report_batch_item_failures=True,
        on_failure_topic=None,
        maximum_retry_attempts=2,
        event_source_arn=None,
    )
    return KafkaMapping(
        "fn", event, invoker=None, bootstrap_servers=["127.0.0.1:1"], dead_letter_topic="dlq"
    )


def test_a_commit_the_broker_cannot_take_is_retried_on_the_same_consumer():
    consumer = ScriptedConsumer(
        [KafkaConnectionError("111 ECONNREFUSED"), KafkaTimeoutError("coordinator"), None]
    )

    mapping()._commit(consumer, OFFSETS)

    assert consumer.committed == [OFFSETS]
    assert consumer.script == []


def test_a_commit_refused_after_a_rebalance_gives_the_consumer_up():
    consumer = ScriptedConsumer([CommitFailedError("partitions reassigned"), None])

    with pytest.raises(CommitFailedError):
        mapping()._commit(consumer, OFFSETS)
    assert consumer.committed == []


def test_a_stopping_mapping_stops_retrying():
    consumer = ScriptedConsumer([KafkaConnectionError("down")] * 3)
    stopping = mapping()
    stopping.stop()

    stopping._commit(consumer, OFFSETS)

    assert consumer.committed == []
    assert len(consumer.script) == 3
