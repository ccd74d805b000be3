"""Accounts and payments through the gateway, like a user: open, pay, see the final status."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import requests
from consim.adapters.read_models import ReadModels
from consim.config import settings
from consim.domain.payment import Payment, payment_stream
from consim.services import bootstrap
from support.openapi import check

pytestmark = pytest.mark.e2e

FINAL = {"authorized", "declined", "failed"}
# How long to wait for work that happens after the response (Kafka, processor, projector).
SETTLE_S = 90


def gateway_url() -> str:
    return os.environ.get("API_URL") or settings().api_url


@pytest.fixture(scope="module", autouse=True)
def warm_api() -> None:
    """Wait out the API function's cold start: on a loaded machine the first requests can hit
    the gateway's timeout (502/504, the gateway's answers, not the function's)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(gateway_url() + "/health", timeout=60).status_code not in (502, 504):
                return
        except requests.RequestException:
            pass
        time.sleep(1)


@pytest.fixture(scope="module")
def api() -> requests.Session:
    session = requests.Session()
    session.headers.update({"x-api-key": os.environ["API_KEY"]})
    session.base = gateway_url()  # type: ignore[attr-defined]
    return session


def call(api, method: str, path: str, **kwargs) -> requests.Response:
    return api.request(method, api.base + path, timeout=30, **kwargs)


def open_account(api, limit: int = 100) -> dict:
    response = call(api, "POST", "/accounts", json={"currency": "EUR", "limit": limit})
    assert response.status_code == 201, response.text
    return check("POST", "/accounts", response)


def pay(api, account_id: str, amount: int) -> dict:
    response = call(
        api,
        "POST",
        "/payments",
        json={"account_id": account_id, "amount": amount, "currency": "EUR"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    return check("POST", "/payments", response)


def final_payment(api, payment_id: str) -> dict:
    deadline = time.monotonic() + SETTLE_S
    while True:
        payment = check(
            "GET", "/payments/{payment_id}", call(api, "GET", f"/payments/{payment_id}")
        )
        if payment["status"] in FINAL or time.monotonic() > deadline:
            return payment
        time.sleep(0.2)


def set_outage(on: bool) -> None:
    config = settings()
    for name in ("default", "fallback"):
        response = requests.put(
            f"{config.provider_url}/{name}/admin/knobs",
            json={"outage": on},
            headers={"x-admin-token": config.provider_admin_token},
            timeout=30,
        )
        assert response.status_code == 200, response.text


def test_health_through_the_gateway_needs_no_key() -> None:
    response = requests.get(gateway_url() + "/health", timeout=30)
    assert check("GET", "/health", response)["status"] == "ok"


def test_the_gateways_own_refusals_are_problem_json() -> None:
    no_key = requests.get(gateway_url() + "/payments/some-id", timeout=30)
    wrong_key = requests.get(
        gateway_url() + "/payments/some-id", headers={"x-api-key": "ck_nobody"}, timeout=30
    )
    no_route = requests.get(gateway_url() + "/no-such-route", timeout=30)

    for response in (no_key, wrong_key):
        body = check("GET", "/payments/{payment_id}", response)
        assert response.status_code == 403 and body["type"].endswith("/api-key-required")
    assert no_route.status_code == 404
    assert no_route.headers["Content-Type"] == "application/problem+json"
    assert no_route.json()["type"].endswith("/no-such-route")


def test_pay_and_see_authorized_with_read_models_equal_to_the_fold(api) -> None:
    account = open_account(api)
    accepted = pay(api, account["id"], 12)
    assert accepted["account"] == {"balance": 0, "reserved": 12, "available": 88}

    payment = final_payment(api, accepted["id"])
    assert payment["status"] == "authorized"
    assert payment["provider"] in ("default", "fallback")

    after = check("GET", "/accounts/{account_id}", call(api, "GET", f"/accounts/{account['id']}"))
    assert (after["reserved"], after["captured"], after["balance"]) == (0, 12, -12)
    events = check(
        "GET",
        "/payments/{payment_id}/events",
        call(api, "GET", f"/payments/{accepted['id']}/events"),
    )["events"]
    assert [e["type"] for e in events] == ["PaymentRequested", "PaymentAuthorized"]
    assert all(e["trace_id"] and e["trace_id"].startswith("1-") for e in events)

    folded = Payment.fold(
        accepted["id"],
        [e.event for e in bootstrap.event_store().read_stream(payment_stream(accepted["id"]))],
    )
    deadline = time.monotonic() + SETTLE_S
    model = ReadModels().payment(accepted["id"])
    while (model is None or model["version"] < folded.version) and time.monotonic() < deadline:
        time.sleep(0.2)
        model = ReadModels().payment(accepted["id"])
    assert model is not None
    assert (model["version"], model["status"], model["amount"], model["provider"]) == (
        folded.version,
        folded.status,
        folded.amount,
        folded.provider,
    )


def test_with_the_provider_failing_the_payment_fails_and_the_funds_come_back(api) -> None:
    account = open_account(api, limit=50)
    set_outage(True)
    try:
        accepted = pay(api, account["id"], 20)
        payment = final_payment(api, accepted["id"])
    finally:
        set_outage(False)
    assert payment["status"] == "failed"
    after = check("GET", "/accounts/{account_id}", call(api, "GET", f"/accounts/{account['id']}"))
    assert (after["reserved"], after["captured"], after["available"]) == (0, 0, 50)
