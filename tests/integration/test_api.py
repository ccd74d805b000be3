"""The API in-process (chalice.test.Client) against the stack's Postgres and DynamoDB."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from chalice.test import Client
from consim.adapters import dynamodb
from consim.adapters.event_store import StreamWrite
from consim.config import settings
from consim.domain.account import account_stream
from consim.domain.events import FundsCaptured, PaymentAuthorized
from consim.domain.payment import payment_stream
from consim.services import bootstrap, payments
from support.api import LambdaContext, api_module, new_client
from support.openapi import check
from support.postgres import migrated_url, unpublished_store

pytestmark = pytest.mark.integration

TRACE = "Root=1-67a0c0de-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1"


@pytest.fixture(scope="module")
def api():
    migrated_url()
    module = api_module()
    # These payments stay off Kafka: the stack's live processor would otherwise settle them
    # while a test reads the account, and each test here owns the state it checks.
    quiet = unpublished_store(bootstrap.event_store().pool)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bootstrap, "event_store", lambda: quiet)
        yield module


@pytest.fixture(scope="module")
def http(api):
    with Client(api.app) as client:
        yield client.http


@pytest.fixture
def key() -> str:
    return new_client()[0]


def post(http, path: str, key: str, body, idempotency_key: str | None = None, raw: bytes = b""):
    headers = {"x-api-key": key, "content-type": "application/json"}
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    return http.post(path, headers=headers, body=raw or json.dumps(body))


def get(http, path: str, key: str):
    return http.get(path, headers={"x-api-key": key})


def open_account(http, key: str, limit: int = 10, balance: int = 0, currency: str = "EUR") -> str:
    response = post(
        http, "/accounts", key, {"currency": currency, "limit": limit, "balance": balance}
    )
    return check("POST", "/accounts", response)["id"]


def pay(http, key: str, account_id: str, amount: int, idem: str | None = None, **extra):
    body = {"account_id": account_id, "amount": amount, "currency": "EUR", **extra}
    return post(http, "/payments", key, body, idem or str(uuid.uuid4()))


def test_health_answers_without_a_key(http) -> None:
    body = check("GET", "/health", http.get("/health"))
    assert body["status"] == "ok"


def test_open_read_and_statement(http, key) -> None:
    response = post(
        http,
        "/accounts",
        key,
        {"id": f"acc-{uuid.uuid4().hex[:8]}", "currency": "EUR", "limit": 50, "balance": 20},
    )
    assert response.status_code == 201
    account = check("POST", "/accounts", response)
    assert response.headers["Location"] == f"/accounts/{account['id']}"
    assert (account["balance"], account["limit"], account["available"]) == (20, 50, 70)

    for _ in range(12):
        assert pay(http, key, account["id"], 1).status_code == 201
    read = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account['id']}", key))
    assert (read["reserved"], read["available"], read["version"]) == (12, 58, 13)

    statement = check(
        "GET",
        "/accounts/{account_id}/statement",
        get(http, f"/accounts/{account['id']}/statement", key),
    )
    assert [e["version"] for e in statement["entries"]] == list(range(13, 3, -1))


def test_a_client_sees_only_its_own_resources(http, key) -> None:
    account_id = open_account(http, key)
    payment = check("POST", "/payments", pay(http, key, account_id, 1))
    other = new_client()[0]
    for path, template in [
        (f"/accounts/{account_id}", "/accounts/{account_id}"),
        (f"/accounts/{account_id}/statement", "/accounts/{account_id}/statement"),
        (f"/payments/{payment['id']}", "/payments/{payment_id}"),
        (f"/payments/{payment['id']}/events", "/payments/{payment_id}/events"),
    ]:
        response = get(http, path, other)
        assert response.status_code == 404
        check("GET", template, response)
    response = pay(http, other, account_id, 1)
    assert response.status_code == 404
    assert check("POST", "/payments", response)["type"].endswith("account-not-found")


def test_unknown_or_missing_api_key_is_refused(http) -> None:
    assert http.get("/accounts/x", headers={"x-api-key": "nope"}).status_code == 403
    assert http.get("/accounts/x").status_code == 403


def test_payment_reserves_and_reads_back_with_its_trace(http, key, monkeypatch) -> None:
    account_id = open_account(http, key, limit=10)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    response = pay(http, key, account_id, 4, description="coffee")
    monkeypatch.delenv("_X_AMZN_TRACE_ID")

    assert response.status_code == 201
    body = check("POST", "/payments", response)
    assert response.headers["Location"] == f"/payments/{body['id']}"
    assert body["status"] == "pending"
    assert body["account"] == {"balance": 0, "reserved": 4, "available": 6}

    payment = check("GET", "/payments/{payment_id}", get(http, f"/payments/{body['id']}", key))
    assert (payment["status"], payment["amount"], payment["description"]) == (
        "pending",
        4,
        "coffee",
    )

    events = check(
        "GET", "/payments/{payment_id}/events", get(http, f"/payments/{body['id']}/events", key)
    )["events"]
    assert [(e["type"], e["version"]) for e in events] == [("PaymentRequested", 1)]
    assert events[0]["trace_id"] == "1-67a0c0de-0123456789abcdef01234567"
    assert events[0]["data"]["amount"] == 4


def _nothing_written(http, key, account_id: str, version: int) -> None:
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert account["version"] == version
    assert account["reserved"] == 0


ACCOUNT = "<the account>"


@pytest.mark.parametrize(
    ("body", "raw", "status", "problem"),
    [
        (None, b"{not json", 400, "malformed-request"),
        (None, b"[1, 2]", 400, "malformed-request"),
        ({"amount": 1, "currency": "EUR"}, b"", 400, "malformed-request"),
        ({"account_id": ACCOUNT, "amount": "1", "currency": "EUR"}, b"", 400, "malformed-request"),
        ({"account_id": ACCOUNT, "amount": 1.5, "currency": "EUR"}, b"", 400, "malformed-request"),
        ({"account_id": ACCOUNT, "amount": 0, "currency": "EUR"}, b"", 422, "invalid-request"),
        ({"account_id": ACCOUNT, "amount": -5, "currency": "EUR"}, b"", 422, "invalid-request"),
        ({"account_id": ACCOUNT, "amount": 10**15, "currency": "EUR"}, b"", 422, "invalid-request"),
        ({"account_id": ACCOUNT, "amount": 1, "currency": "USD"}, b"", 422, "currency-mismatch"),
        ({"account_id": ACCOUNT, "amount": 1, "currency": "EURO"}, b"", 422, "invalid-request"),
        (
            {"account_id": ACCOUNT, "amount": 1, "currency": "EUR", "description": "x" * 501},
            b"",
            422,
            "invalid-request",
        ),
        ({"account_id": ACCOUNT, "amount": 11, "currency": "EUR"}, b"", 422, "insufficient-funds"),
        (
            {"account_id": ACCOUNT, "amount": 1, "currency": "EUR", "description": "x" * 20000},
            b"",
            413,
            "payload-too-large",
        ),
    ],
)
def test_bad_payments_are_problems_and_write_nothing(http, key, body, raw, status, problem) -> None:
    account_id = open_account(http, key, limit=10)
    if body is not None:
        body = {k: account_id if v == ACCOUNT else v for k, v in body.items()}
    idem = str(uuid.uuid4())
    response = post(http, "/payments", key, body, idem, raw)

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    problem_body = check("POST", "/payments", response)
    assert problem_body["type"].endswith(problem)
    assert problem_body["status"] == status
    _nothing_written(http, key, account_id, 1)
    client_id = dynamodb_client_id(key)
    assert (
        bootstrap.event_store().read_stream(
            payment_stream(payments.payment_id_for(client_id, idem))
        )
        == []
    )


def dynamodb_client_id(key: str) -> str:
    item = dynamodb.client().get_item(
        TableName=settings().table("clients"), Key={"api_key": {"S": key}}
    )["Item"]
    return item["client_id"]["S"]


def test_missing_idempotency_key_is_malformed(http, key) -> None:
    account_id = open_account(http, key)
    response = post(
        http, "/payments", key, {"account_id": account_id, "amount": 1, "currency": "EUR"}
    )
    assert response.status_code == 400
    check("POST", "/payments", response)
    _nothing_written(http, key, account_id, 1)


def test_unknown_account_is_404(http, key) -> None:
    response = pay(http, key, "no-such-account", 1)
    assert response.status_code == 404
    assert check("POST", "/payments", response)["type"].endswith("account-not-found")


def test_bad_accounts_are_problems(http, key) -> None:
    cases = [
        ({"currency": "EUR"}, 400),
        ({"currency": "EUR", "limit": "10"}, 400),
        ({"currency": "XYZ", "limit": 10}, 422),
        ({"currency": "EUR", "limit": -1}, 422),
        ({"currency": "EUR", "limit": 1, "id": "bad id!"}, 422),
    ]
    for body, status in cases:
        response = post(http, "/accounts", key, body)
        assert response.status_code == status, body
        check("POST", "/accounts", response)
    account_id = f"dup-{uuid.uuid4().hex[:8]}"
    assert (
        post(http, "/accounts", key, {"id": account_id, "currency": "EUR", "limit": 1}).status_code
        == 201
    )
    again = post(http, "/accounts", key, {"id": account_id, "currency": "EUR", "limit": 1})
    assert again.status_code == 409
    assert check("POST", "/accounts", again)["type"].endswith("account-exists")


def test_same_key_same_body_returns_the_first_response(http, key) -> None:
    account_id = open_account(http, key)
    idem = str(uuid.uuid4())
    first = check("POST", "/payments", pay(http, key, account_id, 3, idem))
    again = pay(http, key, account_id, 3, idem)
    assert again.status_code == 201
    assert check("POST", "/payments", again) == first
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert (account["reserved"], account["version"]) == (3, 2)


def test_same_key_different_body_is_422(http, key) -> None:
    account_id = open_account(http, key)
    idem = str(uuid.uuid4())
    assert pay(http, key, account_id, 3, idem).status_code == 201
    response = pay(http, key, account_id, 4, idem)
    assert response.status_code == 422
    assert check("POST", "/payments", response)["type"].endswith("idempotency-key-reused")
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert account["reserved"] == 3


def test_same_key_while_the_first_is_in_flight_is_409(http, key, api, monkeypatch) -> None:
    account_id = open_account(http, key)
    client_id = dynamodb_client_id(key)
    idem = str(uuid.uuid4())
    body = {"account_id": account_id, "amount": 2, "currency": "EUR"}
    entered, release = threading.Event(), threading.Event()
    real = payments.request_payment

    def slow(store, command, strategy=None):
        entered.set()
        release.wait(30)
        return real(store, command, strategy)

    monkeypatch.setattr(payments, "request_payment", slow)
    first: dict = {}
    worker = threading.Thread(
        target=lambda: first.update(
            api._idempotent_create_payment(
                request={"client_id": client_id, "key": idem, "body": body}
            )
        )
    )
    worker.start()
    try:
        assert entered.wait(30)
        response = post(http, "/payments", key, body, idem)
        assert response.status_code == 409
        assert check("POST", "/payments", response)["type"].endswith("request-in-flight")
    finally:
        release.set()
        worker.join()
    assert first["status"] == 201
    monkeypatch.setattr(payments, "request_payment", real)
    again = check("POST", "/payments", post(http, "/payments", key, body, idem))
    assert again["id"] == first["body"]["id"]


def _forget_idempotency_records(payment_id: str) -> int:
    table = settings().table("idempotency")
    client = dynamodb.client()
    removed = 0
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if payment_id in json.dumps(item):
                client.delete_item(TableName=table, Key={"id": item["id"]})
                removed += 1
    return removed


def test_a_retry_after_the_idempotency_record_was_lost_finds_the_payment(http, key) -> None:
    account_id = open_account(http, key)
    idem = str(uuid.uuid4())
    first = check("POST", "/payments", pay(http, key, account_id, 5, idem))
    assert _forget_idempotency_records(first["id"]) == 1

    again = pay(http, key, account_id, 5, idem)
    assert again.status_code == 201
    assert check("POST", "/payments", again)["id"] == first["id"]
    store = bootstrap.event_store()
    assert len(store.read_stream(payment_stream(first["id"]))) == 1
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert (account["reserved"], account["version"]) == (5, 2)

    assert _forget_idempotency_records(first["id"]) == 1
    changed = pay(http, key, account_id, 6, idem)
    assert changed.status_code == 422
    assert check("POST", "/payments", changed)["type"].endswith("idempotency-key-reused")


def test_payments_summary_counts_authorized_payments_per_provider(http, key) -> None:
    account_id = open_account(http, key, limit=100)
    ids = [check("POST", "/payments", pay(http, key, account_id, n))["id"] for n in (7, 9, 11)]
    store = bootstrap.event_store()
    for payment_id, provider in zip(ids[:2], ["default", "fallback"], strict=True):
        account_version = store.stream_version(account_stream(account_id))
        store.append_streams(
            [
                StreamWrite(
                    payment_stream(payment_id),
                    1,
                    [PaymentAuthorized(payment_id, account_id, provider, "ref", 1)],
                ),
                StreamWrite(
                    account_stream(account_id),
                    account_version,
                    [FundsCaptured(payment_id, 7 if provider == "default" else 9)],
                ),
            ]
        )
    summary = check(
        "GET", "/payments-summary", get(http, "/payments-summary?from=2000-01-01T00:00:00Z", key)
    )
    assert summary["default"] == {"total_requests": 1, "total_amount": 7}
    assert summary["fallback"] == {"total_requests": 1, "total_amount": 9}
    empty = check(
        "GET", "/payments-summary", get(http, "/payments-summary?to=2000-01-01T00:00:00Z", key)
    )
    assert empty["default"]["total_requests"] == 0
    bad = get(http, "/payments-summary?from=yesterday", key)
    assert bad.status_code == 400
    check("GET", "/payments-summary", bad)
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert (account["captured"], account["reserved"], account["balance"]) == (16, 11, -16)


def test_a_worker_lost_between_commit_and_record_does_not_pay_twice(http, key, api, monkeypatch):
    """The payment commits, then the idempotency record is never completed (the worker died).

    The record stays INPROGRESS until the invocation's time is up; the retry after that runs
    the command again, which finds the payment stream written and answers with that payment.
    """
    account_id = open_account(http, key)
    idem = str(uuid.uuid4())
    short_lived = LambdaContext()
    short_lived.get_remaining_time_in_millis = lambda: 1000  # type: ignore[method-assign]
    register = api.register_context
    monkeypatch.setattr(api, "register_context", lambda _: register(short_lived))

    def die(self, data, result):
        raise RuntimeError("worker killed before the record was completed")

    with monkeypatch.context() as patched:
        patched.setattr(BasePersistenceLayer, "save_success", die)
        lost = pay(http, key, account_id, 5, idem)
    assert lost.status_code == 503
    check("POST", "/payments", lost)

    deadline = time.monotonic() + 60
    retry = pay(http, key, account_id, 5, idem)
    while retry.status_code == 409 and time.monotonic() < deadline:
        time.sleep(0.5)
        retry = pay(http, key, account_id, 5, idem)
    assert retry.status_code == 201
    payment = check("POST", "/payments", retry)

    store = bootstrap.event_store()
    assert len(store.read_stream(payment_stream(payment["id"]))) == 1
    account = check("GET", "/accounts/{account_id}", get(http, f"/accounts/{account_id}", key))
    assert (account["reserved"], account["version"]) == (5, 2)


def test_subscription_routes_answer_as_described(http, key) -> None:
    account_id = open_account(http, key)
    body = {"kind": "webhook", "account_id": account_id, "url": "https://example.com/hook"}
    created = post(http, "/subscriptions", key, body)
    assert created.status_code == 201, created.body
    subscription = check("POST", "/subscriptions", created)
    assert subscription["secret"]

    path = f"/subscriptions/{subscription['id']}"
    read = check("GET", "/subscriptions/{subscription_id}", get(http, path, key))
    assert "secret" not in read
    other = get(http, path, new_client()[0])
    assert other.status_code == 404
    check("GET", "/subscriptions/{subscription_id}", other)

    deleted = http.delete(path, headers={"x-api-key": key})
    assert deleted.status_code == 204
    check("DELETE", "/subscriptions/{subscription_id}", deleted)
    assert get(http, path, key).status_code == 404

    refused = post(
        http, "/subscriptions", key, {"kind": "carrier-pigeon", "account_id": account_id}
    )
    assert refused.status_code in (400, 422)
    check("POST", "/subscriptions", refused)
    assert check("GET", "/vapid-public-key", http.get("/vapid-public-key"))["public_key"]
