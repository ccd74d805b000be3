"""Every way a command can be refused, as a type.

    DomainError
    ├── NotFound
    │   ├── AccountNotFound
    │   └── PaymentNotFound
    ├── InvalidRequest            (malformed or out-of-range input)
    │   └── CurrencyMismatch
    ├── InsufficientFunds
    ├── AccountAlreadyExists
    ├── IdempotencyKeyReused      (same key, different request)
    └── PaymentAlreadyFinal       (a second, different final status)

The API maps each type to one problem+json response; nothing else decides a status code.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command the domain refuses; `detail` is safe to show to the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    pass


class AccountNotFound(NotFound):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} does not exist")
        self.account_id = account_id


class PaymentNotFound(NotFound):
    def __init__(self, payment_id: str) -> None:
        super().__init__(f"payment {payment_id} does not exist")
        self.payment_id = payment_id


class InvalidRequest(DomainError):
    pass


class CurrencyMismatch(InvalidRequest):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"the account is in {expected}, the payment in {got}")
        self.expected = expected
        self.got = got


class InsufficientFunds(DomainError):
    def __init__(self, account_id: str, amount: int, available: int) -> None:
        super().__init__(
            f"amount {amount} exceeds the {available} available on account {account_id}"
        )
        self.account_id = account_id
        self.amount = amount
        self.available = available


class AccountAlreadyExists(DomainError):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} already exists")
        self.account_id = account_id


class IdempotencyKeyReused(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")
        self.key = key


class PaymentAlreadyFinal(DomainError):
    def __init__(self, payment_id: str, status: str) -> None:
        super().__init__(f"payment {payment_id} is already {status}")
        self.payment_id = payment_id
        self.status = status
