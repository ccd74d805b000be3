"""The payments API: a Chalice app behind API Gateway (REST, proxy), handler `app.app`.

Views only translate HTTP to use cases (consim.services) and back; errors become problem+json in
chalicelib.problems.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from chalice import Chalice, ConvertToMiddleware, Response
from chalicelib import health, representations
from chalicelib.idempotency import idempotent, register_context
from chalicelib.problems import (
    IdempotencyInFlight,
    MalformedRequest,
    ServiceUnavailable,
    problem,
    problems,
)
from chalicelib.requests import client_id, json_object, optional_fields, query_time, require_fields
from chalicelib.subscriptions import bp as subscriptions_blueprint
from consim.adapters.payments_summary import PostgresPaymentsSummary
from consim.domain.errors import IdempotencyKeyReused
from consim.observability import (
    PAYMENTS_ACCEPTED,
    PAYMENTS_REJECTED,
    RESERVATION_CONFLICTS,
    annotate,
    count,
    logger,
    observed,
)
from consim.services import accounts, bootstrap, payments

app = Chalice(app_name="consim-api")
app.register_middleware(ConvertToMiddleware(observed))

# The subscription routes (push and webhooks) live in their own blueprint.
app.register_blueprint(subscriptions_blueprint)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@app.route("/health", methods=["GET"], api_key_required=False)
def get_health() -> Response:
    results = health.check_all()
    down = sorted(name for name, error in results.items() if error)
    checks = {name: {"ok": error is None, "error": error} for name, error in results.items()}
    if down:
        logger.warning("unhealthy", extra={"down": down, "checks": checks})
        return problem(
            503,
            "service-unavailable",
            "Service unavailable",
            f"not answering: {', '.join(down)}",
            down=down,
            checks=checks,
        )
    return _json({"status": "ok", "checks": checks})


@app.route("/accounts", methods=["POST"])
@problems
def post_account() -> Response:
    client = client_id(app.current_request)
    body = json_object(app.current_request)
    require_fields(body, {"currency": str, "limit": int})
    optional_fields(body, {"id": str, "balance": int})
    view = accounts.open_account(
        bootstrap.event_store(),
        client,
        currency=body["currency"],
        limit=body["limit"],
        balance=body.get("balance") or 0,
        account_id=body.get("id"),
    )
    annotate(account_id=view.account.id)
    return _json(
        representations.account_view_json(view),
        201,
        {"Location": f"/accounts/{view.account.id}"},
    )


@app.route("/accounts/{account_id}", methods=["GET"])
@problems
def get_account(account_id: str) -> Response:
    client = client_id(app.current_request)
    view = accounts.load_account(bootstrap.event_store(), client, account_id)
    return _json(representations.account_view_json(view))


@app.route("/accounts/{account_id}/statement", methods=["GET"])
@problems
def get_statement(account_id: str) -> Response:
    client = client_id(app.current_request)
    view = accounts.load_account(bootstrap.event_store(), client, account_id)
    return _json(representations.statement_json(view))


def _create_payment(request: dict) -> dict:
    """The idempotent command: its return value is what a retry gets back."""
    command = payments.RequestPayment.parse(request["client_id"], request["key"], request["body"])
    annotate(payment_id=command.payment_id, account_id=command.account_id)
    accepted = payments.request_payment(bootstrap.event_store(), command)
    if accepted.existing:
        logger.info("payment existed already", extra={"payment_id": command.payment_id})
    else:
        count(PAYMENTS_ACCEPTED)
    if accepted.attempts > 1:
        count(RESERVATION_CONFLICTS, accepted.attempts - 1)
    return {
        "status": 201,
        "body": representations.accepted_json(accepted),
        "location": f"/payments/{accepted.payment.id}",
    }


_idempotent_create_payment = idempotent(_create_payment)


@app.route("/payments", methods=["POST"])
@problems
def post_payment() -> Response:
    request = app.current_request
    client = client_id(request)
    key = request.headers.get("idempotency-key")
    if not key:
        raise MalformedRequest("the Idempotency-Key header is required")
    body = json_object(request)
    require_fields(body, {"account_id": str, "amount": int, "currency": str})
    optional_fields(body, {"description": str})

    register_context(getattr(app, "lambda_context", None))
    try:
        result = _idempotent_create_payment(request={"client_id": client, "key": key, "body": body})
    except IdempotencyValidationError as error:
        raise IdempotencyKeyReused(key) from error
    except IdempotencyAlreadyInProgressError as error:
        raise IdempotencyInFlight(
            f"a request with Idempotency-Key {key!r} is still being processed"
        ) from error
    except IdempotencyPersistenceLayerError as error:
        raise ServiceUnavailable("the idempotency store does not answer") from error
    except Exception:
        count(PAYMENTS_REJECTED)
        raise
    return _json(result["body"], result["status"], {"Location": result["location"]})


@app.route("/payments/{payment_id}", methods=["GET"])
@problems
def get_payment(payment_id: str) -> Response:
    client = client_id(app.current_request)
    view = payments.load_payment(bootstrap.event_store(), client, payment_id)
    return _json(representations.payment_view_json(view))


@app.route("/payments/{payment_id}/events", methods=["GET"])
@problems
def get_payment_events(payment_id: str) -> Response:
    client = client_id(app.current_request)
    view = payments.load_payment(bootstrap.event_store(), client, payment_id)
    return _json(
        {"payment_id": payment_id, "events": [representations.event_json(e) for e in view.events]}
    )


@app.route("/payments-summary", methods=["GET"])
@problems
def get_payments_summary() -> Response:
    request = app.current_request
    client = client_id(request)
    start, end = query_time(request, "from"), query_time(request, "to")
    summary = PostgresPaymentsSummary(bootstrap.event_store().pool).summary(client, start, end)
    return _json(summary)
