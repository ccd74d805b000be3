"""Helpers for the notification tests: API clients, receivers on free ports, Kafka events."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any

import boto3
from consim.config import settings

from simulator.receivers import serve_push_service, serve_webhook_receiver


def register_client(client_id: str | None = None) -> tuple[str, str]:
    """A fresh API client in the clients table: (api key, client id)."""
    config = settings()
    key = secrets.token_urlsafe(24)
    client_id = client_id or f"test-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "dynamodb",
        endpoint_url=config.dynamodb_endpoint,
        region_name=config.aws_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).put_item(
        TableName=config.table("clients"),
        Item={"api_key": {"S": key}, "client_id": {"S": client_id}, "name": {"S": client_id}},
    )
    return key, client_id


push_service = serve_push_service
webhook_receiver = serve_webhook_receiver


def kafka_event(envelopes: list[dict[str, Any]], partition: int = 0, first_offset: int = 0) -> dict:
    """A batch as a Kafka event source mapping hands it to Lambda."""
    topic = settings().payment_events_topic
    records = [
        {
            "topic": topic,
            "partition": partition,
            "offset": first_offset + i,
            "timestamp": 0,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(env["data"]["account_id"].encode()).decode(),
            "value": base64.b64encode(json.dumps(env).encode()).decode(),
            "headers": [],
        }
        for i, env in enumerate(envelopes)
    ]
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": settings().kafka_bootstrap,
        "records": {f"{topic}-{partition}": records},
    }
