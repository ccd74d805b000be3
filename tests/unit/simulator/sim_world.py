"""Hand-made evidence for the invariant tests: a small consistent world, built event by event."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from simulator.invariants import Evidence

_ids = itertools.count(1)


def _event_id() -> str:
    return f"ev-{next(_ids):05d}"


class World:
    """Accounts and payments as the system should have recorded them, and everything derived
    from that (read models, ledger, Kafka, notifications) consistent with it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.versions: dict[str, int] = {}
        self.subscriptions: list[dict[str, Any]] = []

    def _append(self, stream: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        version = self.versions.get(stream, 0) + 1
        self.versions[stream] = version
        event = {
            "position": len(self.events) + 1,
            "stream_id": stream,
            "version": version,
            "event_id": _event_id(),
            "type": kind,
            "data": data,
        }
        self.events.append(event)
        return event

    def open(self, account: str, limit: int, balance: int) -> None:
        self._append(
            f"account-{account}",
            "AccountOpened",
            {"account_id": account, "limit": limit, "balance": balance, "currency": "EUR"},
        )
        self.subscriptions.append(
            {"id": f"sub-{account}", "kind": "webhook", "account_id": account}
        )

    def pay(
        self,
        payment: str,
        account: str,
        amount: int,
        outcome: str = "authorized",
        provider: str = "default",
        key: str | None = None,
        sends: int = 1,
    ) -> None:
        key = key or f"key-{payment}"
        self._append(
            f"account-{account}", "FundsReserved", {"payment_id": payment, "amount": amount}
        )
        self._append(
            f"payment-{payment}",
            "PaymentRequested",
            {
                "payment_id": payment,
                "account_id": account,
                "amount": amount,
                "currency": "EUR",
                "idempotency_key": key,
            },
        )
        if outcome == "authorized":
            self._append(
                f"payment-{payment}",
                "PaymentAuthorized",
                {"payment_id": payment, "account_id": account, "provider": provider},
            )
            self._append(
                f"account-{account}", "FundsCaptured", {"payment_id": payment, "amount": amount}
            )
        elif outcome in ("declined", "failed"):
            kind = "PaymentDeclined" if outcome == "declined" else "PaymentFailed"
            self._append(
                f"payment-{payment}",
                kind,
                {"payment_id": payment, "account_id": account, "provider": provider},
            )
            self._append(
                f"account-{account}",
                "FundsReleased",
                {"payment_id": payment, "amount": amount, "reason": outcome},
            )
        for _ in range(sends):
            self.outcomes.append(
                {
                    "idempotency_key": key,
                    "status": 201,
                    "payment_id": payment,
                    "intended": 0.0,
                    "done": 0.1,
                    "sent": 0.0,
                }
            )

    def reject(self, key: str) -> None:
        self.outcomes.append(
            {
                "idempotency_key": key,
                "status": 422,
                "payment_id": None,
                "problem": "https://x/insufficient-funds",
            }
        )

    def evidence(self) -> Evidence:
        from simulator.invariants import (
            _accounts,
            _payments,
        )

        base = Evidence(events=copy.deepcopy(self.events), outcomes=copy.deepcopy(self.outcomes))
        payments = _payments(base)
        accounts = _accounts(base)
        base.read_payments = {
            pid: {
                "payment_id": pid,
                "status": p["status"],
                "amount": p["amount"],
                "account_id": p["account_id"],
                "version": p["version"],
            }
            for pid, p in payments.items()
        }
        base.read_accounts = {
            aid: {
                "account_id": aid,
                "balance": a.balance,
                "reserved": a.reserved,
                "limit": a.limit,
                "version": a.version,
            }
            for aid, a in accounts.items()
        }
        base.api_accounts = {aid: {"balance": a.balance} for aid, a in accounts.items()}
        ledger: dict[str, dict[str, Any]] = {}
        for pid, p in payments.items():
            if p["status"] == "authorized":
                entry = ledger.setdefault(p["provider"], {"scope": "run", "charges": []})
                entry["charges"].append({"payment_id": pid, "amount": p["amount"]})
        base.provider_ledger = ledger
        base.kafka_event_ids = [e["event_id"] for e in self.events]
        base.subscriptions = copy.deepcopy(self.subscriptions)
        base.notifications = [
            {
                "subscription_id": f"sub-{p['account_id']}",
                "kind": "webhook",
                "payment_id": pid,
                "event_id": e["event_id"],
                "status": "x",
                "received": 1.0,
            }
            for pid, p in payments.items()
            for e in self.events
            if e["stream_id"] == f"payment-{pid}"
        ]
        return base
