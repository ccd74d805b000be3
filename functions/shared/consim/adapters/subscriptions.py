"""Subscriptions and the delivered set, in DynamoDB.

`consim-subscriptions`: one item per subscription, partition key `subscription_id`; the GSI
`by_target` (partition key `target`, e.g. `account#<id>`) finds who follows a payment.
`consim-deliveries`: one item per (subscription_id, event_id) already delivered.

Boto3 clients (not resources) are used because the notifier calls them from many threads.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from consim.adapters.dynamodb import endpoint_url
from consim.config import Settings
from consim.domain.notifications import (
    PushKeys,
    Subscription,
    SubscriptionKind,
    SubscriptionNotFound,
    Target,
)

logger = logging.getLogger(__name__)

_BATCH_GET_LIMIT = 100  # DynamoDB's cap on keys per BatchGetItem
_UNPROCESSED_RETRIES = 5


def dynamodb_client(settings: Settings) -> Any:
    # Its own client rather than the shared one: the notifier needs a pool as wide as its threads.
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url(),
        region_name=settings.aws_region,
        config=Config(
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, settings.notify_concurrency + 4),
        ),
    )


def _to_item(sub: Subscription) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscription_id": {"S": sub.id},
        "client_id": {"S": sub.client_id},
        "kind": {"S": str(sub.kind)},
        "target": {"S": sub.target.key},
        "created_at": {"S": sub.created_at},
    }
    if sub.push is not None:
        item["push"] = {"S": json.dumps(sub.push.as_subscription_info())}
    if sub.url is not None:
        item["url"] = {"S": sub.url}
    if sub.secret is not None:
        item["secret"] = {"S": sub.secret}
    return item


def _from_item(item: dict[str, Any]) -> Subscription:
    push = None
    if "push" in item:
        info = json.loads(item["push"]["S"])
        push = PushKeys(info["endpoint"], info["keys"]["p256dh"], info["keys"]["auth"])
    return Subscription(
        id=item["subscription_id"]["S"],
        client_id=item["client_id"]["S"],
        kind=SubscriptionKind(item["kind"]["S"]),
        target=Target.from_key(item["target"]["S"]),
        created_at=item["created_at"]["S"],
        push=push,
        url=item.get("url", {}).get("S"),
        secret=item.get("secret", {}).get("S"),
    )


class SubscriptionStore:
    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self._client = client or dynamodb_client(settings)
        self._subscriptions = settings.table("subscriptions")
        self._deliveries = settings.table("deliveries")

    # -- subscriptions ---------------------------------------------------------------------

    def add(self, sub: Subscription) -> None:
        # Ids are fresh UUIDs; the condition only guards against a collision overwriting one.
        self._client.put_item(
            TableName=self._subscriptions,
            Item=_to_item(sub),
            ConditionExpression="attribute_not_exists(subscription_id)",
        )

    def get(self, subscription_id: str) -> Subscription:
        answer = self._client.get_item(
            TableName=self._subscriptions,
            Key={"subscription_id": {"S": subscription_id}},
            ConsistentRead=True,
        )
        if "Item" not in answer:
            raise SubscriptionNotFound(subscription_id)
        return _from_item(answer["Item"])

    def remove(self, subscription_id: str) -> None:
        self._client.delete_item(
            TableName=self._subscriptions, Key={"subscription_id": {"S": subscription_id}}
        )

    def following(self, target: Target) -> list[Subscription]:
        """Every subscription that follows `target` (GSIs are eventually consistent)."""
        found: list[Subscription] = []
        kwargs: dict[str, Any] = {
            "TableName": self._subscriptions,
            "IndexName": "by_target",
            "KeyConditionExpression": "#t = :t",
            "ExpressionAttributeNames": {"#t": "target"},
            "ExpressionAttributeValues": {":t": {"S": target.key}},
        }
        while True:
            page = self._client.query(**kwargs)
            found.extend(_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- the delivered set -----------------------------------------------------------------

    def was_delivered(self, subscription_id: str, event_id: str) -> bool:
        answer = self._client.get_item(
            TableName=self._deliveries,
            Key={"subscription_id": {"S": subscription_id}, "event_id": {"S": event_id}},
            ConsistentRead=True,
            ProjectionExpression="event_id",
        )
        return "Item" in answer

    def delivered_among(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (subscription_id, event_id) pairs are in the delivered set: one
        BatchGetItem per 100 pairs instead of a read per delivery."""
        wanted = list(dict.fromkeys(pairs))
        found: set[tuple[str, str]] = set()
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            keys = [
                {"subscription_id": {"S": sub_id}, "event_id": {"S": event_id}}
                for sub_id, event_id in wanted[start : start + _BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {
                self._deliveries: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "subscription_id, event_id",
                }
            }
            for attempt in range(_UNPROCESSED_RETRIES):
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._deliveries, []):
                    found.add((item["subscription_id"]["S"], item["event_id"]["S"]))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)  # DynamoDB throttled part of the batch
            else:
                raise RuntimeError("DynamoDB left keys unprocessed after retries")
        return found

    def mark_delivered(self, subscription_id: str, event_id: str, status: int) -> bool:
        """Record a delivery; False when it was already recorded (a concurrent duplicate)."""
        try:
            self._client.put_item(
                TableName=self._deliveries,
                Item={
                    "subscription_id": {"S": subscription_id},
                    "event_id": {"S": event_id},
                    "delivered_at": {"S": datetime.now(UTC).isoformat()},
                    "http_status": {"N": str(status)},
                },
                ConditionExpression="attribute_not_exists(event_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
