"""The simulator's evidence readers against the real services of the native stack.

The event store rows written here belong to streams no one else uses and have no outbox rows,
so nothing publishes or processes them; the Kafka test uses a topic of its own.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import psycopg
import pytest
from consim.config import settings
from support.postgres import migrated_url

from simulator.evidence import EventStoreReader, ReadModelReader, TopicReader, kafka_event_ids

pytestmark = pytest.mark.integration


def _insert(conn: psycopg.Connection, stream: str, version: int, kind: str, data: dict) -> str:
    event_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO events (stream_id, version, event_id, type, data) VALUES (%s, %s, %s, %s, %s)",
        (stream, version, event_id, kind, json.dumps(data)),
    )
    return event_id


def test_the_store_reader_finds_payments_through_their_reservations() -> None:
    url = migrated_url()
    account = f"simtest-{uuid.uuid4().hex[:10]}"
    unseen, final = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        _insert(conn, f"account-{account}", 1, "AccountOpened", {"limit": 10, "balance": 0})
        _insert(conn, f"account-{account}", 2, "FundsReserved", {"payment_id": unseen, "amount": 1})
        _insert(conn, f"account-{account}", 3, "FundsReserved", {"payment_id": final, "amount": 2})
        _insert(conn, f"payment-{unseen}", 1, "PaymentRequested", {"payment_id": unseen})
        _insert(conn, f"payment-{final}", 1, "PaymentRequested", {"payment_id": final})
        _insert(conn, f"payment-{final}", 2, "PaymentAuthorized", {"payment_id": final})

    try:
        reader = EventStoreReader(url)
        events = reader.events_of([account], [final])
        pending = reader.pending_payment_ids([account], [final])
    finally:
        # Half-made events like these must not outlive the test: a rebuild of the read models
        # over the shared store folds every stream.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM events WHERE stream_id = ANY(%s)",
                [[f"account-{account}", f"payment-{unseen}", f"payment-{final}"]],
            )

    assert [(e["stream_id"], e["version"]) for e in events] == [
        (f"account-{account}", 1),
        (f"account-{account}", 2),
        (f"account-{account}", 3),
        (f"payment-{unseen}", 1),
        (f"payment-{final}", 1),
        (f"payment-{final}", 2),
    ]
    assert events[1]["data"] == {"payment_id": unseen, "amount": 1}
    assert pending == {unseen}


def test_the_topic_reader_sees_every_event_id_from_the_beginning() -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    config = replace(settings(), payment_events_topic=f"simtest-{uuid.uuid4().hex[:10]}")
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    admin.create_topics([NewTopic(config.payment_events_topic, 3, 1)])
    admin.close()
    ids = [str(uuid.uuid4()) for _ in range(25)]
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap)
    for n, event_id in enumerate(ids):
        value = json.dumps({"event_id": event_id, "type": "PaymentRequested"}).encode()
        producer.send(config.payment_events_topic, key=str(n % 5).encode(), value=value)
    producer.send(config.payment_events_topic, key=b"x", value=b"not json")
    producer.flush()

    reader = TopicReader(config)
    first = reader.event_ids()
    later = [str(uuid.uuid4()) for _ in range(5)]
    for event_id in later:
        value = json.dumps({"event_id": event_id}).encode()
        producer.send(config.payment_events_topic, key=b"k", value=value)
    producer.flush()
    producer.close()
    second = reader.event_ids()

    assert sorted(first) == sorted(ids)
    # The same reader reads on from where it stopped: each id once.
    assert sorted(second) == sorted(ids + later)
    assert sorted(kafka_event_ids(config)) == sorted(ids + later)


def test_the_read_model_reader_gets_items_as_plain_values() -> None:
    config = settings()
    reader = ReadModelReader(config)
    payment = f"simtest-{uuid.uuid4().hex}"
    reader._client.put_item(
        TableName=config.table("payments"),
        Item={
            "payment_id": {"S": payment},
            "amount": {"N": "1250"},
            "status": {"S": "pending"},
            "version": {"N": "1"},
        },
    )

    found = reader.payments([payment, "simtest-absent"])

    assert found == {
        payment: {"payment_id": payment, "amount": 1250, "status": "pending", "version": 1}
    }
