"""The simulated payment provider's API: one Lambda per instance (PROVIDER_NAME), same code.

Payments are decided the moment they arrive and written to the ledger before the simulated
latency, so a client that gave up waiting can still learn the outcome with a GET. A client may
send `x-deadline-ms`: a request that reaches the decision after it is refused (504) unrecorded,
so that "not in the ledger" stays true for a client that gave up and went elsewhere.
"""

from __future__ import annotations

import hmac
import json
import os
import random
import time
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from consim import observability as obs
from consim.config import settings
from simulated_provider import behaviour, ledger

logger = obs.logger
app = APIGatewayRestResolver()
_rng = random.Random()

# Largest amount accepted, in minor units: keeps fees and sums far from bigint limits.
MAX_AMOUNT = 10**12


# Read once: each instance is its own function (and, in tests, its own copy of this module).
PROVIDER_NAME = os.environ.get("PROVIDER_NAME", "default")
FEE_BPS = int(os.environ.get("PROVIDER_FEE_BPS", "150"))


def _json(status: int, body: Any) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body)
    )


def _pool():
    return ledger.pool(settings().database_url)


def _not_this_instance(name: str) -> Response | None:
    if name != PROVIDER_NAME:
        return _json(404, {"error": f"no provider {name!r} here"})
    return None


def _admin_denied() -> Response | None:
    token = app.current_event.headers.get("x-admin-token") or ""
    if not hmac.compare_digest(token.encode(), settings().provider_admin_token.encode()):
        return _json(401, {"error": "admin token missing or wrong"})
    return None


def _payment_request(body: Any) -> tuple[str, int, str]:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    payment_id, amount, currency = body.get("payment_id"), body.get("amount"), body.get("currency")
    if not isinstance(payment_id, str) or not 0 < len(payment_id) <= 200:
        raise ValueError("payment_id must be a non-empty string")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be an integer between 1 and {MAX_AMOUNT}")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError("currency must be a three-letter code")
    return payment_id, amount, currency.upper()


def _deadline_ms() -> int | None:
    """`x-deadline-ms` (unix milliseconds): when the client stops waiting. Optional."""
    value = app.current_event.headers.get("x-deadline-ms")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as error:
        raise ValueError("x-deadline-ms must be unix milliseconds") from error


@app.post("/providers/<name>/payments")
@obs.tracer.capture_method
def create_payment(name: str) -> Response:
    if (denied := _not_this_instance(name)) is not None:
        return denied
    try:
        payment_id, amount, currency = _payment_request(app.current_event.json_body)
        deadline_ms = _deadline_ms()
    except (ValueError, json.JSONDecodeError) as error:
        return _json(422, {"error": "invalid_request", "detail": str(error)})

    pool = _pool()
    # The slot connection keeps a transaction open for the whole request: the advisory lock
    # it holds is the request's place among max_concurrency. Ledger writes go through a
    # second, autocommit connection so they are visible at once, not when the slot is freed.
    with pool.connection() as slot_conn, slot_conn.transaction():
        knobs = ledger.load_knobs(slot_conn, name)
        if knobs.outage:
            obs.count("ProviderOutage")
            return _json(503, {"error": "outage"})
        if ledger.try_take_slot(slot_conn, name, knobs.max_concurrency) is None:
            obs.count("ProviderBusy")
            return _json(
                429, {"error": "too_many_requests", "max_concurrency": knobs.max_concurrency}
            )

        decision = behaviour.decide(knobs, amount, _rng)
        if decision.fails:
            time.sleep(decision.latency_s)
            return _json(500, {"error": "simulated_failure"})

        with pool.connection() as conn:
            charge, fresh = ledger.record(
                conn,
                name,
                payment_id,
                amount,
                currency,
                behaviour.fee(amount, FEE_BPS),
                decision.declined_reason,
                deadline_ms,
            )
        if charge is None:
            obs.count("ProviderDeadlineExceeded")
            return _json(504, {"error": "deadline_exceeded", "payment_id": payment_id})
        logger.info(
            "payment decided",
            extra={"payment_id": payment_id, "status": charge.status, "fresh": fresh},
        )
        if decision.times_out:
            # Charged, but the answer comes too late for the caller, who must reconcile.
            time.sleep(knobs.timeout_ms / 1000.0)
        else:
            time.sleep(decision.latency_s)

    if not fresh:
        return _json(409, {"error": "already_processed", "charge": charge.to_dict()})
    if charge.status == "declined":
        return _json(402, charge.to_dict())
    obs.count("ProviderCharged")
    return _json(201, charge.to_dict())


@app.get("/providers/<name>/payments/<payment_id>")
def get_payment(name: str, payment_id: str) -> Response:
    if (denied := _not_this_instance(name)) is not None:
        return denied
    with _pool().connection() as conn:
        charge = ledger.find(conn, name, payment_id)
    if charge is None:
        return _json(404, {"error": "not_found", "payment_id": payment_id})
    return _json(200, charge.to_dict())


@app.get("/providers/<name>/health")
def health(name: str) -> Response:
    if (denied := _not_this_instance(name)) is not None:
        return denied
    with _pool().connection() as conn:
        knobs = ledger.load_knobs(conn, name)
    return _json(
        200,
        {"failing": behaviour.is_failing(knobs), "min_response_time": round(knobs.latency_p50_ms)},
    )


@app.get("/providers/<name>/admin/knobs")
def get_knobs(name: str) -> Response:
    if (denied := _not_this_instance(name) or _admin_denied()) is not None:
        return denied
    with _pool().connection() as conn:
        return _json(200, ledger.load_knobs(conn, name).to_dict())


@app.put("/providers/<name>/admin/knobs")
def put_knobs(name: str) -> Response:
    """Changes the knobs named in the body; the others keep their values."""
    if (denied := _not_this_instance(name) or _admin_denied()) is not None:
        return denied
    try:
        changes = app.current_event.json_body
        if not isinstance(changes, dict):
            raise behaviour.InvalidKnobs("body must be a JSON object of knobs")
        with _pool().connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, -1)", (ledger.slot_class(name),))
            knobs = ledger.load_knobs(conn, name).updated(changes)
            ledger.save_knobs(conn, name, knobs)
    except (behaviour.InvalidKnobs, json.JSONDecodeError) as error:
        return _json(422, {"error": "invalid_knobs", "detail": str(error)})
    logger.info("knobs changed", extra={"provider": name, "changes": changes})
    return _json(200, knobs.to_dict())


@app.get("/providers/<name>/admin/ledger")
def ledger_summary(name: str) -> Response:
    """Authorized charges {count, amount, fees}, declined count, and requests in flight."""
    if (denied := _not_this_instance(name) or _admin_denied()) is not None:
        return denied
    with _pool().connection() as conn:
        body = ledger.summary(conn, name)
        body["in_flight"] = ledger.in_flight(conn, name)
    return _json(200, {"provider": name, **body})


@app.get("/providers/<name>/admin/charges")
def list_charges(name: str) -> Response:
    """Pages of the ledger ordered by payment id: ?after=<payment_id>&limit=<n<=1000>."""
    if (denied := _not_this_instance(name) or _admin_denied()) is not None:
        return denied
    after = app.current_event.get_query_string_value("after", "") or ""
    try:
        limit = max(1, min(1000, int(app.current_event.get_query_string_value("limit", "1000"))))
    except ValueError:
        return _json(422, {"error": "invalid_request", "detail": "limit must be an integer"})
    with _pool().connection() as conn:
        page = ledger.charges(conn, name, limit, after)
    return _json(200, {"charges": [charge.to_dict() for charge in page]})


@app.post("/providers/<name>/admin/purge")
def purge(name: str) -> Response:
    """Forgets every charge of this instance (between simulator runs); knobs stay."""
    if (denied := _not_this_instance(name) or _admin_denied()) is not None:
        return denied
    with _pool().connection() as conn:
        deleted = ledger.purge(conn, name)
    logger.info("ledger purged", extra={"provider": name, "deleted": deleted})
    return _json(200, {"provider": name, "deleted": deleted})


@app.not_found
def not_found(_: Exception) -> Response:
    return _json(HTTPStatus.NOT_FOUND, {"error": "no_such_route"})


@obs.observed
def handler(event: dict, context: Any) -> dict:
    return app.resolve(event, context)
