"""The DynamoDB read models of accounts and payments, each item carrying its stream version.

Every write is conditional on the version the writer read: two projectors (or a projector and a
rebuild) racing on one item cannot move it backwards or skip an event; the loser re-reads.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from consim.config import settings
from consim.domain.account import Account
from consim.domain.payment import Payment

from . import dynamodb

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class StaleReadModel(Exception):
    """The item's version moved since it was read."""


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def _to_item(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in fields.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def account_item(account: Account, updated_at: str | None = None) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "client_id": account.client_id,
        "currency": account.currency,
        "limit": account.limit,
        "balance": account.balance,
        "reserved": account.reserved,
        "captured": account.captured,
        "available": account.available,
        "version": account.version,
        # Open reservations: what a later capture or release needs to resume the fold.
        "holds": dict(account.holds),
        "updated_at": updated_at,
    }


def account_from_item(item: dict[str, Any]) -> Account:
    return Account(
        id=item["account_id"],
        client_id=item.get("client_id", ""),
        currency=item.get("currency", ""),
        limit=item.get("limit", 0),
        balance=item.get("balance", 0),
        reserved=item.get("reserved", 0),
        captured=item.get("captured", 0),
        version=item.get("version", 0),
        holds=dict(item.get("holds") or {}),
    )


def payment_item(
    payment: Payment, created_at: str | None = None, updated_at: str | None = None
) -> dict[str, Any]:
    return {
        "payment_id": payment.id,
        "account_id": payment.account_id,
        "client_id": payment.client_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "description": payment.description,
        "idempotency_key": payment.idempotency_key,
        "status": payment.status,
        "provider": payment.provider,
        "provider_ref": payment.provider_ref,
        "fee": payment.fee,
        "reason": payment.reason,
        "version": payment.version,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def payment_from_item(item: dict[str, Any]) -> Payment:
    return Payment(
        id=item["payment_id"],
        account_id=item.get("account_id", ""),
        client_id=item.get("client_id", ""),
        amount=item.get("amount", 0),
        currency=item.get("currency", ""),
        description=item.get("description"),
        idempotency_key=item.get("idempotency_key", ""),
        status=item.get("status", "pending"),
        provider=item.get("provider"),
        provider_ref=item.get("provider_ref"),
        fee=item.get("fee"),
        reason=item.get("reason"),
        version=item.get("version", 0),
    )


class ReadModels:
    def __init__(self, accounts_table: str | None = None, payments_table: str | None = None):
        config = settings()
        self.accounts_table = accounts_table or config.table("accounts")
        self.payments_table = payments_table or config.table("payments")

    def _get(self, table: str, key: str, value: str) -> dict[str, Any] | None:
        item = (
            dynamodb.client()
            .get_item(TableName=table, Key={key: {"S": value}}, ConsistentRead=True)
            .get("Item")
        )
        return _from_item(item) if item else None

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self._get(self.accounts_table, "account_id", account_id)

    def payment(self, payment_id: str) -> dict[str, Any] | None:
        return self._get(self.payments_table, "payment_id", payment_id)

    def put(
        self,
        table: str,
        key: str,
        fields: dict[str, Any],
        expected_version: int | None,
    ) -> None:
        """Write the item if its stored version is `expected_version` (0: no item yet).

        With `expected_version=None` (a rebuild) the item is written unless the stored one is
        newer: a rebuild never moves an item back past what a projector already wrote.
        """
        args: dict[str, Any] = {"TableName": table, "Item": _to_item(fields)}
        if expected_version == 0:
            args["ConditionExpression"] = "attribute_not_exists(#k)"
            args["ExpressionAttributeNames"] = {"#k": key}
        elif expected_version is not None:
            args["ConditionExpression"] = "#v = :v"
            args["ExpressionAttributeNames"] = {"#v": "version"}
            args["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
        else:
            args["ConditionExpression"] = "attribute_not_exists(#k) OR #v <= :v"
            args["ExpressionAttributeNames"] = {"#k": key, "#v": "version"}
            args["ExpressionAttributeValues"] = {":v": {"N": str(fields["version"])}}
        try:
            dynamodb.client().put_item(**args)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StaleReadModel(
                    f"{table} {fields[key]}: stored version is not {expected_version}"
                ) from error
            raise

    def put_account(self, fields: dict[str, Any], expected_version: int | None) -> None:
        self.put(self.accounts_table, "account_id", fields, expected_version)

    def put_payment(self, fields: dict[str, Any], expected_version: int | None) -> None:
        self.put(self.payments_table, "payment_id", fields, expected_version)
