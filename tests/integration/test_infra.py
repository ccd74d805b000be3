"""The native stack's services, as `python -m infra up` leaves them: reachable and provisioned."""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from consim.config import settings
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from infra import dynamodb, specs, stack
from infra.broker import admin_client
from infra.postgres import MIGRATIONS_DIR, MIGRATIONS_TABLE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config():
    return settings()


# --- PostgreSQL -------------------------------------------------------------------------------
def test_postgres_answers_and_records_every_migration(config):
    declared = {p.stem for p in MIGRATIONS_DIR.glob("*.sql") if not p.stem.endswith(".rollback")}

    with psycopg.connect(config.database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("consim",)
        table = conn.execute("SELECT to_regclass(%s)", [MIGRATIONS_TABLE]).fetchone()[0]
        assert table is not None
        applied = {row[0] for row in conn.execute(f"SELECT migration_id FROM {MIGRATIONS_TABLE}")}

    assert applied == declared


def test_postgres_refuses_a_wrong_password(config):
    wrong = config.database_url.replace("consim:consim@", "consim:not-the-password@")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(wrong, connect_timeout=5)


# --- Kafka ------------------------------------------------------------------------------------
def test_kafka_has_the_declared_topics_with_their_partitions(config):
    admin = admin_client(config.kafka_bootstrap)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
    finally:
        admin.close()

    declared = {topic.name: topic.partitions for topic in specs.topics(config)}
    assert declared == {"payment-events": 4, "payment-events-dlq": 1}
    assert {name: described.get(name) for name in declared} == declared


@pytest.fixture
def scratch_topic(config):
    # Its own topic: a record on payment-events would reach the functions of a running emulator.
    name = f"infra-test-{uuid.uuid4().hex[:8]}"
    admin = admin_client(config.kafka_bootstrap)
    admin.create_topics(
        {name: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
    )
    yield name
    admin.delete_topics([name])
    admin.close()


def test_kafka_round_trip_keeps_key_value_and_headers(config, scratch_topic):
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")
    sent = producer.send(
        scratch_topic, key=b"account-1", value=b'{"n": 1}', headers=[("trace", b"1-abc")]
    ).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    partition = TopicPartition(scratch_topic, sent.partition)
    consumer.assign([partition])
    consumer.seek(partition, sent.offset)
    received = []
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        received = consumer.poll(timeout_ms=1000).get(partition, [])
    consumer.close()

    assert [(r.key, r.value, list(r.headers)) for r in received[:1]] == [
        (b"account-1", b'{"n": 1}', [("trace", b"1-abc")])
    ]


# --- DynamoDB (dynalite) ----------------------------------------------------------------------
def test_dynalite_has_every_declared_table(config):
    client = dynamodb.client(config.dynamodb_endpoint, config.aws_region)
    names = set(client.list_tables()["TableNames"])

    for table in specs.tables(config):
        assert table.physical_name in names
        described = client.describe_table(TableName=table.physical_name)["Table"]
        assert described["KeySchema"] == table.definition["KeySchema"]
        assert described["TableStatus"] == "ACTIVE"


def test_subscriptions_can_be_found_by_target(config):
    client = dynamodb.client(config.dynamodb_endpoint, config.aws_region)
    table = config.table("subscriptions")
    target = f"account-{uuid.uuid4()}"
    client.put_item(
        TableName=table, Item={"subscription_id": {"S": str(uuid.uuid4())}, "target": {"S": target}}
    )

    found = client.query(
        TableName=table,
        IndexName="by_target",
        KeyConditionExpression="#t = :t",
        ExpressionAttributeNames={"#t": "target"},
        ExpressionAttributeValues={":t": {"S": target}},
    )["Items"]

    assert [item["target"]["S"] for item in found] == [target]


def test_dynalite_rejects_a_put_whose_condition_fails(config):
    client = dynamodb.client(config.dynamodb_endpoint, config.aws_region)
    table = config.table("idempotency")
    item = {"id": {"S": f"infra-test-{uuid.uuid4()}"}, "status": {"S": "INPROGRESS"}}
    first_only = {"ConditionExpression": "attribute_not_exists(id)"}
    client.put_item(TableName=table, Item=item, **first_only)

    with pytest.raises(ClientError) as rejected:
        client.put_item(TableName=table, Item={**item, "status": {"S": "COMPLETED"}}, **first_only)

    assert rejected.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    kept = client.get_item(TableName=table, Key={"id": item["id"]})["Item"]
    assert kept["status"]["S"] == "INPROGRESS"


def test_the_local_api_client_is_registered(config):
    client = dynamodb.client(config.dynamodb_endpoint, config.aws_region)
    key = os.environ["API_KEY"]

    item = client.get_item(TableName=config.table("clients"), Key={"api_key": {"S": key}})["Item"]

    assert item["client_id"]["S"] == "local"


# --- X-Ray API (moto server) ------------------------------------------------------------------
def test_xray_round_trip_through_moto_server(config):
    xray = boto3.client(
        "xray",
        endpoint_url=config.xray_endpoint,
        region_name=config.aws_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    now = time.time()
    trace_id = f"1-{int(now):08x}-{secrets.token_hex(12)}"
    segment = {
        "name": "infra-test",
        "id": secrets.token_hex(8),
        "trace_id": trace_id,
        "start_time": now,
        "end_time": now + 0.01,
    }

    answer = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(segment)])
    traces = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]

    assert answer["UnprocessedTraceSegments"] == []
    assert [t["Id"] for t in traces] == [trace_id]
    stored = [json.loads(s["Document"])["id"] for s in traces[0]["Segments"]]
    assert stored == [segment["id"]]


# --- the stack itself -------------------------------------------------------------------------
def test_up_again_reuses_every_running_service(config):
    before = {s.name: s.pid for s in stack.status(config) if s.running}

    stack.up(config)

    after = {s.name: s.pid for s in stack.status(config) if s.running}
    assert {"kafka", "postgres", "dynalite", "moto"} <= before.keys()
    assert after == before
