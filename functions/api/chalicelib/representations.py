"""The JSON shapes of the API (openapi.yaml describes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consim.adapters.event_store import RecordedEvent
from consim.domain.account import Account
from consim.domain.payment import Payment
from consim.services.accounts import AccountView, statement_entries
from consim.services.payments import PaymentAccepted, PaymentView


def timestamp(moment: datetime) -> str:
    return moment.isoformat()


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "balance": account.balance,
        "limit": account.limit,
        "reserved": account.reserved,
        "captured": account.captured,
        "available": account.available,
        "version": account.version,
    }


def account_view_json(view: AccountView) -> dict[str, Any]:
    return {**account_json(view.account), "opened_at": timestamp(view.opened_at)}


def statement_json(view: AccountView) -> dict[str, Any]:
    return {
        "account": account_view_json(view),
        "entries": [entry_json(e) for e in statement_entries(view)],
    }


def entry_json(event: RecordedEvent) -> dict[str, Any]:
    data = event.data
    return {
        "type": event.type,
        "version": event.version,
        "occurred_at": timestamp(event.recorded_at),
        "payment_id": data.get("payment_id"),
        "amount": data.get("amount", data.get("balance")),
    }


def _payment_fields(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "account_id": payment.account_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "description": payment.description,
        "status": payment.status,
        "provider": payment.provider,
        "version": payment.version,
    }


def accepted_json(accepted: PaymentAccepted) -> dict[str, Any]:
    account = accepted.account
    return {
        **_payment_fields(accepted.payment),
        "created_at": timestamp(accepted.created_at),
        "account": {
            "balance": account.balance,
            "reserved": account.reserved,
            "available": account.available,
        },
    }


def payment_view_json(view: PaymentView) -> dict[str, Any]:
    payment = view.payment
    body = {
        **_payment_fields(payment),
        "created_at": timestamp(view.created_at),
        "updated_at": timestamp(view.updated_at),
    }
    if payment.fee is not None:
        body["fee"] = payment.fee
    if payment.reason is not None:
        body["reason"] = payment.reason
    return body


def event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "version": event.version,
        "occurred_at": timestamp(event.recorded_at),
        "data": event.data,
        "trace_id": event.trace_id,
    }
