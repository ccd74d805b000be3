"""The payment aggregate: the fold of a `payment-<id>` stream.

A payment is pending until exactly one final status is recorded: authorized, declined or failed.
Recording the same final status again yields no event (a redelivered Kafka record must change
nothing); recording a different one is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import PaymentAlreadyFinal
from .events import Event, PaymentAuthorized, PaymentDeclined, PaymentFailed, PaymentRequested
from .rules import require_amount, require_currency, require_description

PENDING = "pending"
AUTHORIZED = "authorized"
DECLINED = "declined"
FAILED = "failed"
FINAL_STATUSES = frozenset({AUTHORIZED, DECLINED, FAILED})


def payment_stream(payment_id: str) -> str:
    return f"payment-{payment_id}"


@dataclass
class Payment:
    id: str
    account_id: str = ""
    client_id: str = ""
    amount: int = 0
    currency: str = ""
    description: str | None = None
    idempotency_key: str = ""
    status: str = PENDING
    provider: str | None = None
    provider_ref: str | None = None
    fee: int | None = None
    reason: str | None = None
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def fold(cls, payment_id: str, events: Iterable[Event]) -> Payment:
        payment = cls(id=payment_id)
        for event in events:
            payment.apply(event)
        return payment

    def apply(self, event: Event) -> None:
        match event:
            case PaymentRequested():
                self.account_id = event.account_id
                self.client_id = event.client_id
                self.amount = event.amount
                self.currency = event.currency
                self.description = event.description
                self.idempotency_key = event.idempotency_key
            case PaymentAuthorized():
                self.status = AUTHORIZED
                self.provider = event.provider
                self.provider_ref = event.provider_ref
                self.fee = event.fee
            case PaymentDeclined():
                self.status = DECLINED
                self.provider = event.provider
                self.reason = event.reason
            case PaymentFailed():
                self.status = FAILED
                self.reason = event.reason
        self.version += 1

    @staticmethod
    def request(
        payment_id: str,
        account_id: str,
        client_id: str,
        amount: object,
        currency: object,
        description: object,
        idempotency_key: str,
    ) -> PaymentRequested:
        return PaymentRequested(
            payment_id=payment_id,
            account_id=account_id,
            client_id=client_id,
            amount=require_amount(amount),
            currency=require_currency(currency),
            description=require_description(description),
            idempotency_key=idempotency_key,
        )

    def _finish(self, status: str, event: Event) -> list[Event]:
        if self.status == status:
            return []
        if self.is_final:
            raise PaymentAlreadyFinal(self.id, self.status)
        return [event]

    def authorize(self, provider: str, provider_ref: str, fee: int) -> list[Event]:
        event = PaymentAuthorized(self.id, self.account_id, provider, provider_ref, fee)
        return self._finish(AUTHORIZED, event)

    def decline(self, provider: str, reason: str) -> list[Event]:
        return self._finish(DECLINED, PaymentDeclined(self.id, self.account_id, provider, reason))

    def fail(self, reason: str) -> list[Event]:
        return self._finish(FAILED, PaymentFailed(self.id, self.account_id, reason))
