"""The account aggregate: the fold of an `account-<id>` stream and the rules of its funds.

balance is what the account holds, limit the credit on top of it, reserved what pending payments
hold back; available = balance + limit - reserved. A capture moves a hold out of `reserved` and
out of `balance`, so it leaves `available` unchanged; a release gives the hold back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import DomainError, InsufficientFunds
from .events import AccountOpened, Event, FundsCaptured, FundsReleased, FundsReserved
from .rules import require_amount, require_currency, require_non_negative


def account_stream(account_id: str) -> str:
    return f"account-{account_id}"


class NoReservation(DomainError):
    def __init__(self, account_id: str, payment_id: str) -> None:
        super().__init__(f"account {account_id} holds no reservation for payment {payment_id}")


@dataclass
class Account:
    id: str
    client_id: str = ""
    currency: str = ""
    limit: int = 0
    balance: int = 0
    reserved: int = 0
    captured: int = 0
    version: int = 0
    # Open reservations by payment id, and the payments whose hold was captured or released:
    # together they make capture, release and reserve idempotent per payment.
    holds: dict[str, int] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def available(self) -> int:
        return self.balance + self.limit - self.reserved

    @classmethod
    def fold(cls, account_id: str, events: Iterable[Event]) -> Account:
        account = cls(id=account_id)
        for event in events:
            account.apply(event)
        return account

    def apply(self, event: Event) -> None:
        match event:
            case AccountOpened():
                self.client_id = event.client_id
                self.currency = event.currency
                self.limit = event.limit
                self.balance = event.balance
            case FundsReserved():
                self.holds[event.payment_id] = event.amount
                self.reserved += event.amount
            case FundsCaptured():
                self.reserved -= self.holds.pop(event.payment_id, 0)
                self.settled.add(event.payment_id)
                self.balance -= event.amount
                self.captured += event.amount
            case FundsReleased():
                self.reserved -= self.holds.pop(event.payment_id, 0)
                self.settled.add(event.payment_id)
        self.version += 1

    @staticmethod
    def open(
        account_id: str, client_id: str, currency: object, limit: object, balance: object = 0
    ) -> AccountOpened:
        return AccountOpened(
            account_id=account_id,
            client_id=client_id,
            currency=require_currency(currency),
            limit=require_non_negative(limit, "limit"),
            balance=require_non_negative(balance, "balance"),
        )

    def reserve(self, payment_id: str, amount: int) -> list[Event]:
        require_amount(amount)
        if payment_id in self.holds or payment_id in self.settled:
            return []
        if amount > self.available:
            raise InsufficientFunds(self.id, amount, self.available)
        return [FundsReserved(payment_id=payment_id, amount=amount)]

    def capture(self, payment_id: str) -> list[Event]:
        if payment_id in self.settled:
            return []
        if payment_id not in self.holds:
            raise NoReservation(self.id, payment_id)
        return [FundsCaptured(payment_id=payment_id, amount=self.holds[payment_id])]

    def release(self, payment_id: str, reason: str) -> list[Event]:
        if payment_id in self.settled:
            return []
        if payment_id not in self.holds:
            raise NoReservation(self.id, payment_id)
        return [FundsReleased(payment_id=payment_id, amount=self.holds[payment_id], reason=reason)]
