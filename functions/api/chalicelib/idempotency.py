"""POST /payments made idempotent per (client, Idempotency-Key) with Powertools' utility.

The record in DynamoDB goes INPROGRESS before the payment is made and COMPLETED (with the
response) after, so a retry gets the first response again, a concurrent duplicate sees
INPROGRESS (409), and a retry with another body fails the payload hash (422). The record and the
Postgres commit are not atomic: a worker can die between them. Then the record stays INPROGRESS
until its in-progress expiry (the Lambda's remaining time), and the retry after that runs the
command again; the payment id is derived from (client, key), so that second run finds the
payment stream already written and answers with the existing payment instead of making another.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from consim.adapters import dynamodb
from consim.config import settings

RECORD_TTL_SECONDS = 24 * 3600

_config = IdempotencyConfig(
    event_key_jmespath="[client_id, key]",
    payload_validation_jmespath="body",
    expires_after_seconds=RECORD_TTL_SECONDS,
    raise_on_no_idempotency_key=True,
)


def register_context(lambda_context: Any) -> None:
    """Let in-progress records expire with the invocation (the lost-record case above)."""
    if lambda_context is not None and hasattr(lambda_context, "get_remaining_time_in_millis"):
        _config.register_lambda_context(lambda_context)


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(
        table_name=settings().table("idempotency"), boto3_client=dynamodb.client()
    )


def idempotent(command: Callable[..., dict]) -> Callable[..., dict]:
    """Wrap `command(request=...)`; `request` holds client_id, key and body."""
    wrapped: dict[str, Callable[..., dict]] = {}

    def call(*, request: dict) -> dict:
        # Built on first use: the persistence layer makes a boto3 client for the configured
        # endpoint, which tests set after import.
        if "fn" not in wrapped:
            wrapped["fn"] = idempotent_function(
                command,
                data_keyword_argument="request",
                persistence_store=_persistence(),
                config=_config,
            )
        return wrapped["fn"](request=request)

    return call
