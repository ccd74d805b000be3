"""Errors as RFC 9457 problem details: each error type maps to one status, here and only here."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from chalice import Response
from consim.adapters.dynamodb import UnknownApiKey
from consim.domain import errors
from consim.services.payments import ReservationContended

logger = logging.getLogger(__name__)

PROBLEM_BASE = "https://consim.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class MalformedRequest(errors.DomainError):
    """The request cannot be read: not JSON, a field missing or of the wrong type."""


class PayloadTooLarge(errors.DomainError):
    pass


class Unauthorized(errors.DomainError):
    pass


class IdempotencyInFlight(errors.DomainError):
    pass


class ServiceUnavailable(errors.DomainError):
    pass


# Most specific first: the first matching class decides.
_MAPPING: list[tuple[type[Exception], int, str, str]] = [
    (MalformedRequest, 400, "malformed-request", "Malformed request"),
    (PayloadTooLarge, 413, "payload-too-large", "Payload too large"),
    (Unauthorized, 403, "forbidden", "Forbidden"),
    (UnknownApiKey, 403, "forbidden", "Forbidden"),
    (errors.AccountNotFound, 404, "account-not-found", "Account not found"),
    (errors.PaymentNotFound, 404, "payment-not-found", "Payment not found"),
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.CurrencyMismatch, 422, "currency-mismatch", "Currency does not match the account"),
    (errors.InvalidRequest, 422, "invalid-request", "Invalid request"),
    (errors.InsufficientFunds, 422, "insufficient-funds", "Insufficient funds"),
    (errors.IdempotencyKeyReused, 422, "idempotency-key-reused", "Idempotency-Key reused"),
    (errors.AccountAlreadyExists, 409, "account-exists", "Account already exists"),
    (IdempotencyInFlight, 409, "request-in-flight", "Request in flight"),
    (errors.PaymentAlreadyFinal, 409, "payment-final", "Payment already final"),
    (ReservationContended, 503, "account-contended", "Account too busy"),
    (ServiceUnavailable, 503, "service-unavailable", "Service unavailable"),
]


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return Response(
        body=json.dumps(body), status_code=status, headers={"Content-Type": PROBLEM_JSON}
    )


def to_problem(error: Exception) -> Response:
    for cls, status, slug, title in _MAPPING:
        if isinstance(error, cls):
            detail = getattr(error, "detail", None) or str(error) or title
            return problem(status, slug, title, detail)
    logger.exception("unhandled error", exc_info=error)
    return problem(500, "internal-error", "Internal error", "an unexpected error occurred")


def problems(view: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every exception a view raises into its problem+json response."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except Exception as error:
            return to_problem(error)

    return wrapped
